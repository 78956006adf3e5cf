#include "store/envelope.h"

#include <cstring>

#include "store/aead.h"

namespace vtpm {
namespace {

constexpr uint8_t kMagic[4] = {'V', 'T', 'P', 'E'};

bool KnownKind(uint8_t k) {
  switch (SealedKind(k)) {
    case SealedKind::kPermanent: case SealedKind::kSavestate: case SealedKind::kVolatile:
    case SealedKind::kDataKey: case SealedKind::kRecord: case SealedKind::kVolatileFile:
    case SealedKind::kKeyCheck: case SealedKind::kSuspend: case SealedKind::kHostKeys:
      return true;
  }
  return false;
}

Bytes Aad(const Uuid& uuid, SealedKind kind, uint64_t generation) {
  static constexpr char kLabel[] = "vtpmmgrd sealed item";
  Bytes aad(kLabel, kLabel + sizeof kLabel);  // includes the NUL separator
  aad.push_back(kEnvelopeFormat);
  AppendBytes(aad, uuid.bytes);
  aad.push_back(uint8_t(kind));
  AppendBe64(aad, generation);
  return aad;
}

Result<EnvelopeView> ParseExpected(ByteView stored, SealedKind kind) {
  ASSIGN_OR_RETURN(EnvelopeView v, ParseEnvelope(stored));
  if (v.kind != kind)
    return Status(Code::kCorruption, std::string("holds a ") + SealedKindName(v.kind) + " where a " +
                                         SealedKindName(kind) + " belongs");
  return v;
}

}  // namespace

const char* SealedKindName(SealedKind k) {
  switch (k) {
    case SealedKind::kPermanent: return "permanent blob";
    case SealedKind::kSavestate: return "savestate blob";
    case SealedKind::kVolatile: return "volatile blob";
    case SealedKind::kDataKey: return "data key";
    case SealedKind::kRecord: return "command record";
    case SealedKind::kVolatileFile: return "volatile copy";
    case SealedKind::kKeyCheck: return "master key check";
    case SealedKind::kSuspend: return "suspend capture";
    case SealedKind::kHostKeys: return "host migration keys";
  }
  return "unknown item";
}

Result<EnvelopeView> ParseEnvelope(ByteView stored) {
  if (stored.size() < kEnvelopeHeaderBytes + kAeadOverhead)
    return Status(Code::kCorruption, "sealed item is " + std::to_string(stored.size()) +
                                         " bytes, shorter than its header");
  if (std::memcmp(stored.data(), kMagic, sizeof kMagic) != 0)
    return Status(Code::kCorruption, "sealed item has a bad magic (not written by vtpmmgrd)");
  EnvelopeView v;
  v.format = stored[4];
  if (v.format > kEnvelopeFormat)
    return Status(Code::kFailedPrecondition,
                  "sealed item has format " + std::to_string(v.format) + " (written by a newer vtpmmgrd), this one reads up to " +
                      std::to_string(kEnvelopeFormat) + ": upgrade vtpmmgrd");
  if (v.format == 0) return Status(Code::kCorruption, "sealed item has format 0");
  if (!KnownKind(stored[5]))
    return Status(Code::kCorruption, "sealed item has unknown kind " + std::to_string(stored[5]));
  v.kind = SealedKind(stored[5]);
  v.generation = LoadBe64(stored.data() + 6);
  v.sealed = stored.subspan(kEnvelopeHeaderBytes);
  return v;
}

Result<Bytes> SealEnvelope(const SecretBytes& key, const Uuid& uuid, SealedKind kind,
                           uint64_t generation, ByteView plaintext) {
  ASSIGN_OR_RETURN(Bytes sealed, AeadSeal(key, Aad(uuid, kind, generation), plaintext));
  Bytes out(kMagic, kMagic + sizeof kMagic);
  out.reserve(kEnvelopeHeaderBytes + sealed.size());
  out.push_back(kEnvelopeFormat);
  out.push_back(uint8_t(kind));
  AppendBe64(out, generation);
  AppendBytes(out, sealed);
  return out;
}

Result<Bytes> OpenEnvelope(const SecretBytes& key, const Uuid& uuid, SealedKind kind,
                           ByteView stored, uint64_t* generation) {
  ASSIGN_OR_RETURN(EnvelopeView v, ParseExpected(stored, kind));
  ASSIGN_OR_RETURN(Bytes plain, AeadOpen(key, Aad(uuid, kind, v.generation), v.sealed));
  if (generation) *generation = v.generation;
  return plain;
}

Result<SecretBytes> OpenEnvelopeSecret(const SecretBytes& key, const Uuid& uuid, SealedKind kind,
                                       ByteView stored) {
  ASSIGN_OR_RETURN(EnvelopeView v, ParseExpected(stored, kind));
  return AeadOpenSecret(key, Aad(uuid, kind, v.generation), v.sealed);
}

}  // namespace vtpm
