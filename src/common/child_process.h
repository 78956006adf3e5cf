// ChildProcess: sole owner of one forked child. Destruction kills it
// (SIGKILL) and reaps it, so no child outlives its owner as a zombie.
//
// Adopt() makes one for a process this one did not fork (a worker of a
// previous daemon, design §2 "Workers outlive the daemon"), held by a pidfd:
// signals go through the pidfd, so they never reach a process that reused
// its pid; it counts as gone once the pidfd is readable, and its real parent
// reaps it, so its wait status is not known (kUnknownExitStatus).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace vtpm {

struct SpawnOptions {
  std::vector<std::string> argv;                 // argv[0] is the executable path
  std::vector<std::string> env;                  // full environment; empty = inherit
  std::vector<std::pair<int, int>> fd_map;       // {parent fd, child fd}; all other fds closed
};

class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();
  ChildProcess(ChildProcess&& o) noexcept;
  ChildProcess& operator=(ChildProcess&& o) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // fork + exec. Every fd not in fd_map is closed in the child (close_range).
  static Result<ChildProcess> Spawn(const SpawnOptions& opts);
  // A process that is not our child, held by `pidfd` (pidfd_open(2)).
  static ChildProcess Adopt(pid_t pid, UniqueFd pidfd);

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  // Sends `sig`; no-op when the child is gone.
  void Signal(int sig) const;
  // Non-blocking reap; returns the wait status once the child has exited.
  std::optional<int> TryWait();
  // Blocks up to `timeout` for exit; returns the wait status or nullopt.
  std::optional<int> WaitFor(std::chrono::milliseconds timeout);
  // SIGKILL and reap.
  void Kill();
  // Gives up ownership without killing (the caller reaps).
  pid_t Release();
  // The pidfd of an adopted process; -1 for a child of ours.
  int pidfd() const { return pidfd_.get(); }

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
  UniqueFd pidfd_;  // adopted: not our child
};

// The "wait status" of an adopted process once it is gone.
inline constexpr int kUnknownExitStatus = -1;

std::string DescribeWaitStatus(int wstatus);

}  // namespace vtpm
