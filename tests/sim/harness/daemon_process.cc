#include "harness/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

namespace vtpm::sim {

DaemonProcess::DaemonProcess(SimHost& host, DaemonOptions opts) : host_(host), opts_(std::move(opts)) {
  config_path_ = host_.dir() + "/vtpmmgrd.conf";
  log_path_ = host_.dir() + "/vtpmmgrd.log";
}

DaemonProcess::~DaemonProcess() { Kill(); }

Status DaemonProcess::Start() {
  mkdir(state_dir().c_str(), 0700);
  mkdir(runtime_dir().c_str(), 0700);
  {
    std::ofstream c(config_path_);
    c << "[daemon]\nstate_dir = \"" << state_dir() << "\"\nruntime_dir = \"" << runtime_dir()
      << "\"\nlog_level = \"" << opts_.log_level << "\"\nlog_target = \"" << opts_.log_target << "\"\n"
      << opts_.daemon_config;
    if (opts_.extra_config.find("[engine]") == std::string::npos)
      c << "[engine]\nkind = \"" << opts_.engine << "\"\n";
    c << opts_.extra_config;
  }
  auto ns = NotifySocket::Bind(host_.dir() + "/notify-" + std::to_string(++starts_) + ".sock");
  if (!ns.ok()) return ns.status();
  notify_ = std::move(ns).value();

  UniqueFd log(open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log) return Status::FromErrno(errno, "open " + log_path_);
  SpawnOptions o;
  o.argv = {VTPM_DAEMON_PATH, "--config", config_path_};
  o.env = {"NOTIFY_SOCKET=" + notify_->path(), "VTPM_WORKER_PATH=" VTPM_WORKER_BIN};
  o.env.insert(o.env.end(), opts_.env.begin(), opts_.env.end());
  o.fd_map = {{log.get(), 2}};
  auto c = host_.SpawnWithShim(std::move(o));
  if (!c.ok()) return c.status();
  child_ = std::move(c).value();
  Status st = notify_->WaitFor("READY=1", std::chrono::seconds(20));
  if (!st.ok()) return st.Annotate("daemon did not start; its log:\n" + Log());
  return {};
}

Result<int> DaemonProcess::Stop() {
  child_.Signal(SIGTERM);
  auto ws = child_.WaitFor(std::chrono::seconds(10));
  if (!ws) return Status(Code::kTimeout, "daemon did not exit within 10 s of SIGTERM");
  return *ws;
}

void DaemonProcess::Kill() { child_.Kill(); }

std::string DaemonProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace vtpm::sim
