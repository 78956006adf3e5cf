#include "tis_swtpm_link.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>

#include "common/unique_fd.h"

namespace vtpm::testing {
namespace {

constexpr uint32_t kCmdSetLocality = 5;  // swtpm control channel

Result<UniqueFd> Connect(int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::FromErrno(errno, "socket");
  timeval tv{30, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Status::FromErrno(errno, "connect to swtpm port " + std::to_string(port));
  return fd;
}

Status SendAll(int fd, ByteView b) {
  for (size_t done = 0; done < b.size();) {
    ssize_t n = ::send(fd, b.data() + done, b.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::FromErrno(errno, "send to swtpm");
    done += size_t(n);
  }
  return Status::Ok();
}

Status RecvAll(int fd, uint8_t* p, size_t len) {
  for (size_t done = 0; done < len;) {
    ssize_t n = ::recv(fd, p + done, len - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return Status(Code::kUnavailable, "swtpm closed the connection");
    if (n < 0) return Status::FromErrno(errno, "recv from swtpm");
    done += size_t(n);
  }
  return Status::Ok();
}

}  // namespace

Status SwtpmLink::SetLocality(uint8_t locality) {
  ASSIGN_OR_RETURN(UniqueFd fd, Connect(port_ + 1));
  Bytes req;
  AppendBe32(req, kCmdSetLocality);
  req.push_back(locality);
  RETURN_IF_ERROR(SendAll(fd.get(), req));
  uint8_t res[4];
  RETURN_IF_ERROR(RecvAll(fd.get(), res, sizeof res));
  if (LoadBe32(res) != 0)
    return Status(Code::kTpmError, "swtpm SET_LOCALITY " + std::to_string(locality) + " failed", LoadBe32(res));
  locality_ = locality;
  return Status::Ok();
}

Result<Bytes> SwtpmLink::Execute(uint8_t locality, ByteView command) {
  if (locality != locality_) RETURN_IF_ERROR(SetLocality(locality));
  ASSIGN_OR_RETURN(UniqueFd fd, Connect(port_));
  RETURN_IF_ERROR(SendAll(fd.get(), command));
  Bytes rsp(10);
  RETURN_IF_ERROR(RecvAll(fd.get(), rsp.data(), rsp.size()));
  uint32_t size = LoadBe32(rsp.data() + 2);
  if (size < 10 || size > 4096) return Status(Code::kCorruption, "swtpm response size " + std::to_string(size));
  rsp.resize(size);
  RETURN_IF_ERROR(RecvAll(fd.get(), rsp.data() + 10, size - 10));
  return rsp;
}

}  // namespace vtpm::testing
