// Encryption, envelope binding and record encodings of the store.
#include <gtest/gtest.h>

#include "store/aead.h"
#include "store/envelope.h"
#include "store/record_codec.h"
#include "store/refusal.h"

namespace vtpm {
namespace {

SecretBytes Key(uint8_t fill) {
  SecretBytes k(32);
  for (size_t i = 0; i < k.size(); ++i) k.data()[i] = uint8_t(fill + i);
  return k;
}

Uuid U(uint8_t b) {
  Uuid u;
  u.bytes.fill(b);
  return u;
}

const Bytes kPlain = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

TEST(StoreAead, RoundTripAndTamper) {
  SecretBytes k = Key(1);
  Bytes aad = {9, 9};
  auto sealed = AeadSeal(k, aad, kPlain);
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->size(), kPlain.size() + kAeadOverhead);
  auto back = AeadOpen(k, aad, *sealed);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(*back, kPlain);
  for (size_t i = 0; i < sealed->size(); ++i) {  // every single flipped byte is caught
    Bytes bad = *sealed;
    bad[i] ^= 0x01;
    auto r = AeadOpen(k, aad, bad);
    ASSERT_FALSE(r.ok()) << "byte " << i;
    EXPECT_EQ(r.status().code(), Code::kCorruption);
  }
  EXPECT_FALSE(AeadOpen(Key(2), aad, *sealed).ok());
  EXPECT_FALSE(AeadOpen(k, Bytes{9, 8}, *sealed).ok());
  EXPECT_EQ(AeadOpen(k, aad, Bytes(5)).status().code(), Code::kCorruption);
}

TEST(StoreAead, NoncesDiffer) {
  SecretBytes k = Key(1);
  auto a = AeadSeal(k, {}, kPlain), b = AeadSeal(k, {}, kPlain);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

TEST(StoreSecretBytes, MoveEmptiesSource) {
  SecretBytes a = Key(3);
  SecretBytes b = std::move(a);
  EXPECT_EQ(b.size(), 32u);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from state is specified
}

TEST(StoreEnvelope, BindsUuidKindAndGeneration) {
  SecretBytes k = Key(4);
  auto e = SealEnvelope(k, U(1), SealedKind::kPermanent, 7, kPlain);
  ASSERT_TRUE(e.ok());
  uint64_t gen = 0;
  auto ok = OpenEnvelope(k, U(1), SealedKind::kPermanent, *e, &gen);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(*ok, kPlain);
  EXPECT_EQ(gen, 7u);

  auto other_uuid = OpenEnvelope(k, U(2), SealedKind::kPermanent, *e);
  EXPECT_EQ(other_uuid.status().code(), Code::kCorruption);
  EXPECT_NE(other_uuid.status().message().find("bad tag"), std::string::npos);
  auto other_kind = OpenEnvelope(k, U(1), SealedKind::kSavestate, *e);
  EXPECT_EQ(other_kind.status().code(), Code::kCorruption);
  EXPECT_NE(other_kind.status().message().find("permanent blob"), std::string::npos);

  Bytes regen = *e;  // rewrite the generation in the header: AAD no longer matches
  regen[kEnvelopeHeaderBytes - 1] ^= 1;
  EXPECT_EQ(OpenEnvelope(k, U(1), SealedKind::kPermanent, regen).status().code(), Code::kCorruption);
  Bytes rekind = *e;  // relabel as savestate and ask for savestate: tag fails
  rekind[5] = uint8_t(SealedKind::kSavestate);
  EXPECT_EQ(OpenEnvelope(k, U(1), SealedKind::kSavestate, rekind).status().code(), Code::kCorruption);
}

TEST(StoreEnvelope, RefusesNewerFormatAndBadMagic) {
  SecretBytes k = Key(5);
  auto e = SealEnvelope(k, U(1), SealedKind::kRecord, 1, kPlain);
  ASSERT_TRUE(e.ok());
  Bytes newer = *e;
  newer[4] = kEnvelopeFormat + 1;
  auto r = ParseEnvelope(newer);
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("newer"), std::string::npos) << r.status().message();
  Bytes magic = *e;
  magic[0] = 'X';
  EXPECT_NE(ParseEnvelope(magic).status().message().find("magic"), std::string::npos);
  Bytes kind = *e;
  kind[5] = 99;
  EXPECT_EQ(ParseEnvelope(kind).status().code(), Code::kCorruption);
  EXPECT_EQ(ParseEnvelope(ByteView(e->data(), 10)).status().code(), Code::kCorruption);
}

TEST(StoreRecordCodec, RecordRoundTripAndTruncation) {
  CommandRecord r;
  r.sequence = 0x0102030405060708ull;
  r.request_digest = Bytes(32, 0xaa);
  r.response = Bytes(300, 0x55);
  Bytes enc = EncodeRecord(r);
  auto back = DecodeRecord(enc);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->sequence, r.sequence);
  EXPECT_EQ(back->request_digest, r.request_digest);
  EXPECT_EQ(back->response, r.response);
  for (size_t cut = 0; cut < enc.size(); ++cut)
    EXPECT_FALSE(DecodeRecord(ByteView(enc.data(), cut)).ok()) << cut;
  enc.push_back(0);
  EXPECT_FALSE(DecodeRecord(enc).ok());
}

TEST(StoreRecordCodec, VolatileRoundTrip) {
  VolatileCopy v;
  v.blob = Bytes(1000, 0x42);
  v.boot_id.fill(0x11);
  v.domid = 17;
  v.sequence = 99;
  auto back = DecodeVolatile(EncodeVolatile(v), 5);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->blob, v.blob);
  EXPECT_EQ(back->boot_id, v.boot_id);
  EXPECT_EQ(back->domid, 17u);
  EXPECT_EQ(back->sequence, 99u);
  EXPECT_EQ(back->generation, 5u);
  Bytes enc = EncodeVolatile(v);
  enc.pop_back();
  EXPECT_FALSE(DecodeVolatile(enc, 5).ok());
}

TEST(StoreRecordCodec, VolatileCarriesTheRecordOfItsCommand) {
  VolatileCopy v;
  v.blob = Bytes(64, 0x42);
  v.sequence = 12;
  v.record = CommandRecord{12, Bytes(32, 0xD1), Bytes{0x00, 0xC4, 0, 0, 0, 10, 0, 0, 0, 0}, false};
  Bytes enc = EncodeVolatile(v);
  auto back = DecodeVolatile(enc, 5);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_TRUE(back->record.has_value());
  EXPECT_EQ(back->record->sequence, 12u);
  EXPECT_EQ(back->record->request_digest, v.record->request_digest);
  EXPECT_EQ(back->record->response, v.record->response);
  for (size_t cut = 1; cut <= 4; ++cut)  // a truncated record is an error, not "no record"
    EXPECT_FALSE(DecodeVolatile(ByteView(enc.data(), enc.size() - cut), 5).ok()) << cut;
  v.record->sequence = 11;  // a record of another command than the state
  auto other = DecodeVolatile(EncodeVolatile(v), 5);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("sequence 11"), std::string::npos) << other.status().ToString();
}

TEST(StoreRecordCodec, VolatileCarriesTheDomainHandleWithOrWithoutARecord) {
  VolatileCopy v;
  v.blob = Bytes(64, 0x42);
  v.sequence = 12;
  v.handle.emplace();
  v.handle->fill(0xe1);
  for (bool with_record : {false, true}) {
    if (with_record) v.record = CommandRecord{12, Bytes(32, 0xD1), Bytes{0x00, 0xC4, 0, 0, 0, 10, 0, 0, 0, 0}, false};
    Bytes enc = EncodeVolatile(v);
    auto back = DecodeVolatile(enc, 5);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->handle, v.handle);
    EXPECT_EQ(back->record.has_value(), with_record);
    for (size_t cut = 1; cut <= 16; ++cut)  // a cut handle is an error, not "no handle"
      EXPECT_FALSE(DecodeVolatile(ByteView(enc.data(), enc.size() - cut), 5).ok()) << cut;
    enc[enc.size() - 17] = 3;  // an unknown tag
    EXPECT_FALSE(DecodeVolatile(enc, 5).ok());
  }
}

TEST(StoreRecordCodec, VolatileSaysWhetherTheWorkerMayBeAheadOfIt) {
  VolatileCopy v;
  v.blob = Bytes(64, 0x42);
  v.sequence = 12;
  v.worker_ahead = true;
  for (int variant = 0; variant < 3; ++variant) {
    if (variant == 1) v.handle.emplace().fill(0xe1);
    if (variant == 2) v.record = CommandRecord{12, Bytes(32, 0xD1), Bytes{0x00, 0xC4, 0, 0, 0, 10, 0, 0, 0, 0}, false};
    Bytes enc = EncodeVolatile(v);
    auto back = DecodeVolatile(enc, 5);
    ASSERT_TRUE(back.ok()) << variant << ": " << back.status().ToString();
    EXPECT_TRUE(back->worker_ahead) << variant;
    EXPECT_EQ(back->handle, v.handle) << variant;
    EXPECT_EQ(back->record.has_value(), variant == 2);
    Bytes twice = enc;
    twice.push_back(2);  // a tag at most once
    EXPECT_FALSE(DecodeVolatile(twice, 5).ok()) << variant;
  }
  // Tags in order only: the handle after the flag is refused.
  v.record.reset();
  Bytes enc = EncodeVolatile(v);
  ASSERT_EQ(enc.back(), 2);
  Bytes swapped(enc.begin(), enc.end() - 18);
  swapped.push_back(2);
  swapped.push_back(1);
  swapped.insert(swapped.end(), 16, 0xe1);
  EXPECT_FALSE(DecodeVolatile(swapped, 5).ok());
  v.worker_ahead = false;
  EXPECT_FALSE(DecodeVolatile(EncodeVolatile(v), 5)->worker_ahead);
}

TEST(StoreRecordCodec, SuspendCaptureRoundTripAndExactLength) {
  SuspendCapture c;
  c.handle.fill(0x9d);
  c.domid = 31;
  c.sequence = 77;
  c.captured_at = 1764790000;
  Bytes enc = EncodeSuspend(c);
  ASSERT_EQ(enc.size(), 37u);
  auto back = DecodeSuspend(enc);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->handle, c.handle);
  EXPECT_EQ(back->domid, 31u);
  EXPECT_EQ(back->sequence, 77u);
  EXPECT_EQ(back->captured_at, c.captured_at);
  for (size_t cut = 0; cut < enc.size(); ++cut)
    EXPECT_FALSE(DecodeSuspend(ByteView(enc.data(), cut)).ok()) << cut;
  enc.push_back(0);
  EXPECT_FALSE(DecodeSuspend(enc).ok());
  enc.pop_back();
  enc[0] = 2;  // a newer format is named as such
  EXPECT_EQ(DecodeSuspend(enc).status().code(), Code::kFailedPrecondition);
}

TEST(StoreRecordCodec, RespondedMarkRoundTripAndExactLength) {
  RespondedMark m;
  m.boot_id.fill(0x33);
  m.domid = 9;
  m.sequence = 1234567890123ull;
  Bytes enc = EncodeResponded(m);
  ASSERT_EQ(enc.size(), 28u);
  auto back = DecodeResponded(enc);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->boot_id, m.boot_id);
  EXPECT_EQ(back->domid, 9u);
  EXPECT_EQ(back->sequence, m.sequence);
  enc.push_back(0);
  EXPECT_FALSE(DecodeResponded(enc).ok());
  enc.resize(27);
  EXPECT_FALSE(DecodeResponded(enc).ok());
}

TEST(StoreVolatileRule, AppliesDesignRule) {
  VolatileCopy v;
  v.boot_id.fill(1);
  v.domid = 3;
  v.generation = 10;
  std::array<uint8_t, 16> boot{};
  boot.fill(1);
  std::string why;
  EXPECT_TRUE(VolatileCopyUsable(v, boot, 3, std::nullopt, 10, &why));
  EXPECT_TRUE(why.empty());
  EXPECT_FALSE(VolatileCopyUsable(v, boot, 4, std::nullopt, 10, &why));
  EXPECT_NE(why.find("domain 3"), std::string::npos);
  EXPECT_FALSE(VolatileCopyUsable(v, boot, 3, std::nullopt, 11, &why));
  EXPECT_NE(why.find("generation"), std::string::npos);
  boot.fill(2);
  EXPECT_FALSE(VolatileCopyUsable(v, boot, 3, std::nullopt, 10, &why));
  EXPECT_NE(why.find("rebooted"), std::string::npos);
  // Domain ids are not identities: a later domain with the same domid but
  // another handle does not get the copy; an unknown handle is not checked.
  boot.fill(1);
  v.handle.emplace();
  v.handle->fill(7);
  std::array<uint8_t, 16> other{};
  other.fill(8);
  EXPECT_TRUE(VolatileCopyUsable(v, boot, 3, v.handle, 10, &why));
  EXPECT_FALSE(VolatileCopyUsable(v, boot, 3, other, 10, &why));
  EXPECT_NE(why.find("earlier domain 3"), std::string::npos) << why;
  EXPECT_TRUE(VolatileCopyUsable(v, boot, 3, std::nullopt, 10, &why));
  auto id = ReadBootId();
  ASSERT_TRUE(id.ok()) << id.status().message();
  EXPECT_NE(*id, (std::array<uint8_t, 16>{}));
}

TEST(StoreRefusal, ExitStatuses) {
  EXPECT_EQ(StartExitStatus(Status::Ok()), 0);
  EXPECT_EQ(StartExitStatus(Refuse(Refusal::kDifferentTpm, "x")), 11);
  EXPECT_EQ(StartExitStatus(Refuse(Refusal::kPcrChanged, "x")), 13);
  EXPECT_EQ(StartExitStatus(Refuse(Refusal::kTpmUnavailable, "x")), 17);
  EXPECT_EQ(StartExitStatus(Status(Code::kIoError, "x")), 1);
  EXPECT_EQ(StartExitStatus(Status(Code::kFailedPrecondition, "generation")), 1);
}

}  // namespace
}  // namespace vtpm
