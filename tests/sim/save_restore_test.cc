// Save, restore, reboot and local migration through the real daemon with the
// libtpms engine (host TPM = swtpm), the toolstack simulator doing what libxl
// does and the simulated hypervisor reporting each domain's handle and
// shutdown reason (design §6 "Save, restore and migration"):
//  - xl save then xl restore (new domid, same handle): the guest's PCRs are
//    as it left them, also across a daemon restart in between;
//  - a restore is resumed once: the same image restored again powers on fresh;
//  - a fresh xl create (new handle) after a save powers on fresh and drops the
//    capture, so the save image restored later powers on fresh too;
//  - xl reboot is a power cycle; a later domain with an earlier one's domid
//    never gets its state, also after xl save / restore -D on that domid;
//  - xl migrate <domain> localhost: the receiver resumes the sender's TPM;
//  - vtpmctl list/show name the capture, vtpmctl discard drops it.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tpm12_guest_test.h"
#include "simhost/run_capture.h"
#include "tpm/tpm12.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;
const std::string kUuid = "3a7c5e10-9b2d-4f8e-a6c4-1d2e3f4a5b6c";

class SaveRestoreTest : public Tpm12GuestTest {
 protected:
  // Extends PCR 10 with `fill` bytes; returns its new value.
  tpm12::PcrValue Extend(GuestFrontend& g, uint8_t fill) {
    tpm12::PcrValue d;
    d.fill(fill);
    Run(g, tpm12::PcrExtend(10, d));
    return Pcr(g, 10);
  }
  // A booted guest on `domid` whose TPM answers.
  GuestFrontend& Boot(uint32_t domid) {
    GuestFrontend& g = Guest(domid);
    Status st = g.Connect();
    EXPECT_TRUE(st.ok()) << st.ToString();
    return g;
  }
  SavedDomain Save(uint32_t domid) {
    auto r = ts().Save(domid);
    EXPECT_TRUE(r.status.ok()) << r.status.ToString() << "\n" << r.Report();
    return r.saved.value_or(SavedDomain{});
  }
  void Restore(uint32_t domid, const SavedDomain& saved) {
    auto r = ts().Restore(domid, saved);
    ASSERT_TRUE(r.status.ok()) << r.status.ToString() << "\n" << r.Report();
  }
  // vtpmctl --socket <daemon's> args...: its output; exit status in *rc.
  std::string Ctl(std::vector<std::string> args, int* rc = nullptr) {
    std::vector<std::string> argv = {VTPM_CTL_PATH, "--socket", daemon().runtime_dir() + "/control.sock"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = RunCapture(argv, {}, 120s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (rc) *rc = r.ok() ? r->exit_code : -1;
    return r.ok() ? r->output : "";
  }
  // Waits until the daemon's log holds `text` (the capture commits on the
  // daemon's store thread after the toolstack's wait for state 6 ended).
  bool LogShows(const std::string& text, std::chrono::seconds timeout = 20s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (daemon().Log().find(text) == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(50ms);
    }
    return true;
  }
};

TEST_F(SaveRestoreTest, RestoredDomainFindsItsPcrsOnceAndAcrossADaemonRestart) {
  CreateDomain(30, kUuid);
  GuestFrontend& g = Boot(30);
  const Bytes ek = Ek(g);
  const tpm12::PcrValue before = Extend(g, 0x5a);
  ASSERT_NE(before, tpm12::PcrValue{});
  SavedDomain saved = Save(30);
  ASSERT_TRUE(LogShows("domid=30 devid=0 uuid=" + kUuid + ": domain suspended (handle " + saved.handle + ")"))
      << daemon().Log();
  EXPECT_NE(Ctl({"list"}).find("suspended"), std::string::npos);
  std::string show = Ctl({"show", kUuid});
  EXPECT_NE(show.find("domain 30 (handle " + saved.handle + ") suspended at"), std::string::npos) << show;

  // The daemon restarts between the save and the restore (a host reboot's
  // stop and start): the capture is in the store, not in memory.
  ASSERT_TRUE(daemon().Stop().ok());
  StartLibtpmsDaemon();
  Restore(31, saved);
  GuestFrontend& r = Boot(31);
  EXPECT_EQ(Pcr(r, 10), before);
  EXPECT_EQ(Ek(r), ek);
  // Resumed, not powered on: the TPM is started and Startup is refused as
  // it is on a running TPM.
  Run(r, tpm12::Startup(tpm12::kStClear), tpm12::kInvalidPostinit);
  EXPECT_NE(daemon().Log().find("domid=31 devid=0 uuid=" + kUuid + ": resuming the TPM as domain 30 left it"),
            std::string::npos);
  EXPECT_EQ(Ctl({"list"}).find("suspended"), std::string::npos) << "the capture was not used up";

  // The same image restored a second time: the capture is gone.
  auto x = ts().Destroy(31);
  ASSERT_TRUE(x.status.ok()) << x.Report();
  Restore(32, saved);
  GuestFrontend& again = Boot(32);
  EXPECT_EQ(Pcr(again, 10), tpm12::PcrValue{});
}

TEST_F(SaveRestoreTest, AFreshCreateAfterASavePowersOnFreshAndTheImageNeverResumes) {
  CreateDomain(40, kUuid);
  GuestFrontend& g = Boot(40);
  Extend(g, 0x11);
  SavedDomain saved = Save(40);
  ASSERT_TRUE(LogShows("domid=40 devid=0 uuid=" + kUuid + ": domain suspended"));
  // xl create of the same config (no uuid=): a new random handle.
  auto c = ts().Create(41, {{0, kUuid}});
  ASSERT_TRUE(c.status.ok()) << c.Report();
  ASSERT_NE(c.handle, saved.handle);
  GuestFrontend& fresh = Boot(41);
  EXPECT_EQ(Pcr(fresh, 10), tpm12::PcrValue{});
  EXPECT_NE(daemon().Log().find("domid=41 devid=0 uuid=" + kUuid + ": dropping the TPM state captured when domain 40"),
            std::string::npos);
  auto x = ts().Destroy(41);
  ASSERT_TRUE(x.status.ok()) << x.Report();
  // The old image restored afterwards: never the first boot's PCRs in a third.
  Restore(42, saved);
  GuestFrontend& late = Boot(42);
  EXPECT_EQ(Pcr(late, 10), tpm12::PcrValue{});
}

TEST_F(SaveRestoreTest, RebootIsAPowerCycleAndAReusedDomidIsAnotherDomain) {
  CreateDomain(50, kUuid);
  GuestFrontend& g = Boot(50);
  const Bytes ek = Ek(g);
  Extend(g, 0x22);
  auto rb = ts().Reboot(50, 51);
  ASSERT_TRUE(rb.status.ok()) << rb.Report();
  GuestFrontend& rebooted = Boot(51);
  EXPECT_EQ(Pcr(rebooted, 10), tpm12::PcrValue{});
  EXPECT_EQ(Ek(rebooted), ek);
  EXPECT_EQ(daemon().Log().find("domid=50 devid=0 uuid=" + kUuid + ": domain suspended"), std::string::npos);
  Extend(rebooted, 0x23);
  auto x = ts().Destroy(51);
  ASSERT_TRUE(x.status.ok()) << x.Report();
  // Domid 51 again, another domain (xl create -D, or wrap-around).
  CreateDomain(51, kUuid);
  GuestFrontend& reused = Boot(51);
  EXPECT_EQ(Pcr(reused, 10), tpm12::PcrValue{});
  // xl save then xl restore -D onto the same domid is the same domain.
  const tpm12::PcrValue before = Extend(reused, 0x24);
  SavedDomain saved = Save(51);
  ASSERT_TRUE(LogShows("domid=51 devid=0 uuid=" + kUuid + ": domain suspended"));
  Restore(51, saved);
  GuestFrontend& back = Boot(51);
  EXPECT_EQ(Pcr(back, 10), before);
}

TEST_F(SaveRestoreTest, LocalMigrationHandsTheTpmToTheReceiver) {
  CreateDomain(60, kUuid);
  GuestFrontend& g = Boot(60);
  const tpm12::PcrValue before = Extend(g, 0x33);
  auto m = ts().MigrateLocal(60, 61);
  ASSERT_TRUE(m.status.ok()) << m.status.ToString() << "\n" << m.Report() << daemon().Log();
  GuestFrontend& r = Boot(61);
  EXPECT_EQ(Pcr(r, 10), before);
  EXPECT_FALSE(Node("/local/domain/60/name"));
  EXPECT_EQ(Ctl({"list"}).find("suspended"), std::string::npos);
}

TEST_F(SaveRestoreTest, DiscardDropsTheCaptureAndResumeNeverIgnoresIt) {
  CreateDomain(70, kUuid);
  GuestFrontend& g = Boot(70);
  Extend(g, 0x44);
  SavedDomain saved = Save(70);
  ASSERT_TRUE(LogShows("domid=70 devid=0 uuid=" + kUuid + ": domain suspended"));
  int rc = -1;
  std::string out = Ctl({"discard", kUuid}, &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("discarded the TPM state captured when domain 70 suspended"), std::string::npos) << out;
  Ctl({"discard", kUuid}, &rc);
  EXPECT_EQ(rc, 3) << "a second discard finds nothing";
  Restore(71, saved);
  GuestFrontend& r = Boot(71);
  EXPECT_EQ(Pcr(r, 10), tpm12::PcrValue{});
  Ctl({"discard", kUuid}, &rc);
  EXPECT_EQ(rc, 4) << "discard of a powered instance is refused";

  // [engine] resume = "never": every new domain powers on fresh.
  Extend(r, 0x45);
  saved = Save(71);
  ASSERT_TRUE(LogShows("domid=71 devid=0 uuid=" + kUuid + ": domain suspended"));
  ASSERT_TRUE(daemon().Stop().ok());
  std::string cfg = LibtpmsConfig();
  cfg.insert(cfg.find("[engine]\n") + 9, "resume = \"never\"\n");
  StartDaemon(cfg);
  Restore(72, saved);
  GuestFrontend& never = Boot(72);
  EXPECT_EQ(Pcr(never, 10), tpm12::PcrValue{});
}

}  // namespace
}  // namespace vtpm::sim
