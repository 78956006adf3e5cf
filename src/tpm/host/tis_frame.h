// TPM 2.0 command/response framing as seen through the TIS FIFO: a 10-byte
// header (tag, big-endian size, code) whose size covers the whole frame.
// Pure parsing of bytes read from the TPM, no I/O (fuzzed).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/bytes.h"
#include "common/status.h"

namespace vtpm::tis {

inline constexpr size_t kHeaderSize = 10;
inline constexpr size_t kMaxFrame = 4096;  // TPM2 MAX_COMMAND_SIZE / MAX_RESPONSE_SIZE on PC TPMs

// The size field of a response header (the first >= kHeaderSize bytes read
// from the FIFO). kCorruption naming the field when the tag is not a TPM 2.0
// response tag or the size is < kHeaderSize or > max_size.
Result<uint32_t> ResponseSize(ByteView header, size_t max_size = kMaxFrame);

// The size field of a command (for the transmit path and the test model);
// kInvalidArgument when shorter than a header or when size != the length.
Result<uint32_t> CommandSize(ByteView command);

}  // namespace vtpm::tis
