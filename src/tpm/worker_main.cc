// vtpm-worker: hosts one libtpms TPM 1.2 for the daemon (design §2).
//
// argv: vtpm-worker --fd=N --uid=U --gid=G [--guest=D:R:P --mark-fd=M --flight-fd=F [--any-locality] [--found]
//                   [--heartbeat-ms=T] [--no-tpm] [--volatile-slots]]
//                   [--test-commands] [--test-parse-probe]
//   --fd             the parent's socket (SOCK_STREAM, worker_protocol.h); 3 by default
//   --uid/--gid      the unprivileged identity to switch to when started as root
//   --guest          serve domain D's shared page (grant ref R) and event
//                    channel (its port P) itself (tpm/worker_guest.h); both
//                    are opened before the privileges are dropped
//   --mark-fd        the instance's responded-mark file, open for writing
//   --flight-fd      the flight record's memfd (tpm/worker_flight.h), mapped and closed
//   --any-locality   accept guest requests at any locality, not only 0
//   --found          the first guest request seen goes to the daemon as found
//   --heartbeat-ms   while serving, renew the flight record's sign of life at
//                    least every T ms (default: only when woken)
//   --no-tpm         serve the guest without a TPM (a broken instance): no
//                    libtpms start-up, kServe without kInit, and every request
//                    goes to the daemon as found for it to answer
//   --volatile-slots a command that changes only the volatile state is kept
//                    in the flight record's volatile slot and answered by the
//                    worker (tpm/worker_guest.h), while the daemon grants it
//   --crash-at       (VTPM_TEST_HOOKS builds) common/crash_point.h
//   --test-commands  accept kTestOpen/kTestSyscall/kTestIoctl (sandbox tests; only a test
//                    build, VTPM_TEST_BUILD, has the flag and the commands)
//   --test-parse-probe  (test build) just before libtpms is first handed a
//                    stored blob, write one byte 'P' to the socket and block
//                    until one byte comes back, so a test can inspect the
//                    process at that moment
// The environment is not read. Exit status: 0 when the parent closes the
// socket, 1 on a protocol or start-up error (after a kFailure reply when possible).
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>

#ifdef VTPM_TEST_BUILD
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#endif

#include <poll.h>

#include "common/crash_point.h"
#include "tpm/guest_channel.h"
#include "tpm/libtpms_host.h"
#include "tpm/sandbox.h"
#include "tpm/worker_guest.h"
#include "tpm/worker_protocol.h"

namespace vtpm {
namespace {

#ifdef VTPM_TEST_BUILD
constexpr char kUsage[] =
    "usage: vtpm-worker --fd=N --uid=U --gid=G [--guest=D:R:P --mark-fd=M --flight-fd=F [--any-locality] "
    "[--found] [--heartbeat-ms=T] [--no-tpm] [--volatile-slots]] [--test-commands] [--test-parse-probe]";
#else
constexpr char kUsage[] =
    "usage: vtpm-worker --fd=N --uid=U --gid=G [--guest=D:R:P --mark-fd=M --flight-fd=F [--any-locality] "
    "[--found] [--heartbeat-ms=T] [--no-tpm] [--volatile-slots]]";
#endif

struct WorkerArgs {
  SandboxOptions sandbox;
  std::optional<GuestLink> guest;
  GuestServerOptions serve;
  int flight_fd = -1;
  int heartbeat_ms = -1;  // poll(2)'s timeout while serving
#ifdef VTPM_TEST_BUILD
  bool test_commands = false;
  bool test_parse_probe = false;
#endif
};

template <typename T>
bool ParseNumber(std::string_view text, T& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

bool ParseArgs(int argc, char** argv, WorkerArgs& args) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a(argv[i]);
    auto value = [&](std::string_view flag, auto& out) {
      return a.substr(0, flag.size()) == flag && ParseNumber(a.substr(flag.size()), out);
    };
    if (value("--fd=", args.sandbox.keep_fd) || value("--uid=", args.sandbox.uid) ||
        value("--gid=", args.sandbox.gid) || value("--mark-fd=", args.serve.mark_fd) ||
        value("--flight-fd=", args.flight_fd) || value("--heartbeat-ms=", args.heartbeat_ms)) {
      continue;
    }
    if (a.substr(0, 8) == "--guest=") {
      std::string_view rest = a.substr(8);
      size_t c1 = rest.find(':'), c2 = rest.rfind(':');
      GuestLink link;
      if (c1 == std::string_view::npos || c1 == c2 || !ParseNumber(rest.substr(0, c1), link.domid) ||
          !ParseNumber(rest.substr(c1 + 1, c2 - c1 - 1), link.ring_ref) ||
          !ParseNumber(rest.substr(c2 + 1), link.remote_port))
        return false;
      args.guest = link;
      continue;
    }
    if (a == "--volatile-slots") {
      args.serve.volatile_slots = true;
      continue;
    }
    if (a == "--any-locality" || a == "--found" || a == "--no-tpm") {
      (a == "--found" ? args.serve.found : a == "--no-tpm" ? args.serve.no_tpm : args.serve.any_locality) = true;
      continue;
    }
#ifdef VTPM_TEST_HOOKS
    if (a.substr(0, 11) == "--crash-at=") {
      SetCrashAt(argv[i] + 11);  // common/crash_point.h: the points of GuestServer's page writes
      continue;
    }
#endif
#ifdef VTPM_TEST_BUILD
    if (a == "--test-commands" || a == "--test-parse-probe") {
      (a == "--test-commands" ? args.test_commands : args.test_parse_probe) = true;
      continue;
    }
#endif
    return false;
  }
  if (args.heartbeat_ms == 0 || args.heartbeat_ms < -1) return false;
  if (args.serve.no_tpm && !args.guest) return false;
  return !args.guest || (args.serve.mark_fd > STDERR_FILENO && args.flight_fd > STDERR_FILENO);
}

void Diagnose(std::string_view what) {
  std::string line = "vtpm-worker: " + std::string(what) + "\n";
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, line.data(), line.size());
}

WorkerReply Failure(const Status& st) {
  WorkerReply r;
  r.type = WorkerMsg::kFailure;
  r.code = uint32_t(st.code());
  r.message = st.ToString();
  return r;
}

#ifdef VTPM_TEST_BUILD
// The guest's event-channel descriptor, for kTestIoctl.
int test_evtchn_fd = -1;

// Test-only probes of the sandbox: each should kill the process, but for an
// ioctl the filter allows.
WorkerReply RunTestCommand(const WorkerRequest& req) {
  if (req.type == WorkerMsg::kTestIoctl) {
    uint32_t port = 0;
    int fd = req.ioctl_target == 0 ? test_evtchn_fd : 3;
    int rc = ioctl(fd, req.ioctl_request, &port);
    return Failure(rc < 0 ? Status::FromErrno(errno, "ioctl failed") : Status(Code::kInternal, "ioctl succeeded"));
  }
  if (req.type == WorkerMsg::kTestOpen) {
    int fd = open(req.path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    return Failure(fd < 0 ? Status::FromErrno(errno, "open refused")
                          : Status(Code::kInternal, "open succeeded"));
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  return Failure(fd < 0 ? Status::FromErrno(errno, "socket refused")
                        : Status(Code::kInternal, "socket succeeded"));
}
#endif

// Answers one request of the daemon. False when the worker must exit.
bool HandleRequest(const WorkerArgs& args, WorkerConn& conn, LibtpmsHost& tpm, TpmBaseline& baseline,
                   const Status& ready, bool& started, const WorkerRequest& req) {
  WorkerReply reply;
  bool fatal = false;
  if (req.type == WorkerMsg::kInit && !started && !args.serve.no_tpm) {
    auto init = ready.ok() ? tpm.Init(req) : Result<WorkerReply>(ready);
    fatal = !init.ok();
    reply = init.ok() ? std::move(init).value() : Failure(init.status());
    started = init.ok();
    baseline.Init(req);
    if (started) baseline.Apply(reply);
  } else if (req.type == WorkerMsg::kExecute && started) {
    reply = tpm.Execute(req);
    baseline.Apply(reply);
  } else if (req.type == WorkerMsg::kServe && args.guest && (started || (args.serve.no_tpm && ready.ok()))) {
    reply.type = WorkerMsg::kReply;  // empty: the caller starts serving
  } else if (req.type == WorkerMsg::kAdopt && args.guest && started && !args.serve.no_tpm) {
    reply = AdoptedReply(req, baseline, 0);  // nothing outstanding: served from the main loop
  } else if (req.type == WorkerMsg::kServe && args.serve.no_tpm) {
    reply = Failure(ready);  // the guest link or the filter failed
    fatal = true;
#ifdef VTPM_TEST_BUILD
  } else if ((req.type == WorkerMsg::kTestOpen || req.type == WorkerMsg::kTestSyscall ||
              req.type == WorkerMsg::kTestIoctl) &&
             args.test_commands && started) {
    reply = RunTestCommand(req);
#endif
  } else {
    reply = Failure(Status(Code::kFailedPrecondition, "request not allowed now"));
    fatal = true;
  }
  (void)args;
  return conn.Send(EncodeReply(reply)) && !fatal;
}

int Serve(WorkerArgs& args, GuestChannel& guest, FlightPage& flight, const Status& guest_status) {
  const int fd = args.sandbox.keep_fd;
  WorkerConn conn(fd);
  LibtpmsHost tpm;
  TpmBaseline baseline;
  bool started = false;
#ifdef VTPM_TEST_BUILD
  if (args.test_parse_probe)
    LibtpmsHost::SetParseProbe([fd] {
      uint8_t b = 'P';
      if (write(fd, &b, 1) != 1) return;
      [[maybe_unused]] ssize_t n = read(fd, &b, 1);
    });
#endif
  // Sandbox stage 2 before the first request is read: libtpms' start-up
  // on no state, then the filter, so that every stored blob in kInit is
  // parsed under it (design §2 "vtpm-worker"). A failure is kInit's answer;
  // so is a guest page or channel that could not be opened.
  Status ready = guest_status;
  if (ready.ok() && !args.serve.no_tpm) ready = tpm.Prepare();
  GuestSyscalls allowed;
  if (guest.valid()) allowed = {guest.fd(), args.serve.mark_fd};
  if (ready.ok()) ready = LoadSyscallFilter(allowed);
  if (flight.valid()) args.serve.flight = &flight;
  std::optional<GuestServer> server;
  for (;;) {
    if (server) {
      // Daemon requests that came while a guest command waited for kRelease.
      while (!server->deferred().empty()) {
        WorkerRequest req = std::move(server->deferred().front());
        server->deferred().pop_front();
        if (!HandleRequest(args, conn, tpm, baseline, ready, started, req)) return 1;
      }
      auto buffered = conn.TakeBuffered();
      if (!buffered.ok()) return 1;
      if (!*buffered) {
        pollfd pfd[2] = {{fd, POLLIN, 0}, {guest.fd(), POLLIN, 0}};
        const int ready_fds = poll(pfd, 2, args.heartbeat_ms);
        if (flight.valid()) flight.Alive();
        if (ready_fds < 0) {
          if (errno == EINTR) continue;
          return 1;
        }
        if (pfd[1].revents & POLLIN) {
          Status ev = guest.TakeEvent();
          if (!ev.ok() && ev.code() != Code::kBusy) return 1;
          if (!server->ServePage()) return 1;
        }
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
          if (!conn.ReadSome()) return conn.at_frame_boundary() ? 0 : 1;
        }
        continue;
      }
      auto req = DecodeRequest(**buffered);
      if (!req.ok()) {
        conn.Send(EncodeReply(Failure(req.status())));
        return 1;
      }
      if (!HandleRequest(args, conn, tpm, baseline, ready, started, *req)) return 1;
      continue;
    }
    auto body = conn.Read();
    if (!body) return conn.at_frame_boundary() ? 0 : 1;
    auto req = DecodeRequest(*body);
    if (!req.ok()) {
      conn.Send(EncodeReply(Failure(req.status())));
      return 1;
    }
    if (!HandleRequest(args, conn, tpm, baseline, ready, started, *req)) return 1;
    if (req->type == WorkerMsg::kServe) {
      // The TPM is up and started: from now on the guest is served. Its
      // first request may have been written before the channel was bound.
      server.emplace(guest, conn, tpm, baseline, args.serve);
      if (flight.valid()) flight.Alive();
      if (!server->ServePage()) return 1;
    }
  }
}

}  // namespace
}  // namespace vtpm

int main(int argc, char** argv) {
  vtpm::WorkerArgs args;
  if (!vtpm::ParseArgs(argc, argv, args)) {
    vtpm::Diagnose(vtpm::kUsage);
    return 1;
  }
  // The guest's page and channel are opened as root, before the sandbox; a
  // failure is reported as kInit's answer, where the daemon logs it.
  vtpm::GuestChannel guest;
  vtpm::FlightPage flight;
  vtpm::Status guest_status;
  if (args.guest) {
    auto mapped = vtpm::FlightPage::Map(args.flight_fd);
    close(args.flight_fd);  // the mapping is all the worker keeps of it
    if (mapped.ok()) flight = std::move(mapped).value();
    else guest_status = mapped.status().Annotate("flight record");
  }
  if (args.guest && guest_status.ok()) {
    auto opened = vtpm::GuestChannel::Open(*args.guest);
    if (opened.ok()) {
      guest = std::move(opened).value();
      args.sandbox.extra_fds = {guest.fd(), args.serve.mark_fd};
#ifdef VTPM_TEST_BUILD
      vtpm::test_evtchn_fd = guest.fd();
#endif
    } else {
      guest_status = opened.status().Annotate("guest link");
    }
  }
  // A worker with a TPM serving its guest may outlive the daemon (design §2
  // "Workers outlive the daemon"); every other one dies with it.
  args.sandbox.outlive_parent = args.guest.has_value() && !args.serve.no_tpm;
  vtpm::Status st = vtpm::DropPrivileges(args.sandbox);
  if (!st.ok()) {
    vtpm::Diagnose("sandbox: " + st.ToString());
    return 1;
  }
  // _exit: no atexit handlers (LeakSanitizer's would need ptrace) under seccomp.
  _exit(vtpm::Serve(args, guest, flight, guest_status));
}
