// Fuzzes the parsers of guest-written xenstore values (state, ring-ref,
// event-channel, feature nodes, domids) and of uuids: accepted values must
// round-trip to the exact input text.
#include <cstdlib>
#include <string>

#include "backend/xs_values.h"
#include "common/uuid.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  if (auto v = vtpm::ParseU32(s); v && std::to_string(*v) != s) abort();
  if (auto v = vtpm::ParseXbState(s); v && (*v < 0 || *v > 7)) abort();
  if (auto v = vtpm::ParseDomid(s); v && *v >= 0x7FF0) abort();
  auto u = vtpm::Uuid::Parse(s);
  if (u.ok()) {
    std::string back = u->ToString();
    if (back.size() != 36) abort();
    for (size_t i = 0; i < 36; ++i)
      if (std::tolower(static_cast<unsigned char>(s[i])) != back[i]) abort();
  }
  return 0;
}
