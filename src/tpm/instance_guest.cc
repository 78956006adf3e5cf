// Instance: the part that serves a guest through its worker (design §3 "The
// worker serves its guest"): the guest's link, the worker's guest frames, the
// release of their responses, and the worker's flight record.
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/background_reap.h"
#include "common/log_rate_limit.h"
#include "store/record_codec.h"
#include "tpm/instance.h"
#include "tpm/tpm12.h"

namespace vtpm {
namespace {

// How often the flight record of a worker serving its guest is checked
// against the command deadline.
constexpr std::chrono::milliseconds kFlightCheck{1000};

// How often a serving worker renews its sign of life: a quarter of the
// command deadline, within [50 ms, 5 s] (with the default deadline of 30 s,
// a wake-up every 5 s).
std::chrono::milliseconds HeartbeatPeriod(std::chrono::milliseconds deadline) {
  return std::clamp(deadline / 4, std::chrono::milliseconds(50), std::chrono::milliseconds(5000));
}

}  // namespace

Result<std::unique_ptr<WorkerClient>> Instance::StartGuestWorker(bool no_tpm) {
  // Workers write the mark: what the last one wrote is the truth.
  auto written = store_.LoadResponded(uuid_);
  if (written.ok() && *written && (*written)->boot_id == cfg_.boot_id &&
      int64_t((*written)->domid) == ctx_.domid)
    responded_ = std::max(responded_, (*written)->sequence);
  auto mark_fd = store_.OpenRespondedForWorker(uuid_, MarkOf(responded_));
  auto flight = FlightPage::Create();
  if (mark_fd.ok() && flight.ok()) {
    ForgetGuestCommand();
    flight_ = std::move(flight).value();
    FlightRecord& rec = flight_.record();
    rec.link_domid = guest_->link.domid;
    rec.link_ring_ref = guest_->link.ring_ref;
    rec.link_remote_port = guest_->link.remote_port;
    WorkerGuest guest = *guest_;
    guest.mark_fd = mark_fd->get();
    guest.flight_fd = flight_.fd();
    guest.found = true;  // whatever the page holds is judged from the records first
    guest.heartbeat = HeartbeatPeriod(cfg_.command_deadline);
    guest.no_tpm = no_tpm;
    guest.volatile_slots = VolatileSlots() && !no_tpm;
    std::weak_ptr<Instance> weak = weak_from_this();
    auto client = WorkerClient::Start(loop_, cfg_.worker, &guest, [weak](WorkerReply frame) {
      if (auto self = weak.lock()) self->OnGuestFrame(std::move(frame));
    });
    // The worker has its own copy; the mapping stays, and the fd stays for
    // the fd store (StoreWorker).
    if (!cfg_.fd_store || no_tpm) flight_.CloseFd();
    return client;
  }
  return !mark_fd.ok() ? mark_fd.status().Annotate("the responded mark for the worker")
                       : flight.status().Annotate("the worker's flight record");
}

void Instance::StoreWorker() {
  if (!cfg_.fd_store || !guest_ || !worker_ || !flight_.valid() || flight_.fd() < 0) return;
  UniqueFd pidfd(int(syscall(SYS_pidfd_open, worker_->pid(), 0u)));
  if (!pidfd.valid()) {
    VLOG_WARN(ctx_, "no pidfd for worker {} ({}): it will die with the daemon", worker_->pid(), std::strerror(errno));
    return;
  }
  const std::string name = WorkerFdName(uuid_);
  cfg_.fd_store->Put(name, {worker_->socket_fd(), flight_.fd(), pidfd.get()});
  worker_->SetStored(StoredWorker(cfg_.fd_store, name));
}

void Instance::AdoptWorker(AdoptableWorker found) {
  const pid_t pid = found.process.pid();
  auto refuse = [&](const std::string& why) {
    VLOG_WARN(ctx_, "not taking over worker {} of the previous daemon: {}; starting a new one", pid, why);
    if (cfg_.fd_store) cfg_.fd_store->Remove(WorkerFdName(uuid_));
  };
  if (found.link != guest_->link) {
    refuse("it serves grant " + std::to_string(found.link.ring_ref) + " and port " +
           std::to_string(found.link.remote_port) + " of domain " + std::to_string(found.link.domid));
    ReapInBackground(loop_, std::move(found.process), std::chrono::milliseconds(0));
    return StartWorker();
  }
  WorkerIdentities::Lease lease;
  if (cfg_.worker.identities) {
    auto reserved = cfg_.worker.identities->Reserve(found.uid);
    if (!reserved.ok()) {
      refuse(reserved.status().ToString());
      ReapInBackground(loop_, std::move(found.process), std::chrono::milliseconds(0));
      return StartWorker();
    }
    lease = std::move(reserved).value();
  }
  FlightPage flight = std::move(found.flight);
  std::weak_ptr<Instance> weak = weak_from_this();
  auto client = WorkerClient::Adopt(loop_, std::move(found), std::move(lease), [weak](WorkerReply frame) {
    if (auto self = weak.lock()) self->OnGuestFrame(std::move(frame));
  });
  if (!client.ok()) {
    refuse(client.status().ToString());
    return StartWorker();
  }
  ForgetGuestCommand();
  flight_ = std::move(flight);
  worker_ = std::move(client).value();
  if (cfg_.fd_store) worker_->SetStored(StoredWorker(cfg_.fd_store, WorkerFdName(uuid_)));
  CheckFlight();
  WorkerRequest adopt;
  adopt.type = WorkerMsg::kAdopt;
  adopt.nonce.resize(16);
  if (getrandom(adopt.nonce.data(), adopt.nonce.size(), 0) != ssize_t(adopt.nonce.size()))
    adopt.nonce.assign(adopt.nonce.size(), uint8_t(pid));  // the nonce only tells replies apart
  worker_->Call(adopt, cfg_.start_deadline, [this](Result<WorkerReply> r) { OnAdopted(std::move(r)); });
}

void Instance::OnAdopted(Result<WorkerReply> reply) {
  start_lease_.Reset();
  const pid_t pid = worker_ ? worker_->pid() : -1;
  std::string why;
  if (!reply.ok())
    why = reply.status().ToString();
  else if (reply->type != WorkerMsg::kAdopted)
    why = "it refused: " + reply->message;
  else if (worker_->adopt_unclean())
    why = "it had answered a request of the previous daemon";
  else if (reply->adopted_flags & kAdoptedDeferred)
    why = "a request of the previous daemon waits in it";
  else if (reply->state_digest.empty())
    why = "its volatile state is not one the daemon saved";
  else if (reply->state_digest != TpmStateDigest(permanent_, savestate_, volatile_))
    why = "its state is not the one the store and the volatile copy hold";
  if (!why.empty()) {
    VLOG_WARN(ctx_, "not taking over worker {} of the previous daemon: {}; starting a new one", pid, why);
    worker_.reset();
    ForgetGuestCommand();  // a command it was running is answered TPM_FAIL by the next worker
    return StartWorker();
  }
  VEVENT_INFO(kWorkerAdopted, ctx_, "took over worker {} of the previous daemon, which went on serving the guest{}",
              pid, (reply->adopted_flags & kAdoptedGuestFrameFollows) ? "; its command that waits for a commit is processed now" : "");
  started_ = true;
  phase_ = Phase::kReady;
  Pump();
}

bool Instance::AttachGuest(const GuestLink& link, bool any_locality) {
  WorkerGuest guest;
  guest.link = link;
  guest.any_locality = any_locality;
  guest_ = guest;
  ReplaceWorker();
  return true;
}

void Instance::DetachGuest() {
  if (!guest_) return;
  guest_.reset();
  ReplaceWorker();
}

void Instance::StartFailWorker() {
  worker_.reset();
  if (!guest_ || phase_ != Phase::kBroken) return;  // no guest to answer, or no longer broken
  auto client = StartGuestWorker(/*no_tpm=*/true);
  if (!client.ok()) {
    VLOG_ERROR(ctx_, "cannot start a worker to answer the guest while the TPM is broken: {}",
               client.status().ToString());
    return;
  }
  worker_ = std::move(client).value();
  WorkerRequest serve;
  serve.type = WorkerMsg::kServe;
  worker_->Call(serve, cfg_.start_deadline, [this](Result<WorkerReply> r) {
    if (r.ok() && r->type != WorkerMsg::kReply) r = Status(Code::kUnavailable, r->message);
    if (r.ok()) return;
    VLOG_ERROR(ctx_, "the worker that answers the guest while the TPM is broken failed: {}", r.status().ToString());
    worker_.reset();  // the guest's next request waits for the next attach or start
  });
}

void Instance::ReplaceWorker() {
  if (phase_ == Phase::kBroken) return StartFailWorker();
  if (!worker_) return;  // none now: the next start reads guest_
  if (phase_ == Phase::kStarting) {
    // Still in kInit (or waiting for it): nothing of it has been used yet.
    worker_.reset();
    return StartWorker();
  }
  if (phase_ == Phase::kOff || phase_ == Phase::kBroken) return;
  replace_worker_ = true;  // by Pump() once no command is in flight
  Pump();
}

void Instance::OnGuestFrame(WorkerReply frame) {
  auto keep = shared_from_this();
  PullFlight();  // commands the worker kept before this frame
  switch (frame.type) {
    case WorkerMsg::kFailure:
      // The worker died or broke the protocol while no request of ours was
      // pending (it may have been running a guest command).
      if (phase_ == Phase::kBroken) {
        VLOG_ERROR(ctx_, "the worker that answers the guest while the TPM is broken was lost: {}", frame.message);
        worker_.reset();  // the guest's next request waits for the next attach or start
        return;
      }
      if (phase_ == Phase::kCommitting) {
        // A guest command it ran is being committed: that goes on, and the
        // next worker finds the command in the page and answers it from
        // its record.
        VLOG_ERROR(ctx_, "TPM worker lost while its command is committed: {}; starting another", frame.message);
        replace_worker_ = true;
        return;
      }
      return Fault(Status(Code::kUnavailable, frame.message));
    case WorkerMsg::kGuestRejected:
      last_command_ = int64_t(std::time(nullptr));
      VLOG_GUEST_WARN(ctx_, "request refused without running it (length {}, nr_extra_pages {}): {}; answered {:#x}",
                      frame.header_length, frame.nr_extra_pages, frame.message, frame.code);
      return;
    case WorkerMsg::kGuestFound: {
      if (phase_ == Phase::kBroken) {
        // From the no-TPM worker. A start is due: the next worker finds
        // this request again and answers it.
        if (retry_at_ && std::chrono::steady_clock::now() >= *retry_at_) return RetryStart();
        fail_digest_.reset();
        return ReleaseGuest(frame.request, tpm12::ErrorResponse(tpm12::kFail), std::nullopt);
      }
      Op op;
      op.guest = true;
      op.found = true;
      op.command = frame.request;
      if (fail_digest_ && *fail_digest_ == RequestDigest(frame.request)) {
        fail_digest_.reset();
        VLOG_GUEST_WARN(ctx_, "the command the previous worker did not finish is answered TPM_FAIL");
        return ReleaseGuest(frame.request, tpm12::ErrorResponse(tpm12::kFail), std::nullopt);
      }
      fail_digest_.reset();
      if (phase_ == Phase::kReady || phase_ == Phase::kRunning) {
        if (auto recalled = Recall(op)) {
          std::optional<uint64_t> seq;
          if (last_record_) seq = last_record_->sequence;
          return ReleaseGuest(frame.request, std::move(*recalled), seq);
        }
      }
      WorkerRequest run;
      run.type = WorkerMsg::kRun;
      worker_->Send(run);
      return;
    }
    case WorkerMsg::kGuestExecuted: {
      ran_since_suspend_ = true;
      last_command_ = int64_t(std::time(nullptr));
      Op op;
      op.id = next_op_id_++;
      op.guest = true;
      op.via_worker = true;
      op.command = frame.request;
      op.locality = frame.locality;
      frame.type = WorkerMsg::kReply;
      op.executed = std::move(frame);
      if (in_flight_ && worker_ && worker_->busy()) {
        // The worker ran the guest's command before the one of ours it
        // holds: it is processed first, ours is answered after its release.
        preempted_ = std::move(in_flight_);
        in_flight_.reset();
        phase_ = Phase::kReady;
      }
      queue_.push_front(std::move(op));
      return Pump();
    }
    default:
      return Fault(Status(Code::kCorruption, "unexpected guest frame"));
  }
}

void Instance::ReleaseGuest(const Bytes& request, Bytes response, std::optional<uint64_t> sequence, bool settled) {
  if (!worker_ || !worker_->alive() || !worker_->guest_outstanding()) {
    // The worker that ran it is gone; the request is still in the page,
    // and the next worker finds it (design §3 "Worker faults").
    if (tpm12::ResponseCode(response) != tpm12::kSuccess) fail_digest_ = RequestDigest(request);
    return;
  }
  if (settled && flight_.valid() && VolatileSlots() && volatile_) {
    // The copy says the worker may go ahead of it (SaveVolatileCopy ran
    // before this): from this state on, volatile-only commands are its own.
    VolatileSlot slot;
    slot.sequence = sequence_;
    if (last_record_ && last_record_->sequence == sequence_) {
      slot.request_digest = last_record_->request_digest;
      slot.response = last_record_->response;
    }
    slot.volatile_state = *volatile_;
    if (!flight_.PutSlot(slot, /*grant=*/true))
      VLOG_DEBUG(ctx_, "volatile state of command {} not put in the flight record (it does not fit)", sequence_);
  }
  WorkerRequest rel;
  rel.type = WorkerMsg::kRelease;
  rel.command = std::move(response);
  rel.settled = settled;
  if (sequence) {
    rel.mark = EncodeResponded(MarkOf(*sequence));  // responded_ follows once a worker start reads it back
  }
  worker_->Send(rel);
}

void Instance::ForgetGuestCommand() {
  if (flight_check_) loop_.CancelTimer(*flight_check_);
  flight_check_.reset();
  if (!flight_.valid()) return;
  // What the worker kept is the TPM's state from now on; it keeps no more.
  flight_.Revoke();
  PullFlight();
  // The lost worker was running this request: the next worker answers it
  // TPM_FAIL instead of running it again on the state it may have broken
  // (design §3 "Worker faults").
  if (auto request = flight_.InFlight()) fail_digest_ = RequestDigest(*request);
  last_command_ = std::max(last_command_, flight_.record().last_command.load(std::memory_order_relaxed));
  flight_ = FlightPage();
}

void Instance::CheckFlight() {
  flight_check_.reset();
  if (!flight_.valid() || !worker_) return;
  const uint64_t deadline = uint64_t(std::chrono::nanoseconds(cfg_.command_deadline).count());
  uint64_t started = 0;
  const bool in_flight = flight_.InFlight(&started).has_value();
  // Read after: a command the worker began meanwhile is not in the future.
  const uint64_t now = MonotonicNs();
  if (in_flight && now > started && now - started > deadline)
    return Fault(Status(Code::kTimeout, "worker missed its deadline on a guest command"));
  // Idle, or waiting for nothing of ours: it wakes at least every heartbeat
  // period. One that has not for the deadline on top is stopped or stuck,
  // and its guest's next request would go unanswered.
  const uint64_t alive = flight_.last_alive();
  const uint64_t silence =
      deadline + uint64_t(std::chrono::nanoseconds(HeartbeatPeriod(cfg_.command_deadline)).count());
  if (alive != 0 && started == 0 && !worker_->busy() && !worker_->guest_outstanding() && now > alive &&
      now - alive > silence)
    return Fault(Status(Code::kTimeout, "worker gave no sign of life for " + std::to_string((now - alive) / 1000000) +
                                            " ms while serving its guest"));
  std::weak_ptr<Instance> weak = weak_from_this();
  flight_check_ = loop_.AddTimer(kFlightCheck, [weak] {
    if (auto self = weak.lock()) self->CheckFlight();
  });
}

int64_t Instance::last_command() const {
  if (!flight_.valid()) return last_command_;
  return std::max(last_command_, flight_.record().last_command.load(std::memory_order_relaxed));
}

}  // namespace vtpm
