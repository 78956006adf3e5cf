// XenstoredProcess: Debian's real C xenstored, run without a hypervisor under
// libvtpm_xenstored_sim.so, listening on <dir>/socket. Clients reach it with
// XENSTORED_PATH=socket_path(). Destruction kills and reaps it.
#pragma once

#include <string>
#include <vector>

#include "common/child_process.h"
#include "common/status.h"

namespace vtpm::sim {

struct XenstoredOptions {
  std::string dir;                 // run dir: socket, pid file, log, trace
  bool trace = false;              // -T <dir>/trace.log
  std::string binary = "/usr/lib/xen-4.17/bin/xenstored";
  std::string shim;                // default: the built libvtpm_xenstored_sim.so
};

class XenstoredProcess {
 public:
  // Starts xenstored and waits (up to 5 s) until its socket accepts.
  static Result<XenstoredProcess> Start(const XenstoredOptions& opts);
  XenstoredProcess(XenstoredProcess&&) noexcept = default;
  XenstoredProcess& operator=(XenstoredProcess&&) noexcept = default;

  const std::string& socket_path() const { return socket_; }
  pid_t pid() const { return child_.pid(); }
  // Kills xenstored now (the destructor does the same).
  void Stop() { child_.Kill(); }

 private:
  XenstoredProcess() = default;
  ChildProcess child_;
  std::string socket_;
};

// The environment of this process with `overrides` ("K=V") replacing or
// adding entries; for SpawnOptions::env.
std::vector<std::string> EnvWith(const std::vector<std::string>& overrides);

}  // namespace vtpm::sim
