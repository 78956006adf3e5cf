#include "bench/load.h"

#include <sys/epoll.h>
#include <sys/timerfd.h>

#include <algorithm>
#include <deque>
#include <queue>

#include "bench/inprocess.h"
#include "common/unique_fd.h"
#include "tpm/tpm12.h"

namespace vtpm::bench {
namespace {

// PCRs 0..15 are read, 10..15 extended (never 16..23: locality PCRs).
constexpr uint32_t kReadPcrs = 16, kExtendFirst = 10, kExtendPcrs = 6;

struct GuestLoad {
  BenchGuest* guest = nullptr;
  std::deque<Clock::time_point> due;  // scheduled submits not yet sent (open loop)
  bool outstanding = false;
  Clock::time_point started;          // scheduled (open) or actual (closed) submit time
  uint32_t sent = 0;
};

class Driver {
 public:
  Driver(const std::vector<BenchGuest*>& guests, bool open, double seconds, double warmup)
      : open_(open), warmup_(warmup), seconds_(seconds) {
    for (BenchGuest* g : guests) load_.push_back({g, {}, false, {}, 0});
  }

  Result<LoadResult> Run(double rate) {
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    UniqueFd timer(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!ep || !timer) return Status::FromErrno(errno, "epoll/timerfd");
    for (size_t i = 0; i < load_.size(); ++i) {
      epoll_event e{EPOLLIN, {.u64 = i}};
      if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, load_[i].guest->fd(), &e) != 0)
        return Status::FromErrno(errno, "epoll_ctl");
    }
    epoll_event te{EPOLLIN, {.u64 = UINT64_MAX}};
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, timer.get(), &te) != 0) return Status::FromErrno(errno, "epoll_ctl");

    const double cpu0 = ThreadCpuSeconds();
    start_ = Clock::now();
    count_from_ = start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warmup_));
    end_ = count_from_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds_));
    const auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
    // Open loop: (next scheduled time, guest), phases spread over one period.
    using Slot = std::pair<Clock::time_point, size_t>;
    std::priority_queue<Slot, std::vector<Slot>, std::greater<>> schedule;
    for (size_t i = 0; i < load_.size(); ++i) {
      if (open_) schedule.push({start_ + period * i / load_.size(), i});
      else RETURN_IF_ERROR(Send(i, Clock::now()));
    }
    std::vector<epoll_event> events(load_.size() + 1);
    for (;;) {
      const auto now = Clock::now();
      if (open_) {
        while (!schedule.empty() && schedule.top().first <= now) {
          auto [when, i] = schedule.top();
          schedule.pop();
          if (when < end_) {
            load_[i].due.push_back(when);
            schedule.push({when + period, i});
          }
          if (!load_[i].outstanding && !load_[i].due.empty()) {
            Clock::time_point first = load_[i].due.front();
            load_[i].due.pop_front();
            RETURN_IF_ERROR(Send(i, first));
          }
        }
      }
      if (now >= end_) {
        // What the backend did not even get by the end stays unsent; its
        // latency is at least its wait so far (counted that way).
        for (GuestLoad& g : load_) {
          for (Clock::time_point due : g.due) {
            if (due >= count_from_) result_.latency.push_back(Seconds(now - due));
            ++result_.unsent;
          }
          g.due.clear();
        }
        if (std::none_of(load_.begin(), load_.end(), [](const GuestLoad& g) { return g.outstanding; })) break;
      }
      if (now >= end_ + std::chrono::seconds(30)) return Status(Code::kTimeout, "commands still outstanding 30 s after the run");
      if (open_ && !schedule.empty()) {
        itimerspec its{};
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(schedule.top().first.time_since_epoch()).count();
        its.it_value.tv_sec = ns / 1000000000;
        its.it_value.tv_nsec = ns % 1000000000;
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
        ::timerfd_settime(timer.get(), TFD_TIMER_ABSTIME, &its, nullptr);
      }
      int n = ::epoll_wait(ep.get(), events.data(), int(events.size()), 100);
      if (n < 0 && errno != EINTR) return Status::FromErrno(errno, "epoll_wait");
      for (int k = 0; k < n; ++k) {
        if (events[k].data.u64 == UINT64_MAX) {
          uint64_t expirations;
          (void)!::read(timer.get(), &expirations, sizeof expirations);
          continue;
        }
        RETURN_IF_ERROR(OnReadable(size_t(events[k].data.u64)));
      }
    }
    result_.seconds = seconds_;
    result_.driver_cpu = ThreadCpuSeconds() - cpu0;
    return std::move(result_);
  }

 private:
  Status Send(size_t i, Clock::time_point scheduled) {
    GuestLoad& g = load_[i];
    const uint32_t n = g.sent++ + g.guest->domid();
    Bytes cmd = (n % 2) ? ExtendCommand(n) : PcrReadCommand(n);
    g.outstanding = true;
    g.started = scheduled;
    const auto t0 = Clock::now();
    Status st = g.guest->Submit(cmd);
    result_.slowest_submit = std::max(result_.slowest_submit, Seconds(Clock::now() - t0));
    return st;
  }

  Status OnReadable(size_t i) {
    GuestLoad& g = load_[i];
    if (!g.guest->Finished() || !g.outstanding) return Status::Ok();
    const auto now = Clock::now();
    g.outstanding = false;
    auto rsp = g.guest->Response();
    if (g.started >= count_from_ && g.started < end_) {
      ++result_.answered;
      result_.latency.push_back(Seconds(now - g.started));
      std::optional<uint32_t> rc = rsp.ok() ? tpm12::ResponseCode(*rsp) : std::nullopt;
      if (rc != 0u) {
        ++result_.errors;
        if (result_.first_error.empty())
          result_.first_error = "domain " + std::to_string(g.guest->domid()) + ": " +
                                (rsp.ok() ? "TPM rc " + std::to_string(rc.value_or(~0u)) : rsp.status().ToString());
      }
    }
    if (open_) {
      if (!g.due.empty()) {
        Clock::time_point first = g.due.front();
        g.due.pop_front();
        return Send(i, first);
      }
      return Status::Ok();
    }
    return now < end_ ? Send(i, now) : Status::Ok();
  }

  bool open_;
  double warmup_, seconds_;
  std::vector<GuestLoad> load_;
  Clock::time_point start_, count_from_, end_;
  LoadResult result_;
};

}  // namespace

Bytes PcrReadCommand(uint32_t n) { return tpm12::PcrRead(n % kReadPcrs); }

Bytes ExtendCommand(uint32_t n) {
  tpm12::PcrValue digest;
  digest.fill(uint8_t(n));
  return tpm12::PcrExtend(kExtendFirst + n % kExtendPcrs, digest);
}

Result<LoadResult> RunOpenLoop(const std::vector<BenchGuest*>& guests, double rate, double seconds, double warmup) {
  return Driver(guests, true, seconds, warmup).Run(rate);
}

Result<LoadResult> RunClosedLoop(const std::vector<BenchGuest*>& guests, double seconds, double warmup) {
  return Driver(guests, false, seconds, warmup).Run(1.0);
}

}  // namespace vtpm::bench
