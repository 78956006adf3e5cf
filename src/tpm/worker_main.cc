// vtpm-worker: hosts one libtpms TPM 1.2 for the daemon (design §2).
//
// argv: vtpm-worker --fd=N --uid=U --gid=G [--test-commands] [--test-parse-probe]
//   --fd             the parent's socket (SOCK_STREAM, worker_protocol.h); 3 by default
//   --uid/--gid      the unprivileged identity to switch to when started as root
//   --test-commands  accept kTestOpen/kTestSyscall (sandbox tests; only a test
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
#include <sys/socket.h>
#endif

#include "tpm/libtpms_host.h"
#include "tpm/sandbox.h"
#include "tpm/worker_protocol.h"

namespace vtpm {
namespace {

#ifdef VTPM_TEST_BUILD
constexpr char kUsage[] =
    "usage: vtpm-worker --fd=N --uid=U --gid=G [--test-commands] [--test-parse-probe]";
#else
constexpr char kUsage[] = "usage: vtpm-worker --fd=N --uid=U --gid=G";
#endif

struct WorkerArgs {
  SandboxOptions sandbox;
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
        value("--gid=", args.sandbox.gid)) {
      continue;
    }
#ifdef VTPM_TEST_BUILD
    if (a == "--test-commands" || a == "--test-parse-probe") {
      (a == "--test-commands" ? args.test_commands : args.test_parse_probe) = true;
      continue;
    }
#endif
    return false;
  }
  return true;
}

void Diagnose(std::string_view what) {
  std::string line = "vtpm-worker: " + std::string(what) + "\n";
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, line.data(), line.size());
}

bool WriteAll(int fd, const Bytes& frame) {
  size_t off = 0;
  while (off < frame.size()) {
    ssize_t n = write(fd, frame.data() + off, frame.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += size_t(n);
  }
  return true;
}

// Blocks for the next request body; nullopt on EOF or a broken stream.
std::optional<Bytes> ReadBody(int fd, FrameReader& reader) {
  uint8_t buf[16384];
  for (;;) {
    auto next = reader.Next();
    if (!next.ok()) return std::nullopt;
    if (*next) return std::move(**next);
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    reader.Feed(ByteView(buf, size_t(n)));
  }
}

WorkerReply Failure(const Status& st) {
  WorkerReply r;
  r.type = WorkerMsg::kFailure;
  r.code = uint32_t(st.code());
  r.message = st.ToString();
  return r;
}

#ifdef VTPM_TEST_BUILD
// Test-only probes of the sandbox: each should kill the process.
WorkerReply RunTestCommand(const WorkerRequest& req) {
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

int Serve(const WorkerArgs& args) {
  const int fd = args.sandbox.keep_fd;
  FrameReader reader;
  LibtpmsHost tpm;
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
  // parsed under it (design §2 "vtpm-worker"). A failure is kInit's answer.
  Status ready = tpm.Prepare();
  if (ready.ok()) ready = LoadSyscallFilter();
  for (;;) {
    auto body = ReadBody(fd, reader);
    if (!body) return reader.empty() ? 0 : 1;
    auto req = DecodeRequest(*body);
    if (!req.ok()) {
      WriteAll(fd, EncodeReply(Failure(req.status())));
      return 1;
    }
    WorkerReply reply;
    bool fatal = false;
    if (req->type == WorkerMsg::kInit) {
      auto init = ready.ok() ? tpm.Init(*req) : Result<WorkerReply>(ready);
      fatal = !init.ok();
      reply = init.ok() ? std::move(init).value() : Failure(init.status());
      started = init.ok();
    } else if (req->type == WorkerMsg::kExecute && started) {
      reply = tpm.Execute(*req);
#ifdef VTPM_TEST_BUILD
    } else if (req->type != WorkerMsg::kExecute && args.test_commands && started) {
      reply = RunTestCommand(*req);
#endif
    } else {
      reply = Failure(Status(Code::kFailedPrecondition, "request not allowed now"));
      fatal = true;
    }
    if (!WriteAll(fd, EncodeReply(reply))) return 1;
    if (fatal) return 1;
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
  vtpm::Status st = vtpm::DropPrivileges(args.sandbox);
  if (!st.ok()) {
    vtpm::Diagnose("sandbox: " + st.ToString());
    return 1;
  }
  // _exit: no atexit handlers (LeakSanitizer's would need ptrace) under seccomp.
  _exit(vtpm::Serve(args));
}
