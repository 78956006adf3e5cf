// Moving a vTPM instance to another host around xl save / xl restore
// (design §6d): vtpmctl host-key, export and import through two real
// daemons with the libtpms engine, each a host of its own: its own host TPM
// (swtpm), state directory, store master key, migration keys and peers
// directory. Both serve the one simulated Xen host, one at a time while
// devices exist (two daemons on one backend directory would both serve a
// device), which stands for the two hosts' Xen: the save image's record is
// restored on "host B" with the same handle, as xl restore on the receiver.
//  - A exports a saved domain's instance to B, wipes it and refuses its uuid
//    afterwards (also with auto_create on); list/show name it as moved;
//  - B imports it, and the restored guest finds PCR 10 and the EK as before;
//  - the same file imported again, a file from a host not in B's peers
//    directory, and a tampered file are refused.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "simhost/run_capture.h"
#include "tpm12_guest_test.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;
const std::string kUuid = "6b1f0e2a-4c3d-4e5f-8a9b-0c1d2e3f4a5b";
const std::string kOther = "6b1f0e2a-4c3d-4e5f-8a9b-0c1d2e3f4a5c";

class MigrateTest : public Tpm12GuestTest {
 protected:
  void SetUp() override {
    Tpm12GuestTest::SetUp();
    if (HasFatalFailure()) return;
    peers_a_ = host().dir() + "/peers-a";
    peers_b_ = host().dir() + "/peers-b";
    std::filesystem::create_directories(peers_a_);
    std::filesystem::create_directories(peers_b_);
    // Host A: the fixture's daemon, restarted with its own peers directory.
    ASSERT_TRUE(daemon().Stop().ok());
    StartLibtpmsDaemon("[migration]\npeers_dir = \"" + peers_a_ + "\"\n");
  }
  void TearDown() override {
    if (b_ && HasFailure()) std::cerr << "---- host B daemon log ----\n" << b_->Log();
    b_.reset();
    Tpm12GuestTest::TearDown();
  }
  // Host B: its own swtpm and state, started (again) on the same host TPM.
  void StartB() {
    if (!swtpm_b_) {
      std::string dir = host().dir() + "/host-tpm-b";
      ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
      auto swtpm = vtpm::testing::Swtpm::Start(dir);
      ASSERT_TRUE(swtpm.ok()) << swtpm.status().ToString();
      swtpm_b_ = std::make_unique<vtpm::testing::Swtpm>(std::move(swtpm).value());
    }
    DaemonOptions o;
    o.name = "hostb";
    o.extra_config = "[engine]\nkind = \"libtpms\"\nworker_path = \"" VTPM_WORKER_BIN "\"\n[host_tpm]\ntcti = \"" +
                     swtpm_b_->tcti() + "\"\n[migration]\npeers_dir = \"" + peers_b_ + "\"\n";
    b_ = std::make_unique<DaemonProcess>(host(), o);
    Status st = b_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  // vtpmctl --socket <d's> args...: its output; exit status in *rc.
  std::string Ctl(DaemonProcess& d, std::vector<std::string> args, int* rc = nullptr) {
    std::vector<std::string> argv = {VTPM_CTL_PATH, "--socket", d.runtime_dir() + "/control.sock"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = RunCapture(argv, {}, 120s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (rc) *rc = r.ok() ? r->exit_code : -1;
    return r.ok() ? r->output : "";
  }
  std::string HostKey(DaemonProcess& d) {
    int rc = -1;
    std::string line = Ctl(d, {"host-key"}, &rc);
    EXPECT_EQ(rc, 0) << line;
    EXPECT_EQ(line.rfind("vtpmmgrd-host-key 1 ", 0), 0u) << line;
    return line;
  }
  static void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }
  GuestFrontend& Boot(uint32_t domid) {
    GuestFrontend& g = Guest(domid);
    Status st = g.Connect();
    EXPECT_TRUE(st.ok()) << st.ToString();
    return g;
  }
  bool LogShows(DaemonProcess& d, const std::string& text, std::chrono::seconds timeout = 20s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (d.Log().find(text) == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(50ms);
    }
    return true;
  }

  std::string peers_a_, peers_b_;
  std::unique_ptr<vtpm::testing::Swtpm> swtpm_b_;
  std::unique_ptr<DaemonProcess> b_;
};

TEST_F(MigrateTest, ExportToPeerImportThereAndRestoreResumesTheTpm) {
  // Host A: a guest extends PCR 10, then xl save captures its TPM.
  CreateDomain(30, kUuid);
  GuestFrontend& g = Boot(30);
  const Bytes ek = Ek(g);
  tpm12::PcrValue d;
  d.fill(0x5a);
  Run(g, tpm12::PcrExtend(10, d));
  const tpm12::PcrValue before = Pcr(g, 10);
  ASSERT_NE(before, tpm12::PcrValue{});
  auto saved = ts().Save(30);
  ASSERT_TRUE(saved.status.ok()) << saved.status.ToString() << "\n" << saved.Report();
  ASSERT_TRUE(LogShows(daemon(), "domid=30 devid=0 uuid=" + kUuid + ": domain suspended")) << daemon().Log();
  // A second instance of A, created by vtpmctl (no domain), for the refusals below.
  int rc = -1;
  std::string out = Ctl(daemon(), {"create", kOther}, &rc);
  ASSERT_EQ(rc, 0) << out;

  // Host keys exchanged (no device exists now, so both daemons may run).
  const std::string key_a = HostKey(daemon());
  ASSERT_NO_FATAL_FAILURE(StartB());
  const std::string key_b = HostKey(*b_);
  EXPECT_EQ(HostKey(daemon()), key_a) << "the host key is made once";
  ASSERT_NE(key_a, key_b);
  const std::string file = host().dir() + "/vtpm-export";
  out = Ctl(daemon(), {"export", kUuid, "--to", "hostb", file}, &rc);
  EXPECT_EQ(rc, 3) << out;  // no peer "hostb" yet
  WriteFile(peers_a_ + "/hostb", key_b);
  WriteFile(peers_b_ + "/hosta", key_a);

  // Export on A: the file, then the tombstone and the wipe.
  out = Ctl(daemon(), {"export", kUuid, "--to", "hostb", file}, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("exported to host hostb"), std::string::npos) << out;
  ASSERT_TRUE(std::filesystem::exists(file));
  EXPECT_NE(daemon().Log().find("vtpmctl export by uid"), std::string::npos) << daemon().Log();
  out = Ctl(daemon(), {"show", kUuid}, &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_NE(out.find("moved to host hostb"), std::string::npos) << out;
  auto list = nlohmann::json::parse(Ctl(daemon(), {"list", "--json"}), nullptr, false);
  bool listed_moved = false;
  for (auto& row : list["data"]["instances"])
    if (row["uuid"] == kUuid) listed_moved = row["moved"]["peer"] == "hostb";
  EXPECT_TRUE(listed_moved) << list.dump();
  out = Ctl(daemon(), {"export", kUuid, "--to", "hostb", file + "-again"}, &rc);
  EXPECT_EQ(rc, 4) << out;  // already moved
  out = Ctl(daemon(), {"create", kUuid}, &rc);
  EXPECT_EQ(rc, 4) << out;
  EXPECT_NE(out.find("moved to host hostb"), std::string::npos) << out;
  // A second export, to B, of the other instance, before A's peers change.
  const std::string file2 = host().dir() + "/vtpm-export-2";
  out = Ctl(daemon(), {"export", kOther, "--to", "hostb", file2}, &rc);
  ASSERT_EQ(rc, 0) << out;

  // A refuses a new domain with the moved uuid (auto_create is on).
  ASSERT_TRUE(b_->Stop().ok());  // B would serve the device too
  auto created = ts().Create(32, {{0, kUuid}});
  ASSERT_TRUE(created.status.ok()) << created.status.ToString() << "\n" << created.Report();
  {  // the daemon looks the uuid up when the frontend connects
    FrontendOptions fo;
    fo.domid = 32;
    fo.connect_timeout = 3s;
    fo.first_command_duration = 3s;
    auto g32 = GuestFrontend::Create(fo);
    ASSERT_TRUE(g32.ok()) << g32.status().ToString();
    EXPECT_FALSE((*g32)->Connect().ok());
  }
  std::string refusal = "instance " + kUuid + " moved to host hostb at ";
  ASSERT_TRUE(LogShows(daemon(), refusal)) << daemon().Log();
  auto err = Node("/local/domain/0/error/backend/vtpm/32/0/error");
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find(refusal), std::string::npos) << *err;
  EXPECT_NE(err->find("(vtpmctl export)"), std::string::npos) << *err;
  Toolstack quick(xs(), host().sim_dir(), 2s);  // the refused device never reaches state 6 for libxl
  ASSERT_TRUE(quick.Destroy(32).status.ok());
  ASSERT_TRUE(daemon().Stop().ok());

  // Host B imports; the restored domain (same handle) resumes the TPM.
  ASSERT_NO_FATAL_FAILURE(StartB());
  out = Ctl(*b_, {"import", file}, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("imported from host hosta"), std::string::npos) << out;
  EXPECT_NE(b_->Log().find("vtpmctl import by uid"), std::string::npos) << b_->Log();
  ASSERT_TRUE(saved.saved.has_value());
  auto restored = ts().Restore(31, *saved.saved);
  ASSERT_TRUE(restored.status.ok()) << restored.status.ToString() << "\n" << restored.Report();
  GuestFrontend& r = Boot(31);
  EXPECT_EQ(Pcr(r, 10), before);
  EXPECT_EQ(Ek(r), ek);

  // The same file again: refused as already imported.
  out = Ctl(*b_, {"import", file}, &rc);
  EXPECT_EQ(rc, 4) << out;
  EXPECT_NE(out.find("from hosta was already imported at"), std::string::npos) << out;

  // A tampered file: refused; the intact one would import.
  std::ifstream in(file2, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 300u);
  std::string bad = bytes;
  bad[bad.size() / 2] ^= 0x20;
  WriteFile(host().dir() + "/tampered", bad);
  out = Ctl(*b_, {"import", host().dir() + "/tampered"}, &rc);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("refused"), std::string::npos) << out;

  // A sender not in B's peers directory: refused.
  std::filesystem::remove(peers_b_ + "/hosta");
  out = Ctl(*b_, {"import", file2}, &rc);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("not in the peers directory"), std::string::npos) << out;
  auto show = Ctl(*b_, {"show", kOther}, &rc);
  EXPECT_EQ(rc, 3) << show;  // nothing was stored
  WriteFile(peers_b_ + "/hosta", key_a);
  out = Ctl(*b_, {"import", file2}, &rc);
  EXPECT_EQ(rc, 0) << out;
}

}  // namespace
}  // namespace vtpm::sim
