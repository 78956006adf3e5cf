#include "daemon/control_server.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include "common/log.h"

namespace vtpm {
namespace {

constexpr std::chrono::seconds kRequestDeadline{5};
constexpr int kMaxConnections = 32;

Result<sockaddr_un> SocketAddress(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path)
    return Status(Code::kInvalidArgument, "control socket path " + path + " is longer than 107 bytes");
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  return sa;
}

// "uid 0 pid 1234 (vtpmctl)": the program name from /proc (it may be gone already).
std::string Requester(const ucred& cred) {
  std::string who = "uid " + std::to_string(cred.uid) + " pid " + std::to_string(cred.pid);
  std::ifstream comm("/proc/" + std::to_string(cred.pid) + "/comm");
  std::string name;
  if (std::getline(comm, name) && !name.empty()) who += " (" + name + ")";
  return who;
}
}  // namespace

struct ControlServer::Conn {
  UniqueFd fd;
  std::string in;
  std::string out;
  size_t written = 0;
  bool answered = false;
  EventLoop::TimerId deadline = 0;
  std::string requester;  // ControlRequest::requester
};

Result<std::unique_ptr<ControlServer>> ControlServer::Start(EventLoop& loop, const std::string& path,
                                                            Handler handler) {
  ASSIGN_OR_RETURN(sockaddr_un sa, SocketAddress(path));
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Status::FromErrno(errno, "control socket");
  {
    // A socket file that nobody answers is left over from a killed daemon.
    UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe && connect(probe.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0)
      return Status(Code::kBusy, "another vtpmmgrd answers on " + path + "; stop it first");
    unlink(path.c_str());
  }
  mode_t old = umask(0177);  // the socket file is created 0600
  int rc = bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  int err = errno;
  umask(old);
  if (rc != 0) return Status::FromErrno(err, "bind control socket " + path);
  if (chmod(path.c_str(), 0600) != 0) return Status::FromErrno(errno, "chmod " + path);
  if (listen(fd.get(), 16) != 0) return Status::FromErrno(errno, "listen on " + path);
  std::unique_ptr<ControlServer> s(new ControlServer(loop, std::move(fd), path, std::move(handler)));
  RETURN_IF_ERROR(loop.Add(s->listen_fd_.get(), EPOLLIN, [p = s.get()](uint32_t) { p->OnAccept(); }));
  return s;
}

ControlServer::ControlServer(EventLoop& loop, UniqueFd fd, std::string path, Handler handler)
    : loop_(loop), listen_fd_(std::move(fd)), path_(std::move(path)), handler_(std::move(handler)) {}

ControlServer::~ControlServer() {
  *alive_ = false;
  while (!conns_.empty()) Close(conns_.begin()->first);
  loop_.Remove(listen_fd_.get());
  unlink(path_.c_str());
}

void ControlServer::OnAccept() {
  for (;;) {
    UniqueFd c(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!c) {
      if (errno != EAGAIN && errno != EINTR) LOG_WARN("control socket accept: {}", strerror(errno));
      return;
    }
    if (conns_.size() >= kMaxConnections) {
      LOG_WARN("control socket: {} connections open, refusing another", conns_.size());
      continue;
    }
    int fd = c.get();
    auto conn = std::make_unique<Conn>();
    conn->fd = std::move(c);
    std::weak_ptr<bool> alive = alive_;
    conn->deadline = loop_.AddTimer(kRequestDeadline, [this, alive, fd] {
      if (auto a = alive.lock(); a && *a && conns_.count(fd) && !conns_[fd]->answered) Close(fd);
    });
    conns_[fd] = std::move(conn);
    Status st = loop_.Add(fd, EPOLLIN, [this, fd](uint32_t ev) {
      if (ev & EPOLLOUT) return OnWritable(fd);
      if (ev & EPOLLIN) return OnReadable(fd);
      if (ev & (EPOLLHUP | EPOLLERR)) Close(fd);  // peer gone; a pending reply is dropped
    });
    if (!st.ok()) {
      LOG_WARN("control socket: {}", st.message());
      conns_.erase(fd);
      continue;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    const bool known = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
    if (known) conns_[fd]->requester = Requester(cred);
    if (!known || cred.uid != 0) {
      LOG_WARN("control socket: refused a request from uid {} pid {} (root only)", cred.uid, cred.pid);
      ControlResponse rsp;
      rsp.result = ResultCode::kPermissionDenied;
      rsp.error = "vtpmctl must run as root (uid " + std::to_string(cred.uid) + " is not allowed); use sudo";
      Respond(fd, rsp);
    }
  }
}

void ControlServer::OnReadable(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end() || it->second->answered) return;
  Conn& c = *it->second;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) return Close(fd);  // peer gone before a full request
    c.in.append(buf, size_t(n));
    size_t nl = c.in.find('\n');
    if (nl == std::string::npos && c.in.size() <= kMaxControlLine) continue;
    ControlResponse bad;
    if (nl == std::string::npos) {
      bad.result = ResultCode::kBadRequest;
      bad.error = "request longer than 64 KiB; send one JSON object per line";
      return Respond(fd, bad);
    }
    auto req = ParseRequest(std::string_view(c.in).substr(0, nl));
    if (!req.ok()) {
      bad.result = req.status().code() == Code::kFailedPrecondition ? ResultCode::kUnsupportedVersion
                                                                     : ResultCode::kBadRequest;
      bad.error = req.status().message();
      return Respond(fd, bad);
    }
    req->requester = c.requester;
    c.answered = true;  // stop reading; the reply comes through Respond
    loop_.Modify(fd, 0).ok();
    std::weak_ptr<bool> alive = alive_;
    handler_(*req, [this, alive, fd, conn = &c](ControlResponse rsp) {
      if (auto a = alive.lock(); !a || !*a) return;
      auto found = conns_.find(fd);
      if (found == conns_.end() || found->second.get() != conn) return;  // closed meanwhile
      Respond(fd, std::move(rsp));
    });
    return;
  }
}

void ControlServer::Respond(int fd, ControlResponse rsp) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  c.answered = true;
  c.out = rsp.encoded.empty() ? EncodeResponse(rsp) : std::move(rsp.encoded);
  c.written = 0;
  loop_.CancelTimer(c.deadline);
  // A client that never reads cannot hold the slot forever.
  std::weak_ptr<bool> alive = alive_;
  Conn* conn = &c;
  c.deadline = loop_.AddTimer(kRequestDeadline, [this, alive, fd, conn] {
    if (auto a = alive.lock(); !a || !*a) return;
    auto found = conns_.find(fd);
    if (found != conns_.end() && found->second.get() == conn) Close(fd);
  });
  OnWritable(fd);
}

void ControlServer::OnWritable(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  while (c.written < c.out.size()) {
    ssize_t n = send(fd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      loop_.Modify(fd, EPOLLOUT).ok();
      return;
    }
    if (n <= 0) return Close(fd);
    c.written += size_t(n);
  }
  Close(fd);
}

void ControlServer::Close(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  loop_.CancelTimer(it->second->deadline);
  loop_.Remove(fd);
  conns_.erase(it);
}

}  // namespace vtpm
