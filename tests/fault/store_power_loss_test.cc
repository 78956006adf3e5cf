// Power loss at random points inside commits (fault VFS drops unsynced writes).
#include <random>

#include "fault_vfs.h"
#include "store_fault_util.h"

namespace vtpm::testing {
namespace {

class StorePowerLoss : public ::testing::TestWithParam<bool> {};

TEST_P(StorePowerLoss, EveryAcknowledgedCommitSurvives) {
  FaultVfs::Register();
  FaultVfs::RestorePower();
  FaultVfs::SetTornWrites(GetParam());
  TempDir dir;
  StoreOptions o = OptionsIn(dir);
  o.sqlite_vfs = FaultVfs::kName;
  constexpr int kInstances = 12;
  std::map<int, uint64_t> acked;
  {
    auto s = OpenStoreWithKey(o, TestMaster());
    ASSERT_TRUE(s.ok()) << s.status().message();
    ASSERT_TRUE(CreateInstances(**s, kInstances).ok());
    for (int i = 0; i < kInstances; ++i) acked[i] = 1;
  }
  constexpr int kRounds = 40;
  std::mt19937 rng(12345);
  int total_acked = 0, cuts = 0;
  for (int round = 0; round < kRounds; ++round) {
    auto s = OpenStoreWithKey(o, TestMaster());
    ASSERT_TRUE(s.ok()) << "round " << round << ": " << s.status().message();
    FaultVfs::ArmPowerCut(1 + int64_t(rng() % 600));
    while (CommitRandomBatch(**s, rng, acked, 4, [&total_acked](int, uint64_t) { ++total_acked; })) {
    }
    ASSERT_TRUE(FaultVfs::PowerIsOff());
    ++cuts;
    s = Status(Code::kUnavailable, "power cut");  // close what is left
    FaultVfs::RestorePower();
    StoreOptions plain = o;
    plain.sqlite_vfs.clear();
    auto after = OpenStoreWithKey(plain, TestMaster());
    ASSERT_TRUE(after.ok()) << "round " << round << ": " << after.status().message();
    acked = VerifyStore(**after, acked);
    if (HasFailure()) return;
  }
  EXPECT_EQ(cuts, kRounds);
  EXPECT_GT(total_acked, 300);
  std::printf("power loss (%s): %d cuts, %d acknowledged commits, all present\n",
              GetParam() ? "unsynced writes torn" : "unsynced writes dropped", cuts, total_acked);
  FaultVfs::SetTornWrites(false);
}

INSTANTIATE_TEST_SUITE_P(DroppedOrTorn, StorePowerLoss, ::testing::Bool());

}  // namespace
}  // namespace vtpm::testing
