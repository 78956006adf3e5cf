#!/usr/bin/python3
"""Boots Xen + dom0 under QEMU (TCG) with an swtpm TPM 2.0 behind tpm-tis and
runs a list of steps by typing them into dom0's serial shell.

Steps file: one step per line, `[soft] <timeout-seconds> <name> <shell command>`;
blank lines and lines starting with '#' are ignored. A step passes when its
command exits 0 within its timeout. A failing step prints `e2e diag` (what
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
import shutil
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


def start_swtpm(workdir):
    state = os.path.join(workdir, 'swtpm')
    shutil.rmtree(state, ignore_errors=True)
    os.makedirs(state)
    sock = os.path.join(state, 'ctrl.sock')
    proc = subprocess.Popen(['swtpm', 'socket', '--tpm2', '--tpmstate', 'dir=' + state,
                             '--ctrl', 'type=unixio,path=' + sock,
                             '--log', 'level=1,file=' + os.path.join(state, 'swtpm.log')])
    for _ in range(100):
        if os.path.exists(sock):
            return proc, sock
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError('swtpm did not create its control socket')


def read_steps(path):
    steps = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            soft = line.startswith('soft ')
            parts = line[5 if soft else 0:].split(None, 2)
            if len(parts) != 3 or not parts[0].isdigit():
                raise ValueError(f'{path}:{n}: want "[soft] <timeout> <name> <command>"')
            steps.append((int(parts[0]), parts[1], parts[2], soft))
    return steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--xen', required=True)
    ap.add_argument('--kernel', required=True)
    ap.add_argument('--dom0-initrd', required=True)
    ap.add_argument('--steps', required=True)
    ap.add_argument('--workdir', required=True)
    ap.add_argument('--capture-dir', required=True)
    ap.add_argument('--boot-timeout', type=int, default=240)
    ap.add_argument('--deadline', type=int, default=1080,
                    help='seconds for the whole run; steps get at most what is left')
    a = ap.parse_args()

    steps = read_steps(a.steps)
    os.makedirs(a.capture_dir, exist_ok=True)
    swtpm, sock = start_swtpm(a.workdir)
    xen_args = ('console=com1 com1=115200 dom0_mem=1024M,max:1024M dom0_max_vcpus=2 '
                'loglvl=all guest_loglvl=all noreboot smap=0 smep=0')
    dom0_args = 'console=hvc0 earlyprintk=xen'
    qemu = ['qemu-system-x86_64', '-accel', os.environ.get('VTPM_E2E_ACCEL', 'tcg,thread=multi'),
            '-cpu', os.environ.get('VTPM_E2E_CPU', 'Nehalem'), '-smp', '2',
            '-m', '2048', '-display', 'none', '-monitor', 'none', '-serial', 'stdio',
            '-no-reboot', '-nic', 'none',
            '-kernel', a.xen, '-append', xen_args,
            '-initrd', f'{a.kernel} {dom0_args},{a.dom0_initrd}',
            '-chardev', f'socket,id=chrtpm,path={sock}',
            '-tpmdev', 'emulator,id=tpm0,chardev=chrtpm', '-device', 'tpm-tis,tpmdev=tpm0']
    log = open(os.path.join(a.workdir, 'serial.log'), 'w')
    t0 = time.monotonic()
    proc = subprocess.Popen(qemu, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    ser = Serial(proc, log, t0)
    results = []
    ok = False
    try:
        m = ser.wait(r'E2E-DOM0-READY', a.boot_timeout)
        results.append(('boot', time.monotonic() - t0, m is not None))
        if m is None:
            print(f'E2E: dom0 not ready within {a.boot_timeout}s', flush=True)
            return 1
        time.sleep(1)
        ser.type('stty -echo; echo E2E-SHELL-$((6*7))\n')
        if ser.wait(r'E2E-SHELL-42', 30) is None:
            print('E2E: no shell on the dom0 console', flush=True)
            return 1
        capture = {}

        def on_line(line):
            b = re.search(r'E2E-CAPTURE-BEGIN (\S+)', line)
            e = re.search(r'E2E-CAPTURE-END (\S+)', line)
            if b:
                capture[b.group(1)] = []
            elif e and e.group(1) in capture:
                with open(os.path.join(a.capture_dir, e.group(1)), 'w') as f:
                    f.writelines(x + '\n' for x in capture.pop(e.group(1)))
            else:
                for lines in capture.values():
                    lines.append(line)

        ok = True
        for n, (timeout, name, cmd, soft) in enumerate(steps):
            print(f'E2E: STEP {name} (timeout {timeout}s): {cmd}', flush=True)
            s0 = time.monotonic()
            ser.type(f'{cmd}; echo E2E-RC-{n}-$?\n')
            left = a.deadline - (s0 - t0)
            m = ser.wait(rf'E2E-RC-{n}-(\d+)', min(timeout, left), on_line)
            took = time.monotonic() - s0
            passed = m is not None and m.group(1) == '0'
            why = f'rc={m.group(1)}' if m else 'timeout' if timeout < left else 'run deadline'
            print(f'E2E: STEP {name} {"PASS" if passed else "FAIL " + why} in {took:.1f}s',
                  flush=True)
            results.append((name, took, passed))
            if not passed:
                ok = False
                if proc.poll() is None:
                    if m is None:
                        ser.type('\x03\n')  # interrupt the step still running
                        time.sleep(2)
                    ser.type(f'e2e diag; echo E2E-RC-diag{n}-$?\n')
                    ser.wait(rf'E2E-RC-diag{n}-\d+', 90)
                if not soft or proc.poll() is not None:
                    break
        return 0 if ok else 1
    finally:
        print('E2E: ---- step times (s) ----', flush=True)
        for name, took, passed in results:
            print(f'E2E: {name:<24} {took:7.1f}  {"ok" if passed else "FAILED"}', flush=True)
        print(f'E2E: total in QEMU {time.monotonic() - t0:.1f}s', flush=True)
        proc.kill()
        proc.wait()
        swtpm.terminate()
        swtpm.wait()
        log.close()


if __name__ == '__main__':
    sys.exit(main())
