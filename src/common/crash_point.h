// Crash points: named places on the command path where the exactly-once
// tests kill the daemon (design §3). Compiled in only with
// -DVTPM_TEST_HOOKS=ON (the sanitizer test build); a release build has none.
//
// With VTPMMGRD_CRASH_AT="<name>:<n>" in the environment, the n-th time
// CrashPoint("<name>") runs (counting from 1) the process sends itself
// SIGKILL: no destructor, flush or exit handler runs, as in a real crash.
#pragma once

namespace vtpm {

// A worker serving its guest has the points of its own page writes
// (response-written, response-marked, finished): the daemon passes
// VTPMMGRD_WORKER_CRASH_AT, same form, as --crash-at to each such worker,
// which calls SetCrashAt() with it (the worker reads no environment).
#ifdef VTPM_TEST_HOOKS
void CrashPoint(const char* name);
void SetCrashAt(const char* spec);
#else
inline void CrashPoint(const char*) {}
#endif

}  // namespace vtpm
