// Device: one vTPM backend device, /local/domain/<own>/backend/vtpm/<domid>/<devid>,
// driven through the XenBus states of xen-vtpm-protocol.md §2.4/§6 and the
// shared-page protocol of §1. Passive: the Backend feeds it watch events
// (Reconcile) and event-channel notifications (OnNotify) from the loop.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "backend/shared_page.h"
#include "backend/xen.h"
#include "common/event_loop.h"
#include "common/log.h"
#include "common/uuid.h"
#include "tpm/engine.h"

namespace vtpm {

class Backend;

class Device : public std::enable_shared_from_this<Device> {
 public:
  Device(Backend& backend, uint32_t domid, uint32_t devid);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // Re-reads the device's nodes and acts on them. Returns false once the
  // backend directory is gone and the device should be forgotten; then
  // recreated() says whether a new directory of the same (domid, devid)
  // already stands in its place (removed and written again by the toolstack
  // between two watch events: xl vtpm-detach then vtpm-attach).
  bool Reconcile();
  bool recreated() const { return recreated_; }
  // The bound event channel fired.
  void OnNotify();
  // Closes a connected device the way a backend going away does (backend 5,
  // then 6 once the frontend closed); used by `vtpmctl wipe --force`.
  void ForceClose();
  // The device was refused because another device held its uuid, which is
  // now released (design §6 "Device"): forgets the refusal and its error
  // node so that the next Reconcile() adopts it again. False if it was not
  // refused for that reason.
  bool RetryRefusedForUuid();

  const GuestCtx& ctx() const { return ctx_; }
  const std::optional<Uuid>& uuid() const { return uuid_; }
  bool connected() const { return page_.valid() || linked_; }
  bool refused() const { return refused_; }
  std::optional<uint32_t> local_port() const;
  const std::string& be_path() const { return be_path_; }
  const std::string& fe_state_path() const { return fe_state_path_; }

 private:
  enum XbState : int { kUnknown = 0, kInitialising = 1, kInitWait = 2, kInitialised = 3,
                       kConnected = 4, kClosing = 5, kClosed = 6 };

  bool Adopt();  // first sight of the device: validate, claim uuid, InitWait or re-adopt
  void Refuse(const std::string& reason);
  // /local/domain/<own>/error/backend/vtpm/<domid>/<devid>/error
  std::string ErrorPath() const;
  Status Connect();
  void Disconnect();
  // The toolstack is tearing the device down: if the hypervisor says the
  // domain suspended (xl save, migrate), its TPM is captured before the
  // device closes (design §6 "Save, restore and migration"). Once per device.
  void CheckSuspended();
  // Writes backend state `s` in a transaction unless the toolstack has set
  // online=0 meanwhile and `s` is not Closed.
  void WriteState(int s);
  void StartCommand(const PageHeader& hdr);
  void Complete(uint64_t epoch, Bytes response);
  // `from_engine`: the engine's answer to the command (ResponseWritten() is
  // called before FINISH), not one the backend made itself.
  void Respond(uint32_t offset, Bytes response, bool from_engine);
  void Notify();

  Backend& backend_;
  const uint32_t domid_, devid_;
  const std::string be_path_;
  std::string fe_path_, fe_state_path_;
  GuestCtx ctx_;
  std::optional<Uuid> uuid_;
  bool adopted_ = false;
  bool refused_ = false;
  bool refused_for_uuid_ = false;  // another live device held the uuid at Adopt
  bool retrying_ = false;          // the next Adopt follows RetryRefusedForUuid()
  bool recreated_ = false;         // see recreated()
  bool force_closing_ = false;
  bool suspend_checked_ = false;
  bool awaiting_uuid_ = false;  // adopted while a suspended predecessor holds the uuid
  bool uuid_claimed_ = false;
  bool waiting_for_instance_ = false;  // Connect found the instance busy; retried

  // Connection (valid between Connect and Disconnect).
  bool linked_ = false;  // the engine's worker serves the page (worker_data_path)
  GrantMapping page_;
  BoundPort port_;
  uint32_t ring_ref_ = 0, remote_port_ = 0;
  std::shared_ptr<Engine> engine_;
  uint64_t epoch_ = 0;  // bumped on every connect/disconnect/abort; stale completions are dropped

  // Command in flight.
  bool busy_ = false;
  // Re-adopted after a daemon restart: the next SUBMIT may be a command the
  // previous daemon already ran (ExecuteFound).
  bool found_pending_ = false;
  uint32_t busy_offset_ = 0;
  std::optional<EventLoop::TimerId> cancel_timer_;
};

}  // namespace vtpm
