#include "daemon/store_options.h"

namespace vtpm {

StoreOptions StoreOptionsFor(const Config& cfg) {
  StoreOptions so;
  so.state_dir = cfg.state_dir;
  so.runtime_dir = cfg.runtime_dir;
  so.host_tpm.tcti = cfg.tcti;
  so.host_tpm.srk_handle = cfg.srk_handle;
  so.host_tpm.persist_srk = cfg.persist_srk;
  so.host_tpm.pcr_policy = cfg.pcr_policy;
  return so;
}

}  // namespace vtpm
