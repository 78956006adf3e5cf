#include "store/sqlite_db.h"

#include <cerrno>

namespace vtpm {

Status SqliteStatus(int rc, const std::string& what, sqlite3* db) {
  std::string msg = what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return Status(Code::kIoError, what + ": no space left on the state directory's filesystem", ENOSPC);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status(Code::kBusy, msg, rc);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status(Code::kCorruption, msg, rc);
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
      return Status(Code::kIoError, msg, rc);
    default:
      return Status(Code::kInternal, msg, rc);
  }
}

Stmt& Stmt::Bind(int i, ByteView v) {
  // A zero-length blob must still be a blob, not NULL.
  static const uint8_t kEmpty = 0;
  sqlite3_bind_blob64(s_, i, v.empty() ? &kEmpty : v.data(), v.size(), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::Bind(int i, int64_t v) {
  sqlite3_bind_int64(s_, i, v);
  return *this;
}
Stmt& Stmt::Bind(int i, const std::string& v) {
  sqlite3_bind_text(s_, i, v.data(), int(v.size()), SQLITE_TRANSIENT);
  return *this;
}

Result<bool> Stmt::Step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3* db = sqlite3_db_handle(s_);
  return SqliteStatus(sqlite3_extended_errcode(db), "SQLite step", db);
}

Status Stmt::Run() {
  Result<bool> r = Step();
  while (r.ok() && *r) r = Step();
  Status st = r.ok() ? Status::Ok() : r.status();
  sqlite3_reset(s_);
  return st;
}

Bytes Stmt::Blob(int col) const {
  auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s_, col));
  int n = sqlite3_column_bytes(s_, col);
  return p ? Bytes(p, p + n) : Bytes{};
}

std::string Stmt::Text(int col) const {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
  return p ? std::string(p, size_t(sqlite3_column_bytes(s_, col))) : std::string();
}

Result<Db> Db::Open(const std::string& path, const std::string& vfs) {
  Db db;
  db.path_ = path;
  int rc = sqlite3_open_v2(path.c_str(), &db.db_,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
                           vfs.empty() ? nullptr : vfs.c_str());
  if (rc != SQLITE_OK) return SqliteStatus(rc, "opening " + path, db.db_);
  sqlite3_extended_result_codes(db.db_, 1);
  return db;
}

Result<Stmt> Db::Prepare(const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.c_str(), int(sql.size()), SQLITE_PREPARE_PERSISTENT, &s, nullptr);
  if (rc != SQLITE_OK) return SqliteStatus(rc, "preparing '" + sql + "'", db_);
  return Stmt(s);
}

Status Db::Exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::Ok();
  Status st = SqliteStatus(sqlite3_extended_errcode(db_), "'" + sql + "'", db_);
  sqlite3_free(err);
  return st;
}

}  // namespace vtpm
