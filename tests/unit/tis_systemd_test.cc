// The unit drop-in vtpmmgrd(8) gives for tcti = "tis:..." really grants
// CAP_SYS_RAWIO and /dev/mem on top of the shipped unit, which grants neither
// (systemd-analyze's own reading of unit plus drop-in).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "host_tpm_swtpm.h"

namespace vtpm {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The unit's settings as systemd-analyze verify dumps them (debug level).
std::string AnalyzedUnit(const std::string& unit_path) {
  std::string cmd = "SYSTEMD_LOG_LEVEL=debug systemd-analyze verify --man=no '" + unit_path + "' 2>&1";
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  ::pclose(f);
  return out;
}

TEST(TisSystemd, TheDocumentedDropInGrantsDevMemAndRawIo) {
  // The drop-in exactly as the man page prints it.
  std::string man = ReadAll(std::string(VTPM_SOURCE_DIR) + "/man/vtpmmgrd.8");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(man, m, std::regex(R"(vtpmmgrd\.service\.d/tis\.conf[^]*?\n\.nf\n([^]*?)\.fi\n)")))
      << "vtpmmgrd(8) lost the tis.conf drop-in";
  const std::string dropin = m[1];
  EXPECT_NE(dropin.find("[Service]"), std::string::npos) << dropin;

  testing::TempDir dir;
  std::string unit = std::regex_replace(ReadAll(VTPM_UNIT_FILE), std::regex("ExecStart=[^\n]*"), "ExecStart=/bin/true");
  const std::string path = dir.Sub("vtpmmgrd.service");
  std::ofstream(path) << unit;

  std::string plain = AnalyzedUnit(path);
  ASSERT_NE(plain.find("CapabilityBoundingSet:"), std::string::npos) << plain;
  EXPECT_EQ(plain.find("cap_sys_rawio"), std::string::npos) << "the shipped unit must not grant raw I/O";
  EXPECT_EQ(plain.find("DeviceAllow: /dev/mem"), std::string::npos);
  EXPECT_NE(plain.find("DeviceAllow: /dev/tpmrm0 rw"), std::string::npos);

  std::filesystem::create_directory(dir.Sub("vtpmmgrd.service.d"));
  std::ofstream(dir.Sub("vtpmmgrd.service.d/tis.conf")) << dropin;
  std::string with = AnalyzedUnit(path);
  EXPECT_NE(with.find("DropIn Path: " + dir.Sub("vtpmmgrd.service.d/tis.conf")), std::string::npos) << with;
  EXPECT_TRUE(std::regex_search(with, std::regex("CapabilityBoundingSet:[^\n]*cap_setuid[^\n]*cap_sys_rawio")))
      << "the drop-in must add to the unit's capabilities, not replace them";
  EXPECT_NE(with.find("DeviceAllow: /dev/mem rw"), std::string::npos);
  EXPECT_NE(with.find("DeviceAllow: /dev/tpmrm0 rw"), std::string::npos);
  EXPECT_NE(with.find("DevicePolicy: closed"), std::string::npos);
}

}  // namespace
}  // namespace vtpm
