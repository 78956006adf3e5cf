// XsClient: the simulator's owner of one libxenstore connection (the real
// libxenstore, reaching the daemon through XENSTORED_PATH). Paths are
// absolute; `tx` defaults to no transaction. Permissions use xenstore's text
// form: "n0", "r7", ... (first entry = owner and default for others).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

struct xs_handle;

namespace vtpm::sim {

using XsTx = uint32_t;  // xs_transaction_t; 0 = none
inline constexpr XsTx kNoTx = 0;

class XsClient {
 public:
  static Result<XsClient> Open();
  ~XsClient();
  XsClient(XsClient&& o) noexcept;
  XsClient& operator=(XsClient&& o) noexcept;
  XsClient(const XsClient&) = delete;
  XsClient& operator=(const XsClient&) = delete;

  // nullopt when the node does not exist; errors otherwise.
  Result<std::optional<std::string>> Read(const std::string& path, XsTx tx = kNoTx);
  Status Write(const std::string& path, const std::string& value, XsTx tx = kNoTx);
  Status Mkdir(const std::string& path, XsTx tx = kNoTx);
  Status Rm(const std::string& path, XsTx tx = kNoTx);  // absent is OK
  Result<std::vector<std::string>> Directory(const std::string& path, XsTx tx = kNoTx);
  Result<std::vector<std::string>> GetPerms(const std::string& path, XsTx tx = kNoTx);
  Status SetPerms(const std::string& path, const std::vector<std::string>& perms, XsTx tx = kNoTx);
  bool Exists(const std::string& path, XsTx tx = kNoTx);

  // Runs `body` inside a transaction, retrying on EAGAIN like libxl.
  Status Transaction(const std::function<Status(XsTx)>& body);

  Status IntroduceDomain(uint32_t domid);
  Status ReleaseDomain(uint32_t domid);
  // XS_RESUME: clears xenstored's "shut down" mark of the domain; no watch.
  Status ResumeDomain(uint32_t domid);
  bool IsDomainIntroduced(uint32_t domid);

  // Waits until `pred(current value or nullopt)` holds, re-reading on every
  // watch event for `path`. Returns the last value seen, kTimeout otherwise.
  Result<std::optional<std::string>> WaitFor(
      const std::string& path, const std::function<bool(const std::optional<std::string>&)>& pred,
      std::chrono::milliseconds timeout);

  // Raw watches, for callers running their own poll loop.
  Status Watch(const std::string& path, const std::string& token);
  void Unwatch(const std::string& path, const std::string& token);
  int watch_fd();             // readable when watch events are queued
  void DrainWatchEvents();    // discards queued events without blocking

  xs_handle* raw() const { return h_; }

 private:
  explicit XsClient(xs_handle* h) : h_(h) {}
  xs_handle* h_ = nullptr;
};

// Every node under `root` (inclusive) as "path = value [perms]" lines in
// sorted order; the form tests compare node by node.
Result<std::vector<std::string>> DumpTree(XsClient& xs, const std::string& root);

}  // namespace vtpm::sim
