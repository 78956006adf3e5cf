// Fuzzes the configuration parser: any bytes give a Config or an error
// message naming the file, never a crash.
#include <cstdlib>
#include <string>

#include "daemon/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto c = vtpm::ParseConfig(text, "fuzz.conf");
  if (!c.ok() && c.status().message().rfind("fuzz.conf", 0) != 0) abort();
  return 0;
}
