// ControlOps: what each vtpmctl verb does in the daemon (vtpmctl(8)).
//
// Runs on the event-loop thread. Store calls are synchronous and short,
// except those whose length grows with the store: list and backup read the
// store on a WorkThread of their own, from what the loop handed them, and
// answer from the loop. InstanceManager operations (create, clear, PCR
// reads) and the wait for a guest to close its frontend (wipe --force)
// complete asynchronously. Either way the loop keeps serving guests meanwhile.
#pragma once

#include <chrono>
#include <memory>

#include "backend/backend.h"
#include "common/work_thread.h"
#include "daemon/config.h"
#include "daemon/control_server.h"
#include "store/migration.h"
#include "store/store.h"
#include "tpm/instance_manager.h"

namespace vtpm {

class ControlOps {
 public:
  // `store` and `instances` are null only with the scripted test engine of
  // a test build: then only list (devices) and status answer.
  ControlOps(EventLoop& loop, Backend& backend, Store* store, InstanceManager* instances, const Config& cfg);
  ~ControlOps();
  ControlOps(const ControlOps&) = delete;
  ControlOps& operator=(const ControlOps&) = delete;

  void Handle(const ControlRequest& req, ControlServer::Reply reply);

  // How long wipe --force waits for the guest to close its frontend.
  static constexpr std::chrono::seconds kForceCloseWait{10};

 private:
  void List(ControlServer::Reply reply);
  void Show(const Uuid& uuid, ControlServer::Reply reply);
  void Create(const ControlRequest& req, ControlServer::Reply reply);
  void StatusVerb(ControlServer::Reply reply);
  void Wipe(const ControlRequest& req, ControlServer::Reply reply);
  void Clear(const ControlRequest& req, ControlServer::Reply reply);
  void Prune(const ControlRequest& req, ControlServer::Reply reply);
  void Backup(const ControlRequest& req, ControlServer::Reply reply);
  // Drops the TPM state captured when the instance's domain suspended.
  void Discard(const ControlRequest& req, ControlServer::Reply reply);
  // Migration between hosts (design §6d).
  void HostKey(ControlServer::Reply reply);
  void Export(const ControlRequest& req, ControlServer::Reply reply);
  void Import(const ControlRequest& req, ControlServer::Reply reply);
  // This host's migration identity, made and stored on first use.
  Result<HostIdentity> Identity();

  // Waits (polling on the loop) until `dev` has unmapped the guest's page.
  void AwaitClosed(std::shared_ptr<Device> dev, EventLoop::Clock::time_point deadline,
                   std::function<void(bool closed)> done);
  Status WipeNow(const Uuid& uuid, const GuestCtx& ctx, const std::string& by);
  // The log context of an admin line about `uuid`: its device's (domid,
  // devid) while one is attached, else the uuid alone.
  GuestCtx AdminCtx(const Uuid& uuid) const;
  int64_t LastUsed(const InstanceMeta& m) const;
  // Runs `work` on work_ and then `done` with its result on the loop, unless
  // this ControlOps is gone by then.
  void OffLoop(std::function<ControlResponse()> work, ControlServer::Reply done);
  nlohmann::json Attachment(uint32_t domid, uint32_t devid, bool connected) const;
  // Whether a device holds `uuid` or its instance is powered.
  bool InUse(const Uuid& uuid) const;

  EventLoop& loop_;
  Backend& backend_;
  Store* store_;
  InstanceManager* instances_;
  const Config& cfg_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  WorkThread work_;  // last: joined before the members its jobs use go
};

}  // namespace vtpm
