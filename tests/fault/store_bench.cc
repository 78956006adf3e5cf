// Store benchmark (design §7 "bench": figures printed, not asserted).
//
//   store_bench [--instances N] [--commits K] [--dir D]
//
// Bulk-creates N synthetic instances (each blob encrypted for its own uuid),
// then prints: bytes per instance, time to open the store and list all,
// commit p50 at N instances against p50 at 10, and one commit against one
// fsync'd 4 KiB write on the same filesystem.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/unique_fd.h"
#include "store/open_store.h"

namespace vtpm {
namespace {

using Clock = std::chrono::steady_clock;
double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Sizes of a libtpms TPM 1.2 instance, roughly.
constexpr size_t kPermanentBytes = 2000, kVolatileBytes = 1500, kResponseBytes = 300;

Uuid Id(uint32_t i) {
  Uuid u;
  u.bytes[0] = 0xbe;
  u.bytes[12] = uint8_t(i >> 24);
  u.bytes[13] = uint8_t(i >> 16);
  u.bytes[14] = uint8_t(i >> 8);
  u.bytes[15] = uint8_t(i);
  return u;
}

Bytes Random(std::mt19937_64& rng, size_t n) {
  Bytes b(n);
  for (auto& c : b) c = uint8_t(rng());
  return b;
}

SecretBytes Master() {
  SecretBytes k(32);
  std::memset(k.data(), 0x42, 32);
  return k;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

StoreOptions Options(const std::string& dir) {
  StoreOptions o;
  o.state_dir = dir + "/state";
  o.runtime_dir = dir + "/run";
  return o;
}

// Creates n instances from 8 threads (their creates share group commits).
void Populate(Store& s, uint32_t n) {
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < 8; ++t)
    threads.emplace_back([&s, n, t] {
      std::mt19937_64 rng(t);
      for (uint32_t i = t; i < n; i += 8) {
        InstanceMeta m;
        m.uuid = Id(i);
        m.ek_public = Random(rng, 256);
        Status st = s.Create(m, {{BlobKind::kPermanent, Random(rng, kPermanentBytes)},
                                 {BlobKind::kVolatile, Random(rng, kVolatileBytes)}});
        if (!st.ok()) {
          std::fprintf(stderr, "create %u: %s\n", i, st.message().c_str());
          std::exit(1);
        }
      }
    });
  for (auto& t : threads) t.join();
}

// One commit (no grouping: one at a time) on a random instance of a store.
class Committer {
 public:
  Committer(Store& s, uint32_t n, uint64_t seed) : s_(s), n_(n), gen_(n, 1), rng_(seed) {}
  double CommitMs() {
    uint32_t i = uint32_t(rng_() % n_);
    CommitRequest c;
    c.uuid = Id(i);
    c.expected_generation = gen_[i];
    c.write[BlobKind::kPermanent] = Random(rng_, kPermanentBytes);
    c.volatile_copy = Random(rng_, kVolatileBytes);
    c.record = CommandRecord{gen_[i], Random(rng_, 32), Random(rng_, kResponseBytes), false};
    auto t0 = Clock::now();
    auto r = s_.CommitSync(std::move(c));
    const double ms = Ms(Clock::now() - t0);
    if (!r.ok()) {
      std::fprintf(stderr, "commit: %s\n", r.status().message().c_str());
      std::exit(1);
    }
    gen_[i] = *r;
    return ms;
  }

 private:
  Store& s_;
  uint32_t n_;
  std::vector<uint64_t> gen_;
  std::mt19937_64 rng_;
};

double FsyncP50(const std::string& dir, int k) {
  const std::string path = dir + "/fsync-probe";
  vtpm::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  std::vector<uint8_t> page(4096, 0x5a);
  std::vector<double> ms;
  for (int j = 0; j < k; ++j) {
    auto t0 = Clock::now();
    if (::pwrite(fd.get(), page.data(), page.size(), off_t(j % 64) * 4096) != 4096 || ::fdatasync(fd.get()) != 0) {
      std::perror("fsync probe");
      std::exit(1);
    }
    ms.push_back(Ms(Clock::now() - t0));
  }
  ::unlink(path.c_str());
  return Median(ms);
}

uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file()) total += e.file_size();
  return total;
}

}  // namespace
}  // namespace vtpm

int main(int argc, char** argv) {
  using namespace vtpm;
  uint32_t n = 20000;
  int k = 300;
  std::string base = std::filesystem::current_path();
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--instances") n = uint32_t(std::stoul(argv[i + 1]));
    else if (a == "--commits") k = std::stoi(argv[i + 1]);
    else if (a == "--dir") base = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: %s [--instances N] [--commits K] [--dir D]\n", argv[0]);
      return 2;
    }
  }
  spdlog::set_level(spdlog::level::warn);
  std::string tmpl = base + "/store-bench-XXXXXX";
  if (!::mkdtemp(tmpl.data())) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string big = tmpl + "/big", small = tmpl + "/small";
  std::filesystem::create_directories(big);
  std::filesystem::create_directories(small);

  auto t0 = Clock::now();
  {
    auto s = OpenStoreWithKey(Options(big), Master());
    if (!s.ok()) { std::fprintf(stderr, "%s\n", s.status().message().c_str()); return 1; }
    Populate(**s, n);
  }
  const double populate_s = Ms(Clock::now() - t0) / 1000;
  const uint64_t bytes = DirBytes(big + "/state");

  t0 = Clock::now();
  auto s = OpenStoreWithKey(Options(big), Master());
  if (!s.ok()) { std::fprintf(stderr, "%s\n", s.status().message().c_str()); return 1; }
  auto list = (*s)->List();
  const double open_list_ms = Ms(Clock::now() - t0);
  if (!list.ok() || list->size() != n) { std::fprintf(stderr, "list failed\n"); return 1; }

  // Interleaved, so both medians see the same machine load.
  std::vector<double> big_ms, small_ms;
  {
    auto sm = OpenStoreWithKey(Options(small), Master());
    if (!sm.ok()) { std::fprintf(stderr, "%s\n", sm.status().message().c_str()); return 1; }
    Populate(**sm, 10);
    Committer cb(**s, n, 1), cs(**sm, 10, 2);
    for (int j = 0; j < k; ++j) {
      big_ms.push_back(cb.CommitMs());
      small_ms.push_back(cs.CommitMs());
    }
  }
  const double p50_big = Median(big_ms), p50_small = Median(small_ms);
  const double fsync_ms = FsyncP50(big, k);

  std::printf("store bench: %u instances, %d commits per figure, dir %s\n", n, k, tmpl.c_str());
  std::printf("  bulk create (8 threads, group commit)   %10.1f s\n", populate_s);
  std::printf("  bytes per instance (db+wal / n)         %10.0f\n", double(bytes) / n);
  std::printf("  open store + list all                   %10.1f ms\n", open_list_ms);
  std::printf("  commit p50 at %-6u instances           %10.3f ms\n", n, p50_big);
  std::printf("  commit p50 at 10 instances              %10.3f ms\n", p50_small);
  std::printf("  ratio (target <= 1.1)                   %10.2f\n", p50_small > 0 ? p50_big / p50_small : 0);
  std::printf("  fsync'd 4 KiB write p50                 %10.3f ms\n", fsync_ms);
  std::printf("  commit / fsync'd write                  %10.2f\n", fsync_ms > 0 ? p50_big / fsync_ms : 0);
  s = Status(Code::kUnavailable, "done");
  std::filesystem::remove_all(tmpl);
  return 0;
}
