// TpmSocketServer: exposes a simulated guest's TPM on a unix stream socket
// with swtpm's raw framing: a client writes one TPM command (its header's
// paramSize says how long), reads the response; several commands may follow
// on one connection, or one per connection (trousers' tcsd reconnects for
// each). Commands go through GuestFrontend::Transmit; when it fails the
// connection is closed without a response. Serves on its own thread until
// destroyed.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "common/unique_fd.h"
#include "guest/frontend.h"

namespace vtpm::sim {

class TpmSocketServer {
 public:
  // `mode` is applied to the socket file (tcsd may run as user tss).
  static Result<std::unique_ptr<TpmSocketServer>> Start(GuestFrontend& frontend, const std::string& path,
                                                        std::chrono::milliseconds duration = std::chrono::seconds(120),
                                                        mode_t mode = 0666);
  ~TpmSocketServer();
  TpmSocketServer(const TpmSocketServer&) = delete;
  TpmSocketServer& operator=(const TpmSocketServer&) = delete;

  const std::string& path() const { return path_; }
  uint64_t commands_served() const { return served_.load(); }
  uint64_t commands_failed() const { return failed_.load(); }
  // Last Transmit error (empty when none); for diagnostics.
  std::string last_error() const;

 private:
  TpmSocketServer(GuestFrontend& f, std::string path, std::chrono::milliseconds d)
      : frontend_(f), path_(std::move(path)), duration_(d) {}
  void Run();
  void ServeConnection(int fd);

  GuestFrontend& frontend_;
  std::string path_;
  std::chrono::milliseconds duration_;
  UniqueFd listen_;
  UniqueFd stop_;  // eventfd
  std::atomic<uint64_t> served_{0}, failed_{0};
  mutable std::mutex mu_;
  std::string last_error_;
  std::thread thread_;
};

}  // namespace vtpm::sim
