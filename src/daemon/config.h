// Config: /etc/vtpmmgrd/vtpmmgrd.conf (TOML). Every key, its type, default
// and meaning is listed in vtpmmgrd.conf(5) and etc/vtpmmgrd.conf; unknown
// keys are errors, so a typo never silently falls back to a default.
// Test builds (VTPM_TEST_BUILD, cmake -DVTPM_TESTS=ON) accept a few more
// keys, listed in tests/sim/README.md; a release build knows none of them.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace vtpm {

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
  // [host_tpm]
  std::string tcti = "device:/dev/tpmrm0";
  uint32_t srk_handle = 0x81000001;
  bool persist_srk = true;
  std::vector<uint32_t> pcr_policy;  // empty = master key bound to SK only
  // [engine]
  std::string engine = "libtpms";  // libtpms (a test build also has: scripted)
  std::string worker_path;         // default: the installed vtpm-worker
  std::string startup = "clear";   // clear: TPM_Startup(ST_CLEAR) at power-on | none: the guest sends it
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

// Parses TOML text. Errors name the file, line and key.
Result<Config> ParseConfig(const std::string& text, const std::string& source_name);
Result<Config> LoadConfig(const std::string& path);

}  // namespace vtpm
