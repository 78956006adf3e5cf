#!/usr/bin/env python3
"""man_pages_test.py SOURCE_DIR BUILD_DIR: the man pages say what the code does.

- vtpmmgrd(8) EXIT STATUS lists exactly the daemon's statuses (exit_codes.h and
  10 + each Refusal of store/refusal.h), each of which the code returns;
- the statuses vtpmmgrd(8) says the unit never restarts are the unit's
  RestartPreventExitStatus=;
- vtpmctl(8) EXIT STATUS lists exactly ctl_exit.h's statuses;
- each ENVIRONMENT section names exactly the variables the program (or a
  library it hands them to) reads;
- every installed path in vtpmmgrd(8) FILES is installed by `cmake --install`
  (prefix /usr), and its state and runtime paths are the configuration defaults.
Prints one line per finding; exit status 1 when any.
"""
import os
import re
import subprocess
import sys
import tempfile

SRC, BUILD = sys.argv[1], sys.argv[2]
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def read(rel):
    with open(os.path.join(SRC, rel), encoding="utf-8") as f:
        return f.read()


def section(page, name):
    m = re.search(r"^\.SH " + re.escape(name) + r"\n(.*?)(?=^\.SH |\Z)", page, re.S | re.M)
    return m.group(1) if m else None


def statuses(sec):
    """The numbers of '.TP\\n.B N' items."""
    return {int(n) for n in re.findall(r"^\.TP\n\.B (\d+)\n", sec, re.M)}


def constants(header, prefix):
    return {name: int(v) for name, v in re.findall(r"constexpr int (" + prefix + r"\w+) = (\d+);", header)}


def sources(subdir, exclude=()):
    out = {}
    for root, _, files in os.walk(os.path.join(SRC, subdir)):
        for f in files:
            p = os.path.join(root, f)
            if f.endswith((".cc", ".h")) and not any(x in p for x in exclude):
                with open(p, encoding="utf-8") as fh:
                    out[os.path.relpath(p, SRC)] = fh.read()
    return out


def expand(words):
    """'2, 3, 4, 11 to 16, 18 and 19' -> {2, 3, 4, 11, ..., 16, 18, 19}"""
    out = set()
    for a, b in re.findall(r"(\d+)(?: to (\d+))?", words):
        out |= set(range(int(a), int(b or a) + 1))
    return out


daemon_page, ctl_page = read("man/vtpmmgrd.8"), read("man/vtpmctl.8")

# --- vtpmmgrd exit statuses
codes = constants(read("src/daemon/exit_codes.h"), "kExit")
refusals = {int(v) for v in re.findall(r"^\s+k\w+ = (\d+),", read("src/store/refusal.h"), re.M)}
want = set(codes.values()) | {10 + r for r in refusals}
sec = section(daemon_page, "EXIT STATUS")
if sec is None:
    fail("vtpmmgrd.8 has no EXIT STATUS")
else:
    have = statuses(sec)
    for n in sorted(want - have):
        fail(f"vtpmmgrd.8 EXIT STATUS does not document {n}")
    for n in sorted(have - want):
        fail(f"vtpmmgrd.8 EXIT STATUS documents {n}, which the code does not have")
    m = re.search(r"Statuses ([0-9, toand]+) are listed in the unit's\s+\.BR RestartPreventExitStatus=", sec)
    unit = re.search(r"^RestartPreventExitStatus=(.*)$", read("systemd/vtpmmgrd.service.in"), re.M)
    if not m or not unit:
        fail("vtpmmgrd.8 or the unit does not name RestartPreventExitStatus=")
    elif expand(m.group(1)) != {int(x) for x in unit.group(1).split()}:
        fail(f"vtpmmgrd.8 says RestartPreventExitStatus={sorted(expand(m.group(1)))}, "
             f"the unit has {unit.group(1)}")
daemon_src = sources("src", exclude=("/ctl/",))
for name, value in codes.items():
    used = [p for p, t in daemon_src.items() if p != "src/daemon/exit_codes.h" and re.search(r"\b" + name + r"\b", t)]
    if not used:
        fail(f"exit status {value} ({name}) is documented but never returned")

# --- vtpmctl exit statuses
ctl_codes = constants(read("src/ctl/ctl_exit.h"), "kExit")
sec = section(ctl_page, "EXIT STATUS")
if sec is None:
    fail("vtpmctl.8 has no EXIT STATUS")
elif statuses(sec) != set(ctl_codes.values()):
    fail(f"vtpmctl.8 EXIT STATUS documents {sorted(statuses(sec))}, ctl_exit.h has {sorted(ctl_codes.values())}")

# --- environment
def getenvs(texts, exclude_hooks):
    names = set()
    for path, t in texts.items():
        if exclude_hooks and "VTPM_TEST_HOOKS" in t:
            continue  # test-build crash points (common/crash_point.cc)
        names |= set(re.findall(r'getenv\("([A-Z0-9_]+)"\)', t))
    return names

# Read by libraries the daemon uses, on the daemon's behalf.
LIBRARY_VARS = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "TSS2_LOG", "LISTEN_FDS", "LISTEN_PID",
                "LISTEN_FDNAMES"}
for page, prog, texts, extra in (
        (daemon_page, "vtpmmgrd.8", daemon_src, LIBRARY_VARS),
        (ctl_page, "vtpmctl.8", sources("src/ctl"), set())):
    sec = section(page, "ENVIRONMENT")
    if sec is None:
        fail(f"{prog} has no ENVIRONMENT section")
        continue
    documented = set(re.findall(r"^\.TP\n\.BR? ([A-Z][A-Z0-9_]+)", sec, re.M))
    documented |= set(re.findall(r'^\.TP\n\.BR [A-Z0-9_]+ ", " ([A-Z][A-Z0-9_]+)', sec, re.M))
    read_vars = getenvs(texts, exclude_hooks=True) | extra
    for v in sorted(read_vars - documented):
        fail(f"{prog} ENVIRONMENT does not document {v}, which is read")
    for v in sorted(documented - read_vars):
        fail(f"{prog} ENVIRONMENT documents {v}, which nothing reads")

# --- files
sec = section(daemon_page, "FILES") or ""
paths = re.findall(r"^\.IR? (/[^\s\"]+)", sec, re.M)
paths += re.findall(r'^\.IR (/[^\s"]+) ", " (/[^\s"]+)', sec, re.M)
flat = set()
for p in paths:
    flat |= set(p) if isinstance(p, tuple) else {p}
flat = {p.replace("\\-", "-") for p in flat}
if len(flat) < 6:
    fail(f"vtpmmgrd.8 FILES names too few paths: {sorted(flat)}")
config_h = read("src/daemon/config.h")
with tempfile.TemporaryDirectory() as tmp:
    r = subprocess.run(["cmake", "--install", BUILD, "--prefix", "/usr"], env=dict(os.environ, DESTDIR=tmp),
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail("cmake --install failed: " + r.stderr)
    for p in sorted(flat):
        if p.startswith(("/var/lib/vtpmmgrd", "/run/vtpmmgrd")):
            d = "/".join(p.rstrip("/").split("/")[:4])
            if f'"{d}"' not in config_h:
                fail(f"vtpmmgrd.8 FILES names {p}, but {d} is no configuration default")
            continue
        installed = tmp + (p if not p.startswith("/lib/") else "/usr" + p)
        if not os.path.exists(installed):
            fail(f"vtpmmgrd.8 FILES names {p}, which cmake --install does not install")

print(f"{len(failures)} finding(s)")
sys.exit(1 if failures else 0)
