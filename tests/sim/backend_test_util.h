// Shared pieces of the backend sim tests: a fixture with a toolstack, the
// real daemon (scripted engine) and guests, and the scripted engine's echo
// format (tag C4 | size | rc 0 | be32 sequence | command body).
#pragma once

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <memory>

#include "common/bytes.h"
#include "guest/frontend.h"
#include "harness/daemon_process.h"
#include "host_tpm_swtpm.h"
#include "simhost/sim_host_fixture.h"
#include "toolstack/toolstack.h"

namespace vtpm::sim {

// A TPM 1.2 style command: tag C1, consistent paramSize, `ordinal`, `body_len` filler bytes.
inline Bytes TestCommand(uint32_t ordinal, size_t body_len = 4, uint8_t fill = 0x5A) {
  Bytes b;
  AppendBe16(b, 0x00C1);
  AppendBe32(b, uint32_t(10 + body_len));
  AppendBe32(b, ordinal);
  b.insert(b.end(), body_len, fill);
  return b;
}

// Sequence number in a scripted-engine response (0 if not one).
inline uint32_t EchoSequence(const Bytes& rsp) { return rsp.size() >= 14 ? LoadBe32(rsp.data() + 10) : 0; }
inline uint32_t ReturnCode(const Bytes& rsp) { return rsp.size() >= 10 ? LoadBe32(rsp.data() + 6) : 0xFFFFFFFF; }

class BackendSimTest : public SimHostTest {
 protected:
  void StartDaemon(const std::string& extra_config = "", const std::string& daemon_config = "") {
    DaemonOptions o;
    o.extra_config = extra_config;
    o.daemon_config = daemon_config;
    o.data_path = data_path_;
    // Started again: the same unit, whose fd store systemd keeps.
    if (daemon_) o.fd_store = daemon_->shared_fd_store();
    daemon_ = std::make_unique<DaemonProcess>(host(), o);
    Status st = daemon_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  // Starts swtpm as the host TPM 2.0 (state in <host dir>/host-tpm) once,
  // then the daemon with the libtpms engine on it; call again to restart
  // the daemon on the same host TPM.
  void StartLibtpmsDaemon(const std::string& extra_config = "", const std::string& daemon_config = "") {
    StartHostTpm();
    if (HasFatalFailure()) return;
    StartDaemon(LibtpmsConfig() + extra_config, daemon_config);
  }
  // swtpm as the host TPM 2.0 (state in <host dir>/host-tpm), once.
  void StartHostTpm() {
    if (swtpm_) return;
    std::string dir = host().dir() + "/host-tpm";
    ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
    auto swtpm = vtpm::testing::Swtpm::Start(dir);
    ASSERT_TRUE(swtpm.ok()) << swtpm.status().ToString();
    swtpm_ = std::make_unique<vtpm::testing::Swtpm>(std::move(swtpm).value());
  }
  // The [engine] and [host_tpm] sections of the libtpms engine on swtpm_.
  std::string LibtpmsConfig() const {
    return "[engine]\nkind = \"libtpms\"\nworker_path = \"" VTPM_WORKER_BIN "\"\n[host_tpm]\ntcti = \"" +
           swtpm_->tcti() + "\"\n";
  }
  void SetUp() override {
    SimHostTest::SetUp();
    if (HasFatalFailure()) return;
    ts_ = std::make_unique<Toolstack>(xs(), host().sim_dir());
    ASSERT_TRUE(ts_->InitHost().ok());
  }
  void TearDown() override {
    if (daemon_ && HasFailure()) std::cerr << "---- daemon log ----\n" << daemon_->Log();
    guests_.clear();
    daemon_.reset();
    ts_.reset();
    SimHostTest::TearDown();
  }
  // xl create with one vtpm, asserting libxl's wait for InitWait succeeded.
  void CreateDomain(uint32_t domid, const std::string& uuid, uint32_t devid = 0) {
    auto r = ts_->Create(domid, {{devid, uuid}});
    ASSERT_TRUE(r.status.ok()) << r.status.ToString() << "\n" << r.Report();
  }
  GuestFrontend& Guest(uint32_t domid, uint32_t devid = 0, FrontendMode mode = FrontendMode::kLinux) {
    FrontendOptions o;
    o.domid = domid;
    o.devid = devid;
    o.mode = mode;
    auto g = GuestFrontend::Create(o);
    EXPECT_TRUE(g.ok()) << g.status().ToString();
    guests_.push_back(std::move(g).value());
    return *guests_.back();
  }
  std::optional<std::string> Node(const std::string& path) {
    auto r = xs().Read(path);
    return r.ok() ? *r : std::nullopt;
  }
  Toolstack& ts() { return *ts_; }
  DaemonProcess& daemon() { return *daemon_; }

  std::unique_ptr<Toolstack> ts_;
  std::unique_ptr<vtpm::testing::Swtpm> swtpm_;
  std::unique_ptr<DaemonProcess> daemon_;
  // [xen] data_path of the daemons StartDaemon() starts ("": DaemonOptions').
  std::string data_path_;
  std::vector<std::unique_ptr<GuestFrontend>> guests_;
};

}  // namespace vtpm::sim
