#include "bench/swtpm12.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "tpm/tpm12.h"

namespace vtpm::bench {
namespace {

Status WriteAll(int fd, ByteView b) {
  size_t off = 0;
  while (off < b.size()) {
    ssize_t n = ::write(fd, b.data() + off, b.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::FromErrno(errno, "write to swtpm");
    off += size_t(n);
  }
  return Status::Ok();
}

Status ReadExactly(int fd, uint8_t* p, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = ::read(fd, p + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return Status(Code::kUnavailable, "swtpm closed the connection");
    if (n < 0) return Status::FromErrno(errno, "read from swtpm");
    off += size_t(n);
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Swtpm12>> Swtpm12::Start(const std::string& dir) {
  std::unique_ptr<Swtpm12> s(new Swtpm12());
  const std::string state = dir + "/state", sock = dir + "/tpm.sock", ctrl = dir + "/ctrl.sock";
  std::error_code ec;
  std::filesystem::create_directories(state, ec);
  if (ec) return Status(Code::kIoError, "mkdir " + state + ": " + ec.message());
  SpawnOptions o;
  o.argv = {"/usr/bin/swtpm", "socket", "--tpmstate", "dir=" + state, "--server", "type=unixio,path=" + sock,
            "--ctrl", "type=unixio,path=" + ctrl, "--flags", "not-need-init"};
  ASSIGN_OR_RETURN(s->proc_, ChildProcess::Spawn(o));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
  for (int i = 0;; ++i) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      s->conn_ = std::move(fd);
      break;
    }
    if (i == 100) return Status(Code::kUnavailable, "swtpm did not open " + sock);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSIGN_OR_RETURN(Bytes rsp, s->Transact(tpm12::Startup(tpm12::kStClear)));
  if (tpm12::ResponseCode(rsp) != tpm12::kSuccess)
    return Status(Code::kTpmError, "swtpm TPM 1.2 refused TPM_Startup(ST_CLEAR)");
  return s;
}

Result<Bytes> Swtpm12::Transact(ByteView cmd) {
  RETURN_IF_ERROR(WriteAll(conn_.get(), cmd));
  Bytes rsp(10);
  RETURN_IF_ERROR(ReadExactly(conn_.get(), rsp.data(), 10));
  const uint32_t len = LoadBe32(rsp.data() + 2);
  if (len < 10 || len > 64 * 1024) return Status(Code::kCorruption, "swtpm response paramSize " + std::to_string(len));
  rsp.resize(len);
  RETURN_IF_ERROR(ReadExactly(conn_.get(), rsp.data() + 10, len - 10));
  return rsp;
}

}  // namespace vtpm::bench
