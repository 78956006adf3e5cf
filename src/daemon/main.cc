// vtpmmgrd: the Xen vTPM backend daemon. See vtpmmgrd(8).
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "common/log.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/exit_codes.h"
#include "daemon/install_paths.h"
#include "store/secret_bytes.h"
#include "tpm/host/tss2_log.h"

int main(int argc, char** argv) {
  // Before any key exists: no core file, no ptrace access by same-uid
  // processes without CAP_SYS_PTRACE, and key material in pages excluded
  // from core dumps (vtpmmgrd(8), SECRETS).
  const bool undumpable = prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0;
  const bool secret_heap = vtpm::InitSecretHeap();

  CLI::App app{"vtpmmgrd - virtual TPM 1.2 backend for Xen guests, protected by the host's TPM 2.0"};
  std::string config_path = "/etc/vtpmmgrd/vtpmmgrd.conf";
  std::string log_level;
  bool check_only = false;
  bool reinitialise = false;
  app.add_option("-c,--config", config_path, "configuration file (TOML, see vtpmmgrd.conf(5))")
      ->capture_default_str();
  app.add_option("-l,--log-level", log_level, "override [daemon] log_level: trace, debug, info, warn, error");
  app.add_flag("--check-config", check_only,
               "parse the configuration file, check the worker it names, report errors and exit");
  app.add_flag("--reinitialise", reinitialise,
               "give up a lost store: remove its traces from the host TPM, provision a new, empty store and exit "
               "(refused while the store file exists; see vtpmmgrd(8))");
  app.set_version_flag("-V,--version", "vtpmmgrd 0.1.0");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? vtpm::kExitOk : vtpm::kExitUsage;
  }

  // Checked as [daemon] log_level is: an unknown level would silence the log.
  if (!log_level.empty() && !vtpm::IsLogLevel(log_level)) {
    fmt::print(stderr, "vtpmmgrd: -l/--log-level must be {}, not \"{}\"\n", vtpm::kLogLevels, log_level);
    return vtpm::kExitUsage;
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
    auto worker = vtpm::WorkerPath(*cfg);
    if (!worker.ok()) {
      // A configured worker's message names its file:line already.
      fmt::print(stderr, "{}{}\n", cfg->worker_path.empty() ? config_path + ": " : "", worker.status().message());
      return vtpm::kExitConfig;
    }
    fmt::print("{}: OK (worker {})\n", config_path, *worker);
    return vtpm::kExitOk;
  }
  bool journal = cfg->log_target == "journal" || (cfg->log_target == "auto" && vtpm::StderrIsJournal());
#ifdef VTPM_TEST_BUILD
  vtpm::InitLogging("vtpmmgrd", journal, cfg->log_level, cfg->journal_socket);
#else
  vtpm::InitLogging("vtpmmgrd", journal, cfg->log_level);
#endif
  if (!undumpable) LOG_WARN("prctl(PR_SET_DUMPABLE, 0) failed: a core file could hold key material");
  if (!secret_heap) LOG_WARN("cannot set up the secure heap: keys are kept in ordinary memory");
  if (vtpm::Status st = vtpm::Tss2Log::Install(); !st.ok())
    LOG_WARN("tpm2-tss's messages go to standard error without the daemon's fields: {}", st.message());
  if (reinitialise) return vtpm::RunReinitialise(*cfg);
  return vtpm::RunDaemon(*cfg);
}
