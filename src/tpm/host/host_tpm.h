// HostTpm: the host's TPM 2.0 (tpm2-tss ESAPI), used at start and when
// provisioning, never on the per-command path (design §5).
//
// Key hierarchy: SRK (persistent handle when its Name matches the recorded
// one, else CreatePrimary with the TCG RSA-2048 template) -> SK (RSA-2048
// OAEP-SHA256 decrypt key) -> master key, RSA-OAEP-encrypted in software and
// decrypted by TPM2_RSA_Decrypt through a session salted by the SRK with
// response encryption. With a PCR policy the master key is instead sealed in a
// keyedhash object under PolicyPCR(sha256: pcrs), unsealed the same way.
// Every transient object and session is flushed on every path. Each method
// ends by re-logging what tpm2-tss logged meanwhile (tss2_log.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "store/secret_bytes.h"
#include "tpm/host/store_marker.h"
#include "tpm/host/tis_options.h"
#include "tpm/host/tis_registers.h"

namespace vtpm {

struct HostTpmConfig {
  // A tpm2-tss TCTI loader string ("device:/dev/tpmrm0", "swtpm:host=...,port=N"),
  // or "tis:locality=N[,base=0x...]": our own TIS FIFO TCTI over /dev/mem.
  std::string tcti = "device:/dev/tpmrm0";
  uint32_t srk_handle = 0x81000001;
  bool persist_srk = true;             // EvictControl a newly created SRK to srk_handle
  // NV index of the StoreMarker (owner range 0x01000000-0x013fffff of the
  // TCG handle registry; "?VT" in the low bytes).
  uint32_t marker_index = 0x013f5654;
  std::vector<uint32_t> pcr_policy;    // sha256 PCR indices; empty = bind to SK
  // Flush transient objects and sessions left by a crashed user at open:
  // only when the daemon owns the TPM alone (no resource manager). Implied
  // for "device:/dev/tpm0", which the kernel lets one process open at a time.
  bool flush_leftovers = false;
  // "tis:" only: opens the register window; unset = /dev/mem at the
  // configured base. Tests put a software TIS model here.
  std::function<Result<std::unique_ptr<tis::Registers>>(const tis::Options&)> open_tis_window;
};

// What recovering the master key needs later; TPM-wrapped, so not secret.
struct ManagerKeys {
  Bytes srk_name;             // TPM2B_NAME of the SRK at provisioning
  Bytes tpm_id;               // Name of a fixed endorsement primary: tells TPMs apart
  uint32_t srk_handle = 0;
  std::vector<uint32_t> pcrs; // non-empty: sealed-to-PCR mode
  Bytes key_public;           // marshalled TPM2B_PUBLIC of the SK or the sealed object
  Bytes key_private;          // marshalled TPM2B_PRIVATE of the same
  Bytes bound_master;         // SK mode: RSA-OAEP ciphertext of the master key
};

using PcrValues = std::vector<std::pair<uint32_t, Bytes>>;  // index, sha256 value

class HostTpm {
 public:
  // Connects through `cfg.tcti`. Refusal::kTpmUnavailable when it cannot.
  static Result<std::unique_ptr<HostTpm>> Open(const HostTpmConfig& cfg);
  ~HostTpm();
  HostTpm(const HostTpm&) = delete;
  HostTpm& operator=(const HostTpm&) = delete;

  // First start: protects `master` (32 bytes) under a new SK or sealed object
  // and proves the round trip before returning. A key already at srk_handle
  // is used only if its public area has the SRK template (else
  // Refusal::kForeignSrk, naming what was found).
  Result<ManagerKeys> Provision(const SecretBytes& master);
  // Later starts: the master key, or a Refusal (kDifferentTpm, kOwnerCleared,
  // kPcrChanged, kBadManagerRecord, kTpmLockout) whose message names cause
  // and way out.
  Result<SecretBytes> Recover(const ManagerKeys& keys);
  // True after a Provision() that created the SRK and made it persistent.
  bool created_srk() const { return created_srk_; }

  // The marker at cfg.marker_index; nullopt when that index is not defined.
  // kTpmError when it holds something else.
  Result<std::optional<StoreMarker>> ReadMarker();
  // Defines the index (owner authorisation, empty) and writes `m`.
  Status WriteMarker(const StoreMarker& m);
  // Re-initialisation: undefines the marker and evicts the SRK it says
  // vtpmmgrd made persistent. Each step is logged.
  Status Forget(const StoreMarker& m);
  // sha256 bank values of `indices` (each < 24).
  Result<PcrValues> ReadPcrs(const std::vector<uint32_t>& indices);
  const HostTpmConfig& config() const { return cfg_; }

 private:
  struct Impl;
  HostTpm(HostTpmConfig cfg, std::unique_ptr<Impl> impl);
  HostTpmConfig cfg_;
  std::unique_ptr<Impl> impl_;
  bool created_srk_ = false;
};

std::string PcrListString(const std::vector<uint32_t>& pcrs);  // "sha256:0,7"

}  // namespace vtpm
