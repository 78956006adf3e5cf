// Bench phases that compare one instance with its peers: manufacturing a
// new instance (vs swtpm_setup), CPU and round trip per command on the first
// guest (vs swtpm 1.2 and in-process libtpms), and a durable NV write (vs one
// fsync'd write on the same filesystem). Needs SetUp and AttachFirstGuest.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <thread>

#include "bench/bench.h"
#include "bench/expect_success.h"
#include "bench/inprocess.h"
#include "bench/load.h"
#include "bench/nv12.h"
#include "bench/proc_stats.h"
#include "common/unique_fd.h"
#include "guest/frontend.h"
#include "guest/tcsd.h"
#include "guest/tpm_socket_server.h"

namespace vtpm::bench {
namespace {

// Each remote command's figures: round trips, and CPU per command for each
// group of processes (e.g. {daemon}, {workers}).
struct Remote {
  std::vector<double> rtt;
  std::vector<double> cpu;
};

using Sender = std::function<Result<Bytes>(const Bytes&)>;
using PidGroups = std::vector<std::vector<pid_t>>;

Result<Remote> Drive(int n, Bytes (*make)(uint32_t), const Sender& send, const PidGroups& groups) {
  Remote r;
  std::vector<double> before;
  for (const auto& g : groups) {
    ASSIGN_OR_RETURN(double s, CpuSeconds(g));
    before.push_back(s);
  }
  for (int i = 0; i < n; ++i) {
    Bytes cmd = make(uint32_t(i));
    const auto t0 = Clock::now();
    ASSIGN_OR_RETURN(Bytes rsp, send(cmd));
    r.rtt.push_back(Seconds(Clock::now() - t0));
    RETURN_IF_ERROR(ExpectSuccess(rsp, "command answered"));
  }
  for (size_t k = 0; k < groups.size(); ++k) {
    ASSIGN_OR_RETURN(double s, CpuSeconds(groups[k]));
    r.cpu.push_back((s - before[k]) / n);
  }
  return r;
}

}  // namespace

Status Bench::MeasureManufacture() {
  std::vector<double> ours, peer;
  for (int i = 0; i < o_.samples; ++i) {
    auto t0 = Clock::now();
    ASSIGN_OR_RETURN(auto out, Ctl({"create", sim::RandomUuid()}));
    ours.push_back(Seconds(Clock::now() - t0));
    if (out.exit_code != 0) return Status(Code::kInternal, "vtpmctl create failed: " + out.output);
    // swtpm's manufacture of a TPM 1.2, the same steps (EK, nvLocked; no owner).
    const std::string dir = host_->dir() + "/swtpm-setup-" + std::to_string(i);
    std::filesystem::create_directories(dir);
    t0 = Clock::now();
    auto setup = sim::RunCapture({"swtpm_setup", "--tpm-state", dir, "--createek", "--lock-nvram"}, {},
                                 std::chrono::seconds(60));
    if (setup.ok() && setup->exit_code == 0) peer.push_back(Seconds(Clock::now() - t0));
    else if (i == 0) std::cerr << "vtpm-bench: swtpm_setup failed: " << (setup.ok() ? setup->output : setup.status().ToString()) << "\n";
  }
  Row row{"manufacture a new instance (vtpmctl create, wall; EK, nvLocked, presence locked)", Us(Med(ours)),
          "", "", "", Verdict::kNone};
  if (!peer.empty()) {
    row.peer = "swtpm_setup --createek --lock-nvram: " + Us(Med(peer));
    row.ratio = Ratio(Med(ours), Med(peer));
  } else {
    row.peer = "swtpm_setup: failed (see stderr)";
  }
  report_.Add(kLifecycle, row);
  return Status::Ok();
}

Status Bench::MeasureCommands() {
  BenchGuest& g = *guests_.front();
  const pid_t daemon = daemon_->pid();
  const std::vector<pid_t> workers = ChildrenNamed(daemon, "vtpm-worker");
  if (workers.empty()) return Status(Code::kNotFound, "no vtpm-worker child of the daemon");
  Sender ours = [&g](const Bytes& c) { return g.Transact(c); };
  Sender swtpm = [this](const Bytes& c) { return swtpm12_->Transact(c); };
  for (int i = 0; i < 200; ++i) {  // warm up both
    RETURN_IF_ERROR(ours(PcrReadCommand(uint32_t(i))).status());
    RETURN_IF_ERROR(swtpm(PcrReadCommand(uint32_t(i))).status());
  }
  ASSIGN_OR_RETURN(LibtpmsFloor floor, MeasureLibtpmsInProcess(o_.commands));
  ASSIGN_OR_RETURN(double notify_cpu, MeasureSimNotifyCpu(host_->sim_dir(), 2000));
  struct Kind {
    const char* name;
    Bytes (*make)(uint32_t);
    const CommandFigures* floor;
    const CommandFigures* host;
  };
  for (const Kind& k : {Kind{"TPM_PCRRead", PcrReadCommand, &floor.pcr_read, &floor.host_pcr_read},
                        Kind{"TPM_Extend", ExtendCommand, &floor.extend, &floor.host_extend}}) {
    // Alternate ours and swtpm in three rounds so both see the same machine.
    Remote a, b;
    const int n = std::max(1, o_.commands / 3);
    for (int round = 0; round < 3; ++round) {
      ASSIGN_OR_RETURN(Remote ra, Drive(n, k.make, ours, {{daemon}, workers}));
      ASSIGN_OR_RETURN(Remote rb, Drive(n, k.make, swtpm, {{swtpm12_->pid()}}));
      a.rtt.insert(a.rtt.end(), ra.rtt.begin(), ra.rtt.end());
      b.rtt.insert(b.rtt.end(), rb.rtt.begin(), rb.rtt.end());
      a.cpu.resize(2);
      b.cpu.resize(1);
      for (size_t j = 0; j < 2; ++j) a.cpu[j] += ra.cpu[j] / 3;
      b.cpu[0] += rb.cpu[0] / 3;
    }
    const double cpu = a.cpu[0] + a.cpu[1], peer_cpu = b.cpu[0];
    Judge(kPerCommand, std::string("cpu ") + k.name, {std::string("CPU per ") + k.name + " (daemon + worker, utime+stime)",
                              Us(cpu) + " (daemon " + Us(a.cpu[0]) + ", worker " + Us(a.cpu[1]) + ")",
                              "swtpm 1.2: " + Us(peer_cpu), Ratio(cpu, peer_cpu), "<= 1.0x swtpm",
                              Check(cpu <= peer_cpu)});
    const double less_notify = cpu - notify_cpu;
    report_.Add(kPerCommand, {std::string("  same, less the simulated hypervisor's notify (real Xen: one hypercall)"),
                              Us(less_notify), "swtpm 1.2: " + Us(peer_cpu), Ratio(less_notify, peer_cpu),
                              "(estimate, not judged)", Verdict::kNone});
    report_.Add(kPerCommand, {std::string("round trip ") + k.name + " (median)", Us(Med(a.rtt)),
                              "swtpm 1.2: " + Us(Med(b.rtt)) + "; libtpms in-process: " + Us(Med(k.floor->round_trip)),
                              Ratio(Med(a.rtt), Med(b.rtt)) + " / " + Ratio(Med(a.rtt), Med(k.floor->round_trip)),
                              "", Verdict::kNone});
    // The same with the guest's driver, the daemon, its worker and swtpm
    // all on CPU 0: on this 2-CPU virtual machine a wake-up of a process on
    // the other CPU costs about ten times the command (an IPI the
    // hypervisor carries), and the scheduler keeps swtpm and its client
    // together more often than the three processes of our path.
    {
      const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
      std::vector<pid_t> all = {getpid(), daemon, swtpm12_->pid()};
      all.insert(all.end(), workers.begin(), workers.end());
      RETURN_IF_ERROR(PinToFirstCpus(all, 1));
      auto pinned_ours = Drive(n, k.make, ours, {{daemon}, workers});
      auto pinned_peer = pinned_ours.ok() ? Drive(n, k.make, swtpm, {{swtpm12_->pid()}}) : pinned_ours;
      Status unpinned = PinToFirstCpus(all, cpus);
      RETURN_IF_ERROR(pinned_ours.status());
      RETURN_IF_ERROR(pinned_peer.status());
      RETURN_IF_ERROR(unpinned);
      const double pcpu = pinned_ours->cpu[0] + pinned_ours->cpu[1], ppeer = pinned_peer->cpu[0];
      report_.Add(kPerCommand, {std::string("  same, every process on CPU 0 (no wake-up across CPUs); round trip ") +
                                    Us(Med(pinned_ours->rtt)) + " vs " + Us(Med(pinned_peer->rtt)),
                                Us(pcpu) + " (daemon " + Us(pinned_ours->cpu[0]) + ", worker " +
                                    Us(pinned_ours->cpu[1]) + ")",
                                "swtpm 1.2: " + Us(ppeer), Ratio(pcpu, ppeer), "(not judged)", Verdict::kNone});
    }
    report_.Add(kPerCommand, {std::string("  worker's own work per ") + k.name +
                                  " (LibtpmsHost::Execute in-process: TPMLIB_Process + volatile GetState)",
                              Us(Med(k.host->round_trip)), "TPMLIB_Process alone: " + Us(Med(k.floor->round_trip)),
                              Ratio(Med(k.host->round_trip), Med(k.floor->round_trip)), "", Verdict::kNone});
  }
  Note(kPerCommand,
       "simulated hypervisor: CPU of one event-channel notify (stat of the port record, pending-bit set, "
       "datagram when the bit was clear)",
       Us(notify_cpu));
  return Status::Ok();
}

Result<std::unique_ptr<sim::GuestFrontend>> Bench::NvGuest(uint32_t domid) {
  const std::string uuid = sim::RandomUuid();
  auto r = ts_->Create(domid, {{0u, uuid}});
  if (!r.status.ok()) return r.status.Annotate(r.Report());
  sim::FrontendOptions fo;
  fo.domid = domid;
  ASSIGN_OR_RETURN(auto guest, sim::GuestFrontend::Create(fo));
  RETURN_IF_ERROR(guest->Connect());
  // The guest takes ownership (on an nvLocked TPM, TPM_NV_DefineSpace
  // needs the owner) and defines a WRITEDEFINE index: written without
  // authorization until a zero-length write locks it.
  ASSIGN_OR_RETURN(auto server, sim::TpmSocketServer::Start(*guest, host_->dir() + "/nv-guest.sock"));
  ASSIGN_OR_RETURN(auto tcsd, sim::TcsdInstance::Start(server->path()));
  for (std::vector<std::string> argv :
       {std::vector<std::string>{"tpm_takeownership", "-y", "-z"},
        std::vector<std::string>{"tpm_nvdefine", "-y", "-i", std::to_string(kNvIndex), "-s",
                                 std::to_string(kNvBytes), "-p", "WRITEDEFINE"}}) {
    ASSIGN_OR_RETURN(auto out, tcsd->Run(argv));
    if (out.exit_code != 0) return Status(Code::kInternal, argv[0] + " failed: " + out.output);
  }
  return guest;
}

Status Bench::MeasureNv() {
  ASSIGN_OR_RETURN(auto guest, NvGuest(kNvDomid));
  ASSIGN_OR_RETURN(Bytes def, swtpm12_->Transact(NvDefineSpaceNoAuth(kNvIndex, kNvBytes, kNvPerWriteDefine)));
  RETURN_IF_ERROR(ExpectSuccess(def, "swtpm NV_DefineSpace"));
  Bytes data(kNvBytes);
  auto write = [&](uint32_t i) {
    std::fill(data.begin(), data.end(), uint8_t(i));
    return NvWriteValue(kNvIndex, 0, data);
  };
  std::vector<double> ours, peer, fsyncs;
  const std::string probe = daemon_->state_dir() + "/fsync-probe";
  UniqueFd fd(::open(probe.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return Status::FromErrno(errno, "open " + probe);
  std::vector<uint8_t> page(4096, 0x5a);
  if (::pwrite(fd.get(), page.data(), page.size(), 0) != 4096 || ::fsync(fd.get()) != 0)
    return Status::FromErrno(errno, "write " + probe);
  for (int i = 0; i < o_.nv_writes; ++i) {  // interleaved, so all three see the same disk
    Bytes cmd = write(uint32_t(i));
    auto t0 = Clock::now();
    ASSIGN_OR_RETURN(Bytes rsp, guest->Transmit(cmd, std::chrono::seconds(60)));
    ours.push_back(Seconds(Clock::now() - t0));
    RETURN_IF_ERROR(ExpectSuccess(rsp, "NV_WriteValue answered"));
    t0 = Clock::now();
    ASSIGN_OR_RETURN(Bytes prsp, swtpm12_->Transact(cmd));
    peer.push_back(Seconds(Clock::now() - t0));
    RETURN_IF_ERROR(ExpectSuccess(prsp, "swtpm NV_WriteValue"));
    page[0] = uint8_t(i);
    t0 = Clock::now();
    if (::pwrite(fd.get(), page.data(), page.size(), 0) != 4096 || ::fsync(fd.get()) != 0)
      return Status::FromErrno(errno, "fsync probe");
    fsyncs.push_back(Seconds(Clock::now() - t0));
  }
  ::unlink(probe.c_str());
  const double f = Med(fsyncs), w = Med(ours);
  Judge(kDurable, "nv", {"TPM_NV_WriteValue, " + std::to_string(kNvBytes) + " B (median round trip of " +
                             std::to_string(ours.size()) + ")", Us(w),
                         "fsync'd 4 KiB write: " + Us(f) + "; swtpm 1.2: " + Us(Med(peer)), Ratio(w, f),
                         "<= 2x the fsync'd write", Check(w <= 2 * f)});
  guest.reset();
  return ts_->Destroy(kNvDomid).status;
}

}  // namespace vtpm::bench
