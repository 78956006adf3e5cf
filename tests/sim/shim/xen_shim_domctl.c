/* libvtpm_xen_sim.so's libxenctrl functions: the domain information calls
 * the daemon makes, on the simulated hypervisor's domain table (contract and
 * semantics in xen_sim.h). Failures return what libxenctrl returns (NULL /
 * -1) with errno set. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xen_shim_domctl.h"

/* The library is built with hidden visibility; only the Xen API is exported. */
#pragma GCC visibility push(default)
#include <xenctrl.h>

struct xc_interface_core {
  void *hv;
};

/* Xen's SHUTDOWN_CODE_INVALID: the code of a domain that has not shut down. */
#define SIM_SHUTDOWN_CODE_INVALID (~0u)

xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger,
                                unsigned open_flags) {
  (void)logger;
  (void)dombuild_logger;
  (void)open_flags;
  void *hv = vtpm_sim_hv_open();
  if (hv == NULL) return NULL;
  xc_interface *xch = calloc(1, sizeof(*xch));
  if (xch == NULL) {
    vtpm_sim_hv_close(hv);
    errno = ENOMEM;
    return NULL;
  }
  xch->hv = hv;
  return xch;
}

int xc_interface_close(xc_interface *xch) {
  if (xch == NULL) return 0;
  vtpm_sim_hv_close(xch->hv);
  free(xch);
  return 0;
}

int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain, unsigned int max_domains,
                          xc_domaininfo_t *info) {
  /* No more domains than domids below DOMID_FIRST_RESERVED can exist. */
  unsigned max = max_domains < DOMID_FIRST_RESERVED ? max_domains : DOMID_FIRST_RESERVED;
  if (max == 0) return 0;
  struct vtpm_sim_dominfo *doms = calloc(max, sizeof(*doms));
  if (doms == NULL) {
    errno = ENOMEM;
    return -1;
  }
  int n = vtpm_sim_hv_list(xch->hv, first_domain, max, doms);
  for (int i = 0; i < n; ++i) {
    const struct vtpm_sim_dominfo *d = &doms[i];
    unsigned code = d->shutdown ? d->shutdown_code : SIM_SHUTDOWN_CODE_INVALID;
    memset(&info[i], 0, sizeof(info[i]));
    info[i].domain = (domid_t)d->domid;
    info[i].flags = (d->dying ? XEN_DOMINF_dying : 0) | (d->shutdown ? XEN_DOMINF_shutdown : 0) |
                    (!d->shutdown && !d->dying ? XEN_DOMINF_running : 0) |
                    (code << XEN_DOMINF_shutdownshift);
    memcpy(info[i].handle, d->handle, sizeof(info[i].handle));
  }
  int saved = errno;
  free(doms);
  errno = saved;
  return n;
}

#pragma GCC visibility pop
