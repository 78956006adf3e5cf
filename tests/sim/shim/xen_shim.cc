// libvtpm_xen_sim.so: LD_PRELOAD replacement for the libxengnttab,
// libxenevtchn and libxenctrl functions the daemon calls, as domain 0 of the
// simulated host described in xen_sim.h. Failures set errno and return what
// the real library returns (NULL / -1). Like the real libraries, a handle may
// be used from several threads: each call holds the handle's mutex, except
// while xenevtchn_pending() blocks for an event. The libxenctrl functions are
// in xen_shim_domctl.c, on the domain table read here (vtpm_sim_hv_*).
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "common/uuid.h"
#include "xen_shim_domctl.h"
#include "xen_sim.h"

// The library is built with hidden visibility; only the Xen API is exported.
#pragma GCC visibility push(default)
extern "C" {
#include <xenevtchn.h>
#include <xengnttab.h>
}

struct xengntdev_handle {
  std::mutex mu;
  std::string sim_dir;
  std::set<void*> maps;
};

struct xenevtchn_handle {
  std::mutex mu;
  std::unique_ptr<vtpm::sim::EvtchnEndpoint> ep;
};

namespace {

int SetErrno(const vtpm::Status& st) {
  errno = st.sub_code() != 0 ? int(st.sub_code()) : EIO;
  return -1;
}

}  // namespace

extern "C" {

xengnttab_handle* xengnttab_open(struct xentoollog_logger* /*logger*/, unsigned /*open_flags*/) {
  auto dir = vtpm::sim::SimDirFromEnv();
  if (!dir.ok()) {
    errno = ENOENT;  // what the real library reports without /dev/xen/gntdev
    return nullptr;
  }
  auto* h = new xengntdev_handle;
  h->sim_dir = *dir;
  return h;
}

// Like closing /dev/xen/gntdev: the handle goes, its mappings stay (each
// lives until munmap or exit). Unmapping them through xgt is then invalid.
int xengnttab_close(xengnttab_handle* xgt) {
  delete xgt;
  return 0;
}

int xengnttab_set_max_grants(xengnttab_handle* /*xgt*/, uint32_t /*nr_grants*/) { return 0; }

void* xengnttab_map_grant_ref(xengnttab_handle* xgt, uint32_t domid, uint32_t ref, int prot) {
  void* p = vtpm::sim::MapGrant(xgt->sim_dir, domid, ref, prot);
  std::lock_guard<std::mutex> l(xgt->mu);
  if (p != nullptr) xgt->maps.insert(p);
  return p;
}

int xengnttab_unmap(xengnttab_handle* xgt, void* start_address, uint32_t count) {
  std::lock_guard<std::mutex> l(xgt->mu);
  auto it = xgt->maps.find(start_address);
  if (it == xgt->maps.end() || count != 1) {
    errno = EINVAL;
    return -1;
  }
  xgt->maps.erase(it);
  return ::munmap(start_address, vtpm::sim::kPageSize);
}

xenevtchn_handle* xenevtchn_open(struct xentoollog_logger* /*logger*/, unsigned /*open_flags*/) {
  auto dir = vtpm::sim::SimDirFromEnv();
  if (!dir.ok()) {
    errno = ENOENT;
    return nullptr;
  }
  auto ep = vtpm::sim::EvtchnEndpoint::Open(*dir, 0);
  if (!ep.ok()) {
    SetErrno(ep.status());
    return nullptr;
  }
  auto* h = new xenevtchn_handle;
  h->ep = std::make_unique<vtpm::sim::EvtchnEndpoint>(std::move(ep).value());
  return h;
}

int xenevtchn_close(xenevtchn_handle* xce) {
  delete xce;
  return 0;
}

int xenevtchn_fd(xenevtchn_handle* xce) { return xce->ep->fd(); }

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle* xce, uint32_t domid,
                                                     evtchn_port_t remote_port) {
  std::lock_guard<std::mutex> l(xce->mu);
  auto r = xce->ep->BindInterdomain(domid, remote_port);
  if (!r.ok()) return SetErrno(r.status());
  return xenevtchn_port_or_error_t(*r);
}

int xenevtchn_unbind(xenevtchn_handle* xce, evtchn_port_t port) {
  std::lock_guard<std::mutex> l(xce->mu);
  auto st = xce->ep->Unbind(port);
  return st.ok() ? 0 : SetErrno(st);
}

int xenevtchn_notify(xenevtchn_handle* xce, evtchn_port_t port) {
  std::lock_guard<std::mutex> l(xce->mu);
  auto st = xce->ep->Notify(port);
  return st.ok() ? 0 : SetErrno(st);
}

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle* xce) {
  // The real read() blocks on a blocking fd until an event arrives.
  const int fd = xce->ep->fd();
  if ((::fcntl(fd, F_GETFL) & O_NONBLOCK) == 0) {
    pollfd pfd{fd, POLLIN, 0};
    while (::poll(&pfd, 1, -1) < 0 && errno == EINTR) {
    }
  }
  std::lock_guard<std::mutex> l(xce->mu);
  auto r = xce->ep->Pending(/*block=*/false);
  if (!r.ok()) return SetErrno(r.status());
  return xenevtchn_port_or_error_t(*r);
}

int xenevtchn_unmask(xenevtchn_handle* xce, evtchn_port_t port) {
  std::lock_guard<std::mutex> l(xce->mu);
  xce->ep->Unmask(port);
  return 0;
}

}  // extern "C"
#pragma GCC visibility pop

// The domain table behind xen_shim_domctl.c (hidden, like everything below).
namespace {

struct SimHypervisor {
  std::string sim_dir;
};

}  // namespace

void* vtpm_sim_hv_open(void) {
  auto dir = vtpm::sim::SimDirFromEnv();
  if (!dir.ok()) {
    errno = ENOENT;  // what the real library reports without /dev/xen/privcmd
    return nullptr;
  }
  return new SimHypervisor{*dir};
}

void vtpm_sim_hv_close(void* hv) { delete static_cast<SimHypervisor*>(hv); }

int vtpm_sim_hv_list(void* hv, uint32_t first, unsigned max, vtpm_sim_dominfo* out) {
  auto doms = vtpm::sim::ListSimDomains(static_cast<SimHypervisor*>(hv)->sim_dir, first, max);
  if (!doms.ok()) return SetErrno(doms.status());
  int n = 0;
  for (const vtpm::sim::SimDomain& d : *doms) {
    auto handle = vtpm::Uuid::Parse(d.handle);  // validated when read
    if (!handle.ok()) return SetErrno(handle.status());
    vtpm_sim_dominfo& o = out[n++];
    o.domid = d.domid;
    std::memcpy(o.handle, handle->bytes.data(), sizeof(o.handle));
    o.dying = d.dying ? 1 : 0;
    o.shutdown = d.shutdown ? 1 : 0;
    o.shutdown_code = d.shutdown.value_or(0);
  }
  return n;
}
