// The worker's half of a guest command (design §3 "Path of one command"):
// a worker started with --guest serves its guest's shared page itself.
//
// On each event of its channel, ServePage() looks at the page:
//  - SUBMIT: the request is validated and copied out (backend/shared_page.h).
//    A malformed one, or one at a locality other than 0 (unless allowed),
//    is answered here with a TPM error and noted to the daemon
//    (kGuestRejected). Otherwise libtpms runs it, noted in the flight
//    record while it runs (tpm/worker_flight.h). A command that left the
//    TPM as the daemon last saved it (TpmBaseline::KeptNothing) is answered
//    at once: no frame, no file, as the daemon's path writes none for it
//    (design §3 "Exactly once"). With `volatile_slots`, one that changed
//    only the volatile state is answered at once too, once that state and
//    its command record are the flight record's current volatile slot and
//    the lease allows it (its responded mark then goes to the flight record
//    too). Any other goes to the daemon
//    (kGuestExecuted) and waits for its kRelease, which comes once what the
//    command changed is durable; then the response goes into the page, the
//    responded mark (when kRelease carries one) into the mark file, FINISH,
//    and a notification. The page is looked at again, so a request
//    submitted meanwhile is served without another notification.
//  - CANCEL: there is no command in flight between two events (a command
//    runs from start to kRelease inside ServePage), so the answer is IDLE.
//  - IDLE, FINISH: nothing (a spurious notification).
// With `found`, the first request seen is sent as kGuestFound before it
// runs: the daemon may answer it from its records (a command that ran
// before a restart) with kRelease, or say kRun. With `no_tpm` (a broken
// instance, design §3 "Worker faults") there is no TPM: every request is
// sent as kGuestFound and only kRelease may answer it.
//
// Requests of the daemon (kExecute) that arrive while a guest command waits
// for its kRelease are kept, in order, for the caller to run afterwards. A
// kAdopt that arrives then (the daemon that had the frame died, and its
// successor took the worker from the fd store) is answered kAdopted, and the
// waiting frame is sent again.
#pragma once

#include <deque>

#include "tpm/guest_channel.h"
#include "tpm/libtpms_host.h"
#include "tpm/worker_flight.h"
#include "tpm/worker_protocol.h"

namespace vtpm {

// The worker's blocking end of its socket to the daemon.
class WorkerConn {
 public:
  explicit WorkerConn(int fd) : fd_(fd) {}
  int fd() const { return fd_; }
  // Blocks for the next frame body; nullopt on EOF or a broken stream.
  std::optional<Bytes> Read();
  // One read(2) of what is available (call when fd() is readable); false on
  // EOF or error.
  bool ReadSome();
  // A complete frame body already read, if any.
  Result<std::optional<Bytes>> TakeBuffered() { return reader_.Next(); }
  bool Send(const Bytes& frame);
  bool at_frame_boundary() const { return reader_.empty(); }

 private:
  int fd_;
  FrameReader reader_;
};

struct GuestServerOptions {
  int mark_fd = -1;
  bool any_locality = false;
  bool found = false;
  bool no_tpm = false;
  bool volatile_slots = false;
  FlightPage* flight = nullptr;
};

// What the worker knows of the state the daemon has made durable: the
// blobs as last committed (kInit's, then each reply's changes: a commit that
// fails restarts the worker, so a reply's changes are the committed ones for
// as long as this worker lives) and the volatile state of the last command
// the daemon released as settled. A daemon command (kExecute) unsettles it.
struct TpmBaseline {
  std::optional<Bytes> permanent, savestate;
  std::optional<Bytes> settled_volatile;

  void Init(const WorkerRequest& init);
  void Apply(const WorkerReply& reply);
  // The command of `reply` changed no blob and left the volatile state the
  // daemon's copy holds: the daemon would keep nothing of it.
  bool KeptNothing(const WorkerReply& reply) const;
  // The command of `reply` changed a blob: it needs a commit.
  bool ChangesBlobs(const WorkerReply& reply) const;
  // TpmStateDigest() of this state; empty while the volatile state is not
  // the settled one (a daemon taking the worker over cannot know it).
  Bytes Digest() const;
};

// kAdopted for `adopt`'s nonce, from what `baseline` holds.
WorkerReply AdoptedReply(const WorkerRequest& adopt, const TpmBaseline& baseline, uint8_t flags);

class GuestServer {
 public:
  GuestServer(GuestChannel& channel, WorkerConn& conn, LibtpmsHost& tpm, TpmBaseline& baseline,
              GuestServerOptions opts)
      : ch_(channel), conn_(conn), tpm_(tpm), baseline_(baseline), opts_(opts) {}

  // Serves what the page holds. False when the daemon is gone or broke the
  // protocol: the worker then exits.
  bool ServePage();
  // Daemon requests deferred while a guest command waited for kRelease.
  std::deque<WorkerRequest>& deferred() { return deferred_; }

 private:
  bool Serve(uint32_t offset, uint8_t locality, Bytes command);
  // Reads frames until kRelease (or, after kGuestFound, kRun).
  std::optional<WorkerRequest> AwaitRelease(bool run_allowed);
  // Makes the volatile state of `reply` (a command that changed no blob)
  // the current volatile slot; its sequence, or nullopt when the slot is
  // not this worker's to write now.
  std::optional<uint64_t> KeepInSlot(ByteView request, const WorkerReply& reply);
  // `from_tpm`: a response of the TPM or of the daemon's records, not a
  // refusal of the worker's; only those pass the crash points. `slot_seq`:
  // the response of the command of that slot, marked in the flight record.
  void Publish(uint32_t offset, Bytes response, ByteView mark, bool from_tpm = true,
               std::optional<uint64_t> slot_seq = std::nullopt);
  bool Reject(uint32_t offset, uint32_t rc, const char* why, uint32_t length, uint8_t nr_extra);

  GuestChannel& ch_;
  WorkerConn& conn_;
  LibtpmsHost& tpm_;
  TpmBaseline& baseline_;
  GuestServerOptions opts_;
  std::deque<WorkerRequest> deferred_;
  // The guest frame that waits for the daemon's answer, sent again to a
  // daemon that takes the worker over (kAdopt).
  Bytes outstanding_;
};

}  // namespace vtpm
