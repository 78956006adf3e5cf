// The manager refuses - never resets - when the host TPM cannot unbind its
// master key, and leaves the database byte-for-byte as it was (.dump).
#include "store/refusal.h"
#include "store_fault_util.h"

namespace vtpm::testing {
namespace {

class TpmRefusal : public ::testing::Test {
 protected:
  void StartTpm(const std::string& name) {
    tpm_.reset();
    auto s = Swtpm::Start(dir_.Sub(name));
    ASSERT_TRUE(s.ok()) << s.status().message();
    tpm_.emplace(std::move(s).value());
  }
  StoreOptions Opts(std::vector<uint32_t> pcrs = {}) {
    StoreOptions o = OptionsIn(dir_);
    o.host_tpm.tcti = tpm_->tcti();
    o.host_tpm.flush_leftovers = true;
    o.host_tpm.pcr_policy = std::move(pcrs);
    return o;
  }
  // First start provisions; a few instances get state.
  void Provision(const StoreOptions& o) {
    auto s = OpenStore(o);
    ASSERT_TRUE(s.ok()) << s.status().message();
    ASSERT_TRUE(CreateInstances(**s, 4).ok());
    ASSERT_TRUE((*s)->CommitSync(NextCommit(2, 1)).ok());
  }
  std::string Dump() { return SqliteDump(OptionsIn(dir_).state_dir + "/" + kStoreDbName); }
  void ExpectRefused(const StoreOptions& o, Refusal why, const std::string& words) {
    const std::string before = Dump();
    ASSERT_NE(before.find("CREATE TABLE instances"), std::string::npos) << before.substr(0, 300);
    auto s = OpenStore(o);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(RefusalOf(s.status()), why) << s.status().message();
    EXPECT_NE(s.status().message().find(words), std::string::npos) << s.status().message();
    EXPECT_EQ(StartExitStatus(s.status()), 10 + int(why));
    EXPECT_EQ(Dump(), before);
    // Refusing twice changes nothing either (no half-provisioned state left behind).
    auto again = OpenStore(o);
    EXPECT_EQ(RefusalOf(again.status()), why);
    EXPECT_EQ(Dump(), before);
  }
  TempDir dir_;
  std::optional<Swtpm> tpm_;
};

TEST_F(TpmRefusal, RestartUnbindsAndReadsEveryInstance) {
  StartTpm("tpm-a");
  Provision(Opts());
  StartTpm("tpm-a");  // power cycle of the same TPM
  auto s = OpenStore(Opts());
  ASSERT_TRUE(s.ok()) << s.status().message();
  std::map<int, uint64_t> gens = {{0, 1}, {1, 1}, {2, 2}, {3, 1}};
  auto found = VerifyStore(**s, gens);
  EXPECT_EQ(found, gens);
}

TEST_F(TpmRefusal, DifferentTpmIsRefused) {
  StartTpm("tpm-a");
  Provision(Opts());
  StartTpm("tpm-b");  // a fresh swtpm: another TPM
  ExpectRefused(Opts(), Refusal::kDifferentTpm, "not the one this store was provisioned on");
}

TEST_F(TpmRefusal, ClearedOwnerHierarchyIsRefused) {
  StartTpm("tpm-a");
  Provision(Opts());
  ASSERT_TRUE(tpm_->Tool("tpm2_clear -c p"));
  ExpectRefused(Opts(), Refusal::kOwnerCleared, "owner hierarchy was cleared");
}

TEST_F(TpmRefusal, ChangedPcrIsRefused) {
  StartTpm("tpm-a");
  Provision(Opts({7, 16}));
  {
    auto s = OpenStore(Opts({7, 16}));  // unchanged PCRs: opens
    ASSERT_TRUE(s.ok()) << s.status().message();
    auto st = (*s)->GetStatus();
    ASSERT_TRUE(st.ok());
    EXPECT_NE(st->key_protection.find("sha256:7,16"), std::string::npos) << st->key_protection;
    EXPECT_EQ(st->pcr_values.size(), 2u);
  }
  ASSERT_TRUE(tpm_->Tool("tpm2_pcrextend 16:sha256=" + std::string(64, 'b')));
  ExpectRefused(Opts({7, 16}), Refusal::kPcrChanged, "sha256:7,16");
}

}  // namespace
}  // namespace vtpm::testing
