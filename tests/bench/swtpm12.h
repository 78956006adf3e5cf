// The peer an operator would otherwise run per VM: `swtpm socket` serving a
// TPM 1.2 (its default) on a unix socket, state in its own directory. The
// benchmark keeps one connection open and sends raw TPM 1.2 commands.
// Destruction kills swtpm.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/bytes.h"
#include "common/child_process.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace vtpm::bench {

class Swtpm12 {
 public:
  // Starts swtpm with --flags not-need-init, connects, sends
  // TPM_Startup(ST_CLEAR) and checks that it succeeded.
  static Result<std::unique_ptr<Swtpm12>> Start(const std::string& dir);
  Swtpm12(const Swtpm12&) = delete;
  Swtpm12& operator=(const Swtpm12&) = delete;

  pid_t pid() const { return proc_.pid(); }
  // One command, one response (read to its paramSize).
  Result<Bytes> Transact(ByteView cmd);

 private:
  Swtpm12() = default;
  ChildProcess proc_;
  UniqueFd conn_;
};

}  // namespace vtpm::bench
