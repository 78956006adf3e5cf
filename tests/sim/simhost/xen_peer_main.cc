// vtpm-sim-xen-peer: a dom0 program linked against the REAL libxengnttab and
// libxenevtchn, scripted over stdin; run it with libvtpm_xen_sim.so preloaded
// to exercise the shim exactly as the daemon does. One reply line per command:
//   map DOMID REF          -> ok | err ERRNO          (one page, RW)
//   read OFF LEN           -> ok TEXT                 (bytes of the mapping)
//   write OFF TEXT         -> ok
//   unmap                  -> ok | err ERRNO
//   close-gnttab           -> ok     (closes the grant-table handle; the page
//                                     stays mapped, map/unmap are refused)
//   bind DOMID PORT        -> ok LOCALPORT | err ERRNO
//   wait MS                -> event PORT | timeout | err ERRNO   (epoll on the fd + pending)
//   unmask PORT / notify PORT / unbind PORT -> ok | err ERRNO
//   quit
#include <sys/epoll.h>
#include <unistd.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>

extern "C" {
#include <xenevtchn.h>
#include <xengnttab.h>
}

namespace {

void Reply(const std::string& s) { std::cout << s << std::endl; }
void ReplyErr() { Reply("err " + std::to_string(errno)); }

}  // namespace

int main() {
  xengnttab_handle* gt = xengnttab_open(nullptr, 0);
  xenevtchn_handle* ev = xenevtchn_open(nullptr, 0);
  if (gt == nullptr || ev == nullptr) {
    std::cerr << "vtpm-sim-xen-peer: open failed: " << std::strerror(errno) << "\n";
    return 1;
  }
  // The daemon waits on the event-channel fd with epoll; so does this peer.
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event want{};
  want.events = EPOLLIN;
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, xenevtchn_fd(ev), &want) != 0) {
    std::cerr << "vtpm-sim-xen-peer: epoll: " << std::strerror(errno) << "\n";
    return 1;
  }
  uint8_t* page = nullptr;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    if (cmd == "quit") break;
    if (cmd == "map" && gt != nullptr) {
      uint32_t d = 0, r = 0;
      in >> d >> r;
      void* p = xengnttab_map_grant_ref(gt, d, r, PROT_READ | PROT_WRITE);
      if (p == nullptr) {
        ReplyErr();
      } else {
        page = static_cast<uint8_t*>(p);
        Reply("ok");
      }
    } else if (cmd == "read" && page != nullptr) {
      size_t off = 0, len = 0;
      in >> off >> len;
      if (off + len > 4096) len = 0;
      Reply("ok " + std::string(reinterpret_cast<char*>(page) + off, strnlen(reinterpret_cast<char*>(page) + off, len)));
    } else if (cmd == "write" && page != nullptr) {
      size_t off = 0;
      std::string text;
      in >> off >> text;
      if (off + text.size() <= 4096) std::memcpy(page + off, text.data(), text.size());
      Reply("ok");
    } else if (cmd == "unmap" && page != nullptr && gt != nullptr) {
      if (xengnttab_unmap(gt, page, 1) != 0) {
        ReplyErr();
      } else {
        page = nullptr;
        Reply("ok");
      }
    } else if (cmd == "close-gnttab" && gt != nullptr) {
      xengnttab_close(gt);
      gt = nullptr;
      Reply("ok");
    } else if (cmd == "bind") {
      uint32_t d = 0, p = 0;
      in >> d >> p;
      int local = xenevtchn_bind_interdomain(ev, d, p);
      if (local < 0) ReplyErr(); else Reply("ok " + std::to_string(local));
    } else if (cmd == "wait") {
      int ms = 0;
      in >> ms;
      epoll_event got{};
      if (epoll_wait(ep, &got, 1, ms) <= 0) {
        Reply("timeout");
        continue;
      }
      int port = xenevtchn_pending(ev);
      if (port < 0) ReplyErr(); else Reply("event " + std::to_string(port));
    } else if (cmd == "unmask" || cmd == "notify" || cmd == "unbind") {
      uint32_t p = 0;
      in >> p;
      int rc = cmd == "unmask" ? xenevtchn_unmask(ev, p)
               : cmd == "notify" ? xenevtchn_notify(ev, p)
                                 : xenevtchn_unbind(ev, p);
      if (rc != 0) ReplyErr(); else Reply("ok");
    } else {
      Reply("err unknown-command");
    }
  }
  if (page != nullptr && gt != nullptr) xengnttab_unmap(gt, page, 1);
  ::close(ep);
  xenevtchn_close(ev);
  if (gt != nullptr) xengnttab_close(gt);
  return 0;
}
