// KeyCache: the data keys of the instances used most recently, at most
// `capacity` of them; putting one more evicts the least recently used,
// whose key is wiped (SecretBytes). An evicted key is unwrapped again from
// the database on its next use. Not thread-safe: the caller locks.
#pragma once

#include <cstddef>
#include <list>
#include <map>
#include <optional>
#include <utility>

#include "common/uuid.h"
#include "store/secret_bytes.h"

namespace vtpm {

class KeyCache {
 public:
  explicit KeyCache(size_t capacity) : capacity_(capacity ? capacity : 1) {}
  // A copy of the key of `uuid`, which becomes the most recently used.
  std::optional<SecretBytes> Get(const Uuid& uuid);
  // Inserts or replaces; evicts the least recently used beyond capacity.
  void Put(const Uuid& uuid, SecretBytes key);
  void Erase(const Uuid& uuid);
  size_t size() const { return index_.size(); }
  size_t capacity() const { return capacity_; }

 private:
  using Entry = std::pair<Uuid, SecretBytes>;
  size_t capacity_;
  std::list<Entry> lru_;  // front: most recently used
  std::map<Uuid, std::list<Entry>::iterator> index_;
};

}  // namespace vtpm
