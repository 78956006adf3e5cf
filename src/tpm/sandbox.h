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
// ioctl, execve, ptrace... - kills the process (SIGSYS). A worker serving
// its guest may in addition notify its one event channel and write its
// responded mark (GuestSyscalls).
//
// Test builds (VTPM_TEST_BUILD) reach the simulated host's event channels
// through the LD_PRELOAD shim of tests/sim/, which implements a notify with
// a datagram and a stat of the port's record instead of one ioctl; for a
// worker with an event channel their filter also allows what the shim needs.
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
#include <vector>

#include "common/status.h"

namespace vtpm {

struct SandboxOptions {
  int keep_fd = 3;                         // the parent socket
  // More descriptors to keep: a worker serving its guest keeps its event
  // channel and its responded-mark file (tpm/guest_channel.h).
  std::vector<int> extra_fds;
  uid_t uid = 65534;
  gid_t gid = 65534;
  uint64_t address_space = 512ull << 20;   // RLIMIT_AS, bytes
  // A worker serving its guest outlives a daemon that dies (design §2
  // "Workers outlive the daemon"): no PR_SET_PDEATHSIG. It still ends when
  // its socket closes, once neither a daemon nor the service manager's fd
  // store holds the other end.
  bool outlive_parent = false;
};

// What a worker serving its guest may do beyond TPM emulation; -1: nothing.
struct GuestSyscalls {
  // ioctl on this descriptor with IOCTL_EVTCHN_NOTIFY only (binding,
  // unbinding or resetting kills the worker); read (pending port) and write
  // (unmask) need no rule of their own. poll/ppoll are allowed with it.
  int evtchn_fd = -1;
  // pwrite64 on this descriptor only (the responded mark, at offset 0).
  int mark_fd = -1;
};

Status DropPrivileges(const SandboxOptions& opts);
Status LoadSyscallFilter(const GuestSyscalls& guest = {});

}  // namespace vtpm
