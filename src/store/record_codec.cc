#include "store/record_codec.h"

#include <algorithm>

#include "store/byte_reader.h"

namespace vtpm {
namespace {

using Reader = ByteReader;

// Optional fields after a volatile copy's record.
constexpr uint8_t kTagHandle = 1;
constexpr uint8_t kTagWorkerAhead = 2;

Status Truncated(const char* what) {
  return Status(Code::kCorruption, std::string(what) + " is truncated or has trailing bytes");
}

}  // namespace

Bytes EncodeRecord(const CommandRecord& r) {
  Bytes b;
  b.reserve(14 + r.request_digest.size() + r.response.size());
  AppendBe64(b, r.sequence);
  AppendBe16(b, uint16_t(r.request_digest.size()));
  AppendBytes(b, r.request_digest);
  AppendBe32(b, uint32_t(r.response.size()));
  AppendBytes(b, r.response);
  return b;
}

Result<CommandRecord> DecodeRecord(ByteView b) {
  Reader in(b);
  CommandRecord r;
  uint16_t dlen = 0;
  uint32_t rlen = 0;
  ByteView digest, response;
  if (!in.U64(&r.sequence) || !in.U16(&dlen) || !in.Take(dlen, &digest) || !in.U32(&rlen) ||
      !in.Take(rlen, &response) || !in.done())
    return Truncated("command record");
  r.request_digest.assign(digest.begin(), digest.end());
  r.response.assign(response.begin(), response.end());
  return r;
}

Bytes EncodeVolatile(const VolatileCopy& v) {
  Bytes b;
  b.reserve(32 + v.blob.size());
  AppendBytes(b, v.boot_id);
  AppendBe32(b, v.domid);
  AppendBe64(b, v.sequence);
  AppendBe32(b, uint32_t(v.blob.size()));
  AppendBytes(b, v.blob);
  if (v.record || v.handle || v.worker_ahead) {
    Bytes rec = v.record ? EncodeRecord(*v.record) : Bytes();
    AppendBe32(b, uint32_t(rec.size()));
    AppendBytes(b, rec);
  }
  if (v.handle) {
    b.push_back(kTagHandle);
    AppendBytes(b, *v.handle);
  }
  if (v.worker_ahead) b.push_back(kTagWorkerAhead);
  return b;
}

Result<VolatileCopy> DecodeVolatile(ByteView b, uint64_t generation) {
  Reader in(b);
  VolatileCopy v;
  ByteView boot, blob;
  uint32_t blen = 0;
  if (!in.Take(16, &boot) || !in.U32(&v.domid) || !in.U64(&v.sequence) || !in.U32(&blen) ||
      !in.Take(blen, &blob))
    return Truncated("volatile copy");
  if (!in.done()) {
    uint32_t rlen = 0;
    ByteView rec, flag, handle;
    if (!in.U32(&rlen) || !in.Take(rlen, &rec)) return Truncated("volatile copy");
    if (rlen == 0 && in.done()) return Truncated("volatile copy");  // written only before a tag
    // Tags, each at most once and in this order.
    uint8_t last = 0;
    while (!in.done()) {
      if (!in.Take(1, &flag) || flag[0] <= last || flag[0] > kTagWorkerAhead) return Truncated("volatile copy");
      last = flag[0];
      if (last == kTagWorkerAhead) {
        v.worker_ahead = true;
        continue;
      }
      if (!in.Take(16, &handle)) return Truncated("volatile copy");
      v.handle.emplace();
      std::copy(handle.begin(), handle.end(), v.handle->begin());
    }
    if (rlen != 0) {
      auto r = DecodeRecord(rec);
      if (!r.ok()) return r.status().Annotate("volatile copy");
      if (r->sequence != v.sequence)
        return Status(Code::kCorruption, "volatile copy: its command record is for sequence " +
                                             std::to_string(r->sequence) + ", the copy for " +
                                             std::to_string(v.sequence));
      v.record = std::move(r).value();
    }
  }
  std::copy(boot.begin(), boot.end(), v.boot_id.begin());
  v.blob.assign(blob.begin(), blob.end());
  v.generation = generation;
  return v;
}

Bytes EncodeSuspend(const SuspendCapture& c) {
  Bytes b;
  b.push_back(1);
  AppendBytes(b, c.handle);
  AppendBe32(b, c.domid);
  AppendBe64(b, c.sequence);
  AppendBe64(b, uint64_t(c.captured_at));
  return b;
}

Result<SuspendCapture> DecodeSuspend(ByteView b) {
  Reader in(b);
  SuspendCapture c;
  ByteView version, handle;
  uint64_t at = 0;
  if (!in.Take(1, &version)) return Truncated("suspend capture");
  if (version[0] != 1)
    return Status(Code::kFailedPrecondition,
                  "suspend capture has format " + std::to_string(version[0]) + ", written by a newer vtpmmgrd");
  if (!in.Take(16, &handle) || !in.U32(&c.domid) || !in.U64(&c.sequence) || !in.U64(&at) || !in.done())
    return Truncated("suspend capture");
  std::copy(handle.begin(), handle.end(), c.handle.begin());
  c.captured_at = int64_t(at);
  return c;
}

Bytes EncodeResponded(const RespondedMark& m) {
  Bytes b;
  AppendBytes(b, m.boot_id);
  AppendBe32(b, m.domid);
  AppendBe64(b, m.sequence);
  return b;
}

Result<RespondedMark> DecodeResponded(ByteView b) {
  Reader in(b);
  RespondedMark m;
  ByteView boot;
  if (!in.Take(16, &boot) || !in.U32(&m.domid) || !in.U64(&m.sequence) || !in.done())
    return Truncated("responded mark");
  std::copy(boot.begin(), boot.end(), m.boot_id.begin());
  return m;
}

}  // namespace vtpm
