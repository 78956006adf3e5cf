// TPM 1.2 power and lifetime semantics through the real daemon with the
// libtpms engine (host TPM = swtpm), seen from simulated guests (design §6):
// pv-grub measures without Startup and the kernel it boots reads the PCR; a
// re-created domain gets the same EK and NV but fresh PCRs; each uuid has its
// own EK; one guest's slow command does not hold up another; no guest secret
// (owner password, its SHA-1, NV data) is written anywhere in clear; tpm_sealdata/tpm_unsealdata round-trip.
#include <dirent.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "guest/tcsd.h"
#include "guest/tpm_socket_server.h"
#include "tpm/tpm12.h"
#include "tpm12_auth.h"
#include "tpm12_guest_test.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
const std::string kUuidA = "5d2e8f4b-1a3c-4e57-9b60-7c8d9e0f1a2b";
const std::string kUuidB = "6e3f904c-2b4d-4f68-8c71-8d9e0f1a2b3c";

using Tpm12LifecycleTest = Tpm12GuestTest;

TEST_F(Tpm12LifecycleTest, PvGrubMeasuresWithoutStartupAndTheKernelReadsIt) {
  CreateDomain(20, kUuidA);
  GuestFrontend& grub = Guest(20, 0, FrontendMode::kMiniOs);
  ASSERT_TRUE(grub.Connect().ok());
  tpm12::PcrValue kernel_hash;
  kernel_hash.fill(0x4b);
  // pv-grub sends no TPM_Startup: the daemon powered the TPM on with one.
  Run(grub, tpm12::PcrExtend(4, kernel_hash));
  ASSERT_TRUE(grub.Close().ok());
  ASSERT_TRUE(grub.Reopen().ok());  // the kernel's frontend, a new ring
  EXPECT_EQ(Pcr(grub, 4), tpm12::ExtendedPcr(tpm12::PcrValue{}, kernel_hash));
  // Its Startup after INVALID_POSTINIT would not happen: the TPM is started.
  Run(grub, tpm12::Startup(tpm12::kStClear), tpm12::kInvalidPostinit);
}

TEST_F(Tpm12LifecycleTest, RecreatedDomainKeepsItsEkButPcrsResetAndOtherUuidsDiffer) {
  CreateDomain(21, kUuidA);
  GuestFrontend& g1 = Guest(21);
  ASSERT_TRUE(g1.Connect().ok());
  Bytes ek = Ek(g1);
  ASSERT_FALSE(ek.empty());
  tpm12::PcrValue d;
  d.fill(0x33);
  Run(g1, tpm12::PcrExtend(10, d));
  ASSERT_NE(Pcr(g1, 10), tpm12::PcrValue{});

  auto x = ts().Destroy(21);
  ASSERT_TRUE(x.status.ok()) << x.Report();
  CreateDomain(22, kUuidA);  // same uuid, new domain: a platform reset
  GuestFrontend& g2 = Guest(22);
  ASSERT_TRUE(g2.Connect().ok());
  EXPECT_EQ(Ek(g2), ek);
  EXPECT_EQ(Pcr(g2, 10), tpm12::PcrValue{});

  CreateDomain(23, kUuidB);
  GuestFrontend& other = Guest(23);
  ASSERT_TRUE(other.Connect().ok());
  Bytes other_ek = Ek(other);
  ASSERT_FALSE(other_ek.empty());
  EXPECT_NE(other_ek, ek);
}

TEST_F(Tpm12LifecycleTest, OneGuestsTakeOwnershipDoesNotHoldUpAnothersExtends) {
  CreateDomain(24, kUuidA);
  CreateDomain(25, kUuidB);
  GuestFrontend& owner = Guest(24);
  GuestFrontend& measurer = Guest(25);
  ASSERT_TRUE(owner.Connect().ok());
  ASSERT_TRUE(measurer.Connect().ok());
  ASSERT_EQ(::chmod(host().dir().c_str(), 0755), 0);  // tcsd runs as tss
  auto server = TpmSocketServer::Start(owner, host().dir() + "/owner-tpm.sock", 60s);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto tcsd = TcsdInstance::Start((*server)->path());
  ASSERT_TRUE(tcsd.ok()) << tcsd.status().ToString();

  std::atomic<bool> owning{true};
  Clock::duration own_took{};
  std::thread t([&] {
    auto t0 = Clock::now();
    auto out = (*tcsd)->Run({"tpm_takeownership", "-y", "-z"});
    own_took = Clock::now() - t0;
    EXPECT_TRUE(out.ok() && out->exit_code == 0) << (out.ok() ? out->output : out.status().ToString());
    owning = false;
  });
  tpm12::PcrValue d;
  d.fill(0x11);
  Clock::duration worst{};
  int during = 0;
  while (owning) {
    auto t0 = Clock::now();
    Run(measurer, tpm12::PcrExtend(11, d));
    worst = std::max(worst, Clock::now() - t0);
    if (owning) ++during;
  }
  t.join();
  auto ms = [](Clock::duration x) { return std::chrono::duration_cast<std::chrono::milliseconds>(x).count(); };
  std::cout << "tpm_takeownership took " << ms(own_took) << " ms; meanwhile " << during
            << " extends on the other guest, slowest " << ms(worst) << " ms\n";
  EXPECT_GT(during, 5);
  EXPECT_LT(worst, own_took / 2);
}

// Every file below `dir`, recursively.
void ListFiles(const std::string& dir, std::vector<std::string>& out) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    std::string p = dir + "/" + n;
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) ListFiles(p, out);
    else if (S_ISREG(st.st_mode)) out.push_back(p);
  }
  closedir(d);
}

std::string RandomText(size_t n) {
  std::mt19937_64 rng(std::random_device{}());
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back("abcdefghijklmnopqrstuvwxyz0123456789"[rng() % 36]);
  return s;
}

std::string Hex(ByteView b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t c : b) {
    s.push_back(d[c >> 4]);
    s.push_back(d[c & 15]);
  }
  return s;
}

TEST_F(Tpm12LifecycleTest, OwnerPasswordAndNvDataOfAGuestAreNowhereInClear) {
  CreateDomain(26, kUuidA);
  GuestFrontend& g = Guest(26);
  ASSERT_TRUE(g.Connect().ok());
  // Owner password P, as tpm-tools uses it: owner auth = SHA-1(P).
  const std::string password = RandomText(24), nv_data = RandomText(32);
  tpm12auth::Secret owner_auth;
  SHA1(reinterpret_cast<const uint8_t*>(password.data()), password.size(), owner_auth.data());
  std::array<uint8_t, 20> nonce{};
  auto ek = tpm12::PubkeyFromEkResponse(Run(g, tpm12::ReadPubek(nonce)));
  ASSERT_TRUE(ek.has_value());
  Status own = tpm12auth::RunTakeOwnership([&](const Bytes& c) { return g.Transmit(c, 120s); }, *ek, owner_auth,
                                           tpm12auth::Secret{} /* SRK: well-known, as -z */);
  ASSERT_TRUE(own.ok()) << own.ToString();

  ASSERT_EQ(::chmod(host().dir().c_str(), 0755), 0);
  auto server = TpmSocketServer::Start(g, host().dir() + "/guest-tpm.sock", 60s);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto tcsd = TcsdInstance::Start((*server)->path());
  ASSERT_TRUE(tcsd.ok()) << tcsd.status().ToString();
  auto def = (*tcsd)->Run({"tpm_nvdefine", "-i", "0x00011001", "-s", "32", "-p", "OWNERWRITE|OWNERREAD",
                           "--pwdo=" + password});
  ASSERT_TRUE(def.ok() && def->exit_code == 0) << (def.ok() ? def->output : def.status().ToString());
  auto wr = (*tcsd)->Run({"tpm_nvwrite", "-i", "0x00011001", "-d", nv_data, "--password=" + password});
  ASSERT_TRUE(wr.ok() && wr->exit_code == 0) << (wr.ok() ? wr->output : wr.status().ToString());
  auto rd = (*tcsd)->Run({"tpm_nvread", "-i", "0x00011001", "-s", "32", "--password=" + password});
  ASSERT_TRUE(rd.ok() && rd->exit_code == 0) << (rd.ok() ? rd->output : rd.status().ToString());
  ASSERT_NE(rd->output.find(nv_data.substr(0, 16)), std::string::npos) << rd->output;
  // The wrong password is refused: the owner auth really is SHA-1(P).
  auto bad = (*tcsd)->Run({"tpm_nvread", "-i", "0x00011001", "-s", "32", "--password=not-" + password});
  ASSERT_TRUE(bad.ok());
  EXPECT_NE(bad->exit_code, 0) << bad->output;

  std::vector<std::string> files;
  ListFiles(daemon().state_dir(), files);
  ListFiles(daemon().runtime_dir(), files);
  files.push_back(daemon().log_path());
  ASSERT_GE(files.size(), 3u);
  const std::string auth_bytes(owner_auth.begin(), owner_auth.end());
  const std::vector<std::pair<std::string, std::string>> secrets = {
      {"P", password}, {"SHA-1(P)", auth_bytes}, {"hex SHA-1(P)", Hex(owner_auth)}, {"D", nv_data}};
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string content = ss.str();
    for (const auto& [name, secret] : secrets)
      for (size_t i = 0; i + 16 <= secret.size(); ++i)
        EXPECT_EQ(content.find(secret.substr(i, 16)), std::string::npos) << name << " found in " << f;
  }
}

TEST_F(Tpm12LifecycleTest, TpmSealdataRoundTripsThroughTheGuest) {
  CreateDomain(27, kUuidA);
  GuestFrontend& g = Guest(27);
  ASSERT_TRUE(g.Connect().ok());
  ASSERT_EQ(::chmod(host().dir().c_str(), 0755), 0);
  auto server = TpmSocketServer::Start(g, host().dir() + "/seal-tpm.sock", 60s);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto tcsd = TcsdInstance::Start((*server)->path());
  ASSERT_TRUE(tcsd.ok()) << tcsd.status().ToString();
  ASSERT_EQ((*tcsd)->Run({"tpm_takeownership", "-y", "-z"})->exit_code, 0);
  const std::string plain = host().dir() + "/plain.txt", sealed = host().dir() + "/sealed.blob",
                    back = host().dir() + "/unsealed.txt";
  { std::ofstream(plain) << "sealed by the guest's vTPM\n"; }
  auto seal = (*tcsd)->Run({"tpm_sealdata", "-z", "-i", plain, "-o", sealed});
  ASSERT_TRUE(seal.ok() && seal->exit_code == 0) << (seal.ok() ? seal->output : seal.status().ToString());
  auto unseal = (*tcsd)->Run({"tpm_unsealdata", "-z", "-i", sealed, "-o", back});
  ASSERT_TRUE(unseal.ok() && unseal->exit_code == 0) << (unseal.ok() ? unseal->output : unseal.status().ToString());
  std::ifstream in(back);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "sealed by the guest's vTPM");
}

}  // namespace
}  // namespace vtpm::sim
