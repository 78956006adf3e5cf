// Load generators over many BenchGuests, on the calling thread: open loop
// (each guest submits at a fixed rate whatever the backend does; latency is
// counted from the scheduled submit time, so a late backend is not hidden by
// a late client) and closed loop (each guest submits again as soon as it is
// answered). Commands alternate TPM_PCRRead and TPM_Extend.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/bench_guest.h"

namespace vtpm::bench {

struct LoadResult {
  std::vector<double> latency;  // seconds, one per answered command
  uint64_t answered = 0;
  uint64_t errors = 0;          // responses that were not TPM_SUCCESS, or malformed
  std::string first_error;
  double seconds = 0;           // measured interval
  uint64_t unsent = 0;          // open loop: scheduled commands still queued at the end
  double driver_cpu = 0;        // CPU seconds the driver (this thread) used
  double slowest_submit = 0;    // seconds of the slowest Submit (the notify may wait for the backend)
};

// Every guest submits `rate` commands per second for `seconds`, phases
// spread evenly; the first `warmup` seconds are not counted.
Result<LoadResult> RunOpenLoop(const std::vector<BenchGuest*>& guests, double rate, double seconds,
                               double warmup);
// Every guest keeps one command outstanding for `seconds` (after `warmup`).
Result<LoadResult> RunClosedLoop(const std::vector<BenchGuest*>& guests, double seconds, double warmup);

// The two commands of the mix; `n` selects the PCR and the digest.
Bytes PcrReadCommand(uint32_t n);
Bytes ExtendCommand(uint32_t n);

}  // namespace vtpm::bench
