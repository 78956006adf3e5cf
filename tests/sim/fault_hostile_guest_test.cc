// A hostile guest next to three well-behaved ones (protocol doc §1.4: "treat
// the page as hostile"; design §3): it floods SUBMIT/CANCEL notifications and
// rewrites length, state, locality, nr_extra_pages and the command bytes
// while the backend reads them. The daemon never crashes, the other guests'
// commands all succeed without being held up, the hostile page always
// settles to FINISH with a well-formed TPM response or to IDLE, and the
// hostile guest's own well-formed commands keep working. Seeded, seed printed.
#include <atomic>
#include <chrono>
#include <thread>

#include "backend_test_util.h"
#include "fault_util.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kGoodGuests = 3;
constexpr auto kRunFor = 6s;

struct HostileStats {
  int flood_rounds = 0, rewrite_rounds = 0, finished = 0, idled = 0, clean_ok = 0;
  std::vector<std::string> faults;
};

// Waits for the backend to leave SUBMIT/CANCEL.
bool Settles(GuestFrontend& g, std::chrono::milliseconds timeout) { return g.WaitIdle(timeout); }

// A FINISH page must hold a well-formed TPM response: tag C4, paramSize ==
// length, 10 <= length <= 4088 (protocol doc §1.5).
std::string CheckFinish(GuestFrontend& g) {
  uint32_t len = g.length();
  const uint8_t* p = g.page() + kRingHeader;
  if (len < 10 || len > 4088) return "FINISH with length " + std::to_string(len);
  if (LoadBe16(p) != 0x00C4) return "FINISH with tag " + std::to_string(LoadBe16(p));
  if (LoadBe32(p + 2) != len) return "FINISH with paramSize " + std::to_string(LoadBe32(p + 2)) + " != length " +
                                     std::to_string(len);
  return {};
}

void Hostile(GuestFrontend& g, uint64_t seed, const std::atomic<bool>& stop, HostileStats& s) {
  std::mt19937_64 rng(seed);
  auto random_command = [&rng] {
    size_t n = rng() % 3 ? 10 + rng() % 200 : rng() % 4100;
    Bytes b(n);
    for (auto& x : b) x = uint8_t(rng());
    if (n >= 10 && rng() % 2) {  // often a plausible header
      StoreBe16(b.data(), 0x00C1);
      StoreBe32(b.data() + 2, uint32_t(n));
    }
    return b;
  };
  while (!stop) {
    if (!Settles(g, 3s)) {
      s.faults.push_back("page stuck in state " + std::to_string(g.state()) + " before a round");
      return;
    }
    Bytes cmd = random_command();
    g.WritePayload(kRingHeader, Bytes(cmd.begin(), cmd.begin() + std::min<size_t>(cmd.size(), 4088)));
    g.WriteHeader(uint32_t(cmd.size()), kSubmit, 0, 0);
    (void)g.Notify();
    if (rng() % 2) {
      // Notification flood: only the state is touched after SUBMIT.
      ++s.flood_rounds;
      int n = int(rng() % 200);
      for (int i = 0; i < n; ++i) {
        if (rng() % 4 == 0) g.SetState(rng() % 2 ? kCancel : kSubmit);
        (void)g.Notify();
        g.DrainEvents();  // its upcall runs, as in a real guest
      }
      if (!Settles(g, 3s)) {
        s.faults.push_back("flood round: page stuck in state " + std::to_string(g.state()));
        return;
      }
      if (g.state() == kFinish) {
        ++s.finished;
        if (auto e = CheckFinish(g); !e.empty()) s.faults.push_back("flood round: " + e);
      } else {
        ++s.idled;
      }
    } else {
      // Rewrites while the backend reads: every header field and the bytes.
      ++s.rewrite_rounds;
      auto until = Clock::now() + std::chrono::microseconds(rng() % 3000);
      do {
        switch (rng() % 4) {
          case 0: g.WriteHeader(uint32_t(rng()), uint8_t(rng() % 4), uint8_t(rng()), uint8_t(rng())); break;
          case 1: g.WriteHeader(uint32_t(rng() % 4100), kSubmit, 0, uint8_t(rng() % 2)); break;
          case 2: g.WritePayload(kRingHeader + rng() % 4000, random_command()); break;
          default: g.SetState(rng() % 2 ? kCancel : kSubmit); break;
        }
        (void)g.Notify();
        g.DrainEvents();
      } while (Clock::now() < until);
      // Leave the page as a guest mid-command would: SUBMIT or CANCEL, sane extra pages.
      g.WriteHeader(uint32_t(rng() % 4100), rng() % 2 ? kCancel : kSubmit, 0, 0);
      (void)g.Notify();
      if (!Settles(g, 3s)) {
        s.faults.push_back("rewrite round: page stuck in state " + std::to_string(g.state()));
        return;
      }
    }
    // The same guest's next well-formed command works.
    if (rng() % 4 == 0) {
      g.WriteHeader(g.length(), g.state(), 0, 0);
      auto r = g.Transmit(TestCommand(0x65, 8), 5s);
      if (r.ok()) ++s.clean_ok;
      else s.faults.push_back("clean command after hostile rounds: " + r.status().ToString());
    }
  }
}

TEST_F(BackendSimTest, FloodingAndRewritingGuestNeitherCrashesNorHoldsUpOthers) {
  const uint64_t seed = FaultSeed();
  StartDaemon("[engine]\nkind = \"scripted\"\nscripted_delay_ms = 1\n");
  CreateDomain(100, FaultUuid(0xfa1c0000, 0));
  GuestFrontend& bad = Guest(100);
  ASSERT_TRUE(bad.Connect().ok());
  std::vector<GuestFrontend*> good;
  for (int i = 0; i < kGoodGuests; ++i) {
    CreateDomain(uint32_t(101 + i), FaultUuid(0xfa1c0000, uint32_t(1 + i)));
    good.push_back(&Guest(uint32_t(101 + i)));
    ASSERT_TRUE(good.back()->Connect().ok());
  }
  std::atomic<bool> stop{false};
  HostileStats hs;
  std::thread hostile([&] { Hostile(bad, seed, stop, hs); });
  std::vector<std::thread> polite;
  std::vector<int> ok(kGoodGuests, 0);
  std::vector<Clock::duration> worst(kGoodGuests);
  for (int i = 0; i < kGoodGuests; ++i)
    polite.emplace_back([&, i] {
      while (!stop) {
        auto t0 = Clock::now();
        auto r = good[size_t(i)]->Transmit(TestCommand(0x15, size_t(i) * 40), 5s);
        worst[size_t(i)] = std::max(worst[size_t(i)], Clock::now() - t0);
        if (!r.ok() || ReturnCode(*r) != 0) {
          ADD_FAILURE() << "good guest " << i << ": " << (r.ok() ? "TPM error" : r.status().ToString());
          return;
        }
        ++ok[size_t(i)];
      }
    });
  std::this_thread::sleep_for(kRunFor);
  stop = true;
  hostile.join();
  for (auto& t : polite) t.join();

  std::cout << "hostile guest: " << hs.flood_rounds << " flood rounds, " << hs.rewrite_rounds
            << " rewrite rounds; settled FINISH " << hs.finished << ", IDLE " << hs.idled << "; "
            << hs.clean_ok << " clean commands answered\n";
  for (const auto& f : hs.faults) ADD_FAILURE() << "hostile guest: " << f;
  EXPECT_GT(hs.flood_rounds + hs.rewrite_rounds, 100);
  EXPECT_GT(hs.clean_ok, 0);
  for (int i = 0; i < kGoodGuests; ++i) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(worst[size_t(i)]).count();
    std::cout << "good guest " << i << ": " << ok[size_t(i)] << " commands, slowest " << ms << " ms\n";
    EXPECT_GT(ok[size_t(i)], 100);
    EXPECT_LT(ms, 500) << "good guest " << i << " held up by the hostile one";
  }
  EXPECT_TRUE(daemon().running()) << daemon().Log();
  // The hostile guest is still served normally once it behaves.
  bad.WriteHeader(0, kFinish, 0, 0);
  auto r = bad.Transmit(TestCommand(0x65), 5s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
}

}  // namespace
}  // namespace vtpm::sim
