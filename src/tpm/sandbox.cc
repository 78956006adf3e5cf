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

#include <cerrno>
#include <memory>

namespace vtpm {
namespace {

Status CloseInheritedFds(int keep_fd) {
  // stdin/stdout are not the worker's; stderr stays for diagnostics.
  close(STDIN_FILENO);
  close(STDOUT_FILENO);
  if (keep_fd > STDERR_FILENO + 1 &&
      syscall(SYS_close_range, unsigned(STDERR_FILENO + 1), unsigned(keep_fd - 1), 0U) != 0)
    return Status::FromErrno(errno, "close_range");
  if (syscall(SYS_close_range, unsigned(keep_fd + 1), ~0U, 0U) != 0)
    return Status::FromErrno(errno, "close_range");
  return Status::Ok();
}

Status SetLimit(int resource, rlim_t value, const char* what) {
  struct rlimit rl = {value, value};
  if (setrlimit(resource, &rl) != 0) return Status::FromErrno(errno, what);
  return Status::Ok();
}

struct FilterDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};

}  // namespace

Status DropPrivileges(const SandboxOptions& opts) {
  if (opts.keep_fd <= STDERR_FILENO) return Status(Code::kInvalidArgument, "bad worker fd");
  RETURN_IF_ERROR(CloseInheritedFds(opts.keep_fd));
  RETURN_IF_ERROR(SetLimit(RLIMIT_NOFILE, rlim_t(opts.keep_fd + 1), "RLIMIT_NOFILE"));
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
  // Set after the uid change, which clears it.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
    return Status::FromErrno(errno, "PR_SET_PDEATHSIG");
  if (getppid() == 1) return Status(Code::kUnavailable, "parent already gone");
  return Status::Ok();
}

Status LoadSyscallFilter() {
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
  int rc = seccomp_load(ctx.get());
  if (rc != 0) return Status::FromErrno(-rc, "seccomp_load");
  return Status::Ok();
}

}  // namespace vtpm
