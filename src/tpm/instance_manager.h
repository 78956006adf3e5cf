// InstanceManager: the daemon's EngineProvider (engine.h) over the Store.
//
// Instances are keyed by uuid and powered on for one domain at a time
// (design §6): Connect() of a new domain powers on (TPM_Init, then
// Startup(ST_CLEAR) unless configured off) - or, after a daemon restart,
// resumes from the runtime directory's volatile copy when it belongs to this
// boot, this domain and the stored generation. A reconnect of the same
// domain gets the running instance; Disconnect() keeps it powered;
// Release() powers it off. An unknown uuid is created on first attach when
// `auto_create` is set (manufactured in a worker while its first commands
// wait). It also serves vtpmctl: create, EK public key, clear, PCRs.
// All methods run on the event-loop thread; callbacks run there too.
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "common/event_loop.h"
#include "store/store.h"
#include "tpm/engine.h"
#include "tpm/instance.h"
#include "tpm/manufacture.h"
#include "tpm/tpm12.h"

namespace vtpm {

struct InstanceManagerOptions {
  WorkerOptions worker;  // path: [engine] worker_path or InstalledWorkerPath(); uid/gid: ResolveWorkerUser()
  bool auto_create = true;
  bool startup_clear = true;  // config `startup = clear | none`
  bool resume_by_handle = true;  // config `resume = handle | never`
  // Per guest command; below the guest's 50 s TPM 1.2 short duration.
  std::chrono::milliseconds command_deadline{30000};
  // Worker start-up and each manufacturing step (RSA-2048 key generation).
  std::chrono::milliseconds admin_deadline{30000};
  std::array<uint8_t, 16> boot_id{};  // ReadBootId()
  std::shared_ptr<StartSlots> start_slots;  // shared by every instance's worker start-ups
  // Serving workers go to this fd store and outlive the daemon; the ones a
  // previous daemon left are taken over from `adoptable` (design §2
  // "Workers outlive the daemon"). None: workers die with the daemon.
  std::shared_ptr<WorkerFdStore> fd_store;
  std::shared_ptr<AdoptableWorkers> adoptable;
};

class InstanceManager final : public EngineProvider {
 public:
  InstanceManager(EventLoop& loop, Store& store, InstanceManagerOptions opts);
  ~InstanceManager() override;
  InstanceManager(const InstanceManager&) = delete;
  InstanceManager& operator=(const InstanceManager&) = delete;

  // EngineProvider. Connect() fails with kBusy while the instance is powered
  // for another domain (or a vtpmctl operation holds it), kNotFound for an
  // unknown uuid without auto_create.
  Result<std::shared_ptr<Engine>> Connect(const Uuid& uuid, const GuestCtx& ctx,
                                          const std::optional<DomainHandle>& handle) override;
  void Suspended(const Uuid& uuid, const GuestCtx& ctx, const DomainHandle& handle) override;
  void Disconnect(const Uuid& uuid, const GuestCtx& ctx) override;
  void Release(const Uuid& uuid, const GuestCtx& ctx) override;

  // vtpmctl create: manufactures and stores a new instance (kAlreadyExists if it exists).
  void Create(const Uuid& uuid, std::function<void(Result<InstanceMeta>)> done);
  // The EK public key (TPM_PUBKEY) recorded at manufacture.
  Result<Bytes> ReadEkPublic(const Uuid& uuid);
  // vtpmctl clear: TPM_ForceClear, TPM_PhysicalEnable and
  // TPM_PhysicalSetDeactivated(FALSE) under the daemon's physical presence.
  // On a running instance they run between the guest's commands (the
  // deactivated flag takes effect at its next power-on); otherwise the
  // instance is powered on for this alone.
  void Clear(const Uuid& uuid, std::function<void(Status)> done);
  // vtpmctl show: PCRs 0-23 of a running instance (kFailedPrecondition if off).
  void ReadPcrs(const Uuid& uuid,
                std::function<void(Result<std::vector<tpm12::PcrValue>>)> done);

  // The powered instance of `uuid`, or null.
  std::shared_ptr<Instance> Running(const Uuid& uuid) const;
  // The daemon stops on purpose: workers in the fd store are left serving
  // their guests (Instance::LeaveWorkerRunning); returns how many.
  size_t LeaveWorkersRunning();

  // Unix time of the last guest command to `uuid` since this daemon started,
  // 0 if none (design §8: in memory only, no disk write per command).
  int64_t LastCommand(const Uuid& uuid) const;
  // LastCommand() of every instance that has run a command since the daemon
  // started (the others: 0), for a caller off the loop thread.
  std::map<Uuid, int64_t> LastCommands() const;
  // Drops what is remembered of `uuid` (vtpmctl wipe, prune).
  void Forget(const Uuid& uuid) { last_command_.erase(uuid); }

 private:
  using CreatedCallback = std::function<void(Result<LoadedInstance>)>;
  void Manufacture(const Uuid& uuid, bool auto_created, const GuestCtx& ctx, CreatedCallback done);
  // `handle`: the domain's, for an instance powered on for a guest.
  InstanceConfig MakeConfig(const std::optional<DomainHandle>& handle) const;
  std::optional<VolatileCopy> UsableVolatile(const Uuid& uuid, const GuestCtx& ctx,
                                             const std::optional<DomainHandle>& handle,
                                             const LoadedInstance& loaded);
  // The TPM as the domain that suspended left it, for a domain with its handle.
  std::optional<VolatileCopy> FromCapture(const GuestCtx& ctx, const std::optional<DomainHandle>& handle,
                                          const LoadedInstance& loaded);
  void FinishRelease(const Uuid& uuid, const GuestCtx& ctx);
  // Whether a connect of a domain with `handle` and `inst`'s domid is
  // `inst`'s own domain (a frontend reconnect), not a later one.
  bool SameDomainAs(const Instance& inst, const std::optional<DomainHandle>& handle) const;

  EventLoop& loop_;
  Store& store_;
  InstanceManagerOptions opts_;
  std::map<Uuid, std::shared_ptr<Instance>> instances_;
  std::map<Uuid, std::unique_ptr<Manufacturer>> manufacturing_;
  std::map<Uuid, int64_t> last_command_;  // of instances powered off since start
  std::map<Uuid, GuestCtx> release_after_capture_;  // released while capturing
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace vtpm
