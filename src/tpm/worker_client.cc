#include "tpm/worker_client.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <vector>

#include "common/background_reap.h"

namespace vtpm {

gid_t ResolveWorkerGroup() {
  std::vector<char> buf(16384);
  struct group gr, *found = nullptr;
  if (getgrnam_r("vtpm", &gr, buf.data(), buf.size(), &found) == 0 && found) return found->gr_gid;
  return 65534;
}

Result<std::unique_ptr<WorkerClient>> WorkerClient::Start(EventLoop& loop, const WorkerOptions& opts,
                                                          const WorkerGuest* guest, GuestHandler on_guest) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
    return Status::FromErrno(errno, "worker socketpair");
  UniqueFd mine(sv[0]), theirs(sv[1]);
  // The worker blocks on its end.
  int flags = fcntl(theirs.get(), F_GETFL);
  if (flags < 0 || fcntl(theirs.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
    return Status::FromErrno(errno, "worker socket flags");
  WorkerIdentities::Lease identity;
  uid_t uid = opts.uid;
  gid_t gid = opts.gid;
  if (opts.identities) {
    ASSIGN_OR_RETURN(identity, opts.identities->Acquire());
    uid = identity.uid();
    gid = identity.gid();
  }
  SpawnOptions spawn;
  spawn.argv = {opts.path, "--fd=3", "--uid=" + std::to_string(uid), "--gid=" + std::to_string(gid)};
#ifdef VTPM_TEST_BUILD
  if (opts.test_commands) spawn.argv.push_back("--test-commands");
#endif
  spawn.env = {"PATH=/nonexistent"};  // nothing from the daemon's environment
#ifdef VTPM_SANITIZER_BUILD
  // LeakSanitizer's exit-time scan needs ptrace, which the sandbox forbids.
  spawn.env.push_back("ASAN_OPTIONS=detect_leaks=0");
#endif
  spawn.fd_map = {{theirs.get(), 3}};
  if (guest) {
    if (guest->mark_fd < 0 || guest->flight_fd < 0)
      return Status(Code::kInvalidArgument, "a guest worker needs its responded-mark file and flight record");
    const GuestLink& l = guest->link;
    spawn.argv.push_back("--guest=" + std::to_string(l.domid) + ":" + std::to_string(l.ring_ref) + ":" +
                         std::to_string(l.remote_port));
    spawn.argv.push_back("--mark-fd=4");
    spawn.argv.push_back("--flight-fd=5");
    if (guest->any_locality) spawn.argv.push_back("--any-locality");
    if (guest->found) spawn.argv.push_back("--found");
    if (guest->no_tpm) spawn.argv.push_back("--no-tpm");
    if (guest->volatile_slots) spawn.argv.push_back("--volatile-slots");
#ifdef VTPM_TEST_HOOKS
    if (const char* at = getenv("VTPMMGRD_WORKER_CRASH_AT")) spawn.argv.push_back(std::string("--crash-at=") + at);
#endif
    if (guest->heartbeat.count() > 0) spawn.argv.push_back("--heartbeat-ms=" + std::to_string(guest->heartbeat.count()));
    spawn.fd_map.push_back({guest->mark_fd, 4});
    spawn.fd_map.push_back({guest->flight_fd, 5});
#ifdef VTPM_TEST_BUILD
    // The simulated host: the worker reaches grants and event channels
    // through the same LD_PRELOAD shim as the daemon (tests/sim/README.md).
    for (const char* name : {"LD_PRELOAD", "VTPM_SIM_DIR"})
      if (const char* v = getenv(name)) spawn.env.push_back(std::string(name) + "=" + v);
#endif
  }
  ASSIGN_OR_RETURN(ChildProcess child, ChildProcess::Spawn(spawn));
  std::unique_ptr<WorkerClient> client(
      new WorkerClient(loop, std::move(child), std::move(mine), std::move(identity), uid));
  WorkerClient* self = client.get();
  if (guest) self->on_guest_ = std::move(on_guest);
  RETURN_IF_ERROR(loop.Add(self->socket_.get(), EPOLLIN | EPOLLRDHUP,
                           [self](uint32_t ev) { self->OnEvents(ev); }));
  return client;
}

Result<std::unique_ptr<WorkerClient>> WorkerClient::Adopt(EventLoop& loop, AdoptableWorker worker,
                                                          WorkerIdentities::Lease identity, GuestHandler on_guest) {
  const uid_t uid = worker.uid;
  std::unique_ptr<WorkerClient> client(new WorkerClient(loop, std::move(worker.process), std::move(worker.socket),
                                                        std::move(identity), uid));
  WorkerClient* self = client.get();
  self->on_guest_ = std::move(on_guest);
  int flags = fcntl(self->socket_.get(), F_GETFL);
  if (flags < 0 || fcntl(self->socket_.get(), F_SETFL, flags | O_NONBLOCK) != 0)
    return Status::FromErrno(errno, "adopted worker socket flags");
  RETURN_IF_ERROR(loop.Add(self->socket_.get(), EPOLLIN | EPOLLRDHUP, [self](uint32_t ev) { self->OnEvents(ev); }));
  return client;
}

WorkerClient::WorkerClient(EventLoop& loop, ChildProcess child, UniqueFd socket, WorkerIdentities::Lease identity,
                           uid_t uid)
    : loop_(loop), child_(std::move(child)), identity_(std::move(identity)), uid_(uid), socket_(std::move(socket)) {}

WorkerClient::~WorkerClient() {
  *alive_token_ = false;
  Kill();
}

void WorkerClient::Close() {
  if (timer_) loop_.CancelTimer(*timer_);
  timer_.reset();
  stored_.Reset();
  if (socket_.valid()) {
    loop_.Remove(socket_.get());
    socket_.reset();
  }
}

void WorkerClient::Kill() {
  pending_ = nullptr;
  Close();
  Reap(std::chrono::milliseconds(0));
}

void WorkerClient::LeaveRunning() {
  pending_ = nullptr;
  on_guest_ = nullptr;
  stored_.Release();
  Close();
  child_.Release();  // this daemon exits; the worker is nobody's child to reap
}

void WorkerClient::Reap(std::chrono::milliseconds grace) {
  if (!child_.running()) return;
  // A worker that closed its socket is exiting; `grace` lets it report how.
  // The loop never waits for it (design §2 "Worker protocol"). Its uid is
  // free again only once it is reaped.
  std::weak_ptr<bool> token = alive_token_;
  auto identity = std::make_shared<WorkerIdentities::Lease>(std::move(identity_));
  ReapInBackground(loop_, std::move(child_), grace, [this, token, identity](int ws) {
    if (auto t = token.lock(); t && *t) exit_status_ = ws;
    *identity = WorkerIdentities::Lease();
  });
}

void WorkerClient::Call(const WorkerRequest& req, std::chrono::milliseconds deadline,
                        ReplyCallback cb) {
  pending_ = std::move(cb);
  if (req.type == WorkerMsg::kAdopt) adopt_nonce_ = req.nonce;
  if (!socket_.valid()) {
    // Deliver asynchronously so the caller never re-enters itself.
    std::weak_ptr<bool> token = alive_token_;
    loop_.Post([this, token] {
      if (auto t = token.lock(); t && *t && pending_)
        Complete(Status(Code::kUnavailable, "worker is gone"));
    });
    return;
  }
  timer_ = loop_.AddTimer(deadline, [this] {
    timer_.reset();
    Fail(Status(Code::kTimeout, "worker missed its deadline"));
  });
  if (!QueueOutput(req)) Fail(Status(Code::kUnavailable, "worker socket write failed"));
}

void WorkerClient::Send(const WorkerRequest& req) {
  guest_outstanding_ = false;
  if (!socket_.valid()) return;  // gone: the failure is reported on its own
  if (!QueueOutput(req)) Fail(Status(Code::kUnavailable, "worker socket write failed"));
}

bool WorkerClient::QueueOutput(const WorkerRequest& req) {
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  }
  Bytes frame = EncodeRequest(req);
  AppendBytes(out_, frame);
  return FlushOutput();
}

bool WorkerClient::FlushOutput() {
  while (out_off_ < out_.size()) {
    ssize_t n = send(socket_.get(), out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) return false;
    out_off_ += size_t(n);
  }
  bool more = out_off_ < out_.size();
  if (!more) {
    out_.clear();
    out_off_ = 0;
  }
  if (more == watching_out_) return true;  // one epoll_ctl per change, not per command
  watching_out_ = more;
  return loop_.Modify(socket_.get(), uint32_t(EPOLLIN | EPOLLRDHUP) | (more ? uint32_t(EPOLLOUT) : 0u)).ok();
}

namespace {

// What one readiness event may read, so that a worker flooding its socket
// holds the loop up for one bounded read at most (design §2 "Worker protocol").
constexpr size_t kReadBudget = 256u << 10;

}  // namespace

void WorkerClient::OnEvents(uint32_t events) {
  if ((events & EPOLLOUT) && !FlushOutput()) {
    Fail(Status(Code::kUnavailable, "worker socket write failed"));
    return;
  }
  if (!(events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP | EPOLLERR))) return;
  // Only what the current frame still lacks is read, its length prefix
  // first: a prefix over kMaxFrameBody faults the worker before a byte of
  // its body is buffered. What is left over waits for the next wake-up.
  uint8_t buf[16384];
  bool closed = false;
  // Nothing is due while a guest frame waits for its answer.
  const bool expecting = !guest_outstanding_ && (pending_ || on_guest_);
  for (size_t budget = expecting ? kReadBudget : 1; budget > 0;) {
    auto missing = reader_.Missing();
    if (!missing.ok()) {
      Fail(missing.status());
      return;
    }
    if (*missing == 0) break;
    ssize_t n = recv(socket_.get(), buf, std::min({*missing, sizeof buf, budget}), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      closed = true;
      break;
    }
    received_ += size_t(n);
    budget -= size_t(n);
    reader_.Feed(ByteView(buf, size_t(n)));
  }
  if (!expecting && !reader_.empty()) {
    Fail(Status(Code::kCorruption, "worker sent an unrequested reply"));
    return;
  }
  auto body = reader_.Next();
  if (!body.ok()) {
    Fail(body.status());
    return;
  }
  if (!*body) {
    if (closed) Fail(Status(Code::kUnavailable, "worker closed its socket"));
    return;
  }
  auto reply = DecodeReply(**body);
  if (!reply.ok()) {
    Fail(reply.status());
    return;
  }
  if (IsGuestFrame(reply->type) || on_guest_) return Dispatch(std::move(reply).value(), closed);
  // A worker may reply and exit at once (a fatal request): the reply counts.
  // Anything else after it is a second reply.
  uint8_t next = 0;
  ssize_t peeked = recv(socket_.get(), &next, 1, MSG_PEEK | MSG_DONTWAIT);
  if (peeked > 0) {
    Fail(Status(Code::kCorruption, "worker sent more than one reply"));
    return;
  }
  if (peeked == 0 || closed) {
    Close();
    Reap(std::chrono::milliseconds(100));
  }
  if (timer_) loop_.CancelTimer(*timer_);
  timer_.reset();
  Complete(std::move(reply));
}

void WorkerClient::Dispatch(WorkerReply frame, bool closed) {
  // A worker serving its guest may have sent its next frame already (a note
  // after a reply); level-triggered epoll brings the loop back for it.
  std::weak_ptr<bool> token = alive_token_;
  auto still_here = [&token] {
    auto t = token.lock();
    return t && *t;
  };
  if (adopt_nonce_) {
    // Taking the worker over: what it sent before kAdopted was for the
    // previous daemon. A guest frame comes again after kAdopted; a reply
    // means the worker ran a request whose outcome that daemon may not
    // have kept.
    if (frame.type != WorkerMsg::kAdopted || frame.nonce != *adopt_nonce_) {
      if (!IsGuestFrame(frame.type)) adopt_unclean_ = true;
      if (frame.type == WorkerMsg::kFailure) return Fail(Status(Code::kUnavailable, frame.message));
      if (closed && socket_.valid()) Fail(Status(Code::kUnavailable, "worker closed its socket"));
      return;
    }
    adopt_nonce_.reset();
  }
  if (IsGuestFrame(frame.type)) {
    if (!on_guest_) return Fail(Status(Code::kCorruption, "worker sent a guest frame without a guest"));
    if (frame.type != WorkerMsg::kGuestRejected) guest_outstanding_ = true;
    GuestHandler handler = on_guest_;  // it may destroy this client
    handler(std::move(frame));
  } else {
    if (!pending_) return Fail(Status(Code::kCorruption, "worker sent an unrequested reply"));
    if (timer_) loop_.CancelTimer(*timer_);
    timer_.reset();
    Complete(std::move(frame));
  }
  if (closed && still_here() && socket_.valid()) Fail(Status(Code::kUnavailable, "worker closed its socket"));
}

void WorkerClient::Fail(Status st) {
  ReplyCallback cb = std::move(pending_);
  pending_ = nullptr;
  bool closed_by_worker = st.code() == Code::kUnavailable;
  Close();
  Reap(std::chrono::milliseconds(closed_by_worker ? 100 : 0));
  if (cb) return cb(std::move(st));
  if (on_guest_) {
    // No call to fail: the worker serving its guest died or broke the
    // protocol between two of our requests. Its owner hears it as a frame.
    WorkerReply failure;
    failure.type = WorkerMsg::kFailure;
    failure.code = uint32_t(st.code());
    failure.message = st.ToString();
    GuestHandler handler = std::move(on_guest_);
    on_guest_ = nullptr;
    handler(std::move(failure));
  }
}

void WorkerClient::Complete(Result<WorkerReply> r) {
  ReplyCallback cb = std::move(pending_);
  pending_ = nullptr;
  if (cb) cb(std::move(r));
}

}  // namespace vtpm
