// Instance: the TPM's volatile state and the command records (design §3
// "Exactly once" and "Volatile state in the flight record", §6 "Volatile
// state"): the copy in the runtime directory, the flight record's volatile
// slot, the responded mark, and the answer from a record to a command found
// in the page.
#include <algorithm>
#include <cstdlib>

#include "store/record_codec.h"
#include "tpm/instance.h"
#include "tpm/tpm12.h"

namespace vtpm {

std::optional<VolatileCopy> Instance::FromFlightRecord(VolatileCopy copy) {
  const FlightPage* flight = cfg_.adoptable ? cfg_.adoptable->Flight(uuid_) : nullptr;
  Result<std::optional<VolatileSlot>> slot = flight ? flight->ReadSlot()
                                                   : Result<std::optional<VolatileSlot>>(Status(
                                                         Code::kNotFound, "the worker's flight record is gone"));
  if (!slot.ok()) {
    volatile_lost_ = true;
    VEVENT_ERROR(kVolatileLost, ctx_,
                 "the TPM's volatile state is lost: its copy (command {}) may be older than what the worker kept in "
                 "its flight record, and {}; the TPM powers on without TPM_Startup and answers the guest "
                 "TPM_INVALID_POSTINIT until the domain restarts",
                 copy.sequence, slot.status().message());
    return std::nullopt;
  }
  responded_ = std::max(responded_, flight->responded());
  if (cfg_.adoptable) cfg_.adoptable->DropRemains(uuid_);  // `flight` is gone if it was one
  if (*slot && (*slot)->sequence > copy.sequence) {
    VolatileSlot& v = **slot;
    VLOG_INFO(ctx_, "resuming from the volatile state the worker kept after command {} (the copy is of command {})",
              v.sequence, copy.sequence);
    copy.sequence = v.sequence;
    copy.blob = std::move(v.volatile_state);
    copy.record.reset();
    if (!v.request_digest.empty()) copy.record = RecordOf(v);
  }
  return copy;
}

void Instance::SaveRespondedMark(uint64_t sequence) {
  responded_ = sequence;
  if (ctx_.domid < 0) return;
  Status st = store_.SaveResponded(uuid_, MarkOf(sequence));
  if (!st.ok()) VLOG_WARN(ctx_, "saving the responded mark of command {} failed: {}", sequence, st.ToString());
}

RespondedMark Instance::MarkOf(uint64_t sequence) const {
  RespondedMark mark;
  mark.boot_id = cfg_.boot_id;
  mark.domid = uint32_t(ctx_.domid);
  mark.sequence = sequence;
  return mark;
}

std::optional<Bytes> Instance::Recall(const Op& op) const {
  if (!op.found) return std::nullopt;
  // A command that kept nothing has no record; its response in the page is
  // still one (no command carries a response tag).
  if (tpm12::HasResponseTag(op.command) && !(last_record_ && op.command == last_record_->response)) {
    VLOG_INFO(ctx_, "the page holds a response without FINISH: finishing it");
    return op.command;
  }
  if (!last_record_) return std::nullopt;
  const CommandRecord& r = *last_record_;
  if (op.command == r.response) {
    VLOG_INFO(ctx_, "the page holds the response of command {} without FINISH: finishing it", r.sequence);
    return r.response;
  }
  // Sequences only grow within a power cycle: a mark at or past the
  // record means the record's command was answered.
  if (responded_ < r.sequence && RequestDigest(op.command) == r.request_digest) {
    VLOG_INFO(ctx_, "command {} ran before the restart but was not answered: sending its recorded response",
              r.sequence);
    return r.response;
  }
  VLOG_INFO(ctx_, "command found in the page after the restart is new: running it");
  return std::nullopt;
}

void Instance::SaveVolatileCopy(const std::optional<CommandRecord>& record) {
  volatile_saved_ = false;
  if (ctx_.domid < 0 || !volatile_) return;
  VolatileCopy copy;
  copy.blob = *volatile_;
  copy.boot_id = cfg_.boot_id;
  copy.domid = uint32_t(ctx_.domid);
  copy.handle = cfg_.domain_handle;
  copy.sequence = record ? record->sequence : sequence_;
  copy.generation = generation_;
  copy.record = record ? record : last_record_;
  if (copy.record && copy.record->sequence != copy.sequence) copy.record.reset();  // not this state's command
  copy.worker_ahead = VolatileSlots();
  Status st = store_.SaveVolatile(uuid_, copy);
  volatile_saved_ = st.ok();
  if (!st.ok()) VLOG_WARN(ctx_, "saving volatile state failed: {}", st.ToString());
}

CommandRecord RecordOf(const VolatileSlot& slot) {
  CommandRecord r;
  r.sequence = slot.sequence;
  r.request_digest = slot.request_digest;
  r.response = slot.response;
  return r;
}

bool Instance::VolatileSlots() const {
  // Slots need the flight record to outlive both processes: the fd store.
  bool allowed = cfg_.fd_store != nullptr;
#ifdef VTPM_TEST_HOOKS
  // The exactly-once tests' crash points on the daemon's commit of an
  // extend, which a worker with slots keeps itself.
  if (getenv("VTPMMGRD_TEST_NO_VOLATILE_SLOTS")) allowed = false;
#endif
  return allowed && guest_ && phase_ != Phase::kBroken && !stopping_;
}

void Instance::PullFlight() {
  if (!flight_.valid()) return;
  responded_ = std::max(responded_, flight_.responded());
  auto slot = flight_.ReadSlot();
  if (!slot.ok()) {
    // Only a broken or compromised worker writes one that does not decode;
    // it keeps no more, and the last state the daemon knows stays the TPM's.
    flight_.Revoke();
    VLOG_ERROR(ctx_, "ignoring the worker's volatile slot: {}", slot.status().ToString());
    return;
  }
  if (!*slot || (*slot)->sequence <= sequence_) return;
  VolatileSlot& v = **slot;
  sequence_ = v.sequence;
  volatile_ = std::move(v.volatile_state);
  last_record_.reset();
  if (!v.request_digest.empty()) last_record_ = RecordOf(v);
  started_ = true;
  volatile_saved_ = true;  // in the flight record, which outlives the daemon
}

}  // namespace vtpm
