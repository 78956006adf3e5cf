// ByteReader: bounds-checked sequential reader for the store's decoders
// (record_codec.cc, export_codec.cc). Every read checks the length and
// returns false, leaving the output untouched, when the bytes run out.
#pragma once

#include <array>
#include <cstring>

#include "common/bytes.h"

namespace vtpm {

class ByteReader {
 public:
  explicit ByteReader(ByteView b) : b_(b) {}
  bool Take(size_t n, ByteView* out) {
    if (b_.size() - pos_ < n) return false;
    *out = b_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  bool U8(uint8_t* v) { ByteView s; if (!Take(1, &s)) return false; *v = s[0]; return true; }
  bool U16(uint16_t* v) { ByteView s; if (!Take(2, &s)) return false; *v = LoadBe16(s.data()); return true; }
  bool U32(uint32_t* v) { ByteView s; if (!Take(4, &s)) return false; *v = LoadBe32(s.data()); return true; }
  bool U64(uint64_t* v) { ByteView s; if (!Take(8, &s)) return false; *v = LoadBe64(s.data()); return true; }
  template <size_t N>
  bool Array(std::array<uint8_t, N>* out) {
    ByteView s;
    if (!Take(N, &s)) return false;
    std::memcpy(out->data(), s.data(), N);
    return true;
  }
  bool done() const { return pos_ == b_.size(); }

 private:
  ByteView b_;
  size_t pos_ = 0;
};

}  // namespace vtpm
