// Envelope: the on-disk form of every encrypted item the store keeps.
//
//   "VTPE" | format u8 | kind u8 | generation u64be | nonce(12) | ciphertext | tag(16)
//
// The AES-256-GCM AAD binds the instance uuid, the kind, the generation and
// the format, so a sealed item moved to another instance, kind or generation
// fails authentication. Readers refuse (never guess) on any mismatch.
#pragma once

#include <cstdint>

#include "common/bytes.h"
#include "common/status.h"
#include "common/uuid.h"
#include "store/secret_bytes.h"

namespace vtpm {

inline constexpr uint8_t kEnvelopeFormat = 1;
inline constexpr size_t kEnvelopeHeaderBytes = 4 + 1 + 1 + 8;

enum class SealedKind : uint8_t {
  kPermanent = 1,  // values 1-3 equal BlobKind
  kSavestate = 2,
  kVolatile = 3,
  kDataKey = 16,       // instance data key, sealed by the master key
  kRecord = 17,        // last request/response record
  kVolatileFile = 18,  // runtime-directory volatile copy
  kKeyCheck = 19,      // proves the master key opens this store
  kSuspend = 20,       // state captured when the domain suspended (design §6)
  kHostKeys = 21,      // this host's migration keys, sealed by the master key (design §6d)
};
const char* SealedKindName(SealedKind k);

struct EnvelopeView {
  uint8_t format = 0;
  SealedKind kind{};
  uint64_t generation = 0;
  ByteView sealed;  // nonce | ciphertext | tag, points into the parsed buffer
};

// Structure only, no key needed: kCorruption on bad magic, unknown kind or
// short input; kFailedPrecondition on a newer format.
Result<EnvelopeView> ParseEnvelope(ByteView stored);

Result<Bytes> SealEnvelope(const SecretBytes& key, const Uuid& uuid, SealedKind kind,
                           uint64_t generation, ByteView plaintext);
// Parses and authenticates; `kind` is the kind the caller expects. On success
// `*generation` (if given) is the envelope's generation.
Result<Bytes> OpenEnvelope(const SecretBytes& key, const Uuid& uuid, SealedKind kind,
                           ByteView stored, uint64_t* generation = nullptr);
Result<SecretBytes> OpenEnvelopeSecret(const SecretBytes& key, const Uuid& uuid, SealedKind kind,
                                       ByteView stored);

}  // namespace vtpm
