// SIGKILL of the committing process at random points over thousands of commits.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "common/unique_fd.h"
#include "store_fault_util.h"

namespace vtpm::testing {
namespace {

// Child: commits forever, writing "instance generation\n" to `ack_fd` after
// each acknowledged commit. Never returns.
[[noreturn]] void CommitForever(const StoreOptions& o, std::map<int, uint64_t> gens, int ack_fd, unsigned seed) {
  auto s = OpenStoreWithKey(o, TestMaster());
  if (!s.ok()) {
    std::fprintf(stderr, "child: %s\n", s.status().message().c_str());
    _exit(3);
  }
  std::mt19937 rng(seed);
  for (;;) {
    bool ok = CommitRandomBatch(**s, rng, gens, 4, [ack_fd](int i, uint64_t g) {
      char line[64];
      int n = std::snprintf(line, sizeof line, "%d %llu\n", i, static_cast<unsigned long long>(g));
      if (::write(ack_fd, line, size_t(n)) != n) _exit(5);
    });
    if (!ok) _exit(4);
  }
}

TEST(StoreKill, EveryAcknowledgedCommitSurvivesSigkill) {
  TempDir dir;
  StoreOptions o = OptionsIn(dir);
  constexpr int kInstances = 16;
  std::map<int, uint64_t> acked;
  {
    auto s = OpenStoreWithKey(o, TestMaster());
    ASSERT_TRUE(s.ok()) << s.status().message();
    ASSERT_TRUE(CreateInstances(**s, kInstances).ok());
    for (int i = 0; i < kInstances; ++i) acked[i] = 1;
  }
  std::mt19937 rng(777);
  int total = 0, rounds = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  // At least 25 kills; more until 2000 acknowledged commits or 30 s.
  for (int round = 0; round < 25 || (total < 2000 && std::chrono::steady_clock::now() < deadline);
       ++round, ++rounds) {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    UniqueFd rd(fds[0]), wr(fds[1]);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      rd.reset();
      CommitForever(o, acked, wr.get(), unsigned(round));
    }
    wr.reset();
    std::this_thread::sleep_for(std::chrono::milliseconds(30 + rng() % 150));
    ::kill(pid, SIGKILL);
    int wstatus = 0;
    ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus)) << "child exited early with " << WEXITSTATUS(wstatus);
    std::string acks;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(rd.get(), buf, sizeof buf)) > 0) acks.append(buf, size_t(n));
    size_t pos = 0, eol;
    while ((eol = acks.find('\n', pos)) != std::string::npos) {  // a torn last line is no ack
      int i = 0;
      unsigned long long g = 0;
      ASSERT_EQ(std::sscanf(acks.c_str() + pos, "%d %llu", &i, &g), 2);
      acked[i] = std::max<uint64_t>(acked[i], g);
      ++total;
      pos = eol + 1;
    }
    auto s = OpenStoreWithKey(o, TestMaster());
    ASSERT_TRUE(s.ok()) << "round " << round << ": " << s.status().message();
    acked = VerifyStore(**s, acked);
    if (HasFailure()) return;
  }
  std::printf("sigkill: %d kills, %d acknowledged commits, all present\n", rounds, total);
  EXPECT_GE(total, 1000);
}

}  // namespace
}  // namespace vtpm::testing
