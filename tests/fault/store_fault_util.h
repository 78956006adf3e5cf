// Helpers shared by the store's fault tests: deterministic instance contents
// per (instance, generation), and a check that a reopened store holds every
// acknowledged commit and that every instance opens.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>

#include "../unit/host_tpm_swtpm.h"
#include "store/open_store.h"

namespace vtpm::testing {

inline Uuid InstanceId(int i) {
  Uuid u;
  u.bytes[0] = 0xfa;
  u.bytes[14] = uint8_t(i >> 8);
  u.bytes[15] = uint8_t(i);
  return u;
}

// Distinct, incompressible-looking bytes for instance i at generation g.
inline Bytes Content(int i, uint64_t g, size_t n = 700) {
  Bytes b(n);
  uint64_t x = (uint64_t(i) << 32) ^ (g * 0x9e3779b97f4a7c15ull) ^ 0x5bd1e995;
  for (auto& c : b) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = uint8_t(x);
  }
  return b;
}

inline SecretBytes TestMaster() {
  SecretBytes k(32);
  for (size_t i = 0; i < 32; ++i) k.data()[i] = uint8_t(0xc3 ^ i);
  return k;
}

inline StoreOptions OptionsIn(const TempDir& dir) {
  StoreOptions o;
  o.state_dir = dir.Sub("state");
  o.runtime_dir = dir.Sub("run");
  return o;
}

inline Status CreateInstances(Store& s, int n) {
  for (int i = 0; i < n; ++i) {
    InstanceMeta m;
    m.uuid = InstanceId(i);
    RETURN_IF_ERROR(s.Create(m, {{BlobKind::kPermanent, Content(i, 1)}}));
  }
  return Status::Ok();
}

// One commit of instance i from generation g to g+1 (blob and record).
inline CommitRequest NextCommit(int i, uint64_t g) {
  CommitRequest c;
  c.uuid = InstanceId(i);
  c.write[BlobKind::kPermanent] = Content(i, g + 1);
  c.volatile_copy = Content(i, g + 1, 64);
  c.record = CommandRecord{g + 1, Content(i, g + 1, 32), Content(i, g + 1, 40), false};
  c.expected_generation = g;
  return c;
}

// Commits up to `draws` distinct random instances at once (so they form
// groups). Each acknowledged commit advances `gens` and calls `on_ack`.
// Returns false if any commit failed.
template <typename Rng>
bool CommitRandomBatch(Store& s, Rng& rng, std::map<int, uint64_t>& gens, int draws,
                       const std::function<void(int, uint64_t)>& on_ack) {
  std::vector<int> batch;
  for (int k = 0; k < draws; ++k) batch.push_back(int(rng() % gens.size()));
  std::sort(batch.begin(), batch.end());
  batch.erase(std::unique(batch.begin(), batch.end()), batch.end());
  std::vector<std::promise<Result<uint64_t>>> done(batch.size());
  for (size_t k = 0; k < batch.size(); ++k)
    s.Commit(NextCommit(batch[k], gens[batch[k]]),
             [&done, k](Result<uint64_t> r) { done[k].set_value(std::move(r)); });
  bool all_ok = true;
  for (size_t k = 0; k < batch.size(); ++k) {
    auto r = done[k].get_future().get();
    if (!r.ok()) {
      all_ok = false;
      continue;
    }
    gens[batch[k]] = *r;
    on_ack(batch[k], *r);
  }
  return all_ok;
}

// Every instance opens; its generation is `acked` or one more (a commit that
// reached the disk but whose acknowledgement did not reach the test), and its
// contents are those of that generation. Returns the generations found.
inline std::map<int, uint64_t> VerifyStore(Store& s, const std::map<int, uint64_t>& acked) {
  std::map<int, uint64_t> found;
  for (const auto& [i, g] : acked) {
    auto l = s.Load(InstanceId(i));
    EXPECT_TRUE(l.ok()) << "instance " << i << ": " << l.status().message();
    if (!l.ok()) continue;
    EXPECT_TRUE(l->generation == g || l->generation == g + 1)
        << "instance " << i << " acknowledged generation " << g << ", found " << l->generation;
    EXPECT_EQ(l->permanent, Content(i, l->generation)) << "instance " << i;
    if (l->generation > 1) {
      EXPECT_TRUE(l->last_record && l->last_record->sequence == l->generation) << "instance " << i;
      EXPECT_EQ(l->volatile_copy, Content(i, l->generation, 64)) << "instance " << i;
    }
    found[i] = l->generation;
  }
  return found;
}

}  // namespace vtpm::testing
