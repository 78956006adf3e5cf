// ReapInBackground: ends a child process without blocking the event loop
// (design §2 "vtpm-worker").
#pragma once

#include <chrono>
#include <functional>

#include "common/child_process.h"
#include "common/event_loop.h"

namespace vtpm {

// Takes `child` over (precondition: child.running()). The child may exit by
// itself within `grace` (0: it is SIGKILLed at once); after that it is
// SIGKILLed. It is reaped from the loop as soon as it is gone - when its
// pidfd becomes readable, or by a WNOHANG poll every 10 ms where pidfd_open
// is missing - and `reaped`, if set, then runs on the loop thread with its
// wait status. Nothing here waits or sleeps; a stopped child is killed all
// the same. Destroying the loop first kills and reaps the child then
// (ChildProcess' destructor), so no zombie outlives either.
void ReapInBackground(EventLoop& loop, ChildProcess child, std::chrono::milliseconds grace,
                      std::function<void(int wstatus)> reaped = nullptr);

}  // namespace vtpm
