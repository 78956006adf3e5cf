// Fuzzes the runtime directory's files: the volatile copy (envelope parsing
// and authentication, and the plaintext decoder with its optional command
// record) and the responded mark. Accepted inputs must re-encode to the
// exact input bytes.
#include <cstdlib>

#include "store/envelope.h"
#include "store/record_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vtpm::ByteView in(data, size);
  auto v = vtpm::DecodeVolatile(in, 7);
  if (v.ok() && (v->generation != 7 || vtpm::EncodeVolatile(*v) != vtpm::Bytes(data, data + size))) abort();
  auto mark = vtpm::DecodeResponded(in);
  if (mark.ok() && vtpm::EncodeResponded(*mark) != vtpm::Bytes(data, data + size)) abort();

  static const vtpm::SecretBytes key(vtpm::ByteView(reinterpret_cast<const uint8_t*>(
                                                        "volatile fuzz key, 32 bytes long"), 32));
  vtpm::Uuid uuid;
  uint64_t gen = 0;
  auto plain = vtpm::OpenEnvelope(key, uuid, vtpm::SealedKind::kVolatileFile, in, &gen);
  if (plain.ok()) (void)vtpm::DecodeVolatile(*plain, gen);
  return 0;
}
