// TPM 1.2 authorized commands a test guest needs beyond src/tpm/tpm12.h:
// OIAP/OSAP sessions (HMAC-SHA1), TakeOwnership (owner and SRK auth
// RSA-OAEP-encrypted to the EK with the "TCPA" label), CreateCounter (owner
// OSAP, counter auth ADIP-encrypted), IncrementCounter (counter auth over
// OIAP) and ReadCounter. TPM 1.2 main spec part 3 §§ 6, 18, 25.
//
// Builders are pure; the Run* helpers send through `Send` (e.g. a
// GuestFrontend::Transmit) and fail on any transport error or return code.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>

#include "common/bytes.h"
#include "common/status.h"

namespace vtpm::sim::tpm12auth {

using Secret = std::array<uint8_t, 20>;  // TPM_SECRET / TPM_AUTHDATA / TPM_NONCE
using Send = std::function<Result<Bytes>(const Bytes& command)>;

inline constexpr uint32_t kBadCounter = 0x45;
inline constexpr uint32_t kAuthFail = 0x01;
inline constexpr uint32_t kInvalidAuthHandle = 0x22;

struct Session {
  uint32_t handle = 0;
  Secret nonce_even{};
  Secret hmac_key{};  // OIAP: the entity's auth; OSAP: the shared secret
};

Bytes OiapCommand();
// OIAP session from its response, with `entity_auth` as the HMAC key.
std::optional<Session> ParseOiap(ByteView response, const Secret& entity_auth);
Bytes OsapCommand(uint16_t entity_type, uint32_t entity_value, const Secret& nonce_odd_osap);
// OSAP session from its response: shared secret = HMAC(entity_auth, nonceEvenOSAP || nonceOddOSAP).
std::optional<Session> ParseOsap(ByteView response, const Secret& entity_auth, const Secret& nonce_odd_osap);

// TakeOwnership with a 2048-bit storage SRK; `ek_pubkey` is a TPM_PUBKEY
// (tpm12::PubkeyFromEkResponse). Nullopt when the key cannot be used.
std::optional<Bytes> TakeOwnershipCommand(ByteView ek_pubkey, const Secret& owner_auth, const Secret& srk_auth,
                                          const Session& oiap, const Secret& nonce_odd);
// `osap` must be an owner OSAP session (entity TPM_ET_OWNER).
Bytes CreateCounterCommand(const Secret& counter_auth, const std::array<uint8_t, 4>& label, const Session& osap,
                           const Secret& nonce_odd);
Bytes IncrementCounterCommand(uint32_t count_id, const Session& oiap, const Secret& nonce_odd,
                              bool continue_session = false);
Bytes ReadCounterCommand(uint32_t count_id);

// CreateCounter's answer: the counter id and its starting value.
std::optional<std::pair<uint32_t, uint32_t>> ParseCreateCounter(ByteView response);
// The TPM_COUNTER_VALUE's count in an IncrementCounter or ReadCounter answer.
std::optional<uint32_t> ParseCounterValue(ByteView response);

// Fresh random nonce.
Secret RandomNonce();

// Whole sequences (session + command); fail on a transport error or rc != 0.
Status RunTakeOwnership(const Send& send, ByteView ek_pubkey, const Secret& owner_auth, const Secret& srk_auth);
Result<std::pair<uint32_t, uint32_t>> RunCreateCounter(const Send& send, const Secret& owner_auth,
                                                       const Secret& counter_auth);

}  // namespace vtpm::sim::tpm12auth
