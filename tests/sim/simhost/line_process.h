// LineProcess: a child process driven line by line over its stdin/stdout
// (stderr is inherited). Used to script simulator tools from tests.
#pragma once

#include <chrono>
#include <string>

#include "common/child_process.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace vtpm::sim {

class LineProcess {
 public:
  // `spawn` receives opts with fd_map already set for stdin/stdout.
  template <typename SpawnFn>
  static Result<LineProcess> Start(SpawnOptions opts, SpawnFn spawn);
  static Result<LineProcess> Start(SpawnOptions opts) {
    return Start(std::move(opts), [](const SpawnOptions& o) { return ChildProcess::Spawn(o); });
  }

  Status SendLine(const std::string& line);
  // Next line without its '\n'; kTimeout / kUnavailable (EOF).
  Result<std::string> ReadLine(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // SendLine + ReadLine.
  Result<std::string> Ask(const std::string& line,
                          std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ChildProcess& child() { return child_; }

 private:
  ChildProcess child_;
  UniqueFd in_;   // child's stdin (write end)
  UniqueFd out_;  // child's stdout (read end)
  std::string buf_;
};

// Two pipes; returns {parent_write_to_stdin, child_stdin, child_stdout, parent_read}.
Status MakeLinePipes(UniqueFd* w_in, UniqueFd* r_in, UniqueFd* w_out, UniqueFd* r_out);

template <typename SpawnFn>
Result<LineProcess> LineProcess::Start(SpawnOptions opts, SpawnFn spawn) {
  UniqueFd w_in, r_in, w_out, r_out;
  RETURN_IF_ERROR(MakeLinePipes(&w_in, &r_in, &w_out, &r_out));
  opts.fd_map.push_back({r_in.get(), 0});
  opts.fd_map.push_back({w_out.get(), 1});
  Result<ChildProcess> c = spawn(opts);
  if (!c.ok()) return c.status();
  LineProcess p;
  p.child_ = std::move(c).value();
  p.in_ = std::move(w_in);
  p.out_ = std::move(r_out);
  return p;
}

}  // namespace vtpm::sim
