// The simulated hypervisor: grant tables and event channels between processes
// on one host, shared through the directory named by env VTPM_SIM_DIR.
//
// libvtpm_xen_sim.so (LD_PRELOAD) implements libxengnttab's and libxenevtchn's
// functions on top of this file's classes, as domain 0; the guest simulator
// uses the same classes as domain D. Contract of the directory (all paths
// relative to $VTPM_SIM_DIR):
//
//   grants/<domid>/<ref>   One 4096-byte file per page that domain <domid>
//                          grants to dom0. The guest creates it under a
//                          temporary name and renames it into place, so a ref
//                          is either fully granted or absent. Revoking (or the
//                          toolstack destroying the domain) unlinks the file;
//                          an existing mapping stays valid, like a Xen mapping
//                          that outlives the granting domain. Refs start at 8
//                          (Xen reserves 0..7).
//   evtchn/lock            flock()ed around every read-modify-write below.
//   evtchn/next-<domid>    Last port number allocated in <domid> (ports from 1).
//   evtchn/port/<d>-<p>    An interdomain channel allocated as unbound port <p>
//                          of domain <d> for a remote domain. key=value lines:
//                            remote=<domid allowed to bind>
//                            owner=<socket path>|<pid>|<starttime>
//                            peer=<socket path>|<pid>|<starttime>|<peer port>
//                          "peer" is absent while the port is unbound. A peer
//                          whose process is gone (pid + /proc start time no
//                          longer match) counts as unbound, so a restarted
//                          daemon can bind again, as on Xen when the binding
//                          process dies.
//   evtchn/sock/<pid>-<n>  One AF_UNIX datagram socket per open handle; a
//                          datagram only wakes the handle up (no payload).
//   evtchn/sock/<pid>-<n>.pending
//                          The handle's pending bits: one bit per local port
//                          (kMaxPorts bits), shared-mapped by every notifier.
//   domains/<domid>        One file per existing domain (the hypervisor's
//                          domain table, read by the shim's
//                          xc_domain_getinfolist). key=value lines:
//                            handle=<uuid 8-4-4-4-12>   the domain handle
//                            shutdown=<0..5>            the SHUTDOWN_* code,
//                                                       once the domain has
//                                                       shut down (absent
//                                                       while it runs)
//                            dying=1                    optional
//                          Written under a temporary name and renamed into
//                          place, so a reader sees a whole record or none.
//                          Absent file = no such domain. The toolstack
//                          simulator writes it at domain creation and removes
//                          it at xc_domain_destroy time.
//   domains/.lock          flock()ed around every read-modify-write of a
//                          domain file.
//
// Permissions: the directory is searchable and every file the event-channel
// code writes (lock, pending bits, handle sockets) is writable by any uid,
// and the port records readable: on Xen a process that bound a port may
// notify it whatever its uid, and a vtpm-worker binds as root and notifies
// after it dropped to a uid of its own. (Grant files stay 0600: a worker maps
// its page before the drop.)
//
// Semantics (matching Xen's event_channel.c / Linux's evtchn device):
//  - notify sets the receiver's pending bit for its port and, only when the
//    bit was clear, sends a wakeup datagram; it never blocks: a wakeup that
//    finds the receiver's queue full is not needed, since the queue already
//    wakes it. Notifications on a pending port coalesce into one, as on Xen;
//  - notify on a port whose other end is unbound or dead is dropped (lost),
//    and the call still succeeds. It costs a stat(2) of the port record and a
//    bit set, like one hypercall: the record is read again (under the lock)
//    only when it changed since the handle's last notify on that port;
//  - bind_interdomain fails with EINVAL unless the remote port exists, was
//    allocated for the binding domain and is unbound; ESRCH is never used;
//  - a delivered port is masked until unmask() and its pending bit cleared;
//    a notification while masked leaves the bit set and is delivered on
//    unmask. A handle's fd is readable while a wakeup is queued; pending()
//    returns the next pending unmasked port (round robin over the bound
//    ports), or -1/EAGAIN when none is (instead of blocking);
//  - notify/unbind of a port the handle does not own fail with ENOTCONN /
//    EINVAL; unmask of such a port is ignored;
//  - mapping a ref that is not granted fails with EINVAL (Linux gntdev's
//    error for a failed GNTTABOP_map_grant_ref).
//  - xengnttab_close frees the handle only: pages mapped through it stay
//    mapped until munmap or exit, as a gntdev mapping outlives its fd.
//  - xc_domain_getinfolist(first, max) returns the existing domains with
//    domid >= first in ascending order, at most max, so a missing domid
//    yields the next domain (or none); flags carry XEN_DOMINF_dying,
//    XEN_DOMINF_shutdown and the code << XEN_DOMINF_shutdownshift, or
//    XEN_DOMINF_running and code 255 (Xen's SHUTDOWN_CODE_INVALID, ~0u
//    shifted) while the domain runs; handle is the 16 bytes of the uuid.
//    xc_interface_open fails with ENOENT when VTPM_SIM_DIR is unset (what
//    the real library reports without /dev/xen/privcmd).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace vtpm::sim {

inline constexpr size_t kPageSize = 4096;
inline constexpr uint32_t kFirstGrantRef = 8;
// Ports per domain (Xen's FIFO ABI limit); allocation beyond fails ENOSPC.
inline constexpr uint32_t kMaxPorts = 1u << 17;
inline constexpr const char* kSimDirEnv = "VTPM_SIM_DIR";

// $VTPM_SIM_DIR, or an error when unset/empty.
Result<std::string> SimDirFromEnv();

// Creates grants/, evtchn/{port,sock}/ and domains/ under `dir` (idempotent).
Status InitSimDir(const std::string& dir);

// SHUTDOWN_* codes (xen/include/public/sched.h).
inline constexpr uint8_t kShutdownPoweroff = 0;
inline constexpr uint8_t kShutdownReboot = 1;
inline constexpr uint8_t kShutdownSuspend = 2;
inline constexpr uint8_t kShutdownCrash = 3;
inline constexpr uint8_t kShutdownWatchdog = 4;
inline constexpr uint8_t kShutdownSoftReset = 5;
// Domids from here on are reserved (DOMID_FIRST_RESERVED).
inline constexpr uint32_t kFirstReservedDomid = 0x7ff0;

// One entry of the simulated hypervisor's domain table (domains/<domid>).
struct SimDomain {
  uint32_t domid = 0;
  std::string handle;               // lower-case 8-4-4-4-12 uuid
  std::optional<uint8_t> shutdown;  // SHUTDOWN_* code once shut down
  bool dying = false;
  bool operator==(const SimDomain&) const = default;
};

// Creates or replaces domains/<d.domid> atomically. kInvalidArgument for a
// reserved domid, a malformed handle (stored lower case) or a code above 5.
Status WriteSimDomain(const std::string& sim_dir, const SimDomain& d);
// nullopt when the domain does not exist; kCorruption for a malformed file.
Result<std::optional<SimDomain>> ReadSimDomain(const std::string& sim_dir, uint32_t domid);
// Applies `change` (which must keep the domid) to the existing entry and
// writes it back, under domains/.lock; kNotFound when the domain is absent.
Status UpdateSimDomain(const std::string& sim_dir, uint32_t domid,
                       const std::function<void(SimDomain&)>& change);
// Removes domains/<domid>; an absent domain is not an error.
Status RemoveSimDomain(const std::string& sim_dir, uint32_t domid);
// At most `max` existing domains with domid >= `first`, ascending (the
// order and selection of XEN_SYSCTL_getdomaininfolist). A missing domains/
// directory is an empty table.
Result<std::vector<SimDomain>> ListSimDomains(const std::string& sim_dir, uint32_t first, size_t max);

// Identity of a live process: pid plus its start time from /proc/<pid>/stat,
// so a reused pid does not look alive.
struct ProcessId {
  pid_t pid = 0;
  uint64_t start_time = 0;
  static ProcessId Self();
  bool Alive() const;
};

// A shared mapping of a handle's pending bits (evtchn/sock/<...>.pending).
class PendingBits {
 public:
  // Creates (create=true, replacing any old file) or opens the bit file.
  static Result<PendingBits> Open(const std::string& path, bool create);
  PendingBits() = default;
  ~PendingBits();
  PendingBits(PendingBits&& o) noexcept : words_(std::exchange(o.words_, nullptr)) {}
  PendingBits& operator=(PendingBits&& o) noexcept;
  PendingBits(const PendingBits&) = delete;
  PendingBits& operator=(const PendingBits&) = delete;

  // Atomic; ports >= kMaxPorts read as clear and are never set.
  bool TestAndSet(uint32_t port);
  bool TestAndClear(uint32_t port);
  bool Test(uint32_t port) const;
  // Bits of ports 64*i .. 64*i+63 (bit n: port 64*i+n), read atomically;
  // 0 past kMaxPorts.
  uint64_t Word(size_t i) const;

 private:
  uint64_t* words_ = nullptr;
};

// One event-channel handle (the fd of /dev/xen/evtchn on a real host) of
// domain `domid`. Not thread-safe; one owner thread.
class EvtchnEndpoint {
 public:
  static Result<EvtchnEndpoint> Open(const std::string& sim_dir, uint32_t domid);
  ~EvtchnEndpoint();
  EvtchnEndpoint(EvtchnEndpoint&&) noexcept = default;
  EvtchnEndpoint& operator=(EvtchnEndpoint&&) noexcept = default;
  EvtchnEndpoint(const EvtchnEndpoint&) = delete;
  EvtchnEndpoint& operator=(const EvtchnEndpoint&) = delete;

  int fd() const { return sock_.get(); }
  uint32_t domid() const { return domid_; }

  // Allocates an unbound port in this domain that `remote_domid` may bind.
  Result<uint32_t> AllocUnbound(uint32_t remote_domid);
  // Binds (remote_domid, remote_port); returns the new local port.
  Result<uint32_t> BindInterdomain(uint32_t remote_domid, uint32_t remote_port);
  Status Notify(uint32_t local_port);
  Status Unbind(uint32_t local_port);
  // Next delivered port (see masking rules above). With `block`, waits
  // until a datagram arrives; otherwise returns kBusy when none is queued.
  Result<uint32_t> Pending(bool block);
  void Unmask(uint32_t local_port);
  // When false (guest side), delivered ports are not masked.
  void set_auto_mask(bool on) { auto_mask_ = on; }

 private:
  // Identity of one version of a port record file: a rewrite renames a new
  // file into place, so any change gives another (inode, ctime, size).
  struct RecordStamp {
    ino_t ino = 0;
    int64_t ctime_ns = 0;
    off_t size = 0;
    bool operator==(const RecordStamp&) const = default;
  };
  struct Port {
    bool owner = false;          // allocated here (record file is ours)
    uint32_t remote_domid = 0;
    uint32_t remote_port = 0;    // owner: 0 until known; binder: owner's port
    bool masked = false;
    std::string peer_sock;   // the other end's handle, while mapped:
    PendingBits peer_bits;   // its pending bits, unmapped with the port
    // Where notify delivers, resolved from the record (and the liveness of
    // the processes it names) when the record had stamp `resolved_at`; the
    // next notify resolves again only if the record changed. nullopt: drop.
    std::optional<RecordStamp> resolved_at;
    std::optional<std::pair<std::string, uint32_t>> notify_to;  // socket, port
  };
  EvtchnEndpoint() = default;
  void WakeSelf();
  // The first port after `after`, wrapping round once, that is bound here,
  // unmasked and pending. Reads the pending bits a word at a time up to the
  // highest bound port, so that a handle with many ports finds one in a few
  // loads, as Xen's evtchn device hands out a queued port.
  std::optional<uint32_t> NextReady(uint32_t after) const;
  // The pending bits of `sock`, the handle at the other end of `p`; nullptr
  // when that handle is closed.
  static PendingBits* PeerBits(Port& p, const std::string& sock);
  void Close();

  std::string dir_;
  uint32_t domid_ = 0;
  std::string sock_path_;
  UniqueFd sock_;
  PendingBits bits_;  // ours, set by notifiers
  std::map<uint32_t, Port> ports_;
  uint32_t last_delivered_ = 0;
  bool auto_mask_ = true;
};

// A page granted by a guest domain to dom0 (guest side). Destruction revokes.
class GrantedPage {
 public:
  static Result<GrantedPage> Grant(const std::string& sim_dir, uint32_t domid);
  ~GrantedPage();
  GrantedPage(GrantedPage&& o) noexcept;
  GrantedPage& operator=(GrantedPage&& o) noexcept;
  GrantedPage(const GrantedPage&) = delete;
  GrantedPage& operator=(const GrantedPage&) = delete;

  uint32_t ref() const { return ref_; }
  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  // Removes the grant; the local mapping (and any dom0 mapping) stays.
  void Revoke();

 private:
  GrantedPage() = default;
  void Reset();
  std::string path_;
  uint32_t ref_ = 0;
  void* addr_ = nullptr;
};

// Dom0 side: maps (domid, ref) shared; errno-style failure (EINVAL if not
// granted). Returns MAP_FAILED-free pointer or nullptr with errno set.
void* MapGrant(const std::string& sim_dir, uint32_t domid, uint32_t ref, int prot);

// Removes every grant and event-channel record of `domid` (domain destroyed).
void ForgetDomain(const std::string& sim_dir, uint32_t domid);

}  // namespace vtpm::sim
