#include "common/background_reap.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <memory>
#include <optional>

namespace vtpm {
namespace {

constexpr std::chrono::milliseconds kPollInterval(10);

// One child being reaped. Owned by the loop's callbacks (its pidfd's, its
// timers'), so it lives exactly as long as one of them can still run.
struct Reaping {
  Reaping(EventLoop& l, ChildProcess c, std::function<void(int)> r)
      : loop(l), child(std::move(c)), reaped(std::move(r)) {}
  EventLoop& loop;
  ChildProcess child;
  UniqueFd pidfd;
  std::optional<EventLoop::TimerId> kill_timer;
  std::function<void(int)> reaped;
};

// Reaps the child if it is gone; true once it is.
bool TryReap(const std::shared_ptr<Reaping>& r) {
  std::optional<int> ws = r->child.TryWait();
  if (!ws) return false;
  if (r->kill_timer) r->loop.CancelTimer(*r->kill_timer);
  r->kill_timer.reset();
  if (r->pidfd.valid()) r->loop.Remove(r->pidfd.get());
  if (auto done = std::move(r->reaped)) done(*ws);
  return true;
}

void Poll(const std::shared_ptr<Reaping>& r) {
  if (!TryReap(r)) r->loop.AddTimer(kPollInterval, [r] { Poll(r); });
}

}  // namespace

void ReapInBackground(EventLoop& loop, ChildProcess child, std::chrono::milliseconds grace,
                      std::function<void(int wstatus)> reaped) {
  if (!child.running()) return;
  auto r = std::make_shared<Reaping>(loop, std::move(child), std::move(reaped));
  if (grace.count() <= 0) r->child.Signal(SIGKILL);
  if (TryReap(r)) return;
  // Until the child is reaped its pid cannot be reused: the pidfd is its own.
  // An adopted process brings its own pidfd (its pid is not ours to hold).
  r->pidfd = r->child.pidfd() >= 0 ? UniqueFd(fcntl(r->child.pidfd(), F_DUPFD_CLOEXEC, 0))
                                    : UniqueFd(int(syscall(SYS_pidfd_open, r->child.pid(), 0u)));
  if (!r->pidfd.valid() || !loop.Add(r->pidfd.get(), EPOLLIN, [r](uint32_t) { TryReap(r); }).ok()) {
    r->pidfd.reset();
    Poll(r);
  }
  if (grace.count() > 0 && r->child.running()) {
    r->kill_timer = loop.AddTimer(grace, [r] {
      r->kill_timer.reset();
      r->child.Signal(SIGKILL);
    });
  }
}

}  // namespace vtpm
