// tpm2-tss's own log lines, re-logged through the daemon's logger.
//
// tpm2-tss writes "LEVEL:module:file:line:func() text" lines to stderr, or
// to the file named by $TSS2_LOGFILE, which each of its libraries opens at
// its first line. Install() points that variable at a memory file of ours;
// Drain() turns what was written there into ordinary log lines, so they reach
// the journal with the daemon's fields: SYSLOG_IDENTIFIER, a PRIORITY from
// tss2's level, the guest fields of the current log context and CODE_FILE,
// CODE_LINE and CODE_FUNC of the tpm2-tss source line (design §9).
// $TSS2_LOG still selects what tpm2-tss writes; an operator's own
// $TSS2_LOGFILE is left alone. Single-threaded, like all host TPM use.
#pragma once

#include <string_view>

#include "common/status.h"

namespace vtpm {

class Tss2Log {
 public:
  // Call before the first tpm2-tss function.
  static Status Install();
  // Logs, then forgets, what tpm2-tss wrote since the last call.
  static void Drain();
  // One tpm2-tss line logged as the daemon's (exposed for the fuzz-free unit test).
  static void LogLine(std::string_view line);
};

// Drains on scope exit: put one at the top of each function that calls tpm2-tss.
class Tss2LogDrain {
 public:
  Tss2LogDrain() = default;
  ~Tss2LogDrain() { Tss2Log::Drain(); }
  Tss2LogDrain(const Tss2LogDrain&) = delete;
  Tss2LogDrain& operator=(const Tss2LogDrain&) = delete;
};

}  // namespace vtpm
