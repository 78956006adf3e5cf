#include "backend/xs_values.h"

#include <gtest/gtest.h>

#include "common/uuid.h"

namespace vtpm {
namespace {

TEST(XsValues, U32AcceptsPlainDecimalOnly) {
  EXPECT_EQ(ParseU32("0"), 0u);
  EXPECT_EQ(ParseU32("8"), 8u);
  EXPECT_EQ(ParseU32("4294967295"), 4294967295u);
  for (const char* bad : {"", "-1", "+1", " 1", "1 ", "0x10", "4294967296", "01", "1a", "99999999999"})
    EXPECT_FALSE(ParseU32(bad).has_value()) << bad;
}

TEST(XsValues, XenbusStateRange) {
  EXPECT_EQ(ParseXbState("4"), 4);
  EXPECT_EQ(ParseXbState("7"), 7);
  EXPECT_FALSE(ParseXbState("8").has_value());
  EXPECT_FALSE(ParseXbState("").has_value());
}

TEST(XsValues, DomidExcludesReserved) {
  EXPECT_EQ(ParseDomid("0"), 0u);
  EXPECT_EQ(ParseDomid("32751"), 32751u);
  EXPECT_FALSE(ParseDomid("32752").has_value());  // DOMID_FIRST_RESERVED
}

TEST(Uuid, ParsesLibxlFormat) {
  auto u = Uuid::Parse("0d3f6a1c-8b2e-4c55-9a7e-1f2e3d4c5b6a");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->ToString(), "0d3f6a1c-8b2e-4c55-9a7e-1f2e3d4c5b6a");
  EXPECT_EQ(u->bytes[0], 0x0d);
  EXPECT_FALSE(u->IsNil());
  auto upper = Uuid::Parse("0D3F6A1C-8B2E-4C55-9A7E-1F2E3D4C5B6A");
  ASSERT_TRUE(upper.ok());
  EXPECT_EQ(*upper, *u);
}

TEST(Uuid, RejectsEverythingElse) {
  for (const char* bad : {"", "0d3f6a1c8b2e4c559a7e1f2e3d4c5b6a", "0d3f6a1c-8b2e-4c55-9a7e-1f2e3d4c5b6",
                          "0d3f6a1c-8b2e-4c55-9a7e-1f2e3d4c5b6ax", "0d3f6a1c-8b2e-4c55-9a7e_1f2e3d4c5b6a",
                          "0d3f6a1c-8b2e-4c55-9a7e-1f2e3d4c5b6g", "{d3f6a1c-8b2e-4c55-9a7e-1f2e3d4c5b6}",
                          "0d3f6a1c--b2e-4c55-9a7e-1f2e3d4c5b6a"})
    EXPECT_FALSE(Uuid::Parse(bad).ok()) << bad;
  auto nil = Uuid::Parse("00000000-0000-0000-0000-000000000000");
  ASSERT_TRUE(nil.ok());
  EXPECT_TRUE(nil->IsNil());
}

}  // namespace
}  // namespace vtpm
