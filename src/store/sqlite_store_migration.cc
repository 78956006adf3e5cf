// SqliteStore's part in moving instances between hosts (design §6d): the
// host migration keys, imports, and the tombstones of instances moved away,
// all kept in the `meta` table.
#include <ctime>
#include <string>
#include <vector>

#include "store/envelope.h"
#include "store/sqlite_store.h"
#include "store/sqlite_store_internal.h"

namespace vtpm {

using sqlite_store_internal::NoInstance;
using sqlite_store_internal::Now;
using sqlite_store_internal::U;

namespace {

std::string MovedKey(const Uuid& uuid) { return "moved:" + uuid.ToString(); }
std::string ImportedKey(const std::string& export_id) { return "imported:" + export_id; }

// meta values of tombstones and import records: fields joined by '\n'
// (peer names, times and hex ids hold none).
Bytes JoinFields(const std::vector<std::string>& fields) {
  std::string text;
  for (const std::string& f : fields) text += (text.empty() ? "" : "\n") + f;
  return Bytes(text.begin(), text.end());
}

std::vector<std::string> SplitFields(const Bytes& value) {
  std::vector<std::string> out(1);
  for (uint8_t c : value) {
    if (c == '\n') out.emplace_back();
    else out.back().push_back(char(c));
  }
  return out;
}

}  // namespace

std::string UtcTime(int64_t t) {
  time_t tt = time_t(t);
  struct tm tm {};
  gmtime_r(&tt, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

Result<std::optional<MovedInstance>> FindMoved(Store& store, const Uuid& uuid) {
  ASSIGN_OR_RETURN(std::vector<MovedInstance> moved, store.ListMoved());
  for (const MovedInstance& m : moved)
    if (m.uuid == uuid) return std::optional<MovedInstance>(m);
  return std::optional<MovedInstance>();
}

std::string MovedRefusal(const MovedInstance& m) {
  return "instance " + m.uuid.ToString() + " moved to host " + m.peer + " at " + UtcTime(m.moved_at) +
         " (vtpmctl export)";
}

// Inside a transaction: the meta value under `key`, if any.
Result<std::optional<Bytes>> SqliteStore::MetaLocked(const std::string& key) {
  ASSIGN_OR_RETURN(Stmt * q, Query("SELECT value FROM meta WHERE key=?"));
  ASSIGN_OR_RETURN(bool row, q->Bind(1, key).Step());
  std::optional<Bytes> out;
  if (row) out = q->Blob(0);
  q->Reset();
  return out;
}

Status SqliteStore::PutMetaLocked(const std::string& key, const Bytes& value) {
  ASSIGN_OR_RETURN(Stmt * s, Query("INSERT INTO meta(key, value) VALUES(?, ?)"
                                   " ON CONFLICT(key) DO UPDATE SET value = excluded.value"));
  return s->Bind(1, key).Bind(2, value).Run();
}

Result<SecretBytes> SqliteStore::HostKeys(const std::function<Result<SecretBytes>()>& make) {
  std::lock_guard<std::mutex> l(db_mu_);
  ASSIGN_OR_RETURN(std::optional<Bytes> stored, MetaLocked("host_keys"));
  if (stored) {
    auto secret = OpenEnvelopeSecret(master_, Uuid{}, SealedKind::kHostKeys, *stored);
    if (!secret.ok()) return secret.status().Annotate("host migration keys: ");
    return secret;
  }
  ASSIGN_OR_RETURN(SecretBytes secret, make());
  ASSIGN_OR_RETURN(Bytes sealed, SealEnvelope(master_, Uuid{}, SealedKind::kHostKeys, 0, secret.view()));
  RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
  Status st = PutMetaLocked("host_keys", sealed);
  if (st.ok()) st = db_.Exec("COMMIT");
  if (!st.ok()) {
    (void)Rollback();
    return st.Annotate("storing the host migration keys: ");
  }
  return secret;
}

Status SqliteStore::Import(const ImportRequest& req) {
  const Uuid& uuid = req.meta.uuid;
  ASSIGN_OR_RETURN(SealedInstance sealed, SealNew(uuid, req.blobs, req.suspend));
  return CommitNew(uuid, sealed, "importing: ", [&]() -> Status {
    // Not ASSIGN_OR_RETURN into an optional: GCC 12 at -O2 then warns
    // maybe-uninitialized on the moved-from Bytes (a false positive).
    Result<std::optional<Bytes>> before = MetaLocked(ImportedKey(req.export_id));
    if (!before.ok()) return before.status();
    if (*before) {
      auto f = SplitFields(**before);
      return Status(Code::kAlreadyExists, "export " + req.export_id + " from " + f[0] + " was already imported at " +
                                              (f.size() > 1 ? UtcTime(std::atoll(f[1].c_str())) : "?"));
    }
    ASSIGN_OR_RETURN(Stmt * d, Query("DELETE FROM meta WHERE key=?"));  // moving back: the tombstone goes
    RETURN_IF_ERROR(d->Bind(1, MovedKey(uuid)).Run());
    RETURN_IF_ERROR(InsertNewLocked(req.meta, sealed));
    return PutMetaLocked(ImportedKey(req.export_id), JoinFields({req.peer, std::to_string(Now())}));
  });
}

// Tombstone and deletion in one transaction: a crash leaves either the
// instance or its tombstone, never neither (a silent re-create) nor both.
Status SqliteStore::MarkMoved(const MovedInstance& moved, uint64_t expected_generation) {
  const Uuid& uuid = moved.uuid;
  return Shred(uuid, [&]() -> Status {
    ASSIGN_OR_RETURN(Stmt * g, Query("SELECT generation FROM instances WHERE uuid=?"));
    ASSIGN_OR_RETURN(bool row, g->Bind(1, U(uuid)).Step());
    const uint64_t current = row ? uint64_t(g->Int(0)) : 0;
    g->Reset();
    if (!row) return NoInstance(uuid);
    if (current != expected_generation)
      return Status(Code::kFailedPrecondition, "instance " + uuid.ToString() + " changed while it was exported");
    RETURN_IF_ERROR(PutMetaLocked(MovedKey(uuid), JoinFields({moved.peer, std::to_string(moved.moved_at),
                                                              moved.export_id})));
    return DeleteInstanceLocked(uuid);
  });
}

Result<std::vector<MovedInstance>> SqliteStore::ListMoved() {
  std::lock_guard<std::mutex> l(db_mu_);
  ASSIGN_OR_RETURN(Stmt * q, Query("SELECT key, value FROM meta WHERE key LIKE 'moved:%' ORDER BY key"));
  std::vector<MovedInstance> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    const std::string key = q->Text(0);
    auto uuid = Uuid::Parse(key.substr(6));
    auto f = SplitFields(q->Blob(1));
    if (!uuid.ok() || f.size() != 3) {
      q->Reset();
      return Status(Code::kCorruption, "meta table holds a malformed tombstone '" + key + "'");
    }
    out.push_back(MovedInstance{*uuid, f[0], std::atoll(f[1].c_str()), f[2]});
  }
  q->Reset();
  return out;
}

}  // namespace vtpm
