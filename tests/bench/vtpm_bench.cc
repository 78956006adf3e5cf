// vtpm-bench: the project's figures against its peers, in one run on the
// simulated Xen host (real xenstored + shims, the real vtpmmgrd with the
// libtpms engine, swtpm as the host TPM 2.0). Figures are printed, never
// asserted (design §7): a missed target is shown as MISSED; the exit status
// is non-zero only when the benchmark itself failed (a phase errored or a
// TPM command was not answered with TPM_SUCCESS).
//
//   vtpm-bench [--smoke] [--instances N] [--guests 8,64,256] [--commands N]
//              [--load-seconds S] [--output FILE]
//
// Peers: swtpm (`swtpm socket`, TPM 1.2, one process per VM, commands over
// its unix socket) and libtpms called in this process (the floor).
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "bench/bench_guest.h"
#include "bench/bench_report.h"
#include "bench/inprocess.h"
#include "bench/load.h"
#include "bench/nv12.h"
#include "bench/proc_stats.h"
#include "bench/swtpm12.h"
#include "common/log.h"
#include "guest/frontend.h"
#include "guest/tcsd.h"
#include "guest/tpm_socket_server.h"
#include "harness/daemon_process.h"
#include "host_tpm_swtpm.h"
#include "simhost/run_capture.h"
#include "simhost/sim_host.h"
#include "store/open_store.h"
#include "toolstack/toolstack.h"
#include "tpm/tpm12.h"

namespace vtpm::bench {
namespace {

constexpr char kPerCommand[] = "Per command, one guest, closed loop";
constexpr char kLoad[] = "Load: guests x 20 commands/s each (open loop), and closed loop";
constexpr char kDurable[] = "State-changing command vs one fsync'd write (same filesystem)";
constexpr char kLifecycle[] = "Attach, worker start, manufacture";
constexpr char kMemory[] = "Memory";
constexpr char kScale[] = "Registered instances";

constexpr uint32_t kFirstDomid = 1, kNvDomid = 2, kLoadDomidBase = 10;
constexpr uint32_t kNvIndex = 0x00011101, kNvBytes = 256;
// A TPM 1.2 takes at most 64 NV writes without authorization
// (TPM_MAX_NV_WRITE_NOOWNER, counted in its permanent data until an owner
// clears it), then answers TPM_MAXNVWRITES.
constexpr int kNoOwnerNvWrites = 60;
constexpr double kGuestRate = 20;

struct Options {
  bool smoke = false;
  uint32_t instances = 20000;
  std::vector<uint32_t> guests{8, 64, 256};
  int commands = 15000;      // per command kind and peer (CPU per command, round trip)
  double load_seconds = 10;  // per open-loop level; closed loop gets half
  int nv_writes = kNoOwnerNvWrites;
  int samples = 5;           // manufactures, worker starts, vtpmctl lists
  std::string output;
};

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
    if (ReturnCode(rsp) != 0u)
      return Status(Code::kTpmError, "command answered rc " + std::to_string(ReturnCode(rsp).value_or(~0u)));
  }
  for (size_t k = 0; k < groups.size(); ++k) {
    ASSIGN_OR_RETURN(double s, CpuSeconds(groups[k]));
    r.cpu.push_back((s - before[k]) / n);
  }
  return r;
}

double Med(const std::vector<double>& v) { return Median(v).value_or(0); }

std::string Us(double s) { return FormatSeconds(s); }

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)) {
    for (const char* s : {kPerCommand, kLoad, kDurable, kLifecycle, kMemory, kScale}) report_.Section(s);
  }
  ~Bench() {
    guests_.clear();
    daemon_.reset();
    swtpm12_.reset();
    ts_.reset();
    xs_.reset();
    host_.reset();
    if (!shm_dir_.empty()) std::filesystem::remove_all(shm_dir_);
  }

  int Run() {
    const std::string load_before = LoadAverage();
    const auto start = Clock::now();
    Phase("simulated host", [&] { return SetUp(); });
    Phase("first guest", [&] { return AttachFirstGuest(); });
    Phase("manufacture", [&] { return MeasureManufacture(); });
    Phase("per-command figures", [&] { return MeasureCommands(); });
    Phase("NV write", [&] { return MeasureNv(); });
    Phase("bulk insert", [&] { return BulkInsert(); });
    Phase("registered instances", [&] { return MeasureScale(); });
    Phase("attach", [&] { return AttachLoadGuests(); });
    Phase("load", [&] { return MeasureLoad(); });
    Phase("memory", [&] { return MeasureMemory(); });
    MarkUnjudged();
    std::ostringstream out;
    utsname u{};
    ::uname(&u);
    out << "vtpm-bench" << (o_.smoke ? " --smoke" : "") << ": " << Now() << ", " << u.sysname << " " << u.release
        << ", " << std::thread::hardware_concurrency() << " CPUs, load average " << load_before << " at start, "
        << LoadAverage() << " at end; " << FormatNumber(Seconds(Clock::now() - start), 0) << " s.\n";
    out << report_.Render();
    for (const auto& e : errors_) out << "\nERROR: " << e << "\n";
    std::cout << out.str() << std::flush;
    if (!o_.output.empty()) std::ofstream(o_.output) << out.str();
    return errors_.empty() ? 0 : 1;
  }

 private:
  // Runs one phase unless an earlier one failed; a failure is recorded.
  void Phase(const std::string& name, const std::function<Status()>& body) {
    if (!errors_.empty()) {
      std::cerr << "vtpm-bench: skipping " << name << " (an earlier phase failed)\n";
      skipped_.push_back(name);
      return;
    }
    std::cerr << "vtpm-bench: " << name << " ...\n";
    const auto t0 = Clock::now();
    Status st = body();
    std::cerr << "vtpm-bench: " << name << " " << (st.ok() ? "done" : "FAILED") << " in "
              << FormatSeconds(Seconds(Clock::now() - t0)) << "\n";
    if (!st.ok()) {
      errors_.push_back(name + ": " + st.ToString());
      if (daemon_) std::cerr << "---- daemon log (tail) ----\n" << Tail(daemon_->Log(), 40);
    }
  }

  // Adds a row that carries one of the targets (`key` names it).
  void Judge(const std::string& section, const std::string& key, Row row) {
    judged_.insert(key);
    report_.Add(section, std::move(row));
  }

  // Every target without a figure gets a NOT MEASURED row saying why.
  void MarkUnjudged() {
    const std::string why = errors_.empty() ? "not part of this run" : "the benchmark failed before it (see ERROR)";
    struct Target {
      const char *section, *key, *what, *target;
    };
    for (const Target& t : {Target{kPerCommand, "cpu TPM_PCRRead", "CPU per TPM_PCRRead", "<= 1.5x swtpm"},
                            Target{kPerCommand, "cpu TPM_Extend", "CPU per TPM_Extend", "<= 1.5x swtpm"},
                            Target{kLoad, "p99", "256 guests x 20/s: p99 service time", "p99 <= 2 ms"},
                            Target{kDurable, "nv", "TPM_NV_WriteValue round trip", "<= 2x the fsync'd write"},
                            Target{kMemory, "rss", "one worker RSS", "<= swtpm's"},
                            Target{kScale, "ready", "daemon start to READY with 20,000 instances", "<= 1 s"},
                            Target{kScale, "list", "vtpmctl list with 20,000 instances", "<= 300 ms"}})
      if (!judged_.count(t.key)) report_.NotMeasured(t.section, t.what, why, t.target);
  }

  static std::string Tail(const std::string& s, int lines) {
    size_t pos = s.size();
    for (int i = 0; i <= lines && pos != std::string::npos && pos > 0; ++i) pos = s.rfind('\n', pos - 1);
    return pos == std::string::npos ? s : s.substr(pos + 1);
  }

  static std::string Now() {
    std::time_t t = std::time(nullptr);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
    return buf;
  }

  std::string ControlSocket() const { return daemon_->runtime_dir() + "/control.sock"; }

  Status SetUp() {
    ASSIGN_OR_RETURN(host_, sim::SimHost::Start());
    ASSIGN_OR_RETURN(auto xs, sim::XsClient::Open());
    xs_.emplace(std::move(xs));
    RETURN_IF_ERROR(xs_->Write("/local/domain/0/name", "Domain-0"));
    RETURN_IF_ERROR(xs_->Write("/local/domain/0/domid", "0"));
    ts_ = std::make_unique<sim::Toolstack>(*xs_, host_->sim_dir());
    RETURN_IF_ERROR(ts_->InitHost());
    // The runtime directory is tmpfs on a real host (/run/vtpmmgrd): the
    // volatile copy written after every command must not hit a disk here.
    std::string shm = "/dev/shm/vtpm-bench-XXXXXX";
    if (!::mkdtemp(shm.data())) return Status::FromErrno(errno, "mkdtemp " + shm);
    shm_dir_ = shm;
    if (::mkdir((shm_dir_ + "/run").c_str(), 0700) != 0) return Status::FromErrno(errno, "mkdir run");
    if (::symlink((shm_dir_ + "/run").c_str(), (host_->dir() + "/run").c_str()) != 0)
      return Status::FromErrno(errno, "symlink run");
    const std::string host_tpm = host_->dir() + "/host-tpm";
    if (::mkdir(host_tpm.c_str(), 0700) != 0) return Status::FromErrno(errno, "mkdir " + host_tpm);
    ASSIGN_OR_RETURN(auto swtpm2, testing::Swtpm::Start(host_tpm));
    swtpm2_ = std::make_unique<testing::Swtpm>(std::move(swtpm2));
    sim::DaemonOptions d;
    d.log_level = "info";
    d.extra_config = "[engine]\nkind = \"libtpms\"\nworker_path = \"" VTPM_WORKER_BIN "\"\n[host_tpm]\ntcti = \"" +
                     swtpm2_->tcti() + "\"\n";
    daemon_ = std::make_unique<sim::DaemonProcess>(*host_, d);
    const auto t0 = Clock::now();
    RETURN_IF_ERROR(daemon_->Start());
    report_.Add(kScale, {"first start to READY (provisions SRK, storage key, master key in the host TPM)",
                         Us(Seconds(Clock::now() - t0)), "", "", "", Verdict::kNone});
    const auto s0 = Clock::now();
    ASSIGN_OR_RETURN(swtpm12_, Swtpm12::Start(host_->dir() + "/swtpm12"));
    swtpm12_start_ = Seconds(Clock::now() - s0);
    return Status::Ok();
  }

  // xl create + connect + first command; adds the guest to guests_.
  struct AttachTimes {
    double create = 0, init_to_connected = 0, first_command = 0;
  };
  Result<AttachTimes> Attach(uint32_t domid, const std::string& uuid, bool first_command = true) {
    AttachTimes t;
    auto t0 = Clock::now();
    auto r = ts_->Create(domid, {{0u, uuid}});
    t.create = Seconds(Clock::now() - t0);
    if (!r.status.ok()) return r.status.Annotate(r.Report());
    ASSIGN_OR_RETURN(auto g, BenchGuest::Connect(*xs_, host_->sim_dir(), domid, 0, &t.init_to_connected));
    guests_.push_back(std::move(g));
    if (!first_command) return t;
    t0 = Clock::now();
    ASSIGN_OR_RETURN(Bytes rsp, guests_.back()->Transact(PcrReadCommand(0)));
    t.first_command = Seconds(Clock::now() - t0);
    RETURN_IF_ERROR(FirstAnswer(*guests_.back(), rsp));
    return t;
  }

  static Status FirstAnswer(const BenchGuest& g, const Bytes& rsp) {
    if (ReturnCode(rsp) == 0u) return Status::Ok();
    return Status(Code::kTpmError, "domain " + std::to_string(g.domid()) + ": first command answered rc " +
                                       std::to_string(ReturnCode(rsp).value_or(~0u)));
  }

  // Sends every guest in [from, guests_.size()) its first command at once
  // (their workers start in parallel) and waits for all answers.
  Status FirstCommandsTogether(size_t from) {
    for (size_t i = from; i < guests_.size(); ++i) RETURN_IF_ERROR(guests_[i]->Submit(PcrReadCommand(0)));
    const auto deadline = Clock::now() + std::chrono::minutes(5);
    std::vector<pollfd> fds;
    for (size_t i = from; i < guests_.size(); ++i) fds.push_back({guests_[i]->fd(), POLLIN, 0});
    size_t left = fds.size();
    std::vector<bool> done(fds.size(), false);
    while (left > 0) {
      if (Clock::now() > deadline) return Status(Code::kTimeout, std::to_string(left) + " guests unanswered after 5 min");
      ::poll(fds.data(), fds.size(), 100);
      for (size_t k = 0; k < fds.size(); ++k) {
        if (done[k] || !guests_[from + k]->Finished()) continue;
        ASSIGN_OR_RETURN(Bytes rsp, guests_[from + k]->Response());
        RETURN_IF_ERROR(FirstAnswer(*guests_[from + k], rsp));
        done[k] = true;
        fds[k].fd = -1;
        --left;
      }
    }
    return Status::Ok();
  }

  Status AttachFirstGuest() {
    first_uuid_ = sim::RandomUuid();
    ASSIGN_OR_RETURN(AttachTimes t, Attach(kFirstDomid, first_uuid_));
    report_.Add(kLifecycle, {"first command after attach of a new uuid (auto-create: manufacture + worker start)",
                             Us(t.first_command), "", "", "", Verdict::kNone});
    return Status::Ok();
  }

  Status MeasureManufacture() {
    std::vector<double> ours, peer;
    for (int i = 0; i < o_.samples; ++i) {
      auto t0 = Clock::now();
      ASSIGN_OR_RETURN(auto out, sim::RunCapture({VTPM_CTL_PATH, "--socket", ControlSocket(), "create",
                                                  sim::RandomUuid()}, {}, std::chrono::seconds(60)));
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

  Status MeasureCommands() {
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
                                "swtpm 1.2: " + Us(peer_cpu), Ratio(cpu, peer_cpu), "<= 1.5x swtpm (goal 1.0x)",
                                Check(cpu <= 1.5 * peer_cpu)});
      const double less_notify = cpu - notify_cpu;
      report_.Add(kPerCommand, {std::string("  same, less the simulated hypervisor's notify (real Xen: one hypercall)"),
                                Us(less_notify), "swtpm 1.2: " + Us(peer_cpu), Ratio(less_notify, peer_cpu),
                                "(estimate, not judged)", Verdict::kNone});
      report_.Add(kPerCommand, {std::string("round trip ") + k.name + " (median)", Us(Med(a.rtt)),
                                "swtpm 1.2: " + Us(Med(b.rtt)) + "; libtpms in-process: " + Us(Med(k.floor->round_trip)),
                                Ratio(Med(a.rtt), Med(b.rtt)) + " / " + Ratio(Med(a.rtt), Med(k.floor->round_trip)),
                                "", Verdict::kNone});
      report_.Add(kPerCommand, {std::string("  worker's own work per ") + k.name +
                                    " (LibtpmsHost::Execute in-process: TPMLIB_Process + volatile GetState)",
                                Us(Med(k.host->round_trip)), "TPMLIB_Process alone: " + Us(Med(k.floor->round_trip)),
                                Ratio(Med(k.host->round_trip), Med(k.floor->round_trip)), "", Verdict::kNone});
    }
    report_.Add(kPerCommand, {"simulated hypervisor: CPU of one event-channel notify (file lock, record read, "
                              "/proc liveness check, datagram)",
                              Us(notify_cpu), "", "", "", Verdict::kNone});
    return Status::Ok();
  }

  Status MeasureNv() {
    const std::string uuid = sim::RandomUuid();
    auto r = ts_->Create(kNvDomid, {{0u, uuid}});
    if (!r.status.ok()) return r.status.Annotate(r.Report());
    sim::FrontendOptions fo;
    fo.domid = kNvDomid;
    ASSIGN_OR_RETURN(auto guest, sim::GuestFrontend::Create(fo));
    RETURN_IF_ERROR(guest->Connect());
    {
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
    }
    ASSIGN_OR_RETURN(Bytes def, swtpm12_->Transact(NvDefineSpaceNoAuth(kNvIndex, kNvBytes, kNvPerWriteDefine)));
    if (ReturnCode(def) != 0u)
      return Status(Code::kTpmError, "swtpm NV_DefineSpace rc " + std::to_string(ReturnCode(def).value_or(~0u)));
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
      if (ReturnCode(rsp) != 0u)
        return Status(Code::kTpmError, "NV_WriteValue answered rc " + std::to_string(ReturnCode(rsp).value_or(~0u)));
      t0 = Clock::now();
      ASSIGN_OR_RETURN(Bytes prsp, swtpm12_->Transact(cmd));
      peer.push_back(Seconds(Clock::now() - t0));
      if (ReturnCode(prsp) != 0u)
        return Status(Code::kTpmError, "swtpm NV_WriteValue rc " + std::to_string(ReturnCode(prsp).value_or(~0u)));
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

  Status BulkInsert() {
    ASSIGN_OR_RETURN(int ws, daemon_->Stop());
    if (ws != 0) return Status(Code::kInternal, "daemon exited with " + DescribeWaitStatus(ws));
    StoreOptions so;
    so.state_dir = daemon_->state_dir();
    so.runtime_dir = daemon_->runtime_dir();
    so.host_tpm.tcti = swtpm2_->tcti();
    ASSIGN_OR_RETURN(auto store, OpenStore(so));
    ASSIGN_OR_RETURN(Uuid first, Uuid::Parse(first_uuid_));
    ASSIGN_OR_RETURN(LoadedInstance model, store->Load(first));
    ASSIGN_OR_RETURN(auto starts, MeasureWorkerStarts(VTPM_WORKER_BIN, model.permanent, o_.samples));
    report_.Add(kLifecycle, {"worker start (fork+exec, sandbox, TPM_Init of a manufactured TPM; WorkerClient)",
                             Us(Med(starts)), "swtpm 1.2 process start to TPM_Startup answered: " + Us(swtpm12_start_),
                             Ratio(Med(starts), swtpm12_start_), "", Verdict::kNone});

    const uint32_t max_guests = *std::max_element(o_.guests.begin(), o_.guests.end());
    for (uint32_t i = 1; i < max_guests; ++i) load_uuids_.push_back(sim::RandomUuid());
    std::vector<std::string> uuids = load_uuids_;
    while (uuids.size() < o_.instances) uuids.push_back(sim::RandomUuid());
    // A copy of one manufactured instance under each new uuid, through the
    // store API (each gets its own data key); 8 threads share group commits.
    std::atomic<size_t> next{0};
    std::mutex mu;
    Status failed;
    const auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&] {
        for (size_t i; (i = next.fetch_add(1)) < uuids.size();) {
          InstanceMeta meta = model.meta;
          auto id = Uuid::Parse(uuids[i]);
          Status st = id.ok() ? Status::Ok() : id.status();
          if (st.ok()) {
            meta.uuid = *id;
            meta.created = int64_t(std::time(nullptr));
            meta.auto_created = false;
            st = store->Create(meta, {{BlobKind::kPermanent, model.permanent}});
          }
          if (!st.ok()) {
            std::lock_guard<std::mutex> l(mu);
            failed = st;
            next = uuids.size();
          }
        }
      });
    for (auto& t : threads) t.join();
    RETURN_IF_ERROR(failed);
    const auto l0 = Clock::now();
    ASSIGN_OR_RETURN(auto listed, store->List());
    store_list_ = Seconds(Clock::now() - l0);
    registered_ = listed.size();
    report_.Add(kScale, {"bulk insert of " + std::to_string(uuids.size()) +
                             " copies of one manufactured instance (store API, 8 threads, group commit)",
                         Us(Seconds(Clock::now() - t0)), "", "", "", Verdict::kNone});
    return Status::Ok();
  }

  Status MeasureScale() {
    const std::string n = std::to_string(registered_);
    auto t0 = Clock::now();
    RETURN_IF_ERROR(daemon_->Start());
    const double ready = Seconds(Clock::now() - t0);
    Judge(kScale, "ready", {"daemon start to READY with " + n + " instances", Us(ready), "", "", "<= 1 s",
                         Check(ready <= 1.0)});
    std::vector<double> lists;
    for (int i = 0; i < o_.samples; ++i) {
      t0 = Clock::now();
      ASSIGN_OR_RETURN(auto out, sim::RunCapture({VTPM_CTL_PATH, "--socket", ControlSocket(), "list"}, {},
                                                 std::chrono::seconds(60)));
      lists.push_back(Seconds(Clock::now() - t0));
      const size_t lines = size_t(std::count(out.output.begin(), out.output.end(), '\n'));
      if (out.exit_code != 0 || lines < registered_)
        return Status(Code::kInternal, "vtpmctl list: exit " + std::to_string(out.exit_code) + ", " +
                                           std::to_string(lines) + " lines for " + n + " instances");
    }
    Judge(kScale, "list", {"vtpmctl list with " + n + " instances (wall, median)", Us(Med(lists)), "", "",
                         "<= 300 ms", Check(Med(lists) <= 0.3)});
    std::vector<double> json_lists;
    for (int i = 0; i < o_.samples; ++i) {
      t0 = Clock::now();
      ASSIGN_OR_RETURN(auto out, sim::RunCapture({VTPM_CTL_PATH, "--socket", ControlSocket(), "--json", "list"}, {},
                                                 std::chrono::seconds(60)));
      json_lists.push_back(Seconds(Clock::now() - t0));
      if (out.exit_code != 0) return Status(Code::kInternal, "vtpmctl --json list failed: " + out.output);
    }
    report_.Add(kScale, {"  of which: vtpmctl --json list (no table formatting), median", Us(Med(json_lists)), "", "",
                         "", Verdict::kNone});
    report_.Add(kScale, {"  of which: the store's List() alone (in-process, daemon stopped)", Us(store_list_), "", "",
                         "", Verdict::kNone});
    uint64_t bytes = 0;
    for (const auto& e : std::filesystem::directory_iterator(daemon_->state_dir()))
      if (e.is_regular_file() && e.path().filename().string().rfind("vtpm.db", 0) == 0) bytes += e.file_size();
    report_.Add(kScale, {"store bytes per instance (vtpm.db + WAL) / " + n, FormatNumber(double(bytes) / double(registered_)),
                         "", "", "", Verdict::kNone});
    return Status::Ok();
  }

  // The first kSequentialAttaches guests one after another (a quiet host:
  // their first command shows worker start-up); the rest attach in a row
  // and get their first command together.
  Status AttachLoadGuests() {
    constexpr size_t kSequentialAttaches = 8;
    std::vector<double> creates, connects, firsts;
    for (size_t i = 0; i < load_uuids_.size(); ++i) {
      const bool alone = i < kSequentialAttaches;
      ASSIGN_OR_RETURN(AttachTimes t, Attach(kLoadDomidBase + uint32_t(i), load_uuids_[i], alone));
      creates.push_back(t.create);
      connects.push_back(t.init_to_connected);
      if (alone) firsts.push_back(t.first_command);
    }
    const auto t0 = Clock::now();
    const size_t together = guests_.size() - std::min(guests_.size(), size_t(1) + kSequentialAttaches);
    RETURN_IF_ERROR(FirstCommandsTogether(guests_.size() - together));
    const double storm = Seconds(Clock::now() - t0);
    const std::string m = " (median of " + std::to_string(creates.size()) + ")";
    report_.Add(kLifecycle, {"xl create: backend dir written to backend InitWait (toolstack wall)" + m,
                             Us(Med(creates)), "", "", "", Verdict::kNone});
    report_.Add(kLifecycle, {"frontend Initialised to backend Connected" + m, Us(Med(connects)), "", "", "",
                             Verdict::kNone});
    report_.Add(kLifecycle, {"first command after attach of a registered instance (worker start + TPM_Startup + "
                             "command; median of " + std::to_string(firsts.size()) + ")",
                             Us(Med(firsts)), "", "", "", Verdict::kNone});
    if (together > 0)
      report_.Add(kLifecycle, {std::to_string(together) + " more guests attached, first commands sent together: "
                               "all answered after",
                               Us(storm), "", "", "", Verdict::kNone});
    return Status::Ok();
  }

  Status MeasureLoad() {
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
      report_.Add(kLoad, {std::to_string(count) + " guests, closed loop: aggregate commands/s (p50 / p99 " +
                              Us(Quantile(closed.latency, 0.5).value_or(0)) + " / " +
                              Us(Quantile(closed.latency, 0.99).value_or(0)) + ")",
                          FormatNumber(double(closed.answered) / closed.seconds), "", "", "", Verdict::kNone});
    }
    return Status::Ok();
  }

  static Status LoadErrors(const LoadResult& r) {
    if (r.answered == 0) return Status(Code::kInternal, "no command answered");
    if (r.errors) return Status(Code::kTpmError, std::to_string(r.errors) + " failed commands, first: " + r.first_error);
    return Status::Ok();
  }

  Status MeasureMemory() {
    const pid_t daemon = daemon_->pid();
    ASSIGN_OR_RETURN(uint64_t rss, RssKib(daemon));
    report_.Add(kMemory, {"daemon RSS with " + std::to_string(guests_.size()) + " attached guests", FormatKib(double(rss)),
                          "", "", "", Verdict::kNone});
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

  Options o_;
  Report report_;
  std::vector<std::string> errors_, skipped_;
  std::set<std::string> judged_;
  std::unique_ptr<sim::SimHost> host_;
  std::optional<sim::XsClient> xs_;
  std::unique_ptr<sim::Toolstack> ts_;
  std::unique_ptr<testing::Swtpm> swtpm2_;
  std::unique_ptr<sim::DaemonProcess> daemon_;
  std::unique_ptr<Swtpm12> swtpm12_;
  double swtpm12_start_ = 0;
  std::vector<std::unique_ptr<BenchGuest>> guests_;
  std::string shm_dir_, first_uuid_;
  std::vector<std::string> load_uuids_;
  size_t registered_ = 0;
  double store_list_ = 0;
};

// SIGINT/SIGTERM: the destructors that stop the simulated host will not run,
// so SIGKILL this process's children (xenstored, swtpm, the daemon, tcsd;
// workers exit when the daemon's socket closes) and exit.
void StartSignalThread() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int sig = 0;
    sigwait(&set, &sig);
    std::cerr << "vtpm-bench: " << strsignal(sig) << ": stopping the simulated host\n";
    for (const char* comm : {"vtpmmgrd", "swtpm", "xenstored", "tcsd"})
      for (pid_t p : ChildrenNamed(::getpid(), comm)) ::kill(p, SIGKILL);
    ::_exit(128 + sig);
  }).detach();
}

std::vector<uint32_t> ParseList(const std::string& s) {
  std::vector<uint32_t> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(uint32_t(std::stoul(item)));
  return out;
}

}  // namespace
}  // namespace vtpm::bench

int main(int argc, char** argv) {
  using namespace vtpm::bench;
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--smoke") {
      o.smoke = true;
      o.instances = 300;
      o.guests = {2, 4, 8};
      o.commands = 300;
      o.load_seconds = 2;
      o.nv_writes = 20;
      o.samples = 2;
    } else if (a == "--instances") o.instances = uint32_t(std::stoul(value()));
    else if (a == "--guests") o.guests = ParseList(value());
    else if (a == "--commands") o.commands = std::stoi(value());
    else if (a == "--load-seconds") o.load_seconds = std::stod(value());
    else if (a == "--output") o.output = value();
    else {
      std::cerr << "usage: vtpm-bench [--smoke] [--instances N] [--guests 8,64,256] [--commands N] "
                   "[--load-seconds S] [--output FILE]\n";
      return 2;
    }
  }
  if (o.guests.empty() || o.instances < *std::max_element(o.guests.begin(), o.guests.end())) {
    std::cerr << "vtpm-bench: --instances must be at least the largest guest count\n";
    return 2;
  }
  if (::geteuid() != 0) {
    std::cerr << "vtpm-bench: needs root (xenstored, tcsd, worker sandbox)\n";
    return 2;
  }
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  StartSignalThread();
  spdlog::set_level(spdlog::level::warn);
  ::setenv("TSS2_LOG", "all+none", 1);
  return Bench(std::move(o)).Run();
}
