// Per-guest rate limiting of guest-caused log lines: lines a guest can make
// the daemon write as often as it likes (malformed requests, refused
// localities, CANCEL floods). Lifecycle lines (connect, disconnect) and
// lines about the daemon itself are never limited.
//
// Each (domid, devid) has a token bucket: a burst of kGuestLogBurst lines,
// then one more per kGuestLogRefill. Lines over the limit are counted, and
// at most once per kGuestLogSummaryInterval a line
//   "suppressed N messages from domid D devid X (uuid U) in the last T s"
// is logged with the guest's DOMID/DEVID/UUID fields: when the guest logs
// again, from the backend's periodic timer, or when its device goes away.
// One guest's flood therefore never uses up another guest's lines.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/log.h"

namespace vtpm {

inline constexpr int kGuestLogBurst = 10;
inline constexpr std::chrono::milliseconds kGuestLogRefill{1000};
inline constexpr std::chrono::milliseconds kGuestLogSummaryInterval{10000};

class LogRateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  struct Policy {
    int burst = kGuestLogBurst;
    std::chrono::milliseconds refill = kGuestLogRefill;  // one token per `refill`
    std::chrono::milliseconds summary_interval = kGuestLogSummaryInterval;
  };

  // What was suppressed for one guest since its last summary.
  struct Summary {
    GuestCtx ctx;
    uint64_t suppressed = 0;
    std::chrono::milliseconds window{0};  // from the first suppressed line to now
    std::string Message() const;
  };

  struct Decision {
    bool log = false;                // the line may be logged
    std::optional<Summary> summary;  // to be logged first
  };

  LogRateLimiter();  // the default policy on the steady clock
  LogRateLimiter(Policy policy, std::function<Clock::time_point()> now);
  LogRateLimiter(const LogRateLimiter&) = delete;
  LogRateLimiter& operator=(const LogRateLimiter&) = delete;

  // A guest-caused line about `ctx` is about to be logged: whether it may
  // be (else it is counted), and this guest's summary when one is due.
  Decision Admit(const GuestCtx& ctx);
  // The summaries due now (periodic timer). Guests with a full bucket and
  // nothing suppressed are forgotten.
  std::vector<Summary> TakeDue();
  // The device is gone: its pending summary, due or not, and forget it.
  std::optional<Summary> Forget(int domid, int devid);
  size_t tracked() const;

 private:
  struct Bucket {
    GuestCtx ctx;  // the latest, for the uuid of a summary
    double tokens = 0;
    Clock::time_point refilled;
    uint64_t suppressed = 0;
    Clock::time_point window_start;  // first suppressed line since the last summary
  };
  void Refill(Bucket& b, Clock::time_point now) const;
  std::optional<Summary> TakeSummary(Bucket& b, Clock::time_point now, bool force) const;

  const Policy policy_;
  const std::function<Clock::time_point()> now_;
  mutable std::mutex mu_;
  std::map<std::pair<int, int>, Bucket> buckets_;
};

// The daemon's limiter, used by VLOG_GUEST_*.
LogRateLimiter& GuestLogLimiter();
// Asks GuestLogLimiter() about one line; logs a due summary first.
bool AdmitGuestLine(const GuestCtx& ctx);
// Logs every due summary (the backend's timer).
void LogDueGuestSummaries();
// Logs the guest's pending summary and forgets it (its device is gone).
void ForgetGuestLog(const GuestCtx& ctx);

}  // namespace vtpm

// VLOG_* for guest-caused lines: rate limited per (domid, devid).
#define VLOG_GUEST_AT(lvl, ctx, ...)                                                            \
  do {                                                                                          \
    const ::vtpm::GuestCtx& _gc = (ctx);                                                        \
    if (spdlog::default_logger_raw()->should_log(lvl) && ::vtpm::AdmitGuestLine(_gc))           \
      VLOG_AT(lvl, _gc, __VA_ARGS__);                                                           \
  } while (0)
#define VLOG_GUEST_INFO(ctx, ...) VLOG_GUEST_AT(spdlog::level::info, ctx, __VA_ARGS__)
#define VLOG_GUEST_WARN(ctx, ...) VLOG_GUEST_AT(spdlog::level::warn, ctx, __VA_ARGS__)
