// The worker's sandbox, entered in two stages by vtpm-worker itself.
//
// Stage 1, DropPrivileges(), before the worker reads anything: closes every
// inherited fd except its socket and stderr, caps RLIMIT_NOFILE (no new fds)
// and RLIMIT_AS, forbids core dumps, switches to the given uid/gid with no
// supplementary groups (only when started as root), sets no_new_privs and
// dies with its parent.
// Stage 2, LoadSyscallFilter(), once libtpms' one-time start-up has run on
// no state (LibtpmsHost::Prepare: its self-test and OpenSSL's initialisation
// need more) and before any stored blob is parsed: a seccomp allowlist of the syscalls
// TPM emulation needs (read/write on its socket, memory management without
// PROT_EXEC, getrandom, futex, clocks, exit). Any other syscall - open, socket,
// ioctl, execve, ptrace... - kills the process (SIGSYS).
//
// Sanitizer builds (VTPM_SANITIZER_BUILD): ASan/UBSan need more syscalls for
// their runtime and reports (sigaltstack, rt_sigaction, read-only openat of
// /proc/self/maps, readlink, fstat, sched_getaffinity, prlimit, ...), so the
// allowlist is extended by those; openat stays forbidden for any write or
// create access. RLIMIT_AS is not set because ASan reserves terabytes of
// shadow address space.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "common/status.h"

namespace vtpm {

struct SandboxOptions {
  int keep_fd = 3;                         // the parent socket
  uid_t uid = 65534;
  gid_t gid = 65534;
  uint64_t address_space = 512ull << 20;   // RLIMIT_AS, bytes
};

Status DropPrivileges(const SandboxOptions& opts);
Status LoadSyscallFilter();

}  // namespace vtpm
