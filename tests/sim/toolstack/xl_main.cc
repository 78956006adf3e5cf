// vtpm-sim-xl: the toolstack simulator as a command (see toolstack.h).
//   vtpm-sim-xl init
//   vtpm-sim-xl create DOMID [--uuid U] [--devid N] [--name NAME] [--no-vtpm]
//   vtpm-sim-xl attach DOMID [--uuid U] [--devid N]
//   vtpm-sim-xl detach DOMID DEVID
//   vtpm-sim-xl destroy DOMID
// Common: --timeout-ms MS (default 10000, libxl's 10 s).
// Reaches xenstored through XENSTORED_PATH; destroy also clears the domain's
// grants/event channels in VTPM_SIM_DIR when that is set. Prints one line per
// wait ("waited N ms for PATH == V: ok|TIMEOUT ...") and "result: ...";
// create/attach also print "device DOMID DEVID UUID". Exit 0 on success, 1 on
// failure or timeout.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>

#include "toolstack/toolstack.h"

using namespace vtpm;
using namespace vtpm::sim;

int main(int argc, char** argv) {
  CLI::App app{"Simulated libxl toolstack for vTPM devices"};
  app.require_subcommand(1);
  int timeout_ms = 10000;
  app.add_option("--timeout-ms", timeout_ms, "libxl wait timeout")->capture_default_str();
  uint32_t domid = 0, devid = 0;
  std::optional<uint32_t> opt_devid;
  std::string uuid, name;
  bool no_vtpm = false;

  auto* init = app.add_subcommand("init", "write dom0's nodes (/local/domain/0)");
  auto* create = app.add_subcommand("create", "xl create with one vtpm");
  create->add_option("domid", domid)->required();
  create->add_option("--uuid", uuid, "vtpm uuid (default random)");
  create->add_option("--devid", opt_devid);
  create->add_option("--name", name);
  create->add_flag("--no-vtpm", no_vtpm);
  auto* attach = app.add_subcommand("attach", "xl vtpm-attach");
  attach->add_option("domid", domid)->required();
  attach->add_option("--uuid", uuid);
  attach->add_option("--devid", opt_devid);
  auto* detach = app.add_subcommand("detach", "xl vtpm-detach");
  detach->add_option("domid", domid)->required();
  detach->add_option("devid", devid)->required();
  auto* destroy = app.add_subcommand("destroy", "xl destroy");
  destroy->add_option("domid", domid)->required();
  CLI11_PARSE(app, argc, argv);

  auto xs = XsClient::Open();
  if (!xs.ok()) {
    std::cerr << "vtpm-sim-xl: " << xs.status().ToString() << "\n";
    return 1;
  }
  const char* sim_dir = std::getenv("VTPM_SIM_DIR");
  Toolstack ts(*xs, sim_dir ? sim_dir : "", std::chrono::milliseconds(timeout_ms));
  ToolstackResult r;
  bool prints_device = false;
  if (*init) {
    r.status = ts.InitHost();
  } else if (*create) {
    std::vector<VtpmSpec> v;
    if (!no_vtpm) v.push_back(VtpmSpec{opt_devid, uuid});
    r = ts.Create(domid, v, name);
    prints_device = !no_vtpm;
  } else if (*attach) {
    r = ts.Attach(domid, VtpmSpec{opt_devid, uuid});
    prints_device = true;
  } else if (*detach) {
    r = ts.Detach(domid, devid);
  } else if (*destroy) {
    r = ts.Destroy(domid);
  }
  if (prints_device && !r.uuid.empty()) std::cout << "device " << domid << " " << r.devid << " " << r.uuid << "\n";
  std::cout << r.Report();
  return r.status.ok() ? 0 : 1;
}
