// vtpmmgrd: the Xen vTPM backend daemon. See vtpmmgrd(8).
#include <CLI/CLI.hpp>

#include "common/log.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/exit_codes.h"

int main(int argc, char** argv) {
  CLI::App app{"vtpmmgrd - virtual TPM 1.2 backend for Xen guests, protected by the host's TPM 2.0"};
  std::string config_path = "/etc/vtpmmgrd/vtpmmgrd.conf";
  std::string log_level;
  bool check_only = false;
  app.add_option("-c,--config", config_path, "configuration file (TOML, see vtpmmgrd.conf(5))")
      ->capture_default_str();
  app.add_option("-l,--log-level", log_level, "override [daemon] log_level: trace, debug, info, warn, error");
  app.add_flag("--check-config", check_only, "parse the configuration file, report errors and exit");
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
    fmt::print("{}: OK\n", config_path);
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
