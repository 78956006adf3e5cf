#include "common/log_rate_limit.h"

#include <algorithm>

namespace vtpm {

std::string LogRateLimiter::Summary::Message() const {
  // Whole seconds, rounded up: "in the last 0 s" would read as nothing.
  auto secs = (window.count() + 999) / 1000;
  return fmt::format("suppressed {} messages from domid {} devid {} (uuid {}) in the last {} s", suppressed,
                     ctx.domid, ctx.devid, ctx.uuid.empty() ? "-" : ctx.uuid, std::max<int64_t>(secs, 1));
}

LogRateLimiter::LogRateLimiter() : LogRateLimiter(Policy{}, Clock::now) {}

LogRateLimiter::LogRateLimiter(Policy policy, std::function<Clock::time_point()> now)
    : policy_(policy), now_(std::move(now)) {}

void LogRateLimiter::Refill(Bucket& b, Clock::time_point now) const {
  if (now <= b.refilled) return;
  double add = std::chrono::duration<double>(now - b.refilled) / policy_.refill;
  b.tokens = std::min<double>(policy_.burst, b.tokens + add);
  b.refilled = now;
}

std::optional<LogRateLimiter::Summary> LogRateLimiter::TakeSummary(Bucket& b, Clock::time_point now,
                                                                   bool force) const {
  if (b.suppressed == 0 || (!force && now - b.window_start < policy_.summary_interval)) return std::nullopt;
  Summary s{b.ctx, b.suppressed, std::chrono::duration_cast<std::chrono::milliseconds>(now - b.window_start)};
  b.suppressed = 0;
  return s;
}

LogRateLimiter::Decision LogRateLimiter::Admit(const GuestCtx& ctx) {
  const auto now = now_();
  std::lock_guard lock(mu_);
  auto [it, fresh] = buckets_.try_emplace({ctx.domid, ctx.devid});
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = policy_.burst;
    b.refilled = now;
  }
  b.ctx = ctx;
  Refill(b, now);
  Decision d;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    d.log = true;
  } else if (b.suppressed++ == 0) {
    b.window_start = now;
  }
  d.summary = TakeSummary(b, now, false);
  return d;
}

std::vector<LogRateLimiter::Summary> LogRateLimiter::TakeDue() {
  const auto now = now_();
  std::lock_guard lock(mu_);
  std::vector<Summary> out;
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    Refill(it->second, now);
    if (auto s = TakeSummary(it->second, now, false)) out.push_back(std::move(*s));
    if (it->second.suppressed == 0 && it->second.tokens >= policy_.burst) it = buckets_.erase(it);
    else ++it;
  }
  return out;
}

std::optional<LogRateLimiter::Summary> LogRateLimiter::Forget(int domid, int devid) {
  const auto now = now_();
  std::lock_guard lock(mu_);
  auto it = buckets_.find({domid, devid});
  if (it == buckets_.end()) return std::nullopt;
  auto s = TakeSummary(it->second, now, true);
  buckets_.erase(it);
  return s;
}

size_t LogRateLimiter::tracked() const {
  std::lock_guard lock(mu_);
  return buckets_.size();
}

LogRateLimiter& GuestLogLimiter() {
  static auto* limiter = new LogRateLimiter();  // never destroyed: used until exit
  return *limiter;
}

namespace {
void LogSummary(const LogRateLimiter::Summary& s) { VEVENT_WARN(kSuppressed, s.ctx, "{}", s.Message()); }
}  // namespace

bool AdmitGuestLine(const GuestCtx& ctx) {
  auto d = GuestLogLimiter().Admit(ctx);
  if (d.summary) LogSummary(*d.summary);
  return d.log;
}

void LogDueGuestSummaries() {
  for (auto& s : GuestLogLimiter().TakeDue()) LogSummary(s);
}

void ForgetGuestLog(const GuestCtx& ctx) {
  if (auto s = GuestLogLimiter().Forget(ctx.domid, ctx.devid)) LogSummary(*s);
}

}  // namespace vtpm
