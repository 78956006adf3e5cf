#include "tpm/worker_protocol.h"

#include <openssl/evp.h>

namespace vtpm {
namespace {

constexpr uint8_t kHasPermanent = 1, kHasSavestate = 2, kHasVolatile = 4;
constexpr uint8_t kOpWrite = 0, kOpDelete = 1;
// A responded mark is 28 bytes (store/record_codec.h); room for a newer one.
constexpr uint32_t kMaxMark = 512;

Bytes BeginFrame(WorkerMsg type) {
  Bytes b;
  AppendBe32(b, 0);
  b.push_back(kProtocolVersion);
  b.push_back(uint8_t(type));
  return b;
}

Bytes FinishFrame(Bytes b) {
  StoreBe32(b.data(), uint32_t(b.size() - 4));
  return b;
}

void AppendString(Bytes& b, ByteView v) {
  AppendBe32(b, uint32_t(v.size()));
  AppendBytes(b, v);
}

ByteView View(const std::string& s) {
  return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

Status Malformed(const char* what) {
  return Status(Code::kCorruption, std::string("worker protocol: ") + what);
}

// Bounds-checked sequential reader over one body.
class Reader {
 public:
  explicit Reader(ByteView v) : v_(v) {}
  bool U8(uint8_t& out) {
    if (v_.size() - pos_ < 1) return false;
    out = v_[pos_++];
    return true;
  }
  bool U32(uint32_t& out) {
    if (v_.size() - pos_ < 4) return false;
    out = LoadBe32(v_.data() + pos_);
    pos_ += 4;
    return true;
  }
  bool String(Bytes& out, uint32_t max) {
    uint32_t n = 0;
    if (!U32(n) || n > max || v_.size() - pos_ < n) return false;
    out.assign(v_.begin() + long(pos_), v_.begin() + long(pos_ + n));
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == v_.size(); }

 private:
  ByteView v_;
  size_t pos_ = 0;
};

Result<WorkerMsg> ReadHeader(Reader& r) {
  uint8_t version = 0, type = 0;
  if (!r.U8(version) || !r.U8(type)) return Malformed("short header");
  if (version != kProtocolVersion) return Malformed("unsupported version");
  return WorkerMsg(type);
}

}  // namespace

Bytes EncodeRequest(const WorkerRequest& req) {
  Bytes b = BeginFrame(req.type);
  switch (req.type) {
    case WorkerMsg::kInit: {
      uint8_t mask = (req.permanent ? kHasPermanent : 0) | (req.savestate ? kHasSavestate : 0) |
                     (req.volatile_state ? kHasVolatile : 0);
      b.push_back(mask);
      for (const auto* blob : {&req.permanent, &req.savestate, &req.volatile_state}) {
        if (*blob) AppendString(b, **blob);
      }
      break;
    }
    case WorkerMsg::kExecute:
      b.push_back(req.locality);
      b.push_back(req.physical_presence ? 1 : 0);
      AppendString(b, req.command);
      break;
    case WorkerMsg::kRelease:
      AppendString(b, req.command);
      AppendString(b, req.mark);
      b.push_back(req.settled ? 1 : 0);
      break;
    case WorkerMsg::kAdopt:
      AppendString(b, req.nonce);
      break;
#ifdef VTPM_TEST_BUILD
    case WorkerMsg::kTestOpen:
      AppendString(b, View(req.path));
      break;
    case WorkerMsg::kTestIoctl:
      AppendBe32(b, req.ioctl_request);
      b.push_back(req.ioctl_target);
      break;
#endif
    default:
      break;
  }
  return FinishFrame(std::move(b));
}

Bytes EncodeReply(const WorkerReply& reply) {
  Bytes b = BeginFrame(reply.type);
  if (reply.type == WorkerMsg::kFailure) {
    AppendBe32(b, reply.code);
    AppendString(b, View(reply.message));
    return FinishFrame(std::move(b));
  }
  if (reply.type == WorkerMsg::kAdopted) {
    AppendString(b, reply.nonce);
    AppendString(b, reply.state_digest);
    b.push_back(reply.adopted_flags);
    return FinishFrame(std::move(b));
  }
  if (reply.type == WorkerMsg::kGuestRejected) {
    AppendBe32(b, reply.code);
    AppendBe32(b, reply.header_length);
    b.push_back(reply.nr_extra_pages);
    AppendString(b, View(reply.message));
    return FinishFrame(std::move(b));
  }
  if (reply.type == WorkerMsg::kGuestExecuted || reply.type == WorkerMsg::kGuestFound) {
    AppendString(b, reply.request);
    b.push_back(reply.locality);
    if (reply.type == WorkerMsg::kGuestFound) return FinishFrame(std::move(b));
  }
  AppendString(b, reply.response);
  b.push_back(uint8_t(reply.changes.size()));
  for (const auto& c : reply.changes) {
    b.push_back(uint8_t(c.kind));
    b.push_back(c.data ? kOpWrite : kOpDelete);
    if (c.data) AppendString(b, *c.data);
  }
  AppendString(b, reply.volatile_state);
  return FinishFrame(std::move(b));
}

Result<WorkerRequest> DecodeRequest(ByteView body) {
  Reader r(body);
  ASSIGN_OR_RETURN(WorkerMsg type, ReadHeader(r));
  WorkerRequest req;
  req.type = type;
  switch (type) {
    case WorkerMsg::kInit: {
      uint8_t mask = 0;
      if (!r.U8(mask) || (mask & ~(kHasPermanent | kHasSavestate | kHasVolatile)))
        return Malformed("bad init mask");
      const std::pair<uint8_t, std::optional<Bytes>*> blobs[] = {
          {kHasPermanent, &req.permanent},
          {kHasSavestate, &req.savestate},
          {kHasVolatile, &req.volatile_state}};
      for (auto& [bit, dst] : blobs) {
        if (!(mask & bit)) continue;
        Bytes blob;
        if (!r.String(blob, kMaxBlobSize)) return Malformed("bad init blob");
        *dst = std::move(blob);
      }
      break;
    }
    case WorkerMsg::kExecute: {
      uint8_t pp = 0;
      if (!r.U8(req.locality) || !r.U8(pp) || pp > 1 || !r.String(req.command, kMaxTpmMessage))
        return Malformed("bad execute");
      req.physical_presence = pp == 1;
      break;
    }
    case WorkerMsg::kRelease: {
      uint8_t settled = 0;
      if (!r.String(req.command, kMaxTpmMessage) || !r.String(req.mark, kMaxMark) || !r.U8(settled) || settled > 1)
        return Malformed("bad release");
      req.settled = settled == 1;
      break;
    }
    case WorkerMsg::kRun:
    case WorkerMsg::kServe:
      break;
    case WorkerMsg::kAdopt:
      if (!r.String(req.nonce, kMaxNonce)) return Malformed("bad adopt");
      break;
#ifdef VTPM_TEST_BUILD
    case WorkerMsg::kTestOpen: {
      Bytes path;
      if (!r.String(path, 4096)) return Malformed("bad path");
      req.path.assign(path.begin(), path.end());
      break;
    }
    case WorkerMsg::kTestSyscall:
      break;
    case WorkerMsg::kTestIoctl:
      if (!r.U32(req.ioctl_request) || !r.U8(req.ioctl_target) || req.ioctl_target > 1)
        return Malformed("bad test ioctl");
      break;
#endif
    default:
      return Malformed("unknown request type");
  }
  if (!r.done()) return Malformed("trailing bytes");
  return req;
}

Result<WorkerReply> DecodeReply(ByteView body) {
  Reader r(body);
  ASSIGN_OR_RETURN(WorkerMsg type, ReadHeader(r));
  WorkerReply reply;
  reply.type = type;
  if (type == WorkerMsg::kFailure) {
    Bytes msg;
    if (!r.U32(reply.code) || !r.String(msg, 4096)) return Malformed("bad failure");
    reply.message.assign(msg.begin(), msg.end());
  } else if (type == WorkerMsg::kAdopted) {
    if (!r.String(reply.nonce, kMaxNonce) || !r.String(reply.state_digest, 32) || !r.U8(reply.adopted_flags) ||
        (reply.state_digest.size() != 0 && reply.state_digest.size() != 32) ||
        (reply.adopted_flags & ~(kAdoptedGuestFrameFollows | kAdoptedDeferred)))
      return Malformed("bad adopted");
  } else if (type == WorkerMsg::kGuestRejected) {
    Bytes msg;
    if (!r.U32(reply.code) || !r.U32(reply.header_length) || !r.U8(reply.nr_extra_pages) || !r.String(msg, 256))
      return Malformed("bad guest rejection");
    reply.message.assign(msg.begin(), msg.end());
  } else if (type == WorkerMsg::kGuestFound) {
    if (!r.String(reply.request, kMaxTpmMessage) || !r.U8(reply.locality)) return Malformed("bad guest found");
  } else if (type == WorkerMsg::kReply || type == WorkerMsg::kGuestExecuted) {
    if (type == WorkerMsg::kGuestExecuted && (!r.String(reply.request, kMaxTpmMessage) || !r.U8(reply.locality)))
      return Malformed("bad guest request");
    uint8_t count = 0;
    if (!r.String(reply.response, kMaxTpmMessage) || !r.U8(count) || count > kMaxBlobChanges)
      return Malformed("bad reply");
    for (uint8_t i = 0; i < count; ++i) {
      uint8_t kind = 0, op = 0;
      if (!r.U8(kind) || !r.U8(op)) return Malformed("short blob change");
      if (kind < uint8_t(BlobKind::kPermanent) || kind > uint8_t(BlobKind::kVolatile) ||
          op > kOpDelete)
        return Malformed("bad blob change");
      BlobChange c{BlobKind(kind), std::nullopt};
      if (op == kOpWrite) {
        Bytes data;
        if (!r.String(data, kMaxBlobSize)) return Malformed("bad blob data");
        c.data = std::move(data);
      }
      reply.changes.push_back(std::move(c));
    }
    if (!r.String(reply.volatile_state, kMaxBlobSize)) return Malformed("bad volatile state");
  } else {
    return Malformed("unknown reply type");
  }
  if (!r.done()) return Malformed("trailing bytes");
  return reply;
}

Bytes TpmStateDigest(const std::optional<Bytes>& permanent, const std::optional<Bytes>& savestate,
                     const std::optional<Bytes>& volatile_state) {
  Bytes in;
  for (const auto* blob : {&permanent, &savestate, &volatile_state}) {
    in.push_back(blob->has_value() ? 1 : 0);
    AppendString(in, blob->has_value() ? ByteView(**blob) : ByteView());
  }
  Bytes out(32);
  unsigned int len = 0;
  EVP_Digest(in.data(), in.size(), out.data(), &len, EVP_sha256(), nullptr);
  out.resize(len);
  return out;
}

Bytes RequestDigest(ByteView data) {
  Bytes out(32);
  unsigned int len = 0;
  // Fetched once: EVP_sha256() makes every digest fetch it from the provider again.
  static const EVP_MD* const md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched ? fetched : EVP_sha256();
  }();
  EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr);
  out.resize(len);
  return out;
}

Result<size_t> FrameReader::Missing() const {
  if (buf_.size() < 4) return 4 - buf_.size();
  uint32_t len = LoadBe32(buf_.data());
  if (len > kMaxFrameBody) return Status(Code::kCorruption, "worker protocol: frame too long");
  return buf_.size() - 4 < len ? size_t(len) - (buf_.size() - 4) : size_t(0);
}

Result<std::optional<Bytes>> FrameReader::Next() {
  ASSIGN_OR_RETURN(size_t missing, Missing());
  if (buf_.size() < 4 || missing > 0) return std::optional<Bytes>();
  uint32_t len = LoadBe32(buf_.data());
  Bytes body(buf_.begin() + 4, buf_.begin() + 4 + len);
  buf_.erase(buf_.begin(), buf_.begin() + 4 + len);
  return std::optional<Bytes>(std::move(body));
}

}  // namespace vtpm
