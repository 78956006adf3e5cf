// NotifySocket: a private sd_notify endpoint for tests. Bind it, put its
// path in NOTIFY_SOCKET of the daemon under test, and wait for messages
// such as READY=1, STOPPING=1 or WATCHDOG=1.
//
// It keeps a file-descriptor store as systemd does for a unit with
// FileDescriptorStoreMax= set: FDSTORE=1 with FDNAME= keeps the descriptors
// sent along, FDSTOREREMOVE=1 drops those of a name, and a descriptor that
// reports POLLHUP or POLLERR is dropped. The store belongs to the daemon
// (DaemonProcess), not to one socket, and outlives its restarts.
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
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace vtpm::sim {

class FdStore {
 public:
  // Copies (dup) of every descriptor kept, with its name, in the order kept;
  // those that report POLLHUP or POLLERR are dropped first.
  std::vector<std::pair<std::string, UniqueFd>> Copies();
  size_t size();
  // Closes everything kept: the unit stopped.
  void Clear();

 private:
  friend class NotifySocket;
  void Put(const std::string& name, std::vector<UniqueFd> fds);
  void Remove(const std::string& name);
  void Prune();  // callers hold mu_
  std::mutex mu_;
  std::vector<std::pair<std::string, UniqueFd>> fds_;
};

class NotifySocket {
 public:
  // `store`: where FDSTORE=1 keeps descriptors (none: they are closed).
  static Result<std::unique_ptr<NotifySocket>> Bind(const std::string& path,
                                                    std::shared_ptr<FdStore> store = nullptr);
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
  NotifySocket(UniqueFd fd, std::string path, std::shared_ptr<FdStore> store);
  void ReadLoop();

  UniqueFd fd_;
  std::string path_;
  std::shared_ptr<FdStore> store_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> received_;
  size_t scanned_ = 0;
  std::atomic<bool> stop_{false};
  std::thread reader_;
};

}  // namespace vtpm::sim
