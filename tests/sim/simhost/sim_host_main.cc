// vtpm-sim-host: starts a simulated Xen host (SimHost: the real xenstored
// under its shim in a fresh temp dir, a VTPM_SIM_DIR, dom0's nodes) and keeps
// it up until SIGINT/SIGTERM, then stops xenstored and removes the dir
// (unless --keep). Prints shell lines to source:
//   export XENSTORED_PATH=...
//   export VTPM_SIM_DIR=...
//   export VTPM_SIM_PRELOAD=...   (LD_PRELOAD value for dom0 programs)
//   ready
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "common/unique_fd.h"
#include "simhost/sim_host.h"
#include "simhost/term_signals.h"
#include "simhost/xs_client.h"

using namespace vtpm::sim;

int main(int argc, char** argv) {
  CLI::App app{"Simulated Xen host: real xenstored without a hypervisor"};
  SimHostOptions opts;
  app.add_flag("--keep", opts.keep_dir, "keep the temp dir on exit");
  app.add_flag("--trace", opts.xenstored_trace, "xenstored -T trace.log");
  CLI11_PARSE(app, argc, argv);
  vtpm::UniqueFd sfd(BlockTerminationSignals());
  auto host = SimHost::Start(opts);
  if (!host.ok()) {
    std::cerr << "vtpm-sim-host: " << host.status().ToString() << "\n";
    return 1;
  }
  {
    auto xs = XsClient::Open();
    if (!xs.ok() || !xs->Write("/local/domain/0/name", "Domain-0").ok() ||
        !xs->Write("/local/domain/0/domid", "0").ok()) {
      std::cerr << "vtpm-sim-host: cannot write dom0 nodes\n";
      return 1;
    }
  }
  std::cout << "export XENSTORED_PATH=" << (*host)->xenstored_socket() << "\n"
            << "export VTPM_SIM_DIR=" << (*host)->sim_dir() << "\n"
            << "export VTPM_SIM_PRELOAD=" << SimHost::ShimPreload() << "\nready" << std::endl;
  signalfd_siginfo si;
  (void)!::read(sfd.get(), &si, sizeof(si));
  return 0;
}
