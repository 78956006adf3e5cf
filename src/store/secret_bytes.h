// SecretBytes: sole owner of key material; wiped (OPENSSL_cleanse) on free
// and on move-from. Never copied implicitly.
//
// Its bytes live in OpenSSL's secure heap once InitSecretHeap() has run
// (the daemon calls it first thing): pages that are locked in memory where
// RLIMIT_MEMLOCK allows, guarded, and marked MADV_DONTDUMP, so a core file
// of the process holds no master or data key. Before InitSecretHeap(), or
// when that heap is full, they come from the ordinary heap (still wiped);
// in_secure_heap() tells which.
#pragma once

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <utility>

#include "common/bytes.h"
#include "common/status.h"

namespace vtpm {

// Size of the secure heap: the master key, the data-key cache
// (SqliteStoreSettings::max_cached_keys, 32 bytes each) and the copies in
// use, with room to spare.
inline constexpr size_t kSecretHeapBytes = 1 << 20;

// Sets up the secure heap once per process; true when it is in place.
inline bool InitSecretHeap() {
  if (CRYPTO_secure_malloc_initialized()) return true;
  return CRYPTO_secure_malloc_init(kSecretHeapBytes, 32) != 0;
}

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t n) { Allocate(n); }
  explicit SecretBytes(ByteView v) {
    Allocate(v.size());
    if (n_) std::memcpy(p_, v.data(), n_);
  }
  ~SecretBytes() { Free(); }
  SecretBytes(SecretBytes&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  SecretBytes& operator=(SecretBytes&& o) noexcept {
    if (this != &o) {
      Free();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  // `n` bytes from OpenSSL's CSPRNG.
  static Result<SecretBytes> Random(size_t n) {
    SecretBytes s(n);
    if (n && RAND_bytes(s.data(), int(n)) != 1) return Status(Code::kInternal, "RAND_bytes failed");
    return s;
  }
  SecretBytes Clone() const { return SecretBytes(view()); }

  uint8_t* data() { return p_; }
  const uint8_t* data() const { return p_; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  ByteView view() const { return {p_, n_}; }
  bool in_secure_heap() const { return p_ && CRYPTO_secure_allocated(p_); }

 private:
  void Allocate(size_t n) {
    if (n == 0) return;
    void* p = CRYPTO_secure_malloc_initialized() ? OPENSSL_secure_zalloc(n) : nullptr;
    if (!p) p = OPENSSL_zalloc(n);
    if (!p) throw std::bad_alloc();
    p_ = static_cast<uint8_t*>(p);
    n_ = n;
  }
  void Free() {
    if (!p_) return;
    if (CRYPTO_secure_allocated(p_)) OPENSSL_secure_clear_free(p_, n_);
    else OPENSSL_clear_free(p_, n_);
    p_ = nullptr;
    n_ = 0;
  }
  uint8_t* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace vtpm
