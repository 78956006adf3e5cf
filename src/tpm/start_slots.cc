#include "tpm/start_slots.h"

#include <unistd.h>

#include <algorithm>

namespace vtpm {

std::shared_ptr<StartSlots> StartSlots::Create(EventLoop& loop, size_t limit) {
  return std::shared_ptr<StartSlots>(new StartSlots(loop, std::max<size_t>(limit, 1)));
}

size_t StartSlots::DefaultLimit() {
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  return cpus > 1 ? 2 * size_t(cpus) : 2;
}

StartSlots::Lease& StartSlots::Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    Reset();
    owner_ = std::move(o.owner_);
  }
  return *this;
}

void StartSlots::Lease::Reset() {
  if (auto owner = owner_.lock()) owner->Return();
  owner_.reset();
}

void StartSlots::Acquire(std::function<void(Lease)> start) {
  if (held_ < limit_ && waiting_.empty()) {
    ++held_;
    start(Lease(weak_from_this()));
    return;
  }
  waiting_.push_back(std::move(start));
}

void StartSlots::Return() {
  --held_;
  if (waiting_.empty()) return;
  // The slot passes to the first waiter at once, so that no Acquire() in
  // between takes it; the waiter runs from the loop.
  ++held_;
  auto next = std::move(waiting_.front());
  waiting_.pop_front();
  std::weak_ptr<StartSlots> weak = weak_from_this();
  loop_.Post([weak, next = std::move(next)]() mutable {
    auto self = weak.lock();
    if (!self) return;
    next(Lease(weak));
  });
}

}  // namespace vtpm
