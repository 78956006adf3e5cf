// The store's options from the configuration (vtpmmgrd.conf(5) [daemon] and
// [host_tpm]); shared by the daemon and `vtpmctl restore`, which works on the
// state directory itself (design §6c).
#pragma once

#include "daemon/config.h"
#include "store/open_store.h"

namespace vtpm {

StoreOptions StoreOptionsFor(const Config& cfg);

}  // namespace vtpm
