// Shared pieces of the fault tier on the simulated host: a seeded RNG whose
// seed is printed (and can be forced with VTPM_FAULT_SEED), the PCR fold a
// guest expects, a guest that owns its TPM and a monotonic counter, and what
// /proc says about the daemon (fds, mappings, children, RSS).
#pragma once

#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "guest/frontend.h"
#include "tpm/tpm12.h"
#include "tpm12_auth.h"

namespace vtpm::sim {

// VTPM_FAULT_SEED if set, else random; printed so a failure can be replayed.
inline uint64_t FaultSeed() {
  const char* env = std::getenv("VTPM_FAULT_SEED");
  uint64_t seed = env && *env ? std::strtoull(env, nullptr, 0) : std::random_device{}();
  std::cout << "fault seed " << seed << " (replay with VTPM_FAULT_SEED=" << seed << ")\n";
  return seed;
}

inline std::string Hex(const tpm12::PcrValue& v) {
  std::string s;
  char b[3];
  for (uint8_t x : v) {
    std::snprintf(b, sizeof b, "%02x", x);
    s += b;
  }
  return s;
}

// "%08x-0000-4000-8000-%012x" from a test-chosen number.
inline std::string FaultUuid(uint32_t base, uint32_t i) {
  char b[40];
  std::snprintf(b, sizeof b, "%08x-0000-4000-8000-%012x", base, i + 1);
  return b;
}

// A guest TPM taken into ownership with one monotonic counter.
struct OwnedTpm {
  tpm12auth::Secret owner{}, counter_auth{};
  uint32_t count_id = 0;
  uint32_t counter = 0;  // value after the last increment the guest was answered for
};

inline tpm12auth::Send SendVia(GuestFrontend& g, std::chrono::milliseconds duration) {
  return [&g, duration](const Bytes& cmd) { return g.Transmit(cmd, duration); };
}

// ReadPubek, TakeOwnership, CreateCounter.
inline Result<OwnedTpm> TakeOwnershipWithCounter(GuestFrontend& g) {
  auto send = SendVia(g, std::chrono::seconds(120));
  ASSIGN_OR_RETURN(Bytes ek_rsp, send(tpm12::ReadPubek(tpm12auth::RandomNonce())));
  auto ek = tpm12::PubkeyFromEkResponse(ek_rsp);
  if (!ek) return Status(Code::kTpmError, "ReadPubek failed");
  OwnedTpm t;
  t.owner = tpm12auth::RandomNonce();
  t.counter_auth = tpm12auth::RandomNonce();
  RETURN_IF_ERROR(tpm12auth::RunTakeOwnership(send, *ek, t.owner, tpm12auth::RandomNonce()));
  ASSIGN_OR_RETURN(auto c, tpm12auth::RunCreateCounter(send, t.owner, t.counter_auth));
  t.count_id = c.first;
  t.counter = c.second;
  return t;
}

// Sets `stop` and joins `threads` when it goes out of scope, so that an
// ASSERT returning early from a test does not leave joinable threads behind.
struct StopAndJoin {
  std::atomic<bool>& stop;
  std::vector<std::thread>& threads;
  ~StopAndJoin() {
    stop = true;
    for (auto& t : threads)
      if (t.joinable()) t.join();
  }
};

// ---- /proc views of a process ----

inline size_t CountDirEntries(const std::string& dir) {
  size_t n = 0;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
  }
  return n;
}

inline std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Direct children of `pid` (all threads).
inline std::vector<pid_t> ChildPids(pid_t pid) {
  std::vector<pid_t> out;
  std::string task = "/proc/" + std::to_string(pid) + "/task";
  if (DIR* d = opendir(task.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream in(task + "/" + e->d_name + "/children");
      for (pid_t c; in >> c;) out.push_back(c);
    }
    closedir(d);
  }
  return out;
}

// /proc/<pid>/status as "Name" -> "value" (leading blanks dropped).
inline std::map<std::string, std::string> ProcStatus(pid_t pid) {
  std::map<std::string, std::string> f;
  for (const std::string& l : ReadLines("/proc/" + std::to_string(pid) + "/status")) {
    auto colon = l.find(':');
    if (colon == std::string::npos) continue;
    const size_t value = l.find_first_not_of(" \t", colon + 1);
    f[l.substr(0, colon)] = value == std::string::npos ? "" : l.substr(value);
  }
  return f;
}

struct ProcSnapshot {
  size_t fds = 0;
  size_t maps = 0;
  size_t sim_maps = 0;  // mappings of the simulated hypervisor's grant pages
  size_t children = 0;
  long rss_kb = 0;
};

// `sim_dir`: VTPM_SIM_DIR, whose files back the shim's grant mappings.
inline ProcSnapshot Snapshot(pid_t pid, const std::string& sim_dir) {
  ProcSnapshot s;
  std::string p = "/proc/" + std::to_string(pid);
  s.fds = CountDirEntries(p + "/fd");
  for (const auto& l : ReadLines(p + "/maps")) {
    ++s.maps;
    if (!sim_dir.empty() && l.find(sim_dir + "/grants/") != std::string::npos) ++s.sim_maps;
  }
  s.children = ChildPids(pid).size();
  for (const auto& l : ReadLines(p + "/status"))
    if (l.rfind("VmRSS:", 0) == 0) s.rss_kb = std::strtol(l.c_str() + 6, nullptr, 10);
  return s;
}

inline std::ostream& operator<<(std::ostream& os, const ProcSnapshot& s) {
  return os << "fds " << s.fds << ", maps " << s.maps << " (grant pages " << s.sim_maps << "), children "
            << s.children << ", rss " << s.rss_kb << " KiB";
}

}  // namespace vtpm::sim
