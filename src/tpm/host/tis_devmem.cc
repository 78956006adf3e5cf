#include "tpm/host/tis_devmem.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "tpm/host/tis_devmem_diagnosis.h"

namespace vtpm::tis {

Result<std::unique_ptr<DevMemWindow>> DevMemWindow::Open(uint64_t base, const std::string& path) {
  char where[64];
  std::snprintf(where, sizeof where, "0x%llx", static_cast<unsigned long long>(base));
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_SYNC | O_CLOEXEC));
  if (!fd) {
    int err = errno;
    if (err == EPERM || err == EACCES)
      return Status(Code::kPermissionDenied, DiagnoseDevMemDenied("open " + path, err, base), err);
    return Status::FromErrno(err, "open " + path + " for the TPM TIS registers at " + where);
  }
  void* p = ::mmap(nullptr, kWindowSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), off_t(base));
  if (p == MAP_FAILED) {
    int err = errno;
    if (err == EPERM || err == EACCES)
      return Status(Code::kPermissionDenied, DiagnoseDevMemDenied("mmap " + path, err, base), err);
    return Status::FromErrno(err, "mmap " + path + " at " + where + " (0x5000 bytes)");
  }
  return std::unique_ptr<DevMemWindow>(new DevMemWindow(std::move(fd), static_cast<volatile uint8_t*>(p)));
}

DevMemWindow::~DevMemWindow() { ::munmap(const_cast<uint8_t*>(base_), kWindowSize); }

namespace {
// A stray offset would touch physical memory next to the TPM: never.
void CheckOffset(uint32_t offset, uint32_t width) {
  if (offset > kWindowSize - width || offset % width != 0) std::abort();
}
}  // namespace

uint8_t DevMemWindow::Read8(uint32_t offset) {
  CheckOffset(offset, 1);
  return base_[offset];
}
uint32_t DevMemWindow::Read32(uint32_t offset) {
  CheckOffset(offset, 4);
  return *reinterpret_cast<volatile uint32_t*>(base_ + offset);
}
void DevMemWindow::Write8(uint32_t offset, uint8_t value) {
  CheckOffset(offset, 1);
  base_[offset] = value;
}
void DevMemWindow::Write32(uint32_t offset, uint32_t value) {
  CheckOffset(offset, 4);
  *reinterpret_cast<volatile uint32_t*>(base_ + offset) = value;
}

}  // namespace vtpm::tis
