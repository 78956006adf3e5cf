#include "store/migration.h"

#include <dirent.h>
#include <openssl/rand.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>

#include "store/aead.h"

namespace vtpm {
namespace {

constexpr size_t kPrivBytes = 32;
constexpr char kHkdfInfo[] = "vtpmmgrd export v1";

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

Status Ossl(const char* what) { return Status(Code::kInternal, std::string("OpenSSL: ") + what + " failed"); }

Result<Pkey> PrivateKey(int type, const uint8_t* priv) {
  Pkey k(EVP_PKEY_new_raw_private_key(type, nullptr, priv, kPrivBytes));
  if (!k) return Ossl("loading a private key");
  return k;
}

Result<Key32> PublicOf(EVP_PKEY* k) {
  Key32 pub{};
  size_t n = pub.size();
  if (EVP_PKEY_get_raw_public_key(k, pub.data(), &n) != 1 || n != pub.size()) return Ossl("reading a public key");
  return pub;
}

// X25519(priv, peer) then HKDF-SHA256 (salt = ephemeral pub | receiver pub)
// to the AES-256-GCM key.
Result<SecretBytes> DeriveKey(const uint8_t* priv, const Key32& peer, const Key32& ephemeral_pub,
                              const Key32& receiver_pub) {
  ASSIGN_OR_RETURN(Pkey mine, PrivateKey(EVP_PKEY_X25519, priv));
  Pkey theirs(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer.data(), peer.size()));
  if (!theirs) return Ossl("loading an X25519 public key");
  PkeyCtx ctx(EVP_PKEY_CTX_new(mine.get(), nullptr));
  SecretBytes shared(32);
  size_t n = shared.size();
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), theirs.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), shared.data(), &n) != 1 || n != shared.size())
    return Status(Code::kCorruption, "export file: X25519 key agreement failed (a malformed public key)");
  Bytes salt(ephemeral_pub.begin(), ephemeral_pub.end());
  AppendBytes(salt, receiver_pub);
  PkeyCtx kdf(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr));
  SecretBytes key(kAeadKeyBytes);
  size_t klen = key.size();
  if (!kdf || EVP_PKEY_derive_init(kdf.get()) != 1 || EVP_PKEY_CTX_set_hkdf_md(kdf.get(), EVP_sha256()) != 1 ||
      EVP_PKEY_CTX_set1_hkdf_salt(kdf.get(), salt.data(), int(salt.size())) != 1 ||
      EVP_PKEY_CTX_set1_hkdf_key(kdf.get(), shared.data(), int(shared.size())) != 1 ||
      EVP_PKEY_CTX_add1_hkdf_info(kdf.get(), reinterpret_cast<const uint8_t*>(kHkdfInfo),
                                  int(sizeof kHkdfInfo - 1)) != 1 ||
      EVP_PKEY_derive(kdf.get(), key.data(), &klen) != 1 || klen != key.size())
    return Ossl("HKDF");
  return key;
}

std::string Base64(const Key32& k) {
  char out[4 * ((32 + 2) / 3) + 1];
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out), k.data(), int(k.size()));
  return std::string(out, size_t(n));
}

// Exactly the 44 characters Base64() writes for 32 bytes.
bool FromBase64(std::string_view text, Key32* out) {
  if (text.size() != 44) return false;
  unsigned char buf[33];
  if (EVP_DecodeBlock(buf, reinterpret_cast<const unsigned char*>(text.data()), int(text.size())) != 33)
    return false;
  std::copy(buf, buf + 32, out->begin());
  return Base64(*out) == text;  // canonical only
}

}  // namespace

bool ValidPeerName(std::string_view name) {
  if (name.empty() || name.size() > 64 || name[0] == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

Result<SecretBytes> HostIdentity::NewSecret() { return SecretBytes::Random(kHostKeySecretBytes); }

Result<HostIdentity> HostIdentity::FromSecret(SecretBytes secret) {
  if (secret.size() != kHostKeySecretBytes)
    return Status(Code::kInvalidArgument, "host migration keys are " + std::to_string(secret.size()) +
                                              " bytes, not " + std::to_string(kHostKeySecretBytes));
  ASSIGN_OR_RETURN(Pkey sign, PrivateKey(EVP_PKEY_ED25519, secret.data()));
  ASSIGN_OR_RETURN(Pkey kx, PrivateKey(EVP_PKEY_X25519, secret.data() + kPrivBytes));
  ASSIGN_OR_RETURN(Key32 sign_pub, PublicOf(sign.get()));
  ASSIGN_OR_RETURN(Key32 kx_pub, PublicOf(kx.get()));
  return HostIdentity(std::move(secret), sign_pub, kx_pub);
}

std::string HostIdentity::PublicLine() const {
  return std::string(kHostKeyLinePrefix) + Base64(sign_pub_) + " " + Base64(kx_pub_);
}

Result<Bytes> HostIdentity::SealExport(const PeerKey& to, const Uuid& uuid, const ExportBundle& bundle,
                                       ExportHeader* header) const {
  ExportFile f;
  ExportHeader& h = f.header;
  if (RAND_bytes(h.export_id.data(), int(h.export_id.size())) != 1) return Ossl("RAND_bytes");
  h.sender_sign_pub = sign_pub_;
  h.receiver_kx_pub = to.kx_pub;
  h.uuid = uuid;
  h.created = int64_t(::time(nullptr));
  ASSIGN_OR_RETURN(SecretBytes eph_priv, SecretBytes::Random(kPrivBytes));
  ASSIGN_OR_RETURN(Pkey eph, PrivateKey(EVP_PKEY_X25519, eph_priv.data()));
  ASSIGN_OR_RETURN(h.ephemeral_pub, PublicOf(eph.get()));
  ASSIGN_OR_RETURN(SecretBytes key, DeriveKey(eph_priv.data(), to.kx_pub, h.ephemeral_pub, to.kx_pub));
  SecretBytes plain(EncodeExportBundle(bundle));  // wiped on free: it holds the TPM's secrets
  ASSIGN_OR_RETURN(f.ciphertext, AeadSeal(key, EncodeExportHeader(h), plain.view()));
  ASSIGN_OR_RETURN(Pkey sign, PrivateKey(EVP_PKEY_ED25519, secret_.data()));
  const Bytes signed_part = EncodeExportSigned(f);
  MdCtx md(EVP_MD_CTX_new());
  size_t n = f.signature.size();
  if (!md || EVP_DigestSignInit(md.get(), nullptr, nullptr, nullptr, sign.get()) != 1 ||
      EVP_DigestSign(md.get(), f.signature.data(), &n, signed_part.data(), signed_part.size()) != 1 ||
      n != f.signature.size())
    return Ossl("Ed25519 signing");
  if (header) *header = h;
  return EncodeExportFile(f);
}

Result<HostIdentity::Opened> HostIdentity::OpenExport(const std::vector<PeerKey>& peers, ByteView file) const {
  ASSIGN_OR_RETURN(ExportFile f, ParseExportFile(file));
  const ExportHeader& h = f.header;
  auto peer = std::find_if(peers.begin(), peers.end(),
                           [&](const PeerKey& p) { return p.sign_pub == h.sender_sign_pub; });
  if (peer == peers.end())
    return Status(Code::kPermissionDenied, "export file is signed by host key " + Base64(h.sender_sign_pub) +
                                               ", which is not in the peers directory");
  Pkey verify(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, h.sender_sign_pub.data(),
                                          h.sender_sign_pub.size()));
  MdCtx md(EVP_MD_CTX_new());
  const Bytes signed_part = EncodeExportSigned(f);
  if (!verify || !md || EVP_DigestVerifyInit(md.get(), nullptr, nullptr, nullptr, verify.get()) != 1 ||
      EVP_DigestVerify(md.get(), f.signature.data(), f.signature.size(), signed_part.data(),
                       signed_part.size()) != 1)
    return Status(Code::kCorruption, "export file: the signature of " + peer->name +
                                         " does not verify (the file was altered or damaged)");
  if (h.receiver_kx_pub != kx_pub_)
    return Status(Code::kInvalidArgument, "export file from " + peer->name +
                                              " is encrypted to another host, not to this host's key");
  ASSIGN_OR_RETURN(SecretBytes key, DeriveKey(secret_.data() + kPrivBytes, h.ephemeral_pub, h.ephemeral_pub, kx_pub_));
  auto plain = AeadOpenSecret(key, EncodeExportHeader(h), f.ciphertext);
  if (!plain.ok()) return Status(Code::kCorruption, "export file from " + peer->name + " does not decrypt");
  ASSIGN_OR_RETURN(ExportBundle bundle, ParseExportBundle(plain->view()));
  return Opened{h, peer->name, std::move(bundle)};
}

Result<PeerKey> ParseHostKeyLine(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ' || line.back() == '\r' || line.back() == '\t'))
    line.remove_suffix(1);
  const std::string_view prefix = kHostKeyLinePrefix;
  PeerKey k;
  if (line.substr(0, prefix.size()) != prefix || line.size() != prefix.size() + 44 + 1 + 44 ||
      line[prefix.size() + 44] != ' ' || !FromBase64(line.substr(prefix.size(), 44), &k.sign_pub) ||
      !FromBase64(line.substr(prefix.size() + 45), &k.kx_pub))
    return Status(Code::kInvalidArgument,
                  "not a host key line (want 'vtpmmgrd-host-key 1 <ed25519 base64> <x25519 base64>', "
                  "as 'vtpmctl host-key' prints it)");
  return k;
}

Result<std::vector<PeerKey>> LoadPeers(const std::string& dir) {
  std::vector<PeerKey> out;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) {
    if (errno == ENOENT) return out;
    return Status::FromErrno(errno, "reading the peers directory " + dir);
  }
  while (dirent* e = ::readdir(d.get())) {
    std::string name = e->d_name;
    if (name.empty() || name[0] == '.') continue;
    std::ifstream in(dir + "/" + name);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) return Status(Code::kInvalidArgument, "cannot read peer file " + dir + "/" + name);
    auto key = ParseHostKeyLine(text.str());
    if (!key.ok() || !ValidPeerName(name))
      return Status(Code::kInvalidArgument, "peer file " + dir + "/" + name + ": " +
                                                (key.ok() ? "the name is not a valid peer name" : key.status().message()));
    key->name = name;
    out.push_back(std::move(key).value());
  }
  std::sort(out.begin(), out.end(), [](const PeerKey& a, const PeerKey& b) { return a.name < b.name; });
  return out;
}

}  // namespace vtpm
