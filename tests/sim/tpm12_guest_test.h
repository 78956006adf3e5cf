// A sim-tier fixture for tests that drive the real daemon with the libtpms
// engine (host TPM = swtpm) from simulated guests, with TPM 1.2 helpers that
// assert each command's response code.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <chrono>

#include "backend_test_util.h"
#include "tpm/tpm12.h"

namespace vtpm::sim {

class Tpm12GuestTest : public BackendSimTest {
 protected:
  void SetUp() override {
    BackendSimTest::SetUp();
    if (HasFatalFailure()) return;
    StartLibtpmsDaemon(DaemonConfig());
  }
  // More TOML for the daemon's config file.
  virtual std::string DaemonConfig() const { return ""; }
  // Sends `cmd` from `g` and expects `want_rc`; the response, empty on failure.
  Bytes Run(GuestFrontend& g, const Bytes& cmd, uint32_t want_rc = tpm12::kSuccess) {
    auto r = g.Transmit(cmd, std::chrono::seconds(60));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    EXPECT_EQ(tpm12::ResponseCode(*r), want_rc);
    return *r;
  }
  tpm12::PcrValue Pcr(GuestFrontend& g, uint32_t i) {
    auto v = tpm12::PcrFromResponse(Run(g, tpm12::PcrRead(i)));
    EXPECT_TRUE(v.has_value());
    return v.value_or(tpm12::PcrValue{});
  }
  // The EK's public key (TPM_ReadPubek; the TPM must have no owner).
  Bytes Ek(GuestFrontend& g) {
    std::array<uint8_t, 20> nonce{};
    auto ek = tpm12::PubkeyFromEkResponse(Run(g, tpm12::ReadPubek(nonce)));
    EXPECT_TRUE(ek.has_value());
    return ek.value_or(Bytes{});
  }
};

}  // namespace vtpm::sim
