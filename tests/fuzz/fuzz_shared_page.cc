// Fuzzes the shared-page parser with arbitrary page contents: it must never
// read outside the page, and what it accepts must be self-consistent.
#include <cstdlib>
#include <cstring>

#include "backend/shared_page.h"
#include "backend/tpm12_wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  alignas(4096) static uint8_t page[vtpm::kPageSize];
  std::memset(page, 0, sizeof page);
  std::memcpy(page, data, size < sizeof page ? size : sizeof page);
  auto hdr = vtpm::SnapshotHeader(page);
  auto r = vtpm::ParseRequest(hdr, page);
  if (auto* req = std::get_if<vtpm::PageRequest>(&r)) {
    if (req->offset + req->command.size() > vtpm::kPageSize) abort();
    if (req->command.size() < vtpm::tpm12::kHeaderSize) abort();
    if (vtpm::tpm12::ParamSize(req->command) != req->command.size()) abort();
    if (std::memcmp(req->command.data(), page + req->offset, req->command.size()) != 0) abort();
  } else {
    auto& rej = std::get<vtpm::PageReject>(r);
    vtpm::Bytes rsp = vtpm::tpm12::ErrorResponse(rej.rc);
    if (rsp.size() > vtpm::MaxResponseAt(rej.offset)) abort();
    vtpm::PublishResponse(page, rej.offset, rsp);
    if (vtpm::SnapshotHeader(page).length != rsp.size()) abort();
  }
  return 0;
}
