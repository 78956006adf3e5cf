// Store: every vTPM's durable state, in one SQLite database (design §5, §6b).
//
// All blobs handed in are plaintext; the store encrypts each with the
// instance's data key (AES-256-GCM, AAD = uuid | blob kind | generation) and
// never writes plaintext to disk. It refuses - never resets - on any mismatch.
// Thread-safety: every method may be called from any thread. Commits run on
// the store's own thread (group commit) and complete through a callback.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "common/uuid.h"
#include "store/secret_bytes.h"

namespace vtpm {

// libtpms blob kinds (names match libtpms' TPM_*_NAME).
enum class BlobKind : uint8_t { kPermanent = 1, kSavestate = 2, kVolatile = 3 };

struct CommandRecord {
  uint64_t sequence = 0;
  Bytes request_digest;   // SHA-256 of the request bytes
  Bytes response;
  bool delivered = false;
};

// Written when the domain running an instance suspended (xl save, xendomains
// at host shutdown, the sending side of xl migrate): with it, the store's
// volatile blob of the same generation is the TPM as the domain left it. A
// domain with the same handle resumes it, once (design §6 "Save, restore").
struct SuspendCapture {
  std::array<uint8_t, 16> handle{};  // the suspended domain's handle (its uuid)
  uint32_t domid = 0;                // the suspended domain
  uint64_t sequence = 0;             // its last command
  int64_t captured_at = 0;           // unix seconds
};

struct InstanceMeta {
  Uuid uuid;
  std::string tpm_version = "1.2";
  int64_t created = 0, last_attached = 0, last_written = 0;  // unix seconds
  bool auto_created = false;
  Bytes ek_public;        // TPM_PUBKEY recorded at manufacture
  uint64_t size_bytes = 0;  // stored bytes of this instance
  bool suspended = false;   // holds a SuspendCapture (List() only)
};

struct LoadedInstance {
  InstanceMeta meta;
  Bytes permanent;
  std::optional<Bytes> savestate;
  std::optional<Bytes> volatile_copy;  // the store's copy (last state-changing command)
  uint64_t generation = 0;
  std::optional<CommandRecord> last_record;
  std::optional<SuspendCapture> suspend;  // with volatile_copy: the TPM as the domain suspended
};

// A copy of an instance's volatile state (design §6 "Volatile state"), kept
// in the runtime directory, encrypted with the instance's data key.
struct VolatileCopy {
  Bytes blob;                         // libtpms volatile state
  std::array<uint8_t, 16> boot_id{};  // host boot id when written
  uint32_t domid = 0;                 // domain the running instance belonged to
  // That domain's handle when known: a later domain given the same domid
  // is a different domain (design §6 "Volatile state").
  std::optional<std::array<uint8_t, 16>> handle;
  uint64_t sequence = 0;              // command sequence number it follows
  uint64_t generation = 0;            // permanent generation it goes with
  // The record of command `sequence` (the command whose state this is), so a
  // restarted daemon can answer a command it executed but did not deliver.
  std::optional<CommandRecord> record;
  // Written while the worker keeps volatile-only commands in its flight
  // record: the TPM may be ahead of this copy, which is then good only with
  // that flight record (design §6 "Volatile state").
  bool worker_ahead = false;
};

// Written into the runtime directory between a guest response reaching the
// page and FINISH (design §3): command `sequence` of domain `domid` was
// answered, so a page that holds the same request again is a new command.
struct RespondedMark {
  std::array<uint8_t, 16> boot_id{};
  uint32_t domid = 0;
  uint64_t sequence = 0;
};

// What `vtpmctl status` shows about the store and the host TPM.
struct StoreStatus {
  std::string db_path;
  std::string runtime_dir;
  std::string host_tpm_transport;     // TCTI configuration in use
  std::string key_protection;         // "bound to SK (RSA-OAEP)" or "sealed to PCRs sha256:0,7"
  std::vector<std::pair<uint32_t, Bytes>> pcr_values;  // sha256 of the policy PCRs (or 0-7)
  uint64_t instances = 0;
  uint64_t db_bytes = 0;              // database + WAL file sizes
  uint64_t commits = 0, commit_groups = 0;  // since open
};

// An instance `vtpmctl export` moved to another host (design §6d): its
// tombstone, kept in the meta table after the instance was wiped.
struct MovedInstance {
  Uuid uuid;
  std::string peer;       // the receiving host's name in the peers directory
  int64_t moved_at = 0;   // unix seconds
  std::string export_id;  // hex
};

// An instance arriving from another host (`vtpmctl import`, design §6d).
struct ImportRequest {
  InstanceMeta meta;                  // uuid, tpm_version, created, auto_created, ek_public
  std::map<BlobKind, Bytes> blobs;    // kPermanent required
  std::optional<SuspendCapture> suspend;  // needs blobs[kVolatile]
  std::string export_id;              // hex; recorded as imported:<id> in the same transaction
  std::string peer;                   // the sender's name
};

struct CommitRequest {
  Uuid uuid;
  std::map<BlobKind, Bytes> write;
  std::vector<BlobKind> remove;
  std::optional<Bytes> volatile_copy;
  std::optional<CommandRecord> record;
  // Every commit drops the instance's SuspendCapture (the TPM moved on from
  // it) unless it writes a new one; a capture needs `volatile_copy` too.
  std::optional<SuspendCapture> suspend;
  uint64_t expected_generation = 0;  // fails with kFailedPrecondition on mismatch
};

// Errors: kNotFound (no such instance), kAlreadyExists, kCorruption (an
// item of that instance fails validation - message names the instance, the
// item and "restore from a backup or wipe"), kFailedPrecondition (generation
// mismatch, or an item written by a newer vtpmmgrd), kIoError (sub-code
// ENOSPC when the disk is full; nothing is lost and a retry may succeed).
class Store {
 public:
  virtual ~Store() = default;
  // One durable transaction: the instance row (generation 1, a fresh data
  // key) and its blobs (kPermanent required). Blocks for the commit.
  virtual Status Create(const InstanceMeta& meta, const std::map<BlobKind, Bytes>& blobs) = 0;
  // Decrypts and validates everything of the instance. `volatile_copy` is set
  // only if it was written with the current generation.
  virtual Result<LoadedInstance> Load(const Uuid& uuid) = 0;
  // Asynchronous durable commit; `done` gets the new generation. Runs on the
  // store thread: the caller must hop back to its loop.
  virtual void Commit(CommitRequest req, std::function<void(Result<uint64_t>)> done) = 0;
  // Synchronous variant, for tools and tests.
  virtual Result<uint64_t> CommitSync(CommitRequest req) = 0;
  // Return at once; failures are logged. MarkDelivered rides along with the
  // next group committed for another reason (or the last one, at close): it
  // never costs an fsync of its own, and a crash may lose it. The flag is
  // informational: exactly-once decides from the responded mark (design §3).
  // TouchAttached is queued behind pending commits and made durable with
  // the next group.
  virtual Status MarkDelivered(const Uuid& uuid, uint64_t sequence) = 0;
  virtual Status TouchAttached(const Uuid& uuid) = 0;
  // Deletes the data key, blobs, record and volatile copy (crypto-shred),
  // then wal_checkpoint(TRUNCATE). Backups made earlier still hold it.
  virtual Status Wipe(const Uuid& uuid) = 0;
  virtual Result<std::vector<InstanceMeta>> List() = 0;  // sorted by uuid
  // Online copy through SQLite's backup API; `path` must not exist.
  virtual Status Backup(const std::string& path) = 0;

  // Migration between hosts (design §6d).
  // This host's migration key secret, sealed by the master key in the meta
  // table (kind kHostKeys, nil uuid); made by `make` and stored on first use.
  virtual Result<SecretBytes> HostKeys(const std::function<Result<SecretBytes>()>& make) = 0;
  // One durable transaction: the instance (generation 1, a fresh data key),
  // its blobs and capture, the imported:<export id> record, and removal of
  // this host's own tombstone of the uuid (moving back). kAlreadyExists when
  // the export id was imported before or the uuid exists.
  virtual Status Import(const ImportRequest& req) = 0;
  // One durable transaction: the tombstone, then the instance's rows deleted
  // as Wipe does (kFailedPrecondition unless the generation is still
  // `expected_generation`); then the WAL checkpoint and the runtime files.
  virtual Status MarkMoved(const MovedInstance& moved, uint64_t expected_generation) = 0;
  virtual Result<std::vector<MovedInstance>> ListMoved() = 0;  // sorted by uuid

  // Writes `copy` atomically (whole old or whole new file for a daemon
  // killed at any point; ReplaceFile() in runtime_file.h) to the instance's
  // file in the runtime directory, encrypted and bound to uuid and generation.
  virtual Status SaveVolatile(const Uuid& uuid, const VolatileCopy& copy) = 0;
  // The runtime-directory copy if present and authentic; nullopt if absent.
  // A copy that fails authentication is an error (kCorruption), never used.
  // Whether to use it is the caller's choice (see VolatileCopyUsable()).
  virtual Result<std::optional<VolatileCopy>> LoadVolatile(const Uuid& uuid) = 0;
  // Removes the volatile copy and the responded mark (ENOENT is success):
  // the domain they belong to is gone, and no other domain may resume them.
  virtual Status DropRuntimeCopies(const Uuid& uuid) = 0;
  // The responded mark: written in place, whole or not at all for a daemon
  // killed at any point (OverwriteRecord() in runtime_file.h); not fsync'd:
  // like the page and the volatile copy, it only has to outlive the daemon.
  virtual Status SaveResponded(const Uuid& uuid, const RespondedMark& mark) = 0;
  // nullopt if absent; kCorruption if malformed.
  virtual Result<std::optional<RespondedMark>> LoadResponded(const Uuid& uuid) = 0;
  // Saves `mark`, then opens the mark's file for writing, for a worker that
  // writes later marks itself (one pwrite of a record of the same size at
  // offset 0, which OverwriteRecord also does in place). kFailedPrecondition
  // where a store has no such file.
  virtual Result<UniqueFd> OpenRespondedForWorker(const Uuid& uuid, const RespondedMark& mark) {
    (void)uuid, (void)mark;
    return Status(Code::kFailedPrecondition, "this store cannot hand its responded mark to a worker");
  }
  // Reads the host TPM's policy PCRs, which nothing else does after start-up:
  // callers on more than one thread must not call it concurrently.
  virtual Result<StoreStatus> GetStatus() = 0;
};

// "instance U moved to host P at T (vtpmctl export)": why a device or a
// create of a moved instance is refused.
std::string MovedRefusal(const MovedInstance& m);
// The tombstone of `uuid` (Store::ListMoved), if `vtpmctl export` moved it away.
Result<std::optional<MovedInstance>> FindMoved(Store& store, const Uuid& uuid);
// "2026-12-03 22:48:18 UTC"
std::string UtcTime(int64_t unix_seconds);

// Design §6 rule: a volatile copy is used only on the same host boot, for the
// same domain (domid, and handle when both are known), and for the permanent
// generation now in the store. On false, `why` says which check failed (for
// the log line).
bool VolatileCopyUsable(const VolatileCopy& copy, const std::array<uint8_t, 16>& boot_id,
                        uint32_t domid, const std::optional<std::array<uint8_t, 16>>& handle,
                        uint64_t store_generation, std::string* why);
// This boot's id, from /proc/sys/kernel/random/boot_id.
Result<std::array<uint8_t, 16>> ReadBootId();

}  // namespace vtpm
