#include "daemon/config.h"

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

class Reader {
 public:
  Reader(const toml::table& root, std::string src) : root_(root), src_(std::move(src)) {}

  Status CheckKeys(const std::map<std::string, std::set<std::string>>& allowed) {
    for (auto& [k, v] : root_) {
      std::string key(k.str());
      auto sec = allowed.find(key);
      if (sec == allowed.end())
        return Status(Code::kInvalidArgument, Where(src_, v) + ": unknown section [" + key + "]");
      const toml::table* t = v.as_table();
      if (!t) return Status(Code::kInvalidArgument, Where(src_, v) + ": '" + key + "' must be a section");
      for (auto& [k2, v2] : *t)
        if (!sec->second.count(std::string(k2.str())))
          return Status(Code::kInvalidArgument,
                        Where(src_, v2) + ": unknown key '" + std::string(k2.str()) + "' in [" + key + "]");
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
      {"xen", {"backend_domid", "allow_any_locality"}},
      {"host_tpm", {"tcti", "srk_handle", "persist_srk", "pcr_policy"}},
      {"engine", {"kind", "worker_path", "startup"}},
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
  RETURN_IF_ERROR(r.Get("host_tpm", "tcti", c.tcti));
  RETURN_IF_ERROR(r.Get("host_tpm", "srk_handle", c.srk_handle));
  RETURN_IF_ERROR(r.Get("host_tpm", "persist_srk", c.persist_srk));
  RETURN_IF_ERROR(r.Get("host_tpm", "pcr_policy", c.pcr_policy));
  RETURN_IF_ERROR(r.Get("engine", "kind", c.engine));
  RETURN_IF_ERROR(r.Get("engine", "worker_path", c.worker_path));
  RETURN_IF_ERROR(r.Get("engine", "startup", c.startup));

  // A bad value names the line of its key (or only the file for a default).
  auto bad = [&](const char* sec, const char* key, const std::string& what) {
    const toml::node* n = root.at_path(std::string(sec) + "." + key).node();
    std::string where = n ? Where(source_name, *n) : source_name;
    return Status(Code::kInvalidArgument, where + ": [" + sec + "] " + key + " " + what);
  };
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
  if (c.startup != "clear" && c.startup != "none")
    return bad("engine", "startup", "must be \"clear\" or \"none\", not \"" + c.startup + "\"");
  if (c.log_target != "auto" && c.log_target != "journal" && c.log_target != "stderr")
    return bad("daemon", "log_target", "must be auto, journal or stderr");
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error"};
  if (!kLevels.count(c.log_level)) return bad("daemon", "log_level", "must be trace, debug, info, warn or error");
  if (c.state_dir.empty() || c.state_dir[0] != '/') return bad("daemon", "state_dir", "must be an absolute path");
  if (c.runtime_dir.empty() || c.runtime_dir[0] != '/')
    return bad("daemon", "runtime_dir", "must be an absolute path");
  if (!c.control_socket.empty() && c.control_socket[0] != '/')
    return bad("daemon", "control_socket", "must be an absolute path");
  if (c.command_deadline < std::chrono::milliseconds(100) || c.command_deadline > std::chrono::milliseconds(50000))
    return bad("daemon", "command_deadline_ms", "must be between 100 and 50000 (below the guest's 50 s duration)");
  if (c.admin_deadline < std::chrono::milliseconds(1000) || c.admin_deadline > std::chrono::milliseconds(600000))
    return bad("daemon", "admin_deadline_ms", "must be between 1000 and 600000");
  if (tis::IsTisTcti(c.tcti))
    if (auto o = tis::ParseOptions(c.tcti); !o.ok()) return bad("host_tpm", "tcti", "is invalid: " + o.status().message());
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
