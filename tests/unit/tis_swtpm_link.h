// SwtpmLink: hands raw TPM 2.0 commands to a running swtpm (its server
// socket takes the command bytes as they are; the locality is set through
// its control channel, command CMD_SET_LOCALITY). One TCP connection per
// command, so other clients of the same swtpm are not locked out.
#pragma once

#include <cstdint>

#include "common/bytes.h"
#include "common/status.h"

namespace vtpm::testing {

class SwtpmLink {
 public:
  explicit SwtpmLink(int server_port) : port_(server_port) {}
  // The response to `command`, sent at `locality`.
  Result<Bytes> Execute(uint8_t locality, ByteView command);

 private:
  Status SetLocality(uint8_t locality);
  int port_;
  int locality_ = -1;  // as last set on swtpm
};

}  // namespace vtpm::testing
