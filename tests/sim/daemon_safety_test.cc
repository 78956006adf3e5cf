// Issue 17, items 1, 5 and 6 through the real daemon (libtpms engine, swtpm
// as the host TPM): a lost store is refused, never replaced, and
// `--reinitialise` is the only way to a new one; a foreign key at
// srk_handle is refused at first provisioning; unsafe directories are
// refused; the running daemon is not dumpable.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include "backend_test_util.h"
#include "fault_util.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

int ExitCode(const Result<int>& ws) { return ws.ok() && WIFEXITED(*ws) ? WEXITSTATUS(*ws) : -1; }

class DaemonSafetyTest : public BackendSimTest {
 protected:
  std::string Db() { return daemon().state_dir() + "/vtpm.db"; }
  // A daemon process object on the libtpms engine, not started.
  void MakeDaemon() {
    DaemonOptions o;
    o.extra_config = LibtpmsConfig();
    daemon_ = std::make_unique<DaemonProcess>(host(), o);
  }
  // Runs the daemon to its exit; expects exit status `code` and each of `words` in its log.
  void ExpectExit(std::vector<std::string> args, int code, std::vector<std::string> words) {
    const size_t before = daemon().Log().size();
    auto ws = daemon().RunToExit(std::move(args));
    ASSERT_TRUE(ws.ok()) << ws.status().ToString() << "\n" << daemon().Log();
    const std::string log = daemon().Log().substr(before);
    EXPECT_EQ(ExitCode(ws), code) << log;
    for (const auto& w : words) EXPECT_NE(log.find(w), std::string::npos) << "'" << w << "' not in:\n" << log;
  }
};

TEST_F(DaemonSafetyTest, MissingOrEmptyStoreIsRefusedAndReinitialiseIsTheWayOut) {
  StartLibtpmsDaemon();
  if (HasFatalFailure()) return;
  ASSERT_TRUE(Exists(Db()));
  auto ws = daemon().Stop();
  ASSERT_TRUE(ws.ok() && WIFEXITED(*ws) && WEXITSTATUS(*ws) == 0);
  const std::string moved = host().dir() + "/vtpm.db.moved";
  ASSERT_EQ(::rename(Db().c_str(), moved.c_str()), 0);
  for (const char* side : {"-wal", "-shm"}) ::unlink((Db() + side).c_str());

  // Missing: exit 18 naming what was found, where and the way out; nothing created.
  ExpectExit({}, 18, {"refusing to start", Db() + " does not exist", "records a vtpmmgrd store provisioned",
                      "new TPM", "vtpmmgrd --reinitialise"});
  EXPECT_FALSE(Exists(Db()));
  // A state directory that is not there (a mistyped state_dir) is not created either.
  ASSERT_EQ(::rename(daemon().state_dir().c_str(), (host().dir() + "/state.moved").c_str()), 0);
  ExpectExit({}, 18, {"does not exist", "records a vtpmmgrd store"});
  EXPECT_FALSE(Exists(daemon().state_dir()));
  ASSERT_EQ(::rename((host().dir() + "/state.moved").c_str(), daemon().state_dir().c_str()), 0);

  // Empty (truncated to 0 bytes): exit 18 as well, and the file stays empty.
  { std::ofstream(Db()).flush(); }
  ExpectExit({}, 18, {Db() + " is empty"});
  struct stat st {};
  ASSERT_EQ(::stat(Db().c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);

  // --reinitialise refuses while a store file exists (exit 4) ...
  ExpectExit({"--reinitialise"}, 4, {Db() + " exists", "move the file away"});
  // ... and with it moved away, evicts the old store's traces and provisions anew.
  ASSERT_EQ(::unlink(Db().c_str()), 0);
  ExpectExit({"--reinitialise"}, 0, {"giving up the store provisioned", "removed the store marker",
                                     "is a new, empty store"});
  ASSERT_TRUE(Exists(Db()));
  // The new store is the daemon's from now on.
  Status started = daemon().Start();
  ASSERT_TRUE(started.ok()) << started.ToString();
  EXPECT_NE(daemon().Log().find("store " + daemon().state_dir() + "/vtpm.db opened"), std::string::npos);
}

TEST_F(DaemonSafetyTest, ForeignKeyAtSrkHandleIsRefusedAtFirstProvisioning) {
  StartHostTpm();
  if (HasFatalFailure()) return;
  const std::string ctx = host().dir() + "/foreign.ctx";
  ASSERT_TRUE(swtpm_->Tool("tpm2_createprimary -C o -G ecc256 -c " + ctx));
  ASSERT_TRUE(swtpm_->Tool("tpm2_evictcontrol -C o -c " + ctx + " 0x81000001"));
  MakeDaemon();
  ExpectExit({}, 19, {"persistent handle 0x81000001 (srk_handle) holds a key that vtpmmgrd did not create",
                      "found type 0x0023", "srk_handle"});
  EXPECT_FALSE(Exists(Db()));
  // The foreign key is still there: nothing of it was touched.
  EXPECT_TRUE(swtpm_->Tool("tpm2_readpublic -c 0x81000001"));
}

// A process that is not dumpable denies the links of /proc/<pid> (exe, fd/*)
// to a same-uid reader without CAP_SYS_PTRACE; a dumpable one allows them. Both the daemon
// and the control process run without CAP_SYS_PTRACE in their bounding set
// (the unit's CapabilityBoundingSet= has none either), so the reader's
// capabilities cover theirs and only dumpability decides.
// Issue 17 item 5: a state or runtime directory that another user owns or
// can write in is refused (exit 21) with the fix, and nothing in it changes;
// with the mode put back the daemon starts on the same store.
TEST_F(DaemonSafetyTest, UnsafeStateOrRuntimeDirectoryIsRefused) {
  StartLibtpmsDaemon();
  if (HasFatalFailure()) return;
  auto ws = daemon().Stop();
  ASSERT_TRUE(ws.ok() && WIFEXITED(*ws) && WEXITSTATUS(*ws) == 0);
  struct stat before {};
  ASSERT_EQ(::stat(Db().c_str(), &before), 0);
  const std::string state = daemon().state_dir(), run = daemon().runtime_dir();
  ASSERT_EQ(::chmod(state.c_str(), 0770), 0);
  ExpectExit({}, 21, {"refusing to start", "the state directory " + state + " has mode 0770",
                      "chmod 0700 " + state});
  ASSERT_EQ(::chmod(state.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(run.c_str(), 0703), 0);
  ExpectExit({}, 21, {"the runtime directory " + run + " has mode 0703"});
  ASSERT_EQ(::chmod(run.c_str(), 0700), 0);
  ASSERT_EQ(::chown(state.c_str(), 65534, 65534), 0);
  ExpectExit({}, 21, {"the state directory " + state + " belongs to uid 65534, not to uid 0",
                      "chown 0 " + state});
  ASSERT_EQ(::chown(state.c_str(), 0, 0), 0);
  struct stat after {};
  ASSERT_EQ(::stat(Db().c_str(), &after), 0);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  // Readable by others is accepted, with a warning.
  ASSERT_EQ(::chmod(state.c_str(), 0755), 0);
  Status started = daemon().Start();
  ASSERT_TRUE(started.ok()) << started.ToString();
  EXPECT_NE(daemon().Log().find("the state directory " + state + " has mode 0755: other users can list"),
            std::string::npos);
}

TEST_F(DaemonSafetyTest, TheRunningDaemonIsNotDumpable) {
  const std::vector<std::string> no_ptrace = {"/usr/bin/setpriv", "--bounding-set=-sys_ptrace"};
  auto reads_exe_link = [&](pid_t pid) {
    std::string cmd = "/usr/bin/setpriv --bounding-set=-sys_ptrace --inh-caps=-all readlink /proc/" +
                      std::to_string(pid) + "/exe >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
  };
  SpawnOptions control;
  control.argv = no_ptrace;
  for (const char* a : {"/bin/sleep", "60"}) control.argv.push_back(a);
  auto sleeper = ChildProcess::Spawn(control);
  ASSERT_TRUE(sleeper.ok()) << sleeper.status().ToString();
  usleep(200 * 1000);  // setpriv has exec'd sleep
  EXPECT_TRUE(reads_exe_link(sleeper->pid())) << "the check cannot tell: a dumpable process is not readable";

  DaemonOptions o;
  o.wrapper = no_ptrace;
  daemon_ = std::make_unique<DaemonProcess>(host(), o);
  Status st = daemon_->Start();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(reads_exe_link(daemon_->pid())) << "the daemon is dumpable";
  EXPECT_TRUE(daemon_->running());
}

// Design §2 "Identities": the worker of each attached guest runs under a uid
// of its own from [engine] worker_uid_base (all four ids dropped), in
// seccomp filter mode, with no_new_privs and no capability left.
TEST_F(DaemonSafetyTest, EachGuestsWorkerRunsSandboxedUnderAUidOfItsOwn) {
  StartLibtpmsDaemon();
  ASSERT_FALSE(HasFatalFailure());
  constexpr int kGuests = 3;
  for (int i = 0; i < kGuests; ++i) {
    CreateDomain(uint32_t(60 + i), FaultUuid(0x1d000000, uint32_t(i)));
    GuestFrontend& g = Guest(uint32_t(60 + i));
    ASSERT_TRUE(g.Connect().ok());
    auto r = g.Transmit(tpm12::PcrRead(0), 30s);
    ASSERT_TRUE(r.ok() && tpm12::ResponseCode(*r) == tpm12::kSuccess);
  }
  std::vector<pid_t> workers = ChildPids(daemon().pid());
  ASSERT_EQ(workers.size(), size_t(kGuests)) << "one worker per attached guest";
  std::set<uint64_t> uids;
  for (pid_t w : workers) {
    std::map<std::string, std::string> f = ProcStatus(w);
    const std::string uid = f["Uid"].substr(0, f["Uid"].find('\t'));
    EXPECT_EQ(f["Uid"], uid + "\t" + uid + "\t" + uid + "\t" + uid) << "worker " << w;
    const uint64_t u = std::stoull(uid);
    EXPECT_GE(u, 0x7a700000u) << "worker " << w << " outside [engine] worker_uid_base's range";
    EXPECT_LT(u, 0x7a700000u + 65536u) << "worker " << w;
    EXPECT_EQ(f["Seccomp"], "2") << "worker " << w;
    EXPECT_EQ(f["NoNewPrivs"], "1") << "worker " << w;
    EXPECT_EQ(f["CapEff"], "0000000000000000") << "worker " << w;
    uids.insert(u);
  }
  EXPECT_EQ(uids.size(), size_t(kGuests)) << "two workers share a uid";
}

}  // namespace
}  // namespace vtpm::sim
