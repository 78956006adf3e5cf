// vtpmctl's human-readable output: one renderer per verb over the daemon's
// JSON data (the same data --json prints).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "daemon/control_protocol.h"

namespace vtpm::ctl {

std::string FormatTable(Verb verb, const nlohmann::json& data);
// `vtpmctl restore`, which runs without the daemon (ctl_restore.h).
std::string FormatRestore(const nlohmann::json& data);

// "2026-11-28 06:00:00 UTC" for unix seconds, "-" for null or 0.
std::string FormatTime(const nlohmann::json& t);
// "512 B", "12.3 KiB", "4.0 MiB".
std::string FormatSize(const nlohmann::json& bytes);

}  // namespace vtpm::ctl
