// BenchGuest: a lean simulated xen-tpmfront for measurements. It does the
// Linux frontend's handshake (ring-ref, event-channel, feature-protocol-v2 in
// one transaction, state 3, then 4 once the backend is Connected) but has no
// watcher thread, so hundreds of guests cost the host nothing while idle; a
// response is noticed on the event channel, never by polling the page.
// Not thread-safe; one driver thread owns every guest.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "common/bytes.h"
#include "common/status.h"
#include "simhost/xs_client.h"
#include "xen_sim.h"

namespace vtpm::bench {

using Clock = std::chrono::steady_clock;
inline double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

class BenchGuest {
 public:
  // Connects domain `domid`'s vtpm device `devid` (the toolstack has made
  // its frontend dir). `init_to_connected` gets the time from writing
  // Initialised (3) until the backend showed Connected (4).
  static Result<std::unique_ptr<BenchGuest>> Connect(sim::XsClient& xs, const std::string& sim_dir,
                                                     uint32_t domid, uint32_t devid,
                                                     double* init_to_connected);
  BenchGuest(const BenchGuest&) = delete;
  BenchGuest& operator=(const BenchGuest&) = delete;

  uint32_t domid() const { return domid_; }
  int fd() const { return evtchn_.fd(); }  // readable when the backend notified

  // Puts `cmd` in the page, sets SUBMIT and notifies. Precondition: no
  // command outstanding.
  Status Submit(ByteView cmd);
  // Consumes queued notifications without blocking; true once the page
  // holds a response (state FINISH).
  bool Finished();
  // The response in the page, checked like Linux' tpm_try_transmit (at
  // least a header; length == paramSize).
  Result<Bytes> Response() const;
  // Submit, then wait for FINISH up to `timeout`; the response.
  Result<Bytes> Transact(ByteView cmd, std::chrono::milliseconds timeout = std::chrono::seconds(60));

 private:
  BenchGuest(uint32_t domid, sim::GrantedPage page, sim::EvtchnEndpoint evtchn, uint32_t port)
      : domid_(domid), page_(std::move(page)), evtchn_(std::move(evtchn)), port_(port) {}
  uint8_t State() const;

  uint32_t domid_;
  sim::GrantedPage page_;
  sim::EvtchnEndpoint evtchn_;
  uint32_t port_;
};

}  // namespace vtpm::bench
