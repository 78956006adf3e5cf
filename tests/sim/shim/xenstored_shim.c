/* libvtpm_xenstored_sim.so: LD_PRELOAD shim that lets Debian's C xenstored
 * (Xen 4.17) run without a hypervisor, serving only its unix socket.
 *
 * Contract: start `xenstored -N` with XENSTORED_RUNDIR (or XENSTORED_PATH)
 * naming the socket and this library preloaded. The shim
 *  - makes xc_interface_open() succeed and reports every domid as an existing,
 *    running domain (xenstored's SET_PERMS rejects owners that do not exist);
 *  - gives xenstored's own grant/event-channel handles inert stand-ins: a map
 *    of an introduced domain's ring returns a private zero page, event
 *    channels never fire (so no VIRQ_DOM_EXC: @releaseDomain only follows an
 *    explicit XS_RELEASE, as the toolstack simulator sends);
 *  - answers dom0_init()'s reads of /proc/xen/xsd_port and /proc/xen/xsd_kva
 *    with a memfd holding "1" and a one-page memfd.
 * Without it, xenstored -N exits with "Failed to open connection to
 * hypervisor", and -D crashes on the first request (4.17 never builds its
 * node tree then).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>

static char handle_token;  /* every handle is this address; nothing to free */
static int never_fd = -1;  /* eventfd nobody writes: never readable */
static unsigned next_port = 2;

xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger,
                                unsigned open_flags) {
    (void)logger; (void)dombuild_logger; (void)open_flags;
    return (xc_interface *)&handle_token;
}

int xc_interface_close(xc_interface *xch) { (void)xch; return 0; }

int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid, unsigned int max_doms,
                      xc_dominfo_t *info) {
    (void)xch;
    if (max_doms == 0) return 0;
    memset(info, 0, sizeof(*info));
    info->domid = first_domid;
    info->running = 1;
    return 1;
}

xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger, unsigned open_flags) {
    (void)logger; (void)open_flags;
    return (xengnttab_handle *)&handle_token;
}

int xengnttab_close(xengnttab_handle *xgt) { (void)xgt; return 0; }

int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants) {
    (void)xgt; (void)nr_grants;
    return 0;
}

void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid, uint32_t ref, int prot) {
    (void)xgt; (void)domid; (void)ref; (void)prot;
    void *p = mmap(NULL, (size_t)getpagesize(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count) {
    (void)xgt;
    return munmap(start_address, (size_t)count * (size_t)getpagesize());
}

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger, unsigned open_flags) {
    (void)logger; (void)open_flags;
    if (never_fd < 0) never_fd = eventfd(0, EFD_CLOEXEC);
    return never_fd < 0 ? NULL : (xenevtchn_handle *)&handle_token;
}

int xenevtchn_close(xenevtchn_handle *xce) { (void)xce; return 0; }
int xenevtchn_fd(xenevtchn_handle *xce) { (void)xce; return never_fd; }

xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle *xce, unsigned int virq) {
    (void)xce; (void)virq;
    return (xenevtchn_port_or_error_t)next_port++;
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid,
                                                     evtchn_port_t remote_port) {
    (void)xce; (void)domid; (void)remote_port;
    return (xenevtchn_port_or_error_t)next_port++;
}

int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port) { (void)xce; (void)port; return 0; }
int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port) { (void)xce; (void)port; return 0; }
int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port) { (void)xce; (void)port; return 0; }

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce) {
    (void)xce;
    errno = EAGAIN;
    return -1;
}

static int memfd_with(const char *name, const char *content, size_t size) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -1;
    if (content != NULL && write(fd, content, strlen(content)) != (ssize_t)strlen(content)) goto fail;
    if (size != 0 && ftruncate(fd, (off_t)size) != 0) goto fail;
    if (lseek(fd, 0, SEEK_SET) != 0) goto fail;
    return fd;
fail:
    close(fd);
    return -1;
}

int open(const char *path, int flags, ...) {
    static int (*real_open)(const char *, int, ...);
    mode_t mode = 0;
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (strcmp(path, "/proc/xen/xsd_port") == 0) return memfd_with("xsd_port", "1", 0);
    if (strcmp(path, "/proc/xen/xsd_kva") == 0) return memfd_with("xsd_kva", NULL, (size_t)getpagesize());
    if (real_open == NULL) real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    return real_open(path, flags, mode);
}
