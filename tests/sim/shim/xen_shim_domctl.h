/* The bridge between the shim's libxenctrl functions, written in C
 * (xen_shim_domctl.c: xenctrl.h's public headers need GNU C extensions that
 * strict C++ does not have), and the simulated hypervisor's domain table
 * (xen_sim.h), read in C++ (xen_shim.cc). Hidden inside the shim library. */
#ifndef VTPM_SIM_XEN_SHIM_DOMCTL_H
#define VTPM_SIM_XEN_SHIM_DOMCTL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One domain of the table. */
struct vtpm_sim_dominfo {
  uint32_t domid;
  uint8_t handle[16];
  uint8_t dying;
  uint8_t shutdown;      /* the domain has shut down */
  uint8_t shutdown_code; /* SHUTDOWN_* code, valid when shutdown */
};

/* The table of $VTPM_SIM_DIR; NULL with errno ENOENT when it is unset. */
void *vtpm_sim_hv_open(void);
void vtpm_sim_hv_close(void *hv);
/* Fills out[0..n) with the n <= max existing domains with domid >= first,
 * ascending; returns n, or -1 with errno set. */
int vtpm_sim_hv_list(void *hv, uint32_t first, unsigned max, struct vtpm_sim_dominfo *out);

#ifdef __cplusplus
}
#endif

#endif
