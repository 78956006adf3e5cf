#include "store/restore_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/unique_fd.h"
#include "store/dir_lock.h"
#include "store/sqlite_store.h"
#include "store/store_schema.h"

namespace vtpm {
namespace {

constexpr char kSqliteMagic[] = "SQLite format 3";  // with its NUL: the first 16 bytes of every database

// The directory of the copy under validation, <state_dir>/restore.tmp: its
// files and itself are removed unless released.
class TempDir {
 public:
  explicit TempDir(std::string dir) : dir_(std::move(dir)) { Remove(); }
  ~TempDir() {
    if (!dir_.empty()) Remove();
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  Status Make() {
    if (::mkdir(dir_.c_str(), 0700) != 0) return Status::FromErrno(errno, "creating " + dir_);
    return Status::Ok();
  }
  std::string db() const { return dir_ + "/" + kStoreDbName; }
  const std::string& dir() const { return dir_; }

 private:
  void Remove() {
    DIR* d = ::opendir(dir_.c_str());
    if (!d) return;
    for (dirent* e; (e = ::readdir(d));)
      if (e->d_name[0] != '.') ::unlinkat(::dirfd(d), e->d_name, 0);
    ::closedir(d);
    ::rmdir(dir_.c_str());
  }
  std::string dir_;
};

int64_t SizeOf(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? int64_t(st.st_size) : -1;
}

Status FsyncPath(const std::string& path, int flags) {
  UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0) return Status::FromErrno(errno, "syncing " + path);
  return Status::Ok();
}

uint32_t Be(const unsigned char* p, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

// FILE copied to `to`, after the checks that need only its bytes: an SQLite
// header and the length that header states.
Status CopyBackup(const std::string& from, const std::string& to) {
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return Status::FromErrno(errno, "opening the backup " + from);
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) return Status::FromErrno(errno, "reading " + from);
  if (!S_ISREG(st.st_mode)) return Status(Code::kInvalidArgument, from + " is not a regular file");
  unsigned char hdr[100] = {};
  if (st.st_size < int64_t(sizeof hdr) || ::pread(in.get(), hdr, sizeof hdr, 0) != ssize_t(sizeof hdr) ||
      std::memcmp(hdr, kSqliteMagic, sizeof kSqliteMagic) != 0)
    return Status(Code::kInvalidArgument,
                  from + " is not a vtpmmgrd backup: it does not start with an SQLite database header");
  // The header's page size (1 means 65536) and database size in pages.
  const int64_t page = Be(hdr + 16, 2) == 1 ? 65536 : Be(hdr + 16, 2);
  const int64_t pages = Be(hdr + 28, 4);
  if (pages > 0 && st.st_size < page * pages)
    return Status(Code::kInvalidArgument, from + " is truncated: " + std::to_string(st.st_size) +
                                              " bytes, its header says " + std::to_string(page * pages));
  UniqueFd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!out) return Status::FromErrno(errno, "creating " + to);
  for (ssize_t n; (n = ::sendfile(out.get(), in.get(), nullptr, 1 << 20)) != 0;)
    if (n < 0 && errno != EINTR) return Status::FromErrno(errno, "copying " + from + " to " + to);
  if (::fsync(out.get()) != 0) return Status::FromErrno(errno, "syncing " + to);
  return Status::Ok();
}

// The copy is a vtpmmgrd store whose master key this host's TPM recovers.
Result<SecretBytes> CheckManager(const StoreOptions& o, const std::string& path, const std::string& from) {
  ASSIGN_OR_RETURN(Db db, Db::Open(path, ""));
  {
    auto corrupt = [&](const std::string& why) {
      return Status(Code::kCorruption, from + " is damaged (" + why + "); use another backup");
    };
    auto check = db.Prepare("PRAGMA integrity_check");
    if (!check.ok()) return corrupt(check.status().message());
    // "ok", or up to kMaxReported lines naming what is wrong.
    constexpr int kMaxReported = 3;
    std::string report;
    for (int n = 0; n < kMaxReported; ++n) {
      auto row = check->Step();
      if (!row.ok()) return corrupt(row.status().message());
      if (!*row) break;
      report += (report.empty() ? "" : "; ") + check->Text(0);
    }
    if (report != "ok") return corrupt(report.empty() ? "no integrity report" : report);
  }
  ASSIGN_OR_RETURN(bool empty, IsEmptyDatabase(db));
  if (empty) return Status(Code::kInvalidArgument, from + " holds no vtpmmgrd tables: it is not a vtpmmgrd backup");
  auto rec = ReadManagerRecord(db);
  if (!rec.ok())
    return Status(rec.status().code(), from + ": " + rec.status().message(), rec.status().sub_code());
  if (rec->protection == kProtectExternal)
    return Status(Code::kInvalidArgument, from + " is a test store without a host TPM key; it cannot be restored");
  ASSIGN_OR_RETURN(std::unique_ptr<HostTpm> tpm, HostTpm::Open(o.host_tpm));
  auto master = tpm->Recover(rec->keys);
  if (!master.ok())
    return Status(master.status().code(),
                  "this host's TPM does not give up the master key of " + from + " (" + master.status().message() +
                      "); a backup is restored only on the host, with the TPM, that wrote it",
                  master.status().sub_code());
  RETURN_IF_ERROR(VerifyKeyCheck(*master, rec->key_check));
  return std::move(master).value();
}

// Every instance of the copy loads: each item authenticates under its data key.
// Then the copy's suspend captures are dropped: restored instances power on
// fresh (design §6c), and a save image restored later must not resume a
// capture its first restore already used.
Result<int64_t> CheckInstances(const TempDir& temp, SecretBytes master, const std::string& from) {
  ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(temp.dir()));
  ASSIGN_OR_RETURN(Db db, Db::Open(temp.db(), ""));
  RETURN_IF_ERROR(ApplyPragmas(db));
  SqliteStoreSettings settings;
  settings.runtime_dir = temp.dir();
  SqliteStore store(std::move(db), std::move(lock), std::move(master), nullptr, std::move(settings));
  ASSIGN_OR_RETURN(std::vector<InstanceMeta> metas, store.List());
  for (const InstanceMeta& m : metas)
    if (auto loaded = store.Load(m.uuid); !loaded.ok()) {
      std::string why = loaded.status().message();
      why = why.substr(0, why.find("; restore this instance"));  // the store's advice is not for a backup
      return Status(Code::kCorruption, from + " is damaged: " + why + "; use another backup");
    }
  for (const InstanceMeta& m : metas)
    if (m.suspended) {
      auto loaded = store.Load(m.uuid);
      if (!loaded.ok()) return loaded.status();
      CommitRequest drop;
      drop.uuid = m.uuid;
      drop.expected_generation = loaded->generation;
      RETURN_IF_ERROR(store.CommitSync(std::move(drop)).status());
    }
  return int64_t(metas.size());
}

std::string UtcStamp() {
  time_t now = std::time(nullptr);
  struct tm tm {};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

// The runtime files of the replaced state (design §6 "Volatile state").
void RemoveRuntimeFiles(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  for (dirent* e; (e = ::readdir(d));) {
    std::string n = e->d_name;
    for (const char* suffix : {".vol", ".vol.tmp", ".responded"}) {
      std::string s = suffix;
      if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0) {
        ::unlinkat(::dirfd(d), n.c_str(), 0);
        break;
      }
    }
  }
  ::closedir(d);
}

}  // namespace

Result<RestoreOutcome> RestoreStore(const StoreOptions& o, const std::string& backup, bool replace) {
  if (::mkdir(o.state_dir.c_str(), 0700) != 0 && errno != EEXIST)
    return Status::FromErrno(errno, "creating " + o.state_dir);
  ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(o.state_dir));
  const std::string db = o.state_dir + "/" + kStoreDbName;
  std::vector<std::string> present;
  for (const std::string& f : {db, db + "-wal", db + "-journal"})
    if (SizeOf(f) > 0 || (f != db && SizeOf(f) == 0)) present.push_back(f);
  if (!present.empty() && !replace)
    return Status(Code::kAlreadyExists, present.front() +
                                            " exists: restore replaces a store only with --replace (the store in "
                                            "place is then kept beside it, renamed)");
  TempDir temp(o.state_dir + "/restore.tmp");
  RETURN_IF_ERROR(temp.Make());
  RETURN_IF_ERROR(CopyBackup(backup, temp.db()));
  RestoreOutcome out;
  ASSIGN_OR_RETURN(SecretBytes master, CheckManager(o, temp.db(), backup));
  ASSIGN_OR_RETURN(out.instances, CheckInstances(temp, std::move(master), backup));
  if (!present.empty()) {
    out.replaced = db + ".replaced-" + UtcStamp();
    for (const char* suffix : {"", "-wal", "-journal"}) {
      const std::string f = db + suffix;
      if (SizeOf(f) >= 0 && ::rename(f.c_str(), (out.replaced + suffix).c_str()) != 0)
        return Status::FromErrno(errno, "moving " + f + " aside");
    }
  }
  for (const char* suffix : {"", "-shm"}) ::unlink((db + suffix).c_str());  // an empty store file, a stale index
  if (::rename(temp.db().c_str(), db.c_str()) != 0) return Status::FromErrno(errno, "renaming to " + db);
  RETURN_IF_ERROR(FsyncPath(o.state_dir, O_RDONLY | O_DIRECTORY));
  RemoveRuntimeFiles(o.runtime_dir);
  return out;
}

}  // namespace vtpm
