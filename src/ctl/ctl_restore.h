// `vtpmctl restore FILE`: brings back a backup while vtpmmgrd is stopped
// (vtpmctl(8) "RESTORE", design §6c). It works on the state directory and the
// host TPM named by the configuration, not through the control socket.
#pragma once

#include <string>

#include "daemon/config.h"
#include "daemon/control_protocol.h"

namespace vtpm::ctl {

struct RestoreResult {
  int exit_status;           // ctl_exit.h
  ControlResponse response;  // as --json prints it; error set on failure
};

RestoreResult RunRestore(const Config& cfg, const std::string& file, bool replace);

}  // namespace vtpm::ctl
