// The real vtpmmgrd's command path on the simulated host: volume, many
// guests at once, CANCEL, and every malformed page header (protocol doc §1).
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "backend_test_util.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
const std::string kUuid = "1b2c3d4e-5f60-4172-8394-a5b6c7d8e9f0";
const std::string kSlowUuid = "2c3d4e5f-6071-4283-94a5-b6c7d8e9f0a1";

std::string Uuid32(int i) {
  char b[40];
  std::snprintf(b, sizeof b, "%08x-0000-4000-8000-%012x", 0x10000 + i, i + 1);
  return b;
}

TEST_F(BackendSimTest, AThousandCommandsInARow) {
  StartDaemon();
  CreateDomain(5, kUuid);
  GuestFrontend& g = Guest(5);
  ASSERT_TRUE(g.Connect().ok());
  uint32_t seq = EchoSequence(*g.first_response());
  auto t0 = Clock::now();
  for (int i = 0; i < 1000; ++i) {
    auto rsp = g.Transmit(TestCommand(0x15, size_t(i % 200), uint8_t(i)), 5s);
    ASSERT_TRUE(rsp.ok()) << "command " << i << ": " << rsp.status().ToString();
    ASSERT_EQ(EchoSequence(*rsp), ++seq);
    ASSERT_EQ(rsp->size(), size_t(14 + i % 200));
  }
  std::cout << "1000 commands took " << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()
            << " ms\n";
}

TEST_F(BackendSimTest, ThirtyTwoGuestsAreNotHeldUpByASlowOne) {
  StartDaemon("[engine]\nkind = \"scripted\"\nscripted_slow_uuids = [\"" + kSlowUuid +
              "\"]\nscripted_slow_delay_ms = 2000\n");
  CreateDomain(40, kSlowUuid);
  GuestFrontend& slow = Guest(40);
  FrontendOptions unused;
  (void)unused;
  std::vector<GuestFrontend*> fast;
  for (int i = 0; i < 31; ++i) {
    CreateDomain(uint32_t(41 + i), Uuid32(i));
    fast.push_back(&Guest(uint32_t(41 + i)));
  }
  // The slow guest's first command already takes 2 s: connect it in the background.
  std::thread slow_thread([&] { EXPECT_TRUE(slow.Connect().ok()); });
  std::this_thread::sleep_for(100ms);
  for (auto* g : fast) ASSERT_TRUE(g->Connect().ok());

  std::atomic<bool> slow_done{false};
  Clock::time_point slow_started = Clock::now();
  slow_thread.join();
  std::thread slow_cmd([&] {
    slow_started = Clock::now();
    auto r = slow.Transmit(TestCommand(0x65), 10s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    slow_done = true;
  });
  std::this_thread::sleep_for(50ms);
  auto t0 = Clock::now();
  std::vector<std::thread> workers;
  std::atomic<int> ok{0};
  for (auto* g : fast)
    workers.emplace_back([g, &ok] {
      for (int i = 0; i < 10; ++i) {
        auto r = g->Transmit(TestCommand(0x15), 5s);
        if (r.ok()) ++ok;
        else ADD_FAILURE() << "domid " << g->frontend_path() << " command " << i << ": " << r.status().ToString();
      }
    });
  for (auto& w : workers) w.join();
  auto fast_elapsed = Clock::now() - t0;
  bool slow_was_busy = !slow_done.load();
  slow_cmd.join();
  EXPECT_EQ(ok.load(), 310);
  EXPECT_TRUE(slow_was_busy) << "the 31 fast guests finished only after the slow one";
  EXPECT_LT(fast_elapsed, 1900ms);
}

TEST_F(BackendSimTest, CancelWhileIdleGoesIdle) {
  StartDaemon();
  CreateDomain(5, kUuid);
  GuestFrontend& g = Guest(5);
  ASSERT_TRUE(g.Connect().ok());
  g.Cancel();
  ASSERT_TRUE(g.WaitIdle(2s));
  EXPECT_EQ(g.state(), kIdle);
}

TEST_F(BackendSimTest, CancelWhileBusyFinishesIfTheCommandEndsWithinTimeoutC) {
  StartDaemon("[engine]\nkind = \"scripted\"\nscripted_delay_ms = 300\n");
  CreateDomain(5, kUuid);
  GuestFrontend& g = Guest(5);
  ASSERT_TRUE(g.Connect().ok());
  Bytes cmd = TestCommand(0x15);
  g.WritePayload(kRingHeader, cmd);
  g.WriteHeader(uint32_t(cmd.size()), kSubmit, 0, 0);
  ASSERT_TRUE(g.Notify().ok());
  std::this_thread::sleep_for(50ms);
  g.Cancel();
  ASSERT_TRUE(g.WaitIdle(3s));
  EXPECT_EQ(g.state(), kFinish);
  EXPECT_EQ(g.length(), cmd.size() + 4);
}

TEST_F(BackendSimTest, CancelWhileBusyAbandonsACommandPastTimeoutC) {
  StartDaemon("[engine]\nkind = \"scripted\"\nscripted_slow_uuids = [\"" + kSlowUuid +
              "\"]\nscripted_slow_delay_ms = 3000\n");
  CreateDomain(5, kSlowUuid);
  GuestFrontend& g = Guest(5);
  std::thread c([&] { EXPECT_TRUE(g.Connect().ok()); });
  c.join();
  uint32_t seq = EchoSequence(*g.first_response());
  Bytes cmd = TestCommand(0x15);
  g.WritePayload(kRingHeader, cmd);
  g.WriteHeader(uint32_t(cmd.size()), kSubmit, 0, 0);
  ASSERT_TRUE(g.Notify().ok());
  std::this_thread::sleep_for(50ms);
  auto t0 = Clock::now();
  g.Cancel();
  ASSERT_TRUE(g.WaitIdle(3s));
  EXPECT_EQ(g.state(), kIdle);
  auto took = Clock::now() - t0;
  EXPECT_GE(took, 900ms);
  EXPECT_LT(took, 1500ms);
  // The abandoned command left no trace: the next one gets the next sequence.
  auto rsp = g.Transmit(TestCommand(0x65), 5s);
  ASSERT_TRUE(rsp.ok()) << rsp.status().ToString();
  EXPECT_EQ(EchoSequence(*rsp), seq + 1);
}

struct MalformedCase {
  const char* name;
  uint32_t length;
  uint8_t locality;
  uint8_t nr_extra;
  size_t payload;        // bytes of a consistent command written at the payload offset
  uint32_t expect_rc;
};

TEST_F(BackendSimTest, EachMalformedHeaderGetsItsErrorAndServiceGoesOn) {
  StartDaemon();
  CreateDomain(5, kUuid);
  GuestFrontend& g = Guest(5);
  ASSERT_TRUE(g.Connect().ok());
  const MalformedCase cases[] = {
      {"past the page", 4089, 0, 0, 0, 0x19},
      {"huge length", 0xFFFFFFF0u, 0, 0, 0, 0x19},
      {"empty", 0, 0, 0, 0, 0x19},
      {"shorter than a header", 9, 0, 0, 0, 0x19},
      {"extra pages push past the page", 4088, 0, 1, 0, 0x19},
      {"paramSize disagrees", 30, 0, 0, 20, 0x19},
      {"locality 2", 14, 2, 0, 14, 0x3D},
      {"response too big for the page", 4086, 0, 0, 4086, 0x17},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    uint32_t off = 8 + 4 * c.nr_extra;
    if (c.payload) g.WritePayload(off, TestCommand(0x15, c.payload - 10));
    g.WriteHeader(c.length, kSubmit, c.locality, c.nr_extra);
    ASSERT_TRUE(g.Notify().ok());
    ASSERT_TRUE(g.WaitIdle(3s));
    ASSERT_EQ(g.state(), kFinish);
    ASSERT_EQ(g.length(), 10u);
    Bytes rsp(g.page() + off, g.page() + off + 10);
    EXPECT_EQ(LoadBe16(rsp.data()), 0x00C4);
    EXPECT_EQ(LoadBe32(rsp.data() + 2), 10u);
    EXPECT_EQ(ReturnCode(rsp), c.expect_rc);
    // Still serving: a good command right after (Linux never sets
    // nr_extra_pages, so put it back to 0 first).
    g.WriteHeader(g.length(), kFinish, 0, 0);
    auto ok = g.Transmit(TestCommand(0x65), 5s);
    ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  }
}

TEST_F(BackendSimTest, RewritingThePageWhileBusyDoesNotConfuseTheBackend) {
  StartDaemon("[engine]\nkind = \"scripted\"\nscripted_delay_ms = 200\n");
  CreateDomain(5, kUuid);
  GuestFrontend& g = Guest(5);
  ASSERT_TRUE(g.Connect().ok());
  Bytes cmd = TestCommand(0x15, 100, 0x11);
  g.WritePayload(kRingHeader, cmd);
  g.WriteHeader(uint32_t(cmd.size()), kSubmit, 0, 0);
  ASSERT_TRUE(g.Notify().ok());
  std::this_thread::sleep_for(20ms);
  // The guest scribbles over the page and floods notifications.
  for (int i = 0; i < 50; ++i) {
    g.WritePayload(kRingHeader, TestCommand(0x99, 200, 0x22));
    g.WriteHeader(uint32_t(i * 97), kSubmit, uint8_t(i), uint8_t(i));
    (void)g.Notify();
  }
  ASSERT_TRUE(g.WaitIdle(3s));
  // The answer is to the command as it was when the backend copied it.
  ASSERT_EQ(g.state(), kFinish);
  ASSERT_EQ(g.length(), cmd.size() + 4);
  EXPECT_EQ(g.page()[kRingHeader + 14], 0x11);
}

}  // namespace
}  // namespace vtpm::sim
