#include "host_tpm_swtpm.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "common/unique_fd.h"

namespace vtpm::testing {
namespace {

bool PortFree(int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return fd && ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

bool Accepts(int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return fd && ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

}  // namespace

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/vtpm-store-XXXXXX";
  if (!::mkdtemp(tmpl.data())) std::abort();
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Result<Swtpm> Swtpm::Start(const std::string& state_dir) {
  std::filesystem::create_directories(state_dir);
  std::mt19937 rng(std::random_device{}());
  for (int attempt = 0; attempt < 20; ++attempt) {
    int port = 20000 + int(rng() % 40000);
    if (!PortFree(port) || !PortFree(port + 1)) continue;
    SpawnOptions o;
    o.argv = {"/usr/bin/swtpm", "socket", "--tpm2",
              "--server", "type=tcp,port=" + std::to_string(port) + ",bindaddr=127.0.0.1",
              "--ctrl", "type=tcp,port=" + std::to_string(port + 1) + ",bindaddr=127.0.0.1",
              "--tpmstate", "dir=" + state_dir, "--flags", "not-need-init,startup-clear"};
    ASSIGN_OR_RETURN(ChildProcess p, ChildProcess::Spawn(o));
    for (int i = 0; i < 200; ++i) {  // up to 4 s
      if (p.TryWait()) break;        // lost a race for the port: try another
      if (Accepts(port) && Accepts(port + 1)) return Swtpm(std::move(p), port);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return Status(Code::kUnavailable, "could not start swtpm on a free loopback port");
}

void Swtpm::Stop() {
  if (proc_.running()) {
    proc_.Signal(SIGTERM);
    if (!proc_.WaitFor(std::chrono::milliseconds(2000))) proc_.Kill();
  }
}

bool Swtpm::Tool(const std::string& args) const {
  std::string cmd = "TSS2_LOG=all+none " + args + " -T '" + tcti() + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

namespace {
// stdout of a shell command, or nullopt if it failed.
std::optional<std::string> Capture(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return std::nullopt;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  if (::pclose(f) != 0) return std::nullopt;
  return out;
}
}  // namespace

std::optional<std::string> Swtpm::ToolOutput(const std::string& args) const {
  return Capture("TSS2_LOG=all+none " + args + " -T '" + tcti() + "' 2>/dev/null");
}

std::string SqliteDump(const std::string& db_path) {
  return Capture("sqlite3 '" + db_path + "' .dump 2>&1").value_or("sqlite3 .dump failed");
}

}  // namespace vtpm::testing
