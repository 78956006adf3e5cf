#include "daemon/config.h"

#include <gtest/gtest.h>

namespace vtpm {
namespace {

TEST(Config, EmptyFileGivesDefaults) {
  auto c = ParseConfig("", "t.conf");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->tcti, "device:/dev/tpmrm0");
  EXPECT_EQ(c->srk_handle, 0x81000001u);
  EXPECT_TRUE(c->auto_create);
  EXPECT_EQ(c->ControlSocket(), "/run/vtpmmgrd/control.sock");
}

TEST(Config, ReadsEveryKey) {
  auto c = ParseConfig(R"([daemon]
state_dir = "/srv/vtpm"
runtime_dir = "/run/x"
log_level = "debug"
auto_create = false
command_deadline_ms = 20000
[xen]
backend_domid = 3
[host_tpm]
tcti = "swtpm:host=127.0.0.1,port=2321"
srk_handle = 0x81000002
pcr_policy = [0, 7]
[engine]
kind = "scripted"
scripted_slow_uuids = ["0d3f6a1c-8b2e-4c55-9a7e-1f2e3d4c5b6a"]
)",
                       "t.conf");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->state_dir, "/srv/vtpm");
  EXPECT_FALSE(c->auto_create);
  EXPECT_EQ(c->command_deadline.count(), 20000);
  EXPECT_EQ(c->backend_domid, 3u);
  EXPECT_EQ(c->srk_handle, 0x81000002u);
  EXPECT_EQ(c->pcr_policy, (std::vector<uint32_t>{0, 7}));
  EXPECT_EQ(c->engine, "scripted");
  EXPECT_EQ(c->scripted_slow_uuids.size(), 1u);
}

TEST(Config, ErrorsNameTheLine) {
  auto unknown = ParseConfig("[daemon]\nstate_dir = \"/a\"\nstat_dir = \"/b\"\n", "v.conf");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("v.conf:3"), std::string::npos) << unknown.status().message();
  EXPECT_NE(unknown.status().message().find("stat_dir"), std::string::npos);

  auto type = ParseConfig("[daemon]\n\nauto_create = \"yes\"\n", "v.conf");
  ASSERT_FALSE(type.ok());
  EXPECT_NE(type.status().message().find("v.conf:3"), std::string::npos) << type.status().message();

  auto syntax = ParseConfig("[daemon\n", "v.conf");
  ASSERT_FALSE(syntax.ok());
  EXPECT_NE(syntax.status().message().find("v.conf:1"), std::string::npos) << syntax.status().message();

  EXPECT_FALSE(ParseConfig("[host_tpm]\npcr_policy = [24]\n", "v.conf").ok());
  EXPECT_FALSE(ParseConfig("[daemon]\nstate_dir = \"relative\"\n", "v.conf").ok());
  EXPECT_FALSE(ParseConfig("[daemon]\ncommand_deadline_ms = 60000\n", "v.conf").ok());
  EXPECT_FALSE(ParseConfig("[daemon]\nadmin_deadline_ms = 10\n", "v.conf").ok());
  EXPECT_FALSE(ParseConfig("[engine]\nkind = \"tpm2\"\n", "v.conf").ok());
  EXPECT_FALSE(ParseConfig("[nosuch]\n", "v.conf").ok());
}

}  // namespace
}  // namespace vtpm
