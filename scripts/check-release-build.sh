#!/bin/bash
# Checks that a release build carries none of the test-only parts.
#   scripts/check-release-build.sh BUILD_DIR
# BUILD_DIR is a CMake build tree configured without -DVTPM_TESTS=ON (the
# default: what an operator's `cmake -S . -B build` or the Debian package
# build makes), already built. It checks the binaries where the build left
# them (BUILD_DIR/src/daemon/vtpmmgrd, BUILD_DIR/src/tpm/vtpm-worker), which
# must still have their symbol table (not the stripped, installed copies):
#   - the build was configured with VTPM_TESTS off and compiled no scripted
#     engine object;
#   - vtpmmgrd has no ScriptedEngine symbol, and no string (code, data or
#     debug info) naming the scripted engine, its keys or journal_socket;
#   - vtpm-worker has no test-command symbol or string (kTestOpen,
#     kTestSyscall, --test-commands and the probes' messages), and
#     `vtpm-worker --test-commands` is refused with a usage line that does
#     not offer it;
#   - `vtpmmgrd --check-config` refuses (exit status 3, naming the file, line
#     and key) a config with [engine] kind = "scripted", with each scripted_*
#     key and with [daemon] journal_socket, and accepts the shipped
#     etc/vtpmmgrd.conf;
#   - `vtpmmgrd --help` names none of them.
# Needs nm and strings (binutils). Prints one line per check; exit status 0
# when every check passes, 1 when one fails, 2 on a usage error.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:?usage: check-release-build.sh BUILD_DIR}
[[ -d $BUILD ]] || { echo "check-release-build: $BUILD is not a directory" >&2; exit 2; }
BUILD=$(cd "$BUILD" && pwd)  # worker_path in the configs it writes must be absolute
DAEMON=$BUILD/src/daemon/vtpmmgrd
WORKER=$BUILD/src/tpm/vtpm-worker
for b in "$DAEMON" "$WORKER"; do
  [[ -x $b ]] || { echo "check-release-build: $b is missing: build $BUILD first" >&2; exit 2; }
done
W=$(mktemp -d /tmp/vtpm-check-release.XXXXXX)
trap 'rm -rf "$W"' EXIT

failed=0
pass() { echo "ok:   $*"; }
fail() { echo "FAIL: $*"; failed=1; }
# expect_none <what> <file with one finding per line>
expect_none() {
  if [[ -s $2 ]]; then fail "$1:"; head -n 20 "$2" | sed 's/^/        /'; else pass "$1"; fi
}

# The build itself.
tests=$(sed -n 's/^VTPM_TESTS:BOOL=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
if [[ -z $tests || $tests == OFF ]]; then pass "configured without VTPM_TESTS"; else fail "configured with VTPM_TESTS=$tests: a test build"; fi
find "$BUILD" -name 'scripted_engine*.o' > "$W/objects"
expect_none "no scripted engine object compiled" "$W/objects"

# Symbols and strings.
for b in "$DAEMON" "$WORKER"; do
  nm -C "$b" > "$W/nm" 2>/dev/null || true
  if [[ ! -s $W/nm ]]; then fail "${b##*/} has no symbol table (stripped?): give the build tree's binary"; fi
done
nm -C "$DAEMON" | grep -i 'scripted' > "$W/found" || true
expect_none "vtpmmgrd: no scripted engine symbols" "$W/found"
strings -a "$DAEMON" | grep -i -E 'scripted|journal_socket|test[-_]commands' > "$W/found" || true
expect_none "vtpmmgrd: no string naming the scripted engine, its keys, journal_socket or test commands" "$W/found"
nm -C "$WORKER" | grep -E 'RunTestCommand|kTest' > "$W/found" || true
expect_none "vtpm-worker: no test-command symbols" "$W/found"
strings -a "$WORKER" | grep -E 'kTestOpen|kTestSyscall|test[-_]commands|open (refused|succeeded)|socket (refused|succeeded)' \
  > "$W/found" || true
expect_none "vtpm-worker: no test-command strings" "$W/found"

# The worker refuses the flag: usage, exit status 1, before touching fd 3.
set +e
timeout 10 "$WORKER" --fd=3 --test-commands 3<&- > "$W/out" 2>&1
rc=$?
set -e
if [[ $rc -eq 1 ]] && grep -q '^vtpm-worker: usage: ' "$W/out" && ! grep -q 'test-commands' "$W/out"; then
  pass "vtpm-worker refuses --test-commands with a usage line that does not offer it"
else
  fail "vtpm-worker --test-commands: exit status $rc, output: $(head -c 300 "$W/out")"
fi

# The config parser. check_config <name> <expected exit status> <expected output regex> <config text>
check_config() {
  local name=$1 want_rc=$2 want=$3 conf=$W/$1.conf rc
  printf '%s\n' "$4" > "$conf"
  set +e
  "$DAEMON" --check-config --config "$conf" > "$W/out" 2>&1
  rc=$?
  set -e
  if [[ $rc -eq $want_rc ]] && grep -q -E -- "$want" "$W/out"; then
    pass "--check-config $name: exit status $rc"
  else
    fail "--check-config $name: exit status $rc (want $want_rc), output: $(head -c 300 "$W/out")"
  fi
}
check_config kind-scripted 3 \
  "$W/kind-scripted.conf:3: \\[engine\\] kind must be \"libtpms\", not \"scripted\" \\(other engines exist only in test builds\\)" \
  $'[engine]\n# a test build\'s engine\nkind = "scripted"'
for key in scripted_delay_ms scripted_slow_delay_ms; do
  check_config "$key" 3 "$W/$key.conf:2: unknown key '$key' in \\[engine\\]" $'[engine]\n'"$key = 10"
done
check_config scripted_slow_uuids 3 "$W/scripted_slow_uuids.conf:2: unknown key 'scripted_slow_uuids' in \\[engine\\]" \
  $'[engine]\nscripted_slow_uuids = []'
check_config journal_socket 3 "$W/journal_socket.conf:3: unknown key 'journal_socket' in \\[daemon\\]" \
  $'[daemon]\nlog_level = "info"\njournal_socket = "/tmp/journal.sock"'
# The build tree has no worker installed next to the daemon: name the built one.
check_config shipped-example 0 ": OK \\(worker $WORKER\\)$" \
  "$(sed "s|^worker_path = \"\"|worker_path = \"$WORKER\"|" "$SRC/etc/vtpmmgrd.conf")"

# --help stays true: it offers nothing a release build lacks.
"$DAEMON" --help > "$W/help" 2>&1
grep -i -E 'scripted|journal_socket|test' "$W/help" > "$W/found" || true
expect_none "vtpmmgrd --help names no test-only part" "$W/found"

if ((failed)); then echo "check-release-build: $BUILD carries test-only parts (see FAIL lines)"; exit 1; fi
echo "check-release-build: $BUILD is a release build without test-only parts"
