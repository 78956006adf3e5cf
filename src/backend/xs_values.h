// Strict parsers for the values guests and the toolstack write in xenstore
// (state, ring-ref, event-channel, domids). Whole-string decimal only: no
// sign, no spaces, no hex, no trailing bytes, no overflow.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace vtpm {

std::optional<uint32_t> ParseU32(std::string_view s);
// A XenbusState (0..7).
std::optional<int> ParseXbState(std::string_view s);
// A domid (0..0x7FEF, DOMID_FIRST_RESERVED excluded).
std::optional<uint32_t> ParseDomid(std::string_view s);

}  // namespace vtpm
