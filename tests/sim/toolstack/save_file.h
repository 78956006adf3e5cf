// vtpm-sim-xl's save file: the part of xl's save-file header (the domain
// config as libxl JSON) that the simulator keeps, nothing else:
//   {"c_info": {"uuid": "<handle>", "name": "<name>"},
//    "vtpms": [{"devid": 0, "uuid": "<uuid>"}, ...]}
#pragma once

#include <string>

#include "common/status.h"
#include "toolstack/toolstack.h"

namespace vtpm::sim {

Status WriteSaveFile(const std::string& path, const SavedDomain& saved);
// kCorruption when the file is not such a record (every uuid 8-4-4-4-12,
// every devid a number); kIoError when it cannot be read.
Result<SavedDomain> ReadSaveFile(const std::string& path);

}  // namespace vtpm::sim
