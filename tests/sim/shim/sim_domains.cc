// The simulated hypervisor's domain table (xen_sim.h, domains/<domid>).
#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "common/uuid.h"
#include "sim_files.h"
#include "xen_sim.h"

namespace vtpm::sim {
namespace {

using namespace files;  // the shim's file helpers (sim_files.h)

std::string DomainsDir(const std::string& sim_dir) { return sim_dir + "/domains"; }

std::string DomainPath(const std::string& sim_dir, uint32_t domid) {
  return DomainsDir(sim_dir) + "/" + std::to_string(domid);
}

// Strict decimal (no sign, no spaces); nullopt otherwise or above `max`.
std::optional<uint32_t> ParseDecimal(const std::string& s, uint32_t max) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + uint64_t(c - '0');
  }
  if (v > max) return std::nullopt;
  return uint32_t(v);
}

Status CheckSimDomain(const SimDomain& d) {
  if (d.domid >= kFirstReservedDomid)
    return Status(Code::kInvalidArgument, "domid " + std::to_string(d.domid) + " is reserved", EINVAL);
  if (d.shutdown && *d.shutdown > kShutdownSoftReset)
    return Status(Code::kInvalidArgument, "shutdown code " + std::to_string(*d.shutdown) + " is not 0..5", EINVAL);
  return Uuid::Parse(d.handle).status();
}

std::string FormatSimDomain(const SimDomain& d) {
  std::string s = "handle=" + Uuid::Parse(d.handle)->ToString() + "\n";
  if (d.shutdown) s += "shutdown=" + std::to_string(*d.shutdown) + "\n";
  if (d.dying) s += "dying=1\n";
  return s;
}

Result<SimDomain> ParseSimDomain(uint32_t domid, const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Status(Code::kCorruption, "domains/" + std::to_string(domid) + ": " + why, EIO);
  };
  SimDomain d;
  d.domid = domid;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) {
    if (line.empty()) continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) return bad("not key=value: " + line);
    std::string k = line.substr(0, eq), v = line.substr(eq + 1);
    if (k == "handle") {
      auto u = Uuid::Parse(v);
      if (!u.ok()) return bad(u.status().message());
      d.handle = u->ToString();
    } else if (k == "shutdown") {
      auto code = ParseDecimal(v, kShutdownSoftReset);
      if (!code) return bad("shutdown code " + v + " is not 0..5");
      d.shutdown = uint8_t(*code);
    } else if (k == "dying") {
      if (v != "0" && v != "1") return bad("dying=" + v);
      d.dying = v == "1";
    } else {
      return bad("unknown key " + k);
    }
  }
  if (d.handle.empty()) return bad("no handle");
  return d;
}

}  // namespace

Status WriteSimDomain(const std::string& sim_dir, const SimDomain& d) {
  RETURN_IF_ERROR(CheckSimDomain(d));
  RETURN_IF_ERROR(MkdirP(DomainsDir(sim_dir)));
  DirLock lock(DomainsDir(sim_dir) + "/.lock");
  if (!lock.ok()) return Errno("lock domains");
  return WriteFileAtomic(DomainPath(sim_dir, d.domid), FormatSimDomain(d));
}

Result<std::optional<SimDomain>> ReadSimDomain(const std::string& sim_dir, uint32_t domid) {
  auto text = ReadFile(DomainPath(sim_dir, domid));
  if (!text) return std::optional<SimDomain>();
  ASSIGN_OR_RETURN(SimDomain d, ParseSimDomain(domid, *text));
  return std::optional<SimDomain>(std::move(d));
}

Status UpdateSimDomain(const std::string& sim_dir, uint32_t domid,
                       const std::function<void(SimDomain&)>& change) {
  DirLock lock(DomainsDir(sim_dir) + "/.lock");
  if (!lock.ok()) return Errno("lock domains");
  ASSIGN_OR_RETURN(auto d, ReadSimDomain(sim_dir, domid));
  if (!d) return Status(Code::kNotFound, "no domain " + std::to_string(domid), ESRCH);
  change(*d);
  d->domid = domid;
  RETURN_IF_ERROR(CheckSimDomain(*d));
  return WriteFileAtomic(DomainPath(sim_dir, domid), FormatSimDomain(*d));
}

Status RemoveSimDomain(const std::string& sim_dir, uint32_t domid) {
  DirLock lock(DomainsDir(sim_dir) + "/.lock");
  if (!lock.ok()) return Errno("lock domains");
  if (::unlink(DomainPath(sim_dir, domid).c_str()) != 0 && errno != ENOENT)
    return Errno("unlink domains/" + std::to_string(domid));
  return Status::Ok();
}

Result<std::vector<SimDomain>> ListSimDomains(const std::string& sim_dir, uint32_t first, size_t max) {
  std::vector<uint32_t> ids;
  if (DIR* d = ::opendir(DomainsDir(sim_dir).c_str())) {
    while (dirent* e = ::readdir(d)) {
      auto id = ParseDecimal(e->d_name, kFirstReservedDomid - 1);
      if (id && *id >= first) ids.push_back(*id);
    }
    ::closedir(d);
  } else if (errno != ENOENT) {
    return Errno("opendir domains");
  }
  std::sort(ids.begin(), ids.end());
  std::vector<SimDomain> out;
  for (uint32_t id : ids) {
    if (out.size() >= max) break;
    ASSIGN_OR_RETURN(auto dom, ReadSimDomain(sim_dir, id));
    if (dom) out.push_back(std::move(*dom));  // removed meanwhile: skipped
  }
  return out;
}

}  // namespace vtpm::sim
