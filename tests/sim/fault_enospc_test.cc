// A full disk under the real daemon (design §3 step 4, "Worker faults"): the
// state directory is a small tmpfs; with it filled, a guest's
// TPM_IncrementCounter, whose commit hits ENOSPC, gets a TPM error and
// changes nothing - also several in a row with no other command between
// (a failed commit is no worker fault, so the TPM never breaks); the guest's
// other work goes on; once space is back the same guest's next increment
// works, without a domain restart, and counts from the last committed value,
// also across a daemon restart.
// tests/fault/store_enospc_test.cc covers the store alone.
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <chrono>

#include "backend_test_util.h"
#include "fault_util.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;

class EnospcTest : public BackendSimTest {
 protected:
  void SetUp() override {
    BackendSimTest::SetUp();
    if (HasFatalFailure()) return;
    state_ = host().dir() + "/state";
    ASSERT_EQ(::mkdir(state_.c_str(), 0700), 0);
    if (::mount("tmpfs", state_.c_str(), "tmpfs", 0, "size=8m,mode=0700") != 0)
      GTEST_SKIP() << "cannot mount a tmpfs here: " << strerror(errno);
    mounted_ = true;
  }
  void TearDown() override {
    if (daemon_ && HasFailure()) std::cerr << "---- daemon log ----\n" << daemon_->Log();
    daemon_.reset();
    if (mounted_) ::umount2(state_.c_str(), MNT_DETACH);
    BackendSimTest::TearDown();
  }
  // Fills the state filesystem; returns the bytes written.
  size_t Fill() {
    UniqueFd fd(::open((state_ + "/filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    EXPECT_TRUE(fd);
    std::vector<char> chunk(4096, 'x');
    size_t total = 0;
    for (ssize_t n; (n = ::write(fd.get(), chunk.data(), chunk.size())) > 0;) total += size_t(n);
    EXPECT_EQ(errno, ENOSPC);
    return total;
  }
  void Free() { ASSERT_EQ(::unlink((state_ + "/filler").c_str()), 0); }
  // OIAP + IncrementCounter; the raw answer.
  Bytes Increment(GuestFrontend& g, const OwnedTpm& t) {
    auto o = g.Transmit(tpm12auth::OiapCommand(), 30s);
    EXPECT_TRUE(o.ok()) << o.status().ToString();
    auto s = o.ok() ? tpm12auth::ParseOiap(*o, t.counter_auth) : std::nullopt;
    EXPECT_TRUE(s.has_value());
    if (!s) return {};
    auto r = g.Transmit(tpm12auth::IncrementCounterCommand(t.count_id, *s, tpm12auth::RandomNonce()), 30s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : Bytes{};
  }
  std::optional<uint32_t> Read(GuestFrontend& g, const OwnedTpm& t) {
    auto r = g.Transmit(tpm12auth::ReadCounterCommand(t.count_id), 30s);
    return r.ok() ? tpm12auth::ParseCounterValue(*r) : std::nullopt;
  }

  std::string state_;
  bool mounted_ = false;
};

TEST_F(EnospcTest, CommitHittingEnospcFailsTheCommandOnlyAndTheNextWorksOnceSpaceIsBack) {
  StartLibtpmsDaemon();
  CreateDomain(110, FaultUuid(0xfa1f0000, 0));
  GuestFrontend& g = Guest(110);
  ASSERT_TRUE(g.Connect().ok());
  auto owned = TakeOwnershipWithCounter(g);
  ASSERT_TRUE(owned.ok()) << owned.status().ToString();
  OwnedTpm t = *owned;
  auto v = tpm12auth::ParseCounterValue(Increment(g, t));
  ASSERT_TRUE(v.has_value());
  t.counter = *v;

  size_t filled = Fill();
  std::cout << "filled the state filesystem with " << filled / 1024 << " KiB\n";
  // Space runs out within a few commits (the WAL may still have room).
  int failed_at = -1;
  for (int i = 0; i < 20 && failed_at < 0; ++i) {
    Bytes r = Increment(g, t);
    ASSERT_GE(r.size(), 10u) << "no well-formed answer";
    if (auto nv = tpm12auth::ParseCounterValue(r)) {
      ASSERT_EQ(*nv, t.counter + 1);
      t.counter = *nv;
    } else {
      failed_at = i;
      std::cout << "increment " << i << " on a full disk: TPM error " << *tpm12::ResponseCode(r) << "\n";
    }
  }
  ASSERT_GE(failed_at, 0) << "no commit failed on a full disk";
  // Several state-changing commands in a row, nothing delivered between:
  // each gets a TPM error (not a hang), none changes the counter. Each uses
  // an OIAP session of its own, opened beforehand.
  constexpr int kInARow = 5;
  std::vector<tpm12auth::Session> sessions;
  for (int i = 0; i < kInARow; ++i) {
    auto o = g.Transmit(tpm12auth::OiapCommand(), 30s);
    ASSERT_TRUE(o.ok()) << o.status().ToString();
    auto s = tpm12auth::ParseOiap(*o, t.counter_auth);
    ASSERT_TRUE(s.has_value()) << "OIAP on a full disk failed";
    sessions.push_back(*s);
  }
  for (int i = 0; i < kInARow; ++i) {
    auto r = g.Transmit(tpm12auth::IncrementCounterCommand(t.count_id, sessions[size_t(i)], tpm12auth::RandomNonce()),
                        30s);
    ASSERT_TRUE(r.ok()) << "increment " << i << " in a row: " << r.status().ToString();
    ASSERT_GE(r->size(), 10u) << "no well-formed answer";
    EXPECT_FALSE(tpm12auth::ParseCounterValue(*r).has_value()) << "increment " << i << " in a row succeeded";
    EXPECT_NE(tpm12::ResponseCode(*r), tpm12::kSuccess);
  }
  EXPECT_EQ(Read(g, t), std::optional<uint32_t>(t.counter)) << "a failed increment changed the counter";
  // A command that changes no permanent state still works meanwhile.
  auto pcr = g.Transmit(tpm12::PcrRead(0), 30s);
  ASSERT_TRUE(pcr.ok());
  EXPECT_EQ(tpm12::ResponseCode(*pcr), tpm12::kSuccess);

  Free();
  auto back = tpm12auth::ParseCounterValue(Increment(g, t));
  ASSERT_TRUE(back.has_value()) << "increment still fails after space came back";
  EXPECT_EQ(*back, t.counter + 1);
  t.counter = *back;
  // What was answered is what is stored.
  auto ws = daemon().Stop();
  ASSERT_TRUE(ws.ok());
  ASSERT_TRUE(daemon().Start().ok());
  EXPECT_EQ(Read(g, t), std::optional<uint32_t>(t.counter));
}

}  // namespace
}  // namespace vtpm::sim
