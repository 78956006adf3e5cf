// Fuzzes the "tis:" transport's parsers: the tcti option string, the
// FIFO response header, and the TIS TCTI's receive path reading a response
// whose bytes and burstCounts come from the input.
//
// Input: byte 0 selects the mode; the rest is the payload.
//   mode % 3 == 0: tcti string; accepted options must satisfy their ranges
//                  and print back to a string that parses to the same.
//   mode % 3 == 1: ResponseSize / CommandSize on the payload.
//   mode % 3 == 2: payload = [burst pattern byte][FIFO bytes]; one
//                  GetRandom round trip through tis::Tcti; a success must
//                  return exactly the header's size, all from the FIFO.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tpm/host/tis_frame.h"
#include "tpm/host/tis_options.h"
#include "tpm/host/tis_tcti.h"

namespace {

using namespace vtpm;
using namespace vtpm::tis;

constexpr size_t kCommandSize = 12;  // the GetRandom below
constexpr size_t kBuffer = 4096;

// A TPM whose response is the fuzz input: commands are swallowed, then the
// FIFO serves `fifo` with burstCounts cycling through `burst` (capped at
// what is left, as a TPM's burstCount is).
class ScriptedTpm final : public Registers {
 public:
  ScriptedTpm(uint8_t burst, ByteView fifo) : burst_(burst), fifo_(fifo) {}
  uint8_t Read8(uint32_t o) override {
    if (o == kAccess) return kAccessRegValid | kAccessActiveLocality;
    if (o == kDataFifo) return go_ && pos_ < fifo_.size() ? fifo_[pos_++] : 0xff;
    return 0;
  }
  uint32_t Read32(uint32_t o) override {
    if (o == kDidVid) return 0x00011014;
    if (o != kSts) return 0;
    uint32_t sts = kStsFamilyTpm2 | kStsValid;
    if (!go_) sts |= kStsCommandReady | (written_ < kCommandSize ? kStsExpect : 0);
    if (go_ && pos_ < fifo_.size()) sts |= kStsDataAvail;
    // Like hardware, never more than can be moved without waiting.
    size_t left = go_ ? fifo_.size() - pos_ : kBuffer - written_;
    size_t burst = (burst_ >> (reads_++ % 8)) & 1 ? 0 : std::min<size_t>(1 + (burst_ & 0x3f), left);
    return sts | uint32_t(burst) << 8;
  }
  void Write8(uint32_t o, uint8_t v) override {
    if (o == kDataFifo && !go_) ++written_;
    if (o == kSts && v == kStsGo) go_ = true;
  }
  void Write32(uint32_t o, uint32_t v) override { Write8(o, uint8_t(v)); }
  size_t served() const { return pos_; }

 private:
  uint8_t burst_;
  ByteView fifo_;
  size_t pos_ = 0, written_ = 0;
  unsigned reads_ = 0;
  bool go_ = false;
};

void FuzzOptions(std::string_view s) {
  auto o = ParseOptions(s);
  if (!o.ok()) {
    if (o.status().code() != Code::kInvalidArgument) abort();
    return;
  }
  if (!IsTisTcti(s) || o->locality > 3 || o->base == 0 || o->base % 0x1000) abort();
  char base[32];
  std::snprintf(base, sizeof base, "0x%llx", static_cast<unsigned long long>(o->base));
  auto again = ParseOptions("tis:locality=" + std::to_string(o->locality) + ",base=" + base);
  if (!again.ok() || again->locality != o->locality || again->base != o->base) abort();
}

void FuzzFrames(ByteView b) {
  if (auto r = ResponseSize(b); r.ok() && (*r < kHeaderSize || *r > kMaxFrame || b.size() < kHeaderSize)) abort();
  if (auto c = CommandSize(b); c.ok() && *c != b.size()) abort();
}

void FuzzReceive(ByteView b) {
  if (b.empty()) return;
  Timeouts t;  // nothing in this model ever needs a wait
  t.a = t.b = t.c = t.d = t.command = std::chrono::milliseconds(0);
  auto regs = std::make_unique<ScriptedTpm>(b[0], b.subspan(1));
  ScriptedTpm* tpm = regs.get();
  auto tcti = Tcti::Open(std::move(regs), 0, t);
  if (!tcti.ok()) abort();  // this model is always a TPM 2.0 FIFO
  const uint8_t cmd[] = {0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8};
  if (!(*tcti)->Transmit(cmd).ok()) return;  // a zero burstCount at the wrong time
  auto r = (*tcti)->Receive(std::chrono::milliseconds(-1));
  if (!r.ok()) return;
  auto size = ResponseSize(*r);
  if (!size.ok() || *size != r->size() || tpm->served() != r->size() ||
      std::memcmp(r->data(), b.data() + 1, r->size()) != 0)
    abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // every rejected response is logged
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ByteView payload(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: FuzzOptions(std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size())); break;
    case 1: FuzzFrames(payload); break;
    default: FuzzReceive(payload); break;
  }
  return 0;
}
