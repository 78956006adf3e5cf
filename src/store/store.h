// Store: every vTPM's durable state, in one SQLite database (design §5, §6b).
//
// All blobs handed in are plaintext; the store encrypts each with the
// instance's data key (AES-256-GCM, AAD = uuid | blob kind | generation) and
// never writes plaintext to disk. It refuses - never resets - on any mismatch.
// Thread-safety: one Store is used from the daemon loop; commits run on the
// store's own thread (group commit) and complete through a callback.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "common/uuid.h"

namespace vtpm {

// libtpms blob kinds (names match libtpms' TPM_*_NAME).
enum class BlobKind : uint8_t { kPermanent = 1, kSavestate = 2, kVolatile = 3 };

struct CommandRecord {
  uint64_t sequence = 0;
  Bytes request_digest;   // SHA-256 of the request bytes
  Bytes response;
  bool delivered = false;
};

struct InstanceMeta {
  Uuid uuid;
  std::string tpm_version = "1.2";
  int64_t created = 0, last_attached = 0, last_written = 0;  // unix seconds
  bool auto_created = false;
  Bytes ek_public;        // TPM_PUBKEY recorded at manufacture
  uint64_t size_bytes = 0;  // stored bytes of this instance
};

struct LoadedInstance {
  InstanceMeta meta;
  Bytes permanent;
  std::optional<Bytes> savestate;
  std::optional<Bytes> volatile_copy;  // the store's copy (last state-changing command)
  uint64_t generation = 0;
  std::optional<CommandRecord> last_record;
};

struct CommitRequest {
  Uuid uuid;
  std::map<BlobKind, Bytes> write;
  std::vector<BlobKind> remove;
  std::optional<Bytes> volatile_copy;
  std::optional<CommandRecord> record;
  uint64_t expected_generation = 0;  // fails with kFailedPrecondition on mismatch
};

class Store {
 public:
  virtual ~Store() = default;
  virtual Status Create(const InstanceMeta& meta, const std::map<BlobKind, Bytes>& blobs) = 0;
  virtual Result<LoadedInstance> Load(const Uuid& uuid) = 0;
  // Asynchronous durable commit; `done` gets the new generation. Runs on the
  // store thread: the caller must hop back to its loop.
  virtual void Commit(CommitRequest req, std::function<void(Result<uint64_t>)> done) = 0;
  // Synchronous variant, for tools and tests.
  virtual Result<uint64_t> CommitSync(CommitRequest req) = 0;
  virtual Status MarkDelivered(const Uuid& uuid, uint64_t sequence) = 0;
  virtual Status TouchAttached(const Uuid& uuid) = 0;
  virtual Status Wipe(const Uuid& uuid) = 0;
  virtual Result<std::vector<InstanceMeta>> List() = 0;
  virtual Status Backup(const std::string& path) = 0;
};

}  // namespace vtpm
