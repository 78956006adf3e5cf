// The parent <-> vtpm-worker protocol (version 1).
//
// Stream of frames over a SOCK_STREAM socketpair. A frame is a 4-byte
// big-endian body length (at most kMaxFrameBody) followed by the body:
//   u8 version (= kProtocolVersion) | u8 type | type-specific fields.
// Byte strings are u32 big-endian length + bytes. The parent sends one
// request and waits for its reply before the next; the worker answers every
// request with exactly one kReply or kFailure, then exits after a kFailure.
//
// A worker that serves its guest (started with --guest, design §3 "Path of
// one command") also sends guest frames of its own accord, at most one
// unanswered at a time: kGuestExecuted and kGuestFound wait for the daemon's
// kRelease (or kRun, for a found command); kGuestRejected is a note that
// needs no answer. A guest command that leaves the TPM as the daemon last
// saved it (no blob changed, the volatile state the one of the last settled
// kRelease) is answered by the worker alone, without any frame. A kExecute that reaches the worker while it waits for a
// kRelease runs after it. So at any moment at most one frame of the worker
// is due, and the daemon reads no more than that one frame.
//
// Requests:
//   kInit     u8 present-mask (1 permanent, 2 savestate, 4 volatile), then
//             each present blob in that order. Must be the first request;
//             starts libtpms (TPM_Init) from these blobs.
//   kExecute  u8 locality | u8 physical presence (0/1) | command bytes.
//             Presence is what libtpms' hardware physical-presence callback
//             reports while the command runs; only the daemon's own admin
//             operations set it.
//   kRelease  response bytes | mark bytes | u8 settled: the worker writes
//             the response into the page, then (when mark is not empty) the
//             mark at offset 0 of its responded-mark fd, then FINISH and
//             notifies. settled (0/1): the daemon's volatile copy now holds
//             this command's volatile state, so a later command that ends
//             in the same state and changes no blob needs no daemon.
//   kRun      (answer to kGuestFound) run the found command as a new one.
//   kServe    (a worker started with --guest, after kInit and the daemon's
//             start-up commands) start serving the guest; an empty kReply.
//   kAdopt    nonce bytes (at most 32): a daemon that found this serving
//             worker in the service manager's fd store takes it over
//             (design §2 "Workers outlive the daemon"). Answered kAdopted,
//             then the guest frame the worker waits on, if any, again: the
//             daemon that read it first is gone. Whatever the worker sent
//             before kAdopted was meant for that daemon.
//   kTestOpen path          (test builds only, VTPM_TEST_BUILD: the worker
//   kTestSyscall            accepts these when started with --test-commands)
//   kTestIoctl u32 request | u8 target (0 its event channel, 1 its socket):
//             (test builds) the worker calls ioctl(target, request, &port)
// Replies:
//   kReply    response bytes | u8 count | count x (u8 BlobKind, u8 op
//             (0 write, 1 delete), [data if write]) | volatile state bytes.
//   kFailure  u32 code | message bytes.
//   kAdopted  nonce bytes | state digest bytes (32, or 0 when the worker's
//             volatile state is not the settled one) | u8 flags (1: a guest
//             frame follows again; 2: a request of the daemon is deferred).
//             The digest is TpmStateDigest() of what the worker knows as
//             durable: a daemon adopts it only if that is what it loaded.
// Guest frames (worker -> daemon, unsolicited):
//   kGuestExecuted  request bytes | u8 locality | then the fields of kReply.
//   kGuestFound     request bytes | u8 locality: the first request the worker
//                   found in the page when started with --found; not run yet.
//   kGuestRejected  u32 TPM rc | u32 header length | u8 nr_extra_pages |
//                   reason bytes: a request the worker answered with a TPM
//                   error without running it (malformed, wrong locality).
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
  kRelease = 3,
  kRun = 4,
  kServe = 5,
  kAdopt = 6,
#ifdef VTPM_TEST_BUILD
  kTestOpen = 0x70,
  kTestSyscall = 0x71,
  kTestIoctl = 0x72,
#endif
  kReply = 0x81,
  kFailure = 0x82,
  kGuestExecuted = 0x83,
  kGuestFound = 0x84,
  kGuestRejected = 0x85,
  kAdopted = 0x86,
};

// kAdopted flags.
inline constexpr uint8_t kAdoptedGuestFrameFollows = 1;
inline constexpr uint8_t kAdoptedDeferred = 2;
inline constexpr uint32_t kMaxNonce = 32;

struct WorkerRequest {
  WorkerMsg type = WorkerMsg::kExecute;
  // kInit
  std::optional<Bytes> permanent, savestate, volatile_state;
  // kExecute
  uint8_t locality = 0;
  bool physical_presence = false;
  Bytes command;  // kRelease: the response to write
  // kRelease
  Bytes mark;
  bool settled = false;
  // kAdopt
  Bytes nonce;
#ifdef VTPM_TEST_BUILD
  // kTestOpen
  std::string path;
  // kTestIoctl
  uint32_t ioctl_request = 0;
  uint8_t ioctl_target = 0;
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
  // kGuestExecuted, kGuestFound
  Bytes request;
  uint8_t locality = 0;
  // kReply, kGuestExecuted
  Bytes response;
  std::vector<BlobChange> changes;
  Bytes volatile_state;
  // kFailure (code, message); kGuestRejected (code: the TPM rc, message:
  // the reason; header_length, nr_extra_pages: what the guest wrote)
  uint32_t code = 0;
  std::string message;
  uint32_t header_length = 0;
  uint8_t nr_extra_pages = 0;
  // kAdopted
  Bytes nonce;
  Bytes state_digest;
  uint8_t adopted_flags = 0;
};

// SHA-256 over the three blobs a TPM resumes from (each: u8 present, u32
// length, bytes): how a worker and a daemon that took it over check that
// they hold the same durable state.
Bytes TpmStateDigest(const std::optional<Bytes>& permanent, const std::optional<Bytes>& savestate,
                     const std::optional<Bytes>& volatile_state);

// SHA-256 of a request, as command records hold it.
Bytes RequestDigest(ByteView request);

// Frames the worker sends of its own accord.
inline bool IsGuestFrame(WorkerMsg t) {
  return t == WorkerMsg::kGuestExecuted || t == WorkerMsg::kGuestFound || t == WorkerMsg::kGuestRejected;
}

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
