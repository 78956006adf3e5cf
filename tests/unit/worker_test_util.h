// Helpers for tests that drive the real vtpm-worker binary.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "common/event_loop.h"
#include "tpm/tpm12.h"
#include "tpm/worker_client.h"

namespace vtpm::testing {

inline WorkerOptions TestWorkerOptions(bool test_commands = false) {
  WorkerOptions o;
  o.path = VTPM_WORKER_PATH;
  auto [uid, gid] = ResolveWorkerUser();
  o.uid = uid;
  o.gid = gid;
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
