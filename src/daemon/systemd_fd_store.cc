#include "daemon/systemd_fd_store.h"

#include <fcntl.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>

#include "common/log.h"

namespace vtpm {

std::shared_ptr<SystemdFdStore> SystemdFdStore::Connect() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  if (!socket || !*socket) return nullptr;
  return std::make_shared<SystemdFdStore>();
}

void SystemdFdStore::Put(const std::string& name, const std::vector<int>& fds) {
  const std::string msg = "FDSTORE=1\nFDNAME=" + name;
  int r = sd_pid_notify_with_fds(0, 0, msg.c_str(), fds.data(), unsigned(fds.size()));
  if (r <= 0) LOG_WARN("handing {} to the service manager's fd store failed ({}): the worker dies with the daemon", name, r);
}

void SystemdFdStore::Remove(const std::string& name) {
  const std::string msg = "FDSTOREREMOVE=1\nFDNAME=" + name;
  sd_pid_notify(0, 0, msg.c_str());
}

std::vector<std::pair<std::string, UniqueFd>> TakeListenFds() {
  std::vector<std::pair<std::string, UniqueFd>> out;
  char** names = nullptr;
  const int n = sd_listen_fds_with_names(1, &names);
  for (int i = 0; i < n; ++i) {
    const int fd = SD_LISTEN_FDS_START + i;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    out.emplace_back(names && names[i] ? names[i] : "unknown", UniqueFd(fd));
  }
  if (names) {
    for (int i = 0; i < n; ++i) std::free(names[i]);
    std::free(names);
  }
  return out;
}

}  // namespace vtpm
