// Small helpers shared by the files that implement SqliteStore.
#pragma once

#include <cstdint>
#include <ctime>

#include "common/bytes.h"
#include "common/status.h"
#include "common/uuid.h"

namespace vtpm::sqlite_store_internal {

// A uuid as the 16-byte BLOB the tables key on.
inline ByteView U(const Uuid& u) { return {u.bytes.data(), u.bytes.size()}; }
inline int64_t Now() { return int64_t(::time(nullptr)); }
inline Status NoInstance(const Uuid& uuid) {
  return Status(Code::kNotFound, "instance " + uuid.ToString() + " does not exist");
}

}  // namespace vtpm::sqlite_store_internal
