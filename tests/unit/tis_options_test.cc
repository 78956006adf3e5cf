// The "tis:" transport setting and the FIFO response header parser.
#include <gtest/gtest.h>

#include "daemon/config.h"
#include "tpm/host/tis_frame.h"
#include "tpm/host/tis_options.h"

namespace vtpm::tis {
namespace {

TEST(TisOptions, AcceptsTheDocumentedForms) {
  struct Case {
    const char* text;
    uint8_t locality;
    uint64_t base;
  } cases[] = {
      {"tis", 0, 0xfed40000},
      {"tis:", 0, 0xfed40000},
      {"tis:locality=0", 0, 0xfed40000},
      {"tis:locality=3", 3, 0xfed40000},
      {"tis:locality=2,base=0xfed40000", 2, 0xfed40000},
      {"tis:base=0xFED50000,locality=1", 1, 0xfed50000},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_TRUE(IsTisTcti(c.text));
    auto o = ParseOptions(c.text);
    ASSERT_TRUE(o.ok()) << o.status().message();
    EXPECT_EQ(o->locality, c.locality);
    EXPECT_EQ(o->base, c.base);
  }
}

TEST(TisOptions, OtherTransportsAreNotTis) {
  for (const char* t : {"device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=2321", "tisx", "", "TIS:locality=0",
                        "mssim"}) {
    EXPECT_FALSE(IsTisTcti(t)) << t;
    EXPECT_FALSE(ParseOptions(t).ok()) << t;
  }
}

TEST(TisOptions, BadOptionsAreNamed) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"tis:locality=5", "option 'locality' must be 0-3, not '5'"},
      {"tis:locality=4", "option 'locality=4' is reserved for the CPU"},
      {"tis:locality=-1", "option 'locality' must be 0-3, not '-1'"},
      {"tis:locality=", "option 'locality' must be 0-3, not ''"},
      {"tis:locality=0x1", "option 'locality' must be 0-3, not '0x1'"},
      {"tis:locality=0,locality=1", "option 'locality' given twice"},
      {"tis:locality", "option 'locality' has no '=value'"},
      {"tis:port=1", "unknown option 'port'"},
      {"tis:locality=0,", "empty option"},
      {"tis:,locality=0", "empty option"},
      {"tis:base=fed40000", "option 'base' must be a hex address like 0xfed40000, not 'fed40000'"},
      {"tis:base=0x", "option 'base' must be a hex address"},
      {"tis:base=0xfed40001", "4 KiB aligned"},
      {"tis:base=0x0", "non-zero"},
      {"tis:base=0xffffffffffffff000", "must be a hex address"},  // does not fit 64 bits
      {"tis:base=0xfffffffffffff000", "4 KiB aligned"},           // window would wrap
      {"tis:base=0x1000,base=0x2000", "option 'base' given twice"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto o = ParseOptions(c.text);
    ASSERT_FALSE(o.ok());
    EXPECT_EQ(o.status().code(), Code::kInvalidArgument);
    EXPECT_NE(o.status().message().find(c.message), std::string::npos) << o.status().message();
    EXPECT_NE(o.status().message().find(std::string("TCTI '") + c.text + "'"), std::string::npos);
  }
}

// vtpmmgrd.conf and --check-config reject a bad tis: option before start-up.
TEST(TisOptions, ConfigFileChecksTheTisOptions) {
  auto good = ParseConfig("[host_tpm]\ntcti = \"tis:locality=0\"\n", "t.conf");
  ASSERT_TRUE(good.ok()) << good.status().message();
  EXPECT_EQ(good->tcti, "tis:locality=0");
  auto bad = ParseConfig("[host_tpm]\ntcti = \"tis:locality=0,bse=0xfed40000\"\n", "t.conf");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("t.conf:2: [host_tpm] tcti is invalid: TCTI 'tis:locality=0,bse=0xfed40000': "
                                        "unknown option 'bse'"),
            std::string::npos)
      << bad.status().message();
  EXPECT_TRUE(ParseConfig("[host_tpm]\ntcti = \"device:/dev/tpm0\"\n", "t.conf").ok());  // loader strings unchanged
}

TEST(TisFrame, ResponseSize) {
  Bytes ok = {0x80, 0x01, 0, 0, 0, 0x14, 0, 0, 0, 0};
  auto s = ResponseSize(ok);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, 20u);
  ok[1] = 0x02;
  EXPECT_TRUE(ResponseSize(ok).ok());
  EXPECT_FALSE(ResponseSize(ByteView(ok.data(), 9)).ok());
  Bytes big = {0x80, 0x01, 0, 0, 0x10, 0x01, 0, 0, 0, 0};
  EXPECT_FALSE(ResponseSize(big).ok());
  EXPECT_TRUE(ResponseSize(big, 0x1001).ok());
  Bytes tiny = {0x80, 0x01, 0, 0, 0, 9, 0, 0, 0, 0};
  EXPECT_EQ(ResponseSize(tiny).status().code(), Code::kCorruption);
  Bytes tpm12 = {0x00, 0xc4, 0, 0, 0, 10, 0, 0, 0, 0};
  EXPECT_NE(ResponseSize(tpm12).status().message().find("0xc4"), std::string::npos);
}

TEST(TisFrame, CommandSize) {
  Bytes cmd = {0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8};
  ASSERT_TRUE(CommandSize(cmd).ok());
  EXPECT_EQ(*CommandSize(cmd), 12u);
  EXPECT_FALSE(CommandSize(ByteView(cmd.data(), 11)).ok());
  EXPECT_FALSE(CommandSize(ByteView(cmd.data(), 5)).ok());
}

}  // namespace
}  // namespace vtpm::tis
