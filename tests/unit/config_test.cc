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
  EXPECT_EQ(c->data_path, "worker");
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
data_path = "daemon"
[host_tpm]
tcti = "swtpm:host=127.0.0.1,port=2321"
srk_handle = 0x81000002
pcr_policy = [0, 7]
[engine]
kind = "scripted"
scripted_slow_uuids = ["0d3f6a1c-8b2e-4c55-9a7e-1f2e3d4c5b6a"]
worker_uid_base = 0x60000000
)",
                       "t.conf");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->state_dir, "/srv/vtpm");
  EXPECT_FALSE(c->auto_create);
  EXPECT_EQ(c->command_deadline.count(), 20000);
  EXPECT_EQ(c->backend_domid, 3u);
  EXPECT_EQ(c->data_path, "daemon");
  EXPECT_EQ(c->srk_handle, 0x81000002u);
  EXPECT_EQ(c->pcr_policy, (std::vector<uint32_t>{0, 7}));
  EXPECT_EQ(c->engine, "scripted");
  EXPECT_EQ(c->scripted_slow_uuids.size(), 1u);
  EXPECT_EQ(c->worker_uid_base, 0x60000000u);
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

// The refusal for `text`: it names `line` (file:line) and holds each of `parts`.
void ExpectRefused(const std::string& text, const std::string& line, std::vector<std::string> parts) {
  auto c = ParseConfig(text, "v.conf");
  ASSERT_FALSE(c.ok()) << text;
  const std::string& m = c.status().message();
  EXPECT_EQ(m.rfind("v.conf:" + line + ": ", 0), 0u) << m;
  for (auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "'" << p << "' not in: " << m;
}

// Issue 17, item 7: each value the config check used to pass.
TEST(ConfigMeaning, MistypedTctiTransportIsRefusedWithTheTransports) {
  ExpectRefused("[host_tpm]\n\ntcti = \"devcie:/dev/tpmrm0\"\n", "3",
                {"[host_tpm] tcti", "unknown transport 'devcie'", "device:/dev/PATH", "tis", "swtpm", "mssim"});
}

TEST(ConfigMeaning, SrkHandleOutsideThePersistentOwnerRangeIsRefused) {
  ExpectRefused("[host_tpm]\nsrk_handle = 0x40000001\n", "2",
                {"[host_tpm] srk_handle", "0x81000000 to 0x817fffff", "not 0x40000001"});
  ExpectRefused("[host_tpm]\nsrk_handle = 0x81800000\n", "2", {"srk_handle"});  // the platform's range
  for (const char* ok : {"0x81000000", "0x81000001", "0x817fffff"})
    EXPECT_TRUE(ParseConfig(std::string("[host_tpm]\nsrk_handle = ") + ok + "\n", "v.conf").ok()) << ok;
}

// Design §2 "Identities": 65536 uids above the 16-bit range and below 2^31.
TEST(ConfigMeaning, WorkerUidRangeOutsideItsBoundsIsRefused) {
  EXPECT_EQ(ParseConfig("", "v.conf")->worker_uid_base, 0x7a700000u);
  ExpectRefused("[engine]\nworker_uid_base = 1000\n", "2",
                {"[engine] worker_uid_base", "65536 to 2147418112", "not 1000"});
  ExpectRefused("[engine]\nworker_uid_base = 0x7fff0001\n", "2", {"worker_uid_base", "not 2147418113"});
  ExpectRefused("[engine]\nworker_uid_base = 0xfffffffe\n", "2", {"worker_uid_base"});
  for (const char* ok : {"65536", "0x7a700000", "0x7fff0000"})
    EXPECT_TRUE(ParseConfig(std::string("[engine]\nworker_uid_base = ") + ok + "\n", "v.conf").ok()) << ok;
}

TEST(ConfigMeaning, RepeatedPcrIsRefused) {
  ExpectRefused("[host_tpm]\npcr_policy = [7, 7]\n", "2", {"[host_tpm] pcr_policy", "PCR 7 twice", "0 to 23"});
  EXPECT_TRUE(ParseConfig("[host_tpm]\npcr_policy = [0, 2, 4, 7, 23]\n", "v.conf").ok());
}

TEST(ConfigMeaning, BackendDomidBeyondTheLastDomainIdIsRefused) {
  ExpectRefused("[xen]\nbackend_domid = 70000\n", "2", {"[xen] backend_domid", "0 to 32751", "not 70000"});
  ExpectRefused("[xen]\nbackend_domid = 0x7ff0\n", "2", {"backend_domid"});  // DOMID_FIRST_RESERVED
  EXPECT_TRUE(ParseConfig("[xen]\nbackend_domid = 0x7fef\n", "v.conf").ok());
}

TEST(ConfigMeaning, DataPathIsDaemonOrWorker) {
  ExpectRefused("[xen]\ndata_path = \"guest\"\n", "2", {"[xen] data_path", "\"daemon\" or \"worker\"", "not \"guest\""});
  EXPECT_TRUE(ParseConfig("[xen]\ndata_path = \"daemon\"\n", "v.conf").ok());
}

TEST(ConfigMeaning, RelativeWorkerPathIsRefused) {
  ExpectRefused("[engine]\nworker_path = \"vtpm-worker\"\n", "2", {"[engine] worker_path", "absolute path"});
  auto c = ParseConfig("[engine]\n\nworker_path = \"/opt/vtpm-worker\"\n", "v.conf");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->worker_path_origin, "v.conf:3");  // for WorkerPath()'s refusal of a missing file
}

TEST(ConfigMeaning, UnknownLogLevelIsRefusedWithTheLevels) {
  ExpectRefused("[daemon]\nlog_level = \"verbose\"\n", "2",
                {"[daemon] log_level", "trace, debug, info, warn or error", "not \"verbose\""});
  EXPECT_FALSE(IsLogLevel("verbose"));  // the check -l/--log-level shares
  for (const char* l : {"trace", "debug", "info", "warn", "error"}) EXPECT_TRUE(IsLogLevel(l)) << l;
}

TEST(ConfigMeaning, KeyOutsideAnySectionIsNamedAsSuch) {
  ExpectRefused("log_level = \"debug\"\n[daemon]\n", "1",
                {"key 'log_level' outside any section", "it belongs in [daemon]"});
  ExpectRefused("colour = 1\n", "1", {"key 'colour' outside any section", "[daemon], [engine], [host_tpm], [migration], [xen]"});
  ExpectRefused("[nosuch]\n", "1", {"unknown section [nosuch]", "[daemon], [engine]"});
  ExpectRefused("[xen]\nbackend_dom = 1\n", "2", {"unknown key 'backend_dom' in [xen]", "backend_domid"});
}

// The transports the daemon supports, as the tests, the e2e boot and the
// shipped example use them.
TEST(ConfigMeaning, TctiSyntaxOfEachTransport) {
  for (const char* ok : {"device:/dev/tpmrm0", "device:/dev/tpm0", "tis", "tis:locality=0,base=0xfed40000", "swtpm",
                         "swtpm:host=127.0.0.1,port=2321", "swtpm:port=65535", "mssim:host=localhost,port=2321"})
    EXPECT_TRUE(ParseConfig(std::string("[host_tpm]\ntcti = \"") + ok + "\"\n", "v.conf").ok()) << ok;
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"device", "absolute path"},
      {"device:tpmrm0", "absolute path"},
      {"/dev/tpmrm0", "unknown transport '/dev/tpmrm0'"},
      {"", "unknown transport ''"},
      {"tabrmd:bus_type=system", "unknown transport 'tabrmd'"},
      {"swtpm:host=127.0.0.1,port=0", "port must be 1 to 65535"},
      {"swtpm:port=2321,port=2322", "'port' given twice"},
      {"swtpm:prot=2321", "unknown option 'prot=2321'"},
      {"swtpm:host=", "'host' has no value"},
      {"mssim:port=65535", "port must be 1 to 65534"},
      {"tis:locality=5", "locality"},
  };
  for (auto& [tcti, why] : bad) ExpectRefused("[host_tpm]\ntcti = \"" + tcti + "\"\n", "2", {"tcti", why});
}

TEST(ConfigMeaning, PathsThatCannotWork) {
  ExpectRefused("[daemon]\nstate_dir = \"/srv/v\"\nruntime_dir = \"/srv/v/\"\n", "3",
                {"[daemon] runtime_dir is state_dir (/srv/v): durable state and the tmpfs"});
  ExpectRefused("[daemon]\nstate_dir = \"/run/vtpmmgrd\"\n", "2", {"[daemon] state_dir is runtime_dir"});
  ExpectRefused("[daemon]\ncontrol_socket = \"/run/" + std::string(120, 'x') + "\"\n", "2",
                {"[daemon] control_socket", "at most 107 bytes"});
  ExpectRefused("[daemon]\nruntime_dir = \"/run/" + std::string(110, 'x') + "\"\n", "2",
                {"[daemon] runtime_dir", "control.sock"});
  ExpectRefused("[daemon]\nlog_target = \"syslog\"\n", "2", {"auto, journal or stderr", "not \"syslog\""});
}

}  // namespace
}  // namespace vtpm
