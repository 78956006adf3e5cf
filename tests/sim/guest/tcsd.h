// TcsdInstance: trousers' tcsd serving one simulated guest's TPM, so the real
// TPM 1.2 client tools (tpm-tools) can be the guest's TPM client.
//
// tcsd runs in the foreground (-f) on a free TCP port, with its own config
// (root:tss 0640, as tcsd demands) and persistent-storage dir in a private
// temp dir, and reaches the TPM through TCSD_USE_TCP_DEVICE=1
// TCSD_TCP_DEVICE_PORT=1 (nothing listens there) and its fallback,
// TCSD_UN_SOCKET_DEVICE_PATH=<tpm_socket> (e.g. a TpmSocketServer). The
// socket must be reachable by user tss. Destruction kills tcsd and removes
// the temp dir.
//
//   auto tcsd = TcsdInstance::Start(guest_socket);
//   auto out = (*tcsd)->Run({"tpm_version"});   // out->exit_code, out->output
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/child_process.h"
#include "common/status.h"
#include "simhost/run_capture.h"

namespace vtpm::sim {

class TcsdInstance {
 public:
  static Result<std::unique_ptr<TcsdInstance>> Start(const std::string& tpm_socket);
  ~TcsdInstance();
  TcsdInstance(const TcsdInstance&) = delete;
  TcsdInstance& operator=(const TcsdInstance&) = delete;

  uint16_t port() const { return port_; }
  const std::string& dir() const { return dir_; }
  // Runs a TSS client (e.g. {"tpm_version"} or {"tpm_takeownership","-y","-z"};
  // a bare name is looked up in /usr/sbin and /usr/bin) with TSS_TCSD_PORT
  // pointing at this tcsd. stdin is /dev/null.
  Result<ToolOutput> Run(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;

 private:
  TcsdInstance() = default;
  std::string dir_;
  uint16_t port_ = 0;
  ChildProcess tcsd_;
};

}  // namespace vtpm::sim
