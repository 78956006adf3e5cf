#include "tpm/instance_manager.h"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

namespace vtpm {
namespace {

GuestCtx AdminCtx(const Uuid& uuid) { return GuestCtx{-1, -1, uuid.ToString()}; }

std::string HandleText(const DomainHandle& h) { return Uuid{h}.ToString(); }

// The copy was written for this very domain (its handle, when both are known).
bool SameDomain(const VolatileCopy& copy, const GuestCtx& ctx, const std::optional<DomainHandle>& handle) {
  return int64_t(copy.domid) == ctx.domid && (!copy.handle || !handle || *copy.handle == *handle);
}

// Runs admin commands in order on `inst`, each required to succeed.
void RunAdminChain(std::shared_ptr<Instance> inst, std::vector<std::pair<Bytes, bool>> steps,
                   size_t next, std::function<void(Status)> done) {
  if (next == steps.size()) return done(Status::Ok());
  Bytes cmd = steps[next].first;
  bool presence = steps[next].second;
  Instance* raw = inst.get();
  raw->RunAdmin(std::move(cmd), presence,
                [inst = std::move(inst), steps = std::move(steps), next,
                 done = std::move(done)](Result<Bytes> r) mutable {
                  if (!r.ok()) return done(r.status());
                  auto rc = tpm12::ResponseCode(*r);
                  if (rc != tpm12::kSuccess)
                    return done(Status(Code::kTpmError,
                                       "admin command " + std::to_string(next) + " failed",
                                       rc.value_or(tpm12::kFail)));
                  RunAdminChain(std::move(inst), std::move(steps), next + 1, std::move(done));
                });
}

}  // namespace

InstanceManager::InstanceManager(EventLoop& loop, Store& store, InstanceManagerOptions opts)
    : loop_(loop), store_(store), opts_(std::move(opts)) {}

InstanceManager::~InstanceManager() {
  *alive_ = false;
  manufacturing_.clear();
  for (auto& [uuid, inst] : instances_) inst->PowerOff();
}

InstanceConfig InstanceManager::MakeConfig(const std::optional<DomainHandle>& handle) const {
  InstanceConfig cfg;
  cfg.worker = opts_.worker;
  cfg.command_deadline = opts_.command_deadline;
  cfg.start_deadline = opts_.admin_deadline;
  cfg.startup_clear = opts_.startup_clear;
  cfg.boot_id = opts_.boot_id;
  cfg.domain_handle = handle;
  cfg.start_slots = opts_.start_slots;
  cfg.fd_store = opts_.fd_store;
  cfg.adoptable = opts_.adoptable;
  return cfg;
}

size_t InstanceManager::LeaveWorkersRunning() {
  size_t n = 0;
  for (auto& [uuid, inst] : instances_) n += inst->LeaveWorkerRunning() ? 1 : 0;
  return n;
}

std::shared_ptr<Instance> InstanceManager::Running(const Uuid& uuid) const {
  auto it = instances_.find(uuid);
  return it == instances_.end() ? nullptr : it->second;
}

std::optional<VolatileCopy> InstanceManager::UsableVolatile(const Uuid& uuid, const GuestCtx& ctx,
                                                            const std::optional<DomainHandle>& handle,
                                                            const LoadedInstance& loaded) {
  const uint64_t generation = loaded.generation;
  auto copy = store_.LoadVolatile(uuid);
  if (!copy.ok()) {
    VLOG_WARN(ctx, "volatile copy unusable ({}); powering on fresh", copy.status().ToString());
    return std::nullopt;
  }
  if (!*copy) return std::nullopt;
  std::string why;
  if (!VolatileCopyUsable(**copy, opts_.boot_id, uint32_t(ctx.domid), handle, generation, &why)) {
    // The daemon stopped between a state-changing command's commit and the
    // copy that follows it: the store holds that command's volatile state.
    const VolatileCopy& old = **copy;
    if (old.boot_id == opts_.boot_id && SameDomain(old, ctx, handle) && old.generation < generation &&
        loaded.volatile_copy && loaded.last_record && loaded.last_record->sequence > old.sequence) {
      VolatileCopy from_store;
      from_store.blob = *loaded.volatile_copy;
      from_store.boot_id = old.boot_id;
      from_store.domid = old.domid;
      from_store.sequence = loaded.last_record->sequence;
      from_store.generation = generation;
      from_store.record = loaded.last_record;
      from_store.worker_ahead = old.worker_ahead;  // the worker may be ahead of the store too
      VEVENT_INFO(kResumed, ctx,
                  "resuming the TPM from the state committed with command {} (the volatile copy is of "
                  "command {})",
                  from_store.sequence, old.sequence);
      return from_store;
    }
    // The generation moved on without a newer command (a worker restart
    // committed what libtpms stored at TPM_Init): the copy is still the newest.
    if (old.boot_id == opts_.boot_id && SameDomain(old, ctx, handle) && old.generation < generation &&
        (!loaded.last_record || loaded.last_record->sequence <= old.sequence)) {
      VolatileCopy newest = old;
      newest.generation = generation;
      VEVENT_INFO(kResumed, ctx,
                  "resuming the TPM from its volatile copy (sequence {}; the state generation moved from {} to "
                  "{} without a newer command)",
                  newest.sequence, old.generation, generation);
      return newest;
    }
    VLOG_INFO(ctx, "not resuming the volatile copy ({}); powering on fresh", why);
    return std::nullopt;
  }
  VEVENT_INFO(kResumed, ctx, "resuming the TPM from its volatile copy (sequence {}{})", (*copy)->sequence,
              (*copy)->worker_ahead ? ", or what its worker kept after it" : "");
  return std::move(**copy);
}

std::optional<VolatileCopy> InstanceManager::FromCapture(const GuestCtx& ctx, const std::optional<DomainHandle>& handle,
                                                         const LoadedInstance& loaded) {
  const SuspendCapture& cap = *loaded.suspend;
  const std::string what = fmt::format("the TPM state captured when domain {} (handle {}) suspended at {}", cap.domid,
                                       HandleText(cap.handle), UtcTime(cap.captured_at));
  if (!opts_.resume_by_handle) {
    VEVENT_INFO(kCaptureDropped, ctx, "dropping {} ([engine] resume = \"never\"); powering on fresh", what);
    return std::nullopt;
  }
  if (!handle) {
    VEVENT_WARN(kCaptureDropped, ctx,
                "dropping {}: the hypervisor did not give this domain's handle to compare; powering on fresh", what);
    return std::nullopt;
  }
  if (*handle != cap.handle) {
    VEVENT_INFO(kCaptureDropped, ctx, "dropping {}: this domain has handle {}, so it boots afresh; powering on fresh",
                what, HandleText(*handle));
    return std::nullopt;
  }
  if (!loaded.volatile_copy) {
    VEVENT_ERROR(kCaptureDropped, ctx, "dropping {}: the store holds no volatile state with it; powering on fresh",
                 what);
    return std::nullopt;
  }
  VolatileCopy v;
  v.blob = *loaded.volatile_copy;
  v.boot_id = opts_.boot_id;
  v.domid = uint32_t(ctx.domid);
  v.handle = handle;
  v.sequence = cap.sequence;
  v.generation = loaded.generation;
  VEVENT_INFO(kRestored, ctx, "resuming the TPM as domain {} left it when it suspended at {} (command {}): a restore",
              cap.domid, UtcTime(cap.captured_at), cap.sequence);
  return v;
}

bool InstanceManager::SameDomainAs(const Instance& inst, const std::optional<DomainHandle>& handle) const {
  // A domain whose device was torn down after it suspended is gone even when
  // a new one (its restore on the same domid) has its handle.
  if (inst.ended_suspended()) return false;
  const auto& had = inst.domain_handle();
  return !had || !handle || *had == *handle;
}

void InstanceManager::Suspended(const Uuid& uuid, const GuestCtx& ctx, const DomainHandle& handle) {
  auto inst = Running(uuid);
  if (!inst || inst->ctx().domid != ctx.domid) {
    VLOG_WARN(ctx, "domain suspended while its TPM was not powered for it: nothing to capture");
    return;
  }
  SuspendCapture cap;
  cap.handle = handle;
  cap.domid = uint32_t(ctx.domid);
  cap.captured_at = int64_t(std::time(nullptr));
  std::weak_ptr<bool> alive = alive_;
  inst->CaptureSuspend(cap, [this, alive, uuid, ctx, handle](Status st) {
    if (auto a = alive.lock(); !a || !*a) return;
    if (st.ok())
      VEVENT_INFO(kSuspendCaptured, ctx,
                  "domain suspended (handle {}): its TPM state is captured for the domain restored from it",
                  HandleText(handle));
    else
      VEVENT_WARN(kSuspendCaptured, ctx,
                  "domain suspended (handle {}) but its TPM state was not captured ({}): a restore powers on fresh",
                  HandleText(handle), st.ToString());
    if (auto it = release_after_capture_.find(uuid); it != release_after_capture_.end()) {
      GuestCtx released = it->second;
      release_after_capture_.erase(it);
      // Not from inside the instance's callback.
      loop_.Post([this, alive, uuid, released] {
        if (auto a = alive.lock(); a && *a) FinishRelease(uuid, released);
      });
    }
  });
}

Result<std::shared_ptr<Engine>> InstanceManager::Connect(const Uuid& uuid, const GuestCtx& ctx,
                                                         const std::optional<DomainHandle>& handle) {
  if (auto inst = Running(uuid); inst && inst->ctx().domid == ctx.domid && !SameDomainAs(*inst, handle)) {
    // The domid was given to another domain (xl restore -D, a re-create or
    // wrap-around) before the old one's instance was reaped: that one is gone.
    if (inst->capturing())
      return Status(Code::kBusy, "instance " + uuid.ToString() + " is capturing the suspended domain " +
                                     std::to_string(ctx.domid) + "'s TPM");
    VLOG_INFO(ctx, "a new domain with this domid: powering the previous domain's TPM off");
    FinishRelease(uuid, inst->ctx());
  }
  if (auto inst = Running(uuid)) {
    if (inst->ctx().domid == ctx.domid) {
      VLOG_INFO(ctx, "reconnected to the running TPM");
      return std::shared_ptr<Engine>(inst);
    }
    return Status(Code::kBusy, inst->ctx().domid < 0
                                   ? "instance " + uuid.ToString() + " is busy with vtpmctl"
                                   : "instance " + uuid.ToString() + " is attached to domain " +
                                         std::to_string(inst->ctx().domid));
  }
  if (manufacturing_.count(uuid))
    return Status(Code::kBusy, "instance " + uuid.ToString() + " is being created");
  auto loaded = store_.Load(uuid);
  if (loaded.ok()) {
    auto inst = Instance::Make(loop_, store_, MakeConfig(handle), uuid, ctx);
    // A copy of this very domain (a daemon restart) comes first and keeps a
    // capture the domain made; otherwise a capture is resumed or dropped,
    // and used up either way.
    auto resume = UsableVolatile(uuid, ctx, handle, *loaded);
    bool drop_capture = false;
    if (!resume && loaded->suspend) {
      resume = FromCapture(ctx, handle, *loaded);
      drop_capture = true;
    }
    Status touch = store_.TouchAttached(uuid);
    if (!touch.ok()) VLOG_WARN(ctx, "recording the attach time failed: {}", touch.ToString());
    instances_[uuid] = inst;
    VEVENT_INFO(kPoweredOn, ctx, "powering on the TPM ({})", resume ? "resume" : "TPM_Init");
    inst->PowerOn(std::move(loaded).value(), std::move(resume), drop_capture);
    return std::shared_ptr<Engine>(inst);
  }
  if (loaded.status().code() != Code::kNotFound) return loaded.status();
  // Moved to another host (vtpmctl export): never silently re-created here.
  ASSIGN_OR_RETURN(std::optional<MovedInstance> moved, FindMoved(store_, uuid));
  if (moved) return Status(Code::kFailedPrecondition, MovedRefusal(*moved));
  if (!opts_.auto_create)
    return Status(Code::kNotFound, "no vTPM instance " + uuid.ToString() +
                                       " and auto_create is off (vtpmctl create)");
  VEVENT_INFO(kCreated, ctx, "auto-creating vTPM instance {} on first attach", uuid.ToString());
  auto inst = Instance::Make(loop_, store_, MakeConfig(handle), uuid, ctx);
  instances_[uuid] = inst;
  std::weak_ptr<Instance> weak = inst;
  Manufacture(uuid, true, ctx, [weak](Result<LoadedInstance> created) {
    auto self = weak.lock();
    if (!self) return;
    if (created.ok())
      self->PowerOn(std::move(created).value(), std::nullopt);
    else
      self->FailPowerOn(created.status());
  });
  return std::shared_ptr<Engine>(inst);
}

void InstanceManager::Disconnect(const Uuid& uuid, const GuestCtx& ctx) {
  if (auto inst = Running(uuid); inst && inst->ctx().domid == ctx.domid)
    VLOG_INFO(ctx, "frontend disconnected; the TPM stays powered");
}

int64_t InstanceManager::LastCommand(const Uuid& uuid) const {
  int64_t t = 0;
  if (auto it = last_command_.find(uuid); it != last_command_.end()) t = it->second;
  if (auto inst = Running(uuid)) t = std::max(t, inst->last_command());
  return t;
}

std::map<Uuid, int64_t> InstanceManager::LastCommands() const {
  std::map<Uuid, int64_t> out = last_command_;
  for (const auto& [uuid, inst] : instances_) out[uuid] = std::max(out[uuid], inst->last_command());
  return out;
}

void InstanceManager::Release(const Uuid& uuid, const GuestCtx& ctx) {
  auto inst = Running(uuid);
  if (!inst || inst->ctx().domid != ctx.domid) return;
  if (inst->capturing()) {
    VLOG_INFO(ctx, "device released; powering the TPM off once its suspend capture is committed");
    release_after_capture_[uuid] = ctx;
    return;
  }
  FinishRelease(uuid, ctx);
}

void InstanceManager::FinishRelease(const Uuid& uuid, const GuestCtx& ctx) {
  auto inst = Running(uuid);
  if (!inst || inst->ctx().domid != ctx.domid) return;
  // The domain is gone: its volatile copy must not reach a later domain
  // that gets the same domid. A domain that ended by suspending keeps its
  // capture in the store; one that ran on after a capture drops it.
  if (!inst->ended_suspended()) inst->DropCapture();
  Status dropped = store_.DropRuntimeCopies(uuid);
  if (!dropped.ok()) VLOG_WARN(ctx, "removing the volatile copy failed: {}", dropped.ToString());
  VLOG_INFO(ctx, "device released; powering the TPM off{}",
            inst->ended_suspended() && inst->holds_capture() ? " (its suspend capture is kept)" : "");
  if (inst->last_command() != 0) last_command_[uuid] = inst->last_command();
  instances_.erase(uuid);
  inst->PowerOff();
}

void InstanceManager::Manufacture(const Uuid& uuid, bool auto_created, const GuestCtx& ctx,
                                  CreatedCallback done) {
  auto start = std::chrono::steady_clock::now();
  std::weak_ptr<bool> alive = alive_;
  auto on_done = [this, alive, uuid, auto_created, ctx, start,
                  done = std::move(done)](Result<ManufacturedTpm> tpm) {
    if (auto a = alive.lock(); !a || !*a) return;
    // The Manufacturer is inside its own callback: unregister it now, free it later.
    if (auto it = manufacturing_.find(uuid); it != manufacturing_.end()) {
      std::shared_ptr<Manufacturer> hold(it->second.release());
      manufacturing_.erase(it);
      loop_.Post([hold] {});
    }
    if (!tpm.ok()) return done(tpm.status().Annotate("manufacturing " + uuid.ToString()));
    InstanceMeta meta;
    meta.uuid = uuid;
    meta.created = int64_t(std::time(nullptr));
    meta.auto_created = auto_created;
    meta.ek_public = tpm->ek_public;
    Status st = store_.Create(meta, {{BlobKind::kPermanent, tpm->permanent}});
    if (!st.ok()) return done(st);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    VEVENT_INFO(kManufactured, ctx, "manufactured TPM 1.2 (EK created, nvLocked, presence locked) in {} ms",
                ms.count());
    done(store_.Load(uuid));
  };
  manufacturing_[uuid] =
      Manufacturer::Start(loop_, opts_.worker, opts_.admin_deadline, std::move(on_done));
}

void InstanceManager::Create(const Uuid& uuid, std::function<void(Result<InstanceMeta>)> done) {
  if (manufacturing_.count(uuid) || Running(uuid))
    return done(Status(Code::kAlreadyExists, "instance " + uuid.ToString() + " exists"));
  auto existing = store_.Load(uuid);
  if (existing.ok())
    return done(Status(Code::kAlreadyExists, "instance " + uuid.ToString() + " exists"));
  if (existing.status().code() != Code::kNotFound) return done(existing.status());
  auto moved = FindMoved(store_, uuid);
  if (!moved.ok()) return done(moved.status());
  if (*moved) return done(Status(Code::kAlreadyExists, MovedRefusal(**moved) + "; import it back from that host"));
  Manufacture(uuid, false, AdminCtx(uuid), [done = std::move(done)](Result<LoadedInstance> r) {
    if (!r.ok()) return done(r.status());
    done(std::move(r->meta));
  });
}

Result<Bytes> InstanceManager::ReadEkPublic(const Uuid& uuid) {
  ASSIGN_OR_RETURN(LoadedInstance loaded, store_.Load(uuid));
  if (loaded.meta.ek_public.empty())
    return Status(Code::kNotFound, "no EK recorded for " + uuid.ToString());
  return loaded.meta.ek_public;
}

void InstanceManager::Clear(const Uuid& uuid, std::function<void(Status)> done) {
  std::vector<std::pair<Bytes, bool>> steps = {{tpm12::ForceClear(), true},
                                               {tpm12::PhysicalEnable(), true},
                                               {tpm12::PhysicalSetDeactivated(false), true}};
  if (auto inst = Running(uuid)) {
    VLOG_INFO(inst->ctx(), "vtpmctl clear: clearing the running TPM");
    return RunAdminChain(inst, std::move(steps), 0, std::move(done));
  }
  if (manufacturing_.count(uuid))
    return done(Status(Code::kBusy, "instance " + uuid.ToString() + " is being created"));
  auto loaded = store_.Load(uuid);
  if (!loaded.ok()) return done(loaded.status());
  InstanceConfig cfg = MakeConfig(std::nullopt);
  cfg.startup_clear = true;
  auto inst = Instance::Make(loop_, store_, cfg, uuid, AdminCtx(uuid));
  instances_[uuid] = inst;
  VLOG_INFO(inst->ctx(), "vtpmctl clear: powering on the TPM for the clear");
  inst->PowerOn(std::move(loaded).value(), std::nullopt);
  std::weak_ptr<bool> alive = alive_;
  RunAdminChain(inst, std::move(steps), 0,
                [this, alive, uuid, inst, done = std::move(done)](Status st) {
                  if (auto a = alive.lock(); a && *a) {
                    if (Running(uuid) == inst) instances_.erase(uuid);
                  }
                  // Off after this callback returns (it runs inside the instance).
                  loop_.Post([inst] { inst->PowerOff(); });
                  done(st);
                });
}

void InstanceManager::ReadPcrs(const Uuid& uuid,
                               std::function<void(Result<std::vector<tpm12::PcrValue>>)> done) {
  auto inst = Running(uuid);
  if (!inst || inst->ctx().domid < 0)
    return done(Status(Code::kFailedPrecondition, "instance " + uuid.ToString() + " is not running"));
  auto pcrs = std::make_shared<std::vector<tpm12::PcrValue>>();
  auto shared_done = std::make_shared<std::function<void(Result<std::vector<tpm12::PcrValue>>)>>(
      std::move(done));
  for (uint32_t i = 0; i < tpm12::kNumPcrs; ++i) {
    inst->RunAdmin(tpm12::PcrRead(i), false, [pcrs, shared_done, i](Result<Bytes> r) {
      if (!*shared_done) return;  // an earlier read failed
      auto v = r.ok() ? tpm12::PcrFromResponse(*r) : std::nullopt;
      if (!v) {
        auto cb = std::move(*shared_done);
        *shared_done = nullptr;
        return cb(r.ok() ? Status(Code::kTpmError, "PCRRead " + std::to_string(i) + " failed",
                                  tpm12::ResponseCode(*r).value_or(tpm12::kFail))
                         : r.status());
      }
      pcrs->push_back(*v);
      if (pcrs->size() == tpm12::kNumPcrs) (*shared_done)(std::move(*pcrs));
    });
  }
}

}  // namespace vtpm
