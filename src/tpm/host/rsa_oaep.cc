#include "tpm/host/rsa_oaep.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include <memory>

namespace vtpm {
namespace {
template <auto F>
struct Deleter {
  template <typename T>
  void operator()(T* p) const { F(p); }
};
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using BldPtr = std::unique_ptr<OSSL_PARAM_BLD, Deleter<OSSL_PARAM_BLD_free>>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, Deleter<OSSL_PARAM_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
}  // namespace

Result<Bytes> RsaOaepSha256Encrypt(ByteView modulus, uint32_t exponent, ByteView label,
                                   ByteView plaintext) {
  const Status fail(Code::kInternal, "OpenSSL RSA-OAEP encryption failed");
  BnPtr n(BN_bin2bn(modulus.data(), int(modulus.size()), nullptr));
  BnPtr e(BN_new());
  BldPtr bld(OSSL_PARAM_BLD_new());
  if (!n || !e || !bld || BN_set_word(e.get(), exponent ? exponent : 65537) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1)
    return fail;
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  PkeyCtxPtr fctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !fctx || EVP_PKEY_fromdata_init(fctx.get()) <= 0 ||
      EVP_PKEY_fromdata(fctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0)
    return fail;
  PkeyPtr pkey(raw);
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) <= 0 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), EVP_sha256()) <= 0 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_sha256()) <= 0)
    return fail;
  if (!label.empty()) {
    void* copy = OPENSSL_memdup(label.data(), label.size());  // set0 takes ownership
    if (!copy || EVP_PKEY_CTX_set0_rsa_oaep_label(ctx.get(), copy, int(label.size())) <= 0) {
      OPENSSL_free(copy);
      return fail;
    }
  }
  size_t out_len = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &out_len, plaintext.data(), plaintext.size()) <= 0) return fail;
  Bytes out(out_len);
  if (EVP_PKEY_encrypt(ctx.get(), out.data(), &out_len, plaintext.data(), plaintext.size()) <= 0) return fail;
  out.resize(out_len);
  return out;
}

}  // namespace vtpm
