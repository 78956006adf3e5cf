// A device whose instance is busy at connect is retried, not refused (design
// §6 "Device"): the uuid of a guest whose vTPM was detached while the domain
// lives is attached to a new domain before the next reap tick; the new
// device waits in InitWait until the old domain's instance is powered off,
// then connects and serves, with the new domain's fresh PCRs.
#include <chrono>

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

}  // namespace
}  // namespace vtpm::sim
