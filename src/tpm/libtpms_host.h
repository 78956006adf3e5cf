// LibtpmsHost: the worker process's one libtpms TPM 1.2 (libtpms is
// process-global), with its NV storage kept in memory. Nothing here touches
// a file: NV blobs come in with kInit and every store or delete libtpms
// makes during a request goes out in that request's reply.
// Not thread-safe; one per process.
#pragma once

#ifdef VTPM_TEST_BUILD
#include <functional>
#endif

#include "common/status.h"
#include "tpm/worker_protocol.h"

namespace vtpm {

class LibtpmsHost {
 public:
  LibtpmsHost() = default;
  ~LibtpmsHost();
  LibtpmsHost(const LibtpmsHost&) = delete;
  LibtpmsHost& operator=(const LibtpmsHost&) = delete;

  // libtpms' one-time start-up without any stored state: TPM 1.2 chosen,
  // the callbacks registered, and one TPM_Init of an empty TPM, thrown away.
  // OpenSSL's and libtpms' initialisation - everything that needs syscalls
  // beyond the worker's filter - is then done, and the filter can be loaded
  // before any stored blob is parsed (design §2 "vtpm-worker"). Runs once;
  // Init() runs it if nobody has. kTpmError if libtpms refuses.
  Status Prepare();
  // TPM_Init: starts libtpms from `init`'s blobs (none = a fresh TPM).
  // Returns the blobs libtpms wrote while starting and its volatile state.
  // kFailedPrecondition if called twice; kTpmError if libtpms refuses.
  Result<WorkerReply> Init(const WorkerRequest& init);
  // Runs one TPM command (kExecute). A libtpms error becomes a TPM_FAIL
  // response; the reply is always kReply.
  WorkerReply Execute(const WorkerRequest& req);
#ifdef VTPM_TEST_BUILD
  // Runs once, just before libtpms is first handed a stored blob to parse.
  static void SetParseProbe(std::function<void()> probe);
#endif

 private:
  WorkerReply CollectReply(Bytes response);
  bool prepared_ = false;
  bool started_ = false;
  unsigned char* rbuf_ = nullptr;
  uint32_t rbuf_size_ = 0;
};

}  // namespace vtpm
