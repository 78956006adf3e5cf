// tis::Tcti: a tpm2-tss TCTI of our own (TSS2_TCTI_CONTEXT_COMMON_V2) that
// speaks the TPM PTP/TIS FIFO protocol over a register window (tis::Registers:
// /dev/mem at 0xfed40000 in production, a software model in tests).
//
// Contract: one Tcti per window, used from one thread. It claims its locality
// for its whole life (a locality left active by firmware or a crashed run is
// taken over, see Open) and relinquishes it on destruction. Every wait is
// bounded by a PTP timeout; a failure leaves the TPM back at commandReady
// where it can, and is reported as a Status naming the register, its value
// and what was awaited (also kept in last_error() behind a TSS2 rc).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "common/bytes.h"
#include "common/status.h"
#include "tpm/host/tis_registers.h"

struct TSS2_TCTI_OPAQUE_CONTEXT_BLOB;  // TSS2_TCTI_CONTEXT

namespace vtpm::tis {

class Tcti {
 public:
  // Checks DID_VID and the interface type, then claims `locality`
  // (requestUse, waiting TIMEOUT_A). When another locality is active and
  // does not hand over, it is relinquished first: the daemon is the only
  // user of a TPM whose kernel driver is kept off it.
  static Result<std::unique_ptr<Tcti>> Open(std::unique_ptr<Registers> regs, uint8_t locality,
                                            Timeouts timeouts = {});
  ~Tcti();
  Tcti(const Tcti&) = delete;
  Tcti& operator=(const Tcti&) = delete;

  // The TSS2 view, valid while this object lives. Its finalize() only
  // relinquishes the locality; the memory belongs to this object.
  TSS2_TCTI_OPAQUE_CONTEXT_BLOB* context();

  // The operations behind the function table.
  Status Transmit(ByteView command);
  // Waits up to `timeout` for the response (negative: Timeouts::command).
  // kTimeout with sub-code 1 when a non-negative timeout ran out before
  // dataAvail (the command is still running; call again).
  Result<Bytes> Receive(std::chrono::milliseconds timeout);
  // The two halves of Receive for tss2's receive(), which may ask for the
  // size first: Fetch reads the response once and keeps it; Delivered drops it.
  Result<const Bytes*> Fetch(std::chrono::milliseconds timeout);
  void Delivered();
  Status Cancel();
  Status SetLocality(uint8_t locality);

  uint8_t locality() const { return locality_; }
  uint32_t did_vid() const { return did_vid_; }
  // The failure behind the last TSS2 error rc returned through context().
  const Status& last_error() const { return last_error_; }

  struct Context;  // the TSS2 function table plus a pointer back here

 private:
  Tcti(std::unique_ptr<Registers> regs, Timeouts t);
  Status Claim(uint8_t locality);
  void Relinquish();
  Result<uint32_t> WaitSts(uint32_t mask, uint32_t want, std::chrono::milliseconds limit, const char* what,
                           const char* timeout_name);
  Result<uint32_t> WaitBurst(const char* during);
  Status ReadFifo(uint8_t* out, size_t count, size_t done_before, size_t total);
  Status Fail(Status s);  // logs, records in last_error_, aborts the command
  uint32_t Reg(uint32_t reg) const { return LocalityOffset(locality_, reg); }
  std::string Name(const char* reg) const;

  enum class Phase { kIdle, kSent, kHaveResponse };
  std::unique_ptr<Registers> regs_;
  Timeouts t_;
  uint8_t locality_ = 0;
  bool claimed_ = false;
  uint32_t did_vid_ = 0;
  Phase phase_ = Phase::kIdle;
  Bytes response_;  // kHaveResponse: fetched, not yet handed to the caller
  Status last_error_;
  std::unique_ptr<Context> ctx_;
};

// Human-readable STS flags, e.g. "0x04000090 (stsValid dataAvail burstCount=0)".
std::string DescribeSts(uint32_t sts);

}  // namespace vtpm::tis
