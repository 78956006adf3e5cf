// Real TPM 1.2 clients as the guest's TPM client: tpm-tools -> tcsd -> the
// guest simulator's socket -> ring page and event channel -> a backend under
// the shim (vtpm-sim-fake-tpmback) -> swtpm (TPM 1.2). Proves the guest side
// of the chain the daemon will sit in, and the TcsdInstance helper.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <thread>

#include "guest/frontend.h"
#include "guest/tcsd.h"
#include "guest/tpm_socket_server.h"
#include "simhost/line_process.h"
#include "simhost/sim_host_fixture.h"
#include "toolstack/toolstack.h"

namespace vtpm::sim {
namespace {

constexpr uint32_t kDom = 9;

using TcsdChainTest = SimHostTest;

TEST_F(TcsdChainTest, TpmToolsTalkToTheGuestTpmThroughTheRing) {
  const std::string st = host().dir() + "/swtpm";
  ASSERT_EQ(::mkdir(st.c_str(), 0700), 0);
  SpawnOptions so;
  so.argv = {"/usr/bin/swtpm", "socket", "--server", "type=unixio,path=" + st + "/tpm.sock", "--ctrl",
             "type=unixio,path=" + st + "/ctrl.sock", "--tpmstate", "dir=" + st, "--flags",
             "not-need-init,startup-clear"};
  UniqueFd log(::open((st + ".log").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  so.fd_map = {{log.get(), 1}, {log.get(), 2}};
  auto swtpm = ChildProcess::Spawn(so);
  ASSERT_TRUE(swtpm.ok());
  for (int i = 0; i < 500 && ::access((st + "/tpm.sock").c_str(), F_OK) != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));

  SpawnOptions bo;
  bo.argv = {SimHost::ToolPath("vtpm-sim-fake-tpmback"), std::to_string(kDom), "0", "--tpm-socket", st + "/tpm.sock"};
  auto backend = LineProcess::Start(bo, [this](const SpawnOptions& o) { return host().SpawnWithShim(o); });
  ASSERT_TRUE(backend.ok());
  Toolstack ts(xs(), host().sim_dir());
  ToolstackResult created = ts.Create(kDom, {VtpmSpec{}});
  ASSERT_TRUE(created.status.ok()) << created.Report();

  FrontendOptions fo;
  fo.domid = kDom;
  fo.first_command_duration = std::chrono::seconds(10);
  auto guest = GuestFrontend::Create(fo);
  ASSERT_TRUE(guest.ok());
  ASSERT_TRUE((*guest)->Connect().ok());
  // The probe's GetCapability(TIS_TIMEOUT) answered by the TPM 1.2: TPM_SUCCESS
  // and 4 timeouts (respSize 16).
  ASSERT_TRUE((*guest)->first_response().ok()) << (*guest)->first_response().status().ToString();
  const Bytes& first = *(*guest)->first_response();
  ASSERT_EQ(first.size(), 30u);
  EXPECT_EQ(LoadBe32(first.data() + 6), 0u);
  EXPECT_EQ(LoadBe32(first.data() + 10), 16u);
  auto timeouts = ParseTisTimeouts(first);
  ASSERT_TRUE(timeouts.has_value());
  EXPECT_EQ((*guest)->timeout_c().count(), int64_t((uint64_t(timeouts->at(2)) + 999) / 1000));

  ASSERT_EQ(::chmod(host().dir().c_str(), 0755), 0);  // tcsd runs as tss
  auto server = TpmSocketServer::Start(**guest, host().dir() + "/guest-tpm.sock", std::chrono::seconds(30));
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto tcsd = TcsdInstance::Start((*server)->path());
  ASSERT_TRUE(tcsd.ok()) << tcsd.status().ToString();

  auto version = (*tcsd)->Run({"tpm_version"});
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(version->exit_code, 0) << version->output;
  EXPECT_NE(version->output.find("Chip Version:        1.2"), std::string::npos) << version->output;
  auto ek = (*tcsd)->Run({"tpm_createek"});
  ASSERT_TRUE(ek.ok());
  EXPECT_EQ(ek->exit_code, 0) << ek->output;
  EXPECT_GE((*server)->commands_served(), 2u) << (*server)->last_error();
  EXPECT_EQ((*server)->commands_failed(), 0u) << (*server)->last_error();
}

}  // namespace
}  // namespace vtpm::sim
