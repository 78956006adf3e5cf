#include "store/sqlite_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <future>

#include "common/log.h"
#include "store/aead.h"
#include "store/envelope.h"
#include "store/record_codec.h"
#include "store/runtime_file.h"
#include "store/sqlite_store_internal.h"

namespace vtpm {
namespace {

using sqlite_store_internal::NoInstance;
using sqlite_store_internal::Now;
using sqlite_store_internal::U;

Status InstanceError(const Uuid& uuid, const Status& st) {
  std::string advice;
  if (st.code() == Code::kCorruption) advice = "; restore this instance from a backup or wipe it";
  return Status(st.code(), "instance " + uuid.ToString() + ": " + st.message() + advice, st.sub_code());
}

// Columns first..first+5: tpm_version, created, last_attached, last_written,
// auto_created, ek_public.
void ReadMetaColumns(const Stmt& q, int first, InstanceMeta* m) {
  m->tpm_version = q.Text(first);
  m->created = q.Int(first + 1);
  m->last_attached = q.Int(first + 2);
  m->last_written = q.Int(first + 3);
  m->auto_created = q.Int(first + 4) != 0;
  m->ek_public = q.Blob(first + 5);
}

uint64_t FileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? uint64_t(st.st_size) : 0;
}

}  // namespace

SqliteStore::SqliteStore(Db db, DirLock lock, SecretBytes master, std::unique_ptr<HostTpm> tpm,
                         SqliteStoreSettings s)
    : settings_(std::move(s)),
      lock_(std::move(lock)),
      master_(std::move(master)),
      tpm_(std::move(tpm)),
      db_(std::move(db)),
      data_keys_(settings_.max_cached_keys),
      thread_([this] { ThreadMain(); }) {}

SqliteStore::~SqliteStore() {
  {
    std::lock_guard<std::mutex> l(q_mu_);
    stopping_ = true;
  }
  q_cv_.notify_all();
  thread_.join();
  std::lock_guard<std::mutex> l(db_mu_);
  stmts_.clear();  // before the connection closes
}

Result<Stmt*> SqliteStore::Query(const char* sql) {
  auto it = stmts_.find(sql);
  if (it == stmts_.end()) {
    ASSIGN_OR_RETURN(Stmt s, db_.Prepare(sql));
    it = stmts_.emplace(sql, std::move(s)).first;
  }
  it->second.Reset();
  return &it->second;
}

Status SqliteStore::Rollback() {
  if (sqlite3_get_autocommit(db_.get())) return Status::Ok();  // SQLite already rolled back
  return db_.Exec("ROLLBACK");
}

Result<SecretBytes> SqliteStore::DataKeyLocked(const Uuid& uuid) {
  {
    std::lock_guard<std::mutex> l(keys_mu_);
    if (auto key = data_keys_.Get(uuid)) return std::move(*key);
  }
  ASSIGN_OR_RETURN(Stmt * q, Query("SELECT data_key FROM instances WHERE uuid=?"));
  q->Bind(1, U(uuid));
  ASSIGN_OR_RETURN(bool row, q->Step());
  if (!row) return NoInstance(uuid);
  Bytes wrapped = q->Blob(0);
  q->Reset();
  auto key = OpenEnvelopeSecret(master_, uuid, SealedKind::kDataKey, wrapped);
  if (!key.ok()) return InstanceError(uuid, key.status().Annotate("data key: "));
  SecretBytes out = key->Clone();
  std::lock_guard<std::mutex> l(keys_mu_);
  data_keys_.Put(uuid, std::move(key).value());
  return out;
}

Result<SecretBytes> SqliteStore::DataKey(const Uuid& uuid) {
  {
    std::lock_guard<std::mutex> l(keys_mu_);
    if (auto key = data_keys_.Get(uuid)) return std::move(*key);
  }
  std::lock_guard<std::mutex> l(db_mu_);
  return DataKeyLocked(uuid);
}

std::string SqliteStore::VolatilePath(const Uuid& uuid) const {
  return settings_.runtime_dir + "/" + uuid.ToString() + ".vol";
}

std::string SqliteStore::RespondedPath(const Uuid& uuid) const {
  return settings_.runtime_dir + "/" + uuid.ToString() + ".responded";
}

Result<SqliteStore::SealedInstance> SqliteStore::SealNew(const Uuid& uuid, const std::map<BlobKind, Bytes>& blobs,
                                                         const std::optional<SuspendCapture>& suspend) {
  if (!blobs.count(BlobKind::kPermanent))
    return Status(Code::kInvalidArgument, "instance " + uuid.ToString() + ": created without a permanent blob");
  if (suspend && !blobs.count(BlobKind::kVolatile))
    return Status(Code::kInvalidArgument, "instance " + uuid.ToString() + ": a suspend capture needs its volatile state");
  SealedInstance out;
  ASSIGN_OR_RETURN(out.key, SecretBytes::Random(kAeadKeyBytes));
  ASSIGN_OR_RETURN(out.wrapped, SealEnvelope(master_, uuid, SealedKind::kDataKey, 0, out.key.view()));
  for (const auto& [kind, plain] : blobs) {
    ASSIGN_OR_RETURN(Bytes sealed, SealEnvelope(out.key, uuid, SealedKind(kind), 1, plain));
    out.sealed.emplace_back(SealedKind(kind), std::move(sealed));
  }
  if (suspend) {
    ASSIGN_OR_RETURN(Bytes sealed, SealEnvelope(out.key, uuid, SealedKind::kSuspend, 1, EncodeSuspend(*suspend)));
    out.sealed.emplace_back(SealedKind::kSuspend, std::move(sealed));
  }
  return out;
}

// Inside a transaction: the instance row (generation 1) and its sealed blobs.
Status SqliteStore::InsertNewLocked(const InstanceMeta& meta, const SealedInstance& sealed) {
  const Uuid& uuid = meta.uuid;
  ASSIGN_OR_RETURN(Stmt * exists, Query("SELECT 1 FROM instances WHERE uuid=?"));
  ASSIGN_OR_RETURN(bool row, exists->Bind(1, U(uuid)).Step());
  exists->Reset();
  if (row) return Status(Code::kAlreadyExists, "instance " + uuid.ToString() + " already exists");
  const int64_t now = Now();
  ASSIGN_OR_RETURN(Stmt * ins, Query("INSERT INTO instances(uuid, tpm_version, created, last_attached,"
                                     " last_written, auto_created, ek_public, data_key, generation)"
                                     " VALUES(?, ?, ?, ?, ?, ?, ?, ?, 1)"));
  RETURN_IF_ERROR(ins->Bind(1, U(uuid)).Bind(2, meta.tpm_version).Bind(3, meta.created ? meta.created : now)
                      .Bind(4, meta.last_attached).Bind(5, now).Bind(6, int64_t(meta.auto_created))
                      .Bind(7, meta.ek_public).Bind(8, sealed.wrapped).Run());
  for (const auto& [kind, blob] : sealed.sealed) {
    ASSIGN_OR_RETURN(Stmt * b, Query("INSERT INTO blobs(uuid, kind, sealed) VALUES(?, ?, ?)"));
    RETURN_IF_ERROR(b->Bind(1, U(uuid)).Bind(2, int64_t(kind)).Bind(3, blob).Run());
  }
  return Status::Ok();
}

Result<uint64_t> SqliteStore::RunOnStoreThread(std::function<Result<uint64_t>()> apply) {
  std::promise<Result<uint64_t>> p;
  auto f = p.get_future();
  Enqueue(Job{std::move(apply), [&p](Result<uint64_t> r) { p.set_value(std::move(r)); }});
  return f.get();
}

// Runs `insert` as a job of the store thread (a group's transaction), then
// caches the new instance's data key.
Status SqliteStore::CommitNew(const Uuid& uuid, SealedInstance& sealed, const char* what,
                              const std::function<Status()>& insert) {
  Result<uint64_t> r = RunOnStoreThread([&insert]() -> Result<uint64_t> {
    RETURN_IF_ERROR(insert());
    return uint64_t(1);
  });
  if (!r.ok()) {
    if (r.status().code() == Code::kAlreadyExists) return r.status();
    return InstanceError(uuid, r.status().Annotate(what));
  }
  std::lock_guard<std::mutex> k(keys_mu_);
  data_keys_.Put(uuid, std::move(sealed.key));
  return Status::Ok();
}

Status SqliteStore::Create(const InstanceMeta& meta, const std::map<BlobKind, Bytes>& blobs) {
  ASSIGN_OR_RETURN(SealedInstance sealed, SealNew(meta.uuid, blobs, std::nullopt));
  // Through the store thread, so concurrent creates share a group's fsync.
  return CommitNew(meta.uuid, sealed, "creating: ", [&] { return InsertNewLocked(meta, sealed); });
}

Result<LoadedInstance> SqliteStore::Load(const Uuid& uuid) {
  std::lock_guard<std::mutex> l(db_mu_);
  Result<LoadedInstance> r = LoadLocked(uuid);
  for (auto& [sql, stmt] : stmts_) stmt.Reset();  // no read left open after an early return
  return r;
}

Result<LoadedInstance> SqliteStore::LoadLocked(const Uuid& uuid) {
  LoadedInstance out;
  InstanceMeta& m = out.meta;
  m.uuid = uuid;
  {
    ASSIGN_OR_RETURN(Stmt * q, Query("SELECT tpm_version, created, last_attached, last_written, auto_created,"
                                     " ek_public, generation, length(data_key) FROM instances WHERE uuid=?"));
    ASSIGN_OR_RETURN(bool row, q->Bind(1, U(uuid)).Step());
    if (!row) return NoInstance(uuid);
    ReadMetaColumns(*q, 0, &m);
    out.generation = uint64_t(q->Int(6));
    m.size_bytes = uint64_t(q->Int(7));
    q->Reset();
  }
  ASSIGN_OR_RETURN(SecretBytes key, DataKeyLocked(uuid));
  ASSIGN_OR_RETURN(Stmt * b, Query("SELECT kind, sealed FROM blobs WHERE uuid=?"));
  b->Bind(1, U(uuid));
  for (;;) {
    ASSIGN_OR_RETURN(bool row, b->Step());
    if (!row) break;
    const auto kind = SealedKind(b->Int(0));
    Bytes sealed = b->Blob(1);
    m.size_bytes += sealed.size();
    uint64_t gen = 0;
    auto plain = OpenEnvelope(key, uuid, kind, sealed, &gen);
    if (!plain.ok()) return InstanceError(uuid, plain.status());
    if (gen > out.generation)
      return InstanceError(uuid, Status(Code::kCorruption, std::string(SealedKindName(kind)) +
                                                               " is from generation " + std::to_string(gen) +
                                                               ", newer than the instance's " +
                                                               std::to_string(out.generation)));
    switch (kind) {
      case SealedKind::kPermanent: out.permanent = std::move(plain).value(); break;
      case SealedKind::kSavestate: out.savestate = std::move(plain).value(); break;
      case SealedKind::kVolatile:  // only the copy written with the newest state goes with it
        if (gen == out.generation) out.volatile_copy = std::move(plain).value();
        break;
      case SealedKind::kSuspend: {
        auto capture = DecodeSuspend(*plain);
        if (!capture.ok()) return InstanceError(uuid, capture.status());
        if (gen == out.generation) out.suspend = *capture;  // commits drop it; an older one is inert
        break;
      }
      default:
        return InstanceError(uuid, Status(Code::kCorruption, "has a blob of unknown kind " +
                                                                 std::to_string(int(kind))));
    }
  }
  b->Reset();
  if (out.permanent.empty())
    return InstanceError(uuid, Status(Code::kCorruption, "has no permanent blob"));
  ASSIGN_OR_RETURN(Stmt * r, Query("SELECT sequence, delivered, sealed FROM records WHERE uuid=?"));
  ASSIGN_OR_RETURN(bool row, r->Bind(1, U(uuid)).Step());
  if (row) {
    Bytes sealed = r->Blob(2);
    m.size_bytes += sealed.size();
    auto plain = OpenEnvelope(key, uuid, SealedKind::kRecord, sealed);
    if (!plain.ok()) return InstanceError(uuid, plain.status());
    auto rec = DecodeRecord(*plain);
    if (!rec.ok()) return InstanceError(uuid, rec.status());
    if (rec->sequence != uint64_t(r->Int(0)))
      return InstanceError(uuid, Status(Code::kCorruption, "command record's sequence differs from its row"));
    rec->delivered = r->Int(1) != 0;
    out.last_record = std::move(rec).value();
  }
  r->Reset();
  return out;
}

Result<uint64_t> SqliteStore::ApplyCommit(const CommitRequest& req) {
  const Uuid& uuid = req.uuid;
  ASSIGN_OR_RETURN(Stmt * g, Query("SELECT generation FROM instances WHERE uuid=?"));
  ASSIGN_OR_RETURN(bool row, g->Bind(1, U(uuid)).Step());
  if (!row) return NoInstance(uuid);
  const uint64_t current = uint64_t(g->Int(0));
  g->Reset();
  if (current != req.expected_generation)
    return Status(Code::kFailedPrecondition, "instance " + uuid.ToString() + ": commit expected generation " +
                                                 std::to_string(req.expected_generation) + ", the store holds " +
                                                 std::to_string(current));
  const uint64_t next = current + 1;
  ASSIGN_OR_RETURN(SecretBytes key, DataKeyLocked(uuid));
  // Upserts update rows in place (same rowid, same leaf page): a commit
  // touches a fixed handful of pages whatever the number of instances.
  auto put = [&](SealedKind kind, ByteView plain) -> Status {
    ASSIGN_OR_RETURN(Bytes sealed, SealEnvelope(key, uuid, kind, next, plain));
    ASSIGN_OR_RETURN(Stmt * s, Query("INSERT INTO blobs(uuid, kind, sealed) VALUES(?, ?, ?)"
                                     " ON CONFLICT(uuid, kind) DO UPDATE SET sealed = excluded.sealed"));
    return s->Bind(1, U(uuid)).Bind(2, int64_t(kind)).Bind(3, sealed).Run();
  };
  for (const auto& [kind, plain] : req.write) RETURN_IF_ERROR(put(SealedKind(kind), plain));
  if (req.volatile_copy) RETURN_IF_ERROR(put(SealedKind::kVolatile, *req.volatile_copy));
  if (req.suspend) {
    if (!req.volatile_copy)
      return Status(Code::kInvalidArgument, "instance " + uuid.ToString() + ": a suspend capture needs its volatile state");
    RETURN_IF_ERROR(put(SealedKind::kSuspend, EncodeSuspend(*req.suspend)));
  } else {
    ASSIGN_OR_RETURN(Stmt * d, Query("DELETE FROM blobs WHERE uuid=? AND kind=?"));
    RETURN_IF_ERROR(d->Bind(1, U(uuid)).Bind(2, int64_t(SealedKind::kSuspend)).Run());
  }
  for (BlobKind kind : req.remove) {
    if (kind == BlobKind::kPermanent)
      return Status(Code::kInvalidArgument, "instance " + uuid.ToString() + ": a commit cannot remove the permanent blob");
    ASSIGN_OR_RETURN(Stmt * d, Query("DELETE FROM blobs WHERE uuid=? AND kind=?"));
    RETURN_IF_ERROR(d->Bind(1, U(uuid)).Bind(2, int64_t(kind)).Run());
  }
  if (req.record) {
    ASSIGN_OR_RETURN(Bytes sealed, SealEnvelope(key, uuid, SealedKind::kRecord, next, EncodeRecord(*req.record)));
    ASSIGN_OR_RETURN(Stmt * s, Query("INSERT INTO records(uuid, sequence, delivered, sealed) VALUES(?, ?, ?, ?)"
                                     " ON CONFLICT(uuid) DO UPDATE SET sequence = excluded.sequence,"
                                     " delivered = excluded.delivered, sealed = excluded.sealed"));
    RETURN_IF_ERROR(s->Bind(1, U(uuid)).Bind(2, int64_t(req.record->sequence))
                        .Bind(3, int64_t(req.record->delivered)).Bind(4, sealed).Run());
  }
  ASSIGN_OR_RETURN(Stmt * u, Query("UPDATE instances SET generation=?, last_written=? WHERE uuid=?"));
  RETURN_IF_ERROR(u->Bind(1, int64_t(next)).Bind(2, Now()).Bind(3, U(uuid)).Run());
  return next;
}

// Inside a transaction: the instance row (its sealed data key), blobs and record.
Status SqliteStore::DeleteInstanceLocked(const Uuid& uuid) {
  ASSIGN_OR_RETURN(Stmt * d, Query("DELETE FROM instances WHERE uuid=?"));
  RETURN_IF_ERROR(d->Bind(1, U(uuid)).Run());
  if (db_.Changes() == 0) return NoInstance(uuid);
  ASSIGN_OR_RETURN(Stmt * b, Query("DELETE FROM blobs WHERE uuid=?"));
  RETURN_IF_ERROR(b->Bind(1, U(uuid)).Run());
  ASSIGN_OR_RETURN(Stmt * r, Query("DELETE FROM records WHERE uuid=?"));
  return r->Bind(1, U(uuid)).Run();
}

// Runs `body` in one transaction under db_mu_, then forgets the data key,
// truncates the WAL (old page images of the instance stay there until a
// TRUNCATE checkpoint) and removes the runtime files.
Status SqliteStore::Shred(const Uuid& uuid, const std::function<Status()>& body) {
  {
    std::lock_guard<std::mutex> l(db_mu_);
    RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
    Status st = body();
    if (st.ok()) st = db_.Exec("COMMIT");
    if (!st.ok()) {
      (void)Rollback();
      return st;
    }
    {
      std::lock_guard<std::mutex> k(keys_mu_);
      data_keys_.Erase(uuid);
    }
    RETURN_IF_ERROR(db_.Exec("PRAGMA wal_checkpoint(TRUNCATE)"));
  }
  return DropRuntimeCopies(uuid);
}

Status SqliteStore::Wipe(const Uuid& uuid) {
  return Shred(uuid, [&] { return DeleteInstanceLocked(uuid); });
}


Status SqliteStore::DropRuntimeCopies(const Uuid& uuid) {
  for (const std::string& vol : {VolatilePath(uuid), VolatilePath(uuid) + ".tmp", RespondedPath(uuid),
                                 RespondedPath(uuid) + ".tmp"})
    if (::unlink(vol.c_str()) != 0 && errno != ENOENT) return Status::FromErrno(errno, "removing " + vol);
  return Status::Ok();
}

static_assert(int(SealedKind::kSuspend) == 20, "List() names the suspend capture's kind");

// Reads kListChunk rows per hold of db_mu_, resuming after the last uuid
// read, and lets the commits waiting meanwhile run between two chunks, so
// that the store thread's commits (every guest's state change) wait for one
// chunk, not for the whole table (design §6b). Each row is
// consistent; the list is not one snapshot of the table.
Result<std::vector<InstanceMeta>> SqliteStore::List() {
  std::vector<InstanceMeta> out;
  Bytes after;  // x'' sorts before every uuid
  for (;;) {
    Result<size_t> rows = Status(Code::kInternal, "not read");
    {
      std::lock_guard<std::mutex> l(db_mu_);
      rows = ListChunkLocked(&after, &out);
    }
    if (!rows.ok()) return rows.status();
    if (*rows < kListChunk) return out;
    YieldToCommits();
  }
}

Result<size_t> SqliteStore::ListChunkLocked(Bytes* after, std::vector<InstanceMeta>* out) {
  ASSIGN_OR_RETURN(Stmt * q, Query(
      "SELECT i.uuid, i.tpm_version, i.created, i.last_attached, i.last_written, i.auto_created, i.ek_public,"
      " length(i.data_key)"
      " + (SELECT coalesce(sum(length(b.sealed)), 0) FROM blobs b WHERE b.uuid = i.uuid)"
      " + (SELECT coalesce(sum(length(r.sealed)), 0) FROM records r WHERE r.uuid = i.uuid),"
      " EXISTS(SELECT 1 FROM blobs s WHERE s.uuid = i.uuid AND s.kind = 20)"  // SealedKind::kSuspend
      " FROM instances i WHERE i.uuid > ? ORDER BY i.uuid LIMIT ?"));
  q->Bind(1, *after).Bind(2, int64_t(kListChunk));
  size_t rows = 0;
  for (;; ++rows) {
    Result<bool> row = q->Step();
    if (!row.ok()) {
      q->Reset();
      return row.status();
    }
    if (!*row) break;
    InstanceMeta m;
    Bytes u = q->Blob(0);
    if (u.size() != m.uuid.bytes.size()) {
      q->Reset();
      return Status(Code::kCorruption, "instances table holds a malformed uuid");
    }
    std::copy(u.begin(), u.end(), m.uuid.bytes.begin());
    ReadMetaColumns(*q, 1, &m);
    m.size_bytes = uint64_t(q->Int(7));
    m.suspended = q->Int(8) != 0;
    *after = std::move(u);
    out->push_back(std::move(m));
  }
  q->Reset();
  return rows;
}

// Copies kBackupPagesPerStep pages per hold of db_mu_, for the reason List()
// reads in chunks. Commits made between steps go through this same
// connection, and SQLite applies them to the copy as well, so the backup is
// the database as it stands when the last step ends.
Status SqliteStore::Backup(const std::string& path) {
  if (::access(path.c_str(), F_OK) == 0)
    return Status(Code::kAlreadyExists, "backup target " + path + " already exists");
  ASSIGN_OR_RETURN(Db dest, Db::Open(path, ""));
  sqlite3_backup* b = nullptr;
  {
    std::lock_guard<std::mutex> l(db_mu_);
    b = sqlite3_backup_init(dest.get(), "main", db_.get(), "main");
  }
  if (!b) return SqliteStatus(sqlite3_extended_errcode(dest.get()), "starting backup to " + path, dest.get());
  int rc = SQLITE_OK;
  while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
    {
      std::lock_guard<std::mutex> l(db_mu_);
      rc = sqlite3_backup_step(b, kBackupPagesPerStep);
    }
    if (rc != SQLITE_DONE) YieldToCommits();
  }
  {
    std::lock_guard<std::mutex> l(db_mu_);
    sqlite3_backup_finish(b);
  }
  if (rc != SQLITE_DONE) return SqliteStatus(rc, "backup to " + path);
  return Status::Ok();
}

Status SqliteStore::SaveVolatile(const Uuid& uuid, const VolatileCopy& copy) {
  ASSIGN_OR_RETURN(SecretBytes key, DataKey(uuid));
  ASSIGN_OR_RETURN(Bytes sealed,
                   SealEnvelope(key, uuid, SealedKind::kVolatileFile, copy.generation, EncodeVolatile(copy)));
  return ReplaceFile(VolatilePath(uuid), sealed);
}

Result<std::optional<VolatileCopy>> SqliteStore::LoadVolatile(const Uuid& uuid) {
  const std::string path = VolatilePath(uuid);
  ASSIGN_OR_RETURN(std::optional<Bytes> file, ReadFileIfPresent(path));
  if (!file) return std::optional<VolatileCopy>();
  const Bytes& data = *file;
  ASSIGN_OR_RETURN(SecretBytes key, DataKey(uuid));
  uint64_t gen = 0;
  auto plain = OpenEnvelope(key, uuid, SealedKind::kVolatileFile, data, &gen);
  if (!plain.ok()) return InstanceError(uuid, plain.status().Annotate(path + ": "));
  auto copy = DecodeVolatile(*plain, gen);
  if (!copy.ok()) return InstanceError(uuid, copy.status().Annotate(path + ": "));
  return std::optional<VolatileCopy>(std::move(copy).value());
}

Status SqliteStore::SaveResponded(const Uuid& uuid, const RespondedMark& mark) {
  return OverwriteRecord(RespondedPath(uuid), EncodeResponded(mark));
}

Result<UniqueFd> SqliteStore::OpenRespondedForWorker(const Uuid& uuid, const RespondedMark& mark) {
  const std::string path = RespondedPath(uuid);
  RETURN_IF_ERROR(OverwriteRecord(path, EncodeResponded(mark)));
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return Status::FromErrno(errno, "opening " + path);
  return fd;
}

Result<std::optional<RespondedMark>> SqliteStore::LoadResponded(const Uuid& uuid) {
  const std::string path = RespondedPath(uuid);
  ASSIGN_OR_RETURN(std::optional<Bytes> file, ReadFileIfPresent(path));
  if (!file) return std::optional<RespondedMark>();
  auto mark = DecodeResponded(*file);
  if (!mark.ok()) return InstanceError(uuid, mark.status().Annotate(path + ": "));
  return std::optional<RespondedMark>(*mark);
}

Result<StoreStatus> SqliteStore::GetStatus() {
  StoreStatus s;
  s.db_path = db_.path();
  s.runtime_dir = settings_.runtime_dir;
  s.key_protection = settings_.key_protection;
  s.db_bytes = FileSize(s.db_path) + FileSize(s.db_path + "-wal");
  if (tpm_) {
    s.host_tpm_transport = tpm_->config().tcti;
    std::vector<uint32_t> pcrs = settings_.pcrs;
    if (pcrs.empty()) pcrs = {0, 1, 2, 3, 4, 5, 6, 7};
    auto values = tpm_->ReadPcrs(pcrs);
    if (values.ok()) s.pcr_values = std::move(values).value();
    else LOG_WARN("status: {}", values.status().message());
  } else {
    s.host_tpm_transport = "none (master key given by the caller)";
  }
  {
    std::lock_guard<std::mutex> l(db_mu_);
    ASSIGN_OR_RETURN(Stmt * q, Query("SELECT count(*) FROM instances"));
    ASSIGN_OR_RETURN(bool row, q->Step());
    s.instances = row ? uint64_t(q->Int(0)) : 0;
    q->Reset();
  }
  std::lock_guard<std::mutex> l(q_mu_);
  s.commits = commits_;
  s.commit_groups = groups_;
  return s;
}

}  // namespace vtpm
