// SqliteStore: the Store on one SQLite database (design §2, §6b).
//
// Commits run on the store's own thread. Whatever is queued when the thread
// wakes forms a group that commits in one transaction (one fsync); if that
// transaction fails, every member is retried alone, so one instance's failure
// (generation mismatch, unknown uuid) is never another's. Synchronous calls
// take the database mutex and may wait for a group's fsync.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "store/dir_lock.h"
#include "store/envelope.h"
#include "store/key_cache.h"
#include "store/secret_bytes.h"
#include "store/sqlite_db.h"
#include "store/store.h"
#include "tpm/host/host_tpm.h"

namespace vtpm {

struct SqliteStoreSettings {
  std::string runtime_dir;
  std::string key_protection;       // for GetStatus()
  std::vector<uint32_t> pcrs;       // policy PCRs (status shows them; 0-7 when empty)
  size_t max_group = 64;
  // Unwrapped data keys kept in memory (least recently used evicted): 32
  // bytes each in the secret heap (secret_bytes.h).
  size_t max_cached_keys = 1024;
};

class SqliteStore final : public Store {
 public:
  // `db` is open, pragmas applied, schema checked; `master` opened its key check.
  SqliteStore(Db db, DirLock lock, SecretBytes master, std::unique_ptr<HostTpm> tpm, SqliteStoreSettings s);
  ~SqliteStore() override;  // drains queued commits, then closes

  Status Create(const InstanceMeta& meta, const std::map<BlobKind, Bytes>& blobs) override;
  Result<LoadedInstance> Load(const Uuid& uuid) override;
  void Commit(CommitRequest req, std::function<void(Result<uint64_t>)> done) override;
  Result<uint64_t> CommitSync(CommitRequest req) override;
  Status MarkDelivered(const Uuid& uuid, uint64_t sequence) override;
  Status TouchAttached(const Uuid& uuid) override;
  Status Wipe(const Uuid& uuid) override;
  Result<std::vector<InstanceMeta>> List() override;
  Status Backup(const std::string& path) override;
  Result<SecretBytes> HostKeys(const std::function<Result<SecretBytes>()>& make) override;
  Status Import(const ImportRequest& req) override;
  Status MarkMoved(const MovedInstance& moved, uint64_t expected_generation) override;
  Result<std::vector<MovedInstance>> ListMoved() override;
  Status SaveVolatile(const Uuid& uuid, const VolatileCopy& copy) override;
  Status DropRuntimeCopies(const Uuid& uuid) override;
  Result<std::optional<VolatileCopy>> LoadVolatile(const Uuid& uuid) override;
  Status SaveResponded(const Uuid& uuid, const RespondedMark& mark) override;
  Result<std::optional<RespondedMark>> LoadResponded(const Uuid& uuid) override;
  Result<UniqueFd> OpenRespondedForWorker(const Uuid& uuid, const RespondedMark& mark) override;
  Result<StoreStatus> GetStatus() override;

 private:
  struct Job {
    std::function<Result<uint64_t>()> apply;  // runs inside a transaction, db_mu_ held
    std::function<void(Result<uint64_t>)> done;
    bool counted = true;  // in GetStatus()'s commits (not DeliveredJob)
  };
  // A new instance's data key (wrapped by the master key) and its sealed
  // items at generation 1.
  struct SealedInstance {
    SecretBytes key;
    Bytes wrapped;
    std::vector<std::pair<SealedKind, Bytes>> sealed;
  };
  Result<SealedInstance> SealNew(const Uuid& uuid, const std::map<BlobKind, Bytes>& blobs,
                                 const std::optional<SuspendCapture>& suspend);
  Status InsertNewLocked(const InstanceMeta& meta, const SealedInstance& sealed);
  Status CommitNew(const Uuid& uuid, SealedInstance& sealed, const char* what, const std::function<Status()>& insert);
  Status DeleteInstanceLocked(const Uuid& uuid);
  Status Shred(const Uuid& uuid, const std::function<Status()>& body);
  Result<std::optional<Bytes>> MetaLocked(const std::string& key);
  Status PutMetaLocked(const std::string& key, const Bytes& value);
  // Runs `apply` as a job of the store thread (a group's transaction) and waits.
  Result<uint64_t> RunOnStoreThread(std::function<Result<uint64_t>()> apply);
  void Enqueue(Job job);
  Job DeliveredJob(std::map<Uuid, uint64_t> marks);
  void ThreadMain();
  // For a long reader (List, Backup) between two holds of db_mu_: waits until
  // the groups queued or running now have committed. std::mutex is not fair:
  // a reader that took it back at once could starve the store thread.
  void YieldToCommits();
  void RunGroup(std::vector<Job>& group);
  Status RunAlone(Job& job, Result<uint64_t>* out);
  Result<LoadedInstance> LoadLocked(const Uuid& uuid);
  // List()'s rows after uuid `*after`, at most kListChunk, appended to `out`;
  // moves `*after` to the last one read. Returns how many were read.
  Result<size_t> ListChunkLocked(Bytes* after, std::vector<InstanceMeta>* out);
  Result<uint64_t> ApplyCommit(const CommitRequest& req);
  Result<Stmt*> Query(const char* sql);  // cached prepared statement, reset
  Result<SecretBytes> DataKeyLocked(const Uuid& uuid);
  Result<SecretBytes> DataKey(const Uuid& uuid);
  Status Rollback();
  std::string VolatilePath(const Uuid& uuid) const;
  std::string RespondedPath(const Uuid& uuid) const;

  // List() and Backup() take db_mu_ for this much at a time (design §6b).
  static constexpr size_t kListChunk = 256;
  static constexpr int kBackupPagesPerStep = 128;

  SqliteStoreSettings settings_;
  DirLock lock_;
  SecretBytes master_;
  std::unique_ptr<HostTpm> tpm_;

  std::mutex db_mu_;  // guards db_ and stmts_
  Db db_;
  std::unordered_map<const char*, Stmt> stmts_;

  std::mutex keys_mu_;
  KeyCache data_keys_;  // under keys_mu_

  std::mutex q_mu_;
  std::condition_variable q_cv_;
  std::deque<Job> queue_;
  // MarkDelivered()'s marks not yet in a group: the newest sequence per uuid.
  std::map<Uuid, uint64_t> delivered_;
  bool stopping_ = false;
  uint64_t commits_ = 0, groups_ = 0;  // under q_mu_
  bool in_group_ = false;              // under q_mu_: a group taken from queue_ is running
  std::condition_variable group_done_cv_;
  std::thread thread_;
};

}  // namespace vtpm
