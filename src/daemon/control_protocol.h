// Control protocol between vtpmctl and vtpmmgrd (vtpmctl(8) "PROTOCOL").
//
// One request and one response per connection on the control socket, each
// a single line of JSON ended by '\n' (kMaxControlLine / kMaxResponseLine):
//   request:  {"version":1,"verb":"wipe","uuid":"...","force":true}
//   response: {"version":1,"result":3,"result_name":"conflict",
//              "error":"<one sentence saying what to do>","data":{...}}
// Result codes are stable: new ones are only ever appended.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "common/uuid.h"

namespace vtpm {

inline constexpr int kControlVersion = 1;
inline constexpr size_t kMaxControlLine = 64 * 1024;        // a request
inline constexpr size_t kMaxResponseLine = 64 * 1024 * 1024;  // a response (list of 20,000 instances)

enum class ResultCode : int {
  kOk = 0,
  kBadRequest = 1,          // malformed request or bad argument
  kNotFound = 2,            // no such instance
  kConflict = 3,            // exists already, attached, busy, file exists
  kPermissionDenied = 4,    // peer is not root
  kUnsupportedVersion = 5,  // request version this daemon does not speak
  kTpmRefused = 6,          // the vTPM refused the operation (e.g. ForceClear disabled)
  kFailed = 7,              // the operation failed in the daemon (store, host TPM, worker)
  kUnavailable = 8,         // the operation needs something this daemon lacks (a test build's scripted engine)
};
const char* ResultName(ResultCode c);

enum class Verb { kList, kShow, kCreate, kStatus, kWipe, kClear, kPrune, kBackup, kDiscard, kHostKey, kExport, kImport };
const char* VerbName(Verb v);

struct ControlRequest {
  int version = kControlVersion;
  Verb verb = Verb::kList;
  std::optional<Uuid> uuid;          // show, create, wipe, clear, discard, export
  std::string tpm_version = "1.2";   // create
  bool force = false;                // wipe
  int64_t idle_for_seconds = 0;      // prune
  std::string path;                  // backup, export, import: absolute
  std::string peer;                  // export: the receiving host's name in the peers directory
  // Who asked, for the daemon's log: "uid 0 pid 1234 (vtpmctl)". Set by
  // ControlServer from the connection's SO_PEERCRED; never on the wire.
  std::string requester;
};

struct ControlResponse {
  int version = kControlVersion;
  ResultCode result = ResultCode::kOk;
  std::string error;  // empty on success
  nlohmann::json data = nlohmann::json::object();
  // EncodeResponse() of the fields above when already made (off the event
  // loop, for a large answer); the server then sends it as it is.
  std::string encoded;
};

// Serialisation: one line, '\n' included.
std::string EncodeRequest(const ControlRequest& req);
std::string EncodeResponse(const ControlResponse& rsp);
// The same, moving `rsp.data` into the encoder instead of copying it (a list
// of 10^4 instances); `rsp.data` is left null.
std::string EncodeResponse(ControlResponse&& rsp);

// Parsers for bytes from the socket (fuzzed: tests/fuzz/control_protocol_fuzz.cc).
// `line` excludes the '\n'. Errors are kInvalidArgument with a sentence;
// an unknown version is kFailedPrecondition.
Result<ControlRequest> ParseRequest(std::string_view line);
Result<ControlResponse> ParseResponse(std::string_view line);

// "90s", "45m", "12h", "30d", "2w" or a sum such as "1d12h"; a bare number
// is seconds. Refuses zero, negatives and more than 100 years.
Result<int64_t> ParseDuration(std::string_view text);

// The result code for a failed Status from the store or the instance manager.
ResultCode ResultFor(const Status& st);

}  // namespace vtpm
