// Daemon: wires config, the Xen seam, the engines and the backend onto one
// event loop, and handles signals and systemd notification.
#pragma once

#include <memory>

#include "daemon/config.h"

namespace vtpm {

// Runs the daemon until SIGTERM/SIGINT. Returns a process exit status
// (daemon/exit_codes.h). SIGTERM leaves connected devices untouched.
int RunDaemon(const Config& config);

}  // namespace vtpm
