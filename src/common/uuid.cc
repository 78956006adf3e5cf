#include "common/uuid.h"

namespace vtpm {
namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<Uuid> Uuid::Parse(std::string_view text) {
  if (text.size() != 36)
    return Status(Code::kInvalidArgument,
                  "uuid must be 36 characters (8-4-4-4-12 hex), got " + std::to_string(text.size()));
  Uuid u;
  size_t out = 0;
  for (size_t i = 0; i < text.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return Status(Code::kInvalidArgument, "uuid has no '-' at offset " + std::to_string(i));
      ++i;
      continue;
    }
    int hi = HexValue(text[i]), lo = HexValue(text[i + 1]);
    if (hi < 0 || lo < 0 || (i + 1 == 8 || i + 1 == 13 || i + 1 == 18 || i + 1 == 23))
      return Status(Code::kInvalidArgument, "uuid has a non-hex character at offset " + std::to_string(hi < 0 ? i : i + 1));
    u.bytes[out++] = uint8_t(hi << 4 | lo);
    i += 2;
  }
  return u;
}

bool Uuid::IsNil() const {
  for (uint8_t b : bytes)
    if (b) return false;
  return true;
}

std::string Uuid::ToString() const {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    s.push_back(kHex[bytes[i] >> 4]);
    s.push_back(kHex[bytes[i] & 15]);
  }
  return s;
}

}  // namespace vtpm
