// Manufacture: turns a fresh libtpms TPM 1.2 into one a guest may own, as
// swtpm_setup does for a TPM 1.2 (design §6):
//   TPM_Init, Startup(ST_CLEAR);
//   TSC_PhysicalPresence(CMD_DISABLE | HW_ENABLE), then (LIFETIME_LOCK): a
//     guest can never assert software presence, hardware presence is the
//     daemon's physical-presence callback during its own admin operations;
//   PhysicalEnable, PhysicalSetDeactivated(FALSE) (under that presence);
//   CreateEndorsementKeyPair (RSA-2048) - its public key is recorded, since
//     TakeOwnership later disables ReadPubek;
//   NV_DefineSpace(TPM_NV_INDEX_LOCK): nvLocked.
// No owner is taken. The worker is killed when done.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "tpm/worker_client.h"

namespace vtpm {

struct ManufacturedTpm {
  Bytes permanent;   // libtpms permanent state (permall)
  Bytes ek_public;   // TPM_PUBKEY of the EK
};

// One admin command run by the daemon itself.
struct AdminStep {
  Bytes command;
  bool physical_presence = false;
};

// The TPM commands of manufacturing after TPM_Init, in order; the EK comes
// from the response of the step at kEkStepIndex.
std::vector<AdminStep> ManufactureSteps();
inline constexpr size_t kEkStepIndex = 5;

class Manufacturer {
 public:
  using Done = std::function<void(Result<ManufacturedTpm>)>;
  // Starts a worker and manufactures; `done` runs once on the loop thread
  // (it may destroy the Manufacturer). Destroying it earlier cancels.
  static std::unique_ptr<Manufacturer> Start(EventLoop& loop, const WorkerOptions& worker,
                                             std::chrono::milliseconds deadline, Done done);
  ~Manufacturer();
  Manufacturer(const Manufacturer&) = delete;
  Manufacturer& operator=(const Manufacturer&) = delete;

 private:
  Manufacturer(std::chrono::milliseconds deadline, Done done);
  void Step(Result<WorkerReply> reply);
  void Finish(Result<ManufacturedTpm> r);

  std::chrono::milliseconds deadline_;
  Done done_;
  std::unique_ptr<WorkerClient> worker_;
  std::vector<AdminStep> steps_ = ManufactureSteps();
  size_t next_ = 0;  // index of the step whose reply comes next; 0 = init
  bool init_done_ = false;
  ManufacturedTpm out_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace vtpm
