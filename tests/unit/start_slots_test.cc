// StartSlots (tpm/start_slots.h): a slot passes from lease to waiter in the
// order asked, from the loop, and a waiter that drops its lease passes it on.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tpm/start_slots.h"

namespace vtpm {
namespace {

class StartSlotsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
  }
  void Drain() {
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(loop_->RunOnce(std::chrono::milliseconds(0)).ok());
  }
  std::unique_ptr<EventLoop> loop_;
};

TEST_F(StartSlotsTest, WaitersGetTheSlotInOrderFromTheLoop) {
  auto slots = StartSlots::Create(*loop_, 2);
  std::vector<std::string> started;
  std::vector<StartSlots::Lease> leases(4);
  for (int i = 0; i < 4; ++i)
    slots->Acquire([&, i](StartSlots::Lease l) {
      started.push_back(std::to_string(i));
      leases[size_t(i)] = std::move(l);
    });
  EXPECT_EQ(started, (std::vector<std::string>{"0", "1"}));
  EXPECT_EQ(slots->held(), 2u);
  EXPECT_EQ(slots->waiting(), 2u);
  leases[1].Reset();
  EXPECT_EQ(started.size(), 2u) << "a waiter ran inside Reset()";
  // A new Acquire cannot jump the queue: the returned slot is promised already.
  slots->Acquire([&](StartSlots::Lease) { started.push_back("late"); });
  Drain();
  EXPECT_EQ(started, (std::vector<std::string>{"0", "1", "2"}));
  EXPECT_EQ(slots->held(), 2u);
  leases[0].Reset();
  leases[2].Reset();
  Drain();
  // "late" dropped its lease at once, which went to no one else.
  EXPECT_EQ(started, (std::vector<std::string>{"0", "1", "2", "3", "late"}));
  EXPECT_EQ(slots->held(), 1u);
  leases[3].Reset();
  EXPECT_EQ(slots->held(), 0u);
  EXPECT_EQ(slots->waiting(), 0u);
}

TEST_F(StartSlotsTest, AWaiterThatDropsItsLeasePassesTheSlotOn) {
  auto slots = StartSlots::Create(*loop_, 1);
  StartSlots::Lease first, third;
  bool second_ran = false;
  slots->Acquire([&](StartSlots::Lease l) { first = std::move(l); });
  slots->Acquire([&](StartSlots::Lease) { second_ran = true; });  // no longer wants it
  slots->Acquire([&](StartSlots::Lease l) { third = std::move(l); });
  first.Reset();
  Drain();
  EXPECT_TRUE(second_ran);
  EXPECT_TRUE(third.held());
  EXPECT_EQ(slots->held(), 1u);
}

TEST_F(StartSlotsTest, LeasesOutliveTheirSlotsSafely) {
  StartSlots::Lease kept;
  {
    auto slots = StartSlots::Create(*loop_, 1);
    slots->Acquire([&](StartSlots::Lease l) { kept = std::move(l); });
    EXPECT_TRUE(kept.held());
  }
  EXPECT_FALSE(kept.held());
  kept.Reset();  // nothing to return to
}

TEST(StartSlotsLimit, DefaultIsTwoStartUpsPerCpu) {
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  EXPECT_EQ(StartSlots::DefaultLimit(), 2 * size_t(std::max(cpus, 1L)));
}

}  // namespace
}  // namespace vtpm
