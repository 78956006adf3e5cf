// libvtpm_xen_sim.so preloaded into a program linked against the real
// libxengnttab/libxenevtchn (vtpm-sim-xen-peer, standing in for the daemon),
// against the guest side of the simulated hypervisor in this process.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstring>
#include <set>
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
  ASSERT_EQ(Ask(first, "bind 5 " + std::to_string(*port)).rfind("ok ", 0), 0u);
  LineProcess second = StartPeer();
  EXPECT_EQ(Ask(second, "bind 5 " + std::to_string(*port)), "err " + std::to_string(EINVAL));

  first.child().Kill();  // SIGKILL: no unbind, like a crashed daemon
  auto rebound = Ask(second, "bind 5 " + std::to_string(*port));
  ASSERT_EQ(rebound.rfind("ok ", 0), 0u) << rebound;
  ASSERT_TRUE(guest.Notify(*port).ok());
  EXPECT_EQ(Ask(second, "wait 2000"), "event " + rebound.substr(3));
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
