// SIGINT/SIGTERM handling for the simulator's long-running tools: block them
// (before any thread starts) and read them from a signalfd.
#pragma once

#include <signal.h>
#include <sys/signalfd.h>

namespace vtpm::sim {

// Blocks SIGINT and SIGTERM in the calling thread (inherited by threads it
// starts) and returns a signalfd that becomes readable when one arrives, or
// -1. The caller closes it.
inline int BlockTerminationSignals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  if (pthread_sigmask(SIG_BLOCK, &sigs, nullptr) != 0) return -1;
  return signalfd(-1, &sigs, SFD_CLOEXEC);
}

}  // namespace vtpm::sim
