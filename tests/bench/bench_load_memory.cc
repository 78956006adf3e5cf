// Bench phases on the attached load guests: service time under open-loop
// load (each of o_.guests guests at 20 commands/s) and throughput in closed
// loop, then the memory of the daemon and of one worker vs swtpm 1.2.
// Needs AttachLoadGuests (at least the largest o_.guests guests attached).
#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench.h"
#include "bench/load.h"
#include "bench/proc_stats.h"

namespace vtpm::bench {
namespace {

constexpr double kGuestRate = 20;

Status LoadErrors(const LoadResult& r) {
  if (r.answered == 0) return Status(Code::kInternal, "no command answered");
  if (r.errors) return Status(Code::kTpmError, std::to_string(r.errors) + " failed commands, first: " + r.first_error);
  return Status::Ok();
}

}  // namespace

Status Bench::MeasureLoad() {
  const pid_t daemon = daemon_->pid();
  for (uint32_t count : o_.guests) {
    if (count > guests_.size()) return Status(Code::kInternal, "fewer guests attached than asked for");
    std::vector<BenchGuest*> gs;
    for (uint32_t i = 0; i < count; ++i) gs.push_back(guests_[i].get());
    std::vector<pid_t> pids = ChildrenNamed(daemon, "vtpm-worker");
    pids.push_back(daemon);
    ASSIGN_OR_RETURN(double cpu0, CpuSeconds(pids));
    const auto t0 = Clock::now();
    ASSIGN_OR_RETURN(LoadResult open, RunOpenLoop(gs, kGuestRate, o_.load_seconds, o_.load_seconds / 5));
    ASSIGN_OR_RETURN(double cpu1, CpuSeconds(pids));
    const double util = (cpu1 - cpu0) / Seconds(Clock::now() - t0);
    RETURN_IF_ERROR(LoadErrors(open));
    const double p50 = Quantile(open.latency, 0.5).value_or(0), p99 = Quantile(open.latency, 0.99).value_or(0);
    const bool judged = count == 256;
    Judge(kLoad, judged ? "p99" : "", {std::to_string(count) + " guests x 20/s: service time p50 / p99 (" +
                            std::to_string(open.answered) + " commands answered" +
                            (open.unsent ? ", " + std::to_string(open.unsent) + " never submitted (backlog)" : "") +
                            "; daemon + workers used " + FormatNumber(util * 100) + "% of one CPU, the guests' driver " +
                            FormatNumber(open.driver_cpu / open.seconds * 100) + "%; slowest submit " +
                            Us(open.slowest_submit) + ")",
                        Us(p50) + " / " + Us(p99), "", "", judged ? "p99 <= 2 ms" : "",
                        judged ? Check(p99 <= 0.002) : Verdict::kNone});
    ASSIGN_OR_RETURN(LoadResult closed, RunClosedLoop(gs, o_.load_seconds / 2, o_.load_seconds / 10));
    RETURN_IF_ERROR(LoadErrors(closed));
    Note(kLoad,
         std::to_string(count) + " guests, closed loop: aggregate commands/s (p50 / p99 " +
             Us(Quantile(closed.latency, 0.5).value_or(0)) + " / " + Us(Quantile(closed.latency, 0.99).value_or(0)) +
             ")",
         FormatNumber(double(closed.answered) / closed.seconds));
  }
  return MeasureScaling();
}

// Issue 16, item 5: the closed loop of the largest guest count with the
// daemon and its workers confined to one CPU, then to two; the guests'
// driver stays free to run on every CPU.
Status Bench::MeasureScaling() {
  const unsigned cpus = std::thread::hardware_concurrency();
  if (cpus < 2) {
    Note(kLoad, "closed loop at 1 and 2 CPUs", "not measured: this machine has one CPU");
    return Status::Ok();
  }
  const uint32_t count = *std::max_element(o_.guests.begin(), o_.guests.end());
  std::vector<BenchGuest*> gs;
  for (uint32_t i = 0; i < count && i < guests_.size(); ++i) gs.push_back(guests_[i].get());
  double rate[2] = {0, 0};
  for (unsigned n : {1u, 2u}) {
    std::vector<pid_t> pids = ChildrenNamed(daemon_->pid(), "vtpm-worker");
    pids.push_back(daemon_->pid());
    RETURN_IF_ERROR(PinToFirstCpus(pids, n));
    auto closed = RunClosedLoop(gs, o_.load_seconds / 2, o_.load_seconds / 10);
    Status unpinned = PinToFirstCpus(pids, cpus);
    if (!closed.ok()) return closed.status();
    RETURN_IF_ERROR(unpinned);
    RETURN_IF_ERROR(LoadErrors(*closed));
    rate[n - 1] = double(closed->answered) / closed->seconds;
    Note(kLoad,
         std::to_string(gs.size()) + " guests, closed loop, daemon and workers on " + std::to_string(n) +
             " CPU" + (n > 1 ? "s" : "") + ": commands/s (the guests' driver used " +
             FormatNumber(closed->driver_cpu / closed->seconds * 100) + "% of one CPU)",
         FormatNumber(rate[n - 1]));
  }
  Note(kLoad, "  scaling, 2 CPUs / 1 CPU", Ratio(rate[1], rate[0]));
  return Status::Ok();
}

Status Bench::MeasureMemory() {
  const pid_t daemon = daemon_->pid();
  ASSIGN_OR_RETURN(uint64_t rss, RssKib(daemon));
  Note(kMemory, "daemon RSS with " + std::to_string(guests_.size()) + " attached guests", FormatKib(double(rss)));
  std::vector<double> rsses, privs;
  for (pid_t w : ChildrenNamed(daemon, "vtpm-worker")) {
    auto r = RssKib(w);
    auto p = PrivateKib(w);
    if (r.ok()) rsses.push_back(double(*r));
    if (p.ok()) privs.push_back(double(*p));
  }
  if (rsses.empty()) return Status(Code::kNotFound, "no worker to measure");
  ASSIGN_OR_RETURN(uint64_t srss, RssKib(swtpm12_->pid()));
  ASSIGN_OR_RETURN(uint64_t spriv, PrivateKib(swtpm12_->pid()));
  const double w = Med(rsses);
  Judge(kMemory, "rss", {"one worker RSS (median of " + std::to_string(rsses.size()) + "; private " +
                            FormatKib(Med(privs)) + ")",
                        FormatKib(w), "swtpm 1.2 RSS: " + FormatKib(double(srss)) + " (private " +
                                          FormatKib(double(spriv)) + ")",
                        Ratio(w, double(srss)), "<= swtpm's", Check(w <= double(srss))});
  return Status::Ok();
}

}  // namespace vtpm::bench
