#include "tpm/host/tis_tcti.h"

#include <tss2/tss2_tcti.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "common/log.h"
#include "tpm/host/tis_frame.h"

namespace vtpm::tis {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

struct Tcti::Context {
  TSS2_TCTI_CONTEXT_COMMON_V2 common;
  Tcti* self;
};

namespace {

constexpr uint64_t kMagic = 0x7674706d74697331ull;  // "vtpmtis1"
constexpr uint32_t kInterfaceTypeMask = 0xf;           // INTERFACE_ID[3:0]
constexpr uint32_t kInterfaceTypeCrb = 0x1;

std::string Hex(uint32_t v, int width = 0) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%0*x", width, v);
  return b;
}

// Polls with a short spin, then sleeps growing to 1 ms.
class Backoff {
 public:
  void Pause() {
    if (++n_ <= 8) return;
    std::this_thread::sleep_for(delay_);
    delay_ = std::min(delay_ * 2, std::chrono::microseconds(1000));
  }

 private:
  int n_ = 0;
  std::chrono::microseconds delay_{20};
};

Tcti* Self(TSS2_TCTI_CONTEXT* c) {
  auto* ctx = reinterpret_cast<Tcti::Context*>(c);
  if (!ctx || ctx->common.v1.magic != kMagic) return nullptr;
  return ctx->self;
}

TSS2_RC RcFor(const Status& s) {
  switch (s.code()) {
    case Code::kCorruption: return TSS2_TCTI_RC_MALFORMED_RESPONSE;
    case Code::kInvalidArgument: return TSS2_TCTI_RC_BAD_VALUE;
    case Code::kFailedPrecondition: return TSS2_TCTI_RC_BAD_SEQUENCE;
    default: return TSS2_TCTI_RC_IO_ERROR;
  }
}

TSS2_RC CTransmit(TSS2_TCTI_CONTEXT* c, size_t size, const uint8_t* command) {
  Tcti* t = Self(c);
  if (!t) return TSS2_TCTI_RC_BAD_CONTEXT;
  if (!command) return TSS2_TCTI_RC_BAD_REFERENCE;
  Status s = t->Transmit(ByteView(command, size));
  return s.ok() ? TSS2_RC_SUCCESS : RcFor(s);
}

TSS2_RC CReceive(TSS2_TCTI_CONTEXT* c, size_t* size, uint8_t* response, int32_t timeout) {
  Tcti* t = Self(c);
  if (!t) return TSS2_TCTI_RC_BAD_CONTEXT;
  if (!size) return TSS2_TCTI_RC_BAD_REFERENCE;
  if (timeout < TSS2_TCTI_TIMEOUT_BLOCK) return TSS2_TCTI_RC_BAD_VALUE;
  auto r = t->Fetch(milliseconds(timeout));
  if (!r.ok()) {
    if (r.status().code() == Code::kTimeout && r.status().sub_code() == 1) return TSS2_TCTI_RC_TRY_AGAIN;
    return RcFor(r.status());
  }
  const Bytes& rsp = **r;
  if (!response) {  // size query: the response stays for the next call
    *size = rsp.size();
    return TSS2_RC_SUCCESS;
  }
  if (*size < rsp.size()) {
    *size = rsp.size();
    return TSS2_TCTI_RC_INSUFFICIENT_BUFFER;
  }
  std::memcpy(response, rsp.data(), rsp.size());
  *size = rsp.size();
  t->Delivered();
  return TSS2_RC_SUCCESS;
}

void CFinalize(TSS2_TCTI_CONTEXT* c) {
  // The owner (a std::unique_ptr<Tcti>) frees; nothing to release early.
  (void)c;
}

TSS2_RC CCancel(TSS2_TCTI_CONTEXT* c) {
  Tcti* t = Self(c);
  if (!t) return TSS2_TCTI_RC_BAD_CONTEXT;
  Status s = t->Cancel();
  return s.ok() ? TSS2_RC_SUCCESS : RcFor(s);
}

TSS2_RC CGetPollHandles(TSS2_TCTI_CONTEXT* c, TSS2_TCTI_POLL_HANDLE*, size_t*) {
  return Self(c) ? TSS2_TCTI_RC_NOT_IMPLEMENTED : TSS2_TCTI_RC_BAD_CONTEXT;  // registers have no fd to poll
}

TSS2_RC CSetLocality(TSS2_TCTI_CONTEXT* c, uint8_t locality) {
  Tcti* t = Self(c);
  if (!t) return TSS2_TCTI_RC_BAD_CONTEXT;
  Status s = t->SetLocality(locality);
  return s.ok() ? TSS2_RC_SUCCESS : RcFor(s);
}

TSS2_RC CMakeSticky(TSS2_TCTI_CONTEXT* c, TPM2_HANDLE*, uint8_t) {
  return Self(c) ? TSS2_TCTI_RC_NOT_IMPLEMENTED : TSS2_TCTI_RC_BAD_CONTEXT;  // no resource manager
}

}  // namespace

std::string DescribeSts(uint32_t sts) {
  std::string s = Hex(sts, 8) + " (";
  if (sts == 0xffffffffu) return s + "all ones: locality not active or no TPM)";
  static constexpr std::pair<uint32_t, const char*> kBits[] = {
      {kStsValid, "stsValid"}, {kStsCommandReady, "commandReady"}, {kStsGo, "tpmGo"},
      {kStsDataAvail, "dataAvail"}, {kStsExpect, "expect"}, {kStsSelfTestDone, "selfTestDone"},
      {kStsResponseRetry, "responseRetry"}};
  for (auto [bit, name] : kBits)
    if (sts & bit) s += std::string(name) + " ";
  return s + "burstCount=" + std::to_string(BurstCount(sts)) + ")";
}

Tcti::Tcti(std::unique_ptr<Registers> regs, Timeouts t) : regs_(std::move(regs)), t_(t), ctx_(new Context{}) {
  auto& v1 = ctx_->common.v1;
  v1.magic = kMagic;
  v1.version = 2;
  v1.transmit = CTransmit;
  v1.receive = CReceive;
  v1.finalize = CFinalize;
  v1.cancel = CCancel;
  v1.getPollHandles = CGetPollHandles;
  v1.setLocality = CSetLocality;
  ctx_->common.makeSticky = CMakeSticky;
  ctx_->self = this;
}

Tcti::~Tcti() { Relinquish(); }

TSS2_TCTI_CONTEXT* Tcti::context() { return reinterpret_cast<TSS2_TCTI_CONTEXT*>(ctx_.get()); }

std::string Tcti::Name(const char* reg) const { return std::string(reg) + "_" + std::to_string(locality_); }

Result<std::unique_ptr<Tcti>> Tcti::Open(std::unique_ptr<Registers> regs, uint8_t locality, Timeouts timeouts) {
  if (locality >= kLocalities - 1)
    return Status(Code::kInvalidArgument, "TIS locality " + std::to_string(locality) + " is not 0-3");
  std::unique_ptr<Tcti> t(new Tcti(std::move(regs), timeouts));
  t->did_vid_ = t->regs_->Read32(kDidVid);
  if (t->did_vid_ == 0xffffffffu || t->did_vid_ == 0)
    return Status(Code::kUnavailable, "no TPM answers in the TIS window: DID_VID reads " + Hex(t->did_vid_, 8));
  uint32_t iface = t->regs_->Read32(kInterfaceId);
  if ((iface & kInterfaceTypeMask) == kInterfaceTypeCrb)
    return Status(Code::kUnavailable, "the TPM (DID_VID " + Hex(t->did_vid_, 8) + ") uses the CRB interface "
                                      "(INTERFACE_ID " + Hex(iface, 8) + "), not the TIS FIFO; use "
                                      "tcti = \"device:/dev/tpmrm0\" with the tpm_crb driver");
  RETURN_IF_ERROR(t->Claim(locality));
  uint32_t sts = t->regs_->Read32(t->Reg(kSts));
  if ((sts & kStsFamilyMask) != kStsFamilyTpm2)
    return Status(Code::kUnavailable, "the TPM behind the TIS window (DID_VID " + Hex(t->did_vid_, 8) +
                                          ") is not a TPM 2.0: " + t->Name("STS") + " = " + DescribeSts(sts));
  LOG_INFO("host TPM: TIS FIFO, DID_VID {}, INTF_CAPABILITY {}, locality {}", Hex(t->did_vid_, 8),
           Hex(t->regs_->Read32(kIntfCapability), 8), locality);
  return t;
}

Status Tcti::Claim(uint8_t locality) {
  locality_ = locality;
  const uint32_t access = Reg(kAccess);
  uint8_t a = regs_->Read8(access);
  auto deadline = Clock::now() + t_.a;
  for (Backoff b; !(a & kAccessRegValid); b.Pause(), a = regs_->Read8(access))
    if (Clock::now() > deadline)
      return Status(Code::kTimeout, Name("ACCESS") + " = " + Hex(a, 2) + ": tpmRegValidSts not set within " +
                                        std::to_string(t_.a.count()) + " ms (TIMEOUT_A)");
  if (a & kAccessActiveLocality) {
    LOG_INFO("host TPM: TIS locality {} was already active (left by firmware or an earlier run); using it",
             locality);
    claimed_ = true;
    return Status::Ok();
  }
  regs_->Write8(access, kAccessRequestUse);
  a = regs_->Read8(access);
  if (!(a & kAccessActiveLocality)) {
    for (uint8_t other = 0; other < kLocalities; ++other) {
      if (other == locality) continue;
      uint8_t oa = regs_->Read8(LocalityOffset(other, kAccess));
      if ((oa & kAccessRegValid) && (oa & kAccessActiveLocality)) {
        LOG_WARN("host TPM: TIS locality {} is active (ACCESS_{} = {}), left by firmware or a crashed user; "
                 "relinquishing it for locality {}", other, other, Hex(oa, 2), locality);
        regs_->Write8(LocalityOffset(other, kAccess), kAccessActiveLocality);
      }
    }
  }
  deadline = Clock::now() + t_.a;
  for (Backoff b; !(a & kAccessActiveLocality); b.Pause(), a = regs_->Read8(access)) {
    if (Clock::now() > deadline) {
      std::string active = "none";
      for (uint8_t other = 0; other < kLocalities; ++other)
        if (other != locality && (regs_->Read8(LocalityOffset(other, kAccess)) & kAccessActiveLocality))
          active = std::to_string(other);
      regs_->Write8(access, kAccessActiveLocality);  // withdraw the request
      return Status(Code::kTimeout, Name("ACCESS") + " = " + Hex(a, 2) + ": locality " + std::to_string(locality) +
                                        " not granted within " + std::to_string(t_.a.count()) +
                                        " ms (TIMEOUT_A); active locality: " + active);
    }
  }
  claimed_ = true;
  return Status::Ok();
}

void Tcti::Relinquish() {
  if (!claimed_) return;
  claimed_ = false;
  const uint32_t access = Reg(kAccess);
  regs_->Write8(access, kAccessActiveLocality);
  auto deadline = Clock::now() + t_.a;
  for (Backoff b; regs_->Read8(access) & kAccessActiveLocality; b.Pause()) {
    if (Clock::now() > deadline) {
      LOG_WARN("host TPM: {} still shows activeLocality {} ms after relinquishing it", Name("ACCESS"),
               t_.a.count());
      return;
    }
  }
}

Result<uint32_t> Tcti::WaitSts(uint32_t mask, uint32_t want, milliseconds limit, const char* what,
                               const char* timeout_name) {
  auto deadline = Clock::now() + limit;
  uint32_t sts = regs_->Read32(Reg(kSts));
  for (Backoff b; (sts & mask) != want; b.Pause(), sts = regs_->Read32(Reg(kSts))) {
    if (sts == 0xffffffffu) {
      uint8_t a = regs_->Read8(Reg(kAccess));
      if (!(a & kAccessActiveLocality))
        return Status(Code::kUnavailable, Name("STS") + " reads all ones and " + Name("ACCESS") + " = " +
                                              Hex(a, 2) + ": locality " + std::to_string(locality_) +
                                              " is no longer active (taken by another user?) while waiting for " + what);
    }
    if (Clock::now() > deadline)
      return Status(Code::kTimeout, Name("STS") + " = " + DescribeSts(sts) + ": no " + what + " within " +
                                        std::to_string(limit.count()) + " ms (" + timeout_name + ")");
  }
  return sts;
}

Result<uint32_t> Tcti::WaitBurst(const char* during) {
  auto deadline = Clock::now() + t_.d;
  uint32_t sts = regs_->Read32(Reg(kSts));
  for (Backoff b; BurstCount(sts) == 0 || sts == 0xffffffffu; b.Pause(), sts = regs_->Read32(Reg(kSts)))
    if (Clock::now() > deadline)
      return Status(Code::kTimeout, Name("STS") + " = " + DescribeSts(sts) + ": burstCount stayed 0 for " +
                                        std::to_string(t_.d.count()) + " ms (TIMEOUT_D) while " + during);
  return sts;
}

Status Tcti::Fail(Status s) {
  LOG_ERROR("host TPM (TIS): {}", s.message());
  last_error_ = s;
  phase_ = Phase::kIdle;
  response_.clear();
  regs_->Write8(Reg(kSts), uint8_t(kStsCommandReady));  // abort whatever is in flight
  return s;
}

Status Tcti::Transmit(ByteView command) {
  if (phase_ != Phase::kIdle) {
    last_error_ = Status(Code::kFailedPrecondition, "TIS transmit while a response is still outstanding");
    return last_error_;
  }
  auto size = CommandSize(command);
  if (!size.ok()) return last_error_ = size.status();
  if (command.size() > kMaxFrame)
    return last_error_ = Status(Code::kInvalidArgument, "TPM command of " + std::to_string(command.size()) +
                                                            " bytes exceeds the 4096-byte FIFO buffer");
  uint32_t sts = regs_->Read32(Reg(kSts));
  if (!(sts & kStsCommandReady)) {
    regs_->Write8(Reg(kSts), uint8_t(kStsCommandReady));
    auto r = WaitSts(kStsCommandReady, kStsCommandReady, t_.b, "commandReady", "TIMEOUT_B");
    if (!r.ok()) return Fail(r.status());
  }
  size_t sent = 0;
  while (sent < command.size()) {
    auto b = WaitBurst("writing the command");
    if (!b.ok()) return Fail(b.status());
    size_t chunk = std::min<size_t>(BurstCount(*b), command.size() - sent);
    for (size_t i = 0; i < chunk; ++i) regs_->Write8(Reg(kDataFifo), command[sent++]);
    auto v = WaitSts(kStsValid, kStsValid, t_.c, "stsValid after a FIFO write", "TIMEOUT_C");
    if (!v.ok()) return Fail(v.status());
    bool expect = *v & kStsExpect;
    if (sent < command.size() && !expect)
      return Fail(Status(Code::kIoError, Name("STS") + " = " + DescribeSts(*v) + ": the TPM stopped expecting "
                                             "data after " + std::to_string(sent) + " of " +
                                             std::to_string(command.size()) + " command bytes"));
    if (sent == command.size() && expect)
      return Fail(Status(Code::kIoError, Name("STS") + " = " + DescribeSts(*v) + ": the TPM still expects data "
                                             "after the whole " + std::to_string(command.size()) + "-byte command"));
  }
  regs_->Write8(Reg(kSts), uint8_t(kStsGo));
  phase_ = Phase::kSent;
  return Status::Ok();
}

Status Tcti::ReadFifo(uint8_t* out, size_t count, size_t done_before, size_t total) {
  size_t got = 0;
  while (got < count) {
    uint32_t sts = regs_->Read32(Reg(kSts));
    if (!(sts & kStsValid) || !(sts & kStsDataAvail)) {
      auto v = WaitSts(kStsValid, kStsValid, t_.c, "stsValid while reading the response", "TIMEOUT_C");
      if (!v.ok()) return v.status();
      sts = *v;
      if (!(sts & kStsDataAvail))
        return Status(Code::kCorruption, Name("STS") + " = " + DescribeSts(sts) + ": the response ended after " +
                                             std::to_string(done_before + got) + " of " +
                                             (total ? std::to_string(total) : std::string("at least 10")) +
                                             " bytes (dataAvail cleared)");
    }
    if (BurstCount(sts) == 0) {
      auto b = WaitBurst("reading the response");
      if (!b.ok()) return b.status();
      sts = *b;
    }
    size_t chunk = std::min<size_t>(BurstCount(sts), count - got);
    for (size_t i = 0; i < chunk; ++i) out[got++] = regs_->Read8(Reg(kDataFifo));
  }
  return Status::Ok();
}

Result<Bytes> Tcti::Receive(milliseconds timeout) {
  ASSIGN_OR_RETURN(const Bytes* rsp, Fetch(timeout));
  Bytes out = *rsp;
  Delivered();
  return out;
}

void Tcti::Delivered() {
  phase_ = Phase::kIdle;
  response_.clear();
}

Result<const Bytes*> Tcti::Fetch(milliseconds timeout) {
  if (phase_ == Phase::kHaveResponse) return &response_;
  if (phase_ != Phase::kSent) {
    last_error_ = Status(Code::kFailedPrecondition, "TIS receive without a transmitted command");
    return last_error_;
  }
  const bool blocking = timeout.count() < 0;
  auto ready = WaitSts(kStsValid | kStsDataAvail, kStsValid | kStsDataAvail, blocking ? t_.command : timeout,
                       "dataAvail after tpmGo", blocking ? "command duration" : "caller's timeout");
  if (!ready.ok()) {
    if (!blocking && ready.status().code() == Code::kTimeout)
      return Status(Code::kTimeout, ready.status().message(), 1);  // still running: try again
    return Fail(ready.status());
  }
  Bytes rsp(kHeaderSize);
  if (Status s = ReadFifo(rsp.data(), kHeaderSize, 0, 0); !s.ok()) return Fail(s);
  auto size = ResponseSize(rsp);
  if (!size.ok()) return Fail(size.status().Annotate(Name("DATA_FIFO")));
  rsp.resize(*size);
  if (Status s = ReadFifo(rsp.data() + kHeaderSize, *size - kHeaderSize, kHeaderSize, *size); !s.ok())
    return Fail(s);
  auto end = WaitSts(kStsValid, kStsValid, t_.c, "stsValid after the response", "TIMEOUT_C");
  if (!end.ok()) return Fail(end.status());
  if (*end & kStsDataAvail)
    return Fail(Status(Code::kCorruption, Name("STS") + " = " + DescribeSts(*end) + ": the TPM has more data "
                                              "after the " + std::to_string(*size) + " bytes its response header gives"));
  regs_->Write8(Reg(kSts), uint8_t(kStsCommandReady));  // done: back to idle/ready
  phase_ = Phase::kHaveResponse;
  response_ = std::move(rsp);
  return &response_;
}

Status Tcti::Cancel() {
  if (phase_ != Phase::kSent)
    return last_error_ = Status(Code::kFailedPrecondition, "TIS cancel without a command in flight");
  regs_->Write8(Reg(kSts) + 3, uint8_t(kStsCommandCancel >> 24));  // the TPM answers TPM_RC_CANCELED
  return Status::Ok();
}

Status Tcti::SetLocality(uint8_t locality) {
  if (phase_ != Phase::kIdle)
    return last_error_ = Status(Code::kFailedPrecondition, "TIS locality change while a command is in flight");
  if (locality >= kLocalities - 1)
    return last_error_ = Status(Code::kInvalidArgument, "TIS locality " + std::to_string(locality) + " is not 0-3");
  if (locality == locality_ && claimed_) return Status::Ok();
  Relinquish();
  Status s = Claim(locality);
  if (!s.ok()) last_error_ = s;
  return s;
}

}  // namespace vtpm::tis
