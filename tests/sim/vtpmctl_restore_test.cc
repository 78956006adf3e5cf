// `vtpmctl restore FILE` (issue 17 item 8, design §6c) on the simulated host
// with the real daemon, the libtpms engine and swtpm as the host TPM: a
// guest takes ownership and writes NV data through tcsd and tpm-tools; the
// store is backed up, the state directory lost (the daemon refuses to start,
// exit 18), restored, and the re-created guest finds its EK, owner and NV
// data. Every refusal leaves the state directory as it was.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backend_test_util.h"
#include "guest/tcsd.h"
#include "guest/tpm_socket_server.h"
#include "simhost/run_capture.h"
#include "store/sqlite_db.h"

namespace vtpm::sim {
namespace {

constexpr uint32_t kDom = 21;
constexpr char kUuid[] = "6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d";
constexpr char kNvData[] = "restored-nv-data";  // 16 bytes

// The "Public Key:" block of tpm_getpubek's output (the modulus).
std::string PublicKeyBlock(const std::string& out) {
  auto at = out.find("Public Key:");
  return at == std::string::npos ? std::string() : out.substr(at, 20 + 256 * 3);
}

// Names and sizes of a directory's entries, to show that nothing changed.
std::map<std::string, uintmax_t> Listing(const std::string& dir) {
  std::map<std::string, uintmax_t> out;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(dir, ec))
    out[e.path().filename().string()] = e.is_regular_file() ? e.file_size() : 0;
  return out;
}

class VtpmctlRestoreTest : public BackendSimTest {
 protected:
  ToolOutput Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {VTPM_CTL_PATH, "--config", daemon().config_path()});
    auto r = RunCapture(args, {}, std::chrono::seconds(120));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ToolOutput{};
  }
  // The guest of domain kDom with tcsd in front of its TPM.
  void ConnectGuest() {
    CreateDomain(kDom, kUuid);
    GuestFrontend& g = Guest(kDom);
    ASSERT_TRUE(g.Connect().ok());
    ASSERT_EQ(::chmod(host().dir().c_str(), 0755), 0);  // tcsd runs as tss
    auto server = TpmSocketServer::Start(g, host().dir() + "/guest-tpm.sock", std::chrono::seconds(60));
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    auto tcsd = TcsdInstance::Start(server_->path());
    ASSERT_TRUE(tcsd.ok()) << tcsd.status().ToString();
    tcsd_ = std::move(tcsd).value();
  }
  void DestroyGuest() {
    tcsd_.reset();
    server_.reset();
    guests_.clear();
    ASSERT_TRUE(ts().Destroy(kDom).status.ok());
  }
  ToolOutput Tool(const std::vector<std::string>& argv) {
    auto r = tcsd_->Run(argv);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ToolOutput{};
  }
  std::string Db() { return daemon().state_dir() + "/vtpm.db"; }

  std::unique_ptr<TpmSocketServer> server_;
  std::unique_ptr<TcsdInstance> tcsd_;
};

TEST_F(VtpmctlRestoreTest, BackupLoseTheStateDirectoryRestoreTheGuestFindsItsTpm) {
  StartLibtpmsDaemon();
  ASSERT_FALSE(HasFatalFailure());
  ConnectGuest();
  ASSERT_FALSE(HasFatalFailure());
  ToolOutput pubek = Tool({"tpm_getpubek"});
  ASSERT_EQ(pubek.exit_code, 0) << pubek.output;
  const std::string ek = PublicKeyBlock(pubek.output);
  ASSERT_FALSE(ek.empty()) << pubek.output;
  ToolOutput own = Tool({"tpm_takeownership", "-y", "-z"});
  ASSERT_EQ(own.exit_code, 0) << own.output;
  ToolOutput def = Tool({"tpm_nvdefine", "-y", "-i", "0x00011000", "-s", "16", "-p", "OWNERWRITE|OWNERREAD"});
  ASSERT_EQ(def.exit_code, 0) << def.output;
  ToolOutput wr = Tool({"tpm_nvwrite", "-z", "-i", "0x00011000", "-d", kNvData});
  ASSERT_EQ(wr.exit_code, 0) << wr.output;

  const std::string backup = host().dir() + "/vtpm-backup.db";
  ToolOutput bk = Ctl({"backup", backup});
  ASSERT_EQ(bk.exit_code, 0) << bk.output;

  // Restore refuses while the daemon runs: it holds the state directory.
  ToolOutput live = Ctl({"restore", backup});
  EXPECT_EQ(live.exit_code, 4) << live.output;
  EXPECT_NE(live.output.find("stop it first (systemctl stop vtpmmgrd)"), std::string::npos) << live.output;

  DestroyGuest();
  ASSERT_FALSE(HasFatalFailure());
  auto stopped = daemon().Stop();
  ASSERT_TRUE(stopped.ok() && WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0);

  // ... and while a store exists, unless --replace.
  const auto before = Listing(daemon().state_dir());
  ToolOutput exists = Ctl({"restore", backup});
  EXPECT_EQ(exists.exit_code, 4) << exists.output;
  EXPECT_NE(exists.output.find(Db() + " exists: restore replaces a store only with --replace"), std::string::npos)
      << exists.output;
  EXPECT_EQ(Listing(daemon().state_dir()), before);

  // The state directory is lost: the daemon refuses to start (exit 18).
  std::filesystem::remove_all(daemon().state_dir());
  auto refused = daemon().RunToExit({});
  ASSERT_TRUE(refused.ok());
  EXPECT_TRUE(WIFEXITED(*refused) && WEXITSTATUS(*refused) == 18) << daemon().Log();

  ToolOutput restored = Ctl({"restore", backup});
  ASSERT_EQ(restored.exit_code, 0) << restored.output;
  EXPECT_NE(restored.output.find("restored " + Db() + " from " + backup + ": 1 instance"), std::string::npos)
      << restored.output;
  // The daemon starts on it, and the re-created guest finds its EK, its owner
  // (the well-known secret of -z opens the owner-only commands) and its NV data.
  Status started = daemon().Start();
  ASSERT_TRUE(started.ok()) << started.ToString();
  ConnectGuest();
  ASSERT_FALSE(HasFatalFailure());
  ToolOutput read_ek = Tool({"tpm_getpubek", "-z"});
  ASSERT_EQ(read_ek.exit_code, 0) << read_ek.output;
  EXPECT_EQ(PublicKeyBlock(read_ek.output), ek);
  EXPECT_NE(Tool({"tpm_getpubek"}).exit_code, 0) << "ReadPubek works again: the owner is gone";
  ToolOutput rd = Tool({"tpm_nvread", "-z", "-i", "0x00011000", "-s", "16"});
  ASSERT_EQ(rd.exit_code, 0) << rd.output;
  EXPECT_NE(rd.output.find(kNvData), std::string::npos) << rd.output;
}

TEST_F(VtpmctlRestoreTest, DamagedFilesAreRefusedAndNothingChanges) {
  StartLibtpmsDaemon();
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_EQ(Ctl({"create", kUuid}).exit_code, 0);
  const std::string backup = host().dir() + "/good.db";
  ASSERT_EQ(Ctl({"backup", backup}).exit_code, 0);
  ASSERT_TRUE(daemon().Stop().ok());
  std::string bytes;
  {
    std::ifstream in(backup, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(bytes.size(), 8192u);
  auto write = [&](const std::string& name, const std::string& content) {
    std::string path = host().dir() + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    return path;
  };
  // A page that is not a b-tree page any more (SQLite sees it).
  std::string bad_page = bytes;
  bad_page[4096] = char(0x77);
  // One byte changed inside a sealed blob of a well-formed database (only
  // its authentication tag shows it).
  const std::string bad_blob = write("bad-blob.db", bytes);
  {
    auto db = Db::Open(bad_blob, "");
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db->Exec("UPDATE blobs SET sealed = substr(sealed, 1, 64) || CASE WHEN substr(sealed, 65, 1) = x'00' "
                         "THEN x'01' ELSE x'00' END || substr(sealed, 66) WHERE rowid = (SELECT min(rowid) FROM blobs)")
                    .ok());
    ASSERT_EQ(db->Changes(), 1);
  }
  struct Case {
    std::string path;
    int status;
    std::string words;
  };
  const std::vector<Case> cases = {
      {host().dir() + "/absent.db", 3, "absent.db"},
      {write("text.db", "not a database: " + std::string(200, 'x')),
       1, "is not a vtpmmgrd backup: it does not start with an SQLite database header"},
      {write("truncated.db", bytes.substr(0, bytes.size() - 4096)), 1, "is truncated: "},
      {write("bad-page.db", bad_page), 1, "is damaged ("},
      {bad_blob, 1, "is damaged: "},
  };
  // With the store gone, so that only the file can be at fault.
  std::filesystem::remove_all(daemon().state_dir());
  ASSERT_EQ(::mkdir(daemon().state_dir().c_str(), 0700), 0);
  const auto before = Listing(daemon().state_dir());
  for (const Case& c : cases) {
    ToolOutput r = Ctl({"restore", c.path});
    EXPECT_EQ(r.exit_code, c.status) << c.path << "\n" << r.output;
    EXPECT_NE(r.output.find(c.words), std::string::npos) << c.path << "\n" << r.output;
    auto after = Listing(daemon().state_dir());
    after.erase("lock");
    EXPECT_EQ(after, before) << c.path << ": the state directory changed";
  }
  // JSON for scripts; then the good file, over an existing store with --replace.
  ToolOutput ok = Ctl({"restore", backup, "--json"});
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  auto j = nlohmann::json::parse(ok.output, nullptr, false);
  ASSERT_TRUE(j.is_object()) << ok.output;
  EXPECT_EQ(j["data"]["instances"], 1);
  EXPECT_TRUE(j["data"]["replaced"].is_null());
  ToolOutput again = Ctl({"--json", "restore", "--replace", backup});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  auto j2 = nlohmann::json::parse(again.output, nullptr, false);
  ASSERT_TRUE(j2.is_object()) << again.output;
  const std::string kept = j2["data"]["replaced"].get<std::string>();
  EXPECT_EQ(kept.rfind(Db() + ".replaced-", 0), 0u) << kept;
  EXPECT_EQ(::access(kept.c_str(), F_OK), 0) << "the replaced store was not kept";
  Status started = daemon().Start();
  ASSERT_TRUE(started.ok()) << started.ToString();
  ToolOutput ls = Ctl({"list"});
  EXPECT_NE(ls.output.find(kUuid), std::string::npos) << ls.output;
}

}  // namespace
}  // namespace vtpm::sim
