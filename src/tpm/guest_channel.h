// GuestChannel: a worker's own link to its guest (design §3 "Path of one
// command"): the guest's shared page mapped, and the device's event channel
// bound, through libxengnttab and libxenevtchn.
//
// Open() runs while the worker is still root, before sandbox stage 1. It
// maps the one grant and closes the grant-table handle at once: the mapping
// stays (Linux's gntdev keeps a mapping until it is unmapped, whatever
// happens to the descriptor), and the worker is left with no descriptor on
// which it could map another grant. The event-channel handle stays open with
// this one port bound; the kernel lets a handle notify only ports bound
// through it, so the worker can signal its own guest and nobody else.
// The mapping is released when the process exits.
#pragma once

#include <cstdint>

#include "common/status.h"

namespace vtpm {

struct GuestLink {
  uint32_t domid = 0;
  uint32_t ring_ref = 0;
  uint32_t remote_port = 0;
  bool operator==(const GuestLink&) const = default;
};

class GuestChannel {
 public:
  static Result<GuestChannel> Open(const GuestLink& link);
  GuestChannel() = default;
  ~GuestChannel();
  GuestChannel(GuestChannel&& o) noexcept;
  GuestChannel& operator=(GuestChannel&& o) noexcept;
  GuestChannel(const GuestChannel&) = delete;
  GuestChannel& operator=(const GuestChannel&) = delete;

  bool valid() const { return page_ != nullptr; }
  uint8_t* page() const { return page_; }
  // The event-channel descriptor: readable while an event is pending.
  int fd() const;
  uint32_t local_port() const { return local_port_; }
  // Takes the pending event (the handle has one port) and unmasks the port,
  // so that the next notification wakes fd() again. kBusy when none was
  // pending (a spurious wake-up).
  Status TakeEvent();
  Status Notify();

 private:
  void Reset();
  uint8_t* page_ = nullptr;
  void* evtchn_ = nullptr;  // xenevtchn_handle*
  uint32_t local_port_ = 0;
};

}  // namespace vtpm
