#include "harness/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace vtpm::sim {

std::string EffectiveDataPath(const std::string& configured) {
  if (!configured.empty()) return configured;
  const char* env = getenv("VTPM_SIM_DATA_PATH");
  return env ? env : "";
}

DaemonProcess::DaemonProcess(SimHost& host, DaemonOptions opts) : host_(host), opts_(std::move(opts)) {
  if (opts_.fd_store) fd_store_ = opts_.fd_store;
  base_ = opts_.name.empty() ? host_.dir() : host_.dir() + "/" + opts_.name;
  mkdir(base_.c_str(), 0700);
  config_path_ = base_ + "/vtpmmgrd.conf";
  log_path_ = base_ + "/vtpmmgrd.log";
}

DaemonProcess::~DaemonProcess() { Kill(); }

Result<ChildProcess> DaemonProcess::Spawn(std::vector<std::string> args) {
  mkdir(runtime_dir().c_str(), 0700);
  {
    std::ofstream c(config_path_);
    c << "[daemon]\nstate_dir = \"" << state_dir() << "\"\nruntime_dir = \"" << runtime_dir()
      << "\"\nlog_level = \"" << opts_.log_level << "\"\nlog_target = \"" << opts_.log_target << "\"\n"
      << opts_.daemon_config;
    if (opts_.extra_config.find("[engine]") == std::string::npos)
      c << "[engine]\nkind = \"" << opts_.engine << "\"\n";
    c << opts_.extra_config;
    const std::string data_path = EffectiveDataPath(opts_.data_path);
    if (!data_path.empty() && opts_.extra_config.find("[xen]") == std::string::npos)
      c << "[xen]\ndata_path = \"" << data_path << "\"\n";
  }
  auto ns = NotifySocket::Bind(base_ + "/notify-" + std::to_string(++starts_) + ".sock", fd_store_);
  if (!ns.ok()) return ns.status();
  notify_ = std::move(ns).value();

  UniqueFd log(open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log) return Status::FromErrno(errno, "open " + log_path_);
  SpawnOptions o;
  // What the fd store holds goes to fds 3.. as systemd passes it. LISTEN_PID
  // must be the daemon's own pid: a shell learns it and execs the daemon.
  auto stored = fd_store_->Copies();
  std::string names;
  if (!stored.empty()) o.argv = {"/bin/sh", "-c", "LISTEN_PID=$$ exec \"$@\"", "sh"};
  o.argv.insert(o.argv.end(), opts_.wrapper.begin(), opts_.wrapper.end());
  for (const char* a : {VTPM_DAEMON_PATH, "--config"}) o.argv.push_back(a);
  o.argv.push_back(config_path_);
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.env = {"NOTIFY_SOCKET=" + notify_->path(), "VTPM_WORKER_PATH=" VTPM_WORKER_BIN};
  o.env.insert(o.env.end(), opts_.env.begin(), opts_.env.end());
  o.fd_map = {{log.get(), 2}};
  for (size_t i = 0; i < stored.size(); ++i) {
    o.fd_map.push_back({stored[i].second.get(), int(3 + i)});
    names += (i ? ":" : "") + stored[i].first;
  }
  if (!stored.empty()) {
    o.env.push_back("LISTEN_FDS=" + std::to_string(stored.size()));
    o.env.push_back("LISTEN_FDNAMES=" + names);
  }
  return host_.SpawnWithShim(std::move(o));
}

Status DaemonProcess::Start() {
  mkdir(state_dir().c_str(), 0700);
  auto c = Spawn({});
  if (!c.ok()) return c.status();
  child_ = std::move(c).value();
  Status st = notify_->WaitFor("READY=1", std::chrono::seconds(20));
  if (!st.ok()) return st.Annotate("daemon did not start; its log:\n" + Log());
  return {};
}

Result<int> DaemonProcess::RunToExit(std::vector<std::string> args, std::chrono::seconds timeout) {
  auto c = Spawn(std::move(args));
  if (!c.ok()) return c.status();
  child_ = std::move(c).value();
  auto ws = child_.WaitFor(timeout);
  if (!ws) {
    child_.Kill();
    return Status(Code::kTimeout, "daemon still running after " + std::to_string(timeout.count()) + " s");
  }
  return *ws;
}

Result<int> DaemonProcess::Stop() {
  child_.Signal(SIGTERM);
  auto ws = child_.WaitFor(std::chrono::seconds(10));
  if (!ws) return Status(Code::kTimeout, "daemon did not exit within 10 s of SIGTERM");
  fd_store_->Clear();
  return *ws;
}

Status DaemonProcess::Restart() {
  child_.Signal(SIGTERM);
  if (!child_.WaitFor(std::chrono::seconds(10))) return Status(Code::kTimeout, "daemon did not exit within 10 s of SIGTERM");
  return Start();
}

void DaemonProcess::Kill() { child_.Kill(); }

std::string DaemonProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace vtpm::sim
