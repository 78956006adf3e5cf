// LogRateLimiter on a clock the test moves: the burst, the refill, the
// summaries' counts and timing, and guests that do not share a bucket.
#include "common/log_rate_limit.h"

#include <gtest/gtest.h>

namespace vtpm {
namespace {

using namespace std::chrono_literals;
using Clock = LogRateLimiter::Clock;

class LogRateLimitTest : public ::testing::Test {
 protected:
  LogRateLimitTest() : limiter_({10, 1000ms, 10000ms}, [this] { return now_; }) {}

  GuestCtx Guest(int domid, int devid = 0) { return {domid, devid, "uuid-" + std::to_string(domid)}; }
  // Admits `n` lines; returns how many may be logged.
  int Logged(const GuestCtx& g, int n) {
    int logged = 0;
    for (int i = 0; i < n; ++i) logged += limiter_.Admit(g).log;
    return logged;
  }

  Clock::time_point now_ = Clock::time_point() + 1h;
  LogRateLimiter limiter_;
};

TEST_F(LogRateLimitTest, BurstThenOnePerRefill) {
  GuestCtx g = Guest(3);
  EXPECT_EQ(Logged(g, 100), 10);
  now_ += 999ms;
  EXPECT_EQ(Logged(g, 5), 0);
  now_ += 1ms;
  EXPECT_EQ(Logged(g, 5), 1);
  now_ += 3500ms;
  EXPECT_EQ(Logged(g, 5), 3);
  // A quiet guest gets its whole burst back, never more.
  now_ += 1h;
  EXPECT_EQ(Logged(g, 100), 10);
}

TEST_F(LogRateLimitTest, SummaryCountsSuppressedLinesAtMostOncePerInterval) {
  GuestCtx g = Guest(3, 1);
  EXPECT_EQ(Logged(g, 25), 10);  // 15 suppressed, the first at t=0
  now_ += 4s;                    // 4 tokens
  auto d = limiter_.Admit(g);
  EXPECT_TRUE(d.log);
  EXPECT_FALSE(d.summary) << "summary before the interval";
  EXPECT_TRUE(limiter_.TakeDue().empty());
  now_ += 6s;  // 10 s after the first suppressed line
  auto due = limiter_.TakeDue();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].suppressed, 15u);
  EXPECT_EQ(due[0].ctx.domid, 3);
  EXPECT_EQ(due[0].ctx.devid, 1);
  EXPECT_EQ(due[0].ctx.uuid, "uuid-3");
  EXPECT_EQ(due[0].Message(), "suppressed 15 messages from domid 3 devid 1 (uuid uuid-3) in the last 10 s");
  EXPECT_TRUE(limiter_.TakeDue().empty()) << "one summary per window";

  // A flood: the summary comes with the guest's own line once due.
  now_ += 1h;
  EXPECT_EQ(Logged(g, 30), 10);  // 20 suppressed
  now_ += 5s;
  EXPECT_FALSE(limiter_.Admit(g).summary);  // the 5th token
  now_ += 5s;
  d = limiter_.Admit(g);
  ASSERT_TRUE(d.summary);
  EXPECT_EQ(d.summary->suppressed, 20u);
  EXPECT_TRUE(d.log);
  EXPECT_FALSE(limiter_.Admit(g).summary);
}

TEST_F(LogRateLimitTest, GuestsHaveTheirOwnBuckets) {
  GuestCtx flood = Guest(3), other = Guest(4), other_dev = Guest(3, 1);
  EXPECT_EQ(Logged(flood, 1000), 10);
  EXPECT_EQ(Logged(other, 10), 10);
  EXPECT_EQ(Logged(other_dev, 10), 10);
  now_ += 10s;
  auto due = limiter_.TakeDue();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].ctx.domid, 3);
  EXPECT_EQ(due[0].ctx.devid, 0);
  EXPECT_EQ(due[0].suppressed, 990u);
}

TEST_F(LogRateLimitTest, ForgetReturnsThePendingSummaryAndIdleGuestsAreDropped) {
  GuestCtx g = Guest(5), quiet = Guest(6);
  EXPECT_EQ(Logged(g, 12), 10);
  EXPECT_EQ(Logged(quiet, 1), 1);
  EXPECT_EQ(limiter_.tracked(), 2u);
  now_ += 2s;
  auto s = limiter_.Forget(5, 0);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->suppressed, 2u);
  EXPECT_EQ(s->Message(), "suppressed 2 messages from domid 5 devid 0 (uuid uuid-5) in the last 2 s");
  EXPECT_FALSE(limiter_.Forget(5, 0));
  // Once its bucket is full again, a guest with nothing suppressed is forgotten.
  EXPECT_TRUE(limiter_.TakeDue().empty());
  EXPECT_EQ(limiter_.tracked(), 0u);
}

}  // namespace
}  // namespace vtpm
