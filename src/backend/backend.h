// Backend: every vTPM device under /local/domain/<own>/backend/vtpm. Owns the
// xenstore watches, the event-channel fd registration and the Device objects;
// dispatches watch events and notifications to them on the event loop.
//
// Destroying a Backend (daemon SIGTERM) writes nothing to xenstore: devices
// stay as the guests see them, and the next daemon re-adopts them.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backend/device.h"
#include "backend/xen.h"
#include "common/event_loop.h"
#include "tpm/engine.h"

namespace vtpm {

struct BackendOptions {
  uint32_t own_domid = 0;
  // Localities a guest may use besides 0 (the page's locality byte is guest-written).
  bool allow_any_locality = false;
  // How long a busy command may run on after the guest's CANCEL (its timeout_c).
  std::chrono::milliseconds cancel_grace{1000};
  // Each instance's worker maps its guest's page and binds its event channel
  // and serves it (design §3 "The worker serves its guest"); the backend
  // maps nothing. Off: the backend serves the page (design §3).
  bool worker_data_path = false;
};

struct DeviceInfo {
  uint32_t domid, devid;
  std::string uuid;
  bool connected;
  bool refused;
};

class Backend {
 public:
  static Result<std::unique_ptr<Backend>> Start(EventLoop& loop, XenStore& xs, GrantTable& gnt,
                                                EventChannels& evtchn, Hypervisor& hyp, EngineProvider& engines,
                                                const BackendOptions& opts);
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  std::vector<DeviceInfo> List() const;
  // The device currently holding `uuid`, if any.
  std::shared_ptr<Device> FindByUuid(const Uuid& uuid) const;
  size_t connected_count() const;

  // For Device.
  EventLoop& loop() { return loop_; }
  XenStore& xs() { return xs_; }
  GrantTable& gnt() { return gnt_; }
  EventChannels& evtchn() { return evtchn_; }
  EngineProvider& engines() { return engines_; }
  // The hypervisor's view of `domid`; nullopt when it is gone or cannot be
  // read (logged).
  std::optional<DomainInfo> DomainState(uint32_t domid, const GuestCtx& ctx);
  // `holder`'s domain has suspended and has the handle of domain `domid`
  // (the sending side of xl migrate to this host; `ctx` is the new device's).
  bool SuspendedPredecessor(const Device& holder, uint32_t domid, const GuestCtx& ctx);
  const BackendOptions& options() const { return opts_; }
  std::string backend_root() const;
  // Claims `uuid` for `dev`; false if another live device holds it.
  bool ClaimUuid(const Uuid& uuid, const std::shared_ptr<Device>& dev);
  void ReleaseUuid(const Uuid& uuid, const Device* dev);
  void RegisterPort(uint32_t port, const std::shared_ptr<Device>& dev);
  void UnregisterPort(uint32_t port);
  // A device went away; power the instance off once its domain is gone.
  void InstanceIdle(const Uuid& uuid, const GuestCtx& ctx);
  // The device's instance was busy at connect (another domain, vtpmctl):
  // after kConnectRetryInterval, idle instances are reaped (one of them may
  // be what it waits for) and the device is reconciled again.
  void RetryConnect(uint32_t domid, uint32_t devid);

 private:
  Backend(EventLoop& loop, XenStore& xs, GrantTable& gnt, EventChannels& evtchn, Hypervisor& hyp,
          EngineProvider& engines, const BackendOptions& opts);
  Status Init();
  void OnWatchFd();
  void OnEvtchnFd();
  void Scan();
  void ReconcileDevice(uint32_t domid, uint32_t devid);
  void ReapIdleInstances();
  // Every second: the due "suppressed N messages" lines (log_rate_limit.h).
  void ScheduleLogSummaries();
  bool DomainExists(uint32_t domid);

  EventLoop& loop_;
  XenStore& xs_;
  GrantTable& gnt_;
  EventChannels& evtchn_;
  Hypervisor& hyp_;
  EngineProvider& engines_;
  BackendOptions opts_;
  std::map<std::pair<uint32_t, uint32_t>, std::shared_ptr<Device>> devices_;
  std::map<uint32_t, std::weak_ptr<Device>> ports_;
  std::map<Uuid, std::weak_ptr<Device>> uuids_;
  // Instances whose device is gone but whose domain may still live.
  std::vector<std::pair<Uuid, GuestCtx>> idle_;
  std::set<std::string> fe_watches_;
  std::optional<EventLoop::TimerId> reap_timer_;
  std::set<std::pair<uint32_t, uint32_t>> connect_retries_;
  std::optional<EventLoop::TimerId> connect_retry_timer_;
  // Expires with the Backend: posted work checks it before touching `this`.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::optional<EventLoop::TimerId> log_timer_;
};

}  // namespace vtpm
