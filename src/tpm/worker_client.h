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
//
// A worker started with a WorkerGuest serves its guest's page itself and
// sends guest frames of its own accord (worker_protocol.h): each goes to the
// guest handler, and kGuestExecuted/kGuestFound stay outstanding until
// Send() answers them with kRelease or kRun. Meanwhile nothing is read from
// the worker, which has nothing to send until then: the daemon still reads
// at most one frame at a time.
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
#include "tpm/guest_channel.h"
#include "tpm/worker_adoption.h"
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

// What a worker that serves its guest is started with.
struct WorkerGuest {
  GuestLink link;
  int mark_fd = -1;           // the responded-mark file, open for writing (the worker gets a copy)
  int flight_fd = -1;         // the flight record's memfd (tpm/worker_flight.h)
  bool any_locality = false;  // [xen] allow_any_locality
  bool found = false;         // the first request in the page goes to the daemon as found
  // The longest the worker waits without renewing its sign of life in the
  // flight record (tpm/worker_flight.h); 0: it waits indefinitely.
  std::chrono::milliseconds heartbeat{0};
  bool no_tpm = false;  // a broken instance: the daemon answers every request (TPM_FAIL)
  // Commands that change only the volatile state are kept in the flight
  // record's volatile slot by the worker (--volatile-slots).
  bool volatile_slots = false;
};

// The `vtpm` system group (systemd/vtpmmgrd-sysusers.conf), which every
// worker joins and which owns nothing; when it does not exist, nogroup
// (65534). Call before the worker needs it: it reads the group database.
gid_t ResolveWorkerGroup();

class WorkerClient {
 public:
  using ReplyCallback = std::function<void(Result<WorkerReply>)>;
  // Gets each guest frame; may destroy the WorkerClient.
  using GuestHandler = std::function<void(WorkerReply)>;

  // With `guest`, `on_guest` receives the worker's guest frames.
  static Result<std::unique_ptr<WorkerClient>> Start(EventLoop& loop, const WorkerOptions& opts,
                                                     const WorkerGuest* guest = nullptr,
                                                     GuestHandler on_guest = nullptr);
  // Takes over a worker of a previous daemon (design §2 "Workers outlive
  // the daemon"), which serves its guest under `identity`. Call() a kAdopt
  // first: until its kAdopted comes, whatever the worker sent is dropped
  // (it was for the previous daemon, and the worker sends the guest frame
  // it waits on again after kAdopted); a reply among it marks the worker
  // unclean (adopt_unclean()).
  static Result<std::unique_ptr<WorkerClient>> Adopt(EventLoop& loop, AdoptableWorker worker,
                                                     WorkerIdentities::Lease identity, GuestHandler on_guest);
  ~WorkerClient();
  WorkerClient(const WorkerClient&) = delete;
  WorkerClient& operator=(const WorkerClient&) = delete;

  // Precondition: !busy().
  void Call(const WorkerRequest& req, std::chrono::milliseconds deadline, ReplyCallback cb);
  bool busy() const { return static_cast<bool>(pending_); }
  // Answers the outstanding guest frame (kRelease, kRun). No reply comes.
  void Send(const WorkerRequest& req);
  // A guest frame waits for Send().
  bool guest_outstanding() const { return guest_outstanding_; }
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
  // The daemon's end of the socket, -1 once closed.
  int socket_fd() const { return socket_.get(); }
  // Its descriptors are in the fd store under `stored`'s name: removed
  // from it as soon as this client closes the socket.
  void SetStored(StoredWorker stored) { stored_ = std::move(stored); }
  // kAdopt was answered after a reply meant for the previous daemon.
  bool adopt_unclean() const { return adopt_unclean_; }
  // The worker is in the fd store (SetStored).
  bool stored() const { return stored_.held(); }
  // A daemon stopping on purpose: lets go of a stored worker without killing
  // it or removing it from the store, so that the next daemon can take it
  // over (design §2 "Workers outlive the daemon"). A pending callback never
  // runs; the client is done with.
  void LeaveRunning();

 private:
  WorkerClient(EventLoop& loop, ChildProcess child, UniqueFd socket, WorkerIdentities::Lease identity, uid_t uid);
  void OnEvents(uint32_t events);
  // A frame of a worker serving its guest: a guest frame or a reply.
  void Dispatch(WorkerReply frame, bool closed);
  bool FlushOutput();
  void Fail(Status st);
  void Complete(Result<WorkerReply> r);
  void Close();
  bool QueueOutput(const WorkerRequest& req);
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
  GuestHandler on_guest_;
  bool guest_outstanding_ = false;
  std::optional<EventLoop::TimerId> timer_;
  std::optional<int> exit_status_;
  std::shared_ptr<bool> alive_token_ = std::make_shared<bool>(true);
  StoredWorker stored_;
  std::optional<Bytes> adopt_nonce_;  // kAdopt sent, kAdopted not yet received
  bool adopt_unclean_ = false;
};

}  // namespace vtpm
