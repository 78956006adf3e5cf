// RestoreStore: `vtpmctl restore FILE` (design §6c). Puts a file written by
// `vtpmctl backup` back as <state_dir>/vtpm.db while no daemon runs.
//
// Contract:
// - Holds the state-directory lock throughout, so it refuses (Refusal::kLocked)
//   while vtpmmgrd runs on that directory.
// - Refuses (kAlreadyExists) while a non-empty database, or its WAL or
//   journal, exists, unless `replace`: then they are kept, renamed with the
//   suffix ".replaced-<UTC time>", never deleted.
// - Validates a copy of FILE (in <state_dir>/restore.tmp/) before anything
//   else changes: an SQLite database of the full length its header states,
//   passing `PRAGMA integrity_check`, with vtpmmgrd's manager records, whose
//   master key this host's TPM recovers and which opens the store's key
//   check, and whose every instance loads (each item authenticates). Any
//   failure (kInvalidArgument for a file that is not a complete backup,
//   kCorruption for a damaged one, the host TPM's refusal otherwise) removes
//   the copy and leaves the state and runtime directories as they were.
// - On success the copy is renamed to vtpm.db (fsync'd file and directory),
//   and the runtime directory's volatile copies and responded marks, which
//   belong to the replaced state, are removed: restored instances power on
//   fresh.
#pragma once

#include <string>

#include "common/status.h"
#include "store/open_store.h"

namespace vtpm {

struct RestoreOutcome {
  int64_t instances = 0;  // in the restored store
  std::string replaced;   // where the previous database went, if `replace` moved one
};

Result<RestoreOutcome> RestoreStore(const StoreOptions& opts, const std::string& backup, bool replace);

}  // namespace vtpm
