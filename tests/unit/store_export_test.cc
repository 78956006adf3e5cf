// Migration between hosts (design §6d): the export file codec, sealing and
// opening between two host identities, and the store's Import / MarkMoved /
// HostKeys on the SQLite store.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "host_tpm_swtpm.h"
#include "store/export_codec.h"
#include "store/migration.h"
#include "store/open_store.h"

namespace vtpm {
namespace {

using testing::TempDir;

HostIdentity NewHost() {
  auto secret = HostIdentity::NewSecret();
  EXPECT_TRUE(secret.ok());
  auto id = HostIdentity::FromSecret(std::move(secret).value());
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  return std::move(id).value();
}

PeerKey Peer(const HostIdentity& h, const std::string& name) {
  auto k = ParseHostKeyLine(h.PublicLine() + "\n");
  EXPECT_TRUE(k.ok()) << k.status().ToString();
  k->name = name;
  return *k;
}

ExportBundle Bundle() {
  ExportBundle b;
  b.created = 1700000000;
  b.auto_created = true;
  b.ek_public = Bytes(284, 0xEE);
  b.permanent = Bytes(3000, 0x11);
  b.savestate = Bytes(10, 0x22);
  b.volatile_blob = Bytes(2000, 0x33);
  SuspendCapture c;
  c.handle.fill(0xAB);
  c.domid = 30;
  c.sequence = 77;
  c.captured_at = 1700000100;
  b.suspend = c;
  return b;
}

Uuid TestUuid() { return Uuid::Parse("3a7c5e10-9b2d-4f8e-a6c4-1d2e3f4a5b6c").value(); }

class ExportTest : public ::testing::Test {
 protected:
  HostIdentity a_ = NewHost(), b_ = NewHost();
  Bytes Seal(ExportHeader* h = nullptr) {
    auto f = a_.SealExport(Peer(b_, "b"), TestUuid(), Bundle(), h);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return f.ok() ? *f : Bytes{};
  }
};

TEST_F(ExportTest, HostKeyLineRoundTripsAndRejectsJunk) {
  const std::string line = a_.PublicLine();
  EXPECT_EQ(line.rfind("vtpmmgrd-host-key 1 ", 0), 0u);
  auto k = ParseHostKeyLine(line);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->sign_pub, a_.sign_pub());
  EXPECT_EQ(k->kx_pub, a_.kx_pub());
  EXPECT_FALSE(ParseHostKeyLine(line.substr(0, line.size() - 1)).ok());
  EXPECT_FALSE(ParseHostKeyLine("vtpmmgrd-host-key 2" + line.substr(19)).ok());
  EXPECT_FALSE(ParseHostKeyLine(line + " x").ok());
  // The same secret gives the same identity (the store keeps the secret).
  auto again = HostIdentity::FromSecret(a_.secret().Clone());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->PublicLine(), line);
}

TEST_F(ExportTest, SealOpenRoundTripAndCodecReencodes) {
  ExportHeader h;
  Bytes file = Seal(&h);
  auto parsed = ParseExportFile(file);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(EncodeExportFile(*parsed), file);
  EXPECT_EQ(parsed->header.export_id, h.export_id);
  EXPECT_EQ(parsed->header.uuid, TestUuid());

  auto opened = b_.OpenExport({Peer(a_, "host-a")}, file);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->peer, "host-a");
  EXPECT_EQ(opened->header.uuid, TestUuid());
  const ExportBundle want = Bundle();
  EXPECT_EQ(opened->bundle.permanent, want.permanent);
  EXPECT_EQ(opened->bundle.savestate, want.savestate);
  EXPECT_EQ(opened->bundle.volatile_blob, want.volatile_blob);
  EXPECT_EQ(opened->bundle.ek_public, want.ek_public);
  EXPECT_TRUE(opened->bundle.auto_created);
  EXPECT_EQ(opened->bundle.created, want.created);
  ASSERT_TRUE(opened->bundle.suspend);
  EXPECT_EQ(opened->bundle.suspend->domid, 30u);
  EXPECT_EQ(opened->bundle.suspend->handle, want.suspend->handle);
  EXPECT_EQ(EncodeExportBundle(opened->bundle), EncodeExportBundle(want));

  ExportBundle minimal;
  minimal.permanent = {1};
  auto round = ParseExportBundle(EncodeExportBundle(minimal));
  ASSERT_TRUE(round.ok());
  EXPECT_FALSE(round->savestate || round->volatile_blob || round->suspend);
}

TEST_F(ExportTest, EveryFlippedByteFails) {
  Bytes file = Seal();
  const std::vector<PeerKey> peers = {Peer(a_, "host-a")};
  for (size_t i = 0; i < file.size(); ++i) {
    Bytes bad = file;
    bad[i] ^= 0x01;
    auto r = b_.OpenExport(peers, bad);
    ASSERT_FALSE(r.ok()) << "byte " << i << " of " << file.size();
  }
}

TEST_F(ExportTest, WrongReceiverOrUnknownSenderFails) {
  Bytes file = Seal();
  HostIdentity c = NewHost();
  auto wrong = c.OpenExport({Peer(a_, "host-a")}, file);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), Code::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("another host"), std::string::npos);
  auto unknown = b_.OpenExport({Peer(c, "host-c")}, file);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Code::kPermissionDenied);
  // A sender key listed under the name of a host whose X25519 key differs
  // still verifies: only the signing key names the sender.
  auto none = b_.OpenExport({}, file);
  EXPECT_EQ(none.status().code(), Code::kPermissionDenied);
}

TEST_F(ExportTest, TruncationAndTrailingBytesFail) {
  Bytes file = Seal();
  for (size_t n : {size_t(0), size_t(7), size_t(8), kExportHeaderBytes - 1, kExportHeaderBytes,
                   kExportHeaderBytes + 4, file.size() - 1}) {
    Bytes cut(file.begin(), file.begin() + n);
    EXPECT_FALSE(ParseExportFile(cut).ok()) << n;
    EXPECT_FALSE(b_.OpenExport({Peer(a_, "a")}, cut).ok()) << n;
  }
  Bytes nil = file;  // the uuid's bytes: 8 magic, 1 version, 16 id, 32 + 32 keys
  std::fill(nil.begin() + 89, nil.begin() + 105, 0);
  EXPECT_FALSE(ParseExportFile(nil).ok());
  Bytes longer = file;
  longer.push_back(0);
  EXPECT_FALSE(ParseExportFile(longer).ok());
  Bytes bundle = EncodeExportBundle(Bundle());
  bundle.push_back(0);
  EXPECT_FALSE(ParseExportBundle(bundle).ok());
  bundle.resize(bundle.size() - 2);
  EXPECT_FALSE(ParseExportBundle(bundle).ok());
}

TEST(PeersDir, LoadsNamedFilesAndRefusesMalformedOnes) {
  TempDir dir;
  const std::string peers = dir.Sub("peers");
  auto missing = LoadPeers(peers);
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(missing->empty());
  std::filesystem::create_directory(peers);
  HostIdentity h = NewHost();
  std::ofstream(peers + "/host-b") << h.PublicLine() << "\n";
  std::ofstream(peers + "/.hidden") << "junk\n";
  auto list = LoadPeers(peers);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "host-b");
  EXPECT_EQ((*list)[0].sign_pub, h.sign_pub());
  std::ofstream(peers + "/broken") << "vtpmmgrd-host-key 1 abc\n";
  auto bad = LoadPeers(peers);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("broken"), std::string::npos);
  EXPECT_TRUE(ValidPeerName("host-b.example_1"));
  EXPECT_FALSE(ValidPeerName("../x"));
  EXPECT_FALSE(ValidPeerName(".x"));
  EXPECT_FALSE(ValidPeerName(""));
}

class StoreMigrationTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> Open() {
    StoreOptions o;
    o.state_dir = dir_.Sub("state");
    o.runtime_dir = dir_.Sub("run");
    SecretBytes k(32);
    std::fill(k.data(), k.data() + 32, 7);
    auto s = OpenStoreWithKey(o, std::move(k));
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  ImportRequest Request(const std::string& id) {
    ImportRequest r;
    r.meta.uuid = TestUuid();
    r.meta.created = 1700000000;
    r.meta.ek_public = {1, 2, 3};
    r.blobs = {{BlobKind::kPermanent, Bytes(50, 1)}, {BlobKind::kVolatile, Bytes(40, 3)}};
    SuspendCapture c;
    c.handle.fill(9);
    c.domid = 4;
    r.suspend = c;
    r.export_id = id;
    r.peer = "host-a";
    return r;
  }
  TempDir dir_;
};

TEST_F(StoreMigrationTest, HostKeysAreMadeOnceAndKeptSealed) {
  std::string line;
  {
    auto s = Open();
    ASSERT_TRUE(s);
    int made = 0;
    auto make = [&]() -> Result<SecretBytes> {
      ++made;
      return HostIdentity::NewSecret();
    };
    auto k1 = s->HostKeys(make);
    auto k2 = s->HostKeys(make);
    ASSERT_TRUE(k1.ok() && k2.ok());
    EXPECT_EQ(made, 1);
    EXPECT_TRUE(std::equal(k1->view().begin(), k1->view().end(), k2->view().begin(), k2->view().end()));
    line = HostIdentity::FromSecret(std::move(k1).value())->PublicLine();
  }
  auto s = Open();  // reopened: the same keys
  auto k = s->HostKeys([]() -> Result<SecretBytes> { return Status(Code::kInternal, "must not be called"); });
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(HostIdentity::FromSecret(std::move(k).value())->PublicLine(), line);
}

TEST_F(StoreMigrationTest, ImportStoresInstanceWithCaptureOnceAndMovedTombstones) {
  auto s = Open();
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Import(Request("00aa")).ok());
  auto l = s->Load(TestUuid());
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->generation, 1u);
  EXPECT_EQ(l->permanent, Bytes(50, 1));
  ASSERT_TRUE(l->volatile_copy);
  ASSERT_TRUE(l->suspend);
  EXPECT_EQ(l->suspend->domid, 4u);
  EXPECT_EQ(l->meta.created, 1700000000);

  auto again = s->Import(Request("00aa"));
  EXPECT_EQ(again.code(), Code::kAlreadyExists);
  EXPECT_NE(again.message().find("export 00aa from host-a was already imported at"), std::string::npos)
      << again.message();
  EXPECT_EQ(s->Import(Request("00bb")).code(), Code::kAlreadyExists);  // the uuid exists

  EXPECT_EQ(s->MarkMoved({TestUuid(), "host-b", 1700000200, "00cc"}, 2).code(), Code::kFailedPrecondition);
  ASSERT_TRUE(s->MarkMoved({TestUuid(), "host-b", 1700000200, "00cc"}, 1).ok());
  EXPECT_EQ(s->Load(TestUuid()).status().code(), Code::kNotFound);
  auto moved = s->ListMoved();
  ASSERT_TRUE(moved.ok());
  ASSERT_EQ(moved->size(), 1u);
  EXPECT_EQ((*moved)[0].peer, "host-b");
  EXPECT_EQ((*moved)[0].moved_at, 1700000200);
  EXPECT_EQ((*moved)[0].export_id, "00cc");

  // Moving back: a new export imports and the tombstone goes.
  ASSERT_TRUE(s->Import(Request("00dd")).ok());
  EXPECT_TRUE(s->ListMoved()->empty());
  EXPECT_TRUE(s->Load(TestUuid()).ok());
}

}  // namespace
}  // namespace vtpm
