// The TPM TIS / PTP FIFO register window (TCG PC Client Platform TPM Profile,
// FIFO interface): register offsets, bit meanings, timeouts, and the small
// interface through which the TIS TCTI reads and writes them.
//
// One window is 0x5000 bytes: locality n's registers start at n * 0x1000.
#pragma once

#include <chrono>
#include <cstdint>

namespace vtpm::tis {

inline constexpr uint64_t kDefaultBase = 0xfed40000;  // PC Client fixed address
inline constexpr uint32_t kWindowSize = 0x5000;       // localities 0-4
inline constexpr uint32_t kLocalityStride = 0x1000;
inline constexpr uint8_t kLocalities = 5;

// Register offsets within one locality.
inline constexpr uint32_t kAccess = 0x00;        // 8 bit
inline constexpr uint32_t kIntEnable = 0x08;     // 32 bit
inline constexpr uint32_t kIntfCapability = 0x14;  // 32 bit
inline constexpr uint32_t kSts = 0x18;           // 32 bit: flags, burstCount (bits 8-23), family
inline constexpr uint32_t kDataFifo = 0x24;      // 8 bit
inline constexpr uint32_t kInterfaceId = 0x30;   // 32 bit (PTP)
inline constexpr uint32_t kDidVid = 0xf00;       // 32 bit
inline constexpr uint32_t kRid = 0xf04;          // 8 bit

// TPM_ACCESS bits.
inline constexpr uint8_t kAccessEstablishment = 0x01;
inline constexpr uint8_t kAccessRequestUse = 0x02;
inline constexpr uint8_t kAccessPendingRequest = 0x04;
inline constexpr uint8_t kAccessSeize = 0x08;
inline constexpr uint8_t kAccessBeenSeized = 0x10;
inline constexpr uint8_t kAccessActiveLocality = 0x20;  // read: ours; write 1: relinquish
inline constexpr uint8_t kAccessRegValid = 0x80;        // tpmRegValidSts

// TPM_STS bits.
inline constexpr uint32_t kStsResponseRetry = 0x02;
inline constexpr uint32_t kStsSelfTestDone = 0x04;
inline constexpr uint32_t kStsExpect = 0x08;
inline constexpr uint32_t kStsDataAvail = 0x10;
inline constexpr uint32_t kStsGo = 0x20;
inline constexpr uint32_t kStsCommandReady = 0x40;
inline constexpr uint32_t kStsValid = 0x80;
inline constexpr uint32_t kStsCommandCancel = 0x01000000;  // TPM 2.0 only
inline constexpr uint32_t kStsFamilyMask = 0x0c000000;
inline constexpr uint32_t kStsFamilyTpm2 = 0x04000000;
inline constexpr uint32_t BurstCount(uint32_t sts) { return (sts >> 8) & 0xffff; }

inline constexpr uint32_t LocalityOffset(uint8_t locality, uint32_t reg) {
  return uint32_t(locality) * kLocalityStride + reg;
}

// PTP timeouts (TIMEOUT_A..D) and the longest command duration we wait for.
struct Timeouts {
  std::chrono::milliseconds a{750};    // locality request / relinquish
  std::chrono::milliseconds b{2000};   // commandReady after a request or abort
  std::chrono::milliseconds c{200};    // stsValid after a FIFO write
  std::chrono::milliseconds d{30};     // a non-zero burstCount
  std::chrono::milliseconds command{300000};  // dataAvail after tpmGo (blocking receive)
};

// Access to one register window. Offsets are from the window's start
// (locality included) and must be < kWindowSize; 32-bit offsets are 4-aligned.
// Reads and writes have the side effects a TPM gives them (FIFO, STS).
class Registers {
 public:
  virtual ~Registers() = default;
  virtual uint8_t Read8(uint32_t offset) = 0;
  virtual uint32_t Read32(uint32_t offset) = 0;
  virtual void Write8(uint32_t offset, uint8_t value) = 0;
  virtual void Write32(uint32_t offset, uint32_t value) = 0;
};

}  // namespace vtpm::tis
