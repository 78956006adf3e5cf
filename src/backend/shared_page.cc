#include "backend/shared_page.h"

#include <atomic>
#include <cstring>

#include "backend/tpm12_wire.h"

namespace vtpm {
// Each header field is read exactly once with an atomic load: the guest can
// change the page at any time, so the compiler must not re-read it.
PageHeader SnapshotHeader(const uint8_t* page) {
  PageHeader h{};
  h.state = __atomic_load_n(page + 4, __ATOMIC_ACQUIRE);
  h.length = __atomic_load_n(reinterpret_cast<const uint32_t*>(page), __ATOMIC_RELAXED);
  h.locality = __atomic_load_n(page + 5, __ATOMIC_RELAXED);
  h.pad = __atomic_load_n(page + 6, __ATOMIC_RELAXED);
  h.nr_extra_pages = __atomic_load_n(page + 7, __ATOMIC_RELAXED);
  return h;
}

std::variant<PageRequest, PageReject> ParseRequest(const PageHeader& hdr, const uint8_t* page) {
  // nr_extra_pages is a u8, so the offset is at most 8 + 4*255 = 1028.
  const uint32_t offset = uint32_t(kPageHeaderSize) + 4u * hdr.nr_extra_pages;
  const uint64_t end = uint64_t(offset) + hdr.length;
  if (end > kPageSize) return PageReject{offset, tpm12::kBadParamSize, "request runs past the page"};
  if (hdr.length < tpm12::kHeaderSize)
    return PageReject{offset, tpm12::kBadParamSize, "request shorter than a TPM header"};
  PageRequest req;
  req.offset = offset;
  req.locality = hdr.locality;
  req.command.resize(hdr.length);
  std::memcpy(req.command.data(), page + offset, hdr.length);
  // The guest may have rewritten the page meanwhile; only the copy counts.
  if (tpm12::ParamSize(req.command) != hdr.length)
    return PageReject{offset, tpm12::kBadParamSize, "paramSize does not match the page length"};
  return req;
}

void WriteResponse(uint8_t* page, uint32_t offset, ByteView response) {
  std::memcpy(page + offset, response.data(), response.size());
  __atomic_store_n(reinterpret_cast<uint32_t*>(page), uint32_t(response.size()), __ATOMIC_RELAXED);
}

void PublishResponse(uint8_t* page, uint32_t offset, ByteView response) {
  WriteResponse(page, offset, response);
  PublishState(page, PageState::kFinish);
}

void PublishState(uint8_t* page, PageState state) {
  __atomic_store_n(page + 4, uint8_t(state), __ATOMIC_RELEASE);
}

}  // namespace vtpm
