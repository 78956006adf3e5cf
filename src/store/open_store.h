// OpenStore: what the daemon calls at start (design §5, §6 "Manager").
//
// Takes the state-directory lock, opens the database and either provisions
// the manager (first start: SRK, SK or PCR-sealed object, master key) or
// recovers the master key through the host TPM. It refuses - never resets -
// on any mismatch; the daemon exits with StartExitStatus(status) (refusal.h).
// A new manager is provisioned only where nothing of a previous store exists:
// no database (or an empty one) and no store marker in the host TPM
// (store_marker.h). A missing or empty database where the host TPM records
// a store is Refusal::kStoreLost; ReinitialiseStore() is the way out.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "store/secret_bytes.h"
#include "store/store.h"
#include "tpm/host/host_tpm.h"

namespace vtpm {

struct StoreOptions {
  std::string state_dir = "/var/lib/vtpmmgrd";  // database "vtpm.db" and "lock"
  std::string runtime_dir = "/run/vtpmmgrd";    // volatile copies (tmpfs)
  HostTpmConfig host_tpm;
  std::string sqlite_vfs;   // empty = SQLite's default; tests pass a fault-injecting VFS
  size_t max_group = 64;    // most commits per group transaction
};

inline constexpr char kStoreDbName[] = "vtpm.db";

Result<std::unique_ptr<Store>> OpenStore(const StoreOptions& opts);

// `vtpmmgrd --reinitialise`: gives up a lost store for good. Refuses
// (kAlreadyExists) while a database file (or its WAL or journal) exists;
// otherwise removes the host TPM's store marker and the SRK vtpmmgrd made
// persistent, then provisions a new, empty store and closes it.
Status ReinitialiseStore(const StoreOptions& opts);

// Tests and benchmarks: the same store with a caller-given 32-byte master key
// and no host TPM. A store provisioned this way is refused by OpenStore() and
// vice versa (Refusal::kBadManagerRecord).
Result<std::unique_ptr<Store>> OpenStoreWithKey(const StoreOptions& opts, const SecretBytes& master);

}  // namespace vtpm
