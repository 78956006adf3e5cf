// xenstored going away under a running daemon (design §6 "Manager"): the
// daemon's watchdog pings come from a loop whose xenstore probe answers, so
// they stop while xenstored hangs and resume when it does; a restarted
// xenstored (a new process, a new tree) is noticed: the daemon says so and
// exits with status 6, which systemd restarts, and the restarted daemon
// serves a new guest of the new xenstored.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "backend_test_util.h"
#include "fault_util.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;

class XenstoredLostTest : public BackendSimTest {
 protected:
  // WATCHDOG_USEC=400000: a ping is due every 200 ms.
  void StartWatchedDaemon() {
    DaemonOptions o;
    o.env = {"WATCHDOG_USEC=400000"};
    daemon_ = std::make_unique<DaemonProcess>(host(), o);
    Status st = daemon_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  size_t Pings() {
    size_t n = 0;
    for (auto& l : daemon().notify()->received()) n += l == "WATCHDOG=1";
    return n;
  }
  // Serves a guest: create (on `ts`), connect, one command answered.
  void ExpectServes(Toolstack& ts, uint32_t domid, const std::string& uuid) {
    auto r = ts.Create(domid, {{0, uuid}});
    ASSERT_TRUE(r.status.ok()) << r.Report() << daemon().Log();
    FrontendOptions fo;
    fo.domid = domid;
    auto g = GuestFrontend::Create(fo);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    ASSERT_TRUE((*g)->Connect().ok()) << daemon().Log();
    auto rsp = (*g)->Transmit(TestCommand(0x65), 5s);
    ASSERT_TRUE(rsp.ok()) << rsp.status().ToString();
    EXPECT_EQ(ReturnCode(*rsp), 0u);
  }
};

TEST_F(XenstoredLostTest, WatchdogPingsStopWhileXenstoredHangsAndResumeAfter) {
  StartWatchedDaemon();
  ASSERT_TRUE(daemon().notify()->WaitFor("WATCHDOG=1", 2s).ok());
  const pid_t xsd = host().xenstored().pid();
  ASSERT_EQ(::kill(xsd, SIGSTOP), 0);
  std::this_thread::sleep_for(500ms);  // a probe in progress ends, the next one hangs
  size_t before = Pings();
  std::this_thread::sleep_for(1500ms);
  size_t during = Pings();
  ASSERT_EQ(::kill(xsd, SIGCONT), 0);
  EXPECT_EQ(during, before) << "WATCHDOG=1 sent while xenstored did not answer";
  std::this_thread::sleep_for(1s);
  EXPECT_GT(Pings(), during) << "no WATCHDOG=1 once xenstored answered again";
  EXPECT_TRUE(daemon().running()) << daemon().Log();
  ExpectServes(ts(), 141, FaultUuid(0xfa1c0000, 0));
}

TEST_F(XenstoredLostTest, RestartedXenstoredEndsTheDaemonWithStatus6AndTheRestartServesNewGuests) {
  StartWatchedDaemon();
  ExpectServes(ts(), 142, FaultUuid(0xfa1c0000, 1));
  ASSERT_TRUE(daemon().notify()->WaitFor("WATCHDOG=1", 2s).ok());

  // xenstored restarted without live update: a new process, a new tree.
  host().xenstored().Stop();
  XenstoredOptions xo;
  xo.dir = host().dir() + "/xenstored";
  auto x = XenstoredProcess::Start(xo);
  ASSERT_TRUE(x.ok()) << x.status().ToString();
  host().xenstored() = std::move(x).value();

  std::optional<int> ws = daemon().WaitExit(10s);
  ASSERT_TRUE(ws.has_value()) << "the daemon did not notice that xenstored was restarted\n" << daemon().Log();
  EXPECT_TRUE(WIFEXITED(*ws) && WEXITSTATUS(*ws) == 6) << DescribeWaitStatus(*ws) << "\n" << daemon().Log();
  EXPECT_NE(daemon().Log().find("lost the connection to xenstored"), std::string::npos) << daemon().Log();

  // systemd's restart: the new daemon registers with the new xenstored.
  auto xs = XsClient::Open();
  ASSERT_TRUE(xs.ok()) << xs.status().ToString();
  Toolstack ts2(*xs, host().sim_dir());
  ASSERT_TRUE(ts2.InitHost().ok());
  ASSERT_TRUE(daemon().Start().ok()) << daemon().Log();
  ExpectServes(ts2, 143, FaultUuid(0xfa1c0000, 2));
}

}  // namespace
}  // namespace vtpm::sim
