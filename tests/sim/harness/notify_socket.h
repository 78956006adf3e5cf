// NotifySocket: a private sd_notify endpoint for tests. Bind it, put its
// path in NOTIFY_SOCKET of the daemon under test, and wait for messages
// such as READY=1, STOPPING=1 or WATCHDOG=1.
//
// A reader thread drains the socket for its whole life, as systemd does: an
// unread unix datagram queue (net.unix.max_dgram_qlen, 10 by default)
// would otherwise block the daemon inside sd_notify() after a few STATUS=
// updates.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace vtpm::sim {

class NotifySocket {
 public:
  static Result<std::unique_ptr<NotifySocket>> Bind(const std::string& path);
  ~NotifySocket();
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& path() const { return path_; }
  // Waits for a line equal to `want` (e.g. "READY=1") among those not yet
  // scanned by an earlier WaitFor.
  Status WaitFor(const std::string& want, std::chrono::milliseconds timeout);
  // Every line received so far.
  std::vector<std::string> received() const;

 private:
  NotifySocket(UniqueFd fd, std::string path);
  void ReadLoop();

  UniqueFd fd_;
  std::string path_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> received_;
  size_t scanned_ = 0;
  std::atomic<bool> stop_{false};
  std::thread reader_;
};

}  // namespace vtpm::sim
