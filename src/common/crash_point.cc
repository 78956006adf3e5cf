#include "common/crash_point.h"

#ifdef VTPM_TEST_HOOKS
#include <signal.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace vtpm {

void CrashPoint(const char* name) {
  static const char* spec = std::getenv("VTPMMGRD_CRASH_AT");
  static unsigned long hits = 0;
  if (!spec) return;
  const char* colon = std::strrchr(spec, ':');
  if (!colon || std::string(spec, colon) != name) return;
  if (++hits == std::strtoul(colon + 1, nullptr, 10)) ::raise(SIGKILL);
}

}  // namespace vtpm
#endif
