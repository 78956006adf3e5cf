// Journal events with a stable MESSAGE_ID (design §9 "Journal events").
//
// Each event the man page's LOGGING section documents has a 128-bit id that
// never changes between releases, so an operator can filter on it
// (journalctl MESSAGE_ID=...) and journalctl -x can show its explanation
// from the message catalogue systemd/vtpmmgrd.catalog, which has one entry
// per id here (checked by tests/unit/log_event_test.cc).
#pragma once

#include <span>
#include <string_view>

namespace vtpm {

enum class LogEvent {
  kNone,
  kStarted,        // "vtpmmgrd ready"
  kStopping,       // a signal stopped the daemon
  kStartRefused,   // "refusing to start"
  kAttached,       // "connected (ring-ref ...)"
  kDetached,       // "disconnected (grant unmapped, event channel unbound)"
  kDomainGone,     // "domain gone: powering the vTPM off"
  kReadopted,      // "re-adopted connected device" after a daemon restart
  kPoweredOn,      // "powering on the TPM"
  kResumed,        // "resuming the TPM from ..."
  kCreated,        // "auto-creating vTPM instance" / "vtpmctl create: instance created"
  kManufactured,   // "manufactured TPM 1.2"
  kWiped,          // "vtpmctl wipe: instance wiped"
  kForceClosed,    // "vtpmctl wipe --force: closing the device"
  kCleared,        // "vtpmctl clear: owner cleared"
  kPruned,         // "vtpmctl prune: ... wiped"
  kDeviceRefused,  // "refused: <reason>"
  kWorkerFault,    // "TPM worker fault"
  kWorkerGaveUp,   // "giving up after N failed starts"
  kSuppressed,     // "suppressed N messages from domid D"
  kXenstoreLost,   // "lost the connection to xenstored"
  kSuspendCaptured,  // "domain suspended: TPM state captured"
  kRestored,         // "resuming the TPM as domain D left it when it suspended"
  kCaptureDropped,   // "dropping the TPM state captured when domain D suspended"
  kExported,         // "vtpmctl export: instance moved to host H"
  kImported,         // "vtpmctl import: instance imported from host H"
  kWorkerAdopted,    // "took over worker P of the previous daemon"
  kVolatileLost,     // "the TPM's volatile state is lost"
};

struct LogEventInfo {
  LogEvent event;
  std::string_view name;        // short name, as in vtpmmgrd(8) LOGGING
  std::string_view message_id;  // 32 lowercase hex digits
};

// Every event but kNone, in declaration order.
std::span<const LogEventInfo> LogEvents();
// The MESSAGE_ID of `e`; empty for kNone.
std::string_view MessageId(LogEvent e);

// The event of the line currently being logged (kNone outside an event).
LogEvent CurrentLogEvent();

class ScopedLogEvent {
 public:
  explicit ScopedLogEvent(LogEvent e);
  ~ScopedLogEvent();
  ScopedLogEvent(const ScopedLogEvent&) = delete;
  ScopedLogEvent& operator=(const ScopedLogEvent&) = delete;

 private:
  LogEvent prev_;
};

}  // namespace vtpm
