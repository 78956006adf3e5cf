// vtpmctl: operate a running vtpmmgrd over its control socket. See vtpmctl(8).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>

#include "ctl/ctl_client.h"
#include "ctl/ctl_exit.h"
#include "ctl/ctl_format.h"
#include "ctl/ctl_restore.h"
#include "ctl/ctl_target.h"
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

constexpr const char* kVerbNames[] = {"list",  "show",    "create",   "status", "wipe",  "clear", "prune",
                                      "backup", "restore", "discard", "host-key", "export", "import"};

std::string VerbList() {
  std::string out;
  for (const char* v : kVerbNames) out += std::string(out.empty() ? "" : ", ") + v;
  return out;
}

// --config, else /etc/vtpmmgrd/vtpmmgrd.conf if readable, else the defaults.
Result<Config> CtlConfig(const std::string& config_opt) {
  std::string path = config_opt.empty() ? kDefaultConfig : config_opt;
  if (config_opt.empty() && access(path.c_str(), R_OK) != 0) return Config();
  return LoadConfig(path);
}

// --socket, else the configuration's control socket.
Result<std::string> SocketPath(const std::string& socket_opt, const std::string& config_opt) {
  if (!socket_opt.empty()) return socket_opt;
  ASSIGN_OR_RETURN(Config cfg, CtlConfig(config_opt));
  return cfg.ControlSocket();
}

// The first word that is not an option or an option's value: the verb the
// user meant, or empty.
std::string VerbWord(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-s" || a == "--socket" || a == "-c" || a == "--config") {
      ++i;
      continue;
    }
    if (!a.empty() && a[0] == '-') continue;
    return a;
  }
  return "";
}

// The answer as --json shows it: the protocol's response object, indented.
void PrintJson(const ControlResponse& rsp) {
  nlohmann::json j = {{"version", rsp.version}, {"result", int(rsp.result)},
                      {"result_name", ResultName(rsp.result)}, {"data", rsp.data}};
  if (!rsp.error.empty()) j["error"] = rsp.error;
  std::fputs((j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n").c_str(), stdout);
  std::fflush(stdout);
}

// A failure vtpmctl found itself, as --json shows it.
void PrintJsonError(ResultCode code, const std::string& error) {
  ControlResponse local;
  local.result = code;
  local.error = error;
  PrintJson(local);
}

std::string Absolute(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return path;
  return std::string(cwd) + "/" + path;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vtpmctl - operate vtpmmgrd, the Xen vTPM 1.2 daemon\n"
               "INSTANCE is a uuid, a domain name or a domid; options go before or after the verb."};
  app.require_subcommand(1);
  app.fallthrough();  // options of vtpmctl itself are also taken after the verb
  std::string socket_opt, config_opt, instance_text, duration_text, file_arg, peer, tpm_version = "1.2";
  bool json_out = false, force = false, replace = false;
  app.add_option("-s,--socket", socket_opt, "control socket of the daemon (default: from the configuration)");
  app.add_option("-c,--config", config_opt,
                 "vtpmmgrd configuration (control socket; state directory and host TPM for restore)");
  app.add_flag("-j,--json", json_out, "print the daemon's JSON answer instead of a table");
  app.set_version_flag("-V,--version", "vtpmctl 0.1.0");

  const std::string instance_help = "instance: uuid, domain name or domid";
  ControlRequest req;
  auto* list = app.add_subcommand("list", "list the vTPM instances");
  auto* show = app.add_subcommand("show", "show one instance, its EK public key and, when running, its PCRs");
  show->add_option("INSTANCE", instance_text, instance_help)->required();
  auto* create = app.add_subcommand("create", "create (manufacture) an instance before its guest first starts");
  create->add_option("INSTANCE", instance_text, "uuid of the new instance (or the domain it is attached to)")
      ->required();
  create->add_option("--tpm", tpm_version, "TPM version to emulate (only 1.2)")->capture_default_str();
  auto* status = app.add_subcommand("status", "show the daemon, store and host TPM state");
  auto* wipe = app.add_subcommand("wipe", "destroy an instance and its state for good");
  wipe->add_option("INSTANCE", instance_text, instance_help)->required();
  wipe->add_flag("-f,--force", force, "also when attached: close the device first (the guest loses its TPM)");
  auto* clear = app.add_subcommand("clear", "remove the TPM owner (ForceClear under physical presence), keeping the EK");
  clear->add_option("INSTANCE", instance_text, instance_help)->required();
  auto* discard = app.add_subcommand(
      "discard", "drop the TPM state captured when the instance's domain suspended (its restore powers on fresh)");
  discard->add_option("INSTANCE", instance_text, instance_help)->required();
  auto* prune = app.add_subcommand("prune", "wipe auto-created instances unused for DURATION");
  prune->add_option("--idle-for", duration_text, "idle time such as 90s, 45m, 12h, 30d or 2w")->required();
  auto* backup = app.add_subcommand("backup", "copy the store, consistently, while the daemon runs");
  backup->add_option("FILE", file_arg, "new file to write (must not exist)")->required();
  auto* restore =
      app.add_subcommand("restore", "put a backup back as the store, with vtpmmgrd stopped (vtpmctl(8) RESTORE)");
  restore->add_option("FILE", file_arg, "a file written by 'vtpmctl backup'")->required();
  restore->add_flag("--replace", replace, "also when a store exists: keep it beside as vtpm.db.replaced-TIME");
  auto* host_key = app.add_subcommand(
      "host-key", "print this host's public migration identity, for the other host's peers directory");
  auto* export_cmd = app.add_subcommand(
      "export", "move a saved domain's instance to another host: write FILE for it, then wipe it here");
  export_cmd->add_option("INSTANCE", instance_text, "instance (uuid) of a domain saved with xl save")->required();
  export_cmd->add_option("--to", peer, "the receiving host: a file name in the peers directory")->required();
  export_cmd->add_option("FILE", file_arg, "new file to write (must not exist)")->required();
  auto* import_cmd = app.add_subcommand("import", "store an instance exported to this host by a trusted host");
  import_cmd->add_option("FILE", file_arg, "a file written by 'vtpmctl export --to' naming this host")->required();
  const std::vector<std::pair<CLI::App*, Verb>> verbs = {
      {list, Verb::kList},   {show, Verb::kShow},   {create, Verb::kCreate}, {status, Verb::kStatus},
      {wipe, Verb::kWipe},   {clear, Verb::kClear}, {prune, Verb::kPrune},   {backup, Verb::kBackup},
      {discard, Verb::kDiscard}, {host_key, Verb::kHostKey}, {export_cmd, Verb::kExport},
      {import_cmd, Verb::kImport}};

  const std::string word = VerbWord(argc, argv);
  if (!word.empty() && std::find(std::begin(kVerbNames), std::end(kVerbNames), word) == std::end(kVerbNames))
    return Fail(kExitUsage, "unknown verb '" + word + "'; the verbs are " + VerbList() + " (see vtpmctl --help)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::RequiredError& e) {
    if (word.empty()) return Fail(kExitUsage, "no verb given; the verbs are " + VerbList() + " (see vtpmctl --help)");
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  if (restore->parsed()) {
    auto cfg = CtlConfig(config_opt);
    RestoreResult r = cfg.ok() ? RunRestore(*cfg, Absolute(file_arg), replace)
                               : RestoreResult{kExitUsage, {}};
    if (!cfg.ok()) {
      r.response.result = ResultCode::kBadRequest;
      r.response.error = cfg.status().message() + "; fix it or pass --config";
    }
    if (json_out) PrintJson(r.response);
    if (r.exit_status != kExitOk) return Fail(r.exit_status, r.response.error);
    if (!json_out) std::fputs(FormatRestore(r.response.data).c_str(), stdout);
    return kExitOk;
  }
  for (auto& [sub, verb] : verbs)
    if (sub->parsed()) req.verb = verb;
  req.tpm_version = tpm_version;
  req.force = force;
  if (req.verb == Verb::kPrune) {
    auto d = ParseDuration(duration_text);
    if (!d.ok()) return Fail(kExitUsage, "--idle-for " + d.status().message());
    req.idle_for_seconds = *d;
  }
  if (req.verb == Verb::kBackup || req.verb == Verb::kExport || req.verb == Verb::kImport)
    req.path = Absolute(file_arg);
  req.peer = peer;

  auto sock = SocketPath(socket_opt, config_opt);
  if (!sock.ok()) return Fail(kExitUsage, sock.status().message() + "; fix it or pass --socket");
  auto call = [&](const ControlRequest& r) -> Result<ControlResponse> {
    auto rsp = Call(*sock, r, kCallTimeout);
    if (!rsp.ok() && json_out)
      PrintJsonError(rsp.status().code() == Code::kPermissionDenied ? ResultCode::kPermissionDenied
                                                                    : ResultCode::kUnavailable,
                     rsp.status().message());
    return rsp;
  };
  auto unreachable = [](const Status& st) {
    return Fail(st.code() == Code::kPermissionDenied ? kExitDenied : kExitUnreachable, st.message());
  };

  if (!instance_text.empty()) {
    nlohmann::json listed;
    if (NeedsLookup(instance_text)) {  // a domain name or domid: which instance is attached to it
      ControlRequest lr;
      auto lrsp = call(lr);
      if (!lrsp.ok()) return unreachable(lrsp.status());
      if (lrsp->result != ResultCode::kOk) {
        if (json_out) PrintJson(*lrsp);
        return Fail(ExitFor(lrsp->result), lrsp->error);
      }
      listed = lrsp->data;
    }
    auto u = ResolveInstance(instance_text, listed);
    if (!u.ok()) {
      int rc = u.status().code() == Code::kNotFound ? kExitNotFound : kExitUsage;
      if (json_out)
        PrintJsonError(rc == kExitNotFound ? ResultCode::kNotFound : ResultCode::kBadRequest, u.status().message());
      return Fail(rc, u.status().message());
    }
    req.uuid = *u;
  }

  auto rsp = call(req);
  if (!rsp.ok()) return unreachable(rsp.status());
  if (json_out) PrintJson(*rsp);
  if (rsp->result != ResultCode::kOk) return Fail(ExitFor(rsp->result), rsp->error);
  if (!json_out) std::fputs(FormatTable(req.verb, rsp->data).c_str(), stdout);
  return kExitOk;
}
