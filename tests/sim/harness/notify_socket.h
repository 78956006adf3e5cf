// NotifySocket: a private sd_notify endpoint for tests. Bind it, put its
// path in NOTIFY_SOCKET of the daemon under test, and wait for messages
// such as READY=1, STOPPING=1 or WATCHDOG=1.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace vtpm::sim {

class NotifySocket {
 public:
  static Result<NotifySocket> Bind(const std::string& path);
  const std::string& path() const { return path_; }
  // Waits for a datagram containing the line `want` (e.g. "READY=1"); every
  // line received on the way is kept in received().
  Status WaitFor(const std::string& want, std::chrono::milliseconds timeout);
  const std::vector<std::string>& received() const { return received_; }

 private:
  NotifySocket(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  UniqueFd fd_;
  std::string path_;
  std::vector<std::string> received_;
  size_t scanned_ = 0;
};

}  // namespace vtpm::sim
