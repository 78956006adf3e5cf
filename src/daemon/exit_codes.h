// Exit statuses of vtpmmgrd (documented in vtpmmgrd(8); the unit's
// RestartPreventExitStatus= lists the ones a restart cannot fix).
#pragma once

namespace vtpm {
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;      // runtime failure; a restart may help
inline constexpr int kExitUsage = 2;        // bad command line
inline constexpr int kExitConfig = 3;       // bad configuration file
inline constexpr int kExitRefuse = 4;       // state or host TPM does not match: refuses to start
inline constexpr int kExitUnavailable = 5;  // xenstored, Xen devices or the host TPM cannot be reached
inline constexpr int kExitXenstoreLost = 6;  // the connection to xenstored was lost while running; restart
}  // namespace vtpm
