// The real Debian xenstored, run under libvtpm_xenstored_sim.so, serving the
// real libxenstore: reads/writes, permissions, transactions with EAGAIN,
// watches and domain introduction.
#include <gtest/gtest.h>

#include <thread>
#include <string>

extern "C" {
#include <xenstore.h>
}

#include "simhost/sim_host_fixture.h"

namespace vtpm::sim {
namespace {

using XenstoredSimTest = SimHostTest;

TEST_F(XenstoredSimTest, RealDaemonServesRealLibrary) {
  // The process behind the socket is the Debian binary itself.
  char exe[256] = {};
  ssize_t n = ::readlink(("/proc/" + std::to_string(host().xenstored().pid()) + "/exe").c_str(), exe,
                         sizeof(exe) - 1);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(exe), "/usr/lib/xen-4.17/bin/xenstored");

  ASSERT_TRUE(xs().Write("/test/a", "hello").ok());
  auto v = xs().Read("/test/a");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->value_or(""), "hello");
  auto missing = xs().Read("/test/missing");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());

  ASSERT_TRUE(xs().SetPerms("/test/a", {"n7", "r0"}).ok());
  auto perms = xs().GetPerms("/test/a");
  ASSERT_TRUE(perms.ok());
  EXPECT_EQ(*perms, (std::vector<std::string>{"n7", "r0"}));
}

TEST_F(XenstoredSimTest, ConflictingTransactionGetsEagain) {
  ASSERT_TRUE(xs().Write("/t/x", "0").ok());
  xs_handle* h = xs().raw();
  xs_transaction_t t1 = xs_transaction_start(h);
  xs_transaction_t t2 = xs_transaction_start(h);
  ASSERT_NE(t1, XBT_NULL);
  ASSERT_NE(t2, XBT_NULL);
  unsigned len = 0;
  std::free(xs_read(h, t1, "/t/x", &len));
  std::free(xs_read(h, t2, "/t/x", &len));
  ASSERT_TRUE(xs_write(h, t1, "/t/x", "1", 1));
  ASSERT_TRUE(xs_write(h, t2, "/t/x", "2", 1));
  EXPECT_TRUE(xs_transaction_end(h, t1, false));
  EXPECT_FALSE(xs_transaction_end(h, t2, false));
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_EQ(xs().Read("/t/x")->value_or(""), "1");
}

TEST_F(XenstoredSimTest, WatchFiresAndIntroduceReleaseWork) {
  auto w = xs().WaitFor("/w/node", [](const auto& v) { return v == std::optional<std::string>("go"); },
                        std::chrono::milliseconds(50));
  EXPECT_EQ(w.status().code(), Code::kTimeout);
  auto writer = XsClient::Open();
  ASSERT_TRUE(writer.ok());
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    (void)writer->Write("/w/node", "go");
  });
  auto w2 = xs().WaitFor("/w/node", [](const auto& v) { return v == std::optional<std::string>("go"); },
                         std::chrono::seconds(5));
  t.join();
  ASSERT_TRUE(w2.ok()) << w2.status().ToString();

  ASSERT_TRUE(xs().IntroduceDomain(7).ok());
  EXPECT_TRUE(xs_is_domain_introduced(xs().raw(), 7));
  ASSERT_TRUE(xs().ReleaseDomain(7).ok());
  EXPECT_FALSE(xs_is_domain_introduced(xs().raw(), 7));
}

}  // namespace
}  // namespace vtpm::sim
