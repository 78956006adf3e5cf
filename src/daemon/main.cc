// vtpmmgrd: the Xen vTPM backend daemon. See vtpmmgrd(8).
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "common/log.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/exit_codes.h"
#include "daemon/install_paths.h"

int main(int argc, char** argv) {
  CLI::App app{"vtpmmgrd - virtual TPM 1.2 backend for Xen guests, protected by the host's TPM 2.0"};
  std::string config_path = "/etc/vtpmmgrd/vtpmmgrd.conf";
  std::string log_level;
  bool check_only = false;
  app.add_option("-c,--config", config_path, "configuration file (TOML, see vtpmmgrd.conf(5))")
      ->capture_default_str();
  app.add_option("-l,--log-level", log_level, "override [daemon] log_level: trace, debug, info, warn, error");
  app.add_flag("--check-config", check_only, "parse the configuration file, check the worker it names, report errors and exit");
  app.set_version_flag("-V,--version", "vtpmmgrd 0.1.0");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? vtpm::kExitOk : vtpm::kExitUsage;
  }

  auto cfg = vtpm::LoadConfig(config_path);
  if (!cfg.ok()) {
    vtpm::InitLogging("vtpmmgrd", vtpm::StderrIsJournal(), "info");
    LOG_ERROR("configuration error: {}", cfg.status().message());
    return vtpm::kExitConfig;
  }
  if (!log_level.empty()) cfg->log_level = log_level;
  if (check_only) {
    // The worker this configuration would start must exist and be executable.
    std::string worker = cfg->worker_path;
    if (worker.empty()) {
      auto installed = vtpm::InstalledWorkerPath();
      if (!installed.ok()) {
        fmt::print(stderr, "{}: {}\n", config_path, installed.status().message());
        return vtpm::kExitConfig;
      }
      worker = *installed;
    } else if (access(worker.c_str(), X_OK) != 0) {
      fmt::print(stderr, "{}: [engine] worker_path {} is not an executable file\n", config_path, worker);
      return vtpm::kExitConfig;
    }
    fmt::print("{}: OK (worker {})\n", config_path, worker);
    return vtpm::kExitOk;
  }
  bool journal = cfg->log_target == "journal" || (cfg->log_target == "auto" && vtpm::StderrIsJournal());
#ifdef VTPM_TEST_BUILD
  vtpm::InitLogging("vtpmmgrd", journal, cfg->log_level, cfg->journal_socket);
#else
  vtpm::InitLogging("vtpmmgrd", journal, cfg->log_level);
#endif
  return vtpm::RunDaemon(*cfg);
}
