/* vtpm-sim-xc-peer: a dom0 program linked against the REAL libxenctrl,
 * scripted over stdin; run it with libvtpm_xen_sim.so preloaded to exercise
 * the shim's domain table as the daemon does. In C: xenctrl.h needs GNU C.
 * One reply line per command:
 *   open                -> ok | err ERRNO              (xc_interface_open)
 *   list FIRST MAX      -> ok N [DOMID:FLAGS:HANDLE]...  | err ERRNO
 *                          (xc_domain_getinfolist; FLAGS in hex, HANDLE as
 *                          32 hex digits)
 *   domain DOMID        -> ok DYING SHUTDOWN REASON HANDLE | none | err ERRNO
 *                          (the daemon's own seam, src/backend/xen_domctl.c)
 *   close               -> ok                          (xc_interface_close)
 *   quit
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenctrl.h>

#include "backend/xen_domctl.h"

static void print_handle(const uint8_t *h) {
  for (int i = 0; i < 16; ++i) printf("%02x", h[i]);
}

static void reply_err(void) { printf("err %d\n", errno); }

static void do_list(xc_interface *xch, uint32_t first, unsigned max) {
  xc_domaininfo_t *info = calloc(max ? max : 1, sizeof(*info));
  if (info == NULL) {
    reply_err();
    return;
  }
  int n = xc_domain_getinfolist(xch, first, max, info);
  if (n < 0) {
    reply_err();
  } else {
    printf("ok %d", n);
    for (int i = 0; i < n; ++i) {
      printf(" %u:%x:", (unsigned)info[i].domain, (unsigned)info[i].flags);
      print_handle(info[i].handle);
    }
    printf("\n");
  }
  free(info);
}

static void do_domain(void *xch, uint32_t domid) {
  struct vtpm_xc_domain d;
  memset(&d, 0, sizeof(d));
  int r = vtpm_xc_get_domain(xch, domid, &d);
  if (r < 0) {
    reply_err();
  } else if (r == 0) {
    printf("none\n");
  } else {
    printf("ok %u %u %u ", d.dying, d.shutdown, d.shutdown_reason);
    print_handle(d.handle);
    printf("\n");
  }
}

int main(void) {
  xc_interface *xch = NULL;
  char line[256];
  setvbuf(stdout, NULL, _IOLBF, 0);
  while (fgets(line, sizeof(line), stdin) != NULL) {
    char cmd[32] = "";
    unsigned long a = 0, b = 0;
    int fields = sscanf(line, "%31s %lu %lu", cmd, &a, &b);
    if (fields < 1) continue;
    if (strcmp(cmd, "quit") == 0) break;
    if (strcmp(cmd, "open") == 0) {
      if (xch != NULL) xc_interface_close(xch);
      xch = xc_interface_open(NULL, NULL, 0);
      if (xch == NULL) reply_err(); else printf("ok\n");
    } else if (strcmp(cmd, "close") == 0 && xch != NULL) {
      xc_interface_close(xch);
      xch = NULL;
      printf("ok\n");
    } else if (strcmp(cmd, "list") == 0 && xch != NULL && fields == 3) {
      do_list(xch, (uint32_t)a, (unsigned)b);
    } else if (strcmp(cmd, "domain") == 0 && xch != NULL && fields >= 2) {
      do_domain(xch, (uint32_t)a);
    } else {
      printf("err unknown-command\n");
    }
  }
  if (xch != NULL) xc_interface_close(xch);
  return 0;
}
