// Instance: the capture of a suspended domain's TPM (design §6 "Save,
// restore and migration"): committed with the TPM's volatile state so that a
// domain restored from the save image resumes it, and dropped by the first
// commit after the domain ran on.
#include "tpm/instance.h"

namespace vtpm {

void Instance::CaptureSuspend(SuspendCapture capture, std::function<void(Status)> done) {
  suspend_asked_ = true;
  ran_since_suspend_ = false;
  capturing_ = true;
  Op op;
  op.capture = capture;
  op.admin_done = [done = std::move(done)](Result<Bytes> r) { done(r.status()); };
  Enqueue(std::move(op));
}

void Instance::RunCapture() {
  if (flight_.valid()) {
    // The capture must hold the TPM as it is: the worker keeps nothing more
    // of its own until a command of the guest goes through the daemon again.
    flight_.Revoke();
    PullFlight();
  }
  if (!volatile_) {
    // Powered on and never ran a command: the capture would be a power-on.
    capturing_ = false;
    Op op = std::move(*in_flight_);
    in_flight_.reset();
    phase_ = Phase::kReady;
    op.admin_done(Status(Code::kFailedPrecondition, "the TPM has run no command since it powered on"));
    return Pump();
  }
  CommitRequest req;
  req.uuid = uuid_;
  req.volatile_copy = volatile_;
  req.suspend = *in_flight_->capture;
  req.suspend->sequence = sequence_;
  req.expected_generation = generation_;
  phase_ = Phase::kCommitting;
  CommitOnLoop(std::move(req), [](Instance& self, Result<uint64_t> gen) { self.OnCaptured(gen); });
}

void Instance::OnCaptured(Result<uint64_t> generation) {
  if (phase_ != Phase::kCommitting || !in_flight_ || !in_flight_->capture) return;  // powered off meanwhile
  auto keep = shared_from_this();
  capturing_ = false;
  Op op = std::move(*in_flight_);
  in_flight_.reset();
  phase_ = Phase::kReady;
  if (generation.ok()) {
    generation_ = *generation;
    holds_capture_ = true;
    SaveVolatileCopy(std::nullopt);  // goes with the new generation
    op.admin_done(Bytes());
  } else {
    op.admin_done(generation.status().Annotate("committing the suspend capture"));
  }
  Pump();
}

void Instance::DropCapture() {
  if (!holds_capture_) return;
  holds_capture_ = false;
  CommitRequest req;
  req.uuid = uuid_;
  req.expected_generation = generation_;
  store_.Commit(std::move(req), [ctx = ctx_](Result<uint64_t> gen) {
    if (gen.ok())
      VLOG_INFO(ctx, "dropped the TPM state captured at an earlier suspend: the domain ran on and ended otherwise");
    else
      VLOG_WARN(ctx, "dropping the suspend capture failed: {}", gen.status().ToString());
  });
}

}  // namespace vtpm
