#include "backend/tpm12_wire.h"

namespace vtpm::tpm12 {

Bytes ErrorResponse(uint32_t rc) {
  Bytes b;
  b.reserve(kHeaderSize);
  AppendBe16(b, kTagRspCommand);
  AppendBe32(b, kHeaderSize);
  AppendBe32(b, rc);
  return b;
}

bool HasResponseTag(ByteView packet) {
  if (packet.size() < kHeaderSize) return false;
  const uint16_t tag = LoadBe16(packet.data());
  return tag >= kTagRspCommand && tag <= kTagRspAuth2Command;
}

uint32_t ParamSize(ByteView packet) {
  if (packet.size() < kHeaderSize) return 0;
  return LoadBe32(packet.data() + 2);
}

}  // namespace vtpm::tpm12
