#include "guest/tpm_socket_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace vtpm::sim {
namespace {

constexpr size_t kMaxCommand = 4096;

// Reads one TPM command; false on EOF, error or a malformed header.
bool ReadCommand(int fd, Bytes* out) {
  uint8_t buf[kMaxCommand];
  size_t have = 0;
  for (;;) {
    if (have >= 6) {
      uint32_t want = LoadBe32(buf + 2);
      if (want < 10 || want > kMaxCommand) return false;
      if (have >= want) {
        out->assign(buf, buf + want);
        return true;
      }
    }
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 10000) <= 0) return false;
    ssize_t n = ::read(fd, buf + have, sizeof(buf) - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    have += size_t(n);
  }
}

bool WriteAll(int fd, ByteView b) {
  size_t off = 0;
  while (off < b.size()) {
    ssize_t n = ::send(fd, b.data() + off, b.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += size_t(n);
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<TpmSocketServer>> TpmSocketServer::Start(GuestFrontend& frontend, const std::string& path,
                                                                std::chrono::milliseconds duration, mode_t mode) {
  std::unique_ptr<TpmSocketServer> s(new TpmSocketServer(frontend, path, duration));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Status(Code::kInvalidArgument, "socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  s->listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s->listen_) return Status::FromErrno(errno, "socket");
  ::unlink(path.c_str());
  if (::bind(s->listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    return Status::FromErrno(errno, "bind " + path);
  if (::chmod(path.c_str(), mode) != 0) return Status::FromErrno(errno, "chmod " + path);
  if (::listen(s->listen_.get(), 8) != 0) return Status::FromErrno(errno, "listen " + path);
  s->stop_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!s->stop_) return Status::FromErrno(errno, "eventfd");
  s->thread_ = std::thread([p = s.get()] { p->Run(); });
  return s;
}

TpmSocketServer::~TpmSocketServer() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
    thread_.join();
  }
  if (listen_) ::unlink(path_.c_str());
}

std::string TpmSocketServer::last_error() const {
  std::lock_guard<std::mutex> l(mu_);
  return last_error_;
}

void TpmSocketServer::Run() {
  for (;;) {
    pollfd pfd[2] = {{listen_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    if (::poll(pfd, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (pfd[1].revents) return;
    if (pfd[0].revents & POLLIN) {
      UniqueFd c(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (c) ServeConnection(c.get());
    }
  }
}

void TpmSocketServer::ServeConnection(int fd) {
  Bytes cmd;
  while (ReadCommand(fd, &cmd)) {
    auto r = frontend_.Transmit(cmd, duration_);
    if (!r.ok()) {
      failed_++;
      std::lock_guard<std::mutex> l(mu_);
      last_error_ = r.status().ToString();
      return;
    }
    served_++;
    if (!WriteAll(fd, *r)) return;
  }
}

}  // namespace vtpm::sim
