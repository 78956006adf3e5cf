#include "harness/notify_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <sstream>

namespace vtpm::sim {

Result<std::unique_ptr<NotifySocket>> NotifySocket::Bind(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::FromErrno(errno, "socket");
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return Status(Code::kInvalidArgument, "notify socket path too long");
  std::strcpy(a.sun_path, path.c_str());
  unlink(path.c_str());
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return Status::FromErrno(errno, "bind " + path);
  return std::unique_ptr<NotifySocket>(new NotifySocket(std::move(fd), path));
}

NotifySocket::NotifySocket(UniqueFd fd, std::string path)
    : fd_(std::move(fd)), path_(std::move(path)), reader_([this] { ReadLoop(); }) {}

NotifySocket::~NotifySocket() {
  stop_ = true;
  reader_.join();
}

void NotifySocket::ReadLoop() {
  while (!stop_) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    char buf[4096];
    ssize_t n = recv(fd_.get(), buf, sizeof buf, 0);
    if (n <= 0) continue;
    std::istringstream in(std::string(buf, size_t(n)));
    std::lock_guard<std::mutex> l(mu_);
    for (std::string line; std::getline(in, line);) received_.push_back(line);
    cv_.notify_all();
  }
}

Status NotifySocket::WaitFor(const std::string& want, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  bool found = cv_.wait_for(l, timeout, [&] {
    for (; scanned_ < received_.size(); ++scanned_)
      if (received_[scanned_] == want) {
        ++scanned_;
        return true;
      }
    return false;
  });
  return found ? Status() : Status(Code::kTimeout, "no " + want + " from the daemon");
}

std::vector<std::string> NotifySocket::received() const {
  std::lock_guard<std::mutex> l(mu_);
  return received_;
}

}  // namespace vtpm::sim
