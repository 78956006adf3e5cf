// ChildProcess: sole owner of one forked child. Destruction kills it
// (SIGKILL) and reaps it, so no child outlives its owner as a zombie.
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

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
};

std::string DescribeWaitStatus(int wstatus);

}  // namespace vtpm
