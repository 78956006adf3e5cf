// StoreMarker: what the host TPM remembers of the store it protects, in an
// NV index (HostTpmConfig::marker_index) written when a store is
// provisioned or first opened. It lets OpenStore() tell a first start from
// a lost store (vtpmmgrd(8), "REFUSE, NEVER RESET"). Not secret.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/bytes.h"

namespace vtpm {

struct StoreMarker {
  int64_t provisioned = 0;    // unix seconds
  std::string db_path;        // where the store's database was
  uint32_t srk_handle = 0;    // the store's SRK handle
  bool srk_created = false;   // vtpmmgrd made the key at srk_handle persistent
};

// "VTPMMGRD" | version 1 | flags (bit 0: srk_created) | be32 srk_handle |
// be64 provisioned | be16 path length | path. Paths longer than
// kMaxMarkerPath bytes are cut (the marker only needs to name them).
inline constexpr size_t kMaxMarkerPath = 512;  // the marker stays within one NV_Read
Bytes EncodeStoreMarker(const StoreMarker& m);
// nullopt when `b` is not a marker of a version this build reads.
std::optional<StoreMarker> DecodeStoreMarker(ByteView b);
// "provisioned 2026-11-28 13:23:00 UTC for /var/lib/vtpmmgrd/vtpm.db"
std::string DescribeStoreMarker(const StoreMarker& m);

}  // namespace vtpm
