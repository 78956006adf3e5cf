// Daemon: wires config, the Xen seam, the engines and the backend onto one
// event loop, and handles signals and systemd notification.
#pragma once

#include <memory>

#include "daemon/config.h"

namespace vtpm {

// Runs the daemon until SIGTERM/SIGINT. Returns a process exit status
// (daemon/exit_codes.h). SIGTERM leaves connected devices untouched.
int RunDaemon(const Config& config);

// `vtpmmgrd --reinitialise`: replaces a lost store with a new, empty one
// (ReinitialiseStore, open_store.h) and returns an exit status: 0 done,
// kExitRefuse while a store file exists, a store refusal's status, or
// kExitConfig for the scripted engine, which has no store.
int RunReinitialise(const Config& config);

}  // namespace vtpm
