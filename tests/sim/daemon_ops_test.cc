// The daemon as operators meet it: systemd notification and watchdog, a bad
// configuration file, journal entries with DOMID/DEVID/UUID, the unit
// accepted by systemd-analyze, man pages that render without warnings and
// list the same options as --help, and the example configuration.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <poll.h>

#include <fstream>
#include <future>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "backend_test_util.h"
#include "common/log_event.h"
#include "daemon/config.h"
#include "host_tpm_swtpm.h"
#include "simhost/run_capture.h"

namespace vtpm::sim {
namespace {

constexpr char kUuid[] = "2b7e1516-28ae-42d2-a6ab-f7158809cf4f";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// One journal entry of the native protocol: NAME=value lines, or NAME\n +
// le64 length + bytes + \n for values holding a newline.
std::map<std::string, std::string> ParseJournalEntry(const std::string& d) {
  std::map<std::string, std::string> f;
  size_t i = 0;
  while (i < d.size()) {
    size_t nl = d.find('\n', i);
    if (nl == std::string::npos) break;
    std::string line = d.substr(i, nl - i);
    size_t eq = line.find('=');
    if (eq != std::string::npos) {
      f[line.substr(0, eq)] = line.substr(eq + 1);
      i = nl + 1;
    } else {
      if (nl + 9 > d.size()) break;
      uint64_t n = 0;
      for (int b = 7; b >= 0; --b) n = n << 8 | uint8_t(d[nl + 1 + b]);
      f[line] = d.substr(nl + 9, n);
      i = nl + 9 + n + 1;
    }
  }
  return f;
}

// A socket standing in for journald's: the daemon's entries, parsed.
class JournalCapture {
 public:
  explicit JournalCapture(const std::string& path) : fd_(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
    bound_ = bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    int big = 4 << 20;
    setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  }
  bool bound() const { return bound_; }
  // The next entry within `timeout_ms`, if any.
  std::optional<std::map<std::string, std::string>> Next(int timeout_ms = 100) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
    char buf[65536];
    ssize_t n = recv(fd_.get(), buf, sizeof buf, 0);
    if (n <= 0) return std::nullopt;
    return ParseJournalEntry(std::string(buf, size_t(n)));
  }

 private:
  UniqueFd fd_;
  bool bound_ = false;
};

class DaemonOpsTest : public BackendSimTest {
 protected:
  // Starts the daemon logging to the journal at level info; its entries
  // arrive on journal_.
  void StartJournalledDaemon() {
    ASSERT_NO_FATAL_FAILURE(MakeJournalledDaemon());
    ASSERT_TRUE(daemon_->Start().ok());
  }
  // The same daemon with `extra_config`, not started.
  void MakeJournalledDaemon(const std::string& extra_config = "") {
    const std::string path = host().dir() + "/journal.sock";
    journal_ = std::make_unique<JournalCapture>(path);
    ASSERT_TRUE(journal_->bound()) << strerror(errno);
    DaemonOptions o;
    o.log_target = "journal";
    o.log_level = "info";
    o.daemon_config = "journal_socket = \"" + path + "\"\n";
    o.extra_config = extra_config;
    daemon_ = std::make_unique<DaemonProcess>(host(), o);
  }
  std::unique_ptr<JournalCapture> journal_;
};

TEST_F(DaemonOpsTest, NotifySocketSeesReadyStatusWatchdogAndStopping) {
  DaemonOptions o;
  o.env = {"WATCHDOG_USEC=200000"};  // pings every 100 ms
  daemon_ = std::make_unique<DaemonProcess>(host(), o);
  Status st = daemon_->Start();
  ASSERT_TRUE(st.ok()) << st.ToString();
  NotifySocket& n = *daemon_->notify();
  ASSERT_TRUE(n.WaitFor("WATCHDOG=1", std::chrono::seconds(2)).ok());
  ASSERT_TRUE(n.WaitFor("WATCHDOG=1", std::chrono::seconds(2)).ok()) << "only one watchdog ping";
  bool status = false;
  for (auto& l : n.received()) status |= l.rfind("STATUS=", 0) == 0 && l.size() > 7;
  EXPECT_TRUE(status) << "no STATUS= line";
  // STATUS follows the devices.
  CreateDomain(3, kUuid);
  ASSERT_TRUE(Guest(3).Connect().ok());
  EXPECT_TRUE(n.WaitFor("STATUS=serving 1 devices, 1 connected", std::chrono::seconds(8)).ok());
  auto ws = daemon_->Stop();
  ASSERT_TRUE(ws.ok()) << ws.status().ToString();
  EXPECT_TRUE(WIFEXITED(*ws) && WEXITSTATUS(*ws) == 0) << "wait status " << *ws;
  EXPECT_TRUE(n.WaitFor("STOPPING=1", std::chrono::seconds(1)).ok());
}

TEST_F(DaemonOpsTest, WithoutWatchdogUsecThereAreNoPings) {
  StartDaemon();
  EXPECT_FALSE(daemon().notify()->WaitFor("WATCHDOG=1", std::chrono::milliseconds(500)).ok());
}

TEST_F(DaemonOpsTest, BadConfigStopsTheDaemonNamingTheLineWithTheConfigStatus) {
  const std::string path = host().dir() + "/bad.conf";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[daemon]\nlog_level = \"info\"\n\nstat_dir = \"/srv\"\n", ":4"},           // unknown key
      {"[daemon]\n\nauto_create = \"yes\"\n", ":3"},                              // wrong type
      {"[xen]\nbackend_domid = 0\n[daemon]\n\n\nlog_target = \"syslog\"\n", ":6"},  // bad value
      {"[daemon\n", ":1"},                                                        // syntax
  };
  for (auto& [text, line] : cases) {
    WriteFile(path, text);
    auto r = RunCapture({VTPM_DAEMON_PATH, "--config", path}, {"NOTIFY_SOCKET="}, std::chrono::seconds(10));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->exit_code, 3) << text << "\n" << r->output;
    EXPECT_NE(r->output.find(path + line), std::string::npos) << text << "\n" << r->output;
  }
  // --check-config says the same without starting.
  auto r = RunCapture({VTPM_DAEMON_PATH, "--check-config", "--config", path}, {}, std::chrono::seconds(10));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 3) << r->output;
  auto missing = RunCapture({VTPM_DAEMON_PATH, "--config", path + ".none"}, {}, std::chrono::seconds(10));
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->exit_code, 3) << missing->output;
  auto usage = RunCapture({VTPM_DAEMON_PATH, "--no-such-flag"}, {}, std::chrono::seconds(10));
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->exit_code, 2) << usage->output;
  // -l takes the levels log_level takes: another one used to silence the log.
  auto level = RunCapture({VTPM_DAEMON_PATH, "-l", "verbose", "--config", path}, {}, std::chrono::seconds(10));
  ASSERT_TRUE(level.ok());
  EXPECT_EQ(level->exit_code, 2) << level->output;
  EXPECT_NE(level->output.find("-l/--log-level must be trace, debug, info, warn or error, not \"verbose\""),
            std::string::npos)
      << level->output;
  // A worker_path that is no executable stops the daemon before it opens
  // the host TPM, naming its line, as --check-config does.
  WriteFile(path, "[engine]\nkind = \"libtpms\"\n\nworker_path = \"/nonexistent/vtpm-worker\"\n");
  for (std::vector<std::string> args : {std::vector<std::string>{}, std::vector<std::string>{"--check-config"}}) {
    args.insert(args.begin(), {VTPM_DAEMON_PATH, "--config", path});
    auto worker = RunCapture(args, {"NOTIFY_SOCKET="}, std::chrono::seconds(10));
    ASSERT_TRUE(worker.ok());
    EXPECT_EQ(worker->exit_code, 3) << worker->output;
    EXPECT_NE(worker->output.find(path + ":4: [engine] worker_path /nonexistent/vtpm-worker is not an executable"),
              std::string::npos)
        << worker->output;
  }
}

TEST_F(DaemonOpsTest, JournalEntriesOfAnAttachCarryDomidDevidAndUuid) {
  ASSERT_NO_FATAL_FAILURE(StartJournalledDaemon());
  JournalCapture& j = *journal_;
  CreateDomain(7, kUuid);
  ASSERT_TRUE(Guest(7).Connect().ok());

  std::vector<std::map<std::string, std::string>> entries;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  const std::map<std::string, std::string>* attach = nullptr;
  while (!attach && std::chrono::steady_clock::now() < deadline) {
    auto e = j.Next();
    if (!e) continue;
    entries.push_back(std::move(*e));
    if (entries.back()["MESSAGE"].find("connected (ring-ref") != std::string::npos) attach = &entries.back();
  }
  ASSERT_NE(attach, nullptr) << "no attach entry among " << entries.size() << " journal entries";
  auto a = *attach;
  EXPECT_EQ(a["DOMID"], "7");
  EXPECT_EQ(a["DEVID"], "0");
  EXPECT_EQ(a["UUID"], kUuid);
  EXPECT_EQ(a["PRIORITY"], "6");
  EXPECT_EQ(a["SYSLOG_IDENTIFIER"], "vtpmmgrd");
  EXPECT_NE(a["MESSAGE"].find("domid=7 devid=0 uuid=" + std::string(kUuid)), std::string::npos) << a["MESSAGE"];
  // Issue 17 item 9: a documented event's stable id, and where the line was written.
  EXPECT_EQ(a["MESSAGE_ID"], MessageId(LogEvent::kAttached));
  EXPECT_EQ(a["CODE_FILE"], "src/backend/device.cc");
  EXPECT_TRUE(std::regex_match(a["CODE_LINE"], std::regex("[1-9][0-9]*"))) << a["CODE_LINE"];
  EXPECT_FALSE(a["CODE_FUNC"].empty());
  // Lines about the daemon itself carry no guest fields.
  bool ready_seen = false;
  for (auto& e : entries) {
    EXPECT_EQ(e.count("CODE_FILE"), 1u) << e["MESSAGE"];
    if (e["MESSAGE"].find("vtpmmgrd ready") != std::string::npos) {
      ready_seen = true;
      EXPECT_EQ(e.count("DOMID"), 0u);
      EXPECT_EQ(e["MESSAGE_ID"], MessageId(LogEvent::kStarted));
    } else if (e["MESSAGE"].find("new device") != std::string::npos) {
      EXPECT_EQ(e.count("MESSAGE_ID"), 0u) << "not a documented event: " << e["MESSAGE"];
    }
  }
  EXPECT_TRUE(ready_seen);
  // Nothing went to stderr meanwhile.
  EXPECT_EQ(daemon().Log().find("connected (ring-ref"), std::string::npos);
}

// Issue 17 item 9: tpm2-tss's own messages (here: the host TPM's device
// node is missing) reach the journal as the daemon's entries, with its
// identifier, a priority from tpm2-tss's level and the tpm2-tss source line;
// none go to stderr.
TEST_F(DaemonOpsTest, Tss2MessagesReachTheJournalWithTheDaemonsFields) {
  ASSERT_NO_FATAL_FAILURE(MakeJournalledDaemon("[engine]\nkind = \"libtpms\"\nworker_path = \"" VTPM_WORKER_BIN
                                               "\"\n[host_tpm]\ntcti = \"device:" +
                                               host().dir() + "/no-tpmrm0\"\n"));
  auto ws = daemon_->RunToExit({});
  ASSERT_TRUE(ws.ok()) << ws.status().ToString();
  EXPECT_TRUE(WIFEXITED(*ws) && WEXITSTATUS(*ws) == 17) << "wait status " << *ws << "\n" << daemon().Log();
  int tss2 = 0;
  bool refused = false;
  while (auto e = journal_->Next(500)) {
    auto& m = (*e)["MESSAGE"];
    if (m.rfind("tss2 tcti: ", 0) == 0) {
      ++tss2;
      EXPECT_EQ((*e)["SYSLOG_IDENTIFIER"], "vtpmmgrd") << m;
      EXPECT_EQ((*e)["PRIORITY"], "3") << m;  // tpm2-tss's ERROR
      EXPECT_EQ((*e)["CODE_FILE"].rfind("src/tss2-tcti/", 0), 0u) << (*e)["CODE_FILE"];
      EXPECT_TRUE(std::regex_match((*e)["CODE_LINE"], std::regex("[1-9][0-9]*"))) << (*e)["CODE_LINE"];
      EXPECT_FALSE((*e)["CODE_FUNC"].empty());
    } else if (m.find("refusing to start") != std::string::npos) {
      refused = true;
      EXPECT_EQ((*e)["MESSAGE_ID"], MessageId(LogEvent::kStartRefused));
    }
  }
  EXPECT_GT(tss2, 0) << "no tpm2-tss line in the journal";
  EXPECT_TRUE(refused);
  EXPECT_EQ(daemon().Log().find("ERROR:tcti"), std::string::npos) << daemon().Log();
}

// Issue 17 item 9: an admin action's line says who asked (uid, pid and
// program, from the control socket's peer) and names the guest the instance
// is attached to, or the uuid alone ("domid=-1" before).
TEST_F(DaemonOpsTest, AdminLinesNameWhoAskedAndTheAttachedDomain) {
  constexpr char kLoneUuid[] = "3c6e0b8a-8b3f-4f5e-9a61-0f2d7c4e5b19";
  ASSERT_NO_FATAL_FAILURE(StartHostTpm());
  ASSERT_NO_FATAL_FAILURE(MakeJournalledDaemon(LibtpmsConfig()));
  ASSERT_TRUE(daemon_->Start().ok());
  CreateDomain(7, kUuid);
  GuestFrontend& guest = Guest(7);
  ASSERT_TRUE(guest.Connect().ok());
  const Bytes pcr_read = {0x00, 0xC1, 0x00, 0x00, 0x00, 0x0E, 0x00, 0x00, 0x00, 0x15, 0x00, 0x00, 0x00, 0x00};
  auto pcr = guest.Transmit(pcr_read, std::chrono::seconds(30));  // the TPM is running
  ASSERT_TRUE(pcr.ok()) << pcr.status().ToString();
  const std::string sock = daemon().runtime_dir() + "/control.sock";
  const std::regex by("vtpmctl (create|clear) by uid 0 pid [0-9]+ \\(vtpmctl\\): ");
  std::map<std::string, std::map<std::string, std::string>> seen;
  // Reads the journal while vtpmctl runs: the daemon's sends wait for a
  // reader, as with journald.
  auto absorb = [&] {
    while (auto e = journal_->Next(20)) {
      std::smatch m;
      const std::string msg = (*e)["MESSAGE"];
      if (std::regex_search(msg, m, by)) seen[m[1]] = *e;
    }
  };
  for (const char* verb : {"create", "clear"}) {
    auto run = std::async(std::launch::async, [&] {
      return RunCapture({VTPM_CTL_PATH, "--socket", sock, verb, verb == std::string("create") ? kLoneUuid : kUuid},
                        {}, std::chrono::seconds(60));
    });
    while (run.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready) absorb();
    auto r = run.get();
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->exit_code, 0) << verb << ": " << r->output;
  }
  absorb();
  ASSERT_EQ(seen.size(), 2u) << "admin lines with their requester not found";
  auto& created = seen["create"];
  EXPECT_EQ(created["MESSAGE"].rfind("uuid=" + std::string(kLoneUuid) + ": vtpmctl create by uid 0 pid ", 0), 0u)
      << created["MESSAGE"];
  EXPECT_EQ(created["UUID"], kLoneUuid);
  EXPECT_EQ(created.count("DOMID"), 0u);
  EXPECT_EQ(created["MESSAGE_ID"], MessageId(LogEvent::kCreated));
  auto& cleared = seen["clear"];
  EXPECT_EQ(cleared["MESSAGE"].rfind("domid=7 devid=0 uuid=" + std::string(kUuid) + ": vtpmctl clear by ", 0), 0u)
      << cleared["MESSAGE"];
  EXPECT_EQ(cleared["DOMID"], "7");
  EXPECT_EQ(cleared["DEVID"], "0");
  EXPECT_EQ(cleared["MESSAGE_ID"], MessageId(LogEvent::kCleared));
}

// Issue 17 item 4: a guest flooding malformed requests gets a burst of 10
// warnings, then 1 per second, and "suppressed N messages" summaries that
// account for every other one; a second guest's attach is still logged.
TEST_F(DaemonOpsTest, AFloodingGuestIsRateLimitedAndOthersStillLogged) {
  constexpr int kFlood = 300;
  constexpr char kOtherUuid[] = "6a09e667-f3bc-4c90-8e1e-5d2a7b1f0c3d";
  ASSERT_NO_FATAL_FAILURE(StartJournalledDaemon());
  JournalCapture& j = *journal_;
  CreateDomain(7, kUuid);
  GuestFrontend& flood = Guest(7);
  ASSERT_TRUE(flood.Connect().ok());

  int malformed = 0;
  uint64_t suppressed = 0;
  bool other_attach = false;
  std::vector<std::string> summaries;
  std::regex summary("suppressed ([0-9]+) messages from domid 7 devid 0 \\(uuid " + std::string(kUuid) +
                     "\\) in the last [0-9]+ s");
  // Reads what the daemon logged so far (its sends block once the socket's
  // queue is full, as with a journald that falls behind).
  auto absorb = [&](int timeout_ms) {
    auto e = j.Next(timeout_ms);
    if (!e) return;
    auto& m = (*e)["MESSAGE"];
    std::smatch sm;
    if (m.find("malformed request") != std::string::npos) {
      EXPECT_EQ((*e)["DOMID"], "7") << m;
      ++malformed;
    } else if (std::regex_search(m, sm, summary)) {
      EXPECT_EQ((*e)["DOMID"], "7");
      EXPECT_EQ((*e)["DEVID"], "0");
      EXPECT_EQ((*e)["UUID"], kUuid);
      suppressed += std::stoull(sm[1]);
      summaries.push_back(m);
    } else if (m.find("connected (ring-ref") != std::string::npos && (*e)["DOMID"] == "8") {
      other_attach = true;
    }
  };

  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kFlood; ++i) {
    flood.WriteHeader(4, kSubmit, 0, 0);  // shorter than a TPM header
    ASSERT_TRUE(flood.Notify().ok());
    ASSERT_TRUE(flood.WaitIdle(std::chrono::seconds(2))) << "request " << i;
    ASSERT_EQ(flood.state(), kFinish);
    flood.DrainEvents();  // its upcall runs, as in a real guest
    absorb(0);
  }
  const auto flood_s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0).count();
  CreateDomain(8, kOtherUuid);
  ASSERT_TRUE(Guest(8).Connect().ok());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(25);
  while ((malformed + suppressed < kFlood || !other_attach) && std::chrono::steady_clock::now() < deadline)
    absorb(100);
  EXPECT_TRUE(other_attach) << "the second guest's attach was not logged";
  EXPECT_GE(malformed, 10);
  EXPECT_LE(malformed, 10 + flood_s + 1) << "flood of " << flood_s << " s";
  ASSERT_FALSE(summaries.empty()) << "no summary line; " << malformed << " malformed lines";
  EXPECT_EQ(malformed + suppressed, uint64_t(kFlood)) << summaries.front();
  EXPECT_TRUE(daemon().running());
}

TEST(DaemonOpsFiles, SystemdAnalyzeVerifyAcceptsTheUnit) {
  vtpm::testing::TempDir dir;
  std::string unit = ReadFile(VTPM_UNIT_FILE);
  ASSERT_NE(unit.find("Type=notify"), std::string::npos);
  // The installed path does not exist here: point ExecStart at the build.
  std::regex exec("ExecStart=\\S+");
  unit = std::regex_replace(unit, exec, std::string("ExecStart=") + VTPM_DAEMON_PATH);
  const std::string path = dir.Sub("vtpmmgrd.service");
  WriteFile(path, unit);
  auto r = RunCapture({"systemd-analyze", "verify", "--man=no", path}, {"SYSTEMD_LOG_LEVEL=notice"},
                      std::chrono::seconds(60));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 0) << r->output;
  EXPECT_EQ(r->output.find("vtpmmgrd.service"), std::string::npos) << r->output;
  // A unit it must refuse, so this check can fail.
  WriteFile(path, unit + "\n[Service]\nRestartPreventExitStatus=banana\nNoSuchDirective=1\n");
  auto bad = RunCapture({"systemd-analyze", "verify", "--man=no", path}, {}, std::chrono::seconds(60));
  ASSERT_TRUE(bad.ok());
  EXPECT_NE(bad->output.find("vtpmmgrd.service"), std::string::npos) << bad->output;
}

TEST(DaemonOpsFiles, TheUnitListsTheRefuseStatusesAndTheXenOrdering) {
  std::string unit = ReadFile(VTPM_UNIT_FILE);
  for (const char* want : {"RestartPreventExitStatus=2 3 4 11 12 13 14 15 16 18 19 21", "After=xen.service",
                           "Before=xendomains.service", "RuntimeDirectoryPreserve=yes", "WatchdogSec=",
                           "Restart=on-failure", "StateDirectory=vtpmmgrd", "RuntimeDirectory=vtpmmgrd"})
    EXPECT_NE(unit.find(want), std::string::npos) << want;
}

TEST(DaemonOpsFiles, TheUnitRunsOnlyOnDom0AndOpensTheTpmAsDebianLeavesIt) {
  std::string unit = ReadFile(VTPM_UNIT_FILE);
  for (const char* want : {"ConditionPathExists=/proc/xen/capabilities",
                           "ExecCondition=+/bin/grep -qx control_d /proc/xen/capabilities",
                           "SupplementaryGroups=tss", "LimitCORE=0", "LimitNOFILE=65536",
                           "ExecStart=" VTPM_INSTALL_SBINDIR "/vtpmmgrd --config /etc/vtpmmgrd/vtpmmgrd.conf",
                           "StartLimitBurst=", "DevicePolicy=closed", "DeviceAllow=/dev/tpmrm0 rw",
                           // libxenctrl: each domain's handle and shutdown reason (save/restore)
                           "DeviceAllow=/dev/xen/privcmd rw"})
    EXPECT_NE(unit.find(want), std::string::npos) << want;
  // Only the devices the daemon opens; no capability that bypasses file modes.
  const std::string settings = std::regex_replace(unit, std::regex("(^|\n)#[^\n]*"), "");
  for (const char* never : {"gntalloc", "xenbus_backend", "CAP_DAC_OVERRIDE"})
    EXPECT_EQ(settings.find(never), std::string::npos) << never;
}

TEST(DaemonOpsFiles, SystemdAnalyzeSecurityExposureAtMost1Point8) {
  vtpm::testing::TempDir dir;
  std::string unit = std::regex_replace(ReadFile(VTPM_UNIT_FILE), std::regex("ExecStart=\\S+"),
                                        std::string("ExecStart=") + VTPM_DAEMON_PATH);
  const std::string path = dir.Sub("vtpmmgrd.service");
  WriteFile(path, unit);
  auto r = RunCapture({"systemd-analyze", "security", "--offline=yes", "--threshold=18", "--no-pager", path}, {},
                      std::chrono::seconds(60));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 0) << r->output;
  EXPECT_NE(r->output.find("Overall exposure level for vtpmmgrd.service: 1."), std::string::npos) << r->output;
  // The same check fails on a weakened unit.
  for (const char* line : {"NoNewPrivileges=yes\n", "PrivateNetwork=yes\n", "ProtectSystem=strict\n",
                           "RestrictNamespaces=yes\n", "SystemCallFilter=@system-service seccomp\n"})
    unit = std::regex_replace(unit, std::regex(line), "");
  WriteFile(path, unit);
  auto weak = RunCapture({"systemd-analyze", "security", "--offline=yes", "--threshold=18", "--no-pager", path}, {},
                         std::chrono::seconds(60));
  ASSERT_TRUE(weak.ok());
  EXPECT_NE(weak->exit_code, 0) << weak->output;
}

TEST(DaemonOpsFiles, ManPagesRenderWithoutWarnings) {
  for (const char* page : {"man/vtpmmgrd.8", "man/vtpmctl.8", "man/vtpmmgrd.conf.5"}) {
    std::string path = std::string(VTPM_SOURCE_DIR) + "/" + page;
    auto warn = RunCapture({"sh", "-c", "man --warnings -l \"$0\" 2>&1 >/dev/null", path}, {"MANWIDTH=80"},
                           std::chrono::seconds(30));
    ASSERT_TRUE(warn.ok());
    EXPECT_EQ(warn->exit_code, 0) << page;
    EXPECT_EQ(warn->output, "") << page;
    auto text = RunCapture({"sh", "-c", "man -l \"$0\" 2>/dev/null", path}, {"MANWIDTH=80"}, std::chrono::seconds(30));
    ASSERT_TRUE(text.ok());
    EXPECT_NE(text->output.find("NAME"), std::string::npos) << page;
    EXPECT_NE(text->output.find("SEE ALSO"), std::string::npos) << page;
  }
}

// Long and short options in --help text ("-c,--config TEXT").
std::set<std::string> HelpOptions(const std::string& help) {
  std::set<std::string> out;
  std::regex opt("(^|[\\s,])(--?[A-Za-z][A-Za-z-]*)");
  for (auto it = std::sregex_iterator(help.begin(), help.end(), opt); it != std::sregex_iterator(); ++it)
    out.insert((*it)[2]);
  return out;
}

// Options a roff page's SYNOPSIS, OPTIONS and COMMANDS sections name:
// \-x and \-\-long\-name (other sections may quote other programs).
std::set<std::string> ManOptions(const std::string& page) {
  std::string roff;
  for (size_t at = page.find("\n.SH "); at != std::string::npos;) {
    size_t next = page.find("\n.SH ", at + 1);
    std::string sec = page.substr(at, next == std::string::npos ? std::string::npos : next - at);
    for (const char* name : {"\n.SH SYNOPSIS\n", "\n.SH OPTIONS\n", "\n.SH COMMANDS\n"})
      if (sec.rfind(name, 0) == 0) roff += sec;
    at = next;
  }
  std::set<std::string> out;
  std::regex opt("\\\\-(\\\\-[a-z](?:[a-z]|\\\\-)*|[A-Za-z]\\b)");
  for (auto it = std::sregex_iterator(roff.begin(), roff.end(), opt); it != std::sregex_iterator(); ++it) {
    std::string s = "-" + std::string((*it)[1]);
    out.insert(std::regex_replace(s, std::regex("\\\\-"), "-"));
  }
  return out;
}

TEST(DaemonOpsFiles, HelpAndManPagesListTheSameOptions) {
  struct Prog {
    const char* bin;
    const char* page;
    std::vector<std::string> subcommands;
  };
  for (const Prog& p : {Prog{VTPM_DAEMON_PATH, "man/vtpmmgrd.8", {}},
                        Prog{VTPM_CTL_PATH, "man/vtpmctl.8",
                             {"list", "show", "create", "status", "wipe", "clear", "prune", "backup", "restore", "discard",
                              "host-key", "export", "import"}}}) {
    std::set<std::string> help;
    std::vector<std::vector<std::string>> calls = {{p.bin, "--help"}};
    for (auto& s : p.subcommands) calls.push_back({p.bin, s, "--help"});
    for (auto& argv : calls) {
      auto r = RunCapture(argv, {}, std::chrono::seconds(10));
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r->exit_code, 0) << r->output;
      for (auto& o : HelpOptions(r->output)) help.insert(o);
    }
    std::set<std::string> man = ManOptions(ReadFile(std::string(VTPM_SOURCE_DIR) + "/" + p.page));
    ASSERT_GE(help.size(), 4u);
    for (auto& o : help) EXPECT_TRUE(man.count(o)) << p.page << " does not document " << o;
    for (auto& o : man) EXPECT_TRUE(help.count(o)) << p.page << " documents " << o << ", which --help lacks";
  }
}

TEST(DaemonOpsFiles, TheExampleConfigHoldsEveryKeyWithItsDefault) {
  const std::string path = std::string(VTPM_SOURCE_DIR) + "/etc/vtpmmgrd.conf";
  auto parsed = ParseConfig(ReadFile(path), path);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const Config d;
  const Config& c = *parsed;
  EXPECT_EQ(c.state_dir, d.state_dir);
  EXPECT_EQ(c.runtime_dir, d.runtime_dir);
  EXPECT_EQ(c.control_socket, d.control_socket);
  EXPECT_EQ(c.log_level, d.log_level);
  EXPECT_EQ(c.log_target, d.log_target);
  EXPECT_EQ(c.auto_create, d.auto_create);
  EXPECT_EQ(c.command_deadline, d.command_deadline);
  EXPECT_EQ(c.admin_deadline, d.admin_deadline);
  EXPECT_EQ(c.backend_domid, d.backend_domid);
  EXPECT_EQ(c.allow_any_locality, d.allow_any_locality);
  EXPECT_EQ(c.tcti, d.tcti);
  EXPECT_EQ(c.srk_handle, d.srk_handle);
  EXPECT_EQ(c.persist_srk, d.persist_srk);
  EXPECT_EQ(c.pcr_policy, d.pcr_policy);
  EXPECT_EQ(c.engine, d.engine);
  EXPECT_EQ(c.worker_path, d.worker_path);
  EXPECT_EQ(c.startup, d.startup);
  EXPECT_EQ(c.peers_dir, d.peers_dir);
  // Every key set in the example is documented in vtpmmgrd.conf(5), and
  // every key the page documents is in the example.
  std::string page = ReadFile(std::string(VTPM_SOURCE_DIR) + "/man/vtpmmgrd.conf.5");
  std::string example = ReadFile(path);
  std::set<std::string> example_keys, page_keys;
  std::regex key_line("(^|\\n)([a-z_]+) = ");
  for (auto it = std::sregex_iterator(example.begin(), example.end(), key_line); it != std::sregex_iterator(); ++it)
    example_keys.insert((*it)[2]);
  std::regex page_key("\\n\\.BR ([a-z_]+) \" = ");
  for (auto it = std::sregex_iterator(page.begin(), page.end(), page_key); it != std::sregex_iterator(); ++it)
    page_keys.insert((*it)[1]);
  EXPECT_GE(example_keys.size(), 17u);
  EXPECT_EQ(example_keys, page_keys);
  // The keys only a test build has are no operator settings (tests/sim/README.md).
  for (const char* test_only : {"scripted", "journal_socket"}) {
    EXPECT_EQ(example.find(test_only), std::string::npos) << test_only;
    EXPECT_EQ(page.find(test_only), std::string::npos) << test_only;
  }
  // The build tree has no installed worker next to the daemon: name the built one.
  vtpm::testing::TempDir dir;
  const std::string built = dir.Sub("vtpmmgrd.conf");
  std::string with_worker = std::regex_replace(example, std::regex("\nworker_path = \"\""),
                                               "\nworker_path = \"" VTPM_WORKER_PATH "\"");
  ASSERT_NE(with_worker, example) << "the example lost its worker_path line";
  WriteFile(built, with_worker);
  auto r = RunCapture({VTPM_DAEMON_PATH, "--check-config", "--config", built}, {}, std::chrono::seconds(10));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 0) << r->output;
  EXPECT_NE(r->output.find("(worker " VTPM_WORKER_PATH ")"), std::string::npos) << r->output;
}

}  // namespace
}  // namespace vtpm::sim
