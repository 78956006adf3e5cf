#include "store/key_cache.h"

namespace vtpm {

std::optional<SecretBytes> KeyCache::Get(const Uuid& uuid) {
  auto it = index_.find(uuid);
  if (it == index_.end()) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second.Clone();
}

void KeyCache::Put(const Uuid& uuid, SecretBytes key) {
  if (auto it = index_.find(uuid); it != index_.end()) {
    it->second->second = std::move(key);
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.emplace_front(uuid, std::move(key));
  index_.emplace(uuid, lru_.begin());
  while (index_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

void KeyCache::Erase(const Uuid& uuid) {
  auto it = index_.find(uuid);
  if (it == index_.end()) return;
  lru_.erase(it->second);
  index_.erase(it);
}

}  // namespace vtpm
