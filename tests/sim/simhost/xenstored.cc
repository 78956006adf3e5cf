#include "simhost/xenstored.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "common/unique_fd.h"

extern char** environ;

namespace vtpm::sim {
namespace {

bool SocketAccepts(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return fd && ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

}  // namespace

std::vector<std::string> EnvWith(const std::vector<std::string>& overrides) {
  std::vector<std::string> env;
  auto put = [&env](const std::string& kv) {
    std::string key = kv.substr(0, kv.find('=') + 1);
    for (auto& e : env) {
      if (e.compare(0, key.size(), key) == 0) {
        e = kv;
        return;
      }
    }
    env.push_back(kv);
  };
  for (char** e = environ; *e != nullptr; ++e) put(*e);
  for (auto& o : overrides) put(o);  // later entries win
  return env;
}

Result<XenstoredProcess> XenstoredProcess::Start(const XenstoredOptions& opts) {
  if (opts.dir.empty()) return Status(Code::kInvalidArgument, "xenstored: no run dir");
  XenstoredProcess p;
  p.socket_ = opts.dir + "/socket";
  std::string log = opts.dir + "/xenstored.log";
  UniqueFd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log_fd) return Status::FromErrno(errno, "open " + log);
  SpawnOptions so;
  so.argv = {opts.binary, "-N", "-F", opts.dir + "/xenstored.pid"};
  if (opts.trace) {
    so.argv.push_back("-T");
    so.argv.push_back(opts.dir + "/trace.log");
  }
  std::string shim = opts.shim.empty() ? VTPM_SIM_XENSTORED_SHIM : opts.shim;
  // ASAN_OPTIONS/LD_PRELOAD of an instrumented parent must not leak into it.
  so.env = EnvWith({"XENSTORED_RUNDIR=" + opts.dir, "XENSTORED_PATH=" + p.socket_,
                    "LD_PRELOAD=" + shim});
  so.fd_map = {{log_fd.get(), 1}, {log_fd.get(), 2}};
  ASSIGN_OR_RETURN(p.child_, ChildProcess::Spawn(so));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!SocketAccepts(p.socket_)) {
    if (auto ws = p.child_.TryWait())
      return Status(Code::kUnavailable, "xenstored exited (" + DescribeWaitStatus(*ws) + "), see " + log);
    if (std::chrono::steady_clock::now() > deadline)
      return Status(Code::kTimeout, "xenstored socket did not appear, see " + log);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return p;
}

}  // namespace vtpm::sim
