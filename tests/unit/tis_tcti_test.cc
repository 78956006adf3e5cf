// The TIS FIFO TCTI over the software TIS model, each command going on to a
// real swtpm: the HostTpm key flow end to end, locality handling, burstCount,
// timeouts and malformed responses.
#include <gtest/gtest.h>
#include <tss2/tss2_tcti.h>

#include <algorithm>
#include <chrono>
#include <functional>

#include "host_tpm_swtpm.h"
#include "store/refusal.h"
#include "tis_model.h"
#include "tis_swtpm_link.h"
#include "tpm/host/host_tpm.h"
#include "tpm/host/tis_tcti.h"

namespace vtpm {
namespace {

using namespace std::chrono_literals;
using testing::Swtpm;
using testing::SwtpmLink;
using testing::TempDir;
using testing::TisModel;

// TPM2_GetRandom(n): 80 01 | size 12 | cc 0x17b | bytesRequested.
Bytes GetRandom(uint16_t n) { return {0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, uint8_t(n >> 8), uint8_t(n)}; }

uint32_t Rc(const Bytes& rsp) { return LoadBe32(rsp.data() + 6); }

class TisTctiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Swtpm::Start(dir_.Sub("swtpm"));
    ASSERT_TRUE(s.ok()) << s.status().message();
    swtpm_.emplace(std::move(s).value());
    link_.emplace(swtpm_->port());
  }
  // A model in front of the swtpm with `b`.
  std::unique_ptr<TisModel> Model(TisModel::Behavior b = {}) {
    return std::make_unique<TisModel>(
        [this](uint8_t l, ByteView cmd) { return link_->Execute(l, cmd); }, std::move(b));
  }
  static tis::Timeouts Fast() {
    tis::Timeouts t;
    t.a = 100ms;
    t.b = 100ms;
    t.c = 100ms;
    t.d = 50ms;
    t.command = 300ms;
    return t;
  }
  std::unique_ptr<tis::Tcti> Open(TisModel& m, uint8_t locality = 0, tis::Timeouts t = {}) {
    auto r = tis::Tcti::Open(m.Window(), locality, t);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  // GetRandom(n) through `t`; the response must be TPM_RC_SUCCESS with n bytes.
  static void ExpectRandom(tis::Tcti& t, uint16_t n) {
    Status s = t.Transmit(GetRandom(n));
    ASSERT_TRUE(s.ok()) << s.message();
    auto r = t.Receive(-1ms);
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_EQ(r->size(), 12u + n);
    EXPECT_EQ(Rc(*r), 0u);
    EXPECT_EQ(LoadBe16(r->data() + 10), n);
  }

  TempDir dir_;
  std::optional<Swtpm> swtpm_;
  std::optional<SwtpmLink> link_;
};

TisModel::Behavior With(const std::function<void(TisModel::Behavior&)>& set) {
  TisModel::Behavior b;
  set(b);
  return b;
}

SecretBytes RandomKey() { return std::move(SecretBytes::Random(32)).value(); }

// The daemon's real start-up path: config string -> TIS TCTI -> Esys ->
// SRK + SK bind, then a second open (as after a restart) unbinds.
TEST_F(TisTctiTest, HostTpmProvisionAndRecoverThroughTis) {
  auto model = Model(With([](TisModel::Behavior& b) { b.max_burst = 8; b.burst_stall_every = 5; b.firmware_active = 0; }));
  HostTpmConfig cfg;
  cfg.tcti = "tis:locality=0";
  cfg.open_tis_window = [&](const tis::Options& o) -> Result<std::unique_ptr<tis::Registers>> {
    EXPECT_EQ(o.locality, 0);
    EXPECT_EQ(o.base, 0xfed40000u);
    return model->Window();
  };
  SecretBytes master = RandomKey();
  ManagerKeys keys;
  {
    auto h = HostTpm::Open(cfg);
    ASSERT_TRUE(h.ok()) << h.status().message();
    auto k = (*h)->Provision(master);
    ASSERT_TRUE(k.ok()) << k.status().message();
    keys = std::move(k).value();
  }
  EXPECT_EQ(model->active_locality(), -1) << "locality not relinquished on close";
  int after_provision = model->commands();
  EXPECT_GT(after_provision, 10);
  {
    auto h = HostTpm::Open(cfg);
    ASSERT_TRUE(h.ok()) << h.status().message();
    auto back = (*h)->Recover(keys);
    ASSERT_TRUE(back.ok()) << back.status().message();
    ASSERT_EQ(back->size(), master.size());
    EXPECT_TRUE(std::equal(back->data(), back->data() + back->size(), master.data()));
  }
  EXPECT_GT(model->commands(), after_provision);
  EXPECT_EQ(model->burst_violations(), 0);
  EXPECT_EQ(model->largest_burst_used(), 8u);
  for (uint8_t l : model->command_localities()) EXPECT_EQ(l, 0);
  EXPECT_TRUE(swtpm_->Tool("tpm2_readpublic -c 0x81000001"));  // the SRK really went to the swtpm
}

TEST_F(TisTctiTest, LocalityRequestAndRelinquish) {
  auto model = Model();
  EXPECT_EQ(model->active_locality(), -1);
  EXPECT_EQ(model->Read8(tis::LocalityOffset(2, tis::kAccess)), 0x81);
  {
    auto t = Open(*model, 2);
    ASSERT_TRUE(t);
    EXPECT_EQ(model->active_locality(), 2);
    EXPECT_EQ(model->Read8(tis::LocalityOffset(2, tis::kAccess)), 0xa1);  // measured on QEMU's TIS
    EXPECT_EQ(t->did_vid(), 0x00011014u);
    ExpectRandom(*t, 8);
    // Through the TSS2 function table, as Esys does.
    TSS2_TCTI_CONTEXT* c = t->context();
    ASSERT_EQ(Tss2_Tcti_SetLocality(c, 1), TSS2_RC_SUCCESS);
    EXPECT_EQ(model->active_locality(), 1);
    EXPECT_EQ(model->Read8(tis::LocalityOffset(2, tis::kAccess)), 0x81);
    ExpectRandom(*t, 4);
    EXPECT_EQ(Tss2_Tcti_SetLocality(c, 4), TSS2_TCTI_RC_BAD_VALUE);
    EXPECT_NE(t->last_error().message().find("not 0-3"), std::string::npos);
  }
  EXPECT_EQ(model->active_locality(), -1);
  EXPECT_EQ(model->Read8(tis::LocalityOffset(1, tis::kAccess)), 0x81);
  ASSERT_EQ(model->command_localities().size(), 2u);
  EXPECT_EQ(model->command_localities()[0], 2);  // swtpm was told each command's locality
  EXPECT_EQ(model->command_localities()[1], 1);
}

TEST_F(TisTctiTest, FirmwareLeftOurLocalityActive) {
  auto model = Model(With([](TisModel::Behavior& b) { b.firmware_active = 0; }));
  EXPECT_EQ(model->Read8(tis::LocalityOffset(0, tis::kAccess)), 0xa1);  // as SeaBIOS leaves it
  auto t = Open(*model, 0);
  ASSERT_TRUE(t);
  EXPECT_EQ(model->request_use_writes(), 0);  // taken as it is
  ExpectRandom(*t, 16);
}

TEST_F(TisTctiTest, FirmwareLeftAnotherLocalityActive) {
  auto model = Model(With([](TisModel::Behavior& b) { b.firmware_active = 0; }));
  auto t = Open(*model, 2, Fast());
  ASSERT_TRUE(t);
  EXPECT_EQ(model->active_locality(), 2);  // locality 0 relinquished on firmware's behalf
  EXPECT_EQ(model->Read8(tis::LocalityOffset(0, tis::kAccess)) & tis::kAccessActiveLocality, 0);
  ExpectRandom(*t, 8);
}

TEST_F(TisTctiTest, BurstCountIsRespected) {
  for (uint16_t burst : {1, 3, 8, 64}) {
    SCOPED_TRACE(burst);
    auto model = Model(With([&](TisModel::Behavior& b) { b.max_burst = burst; b.burst_stall_every = 3; }));
    auto t = Open(*model, 0);
    ASSERT_TRUE(t);
    ExpectRandom(*t, 32);
    ExpectRandom(*t, 1);
    EXPECT_EQ(model->burst_violations(), 0);
    EXPECT_EQ(model->largest_burst_used(), std::min<size_t>(burst, 34));  // the 44-byte response's body
  }
}

TEST_F(TisTctiTest, NeverReadyTimesOutNamingTheRegister) {
  auto model = Model(With([](TisModel::Behavior& b) { b.never_ready = true; }));
  auto t = Open(*model, 0, Fast());
  ASSERT_TRUE(t);
  auto start = std::chrono::steady_clock::now();
  Status s = t->Transmit(GetRandom(8));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kTimeout);
  EXPECT_NE(s.message().find("STS_0"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("no commandReady within 100 ms (TIMEOUT_B)"), std::string::npos) << s.message();
  // The TSS2 view reports an I/O error and keeps the detail.
  EXPECT_EQ(Tss2_Tcti_Transmit(t->context(), GetRandom(8).size(), GetRandom(8).data()), TSS2_TCTI_RC_IO_ERROR);
  EXPECT_NE(t->last_error().message().find("TIMEOUT_B"), std::string::npos);
  EXPECT_EQ(model->commands(), 0);
}

TEST_F(TisTctiTest, CommandThatNeverCompletes) {
  auto model = Model(With([](TisModel::Behavior& b) { b.exec_polls = 1 << 30; }));
  auto t = Open(*model, 0, Fast());
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Transmit(GetRandom(8)).ok());
  // A bounded receive says "try again" and leaves the command running.
  size_t size = 4096;
  uint8_t buf[4096];
  EXPECT_EQ(Tss2_Tcti_Receive(t->context(), &size, buf, 20), TSS2_TCTI_RC_TRY_AGAIN);
  model->behavior().exec_polls = 1;  // (takes effect on the next command)
  auto start = std::chrono::steady_clock::now();
  auto r = t->Receive(-1ms);  // blocking: bounded by Timeouts::command
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kTimeout);
  EXPECT_NE(r.status().message().find("no dataAvail after tpmGo within 300 ms"), std::string::npos)
      << r.status().message();
  ExpectRandom(*t, 8);  // aborted with commandReady: the next command works
}

TEST_F(TisTctiTest, TryAgainThenResponseThroughTss2Receive) {
  auto model = Model(With([](TisModel::Behavior& b) { b.exec_polls = 30; }));
  auto t = Open(*model, 0);
  ASSERT_TRUE(t);
  Bytes cmd = GetRandom(16);
  ASSERT_EQ(Tss2_Tcti_Transmit(t->context(), cmd.size(), cmd.data()), TSS2_RC_SUCCESS);
  size_t size = 0;
  EXPECT_EQ(Tss2_Tcti_Receive(t->context(), &size, nullptr, 0), TSS2_TCTI_RC_TRY_AGAIN);
  ASSERT_EQ(Tss2_Tcti_Receive(t->context(), &size, nullptr, TSS2_TCTI_TIMEOUT_BLOCK), TSS2_RC_SUCCESS);
  EXPECT_EQ(size, 28u);  // size query; the response stays
  uint8_t small[8];
  size_t small_size = sizeof small;
  EXPECT_EQ(Tss2_Tcti_Receive(t->context(), &small_size, small, 0), TSS2_TCTI_RC_INSUFFICIENT_BUFFER);
  uint8_t buf[64];
  size = sizeof buf;
  ASSERT_EQ(Tss2_Tcti_Receive(t->context(), &size, buf, 0), TSS2_RC_SUCCESS);
  EXPECT_EQ(size, 28u);
  EXPECT_EQ(LoadBe32(buf + 6), 0u);
  EXPECT_EQ(Tss2_Tcti_Receive(t->context(), &size, buf, 0), TSS2_TCTI_RC_BAD_SEQUENCE);
  EXPECT_EQ(Tss2_Tcti_Cancel(t->context()), TSS2_TCTI_RC_BAD_SEQUENCE);
  EXPECT_EQ(Tss2_Tcti_GetPollHandles(t->context(), nullptr, &size), TSS2_TCTI_RC_NOT_IMPLEMENTED);
}

TEST_F(TisTctiTest, CancelReachesTheTpm) {
  auto model = Model(With([](TisModel::Behavior& b) { b.exec_polls = 50; }));
  auto t = Open(*model, 0);
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Transmit(GetRandom(8)).ok());
  EXPECT_EQ(Tss2_Tcti_Cancel(t->context()), TSS2_RC_SUCCESS);
  EXPECT_EQ(model->cancels(), 1);
  auto r = t->Receive(-1ms);  // this model finished anyway
  ASSERT_TRUE(r.ok()) << r.status().message();
}

struct Garble {
  const char* name;
  std::function<void(TisModel::Behavior&)> set;
  const char* expect;
};

TEST_F(TisTctiTest, ShortOrGarbledResponses) {
  const Garble cases[] = {
      {"size field below the header (the TPM serves that many bytes)",
       [](auto& b) { b.rewrite_response = [](Bytes& r) { StoreBe32(r.data() + 2, 4); }; },
       "the response ended after 4 of at least 10 bytes"},
      {"size field below the header, full header served",
       [](auto& b) {
         b.rewrite_response = [](Bytes& r) { StoreBe32(r.data() + 2, 4); };
         b.response_length = 10;
       },
       "DATA_FIFO_0: TPM response size field 4 is outside 10-4096"},
      {"size field beyond the FIFO buffer",
       [](auto& b) { b.rewrite_response = [](Bytes& r) { StoreBe32(r.data() + 2, 0x10000); }; },
       "size field 65536 is outside 10-4096"},
      {"not a TPM 2.0 tag", [](auto& b) { b.rewrite_response = [](Bytes& r) { r[0] = 0x00; r[1] = 0xc4; }; },
       "tag 0xc4 is not a TPM 2.0 response tag"},
      {"dataAvail clears inside the header", [](auto& b) { b.response_length = 6; },
       "the response ended after 6 of at least 10 bytes"},
      {"dataAvail clears inside the body", [](auto& b) { b.response_length = 15; },
       "the response ended after 15 of 20 bytes"},
      {"more bytes than the header says", [](auto& b) { b.response_length = 24; },
       "the TPM has more data after the 20 bytes"},
  };
  for (const Garble& g : cases) {
    SCOPED_TRACE(g.name);
    TisModel::Behavior b;
    g.set(b);
    auto model = Model(b);
    auto t = Open(*model, 0, Fast());
    ASSERT_TRUE(t);
    ASSERT_TRUE(t->Transmit(GetRandom(8)).ok());
    auto r = t->Receive(-1ms);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kCorruption);
    EXPECT_NE(r.status().message().find(g.expect), std::string::npos) << r.status().message();
    // Through tss2 the same failure is a malformed response.
    ASSERT_TRUE(t->Transmit(GetRandom(8)).ok());
    uint8_t buf[4096];
    size_t size = sizeof buf;
    EXPECT_EQ(Tss2_Tcti_Receive(t->context(), &size, buf, -1), TSS2_TCTI_RC_MALFORMED_RESPONSE);
    // The TCTI recovers once the TPM behaves.
    model->behavior().rewrite_response = nullptr;
    model->behavior().response_length.reset();
    ExpectRandom(*t, 8);
  }
}

TEST_F(TisTctiTest, OpenRefusesWhatIsNotATpm2Fifo) {
  {
    auto model = Model(With([](TisModel::Behavior& b) { b.did_vid = 0xffffffff; }));
    auto r = tis::Tcti::Open(model->Window(), 0, Fast());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("DID_VID reads 0xffffffff"), std::string::npos) << r.status().message();
  }
  {
    auto model = Model(With([](TisModel::Behavior& b) { b.interface_id = 1; }));
    auto r = tis::Tcti::Open(model->Window(), 0, Fast());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("CRB interface"), std::string::npos) << r.status().message();
  }
  {
    auto model = Model(With([](TisModel::Behavior& b) { b.family = 0; }));
    auto r = tis::Tcti::Open(model->Window(), 0, Fast());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("is not a TPM 2.0: STS_0"), std::string::npos) << r.status().message();
    EXPECT_EQ(model->active_locality(), -1);  // given back
  }
}

TEST_F(TisTctiTest, BadCommandsAreRefusedBeforeTheFifo) {
  auto model = Model();
  auto t = Open(*model, 0);
  ASSERT_TRUE(t);
  Bytes cmd = GetRandom(8);
  cmd.pop_back();
  Status s = t->Transmit(cmd);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("differs from its length 11"), std::string::npos) << s.message();
  EXPECT_EQ(Tss2_Tcti_Transmit(t->context(), 4, cmd.data()), TSS2_TCTI_RC_BAD_VALUE);
  EXPECT_EQ(Tss2_Tcti_Receive(t->context(), nullptr, nullptr, 0), TSS2_TCTI_RC_BAD_REFERENCE);
  EXPECT_EQ(model->commands(), 0);
  ExpectRandom(*t, 8);
}

TEST_F(TisTctiTest, HostTpmRefusesBadTisOptions) {
  HostTpmConfig cfg;
  cfg.tcti = "tis:locality=0,bogus=1";
  bool opened = false;
  cfg.open_tis_window = [&](const tis::Options&) -> Result<std::unique_ptr<tis::Registers>> {
    opened = true;
    return Status(Code::kInternal, "must not be reached");
  };
  auto h = HostTpm::Open(cfg);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), Code::kInvalidArgument);
  EXPECT_NE(h.status().message().find("unknown option 'bogus'"), std::string::npos) << h.status().message();
  EXPECT_FALSE(opened);
}

TEST_F(TisTctiTest, HostTpmStartRefusesATpmThatNeverGetsReady) {
  auto model = Model(With([](TisModel::Behavior& b) { b.never_ready = true; }));
  HostTpmConfig cfg;
  cfg.tcti = "tis:locality=0";
  cfg.open_tis_window = [&](const tis::Options&) -> Result<std::unique_ptr<tis::Registers>> { return model->Window(); };
  auto start = std::chrono::steady_clock::now();
  auto h = HostTpm::Open(cfg);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);  // one TIMEOUT_B (2 s), no hang
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(RefusalOf(h.status()), Refusal::kTpmUnavailable);
  EXPECT_NE(h.status().message().find("Startup(CLEAR) failed: STS_0 = "), std::string::npos) << h.status().message();
  EXPECT_NE(h.status().message().find("no commandReady within 2000 ms (TIMEOUT_B)"), std::string::npos)
      << h.status().message();
  EXPECT_EQ(model->active_locality(), -1);  // given back on the way out
}

TEST_F(TisTctiTest, HostTpmReportsAWindowThatCannotOpen) {
  HostTpmConfig cfg;
  cfg.tcti = "tis:locality=0";
  cfg.open_tis_window = [](const tis::Options&) -> Result<std::unique_ptr<tis::Registers>> {
    return Status(Code::kPermissionDenied, "mmap /dev/mem ... failed: Operation not permitted");
  };
  auto h = HostTpm::Open(cfg);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(RefusalOf(h.status()), Refusal::kTpmUnavailable);
  EXPECT_NE(h.status().message().find("TCTI 'tis:locality=0': mmap /dev/mem"), std::string::npos)
      << h.status().message();
}

}  // namespace
}  // namespace vtpm
