// The simulator's command-line tools: vtpm-sim-xl and vtpm-sim-guest, run as
// separate processes against the SimHost (environment exported by SimHost).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "common/bytes.h"
#include "common/unique_fd.h"

#include "simhost/line_process.h"
#include "simhost/run_capture.h"
#include "simhost/sim_host_fixture.h"
#include "xen_sim.h"

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

// The hypervisor's entry for `domid`: "<handle> running|shutdown N", "<absent>".
std::string Hv(const SimHost& host, uint32_t domid) {
  auto d = ReadSimDomain(host.sim_dir(), domid);
  if (!d.ok() || !d->has_value()) return "<absent>";
  return (*d)->handle + ((*d)->shutdown ? " shutdown " + std::to_string(*(*d)->shutdown) : " running");
}

TEST_F(SimCliTest, XlSaveRestoreRebootMigrateKeepTheHandle) {
  const std::string kHandle = "2a3b4c5d-6e7f-4081-9293-a4b5c6d7e8f9";
  const std::string kVtpm = "11111111-2222-4333-8444-555555555555";
  std::vector<LineProcess> backends;  // one per domid the vtpm lands on
  for (const char* d : {"6", "9", "10", "11"}) {
    SpawnOptions bo;
    bo.argv = {SimHost::ToolPath("vtpm-sim-fake-tpmback"), d, "0"};
    auto b = LineProcess::Start(bo, [this](const SpawnOptions& o) { return host().SpawnWithShim(o); });
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    backends.push_back(std::move(b).value());
  }
  const std::string xl = SimHost::ToolPath("vtpm-sim-xl");
  ToolOutput created = RunTool({xl, "create", "6", "--uuid", kVtpm, "--name", "web", "--handle", kHandle});
  ASSERT_EQ(created.exit_code, 0) << created.output;
  EXPECT_NE(created.output.find("domain 6 " + kHandle), std::string::npos) << created.output;
  EXPECT_EQ(Hv(host(), 6), kHandle + " running");

  ToolOutput shut = RunTool({xl, "shutdown", "6", "4"});
  ASSERT_EQ(shut.exit_code, 0) << shut.output;
  EXPECT_EQ(Hv(host(), 6), kHandle + " shutdown 4");
  EXPECT_NE(RunTool({xl, "shutdown", "6", "6"}).exit_code, 0);  // not a SHUTDOWN_* code
  EXPECT_EQ(Hv(host(), 6), kHandle + " shutdown 4");

  const std::string file = host().dir() + "/web.save";
  ToolOutput saved = RunTool({xl, "save", "6", file});
  ASSERT_EQ(saved.exit_code, 0) << saved.output;
  EXPECT_EQ(Hv(host(), 6), "<absent>");
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_NE(text.str().find("\"uuid\": \"" + kHandle + "\""), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("\"name\": \"web\""), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("\"uuid\": \"" + kVtpm + "\""), std::string::npos) << text.str();

  ToolOutput restored = RunTool({xl, "restore", file, "9"});
  ASSERT_EQ(restored.exit_code, 0) << restored.output;
  EXPECT_NE(restored.output.find("device 9 0 " + kVtpm), std::string::npos) << restored.output;
  EXPECT_NE(restored.output.find("domain 9 " + kHandle), std::string::npos) << restored.output;
  EXPECT_EQ(Hv(host(), 9), kHandle + " running");

  ToolOutput rebooted = RunTool({xl, "reboot", "9", "10"});
  ASSERT_EQ(rebooted.exit_code, 0) << rebooted.output;
  EXPECT_NE(rebooted.output.find("domain 10 " + kHandle), std::string::npos) << rebooted.output;
  EXPECT_EQ(Hv(host(), 9), "<absent>");

  ToolOutput migrated = RunTool({xl, "migrate-local", "10", "11"});
  ASSERT_EQ(migrated.exit_code, 0) << migrated.output;
  EXPECT_NE(migrated.output.find("device 11 0 " + kVtpm), std::string::npos) << migrated.output;
  EXPECT_EQ(Hv(host(), 10), "<absent>");
  EXPECT_EQ(Hv(host(), 11), kHandle + " running");
  EXPECT_EQ(xs().Read("/local/domain/11/name")->value_or(""), "web");

  // A file that is not a save record is refused before anything is made.
  { std::ofstream(file) << "{\"c_info\": {\"uuid\": \"nope\", \"name\": \"x\"}, \"vtpms\": []}"; }
  ToolOutput bad = RunTool({xl, "restore", file, "12"});
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("malformed c_info.uuid"), std::string::npos) << bad.output;
  EXPECT_EQ(Hv(host(), 12), "<absent>");
}

TEST_F(SimCliTest, XlAttachTimesOutWithoutBackend) {
  ToolOutput r = RunTool({SimHost::ToolPath("vtpm-sim-xl"), "--timeout-ms", "200", "attach", "8"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("== 2: TIMEOUT (last value 1)"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace vtpm::sim
