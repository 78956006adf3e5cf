#include "simhost/sim_host.h"

#include <sys/stat.h>
#include <stdlib.h>

#include <filesystem>
#include <system_error>

#include "xen_sim.h"

namespace vtpm::sim {

Result<std::unique_ptr<SimHost>> SimHost::Start(const SimHostOptions& opts) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/vtpm-sim-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return Status::FromErrno(errno, "mkdtemp " + tmpl);
  std::string dir = tmpl;
  std::error_code ec;
  std::filesystem::create_directories(dir + "/xenstored", ec);
  if (ec) return Status(Code::kIoError, "mkdir " + dir + "/xenstored: " + ec.message());
  XenstoredOptions xo;
  xo.dir = dir + "/xenstored";
  xo.trace = opts.xenstored_trace;
  auto xs = XenstoredProcess::Start(xo);
  if (!xs.ok()) {
    if (!opts.keep_dir) std::filesystem::remove_all(dir, ec);
    return xs.status();
  }
  std::unique_ptr<SimHost> host(new SimHost(dir, std::move(xs).value(), opts.keep_dir));
  // Grant pages live on tmpfs when there is one, like memory.
  std::string shm = "/dev/shm/vtpm-sim-hv-XXXXXX";
  if (::mkdtemp(shm.data()) != nullptr) host->sim_dir_ = shm;
  // Reachable by the workers' uids once they dropped root (shim/xen_sim.h).
  if (::chmod(host->sim_dir_.c_str(), 0755) != 0) return Status::FromErrno(errno, "chmod " + host->sim_dir_);
  RETURN_IF_ERROR(InitSimDir(host->sim_dir_));
  // Dom0 exists from boot; its handle is nil unless a toolstack sets one.
  RETURN_IF_ERROR(WriteSimDomain(host->sim_dir_, SimDomain{0, "00000000-0000-0000-0000-000000000000", {}, false}));
  ::setenv("XENSTORED_PATH", host->xenstored_socket().c_str(), 1);
  ::setenv(kSimDirEnv, host->sim_dir_.c_str(), 1);
  return host;
}

SimHost::SimHost(std::string dir, XenstoredProcess xs, bool keep)
    : dir_(std::move(dir)), sim_dir_(dir_ + "/hv"), xenstored_(std::move(xs)), keep_(keep) {}

SimHost::~SimHost() {
  xenstored_.Stop();
  if (!keep_) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    std::filesystem::remove_all(sim_dir_, ec);
  }
}

std::vector<std::string> SimHost::Env() const {
  return {"XENSTORED_PATH=" + xenstored_socket(), std::string(kSimDirEnv) + "=" + sim_dir_};
}

std::string SimHost::ShimPreload() {
  std::string libasan = VTPM_SIM_LIBASAN;
  return libasan.empty() ? std::string(VTPM_SIM_XEN_SHIM) : libasan + ":" + VTPM_SIM_XEN_SHIM;
}

Result<ChildProcess> SimHost::SpawnWithShim(SpawnOptions opts) const {
  std::vector<std::string> over = Env();
  over.push_back("LD_PRELOAD=" + ShimPreload());
  over.insert(over.end(), opts.env.begin(), opts.env.end());
  opts.env = EnvWith(over);
  return ChildProcess::Spawn(opts);
}

std::string SimHost::ToolPath(const std::string& name) {
  return std::string(VTPM_SIM_BIN_DIR) + "/" + name;
}

}  // namespace vtpm::sim
