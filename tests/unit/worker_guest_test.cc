// The pieces of a worker serving its guest that need no guest: the frames
// of the guest protocol (worker_protocol.h), the rule that decides a
// command changed nothing (TpmBaseline, worker_guest.h) and the flight
// record's volatile slots (worker_flight.h).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tpm/worker_flight.h"

#include "tpm/worker_guest.h"
#include "tpm/worker_protocol.h"

namespace vtpm {
namespace {

Bytes B(std::initializer_list<uint8_t> v) { return Bytes(v); }

WorkerReply Reply(Bytes volatile_state, std::vector<BlobChange> changes = {}) {
  WorkerReply r;
  r.response = B({0x00, 0xC4, 0, 0, 0, 10, 0, 0, 0, 0});
  r.volatile_state = std::move(volatile_state);
  r.changes = std::move(changes);
  return r;
}

TEST(GuestProtocol, FramesRoundTripAndRefuseTrailingBytes) {
  WorkerRequest rel;
  rel.type = WorkerMsg::kRelease;
  rel.command = B({0x00, 0xC4, 0, 0, 0, 10, 0, 0, 0, 0});
  rel.mark = Bytes(28, 7);
  rel.settled = true;
  Bytes frame = EncodeRequest(rel);
  auto back = DecodeRequest(ByteView(frame).subspan(4));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->type, WorkerMsg::kRelease);
  EXPECT_EQ(back->command, rel.command);
  EXPECT_EQ(back->mark, rel.mark);
  EXPECT_TRUE(back->settled);
  frame.push_back(0);
  EXPECT_FALSE(DecodeRequest(ByteView(frame).subspan(4)).ok());
  frame.pop_back();
  frame.back() = 2;  // settled is 0 or 1
  EXPECT_FALSE(DecodeRequest(ByteView(frame).subspan(4)).ok());

  WorkerReply ex = Reply(B({1, 2, 3}), {{BlobKind::kPermanent, B({9})}});
  ex.type = WorkerMsg::kGuestExecuted;
  ex.request = B({0x00, 0xC1, 0, 0, 0, 10, 0, 0, 0, 0x15});
  ex.locality = 0;
  Bytes ef = EncodeReply(ex);
  auto eb = DecodeReply(ByteView(ef).subspan(4));
  ASSERT_TRUE(eb.ok()) << eb.status().ToString();
  EXPECT_EQ(eb->request, ex.request);
  EXPECT_EQ(eb->response, ex.response);
  EXPECT_EQ(eb->changes, ex.changes);
  EXPECT_EQ(eb->volatile_state, ex.volatile_state);
  EXPECT_TRUE(IsGuestFrame(eb->type));

  WorkerReply rej;
  rej.type = WorkerMsg::kGuestRejected;
  rej.code = 0x19;
  rej.header_length = 4089;
  rej.message = std::string(300, 'x');  // longer than a rejection's reason may be
  Bytes rf = EncodeReply(rej);
  EXPECT_FALSE(DecodeReply(ByteView(rf).subspan(4)).ok());
}

// design §2 "Workers outlive the daemon": kAdopt and kAdopted, and the
// digest both sides compare.
TEST(GuestProtocol, AdoptFramesRoundTripAndTheDigestTellsStatesApart) {
  WorkerRequest adopt;
  adopt.type = WorkerMsg::kAdopt;
  adopt.nonce = Bytes(16, 0xab);
  Bytes af = EncodeRequest(adopt);
  auto ab = DecodeRequest(ByteView(af).subspan(4));
  ASSERT_TRUE(ab.ok()) << ab.status().ToString();
  EXPECT_EQ(ab->type, WorkerMsg::kAdopt);
  EXPECT_EQ(ab->nonce, adopt.nonce);
  adopt.nonce = Bytes(kMaxNonce + 1, 1);
  af = EncodeRequest(adopt);
  EXPECT_FALSE(DecodeRequest(ByteView(af).subspan(4)).ok()) << "a nonce over kMaxNonce";

  TpmBaseline b;
  WorkerRequest init;
  init.type = WorkerMsg::kInit;
  init.permanent = B({1, 2});
  b.Init(init);
  WorkerRequest nonce;
  nonce.nonce = B({7, 7});
  WorkerReply unsettled = AdoptedReply(nonce, b, 0);
  EXPECT_TRUE(unsettled.state_digest.empty()) << "no digest before the volatile state is settled";
  b.settled_volatile = B({5});
  WorkerReply r = AdoptedReply(nonce, b, kAdoptedGuestFrameFollows);
  Bytes rf = EncodeReply(r);
  auto rb = DecodeReply(ByteView(rf).subspan(4));
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  EXPECT_EQ(rb->type, WorkerMsg::kAdopted);
  EXPECT_EQ(rb->nonce, nonce.nonce);
  EXPECT_EQ(rb->adopted_flags, kAdoptedGuestFrameFollows);
  EXPECT_EQ(rb->state_digest, TpmStateDigest(B({1, 2}), std::nullopt, B({5})));
  EXPECT_FALSE(IsGuestFrame(rb->type));
  rf.back() = 4;  // an unknown flag
  EXPECT_FALSE(DecodeReply(ByteView(rf).subspan(4)).ok());

  // Each blob, its presence and where one ends count.
  const Bytes d = TpmStateDigest(B({1, 2}), std::nullopt, B({5}));
  EXPECT_EQ(d.size(), 32u);
  EXPECT_NE(d, TpmStateDigest(B({1, 2}), std::nullopt, B({6})));
  EXPECT_NE(d, TpmStateDigest(B({1, 2}), Bytes(), B({5})));
  EXPECT_NE(d, TpmStateDigest(B({1}), B({2}), B({5})));
  EXPECT_NE(d, TpmStateDigest(B({1, 2}), std::nullopt, std::nullopt));
}

TEST(TpmBaseline, KeptNothingOnlyWhenSettledAndNoBlobDiffers) {
  TpmBaseline b;
  WorkerRequest init;
  init.type = WorkerMsg::kInit;
  init.permanent = B({1});
  b.Init(init);
  EXPECT_FALSE(b.KeptNothing(Reply(B({5})))) << "nothing is settled before the daemon says so";
  b.settled_volatile = B({5});
  EXPECT_TRUE(b.KeptNothing(Reply(B({5}))));
  EXPECT_TRUE(b.KeptNothing(Reply(B({5}), {{BlobKind::kPermanent, B({1})}}))) << "libtpms rewrote it unchanged";
  EXPECT_FALSE(b.KeptNothing(Reply(B({6})))) << "the volatile state moved (an extend)";
  EXPECT_FALSE(b.KeptNothing(Reply(B({5}), {{BlobKind::kPermanent, B({2})}}))) << "an NV write";
  EXPECT_FALSE(b.KeptNothing(Reply(B({5}), {{BlobKind::kSavestate, B({3})}}))) << "a savestate appeared";
  EXPECT_FALSE(b.KeptNothing(Reply(B({5}), {{BlobKind::kPermanent, std::nullopt}}))) << "deleted";
  // A reply's changes become the committed blobs, and unsettle the volatile state.
  b.Apply(Reply(B({6}), {{BlobKind::kPermanent, B({2})}, {BlobKind::kSavestate, B({3})}}));
  EXPECT_FALSE(b.KeptNothing(Reply(B({6}))));
  b.settled_volatile = B({6});
  EXPECT_TRUE(b.KeptNothing(Reply(B({6}), {{BlobKind::kPermanent, B({2})}, {BlobKind::kSavestate, B({3})}})));
  EXPECT_FALSE(b.KeptNothing(Reply(B({6}), {{BlobKind::kSavestate, std::nullopt}})));
}

VolatileSlot Slot(uint64_t sequence, size_t state_size = 2048) {
  VolatileSlot s;
  s.sequence = sequence;
  s.request_digest = Bytes(32, uint8_t(sequence));
  s.response = B({0x00, 0xC4, 0, 0, 0, 10, 0, 0, 0, 0});
  s.volatile_state = Bytes(state_size, uint8_t(sequence * 7));
  return s;
}

TEST(VolatileSlot, RoundTripsAndRefusesWhatNoWorkerWrites) {
  const VolatileSlot s = Slot(9);
  const Bytes enc = EncodeVolatileSlot(s);
  auto back = DecodeVolatileSlot(enc);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->sequence, 9u);
  EXPECT_EQ(back->request_digest, s.request_digest);
  EXPECT_EQ(back->response, s.response);
  EXPECT_EQ(back->volatile_state, s.volatile_state);
  for (size_t cut = 1; cut < enc.size(); cut += 97)
    EXPECT_FALSE(DecodeVolatileSlot(ByteView(enc.data(), enc.size() - cut)).ok()) << cut;
  Bytes trailing = enc;
  trailing.push_back(0);
  EXPECT_FALSE(DecodeVolatileSlot(trailing).ok());
  VolatileSlot odd = s;
  odd.request_digest.resize(31);
  EXPECT_FALSE(DecodeVolatileSlot(EncodeVolatileSlot(odd)).ok()) << "a digest is 32 bytes or none";
  odd = s;
  odd.response.resize(kMaxPacket + 1);
  EXPECT_FALSE(DecodeVolatileSlot(EncodeVolatileSlot(odd)).ok()) << "a response longer than a packet";
  odd = s;
  odd.volatile_state.clear();
  EXPECT_FALSE(DecodeVolatileSlot(EncodeVolatileSlot(odd)).ok()) << "no volatile state";
  odd = s;
  odd.request_digest.clear();
  odd.response.clear();
  EXPECT_TRUE(DecodeVolatileSlot(EncodeVolatileSlot(odd)).ok()) << "a state with no command record";
}

// The worker writes only while the daemon grants the lease; what the
// daemon reads after revoking never changes; PutSlot grants.
TEST(FlightSlots, TheWorkerWritesOnlyWhileGrantedAndARevokedSlotStays) {
  auto daemon_side = FlightPage::Create();
  ASSERT_TRUE(daemon_side.ok()) << daemon_side.status().ToString();
  FlightPage& d = *daemon_side;
  auto worker_side = FlightPage::Map(d.fd());
  ASSERT_TRUE(worker_side.ok());
  FlightPage& w = *worker_side;

  auto empty = d.ReadSlot();
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->has_value());
  EXPECT_FALSE(w.WriteSlot(EncodeVolatileSlot(Slot(1)), 1)) << "written before any grant";
  ASSERT_TRUE(d.PutSlot(Slot(4), /*grant=*/true));
  EXPECT_TRUE(d.granted());
  EXPECT_EQ(w.SlotSequence(), 4u);
  ASSERT_TRUE(w.WriteSlot(EncodeVolatileSlot(Slot(5)), 5));
  ASSERT_TRUE(w.WriteSlot(EncodeVolatileSlot(Slot(6)), 6));
  EXPECT_EQ(w.SlotSequence(), 6u);
  w.SetResponded(6);
  EXPECT_EQ(d.responded(), 6u);
  d.Revoke();
  EXPECT_FALSE(d.granted());
  EXPECT_FALSE(w.WriteSlot(EncodeVolatileSlot(Slot(7)), 7)) << "written after the revoke";
  auto read = d.ReadSlot();
  ASSERT_TRUE(read.ok() && read->has_value());
  EXPECT_EQ((*read)->sequence, 6u);
  EXPECT_EQ((*read)->volatile_state, Slot(6).volatile_state);
  // Too big for a slot: neither side writes it, and the current one stays.
  EXPECT_FALSE(d.PutSlot(Slot(8, kVolatileSlotCapacity), true));
  EXPECT_FALSE(d.granted());
  ASSERT_TRUE(d.PutSlot(Slot(8), true));
  EXPECT_FALSE(w.WriteSlot(EncodeVolatileSlot(Slot(9, kVolatileSlotCapacity)), 9));
  EXPECT_EQ((*d.ReadSlot())->sequence, 8u);
  // A worker caught writing: the daemon revokes, puts nothing over it, and
  // the worker's write does not become current.
  FlightSlots& raw = d.record().slots;
  const uint64_t lease = raw.lease.load();
  raw.lease.store((lease & ~uint64_t(3)) | 2);
  EXPECT_FALSE(d.PutSlot(Slot(10), true));
  EXPECT_EQ(raw.lease.load() & 3, 0u) << "left revoked";
  EXPECT_EQ((*d.ReadSlot())->sequence, 8u);
  // Bytes no worker would write are refused, not trusted.
  raw.slot[(raw.lease.load() >> 2) & 1].bytes[8] = 7;  // a digest length of 7
  EXPECT_FALSE(d.ReadSlot().ok());
}

// A reader never gets a torn slot while the worker rewrites them as fast
// as it can: each state read is the one of its sequence.
TEST(FlightSlots, ReadsWhileTheWorkerWritesAreNeverTorn) {
  auto d = FlightPage::Create();
  ASSERT_TRUE(d.ok());
  auto w = FlightPage::Map(d->fd());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(d->PutSlot(Slot(1, 1024 + 1), true));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint64_t seq = 2; !stop.load(); ++seq)
      if (!w->WriteSlot(EncodeVolatileSlot(Slot(seq, 1024 + seq % 4096)), seq)) break;
  });
  int reads = 0, busy = 0;
  for (int i = 0; i < 20000; ++i) {
    auto r = d->ReadSlot();
    if (!r.ok()) {
      ASSERT_EQ(r.status().code(), Code::kBusy) << r.status().ToString();
      ++busy;
      continue;
    }
    ASSERT_TRUE(r->has_value());
    const VolatileSlot& s = **r;
    ASSERT_EQ(s.volatile_state, Slot(s.sequence, 1024 + s.sequence % 4096).volatile_state) << "torn at " << s.sequence;
    ++reads;
  }
  stop = true;
  writer.join();
  EXPECT_GT(reads, 0) << busy << " reads found the slot busy";
}

}  // namespace
}  // namespace vtpm
