// Export file codec (design §6d): the bytes `vtpmctl export` writes and
// `vtpmctl import` reads. Pure functions, no key material, no I/O; the
// signature and encryption live in store/migration.h.
//
//   "VTPMEXP1" | header | ciphertext length u32be | ciphertext | signature(64)
//   header = version u8 (1) | export id(16) | sender Ed25519 pub(32)
//            | receiver X25519 pub(32) | uuid(16) | created i64be
//            | sender ephemeral X25519 pub(32)
//
// The header (from the magic on) is the AEAD's AAD; the Ed25519 signature
// covers everything before it. The ciphertext (nonce | ct | tag, store/aead.h)
// holds an ExportBundle:
//
//   version u8 (1) | tpm_version (u16be length, bytes) | created i64be
//   | auto_created u8 | ek_public (u32be length, bytes) | permanent (u32be, bytes)
//   | savestate, volatile, suspend capture: each flag u8 (0/1) [u32be length, bytes]
//
// Parsers refuse (kCorruption) anything short, long, unknown or out of range;
// whatever they accept re-encodes to the same bytes.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "common/bytes.h"
#include "common/status.h"
#include "common/uuid.h"
#include "store/store.h"

namespace vtpm {

inline constexpr char kExportMagic[] = "VTPMEXP1";  // 8 bytes, no NUL on disk
inline constexpr uint8_t kExportVersion = 1;
inline constexpr size_t kExportHeaderBytes = 8 + 1 + 16 + 32 + 32 + 16 + 8 + 32;
inline constexpr size_t kExportSignatureBytes = 64;
inline constexpr size_t kExportMaxBlob = 16u << 20;              // one libtpms blob
inline constexpr size_t kExportMaxCiphertext = 4 * kExportMaxBlob + 65536;
inline constexpr size_t kExportMaxFile = kExportHeaderBytes + 4 + kExportMaxCiphertext + kExportSignatureBytes;

using Key32 = std::array<uint8_t, 32>;
using ExportId = std::array<uint8_t, 16>;

struct ExportHeader {
  uint8_t version = kExportVersion;
  ExportId export_id{};
  Key32 sender_sign_pub{};     // Ed25519
  Key32 receiver_kx_pub{};     // X25519
  Uuid uuid;
  int64_t created = 0;         // unix seconds
  Key32 ephemeral_pub{};       // X25519
};

struct ExportFile {
  ExportHeader header;
  Bytes ciphertext;
  std::array<uint8_t, kExportSignatureBytes> signature{};
};

struct ExportBundle {
  std::string tpm_version = "1.2";
  int64_t created = 0;
  bool auto_created = false;
  Bytes ek_public;
  Bytes permanent;
  std::optional<Bytes> savestate;
  std::optional<Bytes> volatile_blob;
  std::optional<SuspendCapture> suspend;
};

// The magic and header: the AAD, and the start of the signed bytes.
Bytes EncodeExportHeader(const ExportHeader& h);
// Magic, header, ciphertext length and ciphertext: what the signature covers.
Bytes EncodeExportSigned(const ExportFile& f);
Bytes EncodeExportFile(const ExportFile& f);
Result<ExportFile> ParseExportFile(ByteView file);

Bytes EncodeExportBundle(const ExportBundle& b);
Result<ExportBundle> ParseExportBundle(ByteView plain);

// Lower-case hex of an export id (names it in messages and in the store).
std::string ExportIdHex(const ExportId& id);

}  // namespace vtpm
