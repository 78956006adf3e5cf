#include "backend/xen_domctl.h"

#include <string.h>
#include <xenctrl.h>

void *vtpm_xc_open(void) { return xc_interface_open(NULL, NULL, 0); }

void vtpm_xc_close(void *xch) { xc_interface_close((xc_interface *)xch); }

int vtpm_xc_get_domain(void *xch, uint32_t domid, struct vtpm_xc_domain *out) {
  xc_domaininfo_t info;
  memset(&info, 0, sizeof(info));
  int n = xc_domain_getinfolist((xc_interface *)xch, domid, 1, &info);
  if (n < 0) return -1;
  /* getinfolist answers with the next domain when `domid` is gone. */
  if (n == 0 || info.domain != domid) return 0;
  memcpy(out->handle, info.handle, sizeof(out->handle));
  out->dying = (info.flags & XEN_DOMINF_dying) != 0;
  out->shutdown = (info.flags & XEN_DOMINF_shutdown) != 0;
  out->shutdown_reason = (uint8_t)((info.flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask);
  return 1;
}
