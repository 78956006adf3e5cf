// vtpm-bench: the project's figures against its peers, in one run on the
// simulated Xen host (real xenstored + shims, the real vtpmmgrd with the
// libtpms engine, swtpm as the host TPM 2.0). Figures are printed, never
// asserted (design §7): a missed target is shown as MISSED; the exit status
// is non-zero only when the benchmark itself failed (a phase errored or a
// TPM command was not answered with TPM_SUCCESS).
//
//   vtpm-bench [--smoke] [--instances N] [--guests 8,64,256] [--commands N]
//              [--load-seconds S] [--data-path daemon|worker] [--output FILE]
//   --data-path  the daemon's [xen] data_path (vtpmmgrd.conf(5)); default worker
//
// Peers: swtpm (`swtpm socket`, TPM 1.2, one process per VM, commands over
// its unix socket) and libtpms called in this process (the floor).
//
// This file is the driver: options, the signal thread, the order of the
// phases and the report's frame; the phases are in the files bench.h names.
#include <signal.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "bench/bench.h"
#include "bench/proc_stats.h"
#include "common/log.h"

namespace vtpm::bench {
namespace {

std::string Tail(const std::string& s, int lines) {
  size_t pos = s.size();
  for (int i = 0; i <= lines && pos != std::string::npos && pos > 0; ++i) pos = s.rfind('\n', pos - 1);
  return pos == std::string::npos ? s : s.substr(pos + 1);
}

std::string Now() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return buf;
}

}  // namespace

Bench::Bench(Options o) : o_(std::move(o)) {
  for (const char* s : {kPerCommand, kLoad, kDurable, kLifecycle, kMemory, kScale}) report_.Section(s);
}

Bench::~Bench() {
  guests_.clear();
  daemon_.reset();
  swtpm12_.reset();
  ts_.reset();
  xs_.reset();
  host_.reset();
  if (!shm_dir_.empty()) std::filesystem::remove_all(shm_dir_);
}

int Bench::Run() {
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
  out << "vtpm-bench" << (o_.smoke ? " --smoke" : "") << (o_.data_path != "worker" ? " --data-path " + o_.data_path : "")
      << ": " << Now() << ", " << u.sysname << " " << u.release
      << ", " << std::thread::hardware_concurrency() << " CPUs, load average " << load_before << " at start, "
      << LoadAverage() << " at end; " << FormatNumber(Seconds(Clock::now() - start), 0) << " s.\n";
  out << report_.Render();
  for (const auto& e : errors_) out << "\nERROR: " << e << "\n";
  std::cout << out.str() << std::flush;
  if (!o_.output.empty()) std::ofstream(o_.output) << out.str();
  return errors_.empty() ? 0 : 1;
}

void Bench::Phase(const std::string& name, const std::function<Status()>& body) {
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

void Bench::Judge(const std::string& section, const std::string& key, Row row) {
  judged_.insert(key);
  report_.Add(section, std::move(row));
}

void Bench::Note(const std::string& section, std::string what, std::string ours) {
  report_.Add(section, {std::move(what), std::move(ours), "", "", "", Verdict::kNone});
}

void Bench::MarkUnjudged() {
  const std::string why = errors_.empty() ? "not part of this run" : "the benchmark failed before it (see ERROR)";
  struct Target {
    const char *section, *key, *what, *target;
  };
  for (const Target& t : {Target{kPerCommand, "cpu TPM_PCRRead", "CPU per TPM_PCRRead", "<= 1.0x swtpm"},
                          Target{kPerCommand, "cpu TPM_Extend", "CPU per TPM_Extend", "<= 1.0x swtpm"},
                          Target{kLoad, "p99", "256 guests x 20/s: p99 service time", "p99 <= 2 ms"},
                          Target{kDurable, "nv", "TPM_NV_WriteValue round trip", "<= 2x the fsync'd write"},
                          Target{kMemory, "rss", "one worker RSS", "<= swtpm's"},
                          Target{kScale, "ready", "daemon start to READY with 20,000 instances", "<= 1 s"},
                          Target{kScale, "list", "vtpmctl list with 20,000 instances", "<= 300 ms"}})
    if (!judged_.count(t.key)) report_.NotMeasured(t.section, t.what, why, t.target);
}

Result<sim::ToolOutput> Bench::Ctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{VTPM_CTL_PATH, "--socket", daemon_->runtime_dir() + "/control.sock"};
  argv.insert(argv.end(), args.begin(), args.end());
  return sim::RunCapture(argv, {}, std::chrono::seconds(60));
}

namespace {

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
    else if (a == "--data-path") {
      o.data_path = value();
      if (o.data_path != "daemon" && o.data_path != "worker") {
        std::cerr << "--data-path is daemon or worker, not " << o.data_path << "\n";
        return 2;
      }
    } else {
      std::cerr << "usage: vtpm-bench [--smoke] [--instances N] [--guests 8,64,256] [--commands N] "
                   "[--load-seconds S] [--data-path daemon|worker] [--output FILE]\n";
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
