#include "daemon/xenstore_liveness.h"

#include <systemd/sd-daemon.h>

#include <algorithm>

namespace vtpm {
namespace {
constexpr std::chrono::milliseconds kMaxProbeInterval{1000};
}  // namespace

XenstoreLiveness::XenstoreLiveness(EventLoop& loop, XenStore& xs, std::string probe_path,
                                   std::optional<std::chrono::milliseconds> watchdog_period,
                                   std::function<void(const Status&)> lost)
    : loop_(loop),
      xs_(xs),
      probe_path_(std::move(probe_path)),
      period_(std::min(watchdog_period.value_or(kMaxProbeInterval), kMaxProbeInterval)),
      watchdog_(watchdog_period.has_value()),
      lost_(std::move(lost)) {
  // First probe from the running loop: `lost` may stop it, which a call
  // before EventLoop::Run() could not.
  timer_ = loop_.AddTimer(std::chrono::milliseconds(0), [this] { Tick(); });
}

XenstoreLiveness::~XenstoreLiveness() {
  if (timer_) loop_.CancelTimer(*timer_);
}

void XenstoreLiveness::Tick() {
  timer_.reset();
  auto r = xs_.Read(probe_path_);
  if (!r.ok()) {
    if (auto lost = std::exchange(lost_, nullptr)) lost(r.status());
    return;  // no more pings: systemd's watchdog, too, sees the loss
  }
  if (watchdog_) sd_notify(0, "WATCHDOG=1");
  timer_ = loop_.AddTimer(period_, [this] { Tick(); });
}

}  // namespace vtpm
