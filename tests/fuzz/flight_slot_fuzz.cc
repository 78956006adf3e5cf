// Fuzzes the flight record's volatile slot (src/tpm/worker_flight.h), which
// the daemon reads from memory the sandboxed worker writes: the decoder
// must accept only its own encoding, and a slot holding any bytes, at any
// stated length, must read as an error or a well-formed slot.
#include <cstdlib>
#include <cstring>

#include "tpm/worker_flight.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vtpm::ByteView in(data, size);
  auto slot = vtpm::DecodeVolatileSlot(in);
  if (slot.ok() && vtpm::EncodeVolatileSlot(*slot) != vtpm::Bytes(data, data + size)) abort();

  static vtpm::FlightPage* page = [] {
    auto p = vtpm::FlightPage::Create();
    if (!p.ok()) abort();
    return new vtpm::FlightPage(std::move(p).value());
  }();
  vtpm::FlightSlots& raw = page->record().slots;
  const size_t n = std::min(size, vtpm::kVolatileSlotCapacity);
  std::memcpy(raw.slot[0].bytes, data, n);
  // The first bytes also state the length, as a worker could.
  uint32_t stated = uint32_t(n);
  if (size >= 4 && data[0] == 0xff) std::memcpy(&stated, data, 4);
  raw.slot[0].length.store(stated);
  raw.lease.store(0);
  auto read = page->ReadSlot();
  if (read.ok() && read->has_value() && (*read)->response.size() > vtpm::kMaxPacket) abort();
  return 0;
}
