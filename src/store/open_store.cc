#include "store/open_store.h"

#include <sys/stat.h>

#include <cerrno>

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

struct Opened {
  DirLock lock;
  Db db;
  bool empty;
};

Result<Opened> OpenDatabase(const StoreOptions& o) {
  RETURN_IF_ERROR(MakeDir(o.state_dir));
  RETURN_IF_ERROR(MakeDir(o.runtime_dir));
  ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(o.state_dir));
  const std::string path = o.state_dir + "/" + kStoreDbName;
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

}  // namespace

Result<std::unique_ptr<Store>> OpenStore(const StoreOptions& o) {
  ASSIGN_OR_RETURN(Opened op, OpenDatabase(o));
  ASSIGN_OR_RETURN(std::unique_ptr<HostTpm> tpm, HostTpm::Open(o.host_tpm));
  if (op.empty) {
    LOG_INFO("store {}/{} is new: provisioning the manager on host TPM '{}'", o.state_dir, kStoreDbName,
             o.host_tpm.tcti);
    ASSIGN_OR_RETURN(SecretBytes master, SecretBytes::Random(32));
    ManagerRecord rec;
    rec.protection = o.host_tpm.pcr_policy.empty() ? kProtectSk : kProtectPcr;
    ASSIGN_OR_RETURN(rec.keys, tpm->Provision(master));
    ASSIGN_OR_RETURN(rec.key_check, MakeKeyCheck(master));
    RETURN_IF_ERROR(CreateSchema(op.db, rec));
    LOG_INFO("manager provisioned: master key {}", Describe(rec));
    return Make(o, std::move(op), std::move(master), std::move(tpm), rec);
  }
  ASSIGN_OR_RETURN(ManagerRecord rec, ReadManagerRecord(op.db));
  RETURN_IF_ERROR(CheckProtection(rec, true));
  if (rec.keys.pcrs != o.host_tpm.pcr_policy)
    LOG_WARN("configured PCR policy {} differs from the store's {}; the store's applies",
             PcrListString(o.host_tpm.pcr_policy), PcrListString(rec.keys.pcrs));
  ASSIGN_OR_RETURN(SecretBytes master, tpm->Recover(rec.keys));
  RETURN_IF_ERROR(VerifyKeyCheck(master, rec.key_check));
  LOG_INFO("store {}/{} opened: master key {}", o.state_dir, kStoreDbName, Describe(rec));
  return Make(o, std::move(op), std::move(master), std::move(tpm), rec);
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
