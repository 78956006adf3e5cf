// The simulator's command-line tools: vtpm-sim-xl and vtpm-sim-guest, run as
// separate processes against the SimHost (environment exported by SimHost).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "common/bytes.h"
#include "common/unique_fd.h"

#include "simhost/line_process.h"
#include "simhost/run_capture.h"
#include "simhost/sim_host_fixture.h"

namespace vtpm::sim {
namespace {

using SimCliTest = SimHostTest;

ToolOutput RunTool(const std::vector<std::string>& argv) {
  auto r = RunCapture(argv, {}, std::chrono::seconds(30));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : ToolOutput{};
}

TEST_F(SimCliTest, XlCreateGuestSendDestroy) {
  SpawnOptions bo;
  bo.argv = {SimHost::ToolPath("vtpm-sim-fake-tpmback"), "6", "0"};
  auto backend = LineProcess::Start(bo, [this](const SpawnOptions& o) { return host().SpawnWithShim(o); });
  ASSERT_TRUE(backend.ok());

  ToolOutput created = RunTool({SimHost::ToolPath("vtpm-sim-xl"), "create", "6", "--uuid",
                            "11111111-2222-4333-8444-555555555555"});
  EXPECT_EQ(created.exit_code, 0) << created.output;
  EXPECT_NE(created.output.find("device 6 0 11111111-2222-4333-8444-555555555555"), std::string::npos)
      << created.output;
  EXPECT_NE(created.output.find("for /local/domain/0/backend/vtpm/6/0/state == 2: ok"), std::string::npos)
      << created.output;
  EXPECT_EQ(xs().Read("/libxl/6/device/vtpm/0/uuid")->value_or(""), "11111111-2222-4333-8444-555555555555");

  // Echo backend: the response is the command's body behind a success header.
  ToolOutput sent = RunTool({SimHost::ToolPath("vtpm-sim-guest"), "6", "--send", "00c10000000e00000046abcd1234"});
  EXPECT_EQ(sent.exit_code, 0) << sent.output;
  EXPECT_NE(sent.output.find("connected ring-ref"), std::string::npos) << sent.output;
  EXPECT_NE(sent.output.find("response 00c40000000e00000000abcd1234"), std::string::npos) << sent.output;
  EXPECT_NE(sent.output.find("shutdown backend-answered yes"), std::string::npos) << sent.output;

  ToolOutput destroyed = RunTool({SimHost::ToolPath("vtpm-sim-xl"), "destroy", "6"});
  EXPECT_EQ(destroyed.exit_code, 0) << destroyed.output;
  EXPECT_NE(destroyed.output.find("== 6 (forced retry): ok"), std::string::npos) << destroyed.output;
  EXPECT_FALSE(xs().Exists("/local/domain/6"));
}

// One command over the guest's TPM socket, like swtpm's raw framing.
Result<Bytes> SocketCommand(const std::string& path, const Bytes& cmd) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0)
    return Status::FromErrno(errno, "connect " + path);
  if (::write(fd.get(), cmd.data(), cmd.size()) != ssize_t(cmd.size())) return Status::FromErrno(errno, "write");
  uint8_t buf[4096];
  ssize_t n = ::read(fd.get(), buf, sizeof(buf));
  if (n <= 0) return Status(Code::kUnavailable, "no response");
  return Bytes(buf, buf + n);
}

TEST_F(SimCliTest, GuestServesItsTpmOnASocketUntilSigterm) {
  SpawnOptions bo;
  bo.argv = {SimHost::ToolPath("vtpm-sim-fake-tpmback"), "7", "0"};
  auto backend = LineProcess::Start(bo, [this](const SpawnOptions& o) { return host().SpawnWithShim(o); });
  ASSERT_TRUE(backend.ok());
  ASSERT_EQ(RunTool({SimHost::ToolPath("vtpm-sim-xl"), "create", "7"}).exit_code, 0);
  const std::string sock = host().dir() + "/guest7.sock";
  SpawnOptions go;
  go.argv = {SimHost::ToolPath("vtpm-sim-guest"), "7", "--socket", sock};
  auto guest = LineProcess::Start(go);
  ASSERT_TRUE(guest.ok());
  for (;;) {
    auto l = guest->ReadLine();
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    if (l->rfind("serving", 0) == 0) break;
  }
  auto rsp = SocketCommand(sock, Bytes{0x00, 0xC1, 0, 0, 0, 12, 0, 0, 0, 0x46, 0x77, 0x88});
  ASSERT_TRUE(rsp.ok()) << rsp.status().ToString();
  EXPECT_EQ(*rsp, (Bytes{0x00, 0xC4, 0, 0, 0, 12, 0, 0, 0, 0, 0x77, 0x88}));
  guest->child().Signal(SIGTERM);
  auto served = guest->ReadLine();
  ASSERT_TRUE(served.ok()) << served.status().ToString();
  EXPECT_EQ(*served, "served 1 failed 0");
  auto shutdown = guest->ReadLine();
  ASSERT_TRUE(shutdown.ok()) << shutdown.status().ToString();
  EXPECT_EQ(shutdown->rfind("shutdown backend-answered yes", 0), 0u) << *shutdown;
}

TEST_F(SimCliTest, XlAttachTimesOutWithoutBackend) {
  ToolOutput r = RunTool({SimHost::ToolPath("vtpm-sim-xl"), "--timeout-ms", "200", "attach", "8"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("== 2: TIMEOUT (last value 1)"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace vtpm::sim
