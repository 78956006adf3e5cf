// A corrupt record under the real daemon (design §5: "refuses, with a precise
// error, rather than resetting"): one flipped byte in one guest's permanent
// blob; after a restart that guest's device is refused with an error naming
// its instance, the other guest carries on, and with the byte restored the
// instance comes back with its own EK - nothing was recreated over it.
// tests/fault/store_corruption_test.cc covers each stored item in the store.
#include <sqlite3.h>

#include <chrono>

#include "backend_test_util.h"
#include "fault_util.h"
#include "store/open_store.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;

// XORs byte `at` of the permanent blob (kind 1) of `uuid` with 0x20.
void FlipPermanentByte(const std::string& db_path, const std::string& uuid, size_t at) {
  auto u = Uuid::Parse(uuid);
  ASSERT_TRUE(u.ok());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT sealed FROM blobs WHERE uuid = ? AND kind = 1", -1, &q, nullptr),
            SQLITE_OK);
  sqlite3_bind_blob(q, 1, u->bytes.data(), int(u->bytes.size()), SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(q, 0));
  Bytes b(p, p + sqlite3_column_bytes(q, 0));
  sqlite3_finalize(q);
  ASSERT_LT(at, b.size());
  b[at] ^= 0x20;
  ASSERT_EQ(sqlite3_prepare_v2(db, "UPDATE blobs SET sealed = ? WHERE uuid = ? AND kind = 1", -1, &q, nullptr),
            SQLITE_OK);
  sqlite3_bind_blob(q, 1, b.data(), int(b.size()), SQLITE_TRANSIENT);
  sqlite3_bind_blob(q, 2, u->bytes.data(), int(u->bytes.size()), SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(q), SQLITE_DONE);
  sqlite3_finalize(q);
  ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
}

TEST_F(BackendSimTest, CorruptPermanentBlobRefusesOnlyThatGuestAndIsNeverRecreated) {
  const std::string victim = FaultUuid(0xfa200000, 0), other = FaultUuid(0xfa200000, 1);
  StartLibtpmsDaemon();
  CreateDomain(130, victim);
  CreateDomain(131, other);
  GuestFrontend& a = Guest(130);
  GuestFrontend& b = Guest(131);
  ASSERT_TRUE(a.Connect().ok());
  ASSERT_TRUE(b.Connect().ok());
  auto ek_rsp = a.Transmit(tpm12::ReadPubek(tpm12auth::RandomNonce()), 30s);
  ASSERT_TRUE(ek_rsp.ok());
  auto ek = tpm12::PubkeyFromEkResponse(*ek_rsp);
  ASSERT_TRUE(ek.has_value());

  auto ws = daemon().Stop();
  ASSERT_TRUE(ws.ok());
  const std::string db = daemon().state_dir() + "/" + kStoreDbName;
  FlipPermanentByte(db, victim, 100);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(daemon().Start().ok()) << daemon().Log();

  // The other guest does not notice.
  auto rb = b.Transmit(tpm12::PcrRead(0), 30s);
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  EXPECT_EQ(tpm12::ResponseCode(*rb), tpm12::kSuccess);
  // The victim's device is refused, and the error names the instance.
  const std::string err = "/local/domain/0/error/backend/vtpm/130/0/error";
  auto until = std::chrono::steady_clock::now() + 10s;
  while (!Node(err) && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
  auto e = Node(err);
  ASSERT_TRUE(e.has_value()) << "no refusal recorded for the corrupt instance\n" << daemon().Log();
  std::cout << "refusal: " << *e << "\n";
  EXPECT_NE(e->find(victim), std::string::npos) << *e;
  EXPECT_EQ(Node(Toolstack::BackendPath(130, 0) + "/state"), "6");
  EXPECT_NE(daemon().Log().find(victim), std::string::npos);

  // Byte restored, domain re-created with the same uuid: the same TPM.
  ASSERT_TRUE(daemon().Stop().ok());
  FlipPermanentByte(db, victim, 100);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(daemon().Start().ok()) << daemon().Log();
  auto x = ts().Destroy(130);
  ASSERT_TRUE(x.status.ok()) << x.Report();
  CreateDomain(132, victim);
  GuestFrontend& a2 = Guest(132);
  ASSERT_TRUE(a2.Connect().ok());
  auto ek2 = a2.Transmit(tpm12::ReadPubek(tpm12auth::RandomNonce()), 30s);
  ASSERT_TRUE(ek2.ok());
  EXPECT_EQ(tpm12::PubkeyFromEkResponse(*ek2), ek) << "the instance was recreated";
}

}  // namespace
}  // namespace vtpm::sim
