#include "tpm/instance.h"

#include <ctime>

#include "common/crash_point.h"
#include "common/log_rate_limit.h"
#include "tpm/tpm12.h"

namespace vtpm {
namespace {

constexpr int kMaxStartFailures = 3;
// A broken instance tries one more start on a command that arrives at least
// this long after it broke (design §3 "Worker faults").
constexpr std::chrono::seconds kBrokenRetryDelay{2};

}  // namespace

std::shared_ptr<Instance> Instance::Make(EventLoop& loop, Store& store, InstanceConfig cfg,
                                         Uuid uuid, GuestCtx ctx) {
  return std::shared_ptr<Instance>(
      new Instance(loop, store, std::move(cfg), uuid, std::move(ctx)));
}

Instance::Instance(EventLoop& loop, Store& store, InstanceConfig cfg, Uuid uuid, GuestCtx ctx)
    : loop_(loop), store_(store), cfg_(std::move(cfg)), uuid_(uuid), ctx_(std::move(ctx)) {}

Instance::~Instance() {
  worker_.reset();
  if (flight_check_) loop_.CancelTimer(*flight_check_);
}

void Instance::PowerOn(LoadedInstance loaded, std::optional<VolatileCopy> resume, bool drop_capture) {
  if (phase_ != Phase::kWaiting) return;
  holds_capture_ = loaded.suspend.has_value();
  permanent_ = std::move(loaded.permanent);
  savestate_ = std::move(loaded.savestate);
  generation_ = loaded.generation;
  volatile_saved_ = false;
  sequence_ = loaded.last_record ? loaded.last_record->sequence : 0;
  last_record_ = std::move(loaded.last_record);
  if (resume && resume->worker_ahead) resume = FromFlightRecord(std::move(*resume));
  if (resume) {
    volatile_ = std::move(resume->blob);
    if (resume->record && resume->record->sequence >= sequence_) last_record_ = std::move(resume->record);
    sequence_ = std::max(sequence_, resume->sequence);
    // The mark counts only for this boot and this domain, like the copy.
    auto mark = store_.LoadResponded(uuid_);
    if (!mark.ok())
      VLOG_WARN(ctx_, "responded mark unusable: {}", mark.status().ToString());
    else if (*mark && (*mark)->boot_id == cfg_.boot_id && int64_t((*mark)->domid) == ctx_.domid)
      responded_ = std::max(responded_, (*mark)->sequence);
    if (resume->worker_ahead) SaveVolatileCopy(std::nullopt);  // the flight record read is gone now
  } else {
    // A new power cycle: nothing found in a page can belong to the old one.
    last_record_.reset();
  }
  if (!drop_capture || !holds_capture_) return StartWorker();
  // Consumed before the first command runs: the volatile state resumed (if
  // any) goes into the same commit, so a daemon stopped right after it
  // resumes it from the store, not from the capture.
  CommitRequest req;
  req.uuid = uuid_;
  req.volatile_copy = volatile_;
  req.expected_generation = generation_;
  phase_ = Phase::kStarting;
  CommitOnLoop(std::move(req), [](Instance& self, Result<uint64_t> gen) {
    if (self.phase_ != Phase::kStarting || self.worker_) return;  // powered off meanwhile
    if (!gen.ok()) {
      self.phase_ = Phase::kWaiting;
      return self.FailPowerOn(gen.status().Annotate("dropping the suspend capture"));
    }
    self.generation_ = *gen;
    self.holds_capture_ = false;
    self.SaveVolatileCopy(std::nullopt);
    self.StartWorker();
  });
}

void Instance::CommitOnLoop(CommitRequest req, std::function<void(Instance&, Result<uint64_t>)> then) {
  std::weak_ptr<Instance> weak = weak_from_this();
  EventLoop* loop = &loop_;
  store_.Commit(std::move(req), [weak, loop, then = std::move(then)](Result<uint64_t> gen) {
    // Store thread: hop back to the loop.
    loop->Post([weak, gen, then] {
      if (auto self = weak.lock()) then(*self, gen);
    });
  });
}

void Instance::FailPowerOn(const Status& why) {
  if (phase_ != Phase::kWaiting) return;
  VLOG_ERROR(ctx_, "cannot power on the TPM: {}", why.ToString());
  phase_ = Phase::kBroken;
  broken_why_ = why;
  FailAll(why);
  StartFailWorker();
}

void Instance::PowerOff() {
  if (phase_ == Phase::kOff) return;
  worker_.reset();
  ForgetGuestCommand();
  start_lease_.Reset();
  phase_ = Phase::kOff;
  // The device is gone: its callbacks are dropped, not called.
  FailAll(Status(Code::kUnavailable, "TPM powered off"), /*notify_guest=*/false);
}

bool Instance::LeaveWorkerRunning() {
  // The worker's state stops moving without the daemon, so the copy saved
  // now is the TPM's whether the service manager restarts or stops us.
  stopping_ = true;
  if (flight_.valid()) {
    flight_.Revoke();
    PullFlight();
    SaveVolatileCopy(std::nullopt);
  }
  if (!worker_ || !worker_->stored()) return false;
  worker_->LeaveRunning();
  worker_.reset();
  PowerOff();
  return true;
}

void Instance::StartWorker() {
  phase_ = Phase::kStarting;
  start_lease_.Reset();  // a start that faulted before kInit's reply gives its slot up
  // Taking a running worker over is no start-up: it needs no slot.
  if (!cfg_.start_slots || (guest_ && cfg_.adoptable && cfg_.adoptable->Has(uuid_))) return Spawn();
  const uint64_t token = ++start_token_;
  std::weak_ptr<Instance> weak = weak_from_this();
  cfg_.start_slots->Acquire([weak, token](StartSlots::Lease lease) {
    auto self = weak.lock();
    // Powered off or restarted while it waited: the lease goes back.
    if (!self || self->start_token_ != token || self->phase_ != Phase::kStarting) return;
    self->start_lease_ = std::move(lease);
    self->Spawn();
  });
  if (!start_lease_.held())
    VLOG_DEBUG(ctx_, "waiting for a start-up slot ({} of {} in use, {} waiting)", cfg_.start_slots->held(),
               cfg_.start_slots->limit(), cfg_.start_slots->waiting());
}

void Instance::Spawn() {
  if (guest_ && cfg_.adoptable) {
    if (auto found = cfg_.adoptable->Take(uuid_)) return AdoptWorker(std::move(*found));
  }
  auto client = guest_ ? StartGuestWorker() : WorkerClient::Start(loop_, cfg_.worker);
  if (!client.ok()) {
    // Report asynchronously: callers of PowerOn() must not be re-entered.
    std::weak_ptr<Instance> weak = weak_from_this();
    Status st = client.status();
    loop_.Post([weak, st] {
      if (auto self = weak.lock()) self->Fault(st.Annotate("starting worker"));
    });
    return;
  }
  worker_ = std::move(client).value();
  if (guest_) CheckFlight();
  WorkerRequest init;
  init.type = WorkerMsg::kInit;
  init.permanent = permanent_;
  init.savestate = savestate_;
  init.volatile_state = volatile_;
  started_ = volatile_.has_value();
  worker_->Call(init, cfg_.start_deadline, [this](Result<WorkerReply> r) { OnInit(std::move(r)); });
}

void Instance::OnInit(Result<WorkerReply> reply) {
  start_lease_.Reset();  // start-up is over, however it ended
  if (reply.ok() && reply->type != WorkerMsg::kReply)
    reply = Status(Code::kUnavailable, "worker refused to start: " + reply->message);
  if (!reply.ok()) return Fault(reply.status().Annotate("TPM_Init"));
  VLOG_DEBUG(ctx_, "worker {} started ({})", worker_->pid(),
             started_ ? "resumed volatile state" : "TPM_Init");
  if (guest_) {
    // The guest is served once the TPM is started: after the TPM_Startup
    // queued below, before anything queued during the start.
    Op serve;
    serve.id = next_op_id_++;
    serve.serve = true;
    queue_.push_front(std::move(serve));
  }
  if (!started_ && cfg_.startup_clear && !volatile_lost_) {
    Op startup;
    startup.id = next_op_id_++;
    startup.command = tpm12::Startup(tpm12::kStClear);
    startup.admin_done = [ctx = ctx_](Result<Bytes> r) {
      auto rc = r.ok() ? tpm12::ResponseCode(*r) : std::nullopt;
      if (rc != tpm12::kSuccess)
        VLOG_WARN(ctx, "TPM_Startup(ST_CLEAR) at power-on failed (rc {})", rc.value_or(~0u));
    };
    queue_.push_front(std::move(startup));
  }

  auto keep = shared_from_this();
  CommitThen(*reply, std::nullopt, [this](Kept) {
    phase_ = Phase::kReady;
    Pump();
  });
}

void Instance::RetryStart() {
  VLOG_WARN(ctx_, "retrying the TPM start after {}", broken_why_.ToString());
  retry_at_.reset();
  start_failures_ = kMaxStartFailures - 1;
  ++restarts_;
  worker_.reset();  // the no-TPM worker, if any: the next one finds the guest's request
  StartWorker();
}

void Instance::Enqueue(Op op) {
  op.id = next_op_id_++;
  if (phase_ == Phase::kBroken && retry_at_ && std::chrono::steady_clock::now() >= *retry_at_) {
    // The fault may have been transient (a full disk freed, a worker killed
    // from outside): one more start; a fault before a delivered command
    // breaks it again.
    queue_.push_back(std::move(op));
    return RetryStart();
  }
  if (phase_ == Phase::kOff || phase_ == Phase::kBroken) {
    // Never answer inside the caller's call.
    std::weak_ptr<Instance> weak = weak_from_this();
    Status why = phase_ == Phase::kOff ? Status(Code::kUnavailable, "TPM powered off") : broken_why_;
    loop_.Post([weak, op = std::move(op), why]() mutable {
      if (auto self = weak.lock()) self->FailOp(std::move(op), why);
    });
    return;
  }
  queue_.push_back(std::move(op));
  Pump();
}

void Instance::Execute(Bytes command, uint8_t locality, Done done) {
  ran_since_suspend_ = true;
  Op op;
  op.command = std::move(command);
  op.locality = locality;
  op.guest = true;
  op.guest_done = std::move(done);
  last_command_ = int64_t(std::time(nullptr));
  Enqueue(std::move(op));
}

void Instance::ExecuteFound(Bytes command, uint8_t locality, Done done) {
  ran_since_suspend_ = true;
  Op op;
  op.command = std::move(command);
  op.locality = locality;
  op.guest = true;
  op.found = true;
  op.guest_done = std::move(done);
  last_command_ = int64_t(std::time(nullptr));
  Enqueue(std::move(op));
}

void Instance::ResponseWritten() {
  if (auto seq = std::exchange(responding_, std::nullopt)) SaveRespondedMark(*seq);
}

void Instance::RunAdmin(Bytes command, bool physical_presence, AdminDone done) {
  Op op;
  op.command = std::move(command);
  op.presence = physical_presence;
  op.admin_done = std::move(done);
  Enqueue(std::move(op));
}

bool Instance::busy() const {
  if (in_flight_ && in_flight_->guest && in_flight_->guest_done) return true;
  for (auto& op : queue_)
    if (op.guest) return true;
  return false;
}

void Instance::Abort() {
  for (auto it = queue_.begin(); it != queue_.end();) {
    it = it->guest ? queue_.erase(it) : std::next(it);
  }
  if (!in_flight_ || !in_flight_->guest) return;
  if (phase_ == Phase::kCommitting) {
    // Its state is being made durable and cannot be taken back; only the
    // response is dropped.
    in_flight_->guest_done = nullptr;
    VLOG_GUEST_WARN(ctx_, "cancelled command had already executed; its response is dropped");
    return;
  }
  VLOG_GUEST_INFO(ctx_, "cancelled command: restarting the TPM from its state before the command");
  in_flight_.reset();
  worker_.reset();
  ++restarts_;
  StartWorker();
}

void Instance::Pump() {
  if (phase_ != Phase::kReady || in_flight_) return;
  if (replace_worker_ && !preempted_) {
    replace_worker_ = false;
    worker_.reset();
    return StartWorker();
  }
  if (queue_.empty()) return;
  in_flight_ = std::move(queue_.front());
  queue_.pop_front();
  phase_ = Phase::kRunning;
  if (in_flight_->capture) return RunCapture();
  if (in_flight_->serve) {
    WorkerRequest serve;
    serve.type = WorkerMsg::kServe;
    const uint64_t serve_id = in_flight_->id;
    worker_->Call(serve, cfg_.command_deadline, [this, serve_id](Result<WorkerReply> r) {
      if (!in_flight_ || in_flight_->id != serve_id) return;
      if (r.ok() && r->type != WorkerMsg::kReply) r = Status(Code::kUnavailable, "worker failed: " + r->message);
      if (!r.ok()) return Fault(r.status().Annotate("starting to serve the guest"));
      StoreWorker();
      in_flight_.reset();
      phase_ = Phase::kReady;
      Pump();
    });
    return;
  }
  if (in_flight_->executed) {
    WorkerReply executed = std::move(*in_flight_->executed);
    in_flight_->executed.reset();
    return Process(executed);
  }
  if (auto recalled = Recall(*in_flight_)) {
    std::optional<uint64_t> seq;
    if (last_record_) seq = last_record_->sequence;
    return Deliver(std::move(*recalled), seq, false);
  }
  WorkerRequest req;
  req.type = WorkerMsg::kExecute;
  req.command = in_flight_->command;
  req.locality = in_flight_->locality;
  req.physical_presence = in_flight_->presence;
  uint64_t id = in_flight_->id;
  worker_->Call(req, cfg_.command_deadline,
                [this, id](Result<WorkerReply> r) { OnReply(id, std::move(r)); });
}

void Instance::OnReply(uint64_t id, Result<WorkerReply> reply) {
  if (!in_flight_ || in_flight_->id != id) return;
  PullFlight();  // commands the worker kept before this one
  if (reply.ok() && reply->type != WorkerMsg::kReply)
    reply = Status(Code::kUnavailable, "worker failed: " + reply->message);
  if (!reply.ok()) return Fault(reply.status());
  Process(*reply);
}

void Instance::Process(const WorkerReply& reply) {
  const bool guest = in_flight_->guest;
  if (guest) CrashPoint("command-executed");
  CommandRecord record;
  record.sequence = sequence_ + 1;
  record.request_digest = RequestDigest(in_flight_->command);
  record.response = reply.response;
  // Volatile state is worth resuming from once the TPM has run a command.
  started_ = true;
  CommitThen(reply, record, [this, guest, record](Kept kept) {
    if (guest) CrashPoint("state-saved");
    if (kept == Kept::kNothing) return Deliver(record.response, std::nullopt, false);
    sequence_ = record.sequence;
    last_record_ = record;
    Deliver(record.response, record.sequence, kept == Kept::kStore);
  });
}

bool Instance::ChangesState(const WorkerReply& reply) const {
  for (const BlobChange& c : reply.changes) {
    if (c.kind == BlobKind::kPermanent && !(c.data && *c.data == permanent_)) return true;
    if (c.kind == BlobKind::kSavestate && (c.data ? !(savestate_ && *c.data == *savestate_) : savestate_.has_value()))
      return true;
  }
  return false;
}

void Instance::CommitThen(const WorkerReply& reply, std::optional<CommandRecord> record,
                          std::function<void(Kept)> then) {
  if (!ChangesState(reply)) {
    // A command after which the TPM is byte for byte what the volatile copy
    // holds writes nothing: run again after a daemon restart, it gives the
    // guest an equivalent answer from the same state (design §3 "Exactly once").
    if (record && started_ && volatile_saved_ && volatile_ && reply.volatile_state == *volatile_)
      return then(Kept::kNothing);
    if (started_ && !reply.volatile_state.empty()) volatile_ = reply.volatile_state;
    SaveVolatileCopy(record);
    then(Kept::kVolatileCopy);
    return;
  }
  CommitRequest req;
  req.uuid = uuid_;
  for (auto& c : reply.changes) {
    if (c.data)
      req.write[c.kind] = *c.data;
    else
      req.remove.push_back(c.kind);
  }
  if (!reply.volatile_state.empty()) req.volatile_copy = reply.volatile_state;
  req.record = record;
  req.expected_generation = generation_;
  phase_ = Phase::kCommitting;
  CommitOnLoop(std::move(req), [reply, record, then](Instance& self, Result<uint64_t> gen) {
    self.OnCommitted(gen, reply, record, then);
  });
}

void Instance::OnCommitted(Result<uint64_t> generation, const WorkerReply& reply,
                           std::optional<CommandRecord> record, std::function<void(Kept)> then) {
  if (phase_ != Phase::kCommitting) return;  // powered off meanwhile
  if (!generation.ok()) {
    Status why = generation.status().Annotate("committing TPM state");
    // A command's commit failed: the store is at fault, not the TPM.
    if (record) return RollBack(why);
    return Fault(why);  // the start-up write: counts as a failed start
  }
  generation_ = *generation;
  holds_capture_ = false;  // every commit without one drops it
  for (auto& c : reply.changes) {
    if (c.kind == BlobKind::kPermanent && c.data) permanent_ = *c.data;
    if (c.kind == BlobKind::kSavestate) savestate_ = c.data;
  }
  if (started_ && !reply.volatile_state.empty()) volatile_ = reply.volatile_state;
  phase_ = Phase::kRunning;
  SaveVolatileCopy(record);
  then(Kept::kStore);
}

void Instance::Deliver(Bytes response, std::optional<uint64_t> sequence, bool in_store) {
  auto keep = shared_from_this();
  start_failures_ = 0;
  phase_ = Phase::kReady;
  if (in_flight_) {
    Op op = std::move(*in_flight_);
    in_flight_.reset();
    bool delivered = false;
    if (op.via_worker) {
      ReleaseGuest(op.command, std::move(response), sequence, started_ && volatile_saved_);
      delivered = true;
    } else if (op.guest && op.guest_done) {
      // The device calls ResponseWritten() from inside guest_done once the
      // response is in the page; a dropped response leaves no mark.
      responding_ = sequence;
      op.guest_done(std::move(response));
      responding_.reset();
      delivered = true;
    } else if (op.admin_done) {
      if (sequence) SaveRespondedMark(*sequence);
      op.admin_done(std::move(response));
      delivered = true;
    }
    if (delivered && in_store && sequence) {
      Status st = store_.MarkDelivered(uuid_, *sequence);
      if (!st.ok()) VLOG_WARN(ctx_, "marking command {} delivered failed: {}", *sequence, st.ToString());
    }
  }
  if (preempted_ && phase_ == Phase::kReady) {
    // The daemon's command the guest's went before: its reply comes next.
    in_flight_ = std::move(preempted_);
    preempted_.reset();
    phase_ = Phase::kRunning;
    return;
  }
  if (phase_ == Phase::kReady) Pump();
}

void Instance::Fault(const Status& why) {
  auto keep = shared_from_this();
  if (phase_ == Phase::kOff || phase_ == Phase::kBroken) return;
  VEVENT_ERROR(kWorkerFault, ctx_, "TPM worker fault: {}; restarting from the last committed state",
             why.ToString());
  if (++start_failures_ >= kMaxStartFailures) {
    worker_.reset();
    start_lease_.Reset();
    phase_ = Phase::kBroken;
    broken_why_ = why.Annotate("TPM cannot start");
    retry_at_ = std::chrono::steady_clock::now() + kBrokenRetryDelay;
    VEVENT_ERROR(kWorkerGaveUp, ctx_,
                 "giving up after {} failed starts; commands get TPM_FAIL, the next one after {} s retries",
                 start_failures_, kBrokenRetryDelay.count());
    FailAll(broken_why_);
    StartFailWorker();  // unless a failure callback powered the instance off
    return;
  }
  Restart(why);
}

void Instance::RollBack(const Status& why) {
  auto keep = shared_from_this();
  VLOG_ERROR(ctx_, "{}; the command is answered TPM_FAIL and the TPM restarts from its last committed state",
             why.ToString());
  Restart(why);
}

void Instance::Restart(const Status& why) {
  worker_.reset();
  replace_worker_ = false;
  ForgetGuestCommand();
  for (std::optional<Op>* slot : {&in_flight_, &preempted_}) {
    if (!*slot) continue;
    Op op = std::move(**slot);
    slot->reset();
    FailOp(std::move(op), why);
  }
  if (phase_ == Phase::kOff) return;  // the failure callback powered us off
  ++restarts_;
  StartWorker();
}

void Instance::FailOp(Op op, const Status& why, bool notify_guest) {
  if (op.via_worker && notify_guest) ReleaseGuest(op.command, tpm12::ErrorResponse(tpm12::kFail), std::nullopt);
  if (op.guest && op.guest_done && notify_guest) op.guest_done(tpm12::ErrorResponse(tpm12::kFail));
  if (op.capture) capturing_ = false;
  if (op.admin_done) op.admin_done(why);
}

void Instance::FailAll(const Status& why, bool notify_guest) {
  auto keep = shared_from_this();
  std::deque<Op> ops;
  if (in_flight_) ops.push_back(std::move(*in_flight_));
  in_flight_.reset();
  if (preempted_) ops.push_back(std::move(*preempted_));
  preempted_.reset();
  for (auto& op : queue_) ops.push_back(std::move(op));
  queue_.clear();
  for (auto& op : ops) FailOp(std::move(op), why, notify_guest);
}

}  // namespace vtpm
