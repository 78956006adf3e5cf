// HostTpm and OpenStore against a real swtpm (TPM 2.0) started per test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

#include "host_tpm_swtpm.h"
#include "store/open_store.h"
#include "store/refusal.h"
#include "tpm/host/host_tpm.h"

namespace vtpm {
namespace {

using testing::Swtpm;
using testing::TempDir;

class HostTpmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Swtpm::Start(dir_.Sub("swtpm"));
    ASSERT_TRUE(s.ok()) << s.status().message();
    tpm_.emplace(std::move(s).value());
  }
  HostTpmConfig Config(std::vector<uint32_t> pcrs = {}) const {
    HostTpmConfig c;
    c.tcti = tpm_->tcti();
    c.pcr_policy = std::move(pcrs);
    c.flush_leftovers = true;  // swtpm has no resource manager
    return c;
  }
  std::unique_ptr<HostTpm> Open(const HostTpmConfig& c) {
    auto h = HostTpm::Open(c);
    EXPECT_TRUE(h.ok()) << h.status().message();
    return h.ok() ? std::move(h).value() : nullptr;
  }
  void Restart() {
    tpm_.reset();
    auto s = Swtpm::Start(dir_.Sub("swtpm"));
    ASSERT_TRUE(s.ok()) << s.status().message();
    tpm_.emplace(std::move(s).value());
  }
  TempDir dir_;
  std::optional<Swtpm> tpm_;
};

SecretBytes RandomKey() { return std::move(SecretBytes::Random(32)).value(); }
bool Same(const SecretBytes& a, const SecretBytes& b) {
  return a.size() == b.size() && std::equal(a.data(), a.data() + a.size(), b.data());
}

TEST_F(HostTpmTest, ProvisionThenRecoverAfterPowerCycle) {
  SecretBytes master = RandomKey();
  ManagerKeys keys;
  {
    auto h = Open(Config());
    ASSERT_TRUE(h);
    auto k = h->Provision(master);
    ASSERT_TRUE(k.ok()) << k.status().message();
    keys = std::move(k).value();
  }
  EXPECT_FALSE(keys.srk_name.empty());
  EXPECT_FALSE(keys.tpm_id.empty());
  EXPECT_FALSE(keys.bound_master.empty());
  EXPECT_TRUE(keys.pcrs.empty());
  Restart();
  auto h = Open(Config());
  ASSERT_TRUE(h);
  auto back = h->Recover(keys);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(Same(*back, master));
  EXPECT_TRUE(tpm_->Tool("tpm2_readpublic -c 0x81000001"));  // the SRK was persisted
}

TEST_F(HostTpmTest, TransientSrkIsRecreatedFromTemplate) {
  HostTpmConfig c = Config();
  c.persist_srk = false;
  SecretBytes master = RandomKey();
  auto h = Open(c);
  ASSERT_TRUE(h);
  auto keys = h->Provision(master);
  ASSERT_TRUE(keys.ok()) << keys.status().message();
  EXPECT_FALSE(tpm_->Tool("tpm2_readpublic -c 0x81000001"));
  auto back = h->Recover(*keys);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(Same(*back, master));
}

TEST_F(HostTpmTest, ReplacedPersistentKeyFallsBackToTemplate) {
  SecretBytes master = RandomKey();
  auto h = Open(Config());
  ASSERT_TRUE(h);
  auto keys = h->Provision(master);
  ASSERT_TRUE(keys.ok());
  // Another tool evicts our SRK and puts a different key at the handle.
  ASSERT_TRUE(tpm_->Tool("tpm2_evictcontrol -C o -c 0x81000001"));
  const std::string ctx = dir_.Sub("other.ctx");
  ASSERT_TRUE(tpm_->Tool("tpm2_createprimary -C o -G ecc -c " + ctx));
  ASSERT_TRUE(tpm_->Tool("tpm2_evictcontrol -C o -c " + ctx + " 0x81000001"));
  ASSERT_TRUE(tpm_->Tool("tpm2_flushcontext -t"));
  auto back = h->Recover(*keys);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(Same(*back, master));
}

TEST_F(HostTpmTest, PcrSealedKeyRefusesAfterExtend) {
  SecretBytes master = RandomKey();
  auto h = Open(Config({16, 23}));
  ASSERT_TRUE(h);
  auto keys = h->Provision(master);
  ASSERT_TRUE(keys.ok()) << keys.status().message();
  EXPECT_TRUE(keys->bound_master.empty());
  auto before = h->ReadPcrs({16});
  ASSERT_TRUE(before.ok());
  ASSERT_EQ(before->size(), 1u);
  EXPECT_EQ((*before)[0].second.size(), 32u);
  auto back = h->Recover(*keys);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(Same(*back, master));

  ASSERT_TRUE(tpm_->Tool("tpm2_pcrextend 16:sha256=" + std::string(64, 'a')));
  auto after = h->ReadPcrs({16});
  ASSERT_TRUE(after.ok());
  EXPECT_NE((*after)[0].second, (*before)[0].second);
  auto refused = h->Recover(*keys);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(RefusalOf(refused.status()), Refusal::kPcrChanged) << refused.status().message();
  EXPECT_NE(refused.status().message().find("sha256:16,23"), std::string::npos);
}

// swtpm has no resource manager and 3 object slots: a leaked handle on any
// path would show in getcap and soon fail loads with TPM_RC_OBJECT_MEMORY.
TEST_F(HostTpmTest, NoHandleLeftLoadedOnAnyPath) {
  SecretBytes master = RandomKey();
  HostTpmConfig c = Config({16});
  c.flush_leftovers = false;
  auto h = Open(c);
  ASSERT_TRUE(h);
  auto keys = h->Provision(master);
  ASSERT_TRUE(keys.ok()) << keys.status().message();
  ManagerKeys bad_blob = *keys;
  bad_blob.key_private.back() ^= 1;
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(h->Recover(*keys).ok());
    EXPECT_EQ(RefusalOf(h->Recover(bad_blob).status()), Refusal::kBadManagerRecord);
  }
  ASSERT_TRUE(tpm_->Tool("tpm2_pcrextend 16:sha256=" + std::string(64, 'c')));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(RefusalOf(h->Recover(*keys).status()), Refusal::kPcrChanged);
  for (const char* cap : {"handles-transient", "handles-loaded-session"}) {
    auto text = tpm_->ToolOutput(std::string("tpm2_getcap ") + cap);
    ASSERT_TRUE(text) << cap;
    EXPECT_EQ(text->find("0x"), std::string::npos) << cap << " left loaded:\n" << *text;
  }
}

TEST_F(HostTpmTest, UnreachableTpmIsUnavailable) {
  HostTpmConfig c = Config();
  tpm_.reset();  // nothing listens there any more
  auto h = HostTpm::Open(c);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(RefusalOf(h.status()), Refusal::kTpmUnavailable);
  EXPECT_NE(h.status().message().find(c.tcti), std::string::npos);
}

TEST_F(HostTpmTest, OpenStoreProvisionsThenUnbindsAndReadsBack) {
  StoreOptions o;
  o.state_dir = dir_.Sub("state");
  o.runtime_dir = dir_.Sub("run");
  o.host_tpm = Config();
  std::vector<Uuid> ids;
  {
    auto s = OpenStore(o);
    ASSERT_TRUE(s.ok()) << s.status().message();
    for (int i = 0; i < 5; ++i) {
      InstanceMeta m;
      m.uuid.bytes[0] = uint8_t(i + 1);
      ids.push_back(m.uuid);
      ASSERT_TRUE((*s)->Create(m, {{BlobKind::kPermanent, Bytes(64, uint8_t(i))}}).ok());
    }
    auto st = (*s)->GetStatus();
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->host_tpm_transport, o.host_tpm.tcti);
    EXPECT_EQ(st->instances, 5u);
    EXPECT_EQ(st->pcr_values.size(), 8u);
    EXPECT_NE(st->key_protection.find("SK"), std::string::npos);
  }
  Restart();
  o.host_tpm.tcti = tpm_->tcti();
  auto s = OpenStore(o);
  ASSERT_TRUE(s.ok()) << s.status().message();
  for (int i = 0; i < 5; ++i) {
    auto l = (*s)->Load(ids[size_t(i)]);
    ASSERT_TRUE(l.ok()) << l.status().message();
    EXPECT_EQ(l->permanent, Bytes(64, uint8_t(i)));
  }
  // A store made with a test key is not opened through the TPM, and vice versa.
  s = Status(Code::kInternal, "closed");
  auto with_key = OpenStoreWithKey(o, RandomKey());
  EXPECT_EQ(RefusalOf(with_key.status()), Refusal::kBadManagerRecord);
}

TEST_F(HostTpmTest, ForeignKeyAtSrkHandleIsRefusedAndOurOwnSrkIsReused) {
  const std::string ctx = dir_.Sub("foreign.ctx");
  ASSERT_TRUE(tpm_->Tool("tpm2_createprimary -C o -G rsa2048 -a 'fixedtpm|fixedparent|sensitivedataorigin|"
                         "userwithauth|decrypt|sign' -c " + ctx));
  ASSERT_TRUE(tpm_->Tool("tpm2_evictcontrol -C o -c " + ctx + " 0x81000001"));
  auto h = Open(Config());
  ASSERT_TRUE(h);
  auto refused = h->Provision(RandomKey());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(RefusalOf(refused.status()), Refusal::kForeignSrk) << refused.status().message();
  EXPECT_NE(refused.status().message().find("0x81000001"), std::string::npos) << refused.status().message();
  EXPECT_NE(refused.status().message().find("not create"), std::string::npos) << refused.status().message();
  ASSERT_TRUE(tpm_->Tool("tpm2_evictcontrol -C o -c 0x81000001"));
  // The SRK a first provisioning persisted has the template: a second one uses it.
  auto first = h->Provision(RandomKey());
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_TRUE(h->created_srk());
  auto second = h->Provision(RandomKey());
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_FALSE(h->created_srk());
  EXPECT_EQ(second->srk_name, first->srk_name);
}

TEST_F(HostTpmTest, DictionaryAttackLockoutIsReportedAsLockout) {
  SecretBytes master = RandomKey();
  auto h = Open(Config());
  ASSERT_TRUE(h);
  auto keys = h->Provision(master);
  ASSERT_TRUE(keys.ok()) << keys.status().message();
  // One failed authorisation allowed, then spent by a wrong password on an
  // index of another user: the TPM refuses every DA-protected
  // authorisation (the SK's) from then on.
  ASSERT_TRUE(tpm_->Tool("tpm2_dictionarylockout --setup-parameters --max-tries=1 --recovery-time=600 "
                         "--lockout-recovery-time=600"));
  ASSERT_TRUE(tpm_->Tool("tpm2_nvdefine 0x1500016 -C o -s 8 -a 'authread|authwrite' -p good"));
  ASSERT_FALSE(tpm_->Tool("tpm2_nvread 0x1500016 -C 0x1500016 -P bad"));
  auto locked = h->Recover(*keys);
  ASSERT_FALSE(locked.ok());
  EXPECT_EQ(RefusalOf(locked.status()), Refusal::kTpmLockout) << locked.status().message();
  EXPECT_NE(locked.status().message().find("TPM_RC_LOCKOUT"), std::string::npos);
  EXPECT_EQ(StartExitStatus(locked.status()), 20);
}

TEST_F(HostTpmTest, LostStoreIsRefusedUntilReinitialised) {
  StoreOptions o;
  o.state_dir = dir_.Sub("state");
  o.runtime_dir = dir_.Sub("run");
  o.host_tpm = Config();
  const std::string db = o.state_dir + "/" + kStoreDbName;
  ASSERT_TRUE(OpenStore(o).ok());
  ASSERT_EQ(::rename(db.c_str(), dir_.Sub("moved.db").c_str()), 0);
  auto lost = OpenStore(o);
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(RefusalOf(lost.status()), Refusal::kStoreLost) << lost.status().message();
  EXPECT_NE(lost.status().message().find(db + " does not exist"), std::string::npos) << lost.status().message();
  EXPECT_NE(::access(db.c_str(), F_OK), 0);
  // Another state directory on the same host TPM is the same lost store, named where it was.
  StoreOptions other = o;
  other.state_dir = dir_.Sub("typo");
  auto typo = OpenStore(other);
  EXPECT_EQ(RefusalOf(typo.status()), Refusal::kStoreLost);
  EXPECT_NE(typo.status().message().find("The store was at " + db), std::string::npos) << typo.status().message();
  EXPECT_NE(::access(other.state_dir.c_str(), F_OK), 0);
  // The way out.
  ASSERT_TRUE(ReinitialiseStore(o).ok());
  EXPECT_EQ(ReinitialiseStore(o).code(), Code::kAlreadyExists);
  EXPECT_TRUE(OpenStore(o).ok());
}

}  // namespace
}  // namespace vtpm
