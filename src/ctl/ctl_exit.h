// Exit statuses of vtpmctl (vtpmctl(8) "EXIT STATUS"); stable.
#pragma once

#include "daemon/control_protocol.h"

namespace vtpm::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;      // the daemon tried and failed
inline constexpr int kExitUsage = 2;        // bad command line or request
inline constexpr int kExitNotFound = 3;     // no such instance
inline constexpr int kExitConflict = 4;     // exists, attached, busy, file exists, TPM refused
inline constexpr int kExitUnreachable = 5;  // no daemon answers on the control socket
inline constexpr int kExitDenied = 6;       // not root

inline int ExitFor(ResultCode c) {
  switch (c) {
    case ResultCode::kOk: return kExitOk;
    case ResultCode::kBadRequest:
    case ResultCode::kUnsupportedVersion: return kExitUsage;
    case ResultCode::kNotFound: return kExitNotFound;
    case ResultCode::kConflict:
    case ResultCode::kTpmRefused: return kExitConflict;
    case ResultCode::kPermissionDenied: return kExitDenied;
    default: return kExitFailure;
  }
}

}  // namespace vtpm::ctl
