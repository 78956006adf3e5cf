// TPM 1.2 wire helpers: builders for the commands the daemon sends itself,
// response accessors, and the guest-facing response fix-ups.
// Every function is pure; parsers check bounds and never read past the view.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "backend/tpm12_wire.h"  // header size, kFail, kSize, ErrorResponse
#include "common/bytes.h"

namespace vtpm::tpm12 {

// Result codes (TPM 1.2 main spec part 2, §16).
inline constexpr uint32_t kSuccess = 0x00;
inline constexpr uint32_t kBadParameter = 0x03;
inline constexpr uint32_t kBadPresence = 0x2D;
inline constexpr uint32_t kInvalidPostinit = 0x26;
inline constexpr uint32_t kFailedSelfTest = 0x1C;

// Largest command and response a guest can exchange over the Xen shared page
// (one 4096-byte page minus the 8-byte tpmif header).
inline constexpr uint32_t kGuestBufferSize = 4088;

// TSC_PhysicalPresence bits.
inline constexpr uint16_t kPpPresent = 0x0008;
inline constexpr uint16_t kPpLifetimeLock = 0x0080;
inline constexpr uint16_t kPpHwEnable = 0x0040;
inline constexpr uint16_t kPpCmdEnable = 0x0020;
inline constexpr uint16_t kPpCmdDisable = 0x0100;

inline constexpr uint16_t kStClear = 0x0001;
inline constexpr uint16_t kStState = 0x0002;
inline constexpr int kNumPcrs = 24;
using PcrValue = std::array<uint8_t, 20>;

Bytes Startup(uint16_t startup_type);
Bytes SaveState();
Bytes PhysicalPresence(uint16_t bits);
Bytes PhysicalEnable();
Bytes PhysicalSetDeactivated(bool deactivated);
Bytes ForceClear();
// RSA-2048 EK, as swtpm_setup --createek; `nonce` is the antiReplay value.
Bytes CreateEndorsementKeyPair(const std::array<uint8_t, 20>& nonce);
Bytes ReadPubek(const std::array<uint8_t, 20>& nonce);
// NV_DefineSpace(TPM_NV_INDEX_LOCK): sets nvLocked.
Bytes NvLock();
Bytes PcrRead(uint32_t index);
Bytes PcrExtend(uint32_t index, const PcrValue& digest);
Bytes GetCapability(uint32_t capability, uint32_t sub_capability);
Bytes GetCapabilityProperty(uint32_t property);

// TPM_PERMANENT_FLAGS fields the daemon checks (GetCapability(TPM_CAP_FLAG,
// TPM_CAP_FLAG_PERMANENT)).
struct PermanentFlags {
  bool disable = false, ownership = false, deactivated = false, read_pubek = false;
  bool pp_lifetime_lock = false, pp_hw_enable = false, pp_cmd_enable = false;
  bool cekp_used = false, nv_locked = false;
};
Bytes GetPermanentFlags();
std::optional<PermanentFlags> PermanentFlagsFromResponse(ByteView response);

// The return code of a response, or nullopt if it is shorter than a header.
std::optional<uint32_t> ResponseCode(ByteView response);
// The parameters after the 10-byte header of a successful response.
std::optional<ByteView> ResponseBody(ByteView response);
// TPM_PUBKEY from a CreateEndorsementKeyPair or ReadPubek response (the
// body minus its trailing 20-byte checksum).
std::optional<Bytes> PubkeyFromEkResponse(ByteView response);
std::optional<PcrValue> PcrFromResponse(ByteView response);
// What TPM_Extend makes of PCR value `old` and `digest`: SHA-1(old || digest).
PcrValue ExtendedPcr(const PcrValue& old, const PcrValue& digest);

// Applies what the guest must see instead of libtpms' answer:
//  - GetCapability(TPM_CAP_PROPERTY, TPM_CAP_PROP_INPUT_BUFFER) answers
//    kGuestBufferSize (libtpms reports 4096, the page holds 4088);
//  - a response longer than kGuestBufferSize becomes a TPM_SIZE error.
Bytes FixupGuestResponse(ByteView command, Bytes response);

}  // namespace vtpm::tpm12
