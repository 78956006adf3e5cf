// The service manager's file-descriptor store (sd_notify FDSTORE=1), where a
// serving worker's descriptors outlive the daemon (design §2 "Workers
// outlive the daemon"), and the descriptors it passes back on the next start
// (LISTEN_FDS, LISTEN_FDNAMES).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/unique_fd.h"
#include "tpm/worker_adoption.h"

namespace vtpm {

class SystemdFdStore final : public WorkerFdStore {
 public:
  // Null when there is no service manager to keep descriptors
  // (NOTIFY_SOCKET unset: a daemon run by hand).
  static std::shared_ptr<SystemdFdStore> Connect();
  void Put(const std::string& name, const std::vector<int>& fds) override;
  void Remove(const std::string& name) override;
};

// The descriptors the service manager passed to this process, with their
// names, marked close-on-exec; the LISTEN_* variables are unset.
std::vector<std::pair<std::string, UniqueFd>> TakeListenFds();

}  // namespace vtpm
