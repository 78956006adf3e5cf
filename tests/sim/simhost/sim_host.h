// SimHost: one simulated Xen host for a test — a private temp dir, the real
// xenstored running under its shim, and a VTPM_SIM_DIR for grants, event
// channels and the domain table, which starts with dom0 (nil handle) (on
// tmpfs: /dev/shm/vtpm-sim-hv-*, else <dir>/hv). Start() exports
// XENSTORED_PATH and VTPM_SIM_DIR into this process's environment (so
// in-process libxenstore and every child see them).
// Destruction kills xenstored and removes both dirs.
//
// Launching the daemon (or any program linked against the real libxengnttab /
// libxenevtchn) on the simulated host:
//   SpawnOptions o; o.argv = {VTPM_DAEMON_PATH, "--foreground", ...};
//   ASSIGN_OR_RETURN(ChildProcess d, host.SpawnWithShim(o));
// SpawnWithShim sets LD_PRELOAD to libvtpm_xen_sim.so — preceded by gcc's
// libasan.so in a -DVTPM_SANITIZE=ON build, so an instrumented program's
// runtime is first — plus XENSTORED_PATH and VTPM_SIM_DIR.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/child_process.h"
#include "common/status.h"
#include "simhost/xenstored.h"

namespace vtpm::sim {

struct SimHostOptions {
  bool xenstored_trace = false;
  bool keep_dir = false;  // leave the temp dir for post-mortem
};

class SimHost {
 public:
  static Result<std::unique_ptr<SimHost>> Start(const SimHostOptions& opts = {});
  ~SimHost();
  SimHost(const SimHost&) = delete;
  SimHost& operator=(const SimHost&) = delete;

  const std::string& dir() const { return dir_; }              // temp root
  const std::string& sim_dir() const { return sim_dir_; }      // VTPM_SIM_DIR
  const std::string& xenstored_socket() const { return xenstored_.socket_path(); }
  XenstoredProcess& xenstored() { return xenstored_; }

  // {"XENSTORED_PATH=...", "VTPM_SIM_DIR=..."}
  std::vector<std::string> Env() const;
  // LD_PRELOAD value for the gnttab/evtchn shim (libasan first if sanitized).
  static std::string ShimPreload();
  // Spawns opts.argv with this host's Env(), LD_PRELOAD = ShimPreload() and
  // opts.env (K=V overrides on top of the inherited environment).
  Result<ChildProcess> SpawnWithShim(SpawnOptions opts) const;
  // Path of a simulator tool built next to the tests (e.g. "vtpm-sim-xl").
  static std::string ToolPath(const std::string& name);

 private:
  SimHost(std::string dir, XenstoredProcess xs, bool keep);
  std::string dir_;
  std::string sim_dir_;
  XenstoredProcess xenstored_;
  bool keep_ = false;
};

}  // namespace vtpm::sim
