// WorkerIdentities: one uid of its own for every live vtpm-worker
// (design §2 "vtpm-worker", "Identities").
//
// A worker that shares its uid with another process can signal it, ptrace it
// (dumpable or not, under the same uid the kernel only checks capabilities it
// lacks) and read its /proc entries. Each worker therefore runs under a uid
// leased from [base, base + kWorkerUidCount) and no other process, worker or
// daemon, runs under it. A uid goes back to the pool only when the process
// that held it has been reaped, never while it could still run.
//
// Loop thread only: leases are taken when a worker is spawned and returned
// from the reap callback, both on the event loop.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"

namespace vtpm {

// Size of the uid range ([engine] worker_uid_base): one per concurrently
// live worker, at most one per powered instance plus those being reaped.
inline constexpr uint32_t kWorkerUidCount = 65536;

class WorkerIdentities : public std::enable_shared_from_this<WorkerIdentities> {
 public:
  // uids base .. base+count-1; every worker gets group `gid`, which owns nothing.
  static std::shared_ptr<WorkerIdentities> Create(uid_t base, uint32_t count, gid_t gid);

  // One uid, held until destroyed. Move-only.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& o) noexcept;
    Lease& operator=(Lease&& o) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();
    uid_t uid() const { return uid_; }
    gid_t gid() const { return gid_; }
    bool held() const { return pool_ != nullptr; }

   private:
    friend class WorkerIdentities;
    Lease(std::shared_ptr<WorkerIdentities> pool, uint32_t slot, uid_t uid, gid_t gid)
        : pool_(std::move(pool)), slot_(slot), uid_(uid), gid_(gid) {}
    void Return();
    std::shared_ptr<WorkerIdentities> pool_;
    uint32_t slot_ = 0;
    uid_t uid_ = 0;
    gid_t gid_ = 0;
  };

  // A uid no live lease holds; kBusy when all are held. Taken
  // next-fit from the last one handed out, so a uid just returned is the
  // last to be handed out again.
  Result<Lease> Acquire();
  // The lease of `uid`, which a worker of a previous daemon runs under and
  // this one takes over; kInvalidArgument outside the range, kBusy if held.
  Result<Lease> Reserve(uid_t uid);
  size_t in_use() const { return in_use_; }

 private:
  WorkerIdentities(uid_t base, uint32_t count, gid_t gid) : base_(base), gid_(gid), used_(count, false) {}
  uid_t base_;
  gid_t gid_;
  std::vector<bool> used_;
  uint32_t cursor_ = 0;
  size_t in_use_ = 0;
};

}  // namespace vtpm
