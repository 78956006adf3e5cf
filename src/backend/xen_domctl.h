/* The libxenctrl calls of the Xen seam (xen.h), in C: xenctrl.h's public
 * headers need GNU C extensions that strict C++ does not have. */
#ifndef VTPM_BACKEND_XEN_DOMCTL_H
#define VTPM_BACKEND_XEN_DOMCTL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vtpm_xc_domain {
  uint8_t handle[16];
  uint8_t dying;
  uint8_t shutdown;        /* XEN_DOMINF_shutdown */
  uint8_t shutdown_reason; /* SHUTDOWN_* code, valid when shutdown */
};

/* xc_interface_open(); NULL with errno set on failure. */
void *vtpm_xc_open(void);
void vtpm_xc_close(void *xch);
/* 1 and *out filled when domain `domid` exists, 0 when it does not (never
 * another domain's info), -1 with errno set on failure. */
int vtpm_xc_get_domain(void *xch, uint32_t domid, struct vtpm_xc_domain *out);

#ifdef __cplusplus
}
#endif

#endif
