#include "ctl/ctl_restore.h"

#include "common/log.h"
#include "ctl/ctl_exit.h"
#include "daemon/store_options.h"
#include "store/refusal.h"
#include "store/restore_store.h"

namespace vtpm::ctl {
namespace {

RestoreResult Failed(int exit_status, ResultCode code, std::string sentence) {
  RestoreResult r{exit_status, {}};
  r.response.result = code;
  r.response.error = std::move(sentence);
  return r;
}

}  // namespace

RestoreResult RunRestore(const Config& cfg, const std::string& file, bool replace) {
  if (cfg.engine != "libtpms")
    return Failed(kExitUsage, ResultCode::kBadRequest, "engine '" + cfg.engine + "' keeps no store to restore");
  InitLogging("vtpmctl", false, "warn");  // the host TPM's and the store's warnings, on stderr
  const StoreOptions opts = StoreOptionsFor(cfg);
  auto out = RestoreStore(opts, file, replace);
  if (!out.ok()) {
    const Status& st = out.status();
    if (RefusalOf(st) == Refusal::kLocked)
      return Failed(kExitConflict, ResultCode::kConflict,
                    st.message() + "; stop it first (systemctl stop vtpmmgrd), then run restore again");
    if (st.code() == Code::kAlreadyExists) return Failed(kExitConflict, ResultCode::kConflict, st.message());
    if (st.code() == Code::kNotFound) return Failed(kExitNotFound, ResultCode::kNotFound, st.message());
    return Failed(kExitFailure, ResultCode::kFailed, st.message() + "; nothing was changed");
  }
  RestoreResult r{kExitOk, {}};
  r.response.data = {{"path", opts.state_dir + "/" + kStoreDbName},
                     {"from", file},
                     {"instances", out->instances},
                     {"replaced", out->replaced.empty() ? nlohmann::json(nullptr) : nlohmann::json(out->replaced)}};
  return r;
}

}  // namespace vtpm::ctl
