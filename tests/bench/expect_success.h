// ExpectSuccess: the benchmark's check of one TPM 1.2 response. Anything but
// TPM_SUCCESS means the benchmark itself failed (design §7: figures are never
// asserted, answers are).
#pragma once

#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/status.h"
#include "tpm/tpm12.h"

namespace vtpm::bench {

// Ok when `rsp` carries TPM_SUCCESS; otherwise kTpmError "<what> rc <code>"
// (code 4294967295 when `rsp` is shorter than a header).
inline Status ExpectSuccess(ByteView rsp, std::string_view what) {
  const std::optional<uint32_t> rc = tpm12::ResponseCode(rsp);
  if (rc == tpm12::kSuccess) return Status::Ok();
  return Status(Code::kTpmError, std::string(what) + " rc " + std::to_string(rc.value_or(~0u)));
}

}  // namespace vtpm::bench
