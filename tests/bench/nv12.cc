#include "bench/nv12.h"

namespace vtpm::bench {
namespace {

constexpr uint16_t kTagRquCommand = 0x00C1;
constexpr uint32_t kOrdNvDefineSpace = 0xCC, kOrdNvWriteValue = 0xCD;
constexpr uint16_t kTagNvAttributes = 0x0017, kTagNvDataPublic = 0x0018;

// TPM_PCR_INFO_SHORT selecting no PCR, any locality.
void AppendNoPcrInfo(Bytes& b) {
  AppendBe16(b, 3);            // sizeOfSelect
  b.insert(b.end(), 3, 0x00);  // pcrSelect
  b.push_back(0x1F);           // localityAtRelease: all localities
  b.insert(b.end(), 20, 0x00); // digestAtRelease
}

Bytes Finish(Bytes body, uint32_t ordinal) {
  Bytes b;
  AppendBe16(b, kTagRquCommand);
  AppendBe32(b, uint32_t(10 + body.size()));
  AppendBe32(b, ordinal);
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

}  // namespace

Bytes NvDefineSpaceNoAuth(uint32_t index, uint32_t size, uint32_t attributes) {
  Bytes p;
  AppendBe16(p, kTagNvDataPublic);
  AppendBe32(p, index);
  AppendNoPcrInfo(p);  // pcrInfoRead
  AppendNoPcrInfo(p);  // pcrInfoWrite
  AppendBe16(p, kTagNvAttributes);
  AppendBe32(p, attributes);
  p.push_back(0);  // bReadSTClear
  p.push_back(0);  // bWriteSTClear
  p.push_back(0);  // bWriteDefine
  AppendBe32(p, size);
  p.insert(p.end(), 20, 0x00);  // encAuth
  return Finish(std::move(p), kOrdNvDefineSpace);
}

Bytes NvWriteValue(uint32_t index, uint32_t offset, ByteView data) {
  Bytes p;
  AppendBe32(p, index);
  AppendBe32(p, offset);
  AppendBe32(p, uint32_t(data.size()));
  p.insert(p.end(), data.begin(), data.end());
  return Finish(std::move(p), kOrdNvWriteValue);
}

}  // namespace vtpm::bench
