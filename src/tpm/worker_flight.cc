#include "tpm/worker_flight.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <utility>

#include "store/byte_reader.h"

namespace vtpm {
namespace {

// FlightSlots::lease: (flips << 2) | state.
enum LeaseState : uint64_t { kRevoked = 0, kGranted = 1, kWriting = 2 };
constexpr uint64_t kStateMask = 3;
uint64_t Flips(uint64_t lease) { return lease >> 2; }
uint64_t Lease(uint64_t flips, LeaseState state) { return (flips << 2) | state; }

void FillSlot(FlightSlots::Slot& slot, ByteView encoded, uint64_t sequence) {
  std::memcpy(slot.bytes, encoded.data(), encoded.size());
  slot.length.store(uint32_t(encoded.size()), std::memory_order_relaxed);
  slot.sequence.store(sequence, std::memory_order_relaxed);
}

}  // namespace

Bytes EncodeVolatileSlot(const VolatileSlot& slot) {
  Bytes b;
  b.reserve(17 + slot.request_digest.size() + slot.response.size() + slot.volatile_state.size());
  AppendBe64(b, slot.sequence);
  b.push_back(uint8_t(slot.request_digest.size()));
  AppendBytes(b, slot.request_digest);
  AppendBe32(b, uint32_t(slot.response.size()));
  AppendBytes(b, slot.response);
  AppendBe32(b, uint32_t(slot.volatile_state.size()));
  AppendBytes(b, slot.volatile_state);
  return b;
}

Result<VolatileSlot> DecodeVolatileSlot(ByteView bytes) {
  ByteReader in(bytes);
  VolatileSlot slot;
  uint8_t dlen = 0;
  uint32_t rlen = 0, vlen = 0;
  ByteView digest, response, state;
  if (!in.U64(&slot.sequence) || !in.U8(&dlen) || (dlen != 0 && dlen != 32) || !in.Take(dlen, &digest) ||
      !in.U32(&rlen) || rlen > kMaxPacket || !in.Take(rlen, &response) || !in.U32(&vlen) || vlen == 0 ||
      !in.Take(vlen, &state) || !in.done())
    return Status(Code::kCorruption, "the flight record's volatile slot is malformed");
  slot.request_digest.assign(digest.begin(), digest.end());
  slot.response.assign(response.begin(), response.end());
  slot.volatile_state.assign(state.begin(), state.end());
  return slot;
}

uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

Result<FlightPage> FlightPage::Create() {
  UniqueFd fd(memfd_create("vtpm-flight", MFD_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "memfd_create");
  if (ftruncate(fd.get(), sizeof(FlightRecord)) != 0) return Status::FromErrno(errno, "ftruncate of the flight record");
  ASSIGN_OR_RETURN(FlightPage page, Map(fd.get()));
  page.fd_ = std::move(fd);
  return page;
}

Result<FlightPage> FlightPage::Map(int fd) {
  void* p = mmap(nullptr, sizeof(FlightRecord), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Status::FromErrno(errno, "mapping the flight record");
  FlightPage page;
  page.rec_ = static_cast<FlightRecord*>(p);  // zero-filled: no command, none ever
  return page;
}

Result<FlightPage> FlightPage::Adopt(UniqueFd fd) {
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "fstat of the flight record");
  if (!S_ISREG(st.st_mode) || size_t(st.st_size) != sizeof(FlightRecord))
    return Status(Code::kCorruption, "the flight record has the wrong type or size");
  ASSIGN_OR_RETURN(FlightPage page, Map(fd.get()));
  page.fd_ = std::move(fd);
  return page;
}

FlightPage::~FlightPage() { Reset(); }

FlightPage::FlightPage(FlightPage&& o) noexcept : fd_(std::move(o.fd_)), rec_(std::exchange(o.rec_, nullptr)) {}

FlightPage& FlightPage::operator=(FlightPage&& o) noexcept {
  if (this != &o) {
    Reset();
    fd_ = std::move(o.fd_);
    rec_ = std::exchange(o.rec_, nullptr);
  }
  return *this;
}

void FlightPage::Reset() {
  if (rec_ != nullptr) munmap(rec_, sizeof(FlightRecord));
  rec_ = nullptr;
  fd_.reset();
}

void FlightPage::Begin(ByteView request) {
  const size_t n = std::min(request.size(), kMaxPacket);
  std::memcpy(rec_->request, request.data(), n);
  rec_->request_len.store(uint32_t(n), std::memory_order_relaxed);
  rec_->last_command.store(int64_t(time(nullptr)), std::memory_order_relaxed);
  rec_->started_ns.store(MonotonicNs(), std::memory_order_release);
}

void FlightPage::End() { rec_->started_ns.store(0, std::memory_order_release); }

void FlightPage::Alive() { rec_->alive_ns.store(MonotonicNs(), std::memory_order_relaxed); }

std::optional<Bytes> FlightPage::InFlight(uint64_t* started_ns) const {
  const uint64_t started = rec_->started_ns.load(std::memory_order_acquire);
  if (started_ns) *started_ns = started;
  if (started == 0) return std::nullopt;
  const uint32_t n = std::min<uint32_t>(rec_->request_len.load(std::memory_order_relaxed), uint32_t(kMaxPacket));
  return Bytes(rec_->request, rec_->request + n);
}

}  // namespace vtpm

namespace vtpm {

uint64_t FlightPage::SlotSequence() const {
  const uint64_t lease = rec_->slots.lease.load(std::memory_order_acquire);
  return rec_->slots.slot[Flips(lease) & 1].sequence.load(std::memory_order_relaxed);
}

bool FlightPage::WriteSlot(ByteView encoded, uint64_t sequence) {
  if (encoded.size() > kVolatileSlotCapacity) return false;
  FlightSlots& s = rec_->slots;
  uint64_t lease = s.lease.load(std::memory_order_acquire);
  if ((lease & kStateMask) != kGranted) return false;
  const uint64_t flips = Flips(lease);
  if (!s.lease.compare_exchange_strong(lease, Lease(flips, kWriting), std::memory_order_acq_rel)) return false;
  FillSlot(s.slot[(flips + 1) & 1], encoded, sequence);
  uint64_t writing = Lease(flips, kWriting);
  return s.lease.compare_exchange_strong(writing, Lease(flips + 1, kGranted), std::memory_order_acq_rel);
}

void FlightPage::SetResponded(uint64_t sequence) {
  rec_->slots.responded.store(sequence, std::memory_order_release);
}

void FlightPage::Revoke() { (void)RevokeLease(); }

uint64_t FlightPage::RevokeLease() {
  FlightSlots& s = rec_->slots;
  uint64_t lease = s.lease.load(std::memory_order_acquire);
  while (!s.lease.compare_exchange_weak(lease, Lease(Flips(lease), kRevoked), std::memory_order_acq_rel)) {
  }
  return lease;
}

bool FlightPage::granted() const {
  return (rec_->slots.lease.load(std::memory_order_acquire) & kStateMask) != kRevoked;
}

Result<std::optional<VolatileSlot>> FlightPage::ReadSlot() const {
  const FlightSlots& s = rec_->slots;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const uint64_t before = s.lease.load(std::memory_order_acquire);
    const FlightSlots::Slot& slot = s.slot[Flips(before) & 1];
    const uint32_t n = slot.length.load(std::memory_order_relaxed);
    if (n > kVolatileSlotCapacity) return Status(Code::kCorruption, "the flight record's volatile slot is too long");
    Bytes copy(slot.bytes, slot.bytes + n);
    std::atomic_thread_fence(std::memory_order_acquire);
    // The slot read is rewritten only after another flip: none, none torn.
    if (Flips(s.lease.load(std::memory_order_relaxed)) != Flips(before)) continue;
    if (n == 0) return std::optional<VolatileSlot>();
    ASSIGN_OR_RETURN(VolatileSlot decoded, DecodeVolatileSlot(copy));
    return std::optional<VolatileSlot>(std::move(decoded));
  }
  return Status(Code::kBusy, "the worker kept changing its volatile slot");
}

bool FlightPage::PutSlot(const VolatileSlot& slot, bool grant) {
  FlightSlots& s = rec_->slots;
  // A worker caught writing would still be filling the slot written here.
  if ((RevokeLease() & kStateMask) == kWriting) return false;
  const Bytes encoded = EncodeVolatileSlot(slot);
  if (encoded.size() > kVolatileSlotCapacity) return false;
  const uint64_t flips = Flips(s.lease.load(std::memory_order_acquire));
  FillSlot(s.slot[(flips + 1) & 1], encoded, slot.sequence);
  s.lease.store(Lease(flips + 1, grant ? kGranted : kRevoked), std::memory_order_release);
  return true;
}

}  // namespace vtpm
