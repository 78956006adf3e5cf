#include "tpm/host/tis_frame.h"

#include <cstdio>
#include <string>

namespace vtpm::tis {
namespace {

constexpr uint16_t kStNoSessions = 0x8001;
constexpr uint16_t kStSessions = 0x8002;

std::string Hex(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%x", v);
  return b;
}

}  // namespace

Result<uint32_t> ResponseSize(ByteView header, size_t max_size) {
  if (header.size() < kHeaderSize)
    return Status(Code::kCorruption, "TPM response header is " + std::to_string(header.size()) + " bytes, not 10");
  uint16_t tag = LoadBe16(header.data());
  uint32_t size = LoadBe32(header.data() + 2);
  if (tag != kStNoSessions && tag != kStSessions)
    return Status(Code::kCorruption, "TPM response tag " + Hex(tag) + " is not a TPM 2.0 response tag");
  if (size < kHeaderSize || size > max_size)
    return Status(Code::kCorruption, "TPM response size field " + std::to_string(size) + " is outside 10-" +
                                         std::to_string(max_size));
  return size;
}

Result<uint32_t> CommandSize(ByteView command) {
  if (command.size() < kHeaderSize)
    return Status(Code::kInvalidArgument, "TPM command of " + std::to_string(command.size()) + " bytes is shorter than its header");
  uint32_t size = LoadBe32(command.data() + 2);
  if (size != command.size())
    return Status(Code::kInvalidArgument, "TPM command size field " + std::to_string(size) + " differs from its length " +
                                              std::to_string(command.size()));
  return size;
}

}  // namespace vtpm::tis
