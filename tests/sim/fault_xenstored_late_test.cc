// xenstored not yet running when the daemon starts (design §6 Manager,
// Type=notify): the daemon waits, says so in its log and in STATUS=, signals
// READY=1 only once connected, then serves guests; SIGTERM ends the wait.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "backend_test_util.h"
#include "fault_util.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;

class XenstoredLateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto h = SimHost::Start();
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    host_ = std::move(h).value();
    host_->xenstored().Stop();  // its socket file stays behind, refusing connections
  }
  // A xenstored on the same socket, with dom0's nodes.
  void StartXenstored() {
    XenstoredOptions o;
    o.dir = host_->dir() + "/xenstored";
    auto x = XenstoredProcess::Start(o);
    ASSERT_TRUE(x.ok()) << x.status().ToString();
    host_->xenstored() = std::move(x).value();
  }
  static bool Contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
  }
  std::unique_ptr<SimHost> host_;
};

TEST_F(XenstoredLateTest, DaemonWaitsSaysSoAndIsReadyOnlyOnceConnected) {
  DaemonProcess d(*host_, {});
  std::atomic<bool> returned{false};
  Status started;
  std::thread t([&] {
    started = d.Start();  // waits for READY=1 (20 s)
    returned = true;
  });
  // The wait is announced and READY is held back.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!Contains(d.Log(), "waiting for xenstored") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(Contains(d.Log(), "waiting for xenstored")) << d.Log();
  EXPECT_FALSE(returned.load()) << "READY=1 before xenstored was up: " << started.ToString();
  EXPECT_TRUE(d.running()) << d.Log();

  StartXenstored();
  auto xs = XsClient::Open();
  ASSERT_TRUE(xs.ok()) << xs.status().ToString();
  Toolstack ts(*xs, host_->sim_dir());
  ASSERT_TRUE(ts.InitHost().ok());
  t.join();
  ASSERT_TRUE(started.ok()) << started.ToString();
  EXPECT_TRUE(Contains(d.Log(), "xenstored is up")) << d.Log();
  // STATUS= said why it was not ready, before READY=1.
  const auto& lines = d.notify()->received();
  auto ready = std::find(lines.begin(), lines.end(), "READY=1");
  auto waiting = std::find_if(lines.begin(), lines.end(),
                              [](const std::string& l) { return l.rfind("STATUS=waiting for xenstored", 0) == 0; });
  EXPECT_NE(waiting, lines.end());
  EXPECT_LT(waiting, ready);

  // And it serves a guest.
  auto r = ts.Create(70, {{0, FaultUuid(0xfa1a0000, 0)}});
  ASSERT_TRUE(r.status.ok()) << r.Report() << d.Log();
  FrontendOptions fo;
  fo.domid = 70;
  auto g = GuestFrontend::Create(fo);
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE((*g)->Connect().ok()) << d.Log();
  auto rsp = (*g)->Transmit(TestCommand(0x65), 5s);
  ASSERT_TRUE(rsp.ok()) << rsp.status().ToString();
  EXPECT_EQ(ReturnCode(*rsp), 0u);
}

TEST_F(XenstoredLateTest, SigtermWhileWaitingStopsCleanly) {
  std::string dir = host_->dir();
  ASSERT_EQ(mkdir((dir + "/state").c_str(), 0700), 0);
  ASSERT_EQ(mkdir((dir + "/run").c_str(), 0700), 0);
  std::string conf = dir + "/late.conf", log = dir + "/late.log";
  std::ofstream(conf) << "[daemon]\nstate_dir = \"" << dir << "/state\"\nruntime_dir = \"" << dir
                      << "/run\"\nlog_target = \"stderr\"\n[engine]\nkind = \"scripted\"\n";
  UniqueFd log_fd(open(log.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(log_fd);
  SpawnOptions o;
  o.argv = {VTPM_DAEMON_PATH, "--config", conf};
  o.fd_map = {{log_fd.get(), 2}};
  auto c = host_->SpawnWithShim(o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto read_log = [&] {
    std::ifstream in(log);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!Contains(read_log(), "waiting for xenstored") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(Contains(read_log(), "waiting for xenstored")) << read_log();
  c->Signal(SIGTERM);
  auto ws = c->WaitFor(5s);
  ASSERT_TRUE(ws.has_value()) << "still waiting after SIGTERM\n" << read_log();
  EXPECT_TRUE(WIFEXITED(*ws) && WEXITSTATUS(*ws) == 0) << DescribeWaitStatus(*ws) << "\n" << read_log();
}

}  // namespace
}  // namespace vtpm::sim
