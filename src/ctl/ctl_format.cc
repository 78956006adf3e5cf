#include "ctl/ctl_format.h"

#include <ctime>
#include <vector>

#include <fmt/format.h>

namespace vtpm::ctl {
namespace {

using nlohmann::json;

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

std::string Attached(const json& a, bool suspended = false, const json& moved = nullptr) {
  if (moved.is_object() && a.is_null()) return "moved to " + Str(moved, "peer");
  if (a.is_null()) return suspended ? "suspended" : "idle";
  std::string s = fmt::format("domid {} devid {}", a.value("domid", -1), a.value("devid", -1));
  if (!a.value("connected", false)) s += " (not connected)";
  return s;
}

// The attached domain's name, "-" when idle or unnamed.
std::string DomainName(const json& a) { return a.is_object() ? Str(a, "name") : "-"; }

std::string YesNo(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_boolean()) return "-";
  return it->get<bool>() ? "yes" : "no";
}

// Columns padded to their widest cell; the last column is not padded.
std::string Columns(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w;
  for (auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  std::string out;
  for (auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) {
      out += r[i];
      if (i + 1 < r.size()) out += std::string(w[i] - r[i].size() + 2, ' ');
    }
    out += "\n";
  }
  return out;
}

std::string Wrap(const std::string& hex, size_t width, const std::string& indent) {
  std::string out;
  for (size_t i = 0; i < hex.size(); i += width) out += indent + hex.substr(i, width) + "\n";
  return out;
}

}  // namespace

std::string FormatTime(const json& t) {
  if (!t.is_number_integer() || t.get<int64_t>() == 0) return "-";
  time_t v = time_t(t.get<int64_t>());
  struct tm tm {};
  gmtime_r(&v, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string FormatSize(const json& bytes) {
  if (!bytes.is_number_unsigned() && !bytes.is_number_integer()) return "-";
  double b = bytes.get<double>();
  if (b < 1024) return fmt::format("{} B", bytes.get<uint64_t>());
  if (b < 1024 * 1024) return fmt::format("{:.1f} KiB", b / 1024);
  return fmt::format("{:.1f} MiB", b / (1024 * 1024));
}

std::string FormatTable(Verb verb, const json& d) {
  switch (verb) {
    case Verb::kList: {
      std::vector<std::vector<std::string>> rows = {
          {"UUID", "DOMAIN", "TPM", "ATTACHED", "CREATED", "LAST USED", "SIZE", "AUTO-CREATED"}};
      for (auto& i : d.value("instances", json::array()))
        rows.push_back({Str(i, "uuid"), DomainName(i.value("attached", json())), Str(i, "tpm_version"),
                        Attached(i.value("attached", json()), i.value("suspended", false), i.value("moved", json())),
                        FormatTime(i.value("created", json())), FormatTime(i.value("last_used", json())),
                        FormatSize(i.value("size_bytes", json())), YesNo(i, "auto_created")});
      if (rows.size() == 1) return "no vTPM instances\n";
      return Columns(rows);
    }
    case Verb::kShow: {
      if (auto moved = d.value("moved", json()); moved.is_object())
        return fmt::format("instance {} moved to host {} at {} (vtpmctl export, export {});\n"
                           "it is refused here until it is imported back\n",
                           Str(d, "uuid"), Str(moved, "peer"), FormatTime(moved.value("moved_at", json())),
                           Str(moved, "export_id"));
      std::string out = Columns({{"uuid:", Str(d, "uuid")},
                                 {"tpm version:", Str(d, "tpm_version")},
                                 {"domain:", DomainName(d.value("attached", json()))},
                                 {"attached:", Attached(d.value("attached", json()))},
                                 {"created:", FormatTime(d.value("created", json()))},
                                 {"last used:", FormatTime(d.value("last_used", json()))},
                                 {"last command:", FormatTime(d.value("last_command", json()))},
                                 {"last written:", FormatTime(d.value("last_written", json()))},
                                 {"size:", FormatSize(d.value("size_bytes", json()))},
                                 {"auto-created:", YesNo(d, "auto_created")}});
      if (auto sus = d.value("suspended", json()); sus.is_object())
        out += fmt::format("suspended:     domain {} (handle {}) suspended at {}; the first domain with that handle\n"
                           "               resumes its TPM (vtpmctl discard drops it)\n",
                           sus.value("domid", 0), Str(sus, "handle"), FormatTime(sus.value("captured_at", json())));
      out += "EK public key (TPM_PUBKEY):\n";
      std::string ek = Str(d, "ek_public");
      out += ek == "-" ? "  (not recorded)\n" : Wrap(ek, 64, "  ");
      auto pcrs = d.value("pcrs", json());
      if (pcrs.is_array()) {
        out += "PCRs:\n";
        for (size_t i = 0; i < pcrs.size(); ++i)
          out += fmt::format("  PCR-{:02}: {}\n", i, pcrs[i].is_string() ? pcrs[i].get<std::string>() : "?");
      } else if (d.contains("pcrs_error")) {
        out += "PCRs: unavailable (" + Str(d, "pcrs_error") + ")\n";
      } else {
        out += "PCRs: not running (shown while a guest has the TPM powered)\n";
      }
      return out;
    }
    case Verb::kCreate:
      return fmt::format("created TPM {} instance {}\n", Str(d, "tpm_version"), Str(d, "uuid"));
    case Verb::kStatus: {
      std::vector<std::vector<std::string>> rows = {{"version:", Str(d, "version")},
                                                    {"engine:", Str(d, "engine")},
                                                    {"control socket:", Str(d, "control_socket")}};
      auto dev = d.value("devices", json::object());
      rows.push_back({"devices:", fmt::format("{} known, {} connected", dev.value("known", 0), dev.value("connected", 0))});
      auto st = d.value("store", json());
      if (st.is_object()) {
        rows.push_back({"store:", Str(st, "path")});
        rows.push_back({"runtime dir:", Str(st, "runtime_dir")});
        rows.push_back({"instances:", Str(st, "instances")});
        rows.push_back({"store size:", FormatSize(st.value("size_bytes", json()))});
        rows.push_back({"commits:", fmt::format("{} in {} groups since start", Str(st, "commits"), Str(st, "commit_groups"))});
      }
      auto ht = d.value("host_tpm", json());
      if (ht.is_object()) {
        rows.push_back({"host TPM:", Str(ht, "transport")});
        rows.push_back({"master key:", Str(ht, "key_protection")});
        for (auto& p : ht.value("pcrs", json::array()))
          rows.push_back({fmt::format("host PCR {}:", p.value("index", 0)), "sha256:" + Str(p, "sha256")});
      }
      return Columns(rows);
    }
    case Verb::kWipe:
      return fmt::format("wiped {}{}\n", Str(d, "uuid"),
                         d.value("forced", false) ? " (device closed: the guest has lost its TPM)" : "");
    case Verb::kClear:
      return fmt::format("cleared {}: {}\n", Str(d, "uuid"), Str(d, "note"));
    case Verb::kDiscard:
      return fmt::format("discarded the TPM state captured when domain {} suspended at {}; {} powers on fresh\n",
                         Str(d, "domid"), FormatTime(d.value("captured_at", json())), Str(d, "uuid"));
    case Verb::kPrune: {
      auto list = d.value("pruned", json::array());
      std::string out = fmt::format("pruned {} auto-created instance{} idle for at least {} s\n", list.size(),
                                    list.size() == 1 ? "" : "s", Str(d, "idle_for_seconds"));
      for (auto& p : list) out += fmt::format("  {}  last used {}\n", Str(p, "uuid"), FormatTime(p.value("last_used", json())));
      return out;
    }
    case Verb::kBackup:
      return fmt::format("store copied to {}; it keeps every instance as of now, including any wiped later\n",
                         Str(d, "path"));
    case Verb::kHostKey:
      return Str(d, "host_key") + "\n";
    case Verb::kExport:
      return fmt::format("instance {} exported to host {} as {} (export {}){}; it is wiped here.\n"
                         "copy {} and the save image to {}, run 'vtpmctl import' there, then xl restore\n",
                         Str(d, "uuid"), Str(d, "peer"), Str(d, "path"), Str(d, "export_id"),
                         d.value("suspended", false) ? " with its suspended TPM state" : " (no suspend capture)",
                         Str(d, "path"), Str(d, "peer"));
    case Verb::kImport:
      return fmt::format("instance {} imported from host {} (export {}){}\n", Str(d, "uuid"), Str(d, "peer"),
                         Str(d, "export_id"),
                         d.value("suspended", false) ? "; xl restore of its save image resumes its TPM"
                                                     : "; it powers on fresh");
  }
  return d.dump(2) + "\n";
}

std::string FormatRestore(const json& d) {
  std::string out = fmt::format("restored {} from {}: {} instance{}\n", Str(d, "path"), Str(d, "from"),
                                Str(d, "instances"), d.value("instances", 0) == 1 ? "" : "s");
  if (d.value("replaced", json()).is_string())
    out += fmt::format("the store that was in place is kept as {}\n", Str(d, "replaced"));
  out += "start the daemon: systemctl start vtpmmgrd\n";
  return out;
}

}  // namespace vtpm::ctl
