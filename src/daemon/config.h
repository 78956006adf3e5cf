// Config: /etc/vtpmmgrd/vtpmmgrd.conf (TOML). Every key, its type, default
// and meaning is listed in vtpmmgrd.conf(5) and etc/vtpmmgrd.conf; unknown
// keys are errors, so a typo never silently falls back to a default.
// Test builds (VTPM_TEST_BUILD, cmake -DVTPM_TESTS=ON) accept a few more
// keys, listed in tests/sim/README.md; a release build knows none of them.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vtpm {

// The values [daemon] log_level and the -l/--log-level flag accept.
inline constexpr const char* kLogLevels = "trace, debug, info, warn or error";
bool IsLogLevel(std::string_view level);

// [xen] backend_domid: a domain id below DOMID_FIRST_RESERVED (0x7ff0).
inline constexpr uint32_t kMaxBackendDomid = 0x7fef;
// [host_tpm] srk_handle: the persistent handles the owner hierarchy may use
// (0x81800000 and up are the platform's; TPM2_EvictControl with owner
// authorisation cannot persist there).
inline constexpr uint32_t kSrkHandleFirst = 0x81000000;
inline constexpr uint32_t kSrkHandleLast = 0x817fffff;
// [engine] worker_uid_base: 65536 uids above the 16-bit range and below 2^31
// (uid_t is compared as signed in places).
inline constexpr uint32_t kWorkerUidBaseMin = 0x10000;
inline constexpr uint32_t kWorkerUidBaseMax = 0x7fff0000;

struct Config {
  // [daemon]
  std::string state_dir = "/var/lib/vtpmmgrd";
  std::string runtime_dir = "/run/vtpmmgrd";
  std::string control_socket;  // default: <runtime_dir>/control.sock
  std::string log_level = "info";
  std::string log_target = "auto";  // auto | journal | stderr
  bool auto_create = true;
  std::chrono::milliseconds command_deadline{30000};
  // Worker start-up (libtpms self-test) and each manufacture step (RSA-2048).
  std::chrono::milliseconds admin_deadline{30000};
  // [xen]
  uint32_t backend_domid = 0;
  bool allow_any_locality = false;
  // "daemon": the backend maps and serves every guest's page; "worker":
  // each instance's worker maps its guest's page and serves it
  // (tpm/worker_guest.h, design §3 "The worker serves its guest"); the
  // scripted engine has no worker, so with it the data path is the daemon's.
  std::string data_path = "worker";
  // [host_tpm]
  std::string tcti = "device:/dev/tpmrm0";
  uint32_t srk_handle = 0x81000001;
  bool persist_srk = true;
  std::vector<uint32_t> pcr_policy;  // empty = master key bound to SK only
  // [engine]
  std::string engine = "libtpms";  // libtpms (a test build also has: scripted)
  std::string worker_path;         // default: the installed vtpm-worker
  std::string worker_path_origin;  // "file:line" of worker_path, for messages; empty for the default
  std::string startup = "clear";   // clear: TPM_Startup(ST_CLEAR) at power-on | none: the guest sends it
  // handle: a domain whose handle equals that of the domain that suspended
  // resumes the state captured then | never: every new domain powers on fresh.
  std::string resume = "handle";
  // First of the 65536 uids the workers run under, one each (design §2 "Identities").
  uint32_t worker_uid_base = 0x7a700000;
  // [migration]
  // One file per trusted host, named after it, holding its `vtpmctl host-key` line.
  std::string peers_dir = "/etc/vtpmmgrd/peers";
#ifdef VTPM_TEST_BUILD
  // [daemon] journal_socket: where journal entries go (tests capture them).
  std::string journal_socket = "/run/systemd/journal/socket";
  // [engine] scripted_*: the scripted engine's response delays.
  std::chrono::milliseconds scripted_delay{0};
  std::vector<std::string> scripted_slow_uuids;
  std::chrono::milliseconds scripted_slow_delay{2000};
#endif

  std::string ControlSocket() const {
    return control_socket.empty() ? runtime_dir + "/control.sock" : control_socket;
  }
};

// Parses TOML text and checks every value's meaning (ranges, transports,
// absolute paths), not only its type. Errors name the file, line and key
// and the values allowed. Pure: whether worker_path is an executable file
// is for the daemon to check (WorkerPath() in install_paths.h).
Result<Config> ParseConfig(const std::string& text, const std::string& source_name);
Result<Config> LoadConfig(const std::string& path);

}  // namespace vtpm
