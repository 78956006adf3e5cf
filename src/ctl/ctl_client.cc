#include "ctl/ctl_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "common/unique_fd.h"

namespace vtpm::ctl {

Result<ControlResponse> Call(const std::string& socket_path, const ControlRequest& req,
                             std::chrono::seconds timeout) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof sa.sun_path)
    return Status(Code::kInvalidArgument, "socket path " + socket_path + " is too long; use a shorter --socket");
  std::memcpy(sa.sun_path, socket_path.c_str(), socket_path.size() + 1);
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::FromErrno(errno, "socket");
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    int err = errno;
    if (err == EACCES || err == EPERM)
      return Status(Code::kPermissionDenied, "permission denied on " + socket_path +
                                                 ": vtpmctl must run as root (use sudo)");
    return Status(Code::kUnavailable, "cannot reach vtpmmgrd at " + socket_path + " (" + std::strerror(err) +
                                          "); start it with 'systemctl start vtpmmgrd', or pass the right --socket");
  }
  std::string out = EncodeRequest(req);
  size_t sent = 0;
  while (sent < out.size()) {
    ssize_t n = send(fd.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the daemon may have answered and closed already (refusal): read it
    sent += size_t(n);
  }
  std::string in;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[8192];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return Status(Code::kTimeout, "vtpmmgrd did not answer within " + std::to_string(timeout.count()) +
                                        " s; check 'journalctl -u vtpmmgrd'");
    pollfd p{fd.get(), POLLIN, 0};
    int r = poll(&p, 1, int(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    in.append(buf, size_t(n));
    if (in.size() > kMaxResponseLine) return Status(Code::kInvalidArgument, "vtpmmgrd's answer is too long");
    if (in.back() == '\n') break;
  }
  if (in.empty() || in.back() != '\n')
    return Status(Code::kUnavailable, "vtpmmgrd closed the connection without an answer; check 'journalctl -u vtpmmgrd'");
  in.pop_back();
  return ParseResponse(in);
}

}  // namespace vtpm::ctl
