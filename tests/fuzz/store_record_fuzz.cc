// Fuzzes what the store reads back from disk: the envelope header, its
// authentication under a fixed key, and the command-record and
// suspend-capture plaintexts. Accepted ones must re-encode to the exact
// input bytes.
#include <cstdlib>

#include "store/envelope.h"
#include "store/record_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vtpm::ByteView in(data, size);
  auto rec = vtpm::DecodeRecord(in);
  if (rec.ok() && vtpm::EncodeRecord(*rec) != vtpm::Bytes(data, data + size)) abort();
  auto capture = vtpm::DecodeSuspend(in);
  if (capture.ok() && vtpm::EncodeSuspend(*capture) != vtpm::Bytes(data, data + size)) abort();

  auto env = vtpm::ParseEnvelope(in);
  if (env.ok() && env->sealed.size() + vtpm::kEnvelopeHeaderBytes != size) abort();
  static const vtpm::SecretBytes key(vtpm::ByteView(reinterpret_cast<const uint8_t*>(
                                                        "fuzz key fuzz key fuzz key 32 b!"), 32));
  vtpm::Uuid uuid;
  for (auto kind : {vtpm::SealedKind::kRecord, vtpm::SealedKind::kPermanent, vtpm::SealedKind::kDataKey,
                    vtpm::SealedKind::kSuspend}) {
    uint64_t gen = 0;
    auto plain = vtpm::OpenEnvelope(key, uuid, kind, in, &gen);
    if (plain.ok() && kind == vtpm::SealedKind::kRecord) (void)vtpm::DecodeRecord(*plain);
    if (plain.ok() && kind == vtpm::SealedKind::kSuspend) (void)vtpm::DecodeSuspend(*plain);
  }
  return 0;
}
