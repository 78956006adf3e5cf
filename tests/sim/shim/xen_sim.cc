#include "xen_sim.h"

#include "sim_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "common/uuid.h"

namespace vtpm::sim {
namespace {

using namespace files;  // the shim's file helpers (sim_files.h)

// Allocates the next number in counter file `path` (first value `first`).
// Caller holds the lock.
Result<uint32_t> NextCounter(const std::string& path, uint32_t first) {
  uint32_t next = first;
  if (auto cur = ReadFile(path)) next = uint32_t(std::strtoul(cur->c_str(), nullptr, 10)) + 1;
  if (next < first) next = first;
  RETURN_IF_ERROR(WriteFileAtomic(path, std::to_string(next)));
  return next;
}

struct Endpoint {
  std::string sock;
  ProcessId proc;
  uint32_t port = 0;
};

struct PortRecord {
  uint32_t remote = 0;
  Endpoint owner;
  std::optional<Endpoint> peer;
};

std::string FormatEndpoint(const Endpoint& e, bool with_port) {
  std::string s = e.sock + "|" + std::to_string(e.proc.pid) + "|" + std::to_string(e.proc.start_time);
  if (with_port) s += "|" + std::to_string(e.port);
  return s;
}

std::optional<Endpoint> ParseEndpoint(const std::string& v) {
  std::vector<std::string> f;
  std::stringstream ss(v);
  std::string part;
  while (std::getline(ss, part, '|')) f.push_back(part);
  if (f.size() < 3) return std::nullopt;
  Endpoint e;
  e.sock = f[0];
  e.proc.pid = pid_t(std::strtol(f[1].c_str(), nullptr, 10));
  e.proc.start_time = std::strtoull(f[2].c_str(), nullptr, 10);
  if (f.size() > 3) e.port = uint32_t(std::strtoul(f[3].c_str(), nullptr, 10));
  return e;
}

std::string RecordPath(const std::string& dir, uint32_t domid, uint32_t port) {
  return dir + "/evtchn/port/" + std::to_string(domid) + "-" + std::to_string(port);
}

std::optional<PortRecord> LoadRecord(const std::string& path) {
  auto text = ReadFile(path);
  if (!text) return std::nullopt;
  PortRecord r;
  bool have_owner = false;
  std::stringstream ss(*text);
  std::string line;
  while (std::getline(ss, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string k = line.substr(0, eq), v = line.substr(eq + 1);
    if (k == "remote") r.remote = uint32_t(std::strtoul(v.c_str(), nullptr, 10));
    if (k == "owner") {
      auto e = ParseEndpoint(v);
      if (e) { r.owner = *e; have_owner = true; }
    }
    if (k == "peer") r.peer = ParseEndpoint(v);
  }
  if (!have_owner) return std::nullopt;
  return r;
}

Status StoreRecord(const std::string& path, const PortRecord& r) {
  std::string s = "remote=" + std::to_string(r.remote) + "\nowner=" + FormatEndpoint(r.owner, true) + "\n";
  if (r.peer) s += "peer=" + FormatEndpoint(*r.peer, true) + "\n";
  return WriteFileAtomic(path, s);
}

// Sends one wakeup datagram to `sock` without waiting. A full queue needs
// no more wakeups and a dead receiver none at all, so failures are ignored.
void SendWakeup(int from_fd, const std::string& sock) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (sock.size() >= sizeof(addr.sun_path)) return;
  std::memcpy(addr.sun_path, sock.c_str(), sock.size());
  const uint8_t wake = 1;
  while (::sendto(from_fd, &wake, sizeof(wake), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&addr),
                  sizeof(addr)) < 0 &&
         errno == EINTR) {
  }
}

std::string BitsPath(const std::string& sock) { return sock + ".pending"; }

constexpr size_t kBitsBytes = kMaxPorts / 8;

std::atomic<uint32_t> g_handle_serial{0};

// Field 22 (starttime) of /proc/<pid>/stat, 0 when the process is gone;
// `state` gets field 3.
uint64_t ReadStartTime(pid_t pid, char* state) {
  auto text = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!text) return 0;
  auto rp = text->rfind(')');
  if (rp == std::string::npos || rp + 2 >= text->size()) return 0;
  std::stringstream ss(text->substr(rp + 2));
  std::string field;
  uint64_t st = 0;
  for (int i = 3; i <= 22 && (ss >> field); ++i) {
    if (i == 3) *state = field[0];
    if (i == 22) st = std::strtoull(field.c_str(), nullptr, 10);
  }
  return st;
}

}  // namespace

Result<std::string> SimDirFromEnv() {
  const char* d = std::getenv(kSimDirEnv);
  if (d == nullptr || *d == '\0') return Status(Code::kNotFound, "VTPM_SIM_DIR is not set", ENOENT);
  return std::string(d);
}

Status InitSimDir(const std::string& dir) {
  RETURN_IF_ERROR(MkdirP(dir + "/grants"));
  RETURN_IF_ERROR(MkdirP(dir + "/evtchn/port"));
  RETURN_IF_ERROR(MkdirP(dir + "/evtchn/sock"));
  // The event channels' lock, which any uid may take (see Permissions above).
  const std::string lock = dir + "/evtchn/lock";
  UniqueFd fd(::open(lock.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
  if (fd && ::fchmod(fd.get(), 0666) != 0) return Errno("chmod " + lock);
  if (!fd && errno != EEXIST) return Errno("create " + lock);
  return MkdirP(dir + "/domains");
}

ProcessId ProcessId::Self() {
  ProcessId p;
  p.pid = ::getpid();
  char state = '?';
  p.start_time = ReadStartTime(p.pid, &state);
  return p;
}

bool ProcessId::Alive() const {
  if (pid <= 0) return false;
  char state = '?';
  uint64_t st = ReadStartTime(pid, &state);
  return st != 0 && st == start_time && state != 'Z' && state != 'X';
}

Result<PendingBits> PendingBits::Open(const std::string& path, bool create) {
  if (create) ::unlink(path.c_str());
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0666));
  if (!fd) return Errno("open " + path);
  if (create && ::fchmod(fd.get(), 0666) != 0) return Errno("chmod " + path);  // any notifier's uid
  if (create && ::ftruncate(fd.get(), kBitsBytes) != 0) return Errno("ftruncate " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Errno("stat " + path);
  if (size_t(st.st_size) != kBitsBytes)
    return Status(Code::kInvalidArgument, path + ": not a pending-bits file", EINVAL);
  void* addr = ::mmap(nullptr, kBitsBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (addr == MAP_FAILED) return Errno("mmap " + path);
  PendingBits b;
  b.words_ = static_cast<uint64_t*>(addr);
  return b;
}

PendingBits::~PendingBits() {
  if (words_ != nullptr) ::munmap(words_, kBitsBytes);
}

PendingBits& PendingBits::operator=(PendingBits&& o) noexcept {
  if (this != &o) {
    if (words_ != nullptr) ::munmap(words_, kBitsBytes);
    words_ = std::exchange(o.words_, nullptr);
  }
  return *this;
}

bool PendingBits::TestAndSet(uint32_t port) {
  if (words_ == nullptr || port >= kMaxPorts) return false;
  const uint64_t mask = uint64_t{1} << (port % 64);
  return (std::atomic_ref<uint64_t>(words_[port / 64]).fetch_or(mask) & mask) != 0;
}

bool PendingBits::TestAndClear(uint32_t port) {
  if (words_ == nullptr || port >= kMaxPorts) return false;
  const uint64_t mask = uint64_t{1} << (port % 64);
  return (std::atomic_ref<uint64_t>(words_[port / 64]).fetch_and(~mask) & mask) != 0;
}

bool PendingBits::Test(uint32_t port) const {
  if (words_ == nullptr || port >= kMaxPorts) return false;
  return (std::atomic_ref<uint64_t>(words_[port / 64]).load() & (uint64_t{1} << (port % 64))) != 0;
}

uint64_t PendingBits::Word(size_t i) const {
  if (words_ == nullptr || i >= kMaxPorts / 64) return 0;
  return std::atomic_ref<uint64_t>(words_[i]).load();
}

Result<EvtchnEndpoint> EvtchnEndpoint::Open(const std::string& sim_dir, uint32_t domid) {
  RETURN_IF_ERROR(InitSimDir(sim_dir));
  EvtchnEndpoint ep;
  ep.dir_ = sim_dir;
  ep.domid_ = domid;
  ep.sock_path_ = sim_dir + "/evtchn/sock/" + std::to_string(::getpid()) + "-" +
                  std::to_string(g_handle_serial.fetch_add(1));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (ep.sock_path_.size() >= sizeof(addr.sun_path))
    return Status(Code::kInvalidArgument, "VTPM_SIM_DIR path too long for a unix socket", ENAMETOOLONG);
  std::memcpy(addr.sun_path, ep.sock_path_.c_str(), ep.sock_path_.size());
  ep.sock_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!ep.sock_) return Errno("socket");
  ::unlink(ep.sock_path_.c_str());
  if (::bind(ep.sock_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    return Errno("bind " + ep.sock_path_);
  // Any notifier's uid may send to it (a worker after its privilege drop).
  if (::chmod(ep.sock_path_.c_str(), 0666) != 0) return Errno("chmod " + ep.sock_path_);
  ASSIGN_OR_RETURN(ep.bits_, PendingBits::Open(BitsPath(ep.sock_path_), /*create=*/true));
  return ep;
}

EvtchnEndpoint::~EvtchnEndpoint() { Close(); }

void EvtchnEndpoint::Close() {
  if (!sock_) return;
  std::vector<uint32_t> ports;
  for (auto& [p, _] : ports_) ports.push_back(p);
  for (uint32_t p : ports) (void)Unbind(p);
  ::unlink(sock_path_.c_str());
  ::unlink(BitsPath(sock_path_).c_str());
  sock_.reset();
}

Result<uint32_t> EvtchnEndpoint::AllocUnbound(uint32_t remote_domid) {
  DirLock lock(dir_ + "/evtchn/lock");
  if (!lock.ok()) return Errno("lock evtchn");
  ASSIGN_OR_RETURN(uint32_t port, NextCounter(dir_ + "/evtchn/next-" + std::to_string(domid_), 1));
  if (port >= kMaxPorts) return Status(Code::kBusy, "alloc_unbound: no free port", ENOSPC);
  PortRecord r;
  r.remote = remote_domid;
  r.owner = Endpoint{sock_path_, ProcessId::Self(), port};
  RETURN_IF_ERROR(StoreRecord(RecordPath(dir_, domid_, port), r));
  ports_[port] = Port{true, remote_domid, 0, false, {}, {}, {}, {}};
  return port;
}

Result<uint32_t> EvtchnEndpoint::BindInterdomain(uint32_t remote_domid, uint32_t remote_port) {
  DirLock lock(dir_ + "/evtchn/lock");
  if (!lock.ok()) return Errno("lock evtchn");
  std::string path = RecordPath(dir_, remote_domid, remote_port);
  auto rec = LoadRecord(path);
  auto invalid = [&](const std::string& why) {
    return Status(Code::kInvalidArgument,
                  "bind_interdomain(" + std::to_string(remote_domid) + ", " +
                      std::to_string(remote_port) + "): " + why,
                  EINVAL);
  };
  if (!rec) return invalid("no such port");
  if (rec->remote != domid_) return invalid("port allocated for another domain");
  if (!rec->owner.proc.Alive()) return invalid("port owner is gone");
  if (rec->peer && rec->peer->proc.Alive()) return invalid("port already bound");
  ASSIGN_OR_RETURN(uint32_t local, NextCounter(dir_ + "/evtchn/next-" + std::to_string(domid_), 1));
  if (local >= kMaxPorts) return Status(Code::kBusy, "bind_interdomain: no free port", ENOSPC);
  rec->peer = Endpoint{sock_path_, ProcessId::Self(), local};
  RETURN_IF_ERROR(StoreRecord(path, *rec));
  ports_[local] = Port{false, remote_domid, remote_port, false, {}, {}, {}, {}};
  return local;
}

// A notify costs one stat(2) of the port record and an atomic bit set (plus
// a datagram when the bit was clear), about what the hypercall costs on Xen.
// The record is read, under the lock, only when it changed since the last
// notify: a bind, unbind or rebind by a restarted process rewrites it. A
// receiver that died without unbinding leaves the record as it was; its
// notifications go to its orphaned bits and a socket nobody reads, that
// is, they are dropped, as before.
Status EvtchnEndpoint::Notify(uint32_t local_port) {
  auto it = ports_.find(local_port);
  if (it == ports_.end())
    return Status(Code::kInvalidArgument, "notify: port not bound to this handle", ENOTCONN);
  Port& p = it->second;
  const std::string path =
      p.owner ? RecordPath(dir_, domid_, local_port) : RecordPath(dir_, p.remote_domid, p.remote_port);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Status::Ok();  // other end closed: dropped
  const RecordStamp stamp{st.st_ino, int64_t(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec, st.st_size};
  if (p.resolved_at != stamp) {
    std::optional<PortRecord> rec;
    {
      DirLock lock(dir_ + "/evtchn/lock");
      rec = LoadRecord(path);
    }
    p.notify_to.reset();
    if (rec && p.owner) {
      if (rec->peer && rec->peer->proc.Alive()) p.notify_to.emplace(rec->peer->sock, rec->peer->port);
    } else if (rec && rec->peer && rec->peer->sock == sock_path_ && rec->owner.proc.Alive()) {
      p.notify_to.emplace(rec->owner.sock, rec->owner.port);  // only while this handle is still the bound peer
    }
    p.resolved_at = stamp;
  }
  if (!p.notify_to) return Status::Ok();
  const auto& [sock, port] = *p.notify_to;
  PendingBits* bits = PeerBits(p, sock);
  if (bits == nullptr) return Status::Ok();  // receiver closed meanwhile
  if (!bits->TestAndSet(port)) SendWakeup(sock_.get(), sock);
  return Status::Ok();
}

PendingBits* EvtchnEndpoint::PeerBits(Port& p, const std::string& sock) {
  if (p.peer_sock != sock) {
    p.peer_sock.clear();
    auto bits = PendingBits::Open(BitsPath(sock), /*create=*/false);
    if (!bits.ok()) {
      p.peer_bits = PendingBits();
      return nullptr;
    }
    p.peer_bits = std::move(bits).value();
    p.peer_sock = sock;
  }
  return &p.peer_bits;
}

Status EvtchnEndpoint::Unbind(uint32_t local_port) {
  auto it = ports_.find(local_port);
  if (it == ports_.end()) return Status(Code::kInvalidArgument, "unbind: port not bound", EINVAL);
  Port p = std::move(it->second);
  ports_.erase(it);
  bits_.TestAndClear(local_port);
  DirLock lock(dir_ + "/evtchn/lock");
  if (p.owner) {
    ::unlink(RecordPath(dir_, domid_, local_port).c_str());
    return Status::Ok();
  }
  std::string path = RecordPath(dir_, p.remote_domid, p.remote_port);
  auto rec = LoadRecord(path);
  if (rec && rec->peer && rec->peer->sock == sock_path_ && rec->peer->port == local_port) {
    rec->peer.reset();
    RETURN_IF_ERROR(StoreRecord(path, *rec));
  }
  return Status::Ok();
}

void EvtchnEndpoint::WakeSelf() { SendWakeup(sock_.get(), sock_path_); }

Result<uint32_t> EvtchnEndpoint::Pending(bool block) {
  for (bool first = true;; first = false) {
    uint8_t wake = 0;
    ssize_t n = ::recv(sock_.get(), &wake, sizeof(wake), (first && block) ? 0 : MSG_DONTWAIT);
    if (n >= 0) continue;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return Errno("recv wakeup");
  }
  // Round robin: the first pending unmasked port after the last one delivered.
  std::optional<uint32_t> out = NextReady(last_delivered_);
  if (!out || !bits_.TestAndClear(*out)) return Status(Code::kBusy, "no unmasked event pending", EAGAIN);
  last_delivered_ = *out;
  if (auto_mask_) ports_[*out].masked = true;
  // Keep the fd readable while another unmasked port is pending.
  if (NextReady(*out)) WakeSelf();
  return *out;
}

std::optional<uint32_t> EvtchnEndpoint::NextReady(uint32_t after) const {
  if (ports_.empty()) return std::nullopt;
  const size_t words = size_t(ports_.rbegin()->first) / 64 + 1;
  const size_t start = (size_t(after) + 1) % (words * 64);
  const uint64_t from_start = ~uint64_t{0} << (start % 64);
  // Word of `start` from its bit on, the other words, then that word's
  // bits before `start`.
  for (size_t k = 0; k <= words; ++k) {
    const size_t w = (start / 64 + k) % words;
    uint64_t bits = bits_.Word(w);
    if (k == 0) bits &= from_start;
    if (k == words) bits &= ~from_start;
    for (; bits != 0; bits &= bits - 1) {
      const uint32_t port = uint32_t(w * 64 + size_t(std::countr_zero(bits)));
      auto it = ports_.find(port);
      if (it != ports_.end() && !it->second.masked) return port;
    }
  }
  return std::nullopt;
}

void EvtchnEndpoint::Unmask(uint32_t local_port) {
  auto it = ports_.find(local_port);
  if (it == ports_.end()) return;
  it->second.masked = false;
  if (bits_.Test(local_port)) WakeSelf();
}

Result<GrantedPage> GrantedPage::Grant(const std::string& sim_dir, uint32_t domid) {
  RETURN_IF_ERROR(InitSimDir(sim_dir));
  std::string gdir = sim_dir + "/grants/" + std::to_string(domid);
  RETURN_IF_ERROR(MkdirP(gdir));
  uint32_t ref;
  {
    DirLock lock(gdir + "/.lock");
    if (!lock.ok()) return Errno("lock " + gdir);
    ASSIGN_OR_RETURN(ref, NextCounter(gdir + "/.next", kFirstGrantRef));
  }
  std::string tmp = gdir + "/.new-" + std::to_string(ref);
  UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return Errno("create " + tmp);
  if (::ftruncate(fd.get(), kPageSize) != 0) {
    ::unlink(tmp.c_str());
    return Errno("ftruncate " + tmp);
  }
  void* addr = ::mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (addr == MAP_FAILED) {
    ::unlink(tmp.c_str());
    return Errno("mmap " + tmp);
  }
  GrantedPage g;
  g.path_ = gdir + "/" + std::to_string(ref);
  g.ref_ = ref;
  g.addr_ = addr;
  if (::rename(tmp.c_str(), g.path_.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Errno("rename " + tmp);
  }
  return g;
}

GrantedPage::~GrantedPage() { Reset(); }

GrantedPage::GrantedPage(GrantedPage&& o) noexcept
    : path_(std::move(o.path_)), ref_(o.ref_), addr_(std::exchange(o.addr_, nullptr)) {
  o.path_.clear();
}

GrantedPage& GrantedPage::operator=(GrantedPage&& o) noexcept {
  if (this != &o) {
    Reset();
    path_ = std::move(o.path_);
    o.path_.clear();
    ref_ = o.ref_;
    addr_ = std::exchange(o.addr_, nullptr);
  }
  return *this;
}

void GrantedPage::Revoke() {
  if (!path_.empty()) ::unlink(path_.c_str());
  path_.clear();
}

void GrantedPage::Reset() {
  Revoke();
  if (addr_ != nullptr) ::munmap(addr_, kPageSize);
  addr_ = nullptr;
}

void* MapGrant(const std::string& sim_dir, uint32_t domid, uint32_t ref, int prot) {
  std::string path = sim_dir + "/grants/" + std::to_string(domid) + "/" + std::to_string(ref);
  int oflags = (prot & PROT_WRITE) ? O_RDWR : O_RDONLY;
  UniqueFd fd(::open(path.c_str(), oflags | O_CLOEXEC));
  if (!fd) {
    errno = EINVAL;
    return nullptr;
  }
  void* addr = ::mmap(nullptr, kPageSize, prot, MAP_SHARED, fd.get(), 0);
  if (addr == MAP_FAILED) return nullptr;
  return addr;
}

void ForgetDomain(const std::string& sim_dir, uint32_t domid) {
  std::string gdir = sim_dir + "/grants/" + std::to_string(domid);
  if (DIR* d = ::opendir(gdir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") ::unlink((gdir + "/" + n).c_str());
    }
    ::closedir(d);
    ::rmdir(gdir.c_str());
  }
  DirLock lock(sim_dir + "/evtchn/lock");
  std::string pdir = sim_dir + "/evtchn/port";
  std::string prefix = std::to_string(domid) + "-";
  if (DIR* d = ::opendir(pdir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.rfind(prefix, 0) == 0) ::unlink((pdir + "/" + n).c_str());
    }
    ::closedir(d);
  }
}

}  // namespace vtpm::sim
