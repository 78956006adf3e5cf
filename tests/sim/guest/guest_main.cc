// vtpm-sim-guest: a simulated guest's vTPM frontend as a command.
//   vtpm-sim-guest DOMID [--devid N] [--mode linux|minios] [--socket PATH]
//                  [--send HEX] [--timeout-c-ms MS] [--duration-ms MS]
// Needs XENSTORED_PATH and VTPM_SIM_DIR and the frontend dir created by the
// toolstack (vtpm-sim-xl create). Connects (printing "connected ring-ref R
// event-channel P" and the probe's "first-response HEX|error"), then either
// sends one command (--send, prints "response HEX") and closes, or serves the
// guest's TPM on --socket (raw TPM commands, like `swtpm socket`) until
// SIGINT/SIGTERM or the backend closes the device. On exit a Linux guest does
// the shutdown handshake, a mini-os guest its close sequence. Exit status 0
// on success, 1 on any failure.
#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "guest/frontend.h"
#include "guest/tpm_socket_server.h"
#include "simhost/term_signals.h"

using namespace vtpm;
using namespace vtpm::sim;

namespace {

std::string Hex(ByteView b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) {
    s += d[x >> 4];
    s += d[x & 15];
  }
  return s;
}

std::optional<Bytes> Unhex(const std::string& s) {
  if (s.size() % 2) return std::nullopt;
  Bytes b;
  for (size_t i = 0; i < s.size(); i += 2) {
    char* end = nullptr;
    std::string byte = s.substr(i, 2);
    unsigned long v = std::strtoul(byte.c_str(), &end, 16);
    if (*end != '\0') return std::nullopt;
    b.push_back(uint8_t(v));
  }
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Simulated guest vTPM frontend (xen-tpmfront / mini-os tpmfront)"};
  FrontendOptions fo;
  std::string mode = "linux", socket_path, send_hex;
  int timeout_c_ms = 750, duration_ms = 120000;
  app.add_option("domid", fo.domid)->required();
  app.add_option("--devid", fo.devid);
  app.add_option("--mode", mode)->check(CLI::IsMember({"linux", "minios"}));
  app.add_option("--socket", socket_path, "serve the guest's TPM on this unix socket");
  app.add_option("--send", send_hex, "send one TPM command (hex) and exit");
  app.add_option("--timeout-c-ms", timeout_c_ms);
  app.add_option("--duration-ms", duration_ms);
  CLI11_PARSE(app, argc, argv);
  fo.mode = mode == "minios" ? FrontendMode::kMiniOs : FrontendMode::kLinux;
  fo.timeout_c = std::chrono::milliseconds(timeout_c_ms);
  fo.first_command_duration = std::chrono::milliseconds(duration_ms);
  const auto duration = std::chrono::milliseconds(duration_ms);

  // Before any thread starts.
  UniqueFd sfd(BlockTerminationSignals());

  auto g = GuestFrontend::Create(fo);
  if (!g.ok()) {
    std::cerr << "vtpm-sim-guest: " << g.status().ToString() << "\n";
    return 1;
  }
  GuestFrontend& fe = **g;
  Status st = fe.Connect();
  if (fo.mode == FrontendMode::kLinux) {
    const auto& first = fe.first_response();
    std::cout << "first-response " << (first.ok() ? Hex(*first) : first.status().ToString()) << std::endl;
  }
  if (!st.ok()) {
    std::cerr << "vtpm-sim-guest: connect: " << st.ToString() << "\n";
    return 1;
  }
  std::cout << "connected ring-ref " << fe.ring_ref() << " event-channel " << fe.port() << std::endl;
  int rc = 0;
  if (!send_hex.empty()) {
    auto cmd = Unhex(send_hex);
    if (!cmd) {
      std::cerr << "vtpm-sim-guest: --send needs hex\n";
      return 1;
    }
    auto r = fe.Transmit(*cmd, duration);
    if (r.ok()) {
      std::cout << "response " << Hex(*r) << std::endl;
    } else {
      std::cout << "error " << r.status().ToString() << std::endl;
      rc = 1;
    }
  } else if (!socket_path.empty()) {
    auto server = TpmSocketServer::Start(fe, socket_path, duration);
    if (!server.ok()) {
      std::cerr << "vtpm-sim-guest: " << server.status().ToString() << "\n";
      return 1;
    }
    std::cout << "serving " << socket_path << std::endl;
    while (!fe.device_gone()) {
      pollfd pfd{sfd.get(), POLLIN, 0};
      if (::poll(&pfd, 1, 100) > 0) break;
    }
    std::cout << "served " << (*server)->commands_served() << " failed " << (*server)->commands_failed()
              << std::endl;
  }
  if (fe.device_gone()) {
    std::cout << "device closed by backend" << std::endl;
  } else if (fo.mode == FrontendMode::kLinux) {
    ShutdownResult s = fe.Shutdown();
    std::cout << "shutdown backend-answered " << (s.backend_answered ? "yes" : "no") << " after "
              << s.elapsed.count() << " ms (backend state " << s.backend_state << ")" << std::endl;
  } else {
    Status c = fe.Close();
    std::cout << "close " << (c.ok() ? "ok" : c.ToString()) << std::endl;
  }
  return rc;
}
