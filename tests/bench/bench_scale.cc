// Bench phases about many registered instances: BulkInsert stops the daemon,
// times worker starts on the first guest's manufactured TPM, and fills the
// store (through the store API) to o_.instances, registering load_uuids_ for
// the load guests; MeasureScale restarts the daemon on that store and times
// READY and vtpmctl list. Needs SetUp and AttachFirstGuest.
#include <algorithm>
#include <atomic>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <thread>

#include "bench/bench.h"
#include "bench/expect_success.h"
#include "bench/inprocess.h"
#include "bench/load.h"
#include "bench/nv12.h"
#include "common/child_process.h"
#include "common/uuid.h"
#include "store/open_store.h"

namespace vtpm::bench {

Status Bench::BulkInsert() {
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
  Note(kScale,
       "bulk insert of " + std::to_string(uuids.size()) +
           " copies of one manufactured instance (store API, 8 threads, group commit)",
       Us(Seconds(Clock::now() - t0)));
  return Status::Ok();
}

Status Bench::MeasureScale() {
  const std::string n = std::to_string(registered_);
  auto t0 = Clock::now();
  RETURN_IF_ERROR(daemon_->Start());
  const double ready = Seconds(Clock::now() - t0);
  Judge(kScale, "ready", {"daemon start to READY with " + n + " instances", Us(ready), "", "", "<= 1 s",
                          Check(ready <= 1.0)});
  std::vector<double> lists;
  for (int i = 0; i < o_.samples; ++i) {
    t0 = Clock::now();
    ASSIGN_OR_RETURN(auto out, Ctl({"list"}));
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
    ASSIGN_OR_RETURN(auto out, Ctl({"--json", "list"}));
    json_lists.push_back(Seconds(Clock::now() - t0));
    if (out.exit_code != 0) return Status(Code::kInternal, "vtpmctl --json list failed: " + out.output);
  }
  Note(kScale, "  of which: vtpmctl --json list (no table formatting), median", Us(Med(json_lists)));
  Note(kScale, "  of which: the store's List() alone (in-process, daemon stopped)", Us(store_list_));
  RETURN_IF_ERROR(MeasureCommandsDuringList());
  uint64_t bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(daemon_->state_dir()))
    if (e.is_regular_file() && e.path().filename().string().rfind("vtpm.db", 0) == 0) bytes += e.file_size();
  Note(kScale, "store bytes per instance (vtpm.db + WAL) / " + n, FormatNumber(double(bytes) / double(registered_)));
  return Status::Ok();
}

// Issue 16, item 4: a guest's round trips, idle and while vtpmctl list runs
// back to back, as median / longest: the first guest's TPM_PCRRead (kept in
// no file) and TPM_Extend (the volatile copy), and the NV guest's
// TPM_NV_WriteValue (a durable store commit; at most kNvWrites of them, for
// libtpms' limit on writes without authorization).
Status Bench::MeasureCommandsDuringList() {
  ASSIGN_OR_RETURN(auto nv_guest, NvGuest(kNvListDomid));
  constexpr size_t kNvWrites = 60;
  BenchGuest& g = *guests_.front();
  uint32_t n = 0;
  Bytes data(kNvBytes);
  constexpr int kKinds = 3;
  auto round_trip = [&](int kind) -> Result<double> {
    const char* names[kKinds] = {"TPM_PCRRead", "TPM_Extend", "TPM_NV_WriteValue"};
    std::fill(data.begin(), data.end(), uint8_t(n));
    const Bytes cmd = kind == 0 ? PcrReadCommand(n) : kind == 1 ? ExtendCommand(n) : NvWriteValue(kNvIndex, 0, data);
    ++n;
    const auto t0 = Clock::now();
    ASSIGN_OR_RETURN(Bytes rsp, kind == 2 ? nv_guest->Transmit(cmd, std::chrono::seconds(60)) : g.Transact(cmd));
    RETURN_IF_ERROR(ExpectSuccess(rsp, names[kind]));
    return Seconds(Clock::now() - t0);
  };
  std::vector<double> idle[kKinds], during[kKinds];
  // Every tenth command is an NV write, but no more often than every 50 ms
  // while list runs, so that the writes spread over the lists.
  auto last_nv = Clock::now() - std::chrono::seconds(1);
  auto kind_of = [&](int i, const std::vector<double>* done, std::chrono::milliseconds spacing) {
    if (i % 10 == 9 && done[2].size() < kNvWrites / 2 && Clock::now() - last_nv >= spacing) {
      last_nv = Clock::now();
      return 2;
    }
    return i % 2;
  };
  for (int i = 0; i < 300; ++i) {
    const int k = kind_of(i, idle, std::chrono::milliseconds(0));
    ASSIGN_OR_RETURN(double s, round_trip(k));
    idle[k].push_back(s);
  }
  std::atomic<bool> listing{true};
  Status lister_status;
  std::thread lister([&] {
    for (int i = 0; i < o_.samples && lister_status.ok(); ++i) {
      auto out = Ctl({"list"});
      if (!out.ok()) lister_status = out.status();
      else if (out->exit_code != 0) lister_status = Status(Code::kInternal, "vtpmctl list: " + out->output);
    }
    listing = false;
  });
  Status guest_status;
  for (int i = 0; listing && guest_status.ok(); ++i) {
    const int k = kind_of(i, during, std::chrono::milliseconds(50));
    auto s = round_trip(k);
    if (s.ok()) during[k].push_back(*s);
    else guest_status = s.status();
  }
  lister.join();
  RETURN_IF_ERROR(lister_status);
  RETURN_IF_ERROR(guest_status);
  auto longest = [](const std::vector<double>& v) { return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()); };
  const char* names[kKinds] = {"TPM_PCRRead", "TPM_Extend", "TPM_NV_WriteValue"};
  for (int k = 0; k < kKinds; ++k) {
    Note(kScale,
         std::string("a guest's ") + names[k] + " round trip while vtpmctl list runs back to back (" +
             std::to_string(during[k].size()) + " commands): median / longest",
         Us(Med(during[k])) + " / " + Us(longest(during[k])));
    Note(kScale,
         "  the same with the control socket idle (" + std::to_string(idle[k].size()) + " commands): median / longest",
         Us(Med(idle[k])) + " / " + Us(longest(idle[k])));
  }
  nv_guest.reset();
  return ts_->Destroy(kNvListDomid).status;
}

}  // namespace vtpm::bench
