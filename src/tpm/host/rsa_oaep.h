// Software RSA-OAEP (SHA-256, MGF1-SHA-256) encryption to a TPM RSA key.
// `label` is used as given: for TPM2_RSA_Decrypt it must end in a NUL byte
// (the TPM rejects a non-empty label without one).
#pragma once

#include <cstdint>

#include "common/bytes.h"
#include "common/status.h"

namespace vtpm {

Result<Bytes> RsaOaepSha256Encrypt(ByteView modulus, uint32_t exponent, ByteView label,
                                   ByteView plaintext);

}  // namespace vtpm
