// The parent <-> vtpm-worker protocol (version 1).
//
// Stream of frames over a SOCK_STREAM socketpair. A frame is a 4-byte
// big-endian body length (at most kMaxFrameBody) followed by the body:
//   u8 version (= kProtocolVersion) | u8 type | type-specific fields.
// Byte strings are u32 big-endian length + bytes. The parent sends one
// request and waits for its reply before the next; the worker answers every
// request with exactly one kReply or kFailure, then exits after a kFailure.
//
// Requests:
//   kInit     u8 present-mask (1 permanent, 2 savestate, 4 volatile), then
//             each present blob in that order. Must be the first request;
//             starts libtpms (TPM_Init) from these blobs.
//   kExecute  u8 locality | u8 physical presence (0/1) | command bytes.
//             Presence is what libtpms' hardware physical-presence callback
//             reports while the command runs; only the daemon's own admin
//             operations set it.
//   kTestOpen path          (test builds only, VTPM_TEST_BUILD: the worker
//   kTestSyscall            accepts these when started with --test-commands)
// Replies:
//   kReply    response bytes | u8 count | count x (u8 BlobKind, u8 op
//             (0 write, 1 delete), [data if write]) | volatile state bytes.
//   kFailure  u32 code | message bytes.
// Decoders accept exactly one well-formed body (no trailing bytes); they are
// fed bytes from a possibly compromised peer and are fuzzed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "store/store.h"

namespace vtpm {

inline constexpr uint8_t kProtocolVersion = 1;
inline constexpr uint32_t kMaxFrameBody = 1u << 20;
inline constexpr uint32_t kMaxBlobSize = 256u << 10;
inline constexpr uint32_t kMaxTpmMessage = 64u << 10;
inline constexpr size_t kMaxBlobChanges = 8;

enum class WorkerMsg : uint8_t {
  kInit = 1,
  kExecute = 2,
#ifdef VTPM_TEST_BUILD
  kTestOpen = 0x70,
  kTestSyscall = 0x71,
#endif
  kReply = 0x81,
  kFailure = 0x82,
};

struct WorkerRequest {
  WorkerMsg type = WorkerMsg::kExecute;
  // kInit
  std::optional<Bytes> permanent, savestate, volatile_state;
  // kExecute
  uint8_t locality = 0;
  bool physical_presence = false;
  Bytes command;
#ifdef VTPM_TEST_BUILD
  // kTestOpen
  std::string path;
#endif
};

// One NV blob libtpms stored (data set) or deleted (data empty) during a request.
struct BlobChange {
  BlobKind kind = BlobKind::kPermanent;
  std::optional<Bytes> data;  // nullopt = deleted
  bool operator==(const BlobChange&) const = default;
};

struct WorkerReply {
  WorkerMsg type = WorkerMsg::kReply;
  // kReply
  Bytes response;
  std::vector<BlobChange> changes;
  Bytes volatile_state;
  // kFailure
  uint32_t code = 0;
  std::string message;
};

// Encoders return a whole frame (length prefix included).
Bytes EncodeRequest(const WorkerRequest& req);
Bytes EncodeReply(const WorkerReply& reply);
// Decoders take one frame body (without the length prefix).
Result<WorkerRequest> DecodeRequest(ByteView body);
Result<WorkerReply> DecodeReply(ByteView body);

// Splits a byte stream into frame bodies.
class FrameReader {
 public:
  void Feed(ByteView data) { AppendBytes(buf_, data); }
  // The next complete body, nullopt if more bytes are needed, or an error
  // (kCorruption) when the announced length exceeds kMaxFrameBody.
  Result<std::optional<Bytes>> Next();
  // Bytes the current frame still lacks (the rest of its length prefix, then
  // the rest of its body; 0 when it is complete), or kCorruption as soon as
  // the prefix announces more than kMaxFrameBody. A reader of an untrusted
  // peer reads no more than this, so it never buffers more than one frame
  // of at most kMaxFrameBody (design §2 "Worker protocol").
  Result<size_t> Missing() const;
  bool empty() const { return buf_.empty(); }
  size_t size() const { return buf_.size(); }

 private:
  Bytes buf_;
};

}  // namespace vtpm
