#include "guest/tcsd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "common/unique_fd.h"
#include "simhost/xenstored.h"

namespace vtpm::sim {
namespace {

using Clock = std::chrono::steady_clock;

Result<uint16_t> FreeTcpPort() {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return Status::FromErrno(errno, "finding a free port");
  return ntohs(a.sin_port);
}

bool TcpAccepts(uint16_t port) {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return s && ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
}

}  // namespace

Result<std::unique_ptr<TcsdInstance>> TcsdInstance::Start(const std::string& tpm_socket) {
  std::unique_ptr<TcsdInstance> t(new TcsdInstance);
  std::string tmpl = "/tmp/vtpm-tcsd-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return Status::FromErrno(errno, "mkdtemp");
  t->dir_ = tmpl;
  ::chmod(t->dir_.c_str(), 0755);  // tcsd drops to user tss
  const passwd* tss_user = ::getpwnam("tss");
  const group* tss_group = ::getgrnam("tss");
  if (tss_user == nullptr || tss_group == nullptr) return Status(Code::kNotFound, "no tss user/group (trousers)");
  const std::string ps = t->dir_ + "/ps";
  if (::mkdir(ps.c_str(), 0700) != 0 || ::chown(ps.c_str(), tss_user->pw_uid, tss_group->gr_gid) != 0)
    return Status::FromErrno(errno, "tcsd storage dir " + ps);
  ASSIGN_OR_RETURN(t->port_, FreeTcpPort());
  const std::string conf = t->dir_ + "/tcsd.conf";
  {
    std::ofstream c(conf);
    c << "port = " << t->port_ << "\nsystem_ps_file = " << ps << "/system.data\n";
    if (!c.flush()) return Status(Code::kIoError, "writing " + conf);
  }
  if (::chown(conf.c_str(), 0, tss_group->gr_gid) != 0 || ::chmod(conf.c_str(), 0640) != 0)
    return Status::FromErrno(errno, "tcsd.conf must be root:tss 0640");
  const std::string log = t->dir_ + "/tcsd.log";
  UniqueFd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  SpawnOptions o;
  o.argv = {"/usr/sbin/tcsd", "-f", "-e", "-c", conf};
  o.env = EnvWith({"TCSD_USE_TCP_DEVICE=1", "TCSD_TCP_DEVICE_PORT=1", "TCSD_TCP_DEVICE_HOSTNAME=127.0.0.1",
                   "TCSD_UN_SOCKET_DEVICE_PATH=" + tpm_socket});
  o.fd_map = {{log_fd.get(), 1}, {log_fd.get(), 2}};
  ASSIGN_OR_RETURN(t->tcsd_, ChildProcess::Spawn(o));
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!TcpAccepts(t->port_)) {
    if (auto ws = t->tcsd_.TryWait())
      return Status(Code::kUnavailable, "tcsd exited (" + DescribeWaitStatus(*ws) + "), see " + log);
    if (Clock::now() > deadline) return Status(Code::kTimeout, "tcsd did not listen, see " + log);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return t;
}

TcsdInstance::~TcsdInstance() {
  tcsd_.Kill();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

Result<ToolOutput> TcsdInstance::Run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) const {
  if (argv.empty()) return Status(Code::kInvalidArgument, "no command");
  return RunCapture(argv, {"TSS_TCSD_PORT=" + std::to_string(port_), "TSS_TCSD_HOSTNAME=127.0.0.1"}, timeout);
}

}  // namespace vtpm::sim
