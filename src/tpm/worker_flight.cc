#include "tpm/worker_flight.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <utility>

namespace vtpm {

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
