// RunCapture: runs a program to completion, capturing stdout and stderr.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace vtpm::sim {

struct ToolOutput {
  int exit_code = -1;   // -1 when killed by a signal or timed out
  std::string output;   // stdout and stderr, interleaved
};

// `argv[0]` without a '/' is looked up in /usr/sbin, /usr/bin, /sbin, /bin.
// `env` entries ("K=V") override the inherited environment; stdin is
// /dev/null. The child is killed when `timeout` passes.
Result<ToolOutput> RunCapture(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                              std::chrono::milliseconds timeout);

}  // namespace vtpm::sim
