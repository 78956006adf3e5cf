// Exactly once across a daemon crash (design §3), for a command that changes
// only volatile state: the daemon is SIGKILLed at each step of a
// TPM_Extend's path (crash points, src/common/crash_point.h) while the guest
// waits for its answer, then restarted. The guest's PCR must hold exactly
// the extends it was answered for, each once. Every extend uses the same
// digest, so a command the restarted daemon answers from its record and a
// new, identical command are told apart only by the responded mark.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <string_view>
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
  // What it logs instead when the daemon serves the page itself ([xen]
  // data_path = "daemon"), where no worker outlives it; null: the same.
  const char* daemon_path_says = nullptr;
};

class ExactlyOnceTest : public BackendSimTest, public ::testing::WithParamInterface<CrashCase> {
 protected:
  // The libtpms daemon with VTPMMGRD_CRASH_AT set (a fresh DaemonProcess:
  // StartLibtpmsDaemon() passes no environment).
  void StartCrashingDaemon(const std::string& crash_at, std::vector<std::string> env = {}) {
    StartLibtpmsDaemon();  // creates swtpm and proves the plain start works
    if (HasFatalFailure()) return;
    daemon_.reset();  // SIGKILL while idle
    DaemonOptions o;
    o.extra_config = "[engine]\nkind = \"libtpms\"\nworker_path = \"" VTPM_WORKER_BIN "\"\n[host_tpm]\ntcti = \"" +
                     swtpm_->tcti() + "\"\n";
    o.env = std::move(env);
    o.env.push_back("VTPMMGRD_CRASH_AT=" + crash_at);
    o.data_path = data_path_;
    daemon_ = std::make_unique<DaemonProcess>(host(), o);
    Status st = daemon_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  // Sends `command` from `g`, which waits (like Linux, for the command's
  // duration) across a crash of the daemon; a daemon that died meanwhile is
  // restarted, and its log kept in crashed_log_.
  Result<Bytes> TransmitAcrossCrash(GuestFrontend& g, const Bytes& command) {
    auto reply = std::async(std::launch::async, [&] { return g.Transmit(command, 90s); });
    while (daemon().running()) {
      if (reply.wait_for(20ms) == std::future_status::ready) {
        std::this_thread::sleep_for(300ms);  // a crash right after FINISH races with the guest
        break;
      }
    }
    if (!daemon().running()) {
      crashed_ = true;
      crashed_log_ = daemon().Log();
      StartLibtpmsDaemon();
      if (HasFatalFailure()) ADD_FAILURE() << "restart failed";
    }
    return reply.get();
  }
  // The restarted daemon re-adopted the device and logged what it found;
  // the crashed one saw no worker fault.
  void ExpectRestartSaid(const CrashCase& c) {
    const std::string log = daemon().Log();
    EXPECT_NE(log.find("re-adopted connected device"), std::string::npos) << log;
    const char* says = c.daemon_path_says && EffectiveDataPath(data_path_) == "daemon" ? c.daemon_path_says
                                                                                       : c.restart_says;
    if (*says) {
      EXPECT_NE(log.find(says), std::string::npos) << log;
    }
    EXPECT_EQ(crashed_log_.find("TPM worker fault"), std::string::npos) << crashed_log_;
  }
  bool crashed_ = false;
  std::string crashed_log_;
};

std::string CrashPointName(const ::testing::TestParamInfo<CrashCase>& param) {
  std::string n = param.param.point;
  for (auto& ch : n)
    if (ch == '-') ch = '_';
  return n;
}

TEST_P(ExactlyOnceTest, DaemonKilledOnAnExtendsPathAppliesItOnce) {
#ifndef VTPM_TEST_HOOKS
  GTEST_SKIP() << "crash points need -DVTPM_TEST_HOOKS=ON (the sanitizer test build)";
#endif
  const CrashCase& c = GetParam();
  tpm12::PcrValue digest;
  digest.fill(0xE7);
  const Bytes extend = tpm12::PcrExtend(12, digest);

  // The page writes are the daemon's only on its own data path (the
  // worker's have WorkerExactlyOnceTest).
  const bool daemon_points =
      std::string_view(c.point) == "command-executed" || std::string_view(c.point) == "state-saved";
  if (!daemon_points) data_path_ = "daemon";
  // The daemon dies at the crash point of the fourth guest command (the
  // simulated Linux frontend sends its own commands when it connects). A
  // worker that keeps extends in its flight record (design §3 "Volatile
  // state in the flight record") sends none to the daemon's commit; it
  // does without a slot, as after a takeover or a daemon command.
  std::vector<std::string> env;
  if (daemon_points) env.push_back("VTPMMGRD_TEST_NO_VOLATILE_SLOTS=1");
  StartCrashingDaemon(std::string(c.point) + ":4", env);
  ASSERT_FALSE(HasFatalFailure());
  CreateDomain(40, kUuid);
  GuestFrontend& g = Guest(40);
  ASSERT_TRUE(g.Connect().ok());
  int answered = 0;
  while (!crashed_) {
    ASSERT_LT(answered, 6) << "the daemon never reached crash point " << c.point;
    auto r = TransmitAcrossCrash(g, extend);
    ASSERT_FALSE(HasFailure());
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
  ExpectRestartSaid(c);
}

INSTANTIATE_TEST_SUITE_P(
    EachStep, ExactlyOnceTest,
    ::testing::Values(
        // Executed in the worker, nothing saved: the worker outlived the
        // daemon with its command waiting, the next daemon takes it over
        // (its state is the stored one) and commits and answers the command
        // (design §2 "Workers outlive the daemon").
        CrashCase{"command-executed", "its command that waits for a commit is processed now",
                  "command found in the page after the restart is new"},
        // Saved with its record, not answered: the worker's state is not the
        // stored one any more, so it is replaced, and the recorded response
        // is sent for the request the next worker finds.
        CrashCase{"state-saved", "ran before the restart but was not answered"},
        // Response in the page, FINISH lost (before and after the mark).
        CrashCase{"response-written", "holds the response of command"},
        CrashCase{"response-marked", "holds the response of command"},
        // Answered: the guest already has it; its next (identical) command is new.
        CrashCase{"finished", ""}),
    CrashPointName);

// On the worker data path ([xen] data_path = "worker", design §3 "The worker
// serves its guest") the page writes are the worker's: it is SIGKILLed at
// each of them, on every fourth response it writes (each worker counts its
// own), while the guest runs a chain of identical extends. The daemon stays;
// the next worker finds what the page holds and the daemon answers it from
// its records. The PCR must hold exactly the extends answered.
class WorkerExactlyOnceTest : public BackendSimTest, public ::testing::WithParamInterface<CrashCase> {
 protected:
  // The libtpms daemon on the worker's data path, its workers killing
  // themselves on every fourth response they write at `point`.
  void StartDaemonWithCrashingWorkers(const char* point) {
    StartLibtpmsDaemon();  // creates swtpm and proves the plain start works
    if (HasFatalFailure()) return;
    daemon_.reset();
    DaemonOptions o;
    o.extra_config = "[engine]\nkind = \"libtpms\"\nworker_path = \"" VTPM_WORKER_BIN "\"\n[host_tpm]\ntcti = \"" +
                     swtpm_->tcti() + "\"\n";
    o.data_path = "worker";
    o.env = {"VTPMMGRD_WORKER_CRASH_AT=" + std::string(point) + ":4"};
    daemon_ = std::make_unique<DaemonProcess>(host(), o);
    ASSERT_TRUE(daemon_->Start().ok());
  }
  // The lost workers the daemon logged; at least two expected, and what the
  // case says the daemon logs about the found page.
  void ExpectWorkersLost(const CrashCase& c) {
    const std::string log = daemon().Log();
    size_t faults = 0;
    for (size_t at = log.find("TPM worker fault"); at != std::string::npos; at = log.find("TPM worker fault", at + 1))
      ++faults;
    std::cout << "workers lost at " << c.point << ": " << faults << "\n";
    EXPECT_GE(faults, 2u) << "the workers never reached crash point " << c.point << "\n" << log;
    const char* says = c.daemon_path_says && EffectiveDataPath(data_path_) == "daemon" ? c.daemon_path_says
                                                                                       : c.restart_says;
    if (*says) {
      EXPECT_NE(log.find(says), std::string::npos) << log;
    }
    EXPECT_EQ(log.find("giving up"), std::string::npos) << log;
  }
};

TEST_P(WorkerExactlyOnceTest, WorkerKilledOnItsPageWritesAppliesEachExtendOnce) {
#ifndef VTPM_TEST_HOOKS
  GTEST_SKIP() << "crash points need -DVTPM_TEST_HOOKS=ON (the sanitizer test build)";
#endif
  const CrashCase& c = GetParam();
  StartDaemonWithCrashingWorkers(c.point);
  ASSERT_FALSE(HasFatalFailure());

  tpm12::PcrValue digest;
  digest.fill(0xD4);
  const Bytes extend = tpm12::PcrExtend(12, digest);
  CreateDomain(43, kUuid);
  GuestFrontend& g = Guest(43);
  ASSERT_TRUE(g.Connect().ok());
  int answered = 0;
  for (; answered < 10; ++answered) {
    auto r = g.Transmit(extend, 60s);
    ASSERT_TRUE(r.ok()) << "extend " << answered << ": " << r.status().ToString() << "\n" << daemon().Log();
    ASSERT_EQ(tpm12::ResponseCode(*r), tpm12::kSuccess) << "extend " << answered << "\n" << daemon().Log();
    ASSERT_EQ(tpm12::PcrFromResponse(*r), Fold(answered + 1, digest)) << "extend " << answered;
  }
  auto pcr = g.Transmit(tpm12::PcrRead(12), 60s);
  ASSERT_TRUE(pcr.ok()) << pcr.status().ToString();
  EXPECT_EQ(tpm12::PcrFromResponse(*pcr), Fold(answered, digest)) << "crash at " << c.point;
  ExpectWorkersLost(c);
}

INSTANTIATE_TEST_SUITE_P(
    EachStep, WorkerExactlyOnceTest,
    ::testing::Values(
        // Response in the page, FINISH lost (before and after the mark): the
        // next worker finds it and the daemon finishes it from its record.
        CrashCase{"response-written", "holds the response of command"},
        CrashCase{"response-marked", "holds the response of command"},
        // Answered: the guest has it; its next (identical) command is new.
        CrashCase{"finished", ""}),
    CrashPointName);

// The same for reads (TPM_PCRRead), which the worker answers without the
// daemon and which leave no record: the next worker finds the response
// without FINISH, and the daemon finishes it as a response no command
// carries; every read is answered once, with the right value.
class WorkerExactlyOnceReadTest : public WorkerExactlyOnceTest {};

TEST_P(WorkerExactlyOnceReadTest, WorkerKilledOnItsPageWritesAnswersEachReadOnce) {
#ifndef VTPM_TEST_HOOKS
  GTEST_SKIP() << "crash points need -DVTPM_TEST_HOOKS=ON (the sanitizer test build)";
#endif
  const CrashCase& c = GetParam();
  StartDaemonWithCrashingWorkers(c.point);
  ASSERT_FALSE(HasFatalFailure());
  tpm12::PcrValue digest;
  digest.fill(0xA5);
  CreateDomain(44, kUuid);
  GuestFrontend& g = Guest(44);
  ASSERT_TRUE(g.Connect().ok());
  auto ext = g.Transmit(tpm12::PcrExtend(12, digest), 60s);
  ASSERT_TRUE(ext.ok() && tpm12::ResponseCode(*ext) == tpm12::kSuccess);
  for (int reads = 0; reads < 12; ++reads) {
    // PCRs 12 to 16 in turn (17 and up start at all ones in TPM 1.2).
    const uint32_t pcr = uint32_t(12 + reads % 5);
    auto r = g.Transmit(tpm12::PcrRead(pcr), 60s);
    ASSERT_TRUE(r.ok()) << "read " << reads << ": " << r.status().ToString() << "\n" << daemon().Log();
    ASSERT_EQ(tpm12::ResponseCode(*r), tpm12::kSuccess) << "read " << reads << "\n" << daemon().Log();
    EXPECT_EQ(tpm12::PcrFromResponse(*r), pcr == 12 ? Fold(1, digest) : tpm12::PcrValue{}) << "read " << reads;
  }
  ExpectWorkersLost(c);
}

INSTANTIATE_TEST_SUITE_P(EachStep, WorkerExactlyOnceReadTest,
                         ::testing::Values(CrashCase{"response-written", "the page holds a response without FINISH"},
                                           CrashCase{"response-marked", "the page holds a response without FINISH"},
                                           CrashCase{"finished", ""}),
                         CrashPointName);

// The same for a command that leaves the TPM as it was (TPM_PCRRead): it
// has no record and writes no file, so what a restarted daemon finds in the
// page is either the command, which it runs again from the same state, or
// its response, which it finishes. Either way the guest gets one good answer.
class ExactlyOnceReadTest : public ExactlyOnceTest {};

TEST_P(ExactlyOnceReadTest, DaemonKilledOnAReadsPathAnswersItOnce) {
#ifndef VTPM_TEST_HOOKS
  GTEST_SKIP() << "crash points need -DVTPM_TEST_HOOKS=ON (the sanitizer test build)";
#endif
  const CrashCase& c = GetParam();
  tpm12::PcrValue digest;
  digest.fill(0x5A);
  // A read never reaches the daemon on the worker's data path.
  data_path_ = "daemon";
  // The frontend's own commands at connect, the extend, then reads: the
  // crash comes on the path of the second read.
  StartCrashingDaemon(std::string(c.point) + ":5");
  ASSERT_FALSE(HasFatalFailure());
  CreateDomain(41, kUuid);
  GuestFrontend& g = Guest(41);
  ASSERT_TRUE(g.Connect().ok());
  auto ext = g.Transmit(tpm12::PcrExtend(12, digest), 30s);
  ASSERT_TRUE(ext.ok() && tpm12::ResponseCode(*ext) == tpm12::kSuccess);
  for (int reads = 0; !crashed_; ++reads) {
    ASSERT_LT(reads, 6) << "the daemon never reached crash point " << c.point;
    // Each read another PCR, so that no response equals an earlier one.
    const uint32_t pcr = uint32_t(12 + reads);
    auto r = TransmitAcrossCrash(g, tpm12::PcrRead(pcr));
    ASSERT_FALSE(HasFailure());
    ASSERT_TRUE(r.ok()) << "read " << reads << ": " << r.status().ToString() << "\n" << daemon().Log();
    ASSERT_EQ(tpm12::ResponseCode(*r), tpm12::kSuccess) << "read " << reads << "\n" << daemon().Log();
    auto value = tpm12::PcrFromResponse(*r);
    ASSERT_TRUE(value.has_value());
    EXPECT_EQ(*value, pcr == 12 ? Fold(1, digest) : tpm12::PcrValue{}) << "read " << reads;
  }
  ExpectRestartSaid(c);
}

INSTANTIATE_TEST_SUITE_P(
    EachStep, ExactlyOnceReadTest,
    ::testing::Values(CrashCase{"command-executed", "command found in the page after the restart is new"},
                      // Nothing was saved: the read runs again.
                      CrashCase{"state-saved", "command found in the page after the restart is new"},
                      CrashCase{"response-written", "the page holds a response without FINISH"},
                      // No mark is written for a read: the same as above.
                      CrashCase{"response-marked", "the page holds a response without FINISH"},
                      CrashCase{"finished", ""}),
    CrashPointName);

// Issue 16, item 3: a command that changes no persistent TPM state writes
// no file. Every file of the runtime and state directories keeps its inode,
// size and modification time across reads; on the worker's data path also
// across extends, which the worker keeps in its flight record (design §3
// "Volatile state in the flight record"), while on the daemon's they rewrite
// the volatile copy. A daemon that stops saves the copy, so the check can
// tell a file written from none.
TEST_F(BackendSimTest, CommandsThatChangeNoPersistentStateWriteNoFile) {
  StartLibtpmsDaemon();
  ASSERT_FALSE(HasFatalFailure());
  const bool worker_path = EffectiveDataPath(data_path_) != "daemon";
  CreateDomain(42, kUuid);
  GuestFrontend& g = Guest(42);
  ASSERT_TRUE(g.Connect().ok());
  tpm12::PcrValue digest;
  digest.fill(0x11);
  auto ok = [&](const Bytes& cmd) {
    auto r = g.Transmit(cmd, 30s);
    return r.ok() && tpm12::ResponseCode(*r) == tpm12::kSuccess;
  };
  ASSERT_TRUE(ok(tpm12::PcrExtend(12, digest)));
  ASSERT_TRUE(ok(tpm12::PcrRead(12)));  // libtpms settles its volatile state on the first read
  using Snapshot = std::map<std::string, std::tuple<ino_t, off_t, int64_t>>;
  auto snapshot = [&] {
    Snapshot out;
    for (const std::string& dir : {daemon().runtime_dir(), daemon().state_dir()})
      for (auto& e : std::filesystem::directory_iterator(dir)) {
        struct stat st {};
        if (!e.is_regular_file() || ::stat(e.path().c_str(), &st) != 0) continue;
        out[e.path()] = {st.st_ino, st.st_size, int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
      }
    return out;
  };
  const Snapshot before = snapshot();
  ASSERT_FALSE(before.empty());
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(ok(tpm12::PcrRead(uint32_t(i % 24))));
    ASSERT_TRUE(ok(tpm12::GetCapabilityProperty(0x115)));  // TPM_CAP_PROP_MAX_AUTHSESS
  }
  EXPECT_EQ(snapshot(), before) << "a command that changed nothing wrote a file";
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(ok(tpm12::PcrExtend(12, digest)));
  if (worker_path) {
    EXPECT_EQ(snapshot(), before) << "an extend wrote a file on the worker's data path";
    ASSERT_TRUE(daemon().Restart().ok()) << daemon().Log();
    EXPECT_NE(snapshot(), before) << "the check cannot tell: a daemon that stopped wrote nothing either";
  } else {
    EXPECT_NE(snapshot(), before) << "the check cannot tell: an extend wrote nothing either";
  }
  auto r = g.Transmit(tpm12::PcrRead(12), 30s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(tpm12::PcrFromResponse(*r), Fold(6, digest));
}

}  // namespace
}  // namespace vtpm::sim
