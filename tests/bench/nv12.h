// TPM 1.2 NV commands the benchmark sends itself (main spec part 3 §20):
// TPM_NV_DefineSpace without authorization (accepted only while nvLocked is
// FALSE, e.g. on a fresh swtpm) and the unauthorized TPM_NV_WriteValue
// (accepted when the index requires no write authorization).
#pragma once

#include <cstdint>

#include "common/bytes.h"

namespace vtpm::bench {

// TPM_NV_PER_WRITEDEFINE: written without authorization until a zero-length
// write locks the index.
inline constexpr uint32_t kNvPerWriteDefine = 0x00002000;

Bytes NvDefineSpaceNoAuth(uint32_t index, uint32_t size, uint32_t attributes);
Bytes NvWriteValue(uint32_t index, uint32_t offset, ByteView data);

}  // namespace vtpm::bench
