// Plaintext layouts of the command record and the volatile copy (both are
// sealed in an Envelope before they reach disk). Decoders validate every
// length and reject trailing bytes.
//
//   record:   sequence u64 | digest_len u16 | digest | response_len u32 | response
//   volatile: boot_id(16) | domid u32 | sequence u64 | blob_len u32 | blob
//             [ record_len u32 | record                  ]  present iff the copy carries
//                                                            a record or a handle;
//                                                            record_len 0 = no record
//             [ 1 u8 | handle(16)                         ]  present iff written with
//                                                            the domain handle known
//             [ 2 u8                                      ]  present iff the worker
//                                                            may be ahead (worker_ahead)
//             (copies written before these fields had none)
//   responded mark: boot_id(16) | domid u32 | sequence u64
//   suspend capture: version u8 (1) | handle(16) | domid u32 | sequence u64 | captured_at i64
#pragma once

#include "common/bytes.h"
#include "common/status.h"
#include "store/store.h"

namespace vtpm {

Bytes EncodeRecord(const CommandRecord& r);  // `delivered` is kept outside
Result<CommandRecord> DecodeRecord(ByteView b);

Bytes EncodeVolatile(const VolatileCopy& v);  // `generation` travels in the envelope
Result<VolatileCopy> DecodeVolatile(ByteView b, uint64_t generation);

Bytes EncodeSuspend(const SuspendCapture& c);
Result<SuspendCapture> DecodeSuspend(ByteView b);

Bytes EncodeResponded(const RespondedMark& m);
Result<RespondedMark> DecodeResponded(ByteView b);

}  // namespace vtpm
