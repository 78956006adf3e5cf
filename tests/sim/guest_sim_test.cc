// The guest simulator (Linux xen-tpmfront and mini-os tpmfront modes) against
// vtpm-sim-fake-tpmback, a backend on the real Xen libraries running under the
// gnttab/evtchn shim, with nodes created by the toolstack simulator.
#include <gtest/gtest.h>

#include <iostream>

#include "guest/frontend.h"
#include "simhost/line_process.h"
#include "simhost/sim_host_fixture.h"
#include "toolstack/toolstack.h"

namespace vtpm::sim {
namespace {

constexpr uint32_t kDom = 4;

class GuestSimTest : public SimHostTest {
 protected:
  // Starts the fake backend and creates the domain with one vtpm.
  void StartDomain(std::vector<std::string> backend_args = {}) {
    SpawnOptions o;
    o.argv = {SimHost::ToolPath("vtpm-sim-fake-tpmback"), std::to_string(kDom), "0"};
    o.argv.insert(o.argv.end(), backend_args.begin(), backend_args.end());
    auto p = LineProcess::Start(o, [this](const SpawnOptions& so) { return host().SpawnWithShim(so); });
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    backend_.emplace(std::move(p).value());
    ts_.emplace(xs(), host().sim_dir(), std::chrono::seconds(10));
    ToolstackResult r = ts_->Create(kDom, {VtpmSpec{}});
    ASSERT_TRUE(r.status.ok()) << r.Report();
    ExpectBackendSays("initwait");
  }
  std::unique_ptr<GuestFrontend> MakeGuest(FrontendMode mode) {
    FrontendOptions fo;
    fo.domid = kDom;
    fo.mode = mode;
    fo.first_command_duration = std::chrono::seconds(5);
    fo.connect_timeout = std::chrono::seconds(5);
    auto g = GuestFrontend::Create(fo);
    EXPECT_TRUE(g.ok()) << g.status().ToString();
    return g.ok() ? std::move(g).value() : nullptr;
  }
  // Reads backend lines until one starts with `prefix`; returns it.
  std::string ExpectBackendSays(const std::string& prefix) {
    for (;;) {
      auto l = backend_->ReadLine(std::chrono::seconds(5));
      if (!l.ok()) {
        ADD_FAILURE() << "backend never said '" << prefix << "': " << l.status().ToString();
        return "";
      }
      if (l->rfind(prefix, 0) == 0) return *l;
    }
  }
  std::string Fe(const std::string& node) {
    return xs().Read(Toolstack::FrontendPath(kDom, 0) + "/" + node)->value_or("<absent>");
  }
  std::string Be(const std::string& node) {
    return xs().Read(Toolstack::BackendPath(kDom, 0) + "/" + node)->value_or("<absent>");
  }

  std::optional<LineProcess> backend_;
  std::optional<Toolstack> ts_;
};

Bytes Cmd(uint32_t ordinal, Bytes body = {}) {
  Bytes b;
  AppendBe16(b, 0x00C1);
  AppendBe32(b, uint32_t(10 + body.size()));
  AppendBe32(b, ordinal);
  AppendBytes(b, body);
  return b;
}

TEST_F(GuestSimTest, LinuxFrontendHandshakeAndFirstCommand) {
  StartDomain();
  auto g = MakeGuest(FrontendMode::kLinux);
  ASSERT_NE(g, nullptr);
  ASSERT_TRUE(g->Connect().ok());
  EXPECT_EQ(Fe("state"), "4");
  EXPECT_EQ(Be("state"), "4");
  EXPECT_EQ(Fe("feature-protocol-v2"), "1");
  EXPECT_EQ(Fe("ring-ref"), std::to_string(g->ring_ref()));
  EXPECT_EQ(Fe("event-channel"), std::to_string(g->port()));
  ExpectBackendSays("mapped " + std::to_string(g->ring_ref()));
  // The probe's GetCapability was answered (echo backend: header + body).
  ASSERT_TRUE(g->first_response().ok()) << g->first_response().status().ToString();
  Bytes expected = {0x00, 0xC4, 0, 0, 0, 22, 0, 0, 0, 0};
  Bytes cmd = Tpm12GetTimeoutsCommand();
  expected.insert(expected.end(), cmd.begin() + 10, cmd.end());
  EXPECT_EQ(*g->first_response(), expected);
  ExpectBackendSays("request 22");

  auto r = g->Transmit(Cmd(0x46, {1, 2, 3}), std::chrono::seconds(5));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size(), 13u);
  EXPECT_EQ(LoadBe32(r->data() + 6), 0u);

  // Round trips through ring + event channels (both directions notified).
  auto t0 = std::chrono::steady_clock::now();
  for (uint8_t i = 0; i < 200; ++i) {
    auto rt = g->Transmit(Cmd(0x46, {i}), std::chrono::seconds(5));
    ASSERT_TRUE(rt.ok()) << rt.status().ToString();
    ASSERT_EQ(rt->back(), i);
  }
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "200 round trips via the simulated ring: " << us / 200 << " us each\n";
}

TEST_F(GuestSimTest, ResponseLengthMustEqualParamSize) {
  StartDomain({"--bad-length"});
  auto g = MakeGuest(FrontendMode::kLinux);
  ASSERT_NE(g, nullptr);
  ASSERT_TRUE(g->Connect().ok());
  EXPECT_EQ(g->first_response().status().code(), Code::kCorruption);
  EXPECT_EQ(g->Transmit(Cmd(0x46), std::chrono::seconds(5)).status().code(), Code::kCorruption);
}

TEST_F(GuestSimTest, SlowBackendIsCancelledAfterTheDuration) {
  StartDomain({"--delay-ms", "400"});
  auto g = MakeGuest(FrontendMode::kLinux);
  ASSERT_NE(g, nullptr);
  ASSERT_TRUE(g->Connect().ok());
  auto r = g->Transmit(Cmd(0x46), std::chrono::milliseconds(100));
  EXPECT_EQ(r.status().code(), Code::kTimeout);
  EXPECT_EQ(g->state(), kCancel);
  ExpectBackendSays("cancel");
  EXPECT_TRUE(g->WaitIdle(std::chrono::seconds(2)));
  EXPECT_EQ(g->state(), kIdle);
  // The backend answered IDLE to the cancel; the next command works.
  EXPECT_TRUE(g->Transmit(Cmd(0x46), std::chrono::seconds(5)).ok());
}

TEST_F(GuestSimTest, MissingBackendFeatureIsFatal) {
  StartDomain({"--no-feature"});
  auto g = MakeGuest(FrontendMode::kLinux);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->Connect().code(), Code::kFailedPrecondition);
  EXPECT_EQ(xs().Read("/local/domain/4/error/device/vtpm/0/error")->value_or(""), "22 vTPM protocol 2 required");
  // xenbus_dev_fatal switched to Closing(5); the backend answering 5 then
  // makes Linux close (6).
  std::string fe_state = Fe("state");
  EXPECT_TRUE(fe_state == "5" || fe_state == "6") << fe_state;
}

TEST_F(GuestSimTest, LinuxFrontendClosesForGoodOnDetach) {
  StartDomain();
  auto g = MakeGuest(FrontendMode::kLinux);
  ASSERT_NE(g, nullptr);
  ASSERT_TRUE(g->Connect().ok());
  ToolstackResult r = ts_->Detach(kDom, 0);
  ASSERT_TRUE(r.status.ok()) << r.Report();
  ASSERT_EQ(r.waits.size(), 1u);  // no forced retry: the frontend closed in time
  EXPECT_TRUE(g->device_gone());
  EXPECT_EQ(g->Transmit(Cmd(0x46), std::chrono::seconds(1)).status().code(), Code::kUnavailable);
}

TEST_F(GuestSimTest, LinuxShutdownHandshake) {
  StartDomain();
  auto g = MakeGuest(FrontendMode::kLinux);
  ASSERT_NE(g, nullptr);
  ASSERT_TRUE(g->Connect().ok());
  ShutdownResult s = g->Shutdown();
  EXPECT_TRUE(s.backend_answered);
  EXPECT_LT(s.elapsed.count(), 5000);
  EXPECT_EQ(Fe("state"), "6");
  ExpectBackendSays("closing");
  ExpectBackendSays("closed");
}

TEST_F(GuestSimTest, MiniOsCloseAndReopenWithNewRing) {
  StartDomain();
  auto g = MakeGuest(FrontendMode::kMiniOs);
  ASSERT_NE(g, nullptr);
  ASSERT_TRUE(g->Connect().ok());
  EXPECT_EQ(Fe("state"), "4");
  EXPECT_TRUE(g->Transmit(Cmd(0x46), std::chrono::seconds(5)).ok());
  uint32_t old_ref = g->ring_ref();
  ASSERT_TRUE(g->Close().ok());
  EXPECT_EQ(Fe("state"), "1");
  EXPECT_EQ(Fe("ring-ref"), "<absent>");
  EXPECT_EQ(Fe("event-channel"), "<absent>");
  ASSERT_TRUE(g->Reopen().ok());
  EXPECT_NE(g->ring_ref(), old_ref);
  ExpectBackendSays("mapped " + std::to_string(g->ring_ref()));
  EXPECT_TRUE(g->Transmit(Cmd(0x46), std::chrono::seconds(5)).ok());
}

TEST_F(GuestSimTest, RawHeaderAccess) {
  StartDomain();
  auto g = MakeGuest(FrontendMode::kLinux);
  ASSERT_NE(g, nullptr);
  ASSERT_TRUE(g->Connect().ok());
  // nr_extra_pages pushes the payload past the page: the backend must refuse.
  Bytes cmd = Cmd(0x46);
  g->WritePayload(kRingHeader + 4 * 200, cmd);
  g->WriteHeader(uint32_t(cmd.size()) + 4000, kSubmit, 0, 200);
  ASSERT_TRUE(g->Notify().ok());
  ExpectBackendSays("bad-request");
  ASSERT_TRUE(g->WaitIdle(std::chrono::seconds(2)));
  EXPECT_EQ(g->state(), kFinish);
  EXPECT_EQ(LoadBe32(g->page() + kRingHeader + 6), 0x15u);  // TPM_SIZE
}

Bytes TimeoutsAnswer(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  Bytes r = {0x00, 0xC4, 0, 0, 0, 30, 0, 0, 0, 0, 0, 0, 0, 16};
  for (uint32_t v : {a, b, c, d}) AppendBe32(r, v);
  return r;
}

TEST(ParseTisTimeoutsTest, MicrosecondsMillisecondsAndMalformed) {
  EXPECT_EQ(ParseTisTimeouts(TimeoutsAnswer(750000, 2000000, 750000, 750000)),
            (std::array<uint32_t, 4>{750000, 2000000, 750000, 750000}));
  // Below 1000: the TPM answered in ms (Linux multiplies by 1000).
  EXPECT_EQ(ParseTisTimeouts(TimeoutsAnswer(750, 2000, 0, 750)), (std::array<uint32_t, 4>{750000, 2000000, 0, 750000}));
  Bytes err = TimeoutsAnswer(1, 2, 3, 4);
  err[9] = 0x26;  // TPM_INVALID_POSTINIT
  EXPECT_FALSE(ParseTisTimeouts(err).has_value());
  Bytes short_answer = TimeoutsAnswer(1, 2, 3, 4);
  short_answer.pop_back();
  EXPECT_FALSE(ParseTisTimeouts(short_answer).has_value());
}

}  // namespace
}  // namespace vtpm::sim
