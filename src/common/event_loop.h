// EventLoop: the daemon's single epoll loop. Owns no fds; callers register
// fds they own and must Remove() them before closing. Timers are one-shot
// and run on the loop thread. Post() is the only thread-safe entry point.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace vtpm {

class EventLoop {
 public:
  using FdCallback = std::function<void(uint32_t epoll_events)>;
  using TimerId = uint64_t;
  using Clock = std::chrono::steady_clock;

  static Result<std::unique_ptr<EventLoop>> Create();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  Status Add(int fd, uint32_t events, FdCallback cb);
  Status Modify(int fd, uint32_t events);
  void Remove(int fd);

  TimerId AddTimer(std::chrono::milliseconds delay, std::function<void()> cb);
  void CancelTimer(TimerId id);

  // Runs `fn` on the loop thread soon. Safe from any thread.
  void Post(std::function<void()> fn);

  // Runs until Stop(). Returns the first error from epoll_wait.
  Status Run();
  void Stop() { running_ = false; }
  // One iteration: waits at most `max_wait` for events.
  Status RunOnce(std::chrono::milliseconds max_wait);

 private:
  EventLoop(UniqueFd epfd, UniqueFd wake);
  void DrainPosted();

  UniqueFd epfd_;
  UniqueFd wake_fd_;
  bool running_ = false;
  std::unordered_map<int, std::shared_ptr<FdCallback>> fds_;
  std::multimap<Clock::time_point, TimerId> timer_order_;
  std::unordered_map<TimerId, std::pair<Clock::time_point, std::function<void()>>> timers_;
  TimerId next_timer_ = 1;
  std::mutex post_mu_;
  std::vector<std::function<void()>> posted_;
};

}  // namespace vtpm
