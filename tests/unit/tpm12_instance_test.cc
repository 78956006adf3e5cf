// InstanceManager over the real SQLite store and real vtpm-worker processes:
// power semantics, auto-create, resume after a daemon restart, faults,
// cancel, and the vtpmctl operations.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "host_tpm_swtpm.h"
#include "store/open_store.h"
#include "tpm/instance_manager.h"
#include "worker_test_util.h"

namespace vtpm {
namespace {

using namespace vtpm::testing;
using std::chrono::milliseconds;

constexpr char kUuidA[] = "6f3c1a52-0d5e-4b8e-9a51-2f4c6a7b8c01";
constexpr char kUuidB[] = "6f3c1a52-0d5e-4b8e-9a51-2f4c6a7b8c02";

Uuid U(const char* s) { return Uuid::Parse(s).value(); }
GuestCtx Ctx(int domid, const char* uuid) { return GuestCtx{domid, 0, uuid}; }

// The real store with a switch that makes the next Commit fail (ENOSPC-like).
class FaultyStore final : public Store {
 public:
  explicit FaultyStore(std::unique_ptr<Store> real) : real_(std::move(real)) {}
  std::atomic<bool> fail_next_commit{false};
  Status Create(const InstanceMeta& m, const std::map<BlobKind, Bytes>& b) override {
    return real_->Create(m, b);
  }
  Result<LoadedInstance> Load(const Uuid& u) override { return real_->Load(u); }
  void Commit(CommitRequest req, std::function<void(Result<uint64_t>)> done) override {
    if (fail_next_commit.exchange(false))
      return done(Status(Code::kIoError, "injected commit failure", ENOSPC));
    real_->Commit(std::move(req), std::move(done));
  }
  Result<uint64_t> CommitSync(CommitRequest req) override { return real_->CommitSync(std::move(req)); }
  Status MarkDelivered(const Uuid& u, uint64_t s) override { return real_->MarkDelivered(u, s); }
  Status TouchAttached(const Uuid& u) override { return real_->TouchAttached(u); }
  Status Wipe(const Uuid& u) override { return real_->Wipe(u); }
  Result<std::vector<InstanceMeta>> List() override { return real_->List(); }
  Status Backup(const std::string& p) override { return real_->Backup(p); }
  Result<SecretBytes> HostKeys(const std::function<Result<SecretBytes>()>& make) override {
    return real_->HostKeys(make);
  }
  Status Import(const ImportRequest& r) override { return real_->Import(r); }
  Status MarkMoved(const MovedInstance& m, uint64_t g) override { return real_->MarkMoved(m, g); }
  Result<std::vector<MovedInstance>> ListMoved() override { return real_->ListMoved(); }
  Status SaveVolatile(const Uuid& u, const VolatileCopy& c) override {
    return real_->SaveVolatile(u, c);
  }
  Result<std::optional<VolatileCopy>> LoadVolatile(const Uuid& u) override {
    return real_->LoadVolatile(u);
  }
  Status SaveResponded(const Uuid& u, const RespondedMark& m) override {
    return real_->SaveResponded(u, m);
  }
  Status DropRuntimeCopies(const Uuid& u) override { return real_->DropRuntimeCopies(u); }
  Result<std::optional<RespondedMark>> LoadResponded(const Uuid& u) override {
    return real_->LoadResponded(u);
  }
  Result<StoreStatus> GetStatus() override { return real_->GetStatus(); }

 private:
  std::unique_ptr<Store> real_;
};

class InstanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
    OpenStore();
    boot_id_.fill(0x42);
    StartManager();
  }
  void TearDown() override {
    manager_.reset();
    store_.reset();
  }
  void OpenStore() {
    StoreOptions so;
    so.state_dir = dir_.Sub("state");
    so.runtime_dir = dir_.Sub("run");
    mkdir(so.state_dir.c_str(), 0700);
    mkdir(so.runtime_dir.c_str(), 0700);
    SecretBytes master(32);
    std::fill(master.data(), master.data() + 32, uint8_t(9));
    auto s = OpenStoreWithKey(so, master);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::make_unique<FaultyStore>(std::move(s).value());
  }
  void StartManager(bool auto_create = true, std::shared_ptr<StartSlots> slots = nullptr) {
    InstanceManagerOptions o;
    o.start_slots = std::move(slots);
    o.worker = TestWorkerOptions();
    o.auto_create = auto_create;
    o.command_deadline = milliseconds(1500);
    o.admin_deadline = milliseconds(30000);
    o.boot_id = boot_id_;
    manager_ = std::make_unique<InstanceManager>(*loop_, *store_, o);
  }
  // A daemon restart: everything in memory goes, the store stays.
  void RestartDaemon() {
    manager_.reset();
    store_.reset();
    OpenStore();
    StartManager();
  }
  std::shared_ptr<Engine> Connect(const char* uuid, int domid, std::optional<DomainHandle> handle = std::nullopt) {
    auto e = manager_->Connect(U(uuid), Ctx(domid, uuid), handle);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? *e : nullptr;
  }
  template <typename T>
  T RunUntil(std::optional<T>& slot) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!slot && std::chrono::steady_clock::now() < deadline)
      EXPECT_TRUE(loop_->RunOnce(milliseconds(50)).ok());
    EXPECT_TRUE(slot.has_value()) << "timed out";
    if (slot) return std::move(*slot);
    if constexpr (std::is_default_constructible_v<T>)
      return T{};
    else
      return T(Status(Code::kTimeout, "timed out"));
  }
  Bytes Exec(Engine& e, Bytes cmd) {
    EXPECT_FALSE(e.busy());
    std::optional<Bytes> out;
    e.Execute(std::move(cmd), 0, [&](Bytes r) { out = std::move(r); });
    return RunUntil(out);
  }
  uint32_t Rc(Engine& e, Bytes cmd) { return tpm12::ResponseCode(Exec(e, std::move(cmd))).value_or(~0u); }
  tpm12::PcrValue Pcr(Engine& e, uint32_t i) {
    auto v = tpm12::PcrFromResponse(Exec(e, tpm12::PcrRead(i)));
    EXPECT_TRUE(v.has_value());
    return v.value_or(tpm12::PcrValue{});
  }
  tpm12::PcrValue Extend(Engine& e, uint32_t i, uint8_t fill) {
    tpm12::PcrValue d;
    d.fill(fill);
    EXPECT_EQ(Rc(e, tpm12::PcrExtend(i, d)), tpm12::kSuccess);
    return Pcr(e, i);
  }
  Bytes Ek(Engine& e) {
    std::array<uint8_t, 20> nonce{};
    auto ek = tpm12::PubkeyFromEkResponse(Exec(e, tpm12::ReadPubek(nonce)));
    EXPECT_TRUE(ek.has_value());
    return ek.value_or(Bytes{});
  }
  pid_t WorkerPid(const char* uuid) {
    auto inst = manager_->Running(U(uuid));
    return inst ? inst->worker_pid() : -1;
  }

  TempDir dir_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<FaultyStore> store_;
  std::unique_ptr<InstanceManager> manager_;
  std::array<uint8_t, 16> boot_id_{};
};

TEST_F(InstanceTest, AutoCreatedInstanceIsStartedByTheDaemon) {
  auto e = Connect(kUuidA, 5);
  ASSERT_TRUE(e);
  // No Startup from the guest: the daemon sent TPM_Init + Startup(ST_CLEAR).
  EXPECT_EQ(Pcr(*e, 4), tpm12::PcrValue{});
  EXPECT_EQ(Rc(*e, tpm12::Startup(tpm12::kStClear)), tpm12::kInvalidPostinit);
  auto ek = manager_->ReadEkPublic(U(kUuidA));
  ASSERT_TRUE(ek.ok()) << ek.status().ToString();
  EXPECT_EQ(Ek(*e), *ek);
  auto loaded = store_->Load(U(kUuidA));
  ASSERT_TRUE(loaded.ok());
  EXPECT_TRUE(loaded->meta.auto_created);
}

DomainHandle Handle(uint8_t fill) {
  DomainHandle h;
  h.fill(fill);
  return h;
}

TEST_F(InstanceTest, RestoredDomainResumesTheCaptureOnceEvenAcrossADaemonRestart) {
  auto e = Connect(kUuidA, 5, Handle(0xa1));
  ASSERT_TRUE(e);
  auto pcr = Extend(*e, 4, 0x31);
  manager_->Suspended(U(kUuidA), Ctx(5, kUuidA), Handle(0xa1));
  manager_->Release(U(kUuidA), Ctx(5, kUuidA));  // while the capture commits: waits for it
  for (int i = 0; i < 200 && manager_->Running(U(kUuidA)); ++i) ASSERT_TRUE(loop_->RunOnce(milliseconds(20)).ok());
  ASSERT_EQ(manager_->Running(U(kUuidA)), nullptr);
  e.reset();
  auto loaded = store_->Load(U(kUuidA));
  ASSERT_TRUE(loaded.ok() && loaded->suspend);
  EXPECT_EQ(loaded->suspend->domid, 5u);
  // The host reboots between xendomains' save and restore.
  boot_id_.fill(0x43);
  RestartDaemon();
  // xl restore: a new domid, the same handle. PCR 4 as the domain left it.
  auto restored = Connect(kUuidA, 9, Handle(0xa1));
  ASSERT_TRUE(restored);
  EXPECT_EQ(Pcr(*restored, 4), pcr);
  EXPECT_EQ(Rc(*restored, tpm12::Startup(tpm12::kStClear)), tpm12::kInvalidPostinit);  // no second Startup
  EXPECT_FALSE(store_->Load(U(kUuidA))->suspend);  // used up
  manager_->Release(U(kUuidA), Ctx(9, kUuidA));
  // Restoring the same save image again finds nothing to resume.
  auto replay = Connect(kUuidA, 10, Handle(0xa1));
  ASSERT_TRUE(replay);
  EXPECT_EQ(Pcr(*replay, 4), tpm12::PcrValue{});
}

TEST_F(InstanceTest, AFreshBootWithAnotherHandleDropsTheCapture) {
  auto e = Connect(kUuidA, 5, Handle(0xa1));
  ASSERT_TRUE(e);
  Extend(*e, 4, 0x32);
  manager_->Suspended(U(kUuidA), Ctx(5, kUuidA), Handle(0xa1));
  manager_->Release(U(kUuidA), Ctx(5, kUuidA));
  for (int i = 0; i < 200 && manager_->Running(U(kUuidA)); ++i) ASSERT_TRUE(loop_->RunOnce(milliseconds(20)).ok());
  e.reset();
  ASSERT_TRUE(store_->Load(U(kUuidA))->suspend);
  // xl create of a config without uuid=: a new random handle.
  auto fresh = Connect(kUuidA, 6, Handle(0xb2));
  ASSERT_TRUE(fresh);
  EXPECT_EQ(Pcr(*fresh, 4), tpm12::PcrValue{});
  EXPECT_FALSE(store_->Load(U(kUuidA))->suspend);
  manager_->Release(U(kUuidA), Ctx(6, kUuidA));
  // The save image restored afterwards powers on fresh: never one boot's PCRs in another.
  auto late = Connect(kUuidA, 7, Handle(0xa1));
  ASSERT_TRUE(late);
  EXPECT_EQ(Pcr(*late, 4), tpm12::PcrValue{});
}

TEST_F(InstanceTest, ResumeNeverPowersOnFreshAndADomainThatRanOnDropsItsCapture) {
  auto e = Connect(kUuidA, 5, Handle(0xa1));
  ASSERT_TRUE(e);
  Extend(*e, 4, 0x33);
  // xl save -c: the domain suspends and is resumed on the same domid.
  manager_->Suspended(U(kUuidA), Ctx(5, kUuidA), Handle(0xa1));
  for (int i = 0; i < 200 && !store_->Load(U(kUuidA))->suspend; ++i)
    ASSERT_TRUE(loop_->RunOnce(milliseconds(20)).ok());
  ASSERT_TRUE(store_->Load(U(kUuidA))->suspend);
  auto pcr = Extend(*e, 4, 0x34);  // runs on
  manager_->Release(U(kUuidA), Ctx(5, kUuidA));  // then shuts down
  for (int i = 0; i < 200 && store_->Load(U(kUuidA))->suspend; ++i) ASSERT_TRUE(loop_->RunOnce(milliseconds(20)).ok());
  EXPECT_FALSE(store_->Load(U(kUuidA))->suspend);
  e.reset();
  // [engine] resume = "never": a capture is dropped, not resumed.
  auto again = Connect(kUuidA, 6, Handle(0xa1));
  ASSERT_TRUE(again);
  Extend(*again, 4, 0x35);
  manager_->Suspended(U(kUuidA), Ctx(6, kUuidA), Handle(0xa1));
  manager_->Release(U(kUuidA), Ctx(6, kUuidA));
  for (int i = 0; i < 200 && manager_->Running(U(kUuidA)); ++i) ASSERT_TRUE(loop_->RunOnce(milliseconds(20)).ok());
  again.reset();
  ASSERT_TRUE(store_->Load(U(kUuidA))->suspend);
  InstanceManagerOptions o;
  o.worker = TestWorkerOptions();
  o.boot_id = boot_id_;
  o.resume_by_handle = false;
  manager_ = std::make_unique<InstanceManager>(*loop_, *store_, o);
  auto never = Connect(kUuidA, 7, Handle(0xa1));
  ASSERT_TRUE(never);
  EXPECT_EQ(Pcr(*never, 4), tpm12::PcrValue{});
  EXPECT_FALSE(store_->Load(U(kUuidA))->suspend);
  (void)pcr;
}

TEST_F(InstanceTest, ALaterDomainWithTheSameDomidGetsNoVolatileCopy) {
  auto e = Connect(kUuidA, 5, Handle(0xa1));
  ASSERT_TRUE(e);
  Extend(*e, 4, 0x36);
  manager_->Release(U(kUuidA), Ctx(5, kUuidA));
  e.reset();
  // The copy went with the domain.
  auto copy = store_->LoadVolatile(U(kUuidA));
  ASSERT_TRUE(copy.ok());
  EXPECT_FALSE(*copy);
  // Domid 5 again (wrap-around, xl create -D), another domain: fresh.
  auto other = Connect(kUuidA, 5, Handle(0xc3));
  ASSERT_TRUE(other);
  EXPECT_EQ(Pcr(*other, 4), tpm12::PcrValue{});
  Extend(*other, 4, 0x37);
  // A daemon killed before it saw the domain go leaves the copy behind: the
  // handle tells the next domain 5 apart.
  manager_.reset();
  store_.reset();
  OpenStore();
  StartManager();
  auto next = Connect(kUuidA, 5, Handle(0xd4));
  ASSERT_TRUE(next);
  EXPECT_EQ(Pcr(*next, 4), tpm12::PcrValue{});
}

TEST_F(InstanceTest, ANewDomainOnTheDomidOfOneNotYetReapedGetsAFreshTpm) {
  auto e = Connect(kUuidA, 5, Handle(0xa1));
  ASSERT_TRUE(e);
  Extend(*e, 4, 0x38);
  // Domain 5 destroyed and domid 5 given to another domain before the old
  // instance was released: another handle, so not a frontend reconnect.
  auto other = Connect(kUuidA, 5, Handle(0xe5));
  ASSERT_TRUE(other);
  EXPECT_NE(other, e);
  EXPECT_EQ(Pcr(*other, 4), tpm12::PcrValue{});
  // The same handle is the same domain: its frontend reconnecting.
  EXPECT_EQ(Connect(kUuidA, 5, Handle(0xe5)), other);
}

TEST_F(InstanceTest, UnknownUuidWithoutAutoCreateIsNotFound) {
  StartManager(/*auto_create=*/false);
  auto e = manager_->Connect(U(kUuidA), Ctx(5, kUuidA), std::nullopt);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Code::kNotFound);
}

// With one start-up slot, the second instance's worker is not even spawned
// until the first has answered kInit; its command waits and then runs. A
// start powered off while it waits gives nothing back twice and blocks no one.
TEST_F(InstanceTest, OneStartUpSlotStartsWorkersOneAtATime) {
  auto slots = StartSlots::Create(*loop_, 1);
  StartManager(true, slots);
  for (auto [uuid, domid] : {std::pair{kUuidA, 5}, std::pair{kUuidB, 6}}) {  // manufactured, then off
    auto e = Connect(uuid, domid);
    ASSERT_TRUE(e);
    Pcr(*e, 0);
    manager_->Release(U(uuid), Ctx(domid, uuid));
  }
  EXPECT_EQ(slots->held(), 0u);
  auto a = Connect(kUuidA, 7);
  auto b = Connect(kUuidB, 8);
  ASSERT_TRUE(a && b);
  EXPECT_GT(WorkerPid(kUuidA), 0);
  EXPECT_EQ(WorkerPid(kUuidB), -1) << "spawned while the only slot was held";
  EXPECT_EQ(slots->waiting(), 1u);
  std::optional<Bytes> out;
  b->Execute(tpm12::PcrRead(0), 0, [&](Bytes r) { out = std::move(r); });
  EXPECT_EQ(tpm12::ResponseCode(RunUntil(out)), tpm12::kSuccess);
  EXPECT_GT(WorkerPid(kUuidB), 0);
  EXPECT_EQ(Rc(*a, tpm12::PcrRead(0)), tpm12::kSuccess);
  EXPECT_EQ(slots->held(), 0u);

  // B waits behind A's start-up and is released before its turn.
  manager_->Release(U(kUuidA), Ctx(7, kUuidA));
  manager_->Release(U(kUuidB), Ctx(8, kUuidB));
  auto a2 = Connect(kUuidA, 9);
  auto b2 = Connect(kUuidB, 10);
  ASSERT_TRUE(a2 && b2);
  EXPECT_EQ(slots->waiting(), 1u);
  manager_->Release(U(kUuidB), Ctx(10, kUuidB));
  EXPECT_EQ(Rc(*a2, tpm12::PcrRead(0)), tpm12::kSuccess);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(loop_->RunOnce(milliseconds(10)).ok());
  EXPECT_EQ(slots->held(), 0u);
  EXPECT_EQ(slots->waiting(), 0u);
}

TEST_F(InstanceTest, PowerFollowsTheDomain) {
  auto e = Connect(kUuidA, 5);
  ASSERT_TRUE(e);
  auto pcr = Extend(*e, 4, 0x11);
  // Frontend reconnect of the same domain (pv-grub -> kernel): same TPM.
  manager_->Disconnect(U(kUuidA), Ctx(5, kUuidA));
  auto again = Connect(kUuidA, 5);
  ASSERT_EQ(again, e);
  EXPECT_EQ(Pcr(*again, 4), pcr);
  // Another domain cannot attach while it is powered for domain 5.
  auto other = manager_->Connect(U(kUuidA), Ctx(6, kUuidA), std::nullopt);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), Code::kBusy);
  // Released: powered off; a new domain gets a fresh power-on, same EK.
  Bytes ek = Ek(*e);
  manager_->Release(U(kUuidA), Ctx(5, kUuidA));
  EXPECT_EQ(manager_->Running(U(kUuidA)), nullptr);
  auto fresh = Connect(kUuidA, 6);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(Pcr(*fresh, 4), tpm12::PcrValue{});
  EXPECT_EQ(Ek(*fresh), ek);
}

TEST_F(InstanceTest, DaemonRestartResumesPcrsForTheSameDomainOnly) {
  auto e = Connect(kUuidA, 5);
  ASSERT_TRUE(e);
  auto pcr = Extend(*e, 10, 0x22);
  e.reset();
  RestartDaemon();
  auto resumed = Connect(kUuidA, 5);
  ASSERT_TRUE(resumed);
  EXPECT_EQ(Pcr(*resumed, 10), pcr);
  auto pcr2 = Extend(*resumed, 10, 0x23);
  EXPECT_NE(pcr2, pcr);
  resumed.reset();
  RestartDaemon();
  // Same uuid, another domain (the guest was re-created): PCRs reset.
  auto recreated = Connect(kUuidA, 9);
  ASSERT_TRUE(recreated);
  EXPECT_EQ(Pcr(*recreated, 10), tpm12::PcrValue{});
}

TEST_F(InstanceTest, SaveStateIsCommittedAndHonouredAtStartupState) {
  auto e = Connect(kUuidA, 5);
  ASSERT_TRUE(e);
  auto pcr = Extend(*e, 3, 0x33);
  ASSERT_EQ(Rc(*e, tpm12::SaveState()), tpm12::kSuccess);
  auto loaded = store_->Load(U(kUuidA));
  ASSERT_TRUE(loaded.ok());
  ASSERT_TRUE(loaded->savestate.has_value());
  ASSERT_TRUE(loaded->last_record.has_value());
  EXPECT_EQ(loaded->last_record->response, tpm12::ErrorResponse(tpm12::kSuccess));
  // Power cycle with startup = none: the guest resumes with ST_STATE.
  manager_->Release(U(kUuidA), Ctx(5, kUuidA));
  InstanceManagerOptions o;
  o.worker = TestWorkerOptions();
  o.startup_clear = false;
  o.boot_id = boot_id_;
  manager_ = std::make_unique<InstanceManager>(*loop_, *store_, o);
  auto next = Connect(kUuidA, 6);
  ASSERT_TRUE(next);
  EXPECT_EQ(Rc(*next, tpm12::Startup(tpm12::kStState)), tpm12::kSuccess);
  EXPECT_EQ(Pcr(*next, 3), pcr);
  // libtpms deleted the savestate at Startup; the store followed.
  loaded = store_->Load(U(kUuidA));
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(loaded->savestate.has_value());
}

TEST_F(InstanceTest, KilledWorkerFailsOnlyTheCommandInFlight) {
  auto e = Connect(kUuidA, 5);
  ASSERT_TRUE(e);
  auto pcr = Extend(*e, 10, 0x44);
  std::optional<Bytes> out;
  tpm12::PcrValue d;
  d.fill(0x45);
  // Stopped first, so the command is surely in flight when the kill lands.
  const pid_t worker = WorkerPid(kUuidA);
  ASSERT_EQ(kill(worker, SIGSTOP), 0);
  e->Execute(tpm12::PcrExtend(10, d), 0, [&](Bytes r) { out = std::move(r); });
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  EXPECT_EQ(tpm12::ResponseCode(RunUntil(out)), tpm12::kFail);
  EXPECT_EQ(Pcr(*e, 10), pcr);  // the last committed state
  EXPECT_EQ(manager_->Running(U(kUuidA))->restarts(), 1u);
}

TEST_F(InstanceTest, HungWorkerIsKilledAtTheDeadlineOthersUnaffected) {
  auto a = Connect(kUuidA, 5);
  auto b = Connect(kUuidB, 7);
  ASSERT_TRUE(a && b);
  auto pcr = Extend(*a, 10, 0x55);
  Pcr(*b, 0);  // B is manufactured and powered before A hangs
  kill(WorkerPid(kUuidA), SIGSTOP);
  std::optional<Bytes> out;
  auto t0 = std::chrono::steady_clock::now();
  a->Execute(tpm12::PcrRead(10), 0, [&](Bytes r) { out = std::move(r); });
  // Guest B is served while A hangs.
  Extend(*b, 10, 0x56);
  EXPECT_FALSE(out.has_value());
  EXPECT_EQ(tpm12::ResponseCode(RunUntil(out)), tpm12::kFail);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, milliseconds(1400));
  EXPECT_EQ(Pcr(*a, 10), pcr);
}

TEST_F(InstanceTest, FailedCommitFailsTheCommandAndRestoresCommittedState) {
  auto e = Connect(kUuidA, 5);
  ASSERT_TRUE(e);
  auto pcr = Extend(*e, 10, 0x66);
  store_->fail_next_commit = true;
  EXPECT_EQ(Rc(*e, tpm12::SaveState()), tpm12::kFail);
  EXPECT_EQ(manager_->Running(U(kUuidA))->restarts(), 1u);
  EXPECT_EQ(Pcr(*e, 10), pcr);
  auto loaded = store_->Load(U(kUuidA));
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(loaded->savestate.has_value());
  EXPECT_EQ(Rc(*e, tpm12::SaveState()), tpm12::kSuccess);
}

// Design §3 "Worker faults": three faults with no command delivered between
// break the instance; a command 2 s or more later tries one more start, from
// the last committed state, without a new power-on.
TEST_F(InstanceTest, BrokenInstanceRetriesAStartOnACommandAfterTheDelay) {
  auto e = Connect(kUuidA, 5);
  ASSERT_TRUE(e);
  auto pcr = Extend(*e, 10, 0x88);
  auto inst = manager_->Running(U(kUuidA));
  ASSERT_TRUE(inst);
  // Fault 1: the idle worker is killed, the next command finds it gone.
  ASSERT_EQ(kill(inst->worker_pid(), SIGKILL), 0);
  EXPECT_EQ(Rc(*e, tpm12::PcrRead(10)), tpm12::kFail);
  // Faults 2 and 3: each new worker is killed during its TPM_Init.
  for (int i = 0; i < 2; ++i) {
    const pid_t w = inst->worker_pid();
    ASSERT_GT(w, 0);
    ASSERT_EQ(kill(w, SIGKILL), 0);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (inst->powered() && inst->worker_pid() == w && std::chrono::steady_clock::now() < deadline)
      ASSERT_TRUE(loop_->RunOnce(milliseconds(10)).ok());
  }
  ASSERT_FALSE(inst->powered()) << "not broken after three faults in a row";
  EXPECT_EQ(Rc(*e, tpm12::PcrRead(10)), tpm12::kFail);  // broken, before the delay
  std::this_thread::sleep_for(milliseconds(2100));
  EXPECT_EQ(Pcr(*e, 10), pcr);
  EXPECT_TRUE(inst->powered());
  tpm12::PcrValue d;
  d.fill(0x89);
  EXPECT_EQ(Extend(*e, 10, 0x89), tpm12::ExtendedPcr(pcr, d));
}

TEST_F(InstanceTest, AbortRestoresTheStateBeforeTheCommand) {
  auto e = Connect(kUuidA, 5);
  ASSERT_TRUE(e);
  auto pcr = Extend(*e, 10, 0x77);
  tpm12::PcrValue d;
  d.fill(0x78);
  bool called = false;
  e->Execute(tpm12::PcrExtend(10, d), 0, [&](Bytes) { called = true; });
  ASSERT_TRUE(e->busy());
  e->Abort();
  EXPECT_FALSE(e->busy());
  EXPECT_EQ(Pcr(*e, 10), pcr);
  EXPECT_FALSE(called);
}

TEST_F(InstanceTest, VtpmctlCreateClearAndPcrs) {
  std::optional<Result<InstanceMeta>> created;
  manager_->Create(U(kUuidB), [&](Result<InstanceMeta> r) { created = std::move(r); });
  auto meta = RunUntil(created);
  ASSERT_TRUE(meta.ok()) << meta.status().ToString();
  EXPECT_FALSE(meta->auto_created);
  EXPECT_FALSE(meta->ek_public.empty());
  std::optional<Result<InstanceMeta>> again;
  manager_->Create(U(kUuidB), [&](Result<InstanceMeta> r) { again = std::move(r); });
  EXPECT_EQ(RunUntil(again).status().code(), Code::kAlreadyExists);

  // Clear while powered off: a temporary power-on, then off again.
  std::optional<Status> cleared;
  manager_->Clear(U(kUuidB), [&](Status st) { cleared = st; });
  Status st = RunUntil(cleared);
  EXPECT_TRUE(st.ok()) << st.ToString();
  for (int i = 0; i < 20 && manager_->Running(U(kUuidB)); ++i)
    ASSERT_TRUE(loop_->RunOnce(milliseconds(10)).ok());
  EXPECT_EQ(manager_->Running(U(kUuidB)), nullptr);

  std::optional<Result<std::vector<tpm12::PcrValue>>> pcrs;
  manager_->ReadPcrs(U(kUuidB), [&](auto r) { pcrs = std::move(r); });
  EXPECT_EQ(RunUntil(pcrs).status().code(), Code::kFailedPrecondition);

  auto e = Connect(kUuidB, 3);
  ASSERT_TRUE(e);
  auto pcr = Extend(*e, 7, 0x99);
  manager_->ReadPcrs(U(kUuidB), [&](auto r) { pcrs = std::move(r); });
  pcrs.reset();
  auto all = RunUntil(pcrs);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 24u);
  EXPECT_EQ((*all)[7], pcr);
  tpm12::PcrValue locality_reset;  // PCR 17-22 read all ones until a locality-4 reset
  locality_reset.fill(0xff);
  EXPECT_EQ((*all)[17], locality_reset);
}

}  // namespace
}  // namespace vtpm
