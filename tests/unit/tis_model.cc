#include "tis_model.h"

#include <algorithm>

namespace vtpm::testing {

using namespace vtpm::tis;

namespace {

constexpr size_t kBuffer = 4096;
constexpr uint8_t kNoData = 0xff;  // what an empty FIFO reads

class Proxy final : public Registers {
 public:
  explicit Proxy(TisModel& m) : m_(m) {}
  uint8_t Read8(uint32_t o) override { return m_.Read8(o); }
  uint32_t Read32(uint32_t o) override { return m_.Read32(o); }
  void Write8(uint32_t o, uint8_t v) override { m_.Write8(o, v); }
  void Write32(uint32_t o, uint32_t v) override { m_.Write32(o, v); }

 private:
  TisModel& m_;
};

}  // namespace

TisModel::TisModel(Backend backend, Behavior behavior) : backend_(std::move(backend)), b_(std::move(behavior)) {
  for (auto& l : loc_) l.sts = b_.family;
  if (b_.firmware_active) SetActive(*b_.firmware_active);
}

std::unique_ptr<Registers> TisModel::Window() { return std::make_unique<Proxy>(*this); }

void TisModel::SetActive(int l) {
  if (active_ >= 0 && active_ != l) loc_[active_].access &= uint8_t(~(kAccessActiveLocality | kAccessRequestUse));
  active_ = l;
  off_ = 0;
  if (l >= 0) {
    loc_[l].access |= kAccessActiveLocality;
    loc_[l].access &= uint8_t(~kAccessRequestUse);
  }
}

size_t TisModel::ResponseLength() const {
  if (b_.response_length) return std::min(*b_.response_length, kBuffer);
  return std::min<size_t>(LoadBe32(buf_.data() + 2), kBuffer);
}

uint32_t TisModel::ReadSts(uint8_t l) {
  if (active_ != l) return 0xffffffffu;
  Locality& s = loc_[l];
  if (s.state == State::kExecution && --exec_left_ <= 0) {
    s.state = State::kCompletion;
    s.sts = b_.family | kStsValid | kStsDataAvail;
    off_ = 0;
  }
  size_t avail = (s.sts & kStsDataAvail) ? ResponseLength() - std::min(off_, ResponseLength()) : kBuffer - off_;
  size_t burst = std::min<size_t>(avail, b_.max_burst);
  if (b_.burst_stall_every > 0 && ++sts_reads_ % b_.burst_stall_every == 0) burst = 0;
  burst_left_ = long(burst);
  burst_run_ = 0;
  return s.sts | uint32_t(burst) << 8;
}

uint8_t TisModel::ReadFifoByte(uint8_t l) {
  Locality& s = loc_[l];
  if (active_ != l || s.state != State::kCompletion || !(s.sts & kStsDataAvail)) return kNoData;
  if (--burst_left_ < 0) ++burst_violations_;
  largest_burst_used_ = std::max(largest_burst_used_, ++burst_run_);
  uint8_t v = buf_[off_++];
  if (off_ >= ResponseLength()) s.sts = b_.family | kStsValid;  // last byte read
  return v;
}

uint8_t TisModel::Read8(uint32_t offset) {
  uint8_t l = uint8_t(offset / kLocalityStride);
  uint32_t reg = offset % kLocalityStride;
  switch (reg) {
    case kAccess: {
      uint8_t v = loc_[l].access | kAccessEstablishment;  // not established (no DRTM)
      for (uint8_t o = 0; o < kLocalities; ++o)
        if (o != l && (loc_[o].access & kAccessRequestUse)) v |= kAccessPendingRequest;
      return v;
    }
    case kDataFifo: return ReadFifoByte(l);
    case kRid: return 0x01;
    default: return uint8_t(Read32(offset & ~3u) >> (8 * (offset & 3)));
  }
}

uint32_t TisModel::Read32(uint32_t offset) {
  uint8_t l = uint8_t(offset / kLocalityStride);
  switch (offset % kLocalityStride) {
    case kAccess: return Read8(offset);
    case kIntEnable: return 0x00000008;
    case kIntfCapability: return 0x30000697;  // what QEMU's TPM 2.0 TIS reports
    case kSts: return ReadSts(l);
    case kDataFifo: {
      uint32_t v = 0;
      for (int i = 0; i < 4; ++i) v |= uint32_t(ReadFifoByte(l)) << (8 * i);
      return v;
    }
    case kInterfaceId: return b_.interface_id;
    case kDidVid: return b_.did_vid;
    case kRid: return 0x01;
    default: return 0xffffffffu;
  }
}

void TisModel::WriteAccess(uint8_t l, uint8_t v) {
  if (v & kAccessActiveLocality) {
    if (active_ == l) {  // relinquish: the highest pending request takes over
      int next = -1;
      for (int o = kLocalities - 1; o >= 0; --o)
        if (loc_[o].access & kAccessRequestUse) { next = o; break; }
      loc_[l].access &= uint8_t(~kAccessActiveLocality);
      active_ = -1;
      if (next >= 0) SetActive(next);
    } else {
      loc_[l].access &= uint8_t(~kAccessRequestUse);  // withdraw a pending request
    }
  }
  if (v & kAccessBeenSeized) loc_[l].access &= uint8_t(~kAccessBeenSeized);
  if (v & kAccessRequestUse) {
    ++request_use_writes_;
    if (active_ < 0) SetActive(l);
    else if (active_ != l) loc_[l].access |= kAccessRequestUse;
  }
}

void TisModel::Execute(uint8_t l) {
  ++commands_;
  command_localities_.push_back(l);
  auto r = backend_(l, ByteView(buf_.data(), off_));
  Bytes rsp = r.ok() ? std::move(r).value() : Bytes{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01};  // TPM_RC_FAILURE
  if (b_.rewrite_response) b_.rewrite_response(rsp);
  rsp.resize(std::min(rsp.size(), kBuffer));
  std::fill(buf_.begin(), buf_.end(), 0);
  std::copy(rsp.begin(), rsp.end(), buf_.begin());
  loc_[l].state = State::kExecution;
  loc_[l].sts = b_.family | kStsValid;
  exec_left_ = std::max(1, b_.exec_polls);
}

void TisModel::WriteSts(uint8_t l, uint32_t v) {
  if (active_ != l) return;
  Locality& s = loc_[l];
  if ((v & kStsCommandCancel) && s.state == State::kExecution) ++cancels_;
  v &= kStsCommandReady | kStsGo | kStsResponseRetry;
  if (v == kStsCommandReady) {
    if (b_.never_ready) return;
    switch (s.state) {
      case State::kReady: off_ = 0; break;
      case State::kIdle:
      case State::kReception:
      case State::kExecution:  // abort
      case State::kCompletion:
        off_ = 0;
        s.state = State::kReady;
        s.sts = b_.family | kStsCommandReady;
        break;
    }
  } else if (v == kStsGo) {
    if (s.state == State::kReception && !(s.sts & kStsExpect)) Execute(l);
  } else if (v == kStsResponseRetry && s.state == State::kCompletion) {
    off_ = 0;
    s.sts = b_.family | kStsValid | kStsDataAvail;
  }
}

void TisModel::WriteFifoByte(uint8_t l, uint8_t v) {
  Locality& s = loc_[l];
  if (active_ != l || (s.state != State::kReady && s.state != State::kReception)) return;  // dropped
  if (--burst_left_ < 0) ++burst_violations_;
  largest_burst_used_ = std::max(largest_burst_used_, ++burst_run_);
  if (s.state == State::kReady) {
    s.state = State::kReception;
    s.sts = b_.family | kStsExpect | kStsValid;
  }
  if (!(s.sts & kStsExpect)) return;  // more bytes than the header said: dropped
  if (off_ >= kBuffer) {
    s.sts = b_.family | kStsValid;
    return;
  }
  buf_[off_++] = v;
  if (off_ >= 6) {  // the size field is in
    size_t want = LoadBe32(buf_.data() + 2);
    s.sts = b_.family | kStsValid | (want > off_ ? kStsExpect : 0);
  }
}

void TisModel::Write8(uint32_t offset, uint8_t value) {
  uint8_t l = uint8_t(offset / kLocalityStride);
  if (l == 4) return;  // locality 4 is the CPU's
  uint32_t reg = offset % kLocalityStride;
  if (reg == kAccess) WriteAccess(l, value);
  else if (reg >= kSts && reg < kSts + 4) WriteSts(l, uint32_t(value) << (8 * (reg - kSts)));
  else if (reg == kDataFifo) WriteFifoByte(l, value);
}

void TisModel::Write32(uint32_t offset, uint32_t value) {
  uint8_t l = uint8_t(offset / kLocalityStride);
  if (l == 4) return;
  uint32_t reg = offset % kLocalityStride;
  if (reg == kAccess) WriteAccess(l, uint8_t(value));
  else if (reg == kSts) WriteSts(l, value);
  else if (reg == kDataFifo)
    for (int i = 0; i < 4; ++i) WriteFifoByte(l, uint8_t(value >> (8 * i)));
}

}  // namespace vtpm::testing
