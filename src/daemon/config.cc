#include "daemon/config.h"

#include <sys/un.h>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "tpm/host/tis_options.h"

namespace vtpm {
namespace {

std::string Where(const std::string& src, const toml::node& n) {
  return src + ":" + std::to_string(n.source().begin.line);
}

// "a, b, c", each name between `before` and `after`.
std::string Join(const std::set<std::string>& names, const std::string& before = "", const std::string& after = "") {
  std::string out;
  for (auto& n : names) out += (out.empty() ? "" : ", ") + before + n + after;
  return out;
}

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// TOML allows "\u0000" in a string; no path holds one.
bool IsAbsolutePath(const std::string& p) { return !p.empty() && p[0] == '/' && p.find('\0') == std::string::npos; }

constexpr const char* kTransports =
    "device:/dev/PATH, tis[:locality=N,base=0xADDRESS], swtpm[:host=H,port=P] or mssim[:host=H,port=P]";

// swtpm and mssim options as the tpm2-tss loader reads them: host=, port=,
// each at most once. mssim also uses port+1 (the platform port).
std::string SocketTctiProblem(std::string_view name, std::string_view conf) {
  bool seen_host = false, seen_port = false;
  const unsigned max_port = name == "mssim" ? 65534 : 65535;
  while (!conf.empty()) {
    size_t comma = conf.find(',');
    std::string_view item = conf.substr(0, comma);
    conf = comma == std::string_view::npos ? std::string_view() : conf.substr(comma + 1);
    size_t eq = item.find('=');
    std::string key(item.substr(0, eq));
    std::string_view value = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
    if (key != "host" && key != "port")
      return "unknown option '" + std::string(item) + "' (the options are host= and port=)";
    if (eq == std::string_view::npos || value.empty()) return "option '" + key + "' has no value";
    if ((key == "host" ? seen_host : seen_port)) return "option '" + key + "' given twice";
    (key == "host" ? seen_host : seen_port) = true;
    unsigned port = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), port);
    if (key == "port" && (ec != std::errc() || end != value.data() + value.size() || port == 0 || port > max_port))
      return "port must be 1 to " + std::to_string(max_port) + ", not '" + std::string(value) + "'";
  }
  return {};
}

// Why `tcti` names no transport the daemon supports, or "" when it does.
std::string TctiProblem(const std::string& tcti) {
  if (tis::IsTisTcti(tcti)) {
    auto o = tis::ParseOptions(tcti);
    return o.ok() ? std::string() : o.status().message();
  }
  size_t colon = tcti.find(':');
  std::string name = tcti.substr(0, colon);
  std::string_view conf = colon == std::string::npos ? std::string_view() : std::string_view(tcti).substr(colon + 1);
  std::string why;
  if (name == "device") {
    if (conf.empty() || conf[0] != '/') why = "the device must be an absolute path, as in device:/dev/tpmrm0";
  } else if (name == "swtpm" || name == "mssim") {
    why = SocketTctiProblem(name, conf);
  } else {
    why = "unknown transport '" + name + "'";
  }
  return why.empty() ? why : "TCTI '" + tcti + "': " + why + " (the transports are " + kTransports + ")";
}

class Reader {
 public:
  Reader(const toml::table& root, std::string src) : root_(root), src_(std::move(src)) {}

  Status CheckKeys(const std::map<std::string, std::set<std::string>>& allowed) {
    std::set<std::string> sections;
    for (auto& [name, keys] : allowed) sections.insert(name);
    const std::string section_list = Join(sections, "[", "]");
    for (auto& [k, v] : root_) {
      std::string key(k.str());
      auto sec = allowed.find(key);
      const toml::table* t = v.as_table();
      if (sec == allowed.end() && !t) {
        std::string home;
        for (auto& [name, keys] : allowed)
          if (keys.count(key)) home = "; it belongs in [" + name + "]";
        return Status(Code::kInvalidArgument, Where(src_, v) + ": key '" + key + "' outside any section" +
                                                  (home.empty() ? " (the sections: " + section_list + ")" : home));
      }
      if (sec == allowed.end())
        return Status(Code::kInvalidArgument,
                      Where(src_, v) + ": unknown section [" + key + "] (the sections: " + section_list + ")");
      if (!t) return Status(Code::kInvalidArgument, Where(src_, v) + ": '" + key + "' must be a section");
      for (auto& [k2, v2] : *t)
        if (!sec->second.count(std::string(k2.str())))
          return Status(Code::kInvalidArgument, Where(src_, v2) + ": unknown key '" + std::string(k2.str()) +
                                                    "' in [" + key + "] (its keys: " + Join(sec->second) + ")");
    }
    return {};
  }

  template <typename T>
  Status Get(const char* sec, const char* key, T& out) {
    const toml::node* n = root_.at_path(std::string(sec) + "." + key).node();
    if (!n) return {};
    if constexpr (std::is_same_v<T, std::string>) {
      if (auto v = n->value<std::string>()) { out = *v; return {}; }
      return TypeError(*n, sec, key, "a string");
    } else if constexpr (std::is_same_v<T, bool>) {
      if (auto v = n->value_exact<bool>()) { out = *v; return {}; }
      return TypeError(*n, sec, key, "true or false");
    } else if constexpr (std::is_same_v<T, uint32_t>) {
      auto v = n->value_exact<int64_t>();
      if (!v || *v < 0 || *v > int64_t(UINT32_MAX)) return TypeError(*n, sec, key, "an integer from 0 to 4294967295");
      out = uint32_t(*v);
      return {};
    } else if constexpr (std::is_same_v<T, std::chrono::milliseconds>) {
      auto v = n->value_exact<int64_t>();
      if (!v || *v < 0 || *v > 24LL * 3600 * 1000) return TypeError(*n, sec, key, "milliseconds from 0 to 86400000");
      out = std::chrono::milliseconds(*v);
      return {};
    } else if constexpr (std::is_same_v<T, std::vector<uint32_t>>) {
      const toml::array* a = n->as_array();
      if (!a) return TypeError(*n, sec, key, "an array of integers");
      out.clear();
      for (auto& e : *a) {
        auto v = e.value_exact<int64_t>();
        if (!v || *v < 0 || *v > 23) return TypeError(e, sec, key, "PCR indices from 0 to 23");
        out.push_back(uint32_t(*v));
      }
      return {};
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      const toml::array* a = n->as_array();
      if (!a) return TypeError(*n, sec, key, "an array of strings");
      out.clear();
      for (auto& e : *a) {
        auto v = e.value<std::string>();
        if (!v) return TypeError(e, sec, key, "an array of strings");
        out.push_back(*v);
      }
      return {};
    }
  }

 private:
  Status TypeError(const toml::node& n, const char* sec, const char* key, const char* want) {
    return Status(Code::kInvalidArgument,
                  Where(src_, n) + ": [" + sec + "] " + key + " must be " + want);
  }
  const toml::table& root_;
  std::string src_;
};

}  // namespace

bool IsLogLevel(std::string_view level) {
  return level == "trace" || level == "debug" || level == "info" || level == "warn" || level == "error";
}

Result<Config> ParseConfig(const std::string& text, const std::string& source_name) {
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& err) {
    return Status(Code::kInvalidArgument, source_name + ":" + std::to_string(err.source().begin.line) + ":" +
                                              std::to_string(err.source().begin.column) + ": " +
                                              std::string(err.description()));
  }
  std::map<std::string, std::set<std::string>> keys = {
      {"daemon", {"state_dir", "runtime_dir", "control_socket", "log_level", "log_target", "auto_create",
                  "command_deadline_ms", "admin_deadline_ms"}},
      {"xen", {"backend_domid", "allow_any_locality", "data_path"}},
      {"host_tpm", {"tcti", "srk_handle", "persist_srk", "pcr_policy"}},
      {"engine", {"kind", "worker_path", "startup", "resume", "worker_uid_base"}},
      {"migration", {"peers_dir"}},
  };
#ifdef VTPM_TEST_BUILD
  keys["daemon"].insert("journal_socket");
  keys["engine"].insert({"scripted_delay_ms", "scripted_slow_uuids", "scripted_slow_delay_ms"});
#endif
  Reader r(root, source_name);
  RETURN_IF_ERROR(r.CheckKeys(keys));
  Config c;
  RETURN_IF_ERROR(r.Get("daemon", "state_dir", c.state_dir));
  RETURN_IF_ERROR(r.Get("daemon", "runtime_dir", c.runtime_dir));
  RETURN_IF_ERROR(r.Get("daemon", "control_socket", c.control_socket));
  RETURN_IF_ERROR(r.Get("daemon", "log_level", c.log_level));
  RETURN_IF_ERROR(r.Get("daemon", "log_target", c.log_target));
  RETURN_IF_ERROR(r.Get("daemon", "auto_create", c.auto_create));
  RETURN_IF_ERROR(r.Get("daemon", "command_deadline_ms", c.command_deadline));
  RETURN_IF_ERROR(r.Get("daemon", "admin_deadline_ms", c.admin_deadline));
  RETURN_IF_ERROR(r.Get("xen", "backend_domid", c.backend_domid));
  RETURN_IF_ERROR(r.Get("xen", "allow_any_locality", c.allow_any_locality));
  RETURN_IF_ERROR(r.Get("xen", "data_path", c.data_path));
  RETURN_IF_ERROR(r.Get("host_tpm", "tcti", c.tcti));
  RETURN_IF_ERROR(r.Get("host_tpm", "srk_handle", c.srk_handle));
  RETURN_IF_ERROR(r.Get("host_tpm", "persist_srk", c.persist_srk));
  RETURN_IF_ERROR(r.Get("host_tpm", "pcr_policy", c.pcr_policy));
  RETURN_IF_ERROR(r.Get("engine", "kind", c.engine));
  RETURN_IF_ERROR(r.Get("engine", "worker_path", c.worker_path));
  RETURN_IF_ERROR(r.Get("engine", "startup", c.startup));
  RETURN_IF_ERROR(r.Get("engine", "resume", c.resume));
  RETURN_IF_ERROR(r.Get("engine", "worker_uid_base", c.worker_uid_base));
  RETURN_IF_ERROR(r.Get("migration", "peers_dir", c.peers_dir));

  // A bad value names the line of its key (or only the file for a default).
  auto bad = [&](const char* sec, const char* key, const std::string& what) {
    const toml::node* n = root.at_path(std::string(sec) + "." + key).node();
    std::string where = n ? Where(source_name, *n) : source_name;
    return Status(Code::kInvalidArgument, where + ": [" + sec + "] " + key + " " + what);
  };
  if (c.data_path != "daemon" && c.data_path != "worker")
    return bad("xen", "data_path", "must be \"daemon\" or \"worker\", not \"" + c.data_path + "\"");
#ifdef VTPM_TEST_BUILD
  RETURN_IF_ERROR(r.Get("daemon", "journal_socket", c.journal_socket));
  RETURN_IF_ERROR(r.Get("engine", "scripted_delay_ms", c.scripted_delay));
  RETURN_IF_ERROR(r.Get("engine", "scripted_slow_uuids", c.scripted_slow_uuids));
  RETURN_IF_ERROR(r.Get("engine", "scripted_slow_delay_ms", c.scripted_slow_delay));
  if (c.journal_socket.empty() || c.journal_socket[0] != '/')
    return bad("daemon", "journal_socket", "must be an absolute path");
  if (c.engine != "libtpms" && c.engine != "scripted")
    return bad("engine", "kind", "must be \"libtpms\" or \"scripted\" (a test engine), not \"" + c.engine + "\"");
#else
  // The other engines are test doubles, compiled only into test builds.
  if (c.engine != "libtpms")
    return bad("engine", "kind",
               "must be \"libtpms\", not \"" + c.engine + "\" (other engines exist only in test builds)");
#endif
  if (c.resume != "handle" && c.resume != "never")
    return bad("engine", "resume", "must be \"handle\" or \"never\", not \"" + c.resume + "\"");
  if (c.worker_uid_base < kWorkerUidBaseMin || c.worker_uid_base > kWorkerUidBaseMax)
    return bad("engine", "worker_uid_base",
               "must be from 65536 to 2147418112 (0x7fff0000), so that its 65536 uids lie above 16-bit uids and "
               "below 2^31, not " + std::to_string(c.worker_uid_base));
  if (c.startup != "clear" && c.startup != "none")
    return bad("engine", "startup", "must be \"clear\" or \"none\", not \"" + c.startup + "\"");
  if (!c.worker_path.empty() && !IsAbsolutePath(c.worker_path))
    return bad("engine", "worker_path", "must be empty (the installed vtpm-worker) or an absolute path, not \"" +
                                            c.worker_path + "\"");
  if (const toml::node* n = root.at_path("engine.worker_path").node()) c.worker_path_origin = Where(source_name, *n);
  if (c.log_target != "auto" && c.log_target != "journal" && c.log_target != "stderr")
    return bad("daemon", "log_target", "must be auto, journal or stderr, not \"" + c.log_target + "\"");
  if (!IsLogLevel(c.log_level))
    return bad("daemon", "log_level", std::string("must be ") + kLogLevels + ", not \"" + c.log_level + "\"");
  if (!IsAbsolutePath(c.state_dir)) return bad("daemon", "state_dir", "must be an absolute path");
  if (!IsAbsolutePath(c.peers_dir)) return bad("migration", "peers_dir", "must be an absolute path");
  if (!IsAbsolutePath(c.runtime_dir)) return bad("daemon", "runtime_dir", "must be an absolute path");
  namespace fs = std::filesystem;
  static const std::string kDirsDiffer = "durable state and the tmpfs runtime_dir need two directories";
  if ((fs::path(c.state_dir) / "").lexically_normal() == (fs::path(c.runtime_dir) / "").lexically_normal())
    return root.at_path("daemon.runtime_dir")
               ? bad("daemon", "runtime_dir", "is state_dir (" + c.state_dir + "): " + kDirsDiffer)
               : bad("daemon", "state_dir", "is runtime_dir (" + c.runtime_dir + "): " + kDirsDiffer);
  if (!c.control_socket.empty() && !IsAbsolutePath(c.control_socket))
    return bad("daemon", "control_socket", "must be empty (<runtime_dir>/control.sock) or an absolute path");
  if (c.ControlSocket().size() >= sizeof(sockaddr_un::sun_path))
    return bad("daemon", c.control_socket.empty() ? "runtime_dir" : "control_socket",
               "gives the control socket path " + c.ControlSocket() + ", longer than a socket path may be (at most " +
                   std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes)");
  if (c.command_deadline < std::chrono::milliseconds(100) || c.command_deadline > std::chrono::milliseconds(50000))
    return bad("daemon", "command_deadline_ms", "must be between 100 and 50000 (below the guest's 50 s duration)");
  if (c.admin_deadline < std::chrono::milliseconds(1000) || c.admin_deadline > std::chrono::milliseconds(600000))
    return bad("daemon", "admin_deadline_ms", "must be between 1000 and 600000");
  if (c.backend_domid > kMaxBackendDomid)
    return bad("xen", "backend_domid",
               "must be a domain id from 0 to 32751 (0x7fef; 0x7ff0 and up are reserved by Xen), not " +
                   std::to_string(c.backend_domid));
  if (std::string why = TctiProblem(c.tcti); !why.empty()) return bad("host_tpm", "tcti", "is invalid: " + why);
  if (c.srk_handle < kSrkHandleFirst || c.srk_handle > kSrkHandleLast)
    return bad("host_tpm", "srk_handle",
               "must be a persistent handle in the owner's range 0x81000000 to 0x817fffff, not " + Hex(c.srk_handle));
  std::set<uint32_t> pcrs;
  for (uint32_t pcr : c.pcr_policy)
    if (!pcrs.insert(pcr).second)
      return bad("host_tpm", "pcr_policy", "names PCR " + std::to_string(pcr) + " twice; list each PCR (0 to 23) once");
  return c;
}

Result<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::FromErrno(errno, "cannot read config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

}  // namespace vtpm
