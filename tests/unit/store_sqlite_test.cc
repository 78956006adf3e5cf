// The SQLite store through its interface, with a caller-given master key.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "host_tpm_swtpm.h"
#include "store/open_store.h"
#include "store/refusal.h"

namespace vtpm {
namespace {

using testing::TempDir;

SecretBytes Master(uint8_t fill = 7) {
  SecretBytes k(32);
  std::fill(k.data(), k.data() + 32, fill);
  return k;
}

Uuid U(int n) {
  Uuid u;
  u.bytes[0] = 0x10;
  u.bytes[15] = uint8_t(n);
  u.bytes[14] = uint8_t(n >> 8);
  return u;
}

Bytes Fill(size_t n, uint8_t v) { return Bytes(n, v); }

class StoreTest : public ::testing::Test {
 protected:
  StoreOptions Opts() const {
    StoreOptions o;
    o.state_dir = dir_.Sub("state");
    o.runtime_dir = dir_.Sub("run");
    return o;
  }
  std::unique_ptr<Store> Open(uint8_t key = 7) {
    auto s = OpenStoreWithKey(Opts(), Master(key));
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  void CreateOne(Store& s, const Uuid& u) {
    InstanceMeta m;
    m.uuid = u;
    m.ek_public = {1, 2, 3};
    m.auto_created = true;
    ASSERT_TRUE(s.Create(m, {{BlobKind::kPermanent, Fill(100, 0x11)}}).ok());
  }
  // U(from) .. U(to - 1), created by 4 threads so that they share group commits.
  void CreateRange(Store& s, int from, int to, size_t blob_bytes = 100) {
    std::atomic<int> next{from};
    std::atomic<bool> failed{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&] {
        for (int i; (i = next.fetch_add(1)) < to;) {
          InstanceMeta m;
          m.uuid = U(i);
          if (!s.Create(m, {{BlobKind::kPermanent, Fill(blob_bytes, uint8_t(i))}}).ok()) failed = true;
        }
      });
    for (auto& t : threads) t.join();
    ASSERT_FALSE(failed);
  }
  std::string Db() const { return Opts().state_dir + "/" + kStoreDbName; }
  // Runs `sql` on the closed store's database, as another tool would.
  void ExecOnDb(const char* sql) const {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(Db().c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sql;
    sqlite3_close(db);
  }
  TempDir dir_;
};

TEST_F(StoreTest, CreateLoadCommitRoundTrip) {
  auto s = Open();
  ASSERT_TRUE(s);
  CreateOne(*s, U(1));
  auto l = s->Load(U(1));
  ASSERT_TRUE(l.ok()) << l.status().message();
  EXPECT_EQ(l->generation, 1u);
  EXPECT_EQ(l->permanent, Fill(100, 0x11));
  EXPECT_TRUE(l->meta.auto_created);
  EXPECT_EQ(l->meta.ek_public, (Bytes{1, 2, 3}));
  EXPECT_FALSE(l->last_record);

  CommitRequest c;
  c.uuid = U(1);
  c.write[BlobKind::kPermanent] = Fill(200, 0x22);
  c.write[BlobKind::kSavestate] = Fill(10, 0x33);
  c.volatile_copy = Fill(50, 0x44);
  c.record = CommandRecord{5, Fill(32, 1), Fill(10, 2), false};
  c.expected_generation = 1;
  auto g = s->CommitSync(c);
  ASSERT_TRUE(g.ok()) << g.status().message();
  EXPECT_EQ(*g, 2u);
  l = s->Load(U(1));
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->generation, 2u);
  EXPECT_EQ(l->permanent, Fill(200, 0x22));
  EXPECT_EQ(l->savestate, Fill(10, 0x33));
  EXPECT_EQ(l->volatile_copy, Fill(50, 0x44));
  ASSERT_TRUE(l->last_record);
  EXPECT_EQ(l->last_record->sequence, 5u);
  EXPECT_EQ(l->last_record->response, Fill(10, 2));
  EXPECT_FALSE(l->last_record->delivered);

  // Stale generation fails and changes nothing.
  auto stale = s->CommitSync(c);
  EXPECT_EQ(stale.status().code(), Code::kFailedPrecondition);
  ASSERT_TRUE(s->MarkDelivered(U(1), 5).ok());
  ASSERT_TRUE(s->TouchAttached(U(1)).ok());
  ASSERT_TRUE(s->TouchAttached(U(9)).ok());  // queued: the failure is only logged
  // Removing the savestate; no volatile copy this time: the old one is stale.
  // Queued after the two marks, so they are durable once it returns.
  CommitRequest c2;
  c2.uuid = U(1);
  c2.remove = {BlobKind::kSavestate};
  c2.expected_generation = 2;
  c2.record = CommandRecord{6, Fill(32, 3), Fill(10, 4), false};
  ASSERT_TRUE(s->CommitSync(c2).ok());
  l = s->Load(U(1));
  ASSERT_TRUE(l.ok());
  EXPECT_FALSE(l->savestate);
  EXPECT_FALSE(l->volatile_copy);
  EXPECT_EQ(l->last_record->sequence, 6u);
  EXPECT_FALSE(l->last_record->delivered);
  EXPECT_GT(l->meta.last_attached, 0);
  ASSERT_TRUE(s->MarkDelivered(U(1), 5).ok());  // not the newest record: no effect
  ASSERT_TRUE(s->MarkDelivered(U(1), 6).ok());
  ASSERT_TRUE(s->CommitSync(CommitRequest{U(1), {}, {}, std::nullopt, std::nullopt, std::nullopt, 3}).ok());
  EXPECT_TRUE(s->Load(U(1))->last_record->delivered);
  EXPECT_EQ(s->Load(U(9)).status().code(), Code::kNotFound);
  InstanceMeta dup;
  dup.uuid = U(1);
  EXPECT_EQ(s->Create(dup, {{BlobKind::kPermanent, {1}}}).code(), Code::kAlreadyExists);
}

TEST_F(StoreTest, ReopenReadsEverythingBackAndRefusesWrongKey) {
  {
    auto s = Open();
    ASSERT_TRUE(s);
    for (int i = 0; i < 20; ++i) CreateOne(*s, U(i));
  }
  auto wrong = OpenStoreWithKey(Opts(), Master(8));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(RefusalOf(wrong.status()), Refusal::kBadManagerRecord) << wrong.status().message();
  auto s = Open();
  ASSERT_TRUE(s);
  auto list = s->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 20u);
  for (const auto& m : *list) {
    EXPECT_GT(m.size_bytes, 100u);
    EXPECT_TRUE(s->Load(m.uuid).ok());
  }
}

TEST_F(StoreTest, SecondOpenerIsRefusedAsLocked) {
  auto s = Open();
  ASSERT_TRUE(s);
  auto second = OpenStoreWithKey(Opts(), Master());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(RefusalOf(second.status()), Refusal::kLocked);
  EXPECT_NE(second.status().message().find(std::to_string(::getpid())), std::string::npos)
      << second.status().message();
}

TEST_F(StoreTest, GroupCommitKeepsMembersIndependent) {
  auto s = Open();
  ASSERT_TRUE(s);
  constexpr int kN = 40;
  for (int i = 0; i < kN; ++i) CreateOne(*s, U(i));
  std::vector<std::promise<Result<uint64_t>>> done(kN + 1);
  for (int i = 0; i < kN; ++i) {
    CommitRequest c;
    c.uuid = U(i);
    c.write[BlobKind::kPermanent] = Fill(64, uint8_t(i));
    c.expected_generation = 1;
    s->Commit(std::move(c), [&done, i](Result<uint64_t> r) { done[size_t(i)].set_value(std::move(r)); });
  }
  CommitRequest bad;  // a member that must fail without failing the others
  bad.uuid = U(3);
  bad.expected_generation = 99;
  s->Commit(std::move(bad), [&done](Result<uint64_t> r) { done[kN].set_value(std::move(r)); });
  for (int i = 0; i < kN; ++i) {
    auto r = done[size_t(i)].get_future().get();
    ASSERT_TRUE(r.ok()) << i << ": " << r.status().message();
    EXPECT_EQ(*r, 2u);
  }
  EXPECT_EQ(done[kN].get_future().get().status().code(), Code::kFailedPrecondition);
  auto st = s->GetStatus();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->instances, uint64_t(kN));
  EXPECT_EQ(st->commits, uint64_t(2 * kN + 1));  // creates, commits, the failing one
  EXPECT_LE(st->commit_groups, st->commits);
  for (int i = 0; i < kN; ++i) EXPECT_EQ(s->Load(U(i))->permanent, Fill(64, uint8_t(i)));
}

TEST_F(StoreTest, WipeRemovesInstanceAndItsVolatileCopy) {
  auto s = Open();
  ASSERT_TRUE(s);
  CreateOne(*s, U(1));
  CreateOne(*s, U(2));
  VolatileCopy v;
  v.blob = Fill(30, 9);
  ASSERT_TRUE(s->SaveVolatile(U(1), v).ok());
  ASSERT_TRUE(s->Wipe(U(1)).ok());
  EXPECT_EQ(s->Load(U(1)).status().code(), Code::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(Opts().runtime_dir + "/" + U(1).ToString() + ".vol"));
  EXPECT_EQ(s->Wipe(U(1)).code(), Code::kNotFound);
  EXPECT_TRUE(s->Load(U(2)).ok());
  EXPECT_EQ(std::filesystem::file_size(Db() + "-wal"), 0u);  // TRUNCATE checkpoint
}

TEST_F(StoreTest, VolatileCopyRoundTripAndTamper) {
  auto s = Open();
  ASSERT_TRUE(s);
  CreateOne(*s, U(1));
  auto none = s->LoadVolatile(U(1));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(*none);
  VolatileCopy v;
  v.blob = Fill(500, 0x5a);
  v.boot_id.fill(3);
  v.domid = 12;
  v.sequence = 44;
  v.generation = 1;
  ASSERT_TRUE(s->SaveVolatile(U(1), v).ok());
  auto back = s->LoadVolatile(U(1));
  ASSERT_TRUE(back.ok() && *back);
  EXPECT_EQ((*back)->blob, v.blob);
  EXPECT_EQ((*back)->domid, 12u);
  EXPECT_EQ((*back)->sequence, 44u);
  EXPECT_EQ((*back)->generation, 1u);

  const std::string path = Opts().runtime_dir + "/" + U(1).ToString() + ".vol";
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(40);
  f.put('\x7f');
  f.close();
  auto bad = s->LoadVolatile(U(1));
  EXPECT_EQ(bad.status().code(), Code::kCorruption);
  // Another instance's copy renamed into place fails too (AAD binds the uuid).
  CreateOne(*s, U(2));
  ASSERT_TRUE(s->SaveVolatile(U(2), v).ok());
  std::filesystem::rename(Opts().runtime_dir + "/" + U(2).ToString() + ".vol", path);
  EXPECT_EQ(s->LoadVolatile(U(1)).status().code(), Code::kCorruption);
  EXPECT_EQ(s->SaveVolatile(U(9), v).code(), Code::kNotFound);
}

TEST_F(StoreTest, SuspendCaptureIsDurableListedAndDroppedByTheNextCommit) {
  auto s = Open();
  ASSERT_TRUE(s);
  CreateOne(*s, U(1));
  CreateOne(*s, U(2));
  SuspendCapture cap;
  cap.handle.fill(0xab);
  cap.domid = 7;
  cap.sequence = 41;
  cap.captured_at = 1764800000;
  CommitRequest c;
  c.uuid = U(1);
  c.suspend = cap;
  c.expected_generation = 1;
  // A capture without the volatile state it stands for is refused.
  EXPECT_EQ(s->CommitSync(c).status().code(), Code::kInvalidArgument);
  c.volatile_copy = Fill(64, 0x77);
  ASSERT_TRUE(s->CommitSync(c).ok());
  s.reset();  // durable: read back by a new opener
  s = Open();
  ASSERT_TRUE(s);
  auto l = s->Load(U(1));
  ASSERT_TRUE(l.ok()) << l.status().message();
  ASSERT_TRUE(l->suspend);
  EXPECT_EQ(l->suspend->handle, cap.handle);
  EXPECT_EQ(l->suspend->domid, 7u);
  EXPECT_EQ(l->suspend->sequence, 41u);
  EXPECT_EQ(l->suspend->captured_at, cap.captured_at);
  EXPECT_EQ(l->volatile_copy, Fill(64, 0x77));
  auto list = s->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_TRUE((*list)[0].suspended);
  EXPECT_FALSE((*list)[1].suspended);
  EXPECT_FALSE(s->Load(U(2))->suspend);

  // Any later commit drops it: the TPM moved on from the captured state.
  CommitRequest next;
  next.uuid = U(1);
  next.expected_generation = l->generation;
  ASSERT_TRUE(s->CommitSync(next).ok());
  l = s->Load(U(1));
  ASSERT_TRUE(l.ok());
  EXPECT_FALSE(l->suspend);
  EXPECT_FALSE((*s->List())[0].suspended);
}

TEST_F(StoreTest, VolatileCopyKeepsTheDomainHandleAndOlderCopiesLoadWithout) {
  auto s = Open();
  ASSERT_TRUE(s);
  CreateOne(*s, U(1));
  VolatileCopy v;
  v.blob = Fill(20, 1);
  v.domid = 3;
  v.sequence = 2;
  v.generation = 1;
  v.handle.emplace();
  v.handle->fill(0x5c);
  ASSERT_TRUE(s->SaveVolatile(U(1), v).ok());
  auto back = s->LoadVolatile(U(1));
  ASSERT_TRUE(back.ok() && *back);
  EXPECT_EQ((*back)->handle, v.handle);
  EXPECT_FALSE((*back)->record);
  v.handle.reset();
  ASSERT_TRUE(s->SaveVolatile(U(1), v).ok());
  back = s->LoadVolatile(U(1));
  ASSERT_TRUE(back.ok() && *back);
  EXPECT_FALSE((*back)->handle);
}

TEST_F(StoreTest, NewerSchemaIsRefused) {
  { ASSERT_TRUE(Open()); }
  ExecOnDb("UPDATE meta SET value = x'0000000000000063' WHERE key = 'schema_version'");
  auto s = OpenStoreWithKey(Opts(), Master());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(RefusalOf(s.status()), Refusal::kNewerSchema);
  EXPECT_NE(s.status().message().find("99"), std::string::npos) << s.status().message();
}

TEST_F(StoreTest, TamperedManagerRecordIsRefused) {
  { ASSERT_TRUE(Open()); }
  ExecOnDb("UPDATE meta SET value = substr(value, 1, 20) || x'00' || substr(value, 22) WHERE key = 'key_check'");
  auto s = OpenStoreWithKey(Opts(), Master());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(RefusalOf(s.status()), Refusal::kBadManagerRecord);
  EXPECT_NE(s.status().message().find("bad tag"), std::string::npos) << s.status().message();
  EXPECT_EQ(StartExitStatus(s.status()), 15);
}

TEST_F(StoreTest, GarbageDatabaseIsRefusedNotReplaced) {
  std::filesystem::create_directories(Opts().state_dir);
  const std::string junk(8192, 'j');
  { std::ofstream(Db(), std::ios::binary) << junk; }
  auto s = OpenStoreWithKey(Opts(), Master());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(RefusalOf(s.status()), Refusal::kBadManagerRecord) << s.status().message();
  std::ifstream f(Db(), std::ios::binary);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>()), junk);
}

TEST_F(StoreTest, BackupOpensWithTheSameKey) {
  auto s = Open();
  ASSERT_TRUE(s);
  CreateOne(*s, U(1));
  const std::string bdir = dir_.Sub("backup");
  std::filesystem::create_directories(bdir);
  ASSERT_TRUE(s->Backup(bdir + "/" + kStoreDbName).ok());
  EXPECT_EQ(s->Backup(bdir + "/" + kStoreDbName).code(), Code::kAlreadyExists);
  StoreOptions o = Opts();
  o.state_dir = bdir;
  o.runtime_dir = dir_.Sub("run2");
  auto b = OpenStoreWithKey(o, Master());
  ASSERT_TRUE(b.ok()) << b.status().message();
  auto l = (*b)->Load(U(1));
  ASSERT_TRUE(l.ok()) << l.status().message();
  EXPECT_EQ(l->permanent, Fill(100, 0x11));
}

// List() reads 256 rows per hold of the database mutex (design §6b): counts
// on, around and across that boundary each come back whole, sorted, once.
TEST_F(StoreTest, ListReadInChunksReturnsEveryInstanceOnceInOrder) {
  auto s = Open();
  ASSERT_TRUE(s);
  int created = 0;
  for (int count : {255, 256, 257, 512, 700}) {
    CreateRange(*s, created, count);
    created = count;
    auto list = s->List();
    ASSERT_TRUE(list.ok()) << list.status().message();
    ASSERT_EQ(list->size(), size_t(count));
    for (size_t i = 0; i < list->size(); ++i) {
      EXPECT_EQ((*list)[i].uuid, U(int(i))) << "row " << i << " of " << count;
      EXPECT_GT((*list)[i].size_bytes, 100u);
    }
  }
}

// Between two chunks List() lets the commits waiting meanwhile run; with a
// commit always pending, each list still ends, whole, and commits go on.
TEST_F(StoreTest, ListEndsWholeWhileCommitsKeepComing) {
  auto s = Open();
  ASSERT_TRUE(s);
  constexpr int kN = 1000;
  CreateRange(*s, 0, kN);
  std::atomic<bool> listing{true};
  std::atomic<int> commits{0};
  std::thread writer([&] {
    uint64_t gen = 1;
    while (listing) {
      CommitRequest c;
      c.uuid = U(0);
      c.write[BlobKind::kSavestate] = Fill(64, uint8_t(gen));
      c.expected_generation = gen;
      auto r = s->CommitSync(std::move(c));
      ASSERT_TRUE(r.ok()) << r.status().message();
      gen = *r;
      ++commits;
    }
  });
  for (int i = 0; i < 5; ++i) {
    auto list = s->List();
    ASSERT_TRUE(list.ok()) << list.status().message();
    EXPECT_EQ(list->size(), size_t(kN));
  }
  listing = false;
  writer.join();
  EXPECT_GT(commits.load(), 0);
}

// A delivered mark costs no group (no fsync) of its own: it is applied with
// the next group committed for another reason, or with a last one at close.
TEST_F(StoreTest, DeliveredMarksRideWithTheNextCommitAndAreWrittenAtClose) {
  auto s = Open();
  ASSERT_TRUE(s);
  CreateOne(*s, U(1));
  CreateOne(*s, U(2));
  auto commit = [&](const Uuid& u, uint64_t gen, uint64_t seq) {
    CommitRequest c;
    c.uuid = u;
    c.write[BlobKind::kSavestate] = Fill(16, uint8_t(seq));
    c.record = CommandRecord{seq, Fill(32, 1), Fill(10, 2), false};
    c.expected_generation = gen;
    auto r = s->CommitSync(std::move(c));
    ASSERT_TRUE(r.ok()) << r.status().message();
  };
  auto groups = [&] { return s->GetStatus()->commit_groups; };
  commit(U(1), 1, 5);
  const uint64_t before = groups();
  ASSERT_TRUE(s->MarkDelivered(U(1), 5).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(groups(), before) << "the mark committed a group of its own";
  EXPECT_FALSE(s->Load(U(1))->last_record->delivered);
  commit(U(2), 1, 1);  // another instance's commit carries the mark
  EXPECT_EQ(groups(), before + 1);
  EXPECT_TRUE(s->Load(U(1))->last_record->delivered);
  EXPECT_FALSE(s->Load(U(2))->last_record->delivered);

  ASSERT_TRUE(s->MarkDelivered(U(2), 1).ok());
  s.reset();  // closing applies it
  s = Open();
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->Load(U(2))->last_record->delivered);
}

// Backup() copies 128 pages per step and lets commits run between steps;
// the copy must still be one consistent database: every instance loads,
// its blob sealed for the generation its row names.
TEST_F(StoreTest, BackupTakenWhileCommitsRunIsConsistent) {
  auto s = Open();
  ASSERT_TRUE(s);
  constexpr int kN = 200;
  CreateRange(*s, 0, kN, 16 << 10);  // ~800 pages: several steps
  std::atomic<bool> backing_up{true};
  std::atomic<int> commits{0};
  std::thread writer([&] {  // one commit per instance, generation 1 -> 2, while the backup runs
    for (int i = 0; i < kN && backing_up; ++i) {
      CommitRequest c;
      c.uuid = U(i);
      c.write[BlobKind::kSavestate] = Fill(4096, uint8_t(i));
      c.expected_generation = 1;
      auto r = s->CommitSync(std::move(c));
      ASSERT_TRUE(r.ok()) << r.status().message();
      ++commits;
    }
  });
  const std::string bdir = dir_.Sub("backup");
  std::filesystem::create_directories(bdir);
  Status st = s->Backup(bdir + "/" + kStoreDbName);
  backing_up = false;
  writer.join();
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_GT(commits.load(), 0);
  StoreOptions o = Opts();
  o.state_dir = bdir;
  o.runtime_dir = dir_.Sub("run2");
  auto b = OpenStoreWithKey(o, Master());
  ASSERT_TRUE(b.ok()) << b.status().message();
  for (int i = 0; i < kN; ++i) {
    auto l = (*b)->Load(U(i));
    ASSERT_TRUE(l.ok()) << i << ": " << l.status().message();
    EXPECT_EQ(l->permanent, Fill(16 << 10, uint8_t(i)));
    // Committed before the backup ended, or not at all.
    EXPECT_EQ(l->generation == 2, l->savestate.has_value()) << i;
  }
}

}  // namespace
}  // namespace vtpm
