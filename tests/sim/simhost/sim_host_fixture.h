// SimHostTest: gtest fixture for sim-tier tests. Each test gets a fresh
// SimHost (real xenstored under its shim + VTPM_SIM_DIR, both exported to the
// environment), the dom0 nodes a Xen host has (/local/domain/0/{name,domid}),
// and an XsClient on it. host().SpawnWithShim(opts) starts a program (e.g. the
// daemon) against the shimmed libxengnttab/libxenevtchn.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>

#include "simhost/sim_host.h"
#include "simhost/xs_client.h"

namespace vtpm::sim {

class SimHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto h = SimHost::Start();
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    host_ = std::move(h).value();
    auto c = XsClient::Open();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    xs_.emplace(std::move(c).value());
    ASSERT_TRUE(xs_->Write("/local/domain/0/name", "Domain-0").ok());
    ASSERT_TRUE(xs_->Write("/local/domain/0/domid", "0").ok());
  }
  void TearDown() override {
    xs_.reset();
    host_.reset();
  }

  SimHost& host() { return *host_; }
  XsClient& xs() { return *xs_; }

 private:
  std::unique_ptr<SimHost> host_;
  std::optional<XsClient> xs_;
};

}  // namespace vtpm::sim
