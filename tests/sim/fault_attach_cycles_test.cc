// 500 xl vtpm-attach / vtpm-detach cycles over 32 guests (four toolstack
// threads, one command per attach) against the real daemon with the scripted
// engine: after warm-up and at the end, with no device attached, the daemon
// holds the same fds, mappings (no grant page left mapped), children and
// xenstore watches, and its RSS has not grown beyond kRssSlackKb. A smaller
// libtpms run checks that workers go away with their domains.
#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "backend_test_util.h"
#include "fault_util.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kDomains = 32;
constexpr int kThreads = 4;
constexpr int kCycles = 500;
constexpr int kWarmupCycles = 64;
constexpr long kRssSlackKb = 256;  // ~0.6 KiB per cycle after warm-up

// Live xenstore watches, from xenstored's trace (CREATE/DESTROY watch lines).
long LiveWatches(const std::string& trace) {
  std::ifstream in(trace);
  long n = 0;
  for (std::string l; std::getline(in, l);) {
    if (l.rfind("CREATE watch ", 0) == 0) ++n;
    else if (l.rfind("DESTROY watch ", 0) == 0) --n;
  }
  return n;
}

class AttachCyclesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SimHostOptions o;
    o.xenstored_trace = true;
    o.keep_dir = std::getenv("VTPM_FAULT_KEEP_DIR") != nullptr;  // post-mortem
    auto h = SimHost::Start(o);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    host_ = std::move(h).value();
    auto c = XsClient::Open();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    xs_.emplace(std::move(c).value());
    ASSERT_TRUE(Toolstack(*xs_, host_->sim_dir()).InitHost().ok());
  }
  void TearDown() override {
    if (daemon_ && HasFailure())
      std::cerr << "---- daemon log (tail; host dir " << host_->dir() << ") ----\n" << Tail(daemon_->Log());
    daemon_.reset();
    xs_.reset();
    host_.reset();
  }
  static std::string Tail(const std::string& s) { return s.size() > 20000 ? s.substr(s.size() - 20000) : s; }
  void StartDaemon(DaemonOptions o) {
    o.log_level = "info";  // 500 cycles of debug lines only slow it down
    daemon_ = std::make_unique<DaemonProcess>(*host_, o);
    Status st = daemon_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  std::string trace() const { return host_->dir() + "/xenstored/trace.log"; }
  ProcSnapshot Snap() { return Snapshot(daemon_->pid(), host_->sim_dir()); }

  // One attach, connect, command, detach of `domid`; false on a fault (reported).
  static bool Cycle(Toolstack& ts, uint32_t domid, const std::string& uuid, bool tpm) {
    auto a = ts.Attach(domid, {std::nullopt, uuid});
    if (!a.status.ok()) {
      ADD_FAILURE() << "attach " << domid << ": " << a.Report();
      return false;
    }
    {
      FrontendOptions fo;
      fo.domid = domid;
      fo.devid = a.devid;
      auto g = GuestFrontend::Create(fo);
      if (!g.ok() || !(*g)->Connect().ok()) {
        ADD_FAILURE() << "connect " << domid << "/" << a.devid;
        return false;
      }
      auto r = (*g)->Transmit(tpm ? tpm12::PcrRead(0) : TestCommand(0x65), 30s);
      if (!r.ok() || ReturnCode(*r) != 0) {
        ADD_FAILURE() << "command on " << domid << "/" << a.devid << ": "
                      << (r.ok() ? "TPM error" : r.status().ToString());
        return false;
      }
      auto d = ts.Detach(domid, a.devid);
      if (!d.status.ok()) {
        ADD_FAILURE() << "detach " << domid << "/" << a.devid << ": " << d.Report();
        return false;
      }
    }  // the guest's ring page and port go with it
    return true;
  }

  std::unique_ptr<SimHost> host_;
  std::optional<XsClient> xs_;
  std::unique_ptr<DaemonProcess> daemon_;
};

TEST_F(AttachCyclesTest, FiveHundredAttachDetachCyclesLeakNothing) {
  StartDaemon({});
  for (int d = 0; d < kDomains; ++d) {
    auto r = Toolstack(*xs_, host_->sim_dir()).Create(uint32_t(120 + d), {});
    ASSERT_TRUE(r.status.ok()) << r.Report();
  }
  {  // The probes see what they look for: an attached guest's page is mapped.
    Toolstack ts(*xs_, host_->sim_dir());
    auto a = ts.Attach(120, {std::nullopt, FaultUuid(0xfa1d0000, 0)});
    ASSERT_TRUE(a.status.ok()) << a.Report();
    FrontendOptions fo;
    fo.domid = 120;
    fo.devid = a.devid;
    auto g = GuestFrontend::Create(fo);
    ASSERT_TRUE(g.ok() && (*g)->Connect().ok());
    ProcSnapshot attached = Snap();
    std::cout << "one guest attached: " << attached << ", xenstore watches " << LiveWatches(trace()) << "\n";
    EXPECT_EQ(attached.sim_maps, 1u) << "the grant-mapping probe does not see the guest's page";
    ASSERT_TRUE(ts.Detach(120, a.devid).status.ok());
  }
  std::atomic<int> done{0};
  std::atomic<bool> failed{false};
  // Cycles [from, to) spread over the threads; thread t owns domains t, t+4, ...
  auto run = [&](int from, int to) {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        auto c = XsClient::Open();
        if (!c.ok()) {
          ADD_FAILURE() << c.status().ToString();
          return;
        }
        Toolstack ts(*c, host_->sim_dir());
        for (int i = from + t; i < to && !failed; i += kThreads) {
          int d = (i / kThreads) % (kDomains / kThreads) * kThreads + t;
          if (!Cycle(ts, uint32_t(120 + d), FaultUuid(0xfa1d0000, uint32_t(d)), false)) failed = true;
          ++done;
        }
      });
    for (auto& t : threads) t.join();
  };
  auto t0 = Clock::now();
  run(0, kWarmupCycles);
  ASSERT_FALSE(failed.load());
  std::this_thread::sleep_for(200ms);
  ProcSnapshot warm = Snap();
  long warm_watches = LiveWatches(trace());
  run(kWarmupCycles, kCycles);
  ASSERT_FALSE(failed.load());
  std::this_thread::sleep_for(200ms);
  ProcSnapshot end = Snap();
  long end_watches = LiveWatches(trace());
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  std::cout << done << " cycles in " << ms << " ms\nafter warm-up: " << warm << ", xenstore watches " << warm_watches
            << "\nat the end:    " << end << ", xenstore watches " << end_watches << "\n";
  EXPECT_EQ(done.load(), kCycles);
  EXPECT_LE(end.fds, warm.fds) << "fd leak";
  EXPECT_EQ(end.sim_maps, 0u) << "grant pages still mapped";
  EXPECT_LE(end.maps, warm.maps) << "mapping leak";
  EXPECT_EQ(end.children, 0u);
  EXPECT_EQ(end_watches, warm_watches) << "xenstore watch leak";
  EXPECT_LE(end.rss_kb - warm.rss_kb, kRssSlackKb) << "RSS grew over " << kCycles - kWarmupCycles << " cycles";
}

// The libtpms engine: a worker per attached instance, kept while its domain
// lives (design §6), gone with it.
TEST_F(AttachCyclesTest, WorkersGoAwayWithTheirDomains) {
  auto dir = host_->dir() + "/host-tpm";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  auto swtpm = vtpm::testing::Swtpm::Start(dir);
  ASSERT_TRUE(swtpm.ok()) << swtpm.status().ToString();
  DaemonOptions o;
  o.extra_config = "[engine]\nkind = \"libtpms\"\nworker_path = \"" VTPM_WORKER_BIN "\"\n[host_tpm]\ntcti = \"" +
                   swtpm->tcti() + "\"\n";
  StartDaemon(o);
  ProcSnapshot before = Snap();
  long before_watches = LiveWatches(trace());
  Toolstack ts(*xs_, host_->sim_dir());
  constexpr int kTpmDomains = 4, kRounds = 3;
  for (int d = 0; d < kTpmDomains; ++d) ASSERT_TRUE(ts.Create(uint32_t(160 + d), {}).status.ok());
  for (int round = 0; round < kRounds; ++round)
    for (int d = 0; d < kTpmDomains; ++d)
      ASSERT_TRUE(Cycle(ts, uint32_t(160 + d), FaultUuid(0xfa1e0000, uint32_t(d)), true));
  // A detach replaces the worker that held the page; the replaced one exits
  // and is reaped asynchronously, so the count settles within a moment.
  auto settle = Clock::now() + 5s;
  while (Snap().children > size_t(kTpmDomains) && Clock::now() < settle) std::this_thread::sleep_for(20ms);
  ProcSnapshot alive = Snap();
  EXPECT_LE(alive.children, size_t(kTpmDomains)) << "more workers than instances, 5 s after the last cycle";
  for (int d = 0; d < kTpmDomains; ++d) ASSERT_TRUE(ts.Destroy(uint32_t(160 + d)).status.ok());
  auto until = Clock::now() + 10s;
  while (Snap().children > 0 && Clock::now() < until) std::this_thread::sleep_for(20ms);
  std::this_thread::sleep_for(200ms);
  ProcSnapshot after = Snap();
  std::cout << "before: " << before << "\nwith " << kTpmDomains << " domains alive: " << alive
            << "\nafter destroy: " << after << "\n";
  EXPECT_EQ(after.children, 0u) << "workers outlive their domains";
  EXPECT_LE(after.fds, before.fds) << "fd leak";
  EXPECT_EQ(after.sim_maps, 0u);
  EXPECT_EQ(LiveWatches(trace()), before_watches) << "xenstore watch leak";
}

}  // namespace
}  // namespace vtpm::sim
