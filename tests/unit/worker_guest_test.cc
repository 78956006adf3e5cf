// The pieces of a worker serving its guest that need no guest: the frames
// of the guest protocol (worker_protocol.h) and the rule that decides a
// command changed nothing (TpmBaseline, worker_guest.h).
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace vtpm
