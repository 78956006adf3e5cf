// vtpmctl's naming of instances (ctl/ctl_target.h): uuid, domid or domain
// name against a `list` answer; no match and several matches name the
// candidates.
#include <gtest/gtest.h>

#include "ctl/ctl_target.h"

namespace vtpm::ctl {
namespace {

using nlohmann::json;

// Instances attached to web1 (domid 5), to db (domid 7, devids 0 and 1), and idle.
const std::string kA = "8d3f6a2e-1c4b-4d7e-9f10-2a3b4c5d6e7f", kB = "5e4d3c2b-1a09-4876-b543-210fedcba987",
                  kC = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", kIdle = "ffffffff-eeee-4ddd-8ccc-bbbbbbbbbbbb";

json Row(const std::string& uuid, json attached) { return {{"uuid", uuid}, {"attached", std::move(attached)}}; }
json At(int domid, int devid, json name) {
  return {{"domid", domid}, {"devid", devid}, {"name", std::move(name)}, {"connected", true}};
}

const json kList = {{"instances", json::array({Row(kA, At(5, 0, "web1")), Row(kB, At(7, 0, "db")),
                                               Row(kC, At(7, 1, "db")), Row(kIdle, nullptr),
                                               Row("00000000-0000-4000-8000-000000000001", At(9, 0, nullptr))})}};

TEST(CtlTarget, UuidsNeedNoLookup) {
  EXPECT_FALSE(NeedsLookup(kIdle));
  EXPECT_TRUE(NeedsLookup("web1"));
  EXPECT_TRUE(NeedsLookup("5"));
  EXPECT_EQ(ResolveInstance(kIdle, json())->ToString(), kIdle);  // an idle instance, by uuid only
  EXPECT_EQ(ResolveInstance("00000000-0000-0000-0000-000000000000", kList).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ResolveInstance("zzzzzzzz-0000-4000-8000-000000000000", kList).status().code(), Code::kInvalidArgument);
}

TEST(CtlTarget, DomainNamesAndDomids) {
  EXPECT_EQ(ResolveInstance("web1", kList)->ToString(), kA);
  EXPECT_EQ(ResolveInstance("5", kList)->ToString(), kA);
  EXPECT_EQ(ResolveInstance("9", kList)->ToString(), "00000000-0000-4000-8000-000000000001");
}

TEST(CtlTarget, NoMatchNamesTheDomainsWithAVtpm) {
  auto r = ResolveInstance("mail", kList);
  ASSERT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("no vTPM instance is attached to domain name 'mail'"), std::string::npos);
  EXPECT_NE(r.status().message().find("web1 (domid 5 devid 0), db (domid 7 devid 0)"), std::string::npos)
      << r.status().message();
  auto d = ResolveInstance("6", kList);
  ASSERT_EQ(d.status().code(), Code::kNotFound);
  EXPECT_NE(d.status().message().find("attached to domid 6;"), std::string::npos) << d.status().message();
  auto empty = ResolveInstance("web1", json{{"instances", json::array()}});
  EXPECT_NE(empty.status().message().find("no domain has a vTPM attached"), std::string::npos);
}

TEST(CtlTarget, SeveralMatchesNameThem) {
  for (const char* who : {"db", "7"}) {
    auto r = ResolveInstance(who, kList);
    ASSERT_EQ(r.status().code(), Code::kAlreadyExists) << who;
    const std::string& m = r.status().message();
    EXPECT_NE(m.find("matches 2 vTPM instances"), std::string::npos) << m;
    EXPECT_NE(m.find(kB + " of db (domid 7 devid 0)"), std::string::npos) << m;
    EXPECT_NE(m.find(kC + " of db (domid 7 devid 1)"), std::string::npos) << m;
    EXPECT_NE(m.find("name one by its uuid"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace vtpm::ctl
