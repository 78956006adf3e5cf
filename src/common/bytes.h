// Byte buffers, and big-endian field access for TPM packets and
// fixed-layout records. Callers check bounds first; these helpers never read
// past `p + N`.
#pragma once

#include <string.h>  // explicit_bzero

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace vtpm {

// An allocator that zeroes memory before handing it back to `Base`, so
// that what a buffer held (plaintext TPM state, commands, responses) does
// not linger in freed heap and reach a core file or a later allocation.
// Covers every reallocation of a growing vector; a clear() that keeps the
// capacity does not wipe.
template <typename T, typename Base = std::allocator<T>>
struct WipingAllocator : Base {
  using value_type = T;
  template <typename U>
  struct rebind {
    using other = WipingAllocator<U, typename std::allocator_traits<Base>::template rebind_alloc<U>>;
  };
  WipingAllocator() = default;
  template <typename U, typename B>
  WipingAllocator(const WipingAllocator<U, B>&) noexcept {}
  T* allocate(size_t n) { return Base::allocate(n); }
  void deallocate(T* p, size_t n) noexcept {
    explicit_bzero(p, n * sizeof(T));
    Base::deallocate(p, n);
  }
  friend bool operator==(const WipingAllocator&, const WipingAllocator&) { return true; }
};

// Every buffer of the project: wiped when freed.
using Bytes = std::vector<uint8_t, WipingAllocator<uint8_t>>;
using ByteView = std::span<const uint8_t>;

inline uint16_t LoadBe16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline uint32_t LoadBe32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}
inline uint64_t LoadBe64(const uint8_t* p) {
  return uint64_t(LoadBe32(p)) << 32 | LoadBe32(p + 4);
}
inline void StoreBe16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8); p[1] = uint8_t(v); }
inline void StoreBe32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24); p[1] = uint8_t(v >> 16); p[2] = uint8_t(v >> 8); p[3] = uint8_t(v);
}
inline void StoreBe64(uint8_t* p, uint64_t v) {
  StoreBe32(p, uint32_t(v >> 32));
  StoreBe32(p + 4, uint32_t(v));
}
inline void AppendBe16(Bytes& b, uint16_t v) { b.push_back(uint8_t(v >> 8)); b.push_back(uint8_t(v)); }
inline void AppendBe32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
}
inline void AppendBe64(Bytes& b, uint64_t v) { AppendBe32(b, uint32_t(v >> 32)); AppendBe32(b, uint32_t(v)); }
inline void AppendBytes(Bytes& b, ByteView v) { b.insert(b.end(), v.begin(), v.end()); }

}  // namespace vtpm
