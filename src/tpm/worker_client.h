// WorkerClient: the daemon's end of one vtpm-worker process.
//
// Start() fork+execs the worker with its end of a socketpair at fd 3 and
// registers the daemon's end in the EventLoop; nothing here blocks the loop.
// A worker that is done with - faulted, closed or killed - is reaped in the
// background from the loop (common/background_reap.h), never waited for.
// One request at a time: Call() sends it and the callback runs exactly once
// on the loop thread with the reply, kUnavailable when the worker dies or
// closes the socket, kCorruption when it sends a malformed frame (the worker
// is then killed) or kTimeout past the deadline (the worker is then killed) -
// unless Kill() or the destructor runs first, which drops the callback.
// The callback may destroy the WorkerClient.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/child_process.h"
#include "common/event_loop.h"
#include "common/unique_fd.h"
#include "tpm/worker_identity.h"
#include "tpm/worker_protocol.h"

namespace vtpm {

struct WorkerOptions {
  std::string path;            // the vtpm-worker executable
  // Where each worker's own uid comes from (design §2 "Identities"). Without
  // a pool every worker drops to uid/gid below (tests and benchmarks only).
  std::shared_ptr<WorkerIdentities> identities;
  uid_t uid = 65534;
  gid_t gid = 65534;
#ifdef VTPM_TEST_BUILD
  bool test_commands = false;  // pass --test-commands (sandbox tests only)
#endif
};

// The `vtpm` system group (systemd/vtpmmgrd-sysusers.conf), which every
// worker joins and which owns nothing; when it does not exist, nogroup
// (65534). Call before the worker needs it: it reads the group database.
gid_t ResolveWorkerGroup();

class WorkerClient {
 public:
  using ReplyCallback = std::function<void(Result<WorkerReply>)>;

  static Result<std::unique_ptr<WorkerClient>> Start(EventLoop& loop, const WorkerOptions& opts);
  ~WorkerClient();
  WorkerClient(const WorkerClient&) = delete;
  WorkerClient& operator=(const WorkerClient&) = delete;

  // Precondition: !busy().
  void Call(const WorkerRequest& req, std::chrono::milliseconds deadline, ReplyCallback cb);
  bool busy() const { return static_cast<bool>(pending_); }
  bool alive() const { return socket_.valid(); }
  // The worker's pid while this client owns it: -1 once it is being reaped.
  pid_t pid() const { return child_.pid(); }
  // The uid the worker runs under once sandboxed.
  uid_t uid() const { return uid_; }
  // How the last worker process ended (a wait status), once it has been
  // reaped - which happens on the loop after the failure was reported.
  std::optional<int> exit_status() const { return exit_status_; }
  // Bytes read from the worker's socket so far. Bounded by the frames asked
  // for: at most one reply frame per request (design §2 "Worker protocol").
  size_t received_bytes() const { return received_; }
  // SIGKILLs the worker and has it reaped in the background
  // (ReapInBackground); a pending callback never runs. Never blocks.
  void Kill();

 private:
  WorkerClient(EventLoop& loop, ChildProcess child, UniqueFd socket, WorkerIdentities::Lease identity, uid_t uid);
  void OnEvents(uint32_t events);
  bool FlushOutput();
  void Fail(Status st);
  void Complete(Result<WorkerReply> r);
  void Close();
  void Reap(std::chrono::milliseconds grace);

  EventLoop& loop_;
  ChildProcess child_;
  WorkerIdentities::Lease identity_;  // the worker's uid, returned once it is reaped
  uid_t uid_;
  UniqueFd socket_;
  FrameReader reader_;
  size_t received_ = 0;
  Bytes out_;
  size_t out_off_ = 0;
  bool watching_out_ = false;  // EPOLLOUT is in the socket's registration
  ReplyCallback pending_;
  std::optional<EventLoop::TimerId> timer_;
  std::optional<int> exit_status_;
  std::shared_ptr<bool> alive_token_ = std::make_shared<bool>(true);
};

}  // namespace vtpm
