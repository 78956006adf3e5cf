// Engine: the TPM behind one connected vTPM device, as the backend sees it.
//
// Contract:
//  - Execute() is called only when !busy(). `done` runs exactly once, on the
//    event-loop thread, after the state the response depends on is durable,
//    with a well-formed TPM response (an engine fault becomes a TPM error
//    response, never silence) - unless Abort() is called first.
//  - Abort() abandons the in-flight command: its `done` never runs and the
//    instance is back in its state before the command once Abort() returns.
//  - ExecuteFound() is Execute() for a command a re-adopted device found in
//    SUBMIT after a daemon restart: the engine first compares it with the
//    record of its last command (design §3) and may answer from the record
//    instead of running it again.
//  - ResponseWritten() is called after the response from `done` is in the
//    guest's page and before FINISH; the engine records that it was answered.
//  - AttachGuest() hands the guest's page and event channel to the engine,
//    whose worker then serves the guest itself (design §3 "The worker serves
//    its guest"); the device then maps nothing and calls neither Execute()
//    nor Abort(). DetachGuest() takes them back (the frontend closed or
//    published a new ring): the page is unmapped once the worker is gone.
//  - Engines are owned by an EngineProvider and shared with the device that
//    uses them; the provider decides power-on/off (design §6).
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <optional>

#include "common/bytes.h"
#include "common/log.h"
#include "common/status.h"
#include "common/uuid.h"
#include "tpm/guest_channel.h"

namespace vtpm {

class Engine {
 public:
  using Done = std::function<void(Bytes response)>;
  virtual ~Engine() = default;
  virtual void Execute(Bytes command, uint8_t locality, Done done) = 0;
  virtual void ExecuteFound(Bytes command, uint8_t locality, Done done) {
    Execute(std::move(command), locality, std::move(done));
  }
  virtual void ResponseWritten() {}
  // False when the engine cannot serve a guest by itself.
  virtual bool AttachGuest(const GuestLink& link, bool any_locality) {
    (void)link, (void)any_locality;
    return false;
  }
  virtual void DetachGuest() {}
  virtual void Abort() = 0;
  virtual bool busy() const = 0;
};

// A domain's handle (its uuid, kept across xl save/restore and migrate).
using DomainHandle = std::array<uint8_t, 16>;

// Maps instance uuids to engines and owns their lifetime.
class EngineProvider {
 public:
  virtual ~EngineProvider() = default;
  // A device of domain `domid` connects to instance `uuid`. Powers the
  // instance on if it is not on for this domain (TPM_Init + Startup, or a
  // resume: design §6), or returns the running one (frontend reconnect,
  // pv-grub -> kernel). `handle` is the domain's, when the hypervisor told it.
  // Fails (NotFound) if the instance does not exist and cannot be created.
  virtual Result<std::shared_ptr<Engine>> Connect(const Uuid& uuid, const GuestCtx& ctx,
                                                  const std::optional<DomainHandle>& handle) = 0;
  // The domain running `uuid` has suspended (its toolstack is tearing the
  // device down after xl save or before a migration): capture its TPM so a
  // domain restored from the save image resumes it.
  virtual void Suspended(const Uuid& uuid, const GuestCtx& ctx, const DomainHandle& handle) {
    (void)uuid, (void)ctx, (void)handle;
  }
  // The device disconnected but the domain may reconnect: keep it powered.
  virtual void Disconnect(const Uuid& uuid, const GuestCtx& ctx) = 0;
  // The device (and so the domain's use of the instance) is gone: power off.
  virtual void Release(const Uuid& uuid, const GuestCtx& ctx) = 0;
};

}  // namespace vtpm
