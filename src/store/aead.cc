#include "store/aead.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>

namespace vtpm {
namespace {

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

// Fetched once: EVP_aes_256_gcm() makes every Init fetch it from the provider again.
const EVP_CIPHER* Aes256Gcm() {
  static const EVP_CIPHER* const fetched = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return fetched ? fetched : EVP_aes_256_gcm();
}

Status CheckKey(const SecretBytes& key) {
  if (key.size() != kAeadKeyBytes)
    return Status(Code::kInternal, "AES-256-GCM key must be 32 bytes, got " + std::to_string(key.size()));
  return Status::Ok();
}

// Decrypts into `out` (sized by the caller to the ciphertext length).
Status OpenInto(const SecretBytes& key, ByteView aad, ByteView sealed, uint8_t* out) {
  RETURN_IF_ERROR(CheckKey(key));
  if (sealed.size() < kAeadOverhead)
    return Status(Code::kCorruption, "sealed data is " + std::to_string(sealed.size()) +
                                         " bytes, shorter than nonce and tag");
  const size_t ct_len = sealed.size() - kAeadOverhead;
  const uint8_t* nonce = sealed.data();
  const uint8_t* ct = nonce + kAeadNonceBytes;
  const uint8_t* tag = ct + ct_len;
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int len = 0;
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), Aes256Gcm(), nullptr, key.data(), nonce) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(), int(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out, &len, ct, int(ct_len)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, int(kAeadTagBytes),
                          const_cast<uint8_t*>(tag)) != 1)
    return Status(Code::kInternal, "AES-256-GCM decrypt setup failed");
  if (EVP_DecryptFinal_ex(ctx.get(), out + len, &len) != 1) {
    OPENSSL_cleanse(out, ct_len);
    return Status(Code::kCorruption, "authentication tag does not verify (bad tag)");
  }
  return Status::Ok();
}

}  // namespace

Result<Bytes> AeadSeal(const SecretBytes& key, ByteView aad, ByteView plaintext) {
  RETURN_IF_ERROR(CheckKey(key));
  Bytes out(kAeadNonceBytes + plaintext.size() + kAeadTagBytes);
  if (RAND_bytes(out.data(), int(kAeadNonceBytes)) != 1) return Status(Code::kInternal, "RAND_bytes failed");
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int len = 0, fin = 0;
  uint8_t* ct = out.data() + kAeadNonceBytes;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), Aes256Gcm(), nullptr, key.data(), out.data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), int(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), ct, &len, plaintext.data(), int(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), ct + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, int(kAeadTagBytes), ct + plaintext.size()) != 1)
    return Status(Code::kInternal, "AES-256-GCM encrypt failed");
  return out;
}

Result<Bytes> AeadOpen(const SecretBytes& key, ByteView aad, ByteView sealed) {
  Bytes out(sealed.size() >= kAeadOverhead ? sealed.size() - kAeadOverhead : 0);
  RETURN_IF_ERROR(OpenInto(key, aad, sealed, out.data()));
  return out;
}

Result<SecretBytes> AeadOpenSecret(const SecretBytes& key, ByteView aad, ByteView sealed) {
  SecretBytes out(sealed.size() >= kAeadOverhead ? sealed.size() - kAeadOverhead : 0);
  RETURN_IF_ERROR(OpenInto(key, aad, sealed, out.data()));
  return out;
}

}  // namespace vtpm
