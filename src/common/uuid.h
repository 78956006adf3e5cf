// Uuid: a 16-byte identifier parsed strictly from the 36-character
// lower/upper-case 8-4-4-4-12 hex form that libxl writes.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace vtpm {

struct Uuid {
  std::array<uint8_t, 16> bytes{};

  // Accepts exactly 36 characters, hyphens at 8/13/18/23, hex elsewhere.
  static Result<Uuid> Parse(std::string_view text);
  bool IsNil() const;
  std::string ToString() const;  // lower case
  auto operator<=>(const Uuid&) const = default;
};

}  // namespace vtpm
