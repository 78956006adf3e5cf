#include "ctl/ctl_target.h"

#include <algorithm>
#include <optional>
#include <vector>

#include <fmt/format.h>

namespace vtpm::ctl {
namespace {

using nlohmann::json;

bool AllDigits(const std::string& s) {
  return !s.empty() && s.size() <= 10 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool LooksLikeUuid(const std::string& s) { return s.size() == 36 && s[8] == '-' && s[13] == '-'; }

std::string DomainOf(const json& attached) {
  std::string name = attached.value("name", json()).is_string() ? attached["name"].get<std::string>() : "?";
  return fmt::format("{} (domid {} devid {})", name, attached.value("domid", -1), attached.value("devid", -1));
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

bool NeedsLookup(const std::string& text) { return !LooksLikeUuid(text); }

Result<Uuid> ResolveInstance(const std::string& text, const json& list_data) {
  if (LooksLikeUuid(text)) {
    auto u = Uuid::Parse(text);
    if (!u.ok() || u->IsNil())
      return Status(Code::kInvalidArgument, "'" + text + "' is not an instance uuid; write it like "
                                            "01234567-89ab-cdef-0123-456789abcdef (see 'vtpmctl list')");
    return *u;
  }
  const bool by_domid = AllDigits(text);
  std::vector<std::string> matches, domains;
  std::optional<Uuid> found;
  for (const json& row : list_data.value("instances", json::array())) {
    const json attached = row.value("attached", json());
    if (!attached.is_object()) continue;
    domains.push_back(DomainOf(attached));
    bool hit = by_domid ? std::to_string(attached.value("domid", -1)) == text
                        : attached.value("name", json()).is_string() && attached["name"].get<std::string>() == text;
    if (!hit) continue;
    auto u = Uuid::Parse(row.value("uuid", ""));
    if (!u.ok()) continue;
    found = *u;
    matches.push_back(u->ToString() + " of " + DomainOf(attached));
  }
  const std::string what = (by_domid ? "domid " : "domain name '") + text + (by_domid ? "" : "'");
  if (matches.size() > 1)
    return Status(Code::kAlreadyExists,
                  what + " matches " + std::to_string(matches.size()) + " vTPM instances: " + Join(matches) +
                      "; name one by its uuid");
  if (!found)
    return Status(Code::kNotFound,
                  "no vTPM instance is attached to " + what + "; " +
                      (domains.empty() ? std::string("no domain has a vTPM attached")
                                       : "domains with a vTPM: " + Join(domains)) +
                      " (an instance not attached is named by its uuid; see 'vtpmctl list')");
  return *found;
}

}  // namespace vtpm::ctl
