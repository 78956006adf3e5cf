// Thin RAII owners of a SQLite connection and prepared statement, with
// SQLite result codes mapped to Status (SQLITE_FULL -> kIoError/ENOSPC,
// SQLITE_BUSY -> kBusy, SQLITE_CORRUPT/NOTADB -> kCorruption).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "common/bytes.h"
#include "common/status.h"

namespace vtpm {

Status SqliteStatus(int rc, const std::string& what, sqlite3* db = nullptr);

class Stmt {
 public:
  Stmt() = default;
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(Stmt&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stmt& operator=(Stmt&& o) noexcept {
    if (this != &o) { sqlite3_finalize(s_); s_ = std::exchange(o.s_, nullptr); }
    return *this;
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Binds are 1-based, like sqlite3_bind_*; blobs are copied (SQLITE_TRANSIENT).
  Stmt& Bind(int i, ByteView v);
  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, const std::string& v);
  // SQLITE_ROW -> true, SQLITE_DONE -> false, anything else -> error.
  Result<bool> Step();
  // Steps to completion of a statement returning no rows.
  Status Run();
  void Reset() { sqlite3_reset(s_); sqlite3_clear_bindings(s_); }

  int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
  Bytes Blob(int col) const;
  std::string Text(int col) const;
  sqlite3_stmt* get() const { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
};

class Db {
 public:
  Db() = default;
  ~Db() { sqlite3_close_v2(db_); }
  Db(Db&& o) noexcept : db_(std::exchange(o.db_, nullptr)), path_(std::move(o.path_)) {}
  Db& operator=(Db&&) = delete;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Opens (creating if absent) `path` through VFS `vfs` (empty = default).
  static Result<Db> Open(const std::string& path, const std::string& vfs);
  Result<Stmt> Prepare(const std::string& sql);
  Status Exec(const std::string& sql);
  int64_t Changes() const { return sqlite3_changes64(db_); }
  sqlite3* get() const { return db_; }
  const std::string& path() const { return path_; }

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

}  // namespace vtpm
