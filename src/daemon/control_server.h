// ControlServer: the daemon's end of the control socket (control_protocol.h).
//
// Listens on a unix stream socket created with mode 0600; every connection
// is checked with SO_PEERCRED (uid 0 only), reads one request line (5 s
// deadline), hands it to the handler and writes the one response line
// without blocking the event loop. The socket file is removed on destruction.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/event_loop.h"
#include "common/unique_fd.h"
#include "daemon/control_protocol.h"

namespace vtpm {

class ControlServer {
 public:
  // `reply` may be called later (asynchronous operations), at most once, on
  // the loop thread; calling it after the server is gone is harmless.
  using Reply = std::function<void(ControlResponse)>;
  using Handler = std::function<void(const ControlRequest&, Reply)>;

  // Replaces a stale socket file at `path`; refuses if a daemon answers there.
  static Result<std::unique_ptr<ControlServer>> Start(EventLoop& loop, const std::string& path, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  const std::string& path() const { return path_; }

 private:
  struct Conn;
  ControlServer(EventLoop& loop, UniqueFd fd, std::string path, Handler handler);
  void OnAccept();
  void OnReadable(int fd);
  void Respond(int fd, ControlResponse rsp);
  void OnWritable(int fd);
  void Close(int fd);

  EventLoop& loop_;
  UniqueFd listen_fd_;
  std::string path_;
  Handler handler_;
  std::map<int, std::unique_ptr<Conn>> conns_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace vtpm
