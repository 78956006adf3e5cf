// GuestFrontend: a simulated guest's vTPM frontend. In kLinux mode it behaves
// like Linux xen-tpmfront (protocol doc §1.4, §1.5, §2.3); in kMiniOs mode like
// mini-os tpmfront (pv-grub, vtpm-stubdom). It owns the guest's granted ring
// page and event-channel port (simulated hypervisor, xen_sim.h) and talks to
// xenstored as the guest would (through XENSTORED_PATH; the socket connection
// is privileged, so permissions are not enforced against it).
//
// A background thread plays xenbus' part: on backend 3/4 it checks
// <be>/feature-protocol-v2 and writes fe 4 (or, when missing, writes
// "22 vTPM protocol 2 required" to /local/domain/D/error/device/vtpm/N/error
// and fe 5, like xenbus_dev_fatal); on backend 5/6 a Linux frontend
// unregisters its device for good and writes fe 6 (there is no reconnect).
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/bytes.h"
#include "common/status.h"
#include "simhost/xs_client.h"
#include "xen_sim.h"

namespace vtpm::sim {

enum class FrontendMode { kLinux, kMiniOs };

struct FrontendOptions {
  uint32_t domid = 0;
  uint32_t devid = 0;
  FrontendMode mode = FrontendMode::kLinux;
  std::string sim_dir;  // empty: $VTPM_SIM_DIR
  // Linux's timeout_c: how long a send waits for the page to be idle.
  std::chrono::milliseconds timeout_c{750};
  // Duration allowed for the probe's first command (Linux falls back to 120 s
  // before it knows the TPM's durations).
  std::chrono::milliseconds first_command_duration{120000};
  // How long Connect() waits for the handshake to reach fe 4.
  std::chrono::milliseconds connect_timeout{10000};
  // Like tpm1_get_timeouts: when the probe's answer carries the four TIS
  // timeouts (µs; values below 1000 are taken as ms), timeout_c becomes
  // timeout C — 0 included, as Linux keeps a reported 0.
  bool adopt_tpm_timeouts = true;
};

// Page header offsets (struct tpmif_shared_page).
inline constexpr size_t kRingLength = 0, kRingState = 4, kRingLocality = 5, kRingPad = 6,
                        kRingNrExtra = 7, kRingHeader = 8;
enum RingState : uint8_t { kIdle = 0, kSubmit = 1, kFinish = 2, kCancel = 3 };

// TPM 1.2 GetCapability(TPM_CAP_PROPERTY, TPM_CAP_PROP_TIS_TIMEOUT): the first
// command Linux sends (tpm_get_timeouts).
Bytes Tpm12GetTimeoutsCommand();
// The four TIS timeouts A..D (µs) from a successful answer to it.
std::optional<std::array<uint32_t, 4>> ParseTisTimeouts(ByteView response);

struct ShutdownResult {
  bool backend_answered = false;  // saw backend 5 within 5 s
  std::chrono::milliseconds elapsed{0};
  std::string backend_state;      // last backend state seen
};

class GuestFrontend {
 public:
  static Result<std::unique_ptr<GuestFrontend>> Create(const FrontendOptions& opts);
  ~GuestFrontend();
  GuestFrontend(const GuestFrontend&) = delete;
  GuestFrontend& operator=(const GuestFrontend&) = delete;

  // Linux: grant + port, one transaction (ring-ref, event-channel,
  // feature-protocol-v2), fe 3, the first command at once (result in
  // first_response()), then waits for fe 4. mini-os: feature-protocol-v2,
  // then a transaction with ring-ref + event-channel, fe 4, waits for be 4.
  Status Connect();
  const Result<Bytes>& first_response() const { return first_response_; }
  // timeout_c in effect (see FrontendOptions::adopt_tpm_timeouts).
  std::chrono::milliseconds timeout_c() const { return opts_.timeout_c; }

  // One command, like Linux's vtpm_send + vtpm_recv + tpm_try_transmit:
  // kTimeout (-ETIME) after cancelling when the backend takes longer than
  // `duration`; kFailedPrecondition (-ECANCELED) when the backend answered
  // IDLE; kCorruption (-EFAULT) when the response is shorter than 10 bytes or
  // `length` differs from the response's paramSize.
  Result<Bytes> Transmit(ByteView cmd, std::chrono::milliseconds duration);
  // state = CANCEL, notify.
  void Cancel();

  // Raw access for malformed-request tests.
  uint8_t* page() const { return page_ ? page_->data() : nullptr; }
  void WriteHeader(uint32_t length, uint8_t state, uint8_t locality, uint8_t nr_extra_pages);
  void WritePayload(size_t offset, ByteView bytes);  // at page + offset
  void SetState(uint8_t state);
  uint8_t state() const;
  uint32_t length() const;
  Status Notify();
  // Waits (5 ms polling plus event-channel wake-ups) for state IDLE or FINISH.
  bool WaitIdle(std::chrono::milliseconds timeout);
  // Consumes every notification queued on the guest's port, as the guest's
  // event-channel upcall would, without looking at the page; returns how
  // many. (A guest that never does keeps the simulated port's queue full.)
  int DrainEvents();

  // Linux guest shutdown (xenbus_frontend_dev_shutdown): fe 5, wait up to
  // 5 s for exactly be 5, then fe 6. Without be 5 the frontend stays at 5.
  ShutdownResult Shutdown(std::chrono::milliseconds wait = std::chrono::seconds(5));
  // mini-os close: fe 5, remove ring-ref/event-channel, fe 6, wait for be 6
  // or 2, then fe 1 (ready for a later reopen).
  Status Close(std::chrono::milliseconds wait = std::chrono::seconds(10));
  // Waits (connect_timeout) until the backend has left 5/6, then Connect()
  // again with a fresh ring page and port (mini-os reopen after Close(); for
  // Linux this is tpmfront_resume's remove + probe).
  Status Reopen();

  // True once a Linux frontend saw backend 5/6 and unregistered.
  bool device_gone() const;
  uint32_t ring_ref() const { return page_ ? page_->ref() : 0; }
  uint32_t port() const { return port_; }
  std::string frontend_path() const { return fe_; }
  std::string backend_path() const { return be_; }

 private:
  explicit GuestFrontend(const FrontendOptions& opts) : opts_(opts) {}
  Status SetupRing();
  Status WriteFeState(int state);
  void WatchBackend();  // thread body
  void OnBackendState(const std::string& be_state);

  FrontendOptions opts_;
  std::optional<XsClient> xs_;
  std::string fe_, be_;
  uint32_t backend_id_ = 0;
  std::optional<GrantedPage> page_;
  std::optional<EvtchnEndpoint> evtchn_;
  uint32_t port_ = 0;
  Result<Bytes> first_response_ = Status(Code::kFailedPrecondition, "no first command sent");

  mutable std::mutex mu_;
  std::condition_variable cv_;
  int fe_state_ = 1;
  bool fatal_ = false;
  bool gone_ = false;
  bool shutting_down_ = false;  // system_state > RUNNING: only be 5 matters
  bool stop_ = false;
  std::thread watcher_;
};

}  // namespace vtpm::sim
