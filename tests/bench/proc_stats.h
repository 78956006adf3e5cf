// What the benchmark reads about other processes from /proc: CPU time
// (utime + stime of every thread, /proc/<pid>/stat), resident memory and the
// children of a process. Linux only; every figure is for the live process.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace vtpm::bench {

// utime + stime of `pid` (all its threads) in seconds, at clock-tick
// resolution (1 / sysconf(_SC_CLK_TCK)).
Result<double> CpuSeconds(pid_t pid);
// Sum of CpuSeconds over `pids`.
Result<double> CpuSeconds(const std::vector<pid_t>& pids);
// VmRSS of `pid` in KiB (/proc/<pid>/status).
Result<uint64_t> RssKib(pid_t pid);
// Private_Clean + Private_Dirty of `pid` in KiB (/proc/<pid>/smaps_rollup):
// what the process alone costs, shared library pages excluded.
Result<uint64_t> PrivateKib(pid_t pid);
// Live children of `parent` whose command name (/proc/<pid>/comm) is `comm`.
std::vector<pid_t> ChildrenNamed(pid_t parent, const std::string& comm);

// Confines every thread of each of `pids` (/proc/<pid>/task) to CPUs 0 ..
// cpus - 1 (sched_setaffinity); threads started later inherit it.
Status PinToFirstCpus(const std::vector<pid_t>& pids, unsigned cpus);

// The one-, five- and fifteen-minute load averages, as /proc/loadavg says.
std::string LoadAverage();

}  // namespace vtpm::bench
