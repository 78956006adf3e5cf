// Manufacturing a TPM 1.2 in the real worker, and what a guest can do with
// the result: EK recorded, enabled, activated, nvLocked, no owner,
// physical presence lifetime-locked, input buffer 4088.
#include <chrono>

#include "tpm/manufacture.h"
#include "worker_test_util.h"

namespace vtpm {
namespace {

using namespace vtpm::testing;
using std::chrono::milliseconds;

class ManufactureTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    std::optional<Result<ManufacturedTpm>> out;
    auto start = std::chrono::steady_clock::now();
    auto m = Manufacturer::Start(**loop, TestWorkerOptions(), milliseconds(30000),
                                 [&](Result<ManufacturedTpm> r) { out = std::move(r); });
    while (!out) ASSERT_TRUE((*loop)->RunOnce(milliseconds(100)).ok());
    auto ms = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
    RecordProperty("manufacture_ms", int(ms.count()));
    std::printf("manufacture took %lld ms\n", static_cast<long long>(ms.count()));
    ASSERT_TRUE(out->ok()) << out->status().ToString();
    tpm_ = new ManufacturedTpm(std::move(*out).value());
  }
  static void TearDownTestSuite() { delete tpm_; }

  void SetUp() override {
    ASSERT_NE(tpm_, nullptr);
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
    auto w = WorkerClient::Start(*loop_, TestWorkerOptions());
    ASSERT_TRUE(w.ok());
    worker_ = std::move(w).value();
    ASSERT_TRUE(CallSync(*loop_, *worker_, InitRequest(tpm_->permanent)).ok());
    ASSERT_EQ(Rc(tpm12::Startup(tpm12::kStClear)), tpm12::kSuccess);
  }
  Bytes Exec(Bytes cmd) {
    auto r = CallSync(*loop_, *worker_, ExecRequest(std::move(cmd)));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->response : Bytes{};
  }
  uint32_t Rc(Bytes cmd) { return tpm12::ResponseCode(Exec(std::move(cmd))).value_or(~0u); }

  static ManufacturedTpm* tpm_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<WorkerClient> worker_;
};
ManufacturedTpm* ManufactureTest::tpm_ = nullptr;

TEST_F(ManufactureTest, FlagsAreThoseOfSwtpmSetup) {
  auto flags = tpm12::PermanentFlagsFromResponse(Exec(tpm12::GetPermanentFlags()));
  ASSERT_TRUE(flags.has_value());
  EXPECT_FALSE(flags->disable);
  EXPECT_FALSE(flags->deactivated);
  EXPECT_TRUE(flags->ownership);  // TakeOwnership allowed
  EXPECT_TRUE(flags->read_pubek);  // no owner yet
  EXPECT_TRUE(flags->cekp_used);   // EK exists
  EXPECT_TRUE(flags->nv_locked);
  EXPECT_TRUE(flags->pp_lifetime_lock);
  EXPECT_TRUE(flags->pp_hw_enable);
  EXPECT_FALSE(flags->pp_cmd_enable);
}

TEST_F(ManufactureTest, RecordedEkIsTheOneTheTpmHolds) {
  // A new worker from the manufactured blob (SetUp) reads the same EK.
  std::array<uint8_t, 20> nonce{};
  nonce.fill(7);
  auto ek = tpm12::PubkeyFromEkResponse(Exec(tpm12::ReadPubek(nonce)));
  ASSERT_TRUE(ek.has_value());
  EXPECT_EQ(*ek, tpm_->ek_public);
  EXPECT_GT(ek->size(), 256u);  // RSA-2048 modulus plus parameters
}

TEST_F(ManufactureTest, GuestCannotAssertPhysicalPresence) {
  EXPECT_EQ(Rc(tpm12::PhysicalPresence(tpm12::kPpCmdEnable)), tpm12::kBadParameter);
  EXPECT_EQ(Rc(tpm12::PhysicalPresence(tpm12::kPpPresent)), tpm12::kBadParameter);
  EXPECT_EQ(Rc(tpm12::ForceClear()), tpm12::kBadPresence);
  EXPECT_EQ(Rc(tpm12::PhysicalSetDeactivated(true)), tpm12::kBadPresence);
  // Still locked after a power cycle (the stclear LOCK would not be).
  auto w = WorkerClient::Start(*loop_, TestWorkerOptions());
  ASSERT_TRUE(w.ok());
  worker_ = std::move(w).value();
  ASSERT_TRUE(CallSync(*loop_, *worker_, InitRequest(tpm_->permanent)).ok());
  ASSERT_EQ(Rc(tpm12::Startup(tpm12::kStClear)), tpm12::kSuccess);
  EXPECT_EQ(Rc(tpm12::PhysicalPresence(tpm12::kPpCmdEnable)), tpm12::kBadParameter);
  EXPECT_EQ(Rc(tpm12::PhysicalPresence(tpm12::kPpPresent)), tpm12::kBadParameter);
}

TEST_F(ManufactureTest, DaemonPresenceStillWorks) {
  WorkerRequest clear = ExecRequest(tpm12::ForceClear(), /*presence=*/true);
  auto r = CallSync(*loop_, *worker_, clear);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(tpm12::ResponseCode(r->response), tpm12::kSuccess);
}

TEST_F(ManufactureTest, InputBufferIs4088) {
  Bytes resp = Exec(tpm12::GetCapabilityProperty(0x124));
  ASSERT_EQ(resp.size(), 18u);
  EXPECT_EQ(tpm12::ResponseCode(resp), tpm12::kSuccess);
  EXPECT_EQ(LoadBe32(resp.data() + 14), 4088u);
}

TEST_F(ManufactureTest, UnauthenticatedNvWriteIsRefused) {
  // nvLocked: NV_DefineSpace without owner authorisation fails (TPM_NOSRK
  // or an auth error, never success).
  Bytes define = tpm12::NvLock();
  StoreBe32(define.data() + 12, 0x00011000);  // an ordinary index
  StoreBe32(define.data() + 12 + 4 + 26 + 26 + 2, 0x00000002);  // TPM_NV_PER_OWNERWRITE
  StoreBe32(define.data() + define.size() - 24, 32);  // dataSize
  EXPECT_NE(Rc(define), tpm12::kSuccess);
}

}  // namespace
}  // namespace vtpm
