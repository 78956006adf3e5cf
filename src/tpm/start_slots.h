// StartSlots: how many workers may run their start-up at once (design §2
// "Start-up slots"). A start-up - exec, the sandbox, libtpms' self-test,
// TPM_Init - takes a CPU for about 0.3 s. A host starting hundreds of
// guests together (a boot, xendomains) would otherwise run them all at once
// and take every CPU from the workers of the guests already running, whose
// commands then wait hundreds of milliseconds.
//
// Loop thread only. A slot is held by a Lease, which returns it when
// destroyed; the next waiter is started from the loop, never inside the
// destruction of a Lease.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>

#include "common/event_loop.h"

namespace vtpm {

class StartSlots : public std::enable_shared_from_this<StartSlots> {
 public:
  // `limit` >= 1.
  static std::shared_ptr<StartSlots> Create(EventLoop& loop, size_t limit);
  // Two per online CPU: enough to keep every CPU busy with start-ups while
  // some wait for exec or a reply, so a host brings its guests up about as
  // fast as with no limit; the running guests' workers then compete with
  // two start-ups per CPU, not with hundreds (design §2).
  static size_t DefaultLimit();

  class Lease {
   public:
    Lease() = default;
    ~Lease() { Reset(); }
    Lease(Lease&& o) noexcept : owner_(std::move(o.owner_)) {}
    Lease& operator=(Lease&& o) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    bool held() const { return !owner_.expired(); }
    void Reset();

   private:
    friend class StartSlots;
    explicit Lease(std::weak_ptr<StartSlots> owner) : owner_(std::move(owner)) {}
    std::weak_ptr<StartSlots> owner_;
  };

  // Calls `start` with a lease: at once when a slot is free, else from the
  // loop once one is returned, in the order asked. A `start` that no longer
  // wants the slot just drops the lease.
  void Acquire(std::function<void(Lease)> start);

  size_t limit() const { return limit_; }
  size_t held() const { return held_; }
  size_t waiting() const { return waiting_.size(); }

 private:
  StartSlots(EventLoop& loop, size_t limit) : loop_(loop), limit_(limit) {}
  void Return();

  EventLoop& loop_;
  const size_t limit_;
  size_t held_ = 0;
  std::deque<std::function<void(Lease)>> waiting_;
};

}  // namespace vtpm
