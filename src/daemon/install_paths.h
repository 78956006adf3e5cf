// Where the installed daemon finds the files it ships with. Paths are
// resolved from the daemon's own executable, not from the prefix given at
// configure time, so `cmake --install --prefix P` of any build tree yields
// a working installation (doc/design.md, "Installation layout").
#pragma once

#include <string>

#include "common/status.h"

namespace vtpm {

// The vtpm-worker that belongs to this vtpmmgrd: <dir of /proc/self/exe>/
// followed by the build's sbindir -> libexecdir relative path (for a
// /usr prefix: /usr/sbin/../libexec/vtpmmgrd/vtpm-worker). Fails with the
// path it looked at when that is not an executable file.
Result<std::string> InstalledWorkerPath();

}  // namespace vtpm
