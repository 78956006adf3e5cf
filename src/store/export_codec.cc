#include "store/export_codec.h"

#include <cstring>

#include "store/byte_reader.h"
#include "store/record_codec.h"

namespace vtpm {
namespace {

constexpr size_t kMagicBytes = 8;

Status Bad(const std::string& what) { return Status(Code::kCorruption, "export file: " + what); }

// u32be length (at most `max`) and that many bytes.
bool ReadBlob(ByteReader& r, size_t max, Bytes* out) {
  uint32_t n = 0;
  ByteView b;
  if (!r.U32(&n) || n > max || !r.Take(n, &b)) return false;
  out->assign(b.begin(), b.end());
  return true;
}

// flag u8 then, when 1, a blob; any other flag is refused.
bool ReadOptional(ByteReader& r, size_t max, std::optional<Bytes>* out) {
  uint8_t flag = 0;
  if (!r.U8(&flag) || flag > 1) return false;
  if (flag == 0) return true;
  Bytes b;
  if (!ReadBlob(r, max, &b)) return false;
  *out = std::move(b);
  return true;
}

bool ReadI64(ByteReader& r, int64_t* out) {
  uint64_t v = 0;
  if (!r.U64(&v)) return false;
  *out = int64_t(v);
  return true;
}

void AppendBlob(Bytes& out, ByteView b) {
  AppendBe32(out, uint32_t(b.size()));
  AppendBytes(out, b);
}

void AppendOptional(Bytes& out, const std::optional<Bytes>& b) {
  out.push_back(b ? 1 : 0);
  if (b) AppendBlob(out, *b);
}

}  // namespace

std::string ExportIdHex(const ExportId& id) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (uint8_t c : id) {
    s.push_back(kDigits[c >> 4]);
    s.push_back(kDigits[c & 15]);
  }
  return s;
}

Bytes EncodeExportHeader(const ExportHeader& h) {
  Bytes out(kExportMagic, kExportMagic + kMagicBytes);
  out.push_back(h.version);
  AppendBytes(out, h.export_id);
  AppendBytes(out, h.sender_sign_pub);
  AppendBytes(out, h.receiver_kx_pub);
  AppendBytes(out, h.uuid.bytes);
  AppendBe64(out, uint64_t(h.created));
  AppendBytes(out, h.ephemeral_pub);
  return out;
}

Bytes EncodeExportSigned(const ExportFile& f) {
  Bytes out = EncodeExportHeader(f.header);
  AppendBlob(out, f.ciphertext);
  return out;
}

Bytes EncodeExportFile(const ExportFile& f) {
  Bytes out = EncodeExportSigned(f);
  AppendBytes(out, f.signature);
  return out;
}

Result<ExportFile> ParseExportFile(ByteView file) {
  if (file.size() > kExportMaxFile) return Bad("longer than any export");
  ByteReader r(file);
  ByteView magic;
  if (!r.Take(kMagicBytes, &magic) || std::memcmp(magic.data(), kExportMagic, kMagicBytes) != 0)
    return Bad("not an export file (no VTPMEXP1 magic)");
  ExportFile f;
  ExportHeader& h = f.header;
  if (!r.U8(&h.version)) return Bad("truncated header");
  if (h.version != kExportVersion)
    return Status(Code::kFailedPrecondition, "export file: format version " + std::to_string(h.version) +
                                                 " is not known to this vtpmmgrd (it reads version 1)");
  if (!r.Array(&h.export_id) || !r.Array(&h.sender_sign_pub) || !r.Array(&h.receiver_kx_pub) ||
      !r.Array(&h.uuid.bytes) || !ReadI64(r, &h.created) || !r.Array(&h.ephemeral_pub))
    return Bad("truncated header");
  if (h.uuid.IsNil()) return Bad("the nil uuid names no instance");
  if (!ReadBlob(r, kExportMaxCiphertext, &f.ciphertext)) return Bad("truncated or oversized ciphertext");
  if (!r.Array(&f.signature)) return Bad("truncated signature");
  if (!r.done()) return Bad("trailing bytes after the signature");
  return f;
}

Bytes EncodeExportBundle(const ExportBundle& b) {
  Bytes out;
  out.push_back(kExportVersion);
  AppendBe16(out, uint16_t(b.tpm_version.size()));
  out.insert(out.end(), b.tpm_version.begin(), b.tpm_version.end());
  AppendBe64(out, uint64_t(b.created));
  out.push_back(b.auto_created ? 1 : 0);
  AppendBlob(out, b.ek_public);
  AppendBlob(out, b.permanent);
  AppendOptional(out, b.savestate);
  AppendOptional(out, b.volatile_blob);
  std::optional<Bytes> capture;
  if (b.suspend) capture = EncodeSuspend(*b.suspend);
  AppendOptional(out, capture);
  return out;
}

Result<ExportBundle> ParseExportBundle(ByteView plain) {
  ByteReader r(plain);
  ExportBundle b;
  uint8_t version = 0, auto_created = 0;
  if (!r.U8(&version) || version != kExportVersion) return Bad("bundle of unknown version");
  ByteView len, text;
  if (!r.Take(2, &len) || !r.Take(LoadBe16(len.data()), &text)) return Bad("truncated bundle");
  b.tpm_version.assign(text.begin(), text.end());
  if (b.tpm_version != "1.2") return Bad("bundle holds TPM version '" + b.tpm_version + "', not 1.2");
  if (!ReadI64(r, &b.created) || !r.U8(&auto_created) || auto_created > 1) return Bad("malformed bundle");
  b.auto_created = auto_created == 1;
  if (!ReadBlob(r, kExportMaxBlob, &b.ek_public) || !ReadBlob(r, kExportMaxBlob, &b.permanent) || b.permanent.empty())
    return Bad("bundle without a permanent blob");
  std::optional<Bytes> capture;
  if (!ReadOptional(r, kExportMaxBlob, &b.savestate) || !ReadOptional(r, kExportMaxBlob, &b.volatile_blob) ||
      !ReadOptional(r, kExportMaxBlob, &capture))
    return Bad("malformed bundle blobs");
  if (capture) {
    auto c = DecodeSuspend(*capture);
    if (!c.ok()) return Bad("bundle's suspend capture: " + c.status().message());
    b.suspend = *c;
    if (!b.volatile_blob) return Bad("bundle's suspend capture comes without its volatile state");
  }
  if (!r.done()) return Bad("trailing bytes in the bundle");
  return b;
}

}  // namespace vtpm
