#include "store/store_schema.h"

#include <map>

#include "common/uuid.h"
#include "store/envelope.h"
#include "store/refusal.h"

namespace vtpm {
namespace {

constexpr char kKeyCheckText[] = "vtpmmgrd master key check";

Bytes Be64(int64_t v) {
  Bytes b;
  AppendBe64(b, uint64_t(v));
  return b;
}

Bytes PcrBytes(const std::vector<uint32_t>& pcrs) {
  Bytes b;
  for (uint32_t p : pcrs) b.push_back(uint8_t(p));
  return b;
}

Status Bad(const std::string& what) {
  return Refuse(Refusal::kBadManagerRecord,
                "the store's manager record " + what + "; restore the state directory from a backup");
}

}  // namespace

Status ApplyPragmas(Db& db) {
  // locking_mode first: with EXCLUSIVE set before WAL, SQLite keeps the WAL
  // index in heap memory and never creates a -shm file.
  for (const char* sql : {"PRAGMA locking_mode=EXCLUSIVE", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                          "PRAGMA secure_delete=ON", "PRAGMA foreign_keys=OFF", "PRAGMA cell_size_check=ON",
                          "PRAGMA cache_size=-16384"})  // 16 MiB: B-tree interiors of 10^4+ instances
    RETURN_IF_ERROR(db.Exec(sql));
  ASSIGN_OR_RETURN(Stmt q, db.Prepare("PRAGMA journal_mode"));
  ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row || q.Text(0) != "wal")
    return Status(Code::kIoError, "cannot put " + db.path() + " in WAL mode (journal_mode=" +
                                      (row ? q.Text(0) : std::string("?")) + ")");
  return Status::Ok();
}

Result<bool> IsEmptyDatabase(Db& db) {
  ASSIGN_OR_RETURN(Stmt q, db.Prepare("SELECT count(*) FROM sqlite_master"));
  ASSIGN_OR_RETURN(bool row, q.Step());
  return row && q.Int(0) == 0;
}

Status CreateSchema(Db& db, const ManagerRecord& rec) {
  RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
  Status st = [&]() -> Status {
    RETURN_IF_ERROR(db.Exec(
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);"
        "CREATE TABLE instances(uuid BLOB PRIMARY KEY, tpm_version TEXT NOT NULL, created INTEGER NOT NULL,"
        " last_attached INTEGER NOT NULL, last_written INTEGER NOT NULL, auto_created INTEGER NOT NULL,"
        " ek_public BLOB NOT NULL, data_key BLOB NOT NULL, generation INTEGER NOT NULL);"
        "CREATE TABLE blobs(uuid BLOB NOT NULL, kind INTEGER NOT NULL, sealed BLOB NOT NULL, UNIQUE(uuid, kind));"
        "CREATE TABLE records(uuid BLOB PRIMARY KEY, sequence INTEGER NOT NULL, delivered INTEGER NOT NULL,"
        " sealed BLOB NOT NULL);"));
    const ManagerKeys& k = rec.keys;
    std::map<std::string, Bytes> rows = {
        {"schema_version", Be64(rec.schema_version)},
        {"protection", Bytes(rec.protection.begin(), rec.protection.end())},
        {"key_check", rec.key_check},
        {"srk_name", k.srk_name},
        {"tpm_id", k.tpm_id},
        {"srk_handle", Be64(k.srk_handle)},
        {"pcrs", PcrBytes(k.pcrs)},
        {"key_public", k.key_public},
        {"key_private", k.key_private},
        {"bound_master", k.bound_master},
    };
    ASSIGN_OR_RETURN(Stmt ins, db.Prepare("INSERT INTO meta(key, value) VALUES(?, ?)"));
    for (const auto& [key, value] : rows) {
      ins.Reset();
      RETURN_IF_ERROR(ins.Bind(1, key).Bind(2, value).Run());
    }
    return db.Exec("COMMIT");
  }();
  if (!st.ok()) (void)db.Exec("ROLLBACK");
  return st;
}

Result<ManagerRecord> ReadManagerRecord(Db& db) {
  auto q = db.Prepare("SELECT key, value FROM meta");
  if (!q.ok()) return Bad("table is missing (" + q.status().message() + ")");
  std::map<std::string, Bytes> rows;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    rows[q->Text(0)] = q->Blob(1);
  }
  auto get = [&](const char* key) -> Result<Bytes> {
    auto it = rows.find(key);
    if (it == rows.end()) return Bad(std::string("has no '") + key + "'");
    return it->second;
  };
  auto get64 = [&](const char* key) -> Result<int64_t> {
    ASSIGN_OR_RETURN(Bytes b, get(key));
    if (b.size() != 8) return Bad(std::string("has a malformed '") + key + "'");
    return int64_t(LoadBe64(b.data()));
  };
  ManagerRecord rec;
  ASSIGN_OR_RETURN(rec.schema_version, get64("schema_version"));
  if (rec.schema_version > kSchemaVersion)
    return Refuse(Refusal::kNewerSchema, "the store has schema version " + std::to_string(rec.schema_version) +
                                             ", written by a newer vtpmmgrd; this one reads up to " +
                                             std::to_string(kSchemaVersion) + ": install that newer vtpmmgrd");
  if (rec.schema_version < 1) return Bad("has schema version " + std::to_string(rec.schema_version));
  ASSIGN_OR_RETURN(Bytes protection, get("protection"));
  rec.protection.assign(protection.begin(), protection.end());
  if (rec.protection != kProtectSk && rec.protection != kProtectPcr && rec.protection != kProtectExternal)
    return Bad("names an unknown key protection '" + rec.protection + "'");
  ASSIGN_OR_RETURN(rec.key_check, get("key_check"));
  ManagerKeys& k = rec.keys;
  ASSIGN_OR_RETURN(k.srk_name, get("srk_name"));
  ASSIGN_OR_RETURN(k.tpm_id, get("tpm_id"));
  ASSIGN_OR_RETURN(int64_t handle, get64("srk_handle"));
  k.srk_handle = uint32_t(handle);
  ASSIGN_OR_RETURN(Bytes pcrs, get("pcrs"));
  for (uint8_t p : pcrs) k.pcrs.push_back(p);
  ASSIGN_OR_RETURN(k.key_public, get("key_public"));
  ASSIGN_OR_RETURN(k.key_private, get("key_private"));
  ASSIGN_OR_RETURN(k.bound_master, get("bound_master"));
  return rec;
}

Result<Bytes> MakeKeyCheck(const SecretBytes& master) {
  return SealEnvelope(master, Uuid{}, SealedKind::kKeyCheck, 0,
                      ByteView(reinterpret_cast<const uint8_t*>(kKeyCheckText), sizeof kKeyCheckText));
}

Status VerifyKeyCheck(const SecretBytes& master, ByteView key_check) {
  auto plain = OpenEnvelope(master, Uuid{}, SealedKind::kKeyCheck, key_check);
  if (!plain.ok()) {
    if (RefusalOf(plain.status())) return plain.status();
    return Bad("key check does not open with the unbound master key (" + plain.status().message() + ")");
  }
  return Status::Ok();
}

}  // namespace vtpm
