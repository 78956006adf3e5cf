// TisModel: a software TPM PTP/TIS FIFO register window for tests. It keeps
// the per-locality ACCESS/STS state machine a TPM has (QEMU's tpm_tis is the
// reference: idle -> ready -> reception -> execution -> completion, locality
// grant and hand-over, burstCount, expect, dataAvail) and hands each complete
// command to a backend, normally a real swtpm. Knobs make it misbehave the
// ways hardware and firmware do. Not thread-safe; outlives its Window()s.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "tpm/host/tis_registers.h"

namespace vtpm::testing {

class TisModel final : public tis::Registers {
 public:
  using Backend = std::function<Result<Bytes>(uint8_t locality, ByteView command)>;
  struct Behavior {
    uint16_t max_burst = 8;        // burstCount never exceeds this
    int burst_stall_every = 0;     // >0: every Nth STS read shows burstCount 0
    int exec_polls = 3;            // STS reads after tpmGo before dataAvail
    bool never_ready = false;      // commandReady never comes
    std::optional<uint8_t> firmware_active;  // locality left active at reset
    uint32_t did_vid = 0x00011014;
    uint32_t interface_id = 0;     // [3:0] 0 = FIFO, 1 = CRB
    uint32_t family = tis::kStsFamilyTpm2;
    // Applied to each backend response before it is served.
    std::function<void(Bytes&)> rewrite_response;
    // Bytes served before dataAvail clears; unset = the header's size.
    std::optional<size_t> response_length;
  };

  TisModel(Backend backend, Behavior behavior);
  // A Registers view of this model for a Tcti to own.
  std::unique_ptr<tis::Registers> Window();
  Behavior& behavior() { return b_; }

  uint8_t Read8(uint32_t offset) override;
  uint32_t Read32(uint32_t offset) override;
  void Write8(uint32_t offset, uint8_t value) override;
  void Write32(uint32_t offset, uint32_t value) override;

  // Observations.
  int active_locality() const { return active_; }   // -1: none
  int commands() const { return commands_; }
  const std::vector<uint8_t>& command_localities() const { return command_localities_; }
  int burst_violations() const { return burst_violations_; }  // FIFO bytes beyond the advertised burstCount
  int request_use_writes() const { return request_use_writes_; }
  int cancels() const { return cancels_; }
  size_t largest_burst_used() const { return largest_burst_used_; }

 private:
  enum class State { kIdle, kReady, kReception, kExecution, kCompletion };
  struct Locality {
    uint8_t access = tis::kAccessRegValid;
    uint32_t sts = 0;
    State state = State::kIdle;
  };

  uint32_t ReadSts(uint8_t l);
  uint8_t ReadFifoByte(uint8_t l);
  void WriteAccess(uint8_t l, uint8_t v);
  void WriteSts(uint8_t l, uint32_t v);
  void WriteFifoByte(uint8_t l, uint8_t v);
  void SetActive(int l);
  void Execute(uint8_t l);
  size_t ResponseLength() const;

  Backend backend_;
  Behavior b_;
  Locality loc_[tis::kLocalities];
  int active_ = -1;
  Bytes buf_ = Bytes(4096);
  size_t off_ = 0;
  Bytes response_;
  int exec_left_ = 0;
  int sts_reads_ = 0;
  long burst_left_ = 0;  // what the last STS read allowed
  size_t burst_run_ = 0;
  int commands_ = 0, burst_violations_ = 0, request_use_writes_ = 0, cancels_ = 0;
  size_t largest_burst_used_ = 0;
  std::vector<uint8_t> command_localities_;
};

}  // namespace vtpm::testing
