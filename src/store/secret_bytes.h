// SecretBytes: sole owner of key material; wiped (OPENSSL_cleanse) on free
// and on move-from. Never copied implicitly.
#pragma once

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"

namespace vtpm {

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t n) : b_(n) {}
  explicit SecretBytes(ByteView v) : b_(v.begin(), v.end()) {}
  ~SecretBytes() { Wipe(); }
  SecretBytes(SecretBytes&& o) noexcept : b_(std::move(o.b_)) { o.b_.clear(); }
  SecretBytes& operator=(SecretBytes&& o) noexcept {
    if (this != &o) {
      Wipe();
      b_ = std::move(o.b_);
      o.b_.clear();
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

  uint8_t* data() { return b_.data(); }
  const uint8_t* data() const { return b_.data(); }
  size_t size() const { return b_.size(); }
  bool empty() const { return b_.empty(); }
  ByteView view() const { return {b_.data(), b_.size()}; }

 private:
  void Wipe() {
    if (!b_.empty()) OPENSSL_cleanse(b_.data(), b_.size());
  }
  std::vector<uint8_t> b_;
};

}  // namespace vtpm
