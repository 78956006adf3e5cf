// libvtpm_xen_sim.so preloaded into a program linked against the real
// libxengnttab/libxenevtchn (vtpm-sim-xen-peer, standing in for the daemon),
// against the guest side of the simulated hypervisor in this process; and
// into one linked against the real libxenctrl and the daemon's domctl seam
// (vtpm-sim-xc-peer), against the domain table this process writes.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "simhost/line_process.h"
#include "simhost/sim_host_fixture.h"
#include "xen_sim.h"

namespace vtpm::sim {
namespace {

constexpr uint32_t kGuest = 5;

class XenShimTest : public SimHostTest {
 protected:
  LineProcess StartPeer() {
    SpawnOptions o;
    o.argv = {SimHost::ToolPath("vtpm-sim-xen-peer")};
    auto p = LineProcess::Start(o, [this](const SpawnOptions& so) { return host().SpawnWithShim(so); });
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return std::move(p).value();
  }
  EvtchnEndpoint GuestEvtchn() {
    auto ep = EvtchnEndpoint::Open(host().sim_dir(), kGuest);
    EXPECT_TRUE(ep.ok()) << ep.status().ToString();
    auto e = std::move(ep).value();
    e.set_auto_mask(false);
    return e;
  }
  // Waits up to `ms` for a notification on the guest endpoint.
  static bool GuestNotified(EvtchnEndpoint& ep, int ms) {
    pollfd pfd{ep.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, ms) <= 0) return false;
    return ep.Pending(false).ok();
  }
};

std::string Ask(LineProcess& p, const std::string& cmd) {
  auto r = p.Ask(cmd);
  return r.ok() ? *r : "<" + r.status().ToString() + ">";
}

TEST_F(XenShimTest, GrantPageIsSharedBothWays) {
  auto page = GrantedPage::Grant(host().sim_dir(), kGuest);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  std::memcpy(page->data() + 8, "from-guest", 10);
  LineProcess peer = StartPeer();
  ASSERT_EQ(Ask(peer, "map 5 " + std::to_string(page->ref())), "ok");
  EXPECT_EQ(Ask(peer, "read 8 10"), "ok from-guest");
  ASSERT_EQ(Ask(peer, "write 100 from-dom0"), "ok");
  EXPECT_EQ(std::string(reinterpret_cast<char*>(page->data()) + 100, 9), "from-dom0");

  // A mapping outlives the grant (the guest revoked or died).
  page->Revoke();
  std::memcpy(page->data() + 8, "after-rev!", 10);
  EXPECT_EQ(Ask(peer, "read 8 10"), "ok after-rev!");
  EXPECT_EQ(Ask(peer, "unmap"), "ok");
  // ... but the revoked ref cannot be mapped again.
  EXPECT_EQ(Ask(peer, "map 5 " + std::to_string(page->ref())), "err " + std::to_string(EINVAL));
}

// Closing the gntdev fd leaves its mappings in place (a sandboxed worker maps
// its guest's page, then closes the handle so it can map nothing else).
TEST_F(XenShimTest, MappingOutlivesTheClosedGrantTableHandle) {
  auto page = GrantedPage::Grant(host().sim_dir(), kGuest);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  std::memcpy(page->data() + 8, "from-guest", 10);
  LineProcess peer = StartPeer();
  ASSERT_EQ(Ask(peer, "map 5 " + std::to_string(page->ref())), "ok");
  ASSERT_EQ(Ask(peer, "close-gnttab"), "ok");
  EXPECT_EQ(Ask(peer, "read 8 10"), "ok from-guest");
  ASSERT_EQ(Ask(peer, "write 100 from-dom0"), "ok");
  EXPECT_EQ(std::string(reinterpret_cast<char*>(page->data()) + 100, 9), "from-dom0");
  // Still the guest's page, not a copy taken at close.
  std::memcpy(page->data() + 8, "after-clo!", 10);
  EXPECT_EQ(Ask(peer, "read 8 10"), "ok after-clo!");
}

TEST_F(XenShimTest, MappingAnUngrantedRefFailsWithEinval) {
  LineProcess peer = StartPeer();
  EXPECT_EQ(Ask(peer, "map 5 8"), "err " + std::to_string(EINVAL));
  auto page = GrantedPage::Grant(host().sim_dir(), kGuest);
  ASSERT_TRUE(page.ok());
  // Right ref, wrong domain.
  EXPECT_EQ(Ask(peer, "map 6 " + std::to_string(page->ref())), "err " + std::to_string(EINVAL));
  EXPECT_EQ(Ask(peer, "map 5 " + std::to_string(page->ref())), "ok");
}

TEST_F(XenShimTest, NotifyBeforeBindIsLostAfterBindArrives) {
  EvtchnEndpoint guest = GuestEvtchn();
  auto port = guest.AllocUnbound(0);
  ASSERT_TRUE(port.ok());
  ASSERT_TRUE(guest.Notify(*port).ok());  // nobody bound: dropped
  LineProcess peer = StartPeer();
  auto bound = Ask(peer, "bind 5 " + std::to_string(*port));
  ASSERT_EQ(bound.rfind("ok ", 0), 0u) << bound;
  std::string local = bound.substr(3);
  EXPECT_EQ(Ask(peer, "wait 200"), "timeout");

  ASSERT_TRUE(guest.Notify(*port).ok());
  EXPECT_EQ(Ask(peer, "wait 2000"), "event " + local);
  // Masked until unmask: a second notify coalesces and shows up on unmask.
  ASSERT_TRUE(guest.Notify(*port).ok());
  ASSERT_TRUE(guest.Notify(*port).ok());
  EXPECT_EQ(Ask(peer, "wait 200").rfind("event", 0) == 0 ? "event" : "none", "none");
  EXPECT_EQ(Ask(peer, "unmask " + local), "ok");
  EXPECT_EQ(Ask(peer, "wait 2000"), "event " + local);
  EXPECT_EQ(Ask(peer, "unmask " + local), "ok");
  EXPECT_EQ(Ask(peer, "wait 200"), "timeout");

  // dom0 -> guest.
  EXPECT_FALSE(GuestNotified(guest, 0));
  EXPECT_EQ(Ask(peer, "notify " + local), "ok");
  EXPECT_TRUE(GuestNotified(guest, 2000));
  // After unbind, the guest's notifications are lost again.
  EXPECT_EQ(Ask(peer, "unbind " + local), "ok");
  EXPECT_EQ(Ask(peer, "notify " + local), "err " + std::to_string(ENOTCONN));
}

TEST_F(XenShimTest, EachPendingPortIsDeliveredWithoutUnmaskingTheOthers) {
  EvtchnEndpoint guest = GuestEvtchn();
  auto p1 = guest.AllocUnbound(0);
  auto p2 = guest.AllocUnbound(0);
  ASSERT_TRUE(p1.ok() && p2.ok());
  LineProcess peer = StartPeer();
  std::string l1 = Ask(peer, "bind 5 " + std::to_string(*p1)).substr(3);
  std::string l2 = Ask(peer, "bind 5 " + std::to_string(*p2)).substr(3);
  ASSERT_TRUE(guest.Notify(*p1).ok());
  ASSERT_TRUE(guest.Notify(*p2).ok());
  std::string first = Ask(peer, "wait 2000");
  std::string second = Ask(peer, "wait 2000");  // no unmask in between
  EXPECT_TRUE((first == "event " + l1 && second == "event " + l2) ||
              (first == "event " + l2 && second == "event " + l1))
      << first << " / " << second;
  EXPECT_EQ(Ask(peer, "wait 100"), "timeout");
}

// A handle with ports in several words of the pending bits hands out the
// pending unmasked ones round robin from the last delivered, skips masked
// ones until they are unmasked, and says when none is left.
TEST_F(XenShimTest, PendingPortsComeRoundRobinAndMaskedOnesWait) {
  constexpr int kPorts = 150;  // local ports in three 64-bit words
  EvtchnEndpoint guest = GuestEvtchn();
  auto opened = EvtchnEndpoint::Open(host().sim_dir(), 0);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EvtchnEndpoint dom0 = std::move(opened).value();  // masks what it delivers, as the daemon's handle
  std::vector<uint32_t> guest_port, local;
  for (int i = 0; i < kPorts; ++i) {
    auto g = guest.AllocUnbound(0);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    auto l = dom0.BindInterdomain(kGuest, *g);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    guest_port.push_back(*g);
    local.push_back(*l);
  }
  ASSERT_GT(*std::max_element(local.begin(), local.end()), 128u);
  auto pending = [&]() -> std::optional<uint32_t> {
    auto p = dom0.Pending(false);
    if (p.ok()) return *p;
    EXPECT_EQ(p.status().code(), Code::kBusy) << p.status().ToString();
    return std::nullopt;
  };
  const std::vector<int> notified = {140, 3, 70, 100};
  for (int i : notified) ASSERT_TRUE(guest.Notify(guest_port[size_t(i)]).ok());
  std::vector<uint32_t> want;
  for (int i : notified) want.push_back(local[size_t(i)]);
  std::sort(want.begin(), want.end());
  for (uint32_t w : want) EXPECT_EQ(pending(), std::optional<uint32_t>(w));
  EXPECT_EQ(pending(), std::nullopt);

  // Delivered ports stay masked: their next events wait for Unmask, and the
  // round robin resumes after the last port delivered.
  const uint32_t low = local[3], mid = local[70];
  ASSERT_TRUE(guest.Notify(guest_port[3]).ok());
  ASSERT_TRUE(guest.Notify(guest_port[70]).ok());
  EXPECT_EQ(pending(), std::nullopt);
  dom0.Unmask(low);
  dom0.Unmask(mid);
  EXPECT_EQ(pending(), std::optional<uint32_t>(std::min(low, mid)));  // wrapped round past the highest
  EXPECT_EQ(pending(), std::optional<uint32_t>(std::max(low, mid)));
  EXPECT_EQ(pending(), std::nullopt);
}

// Xen keeps one pending bit per port: a receiver that does not read loses no
// port however many notifications arrive, and each pending port is delivered
// once. (A datagram per notification would overflow the socket queue.)
TEST_F(XenShimTest, NotificationsIntoAnUnreadHandleCoalescePerPortAndLoseNone) {
  constexpr int kPorts = 24;  // more than a unix datagram queue holds
  EvtchnEndpoint guest = GuestEvtchn();
  LineProcess peer = StartPeer();
  std::vector<uint32_t> ports;
  std::set<std::string> want;
  for (int i = 0; i < kPorts; ++i) {
    auto port = guest.AllocUnbound(0);
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    ports.push_back(*port);
    auto bound = Ask(peer, "bind 5 " + std::to_string(*port));
    ASSERT_EQ(bound.rfind("ok ", 0), 0u) << bound;
    want.insert("event " + bound.substr(3));
  }
  for (int round = 0; round < 5; ++round)
    for (uint32_t port : ports) ASSERT_TRUE(guest.Notify(port).ok());
  std::set<std::string> got;
  for (int i = 0; i < kPorts; ++i) {
    std::string ev = Ask(peer, "wait 2000");  // no unmask: each port once
    EXPECT_TRUE(got.insert(ev).second) << "delivered twice: " << ev;
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(Ask(peer, "wait 100"), "timeout");

  // dom0 -> guest, the guest not reading: one pending event, then none.
  std::string local = want.begin()->substr(6);
  for (int i = 0; i < 3 * kPorts; ++i) ASSERT_EQ(Ask(peer, "notify " + local), "ok");
  EXPECT_TRUE(GuestNotified(guest, 2000));
  EXPECT_FALSE(GuestNotified(guest, 100));
}

TEST_F(XenShimTest, BindingReleasedByProcessDeathCanBeRebound) {
  EvtchnEndpoint guest = GuestEvtchn();
  auto port = guest.AllocUnbound(0);
  ASSERT_TRUE(port.ok());
  LineProcess first = StartPeer();
  auto bound = Ask(first, "bind 5 " + std::to_string(*port));
  ASSERT_EQ(bound.rfind("ok ", 0), 0u) << bound;
  // The guest's notify has resolved (and remembers) the first binder.
  ASSERT_TRUE(guest.Notify(*port).ok());
  EXPECT_EQ(Ask(first, "wait 2000"), "event " + bound.substr(3));
  LineProcess second = StartPeer();
  EXPECT_EQ(Ask(second, "bind 5 " + std::to_string(*port)), "err " + std::to_string(EINVAL));

  first.child().Kill();  // SIGKILL: no unbind, like a crashed daemon
  auto rebound = Ask(second, "bind 5 " + std::to_string(*port));
  ASSERT_EQ(rebound.rfind("ok ", 0), 0u) << rebound;
  // The rebind rewrote the port record: the guest's next notify goes to the
  // second binder, not to what it remembered.
  ASSERT_TRUE(guest.Notify(*port).ok());
  EXPECT_EQ(Ask(second, "wait 2000"), "event " + rebound.substr(3));
  EXPECT_EQ(Ask(second, "notify " + rebound.substr(3)), "ok");
  EXPECT_TRUE(GuestNotified(guest, 2000));
}

TEST_F(XenShimTest, OpenFailsLikeAHostWithoutXenWhenNoSimDir) {
  SpawnOptions o;
  o.argv = {SimHost::ToolPath("vtpm-sim-xen-peer")};
  o.env = {"VTPM_SIM_DIR="};
  auto p = LineProcess::Start(o, [this](const SpawnOptions& so) { return host().SpawnWithShim(so); });
  ASSERT_TRUE(p.ok());
  auto ws = p->child().WaitFor(std::chrono::seconds(10));
  ASSERT_TRUE(ws.has_value());
  EXPECT_TRUE(WIFEXITED(*ws) && WEXITSTATUS(*ws) == 1) << DescribeWaitStatus(*ws);
}

// --- The domain table and the shim's libxenctrl (vtpm-sim-xc-peer) ---

constexpr const char* kHandleA = "0d4a6e8f-3c21-4b7a-9f10-5e6d7c8b9a01";
constexpr const char* kHandleB = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
constexpr const char* kNil = "00000000-0000-0000-0000-000000000000";
// xen/include/public/domctl.h
constexpr uint32_t kDominfDying = 1u << 0;
constexpr uint32_t kDominfShutdown = 1u << 2;
constexpr uint32_t kDominfRunning = 1u << 5;
constexpr uint32_t kShutdownShift = 16;
constexpr uint32_t kCodeInvalid = ~0u << kShutdownShift;  // SHUTDOWN_CODE_INVALID

// How the peer prints one xc_domaininfo_t: "DOMID:FLAGS(hex):HANDLE(hex)".
std::string Info(uint32_t domid, uint32_t flags, std::string handle) {
  std::erase(handle, '-');
  char hex[16];
  std::snprintf(hex, sizeof(hex), "%x", flags);
  return std::to_string(domid) + ":" + hex + ":" + handle;
}

class XenDomainsTest : public XenShimTest {
 protected:
  LineProcess StartXcPeer(std::vector<std::string> env = {}) {
    SpawnOptions o;
    o.argv = {SimHost::ToolPath("vtpm-sim-xc-peer")};
    o.env = std::move(env);
    auto p = LineProcess::Start(o, [this](const SpawnOptions& so) { return host().SpawnWithShim(so); });
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return std::move(p).value();
  }
  void Put(uint32_t domid, const std::string& handle, std::optional<uint8_t> shutdown = {}, bool dying = false) {
    Status st = WriteSimDomain(host().sim_dir(), SimDomain{domid, handle, shutdown, dying});
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  std::string DomainFile(uint32_t domid) {
    std::ifstream in(host().sim_dir() + "/domains/" + std::to_string(domid));
    std::stringstream ss;
    ss << in.rdbuf();
    return in ? ss.str() : "<absent>";
  }
};

TEST_F(XenDomainsTest, DomainFilesFollowTheContract) {
  EXPECT_EQ(DomainFile(0), "handle=" + std::string(kNil) + "\n");  // dom0 from boot
  // Stored lower case; shutdown and dying only when set.
  Put(3, "0D4A6E8F-3C21-4B7A-9F10-5E6D7C8B9A01");
  EXPECT_EQ(DomainFile(3), "handle=" + std::string(kHandleA) + "\n");
  Put(4, kHandleB, kShutdownSuspend, true);
  EXPECT_EQ(DomainFile(4), "handle=" + std::string(kHandleB) + "\nshutdown=2\ndying=1\n");
  auto four = ReadSimDomain(host().sim_dir(), 4);
  ASSERT_TRUE(four.ok() && four->has_value());
  EXPECT_EQ(**four, (SimDomain{4, kHandleB, kShutdownSuspend, true}));

  const std::string dir = host().sim_dir();
  EXPECT_EQ(WriteSimDomain(dir, {5, "not-a-uuid", {}, false}).code(), Code::kInvalidArgument);
  EXPECT_EQ(WriteSimDomain(dir, {5, kHandleA, uint8_t{6}, false}).code(), Code::kInvalidArgument);
  EXPECT_EQ(WriteSimDomain(dir, {kFirstReservedDomid, kHandleA, {}, false}).code(), Code::kInvalidArgument);
  EXPECT_EQ(DomainFile(5), "<absent>");
  auto none = ReadSimDomain(dir, 5);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(UpdateSimDomain(dir, 5, [](SimDomain&) {}).code(), Code::kNotFound);

  ASSERT_TRUE(UpdateSimDomain(dir, 4, [](SimDomain& d) { d.shutdown.reset(); d.dying = false; }).ok());
  EXPECT_EQ(DomainFile(4), "handle=" + std::string(kHandleB) + "\n");
  ASSERT_TRUE(RemoveSimDomain(dir, 4).ok());
  EXPECT_EQ(DomainFile(4), "<absent>");
  EXPECT_TRUE(RemoveSimDomain(dir, 4).ok());  // already gone

  { std::ofstream(dir + "/domains/6") << "handle=" << kHandleA << "\nshutdown=9\n"; }
  EXPECT_EQ(ReadSimDomain(dir, 6).status().code(), Code::kCorruption);
  { std::ofstream(dir + "/domains/6") << "shutdown=1\n"; }
  EXPECT_EQ(ReadSimDomain(dir, 6).status().code(), Code::kCorruption);
}

TEST_F(XenDomainsTest, ListingSkipsMissingDomidsAndStopsAtMax) {
  Put(3, kHandleA);
  Put(7, kHandleB);
  Put(12, kHandleA);
  // Temporary names left by a writer are no domains.
  { std::ofstream(host().sim_dir() + "/domains/8.tmp") << "handle=" << kHandleA << "\n"; }
  auto ids = [&](uint32_t first, size_t max) {
    std::vector<uint32_t> out;
    auto l = ListSimDomains(host().sim_dir(), first, max);
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    if (l.ok())
      for (auto& d : *l) out.push_back(d.domid);
    return out;
  };
  EXPECT_EQ(ids(0, 100), (std::vector<uint32_t>{0, 3, 7, 12}));
  EXPECT_EQ(ids(4, 1), (std::vector<uint32_t>{7}));
  EXPECT_EQ(ids(7, 2), (std::vector<uint32_t>{7, 12}));
  EXPECT_EQ(ids(13, 5), (std::vector<uint32_t>{}));
  EXPECT_EQ(ids(0, 0), (std::vector<uint32_t>{}));
}

TEST_F(XenDomainsTest, GetinfolistReportsTheTableThroughTheRealLibxenctrl) {
  Put(3, kHandleA);
  Put(5, kHandleB, kShutdownSuspend);
  Put(9, kHandleA, kShutdownPoweroff, /*dying=*/true);
  LineProcess peer = StartXcPeer();
  ASSERT_EQ(Ask(peer, "open"), "ok");
  const std::string dom0 = Info(0, kDominfRunning | kCodeInvalid, kNil);
  const std::string dom3 = Info(3, kDominfRunning | kCodeInvalid, kHandleA);
  const std::string dom5 = Info(5, kDominfShutdown | (2u << kShutdownShift), kHandleB);
  const std::string dom9 = Info(9, kDominfDying | kDominfShutdown, kHandleA);
  EXPECT_EQ(Ask(peer, "list 0 1024"), "ok 4 " + dom0 + " " + dom3 + " " + dom5 + " " + dom9);
  // A missing domid answers with the next domain, or none at the end.
  EXPECT_EQ(Ask(peer, "list 4 1"), "ok 1 " + dom5);
  EXPECT_EQ(Ask(peer, "list 1 2"), "ok 2 " + dom3 + " " + dom5);
  EXPECT_EQ(Ask(peer, "list 10 1"), "ok 0");
  EXPECT_EQ(Ask(peer, "list 3 0"), "ok 0");

  // The table is read at each call: a resume, a destroy are seen at once.
  ASSERT_TRUE(UpdateSimDomain(host().sim_dir(), 5, [](SimDomain& d) { d.shutdown.reset(); }).ok());
  EXPECT_EQ(Ask(peer, "list 5 1"), "ok 1 " + Info(5, kDominfRunning | kCodeInvalid, kHandleB));
  ASSERT_TRUE(RemoveSimDomain(host().sim_dir(), 5).ok());
  EXPECT_EQ(Ask(peer, "list 5 1"), "ok 1 " + dom9);
  EXPECT_EQ(Ask(peer, "close"), "ok");
}

TEST_F(XenDomainsTest, TheDaemonsDomctlSeamSeesHandleReasonAndDying) {
  Put(4, kHandleB, kShutdownReboot);
  Put(6, kHandleA, kShutdownCrash, /*dying=*/true);
  Put(8, kHandleA);
  LineProcess peer = StartXcPeer();
  ASSERT_EQ(Ask(peer, "open"), "ok");
  std::string a = kHandleA, b = kHandleB;
  std::erase(a, '-');
  std::erase(b, '-');
  // vtpm_xc_get_domain: "ok DYING SHUTDOWN REASON HANDLE"; never the next domain.
  EXPECT_EQ(Ask(peer, "domain 4"), "ok 0 1 1 " + b);
  EXPECT_EQ(Ask(peer, "domain 5"), "none");
  EXPECT_EQ(Ask(peer, "domain 6"), "ok 1 1 3 " + a);
  EXPECT_EQ(Ask(peer, "domain 8"), "ok 0 0 255 " + a);  // running: code 255
  EXPECT_EQ(Ask(peer, "domain 9"), "none");
}

TEST_F(XenDomainsTest, InterfaceOpenFailsWithEnoentWithoutSimDir) {
  LineProcess peer = StartXcPeer({"VTPM_SIM_DIR="});
  EXPECT_EQ(Ask(peer, "open"), "err " + std::to_string(ENOENT));
}

TEST_F(XenShimTest, BindRejectsPortsNotOfferedToDom0) {
  EvtchnEndpoint guest = GuestEvtchn();
  auto for_dom3 = guest.AllocUnbound(3);
  ASSERT_TRUE(for_dom3.ok());
  LineProcess peer = StartPeer();
  EXPECT_EQ(Ask(peer, "bind 5 " + std::to_string(*for_dom3)), "err " + std::to_string(EINVAL));
  EXPECT_EQ(Ask(peer, "bind 5 999"), "err " + std::to_string(EINVAL));
}

}  // namespace
}  // namespace vtpm::sim
