#include "bench/inprocess.h"

#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>
#include <libtpms/tpm_memory.h>
#include <time.h>

#include <optional>

#include "bench/bench_guest.h"
#include "bench/expect_success.h"
#include "bench/load.h"
#include "common/event_loop.h"
#include "tpm/libtpms_host.h"
#include "tpm/tpm12.h"
#include "tpm/worker_client.h"
#include "xen_sim.h"

namespace vtpm::bench {

double ThreadCpuSeconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

namespace {

// `n` commands from `make(i)` through `run`, which returns the response.
template <typename Make, typename Run>
Result<CommandFigures> Measure(int n, Make make, Run run) {
  CommandFigures f;
  f.round_trip.reserve(size_t(n));
  const double cpu0 = ThreadCpuSeconds();
  for (int i = 0; i < n; ++i) {
    Bytes cmd = make(uint32_t(i));
    const auto t0 = Clock::now();
    Bytes rsp = run(cmd);
    f.round_trip.push_back(Seconds(Clock::now() - t0));
    RETURN_IF_ERROR(ExpectSuccess(rsp, "in-process libtpms answered"));
  }
  f.cpu_per_command = (ThreadCpuSeconds() - cpu0) / n;
  return f;
}

}  // namespace

Result<LibtpmsFloor> MeasureLibtpmsInProcess(int n) {
  LibtpmsHost host;
  WorkerRequest init;
  init.type = WorkerMsg::kInit;
  RETURN_IF_ERROR(host.Init(init).status());
  WorkerRequest startup;
  startup.command = tpm12::Startup(tpm12::kStClear);
  if (tpm12::ResponseCode(host.Execute(startup).response) != tpm12::kSuccess)
    return Status(Code::kTpmError, "in-process libtpms refused TPM_Startup");

  unsigned char* buf = nullptr;
  uint32_t size = 0;
  auto direct = [&](const Bytes& cmd) {
    uint32_t len = 0;
    Bytes c = cmd;  // TPMLIB_Process takes a non-const buffer
    if (TPMLIB_Process(&buf, &len, &size, c.data(), uint32_t(c.size())) != TPM_SUCCESS) return Bytes{};
    return Bytes(buf, buf + len);
  };
  auto via_host = [&](const Bytes& cmd) {
    WorkerRequest req;
    req.command = cmd;
    return host.Execute(req).response;
  };
  LibtpmsFloor out;
  Result<CommandFigures> r = Measure(n, PcrReadCommand, direct);
  if (r.ok()) out.pcr_read = *r;
  if (r.ok()) r = Measure(n, ExtendCommand, direct);
  if (r.ok()) out.extend = *r;
  if (r.ok()) r = Measure(n, PcrReadCommand, via_host);
  if (r.ok()) out.host_pcr_read = *r;
  if (r.ok()) r = Measure(n, ExtendCommand, via_host);
  if (r.ok()) out.host_extend = *r;
  TPM_Free(buf);
  if (!r.ok()) return r.status();
  return out;
}

Result<std::vector<double>> MeasureWorkerStarts(const std::string& worker_path, const Bytes& permanent, int n) {
  ASSIGN_OR_RETURN(auto loop, EventLoop::Create());
  WorkerOptions wo;
  wo.path = worker_path;
  wo.identities = WorkerIdentities::Create(0x7a600000, kWorkerUidCount, ResolveWorkerGroup());
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    ASSIGN_OR_RETURN(auto client, WorkerClient::Start(*loop, wo));
    WorkerRequest init;
    init.type = WorkerMsg::kInit;
    init.permanent = permanent;
    std::optional<Result<WorkerReply>> got;
    client->Call(init, std::chrono::seconds(60), [&](Result<WorkerReply> r) {
      got = std::move(r);
      loop->Stop();
    });
    RETURN_IF_ERROR(loop->Run());
    out.push_back(Seconds(Clock::now() - t0));
    if (!got || !got->ok()) return got ? got->status() : Status(Code::kInternal, "no reply to kInit");
    if ((*got)->type != WorkerMsg::kReply) return Status(Code::kUnavailable, "worker refused kInit: " + (*got)->message);
    client->Kill();
  }
  return out;
}

Result<double> MeasureSimNotifyCpu(const std::string& sim_dir, int n) {
  constexpr uint32_t kProbeDomid = 0x7ff0;  // a domain no test creates
  ASSIGN_OR_RETURN(auto guest, sim::EvtchnEndpoint::Open(sim_dir, kProbeDomid));
  guest.set_auto_mask(false);
  ASSIGN_OR_RETURN(auto dom0, sim::EvtchnEndpoint::Open(sim_dir, 0));
  ASSIGN_OR_RETURN(uint32_t guest_port, guest.AllocUnbound(0));
  ASSIGN_OR_RETURN(uint32_t dom0_port, dom0.BindInterdomain(kProbeDomid, guest_port));
  double cpu = 0;
  for (int i = 0; i < n; ++i) {
    const double c0 = ThreadCpuSeconds();
    RETURN_IF_ERROR(dom0.Notify(dom0_port));
    cpu += ThreadCpuSeconds() - c0;
    while (guest.Pending(false).ok()) {
    }
  }
  (void)dom0.Unbind(dom0_port);
  (void)guest.Unbind(guest_port);
  return cpu / n;
}

}  // namespace vtpm::bench
