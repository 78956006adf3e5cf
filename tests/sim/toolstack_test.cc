// The toolstack simulator against the real xenstored: node sets (values and
// permissions) of protocol doc §2.2/§2.5 and libxl's waits, and the simulated
// hypervisor's domain table through save, restore, reboot and localhost
// migrate (doc/xen-save-restore-signals.md §1, §2, §6.4), with a small in-test
// backend that answers (or ignores) the state handshake and notes what it
// sees at chosen moments.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

#include "common/uuid.h"
#include "simhost/sim_host_fixture.h"
#include "toolstack/toolstack.h"
#include "xen_sim.h"

namespace vtpm::sim {
namespace {

constexpr uint32_t kDom = 3;
const std::string kUuid = "0d4a6e8f-3c21-4b7a-9f10-5e6d7c8b9a01";

// Polls one backend dir and plays the backend's part of the handshake.
class FakeBackend {
 public:
  struct Behaviour {
    std::string on_state1 = "2";     // what to write when be state is 1 ("" = nothing)
    bool close_on_removal = true;    // write 6 when online=0 / state=5
    bool close_only_when_fe_gone = false;
    // Called once when state 1 is first seen (before answering) and once when
    // the removal is first noticed; what they return is kept (notes()).
    std::function<std::string(XsClient&)> note_at_state1 = nullptr;
    std::function<std::string(XsClient&)> note_at_removal = nullptr;
  };
  struct Notes {
    std::string at_state1 = "<not called>";
    std::string at_removal = "<not called>";
  };
  FakeBackend(uint32_t domid, uint32_t devid, Behaviour b) : be_(Toolstack::BackendPath(domid, devid)),
      fe_(Toolstack::FrontendPath(domid, devid)), b_(std::move(b)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~FakeBackend() {
    stop_ = true;
    thread_.join();
  }
  // Frontend state node as seen when the removal (online=0) was first noticed.
  std::string fe_state_at_removal() {
    std::lock_guard<std::mutex> l(mu_);
    return fe_at_removal_;
  }
  Notes notes() {
    std::lock_guard<std::mutex> l(mu_);
    return notes_;
  }

 private:
  void Run() {
    auto xs = XsClient::Open();
    if (!xs.ok()) return;
    bool noticed = false, seen_state1 = false;
    while (!stop_) {
      auto state = xs->Read(be_ + "/state");
      auto online = xs->Read(be_ + "/online");
      if (state.ok() && state->has_value()) {
        if (**state == "1" && !seen_state1) {
          seen_state1 = true;
          std::string note = b_.note_at_state1 ? b_.note_at_state1(*xs) : "";
          std::lock_guard<std::mutex> l(mu_);
          notes_.at_state1 = note;
        }
        if (**state == "1" && !b_.on_state1.empty()) (void)xs->Write(be_ + "/state", b_.on_state1);
        bool removal = online.ok() && online->value_or("") == "0";
        if (removal && !noticed) {
          noticed = true;
          auto fe = xs->Read(fe_ + "/state");
          std::string note = b_.note_at_removal ? b_.note_at_removal(*xs) : "";
          std::lock_guard<std::mutex> l(mu_);
          fe_at_removal_ = fe.ok() ? fe->value_or("<absent>") : "<error>";
          notes_.at_removal = note;
        }
        bool fe_gone = !xs->Exists(fe_);
        if (removal && **state == "5" && b_.close_on_removal && (!b_.close_only_when_fe_gone || fe_gone))
          (void)xs->Write(be_ + "/state", "6");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  std::string be_, fe_;
  Behaviour b_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::string fe_at_removal_;
  Notes notes_;
  std::thread thread_;
};

class ToolstackTest : public SimHostTest {
 protected:
  // The hypervisor's view of a domain: "<handle> running|shutdown N[ dying]"
  // or "<absent>".
  std::string Hv(uint32_t domid) {
    auto d = ReadSimDomain(host().sim_dir(), domid);
    if (!d.ok()) return "<" + d.status().ToString() + ">";
    if (!d->has_value()) return "<absent>";
    const SimDomain& v = **d;
    return v.handle + (v.shutdown ? " shutdown " + std::to_string(*v.shutdown) : " running") +
           (v.dying ? " dying" : "");
  }
  std::string Name(uint32_t domid, XsClient& c) {
    auto n = c.Read("/local/domain/" + std::to_string(domid) + "/name");
    return n.ok() ? n->value_or("<absent>") : "<error>";
  }
  std::string Name(uint32_t domid) { return Name(domid, xs()); }
  std::vector<std::string> Tree(const std::string& root) {
    auto t = DumpTree(xs(), root);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? *t : std::vector<std::string>{};
  }
  Toolstack Ts(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return Toolstack(xs(), host().sim_dir(), timeout);
  }
};

TEST_F(ToolstackTest, CreateWritesLibxlNodeSetWithPermissions) {
  FakeBackend backend(kDom, 0, {});
  Toolstack ts = Ts();
  ToolstackResult r = ts.Create(kDom, {VtpmSpec{std::nullopt, kUuid}});
  ASSERT_TRUE(r.status.ok()) << r.Report();
  EXPECT_EQ(r.devid, 0u);
  ASSERT_EQ(r.waits.size(), 1u);
  EXPECT_EQ(r.waits[0].path, "/local/domain/0/backend/vtpm/3/0/state");
  EXPECT_EQ(r.waits[0].wanted, "2");
  EXPECT_TRUE(r.waits[0].satisfied);
  EXPECT_LT(r.waits[0].elapsed.count(), 5000);

  const std::string be = "/local/domain/0/backend/vtpm/3/0";
  const std::string fe = "/local/domain/3/device/vtpm/0";
  const std::string lx = "/libxl/3/device/vtpm/0";
  EXPECT_EQ(Tree(be), (std::vector<std::string>{
                          be + " = \"\" [n0,r3]",
                          be + "/frontend = \"" + fe + "\" [n0,r3]",
                          be + "/frontend-id = \"3\" [n0,r3]",
                          be + "/handle = \"0\" [n0,r3]",
                          be + "/online = \"1\" [n0,r3]",
                          be + "/resume = \"False\" [n0,r3]",
                          be + "/state = \"2\" [n0,r3]",  // written by the backend
                          be + "/uuid = \"" + kUuid + "\" [n0,r3]",
                      }));
  EXPECT_EQ(Tree(fe), (std::vector<std::string>{
                          fe + " = \"\" [n3,r0]",
                          fe + "/backend = \"" + be + "\" [n3,r0]",
                          fe + "/backend-id = \"0\" [n3,r0]",
                          fe + "/handle = \"0\" [n3,r0]",
                          fe + "/state = \"1\" [n3,r0]",
                      }));
  EXPECT_EQ(Tree(lx), (std::vector<std::string>{
                          lx + " = \"\" [n0]",
                          lx + "/backend = \"" + be + "\" [n0]",
                          lx + "/frontend = \"" + fe + "\" [n0]",
                          lx + "/frontend-id = \"3\" [n0]",
                          lx + "/handle = \"0\" [n0]",
                          lx + "/online = \"1\" [n0]",
                          lx + "/resume = \"False\" [n0]",
                          lx + "/state = \"1\" [n0]",
                          lx + "/uuid = \"" + kUuid + "\" [n0]",
                      }));
  // The domain itself: introduced, with its home readable by the guest.
  EXPECT_TRUE(xs().IsDomainIntroduced(kDom));
  EXPECT_EQ(*xs().GetPerms("/local/domain/3"), (std::vector<std::string>{"n0", "r3"}));
  EXPECT_EQ(xs().Read("/local/domain/3/domid")->value_or(""), "3");
}

TEST_F(ToolstackTest, CreateMakesTheHypervisorDomainBeforeItsNodes) {
  // What the hypervisor says once the domain's nodes appear.
  std::string hv_at_nodes;
  std::thread watcher([&] {
    auto c = XsClient::Open();
    if (!c.ok()) return;
    auto seen = c->WaitFor("/local/domain/3/domid", [](const auto& v) { return v.has_value(); },
                           std::chrono::seconds(10));
    hv_at_nodes = seen.ok() ? Hv(kDom) : "<no nodes>";
  });
  FakeBackend be(kDom, 0, {});
  Toolstack ts = Ts();
  ToolstackResult r = ts.Create(kDom, {VtpmSpec{std::nullopt, kUuid}}, "web");
  watcher.join();
  ASSERT_TRUE(r.status.ok()) << r.Report();
  const std::string h = r.handle;
  ASSERT_TRUE(Uuid::Parse(h).ok()) << h;
  EXPECT_EQ(hv_at_nodes, h + " running");
  EXPECT_EQ(Hv(kDom), h + " running");
  // /vm/<uuid> is the handle's.
  EXPECT_EQ(xs().Read("/local/domain/3/vm")->value_or(""), "/vm/" + h);
  EXPECT_EQ(xs().Read("/vm/" + h + "/uuid")->value_or(""), h);
  EXPECT_EQ(xs().Read("/vm/" + h + "/name")->value_or(""), "web");

  // A config without uuid= gets a fresh random handle each time.
  ToolstackResult other = ts.Create(4, {});
  ASSERT_TRUE(other.status.ok()) << other.Report();
  EXPECT_NE(other.handle, h);
  EXPECT_EQ(Hv(4), other.handle + " running");
  // uuid= pins it.
  const std::string pinned = "5e6d7c8b-9a01-4d4a-8e8f-3c219f100d4a";
  ToolstackResult five = ts.Create(5, {}, "", pinned);
  ASSERT_TRUE(five.status.ok()) << five.Report();
  EXPECT_EQ(five.handle, pinned);
  EXPECT_EQ(Hv(5), pinned + " running");
  EXPECT_TRUE(xs().Exists("/vm/" + pinned));

  // The hypervisor refuses an existing domid before any node is written.
  auto before = Tree("/local/domain/3");
  EXPECT_EQ(ts.Create(kDom, {}, "again").status.code(), Code::kAlreadyExists);
  EXPECT_EQ(Tree("/local/domain/3"), before);
  EXPECT_EQ(Hv(kDom), h + " running");
  EXPECT_EQ(ts.Create(6, {}, "", "not-a-uuid").status.code(), Code::kInvalidArgument);
  EXPECT_EQ(Hv(6), "<absent>");
  EXPECT_FALSE(xs().Exists("/local/domain/6"));
}

TEST_F(ToolstackTest, ShutdownRecordsTheFirstCodeInTheHypervisorOnly) {
  Toolstack ts = Ts();
  ToolstackResult r = ts.Create(kDom, {});
  ASSERT_TRUE(r.status.ok()) << r.Report();
  auto dom = Tree("/local/domain/3");
  auto vm = Tree("/vm");
  ASSERT_TRUE(ts.Shutdown(kDom, kShutdownPoweroff).ok());
  EXPECT_EQ(Hv(kDom), r.handle + " shutdown 0");
  // domain_shutdown(): the first code stays until a resume.
  ASSERT_TRUE(ts.Shutdown(kDom, kShutdownCrash).ok());
  EXPECT_EQ(Hv(kDom), r.handle + " shutdown 0");
  // xenstore never records the reason.
  EXPECT_EQ(Tree("/local/domain/3"), dom);
  EXPECT_EQ(Tree("/vm"), vm);
  EXPECT_EQ(ts.Shutdown(kDom, 6).code(), Code::kInvalidArgument);
  EXPECT_EQ(ts.Shutdown(44, kShutdownReboot).code(), Code::kNotFound);
  Toolstack no_hv(xs());
  EXPECT_EQ(no_hv.Shutdown(kDom, kShutdownReboot).code(), Code::kFailedPrecondition);
  EXPECT_EQ(no_hv.Save(kDom).status.code(), Code::kFailedPrecondition);
  EXPECT_TRUE(xs().Exists("/local/domain/3"));
}

TEST_F(ToolstackTest, SaveRecordsTheConfigSuspendsThenTearsDownLikeDestroy) {
  const std::string kUuid2 = "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f";
  // Each backend notes the hypervisor's view when libxl removes its device.
  FakeBackend be0(kDom, 0, {.note_at_removal = [&](XsClient&) { return Hv(kDom); }});
  FakeBackend be1(kDom, 1, {.note_at_removal = [&](XsClient&) { return Hv(kDom); }});
  Toolstack ts = Ts();
  ToolstackResult c = ts.Create(kDom, {VtpmSpec{0u, kUuid}, VtpmSpec{1u, kUuid2}}, "web");
  ASSERT_TRUE(c.status.ok()) << c.Report();
  ToolstackResult r = ts.Save(kDom);
  ASSERT_TRUE(r.status.ok()) << r.Report();
  ASSERT_TRUE(r.saved.has_value());
  EXPECT_EQ(*r.saved, (SavedDomain{c.handle, "web", {VtpmSpec{0u, kUuid}, VtpmSpec{1u, kUuid2}}}));
  // libxl's forced removal while the domain still exists, suspended.
  EXPECT_EQ(be0.notes().at_removal, c.handle + " shutdown 2");
  EXPECT_EQ(be1.notes().at_removal, c.handle + " shutdown 2");
  EXPECT_EQ(be0.fe_state_at_removal(), "<absent>");
  ASSERT_EQ(r.waits.size(), 2u) << r.Report();
  for (const WaitRecord& w : r.waits) {
    EXPECT_TRUE(w.forced);
    EXPECT_TRUE(w.satisfied);
    EXPECT_EQ(w.wanted, "6");
  }
  // Then the nodes, then xc_domain_destroy, then XS_RELEASE.
  EXPECT_EQ(Hv(kDom), "<absent>");
  for (const std::string& p : std::vector<std::string>{"/local/domain/3", "/libxl/3", "/vm/" + c.handle,
                                                       "/local/domain/0/backend"})
    EXPECT_FALSE(xs().Exists(p)) << p;
  EXPECT_FALSE(xs().IsDomainIntroduced(kDom));
}

TEST_F(ToolstackTest, RestoreKeepsHandleNameAndVtpmsAndAFreshCreateDoesNot) {
  FakeBackend old_be(kDom, 0, {});
  FakeBackend new_be(8, 0, {});
  FakeBackend fresh_be(9, 0, {});
  Toolstack ts = Ts();
  ToolstackResult c = ts.Create(kDom, {VtpmSpec{std::nullopt, kUuid}}, "web");
  ASSERT_TRUE(c.status.ok()) << c.Report();
  ToolstackResult s = ts.Save(kDom);
  ASSERT_TRUE(s.status.ok() && s.saved) << s.Report();

  ToolstackResult r = ts.Restore(8, *s.saved);
  ASSERT_TRUE(r.status.ok()) << r.Report();
  EXPECT_EQ(r.handle, c.handle);
  EXPECT_EQ(Hv(8), c.handle + " running");
  EXPECT_EQ(Name(8), "web");
  EXPECT_EQ(xs().Read("/local/domain/8/vm")->value_or(""), "/vm/" + c.handle);
  EXPECT_EQ(xs().Read("/vm/" + c.handle + "/name")->value_or(""), "web");
  // The device exactly as a create writes it: same devid and uuid.
  const std::string be = Toolstack::BackendPath(8, 0);
  EXPECT_EQ(xs().Read(be + "/uuid")->value_or(""), kUuid);
  EXPECT_EQ(xs().Read(be + "/handle")->value_or(""), "0");
  EXPECT_EQ(xs().Read(be + "/resume")->value_or(""), "False");
  EXPECT_EQ(xs().Read(be + "/frontend-id")->value_or(""), "8");
  EXPECT_EQ(xs().Read(Toolstack::FrontendPath(8, 0) + "/state")->value_or(""), "1");
  EXPECT_TRUE(xs().IsDomainIntroduced(8));
  // Restoring onto an existing domid fails in the hypervisor.
  EXPECT_EQ(ts.Restore(8, *s.saved).status.code(), Code::kAlreadyExists);

  // xl create of the same config (no uuid=) after a destroy: a new handle.
  ASSERT_TRUE(ts.Destroy(8).status.ok());
  ToolstackResult fresh = ts.Create(9, {VtpmSpec{0u, kUuid}}, "web");
  ASSERT_TRUE(fresh.status.ok()) << fresh.Report();
  EXPECT_NE(fresh.handle, c.handle);
  EXPECT_EQ(Hv(9), fresh.handle + " running");
}

TEST_F(ToolstackTest, RebootShutsDownWithCode1ThenRecreatesTheSameDomainOnANewDomid) {
  FakeBackend old_be(kDom, 0, {.note_at_removal = [&](XsClient&) { return Hv(kDom); }});
  FakeBackend new_be(8, 0, {.note_at_state1 = [&](XsClient&) { return Hv(kDom) + " / " + Hv(8); }});
  Toolstack ts = Ts();
  ToolstackResult c = ts.Create(kDom, {VtpmSpec{std::nullopt, kUuid}}, "web");
  ASSERT_TRUE(c.status.ok()) << c.Report();
  ToolstackResult r = ts.Reboot(kDom, 8);
  ASSERT_TRUE(r.status.ok()) << r.Report();
  EXPECT_EQ(old_be.notes().at_removal, c.handle + " shutdown 1");
  // The old domain is gone before the new one's device is added.
  EXPECT_EQ(new_be.notes().at_state1, "<absent> / " + c.handle + " running");
  ASSERT_EQ(r.waits.size(), 2u) << r.Report();
  EXPECT_EQ(r.waits[0].path, "/local/domain/0/backend/vtpm/3/0/state");
  EXPECT_EQ(r.waits[0].wanted, "6");
  EXPECT_EQ(r.waits[1].path, "/local/domain/0/backend/vtpm/8/0/state");
  EXPECT_EQ(r.waits[1].wanted, "2");
  EXPECT_EQ(r.handle, c.handle);
  EXPECT_EQ(r.uuid, kUuid);
  EXPECT_EQ(Hv(kDom), "<absent>");
  EXPECT_EQ(Hv(8), c.handle + " running");
  EXPECT_EQ(Name(8), "web");
  EXPECT_FALSE(xs().Exists("/local/domain/3"));
  EXPECT_EQ(xs().Read(Toolstack::BackendPath(8, 0) + "/uuid")->value_or(""), kUuid);
}

TEST_F(ToolstackTest, MigrateLocalRunsBothDomainsAtOnceThenDestroysTheSender) {
  // The receiver's device is added while the sender exists, suspended.
  FakeBackend receiver(8, 0, {.note_at_state1 = [&](XsClient& c) {
                                return Hv(kDom) + " " + Name(kDom, c) + " / " + Hv(8) + " " + Name(8, c);
                              }});
  // The sender's device is removed once the receiver has taken over.
  FakeBackend sender(kDom, 0, {.note_at_removal = [&](XsClient& c) {
                                 return Hv(kDom) + " " + Name(kDom, c) + " / " + Hv(8) + " " + Name(8, c);
                               }});
  Toolstack ts = Ts();
  ToolstackResult c = ts.Create(kDom, {VtpmSpec{std::nullopt, kUuid}}, "web");
  ASSERT_TRUE(c.status.ok()) << c.Report();
  const std::string h = c.handle;
  ToolstackResult r = ts.MigrateLocal(kDom, 8);
  ASSERT_TRUE(r.status.ok()) << r.Report();
  EXPECT_EQ(receiver.notes().at_state1, h + " shutdown 2 web / " + h + " running web--incoming");
  EXPECT_EQ(sender.notes().at_removal, h + " shutdown 2 web--migratedaway / " + h + " running web");
  ASSERT_EQ(r.waits.size(), 2u) << r.Report();
  EXPECT_EQ(r.waits[0].path, "/local/domain/0/backend/vtpm/8/0/state");
  EXPECT_EQ(r.waits[1].path, "/local/domain/0/backend/vtpm/3/0/state");
  EXPECT_EQ(r.handle, h);
  EXPECT_EQ(Hv(kDom), "<absent>");
  EXPECT_EQ(Hv(8), h + " running");
  EXPECT_EQ(Name(8), "web");
  EXPECT_EQ(xs().Read(Toolstack::BackendPath(8, 0) + "/uuid")->value_or(""), kUuid);
  EXPECT_FALSE(xs().Exists("/local/domain/3"));
  EXPECT_FALSE(xs().IsDomainIntroduced(kDom));
  EXPECT_TRUE(xs().IsDomainIntroduced(8));
  // Both domains shared /vm/<handle>; the sender's destroy removed it, as
  // libxl's devices_destroy_cb does.
  EXPECT_EQ(xs().Read("/local/domain/8/vm")->value_or(""), "/vm/" + h);
  EXPECT_FALSE(xs().Exists("/vm/" + h));
}

TEST_F(ToolstackTest, MigrateLocalFailureDestroysTheReceiverAndResumesTheSender) {
  FakeBackend sender(kDom, 0, {});
  FakeBackend receiver(8, 0, {.on_state1 = ""});  // never reaches InitWait
  Toolstack ts = Ts(std::chrono::milliseconds(300));
  ToolstackResult c = ts.Create(kDom, {VtpmSpec{std::nullopt, kUuid}}, "web");
  ASSERT_TRUE(c.status.ok()) << c.Report();
  ToolstackResult r = ts.MigrateLocal(kDom, 8);
  EXPECT_EQ(r.status.code(), Code::kTimeout) << r.Report();
  ASSERT_EQ(r.waits.size(), 2u) << r.Report();
  EXPECT_EQ(r.waits[0].path, "/local/domain/0/backend/vtpm/8/0/state");
  EXPECT_FALSE(r.waits[0].satisfied);
  EXPECT_EQ(r.waits[1].wanted, "6");  // the receiver's forced destroy
  // The receiver is gone; the sender runs on, as it was.
  EXPECT_EQ(Hv(8), "<absent>");
  EXPECT_FALSE(xs().Exists("/local/domain/8"));
  EXPECT_FALSE(xs().Exists("/local/domain/0/backend/vtpm/8"));
  EXPECT_FALSE(xs().IsDomainIntroduced(8));
  EXPECT_EQ(Hv(kDom), c.handle + " running");
  EXPECT_EQ(Name(kDom), "web");
  EXPECT_TRUE(xs().IsDomainIntroduced(kDom));
  const std::string be = Toolstack::BackendPath(kDom, 0);
  EXPECT_EQ(xs().Read(be + "/online")->value_or(""), "1");
  EXPECT_EQ(xs().Read(be + "/state")->value_or(""), "2");
  EXPECT_EQ(xs().Read(be + "/uuid")->value_or(""), kUuid);
}

TEST_F(ToolstackTest, AttachWaitsForExactlyInitWait) {
  FakeBackend be(kDom, 0, {.on_state1 = "4"});  // skips 2: libxl keeps waiting
  Toolstack ts = Ts(std::chrono::milliseconds(300));
  ToolstackResult r = ts.Attach(kDom, {});
  EXPECT_EQ(r.status.code(), Code::kTimeout) << r.Report();
  ASSERT_EQ(r.waits.size(), 1u);
  EXPECT_FALSE(r.waits[0].satisfied);
  EXPECT_EQ(r.waits[0].last_value, "4");
  EXPECT_GE(r.waits[0].elapsed.count(), 300);
  EXPECT_NE(r.Report().find("TIMEOUT"), std::string::npos);
}

TEST_F(ToolstackTest, AttachPicksNextDevidAndRefusesExisting) {
  FakeBackend b0(kDom, 0, {});
  FakeBackend b1(kDom, 1, {});
  Toolstack ts = Ts();
  ASSERT_TRUE(ts.Attach(kDom, {}).status.ok());
  ToolstackResult second = ts.Attach(kDom, {});
  ASSERT_TRUE(second.status.ok()) << second.Report();
  EXPECT_EQ(second.devid, 1u);
  EXPECT_EQ(ts.Attach(kDom, VtpmSpec{0u, ""}).status.code(), Code::kAlreadyExists);
}

TEST_F(ToolstackTest, DetachRemovesEverythingAfterBackendCloses) {
  FakeBackend be(kDom, 0, {});
  Toolstack ts = Ts();
  ASSERT_TRUE(ts.Create(kDom, {VtpmSpec{std::nullopt, kUuid}}).status.ok());
  auto dom_before = Tree("/local/domain/3");
  ToolstackResult r = ts.Detach(kDom, 0);
  ASSERT_TRUE(r.status.ok()) << r.Report();
  ASSERT_EQ(r.waits.size(), 1u);
  EXPECT_EQ(r.waits[0].wanted, "6");
  EXPECT_FALSE(r.waits[0].forced);
  EXPECT_TRUE(r.waits[0].satisfied);
  // Non-forced: the frontend still existed when the backend saw online=0.
  EXPECT_EQ(be.fe_state_at_removal(), "1");
  // libxl__xs_path_cleanup also removes the parents left empty.
  EXPECT_FALSE(xs().Exists("/local/domain/0/backend"));
  EXPECT_FALSE(xs().Exists("/local/domain/3/device"));
  EXPECT_FALSE(xs().Exists("/libxl/3/device"));
  EXPECT_TRUE(xs().Exists("/local/domain/0/name"));
  EXPECT_TRUE(xs().Exists("/libxl/3/type"));
  auto dom_after = Tree("/local/domain/3");
  // Only the device subtree went away.
  std::vector<std::string> expected;
  for (auto& l : dom_before)
    if (l.rfind("/local/domain/3/device", 0) != 0) expected.push_back(l);
  EXPECT_EQ(dom_after, expected);
}

TEST_F(ToolstackTest, DetachTimeoutRetriesForcedThenFails) {
  FakeBackend be(kDom, 0, {.close_on_removal = false});
  Toolstack ts = Ts(std::chrono::milliseconds(200));
  ASSERT_TRUE(ts.Attach(kDom, VtpmSpec{0u, kUuid}).status.ok());
  ToolstackResult r = ts.Detach(kDom, 0);
  EXPECT_EQ(r.status.code(), Code::kTimeout);
  ASSERT_EQ(r.waits.size(), 2u) << r.Report();
  EXPECT_FALSE(r.waits[0].forced);
  EXPECT_TRUE(r.waits[1].forced);
  EXPECT_EQ(r.waits[1].last_value, "5");
  // The forced round removed the frontend; the backend and libxl dirs stay.
  EXPECT_FALSE(xs().Exists(Toolstack::FrontendPath(kDom, 0)));
  EXPECT_EQ(xs().Read(Toolstack::BackendPath(kDom, 0) + "/online")->value_or(""), "0");
  EXPECT_EQ(xs().Read(Toolstack::BackendPath(kDom, 0) + "/state")->value_or(""), "5");
  EXPECT_TRUE(xs().Exists(Toolstack::LibxlPath(kDom, 0)));
}

TEST_F(ToolstackTest, DetachForcedRetrySucceedsWhenBackendAnswersFrontendRemoval) {
  FakeBackend be(kDom, 0, {.close_only_when_fe_gone = true});
  Toolstack ts = Ts(std::chrono::milliseconds(200));
  ASSERT_TRUE(ts.Attach(kDom, VtpmSpec{0u, kUuid}).status.ok());
  ToolstackResult r = ts.Detach(kDom, 0);
  ASSERT_TRUE(r.status.ok()) << r.Report();
  ASSERT_EQ(r.waits.size(), 2u);
  EXPECT_FALSE(r.waits[0].satisfied);
  EXPECT_TRUE(r.waits[1].satisfied);
  EXPECT_FALSE(xs().Exists(Toolstack::BackendPath(kDom, 0)));
  EXPECT_FALSE(xs().Exists(Toolstack::LibxlPath(kDom, 0)));
}

TEST_F(ToolstackTest, DestroyIsForcedAndRemovesTheDomain) {
  FakeBackend be(kDom, 0, {.note_at_removal = [&](XsClient&) { return Hv(kDom); }});
  Toolstack ts = Ts();
  ToolstackResult c = ts.Create(kDom, {VtpmSpec{std::nullopt, kUuid}});
  ASSERT_TRUE(c.status.ok()) << c.Report();
  std::string vm = xs().Read("/local/domain/3/vm")->value_or("");
  ASSERT_FALSE(vm.empty());
  auto page = GrantedPage::Grant(host().sim_dir(), kDom);
  ASSERT_TRUE(page.ok());
  ToolstackResult r = ts.Destroy(kDom);
  ASSERT_TRUE(r.status.ok()) << r.Report();
  ASSERT_EQ(r.waits.size(), 1u);
  EXPECT_TRUE(r.waits[0].forced);
  EXPECT_TRUE(r.waits[0].satisfied);
  // FORCE_ON: the frontend dir vanished in the same commit as online=0.
  EXPECT_EQ(be.fe_state_at_removal(), "<absent>");
  for (const std::string& p : std::vector<std::string>{"/local/domain/3", "/libxl/3", vm, "/local/domain/0/backend"})
    EXPECT_FALSE(xs().Exists(p)) << p;
  EXPECT_FALSE(xs().IsDomainIntroduced(kDom));
  EXPECT_EQ(::access((host().sim_dir() + "/grants/3/" + std::to_string(page->ref())).c_str(), F_OK), -1);
  // xc_domain_destroy comes after the device teardown: a running domain
  // (xl destroy of a domain that did not shut down) until then.
  EXPECT_EQ(be.notes().at_removal, c.handle + " running");
  EXPECT_EQ(Hv(kDom), "<absent>");
}

TEST_F(ToolstackTest, DestroyOnlyLogsABackendTimeout) {
  FakeBackend be(kDom, 0, {.close_on_removal = false});
  Toolstack ts = Ts(std::chrono::milliseconds(200));
  ASSERT_TRUE(ts.Create(kDom, {VtpmSpec{0u, kUuid}}).status.ok());
  ToolstackResult r = ts.Destroy(kDom);
  EXPECT_TRUE(r.status.ok()) << r.Report();
  ASSERT_EQ(r.waits.size(), 1u);
  EXPECT_FALSE(r.waits[0].satisfied);
  EXPECT_FALSE(xs().Exists("/local/domain/0/backend/vtpm/3"));
  EXPECT_FALSE(xs().Exists("/local/domain/3"));
}

}  // namespace
}  // namespace vtpm::sim
