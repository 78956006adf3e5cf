#include "simhost/run_capture.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/child_process.h"
#include "common/unique_fd.h"
#include "simhost/xenstored.h"

namespace vtpm::sim {
namespace {

using Clock = std::chrono::steady_clock;

std::string ResolveTool(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  for (const char* d : {"/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"}) {
    std::string p = d + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return name;
}

}  // namespace

Result<ToolOutput> RunCapture(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                              std::chrono::milliseconds timeout) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  UniqueFd r(p[0]), w(p[1]);
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  SpawnOptions o;
  o.argv = argv;
  o.argv[0] = ResolveTool(argv[0]);
  o.env = EnvWith(env);
  o.fd_map = {{null.get(), 0}, {w.get(), 1}, {w.get(), 2}};
  ASSIGN_OR_RETURN(ChildProcess child, ChildProcess::Spawn(o));
  w.reset();
  ToolOutput out;
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      child.Kill();
      out.output += "\n<timed out>";
      return out;
    }
    pollfd pfd{r.get(), POLLIN, 0};
    if (::poll(&pfd, 1, int(left.count())) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(r.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.output.append(buf, size_t(n));
  }
  auto ws = child.WaitFor(std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()));
  if (ws && WIFEXITED(*ws)) out.exit_code = WEXITSTATUS(*ws);
  return out;
}

}  // namespace vtpm::sim
