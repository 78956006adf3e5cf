// Restarting the real vtpmmgrd (SIGTERM and SIGKILL) while guests are
// connected and while a command is pending: the guests do not notice, and
// the backend never writes Closing/Closed for it (design §6, protocol §2.8).
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "backend_test_util.h"
#include "harness/state_recorder.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;
const std::string kUuidA = "3d4e5f60-7182-4394-a5b6-c7d8e9f0a1b2";
const std::string kUuidB = "4e5f6071-8293-44a5-b6c7-d8e9f0a1b2c3";

class RestartTest : public BackendSimTest, public ::testing::WithParamInterface<int> {
 protected:
  void StopDaemon() {
    if (GetParam() == SIGKILL) {
      daemon().Kill();
    } else {
      auto ws = daemon().Stop();
      ASSERT_TRUE(ws.ok()) << ws.status().ToString();
      EXPECT_TRUE(WIFEXITED(*ws) && WEXITSTATUS(*ws) == 0) << "wait status " << *ws;
      EXPECT_EQ(daemon().notify()->WaitFor("STOPPING=1", 1s).ok(), true);
    }
  }
};

TEST_P(RestartTest, ConnectedGuestsCarryOn) {
  StartDaemon();
  CreateDomain(5, kUuidA);
  CreateDomain(6, kUuidB);
  GuestFrontend& a = Guest(5);
  GuestFrontend& b = Guest(6, 0, FrontendMode::kMiniOs);
  ASSERT_TRUE(a.Connect().ok());
  ASSERT_TRUE(b.Connect().ok());
  StateRecorder rec_a(Toolstack::BackendPath(5, 0) + "/state");
  StateRecorder rec_b(Toolstack::BackendPath(6, 0) + "/state");

  StopDaemon();
  ASSERT_TRUE(daemon().Start().ok()) << daemon().Log();
  for (GuestFrontend* g : {&a, &b}) {
    auto rsp = g->Transmit(TestCommand(0x65), 5s);
    ASSERT_TRUE(rsp.ok()) << rsp.status().ToString();
    EXPECT_EQ(ReturnCode(*rsp), 0u);
  }
  std::this_thread::sleep_for(100ms);
  for (auto* rec : {&rec_a, &rec_b}) {
    EXPECT_FALSE(rec->Saw("5")) << "backend wrote Closing on restart";
    EXPECT_FALSE(rec->Saw("6")) << "backend wrote Closed on restart";
  }
  EXPECT_FALSE(a.device_gone());
  EXPECT_EQ(Node(Toolstack::BackendPath(5, 0) + "/state"), "4");
}

TEST_P(RestartTest, ACommandPendingAcrossTheRestartIsAnswered) {
  StartDaemon("[engine]\nkind = \"scripted\"\nscripted_delay_ms = 1500\n");
  CreateDomain(5, kUuidA);
  GuestFrontend& g = Guest(5);
  std::thread c([&] { EXPECT_TRUE(g.Connect().ok()); });
  c.join();
  StateRecorder rec(Toolstack::BackendPath(5, 0) + "/state");
  Bytes cmd = TestCommand(0x15, 20);
  g.WritePayload(kRingHeader, cmd);
  g.WriteHeader(uint32_t(cmd.size()), kSubmit, 0, 0);
  ASSERT_TRUE(g.Notify().ok());
  std::this_thread::sleep_for(200ms);  // the daemon is now busy with it
  StopDaemon();
  EXPECT_EQ(g.state(), kSubmit);
  ASSERT_TRUE(daemon().Start().ok()) << daemon().Log();
  // No new notify: the restarted daemon finds the SUBMIT on the page itself.
  ASSERT_TRUE(g.WaitIdle(5s));
  EXPECT_EQ(g.state(), kFinish);
  EXPECT_EQ(g.length(), cmd.size() + 4);
  EXPECT_FALSE(rec.Saw("5"));
  EXPECT_FALSE(rec.Saw("6"));
}

INSTANTIATE_TEST_SUITE_P(Signals, RestartTest, ::testing::Values(SIGTERM, SIGKILL),
                         [](const auto& p) { return p.param == SIGKILL ? "SIGKILL" : "SIGTERM"; });

}  // namespace
}  // namespace vtpm::sim
