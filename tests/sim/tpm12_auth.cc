#include "tpm12_auth.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include <memory>

#include "tpm/tpm12.h"

namespace vtpm::sim::tpm12auth {
namespace {

constexpr uint16_t kTagRquCommand = 0x00C1, kTagRquAuth1 = 0x00C2;
constexpr uint32_t kOrdOiap = 0x0A, kOrdOsap = 0x0B, kOrdTakeOwnership = 0x0D;
constexpr uint32_t kOrdCreateCounter = 0xDC, kOrdIncrementCounter = 0xDD, kOrdReadCounter = 0xDE;
constexpr uint16_t kPidOwner = 0x0005;
constexpr uint16_t kEtOwner = 0x0002;
constexpr uint32_t kKhOwner = 0x40000001;

Bytes Begin(uint16_t tag, uint32_t ordinal) {
  Bytes b;
  AppendBe16(b, tag);
  AppendBe32(b, 0);
  AppendBe32(b, ordinal);
  return b;
}

Bytes Finish(Bytes b) {
  StoreBe32(b.data() + 2, uint32_t(b.size()));
  return b;
}

Secret Sha1(ByteView data) {
  Secret out;
  SHA1(data.data(), data.size(), out.data());
  return out;
}

Secret Hmac(const Secret& key, ByteView data) {
  Secret out;
  unsigned int len = 0;
  HMAC(EVP_sha1(), key.data(), int(key.size()), data.data(), data.size(), out.data(), &len);
  return out;
}

// Appends the AUTH1 trailer for a command whose "1S.." parameters (ordinal
// first) are `params_for_digest`.
void AppendAuth(Bytes& b, ByteView params_for_digest, const Session& s, const Secret& nonce_odd, bool cont) {
  Secret digest = Sha1(params_for_digest);
  Bytes h;
  AppendBytes(h, digest);
  AppendBytes(h, s.nonce_even);
  AppendBytes(h, nonce_odd);
  h.push_back(cont ? 1 : 0);
  Secret auth = Hmac(s.hmac_key, h);
  AppendBe32(b, s.handle);
  AppendBytes(b, nonce_odd);
  b.push_back(cont ? 1 : 0);
  AppendBytes(b, auth);
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};

// RSA public key from a TPM_PUBKEY: TPM_KEY_PARMS (algorithmID, encScheme,
// sigScheme, parmSize, TPM_RSA_KEY_PARMS) then TPM_STORE_PUBKEY.
std::unique_ptr<EVP_PKEY, PkeyFree> RsaFromTpmPubkey(ByteView pub) {
  if (pub.size() < 12) return nullptr;
  uint32_t parm_size = LoadBe32(pub.data() + 8);
  if (parm_size < 12 || pub.size() < 12 + size_t(parm_size) + 4) return nullptr;
  const uint8_t* parms = pub.data() + 12;
  uint32_t exp_size = LoadBe32(parms + 8);
  if (12 + size_t(exp_size) > parm_size) return nullptr;
  const uint8_t* key = pub.data() + 12 + parm_size;
  uint32_t key_len = LoadBe32(key);
  if (pub.size() < 12 + size_t(parm_size) + 4 + key_len) return nullptr;
  BIGNUM* n = BN_bin2bn(key + 4, int(key_len), nullptr);
  BIGNUM* e = exp_size ? BN_bin2bn(parms + 12, int(exp_size), nullptr) : nullptr;
  if (!e) {
    e = BN_new();
    if (e) BN_set_word(e, 65537);
  }
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM* params = nullptr;
  EVP_PKEY* pkey = nullptr;
  if (n && e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) && (params = OSSL_PARAM_BLD_to_param(bld))) {
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
    if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
        EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
      pkey = nullptr;
  }
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(n);
  BN_free(e);
  return std::unique_ptr<EVP_PKEY, PkeyFree>(pkey);
}

// TPM_ES_RSAESOAEP_SHA1_MGF1 with the label "TCPA" (main spec part 1 §31.1.1).
std::optional<Bytes> OaepTcpa(EVP_PKEY* key, const Secret& data) {
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new(key, nullptr));
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) <= 0 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), EVP_sha1()) <= 0 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_sha1()) <= 0)
    return std::nullopt;
  void* label = OPENSSL_memdup("TCPA", 4);
  if (!label || EVP_PKEY_CTX_set0_rsa_oaep_label(ctx.get(), label, 4) <= 0) {
    OPENSSL_free(label);
    return std::nullopt;
  }
  size_t len = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &len, data.data(), data.size()) <= 0) return std::nullopt;
  Bytes out(len);
  if (EVP_PKEY_encrypt(ctx.get(), out.data(), &len, data.data(), data.size()) <= 0) return std::nullopt;
  out.resize(len);
  return out;
}

// TPM_KEY (1.1 layout) template for a 2048-bit RSA storage SRK.
Bytes SrkTemplate() {
  Bytes k = {1, 1, 0, 0};     // TPM_STRUCT_VER 1.1
  AppendBe16(k, 0x0011);      // TPM_KEY_STORAGE
  AppendBe32(k, 0);           // keyFlags
  k.push_back(0x01);          // TPM_AUTH_ALWAYS
  AppendBe32(k, 0x00000001);  // TPM_ALG_RSA
  AppendBe16(k, 0x0003);      // TPM_ES_RSAESOAEP_SHA1_MGF1
  AppendBe16(k, 0x0001);      // TPM_SS_NONE
  AppendBe32(k, 12);          // parmSize
  AppendBe32(k, 2048);        // keyLength
  AppendBe32(k, 2);           // numPrimes
  AppendBe32(k, 0);           // exponentSize: default 65537
  AppendBe32(k, 0);           // PCRInfoSize
  AppendBe32(k, 0);           // pubKey.keyLength
  AppendBe32(k, 0);           // encSize
  return k;
}

Status Check(const Result<Bytes>& r, const char* what) {
  if (!r.ok()) return r.status().Annotate(what);
  auto rc = tpm12::ResponseCode(*r);
  if (rc != tpm12::kSuccess)
    return Status(Code::kTpmError, std::string(what) + ": TPM return code " + (rc ? std::to_string(*rc) : "none"));
  return {};
}

}  // namespace

Secret RandomNonce() {
  Secret n;
  RAND_bytes(n.data(), int(n.size()));
  return n;
}

Bytes OiapCommand() { return Finish(Begin(kTagRquCommand, kOrdOiap)); }

std::optional<Session> ParseOiap(ByteView response, const Secret& entity_auth) {
  auto body = tpm12::ResponseBody(response);
  if (!body || body->size() < 24) return std::nullopt;
  Session s;
  s.handle = LoadBe32(body->data());
  std::copy_n(body->data() + 4, 20, s.nonce_even.begin());
  s.hmac_key = entity_auth;
  return s;
}

Bytes OsapCommand(uint16_t entity_type, uint32_t entity_value, const Secret& nonce_odd_osap) {
  Bytes b = Begin(kTagRquCommand, kOrdOsap);
  AppendBe16(b, entity_type);
  AppendBe32(b, entity_value);
  AppendBytes(b, nonce_odd_osap);
  return Finish(std::move(b));
}

std::optional<Session> ParseOsap(ByteView response, const Secret& entity_auth, const Secret& nonce_odd_osap) {
  auto body = tpm12::ResponseBody(response);
  if (!body || body->size() < 44) return std::nullopt;
  Session s;
  s.handle = LoadBe32(body->data());
  std::copy_n(body->data() + 4, 20, s.nonce_even.begin());
  Bytes h(body->data() + 24, body->data() + 44);  // nonceEvenOSAP
  AppendBytes(h, nonce_odd_osap);
  s.hmac_key = Hmac(entity_auth, h);
  return s;
}

std::optional<Bytes> TakeOwnershipCommand(ByteView ek_pubkey, const Secret& owner_auth, const Secret& srk_auth,
                                          const Session& oiap, const Secret& nonce_odd) {
  auto ek = RsaFromTpmPubkey(ek_pubkey);
  if (!ek) return std::nullopt;
  auto enc_owner = OaepTcpa(ek.get(), owner_auth);
  auto enc_srk = OaepTcpa(ek.get(), srk_auth);
  if (!enc_owner || !enc_srk) return std::nullopt;
  Bytes params;
  AppendBe32(params, kOrdTakeOwnership);
  AppendBe16(params, kPidOwner);
  AppendBe32(params, uint32_t(enc_owner->size()));
  AppendBytes(params, *enc_owner);
  AppendBe32(params, uint32_t(enc_srk->size()));
  AppendBytes(params, *enc_srk);
  AppendBytes(params, SrkTemplate());
  Bytes b = Begin(kTagRquAuth1, kOrdTakeOwnership);
  b.insert(b.end(), params.begin() + 4, params.end());
  Session s = oiap;
  s.hmac_key = owner_auth;  // the new owner's auth authorizes the command
  AppendAuth(b, params, s, nonce_odd, false);
  return Finish(std::move(b));
}

Bytes CreateCounterCommand(const Secret& counter_auth, const std::array<uint8_t, 4>& label, const Session& osap,
                           const Secret& nonce_odd) {
  // ADIP: encAuth = auth XOR SHA1(sharedSecret || authLastNonceEven).
  Bytes k(osap.hmac_key.begin(), osap.hmac_key.end());
  AppendBytes(k, osap.nonce_even);
  Secret pad = Sha1(k);
  Secret enc;
  for (size_t i = 0; i < enc.size(); ++i) enc[i] = counter_auth[i] ^ pad[i];
  Bytes params;
  AppendBe32(params, kOrdCreateCounter);
  AppendBytes(params, enc);
  AppendBytes(params, label);
  Bytes b = Begin(kTagRquAuth1, kOrdCreateCounter);
  b.insert(b.end(), params.begin() + 4, params.end());
  AppendAuth(b, params, osap, nonce_odd, false);
  return Finish(std::move(b));
}

Bytes IncrementCounterCommand(uint32_t count_id, const Session& oiap, const Secret& nonce_odd,
                              bool continue_session) {
  Bytes params;
  AppendBe32(params, kOrdIncrementCounter);
  AppendBe32(params, count_id);
  Bytes b = Begin(kTagRquAuth1, kOrdIncrementCounter);
  AppendBe32(b, count_id);
  AppendAuth(b, params, oiap, nonce_odd, continue_session);
  return Finish(std::move(b));
}

Bytes ReadCounterCommand(uint32_t count_id) {
  Bytes b = Begin(kTagRquCommand, kOrdReadCounter);
  AppendBe32(b, count_id);
  return Finish(std::move(b));
}

std::optional<std::pair<uint32_t, uint32_t>> ParseCreateCounter(ByteView response) {
  auto body = tpm12::ResponseBody(response);
  // countID, TPM_COUNTER_VALUE {tag 000E, label[4], counter}
  if (!body || body->size() < 4 + 10 || LoadBe16(body->data() + 4) != 0x000E) return std::nullopt;
  return std::make_pair(LoadBe32(body->data()), LoadBe32(body->data() + 10));
}

std::optional<uint32_t> ParseCounterValue(ByteView response) {
  auto body = tpm12::ResponseBody(response);
  if (!body || body->size() < 10 || LoadBe16(body->data()) != 0x000E) return std::nullopt;
  return LoadBe32(body->data() + 6);
}

Status RunTakeOwnership(const Send& send, ByteView ek_pubkey, const Secret& owner_auth, const Secret& srk_auth) {
  auto r = send(OiapCommand());
  RETURN_IF_ERROR(Check(r, "OIAP"));
  auto s = ParseOiap(*r, owner_auth);
  if (!s) return Status(Code::kCorruption, "OIAP: malformed answer");
  auto cmd = TakeOwnershipCommand(ek_pubkey, owner_auth, srk_auth, *s, RandomNonce());
  if (!cmd) return Status(Code::kInvalidArgument, "TakeOwnership: unusable EK public key");
  return Check(send(*cmd), "TakeOwnership");
}

Result<std::pair<uint32_t, uint32_t>> RunCreateCounter(const Send& send, const Secret& owner_auth,
                                                       const Secret& counter_auth) {
  Secret odd_osap = RandomNonce();
  auto r = send(OsapCommand(kEtOwner, kKhOwner, odd_osap));
  RETURN_IF_ERROR(Check(r, "OSAP"));
  auto s = ParseOsap(*r, owner_auth, odd_osap);
  if (!s) return Status(Code::kCorruption, "OSAP: malformed answer");
  auto c = send(CreateCounterCommand(counter_auth, {'f', 'l', 't', '1'}, *s, RandomNonce()));
  RETURN_IF_ERROR(Check(c, "CreateCounter"));
  auto id = ParseCreateCounter(*c);
  if (!id) return Status(Code::kCorruption, "CreateCounter: malformed answer");
  return *id;
}

}  // namespace vtpm::sim::tpm12auth
