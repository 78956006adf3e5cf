#include "backend/xen.h"

#include "backend/xen_domctl.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

extern "C" {
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>
}

namespace vtpm {
namespace {
xs_handle* XS(void* h) { return static_cast<xs_handle*>(h); }
xengnttab_handle* GT(void* h) { return static_cast<xengnttab_handle*>(h); }
xenevtchn_handle* EV(void* h) { return static_cast<xenevtchn_handle*>(h); }

Status XsError(const char* op, const std::string& path) {
  return Status::FromErrno(errno, std::string("xenstore ") + op + " " + path);
}
}  // namespace

// ---- xenstore ----

Result<std::unique_ptr<XenStore>> XenStore::Open() {
  xs_handle* h = xs_open(0);
  if (!h) {
    int err = errno;
    const char* path = getenv("XENSTORED_PATH");
    return Status::FromErrno(err, std::string("cannot connect to xenstored") +
                                      (path ? std::string(" at ") + path : std::string()) +
                                      " (is xenstored running?)");
  }
  return std::unique_ptr<XenStore>(new XenStore(h));
}

XenStore::~XenStore() {
  if (h_) xs_close(XS(h_));
}

Result<std::optional<std::string>> XenStore::Txn::Read(const std::string& path) {
  unsigned int len = 0;
  void* v = xs_read(XS(xs_->h_), id_, path.c_str(), &len);
  if (!v) {
    if (errno == ENOENT) return std::optional<std::string>();
    return XsError("read", path);
  }
  std::string s(static_cast<char*>(v), len);
  free(v);
  return std::optional<std::string>(std::move(s));
}

Status XenStore::Txn::Write(const std::string& path, const std::string& value) {
  if (!xs_write(XS(xs_->h_), id_, path.c_str(), value.data(), unsigned(value.size())))
    return XsError("write", path);
  return {};
}

Status XenStore::Txn::Mkdir(const std::string& path) {
  if (!xs_mkdir(XS(xs_->h_), id_, path.c_str())) return XsError("mkdir", path);
  return {};
}

Status XenStore::Txn::Remove(const std::string& path) {
  if (!xs_rm(XS(xs_->h_), id_, path.c_str()) && errno != ENOENT) return XsError("rm", path);
  return {};
}

Status XenStore::Txn::SetPerms(const std::string& path, const std::vector<XsPerm>& perms) {
  std::vector<xs_permissions> p(perms.size());
  for (size_t i = 0; i < perms.size(); ++i) {
    p[i].id = perms[i].domid;
    switch (perms[i].access) {
      case 'r': p[i].perms = XS_PERM_READ; break;
      case 'w': p[i].perms = XS_PERM_WRITE; break;
      case 'b': p[i].perms = XS_PERM_READ | XS_PERM_WRITE; break;
      default: p[i].perms = XS_PERM_NONE; break;
    }
  }
  if (!xs_set_permissions(XS(xs_->h_), id_, path.c_str(), p.data(), unsigned(p.size())))
    return XsError("set-perms", path);
  return {};
}

Result<std::vector<std::string>> XenStore::Txn::Directory(const std::string& path) {
  unsigned int n = 0;
  char** names = xs_directory(XS(xs_->h_), id_, path.c_str(), &n);
  std::vector<std::string> out;
  if (!names) {
    if (errno == ENOENT) return out;
    return XsError("directory", path);
  }
  for (unsigned i = 0; i < n; ++i) out.emplace_back(names[i]);
  free(names);
  return out;
}

Result<std::vector<XsPerm>> XenStore::GetPerms(const std::string& path) {
  unsigned int n = 0;
  xs_permissions* p = xs_get_permissions(XS(h_), XBT_NULL, path.c_str(), &n);
  if (!p) return XsError("get-perms", path);
  std::vector<XsPerm> out;
  for (unsigned i = 0; i < n; ++i) {
    char a = 'n';
    unsigned bits = p[i].perms & (XS_PERM_READ | XS_PERM_WRITE);
    if (bits == XS_PERM_READ) a = 'r';
    else if (bits == XS_PERM_WRITE) a = 'w';
    else if (bits) a = 'b';
    out.push_back({p[i].id, a});
  }
  free(p);
  return out;
}

Status XenStore::Transact(const std::function<Status(Txn&)>& body, int max_attempts) {
  for (int attempt = 0; attempt < max_attempts; ++attempt) {
    xs_transaction_t t = xs_transaction_start(XS(h_));
    if (t == XBT_NULL) return XsError("transaction-start", "");
    Txn txn(this, t);
    Status st = body(txn);
    if (!st.ok()) {
      xs_transaction_end(XS(h_), t, true);
      return st;
    }
    if (xs_transaction_end(XS(h_), t, false)) return {};
    if (errno != EAGAIN) return XsError("transaction-end", "");
  }
  return Status(Code::kBusy, "xenstore transaction kept conflicting (EAGAIN) after " +
                                 std::to_string(max_attempts) + " attempts");
}

Status XenStore::Watch(const std::string& path, const std::string& token) {
  if (!xs_watch(XS(h_), path.c_str(), token.c_str())) return XsError("watch", path);
  return {};
}

Status XenStore::Unwatch(const std::string& path, const std::string& token) {
  if (!xs_unwatch(XS(h_), path.c_str(), token.c_str()) && errno != ENOENT) return XsError("unwatch", path);
  return {};
}

int XenStore::watch_fd() const { return xs_fileno(XS(h_)); }

std::vector<WatchEvent> XenStore::TakeWatchEvents() {
  std::vector<WatchEvent> out;
  while (char** ev = xs_check_watch(XS(h_))) {
    out.push_back({ev[XS_WATCH_PATH], ev[XS_WATCH_TOKEN]});
    free(ev);
  }
  return out;
}

// ---- grant table ----

Result<std::unique_ptr<GrantTable>> GrantTable::Open() {
  xengnttab_handle* h = xengnttab_open(nullptr, 0);
  if (!h) return Status::FromErrno(errno, "cannot open the grant-table device (/dev/xen/gntdev)");
  return std::unique_ptr<GrantTable>(new GrantTable(h));
}

GrantTable::~GrantTable() {
  if (h_) xengnttab_close(GT(h_));
}

Result<GrantMapping> GrantTable::Map(uint32_t domid, uint32_t ref) {
  void* p = xengnttab_map_grant_ref(GT(h_), domid, ref, PROT_READ | PROT_WRITE);
  if (!p)
    return Status::FromErrno(errno, "cannot map grant ref " + std::to_string(ref) + " of domain " +
                                        std::to_string(domid));
  return GrantMapping(h_, p);
}

GrantMapping::~GrantMapping() { Reset(); }
GrantMapping::GrantMapping(GrantMapping&& o) noexcept
    : handle_(std::exchange(o.handle_, nullptr)), addr_(std::exchange(o.addr_, nullptr)) {}
GrantMapping& GrantMapping::operator=(GrantMapping&& o) noexcept {
  if (this != &o) {
    Reset();
    handle_ = std::exchange(o.handle_, nullptr);
    addr_ = std::exchange(o.addr_, nullptr);
  }
  return *this;
}
void GrantMapping::Reset() {
  if (addr_) xengnttab_unmap(GT(handle_), addr_, 1);
  addr_ = nullptr;
}

// ---- event channels ----

Result<std::unique_ptr<EventChannels>> EventChannels::Open() {
  xenevtchn_handle* h = xenevtchn_open(nullptr, 0);
  if (!h) return Status::FromErrno(errno, "cannot open the event-channel device (/dev/xen/evtchn)");
  return std::unique_ptr<EventChannels>(new EventChannels(h));
}

EventChannels::~EventChannels() {
  if (h_) xenevtchn_close(EV(h_));
}

Result<BoundPort> EventChannels::BindInterdomain(uint32_t domid, uint32_t remote_port) {
  xenevtchn_port_or_error_t p = xenevtchn_bind_interdomain(EV(h_), domid, remote_port);
  if (p < 0)
    return Status::FromErrno(errno, "cannot bind event channel " + std::to_string(remote_port) +
                                        " of domain " + std::to_string(domid));
  return BoundPort(this, uint32_t(p));
}

int EventChannels::fd() const { return xenevtchn_fd(EV(h_)); }

std::optional<uint32_t> EventChannels::TakePending() {
  xenevtchn_port_or_error_t p = xenevtchn_pending(EV(h_));
  if (p < 0) return std::nullopt;
  return uint32_t(p);
}

Status EventChannels::Unmask(uint32_t port) {
  if (xenevtchn_unmask(EV(h_), port) < 0) return Status::FromErrno(errno, "evtchn unmask");
  return {};
}

Status EventChannels::Notify(uint32_t port) {
  if (xenevtchn_notify(EV(h_), port) < 0) return Status::FromErrno(errno, "evtchn notify");
  return {};
}

void EventChannels::Unbind(uint32_t port) { xenevtchn_unbind(EV(h_), port); }

BoundPort::~BoundPort() { Reset(); }
BoundPort::BoundPort(BoundPort&& o) noexcept
    : owner_(std::exchange(o.owner_, nullptr)), port_(o.port_) {}
BoundPort& BoundPort::operator=(BoundPort&& o) noexcept {
  if (this != &o) {
    Reset();
    owner_ = std::exchange(o.owner_, nullptr);
    port_ = o.port_;
  }
  return *this;
}
void BoundPort::Reset() {
  if (owner_) owner_->Unbind(port_);
  owner_ = nullptr;
}
Status BoundPort::Notify() const {
  if (!owner_) return Status(Code::kFailedPrecondition, "notify on an unbound port");
  return owner_->Notify(port_);
}

Result<std::unique_ptr<Hypervisor>> Hypervisor::Open() {
  void* h = vtpm_xc_open();
  if (!h) return Status::FromErrno(errno, "cannot open the hypervisor interface (/dev/xen/privcmd)");
  return std::unique_ptr<Hypervisor>(new Hypervisor(h));
}

Hypervisor::~Hypervisor() {
  if (h_) vtpm_xc_close(h_);
}

Result<std::optional<DomainInfo>> Hypervisor::Domain(uint32_t domid) {
  vtpm_xc_domain d{};
  int r = vtpm_xc_get_domain(h_, domid, &d);
  if (r < 0) return Status::FromErrno(errno, "reading domain " + std::to_string(domid) + "'s state");
  if (r == 0) return std::optional<DomainInfo>();
  DomainInfo out;
  out.domid = domid;
  std::memcpy(out.handle.data(), d.handle, out.handle.size());
  out.dying = d.dying != 0;
  if (d.shutdown) out.shutdown_reason = d.shutdown_reason;
  return std::optional<DomainInfo>(out);
}

}  // namespace vtpm
