// Workers that outlive the daemon (design §2 "Workers outlive the daemon").
//
// A worker serving its guest is handed to the service manager's fd store
// (systemd's FDSTORE=1) once it serves: its socket, its flight record and a
// pidfd, under the name "vtpm-worker-<uuid>". A daemon that dies leaves the
// worker running, with the other end of its socket held by the store, so
// commands that change nothing are still answered and one that needs a
// commit waits in the worker. The next daemon gets the three back
// (LISTEN_FDS) and, when the instance's device comes up with the same
// guest link, takes the worker over instead of starting one: it sends
// kAdopt and adopts it only if the worker's durable state is the one the
// daemon loaded (Instance::OnAdopted); otherwise, or when no device claims
// it in time, the worker is killed and a new one starts from the store.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/child_process.h"
#include "common/event_loop.h"
#include "common/unique_fd.h"
#include "common/uuid.h"
#include "tpm/guest_channel.h"
#include "tpm/worker_flight.h"

namespace vtpm {

// Where a serving worker's descriptors are kept while no daemon holds them.
class WorkerFdStore {
 public:
  virtual ~WorkerFdStore() = default;
  // Keeps `fds` under `name` (a name not in use).
  virtual void Put(const std::string& name, const std::vector<int>& fds) = 0;
  // Drops every descriptor kept under `name`.
  virtual void Remove(const std::string& name) = 0;
};

// The fd store entry of `uuid`'s worker.
std::string WorkerFdName(const Uuid& uuid);

// Removes its name from the store when destroyed: held by the WorkerClient
// whose descriptors are stored, so that the store never keeps a worker the
// daemon has given up.
class StoredWorker {
 public:
  StoredWorker() = default;
  StoredWorker(std::shared_ptr<WorkerFdStore> store, std::string name)
      : store_(std::move(store)), name_(std::move(name)) {}
  StoredWorker(StoredWorker&& o) noexcept : store_(std::move(o.store_)), name_(std::move(o.name_)) {}
  StoredWorker& operator=(StoredWorker&& o) noexcept;
  StoredWorker(const StoredWorker&) = delete;
  StoredWorker& operator=(const StoredWorker&) = delete;
  ~StoredWorker() { Reset(); }
  // Removes the entry from the store.
  void Reset();
  // Forgets the entry and leaves it in the store: the worker outlives this
  // daemon (WorkerClient::LeaveRunning).
  void Release() { store_.reset(); }
  bool held() const { return store_ != nullptr; }

 private:
  std::shared_ptr<WorkerFdStore> store_;
  std::string name_;
};

// One worker of a previous daemon, alive when it was found.
struct AdoptableWorker {
  Uuid uuid;
  UniqueFd socket;
  FlightPage flight;       // keeps its fd
  ChildProcess process;    // ChildProcess::Adopt()ed: killed if dropped
  uid_t uid = 0;
  GuestLink link;
};

class AdoptableWorkers : public std::enable_shared_from_this<AdoptableWorkers> {
 public:
  // From the descriptors the service manager passed (name, fd). Names other
  // than WorkerFdName()'s are closed; so are entries whose worker is gone or
  // that are incomplete. Each is logged.
  static std::shared_ptr<AdoptableWorkers> Collect(std::vector<std::pair<std::string, UniqueFd>> fds,
                                                   std::shared_ptr<WorkerFdStore> store);
  // The worker of `uuid`, if one was found and not taken yet.
  std::optional<AdoptableWorker> Take(const Uuid& uuid);
  // The flight record a previous daemon left for `uuid`: its worker's (not
  // taken yet), or one whose worker has ended; revoked, so its volatile slot
  // no longer changes (design §3 "Volatile state in the flight record").
  const FlightPage* Flight(const Uuid& uuid) const;
  // Forgets the flight record of an ended worker of `uuid`, once read.
  void DropRemains(const Uuid& uuid) { remains_.erase(uuid); }
  bool Has(const Uuid& uuid) const { return workers_.count(uuid) != 0; }
  // Kills the workers nobody took within `after` of now, from `loop`, and
  // drops their store entries.
  void ExpireAfter(EventLoop& loop, std::chrono::milliseconds after);
  // Kills them all now and waits until each has ended, so that nothing of
  // theirs (the guest's event channel, first of all) is bound any more;
  // drops their store entries. For a daemon that takes none over.
  void KillAll(const char* why);
  size_t size() const { return workers_.size(); }

 private:
  void DropAll(EventLoop& loop, const char* why);
  // Kills and forgets every worker, reaped from `loop` or, without one,
  // waited for here.
  void EndAll(EventLoop* loop, const char* why);
  std::map<Uuid, AdoptableWorker> workers_;
  std::map<Uuid, FlightPage> remains_;  // of workers that ended
  std::shared_ptr<WorkerFdStore> store_;
};

}  // namespace vtpm
