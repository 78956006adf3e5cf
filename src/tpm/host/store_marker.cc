#include "tpm/host/store_marker.h"

#include <ctime>
#include <cstring>

namespace vtpm {
namespace {
constexpr char kMagic[8] = {'V', 'T', 'P', 'M', 'M', 'G', 'R', 'D'};
constexpr uint8_t kVersion = 1;
constexpr size_t kHeader = sizeof kMagic + 1 + 1 + 4 + 8 + 2;
}  // namespace

Bytes EncodeStoreMarker(const StoreMarker& m) {
  const std::string path = m.db_path.substr(0, kMaxMarkerPath);
  Bytes b(kMagic, kMagic + sizeof kMagic);
  b.push_back(kVersion);
  b.push_back(m.srk_created ? 1 : 0);
  AppendBe32(b, m.srk_handle);
  AppendBe64(b, uint64_t(m.provisioned));
  AppendBe16(b, uint16_t(path.size()));
  b.insert(b.end(), path.begin(), path.end());
  return b;
}

std::optional<StoreMarker> DecodeStoreMarker(ByteView b) {
  if (b.size() < kHeader || std::memcmp(b.data(), kMagic, sizeof kMagic) != 0) return std::nullopt;
  const uint8_t* p = b.data() + sizeof kMagic;
  if (p[0] != kVersion) return std::nullopt;
  StoreMarker m;
  m.srk_created = p[1] & 1;
  m.srk_handle = LoadBe32(p + 2);
  m.provisioned = int64_t(LoadBe64(p + 6));
  const size_t len = LoadBe16(p + 14);
  if (b.size() != kHeader + len) return std::nullopt;
  m.db_path.assign(reinterpret_cast<const char*>(b.data() + kHeader), len);
  return m;
}

std::string DescribeStoreMarker(const StoreMarker& m) {
  char when[32] = "an unknown time";
  std::time_t t = std::time_t(m.provisioned);
  std::tm tm{};
  if (gmtime_r(&t, &tm)) std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return std::string("provisioned ") + when + " for " + m.db_path;
}

}  // namespace vtpm
