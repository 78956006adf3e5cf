// Exactly once across a daemon crash (design §3), for a command that changes
// only volatile state: the daemon is SIGKILLed at each step of a
// TPM_Extend's path (crash points, src/common/crash_point.h) while the guest
// waits for its answer, then restarted. The guest's PCR must hold exactly
// the extends it was answered for, each once. Every extend uses the same
// digest, so a command the restarted daemon answers from its record and a
// new, identical command are told apart only by the responded mark.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "backend_test_util.h"
#include "tpm/tpm12.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;
const std::string kUuid = "7f4a015d-3c5e-4a79-9d82-9eaf1b2c3d4e";

tpm12::PcrValue Fold(int extends, const tpm12::PcrValue& digest) {
  tpm12::PcrValue pcr{};
  for (int i = 0; i < extends; ++i) pcr = tpm12::ExtendedPcr(pcr, digest);
  return pcr;
}

struct CrashCase {
  const char* point;         // crash point name
  const char* restart_says;  // what the restarted daemon logs about the found command ("" = none)
};

class ExactlyOnceTest : public BackendSimTest, public ::testing::WithParamInterface<CrashCase> {
 protected:
  // The libtpms daemon with VTPMMGRD_CRASH_AT set (a fresh DaemonProcess:
  // StartLibtpmsDaemon() passes no environment).
  void StartCrashingDaemon(const std::string& crash_at) {
    StartLibtpmsDaemon();  // creates swtpm and proves the plain start works
    if (HasFatalFailure()) return;
    daemon_.reset();  // SIGKILL while idle
    DaemonOptions o;
    o.extra_config = "[engine]\nkind = \"libtpms\"\nworker_path = \"" VTPM_WORKER_BIN "\"\n[host_tpm]\ntcti = \"" +
                     swtpm_->tcti() + "\"\n";
    o.env = {"VTPMMGRD_CRASH_AT=" + crash_at};
    daemon_ = std::make_unique<DaemonProcess>(host(), o);
    Status st = daemon_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
};

TEST_P(ExactlyOnceTest, DaemonKilledOnAnExtendsPathAppliesItOnce) {
#ifndef VTPM_TEST_HOOKS
  GTEST_SKIP() << "crash points need -DVTPM_TEST_HOOKS=ON (the sanitizer test build)";
#endif
  const CrashCase& c = GetParam();
  tpm12::PcrValue digest;
  digest.fill(0xE7);
  const Bytes extend = tpm12::PcrExtend(12, digest);

  // The daemon dies at the crash point of the fourth guest command (the
  // simulated Linux frontend sends its own commands when it connects).
  StartCrashingDaemon(std::string(c.point) + ":4");
  ASSERT_FALSE(HasFatalFailure());
  CreateDomain(40, kUuid);
  GuestFrontend& g = Guest(40);
  ASSERT_TRUE(g.Connect().ok());
  int answered = 0;
  bool crashed = false;
  std::string crashed_log;
  while (!crashed) {
    ASSERT_LT(answered, 6) << "the daemon never reached crash point " << c.point;
    // The guest waits (like Linux, for the command's duration) across the crash.
    auto reply = std::async(std::launch::async, [&] { return g.Transmit(extend, 90s); });
    while (daemon().running()) {
      if (reply.wait_for(20ms) == std::future_status::ready) {
        std::this_thread::sleep_for(300ms);  // a crash right after FINISH races with the guest
        break;
      }
    }
    if (!daemon().running()) {
      crashed = true;
      crashed_log = daemon().Log();
      StartLibtpmsDaemon();
      ASSERT_FALSE(HasFatalFailure());
    }
    auto r = reply.get();
    ASSERT_TRUE(r.ok()) << "extend " << answered << ": " << r.status().ToString() << "\n" << daemon().Log();
    ASSERT_EQ(tpm12::ResponseCode(*r), tpm12::kSuccess);
    ++answered;
  }
  // A new command identical to the one in flight at the crash.
  auto r4 = g.Transmit(extend, 60s);
  ASSERT_TRUE(r4.ok()) << r4.status().ToString();
  EXPECT_EQ(tpm12::ResponseCode(*r4), tpm12::kSuccess);
  ++answered;

  auto pcr = g.Transmit(tpm12::PcrRead(12), 60s);
  ASSERT_TRUE(pcr.ok()) << pcr.status().ToString();
  auto value = tpm12::PcrFromResponse(*pcr);
  ASSERT_TRUE(value.has_value());
  EXPECT_EQ(*value, Fold(answered, digest))
      << "PCR 12 does not hold exactly " << answered << " extends (crash at " << c.point << ")";
  EXPECT_NE(*value, Fold(answered + 1, digest)) << "an extend was applied twice";
  const std::string log = daemon().Log();
  EXPECT_NE(log.find("re-adopted connected device"), std::string::npos) << log;
  if (*c.restart_says) {
    EXPECT_NE(log.find(c.restart_says), std::string::npos) << log;
  }
  EXPECT_EQ(crashed_log.find("TPM worker fault"), std::string::npos) << crashed_log;
}

INSTANTIATE_TEST_SUITE_P(
    EachStep, ExactlyOnceTest,
    ::testing::Values(
        // Executed, nothing saved: the restarted TPM never saw it; it runs.
        CrashCase{"command-executed", "command found in the page after the restart is new"},
        // Saved with its record, not answered: the recorded response is sent.
        CrashCase{"state-saved", "ran before the restart but was not answered"},
        // Response in the page, FINISH lost (before and after the mark).
        CrashCase{"response-written", "holds the response of command"},
        CrashCase{"response-marked", "holds the response of command"},
        // Answered: the guest already has it; its next (identical) command is new.
        CrashCase{"finished", ""}),
    [](const ::testing::TestParamInfo<CrashCase>& param) {
      std::string n = param.param.point;
      for (auto& ch : n)
        if (ch == '-') ch = '_';
      return n;
    });

}  // namespace
}  // namespace vtpm::sim
