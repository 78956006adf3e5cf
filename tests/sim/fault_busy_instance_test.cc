// Devices refused or held back for a passing cause are tried again once it
// is gone (design §6 "Device"):
// - an instance busy at connect: the uuid of a guest whose vTPM was detached
//   while the domain lives is attached to a new domain before the next reap
//   tick; the new device waits in InitWait until the old domain's instance
//   is powered off, then connects and serves, with fresh PCRs;
// - a uuid held by another live device: the new device is refused (6, error
//   node) while libxl waits for InitWait; when the holder is detached, the
//   refusal is dropped, InitWait follows within libxl's wait, and it serves.
#include <chrono>
#include <thread>

#include "backend_test_util.h"
#include "fault_util.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;

TEST_F(BackendSimTest, DeviceWhoseInstanceIsBusyConnectsOnceTheOldDomainsInstanceIsReaped) {
  StartLibtpmsDaemon();
  const std::string uuid = FaultUuid(0xfa1b0000, 0);
  CreateDomain(130, uuid);
  GuestFrontend& old_guest = Guest(130);
  ASSERT_TRUE(old_guest.Connect().ok());
  tpm12::PcrValue m;
  m.fill(0x5a);
  auto ext = old_guest.Transmit(tpm12::PcrExtend(10, m), 30s);
  ASSERT_TRUE(ext.ok()) << ext.status().ToString();
  // Detached while domain 130 lives: its instance stays powered for it until
  // the next reap (every 5 s) sees the uuid attached elsewhere.
  auto detached = ts().Detach(130, 0);
  ASSERT_TRUE(detached.status.ok()) << detached.Report();

  CreateDomain(131, uuid);
  GuestFrontend& g = Guest(131);
  Status st = g.Connect();
  ASSERT_TRUE(st.ok()) << "the new domain's device was not connected: " << st.ToString();
  auto err = Node("/local/domain/0/error/backend/vtpm/131/0/error");
  EXPECT_FALSE(err.has_value()) << "refused: " << *err;
  auto pcr = g.Transmit(tpm12::PcrRead(10), 30s);
  ASSERT_TRUE(pcr.ok()) << pcr.status().ToString();
  EXPECT_EQ(tpm12::PcrFromResponse(*pcr), std::optional<tpm12::PcrValue>(tpm12::PcrValue{}))
      << "the new domain did not get a fresh TPM power cycle";
}

TEST_F(BackendSimTest, DeviceRefusedForAHeldUuidIsTriedAgainOnceTheHolderIsDetached) {
  StartDaemon();
  const std::string uuid = FaultUuid(0xfa1b0000, 1);
  CreateDomain(132, uuid);
  ASSERT_TRUE(Guest(132).Connect().ok());

  // xl create of domain 133 with the same uuid, on a connection of its own:
  // libxl waits up to 10 s for InitWait.
  auto xs2 = XsClient::Open();
  ASSERT_TRUE(xs2.ok()) << xs2.status().ToString();
  Toolstack ts2(*xs2, host().sim_dir());
  ToolstackResult created;
  std::thread xl([&] { created = ts2.Create(133, {{0, uuid}}); });
  auto refused = xs().WaitFor(Toolstack::BackendPath(133, 0) + "/state",
                              [](const std::optional<std::string>& v) { return v == "6"; }, 5s);
  EXPECT_TRUE(refused.ok()) << "not refused while domain 132 holds the uuid";
  EXPECT_TRUE(Node("/local/domain/0/error/backend/vtpm/133/0/error").has_value());

  auto detached = ts().Detach(132, 0);
  xl.join();
  ASSERT_TRUE(detached.status.ok()) << detached.Report();
  ASSERT_TRUE(created.status.ok()) << "xl create failed although the uuid became free: " << created.Report();
  EXPECT_FALSE(Node("/local/domain/0/error/backend/vtpm/133/0/error").has_value()) << "stale error node";
  GuestFrontend& g = Guest(133);
  Status st = g.Connect();
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto rsp = g.Transmit(TestCommand(0x65), 5s);
  ASSERT_TRUE(rsp.ok()) << rsp.status().ToString();
  EXPECT_EQ(ReturnCode(*rsp), 0u);
}

}  // namespace
}  // namespace vtpm::sim
