#include "common/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <cerrno>

namespace vtpm {

Result<std::unique_ptr<EventLoop>> EventLoop::Create() {
  UniqueFd ep(epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return Status::FromErrno(errno, "epoll_create1");
  UniqueFd wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return Status::FromErrno(errno, "eventfd");
  std::unique_ptr<EventLoop> loop(new EventLoop(std::move(ep), std::move(wake)));
  int wfd = loop->wake_fd_.get();
  EventLoop* self = loop.get();
  RETURN_IF_ERROR(loop->Add(wfd, EPOLLIN, [self, wfd](uint32_t) {
    uint64_t v;
    while (read(wfd, &v, sizeof v) == sizeof v) {
    }
    self->DrainPosted();
  }));
  return loop;
}

EventLoop::EventLoop(UniqueFd epfd, UniqueFd wake) : epfd_(std::move(epfd)), wake_fd_(std::move(wake)) {}
EventLoop::~EventLoop() = default;

Status EventLoop::Add(int fd, uint32_t events, FdCallback cb) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return Status::FromErrno(errno, "epoll_ctl(ADD)");
  fds_[fd] = std::make_shared<FdCallback>(std::move(cb));
  return {};
}

Status EventLoop::Modify(int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &ev) < 0) return Status::FromErrno(errno, "epoll_ctl(MOD)");
  return {};
}

void EventLoop::Remove(int fd) {
  epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);
  fds_.erase(fd);
}

EventLoop::TimerId EventLoop::AddTimer(std::chrono::milliseconds delay, std::function<void()> cb) {
  TimerId id = next_timer_++;
  auto when = Clock::now() + delay;
  timers_[id] = {when, std::move(cb)};
  timer_order_.emplace(when, id);
  return id;
}

void EventLoop::CancelTimer(TimerId id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  auto range = timer_order_.equal_range(it->second.first);
  for (auto o = range.first; o != range.second; ++o)
    if (o->second == id) {
      timer_order_.erase(o);
      break;
    }
  timers_.erase(it);
}

void EventLoop::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> g(post_mu_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_.get(), &one, sizeof one);
}

void EventLoop::DrainPosted() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> g(post_mu_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

Status EventLoop::Run() {
  running_ = true;
  while (running_) RETURN_IF_ERROR(RunOnce(std::chrono::milliseconds(1000)));
  return {};
}

Status EventLoop::RunOnce(std::chrono::milliseconds max_wait) {
  auto timeout = max_wait;
  if (!timer_order_.empty()) {
    auto until = std::chrono::duration_cast<std::chrono::milliseconds>(timer_order_.begin()->first - Clock::now());
    if (until < timeout) timeout = until.count() < 0 ? std::chrono::milliseconds(0) : until + std::chrono::milliseconds(1);
  }
  epoll_event evs[64];
  int n = epoll_wait(epfd_.get(), evs, 64, int(timeout.count()));
  if (n < 0 && errno != EINTR) return Status::FromErrno(errno, "epoll_wait");
  for (int i = 0; i < n; ++i) {
    auto it = fds_.find(evs[i].data.fd);
    if (it == fds_.end()) continue;
    auto cb = it->second;  // keeps the callback alive if it removes itself
    (*cb)(evs[i].events);
  }
  auto now = Clock::now();
  while (!timer_order_.empty() && timer_order_.begin()->first <= now) {
    TimerId id = timer_order_.begin()->second;
    timer_order_.erase(timer_order_.begin());
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;
    auto fn = std::move(it->second.second);
    timers_.erase(it);
    fn();
  }
  return {};
}

}  // namespace vtpm
