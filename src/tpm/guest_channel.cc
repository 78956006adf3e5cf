#include "tpm/guest_channel.h"

#include <sys/mman.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <utility>

extern "C" {
#include <xenevtchn.h>
#include <xengnttab.h>
}

namespace vtpm {
namespace {

constexpr size_t kPage = 4096;
// How long a bind waits for the port's previous holder to exit.
constexpr std::chrono::milliseconds kBindPatience{2000};

xenevtchn_handle* Evtchn(void* h) { return static_cast<xenevtchn_handle*>(h); }

}  // namespace

Result<GuestChannel> GuestChannel::Open(const GuestLink& link) {
  GuestChannel ch;
  xengnttab_handle* gnt = xengnttab_open(nullptr, 0);
  if (gnt == nullptr) return Status::FromErrno(errno, "opening the grant-table device");
  void* page = xengnttab_map_grant_ref(gnt, link.domid, link.ring_ref, PROT_READ | PROT_WRITE);
  const int map_errno = errno;
  // The mapping outlives the handle; without the handle nothing else can be mapped.
  xengnttab_close(gnt);
  if (page == nullptr)
    return Status::FromErrno(map_errno, "mapping grant " + std::to_string(link.ring_ref) + " of domain " +
                                            std::to_string(link.domid));
  ch.page_ = static_cast<uint8_t*>(page);
  xenevtchn_handle* evt = xenevtchn_open(nullptr, 0);
  if (evt == nullptr) return Status::FromErrno(errno, "opening the event-channel device");
  ch.evtchn_ = evt;
  // The worker this one replaces may still be exiting (it was SIGKILLed,
  // or a daemon that died left it to notice its closed socket): until its
  // descriptor is closed the guest's port stays bound to it, and binding
  // fails with EINVAL as Xen fails it. Give it up to kBindPatience.
  xenevtchn_port_or_error_t port = -1;
  for (auto until = std::chrono::steady_clock::now() + kBindPatience;;) {
    port = xenevtchn_bind_interdomain(evt, link.domid, link.remote_port);
    if (port >= 0 || errno != EINVAL || std::chrono::steady_clock::now() >= until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (port < 0)
    return Status::FromErrno(errno, "binding event channel " + std::to_string(link.remote_port) + " of domain " +
                                        std::to_string(link.domid));
  ch.local_port_ = uint32_t(port);
  return ch;
}

GuestChannel::~GuestChannel() { Reset(); }

GuestChannel::GuestChannel(GuestChannel&& o) noexcept
    : page_(std::exchange(o.page_, nullptr)),
      evtchn_(std::exchange(o.evtchn_, nullptr)),
      local_port_(std::exchange(o.local_port_, 0)) {}

GuestChannel& GuestChannel::operator=(GuestChannel&& o) noexcept {
  if (this != &o) {
    Reset();
    page_ = std::exchange(o.page_, nullptr);
    evtchn_ = std::exchange(o.evtchn_, nullptr);
    local_port_ = std::exchange(o.local_port_, 0);
  }
  return *this;
}

void GuestChannel::Reset() {
  // Only before the sandbox (a failed Open): afterwards the process keeps
  // both until it exits, and munmap/close of the handle are not needed.
  if (evtchn_ != nullptr) xenevtchn_close(Evtchn(evtchn_));
  if (page_ != nullptr) munmap(page_, kPage);
  evtchn_ = nullptr;
  page_ = nullptr;
}

int GuestChannel::fd() const { return evtchn_ ? xenevtchn_fd(Evtchn(evtchn_)) : -1; }

Status GuestChannel::TakeEvent() {
  xenevtchn_port_or_error_t port = xenevtchn_pending(Evtchn(evtchn_));
  if (port < 0) {
    if (errno == EAGAIN) return Status(Code::kBusy, "no event pending");
    return Status::FromErrno(errno, "reading the event channel");
  }
  if (xenevtchn_unmask(Evtchn(evtchn_), evtchn_port_t(port)) != 0)
    return Status::FromErrno(errno, "unmasking the event channel");
  return Status::Ok();
}

Status GuestChannel::Notify() {
  if (xenevtchn_notify(Evtchn(evtchn_), local_port_) != 0) return Status::FromErrno(errno, "notifying the guest");
  return Status::Ok();
}

}  // namespace vtpm
