// DaemonProcess: the real vtpmmgrd binary on a SimHost, with its own config
// file, state/runtime dirs under the host's temp dir, and READY=1 awaited on
// a private NOTIFY_SOCKET. Destruction SIGKILLs it.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/child_process.h"
#include "harness/notify_socket.h"
#include "simhost/sim_host.h"

namespace vtpm::sim {

struct DaemonOptions {
  std::string engine = "scripted";
  std::string extra_config;  // appended TOML (e.g. "[engine]\nscripted_delay_ms = 5\n")
  std::string log_level = "debug";
  std::string log_target = "stderr";
  std::string daemon_config;          // more [daemon] keys (e.g. "journal_socket = \"...\"\n")
  std::vector<std::string> env;       // more environment ("WATCHDOG_USEC=200000")
  std::vector<std::string> wrapper;   // argv run in front of the daemon's ("setpriv", ...)
  // Empty: config, log, state and runtime dirs directly under the host's
  // dir. Else under <host dir>/<name>: another daemon with its own state
  // (a second "host" in migration tests; run one daemon at a time when
  // devices exist, since both would serve them).
  std::string name;
  // [xen] data_path; empty: $VTPM_SIM_DATA_PATH, else the daemon's default.
  // Not written when extra_config has a [xen] section of its own.
  std::string data_path;
  // The fd store of a DaemonProcess this one replaces: the same unit started
  // again with another configuration or environment (none: a new one).
  std::shared_ptr<FdStore> fd_store;
};

// The [xen] data_path a daemon started with `configured` (DaemonOptions::
// data_path) runs on: that, else $VTPM_SIM_DATA_PATH, else "" (the daemon's
// default, "worker").
std::string EffectiveDataPath(const std::string& configured);

class DaemonProcess {
 public:
  DaemonProcess(SimHost& host, DaemonOptions opts);
  ~DaemonProcess();
  // Starts the daemon and waits for READY=1.
  Status Start();
  // Runs the daemon with `args` added to its command line and waits for it
  // to exit by itself (a refusal, --reinitialise); returns the wait status.
  // kTimeout (and the daemon killed) when it is still running after `timeout`.
  // Unlike Start(), it creates no state directory.
  Result<int> RunToExit(std::vector<std::string> args, std::chrono::seconds timeout = std::chrono::seconds(30));
  // SIGTERM and wait for exit; returns the wait status. Like `systemctl
  // stop`, the fd store is emptied then (a worker left in it exits).
  Result<int> Stop();
  // SIGTERM, wait for exit and Start() again, the fd store kept: `systemctl
  // restart`.
  Status Restart();
  // SIGKILL and reap.
  void Kill();
  // Waits up to `timeout` for the daemon to exit by itself; its wait status,
  // or nullopt while it still runs.
  std::optional<int> WaitExit(std::chrono::milliseconds timeout) { return child_.WaitFor(timeout); }
  bool running() { return child_.running() && !child_.TryWait(); }
  pid_t pid() const { return child_.pid(); }
  NotifySocket* notify() { return notify_.get(); }
  // The daemon's fd store (FDSTORE=1), kept across its restarts as systemd
  // keeps a unit's; every start gets copies of what it holds (LISTEN_FDS,
  // LISTEN_FDNAMES, LISTEN_PID), as systemd passes them on a restart.
  FdStore& fd_store() { return *fd_store_; }
  std::shared_ptr<FdStore> shared_fd_store() const { return fd_store_; }
  const std::string& config_path() const { return config_path_; }
  const std::string& log_path() const { return log_path_; }
  std::string state_dir() const { return base_ + "/state"; }
  std::string runtime_dir() const { return base_ + "/run"; }
  // The daemon's stderr so far.
  std::string Log() const;

 private:
  Result<ChildProcess> Spawn(std::vector<std::string> args);
  SimHost& host_;
  DaemonOptions opts_;
  std::string base_, config_path_, log_path_;
  std::shared_ptr<FdStore> fd_store_ = std::make_shared<FdStore>();
  std::unique_ptr<NotifySocket> notify_;
  ChildProcess child_;
  int starts_ = 0;
};

}  // namespace vtpm::sim
