// [xen] data_path = "worker" (design §3 "The worker serves its guest") on the
// simulated host, with the real daemon, real workers running libtpms and the
// grant/event-channel shim: the worker maps its guest's page and the daemon
// does not; requests the worker refuses, CANCEL, a worker killed between
// commands, and a daemon command crossing a guest command.
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include <cstdint>
// clang-format off: xen/xen.h defines domid_t, which xen/sys/evtchn.h uses
#include <xen/xen.h>
#include <xen/sys/evtchn.h>
// clang-format on

#include <atomic>
#include <chrono>
#include <map>
#include <thread>

#include "fault_util.h"
#include "tpm12_guest_test.h"
#include "tpm/worker_flight.h"
#include "worker_test_util.h"
#include "xen_sim.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;
const std::string kUuid = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

class WorkerDataPathTest : public Tpm12GuestTest {
 protected:
  std::string DaemonConfig() const override { return "[xen]\ndata_path = \"worker\"\n"; }
  // xl create of domain `domid` with kUuid, its frontend connected.
  GuestFrontend& Attached(uint32_t domid, FrontendMode mode = FrontendMode::kLinux) {
    CreateDomain(domid, kUuid);
    GuestFrontend& g = Guest(domid, 0, mode);
    Status st = g.Connect();
    EXPECT_TRUE(st.ok()) << st.ToString();
    return g;
  }
  // SIGKILLs worker `victim` and waits for the daemon's one worker to be
  // another process: its pid, or -1.
  pid_t KillAndAwaitReplacement(pid_t victim) {
    if (victim <= 0 || kill(victim, SIGKILL) != 0) return -1;
    for (int i = 0; i < 500; ++i) {
      std::this_thread::sleep_for(20ms);
      auto w = ChildPids(daemon().pid());
      if (w.size() == 1 && w[0] != victim) return w[0];
    }
    return -1;
  }
  // PCR `pcr` extended once with a digest of `fill` bytes, which is
  // returned: the worker learns what the daemon saved (its volatile state
  // settles).
  tpm12::PcrValue ExtendOnce(GuestFrontend& g, uint32_t pcr, uint8_t fill) {
    tpm12::PcrValue d;
    d.fill(fill);
    Run(g, tpm12::PcrExtend(pcr, d));
    return d;
  }
  // Sends `cmd` (one that changes persistent state, so it needs a commit)
  // from a thread of its own, which the caller joins, and checks it is
  // still unanswered 500 ms later: no daemon is there to commit it.
  std::thread WaitsForTheDaemon(GuestFrontend& g, Bytes cmd) {
    auto answered = std::make_shared<std::atomic<bool>>(false);
    std::thread t([this, &g, cmd, answered] {
      Run(g, cmd);
      *answered = true;
    });
    std::this_thread::sleep_for(500ms);
    EXPECT_FALSE(answered->load()) << "a command that needs a commit was answered without the daemon";
    return t;
  }
  // Waits up to 5 s for the daemon's log to hold `text`.
  bool LogShows(const std::string& text) {
    for (int i = 0; i < 250; ++i) {
      if (daemon().Log().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  // The one worker of the daemon (one attached guest).
  pid_t OnlyWorker() {
    std::vector<pid_t> w = ChildPids(daemon().pid());
    EXPECT_EQ(w.size(), 1u);
    return w.empty() ? -1 : w[0];
  }
};

TEST_F(WorkerDataPathTest, TheWorkerMapsItsGuestsPageAndTheDaemonNone) {
  GuestFrontend& g = Attached(5);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(g.first_response().ok()) << g.first_response().status().ToString();
  tpm12::PcrValue d;
  d.fill(0x5c);
  Run(g, tpm12::PcrExtend(10, d));
  EXPECT_EQ(Pcr(g, 10), tpm12::ExtendedPcr(tpm12::PcrValue{}, d));

  const std::string page = host().sim_dir() + "/grants/5/" + std::to_string(g.ring_ref());
  const ProcSnapshot daemon_maps = Snapshot(daemon().pid(), host().sim_dir());
  EXPECT_EQ(daemon_maps.sim_maps, 0u) << "the daemon maps a guest page: " << daemon_maps;
  const pid_t worker = OnlyWorker();
  ASSERT_GT(worker, 0);
  size_t worker_pages = 0;
  for (const std::string& l : ReadLines("/proc/" + std::to_string(worker) + "/maps"))
    if (l.find(page) != std::string::npos) ++worker_pages;
  EXPECT_EQ(worker_pages, 1u) << "the worker should map " << page << " once";
  auto st = ProcStatus(worker);
  EXPECT_EQ(st["Seccomp"], "2");
  EXPECT_EQ(st["NoNewPrivs"], "1");
  EXPECT_EQ(st["CapEff"], "0000000000000000");
  EXPECT_NE(st["Uid"].substr(0, 2), "0\t") << "the worker kept uid 0";
}

// A command that changes no persistent state never reaches the daemon
// (design §3 "Volatile state in the flight record"): with the daemon
// stopped, reads and extends are answered, the extends kept in the flight
// record; TPM_SaveState (a blob) waits for the daemon's commit and is
// answered once it runs again.
TEST_F(WorkerDataPathTest, CommandsThatChangeNoPersistentStateAreAnsweredWhileTheDaemonIsStopped) {
  GuestFrontend& g = Attached(10);
  ASSERT_FALSE(HasFailure());
  tpm12::PcrValue d;
  d.fill(0x77);
  Run(g, tpm12::PcrExtend(13, d));  // through the daemon, which grants the worker its slot
  auto want = tpm12::ExtendedPcr(tpm12::PcrValue{}, d);
  ASSERT_EQ(Pcr(g, 13), want);
  ASSERT_EQ(kill(daemon().pid(), SIGSTOP), 0);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(Pcr(g, 13), want) << "read " << i << " with the daemon stopped";
    Run(g, tpm12::PcrExtend(13, d));
    want = tpm12::ExtendedPcr(want, d);
  }
  EXPECT_EQ(Pcr(g, 13), want);
  std::thread save = WaitsForTheDaemon(g, tpm12::SaveState());
  ASSERT_EQ(kill(daemon().pid(), SIGCONT), 0);
  save.join();
  EXPECT_EQ(Pcr(g, 13), want);
  Run(g, tpm12::PcrExtend(13, d));
  EXPECT_EQ(Pcr(g, 13), tpm12::ExtendedPcr(want, d));
}

// design §2 "Workers outlive the daemon": the serving worker's socket,
// flight record and pidfd go to the fd store (the harness keeps one as
// systemd does). SIGKILL the daemon: the worker goes on answering reads and
// extends, a TPM_SaveState waits in it, and the next daemon takes the same
// process over, resumes the extends from its flight record and answers the
// TPM_SaveState.
TEST_F(WorkerDataPathTest, AWorkerOutlivesADaemonKilledAndTheNextDaemonTakesItOver) {
  GuestFrontend& g = Attached(11);
  ASSERT_FALSE(HasFailure());
  const tpm12::PcrValue d = ExtendOnce(g, 14, 0x4b);
  const auto once = tpm12::ExtendedPcr(tpm12::PcrValue{}, d);
  ASSERT_EQ(Pcr(g, 14), once);
  const pid_t worker = OnlyWorker();
  ASSERT_GT(worker, 0);
  EXPECT_EQ(daemon().fd_store().size(), 3u) << "the socket, the flight record and a pidfd";

  daemon().Kill();
  ASSERT_EQ(kill(worker, 0), 0) << "the worker died with the daemon";
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Pcr(g, 14), once) << "read " << i << " with no daemon";
  Run(g, tpm12::PcrExtend(14, d));
  const auto twice = tpm12::ExtendedPcr(once, d);
  EXPECT_EQ(Pcr(g, 14), twice) << "an extend with no daemon";
  std::thread save = WaitsForTheDaemon(g, tpm12::SaveState());

  ASSERT_TRUE(daemon().Start().ok()) << daemon().Log();
  save.join();
  EXPECT_EQ(Pcr(g, 14), twice);
  EXPECT_EQ(kill(worker, 0), 0);
  EXPECT_TRUE(LogShows("took over worker " + std::to_string(worker) + " of the previous daemon")) << daemon().Log();
  // It goes on as the instance's worker: more commands, and a third daemon
  // after a second kill, with an extend the worker kept meanwhile.
  Run(g, tpm12::PcrExtend(14, d));
  const auto thrice = tpm12::ExtendedPcr(twice, d);
  EXPECT_EQ(Pcr(g, 14), thrice);
  daemon().Kill();
  Run(g, tpm12::PcrExtend(14, d));
  const auto four = tpm12::ExtendedPcr(thrice, d);
  ASSERT_TRUE(daemon().Start().ok()) << daemon().Log();
  EXPECT_EQ(Pcr(g, 14), four);
  Run(g, tpm12::PcrExtend(14, d));
  EXPECT_EQ(Pcr(g, 14), tpm12::ExtendedPcr(four, d));
  EXPECT_EQ(kill(worker, 0), 0) << "the third daemon did not keep the worker";
  EXPECT_TRUE(LogShows("resuming from the volatile state the worker kept after command")) << daemon().Log();
}

// A worker that ends while no daemon runs leaves its flight record in the
// fd store: the next daemon resumes the extends the worker kept there.
// With the store emptied as well (a crash, then `systemctl stop`), the
// volatile state is gone: the TPM powers on without TPM_Startup and the
// guest gets TPM_INVALID_POSTINIT, not stale PCRs, until its domain restarts.
TEST_F(WorkerDataPathTest, AWorkerEndedWithTheDaemonGoneLeavesItsStateOrAnInvalidPostinit) {
  GuestFrontend& g = Attached(13);
  ASSERT_FALSE(HasFailure());
  const tpm12::PcrValue d = ExtendOnce(g, 16, 0x4d);
  auto want = tpm12::ExtendedPcr(tpm12::PcrValue{}, d);
  pid_t worker = OnlyWorker();
  ASSERT_GT(worker, 0);
  daemon().Kill();
  Run(g, tpm12::PcrExtend(16, d));  // kept in the flight record only
  want = tpm12::ExtendedPcr(want, d);
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  for (int i = 0; i < 250 && kill(worker, 0) == 0; ++i) std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(daemon().Start().ok()) << daemon().Log();
  EXPECT_EQ(Pcr(g, 16), want) << "the extend the ended worker kept was lost";
  EXPECT_TRUE(LogShows("resuming from the volatile state the worker kept after command")) << daemon().Log();

  worker = OnlyWorker();
  ASSERT_GT(worker, 0);
  Run(g, tpm12::PcrExtend(16, d));  // through the daemon: the new worker's slot is granted after it
  Run(g, tpm12::PcrExtend(16, d));
  daemon().Kill();
  Run(g, tpm12::PcrExtend(16, d));
  daemon().fd_store().Clear();  // systemctl stop after the crash
  for (int i = 0; i < 250 && kill(worker, 0) == 0; ++i) std::this_thread::sleep_for(20ms);
  ASSERT_NE(kill(worker, 0), 0) << "the worker outlived the emptied fd store";
  ASSERT_TRUE(daemon().Start().ok()) << daemon().Log();
  auto r = g.Transmit(tpm12::PcrRead(16), 30s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(tpm12::ResponseCode(*r), 0x26u) << "TPM_INVALID_POSTINIT, not the PCRs of an older copy";
  EXPECT_TRUE(LogShows("the TPM's volatile state is lost")) << daemon().Log();
}

// A worker stopped and continued while it waits for its guest (SIGSTOP,
// SIGCONT: a debugger, the cgroup freezer) resumes its poll(2) through
// restart_syscall, which its filter allows: the same process serves on.
TEST_F(WorkerDataPathTest, AWorkerStoppedAndContinuedWhileIdleServesOn) {
  GuestFrontend& g = Attached(14);
  ASSERT_FALSE(HasFailure());
  const tpm12::PcrValue d = ExtendOnce(g, 9, 0x4e);
  const pid_t worker = OnlyWorker();
  ASSERT_GT(worker, 0);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(kill(worker, SIGSTOP), 0);
    std::this_thread::sleep_for(100ms);
    ASSERT_EQ(kill(worker, SIGCONT), 0);
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(Pcr(g, 9), tpm12::ExtendedPcr(tpm12::PcrValue{}, d));
  EXPECT_EQ(kill(worker, 0), 0) << "the worker was killed after SIGCONT";
  EXPECT_EQ(OnlyWorker(), worker);
  EXPECT_EQ(daemon().Log().find("TPM worker fault"), std::string::npos) << daemon().Log();
}

// A daemon stopped on purpose (SIGTERM) leaves its serving workers in the
// fd store too: `systemctl restart` hands them to the next daemon, which
// takes them over; `systemctl stop` empties the store, and they exit.
TEST_F(WorkerDataPathTest, ARestartTakesTheWorkerOverAndAStopEndsIt) {
  GuestFrontend& g = Attached(12);
  ASSERT_FALSE(HasFailure());
  const tpm12::PcrValue d = ExtendOnce(g, 15, 0x4c);
  const pid_t worker = OnlyWorker();
  ASSERT_GT(worker, 0);
  ASSERT_TRUE(daemon().Restart().ok()) << daemon().Log();
  const auto once = tpm12::ExtendedPcr(tpm12::PcrValue{}, d);
  EXPECT_EQ(Pcr(g, 15), once);
  EXPECT_NE(daemon().Log().find("1 worker(s) left serving their guests"), std::string::npos) << daemon().Log();
  EXPECT_TRUE(LogShows("took over worker " + std::to_string(worker) + " of the previous daemon")) << daemon().Log();
  Run(g, tpm12::PcrExtend(15, d));
  EXPECT_EQ(Pcr(g, 15), tpm12::ExtendedPcr(once, d));

  ASSERT_TRUE(daemon().Stop().ok());
  EXPECT_EQ(daemon().fd_store().size(), 0u);
  bool gone = false;
  for (int i = 0; i < 250 && !gone; ++i) {
    gone = kill(worker, 0) != 0;
    if (!gone) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(gone) << "worker " << worker << " outlived a stopped unit's fd store";
  // The next start begins a new worker from the volatile copy.
  const size_t before = daemon().Log().size();
  ASSERT_TRUE(daemon().Start().ok()) << daemon().Log();
  EXPECT_EQ(Pcr(g, 15), tpm12::ExtendedPcr(once, d));
  EXPECT_EQ(daemon().Log().find("took over worker", before), std::string::npos);
}

// The guest learns of each response from an event on its channel, sent by
// the worker after it dropped root, for a command the daemon saw and for
// one it did not (the guest here never polls the page).
TEST_F(WorkerDataPathTest, TheWorkerNotifiesItsGuestAfterEachResponse) {
  GuestFrontend& g = Attached(11);
  ASSERT_FALSE(HasFailure());
  tpm12::PcrValue d;
  d.fill(0x42);
  for (const Bytes& cmd : {tpm12::PcrExtend(14, d), tpm12::PcrRead(14)}) {
    g.DrainEvents();
    g.WritePayload(8, cmd);
    g.WriteHeader(uint32_t(cmd.size()), 1, 0, 0);
    ASSERT_TRUE(g.Notify().ok());
    int events = 0;
    for (int i = 0; i < 400 && events == 0; ++i) {
      std::this_thread::sleep_for(5ms);
      events = g.DrainEvents();
    }
    EXPECT_GT(events, 0) << "no event for the response to ordinal " << LoadBe32(cmd.data() + 6);
    EXPECT_EQ(g.state(), 2);
  }
}

TEST_F(WorkerDataPathTest, RequestsTheWorkerRefusesGetTheirErrorAndTheDaemonLogsThem) {
  GuestFrontend& g = Attached(6);
  ASSERT_FALSE(HasFailure());
  // A length past the page: TPM_BAD_PARAM_SIZE, written by the worker.
  g.WriteHeader(4089, 1, 0, 0);
  ASSERT_TRUE(g.Notify().ok());
  ASSERT_TRUE(g.WaitIdle(5s));
  EXPECT_EQ(g.state(), 2);
  Bytes rsp(g.page() + 8, g.page() + 8 + g.length());
  EXPECT_EQ(tpm12::ResponseCode(rsp), tpm12::kBadParamSize);
  // Locality 2 (not allowed by default): TPM_BAD_LOCALITY.
  Bytes cmd = tpm12::PcrRead(0);
  g.WritePayload(8, cmd);
  g.WriteHeader(uint32_t(cmd.size()), 1, 2, 0);
  ASSERT_TRUE(g.Notify().ok());
  ASSERT_TRUE(g.WaitIdle(5s));
  Bytes rsp2(g.page() + 8, g.page() + 8 + g.length());
  EXPECT_EQ(tpm12::ResponseCode(rsp2), tpm12::kBadLocality);
  g.WriteHeader(g.length(), 2, 0, 0);  // the frontend's own header again (locality 0)
  // Service goes on, and the daemon says which guest sent what. The worker
  // notes a refusal to the daemon after the answer is in the page, so the
  // log line may come after the guest has its answer.
  EXPECT_EQ(Pcr(g, 0), tpm12::PcrValue{});
  EXPECT_TRUE(LogShows("domid=6 devid=0 uuid=" + kUuid + ": request refused without running it (length 4089"))
      << daemon().Log();
  EXPECT_TRUE(LogShows("locality other than 0; answered 0x3d")) << daemon().Log();
}

TEST_F(WorkerDataPathTest, CancelWhileIdleIsAnsweredIdle) {
  GuestFrontend& g = Attached(7);
  ASSERT_FALSE(HasFailure());
  g.Cancel();
  ASSERT_TRUE(g.WaitIdle(3s));
  EXPECT_EQ(g.state(), 0);
  EXPECT_EQ(Pcr(g, 1), tpm12::PcrValue{});
}

TEST_F(WorkerDataPathTest, AWorkerKilledBetweenCommandsIsReplacedAndThePcrsStay) {
  GuestFrontend& g = Attached(8);
  ASSERT_FALSE(HasFailure());
  const tpm12::PcrValue d = ExtendOnce(g, 11, 0x21);
  const pid_t first = OnlyWorker();
  ASSERT_GT(first, 0);
  // The daemon hears of it without a request of its own pending, and starts
  // another worker from the last delivered state.
  ASSERT_GT(KillAndAwaitReplacement(first), 0) << daemon().Log();
  EXPECT_EQ(Pcr(g, 11), tpm12::ExtendedPcr(tpm12::PcrValue{}, d));
  EXPECT_NE(daemon().Log().find("TPM worker fault"), std::string::npos);
}

// A worker renews its sign of life while idle (tpm/worker_flight.h); one
// stopped between two commands does not, and the daemon replaces it within
// the command deadline plus a heartbeat period, so the request its guest
// sent meanwhile is answered by the next worker, and answered normally: the
// flight record shows it never ran.
class WorkerStopTest : public BackendSimTest {
 protected:
  static constexpr auto kDeadline = 1000ms;
  void SetUp() override {
    BackendSimTest::SetUp();
    if (HasFatalFailure()) return;
    StartLibtpmsDaemon("[xen]\ndata_path = \"worker\"\n",
                       "command_deadline_ms = " + std::to_string(kDeadline.count()) + "\n");
  }
};

TEST_F(WorkerStopTest, AWorkerStoppedWhileIdleIsReplacedAndItsGuestsRequestAnswered) {
  CreateDomain(12, kUuid);
  GuestFrontend& g = Guest(12);
  ASSERT_TRUE(g.Connect().ok());
  tpm12::PcrValue d;
  d.fill(0x3e);
  auto ext = g.Transmit(tpm12::PcrExtend(11, d), 30s);
  ASSERT_TRUE(ext.ok() && tpm12::ResponseCode(*ext) == tpm12::kSuccess);
  std::vector<pid_t> w = ChildPids(daemon().pid());
  ASSERT_EQ(w.size(), 1u);
  const pid_t first = w[0];

  // Idle and well for three deadlines: it stays.
  std::this_thread::sleep_for(kDeadline * 3);
  EXPECT_EQ(ChildPids(daemon().pid()), std::vector<pid_t>{first});
  EXPECT_EQ(daemon().Log().find("gave no sign of life"), std::string::npos) << daemon().Log();

  ASSERT_EQ(kill(first, SIGSTOP), 0);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = g.Transmit(tpm12::PcrRead(11), 30s);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(r.ok()) << r.status().ToString() << "\n" << daemon().Log();
  ASSERT_EQ(tpm12::ResponseCode(*r), tpm12::kSuccess) << daemon().Log();
  EXPECT_EQ(tpm12::PcrFromResponse(*r), tpm12::ExtendedPcr(tpm12::PcrValue{}, d));
  EXPECT_GE(took, kDeadline) << "answered before the deadline: the stopped worker was not the one asked";
  EXPECT_LT(took, 15s);
  EXPECT_NE(daemon().Log().find("gave no sign of life"), std::string::npos) << daemon().Log();
  w = ChildPids(daemon().pid());
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0], first);
}

// Three worker faults with no command delivered between break the instance
// (design §3 "Worker faults"). The daemon maps no guest page, so a worker
// without a TPM serves the page: the guest's requests get TPM_FAIL at once,
// and the first one after the retry delay starts the TPM again and is
// answered by it, with the PCRs as they were.
TEST_F(WorkerDataPathTest, ABrokenInstanceAnswersTpmFailThenStartsAgain) {
  GuestFrontend& g = Attached(13);
  ASSERT_FALSE(HasFailure());
  tpm12::PcrValue d;
  d.fill(0x6b);
  Run(g, tpm12::PcrExtend(11, d));
  pid_t victim = OnlyWorker();
  for (int fault = 0; fault < 3; ++fault) {
    victim = KillAndAwaitReplacement(victim);
    ASSERT_GT(victim, 0) << "no worker after fault " << fault + 1 << "\n" << daemon().Log();
  }
  ASSERT_NE(daemon().Log().find("giving up after 3 failed starts"), std::string::npos) << daemon().Log();
  EXPECT_EQ(Snapshot(daemon().pid(), host().sim_dir()).sim_maps, 0u) << "the daemon maps the guest's page";
  const auto t0 = std::chrono::steady_clock::now();
  Run(g, tpm12::PcrRead(11), tpm12::kFail);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms) << "TPM_FAIL should come at once, not at a deadline";
  Run(g, tpm12::PcrRead(11), tpm12::kFail);
  std::this_thread::sleep_for(2100ms);  // the retry delay
  EXPECT_EQ(Pcr(g, 11), tpm12::ExtendedPcr(tpm12::PcrValue{}, d));
  EXPECT_NE(daemon().Log().find("retrying the TPM start"), std::string::npos) << daemon().Log();
  Run(g, tpm12::PcrExtend(11, d));
  EXPECT_EQ(Pcr(g, 11), tpm12::ExtendedPcr(tpm12::ExtendedPcr(tpm12::PcrValue{}, d), d));
}

TEST_F(WorkerDataPathTest, ManyCommandsInARowAndANewRingAfterReconnect) {
  GuestFrontend& g = Attached(9, FrontendMode::kMiniOs);
  ASSERT_FALSE(HasFailure());
  tpm12::PcrValue acc{}, d;
  for (int i = 0; i < 200; ++i) {
    d.fill(uint8_t(i));
    Run(g, tpm12::PcrExtend(12, d));
    acc = tpm12::ExtendedPcr(acc, d);
  }
  EXPECT_EQ(Pcr(g, 12), acc);
  const std::string old_page = host().sim_dir() + "/grants/9/" + std::to_string(g.ring_ref());
  ASSERT_TRUE(g.Close().ok());
  ASSERT_TRUE(g.Reopen().ok());  // a new ring: a new worker maps it
  EXPECT_EQ(Pcr(g, 12), acc);
  const pid_t worker = OnlyWorker();
  ASSERT_GT(worker, 0);
  for (const std::string& l : ReadLines("/proc/" + std::to_string(worker) + "/maps"))
    EXPECT_EQ(l.find(old_page), std::string::npos) << "the old ring is still mapped: " << l;
}

// The worker's filter lets it notify through its event-channel descriptor and
// do nothing else with ioctl: binding another port, or the notify request on
// another descriptor, kills it (design §3 "The worker serves its guest").
class WorkerFilterTest : public SimHostTest {
 protected:
  // A worker serving domain 77's page and port, with the sandbox probes.
  void SetUp() override {
    SimHostTest::SetUp();
    if (HasFatalFailure()) return;
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
  }
  std::unique_ptr<WorkerClient> StartGuestWorker() {
    auto page = GrantedPage::Grant(host().sim_dir(), 77);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    auto ep = EvtchnEndpoint::Open(host().sim_dir(), 77);
    EXPECT_TRUE(ep.ok()) << ep.status().ToString();
    if (!page.ok() || !ep.ok()) return nullptr;
    auto port = ep->AllocUnbound(0);
    EXPECT_TRUE(port.ok());
    if (!port.ok()) return nullptr;
    pages_.push_back(std::move(page).value());
    endpoints_.push_back(std::move(ep).value());
    mark_ = host().dir() + "/mark";
    UniqueFd mark(open(mark_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    auto flight = FlightPage::Create();
    EXPECT_TRUE(flight.ok());
    if (!flight.ok()) return nullptr;
    WorkerGuest guest;
    guest.link = GuestLink{77, pages_.back().ref(), *port};
    guest.mark_fd = mark.get();
    guest.flight_fd = flight->fd();
    // The worker reaches the simulated host through the daemon's shim.
    setenv("LD_PRELOAD", SimHost::ShimPreload().c_str(), 1);
    auto w = WorkerClient::Start(*loop_, testing::TestWorkerOptions(/*test_commands=*/true), &guest,
                                 [](WorkerReply) {});
    unsetenv("LD_PRELOAD");
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    if (!w.ok()) return nullptr;
    auto init = testing::CallSync(*loop_, **w, testing::InitRequest());
    EXPECT_TRUE(init.ok() && init->type == WorkerMsg::kReply) << (init.ok() ? init->message : init.status().ToString());
    return std::move(w).value();
  }
  static WorkerRequest Ioctl(uint32_t request, uint8_t target) {
    WorkerRequest r;
    r.type = WorkerMsg::kTestIoctl;
    r.ioctl_request = request;
    r.ioctl_target = target;
    return r;
  }
  std::unique_ptr<EventLoop> loop_;
  std::vector<GrantedPage> pages_;
  std::vector<EvtchnEndpoint> endpoints_;
  std::string mark_;
};

TEST_F(WorkerFilterTest, NotifyOnItsChannelPassesBindingKills) {
  auto w = StartGuestWorker();
  ASSERT_TRUE(w);
  // The shim's descriptor is a socket, so the call itself fails (ENOTTY):
  // what matters is that the filter let it through.
  auto notify = testing::CallSync(*loop_, *w, Ioctl(IOCTL_EVTCHN_NOTIFY, 0));
  ASSERT_TRUE(notify.ok()) << notify.status().ToString();
  EXPECT_EQ(notify->type, WorkerMsg::kFailure);
  EXPECT_NE(notify->message.find("ioctl failed"), std::string::npos) << notify->message;
  testing::ExpectKilledBySeccomp(*loop_, *w, Ioctl(IOCTL_EVTCHN_BIND_INTERDOMAIN, 0));
}

TEST_F(WorkerFilterTest, NotifyOnAnotherDescriptorKills) {
  auto w = StartGuestWorker();
  ASSERT_TRUE(w);
  testing::ExpectKilledBySeccomp(*loop_, *w, Ioctl(IOCTL_EVTCHN_NOTIFY, 1));
}

TEST_F(WorkerFilterTest, ResetAndUnbindKill) {
  for (uint32_t request : {uint32_t(IOCTL_EVTCHN_RESET), uint32_t(IOCTL_EVTCHN_UNBIND)}) {
    auto w = StartGuestWorker();
    ASSERT_TRUE(w);
    testing::ExpectKilledBySeccomp(*loop_, *w, Ioctl(request, 0));
  }
}

}  // namespace
}  // namespace vtpm::sim
