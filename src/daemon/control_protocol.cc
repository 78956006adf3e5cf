#include "daemon/control_protocol.h"

#include <array>
#include <limits>

namespace vtpm {
namespace {

using nlohmann::json;

constexpr std::array<std::pair<Verb, const char*>, 12> kVerbs = {{
    {Verb::kList, "list"}, {Verb::kShow, "show"}, {Verb::kCreate, "create"}, {Verb::kStatus, "status"},
    {Verb::kWipe, "wipe"}, {Verb::kClear, "clear"}, {Verb::kPrune, "prune"}, {Verb::kBackup, "backup"},
    {Verb::kDiscard, "discard"}, {Verb::kHostKey, "host-key"}, {Verb::kExport, "export"}, {Verb::kImport, "import"},
}};

Status Bad(const std::string& what) { return Status(Code::kInvalidArgument, what); }

bool NeedsUuid(Verb v) {
  return v == Verb::kShow || v == Verb::kCreate || v == Verb::kWipe || v == Verb::kClear || v == Verb::kDiscard ||
         v == Verb::kExport;
}

bool NeedsPath(Verb v) { return v == Verb::kBackup || v == Verb::kExport || v == Verb::kImport; }

// Parses a line into a JSON object; kInvalidArgument if it is not one.
Result<json> ParseObject(std::string_view line, const char* what, size_t max) {
  if (line.size() > max) return Bad(std::string(what) + " is too long");
  json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad(std::string(what) + " is not valid JSON");
  if (!j.is_object()) return Bad(std::string(what) + " is not a JSON object");
  return j;
}

Result<int> ReadVersion(const json& j, const char* what) {
  auto it = j.find("version");
  if (it == j.end() || !it->is_number_integer()) return Bad(std::string(what) + " has no integer \"version\"");
  int64_t v = it->get<int64_t>();
  if (v != kControlVersion)
    return Status(Code::kFailedPrecondition, std::string(what) + " uses protocol version " + std::to_string(v) +
                                                 ", this side speaks version " + std::to_string(kControlVersion) +
                                                 ": use vtpmctl and vtpmmgrd from the same release");
  return int(v);
}

}  // namespace

const char* ResultName(ResultCode c) {
  switch (c) {
    case ResultCode::kOk: return "ok";
    case ResultCode::kBadRequest: return "bad_request";
    case ResultCode::kNotFound: return "not_found";
    case ResultCode::kConflict: return "conflict";
    case ResultCode::kPermissionDenied: return "permission_denied";
    case ResultCode::kUnsupportedVersion: return "unsupported_version";
    case ResultCode::kTpmRefused: return "tpm_refused";
    case ResultCode::kFailed: return "failed";
    case ResultCode::kUnavailable: return "unavailable";
  }
  return "unknown";
}

const char* VerbName(Verb v) {
  for (auto& [verb, name] : kVerbs)
    if (verb == v) return name;
  return "?";
}

std::string EncodeRequest(const ControlRequest& req) {
  json j = {{"version", req.version}, {"verb", VerbName(req.verb)}};
  if (req.uuid) j["uuid"] = req.uuid->ToString();
  if (req.verb == Verb::kCreate) j["tpm"] = req.tpm_version;
  if (req.verb == Verb::kWipe) j["force"] = req.force;
  if (req.verb == Verb::kPrune) j["idle_for_seconds"] = req.idle_for_seconds;
  if (NeedsPath(req.verb)) j["path"] = req.path;
  if (req.verb == Verb::kExport) j["peer"] = req.peer;
  return j.dump() + "\n";
}

std::string EncodeResponse(ControlResponse&& rsp) {
  json j = {{"version", rsp.version}, {"result", int(rsp.result)}, {"result_name", ResultName(rsp.result)}};
  if (!rsp.error.empty()) j["error"] = rsp.error;
  j["data"] = std::move(rsp.data);
  rsp.data = nullptr;
  // Invalid UTF-8 in a message (e.g. a path) is replaced, never thrown.
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string EncodeResponse(const ControlResponse& rsp) {
  ControlResponse copy = rsp;
  return EncodeResponse(std::move(copy));
}

Result<ControlRequest> ParseRequest(std::string_view line) {
  ASSIGN_OR_RETURN(json j, ParseObject(line, "request", kMaxControlLine));
  ControlRequest req;
  ASSIGN_OR_RETURN(req.version, ReadVersion(j, "request"));
  auto verb = j.find("verb");
  if (verb == j.end() || !verb->is_string()) return Bad("request has no \"verb\" string");
  const std::string& name = verb->get_ref<const std::string&>();
  bool known = false;
  for (auto& [v, n] : kVerbs)
    if (name == n) {
      req.verb = v;
      known = true;
    }
  if (!known) return Bad("unknown verb \"" + name + "\"; see vtpmctl --help");
  if (NeedsUuid(req.verb)) {
    auto u = j.find("uuid");
    if (u == j.end() || !u->is_string()) return Bad(name + " needs a \"uuid\" string");
    auto parsed = Uuid::Parse(u->get_ref<const std::string&>());
    if (!parsed.ok()) return Bad("uuid must look like 01234567-89ab-cdef-0123-456789abcdef");
    if (parsed->IsNil()) return Bad("the nil uuid names no instance");
    req.uuid = *parsed;
  }
  if (req.verb == Verb::kCreate) {
    if (auto t = j.find("tpm"); t != j.end()) {
      if (!t->is_string()) return Bad("\"tpm\" must be a string such as \"1.2\"");
      req.tpm_version = t->get<std::string>();
    }
  }
  if (req.verb == Verb::kWipe) {
    if (auto f = j.find("force"); f != j.end()) {
      if (!f->is_boolean()) return Bad("\"force\" must be true or false");
      req.force = f->get<bool>();
    }
  }
  if (req.verb == Verb::kPrune) {
    auto d = j.find("idle_for_seconds");
    if (d == j.end() || !d->is_number_integer()) return Bad("prune needs an integer \"idle_for_seconds\"");
    req.idle_for_seconds = d->get<int64_t>();
    if (req.idle_for_seconds <= 0) return Bad("\"idle_for_seconds\" must be positive");
  }
  if (NeedsPath(req.verb)) {
    auto p = j.find("path");
    if (p == j.end() || !p->is_string()) return Bad(name + " needs a \"path\" string");
    req.path = p->get<std::string>();
    if (req.path.empty() || req.path[0] != '/' || req.path.find('\0') != std::string::npos)
      return Bad("the " + name + " path must be absolute");
  }
  if (req.verb == Verb::kExport) {
    auto p = j.find("peer");
    if (p == j.end() || !p->is_string()) return Bad("export needs a \"peer\" string");
    req.peer = p->get<std::string>();
    if (req.peer.empty() || req.peer.size() > 64 || req.peer[0] == '.' ||
        req.peer.find_first_of(std::string("/\0", 2)) != std::string::npos)
      return Bad("the peer must be a file name in the peers directory");
  }
  return req;
}

Result<ControlResponse> ParseResponse(std::string_view line) {
  ASSIGN_OR_RETURN(json j, ParseObject(line, "response", kMaxResponseLine));
  ControlResponse rsp;
  ASSIGN_OR_RETURN(rsp.version, ReadVersion(j, "response"));
  auto r = j.find("result");
  if (r == j.end() || !r->is_number_integer()) return Bad("response has no integer \"result\"");
  int64_t code = r->get<int64_t>();
  if (code < 0 || code > int(ResultCode::kUnavailable)) return Bad("response has unknown result " + std::to_string(code));
  rsp.result = ResultCode(code);
  if (auto e = j.find("error"); e != j.end()) {
    if (!e->is_string()) return Bad("response \"error\" is not a string");
    rsp.error = e->get<std::string>();
  }
  if (rsp.result != ResultCode::kOk && rsp.error.empty()) return Bad("failed response carries no \"error\"");
  if (auto d = j.find("data"); d != j.end()) {
    if (!d->is_object()) return Bad("response \"data\" is not an object");
    rsp.data = std::move(*d);  // a list of 10^4 instances: moved, not copied
  }
  return rsp;
}

Result<int64_t> ParseDuration(std::string_view text) {
  const std::string hint = " is not a duration: use a number with a unit, such as 90s, 45m, 12h, 30d or 2w";
  if (text.empty()) return Bad("an empty string" + hint);
  constexpr int64_t kMax = 100LL * 366 * 86400;
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    int64_t n = 0;
    size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      n = n * 10 + (text[i++] - '0');
      if (n > kMax) return Bad("'" + std::string(text) + "' is longer than 100 years");
      ++digits;
    }
    if (digits == 0) return Bad("'" + std::string(text) + "'" + hint);
    int64_t unit = 1;
    if (i < text.size()) {
      switch (text[i++]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 7 * 86400; break;
        default: return Bad("'" + std::string(text) + "'" + hint);
      }
    } else if (total != 0) {
      return Bad("'" + std::string(text) + "'" + hint);  // "1d5": the 5 has no unit
    }
    total += n * unit;
    if (total > kMax) return Bad("'" + std::string(text) + "' is longer than 100 years");
  }
  if (total <= 0) return Bad("'" + std::string(text) + "' is zero: prune needs a positive idle time");
  return total;
}

ResultCode ResultFor(const Status& st) {
  switch (st.code()) {
    case Code::kOk: return ResultCode::kOk;
    case Code::kInvalidArgument: return ResultCode::kBadRequest;
    case Code::kNotFound: return ResultCode::kNotFound;
    case Code::kAlreadyExists:
    case Code::kBusy: return ResultCode::kConflict;
    case Code::kPermissionDenied: return ResultCode::kPermissionDenied;
    case Code::kTpmError: return ResultCode::kTpmRefused;
    default: return ResultCode::kFailed;
  }
}

}  // namespace vtpm
