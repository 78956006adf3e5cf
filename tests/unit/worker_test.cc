// The real vtpm-worker over its protocol: start, TPM commands, blob
// reporting, state round trip, sandbox.
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "common/child_process.h"
#include "tpm/sandbox.h"
#include "worker_test_util.h"

namespace vtpm {
namespace {

using namespace vtpm::testing;

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok()) << loop.status().ToString();
    loop_ = std::move(loop).value();
  }
  std::unique_ptr<WorkerClient> Start(bool test_commands = false) {
    auto c = WorkerClient::Start(*loop_, TestWorkerOptions(test_commands));
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  WorkerReply Call(WorkerClient& c, const WorkerRequest& req) {
    auto r = CallSync(*loop_, c, req);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : WorkerReply{};
  }
  uint32_t Rc(WorkerClient& c, Bytes cmd, bool presence = false) {
    WorkerReply r = Call(c, ExecRequest(std::move(cmd), presence));
    return tpm12::ResponseCode(r.response).value_or(0xFFFFFFFF);
  }
  std::unique_ptr<EventLoop> loop_;
};

const BlobChange* FindChange(const WorkerReply& r, BlobKind kind) {
  for (auto& c : r.changes)
    if (c.kind == kind) return &c;
  return nullptr;
}

Bytes PermanentOf(const WorkerReply& r) {
  const BlobChange* c = FindChange(r, BlobKind::kPermanent);
  if (c == nullptr || !c->data) {
    ADD_FAILURE() << "no permanent blob in the reply";
    return {};
  }
  return *c->data;
}

TEST_F(WorkerTest, FreshStartReportsPermanentBlobAndNeedsStartup) {
  auto w = Start();
  WorkerReply init = Call(*w, InitRequest());
  ASSERT_EQ(init.type, WorkerMsg::kReply);
  const BlobChange* perm = FindChange(init, BlobKind::kPermanent);
  ASSERT_NE(perm, nullptr);
  ASSERT_TRUE(perm->data.has_value());
  EXPECT_GT(perm->data->size(), 500u);
  EXPECT_EQ(Rc(*w, tpm12::PcrRead(0)), tpm12::kInvalidPostinit);
  EXPECT_EQ(Rc(*w, tpm12::Startup(tpm12::kStClear)), tpm12::kSuccess);
  WorkerReply read = Call(*w, ExecRequest(tpm12::PcrRead(10)));
  EXPECT_EQ(tpm12::PcrFromResponse(read.response), tpm12::PcrValue{});
  EXPECT_FALSE(read.volatile_state.empty());
}

TEST_F(WorkerTest, ExtendChangesPcrAndVolatileStateRestoresIt) {
  auto w = Start();
  WorkerReply init = Call(*w, InitRequest());
  Bytes permanent = PermanentOf(init);
  ASSERT_EQ(Rc(*w, tpm12::Startup(tpm12::kStClear)), tpm12::kSuccess);
  tpm12::PcrValue digest;
  digest.fill(0xAB);
  WorkerReply ext = Call(*w, ExecRequest(tpm12::PcrExtend(10, digest)));
  ASSERT_EQ(tpm12::ResponseCode(ext.response), tpm12::kSuccess);
  WorkerReply read = Call(*w, ExecRequest(tpm12::PcrRead(10)));
  auto pcr = tpm12::PcrFromResponse(read.response);
  ASSERT_TRUE(pcr.has_value());
  EXPECT_NE(*pcr, tpm12::PcrValue{});
  for (auto& c : read.changes) ADD_FAILURE() << "PCRRead stored blob kind " << int(c.kind);

  // A second worker from permanent + volatile resumes without Startup.
  auto w2 = Start();
  Call(*w2, InitRequest(permanent, read.volatile_state));
  WorkerReply read2 = Call(*w2, ExecRequest(tpm12::PcrRead(10)));
  EXPECT_EQ(tpm12::PcrFromResponse(read2.response), pcr);
  EXPECT_EQ(Rc(*w2, tpm12::Startup(tpm12::kStClear)), tpm12::kInvalidPostinit);

  // From permanent only it is a fresh power-on: Startup needed, PCRs reset.
  auto w3 = Start();
  Call(*w3, InitRequest(permanent));
  EXPECT_EQ(Rc(*w3, tpm12::Startup(tpm12::kStClear)), tpm12::kSuccess);
  WorkerReply read3 = Call(*w3, ExecRequest(tpm12::PcrRead(10)));
  EXPECT_EQ(tpm12::PcrFromResponse(read3.response), tpm12::PcrValue{});
}

TEST_F(WorkerTest, SaveStateIsReportedAndDeletedAtStartup) {
  auto w = Start();
  WorkerReply init = Call(*w, InitRequest());
  Bytes permanent = PermanentOf(init);
  ASSERT_EQ(Rc(*w, tpm12::Startup(tpm12::kStClear)), tpm12::kSuccess);
  WorkerReply save = Call(*w, ExecRequest(tpm12::SaveState()));
  ASSERT_EQ(tpm12::ResponseCode(save.response), tpm12::kSuccess);
  const BlobChange* ss = FindChange(save, BlobKind::kSavestate);
  ASSERT_NE(ss, nullptr);
  ASSERT_TRUE(ss->data.has_value());

  auto w2 = Start();
  WorkerRequest init2 = InitRequest(permanent);
  init2.savestate = ss->data;
  Call(*w2, init2);
  WorkerReply start = Call(*w2, ExecRequest(tpm12::Startup(tpm12::kStState)));
  EXPECT_EQ(tpm12::ResponseCode(start.response), tpm12::kSuccess);
  const BlobChange* del = FindChange(start, BlobKind::kSavestate);
  ASSERT_NE(del, nullptr);
  EXPECT_FALSE(del->data.has_value());
}

// NV on a TPM that is not manufactured (no nvLocked, no owner): define,
// write and read need no authorisation; the blobs carry them to a new worker.
Bytes NvDefine(uint32_t index, uint32_t size) {
  Bytes b = tpm12::NvLock();
  StoreBe32(b.data() + 12, index);
  StoreBe32(b.data() + 70, 0x00000002);  // TPM_NV_PER_OWNERWRITE (no owner yet)
  StoreBe32(b.data() + 77, size);        // dataSize
  return b;
}
Bytes NvWrite(uint32_t index, ByteView data) {
  Bytes b = {0x00, 0xC1, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xCD};
  AppendBe32(b, index);
  AppendBe32(b, 0);  // offset
  AppendBe32(b, uint32_t(data.size()));
  AppendBytes(b, data);
  StoreBe32(b.data() + 2, uint32_t(b.size()));
  return b;
}
Bytes NvRead(uint32_t index, uint32_t size) {
  Bytes b = {0x00, 0xC1, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xCF};
  AppendBe32(b, index);
  AppendBe32(b, 0);
  AppendBe32(b, size);
  StoreBe32(b.data() + 2, uint32_t(b.size()));
  return b;
}

TEST_F(WorkerTest, NvDefineWriteReadSurvivesThroughBlobs) {
  auto w = Start();
  Bytes permanent = PermanentOf(Call(*w, InitRequest()));
  ASSERT_EQ(Rc(*w, tpm12::Startup(tpm12::kStClear)), tpm12::kSuccess);
  const uint32_t index = 0x00011000;
  const Bytes data = {'v', 't', 'p', 'm', '-', 'n', 'v', '!'};
  WorkerReply def = Call(*w, ExecRequest(NvDefine(index, uint32_t(data.size()))));
  ASSERT_EQ(tpm12::ResponseCode(def.response), tpm12::kSuccess);
  ASSERT_NE(FindChange(def, BlobKind::kPermanent), nullptr) << "NV_DefineSpace stored nothing";
  WorkerReply wr = Call(*w, ExecRequest(NvWrite(index, data)));
  ASSERT_EQ(tpm12::ResponseCode(wr.response), tpm12::kSuccess);
  permanent = PermanentOf(wr);

  auto w2 = Start();
  Call(*w2, InitRequest(permanent));
  ASSERT_EQ(Rc(*w2, tpm12::Startup(tpm12::kStClear)), tpm12::kSuccess);
  WorkerReply rd = Call(*w2, ExecRequest(NvRead(index, uint32_t(data.size()))));
  ASSERT_EQ(tpm12::ResponseCode(rd.response), tpm12::kSuccess);
  auto body = tpm12::ResponseBody(rd.response);
  ASSERT_TRUE(body.has_value());
  ASSERT_EQ(body->size(), 4 + data.size());
  EXPECT_EQ(Bytes(body->begin() + 4, body->end()), data);
}

TEST_F(WorkerTest, ExecuteBeforeInitIsRefusedAndWorkerExits) {
  auto w = Start();
  WorkerReply r = Call(*w, ExecRequest(tpm12::PcrRead(0)));
  EXPECT_EQ(r.type, WorkerMsg::kFailure);
  auto next = CallSync(*loop_, *w, ExecRequest(tpm12::PcrRead(0)));
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.status().code(), Code::kUnavailable);
}

TEST_F(WorkerTest, DeadlineKillsAStoppedWorker) {
  auto w = Start();
  Call(*w, InitRequest());
  kill(w->pid(), SIGSTOP);
  auto r = CallSync(*loop_, *w, ExecRequest(tpm12::Startup(tpm12::kStClear)),
                    std::chrono::milliseconds(200));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kTimeout);
  EXPECT_FALSE(w->alive());
}

TEST_F(WorkerTest, KilledWorkerFailsTheCall) {
  auto w = Start();
  Call(*w, InitRequest());
  kill(w->pid(), SIGKILL);
  auto r = CallSync(*loop_, *w, ExecRequest(tpm12::Startup(tpm12::kStClear)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
}

// The sandbox: after start-up an open() or a socket() kills the worker (SIGSYS).
// Runs `loop` until `w`'s worker has been reaped (at most 10 s); the longest
// loop iteration meanwhile goes to `longest`.
// The fields of /proc/<pid>/status.
std::map<std::string, std::string> ProcStatus(pid_t pid) {
  std::map<std::string, std::string> fields;
  std::string status_path = "/proc/" + std::to_string(pid) + "/status";
  FILE* f = fopen(status_path.c_str(), "r");
  if (f == nullptr) {
    ADD_FAILURE() << "cannot read " << status_path;
    return fields;
  }
  char line[512];
  while (fgets(line, sizeof line, f)) {
    std::string l(line);
    auto colon = l.find(':');
    if (colon == std::string::npos) continue;
    auto v = l.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    if (!v.empty() && v.back() == '\n') v.pop_back();
    fields[l.substr(0, colon)] = v;
  }
  fclose(f);
  return fields;
}

// What /proc says about a running worker: unprivileged, no_new_privs,
// seccomp filter mode, only its socket (and stderr) open.
TEST_F(WorkerTest, SandboxIsInPlace) {
  auto w = Start();
  Call(*w, InitRequest());
  std::map<std::string, std::string> fields = ProcStatus(w->pid());
  EXPECT_EQ(fields["NoNewPrivs"], "1");
  EXPECT_EQ(fields["Seccomp"], "2");
  if (geteuid() == 0) {
    // real, effective, saved and filesystem ids all dropped
    const std::string uid = std::to_string(w->uid()), gid = std::to_string(ResolveWorkerGroup());
    EXPECT_EQ(fields["Uid"], uid + "\t" + uid + "\t" + uid + "\t" + uid);
    EXPECT_EQ(fields["Gid"], gid + "\t" + gid + "\t" + gid + "\t" + gid);
    EXPECT_GE(w->uid(), kTestWorkerUidBase);
    EXPECT_EQ(fields["Groups"], "");
  }
  std::set<std::string> fds;
  for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(w->pid()) + "/fd"))
    fds.insert(e.path().filename());
  EXPECT_EQ(fds, (std::set<std::string>{"2", "3"}));
}

// Issue 16: the filter is in force before libtpms parses a stored blob
// (design §2 "vtpm-worker"). A worker started with --test-parse-probe
// stops at that moment and says so on its socket; /proc shows its mode.
TEST_F(WorkerTest, FilterIsActiveBeforeTheFirstStoredBlobIsParsed) {
  auto first = Start();
  Bytes permanent = PermanentOf(Call(*first, InitRequest()));
  first.reset();

  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd mine(sv[0]), theirs(sv[1]);
  WorkerOptions o = TestWorkerOptions();
  SpawnOptions spawn;
  spawn.argv = {o.path, "--fd=3", "--uid=" + std::to_string(o.uid), "--gid=" + std::to_string(o.gid),
                "--test-parse-probe"};
  spawn.env = {"PATH=/nonexistent"};
  spawn.fd_map = {{theirs.get(), 3}};
  auto child = ChildProcess::Spawn(spawn);
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  theirs.reset();
  timeval tv{20, 0};
  ASSERT_EQ(setsockopt(mine.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  Bytes frame = EncodeRequest(InitRequest(permanent));
  ASSERT_EQ(write(mine.get(), frame.data(), frame.size()), ssize_t(frame.size()));

  uint8_t b = 0;
  ASSERT_EQ(read(mine.get(), &b, 1), 1) << "the worker never reached its first parse";
  ASSERT_EQ(b, 'P');
  EXPECT_EQ(ProcStatus(child->pid())["Seccomp"], "2") << "a stored blob was about to be parsed unfiltered";

  // Released, it starts from that blob as usual.
  ASSERT_EQ(write(mine.get(), &b, 1), 1);
  FrameReader reader;
  std::optional<Bytes> body;
  while (!body) {
    uint8_t buf[4096];
    ssize_t n = read(mine.get(), buf, sizeof buf);
    ASSERT_GT(n, 0) << "no reply to kInit";
    reader.Feed(ByteView(buf, size_t(n)));
    auto next = reader.Next();
    ASSERT_TRUE(next.ok());
    body = std::move(*next);
  }
  auto reply = DecodeReply(*body);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->type, WorkerMsg::kReply) << reply->message;
}

TEST_F(WorkerTest, SandboxKillsOpen) {
  auto w = Start(true);
  Call(*w, InitRequest());
  std::string dir = ::testing::TempDir() + "/vtpm-open-XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  chmod(dir.c_str(), 0777);
  WorkerRequest req;
  req.type = WorkerMsg::kTestOpen;
  req.path = dir + "/created-by-worker";
  ExpectKilledBySeccomp(*loop_, *w, req);
  EXPECT_FALSE(std::filesystem::exists(req.path));
  std::filesystem::remove_all(dir);
}

TEST_F(WorkerTest, SandboxKillsForbiddenSyscall) {
  auto w = Start(true);
  Call(*w, InitRequest());
  WorkerRequest req;
  req.type = WorkerMsg::kTestSyscall;
  ExpectKilledBySeccomp(*loop_, *w, req);
}

}  // namespace
}  // namespace vtpm

namespace vtpm {
namespace {

// A stand-in for a compromised worker: a /bin/sh script started exactly as
// vtpm-worker is (--fd=3 ...), doing `body` with the daemon's socket at fd 3.
class FakeWorker {
 public:
  explicit FakeWorker(const std::string& body) {
    dir_ = ::testing::TempDir() + "/vtpm-fake-worker-XXXXXX";
    if (mkdtemp(dir_.data()) == nullptr) ADD_FAILURE() << "mkdtemp";
    path_ = dir_ + "/worker.sh";
    FILE* f = fopen(path_.c_str(), "w");
    if (f == nullptr) ADD_FAILURE() << "fopen " << path_;
    fprintf(f, "#!/bin/sh\n%s\n", body.c_str());
    fclose(f);
    chmod(path_.c_str(), 0755);
  }
  ~FakeWorker() { std::filesystem::remove_all(dir_); }
  WorkerOptions Options() const {
    WorkerOptions o = TestWorkerOptions();
    o.path = path_;
    return o;
  }

 private:
  std::string dir_, path_;
};

using Millis = std::chrono::duration<double, std::milli>;

// Runs the call, timing every loop iteration: the longest is how long the
// worker held the loop up. The worker gets a head start to fill its socket.
Result<WorkerReply> TimedCall(EventLoop& loop, WorkerClient& w, Millis& longest) {
  std::optional<Result<WorkerReply>> out;
  w.Call(InitRequest(), std::chrono::seconds(20), [&](Result<WorkerReply> r) { out = std::move(r); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  longest = Millis(0);
  while (!out) {
    auto t0 = std::chrono::steady_clock::now();
    Status st = loop.RunOnce(std::chrono::milliseconds(0));
    longest = std::max(longest, Millis(std::chrono::steady_clock::now() - t0));
    if (!st.ok()) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::move(*out);
}

// Starts `fake`, asks it for a reply and expects it faulted (kCorruption)
// after the daemon read at most `max_read` bytes, the loop never held up.
void ExpectFaultedReadingAtMost(EventLoop& loop, const FakeWorker& fake, size_t max_read) {
  auto w = WorkerClient::Start(loop, fake.Options());
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  Millis longest;
  auto r = TimedCall(loop, **w, longest);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().ToString();
  EXPECT_LE((*w)->received_bytes(), max_read);
  EXPECT_FALSE((*w)->alive());
  EXPECT_LT(longest.count(), 200.0);
}

// Issue 16: a worker announcing a frame over kMaxFrameBody is faulted at its
// length prefix, before a byte of the body is read.
TEST_F(WorkerTest, OversizedFrameIsRefusedAtItsLengthPrefix) {
  FakeWorker fake("printf '\\377\\377\\377\\377' >&3; exec /bin/cat /dev/zero >&3");
  ExpectFaultedReadingAtMost(*loop_, fake, 4);
}

// A worker flooding its socket behind a valid length prefix: the daemon
// reads one frame of at most kMaxFrameBody, a bounded amount per wake-up,
// and faults the worker for what it sent.
TEST_F(WorkerTest, FloodingWorkerIsReadOneFrameAtMost) {
  FakeWorker fake("printf '\\000\\020\\000\\000' >&3; exec /bin/cat /dev/zero >&3");
  ExpectFaultedReadingAtMost(*loop_, fake, 4 + kMaxFrameBody);
}

bool ProcessExists(pid_t pid) { return std::filesystem::exists("/proc/" + std::to_string(pid)); }

// Issue 16: a worker that closed its socket but does not exit (stopped here)
// gets its grace on a loop timer, not in a sleep on the loop; then it is
// SIGKILLed and reaped, and leaves no zombie.
TEST_F(WorkerTest, WorkerThatDoesNotExitIsReapedWithoutBlockingTheLoop) {
  FakeWorker fake("exec 3>&-; kill -STOP $$");
  auto w = WorkerClient::Start(*loop_, fake.Options());
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  const pid_t pid = (*w)->pid();
  Millis longest;
  auto r = TimedCall(*loop_, **w, longest);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  RunUntilReaped(*loop_, **w, &longest);
  ASSERT_TRUE((*w)->exit_status().has_value()) << "never reaped";
  EXPECT_TRUE(WIFSIGNALED(*(*w)->exit_status())) << DescribeWaitStatus(*(*w)->exit_status());
  EXPECT_EQ(WTERMSIG(*(*w)->exit_status()), SIGKILL);
  EXPECT_FALSE(ProcessExists(pid)) << "zombie left behind";
  EXPECT_LT(longest.count(), 90.0) << "the loop waited out the 100 ms grace";
}

// Destroying the client of a stopped worker returns at once; the worker is
// killed and reaped from the loop afterwards.
TEST_F(WorkerTest, DestroyedClientsWorkerIsReapedFromTheLoop) {
  auto w = Start();
  Call(*w, InitRequest());
  const pid_t pid = w->pid();
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  w.reset();
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ProcessExists(pid) && std::chrono::steady_clock::now() < until)
    ASSERT_TRUE(loop_->RunOnce(std::chrono::milliseconds(10)).ok());
  EXPECT_FALSE(ProcessExists(pid)) << "zombie left behind";
}

// Design §2 "Identities": every live worker has a uid of its own, and a uid
// is handed out again only once the worker that held it has been reaped.
TEST_F(WorkerTest, EachWorkerRunsUnderAUidOfItsOwnHeldUntilItIsReaped) {
  auto pool = WorkerIdentities::Create(kTestWorkerUidBase + 0x100, 2, ResolveWorkerGroup());
  WorkerOptions o = TestWorkerOptions();
  o.identities = pool;
  auto a = WorkerClient::Start(*loop_, o);
  auto b = WorkerClient::Start(*loop_, o);
  ASSERT_TRUE(a.ok() && b.ok());
  Call(**a, InitRequest());
  Call(**b, InitRequest());
  EXPECT_NE((*a)->uid(), (*b)->uid());
  if (geteuid() == 0) {
    for (WorkerClient* w : {a->get(), b->get()}) {
      std::string uid = ProcStatus(w->pid())["Uid"];
      EXPECT_EQ(uid.substr(0, uid.find('\t')), std::to_string(w->uid()));
    }
  }
  auto third = WorkerClient::Start(*loop_, o);
  ASSERT_FALSE(third.ok()) << "a third worker shares a uid with a live one";
  EXPECT_EQ(third.status().code(), Code::kBusy) << third.status().ToString();

  const pid_t pid = (*a)->pid();
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  a->reset();  // SIGKILL, reaped from the loop
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (pool->in_use() == 2 && std::chrono::steady_clock::now() < until) {
    EXPECT_TRUE(ProcessExists(pid)) << "reaped but its uid still held";
    ASSERT_TRUE(loop_->RunOnce(std::chrono::milliseconds(10)).ok());
  }
  ASSERT_EQ(pool->in_use(), 1u);
  EXPECT_FALSE(ProcessExists(pid)) << "its uid was returned before it was reaped";
  auto again = WorkerClient::Start(*loop_, o);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_NE((*again)->uid(), (*b)->uid());
}

// A daemon taking over a worker of its predecessor reserves that worker's
// uid; a uid held, or outside the pool, is refused.
TEST(WorkerIdentitiesTest, ReserveTakesThatUidOnlyWhenFree) {
  auto pool = WorkerIdentities::Create(1000, 4, 65534);
  auto r = pool->Reserve(1002);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->uid(), 1002u);
  EXPECT_EQ(pool->Reserve(1002).status().code(), Code::kBusy);
  EXPECT_EQ(pool->Reserve(1004).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(pool->Reserve(999).status().code(), Code::kInvalidArgument);
  std::vector<WorkerIdentities::Lease> rest;
  for (int i = 0; i < 3; ++i) {
    auto a = pool->Acquire();
    ASSERT_TRUE(a.ok());
    EXPECT_NE(a->uid(), 1002u);
    rest.push_back(std::move(a).value());
  }
  EXPECT_FALSE(pool->Acquire().ok());
  *r = WorkerIdentities::Lease();
  EXPECT_EQ(pool->in_use(), 3u);
  EXPECT_TRUE(pool->Reserve(1002).ok());
}

// A process that is not our child, held by a pidfd (ChildProcess::Adopt):
// signalled through it, gone once it is readable, its status unknown.
TEST(AdoptedProcessTest, SignalledThroughItsPidfdAndSeenGone) {
  // A middle process forks the one to adopt, tells its pid and exits, so
  // that process is not the test's child.
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  const pid_t middle = fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    const pid_t grandchild = fork();
    if (grandchild == 0) {
      for (;;) pause();
    }
    _exit(write(pipefd[1], &grandchild, sizeof grandchild) == ssize_t(sizeof grandchild) ? 0 : 1);
  }
  close(pipefd[1]);
  pid_t victim = -1;
  ASSERT_EQ(read(pipefd[0], &victim, sizeof victim), ssize_t(sizeof victim));
  close(pipefd[0]);
  int ws = 0;
  ASSERT_EQ(waitpid(middle, &ws, 0), middle);
  ASSERT_GT(victim, 0);
  UniqueFd pidfd(int(syscall(SYS_pidfd_open, victim, 0u)));
  ASSERT_TRUE(pidfd.valid()) << std::strerror(errno);
  ChildProcess adopted = ChildProcess::Adopt(victim, std::move(pidfd));
  EXPECT_TRUE(adopted.running());
  EXPECT_FALSE(adopted.TryWait().has_value()) << "alive";
  adopted.Signal(SIGKILL);
  auto status = adopted.WaitFor(std::chrono::seconds(10));
  ASSERT_TRUE(status.has_value()) << "a SIGKILLed adopted process still counts as running";
  EXPECT_EQ(*status, kUnknownExitStatus);
  EXPECT_FALSE(adopted.running());
  EXPECT_NE(DescribeWaitStatus(*status).find("not known"), std::string::npos);
}

// What a uid of its own buys: a sandboxed process cannot signal a process
// of another uid, nor the root that started it; two processes under one uid
// can (which shows the probe can see a difference).
TEST(SandboxIdentityTest, ASandboxedProcessCannotSignalOneUnderAnotherUid) {
  if (geteuid() != 0) GTEST_SKIP() << "changing uids needs root";
  // Starts a sandboxed process under `uid` that waits to be killed.
  auto target = [](uid_t uid) {
    pid_t pid = fork();
    if (pid == 0) {
      SandboxOptions so;
      so.keep_fd = dup(STDERR_FILENO);
      so.uid = uid;
      so.gid = 65534;
      if (so.keep_fd < 0 || !DropPrivileges(so).ok()) _exit(1);
      for (;;) pause();
    }
    return pid;
  };
  // errno of kill(victim, 0) from a sandboxed process under `uid` (0: allowed).
  auto probe = [](uid_t uid, pid_t victim) {
    int p[2];
    if (pipe(p) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
      close(p[0]);
      SandboxOptions so;
      so.keep_fd = p[1];
      so.uid = uid;
      so.gid = 65534;
      if (!DropPrivileges(so).ok()) _exit(1);
      int err = kill(victim, 0) == 0 ? 0 : errno;
      if (write(p[1], &err, sizeof err) != sizeof err) _exit(1);
      _exit(0);
    }
    close(p[1]);
    int err = -1;
    if (read(p[0], &err, sizeof err) != sizeof err) err = -1;
    close(p[0]);
    int ws = 0;
    waitpid(pid, &ws, 0);
    return err;
  };
  const uid_t u1 = kTestWorkerUidBase + 0x200, u2 = kTestWorkerUidBase + 0x201;
  pid_t victim = target(u1);
  ASSERT_GT(victim, 0);
  EXPECT_EQ(probe(u2, victim), EPERM) << "a process under another uid could signal the worker";
  EXPECT_EQ(probe(u2, getpid()), EPERM) << "a sandboxed process could signal root";
  EXPECT_EQ(probe(u1, victim), 0) << "the probe cannot tell";
  kill(victim, SIGKILL);
  int ws = 0;
  waitpid(victim, &ws, 0);
}

}  // namespace
}  // namespace vtpm
