// Helpers for tests that drive the real vtpm-worker binary.
#pragma once

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <chrono>
#include <memory>
#include <thread>

#include "common/event_loop.h"
#include "tpm/tpm12.h"
#include "tpm/worker_client.h"

namespace vtpm::testing {

// Where the unit tests' workers take their uids from (not the daemon's default).
inline constexpr uid_t kTestWorkerUidBase = 0x7a600000;

// Workers of one test process share a uid pool, so each live worker's uid is
// distinct, as in the daemon.
inline WorkerOptions TestWorkerOptions(bool test_commands = false) {
  static const std::shared_ptr<WorkerIdentities> pool =
      WorkerIdentities::Create(kTestWorkerUidBase, kWorkerUidCount, ResolveWorkerGroup());
  WorkerOptions o;
  o.path = VTPM_WORKER_PATH;
  o.identities = pool;
  o.test_commands = test_commands;
  return o;
}

// Runs `loop` until `client`'s call completes.
inline Result<WorkerReply> CallSync(EventLoop& loop, WorkerClient& client, const WorkerRequest& req,
                                    std::chrono::milliseconds deadline = std::chrono::seconds(20)) {
  std::optional<Result<WorkerReply>> out;
  client.Call(req, deadline, [&](Result<WorkerReply> r) { out = std::move(r); });
  while (!out) {
    Status st = loop.RunOnce(std::chrono::milliseconds(100));
    if (!st.ok()) return st;
  }
  return std::move(*out);
}

inline WorkerRequest InitRequest(std::optional<Bytes> permanent = std::nullopt,
                                 std::optional<Bytes> volatile_state = std::nullopt) {
  WorkerRequest r;
  r.type = WorkerMsg::kInit;
  r.permanent = std::move(permanent);
  r.volatile_state = std::move(volatile_state);
  return r;
}

inline WorkerRequest ExecRequest(Bytes command, bool presence = false) {
  WorkerRequest r;
  r.type = WorkerMsg::kExecute;
  r.command = std::move(command);
  r.physical_presence = presence;
  return r;
}

// Runs `loop` until `w`'s worker is reaped (10 s at most); `longest`: the
// longest single turn of the loop meanwhile.
inline void RunUntilReaped(EventLoop& loop, WorkerClient& w, std::chrono::duration<double, std::milli>* longest = nullptr) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!w.exit_status() && std::chrono::steady_clock::now() < until) {
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(loop.RunOnce(std::chrono::milliseconds(0)).ok());
    if (longest) *longest = std::max(*longest, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// `req` makes the worker die of its seccomp filter (SIGSYS).
inline void ExpectKilledBySeccomp(EventLoop& loop, WorkerClient& w, const WorkerRequest& req) {
  auto r = CallSync(loop, w, req);
  ASSERT_FALSE(r.ok()) << "worker survived: " << r->message;
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  RunUntilReaped(loop, w);
  ASSERT_TRUE(w.exit_status().has_value());
  EXPECT_TRUE(WIFSIGNALED(*w.exit_status())) << DescribeWaitStatus(*w.exit_status());
  EXPECT_EQ(WTERMSIG(*w.exit_status()), SIGSYS) << DescribeWaitStatus(*w.exit_status());
}

}  // namespace vtpm::testing
