// TPM 1.2 packet facts the backend needs: the 10-byte header, return codes
// it may produce itself, and a builder for well-formed error responses.
#pragma once

#include <cstdint>

#include "common/bytes.h"

namespace vtpm::tpm12 {

inline constexpr size_t kHeaderSize = 10;
inline constexpr uint16_t kTagRspCommand = 0x00C4;
inline constexpr uint16_t kTagRspAuth2Command = 0x00C6;  // RSP_AUTH1 is 0x00C5

// TPM_RESULT values (TPM 1.2 main spec part 2, TPM_BASE = 0).
inline constexpr uint32_t kFail = 0x09;
inline constexpr uint32_t kSize = 0x17;
inline constexpr uint32_t kBadParamSize = 0x19;
inline constexpr uint32_t kBadLocality = 0x3D;

// A 10-byte response: tag RSP_COMMAND, paramSize 10, the given return code.
Bytes ErrorResponse(uint32_t rc);

// paramSize of a packet, or 0 if shorter than a header.
uint32_t ParamSize(ByteView packet);

// Whether `packet` carries a response tag (RSP_COMMAND, RSP_AUTH1_COMMAND or
// RSP_AUTH2_COMMAND): a command never does (its tags are 0x00C1-0x00C3).
bool HasResponseTag(ByteView packet);

}  // namespace vtpm::tpm12
