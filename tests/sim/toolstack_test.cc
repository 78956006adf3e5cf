// The toolstack simulator against the real xenstored: node sets (values and
// permissions) of protocol doc §2.2/§2.5 and libxl's waits, with a small
// in-test backend that answers (or ignores) the state handshake.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

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

 private:
  void Run() {
    auto xs = XsClient::Open();
    if (!xs.ok()) return;
    bool noticed = false;
    while (!stop_) {
      auto state = xs->Read(be_ + "/state");
      auto online = xs->Read(be_ + "/online");
      if (state.ok() && state->has_value()) {
        if (**state == "1" && !b_.on_state1.empty()) (void)xs->Write(be_ + "/state", b_.on_state1);
        bool removal = online.ok() && online->value_or("") == "0";
        if (removal && !noticed) {
          noticed = true;
          auto fe = xs->Read(fe_ + "/state");
          std::lock_guard<std::mutex> l(mu_);
          fe_at_removal_ = fe.ok() ? fe->value_or("<absent>") : "<error>";
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
  std::thread thread_;
};

class ToolstackTest : public SimHostTest {
 protected:
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
  FakeBackend be(kDom, 0, {});
  Toolstack ts = Ts();
  ASSERT_TRUE(ts.Create(kDom, {VtpmSpec{std::nullopt, kUuid}}).status.ok());
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
