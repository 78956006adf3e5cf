#include "simhost/line_process.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>

namespace vtpm::sim {

Status MakeLinePipes(UniqueFd* w_in, UniqueFd* r_in, UniqueFd* w_out, UniqueFd* r_out) {
  int a[2], b[2];
  if (::pipe2(a, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  r_in->reset(a[0]);
  w_in->reset(a[1]);
  if (::pipe2(b, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  r_out->reset(b[0]);
  w_out->reset(b[1]);
  return Status::Ok();
}

Status LineProcess::SendLine(const std::string& line) {
  std::string l = line + "\n";
  size_t off = 0;
  while (off < l.size()) {
    ssize_t n = ::write(in_.get(), l.data() + off, l.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::FromErrno(errno, "write to child");
    off += size_t(n);
  }
  return Status::Ok();
}

Result<std::string> LineProcess::ReadLine(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Status(Code::kTimeout, "no line from child (have '" + buf_ + "')");
    pollfd pfd{out_.get(), POLLIN, 0};
    int r = ::poll(&pfd, 1, int(left.count()));
    if (r < 0 && errno != EINTR) return Status::FromErrno(errno, "poll");
    if (r <= 0) continue;
    char tmp[512];
    ssize_t n = ::read(out_.get(), tmp, sizeof(tmp));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status(Code::kUnavailable, "child closed its stdout");
    buf_.append(tmp, size_t(n));
  }
}

Result<std::string> LineProcess::Ask(const std::string& line, std::chrono::milliseconds timeout) {
  RETURN_IF_ERROR(SendLine(line));
  return ReadLine(timeout);
}

}  // namespace vtpm::sim
