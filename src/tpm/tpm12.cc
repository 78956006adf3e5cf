#include "tpm/tpm12.h"

#include <openssl/sha.h>

namespace vtpm::tpm12 {
namespace {

constexpr uint16_t kTagRquCommand = 0x00C1;

constexpr uint32_t kOrdPcrExtend = 0x14;
constexpr uint32_t kOrdPcrRead = 0x15;
constexpr uint32_t kOrdForceClear = 0x5D;
constexpr uint32_t kOrdGetCapability = 0x65;
constexpr uint32_t kOrdPhysicalEnable = 0x6F;
constexpr uint32_t kOrdPhysicalSetDeactivated = 0x72;
constexpr uint32_t kOrdCreateEndorsementKeyPair = 0x78;
constexpr uint32_t kOrdReadPubek = 0x7C;
constexpr uint32_t kOrdSaveState = 0x98;
constexpr uint32_t kOrdStartup = 0x99;
constexpr uint32_t kOrdNvDefineSpace = 0xCC;
constexpr uint32_t kOrdTscPhysicalPresence = 0x4000000A;

constexpr uint32_t kCapProperty = 0x05;
constexpr uint32_t kCapPropInputBuffer = 0x124;
constexpr uint32_t kCapFlag = 0x04;
constexpr uint32_t kCapFlagPermanent = 0x108;
constexpr uint32_t kNvIndexLock = 0xFFFFFFFF;

// Header with a placeholder size; Finish() patches paramSize.
Bytes Begin(uint32_t ordinal) {
  Bytes b;
  AppendBe16(b, kTagRquCommand);
  AppendBe32(b, 0);
  AppendBe32(b, ordinal);
  return b;
}

Bytes Finish(Bytes b) {
  StoreBe32(b.data() + 2, uint32_t(b.size()));
  return b;
}

void AppendPcrInfoShortNone(Bytes& b) {
  AppendBe16(b, 3);           // sizeOfSelect
  b.insert(b.end(), 3, 0);    // no PCR selected
  b.push_back(0x1F);          // localityAtRelease: any
  b.insert(b.end(), 20, 0);   // digestAtRelease
}

}  // namespace

Bytes Startup(uint16_t startup_type) {
  Bytes b = Begin(kOrdStartup);
  AppendBe16(b, startup_type);
  return Finish(std::move(b));
}

Bytes SaveState() { return Finish(Begin(kOrdSaveState)); }

Bytes PhysicalPresence(uint16_t bits) {
  Bytes b = Begin(kOrdTscPhysicalPresence);
  AppendBe16(b, bits);
  return Finish(std::move(b));
}

Bytes PhysicalEnable() { return Finish(Begin(kOrdPhysicalEnable)); }

Bytes PhysicalSetDeactivated(bool deactivated) {
  Bytes b = Begin(kOrdPhysicalSetDeactivated);
  b.push_back(deactivated ? 1 : 0);
  return Finish(std::move(b));
}

Bytes ForceClear() { return Finish(Begin(kOrdForceClear)); }

Bytes CreateEndorsementKeyPair(const std::array<uint8_t, 20>& nonce) {
  Bytes b = Begin(kOrdCreateEndorsementKeyPair);
  AppendBytes(b, nonce);
  AppendBe32(b, 0x00000001);  // TPM_ALG_RSA
  AppendBe16(b, 0x0003);      // TPM_ES_RSAESOAEP_SHA1_MGF1
  AppendBe16(b, 0x0001);      // TPM_SS_NONE
  AppendBe32(b, 12);          // parmSize: TPM_RSA_KEY_PARMS
  AppendBe32(b, 2048);        // keyLength
  AppendBe32(b, 2);           // numPrimes
  AppendBe32(b, 0);           // exponentSize: default 65537
  return Finish(std::move(b));
}

Bytes ReadPubek(const std::array<uint8_t, 20>& nonce) {
  Bytes b = Begin(kOrdReadPubek);
  AppendBytes(b, nonce);
  return Finish(std::move(b));
}

Bytes NvLock() {
  Bytes b = Begin(kOrdNvDefineSpace);
  AppendBe16(b, 0x0018);  // TPM_TAG_NV_DATA_PUBLIC
  AppendBe32(b, kNvIndexLock);
  AppendPcrInfoShortNone(b);
  AppendPcrInfoShortNone(b);
  AppendBe16(b, 0x0017);  // TPM_TAG_NV_ATTRIBUTES
  AppendBe32(b, 0);
  b.push_back(0);         // bReadSTClear
  b.push_back(0);         // bWriteSTClear
  b.push_back(0);         // bWriteDefine
  AppendBe32(b, 0);       // dataSize
  b.insert(b.end(), 20, 0);  // encAuth
  return Finish(std::move(b));
}

Bytes PcrRead(uint32_t index) {
  Bytes b = Begin(kOrdPcrRead);
  AppendBe32(b, index);
  return Finish(std::move(b));
}

Bytes PcrExtend(uint32_t index, const PcrValue& digest) {
  Bytes b = Begin(kOrdPcrExtend);
  AppendBe32(b, index);
  AppendBytes(b, digest);
  return Finish(std::move(b));
}

Bytes GetCapability(uint32_t capability, uint32_t sub_capability) {
  Bytes b = Begin(kOrdGetCapability);
  AppendBe32(b, capability);
  AppendBe32(b, 4);
  AppendBe32(b, sub_capability);
  return Finish(std::move(b));
}

Bytes GetCapabilityProperty(uint32_t property) { return GetCapability(kCapProperty, property); }

Bytes GetPermanentFlags() { return GetCapability(kCapFlag, kCapFlagPermanent); }

std::optional<PermanentFlags> PermanentFlagsFromResponse(ByteView response) {
  auto body = ResponseBody(response);
  // respSize, TPM_STRUCTURE_TAG, then one byte per flag.
  if (!body || body->size() < 4 + 2 + 16) return std::nullopt;
  const uint8_t* f = body->data() + 6;
  PermanentFlags p;
  p.disable = f[0];
  p.ownership = f[1];
  p.deactivated = f[2];
  p.read_pubek = f[3];
  p.pp_lifetime_lock = f[6];
  p.pp_hw_enable = f[7];
  p.pp_cmd_enable = f[8];
  p.cekp_used = f[9];
  p.nv_locked = f[15];
  return p;
}

std::optional<uint32_t> ResponseCode(ByteView response) {
  if (response.size() < kHeaderSize) return std::nullopt;
  return LoadBe32(response.data() + 6);
}

std::optional<ByteView> ResponseBody(ByteView response) {
  if (ResponseCode(response) != kSuccess) return std::nullopt;
  uint32_t size = LoadBe32(response.data() + 2);
  if (size < kHeaderSize || size > response.size()) return std::nullopt;
  return response.subspan(kHeaderSize, size - kHeaderSize);
}

std::optional<Bytes> PubkeyFromEkResponse(ByteView response) {
  auto body = ResponseBody(response);
  if (!body || body->size() <= 20) return std::nullopt;
  return Bytes(body->begin(), body->end() - 20);
}

std::optional<PcrValue> PcrFromResponse(ByteView response) {
  auto body = ResponseBody(response);
  if (!body || body->size() != 20) return std::nullopt;
  PcrValue v;
  std::copy(body->begin(), body->end(), v.begin());
  return v;
}

Bytes FixupGuestResponse(ByteView command, Bytes response) {
  if (response.size() > kGuestBufferSize) return ErrorResponse(kSize);
  // GetCapability(TPM_CAP_PROPERTY, 4, TPM_CAP_PROP_INPUT_BUFFER): 22-byte command.
  if (command.size() == 22 && LoadBe32(command.data() + 6) == kOrdGetCapability &&
      LoadBe32(command.data() + 10) == kCapProperty && LoadBe32(command.data() + 14) == 4 &&
      LoadBe32(command.data() + 18) == kCapPropInputBuffer) {
    // Response: header, respSize = 4, the uint32 value.
    if (response.size() == kHeaderSize + 8 && ResponseCode(response) == kSuccess &&
        LoadBe32(response.data() + kHeaderSize) == 4) {
      StoreBe32(response.data() + kHeaderSize + 4, kGuestBufferSize);
    }
  }
  return response;
}

PcrValue ExtendedPcr(const PcrValue& old, const PcrValue& digest) {
  uint8_t buf[40];
  std::copy(old.begin(), old.end(), buf);
  std::copy(digest.begin(), digest.end(), buf + 20);
  PcrValue out;
  SHA1(buf, sizeof buf, out.data());
  return out;
}

}  // namespace vtpm::tpm12
