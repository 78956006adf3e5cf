// The database layout and the manager records (design §6b "open()").
//
//   meta(key, value)          schema_version, protection, key_check, host TPM key records
//   instances(uuid, ...)      metadata, generation, data key sealed by the master key
//   blobs(uuid, kind, sealed) libtpms blobs, each an Envelope
//   records(uuid, ...)        newest command record (Envelope) and its delivered mark
#pragma once

#include <string>

#include "common/status.h"
#include "store/sqlite_db.h"
#include "store/secret_bytes.h"
#include "tpm/host/host_tpm.h"

namespace vtpm {

inline constexpr int64_t kSchemaVersion = 1;

// How the master key is protected.
inline constexpr char kProtectSk[] = "tpm-sk";          // bound to the SK
inline constexpr char kProtectPcr[] = "tpm-pcr";        // sealed under PolicyPCR
inline constexpr char kProtectExternal[] = "external";  // given by the caller (tests, tools)

struct ManagerRecord {
  int64_t schema_version = kSchemaVersion;
  std::string protection;
  ManagerKeys keys;  // empty for kProtectExternal
  Bytes key_check;   // Envelope(kKeyCheck) under the master key
};

// WAL, synchronous=FULL, secure_delete, locking_mode=EXCLUSIVE.
Status ApplyPragmas(Db& db);
// True when the database has no tables at all (a new store).
Result<bool> IsEmptyDatabase(Db& db);
// Creates every table and writes `rec`, in one transaction.
Status CreateSchema(Db& db, const ManagerRecord& rec);
// Refusal::kNewerSchema or kBadManagerRecord on anything unexpected.
Result<ManagerRecord> ReadManagerRecord(Db& db);

Result<Bytes> MakeKeyCheck(const SecretBytes& master);
// Refusal::kBadManagerRecord when `master` does not open the store's key check.
Status VerifyKeyCheck(const SecretBytes& master, ByteView key_check);

}  // namespace vtpm
