// Figures measured inside the benchmark process: the floor (libtpms called
// directly, as in the worker but without any process boundary), the cost of
// starting one vtpm-worker, and the cost of the simulated hypervisor's
// event-channel notify (which a real Xen host replaces by a hypercall).
#pragma once

#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"

namespace vtpm::bench {

struct CommandFigures {
  std::vector<double> round_trip;  // seconds per command
  double cpu_per_command = 0;      // seconds
};

struct LibtpmsFloor {
  CommandFigures pcr_read, extend;         // TPMLIB_Process alone
  CommandFigures host_pcr_read, host_extend;  // LibtpmsHost::Execute: what the worker does per command
};

// A fresh libtpms TPM 1.2 in this process (TPM_Init, TPM_Startup), then `n`
// of each command. Call at most once per process (libtpms is global).
Result<LibtpmsFloor> MeasureLibtpmsInProcess(int n);

// Seconds from fork+exec of `worker_path` until its reply to kInit with
// `permanent` (TPM_Init of a manufactured TPM), one sample per start.
Result<std::vector<double>> MeasureWorkerStarts(const std::string& worker_path, const Bytes& permanent, int n);

// CPU seconds of one EvtchnEndpoint::Notify between two endpoints of the
// simulated hypervisor in `sim_dir` (averaged over `n`).
Result<double> MeasureSimNotifyCpu(const std::string& sim_dir, int n);

// CPU seconds this thread has used so far.
double ThreadCpuSeconds();

}  // namespace vtpm::bench
