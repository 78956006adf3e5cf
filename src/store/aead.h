// AES-256-GCM with a fresh random 96-bit nonce per message.
// Sealed layout: nonce(12) | ciphertext | tag(16).
#pragma once

#include <cstddef>

#include "common/bytes.h"
#include "common/status.h"
#include "store/secret_bytes.h"

namespace vtpm {

inline constexpr size_t kAeadKeyBytes = 32;
inline constexpr size_t kAeadNonceBytes = 12;
inline constexpr size_t kAeadTagBytes = 16;
inline constexpr size_t kAeadOverhead = kAeadNonceBytes + kAeadTagBytes;

// Fails only if OpenSSL fails (kInternal) or the key is not 32 bytes.
Result<Bytes> AeadSeal(const SecretBytes& key, ByteView aad, ByteView plaintext);
// kCorruption when the tag does not verify (wrong key, AAD or altered bytes).
Result<Bytes> AeadOpen(const SecretBytes& key, ByteView aad, ByteView sealed);
// Same, for plaintext that is itself key material.
Result<SecretBytes> AeadOpenSecret(const SecretBytes& key, ByteView aad, ByteView sealed);

}  // namespace vtpm
