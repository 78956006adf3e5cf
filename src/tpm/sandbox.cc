#include "tpm/sandbox.h"

#include <fcntl.h>
#include <grp.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sys/ioctl.h>
#include <xen/xen.h>  // domid_t, which xen/sys/evtchn.h uses without including it
#include <xen/sys/evtchn.h>

#include <algorithm>
#include <cerrno>
#include <memory>

namespace vtpm {
namespace {

// Closes every descriptor above stderr that is not in `keep` (sorted, > 2).
Status CloseInheritedFds(const std::vector<int>& keep) {
  // stdin/stdout are not the worker's; stderr stays for diagnostics.
  close(STDIN_FILENO);
  close(STDOUT_FILENO);
  unsigned from = STDERR_FILENO + 1;
  for (int fd : keep) {
    if (unsigned(fd) > from && syscall(SYS_close_range, from, unsigned(fd - 1), 0U) != 0)
      return Status::FromErrno(errno, "close_range");
    from = unsigned(fd) + 1;
  }
  if (syscall(SYS_close_range, from, ~0U, 0U) != 0) return Status::FromErrno(errno, "close_range");
  return Status::Ok();
}

Status SetLimit(int resource, rlim_t value, const char* what) {
  struct rlimit rl = {value, value};
  if (setrlimit(resource, &rl) != 0) return Status::FromErrno(errno, what);
  return Status::Ok();
}

#ifdef VTPM_TEST_BUILD
const int kShimSyscalls[] = {
    SCMP_SYS(newfstatat), SCMP_SYS(fstat), SCMP_SYS(statx), SCMP_SYS(sendto), SCMP_SYS(recvfrom),
    SCMP_SYS(close),      SCMP_SYS(fcntl), SCMP_SYS(flock), SCMP_SYS(lseek), SCMP_SYS(pread64),
    SCMP_SYS(munmap),
};
#endif

struct FilterDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};

}  // namespace

Status DropPrivileges(const SandboxOptions& opts) {
  std::vector<int> keep = opts.extra_fds;
  keep.push_back(opts.keep_fd);
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
  if (keep.front() <= STDERR_FILENO) return Status(Code::kInvalidArgument, "bad worker fd");
  RETURN_IF_ERROR(CloseInheritedFds(keep));
  rlim_t nofile = rlim_t(keep.back() + 1);
#ifdef VTPM_TEST_BUILD
  // The simulated host's shim opens a few files per notify (GuestSyscalls).
  if (!opts.extra_fds.empty()) nofile += 8;
#endif
  RETURN_IF_ERROR(SetLimit(RLIMIT_NOFILE, nofile, "RLIMIT_NOFILE"));
  RETURN_IF_ERROR(SetLimit(RLIMIT_CORE, 0, "RLIMIT_CORE"));
#ifndef VTPM_SANITIZER_BUILD
  RETURN_IF_ERROR(SetLimit(RLIMIT_AS, rlim_t(opts.address_space), "RLIMIT_AS"));
#endif
  if (geteuid() == 0) {
    if (setgroups(0, nullptr) != 0) return Status::FromErrno(errno, "setgroups");
    if (setresgid(opts.gid, opts.gid, opts.gid) != 0) return Status::FromErrno(errno, "setresgid");
    if (setresuid(opts.uid, opts.uid, opts.uid) != 0) return Status::FromErrno(errno, "setresuid");
    if (opts.uid != 0 && setuid(0) == 0)
      return Status(Code::kPermissionDenied, "privileges could be regained");
  }
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return Status::FromErrno(errno, "PR_SET_DUMPABLE");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return Status::FromErrno(errno, "PR_SET_NO_NEW_PRIVS");
  if (opts.outlive_parent) return Status::Ok();
  // Set after the uid change, which clears it.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
    return Status::FromErrno(errno, "PR_SET_PDEATHSIG");
  if (getppid() == 1) return Status(Code::kUnavailable, "parent already gone");
  return Status::Ok();
}

Status LoadSyscallFilter(const GuestSyscalls& guest) {
  std::unique_ptr<void, FilterDeleter> ctx(seccomp_init(SCMP_ACT_KILL_PROCESS));
  if (!ctx) return Status(Code::kInternal, "seccomp_init failed");
  auto allow = [&](int nr) { return seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, nr, 0); };
  const int plain[] = {
      SCMP_SYS(read),         SCMP_SYS(write),      SCMP_SYS(exit),
      SCMP_SYS(exit_group),   SCMP_SYS(brk),        SCMP_SYS(munmap),
      SCMP_SYS(mremap),       SCMP_SYS(madvise),    SCMP_SYS(futex),
      SCMP_SYS(getrandom),    SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask),
      SCMP_SYS(clock_gettime), SCMP_SYS(gettimeofday), SCMP_SYS(time),
      SCMP_SYS(getpid),       SCMP_SYS(gettid),     SCMP_SYS(sched_yield),
      // A poll(2) with a timeout that a stop signal or a tracer interrupted
      // resumes through it (SIGSTOP/SIGCONT, the cgroup freezer).
      SCMP_SYS(restart_syscall),
#ifdef VTPM_SANITIZER_BUILD
      SCMP_SYS(sigaltstack),  SCMP_SYS(rt_sigaction), SCMP_SYS(close),
      SCMP_SYS(fstat),        SCMP_SYS(newfstatat), SCMP_SYS(readlink),
      SCMP_SYS(readlinkat),   SCMP_SYS(lseek),      SCMP_SYS(pread64),
      SCMP_SYS(sched_getaffinity), SCMP_SYS(prlimit64), SCMP_SYS(getrlimit),
      SCMP_SYS(tgkill),       SCMP_SYS(prctl),      SCMP_SYS(uname),
      SCMP_SYS(getppid),      SCMP_SYS(dup),        SCMP_SYS(mprotect),
      SCMP_SYS(writev),
#endif
  };
  for (int nr : plain) {
    if (allow(nr) != 0) return Status(Code::kInternal, "seccomp_rule_add failed");
  }
  // Memory, never executable.
  auto allow_no_exec = [&](int nr) {
    return seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, nr, 1,
                            SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  };
  if (allow_no_exec(SCMP_SYS(mmap)) != 0)
    return Status(Code::kInternal, "seccomp_rule_add(mmap) failed");
#ifndef VTPM_SANITIZER_BUILD
  if (allow_no_exec(SCMP_SYS(mprotect)) != 0)
    return Status(Code::kInternal, "seccomp_rule_add(mprotect) failed");
#else
  // The sanitizer runtime reads /proc/self/maps; never for writing or creating.
  if (seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
                       SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY)) !=
      0)
    return Status(Code::kInternal, "seccomp_rule_add(openat) failed");
#endif
  if (guest.evtchn_fd >= 0) {
    if (seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 2, SCMP_A0(SCMP_CMP_EQ, uint64_t(guest.evtchn_fd), 0),
                         SCMP_A1(SCMP_CMP_EQ, uint64_t(IOCTL_EVTCHN_NOTIFY), 0)) != 0 ||
        allow(SCMP_SYS(poll)) != 0 || allow(SCMP_SYS(ppoll)) != 0)
      return Status(Code::kInternal, "seccomp_rule_add(ioctl) failed");
#ifdef VTPM_TEST_BUILD
    // The simulated host's shim (tests/sim/shim): a notify stats the port's
    // record and sends a datagram; when the record changed (the first notify
    // after the bind, too) it takes the lock file and reads the record and
    // /proc/<pid>/stat of the peer, and maps the peer's pending bits.
    // Sanitizer builds already allow some of them (-EEXIST).
    for (int nr : kShimSyscalls)
      if (int r = allow(nr); r != 0 && r != -EEXIST) return Status(Code::kInternal, "seccomp_rule_add(shim) failed");
    // Its lock file is opened O_RDWR | O_CREAT: openat without a condition,
    // which a sanitizer build's read-only openat rule would shadow.
    if (seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(openat), 0) != 0)
      return Status(Code::kInternal, "seccomp_rule_add(openat) failed");
#endif
  }
  if (guest.mark_fd >= 0 &&
      seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(pwrite64), 1, SCMP_A0(SCMP_CMP_EQ, uint64_t(guest.mark_fd), 0)) != 0)
    return Status(Code::kInternal, "seccomp_rule_add(pwrite64) failed");
  int rc = seccomp_load(ctx.get());
  if (rc != 0) return Status::FromErrno(-rc, "seccomp_load");
  return Status::Ok();
}

}  // namespace vtpm
