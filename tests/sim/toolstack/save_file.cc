#include "toolstack/save_file.h"

#include <cerrno>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/uuid.h"

namespace vtpm::sim {

using nlohmann::json;

namespace {

// o[key], or null when o is no object or lacks the key (no insertion).
const json& Field(const json& o, const char* key) {
  static const json kNull;
  if (!o.is_object()) return kNull;
  auto it = o.find(key);
  return it == o.end() ? kNull : *it;
}

}  // namespace

Status WriteSaveFile(const std::string& path, const SavedDomain& saved) {
  json vtpms = json::array();
  for (const VtpmSpec& v : saved.vtpms) vtpms.push_back({{"devid", v.devid.value_or(0)}, {"uuid", v.uuid}});
  json doc = {{"c_info", {{"uuid", saved.handle}, {"name", saved.name}}}, {"vtpms", vtpms}};
  std::ofstream out(path, std::ios::trunc);
  out << doc.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  if (!out.flush()) return Status::FromErrno(errno, "writing " + path);
  return Status::Ok();
}

Result<SavedDomain> ReadSaveFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::FromErrno(errno, "reading " + path);
  std::stringstream text;
  text << in.rdbuf();
  auto bad = [&](const std::string& why) { return Status(Code::kCorruption, path + ": " + why); };
  const json doc = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  const json& info = Field(doc, "c_info");
  const json& vtpms = Field(doc, "vtpms");
  if (!info.is_object() || !vtpms.is_array()) return bad("not a save file (c_info, vtpms)");
  if (!Field(info, "uuid").is_string() || !Field(info, "name").is_string())
    return bad("c_info needs uuid and name");
  SavedDomain out;
  out.handle = Field(info, "uuid").get<std::string>();
  out.name = Field(info, "name").get<std::string>();
  if (!Uuid::Parse(out.handle).ok()) return bad("malformed c_info.uuid " + out.handle);
  for (const json& v : vtpms) {
    const json& devid = Field(v, "devid");
    const json& uuid = Field(v, "uuid");
    if (!devid.is_number_unsigned() || devid.get<uint64_t>() > UINT32_MAX || !uuid.is_string())
      return bad("a vtpm needs devid and uuid");
    VtpmSpec spec{devid.get<uint32_t>(), uuid.get<std::string>()};
    if (!Uuid::Parse(spec.uuid).ok()) return bad("malformed vtpm uuid " + spec.uuid);
    out.vtpms.push_back(std::move(spec));
  }
  return out;
}

}  // namespace vtpm::sim
