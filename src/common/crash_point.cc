#include "common/crash_point.h"

#ifdef VTPM_TEST_HOOKS
#include <signal.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace vtpm {

namespace {
const char* crash_spec = std::getenv("VTPMMGRD_CRASH_AT");
}  // namespace

void SetCrashAt(const char* spec) { crash_spec = spec; }

void CrashPoint(const char* name) {
  static unsigned long hits = 0;
  const char* spec = crash_spec;
  if (!spec) return;
  const char* colon = std::strrchr(spec, ':');
  if (!colon || std::string(spec, colon) != name) return;
  if (++hits == std::strtoul(colon + 1, nullptr, 10)) ::raise(SIGKILL);
}

}  // namespace vtpm
#endif
