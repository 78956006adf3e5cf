// XenstoreLiveness: the daemon's health tick (design §6 "Manager"). Every
// period the event loop asks xenstored for one node. An answer - the value
// or "no such node" - proves both the loop and the connection alive and is
// what feeds systemd's watchdog (WATCHDOG=1); a loop that stalls sends no
// ping. An error means the connection is gone (xenstored exited or was
// restarted: libxenstore closes its socket and never reconnects, and no watch
// fires again), and `lost` runs once on the loop.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "backend/xen.h"
#include "common/event_loop.h"

namespace vtpm {

class XenstoreLiveness {
 public:
  // `watchdog_period`: how often WATCHDOG=1 is due (half of WatchdogSec=),
  // nullopt without a watchdog. The probe runs at least once a second, the
  // first time as soon as the loop runs.
  XenstoreLiveness(EventLoop& loop, XenStore& xs, std::string probe_path,
                   std::optional<std::chrono::milliseconds> watchdog_period,
                   std::function<void(const Status&)> lost);
  ~XenstoreLiveness();
  XenstoreLiveness(const XenstoreLiveness&) = delete;
  XenstoreLiveness& operator=(const XenstoreLiveness&) = delete;

 private:
  void Tick();

  EventLoop& loop_;
  XenStore& xs_;
  std::string probe_path_;
  std::chrono::milliseconds period_;
  bool watchdog_;
  std::function<void(const Status&)> lost_;
  std::optional<EventLoop::TimerId> timer_;
};

}  // namespace vtpm
