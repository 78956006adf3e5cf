// The shared-page parser against every header case of xen-vtpm-protocol.md §1.
#include "backend/shared_page.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>

#include "backend/tpm12_wire.h"

namespace vtpm {
namespace {

struct Page {
  alignas(4096) std::array<uint8_t, kPageSize> bytes{};
  void SetHeader(uint32_t length, uint8_t state, uint8_t locality = 0, uint8_t nr_extra = 0) {
    std::memcpy(bytes.data(), &length, 4);
    bytes[4] = state;
    bytes[5] = locality;
    bytes[6] = 0;
    bytes[7] = nr_extra;
  }
  // A TPM command of `size` bytes (consistent paramSize) at `offset`.
  void PutCommand(uint32_t offset, uint32_t size, uint8_t fill = 0xAB) {
    std::memset(bytes.data() + offset, fill, size);
    StoreBe16(bytes.data() + offset, 0x00C1);
    StoreBe32(bytes.data() + offset + 2, size);
    StoreBe32(bytes.data() + offset + 6, 0x00000065);
  }
};

std::variant<PageRequest, PageReject> Parse(const Page& p) {
  return ParseRequest(SnapshotHeader(p.bytes.data()), p.bytes.data());
}

TEST(SharedPage, HeaderIsEightBytesInHostOrder) {
  Page p;
  p.SetHeader(0x01020304, 1, 2, 3);
  PageHeader h = SnapshotHeader(p.bytes.data());
  EXPECT_EQ(h.length, 0x01020304u);
  EXPECT_EQ(h.state, 1);
  EXPECT_EQ(h.locality, 2);
  EXPECT_EQ(h.nr_extra_pages, 3);
}

TEST(SharedPage, WellFormedRequestIsCopiedFromOffsetEight) {
  Page p;
  p.PutCommand(8, 22);
  p.SetHeader(22, 1);
  auto r = Parse(p);
  ASSERT_TRUE(std::holds_alternative<PageRequest>(r));
  auto& req = std::get<PageRequest>(r);
  EXPECT_EQ(req.offset, 8u);
  ASSERT_EQ(req.command.size(), 22u);
  EXPECT_EQ(0, std::memcmp(req.command.data(), p.bytes.data() + 8, 22));
  // The copy is private: the guest rewriting the page changes nothing.
  p.bytes[20] = 0x00;
  EXPECT_EQ(req.command[12], 0xAB);
}

TEST(SharedPage, MaximumPacketOf4088Fits) {
  Page p;
  p.PutCommand(8, 4088);
  p.SetHeader(4088, 1);
  auto r = Parse(p);
  ASSERT_TRUE(std::holds_alternative<PageRequest>(r));
  EXPECT_EQ(std::get<PageRequest>(r).command.size(), 4088u);
}

TEST(SharedPage, PacketOneByteTooLongIsRejected) {
  Page p;
  p.SetHeader(4089, 1);
  auto r = Parse(p);
  ASSERT_TRUE(std::holds_alternative<PageReject>(r));
  EXPECT_EQ(std::get<PageReject>(r).rc, tpm12::kBadParamSize);
  EXPECT_EQ(std::get<PageReject>(r).offset, 8u);
}

TEST(SharedPage, LengthNearUint32MaxDoesNotOverflow) {
  for (uint32_t len : {0xFFFFFFFFu, 0xFFFFFFF8u, 0x80000000u}) {
    Page p;
    p.SetHeader(len, 1, 0, 255);
    auto r = Parse(p);
    ASSERT_TRUE(std::holds_alternative<PageReject>(r)) << len;
    EXPECT_EQ(std::get<PageReject>(r).rc, tpm12::kBadParamSize);
  }
}

TEST(SharedPage, ShorterThanTpmHeaderIsRejected) {
  for (uint32_t len : {0u, 1u, 9u}) {
    Page p;
    p.SetHeader(len, 1);
    auto r = Parse(p);
    ASSERT_TRUE(std::holds_alternative<PageReject>(r)) << len;
    EXPECT_EQ(std::get<PageReject>(r).rc, tpm12::kBadParamSize);
  }
}

TEST(SharedPage, ExtraPagesMovePayloadOffset) {
  Page p;
  p.PutCommand(8 + 4 * 3, 30);
  p.SetHeader(30, 1, 0, 3);
  auto r = Parse(p);
  ASSERT_TRUE(std::holds_alternative<PageRequest>(r));
  EXPECT_EQ(std::get<PageRequest>(r).offset, 20u);
  EXPECT_EQ(MaxResponseAt(20), 4076u);
}

TEST(SharedPage, ExtraPagesPushingPayloadPastPageAreRejected) {
  Page p;
  p.SetHeader(4088, 1, 0, 1);  // offset 12 + 4088 > 4096
  auto r = Parse(p);
  ASSERT_TRUE(std::holds_alternative<PageReject>(r));
  EXPECT_EQ(std::get<PageReject>(r).offset, 12u);
  Page q;
  q.SetHeader(3068, 1, 0, 255);  // offset 1028 + 3068 = 4096: fits exactly
  q.PutCommand(1028, 3068);
  EXPECT_TRUE(std::holds_alternative<PageRequest>(Parse(q)));
}

TEST(SharedPage, ParamSizeDisagreeingWithLengthIsRejected) {
  Page p;
  p.PutCommand(8, 30);
  p.SetHeader(22, 1);  // header says 30, page length 22
  auto r = Parse(p);
  ASSERT_TRUE(std::holds_alternative<PageReject>(r));
  EXPECT_EQ(std::get<PageReject>(r).rc, tpm12::kBadParamSize);
}

TEST(SharedPage, LocalityIsReported) {
  Page p;
  p.PutCommand(8, 10);
  p.SetHeader(10, 1, 4);
  auto r = Parse(p);
  ASSERT_TRUE(std::holds_alternative<PageRequest>(r));
  EXPECT_EQ(std::get<PageRequest>(r).locality, 4);
}

TEST(SharedPage, PublishResponseSetsLengthThenFinish) {
  Page p;
  p.SetHeader(22, 1);
  Bytes rsp = tpm12::ErrorResponse(tpm12::kSize);
  PublishResponse(p.bytes.data(), 8, rsp);
  PageHeader h = SnapshotHeader(p.bytes.data());
  EXPECT_EQ(h.state, uint8_t(PageState::kFinish));
  EXPECT_EQ(h.length, 10u);
  EXPECT_EQ(0, std::memcmp(p.bytes.data() + 8, rsp.data(), rsp.size()));
  PublishState(p.bytes.data(), PageState::kIdle);
  EXPECT_EQ(SnapshotHeader(p.bytes.data()).state, 0);
}

TEST(Tpm12Wire, ErrorResponseIsWellFormed) {
  Bytes r = tpm12::ErrorResponse(tpm12::kBadParamSize);
  ASSERT_EQ(r.size(), 10u);
  EXPECT_EQ(LoadBe16(r.data()), 0x00C4);
  EXPECT_EQ(tpm12::ParamSize(r), 10u);
  EXPECT_EQ(LoadBe32(r.data() + 6), 0x19u);
  EXPECT_EQ(tpm12::ParamSize(Bytes{1, 2, 3}), 0u);
}

}  // namespace
}  // namespace vtpm
