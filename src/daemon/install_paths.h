// Where the installed daemon finds the files it ships with. Paths are
// resolved from the daemon's own executable, not from the prefix given at
// configure time, so `cmake --install --prefix P` of any build tree yields
// a working installation (doc/design.md, "Installation layout").
#pragma once

#include <string>

#include "common/status.h"
#include "daemon/config.h"

namespace vtpm {

// The vtpm-worker that belongs to this vtpmmgrd: <dir of /proc/self/exe>/
// followed by the build's sbindir -> libexecdir relative path (for a
// /usr prefix: /usr/sbin/../libexec/vtpmmgrd/vtpm-worker). Fails with the
// path it looked at when that is not an executable file.
Result<std::string> InstalledWorkerPath();

// The worker `cfg` starts: [engine] worker_path, or InstalledWorkerPath()
// when that is empty. kInvalidArgument, naming worker_path's file:line,
// when the configured one is not an executable regular file.
Result<std::string> WorkerPath(const Config& cfg);

}  // namespace vtpm
