// The Xen seam: the only place the daemon touches libxenstore, libxengnttab,
// libxenevtchn and libxenctrl (xen.cc is the only file including their headers).
// On a real host these reach xenstored and /dev/xen/*; in the sim tier the
// same calls reach the real xenstored (XENSTORED_PATH) and the LD_PRELOAD
// grant/event-channel/domain-table shim, so this file is identical in both.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace vtpm {

struct XsPerm {
  uint32_t domid;
  char access;  // 'n' none, 'r' read, 'w' write, 'b' both
};

struct WatchEvent {
  std::string path;
  std::string token;
};

// A handle to xenstored. Not thread-safe; used from the event loop only.
class XenStore {
 public:
  // Opens the connection (honours XENSTORED_PATH).
  static Result<std::unique_ptr<XenStore>> Open();
  ~XenStore();
  XenStore(const XenStore&) = delete;
  XenStore& operator=(const XenStore&) = delete;

  // One transaction. Every call made on it is part of the transaction.
  class Txn {
   public:
    // nullopt when the node does not exist; error on any other failure.
    Result<std::optional<std::string>> Read(const std::string& path);
    Status Write(const std::string& path, const std::string& value);
    Status Mkdir(const std::string& path);
    Status Remove(const std::string& path);  // ENOENT is success
    Status SetPerms(const std::string& path, const std::vector<XsPerm>& perms);
    Result<std::vector<std::string>> Directory(const std::string& path);  // empty if absent

   private:
    friend class XenStore;
    Txn(XenStore* xs, uint32_t id) : xs_(xs), id_(id) {}
    XenStore* xs_;
    uint32_t id_;
  };

  // Runs `body` in a transaction and commits; on EAGAIN (a conflicting
  // commit) the whole body runs again, up to `max_attempts` times. If
  // `body` fails the transaction is aborted and its Status returned.
  Status Transact(const std::function<Status(Txn&)>& body, int max_attempts = 64);

  // Outside any transaction.
  Txn Direct() { return Txn(this, 0); }
  Result<std::optional<std::string>> Read(const std::string& path) { return Direct().Read(path); }
  Status Write(const std::string& path, const std::string& value) { return Direct().Write(path, value); }
  Result<std::vector<std::string>> Directory(const std::string& path) { return Direct().Directory(path); }
  Result<std::vector<XsPerm>> GetPerms(const std::string& path);

  Status Watch(const std::string& path, const std::string& token);
  Status Unwatch(const std::string& path, const std::string& token);
  // Readable when watch events are queued.
  int watch_fd() const;
  // Drains every queued event without blocking.
  std::vector<WatchEvent> TakeWatchEvents();

 private:
  explicit XenStore(void* handle) : h_(handle) {}
  void* h_;
};

class GrantTable;

// One mapped foreign page; unmapped on destruction.
class GrantMapping {
 public:
  GrantMapping() = default;
  ~GrantMapping();
  GrantMapping(GrantMapping&& o) noexcept;
  GrantMapping& operator=(GrantMapping&& o) noexcept;
  GrantMapping(const GrantMapping&) = delete;
  GrantMapping& operator=(const GrantMapping&) = delete;

  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  bool valid() const { return addr_ != nullptr; }
  static constexpr size_t kSize = 4096;

 private:
  friend class GrantTable;
  GrantMapping(void* handle, void* addr) : handle_(handle), addr_(addr) {}
  void Reset();
  void* handle_ = nullptr;
  void* addr_ = nullptr;
};

class GrantTable {
 public:
  static Result<std::unique_ptr<GrantTable>> Open();
  ~GrantTable();
  GrantTable(const GrantTable&) = delete;
  GrantTable& operator=(const GrantTable&) = delete;
  // Maps grant `ref` of domain `domid` read-write.
  Result<GrantMapping> Map(uint32_t domid, uint32_t ref);

 private:
  explicit GrantTable(void* h) : h_(h) {}
  void* h_;
};

class EventChannels;

// One bound local port; unbound on destruction.
class BoundPort {
 public:
  BoundPort() = default;
  ~BoundPort();
  BoundPort(BoundPort&& o) noexcept;
  BoundPort& operator=(BoundPort&& o) noexcept;
  BoundPort(const BoundPort&) = delete;
  BoundPort& operator=(const BoundPort&) = delete;

  uint32_t port() const { return port_; }
  bool valid() const { return owner_ != nullptr; }
  Status Notify() const;

 private:
  friend class EventChannels;
  BoundPort(EventChannels* owner, uint32_t port) : owner_(owner), port_(port) {}
  void Reset();
  EventChannels* owner_ = nullptr;
  uint32_t port_ = 0;
};

// One event-channel handle for all ports; pollable.
class EventChannels {
 public:
  static Result<std::unique_ptr<EventChannels>> Open();
  ~EventChannels();
  EventChannels(const EventChannels&) = delete;
  EventChannels& operator=(const EventChannels&) = delete;

  Result<BoundPort> BindInterdomain(uint32_t domid, uint32_t remote_port);
  int fd() const;
  // Next port with a pending event (masked until Unmask), or nullopt. Call
  // once per readable fd: the underlying read blocks when nothing is queued.
  std::optional<uint32_t> TakePending();
  Status Unmask(uint32_t port);

 private:
  friend class BoundPort;
  explicit EventChannels(void* h) : h_(h) {}
  Status Notify(uint32_t port);
  void Unbind(uint32_t port);
  void* h_;
};

// Xen's SHUTDOWN_* codes (public/sched.h), as the hypervisor reports them.
enum ShutdownReason : uint8_t {
  kShutdownPoweroff = 0,
  kShutdownReboot = 1,
  kShutdownSuspend = 2,
  kShutdownCrash = 3,
  kShutdownWatchdog = 4,
  kShutdownSoftReset = 5,
};

// What the hypervisor says of one domain (XEN_DOMCTL_getdomaininfo).
struct DomainInfo {
  uint32_t domid = 0;
  // The domain handle: xl's c_info.uuid, kept by xl save/restore and migrate.
  std::array<uint8_t, 16> handle{};
  bool dying = false;
  // Set once the domain has shut down (all vCPUs stopped for good unless a
  // toolstack resumes it); the SHUTDOWN_* code it gave. Cleared by a resume.
  std::optional<uint8_t> shutdown_reason;
};

// A libxenctrl handle, for domain information only. Opening needs
// /dev/xen/privcmd (and /dev/xen/hypercall where present).
class Hypervisor {
 public:
  static Result<std::unique_ptr<Hypervisor>> Open();
  ~Hypervisor();
  Hypervisor(const Hypervisor&) = delete;
  Hypervisor& operator=(const Hypervisor&) = delete;

  // nullopt when no domain `domid` exists (never another domain's info).
  Result<std::optional<DomainInfo>> Domain(uint32_t domid);

 private:
  explicit Hypervisor(void* h) : h_(h) {}
  void* h_;
};

}  // namespace vtpm
