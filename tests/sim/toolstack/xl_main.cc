// vtpm-sim-xl: the toolstack simulator as a command (see toolstack.h).
//   vtpm-sim-xl init
//   vtpm-sim-xl create DOMID [--uuid U] [--devid N] [--name NAME] [--handle H] [--no-vtpm]
//   vtpm-sim-xl attach DOMID [--uuid U] [--devid N]
//   vtpm-sim-xl detach DOMID DEVID
//   vtpm-sim-xl destroy DOMID
//   vtpm-sim-xl shutdown DOMID REASON        (the guest shuts down, SHUTDOWN_* 0..5)
//   vtpm-sim-xl save DOMID FILE              (xl save; FILE: save_file.h)
//   vtpm-sim-xl restore FILE DOMID           (xl restore, on DOMID)
//   vtpm-sim-xl reboot DOMID NEWDOMID        (guest reboot, recreated as NEWDOMID)
//   vtpm-sim-xl migrate-local DOMID NEWDOMID (xl migrate DOMID localhost)
// Common: --timeout-ms MS (default 10000, libxl's 10 s).
// Reaches xenstored through XENSTORED_PATH and the simulated hypervisor
// through VTPM_SIM_DIR (create adds the domain to its domain table, destroy
// removes it and clears the domain's grants/event channels; shutdown, save,
// reboot and migrate-local need it). --handle is the domain handle (default
// random, as for a config without uuid=). Prints one line per wait ("waited N
// ms for PATH == V: ok|TIMEOUT ...") and "result: ..."; create/attach,
// restore, reboot and migrate-local also print "device DOMID DEVID UUID" for
// the last vtpm and "domain DOMID HANDLE". Exit 0 on success, 1 on failure or
// timeout.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>

#include "toolstack/save_file.h"
#include "toolstack/toolstack.h"

using namespace vtpm;
using namespace vtpm::sim;

int main(int argc, char** argv) {
  CLI::App app{"Simulated libxl toolstack for vTPM devices"};
  app.require_subcommand(1);
  int timeout_ms = 10000;
  app.add_option("--timeout-ms", timeout_ms, "libxl wait timeout")->capture_default_str();
  uint32_t domid = 0, devid = 0, new_domid = 0;
  std::optional<uint32_t> opt_devid;
  std::string uuid, name, handle, file;
  unsigned reason = 0;
  bool no_vtpm = false;

  auto* init = app.add_subcommand("init", "write dom0's nodes (/local/domain/0)");
  auto* create = app.add_subcommand("create", "xl create with one vtpm");
  create->add_option("domid", domid)->required();
  create->add_option("--uuid", uuid, "vtpm uuid (default random)");
  create->add_option("--devid", opt_devid);
  create->add_option("--name", name);
  create->add_option("--handle", handle, "domain handle, xl's uuid= (default random)");
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
  auto* shutdown = app.add_subcommand("shutdown", "the guest shuts itself down with a SHUTDOWN_* code");
  shutdown->add_option("domid", domid)->required();
  shutdown->add_option("reason", reason, "0 poweroff, 1 reboot, 2 suspend, 3 crash, 4 watchdog, 5 soft_reset")
      ->required()
      ->check(CLI::Range(0, 5));
  auto* save = app.add_subcommand("save", "xl save");
  save->add_option("domid", domid)->required();
  save->add_option("file", file)->required();
  auto* restore = app.add_subcommand("restore", "xl restore");
  restore->add_option("file", file)->required();
  restore->add_option("domid", domid, "the restored domain's domid")->required();
  auto* reboot = app.add_subcommand("reboot", "the guest reboots under xl");
  reboot->add_option("domid", domid)->required();
  reboot->add_option("newdomid", new_domid)->required();
  auto* migrate = app.add_subcommand("migrate-local", "xl migrate DOMID localhost");
  migrate->add_option("domid", domid)->required();
  migrate->add_option("newdomid", new_domid)->required();
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
  uint32_t new_dom = domid;  // the domain created, for the device line
  if (*init) {
    r.status = ts.InitHost();
  } else if (*create) {
    std::vector<VtpmSpec> v;
    if (!no_vtpm) v.push_back(VtpmSpec{opt_devid, uuid});
    r = ts.Create(domid, v, name, handle);
    prints_device = true;
  } else if (*attach) {
    r = ts.Attach(domid, VtpmSpec{opt_devid, uuid});
    prints_device = true;
  } else if (*detach) {
    r = ts.Detach(domid, devid);
  } else if (*destroy) {
    r = ts.Destroy(domid);
  } else if (*shutdown) {
    r.status = ts.Shutdown(domid, uint8_t(reason));
  } else if (*save) {
    r = ts.Save(domid);
    if (r.status.ok()) r.status = WriteSaveFile(file, *r.saved);
  } else if (*restore) {
    auto saved = ReadSaveFile(file);
    if (saved.ok()) r = ts.Restore(domid, *saved);
    else r.status = saved.status();
    prints_device = true;
  } else if (*reboot || *migrate) {
    r = *reboot ? ts.Reboot(domid, new_domid) : ts.MigrateLocal(domid, new_domid);
    new_dom = new_domid;
    prints_device = true;
  }
  if (prints_device && !r.uuid.empty()) std::cout << "device " << new_dom << " " << r.devid << " " << r.uuid << "\n";
  if (prints_device && !r.handle.empty()) std::cout << "domain " << new_dom << " " << r.handle << "\n";
  std::cout << r.Report();
  return r.status.ok() ? 0 : 1;
}
