// Migration between hosts (design §6d): this host's migration identity, the
// trusted peers, and sealing / opening export files (store/export_codec.h).
//
// Identity: an Ed25519 signing key and an X25519 key-agreement key, both
// derived from 64 random bytes kept sealed by the store's master key
// (Store::HostKeys). An export file is encrypted to the receiver's X25519
// key (ephemeral X25519, HKDF-SHA256, AES-256-GCM with the header as AAD)
// and signed by the sender's Ed25519 key over header and ciphertext.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "store/export_codec.h"
#include "store/secret_bytes.h"

namespace vtpm {

inline constexpr size_t kHostKeySecretBytes = 64;  // Ed25519 private | X25519 private
inline constexpr char kHostKeyLinePrefix[] = "vtpmmgrd-host-key 1 ";

// A host's public migration identity; `name` is its file's name in the peers directory.
struct PeerKey {
  std::string name;
  Key32 sign_pub{};  // Ed25519
  Key32 kx_pub{};    // X25519
};

class HostIdentity {
 public:
  // 64 fresh random bytes.
  static Result<SecretBytes> NewSecret();
  // kInvalidArgument unless `secret` is 64 bytes.
  static Result<HostIdentity> FromSecret(SecretBytes secret);

  const SecretBytes& secret() const { return secret_; }
  const Key32& sign_pub() const { return sign_pub_; }
  const Key32& kx_pub() const { return kx_pub_; }
  // "vtpmmgrd-host-key 1 <ed25519 pub base64> <x25519 pub base64>"
  std::string PublicLine() const;

  // Seals `bundle` for `to` as a complete export file; `*header` gets the
  // header written (export id, time).
  Result<Bytes> SealExport(const PeerKey& to, const Uuid& uuid, const ExportBundle& bundle,
                           ExportHeader* header) const;

  struct Opened {
    ExportHeader header;
    std::string peer;  // the sender's name in the peers directory
    ExportBundle bundle;
  };
  // Parses, checks the sender is in `peers` (kPermissionDenied otherwise),
  // verifies the signature, checks the file is for this host, decrypts and
  // parses the bundle. Altered bytes fail with kCorruption.
  Result<Opened> OpenExport(const std::vector<PeerKey>& peers, ByteView file) const;

 private:
  HostIdentity(SecretBytes secret, Key32 sign_pub, Key32 kx_pub)
      : secret_(std::move(secret)), sign_pub_(sign_pub), kx_pub_(kx_pub) {}
  SecretBytes secret_;
  Key32 sign_pub_{}, kx_pub_{};
};

// Parses one host-key line (trailing whitespace ignored); `name` is left empty.
Result<PeerKey> ParseHostKeyLine(std::string_view line);
// Every file in `dir` not starting with '.', named by its file name; a
// missing directory is an empty list; a malformed file is an error naming it.
Result<std::vector<PeerKey>> LoadPeers(const std::string& dir);
// A peer name: 1-64 characters of [A-Za-z0-9._-], not starting with '.'.
bool ValidPeerName(std::string_view name);

}  // namespace vtpm
