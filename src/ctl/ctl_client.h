// vtpmctl's end of the control socket: one request, one response.
#pragma once

#include <chrono>
#include <string>

#include "daemon/control_protocol.h"

namespace vtpm::ctl {

// Errors: kUnavailable (no daemon answers at `socket_path`; message says
// what to do), kPermissionDenied (the socket is root's), kTimeout,
// kInvalidArgument (the daemon's answer does not parse).
Result<ControlResponse> Call(const std::string& socket_path, const ControlRequest& req,
                             std::chrono::seconds timeout);

}  // namespace vtpm::ctl
