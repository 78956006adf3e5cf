// Refusal: why the daemon will not start on this store (design §5 "refuse,
// never reset"). Carried as Code::kFailedPrecondition with the Refusal as
// sub-code; the daemon exits with StartExitStatus().
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace vtpm {

enum class Refusal : int64_t {
  kDifferentTpm = 1,      // the store was provisioned on another TPM
  kOwnerCleared = 2,      // same TPM, but its storage hierarchy was cleared
  kPcrChanged = 3,        // PCR policy does not match the host's PCRs now
  kNewerSchema = 4,       // written by a newer vtpmmgrd
  kBadManagerRecord = 5,  // manager records missing, malformed or failing their tag
  kLocked = 6,            // another vtpmmgrd holds the state directory
  kTpmUnavailable = 7,    // the host TPM cannot be reached
  kStoreLost = 8,         // the host TPM records a store, but the database is missing or empty
  kForeignSrk = 9,        // a key that vtpmmgrd did not create, of another template, is at srk_handle
  kTpmLockout = 10,       // the host TPM is in dictionary-attack lockout
  kUnsafeDirectory = 11,  // the state or runtime directory is another user's, or writable by others
};
inline constexpr int64_t kLastRefusal = 11;

inline Status Refuse(Refusal r, std::string message) {
  return Status(Code::kFailedPrecondition, std::move(message), int64_t(r));
}

inline std::optional<Refusal> RefusalOf(const Status& s) {
  if (s.code() != Code::kFailedPrecondition || s.sub_code() < 1 || s.sub_code() > kLastRefusal) return std::nullopt;
  return Refusal(s.sub_code());
}

// Exit statuses of vtpmmgrd when OpenStore() fails: 10 + Refusal (11..21), 1 otherwise.
// systemd units should list 11-16, 18, 19 and 21 in RestartPreventExitStatus=
// (17 and 20 can clear up by themselves).
inline int StartExitStatus(const Status& s) {
  if (s.ok()) return 0;
  if (auto r = RefusalOf(s)) return 10 + int(*r);
  return 1;
}

}  // namespace vtpm
