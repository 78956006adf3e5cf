// DevMemWindow: the real TPM's TIS registers, one shared mapping of
// /dev/mem (kWindowSize bytes at the window's physical base, localities 0-4),
// accessed with volatile loads and stores of the width asked for.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "common/unique_fd.h"
#include "tpm/host/tis_registers.h"

namespace vtpm::tis {

class DevMemWindow final : public Registers {
 public:
  // Opens `path` (O_RDWR|O_SYNC) and maps the window at `base`. When the
  // kernel refuses (EPERM/EACCES) the kPermissionDenied Status is the full
  // diagnosis of DiagnoseDevMemDenied(); other errors name the call and errno.
  static Result<std::unique_ptr<DevMemWindow>> Open(uint64_t base, const std::string& path = "/dev/mem");
  ~DevMemWindow() override;  // unmaps; the fd closes itself
  DevMemWindow(const DevMemWindow&) = delete;
  DevMemWindow& operator=(const DevMemWindow&) = delete;

  uint8_t Read8(uint32_t offset) override;
  uint32_t Read32(uint32_t offset) override;
  void Write8(uint32_t offset, uint8_t value) override;
  void Write32(uint32_t offset, uint32_t value) override;

 private:
  DevMemWindow(UniqueFd fd, volatile uint8_t* base) : fd_(std::move(fd)), base_(base) {}
  UniqueFd fd_;
  volatile uint8_t* base_;  // kWindowSize bytes, owned
};

}  // namespace vtpm::tis
