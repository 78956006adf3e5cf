// Test helpers: a real swtpm (TPM 2.0) on free loopback ports, and a
// self-removing temporary directory. Shared by the unit and fault tiers.
#pragma once

#include <optional>
#include <string>

#include "common/child_process.h"
#include "common/status.h"

namespace vtpm::testing {

class TempDir {
 public:
  TempDir();  // mkdtemp under $TMPDIR or /tmp
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// `swtpm socket --tpm2` with its server on a free port P and control channel
// on P+1 (the swtpm TCTI needs both), state in `state_dir`. Killed on
// destruction. Start again on the same dir = the same TPM after a power cycle.
class Swtpm {
 public:
  static Result<Swtpm> Start(const std::string& state_dir);
  Swtpm(Swtpm&&) = default;
  Swtpm& operator=(Swtpm&&) = default;
  ~Swtpm() { Stop(); }
  void Stop();
  int port() const { return port_; }
  std::string tcti() const { return "swtpm:host=127.0.0.1,port=" + std::to_string(port_); }
  // Runs a tpm2-tools command (e.g. "tpm2_clear") against this swtpm; false on failure.
  bool Tool(const std::string& args) const;
  // Same, returning its stdout (nullopt on failure).
  std::optional<std::string> ToolOutput(const std::string& args) const;

 private:
  Swtpm(ChildProcess p, int port) : proc_(std::move(p)), port_(port) {}
  ChildProcess proc_;
  int port_ = 0;
};

// The full sqlite3 CLI ".dump" of a database file (for before/after comparisons).
std::string SqliteDump(const std::string& db_path);

}  // namespace vtpm::testing
