// No secret at rest: plaintext committed through the store appears in no file
// under the state or runtime directory, not even as any 16-byte window.
#include <filesystem>
#include <fstream>
#include <list>
#include <random>
#include <string_view>
#include <unordered_set>

#include "store_fault_util.h"

namespace vtpm::testing {
namespace {

class Windows {
 public:
  void Add(const Bytes& secret) {
    keep_.push_back(secret);
    const Bytes& b = keep_.back();
    for (size_t i = 0; i + kW <= b.size(); ++i) set_.insert(View(b.data() + i));
  }
  // Offset of the first window found in `data`, or npos.
  size_t FindIn(const std::string& data) const {
    for (size_t i = 0; i + kW <= data.size(); ++i)
      if (set_.count(View(reinterpret_cast<const uint8_t*>(data.data()) + i))) return i;
    return std::string::npos;
  }
  size_t size() const { return set_.size(); }

 private:
  static constexpr size_t kW = 16;
  static std::string_view View(const uint8_t* p) { return {reinterpret_cast<const char*>(p), kW}; }
  std::list<Bytes> keep_;
  std::unordered_set<std::string_view> set_;
};

Bytes RandomBytes(std::mt19937_64& rng, size_t n) {
  Bytes b(n);
  for (auto& c : b) c = uint8_t(rng());
  return b;
}

TEST(StoreNoSecretAtRest, PlaintextIsInNoFile) {
  TempDir dir;
  StoreOptions o = OptionsIn(dir);
  std::mt19937_64 rng(4242);
  Windows secrets;
  SecretBytes master = TestMaster();
  secrets.Add(Bytes(master.data(), master.data() + master.size()));
  {
    auto s = OpenStoreWithKey(o, master);
    ASSERT_TRUE(s.ok());
    for (int i = 0; i < 30; ++i) {
      InstanceMeta m;
      m.uuid = InstanceId(i);
      Bytes perm = RandomBytes(rng, 1500);
      secrets.Add(perm);
      ASSERT_TRUE((*s)->Create(m, {{BlobKind::kPermanent, perm}}).ok());
      uint64_t g = 1;
      for (int k = 0; k < 3; ++k) {
        CommitRequest c;
        c.uuid = m.uuid;
        c.expected_generation = g;
        c.write[BlobKind::kPermanent] = RandomBytes(rng, 1200);
        c.write[BlobKind::kSavestate] = RandomBytes(rng, 300);
        c.volatile_copy = RandomBytes(rng, 900);
        c.record = CommandRecord{g, RandomBytes(rng, 32), RandomBytes(rng, 200), false};
        secrets.Add(c.write[BlobKind::kPermanent]);
        secrets.Add(c.write[BlobKind::kSavestate]);
        secrets.Add(*c.volatile_copy);
        secrets.Add(c.record->request_digest);
        secrets.Add(c.record->response);
        auto r = (*s)->CommitSync(std::move(c));
        ASSERT_TRUE(r.ok()) << r.status().message();
        g = *r;
      }
      VolatileCopy v;
      v.blob = RandomBytes(rng, 2000);
      v.generation = g;
      secrets.Add(v.blob);
      ASSERT_TRUE((*s)->SaveVolatile(m.uuid, v).ok());
    }
    ASSERT_TRUE((*s)->Wipe(InstanceId(3)).ok());
    // Scan while the store is open (WAL populated) and again after close.
    for (const char* phase : {"open", "closed"}) {
      if (std::string(phase) == "closed") s = Status(Code::kUnavailable, "closed");
      int files = 0;
      for (const std::string& root : {o.state_dir, o.runtime_dir}) {
        for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
          if (!e.is_regular_file()) continue;
          std::ifstream f(e.path(), std::ios::binary);
          std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
          size_t at = secrets.FindIn(data);
          EXPECT_EQ(at, std::string::npos) << phase << ": plaintext window in " << e.path() << " at " << at;
          ++files;
        }
      }
      EXPECT_GE(files, 3) << phase;  // database, lock, volatile copies (and -wal while open)
    }
  }
  EXPECT_GT(secrets.size(), 100000u);
}

}  // namespace
}  // namespace vtpm::testing
