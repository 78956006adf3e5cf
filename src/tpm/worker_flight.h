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
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>

#include "backend/shared_page.h"
#include "common/bytes.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace vtpm {

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

 private:
  void Reset();
  UniqueFd fd_;
  FlightRecord* rec_ = nullptr;
};

// CLOCK_MONOTONIC in nanoseconds.
uint64_t MonotonicNs();

}  // namespace vtpm
