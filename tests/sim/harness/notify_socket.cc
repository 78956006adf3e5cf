#include "harness/notify_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <sstream>

namespace vtpm::sim {

std::vector<std::pair<std::string, UniqueFd>> FdStore::Copies() {
  std::lock_guard<std::mutex> l(mu_);
  Prune();
  std::vector<std::pair<std::string, UniqueFd>> out;
  for (auto& [name, fd] : fds_) out.emplace_back(name, UniqueFd(fcntl(fd.get(), F_DUPFD_CLOEXEC, 0)));
  return out;
}

size_t FdStore::size() {
  std::lock_guard<std::mutex> l(mu_);
  Prune();
  return fds_.size();
}

void FdStore::Clear() {
  std::lock_guard<std::mutex> l(mu_);
  fds_.clear();
}

void FdStore::Put(const std::string& name, std::vector<UniqueFd> fds) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto& fd : fds) fds_.emplace_back(name, std::move(fd));
  Prune();
}

void FdStore::Remove(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  std::erase_if(fds_, [&](const auto& e) { return e.first == name; });
}

void FdStore::Prune() {
  std::erase_if(fds_, [](const auto& e) {
    pollfd p{e.second.get(), 0, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL));
  });
}

Result<std::unique_ptr<NotifySocket>> NotifySocket::Bind(const std::string& path, std::shared_ptr<FdStore> store) {
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::FromErrno(errno, "socket");
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return Status(Code::kInvalidArgument, "notify socket path too long");
  std::strcpy(a.sun_path, path.c_str());
  unlink(path.c_str());
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return Status::FromErrno(errno, "bind " + path);
  return std::unique_ptr<NotifySocket>(new NotifySocket(std::move(fd), path, std::move(store)));
}

NotifySocket::NotifySocket(UniqueFd fd, std::string path, std::shared_ptr<FdStore> store)
    : fd_(std::move(fd)), path_(std::move(path)), store_(std::move(store)), reader_([this] { ReadLoop(); }) {}

NotifySocket::~NotifySocket() {
  stop_ = true;
  reader_.join();
}

void NotifySocket::ReadLoop() {
  while (!stop_) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    char buf[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
    if (n <= 0) continue;
    std::vector<UniqueFd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        fds.emplace_back(fd);
      }
    }
    std::istringstream in(std::string(buf, size_t(n)));
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    auto has = [&](const std::string& want) { return std::find(lines.begin(), lines.end(), want) != lines.end(); };
    std::string name;
    for (auto& line : lines)
      if (line.rfind("FDNAME=", 0) == 0) name = line.substr(7);
    if (store_ && has("FDSTORE=1") && !name.empty()) store_->Put(name, std::move(fds));
    if (store_ && has("FDSTOREREMOVE=1") && !name.empty()) store_->Remove(name);
    std::lock_guard<std::mutex> l(mu_);
    for (auto& line : lines) received_.push_back(line);
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
