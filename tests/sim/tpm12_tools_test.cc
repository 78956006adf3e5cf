// The real daemon with the libtpms engine (host TPM 2.0 = swtpm), driven by
// real TPM 1.2 clients: tpm-tools -> tcsd -> the guest simulator's socket ->
// ring -> vtpmmgrd -> vtpm-worker. PCRs through a small raw client of ours
// (tpm-tools has no PCR commands).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "backend_test_util.h"
#include "guest/tcsd.h"
#include "guest/tpm_socket_server.h"
#include "host_tpm_swtpm.h"
#include "tpm/tpm12.h"

namespace vtpm::sim {
namespace {

constexpr uint32_t kDom = 11;
constexpr char kUuid[] = "4c1d9e3a-7b2f-4e61-8a90-1f2e3d4c5b6a";

// One raw TPM 1.2 command over the guest's TPM socket (swtpm framing: one
// command per connection).
Result<Bytes> RawCommand(const std::string& path, ByteView cmd) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    return Status::FromErrno(errno, "connect " + path);
  if (write(fd.get(), cmd.data(), cmd.size()) != ssize_t(cmd.size()))
    return Status::FromErrno(errno, "write");
  Bytes rsp;
  uint8_t buf[4096];
  while (rsp.size() < 10 || rsp.size() < LoadBe32(rsp.data() + 2)) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n <= 0) return Status(Code::kUnavailable, "short response");
    rsp.insert(rsp.end(), buf, buf + n);
  }
  return rsp;
}

// The "Public Key:" block of tpm_getpubek's output (the modulus).
std::string PublicKeyBlock(const std::string& out) {
  auto at = out.find("Public Key:");
  return at == std::string::npos ? std::string() : out.substr(at, 20 + 256 * 3);
}

class Tpm12ToolsTest : public BackendSimTest {
 protected:
  void SetUp() override {
    BackendSimTest::SetUp();
    if (HasFatalFailure()) return;
    StartLibtpmsDaemon();
  }
  // Connects the guest and puts tcsd in front of its TPM.
  void ConnectGuest() {
    CreateDomain(kDom, kUuid);
    guest_ = &Guest(kDom);
    ASSERT_TRUE(guest_->Connect().ok());
    ASSERT_EQ(::chmod(host().dir().c_str(), 0755), 0);  // tcsd runs as tss
    auto server = TpmSocketServer::Start(*guest_, host().dir() + "/guest-tpm.sock",
                                         std::chrono::seconds(60));
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    auto tcsd = TcsdInstance::Start(server_->path());
    ASSERT_TRUE(tcsd.ok()) << tcsd.status().ToString();
    tcsd_ = std::move(tcsd).value();
  }
  ToolOutput Tool(const std::vector<std::string>& argv) {
    auto r = tcsd_->Run(argv);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ToolOutput{};
  }
  tpm12::PcrValue Pcr(uint32_t i) {
    auto r = RawCommand(server_->path(), tpm12::PcrRead(i));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    auto v = r.ok() ? tpm12::PcrFromResponse(*r) : std::nullopt;
    EXPECT_TRUE(v.has_value());
    return v.value_or(tpm12::PcrValue{});
  }

  GuestFrontend* guest_ = nullptr;
  std::unique_ptr<TpmSocketServer> server_;
  std::unique_ptr<TcsdInstance> tcsd_;
};

TEST_F(Tpm12ToolsTest, OwnershipNvAndPcrsSurviveADaemonRestart) {
  ConnectGuest();
  ASSERT_FALSE(HasFatalFailure());
  ToolOutput version = Tool({"tpm_version"});
  ASSERT_EQ(version.exit_code, 0) << version.output;
  EXPECT_NE(version.output.find("Chip Version:        1.2"), std::string::npos) << version.output;

  ToolOutput pubek = Tool({"tpm_getpubek"});
  ASSERT_EQ(pubek.exit_code, 0) << pubek.output;
  std::string ek = PublicKeyBlock(pubek.output);
  ASSERT_FALSE(ek.empty()) << pubek.output;

  ToolOutput own = Tool({"tpm_takeownership", "-y", "-z"});
  ASSERT_EQ(own.exit_code, 0) << own.output;
  EXPECT_NE(Tool({"tpm_getpubek"}).exit_code, 0);  // ReadPubek is off once owned
  ToolOutput owned_ek = Tool({"tpm_getpubek", "-z"});
  ASSERT_EQ(owned_ek.exit_code, 0) << owned_ek.output;
  EXPECT_EQ(PublicKeyBlock(owned_ek.output), ek);

  ToolOutput def = Tool({"tpm_nvdefine", "-y", "-i", "0x00011000", "-s", "16", "-p",
                         "OWNERWRITE|OWNERREAD"});
  ASSERT_EQ(def.exit_code, 0) << def.output;
  ToolOutput wr = Tool({"tpm_nvwrite", "-z", "-i", "0x00011000", "-d", "vtpmmgrd-nv-data"});
  ASSERT_EQ(wr.exit_code, 0) << wr.output;

  tpm12::PcrValue digest;
  digest.fill(0x5a);
  auto ext = RawCommand(server_->path(), tpm12::PcrExtend(10, digest));
  ASSERT_TRUE(ext.ok());
  ASSERT_EQ(tpm12::ResponseCode(*ext), tpm12::kSuccess);
  tpm12::PcrValue pcr10 = Pcr(10);
  EXPECT_NE(pcr10, tpm12::PcrValue{});

  // A guest cannot assert physical presence.
  auto pp = RawCommand(server_->path(), tpm12::PhysicalPresence(tpm12::kPpPresent));
  ASSERT_TRUE(pp.ok());
  EXPECT_EQ(tpm12::ResponseCode(*pp), tpm12::kBadParameter);
  auto clear = RawCommand(server_->path(), tpm12::ForceClear());
  ASSERT_TRUE(clear.ok());
  EXPECT_EQ(tpm12::ResponseCode(*clear), tpm12::kBadPresence);
  // ... because presence is lifetime-locked, as the guest itself can read.
  auto flags_rsp = RawCommand(server_->path(), tpm12::GetPermanentFlags());
  ASSERT_TRUE(flags_rsp.ok());
  auto flags = tpm12::PermanentFlagsFromResponse(*flags_rsp);
  ASSERT_TRUE(flags.has_value());
  EXPECT_TRUE(flags->pp_lifetime_lock);

  // Daemon restart (SIGTERM): same EK, still owned, NV intact, same PCRs.
  auto stopped = daemon().Stop();
  ASSERT_TRUE(stopped.ok());
  StartLibtpmsDaemon();
  // A fresh tcsd: the old one lost its device connection to our raw client's
  // use of the guest socket (tddl I/O error; a test-harness matter).
  tcsd_.reset();
  auto tcsd = TcsdInstance::Start(server_->path());
  ASSERT_TRUE(tcsd.ok()) << tcsd.status().ToString();
  tcsd_ = std::move(tcsd).value();
  ToolOutput after = Tool({"tpm_getpubek", "-z"});
  ASSERT_EQ(after.exit_code, 0) << after.output << "\nguest socket: " << server_->last_error();
  EXPECT_EQ(PublicKeyBlock(after.output), ek);
  ToolOutput rd = Tool({"tpm_nvread", "-z", "-i", "0x00011000", "-s", "16"});
  ASSERT_EQ(rd.exit_code, 0) << rd.output;
  EXPECT_NE(rd.output.find("vtpmmgrd-nv-data"), std::string::npos) << rd.output;
  EXPECT_EQ(Pcr(10), pcr10);

  // And after SIGKILL.
  daemon().Kill();
  StartLibtpmsDaemon();
  EXPECT_EQ(Pcr(10), pcr10);
}

}  // namespace
}  // namespace vtpm::sim
