// Bench: one run of vtpm-bench on the simulated Xen host. Run() (the
// driver, vtpm_bench.cc) calls the phases in a fixed order and prints the
// report. Each phase adds its rows to the report and returns an error only
// when the benchmark itself broke (a missed target is a row, not an error);
// after an error the remaining phases are skipped. A phase relies on the
// state the earlier ones left (host, daemon, peers, attached guests).
//
// The phases live in files named after what they measure:
//   bench_setup.cc        simulated host, daemon and peers; attaching guests
//   bench_commands.cc     manufacture, per-command figures, durable NV write
//   bench_scale.cc        bulk insert into the store, registered instances
//   bench_load_memory.cc  load on many guests, memory
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "bench/bench_guest.h"
#include "bench/bench_report.h"
#include "bench/swtpm12.h"
#include "guest/frontend.h"
#include "common/status.h"
#include "harness/daemon_process.h"
#include "host_tpm_swtpm.h"
#include "simhost/run_capture.h"
#include "simhost/sim_host.h"
#include "simhost/xs_client.h"
#include "toolstack/toolstack.h"

namespace vtpm::bench {

// The NV phases' guests and their WRITEDEFINE index.
inline constexpr uint32_t kNvDomid = 2, kNvListDomid = 3;
inline constexpr uint32_t kNvIndex = 0x00011101, kNvBytes = 256;

// Report sections, in print order.
inline constexpr char kPerCommand[] = "Per command, one guest, closed loop";
inline constexpr char kLoad[] = "Load: guests x 20 commands/s each (open loop), and closed loop";
inline constexpr char kDurable[] = "State-changing command vs one fsync'd write (same filesystem)";
inline constexpr char kLifecycle[] = "Attach, worker start, manufacture";
inline constexpr char kMemory[] = "Memory";
inline constexpr char kScale[] = "Registered instances";

// A TPM 1.2 takes at most 64 NV writes without authorization
// (TPM_MAX_NV_WRITE_NOOWNER, counted in its permanent data until an owner
// clears it), then answers TPM_MAXNVWRITES.
inline constexpr int kNoOwnerNvWrites = 60;

struct Options {
  bool smoke = false;
  uint32_t instances = 20000;
  std::vector<uint32_t> guests{8, 64, 256};
  int commands = 15000;      // per command kind and peer (CPU per command, round trip)
  double load_seconds = 10;  // per open-loop level; closed loop gets half
  int nv_writes = kNoOwnerNvWrites;
  int samples = 5;           // manufactures, worker starts, vtpmctl lists
  std::string data_path = "worker";  // the daemon's [xen] data_path (its default)
  std::string output;
};

// Median of `v`, 0 when empty.
inline double Med(const std::vector<double>& v) { return Median(v).value_or(0); }
inline std::string Us(double s) { return FormatSeconds(s); }

class Bench {
 public:
  // Declares the report's sections; starts nothing.
  explicit Bench(Options o);
  // Stops guests, daemon, peers and the simulated host, in that order.
  ~Bench();
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  // Runs every phase, prints the report (and writes it to --output); 0 when
  // no phase failed.
  int Run();

 private:
  // vtpm_bench.cc: the driver.
  // Runs one phase unless an earlier one failed; a failure is recorded.
  void Phase(const std::string& name, const std::function<Status()>& body);
  // Adds a row that carries one of the targets (`key` names it).
  void Judge(const std::string& section, const std::string& key, Row row);
  // Adds a row with our figure alone: no peer, no target.
  void Note(const std::string& section, std::string what, std::string ours);
  // Every target without a figure gets a NOT MEASURED row saying why.
  void MarkUnjudged();
  // vtpmctl `args` against the running daemon's control socket (60 s at most).
  Result<sim::ToolOutput> Ctl(const std::vector<std::string>& args) const;

  // bench_setup.cc
  Status SetUp();
  struct AttachTimes {
    double create = 0, init_to_connected = 0, first_command = 0;
  };
  // xl create + connect + first command; adds the guest to guests_.
  Result<AttachTimes> Attach(uint32_t domid, const std::string& uuid, bool first_command = true);
  // Sends every guest in [from, guests_.size()) its first command at once
  // (their workers start in parallel) and waits for all answers.
  Status FirstCommandsTogether(size_t from);
  Status AttachFirstGuest();
  Status AttachLoadGuests();

  // bench_commands.cc
  Status MeasureManufacture();
  Status MeasureCommands();
  Status MeasureNv();
  // A new domain `domid` whose guest owns its TPM and defined kNvIndex
  // (WRITEDEFINE). libtpms answers TPM_MAXNVWRITES after 64 writes without
  // authorization, so each phase that writes takes a guest of its own.
  Result<std::unique_ptr<sim::GuestFrontend>> NvGuest(uint32_t domid);

  // bench_scale.cc
  Status BulkInsert();
  Status MeasureScale();
  Status MeasureCommandsDuringList();

  // bench_load_memory.cc
  Status MeasureLoad();
  Status MeasureScaling();
  Status MeasureMemory();

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
  std::vector<std::string> load_uuids_;  // the guests BulkInsert registered for AttachLoadGuests
  size_t registered_ = 0;
  double store_list_ = 0;
};

}  // namespace vtpm::bench
