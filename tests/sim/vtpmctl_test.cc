// vtpmctl against the real daemon: every verb, as a table and as JSON, with
// the libtpms engine behind a swtpm host TPM; and every error path (daemon
// down, not root, bad arguments, unknown uuid, wipe while attached, a guest
// that disabled ForceClear, malformed requests on the socket); and issue 17
// item 8: instances named by domain name or domid, the DOMAIN column and the
// time of the last command, options after the verb, unknown verbs named,
// no row left by wipe --force, bash completion.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <ctime>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "backend_test_util.h"
#include "daemon/control_protocol.h"
#include "harness/state_recorder.h"
#include "host_tpm_swtpm.h"
#include "simhost/run_capture.h"

namespace vtpm::sim {
namespace {

using nlohmann::json;

constexpr char kUuid[] = "8d3f6a2e-1c4b-4d7e-9f10-2a3b4c5d6e7f";
constexpr char kAutoUuid[] = "5e4d3c2b-1a09-4876-b543-210fedcba987";
constexpr char kLateUuid[] = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
constexpr char kUnknownUuid[] = "ffffffff-eeee-4ddd-8ccc-bbbbbbbbbbbb";

// vtpmctl's statuses (vtpmctl(8) EXIT STATUS).
enum : int { kOk = 0, kFailure = 1, kUsage = 2, kNotFound = 3, kConflict = 4, kUnreachable = 5, kDenied = 6 };

struct Ctl {
  int status = -1;
  std::string out;  // stdout and stderr
  json j;           // the first line parsed as JSON, when it is JSON
};

class VtpmctlTest : public BackendSimTest {
 protected:
  std::string Socket() const { return daemon_ ? daemon_->runtime_dir() + "/control.sock" : socket_override_; }
  // Runs vtpmctl --socket <daemon's> args...; `as_nobody` drops to uid/gid 65534 first.
  Ctl Run(std::vector<std::string> args, bool as_nobody = false) {
    std::vector<std::string> argv;
    if (as_nobody) argv = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
    argv.push_back(VTPM_CTL_PATH);
    argv.push_back("--socket");
    argv.push_back(Socket());
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = RunCapture(argv, {}, std::chrono::seconds(120));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    Ctl c;
    if (!r.ok()) return c;
    c.status = r->exit_code;
    c.out = r->output;
    // --json prints one JSON document starting at a line's start; on
    // failure a sentence on stderr comes before or after it.
    size_t start = c.out.rfind("\n{", 0) == 0 ? 0 : (c.out[0] == '{' ? 0 : c.out.find("\n{"));
    if (start != std::string::npos) {
      if (c.out[start] == '\n') ++start;
      size_t end = c.out.find("\n}", start);
      c.j = json::parse(c.out.substr(start, end == std::string::npos ? std::string::npos : end + 2 - start), nullptr,
                        false);
    }
    if (!c.j.is_object()) c.j = json::object();
    return c;
  }
  std::string socket_override_;
};

#define EXPECT_CTL(c, want_status) EXPECT_EQ((c).status, want_status) << (c).out

TEST(VtpmctlDuration, UnitsAndSums) {
  EXPECT_EQ(*ParseDuration("90s"), 90);
  EXPECT_EQ(*ParseDuration("90"), 90);
  EXPECT_EQ(*ParseDuration("45m"), 45 * 60);
  EXPECT_EQ(*ParseDuration("12h"), 12 * 3600);
  EXPECT_EQ(*ParseDuration("30d"), 30 * 86400);
  EXPECT_EQ(*ParseDuration("2w"), 14 * 86400);
  EXPECT_EQ(*ParseDuration("1d12h"), 36 * 3600);
  for (const char* bad : {"", "0", "0s", "s", "-5s", "1.5h", "1d5", "5y", "1 d", "99999999999w"})
    EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
}

// ---- error paths on the scripted engine (fast) ----

TEST_F(VtpmctlTest, DaemonDownIsUnreachable) {
  socket_override_ = host().dir() + "/no-daemon.sock";
  Ctl c = Run({"list"});
  EXPECT_CTL(c, kUnreachable);
  EXPECT_NE(c.out.find("cannot reach vtpmmgrd at " + socket_override_), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("systemctl start vtpmmgrd"), std::string::npos) << c.out;
  Ctl j = Run({"--json", "status"});
  EXPECT_CTL(j, kUnreachable);
  EXPECT_EQ(j.j.value("result", -1), int(ResultCode::kUnavailable)) << j.out;
  // A stale socket file nobody listens on is also "unreachable".
  StartDaemon();
  ASSERT_TRUE(daemon().Stop().ok());
  EXPECT_NE(access(Socket().c_str(), F_OK), 0) << "the daemon left its socket behind";
  EXPECT_CTL(Run({"list"}), kUnreachable);
}

TEST_F(VtpmctlTest, OnlyRootIsAnswered) {
  StartDaemon();
  ASSERT_EQ(chmod(host().dir().c_str(), 0755), 0);
  ASSERT_EQ(chmod(daemon().runtime_dir().c_str(), 0755), 0);
  struct stat st;
  ASSERT_EQ(stat(Socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The socket's mode keeps others out...
  Ctl c = Run({"list"}, /*as_nobody=*/true);
  EXPECT_CTL(c, kDenied);
  EXPECT_NE(c.out.find("vtpmctl must run as root"), std::string::npos) << c.out;
  // ...and so does the daemon's SO_PEERCRED check when the mode is loosened.
  ASSERT_EQ(chmod(Socket().c_str(), 0666), 0);
  Ctl peer = Run({"--json", "list"}, true);
  EXPECT_CTL(peer, kDenied);
  EXPECT_EQ(peer.j.value("result", -1), int(ResultCode::kPermissionDenied)) << peer.out;
  EXPECT_NE(peer.out.find("uid 65534 is not allowed"), std::string::npos) << peer.out;
  EXPECT_NE(daemon().Log().find("refused a request from uid 65534"), std::string::npos);
  EXPECT_CTL(Run({"list"}), kOk);
}

TEST_F(VtpmctlTest, BadArgumentsAreUsageErrors) {
  StartDaemon();
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"prune", "--idle-for", "3x"},
           {"prune", "--idle-for", "0s"},
           {"prune", "--idle-for", "1d5"},
           {"prune", "--idle-for", ""},
           {"prune", "--idle-for", "99999999999w"},
           {"prune"},
           {"show", "zzzzzzzz-0000-4000-8000-000000000000"},
           {"show", "00000000-0000-0000-0000-000000000000"},
           {"wipe"},
           {"frobnicate"},
           {},
           {"list", "--bogus"}}) {
    Ctl c = Run(args);
    EXPECT_EQ(c.status, kUsage) << ::testing::PrintToString(args) << "\n" << c.out;
    EXPECT_FALSE(c.out.empty());
  }
  // Not a uuid: a domain name, which no attached instance has.
  Ctl name = Run({"show", "not-a-uuid"});
  EXPECT_CTL(name, kNotFound);
  EXPECT_NE(name.out.find("no vTPM instance is attached to domain name 'not-a-uuid'"), std::string::npos) << name.out;
  Ctl d = Run({"prune", "--idle-for", "3x"});
  EXPECT_NE(d.out.find("such as 90s, 45m, 12h, 30d or 2w"), std::string::npos) << d.out;
  EXPECT_CTL(Run({"--help"}), kOk);
}

TEST_F(VtpmctlTest, UnknownVerbIsNamedWithTheVerbs) {
  StartDaemon();
  const std::string verbs = "the verbs are list, show, create, status, wipe, clear, prune, backup, restore";
  Ctl c = Run({"frobnicate"});
  EXPECT_CTL(c, kUsage);
  EXPECT_NE(c.out.find("unknown verb 'frobnicate'; " + verbs), std::string::npos) << c.out;
  EXPECT_EQ(c.out.find("A subcommand is required"), std::string::npos) << c.out;
  Ctl after_option = Run({"--json", "lsit", "x"});
  EXPECT_CTL(after_option, kUsage);
  EXPECT_NE(after_option.out.find("unknown verb 'lsit'"), std::string::npos) << after_option.out;
  Ctl none = Run({});
  EXPECT_CTL(none, kUsage);
  EXPECT_NE(none.out.find("no verb given; " + verbs), std::string::npos) << none.out;
}

TEST_F(VtpmctlTest, OptionsGoBeforeOrAfterTheVerb) {
  StartDaemon();
  CreateDomain(4, kUuid);
  ASSERT_TRUE(Guest(4).Connect().ok());
  auto run = [](std::vector<std::string> argv) {
    argv.insert(argv.begin(), VTPM_CTL_PATH);
    auto r = RunCapture(argv, {}, std::chrono::seconds(30));
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : ToolOutput{};
  };
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {"--socket", Socket(), "--json", "list"},
           {"--socket", Socket(), "list", "--json"},
           {"list", "--json", "--socket", Socket()},
           {"-j", "list", "-s", Socket()},
           {"list", "--config", daemon().config_path(), "-j"}}) {
    ToolOutput o = run(argv);
    EXPECT_EQ(o.exit_code, 0) << ::testing::PrintToString(argv) << "\n" << o.output;
    json j = json::parse(o.output, nullptr, false);
    ASSERT_TRUE(j.is_object()) << ::testing::PrintToString(argv) << "\n" << o.output;
    EXPECT_EQ(j["data"]["instances"][0]["uuid"], kUuid);
  }
  ToolOutput st = run({"status", "--socket", Socket()});
  EXPECT_EQ(st.exit_code, 0) << st.output;
  EXPECT_NE(st.output.find("1 known, 1 connected"), std::string::npos) << st.output;
}

TEST(VtpmctlCompletion, CompletesVerbsOptionsAndFiles) {
  // The completion as installed (share/bash-completion/completions/vtpmctl).
  auto complete = [](const std::string& line) {
    const std::string script = "source '" VTPM_SOURCE_DIR "/src/ctl/vtpmctl.bash-completion'\n"
                               "COMP_LINE='" + line + "'; read -ra COMP_WORDS <<< \"$COMP_LINE\"\n"
                               "[[ \"$COMP_LINE\" == *' ' ]] && COMP_WORDS+=('')\n"
                               "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
                               "_vtpmctl; echo \"${COMPREPLY[*]}\"\n"
                               "complete -p vtpmctl\n";
    auto r = RunCapture({"bash", "--norc", "-c", script}, {}, std::chrono::seconds(10));
    EXPECT_TRUE(r.ok());
    return r.ok() ? r->output : std::string();
  };
  EXPECT_EQ(complete("vtpmctl "),
            "list show create status wipe clear prune backup restore discard host-key export import\n"
            "complete -F _vtpmctl vtpmctl\n");
  EXPECT_EQ(complete("vtpmctl h").substr(0, 9), "host-key\n");
  EXPECT_EQ(complete("vtpmctl export 6b1f0e2a-4c3d-4e5f-8a9b-0c1d2e3f4a5b --t").substr(0, 5), "--to\n");
  EXPECT_NE(complete("vtpmctl import " VTPM_SOURCE_DIR "/READ").find(VTPM_SOURCE_DIR "/README.md"),
            std::string::npos);
  // export: the instance, then the file to write.
  EXPECT_NE(complete("vtpmctl export 6b1f0e2a-4c3d-4e5f-8a9b-0c1d2e3f4a5b --to b " VTPM_SOURCE_DIR "/READ")
                .find(VTPM_SOURCE_DIR "/README.md"),
            std::string::npos);
  EXPECT_EQ(complete("vtpmctl --json s").substr(0, 12), "show status\n");
  EXPECT_EQ(complete("vtpmctl -s /run/x.sock re").substr(0, 8), "restore\n");
  EXPECT_EQ(complete("vtpmctl wipe --f").substr(0, 8), "--force\n");
  EXPECT_EQ(complete("vtpmctl restore --re").substr(0, 10), "--replace\n");
  EXPECT_EQ(complete("vtpmctl prune --idle-for 1").substr(0, 4), "1h 1");
  EXPECT_NE(complete("vtpmctl restore " VTPM_SOURCE_DIR "/READ").find(VTPM_SOURCE_DIR "/README.md"),
            std::string::npos);
  // Instances come from `vtpmctl list`; without a daemon there are none.
  EXPECT_EQ(complete("vtpmctl show ").substr(0, 1), "\n");
}

TEST_F(VtpmctlTest, ScriptedEngineListsDevicesAndRefusesInstanceVerbs) {
  StartDaemon();
  CreateDomain(4, kUuid);
  ASSERT_TRUE(Guest(4).Connect().ok());
  Ctl t = Run({"list"});
  EXPECT_CTL(t, kOk);
  EXPECT_NE(t.out.find(kUuid), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("domid 4 devid 0"), std::string::npos) << t.out;
  Ctl j = Run({"--json", "list"});
  EXPECT_CTL(j, kOk);
  ASSERT_TRUE(j.j.is_object()) << j.out;
  ASSERT_EQ(j.j["data"]["instances"].size(), 1u) << j.out;
  EXPECT_EQ(j.j["data"]["instances"][0]["attached"]["domid"], 4);
  EXPECT_EQ(j.j["data"]["instances"][0]["attached"]["connected"], true);
  Ctl s = Run({"status"});
  EXPECT_CTL(s, kOk);
  EXPECT_NE(s.out.find("1 known, 1 connected"), std::string::npos) << s.out;
  Ctl show = Run({"show", kUuid});
  EXPECT_CTL(show, kFailure);
  EXPECT_NE(show.out.find("scripted test engine"), std::string::npos) << show.out;
  // The socket path also comes from the daemon's configuration file.
  auto viaconf = RunCapture({VTPM_CTL_PATH, "--config", daemon().config_path(), "list"}, {}, std::chrono::seconds(30));
  ASSERT_TRUE(viaconf.ok());
  EXPECT_EQ(viaconf->exit_code, 0) << viaconf->output;
  EXPECT_NE(viaconf->output.find(kUuid), std::string::npos);
}

// Raw bytes on the control socket: each malformed request gets a numbered
// error and the daemon keeps serving.
std::string RawExchange(const std::string& path, const std::string& bytes, bool close_write = true) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return "connect failed";
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd.get(), bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += size_t(n);
  }
  if (close_write) shutdown(fd.get(), SHUT_WR);
  std::string in;
  char buf[4096];
  for (ssize_t n; (n = read(fd.get(), buf, sizeof buf)) > 0;) in.append(buf, size_t(n));
  return in;
}

TEST_F(VtpmctlTest, MalformedRequestsGetNumberedErrors) {
  StartDaemon();
  auto result = [&](const std::string& bytes) {
    std::string line = RawExchange(Socket(), bytes);
    if (line.empty() || line.back() != '\n') return -1;
    line.pop_back();
    auto r = ParseResponse(line);
    return r.ok() ? int(r->result) : -1;
  };
  EXPECT_EQ(result("garbage\n"), int(ResultCode::kBadRequest));
  EXPECT_EQ(result("[1,2]\n"), int(ResultCode::kBadRequest));
  EXPECT_EQ(result("{\"version\":2,\"verb\":\"list\"}\n"), int(ResultCode::kUnsupportedVersion));
  EXPECT_EQ(result("{\"version\":1,\"verb\":\"dance\"}\n"), int(ResultCode::kBadRequest));
  EXPECT_EQ(result("{\"version\":1,\"verb\":\"prune\",\"idle_for_seconds\":-5}\n"), int(ResultCode::kBadRequest));
  EXPECT_EQ(result("{\"version\":1,\"verb\":\"backup\",\"path\":\"relative.db\"}\n"), int(ResultCode::kBadRequest));
  EXPECT_EQ(result(std::string(70 * 1024, 'x')), int(ResultCode::kBadRequest));
  EXPECT_EQ(RawExchange(Socket(), "{\"version\":1,"), "");  // closed without a full line: no answer
  EXPECT_EQ(result("{\"version\":1,\"verb\":\"list\"}\n"), int(ResultCode::kOk));
  EXPECT_TRUE(daemon().running());
}

// ---- every verb on the libtpms engine ----

class VtpmctlTpmTest : public VtpmctlTest {
 protected:
  void SetUp() override {
    VtpmctlTest::SetUp();
    if (HasFatalFailure()) return;
    StartLibtpmsDaemon();
  }
  json Instance(const std::string& uuid) {
    Ctl c = Run({"--json", "list"});
    EXPECT_CTL(c, kOk);
    for (auto& i : c.j["data"]["instances"])
      if (i["uuid"] == uuid) return i;
    return nullptr;
  }
};

TEST_F(VtpmctlTpmTest, EveryVerbAsTableAndJson) {
  // status
  Ctl st = Run({"status"});
  EXPECT_CTL(st, kOk);
  EXPECT_NE(st.out.find("host TPM:"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("swtpm"), std::string::npos) << st.out;
  Ctl stj = Run({"--json", "status"});
  EXPECT_CTL(stj, kOk);
  EXPECT_NE(stj.j["data"]["host_tpm"]["transport"].get<std::string>().find("swtpm"), std::string::npos);
  EXPECT_FALSE(stj.j["data"]["host_tpm"]["key_protection"].get<std::string>().empty());
  EXPECT_EQ(stj.j["data"]["store"]["instances"], 0);
  EXPECT_EQ(stj.j["data"]["store"]["path"], daemon().state_dir() + "/vtpm.db");

  // list, empty
  EXPECT_NE(Run({"list"}).out.find("no vTPM instances"), std::string::npos);

  // create
  Ctl cr = Run({"create", kUuid});
  EXPECT_CTL(cr, kOk);
  EXPECT_EQ(cr.out, std::string("created TPM 1.2 instance ") + kUuid + "\n");
  Ctl again = Run({"--json", "create", kUuid});
  EXPECT_CTL(again, kConflict);
  EXPECT_EQ(again.j.value("result", -1), int(ResultCode::kConflict));
  EXPECT_NE(again.out.find("already exists"), std::string::npos) << again.out;
  Ctl v2 = Run({"create", kLateUuid, "--tpm", "2.0"});
  EXPECT_CTL(v2, kUsage);
  EXPECT_NE(v2.out.find("TPM 1.2 only"), std::string::npos) << v2.out;

  // list
  Ctl ls = Run({"list"});
  EXPECT_CTL(ls, kOk);
  EXPECT_NE(ls.out.find("UUID"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find(kUuid), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("idle"), std::string::npos) << ls.out;
  json row = Instance(kUuid);
  ASSERT_TRUE(row.is_object());
  EXPECT_EQ(row["tpm_version"], "1.2");
  EXPECT_TRUE(row["attached"].is_null());
  EXPECT_EQ(row["auto_created"], false);
  EXPECT_GT(row["size_bytes"].get<int64_t>(), 1000);
  EXPECT_GT(row["created"].get<int64_t>(), 1700000000);

  // show (idle): EK, no PCRs
  Ctl sh = Run({"show", kUuid});
  EXPECT_CTL(sh, kOk);
  EXPECT_NE(sh.out.find("EK public key (TPM_PUBKEY):"), std::string::npos) << sh.out;
  EXPECT_NE(sh.out.find("PCRs: not running"), std::string::npos) << sh.out;
  Ctl shj = Run({"--json", "show", kUuid});
  EXPECT_CTL(shj, kOk);
  std::string ek = shj.j["data"]["ek_public"].get<std::string>();
  EXPECT_GT(ek.size(), 2u * 256) << "TPM_PUBKEY holds a 2048-bit modulus";
  EXPECT_TRUE(shj.j["data"]["pcrs"].is_null());

  // unknown uuid
  Ctl unk = Run({"show", kUnknownUuid});
  EXPECT_CTL(unk, kNotFound);
  EXPECT_NE(unk.out.find("run 'vtpmctl list'"), std::string::npos) << unk.out;
  EXPECT_CTL(Run({"wipe", kUnknownUuid}), kNotFound);
  EXPECT_CTL(Run({"clear", kUnknownUuid}), kNotFound);

  // attach: list and show see the guest, show reads its PCRs
  CreateDomain(11, kUuid);
  GuestFrontend& g = Guest(11);
  ASSERT_TRUE(g.Connect().ok());
  EXPECT_NE(Run({"list"}).out.find("domid 11 devid 0"), std::string::npos);
  Ctl live = Run({"--json", "show", kUuid});
  EXPECT_CTL(live, kOk);
  EXPECT_EQ(live.j["data"]["attached"]["domid"], 11);
  ASSERT_TRUE(live.j["data"]["pcrs"].is_array()) << live.out;
  EXPECT_EQ(live.j["data"]["pcrs"].size(), 24u);
  EXPECT_EQ(live.j["data"]["pcrs"][0].get<std::string>().size(), 40u);
  EXPECT_NE(Run({"show", kUuid}).out.find("PCR-23: "), std::string::npos);

  // the loop keeps serving the guest while an instance is manufactured
  auto creating = std::async(std::launch::async, [&] { return Run({"create", kLateUuid}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto t0 = std::chrono::steady_clock::now();
  auto pcr = g.Transmit(TestCommand(0x15, 4, 0), std::chrono::seconds(10));  // TPM_PCRRead
  auto guest_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  Ctl late = creating.get();
  EXPECT_CTL(late, kOk);
  ASSERT_TRUE(pcr.ok()) << pcr.status().ToString();
  EXPECT_LT(guest_ms.count(), 1000) << "a guest command waited behind vtpmctl create";
  std::cout << "[ measured ] guest TPM_PCRRead during vtpmctl create: " << guest_ms.count() << " ms\n";

  // wipe while attached
  Ctl busy = Run({"wipe", kUuid});
  EXPECT_CTL(busy, kConflict);
  EXPECT_NE(busy.out.find("attached to domid 11 devid 0"), std::string::npos) << busy.out;
  EXPECT_NE(busy.out.find("--force"), std::string::npos) << busy.out;

  // clear on the running TPM
  Ctl cl = Run({"clear", kUuid});
  EXPECT_CTL(cl, kOk);
  EXPECT_NE(cl.out.find("next TPM Startup"), std::string::npos) << cl.out;
  // ... which the guest can block until its next Startup
  Bytes disable = {0x00, 0xC1, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x5E};  // TPM_DisableForceClear
  auto dr = g.Transmit(disable, std::chrono::seconds(10));
  ASSERT_TRUE(dr.ok());
  ASSERT_EQ(ReturnCode(*dr), 0u);
  Ctl blocked = Run({"--json", "clear", kUuid});
  EXPECT_CTL(blocked, kConflict);
  EXPECT_EQ(blocked.j.value("result", -1), int(ResultCode::kTpmRefused)) << blocked.out;
  EXPECT_NE(blocked.out.find("TPM_DisableForceClear"), std::string::npos) << blocked.out;
  EXPECT_NE(blocked.out.find("reboot the guest"), std::string::npos) << blocked.out;

  // backup
  const std::string file = host().dir() + "/backup.db";
  Ctl bk = Run({"backup", file});
  EXPECT_CTL(bk, kOk);
  EXPECT_NE(bk.out.find("including any wiped later"), std::string::npos) << bk.out;
  std::ifstream in(file, std::ios::binary);
  char magic[16] = {};
  in.read(magic, 16);
  EXPECT_EQ(std::string(magic, 15), "SQLite format 3");
  Ctl bk2 = Run({"backup", file});
  EXPECT_CTL(bk2, kConflict);
  EXPECT_NE(bk2.out.find("choose a new file name"), std::string::npos) << bk2.out;

  // prune: an auto-created instance whose domain is gone
  CreateDomain(12, kAutoUuid);
  ASSERT_TRUE(Guest(12).Connect().ok());
  json autorow = Instance(kAutoUuid);
  ASSERT_TRUE(autorow.is_object());
  EXPECT_EQ(autorow["auto_created"], true);
  EXPECT_EQ(autorow["attached"]["domid"], 12);
  EXPECT_NE(Run({"list"}).out.find("yes"), std::string::npos);
  Ctl none = Run({"--json", "prune", "--idle-for", "1s"});  // still attached
  EXPECT_CTL(none, kOk);
  EXPECT_EQ(none.j["data"]["pruned"].size(), 0u);
  guests_.pop_back();  // the guest of domain 12 is gone with its domain
  ASSERT_TRUE(ts().Destroy(12).status.ok());
  // The instance powers off once the backend sees the domain gone.
  for (int i = 0; i < 100 && !Run({"--json", "show", kAutoUuid}).j["data"]["pcrs"].is_null(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(Run({"--json", "prune", "--idle-for", "1h"}).j["data"]["pruned"].size(), 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  Ctl pr = Run({"prune", "--idle-for", "2s"});
  EXPECT_CTL(pr, kOk);
  EXPECT_NE(pr.out.find("pruned 1 auto-created instance idle"), std::string::npos) << pr.out;
  EXPECT_NE(pr.out.find(kAutoUuid), std::string::npos) << pr.out;
  EXPECT_TRUE(Instance(kAutoUuid).is_null());
  EXPECT_TRUE(Instance(kUuid).is_object()) << "prune took an instance made with create";
  EXPECT_TRUE(Instance(kLateUuid).is_object()) << "prune took an instance made with create";

  // wipe --force: backend 5, the guest closes, backend 6, instance gone
  const std::string be = Toolstack::BackendPath(11, 0);
  StateRecorder be_states(be + "/state"), fe_states(Toolstack::FrontendPath(11, 0) + "/state");
  Ctl wf = Run({"wipe", "--force", kUuid});
  EXPECT_CTL(wf, kOk);
  EXPECT_NE(wf.out.find("the guest has lost its TPM"), std::string::npos) << wf.out;
  EXPECT_EQ(Node(be + "/state"), "6");
  EXPECT_EQ(be_states.values(), (std::vector<std::string>{"4", "5", "6"}));
  EXPECT_TRUE(fe_states.Saw("6")) << "the frontend never closed";
  EXPECT_TRUE(g.device_gone());
  EXPECT_TRUE(Instance(kUuid).is_null()) << "wipe --force left a row for the closed device";
  EXPECT_EQ(Run({"list"}).out.find(kUuid), std::string::npos) << "wipe --force left a row for the closed device";
  EXPECT_CTL(Run({"show", kUuid}), kNotFound);
  EXPECT_NE(daemon().Log().find("vtpmctl wipe --force by uid 0 pid "), std::string::npos);
  // The device stays closed even if the frontend starts over...
  ASSERT_TRUE(xs().Write(Toolstack::FrontendPath(11, 0) + "/state", "1").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(Node(be + "/state"), "6");
  // ...until the toolstack recreates its backend directory.
  ASSERT_TRUE(ts().Detach(11, 0).status.ok());
  auto re = ts().Attach(11, {0, kUuid});
  ASSERT_TRUE(re.status.ok()) << re.Report();
  EXPECT_EQ(Node(be + "/state"), "2");

  // clear and backup as JSON; clear powers an idle instance on for the clear
  Ctl cj = Run({"--json", "clear", kLateUuid});
  EXPECT_CTL(cj, kOk);
  EXPECT_EQ(cj.j["data"]["running"], false);
  EXPECT_NE(cj.j["data"]["note"].get<std::string>().find("next TPM Startup"), std::string::npos);
  Ctl bj = Run({"--json", "backup", host().dir() + "/backup2.db"});
  EXPECT_CTL(bj, kOk);
  EXPECT_EQ(bj.j["data"]["path"], host().dir() + "/backup2.db");

  // wipe an idle instance
  Ctl w = Run({"--json", "wipe", kLateUuid});
  EXPECT_CTL(w, kOk);
  EXPECT_EQ(w.j["data"]["forced"], false);
  EXPECT_TRUE(Instance(kLateUuid).is_null());
}

TEST_F(VtpmctlTpmTest, DomainNamesAndDomidsNameInstances) {
  constexpr char kSecond[] = "3c2b1a09-8765-4432-9fed-cba987654321";
  auto created = ts().Create(11, {{0, kUuid}}, "web-1");
  ASSERT_TRUE(created.status.ok()) << created.Report();
  ASSERT_TRUE(Guest(11).Connect().ok());
  // list: the DOMAIN column and the attachment's name in JSON.
  Ctl ls = Run({"list"});
  EXPECT_CTL(ls, kOk);
  EXPECT_NE(ls.out.find("DOMAIN"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find(std::string(kUuid) + "  web-1"), std::string::npos) << ls.out;
  EXPECT_EQ(Instance(kUuid)["attached"]["name"], "web-1");
  // show by uuid, by name, by domid: the same instance.
  for (const char* who : {kUuid, "web-1", "11"}) {
    Ctl sh = Run({"--json", "show", who});
    EXPECT_CTL(sh, kOk);
    EXPECT_EQ(sh.j["data"]["uuid"], kUuid) << who;
    EXPECT_EQ(sh.j["data"]["attached"]["name"], "web-1") << who;
  }
  EXPECT_NE(Run({"show", "web-1"}).out.find("domain:        web-1"), std::string::npos);
  // A name or domid matching nothing: not found, naming the domains that have a vTPM.
  for (const char* who : {"db-2", "42"}) {
    Ctl none = Run({"show", who});
    EXPECT_CTL(none, kNotFound);
    EXPECT_NE(none.out.find("no vTPM instance is attached to"), std::string::npos) << none.out;
    EXPECT_NE(none.out.find("web-1 (domid 11 devid 0)"), std::string::npos) << none.out;
  }
  // A domain with two vTPMs: its name matches both, and the error names them.
  auto two = ts().Create(12, {{0, kLateUuid}, {1, kSecond}}, "two-tpms");
  ASSERT_TRUE(two.status.ok()) << two.Report();
  ASSERT_TRUE(Guest(12, 0).Connect().ok());
  ASSERT_TRUE(Guest(12, 1).Connect().ok());
  for (const char* who : {"two-tpms", "12"}) {
    Ctl amb = Run({"clear", who});
    EXPECT_CTL(amb, kUsage);
    EXPECT_NE(amb.out.find("matches 2 vTPM instances"), std::string::npos) << amb.out;
    EXPECT_NE(amb.out.find(kLateUuid), std::string::npos) << amb.out;
    EXPECT_NE(amb.out.find(kSecond), std::string::npos) << amb.out;
    EXPECT_NE(amb.out.find("name one by its uuid"), std::string::npos) << amb.out;
  }
  // Every verb taking an instance resolves it: clear and wipe by name.
  Ctl cl = Run({"--json", "clear", "web-1"});
  EXPECT_CTL(cl, kOk);
  EXPECT_EQ(cl.j["data"]["uuid"], kUuid);
  Ctl busy = Run({"wipe", "11"});
  EXPECT_CTL(busy, kConflict);
  EXPECT_NE(busy.out.find(std::string("instance ") + kUuid + " is attached to domid 11"), std::string::npos)
      << busy.out;
  Ctl cr = Run({"create", "web-1"});  // exists already: the name led to it
  EXPECT_CTL(cr, kConflict);
  EXPECT_NE(cr.out.find(std::string("instance ") + kUuid + " already exists"), std::string::npos) << cr.out;
}

TEST_F(VtpmctlTpmTest, LastUsedIsTheLastCommand) {
  EXPECT_CTL(Run({"create", kUuid}), kOk);
  CreateDomain(11, kUuid);
  GuestFrontend& g = Guest(11);
  ASSERT_TRUE(g.Connect().ok());
  auto first = g.Transmit(TestCommand(0x15, 4, 0), std::chrono::seconds(10));  // TPM_PCRRead
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  json attached = Instance(kUuid);
  ASSERT_TRUE(attached.is_object());
  const int64_t attach_time = attached["last_used"].get<int64_t>();
  // A command two seconds later moves LAST USED to it, without an attach.
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  const int64_t before = int64_t(std::time(nullptr));
  auto second = g.Transmit(TestCommand(0x15, 4, 0), std::chrono::seconds(10));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  json row = Instance(kUuid);
  EXPECT_GE(row["last_command"].get<int64_t>(), before) << row.dump();
  EXPECT_GE(row["last_command"].get<int64_t>(), attach_time + 2) << row.dump();
  EXPECT_EQ(row["last_used"], row["last_command"]) << row.dump();
  Ctl sh = Run({"--json", "show", kUuid});
  EXPECT_EQ(sh.j["data"]["last_command"], row["last_command"]) << sh.out;
  // Remembered after the device goes (until the daemon stops).
  guests_.clear();
  ASSERT_TRUE(ts().Destroy(11).status.ok());
  for (int i = 0; i < 100 && !Run({"--json", "show", kUuid}).j["data"]["pcrs"].is_null(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(Instance(kUuid)["last_command"], row["last_command"]);
  // A daemon restart forgets it: LAST USED is the last attach again.
  ASSERT_TRUE(daemon().Stop().ok());
  StartLibtpmsDaemon();
  json restarted = Instance(kUuid);
  EXPECT_TRUE(restarted["last_command"].is_null()) << restarted.dump();
  EXPECT_LT(restarted["last_used"].get<int64_t>(), row["last_command"].get<int64_t>()) << restarted.dump();
}

}  // namespace
}  // namespace vtpm::sim
