#include "backend/xs_values.h"

#include <charconv>

namespace vtpm {

std::optional<uint32_t> ParseU32(std::string_view s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  if (s.size() > 1 && s[0] == '0') return std::nullopt;  // no leading zeros
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 10);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<int> ParseXbState(std::string_view s) {
  auto v = ParseU32(s);
  if (!v || *v > 7) return std::nullopt;
  return int(*v);
}

std::optional<uint32_t> ParseDomid(std::string_view s) {
  auto v = ParseU32(s);
  if (!v || *v >= 0x7FF0) return std::nullopt;
  return v;
}

}  // namespace vtpm
