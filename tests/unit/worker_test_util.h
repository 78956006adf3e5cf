// Helpers for tests that drive the real vtpm-worker binary.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>

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

}  // namespace vtpm::testing
