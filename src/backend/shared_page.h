// The vTPM shared page (Xen tpmif "protocol v2"): an 8-byte header
//   u32 length | u8 state | u8 locality | u8 pad | u8 nr_extra_pages
// in host byte order, then nr_extra_pages grant refs, then the packet at
// offset 8 + 4*nr_extra_pages. The page is guest memory: it is read once
// into a snapshot, validated, and the command copied out before parsing.
#pragma once

#include <cstdint>
#include <variant>

#include "common/bytes.h"

namespace vtpm {

inline constexpr size_t kPageSize = 4096;
inline constexpr size_t kPageHeaderSize = 8;
inline constexpr size_t kMaxPacket = kPageSize - kPageHeaderSize;  // 4088

enum class PageState : uint8_t { kIdle = 0, kSubmit = 1, kFinish = 2, kCancel = 3 };

struct PageHeader {
  uint32_t length;
  uint8_t state;
  uint8_t locality;
  uint8_t pad;
  uint8_t nr_extra_pages;
};

// Reads the header with acquire ordering (state last written by the guest
// before its notify). `page` points at a mapped 4096-byte page.
PageHeader SnapshotHeader(const uint8_t* page);

// A request ready for the engine.
struct PageRequest {
  uint32_t offset;   // where the packet starts (and the response goes)
  uint8_t locality;
  Bytes command;     // a private copy of the packet bytes
};

// A request the backend answers itself with a TPM error.
struct PageReject {
  uint32_t offset;   // where the error response goes
  uint32_t rc;       // TPM_RESULT
  const char* why;   // for the log
};

// Validates `hdr` (taken by SnapshotHeader) and copies the command out of
// `page`. Overflow-safe; never reads outside [page, page + 4096).
std::variant<PageRequest, PageReject> ParseRequest(const PageHeader& hdr, const uint8_t* page);

// Writes `response` at `offset` and sets length; the guest does not look
// until state=FINISH. The caller has checked offset + size <= kPageSize.
void WriteResponse(uint8_t* page, uint32_t offset, ByteView response);
// WriteResponse, then (release) state=FINISH.
void PublishResponse(uint8_t* page, uint32_t offset, ByteView response);
void PublishState(uint8_t* page, PageState state);

// Largest response that fits at `offset`.
inline size_t MaxResponseAt(uint32_t offset) { return offset >= kPageSize ? 0 : kPageSize - offset; }

}  // namespace vtpm
