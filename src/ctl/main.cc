// vtpmctl: operate a running vtpmmgrd over its control socket. See vtpmctl(8).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <climits>
#include <cstdio>
#include <cstdlib>

#include "ctl/ctl_client.h"
#include "ctl/ctl_exit.h"
#include "ctl/ctl_format.h"
#include "daemon/config.h"

namespace {

using namespace vtpm;
using namespace vtpm::ctl;

constexpr char kDefaultConfig[] = "/etc/vtpmmgrd/vtpmmgrd.conf";
constexpr std::chrono::seconds kCallTimeout{120};

int Fail(int status, const std::string& sentence) {
  std::fprintf(stderr, "vtpmctl: %s\n", sentence.c_str());
  return status;
}

// --socket, else the configuration's control socket, else the default.
Result<std::string> SocketPath(const std::string& socket_opt, const std::string& config_opt) {
  if (!socket_opt.empty()) return socket_opt;
  std::string path = config_opt.empty() ? kDefaultConfig : config_opt;
  if (config_opt.empty() && access(path.c_str(), R_OK) != 0) return Config().ControlSocket();
  ASSIGN_OR_RETURN(Config cfg, LoadConfig(path));
  return cfg.ControlSocket();
}

// The answer as --json shows it: the protocol's response object, indented.
void PrintJson(const ControlResponse& rsp) {
  nlohmann::json j = {{"version", rsp.version}, {"result", int(rsp.result)},
                      {"result_name", ResultName(rsp.result)}, {"data", rsp.data}};
  if (!rsp.error.empty()) j["error"] = rsp.error;
  std::fputs((j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n").c_str(), stdout);
  std::fflush(stdout);
}

std::string Absolute(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return path;
  return std::string(cwd) + "/" + path;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vtpmctl - operate vtpmmgrd, the Xen vTPM 1.2 daemon"};
  app.require_subcommand(1);
  std::string socket_opt, config_opt, uuid_text, duration_text, backup_file, tpm_version = "1.2";
  bool json_out = false, force = false;
  app.add_option("-s,--socket", socket_opt, "control socket of the daemon (default: from the configuration)");
  app.add_option("-c,--config", config_opt, "vtpmmgrd configuration to read the control socket from");
  app.add_flag("-j,--json", json_out, "print the daemon's JSON answer instead of a table");
  app.set_version_flag("-V,--version", "vtpmctl 0.1.0");

  ControlRequest req;
  auto* list = app.add_subcommand("list", "list the vTPM instances");
  auto* show = app.add_subcommand("show", "show one instance, its EK public key and, when running, its PCRs");
  show->add_option("UUID", uuid_text, "instance uuid")->required();
  auto* create = app.add_subcommand("create", "create (manufacture) an instance before its guest first starts");
  create->add_option("UUID", uuid_text, "instance uuid")->required();
  create->add_option("--tpm", tpm_version, "TPM version to emulate (only 1.2)")->capture_default_str();
  auto* status = app.add_subcommand("status", "show the daemon, store and host TPM state");
  auto* wipe = app.add_subcommand("wipe", "destroy an instance and its state for good");
  wipe->add_option("UUID", uuid_text, "instance uuid")->required();
  wipe->add_flag("-f,--force", force, "also when attached: close the device first (the guest loses its TPM)");
  auto* clear = app.add_subcommand("clear", "remove the TPM owner (ForceClear under physical presence), keeping the EK");
  clear->add_option("UUID", uuid_text, "instance uuid")->required();
  auto* prune = app.add_subcommand("prune", "wipe auto-created instances unused for DURATION");
  prune->add_option("--idle-for", duration_text, "idle time such as 90s, 45m, 12h, 30d or 2w")->required();
  auto* backup = app.add_subcommand("backup", "copy the store, consistently, while the daemon runs");
  backup->add_option("FILE", backup_file, "new file to write (must not exist)")->required();
  const std::vector<std::pair<CLI::App*, Verb>> verbs = {
      {list, Verb::kList},   {show, Verb::kShow},   {create, Verb::kCreate}, {status, Verb::kStatus},
      {wipe, Verb::kWipe},   {clear, Verb::kClear}, {prune, Verb::kPrune},   {backup, Verb::kBackup}};

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  for (auto& [sub, verb] : verbs)
    if (sub->parsed()) req.verb = verb;

  if (!uuid_text.empty()) {
    auto u = Uuid::Parse(uuid_text);
    if (!u.ok() || u->IsNil())
      return Fail(kExitUsage, "'" + uuid_text + "' is not an instance uuid; write it like "
                              "01234567-89ab-cdef-0123-456789abcdef (see 'vtpmctl list')");
    req.uuid = *u;
  }
  req.tpm_version = tpm_version;
  req.force = force;
  if (req.verb == Verb::kPrune) {
    auto d = ParseDuration(duration_text);
    if (!d.ok()) return Fail(kExitUsage, "--idle-for " + d.status().message());
    req.idle_for_seconds = *d;
  }
  if (req.verb == Verb::kBackup) req.path = Absolute(backup_file);

  auto sock = SocketPath(socket_opt, config_opt);
  if (!sock.ok()) return Fail(kExitUsage, sock.status().message() + "; fix it or pass --socket");
  auto rsp = Call(*sock, req, kCallTimeout);
  if (!rsp.ok()) {
    const Status& st = rsp.status();
    int code = st.code() == Code::kPermissionDenied ? kExitDenied : kExitUnreachable;
    if (json_out) {
      ControlResponse local;
      local.result = st.code() == Code::kPermissionDenied ? ResultCode::kPermissionDenied : ResultCode::kUnavailable;
      local.error = st.message();
      PrintJson(local);
    }
    return Fail(code, st.message());
  }
  if (json_out) PrintJson(*rsp);
  if (rsp->result != ResultCode::kOk) return Fail(ExitFor(rsp->result), rsp->error);
  if (!json_out) std::fputs(FormatTable(req.verb, rsp->data).c_str(), stdout);
  return kExitOk;
}
