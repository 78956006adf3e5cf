// vtpm-sim-fake-tpmback: a minimal dom0 vTPM backend (mini-os tpmback style)
// used to test the guest and toolstack simulators without the real daemon.
// It uses the REAL libxenstore, libxengnttab and libxenevtchn, so run it with
// libvtpm_xen_sim.so preloaded (SimHost::SpawnWithShim).
//
//   vtpm-sim-fake-tpmback DOMID DEVID [--tpm-socket PATH] [--no-feature]
//                         [--bad-length] [--delay-ms N] [--closed-to-initwait]
// Answers each request by forwarding it to a TPM 1.2 on a unix socket
// (swtpm socket), or by default with "00C4 <size> 00000000" + the request's
// body. Prints one line per event (initwait, mapped, bound, connected,
// request N, cancel, closing, closed, removed) and exits when its backend
// dir is removed.
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>
}

namespace {

xs_handle* g_xs;

std::optional<std::string> Read(const std::string& p) {
  unsigned len = 0;
  void* v = xs_read(g_xs, XBT_NULL, p.c_str(), &len);
  if (v == nullptr) return std::nullopt;
  std::string s(static_cast<char*>(v), len);
  free(v);
  return s;
}

void Write(const std::string& p, const std::string& v) { xs_write(g_xs, XBT_NULL, p.c_str(), v.data(), unsigned(v.size())); }

void Say(const std::string& s) { std::cout << s << std::endl; }

uint32_t Be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

std::vector<uint8_t> ForwardToTpm(const std::string& path, const std::vector<uint8_t>& cmd) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  std::vector<uint8_t> resp;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::write(fd, cmd.data(), cmd.size()) == ssize_t(cmd.size())) {
    uint8_t buf[4096];
    size_t have = 0;
    while (have < sizeof(buf)) {
      ssize_t n = ::read(fd, buf + have, sizeof(buf) - have);
      if (n <= 0) break;
      have += size_t(n);
      if (have >= 6 && have >= Be32(buf + 2)) break;
    }
    resp.assign(buf, buf + have);
  }
  ::close(fd);
  return resp;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: vtpm-sim-fake-tpmback DOMID DEVID [options]\n";
    return 2;
  }
  const uint32_t domid = uint32_t(std::stoul(argv[1]));
  const std::string devid = argv[2];
  std::string tpm_socket;
  bool feature = true, bad_length = false, to_initwait = false;
  int delay_ms = 0;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--tpm-socket" && i + 1 < argc) tpm_socket = argv[++i];
    else if (a == "--no-feature") feature = false;
    else if (a == "--bad-length") bad_length = true;
    else if (a == "--closed-to-initwait") to_initwait = true;
    else if (a == "--delay-ms" && i + 1 < argc) delay_ms = std::atoi(argv[++i]);
  }
  g_xs = xs_open(0);
  xengnttab_handle* gt = xengnttab_open(nullptr, 0);
  xenevtchn_handle* ev = xenevtchn_open(nullptr, 0);
  if (g_xs == nullptr || gt == nullptr || ev == nullptr) {
    std::cerr << "fake-tpmback: cannot open xen interfaces: " << std::strerror(errno) << "\n";
    return 1;
  }
  const std::string be = "/local/domain/0/backend/vtpm/" + std::to_string(domid) + "/" + devid;
  while (!Read(be + "/state")) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const std::string fe = Read(be + "/frontend").value_or("");
  if (feature) Write(be + "/feature-protocol-v2", "1");
  Write(be + "/state", "2");
  Say("initwait");

  uint8_t* page = nullptr;
  int local = -1;
  auto disconnect = [&] {
    if (page != nullptr) xengnttab_unmap(gt, page, 1);
    if (local >= 0) xenevtchn_unbind(ev, uint32_t(local));
    page = nullptr;
    local = -1;
  };
  for (;;) {
    auto be_state = Read(be + "/state");
    if (!be_state) {
      Say("removed");
      break;
    }
    const std::string fe_state = Read(fe + "/state").value_or("");
    const std::string online = Read(be + "/online").value_or("");
    if (page == nullptr && (fe_state == "3" || fe_state == "4") && *be_state == "2") {
      uint32_t ref = uint32_t(std::stoul(Read(fe + "/ring-ref").value_or("0")));
      uint32_t port = uint32_t(std::stoul(Read(fe + "/event-channel").value_or("0")));
      page = static_cast<uint8_t*>(xengnttab_map_grant_ref(gt, domid, ref, PROT_READ | PROT_WRITE));
      if (page == nullptr) {
        Say("map-failed " + std::to_string(errno));
        Write(be + "/state", "6");
        continue;
      }
      Say("mapped " + std::to_string(ref));
      local = xenevtchn_bind_interdomain(ev, domid, port);
      if (local < 0) {
        Say("bind-failed " + std::to_string(errno));
        disconnect();
        Write(be + "/state", "6");
        continue;
      }
      xenevtchn_unmask(ev, uint32_t(local));
      Say("bound " + std::to_string(local));
      Write(be + "/state", "4");
      Say("connected");
      continue;  // the page is checked right away below (lost first notify)
    }
    if (page != nullptr) {
      uint8_t s = __atomic_load_n(page + 4, __ATOMIC_ACQUIRE);
      if (s == 1) {  // SUBMIT
        uint32_t len;
        std::memcpy(&len, page, 4);
        size_t off = 8 + 4 * size_t(page[7]);
        std::vector<uint8_t> resp;
        if (off + len <= 4096 && len >= 10) {
          std::vector<uint8_t> cmd(page + off, page + off + len);
          Say("request " + std::to_string(len));
          if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
          if (!tpm_socket.empty()) {
            resp = ForwardToTpm(tpm_socket, cmd);
          } else {
            resp = {0x00, 0xC4, 0, 0, 0, 0, 0, 0, 0, 0};
            resp.insert(resp.end(), cmd.begin() + 10, cmd.end());
            uint32_t n = uint32_t(resp.size());
            resp[2] = uint8_t(n >> 24); resp[3] = uint8_t(n >> 16); resp[4] = uint8_t(n >> 8); resp[5] = uint8_t(n);
          }
        } else {
          Say("bad-request " + std::to_string(len));
          resp = {0x00, 0xC4, 0, 0, 0, 10, 0, 0, 0, 0x15};  // TPM_SIZE
        }
        if (__atomic_load_n(page + 4, __ATOMIC_ACQUIRE) == 3) {
          // Cancelled while we worked: answer the cancel instead.
          __atomic_store_n(page + 4, uint8_t(0), __ATOMIC_RELEASE);
          Say("cancel");
        } else {
          std::memcpy(page + 8, resp.data(), resp.size());
          uint32_t out = uint32_t(resp.size()) + (bad_length ? 1 : 0);
          std::memcpy(page, &out, 4);
          __atomic_store_n(page + 4, uint8_t(2), __ATOMIC_RELEASE);
        }
        xenevtchn_notify(ev, uint32_t(local));
      } else if (s == 3) {  // CANCEL while idle
        __atomic_store_n(page + 4, uint8_t(0), __ATOMIC_RELEASE);
        xenevtchn_notify(ev, uint32_t(local));
        Say("cancel");
      }
    }
    if (fe_state == "5" && *be_state == "4") {
      Write(be + "/state", "5");
      Say("closing");
    } else if (page != nullptr && (fe_state == "6" || fe_state.empty() || fe_state == "1")) {
      disconnect();
      Write(be + "/state", online == "0" || !to_initwait ? "6" : "2");
      Say("closed");
    } else if (page == nullptr && online == "0" && *be_state == "5") {
      Write(be + "/state", "6");
      Say("closed");
    } else if (page == nullptr && online == "1" && fe_state == "1" && *be_state == "6") {
      Write(be + "/state", "2");
      Say("initwait");
    }
    pollfd pfd{xenevtchn_fd(ev), POLLIN, 0};
    if (::poll(&pfd, 1, 5) > 0) {
      int p = xenevtchn_pending(ev);
      if (p >= 0) xenevtchn_unmask(ev, uint32_t(p));
    }
  }
  disconnect();
  xenevtchn_close(ev);
  xengnttab_close(gt);
  xs_close(g_xs);
  return 0;
}
