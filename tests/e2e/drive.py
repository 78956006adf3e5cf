#!/usr/bin/python3
"""Boots Xen + dom0 under QEMU (TCG) with an swtpm TPM 2.0 behind tpm-tis and
runs a list of steps by typing them into dom0's serial shell, over one or
more boots of the same machine: the swtpm state directory and the disk image
(--disk, a virtio-blk drive) carry over from one boot to the next, like a
host's TPM and disk across a reboot.

Steps file: one step per line, `[soft] <timeout-seconds> <name> <shell command>`
(a step named `poweroff` passes when its command exits 0 and QEMU then exits
within the timeout: the host shut down);
`boot <name> [dom0 kernel args]` starts a (re)boot whose steps follow (steps
before the first such line run in a boot named `1`); blank lines and lines
starting with '#' are ignored. A step passes when its command exits 0 within
its timeout. A failing step prints `e2e diag` (what
dom0 knows) and fails the run; the first failing step that is not `soft`
also ends it. Every serial line is echoed
with the seconds since QEMU started; lines between `E2E-CAPTURE-BEGIN <name>`
and `E2E-CAPTURE-END <name>` are also written to <capture-dir>/<name>.
Exit status: 0 when every step passed.
"""
import argparse
import os
import queue
import re
import subprocess
import sys
import threading
import time

FATAL = re.compile(r'Kernel panic|Hardware Dom0 crashed|\(XEN\) Panic on CPU|'
                   r'\(XEN\) \*\*\*\* Panic|Unhandled|domain_crash_sync')


class Serial:
    """QEMU's serial port on stdin/stdout pipes, read by a thread."""

    def __init__(self, proc, log, t0):
        self.proc = proc
        self.log = log
        self.t0 = t0
        self.lines = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        buf = b''
        while True:
            chunk = self.proc.stdout.read1(4096)
            if not chunk:
                self.lines.put(None)
                return
            buf += chunk
            while b'\n' in buf:
                raw, buf = buf.split(b'\n', 1)
                line = raw.decode('utf-8', 'replace').rstrip('\r')
                stamped = f'[{time.monotonic() - self.t0:8.2f}] {line}'
                self.log.write(stamped + '\n')
                self.log.flush()
                print(stamped, flush=True)
                self.lines.put(line)

    def type(self, text):
        """Types text in short chunks: the serial path drops characters when
        fed faster than Xen forwards them to dom0."""
        data = text.encode()
        for i in range(0, len(data), 16):
            self.proc.stdin.write(data[i:i + 16])
            self.proc.stdin.flush()
            time.sleep(0.06)

    def wait(self, pattern, timeout, on_line=None):
        """Returns the match of `pattern` in a line, or None on timeout,
        QEMU exit or a hypervisor/kernel crash."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                print('E2E: QEMU exited', flush=True)
                return None
            if on_line:
                on_line(line)
            m = re.search(pattern, line)
            if m:
                return m
            if FATAL.search(line):
                print(f'E2E: fatal console line: {line}', flush=True)
                return None


def start_swtpm(state):
    """swtpm on the state directory `state`, created when missing and kept:
    the next boot's TPM has the same seeds and persistent objects."""
    os.makedirs(state, exist_ok=True)
    sock = os.path.join(state, 'ctrl.sock')
    if os.path.exists(sock):
        os.unlink(sock)
    proc = subprocess.Popen(['swtpm', 'socket', '--tpm2', '--tpmstate', 'dir=' + state,
                             '--ctrl', 'type=unixio,path=' + sock,
                             '--log', 'level=1,file=' + os.path.join(state, 'swtpm.log')])
    for _ in range(100):
        if os.path.exists(sock):
            return proc, sock
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError('swtpm did not create its control socket')


def read_boots(path):
    """[(boot name, extra dom0 kernel args, [(timeout, name, cmd, soft)])]"""
    boots = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            if line.startswith('boot ') or line == 'boot':
                parts = line.split(None, 2)
                if len(parts) < 2:
                    raise ValueError(f'{path}:{n}: want "boot <name> [dom0 kernel args]"')
                boots.append((parts[1], parts[2] if len(parts) > 2 else '', []))
                continue
            if not boots:
                boots.append(('1', '', []))
            steps = boots[-1][2]
            soft = line.startswith('soft ')
            parts = line[5 if soft else 0:].split(None, 2)
            if len(parts) != 3 or not parts[0].isdigit():
                raise ValueError(f'{path}:{n}: want "[soft] <timeout> <name> <command>"')
            steps.append((int(parts[0]), parts[1], parts[2], soft))
    return boots


class Run:
    """Step results and the capture of marked console lines, across boots."""

    def __init__(self, a):
        self.a = a
        self.t0 = time.monotonic()
        self.results = []
        self.capture = {}
        self.log = open(os.path.join(a.workdir, 'serial.log'), 'w')

    def on_line(self, line):
        b = re.search(r'E2E-CAPTURE-BEGIN (\S+)', line)
        e = re.search(r'E2E-CAPTURE-END (\S+)', line)
        if b:
            self.capture[b.group(1)] = []
        elif e and e.group(1) in self.capture:
            with open(os.path.join(self.a.capture_dir, e.group(1)), 'w') as f:
                f.writelines(x + '\n' for x in self.capture.pop(e.group(1)))
        else:
            for lines in self.capture.values():
                lines.append(line)

    def boot(self, name, extra_args, steps, first_step):
        """Boots the machine once and runs `steps`. Returns True when every
        step passed; False ends the run unless only soft steps failed."""
        a = self.a
        swtpm, sock = start_swtpm(a.swtpm_state)
        xen_args = ('console=com1 com1=115200 dom0_mem=1024M,max:1024M dom0_max_vcpus=2 '
                    'loglvl=all guest_loglvl=all noreboot smap=0 smep=0')
        # dom0 boots its root disk through the initramfs (images.sh) into
        # systemd, which reports only failed units on the console.
        dom0_args = ('console=hvc0 earlyprintk=xen systemd.show_status=error ' + extra_args).strip()
        qemu = ['qemu-system-x86_64', '-accel', os.environ.get('VTPM_E2E_ACCEL', 'tcg,thread=multi'),
                '-cpu', os.environ.get('VTPM_E2E_CPU', 'Nehalem'), '-smp', '2',
                '-m', '2048', '-display', 'none', '-monitor', 'none', '-serial', 'stdio',
                '-no-reboot', '-nic', 'none',
                '-kernel', a.xen, '-append', xen_args,
                '-initrd', f'{a.kernel} {dom0_args},{a.dom0_initrd}',
                '-chardev', f'socket,id=chrtpm,path={sock}',
                '-tpmdev', 'emulator,id=tpm0,chardev=chrtpm', '-device', 'tpm-tis,tpmdev=tpm0']
        if a.disk:
            qemu += ['-drive', f'file={a.disk},format=raw,if=virtio,cache=writeback']
        print(f'E2E: BOOT {name}: dom0 args "{dom0_args}"', flush=True)
        self.log.write(f'==== boot {name}: dom0 args "{dom0_args}"\n')
        b0 = time.monotonic()
        proc = subprocess.Popen(qemu, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        ser = Serial(proc, self.log, b0)
        ok = False
        try:
            m = ser.wait(r'E2E-DOM0-READY', a.boot_timeout * a.timeout_scale)
            self.results.append((f'{name}/boot', time.monotonic() - b0, m is not None))
            if m is None:
                print(f'E2E: dom0 not ready within {a.boot_timeout}s', flush=True)
                return False
            time.sleep(1)
            ser.type('stty -echo; echo E2E-SHELL-$((6*7))\n')
            if ser.wait(r'E2E-SHELL-42', 30) is None:
                print('E2E: no shell on the dom0 console', flush=True)
                return False
            ok = True
            for n, (timeout, sname, cmd, soft) in enumerate(steps, first_step):
                timeout = int(timeout * a.timeout_scale)
                print(f'E2E: STEP {name}/{sname} (timeout {timeout}s): {cmd}', flush=True)
                s0 = time.monotonic()
                ser.type(f'{cmd}; echo E2E-RC-{n}-$?\n')
                left = a.deadline - (s0 - self.t0)
                m = ser.wait(rf'E2E-RC-{n}-(\d+)', min(timeout, left), self.on_line)
                passed = m is not None and m.group(1) == '0'
                why = f'rc={m.group(1)}' if m else 'timeout' if timeout < left else 'run deadline'
                if passed and sname == 'poweroff':
                    # The host powers off through systemd: QEMU must exit.
                    end = s0 + min(timeout, left)
                    while proc.poll() is None and time.monotonic() < end:
                        ser.wait(r'$^', 1)
                    passed = proc.poll() is not None
                    why = 'QEMU still running' if not passed else why
                took = time.monotonic() - s0
                print(f'E2E: STEP {name}/{sname} {"PASS" if passed else "FAIL " + why} in {took:.1f}s',
                      flush=True)
                self.results.append((f'{name}/{sname}', took, passed))
                if not passed:
                    ok = False
                    if proc.poll() is None:
                        if m is None:
                            ser.type('\x03\n')  # interrupt the step still running
                            time.sleep(2)
                        ser.type(f'e2e diag; echo E2E-RC-diag{n}-$?\n')
                        ser.wait(rf'E2E-RC-diag{n}-\d+', 90)
                    if not soft or proc.poll() is not None:
                        self.fatal = True
                        break
            return ok
        finally:
            self.results.append((f'{name}/total', time.monotonic() - b0, ok))
            proc.kill()
            proc.wait()
            swtpm.terminate()
            swtpm.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--xen', required=True)
    ap.add_argument('--kernel', required=True)
    ap.add_argument('--dom0-initrd', required=True)
    ap.add_argument('--steps', required=True)
    ap.add_argument('--workdir', required=True)
    ap.add_argument('--capture-dir', required=True)
    ap.add_argument('--disk', help='raw disk image attached as virtio-blk in every boot')
    ap.add_argument('--swtpm-state', help='swtpm state directory kept across boots '
                    '(default <workdir>/swtpm)')
    ap.add_argument('--boot-timeout', type=int, default=240)
    ap.add_argument('--deadline', type=int, default=1500,
                    help='seconds for the whole run; steps get at most what is left')
    ap.add_argument('--timeout-scale', type=float,
                    default=float(os.environ.get('VTPM_E2E_TIMEOUT_SCALE', '1')),
                    help='multiplies every step timeout (a slow or busy host)')
    a = ap.parse_args()
    a.swtpm_state = a.swtpm_state or os.path.join(a.workdir, 'swtpm')

    boots = read_boots(a.steps)
    os.makedirs(a.capture_dir, exist_ok=True)
    run = Run(a)
    run.fatal = False
    ok = True
    first = 0
    try:
        for name, extra, steps in boots:
            if not run.boot(name, extra, steps, first):
                ok = False
                if run.fatal or not any(r[0] == f'{name}/boot' and r[2] for r in run.results):
                    break
            first += len(steps)
        return 0 if ok else 1
    finally:
        print('E2E: ---- step times (s) ----', flush=True)
        for name, took, passed in run.results:
            print(f'E2E: {name:<32} {took:7.1f}  {"ok" if passed else "FAILED"}', flush=True)
        print(f'E2E: total in QEMU {time.monotonic() - run.t0:.1f}s', flush=True)
        run.log.close()


if __name__ == '__main__':
    sys.exit(main())
