// One flipped byte in one stored item: that instance refuses with a precise
// error; every other instance works.
#include <sqlite3.h>

#include "store_fault_util.h"

namespace vtpm::testing {
namespace {

void FlipByte(const std::string& db_path, const std::string& table, const std::string& where, size_t at) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  const std::string col = table == "instances" ? "data_key" : "sealed";
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, ("SELECT " + col + " FROM " + table + " WHERE " + where).c_str(), -1, &q,
                               nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(q, 0));
  Bytes b(p, p + sqlite3_column_bytes(q, 0));
  sqlite3_finalize(q);
  ASSERT_LT(at, b.size());
  b[at] ^= 0x20;
  ASSERT_EQ(sqlite3_prepare_v2(db, ("UPDATE " + table + " SET " + col + " = ? WHERE " + where).c_str(), -1, &q,
                               nullptr), SQLITE_OK);
  sqlite3_bind_blob(q, 1, b.data(), int(b.size()), SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(q), SQLITE_DONE);
  sqlite3_finalize(q);
  sqlite3_close(db);
}

std::string UuidHex(int i) {
  std::string s;
  char h[3];
  for (uint8_t b : InstanceId(i).bytes) {
    std::snprintf(h, sizeof h, "%02X", b);
    s += h;
  }
  return "uuid = x'" + s + "'";
}

struct Case {
  const char* name;
  const char* table;
  std::string extra_where;
  size_t at;
  const char* expect;
};

TEST(StoreCorruption, FlippedByteRefusesOnlyThatInstance) {
  const Case cases[] = {
      {"permanent blob ciphertext", "blobs", " AND kind = 1", 100, "bad tag"},
      {"permanent blob generation", "blobs", " AND kind = 1", 13, "bad tag"},
      {"permanent blob magic", "blobs", " AND kind = 1", 0, "magic"},
      {"record", "records", "", 40, "bad tag"},
      {"volatile blob", "blobs", " AND kind = 3", 30, "bad tag"},
      {"wrapped data key", "instances", "", 20, "data key"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir dir;
    StoreOptions o = OptionsIn(dir);
    constexpr int kN = 8, kVictim = 5;
    {
      auto s = OpenStoreWithKey(o, TestMaster());
      ASSERT_TRUE(s.ok());
      ASSERT_TRUE(CreateInstances(**s, kN).ok());
      for (int i = 0; i < kN; ++i) ASSERT_TRUE((*s)->CommitSync(NextCommit(i, 1)).ok());
    }
    FlipByte(o.state_dir + "/" + kStoreDbName, c.table, UuidHex(kVictim) + c.extra_where, c.at);
    auto s = OpenStoreWithKey(o, TestMaster());
    ASSERT_TRUE(s.ok()) << s.status().message();
    for (int i = 0; i < kN; ++i) {
      auto l = (*s)->Load(InstanceId(i));
      if (i != kVictim) {
        ASSERT_TRUE(l.ok()) << i << ": " << l.status().message();
        EXPECT_EQ(l->permanent, Content(i, 2));
        EXPECT_TRUE((*s)->CommitSync(NextCommit(i, 2)).ok());
        continue;
      }
      ASSERT_FALSE(l.ok());
      EXPECT_EQ(l.status().code(), Code::kCorruption);
      const std::string& m = l.status().message();
      EXPECT_NE(m.find(InstanceId(kVictim).ToString()), std::string::npos) << m;
      EXPECT_NE(m.find(c.expect), std::string::npos) << m;
      EXPECT_NE(m.find("backup"), std::string::npos) << m;
    }
  }
}

}  // namespace
}  // namespace vtpm::testing
