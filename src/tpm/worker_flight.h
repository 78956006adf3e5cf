// The flight record of a worker that serves its guest (design §3 "The worker
// serves its guest"): one shared page pair, created by the daemon as a memfd
// and mapped by both, where the worker notes the guest command libtpms is
// running. The daemon reads it when the worker dies or runs too long, to
// tell a command in flight (answered TPM_FAIL by the next worker) from one
// that ended, and for the time of the guest's last command (vtpmctl list).
//
// Protocol: before libtpms runs a guest request the worker stores its
// length and bytes, the time, then `started_ns` (release); once libtpms has
// returned it stores 0 in `started_ns`. A reader loads `started_ns`
// (acquire) first; the bytes are stable while it is non-zero and the worker
// is stopped, dead or inside libtpms. The worker never reads the page.
//
// Sign of life: a serving worker stores the time in `alive_ns` whenever its
// wait for the guest or the daemon returns, and it waits at most its
// heartbeat period (--heartbeat-ms); so a worker that is idle and well
// renews it at least that often. One stopped or spinning outside libtpms
// does not, which the daemon takes for a fault (design §3 "Faults").
//
// Volatile slots (design §3 "Volatile state in the flight record"): the
// newest volatile state of the TPM and the record of the command that made
// it, so that a command that changes only volatile state (TPM_Extend) is
// answered by the worker alone, with no frame and no file. Two slots; `lease`
// says which one is current, how many times that changed, and whether the
// worker may write (granted by the daemon, revoked by it):
//  - the worker, while granted: CAS granted -> writing, fills the other slot,
//    CAS writing -> granted with the other slot current. A failed CAS means
//    the daemon revoked the lease: the command's state is not kept, and its
//    response must not be published (the worker sends it to the daemon).
//  - the daemon revokes (any state -> revoked, current slot unchanged) before
//    it takes the state as final: after that the current slot never changes
//    until the daemon writes one again (Grant, with or without granting).
//  - a reader (the daemon) copies the current slot and accepts the copy if
//    the lease's flip count did not change meanwhile.
// The slot bytes come from the sandboxed worker: DecodeVolatileSlot checks
// every length. `responded` is the sequence of the last command the worker
// answered from a slot of its own (the responded mark of design §3 "Exactly
// once", kept here instead of in the mark file).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>

#include "backend/shared_page.h"
#include "common/bytes.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace vtpm {

// The newest volatile state, as a slot holds it.
struct VolatileSlot {
  uint64_t sequence = 0;       // of the command that made this state
  Bytes request_digest;        // RequestDigest() of that command; empty for none
  Bytes response;              // its response
  Bytes volatile_state;        // libtpms' volatile state after it
};
//   layout: sequence u64 | digest_len u8 (0 or 32) | digest | response_len u32 (<= kMaxPacket) |
//           response | volatile_len u32 | volatile
Bytes EncodeVolatileSlot(const VolatileSlot& slot);
Result<VolatileSlot> DecodeVolatileSlot(ByteView bytes);

// Room for one encoded slot. libtpms' TPM 1.2 volatile state is a few KiB
// with every key slot loaded; a state that does not fit is never written to
// a slot (the command goes to the daemon).
constexpr size_t kVolatileSlotCapacity = 60 * 1024;

struct FlightSlots {
  std::atomic<uint64_t> lease;      // (flips << 2) | state; the current slot is flips & 1
  std::atomic<uint64_t> responded;  // see above
  struct Slot {
    std::atomic<uint64_t> sequence;  // the encoded slot's, for the worker's next number
    std::atomic<uint32_t> length;    // 0: empty
    uint8_t bytes[kVolatileSlotCapacity];
  } slot[2];
};

struct FlightRecord {
  std::atomic<uint64_t> started_ns;    // CLOCK_MONOTONIC; 0 while no guest command runs
  std::atomic<int64_t> last_command;   // unix time of the last guest command started
  std::atomic<uint64_t> alive_ns;      // CLOCK_MONOTONIC of the worker's last wake-up; 0 before it serves
  std::atomic<uint32_t> request_len;   // <= kMaxPacket
  // Written by the daemon before the worker starts: the guest link it
  // serves, which a daemon that takes the worker over matches against the
  // device (design §2 "Workers outlive the daemon"). The worker could
  // rewrite them; it can reach no other guest whatever they say.
  uint32_t link_domid, link_ring_ref, link_remote_port;
  uint8_t request[kMaxPacket];
  FlightSlots slots;
};
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free);

// One mapping of a flight record. The daemon Create()s it and hands fd()
// to the worker, which Map()s it and closes its descriptor.
class FlightPage {
 public:
  static Result<FlightPage> Create();
  static Result<FlightPage> Map(int fd);
  // A daemon taking a worker over maps the record it finds in the fd
  // store and keeps `fd` (to hand it to the fd store again).
  static Result<FlightPage> Adopt(UniqueFd fd);
  FlightPage() = default;
  ~FlightPage();
  FlightPage(FlightPage&& o) noexcept;
  FlightPage& operator=(FlightPage&& o) noexcept;
  FlightPage(const FlightPage&) = delete;
  FlightPage& operator=(const FlightPage&) = delete;

  bool valid() const { return rec_ != nullptr; }
  int fd() const { return fd_.get(); }
  void CloseFd() { fd_.reset(); }
  FlightRecord& record() const { return *rec_; }

  // Worker side.
  void Begin(ByteView request);
  void End();
  void Alive();
  // Daemon side: the request in flight, if any, and since when (monotonic ns).
  std::optional<Bytes> InFlight(uint64_t* started_ns = nullptr) const;
  // The worker's last sign of life (monotonic ns), 0 if it has given none.
  uint64_t last_alive() const { return rec_->alive_ns.load(std::memory_order_relaxed); }

  // Volatile slots. Worker side: the sequence of the current slot (0 when
  // empty); WriteSlot() makes `encoded` (of command `sequence`) current,
  // false when the lease is not granted or was revoked meanwhile (nothing
  // then changed); SetResponded() notes a response of a slot's command.
  uint64_t SlotSequence() const;
  bool WriteSlot(ByteView encoded, uint64_t sequence);
  void SetResponded(uint64_t sequence);
  // Daemon side. Revoke(): the worker writes no slot until the next grant.
  // ReadSlot(): the current slot, nullopt when empty; an error when it does
  // not decode, or when the worker keeps changing it (granted, 100 tries).
  // PutSlot(): writes `slot` as the current one (the worker must be revoked
  // or waiting for the daemon) and grants the lease if `grant`; false when
  // it does not fit or the worker was found writing, which leaves the lease
  // revoked and the current slot as it was.
  void Revoke();
  bool granted() const;
  Result<std::optional<VolatileSlot>> ReadSlot() const;
  bool PutSlot(const VolatileSlot& slot, bool grant);
  uint64_t responded() const { return rec_->slots.responded.load(std::memory_order_acquire); }

 private:
  void Reset();
  // Revokes the lease; returns it as it was.
  uint64_t RevokeLease();
  UniqueFd fd_;
  FlightRecord* rec_ = nullptr;
};

// CLOCK_MONOTONIC in nanoseconds.
uint64_t MonotonicNs();

}  // namespace vtpm
