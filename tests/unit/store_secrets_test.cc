// Issue 17 item 6: buffers are wiped when freed, keys live in pages
// excluded from core dumps, the data-key cache is bounded; and the exit
// statuses of the refusals items 1 and 5 added.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "common/bytes.h"
#include "store/key_cache.h"
#include "store/refusal.h"
#include "store/secret_bytes.h"
#include "tpm/host/store_marker.h"

namespace vtpm {
namespace {

// A base allocator that records whether what it gets back is all zero.
int g_freed = 0, g_freed_zeroed = 0;
template <typename T>
struct RecordingBase : std::allocator<T> {
  RecordingBase() = default;
  template <typename U>
  RecordingBase(const RecordingBase<U>&) noexcept {}
  void deallocate(T* p, size_t n) {
    ++g_freed;
    bool zero = true;
    const auto* b = reinterpret_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n * sizeof(T); ++i) zero = zero && b[i] == 0;
    g_freed_zeroed += zero;
    std::allocator<T>::deallocate(p, n);
  }
};

TEST(Wiping, BytesAreZeroedBeforeTheirMemoryIsFreedAlsoWhenTheyGrow) {
  static_assert(std::is_same_v<Bytes::allocator_type, WipingAllocator<uint8_t>>);
  g_freed = g_freed_zeroed = 0;
  {
    std::vector<uint8_t, WipingAllocator<uint8_t, RecordingBase<uint8_t>>> v(100, 0xA5);
    for (int i = 0; i < 1000; ++i) v.push_back(0x5A);  // reallocations free the old buffers
  }
  EXPECT_GT(g_freed, 1);
  EXPECT_EQ(g_freed_zeroed, g_freed);
}

// The VmFlags of the mapping of /proc/self/smaps that holds `p`.
std::string VmFlagsOf(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto addr = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2) {  // a mapping's header line
      inside = addr >= lo && addr < hi;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

TEST(Wiping, KeysLiveInPagesExcludedFromCoreDumps) {
  ASSERT_TRUE(InitSecretHeap());
  auto key = SecretBytes::Random(32);
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE(key->in_secure_heap());
  const std::string flags = VmFlagsOf(key->data());
  EXPECT_NE(flags.find(" dd"), std::string::npos) << "not MADV_DONTDUMP: " << flags;
  SecretBytes copy = key->Clone();
  EXPECT_TRUE(copy.in_secure_heap());
  EXPECT_NE(VmFlagsOf(copy.data()).find(" dd"), std::string::npos);
  // An ordinary heap buffer is dumped: the check tells them apart.
  Bytes plain(32, 1);
  EXPECT_EQ(VmFlagsOf(plain.data()).find(" dd"), std::string::npos);
}

Uuid U(uint8_t n) {
  Uuid u;
  u.bytes.fill(n);
  return u;
}
SecretBytes K(uint8_t n) {
  Bytes b(32, n);
  return SecretBytes(ByteView(b));
}

TEST(KeyCacheTest, HoldsAtMostItsCapacityAndEvictsTheLeastRecentlyUsed) {
  KeyCache c(3);
  for (uint8_t i = 1; i <= 3; ++i) c.Put(U(i), K(i));
  ASSERT_TRUE(c.Get(U(1)));  // 1 is now the most recent; 2 the least
  c.Put(U(4), K(4));
  EXPECT_EQ(c.size(), 3u);
  EXPECT_FALSE(c.Get(U(2)));
  for (uint8_t i : {1, 3, 4}) {
    auto k = c.Get(U(i));
    ASSERT_TRUE(k) << int(i);
    EXPECT_EQ(k->data()[0], i);
  }
  for (uint8_t i = 10; i < 200; ++i) c.Put(U(i), K(i));
  EXPECT_EQ(c.size(), 3u);
  c.Put(U(199), K(7));  // replacing keeps one entry
  EXPECT_EQ(c.size(), 3u);
  EXPECT_EQ(c.Get(U(199))->data()[0], 7);
  c.Erase(U(199));
  EXPECT_EQ(c.size(), 2u);
  EXPECT_FALSE(c.Get(U(199)));
}

TEST(Refusals, NewRefusalsHaveTheirExitStatuses) {
  EXPECT_EQ(StartExitStatus(Refuse(Refusal::kStoreLost, "x")), 18);
  EXPECT_EQ(StartExitStatus(Refuse(Refusal::kForeignSrk, "x")), 19);
  EXPECT_EQ(StartExitStatus(Refuse(Refusal::kTpmLockout, "x")), 20);
  EXPECT_EQ(StartExitStatus(Refuse(Refusal::kUnsafeDirectory, "x")), 21);
  EXPECT_EQ(RefusalOf(Status(Code::kFailedPrecondition, "x", kLastRefusal + 1)), std::nullopt);
}

TEST(StoreMarkerCodec, RoundTripsAndRejectsWhatIsNotAMarker) {
  StoreMarker m{1764336180, "/var/lib/vtpmmgrd/vtpm.db", 0x81000001, true};
  Bytes b = EncodeStoreMarker(m);
  auto back = DecodeStoreMarker(b);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->provisioned, m.provisioned);
  EXPECT_EQ(back->db_path, m.db_path);
  EXPECT_EQ(back->srk_handle, m.srk_handle);
  EXPECT_TRUE(back->srk_created);
  EXPECT_EQ(DescribeStoreMarker(m), "provisioned 2025-11-28 13:23:00 UTC for /var/lib/vtpmmgrd/vtpm.db");
  Bytes cut(b.begin(), b.end() - 1);
  EXPECT_FALSE(DecodeStoreMarker(cut));
  b[0] ^= 1;
  EXPECT_FALSE(DecodeStoreMarker(b));
  EXPECT_FALSE(DecodeStoreMarker(Bytes(64, 0)));
}

}  // namespace
}  // namespace vtpm
