#include "common/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include <linux/close_range.h>
#include <sys/syscall.h>

namespace vtpm {

ChildProcess::~ChildProcess() { Kill(); }

ChildProcess::ChildProcess(ChildProcess&& o) noexcept : pidfd_(std::move(o.pidfd_)) { pid_ = o.Release(); }

ChildProcess& ChildProcess::operator=(ChildProcess&& o) noexcept {
  if (this != &o) {
    Kill();
    pidfd_ = std::move(o.pidfd_);
    pid_ = o.Release();
  }
  return *this;
}

ChildProcess ChildProcess::Adopt(pid_t pid, UniqueFd pidfd) {
  ChildProcess c(pid);
  c.pidfd_ = std::move(pidfd);
  return c;
}

Result<ChildProcess> ChildProcess::Spawn(const SpawnOptions& opts) {
  if (opts.argv.empty()) return Status(Code::kInvalidArgument, "spawn: empty argv");
  std::vector<char*> argv, envp;
  for (auto& a : opts.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : opts.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) return Status::FromErrno(errno, "fork");
  if (pid == 0) {
    // Child: only async-signal-safe calls from here on.
    // Move mapped fds above the highest target first so dup2 cannot clobber a source.
    int high = 0;
    for (auto& [from, to] : opts.fd_map) high = std::max(high, std::max(from, to));
    std::vector<int> tmp;
    for (auto& m : opts.fd_map) {
      int t = fcntl(m.first, F_DUPFD, high + 1);
      if (t < 0) _exit(127);
      tmp.push_back(t);
    }
    for (size_t i = 0; i < opts.fd_map.size(); ++i) {
      if (dup2(tmp[i], opts.fd_map[i].second) < 0) _exit(127);
    }
    // Close every fd except stdio and the mapped targets.
    int max_target = 2;
    for (auto& m : opts.fd_map) max_target = std::max(max_target, m.second);
    for (int fd = 3; fd <= max_target; ++fd) {
      bool keep = false;
      for (auto& m : opts.fd_map) keep |= (m.second == fd);
      if (!keep) close(fd);
    }
    syscall(SYS_close_range, unsigned(max_target + 1), ~0U, 0U);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (opts.env.empty())
      execv(argv[0], argv.data());
    else
      execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  return ChildProcess(pid);
}

void ChildProcess::Signal(int sig) const {
  if (pid_ <= 0) return;
  if (pidfd_.valid())
    syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0u);
  else
    ::kill(pid_, sig);
}

std::optional<int> ChildProcess::TryWait() {
  if (pid_ <= 0) return std::nullopt;
  if (pidfd_.valid()) {
    pollfd p{pidfd_.get(), POLLIN, 0};
    if (poll(&p, 1, 0) == 0) return std::nullopt;
    pid_ = -1;
    pidfd_.reset();
    return kUnknownExitStatus;
  }
  int ws = 0;
  pid_t r = waitpid(pid_, &ws, WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) {
    pid_ = -1;
    return r == -1 ? 0 : ws;
  }
  return std::nullopt;
}

std::optional<int> ChildProcess::WaitFor(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (auto ws = TryWait()) return ws;
    if (pid_ <= 0) return std::nullopt;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void ChildProcess::Kill() {
  if (pid_ <= 0) return;
  if (pidfd_.valid()) {
    Signal(SIGKILL);
    pollfd p{pidfd_.get(), POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    pidfd_.reset();
    return;
  }
  ::kill(pid_, SIGKILL);
  int ws;
  while (waitpid(pid_, &ws, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

pid_t ChildProcess::Release() {
  pidfd_.reset();
  return std::exchange(pid_, -1);
}

std::string DescribeWaitStatus(int ws) {
  if (ws == kUnknownExitStatus) return "ended (not a child of this daemon: its exit status is not known)";
  if (WIFEXITED(ws)) return "exited with status " + std::to_string(WEXITSTATUS(ws));
  if (WIFSIGNALED(ws)) return std::string("killed by signal ") + strsignal(WTERMSIG(ws));
  return "stopped";
}

}  // namespace vtpm
