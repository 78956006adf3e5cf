#include "store/open_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>

#include "common/log.h"
#include "store/dir_lock.h"
#include "store/refusal.h"
#include "store/sqlite_store.h"
#include "store/store_schema.h"

namespace vtpm {
namespace {

Status MakeDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Status::FromErrno(errno, "creating " + dir);
  return Status::Ok();
}

// The state and runtime directories hold the store, its lock and the
// volatile copies: a directory another user owns or can write lets that user
// replace or remove them, so vtpmmgrd refuses it (design §5).
Status CheckPrivateDir(const std::string& dir, const char* what) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return Status::FromErrno(errno, std::string("checking the ") + what + " " + dir);
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
  if (!S_ISDIR(st.st_mode))
    return Refuse(Refusal::kUnsafeDirectory, std::string("the ") + what + " " + dir + " is not a directory");
  if (st.st_uid != ::geteuid())
    return Refuse(Refusal::kUnsafeDirectory,
                  std::string("the ") + what + " " + dir + " belongs to uid " + std::to_string(st.st_uid) +
                      ", not to uid " + std::to_string(::geteuid()) +
                      " that vtpmmgrd runs as: " + "that user could replace its files. Run `chown " +
                      std::to_string(::geteuid()) + " " + dir + "` if it is the right one");
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return Refuse(Refusal::kUnsafeDirectory, std::string("the ") + what + " " + dir + " has mode " + mode +
                                                 ": other users can write in it and replace its files. Run `chmod "
                                                 "0700 " +
                                                 dir + "`");
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    LOG_WARN("the {} {} has mode {}: other users can list its files (instance uuids); 0700 is expected", what, dir,
             mode);
  return Status::Ok();
}

struct Opened {
  DirLock lock;
  Db db;
  bool empty;
};

std::string DbPath(const StoreOptions& o) { return o.state_dir + "/" + kStoreDbName; }

// -1 when the file does not exist.
int64_t FileSizeOf(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? int64_t(st.st_size) : -1;
}

// The host TPM says a store existed, but `found` describes what is at its path now.
Status RefuseLost(const StoreOptions& o, const HostTpm& tpm, const StoreMarker& m, const std::string& found) {
  const std::string path = DbPath(o);
  char index[16];
  std::snprintf(index, sizeof index, "%#010x", tpm.config().marker_index);
  std::string where = m.db_path == path ? ""
                                        : " The store was at " + m.db_path + ": check state_dir in the "
                                          "configuration, or move the state directory back there.";
  return Refuse(Refusal::kStoreLost,
                "store " + path + " " + found + ", but the host TPM (NV index " + index +
                    ") records a vtpmmgrd store " + DescribeStoreMarker(m) +
                    ". Starting with a new store would give every returning guest a new TPM (new EK, no owner, "
                    "no NV data) under its old uuid, so vtpmmgrd refuses." + where +
                    " Restore the store from a backup (`vtpmctl restore FILE`, vtpmctl(8) RESTORE); or, to give "
                    "up every vTPM of the old store, "
                    "run `vtpmmgrd --reinitialise` (vtpmmgrd(8), REFUSE, NEVER RESET).");
}

Result<Opened> OpenDatabase(const StoreOptions& o) {
  RETURN_IF_ERROR(MakeDir(o.state_dir));
  RETURN_IF_ERROR(MakeDir(o.runtime_dir));
  RETURN_IF_ERROR(CheckPrivateDir(o.state_dir, "state directory"));
  RETURN_IF_ERROR(CheckPrivateDir(o.runtime_dir, "runtime directory"));
  ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(o.state_dir));
  const std::string path = DbPath(o);
  ASSIGN_OR_RETURN(Db db, Db::Open(path, o.sqlite_vfs));
  Status st = ApplyPragmas(db);
  Result<bool> empty = st.ok() ? IsEmptyDatabase(db) : Result<bool>(st);
  if (!empty.ok() && empty.status().code() == Code::kCorruption)
    return Refuse(Refusal::kBadManagerRecord, path + " is not a readable vtpmmgrd store (" +
                                                  empty.status().message() + "); restore it from a backup");
  if (!empty.ok()) return empty.status();
  return Opened{std::move(lock), std::move(db), *empty};
}

std::string Describe(const ManagerRecord& rec) {
  if (rec.protection == kProtectSk) return "bound to SK (RSA-OAEP-SHA256, host TPM)";
  if (rec.protection == kProtectPcr) return "sealed to host PCRs " + PcrListString(rec.keys.pcrs);
  return "given by the caller (no host TPM)";
}

std::unique_ptr<Store> Make(const StoreOptions& o, Opened op, SecretBytes master, std::unique_ptr<HostTpm> tpm,
                            const ManagerRecord& rec) {
  SqliteStoreSettings s{o.runtime_dir, Describe(rec), rec.keys.pcrs, o.max_group};
  return std::make_unique<SqliteStore>(std::move(op.db), std::move(op.lock), std::move(master), std::move(tpm),
                                       std::move(s));
}

Status CheckProtection(const ManagerRecord& rec, bool with_tpm) {
  if ((rec.protection == kProtectExternal) == with_tpm)
    return Refuse(Refusal::kBadManagerRecord,
                  with_tpm ? "the store was provisioned without a host TPM (test key); it cannot be opened here"
                           : "the store's master key is held by a host TPM; open it with OpenStore()");
  return Status::Ok();
}

StoreMarker MarkerFor(const StoreOptions& o, const HostTpm& tpm, int64_t when) {
  StoreMarker m;
  m.provisioned = when;
  m.db_path = DbPath(o);
  m.srk_handle = o.host_tpm.srk_handle;
  m.srk_created = tpm.created_srk();
  return m;
}

// First start: the manager's keys in the host TPM, the schema, then the marker.
Result<ManagerRecord> ProvisionManager(const StoreOptions& o, Db& db, HostTpm& tpm, const SecretBytes& master) {
  ManagerRecord rec;
  rec.protection = o.host_tpm.pcr_policy.empty() ? kProtectSk : kProtectPcr;
  ASSIGN_OR_RETURN(rec.keys, tpm.Provision(master));
  ASSIGN_OR_RETURN(rec.key_check, MakeKeyCheck(master));
  RETURN_IF_ERROR(CreateSchema(db, rec));
  // After the schema: a crash in between leaves a store without a marker,
  // which its next open writes.
  RETURN_IF_ERROR(tpm.WriteMarker(MarkerFor(o, tpm, std::time(nullptr))));
  return rec;
}

}  // namespace

Result<std::unique_ptr<Store>> OpenStore(const StoreOptions& o) {
  // The host TPM first: whether it remembers a store decides whether a
  // missing database may be created.
  ASSIGN_OR_RETURN(std::unique_ptr<HostTpm> tpm, HostTpm::Open(o.host_tpm));
  ASSIGN_OR_RETURN(std::optional<StoreMarker> marker, tpm->ReadMarker());
  if (marker) {
    const int64_t size = FileSizeOf(DbPath(o));
    if (size <= 0) return RefuseLost(o, *tpm, *marker, size < 0 ? "does not exist" : "is empty (0 bytes)");
  }
  const bool existed = FileSizeOf(DbPath(o)) >= 0;
  ASSIGN_OR_RETURN(Opened op, OpenDatabase(o));
  if (op.empty && marker) return RefuseLost(o, *tpm, *marker, "holds no vtpmmgrd tables");
  if (op.empty) {
    LOG_INFO("store {}/{} is new: provisioning the manager on host TPM '{}'", o.state_dir, kStoreDbName,
             o.host_tpm.tcti);
    ASSIGN_OR_RETURN(SecretBytes master, SecretBytes::Random(32));
    Result<ManagerRecord> rec = ProvisionManager(o, op.db, *tpm, master);
    if (!rec.ok()) {
      if (!existed) {  // leave no store file behind that this attempt created
        { Db closing(std::move(op.db)); }
        for (const char* suffix : {"", "-wal", "-shm", "-journal"}) ::unlink((DbPath(o) + suffix).c_str());
      }
      return rec.status();
    }
    LOG_INFO("manager provisioned: master key {}", Describe(*rec));
    return Make(o, std::move(op), std::move(master), std::move(tpm), *rec);
  }
  ASSIGN_OR_RETURN(ManagerRecord rec, ReadManagerRecord(op.db));
  RETURN_IF_ERROR(CheckProtection(rec, true));
  if (rec.keys.pcrs != o.host_tpm.pcr_policy)
    LOG_WARN("configured PCR policy {} differs from the store's {}; the store's applies",
             PcrListString(o.host_tpm.pcr_policy), PcrListString(rec.keys.pcrs));
  ASSIGN_OR_RETURN(SecretBytes master, tpm->Recover(rec.keys));
  RETURN_IF_ERROR(VerifyKeyCheck(master, rec.key_check));
  LOG_INFO("store {}/{} opened: master key {}", o.state_dir, kStoreDbName, Describe(rec));
  if (!marker) {  // a store provisioned before markers existed
    Status st = tpm->WriteMarker(MarkerFor(o, *tpm, 0));
    if (!st.ok())
      LOG_WARN("{}; without it a lost store would not be told from a first start", st.message());
  }
  return Make(o, std::move(op), std::move(master), std::move(tpm), rec);
}

Status ReinitialiseStore(const StoreOptions& o) {
  const std::string path = DbPath(o);
  for (const std::string& f : {path, path + "-wal", path + "-journal"})
    if (FileSizeOf(f) >= 0)
      return Status(Code::kAlreadyExists,
                    f + " exists: --reinitialise only replaces a store that is gone. If that store is to be given "
                        "up, move the file away (it holds every vTPM) and run it again");
  {
    ASSIGN_OR_RETURN(std::unique_ptr<HostTpm> tpm, HostTpm::Open(o.host_tpm));
    ASSIGN_OR_RETURN(std::optional<StoreMarker> marker, tpm->ReadMarker());
    if (marker) {
      LOG_WARN("re-initialising: giving up the store {}", DescribeStoreMarker(*marker));
      RETURN_IF_ERROR(tpm->Forget(*marker));
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Store> fresh, OpenStore(o));
  LOG_INFO("re-initialised: {} is a new, empty store", path);
  return Status::Ok();
}

Result<std::unique_ptr<Store>> OpenStoreWithKey(const StoreOptions& o, const SecretBytes& master) {
  if (master.size() != 32) return Status(Code::kInvalidArgument, "master key must be 32 bytes");
  ASSIGN_OR_RETURN(Opened op, OpenDatabase(o));
  ManagerRecord rec;
  if (op.empty) {
    rec.protection = kProtectExternal;
    ASSIGN_OR_RETURN(rec.key_check, MakeKeyCheck(master));
    RETURN_IF_ERROR(CreateSchema(op.db, rec));
  } else {
    ASSIGN_OR_RETURN(rec, ReadManagerRecord(op.db));
    RETURN_IF_ERROR(CheckProtection(rec, false));
    RETURN_IF_ERROR(VerifyKeyCheck(master, rec.key_check));
  }
  return Make(o, std::move(op), master.Clone(), nullptr, rec);
}

}  // namespace vtpm
