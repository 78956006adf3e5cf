#include "tpm/worker_identity.h"

#include <string>
#include <utility>

namespace vtpm {

std::shared_ptr<WorkerIdentities> WorkerIdentities::Create(uid_t base, uint32_t count, gid_t gid) {
  return std::shared_ptr<WorkerIdentities>(new WorkerIdentities(base, count, gid));
}

Result<WorkerIdentities::Lease> WorkerIdentities::Acquire() {
  const uint32_t n = uint32_t(used_.size());
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t slot = (cursor_ + i) % n;
    if (used_[slot]) continue;
    used_[slot] = true;
    ++in_use_;
    cursor_ = (slot + 1) % n;
    return Lease(shared_from_this(), slot, uid_t(base_ + slot), gid_);
  }
  return Status(Code::kBusy, "all " + std::to_string(n) + " worker uids from " + std::to_string(base_) +
                                              " are held by live workers");
}

Result<WorkerIdentities::Lease> WorkerIdentities::Reserve(uid_t uid) {
  if (uid < base_ || uid - base_ >= used_.size())
    return Status(Code::kInvalidArgument, "uid " + std::to_string(uid) + " is not a worker uid");
  const uint32_t slot = uint32_t(uid - base_);
  if (used_[slot]) return Status(Code::kBusy, "uid " + std::to_string(uid) + " is held by another worker");
  used_[slot] = true;
  ++in_use_;
  return Lease(shared_from_this(), slot, uid, gid_);
}

WorkerIdentities::Lease::Lease(Lease&& o) noexcept
    : pool_(std::move(o.pool_)), slot_(o.slot_), uid_(o.uid_), gid_(o.gid_) {
  o.pool_.reset();
}

WorkerIdentities::Lease& WorkerIdentities::Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    Return();
    pool_ = std::move(o.pool_);
    o.pool_.reset();
    slot_ = o.slot_;
    uid_ = o.uid_;
    gid_ = o.gid_;
  }
  return *this;
}

WorkerIdentities::Lease::~Lease() { Return(); }

void WorkerIdentities::Lease::Return() {
  if (!pool_) return;
  pool_->used_[slot_] = false;
  --pool_->in_use_;
  pool_.reset();
}

}  // namespace vtpm
