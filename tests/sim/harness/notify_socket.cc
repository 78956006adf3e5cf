#include "harness/notify_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <sstream>

namespace vtpm::sim {

Result<NotifySocket> NotifySocket::Bind(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::FromErrno(errno, "socket");
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return Status(Code::kInvalidArgument, "notify socket path too long");
  std::strcpy(a.sun_path, path.c_str());
  unlink(path.c_str());
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return Status::FromErrno(errno, "bind " + path);
  return NotifySocket(std::move(fd), path);
}

Status NotifySocket::WaitFor(const std::string& want, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    for (; scanned_ < received_.size(); ++scanned_)
      if (received_[scanned_] == want) {
        ++scanned_;
        return {};
      }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Status(Code::kTimeout, "no " + want + " from the daemon");
    pollfd p{fd_.get(), POLLIN, 0};
    if (poll(&p, 1, int(left.count())) <= 0) continue;
    char buf[4096];
    ssize_t n = recv(fd_.get(), buf, sizeof buf, 0);
    if (n <= 0) continue;
    std::istringstream in(std::string(buf, size_t(n)));
    for (std::string line; std::getline(in, line);) received_.push_back(line);
  }
}

}  // namespace vtpm::sim
