// Instance: one TPM 1.2 instance powered on in a vtpm-worker; the Engine a
// device uses (engine.h), plus the daemon's own admin commands.
//
// Commands - guest and admin - run one at a time, in arrival order. For each:
// the worker executes it; NV blobs libtpms stored or deleted are committed
// through Store::Commit together with the command record (sequence, SHA-256
// of the request, response) and the volatile state; then the volatile copy
// is saved (Store::SaveVolatile, tagged with boot id, domid, sequence and
// generation); only then is the response delivered (design §3, §6).
//
// Exactly once (design §3): each command's record goes into the volatile copy
// (and, for state-changing commands, into the store with its state); after
// the response is in the page and before FINISH, a responded mark names its
// sequence. A command found in the page of a re-adopted device
// (ExecuteFound) is answered from the newest record when the page holds that
// record's response (written, FINISH lost), or its request while the mark
// says it was not answered (executed, not delivered); otherwise it runs.
//
// Faults (design §3 "Worker faults"): a worker that crashes, misses the
// command deadline or sends garbage is killed and restarted from the last
// committed state (permanent + savestate + the last delivered volatile
// state); the command in flight gets TPM_FAIL, the next one runs normally.
// Three such faults in a row (no command delivered between) leave it broken:
// commands get TPM_FAIL, and one arriving kBrokenRetryDelay or more after the
// break tries another start. With the guest attached, a worker without a
// TPM serves its page meanwhile (StartFailWorker).
// A command whose commit fails (ENOSPC, EIO) is rolled back the same way -
// TPM_FAIL, the worker restarted from the last committed state - but is not
// a fault: the store, not the TPM, failed, and the next command runs.
//
// The worker may serve the guest itself (AttachGuest, design §3 "The worker
// serves its guest"): it sends each guest command it ran (kGuestExecuted),
// which is committed and recorded as above and answered with kRelease, the
// response and its responded mark. Every worker start sends the first
// request it finds in the page as found (kGuestFound), which is answered
// from the records, answered TPM_FAIL when it is the command whose commit
// failed or whose worker was lost, or run. A guest command that reaches the
// daemon while a command of the daemon waits in the worker ran first, and
// is processed first.
//
// All methods run on the event-loop thread.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>

#include "common/event_loop.h"
#include "common/log.h"
#include "store/store.h"
#include "tpm/engine.h"
#include "tpm/start_slots.h"
#include "tpm/worker_adoption.h"
#include "tpm/worker_flight.h"
#include "tpm/worker_client.h"

namespace vtpm {

struct InstanceConfig {
  WorkerOptions worker;
  std::chrono::milliseconds command_deadline{30000};
  // Worker start-up: exec, sandbox, libtpms self-test (RSA key generation).
  std::chrono::milliseconds start_deadline{30000};
  bool startup_clear = true;  // send TPM_Startup(ST_CLEAR) at power-on
  std::array<uint8_t, 16> boot_id{};
  // The domain's handle when the hypervisor told it; tags the volatile copy.
  std::optional<std::array<uint8_t, 16>> domain_handle;
  // Bounds concurrent worker start-ups (tpm/start_slots.h); none: unbounded.
  std::shared_ptr<StartSlots> start_slots;
  // design §2 "Workers outlive the daemon" (tpm/worker_adoption.h).
  std::shared_ptr<WorkerFdStore> fd_store;
  std::shared_ptr<AdoptableWorkers> adoptable;
};

// The command record a volatile slot carries.
CommandRecord RecordOf(const VolatileSlot& slot);

class Instance final : public Engine, public std::enable_shared_from_this<Instance> {
 public:
  using AdminDone = std::function<void(Result<Bytes>)>;

  // Not yet powered: commands queue until PowerOn() or FailPowerOn().
  // `ctx.domid` < 0 marks an admin-only power-on (no volatile copies).
  static std::shared_ptr<Instance> Make(EventLoop& loop, Store& store, InstanceConfig cfg,
                                        Uuid uuid, GuestCtx ctx);
  ~Instance() override;

  // TPM_Init from `loaded`; with `resume` the TPM continues from that
  // volatile state (no Startup), otherwise Startup(ST_CLEAR) follows when
  // configured. With `drop_capture`, the store's SuspendCapture is dropped
  // by a durable commit before the worker starts (a capture is used at most
  // once: design §6 "Save, restore and migration"); if that commit fails the
  // power-on fails. Otherwise a capture in `loaded` is kept.
  void PowerOn(LoadedInstance loaded, std::optional<VolatileCopy> resume, bool drop_capture = false);
  // The instance could not be created or loaded: queued and later commands fail.
  void FailPowerOn(const Status& why);
  // Kills the worker. Queued and in-flight guest commands are dropped (their
  // `done` never runs: the device is gone); admin commands fail. Idempotent.
  void PowerOff();
  // The daemon stops on purpose: a worker in the fd store is left serving
  // its guest for the next daemon to take over (design §2 "Workers outlive
  // the daemon"), and the instance powered off here. True if it was.
  bool LeaveWorkerRunning();

  // Engine
  void Execute(Bytes command, uint8_t locality, Done done) override;
  void ExecuteFound(Bytes command, uint8_t locality, Done done) override;
  void ResponseWritten() override;
  bool AttachGuest(const GuestLink& link, bool any_locality) override;
  void DetachGuest() override;
  void Abort() override;
  bool busy() const override;

  // A command of the daemon itself; `physical_presence` is what libtpms'
  // hardware presence callback reports while it runs. `done` gets the
  // response, or the error that prevented one.
  void RunAdmin(Bytes command, bool physical_presence, AdminDone done);

  // The domain suspended: once the commands before it are done, commits the
  // TPM's volatile state with `capture` (its sequence is filled in) in one
  // durable transaction. `done` gets the outcome; an instance that never
  // ran a command has nothing to capture (kFailedPrecondition).
  void CaptureSuspend(SuspendCapture capture, std::function<void(Status)> done);
  // A capture was asked for and no guest command came after it: the domain
  // ended by suspending (so its capture is kept when it is released).
  bool ended_suspended() const { return suspend_asked_ && !ran_since_suspend_; }
  // A capture is queued or being committed.
  bool capturing() const { return capturing_; }
  // The store holds a SuspendCapture of this instance (from before this
  // power-on, or made by CaptureSuspend); every other commit drops it.
  bool holds_capture() const { return holds_capture_; }
  // Drops the store's capture with a commit of its own (async; logged).
  void DropCapture();

  const GuestCtx& ctx() const { return ctx_; }
  const std::optional<std::array<uint8_t, 16>>& domain_handle() const { return cfg_.domain_handle; }
  bool powered() const { return phase_ != Phase::kOff && phase_ != Phase::kBroken; }
  uint64_t restarts() const { return restarts_; }
  pid_t worker_pid() const { return worker_ ? worker_->pid() : -1; }
  // Unix time of the last guest command received, 0 if none (vtpmctl list,
  // design §8): kept in memory only.
  int64_t last_command() const;

 private:
  enum class Phase { kWaiting, kStarting, kReady, kRunning, kCommitting, kOff, kBroken };
  struct Op {
    uint64_t id = 0;
    Bytes command;
    uint8_t locality = 0;
    bool presence = false;
    bool guest = false;
    bool found = false;  // see ExecuteFound()
    bool serve = false;  // kServe: the worker starts serving its guest
    bool via_worker = false;  // a guest command the worker ran: answered by ReleaseGuest()
    std::optional<WorkerReply> executed;  // via_worker: what the worker returned
    std::optional<SuspendCapture> capture;  // CaptureSuspend(): no command, a commit
    Done guest_done;
    AdminDone admin_done;
  };

  Instance(EventLoop& loop, Store& store, InstanceConfig cfg, Uuid uuid, GuestCtx ctx);
  // Starts a worker from the last committed state once a start-up slot is
  // free (at once without StartSlots); commands queue meanwhile.
  void StartWorker();
  void Spawn();
  // A worker serving the guest (guest_ set): its responded mark and flight
  // record set up, its guest frames going to OnGuestFrame().
  // With `no_tpm`, a worker without a TPM that hands every request of the
  // guest to OnGuestFrame() as found: what serves the guest of a broken
  // instance (StartFailWorker), since the daemon maps no guest page.
  Result<std::unique_ptr<WorkerClient>> StartGuestWorker(bool no_tpm = false);
  // Broken with a guest attached: a no-TPM worker answers its requests
  // TPM_FAIL until the instance retries a start (design §3 "Worker faults").
  void StartFailWorker();
  // A broken instance's one more start (kBrokenRetryDelay after the break).
  void RetryStart();
  // Takes over the worker a previous daemon left serving this guest, or
  // starts one (StartWorker) when it serves another link or cannot be reached.
  void AdoptWorker(AdoptableWorker found);
  // kAdopt's answer: the worker is kept if it holds the state this daemon
  // loaded, else killed and a new one started.
  void OnAdopted(Result<WorkerReply> reply);
  // Hands the serving worker's socket, flight record and a pidfd to the fd
  // store, once it serves.
  void StoreWorker();
  void OnInit(Result<WorkerReply> reply);
  void Pump();
  void OnReply(uint64_t id, Result<WorkerReply> reply);
  // The reply of the in-flight op: record, commit, deliver.
  void Process(const WorkerReply& reply);
  // A frame the worker serving the guest sent of its own accord.
  void OnGuestFrame(WorkerReply frame);
  // Answers the worker's outstanding guest frame with `response` (and the
  // responded mark of `sequence`). With no worker left to answer, the
  // next worker answers the same request TPM_FAIL instead (fail_digest_).
  void ReleaseGuest(const Bytes& request, Bytes response, std::optional<uint64_t> sequence, bool settled = false);
  // A new worker, once no command is in flight, for a guest attached or detached.
  void ReplaceWorker();
  // The worker serving the guest is gone: ends the guest command deadline,
  // and a request it had started is answered TPM_FAIL by the next worker.
  void ForgetGuestCommand();
  // Takes the flight record's volatile slot when it is newer than volatile_
  // (a command the worker kept there), and its responded mark (design §3
  // "Volatile state in the flight record").
  void PullFlight();
  // A copy that says the worker may have kept newer volatile state: that
  // state, from the flight record the previous daemon left (live worker or
  // not); nullopt, with volatile_lost_ set, when there is none to read.
  std::optional<VolatileCopy> FromFlightRecord(VolatileCopy copy);
  // Whether the worker keeps volatile-only commands in its slot, so that the
  // runtime directory's copy may be older than the TPM (the copy says so).
  bool VolatileSlots() const;
  // Whether `reply` changes the committed state: libtpms also stores its
  // permanent blob unchanged (at TPM_Init, for one), which needs no commit -
  // and a commit without a record would outdate the volatile copy.
  bool ChangesState(const WorkerReply& reply) const;
  // Where a command's effects, and its record, were kept.
  enum class Kept {
    kNothing,       // it left the TPM as it was: nothing written (design §3)
    kVolatileCopy,  // the runtime directory's volatile copy
    kStore,         // a store commit
  };
  // Commits `reply`'s changes when ChangesState(), else saves the volatile
  // copy unless `record`'s command left the volatile state as the copy holds
  // it; then calls `then(kept)` on the loop.
  void CommitThen(const WorkerReply& reply, std::optional<CommandRecord> record, std::function<void(Kept)> then);
  void OnCommitted(Result<uint64_t> generation, const WorkerReply& reply,
                   std::optional<CommandRecord> record, std::function<void(Kept)> then);
  void SaveVolatileCopy(const std::optional<CommandRecord>& record);
  // Store::Commit, then `then` on the loop thread unless the instance is gone.
  void CommitOnLoop(CommitRequest req, std::function<void(Instance&, Result<uint64_t>)> then);
  void RunCapture();
  void OnCaptured(Result<uint64_t> generation);
  // The in-flight op's answer, which belongs to recorded command `sequence`
  // (none: a command that kept nothing, which leaves no responded mark);
  // `in_store` if that command's record is in the store.
  void Deliver(Bytes response, std::optional<uint64_t> sequence, bool in_store);
  // For a found op: the recorded response to send instead of running it.
  std::optional<Bytes> Recall(const Op& op) const;
  void SaveRespondedMark(uint64_t sequence);
  // The responded mark of command `sequence` of this domain, this boot.
  RespondedMark MarkOf(uint64_t sequence) const;
  void Fault(const Status& why);
  // The in-flight command's commit failed: answer it TPM_FAIL and restart
  // the worker from the last committed state, which the command never left.
  void RollBack(const Status& why);
  // Kills the worker, fails the in-flight op with `why` and starts a new
  // worker from the last committed state.
  void Restart(const Status& why);
  void FailOp(Op op, const Status& why, bool notify_guest = true);
  void FailAll(const Status& why, bool notify_guest = true);
  void Enqueue(Op op);

  EventLoop& loop_;
  Store& store_;
  InstanceConfig cfg_;
  Uuid uuid_;
  GuestCtx ctx_;
  Phase phase_ = Phase::kWaiting;
  std::unique_ptr<WorkerClient> worker_;
  StartSlots::Lease start_lease_;  // held from the worker's spawn to kInit's reply
  uint64_t start_token_ = 0;       // which StartWorker() a slot is handed to

  // Last committed state: what a restarted worker starts from.
  Bytes permanent_;
  std::optional<Bytes> savestate_;
  std::optional<Bytes> volatile_;  // after the last delivered command
  bool volatile_saved_ = false;    // the runtime directory's copy holds volatile_
  uint64_t generation_ = 0;
  uint64_t sequence_ = 0;
  std::optional<CommandRecord> last_record_;  // of command sequence_, if known
  uint64_t responded_ = 0;                   // newest command answered (mark)
  std::optional<uint64_t> responding_;       // command whose response is being written
  bool started_ = false;  // TPM_Startup done in this power cycle
  // The volatile state of the running domain was lost: powered on without
  // TPM_Startup, so the guest gets TPM_INVALID_POSTINIT until it restarts.
  bool volatile_lost_ = false;
  bool stopping_ = false;  // LeaveWorkerRunning(): no more slot grants
  bool holds_capture_ = false;
  bool capturing_ = false;
  bool suspend_asked_ = false;
  bool ran_since_suspend_ = false;

  std::deque<Op> queue_;
  std::optional<Op> in_flight_;
  // A command of the daemon still in the worker while a guest command that
  // the worker ran before it is processed (see OnGuestFrame()).
  std::optional<Op> preempted_;
  // The worker serves the guest (AttachGuest).
  std::optional<WorkerGuest> guest_;
  UniqueFd mark_fd_;                 // the worker's responded-mark file, per worker
  std::optional<Bytes> fail_digest_;  // request to answer TPM_FAIL when found
  // The flight record of the worker serving the guest (tpm/worker_flight.h),
  // and the timer that checks it against the command deadline.
  FlightPage flight_;
  std::optional<EventLoop::TimerId> flight_check_;
  void CheckFlight();
  bool replace_worker_ = false;
  uint64_t next_op_id_ = 1;
  uint64_t restarts_ = 0;
  int start_failures_ = 0;  // faults since the last delivered command
  int64_t last_command_ = 0;
  Status broken_why_;
  // When a broken instance may try another start (unset: never, FailPowerOn).
  std::optional<std::chrono::steady_clock::time_point> retry_at_;
};

}  // namespace vtpm
