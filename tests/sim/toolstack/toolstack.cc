#include "toolstack/toolstack.h"

#include <sys/random.h>

#include <cstdio>

#include "common/uuid.h"
#include "xen_sim.h"

namespace vtpm::sim {
namespace {

using Clock = std::chrono::steady_clock;

std::string D(uint32_t v) { return std::to_string(v); }

}  // namespace

std::string RandomUuid() {
  uint8_t b[16] = {};
  if (::getrandom(b, sizeof(b), 0) != sizeof(b)) {
    for (auto& x : b) x = uint8_t(std::rand());
  }
  b[6] = uint8_t((b[6] & 0x0f) | 0x40);
  b[8] = uint8_t((b[8] & 0x3f) | 0x80);
  char s[37];
  std::snprintf(s, sizeof(s), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return s;
}

std::string ToolstackResult::Report() const {
  std::string out;
  for (auto& w : waits) {
    out += "waited " + std::to_string(w.elapsed.count()) + " ms for " + w.path + " == " + w.wanted +
           (w.forced ? " (forced retry)" : "") + ": " +
           (w.satisfied ? "ok" : "TIMEOUT (last value " + w.last_value + ")") + "\n";
  }
  out += status.ok() ? "result: ok\n" : "result: " + status.ToString() + "\n";
  return out;
}

std::string Toolstack::BackendPath(uint32_t domid, uint32_t devid) {
  return "/local/domain/0/backend/vtpm/" + D(domid) + "/" + D(devid);
}
std::string Toolstack::FrontendPath(uint32_t domid, uint32_t devid) {
  return "/local/domain/" + D(domid) + "/device/vtpm/" + D(devid);
}
std::string Toolstack::LibxlPath(uint32_t domid, uint32_t devid) {
  return "/libxl/" + D(domid) + "/device/vtpm/" + D(devid);
}

Status Toolstack::InitHost() {
  return xs_.Transaction([&](XsTx t) {
    RETURN_IF_ERROR(xs_.Write("/local/domain/0/name", "Domain-0", t));
    return xs_.Write("/local/domain/0/domid", "0", t);
  });
}

ToolstackResult Toolstack::Create(uint32_t domid, const std::vector<VtpmSpec>& vtpms, const std::string& name,
                                  const std::string& handle) {
  ToolstackResult res;
  auto uuid = Uuid::Parse(handle.empty() ? RandomUuid() : handle);
  if (!uuid.ok()) {
    res.status = uuid.status();
    return res;
  }
  res.handle = uuid->ToString();
  res.status = MakeDomain(domid, res.handle, name.empty() ? "guest" + D(domid) : name);
  if (!res.status.ok()) return res;
  ToolstackResult added = AddDevices(domid, vtpms);
  added.handle = res.handle;
  return added;
}

Status Toolstack::MakeDomain(uint32_t domid, const std::string& handle, const std::string& dname) {
  ASSIGN_OR_RETURN(Uuid uuid, Uuid::Parse(handle));
  // xc_domain_create: the hypervisor domain exists before any node.
  if (!sim_dir_.empty()) {
    ASSIGN_OR_RETURN(auto existing, ReadSimDomain(sim_dir_, domid));
    if (existing) return Status(Code::kAlreadyExists, "domain " + D(domid) + " exists");
    RETURN_IF_ERROR(WriteSimDomain(sim_dir_, SimDomain{domid, uuid.ToString(), std::nullopt, false}));
  }
  const std::string dom = "/local/domain/" + D(domid);
  const std::string vm = "/vm/" + uuid.ToString();
  const std::string libxl = "/libxl/" + D(domid);
  const std::vector<std::string> roperm = {"n0", "r" + D(domid)};
  const std::vector<std::string> rwperm = {"n" + D(domid)};
  // libxl__domain_make: one transaction.
  return xs_.Transaction([&](XsTx t) {
    for (const auto& [path, perms] : std::vector<std::pair<std::string, std::vector<std::string>>>{
             {dom, roperm}, {vm, roperm}, {libxl, {"n0"}}}) {
      RETURN_IF_ERROR(xs_.Rm(path, t));
      RETURN_IF_ERROR(xs_.Mkdir(path, t));
      RETURN_IF_ERROR(xs_.SetPerms(path, perms, t));
    }
    RETURN_IF_ERROR(xs_.Write(dom + "/vm", vm, t));
    for (const char* sub : {"/device", "/control"}) {
      RETURN_IF_ERROR(xs_.Mkdir(dom + sub, t));
      RETURN_IF_ERROR(xs_.SetPerms(dom + sub, roperm, t));
    }
    for (const char* sub : {"/control/shutdown", "/data", "/drivers", "/feature", "/attr", "/error"}) {
      RETURN_IF_ERROR(xs_.Mkdir(dom + sub, t));
      RETURN_IF_ERROR(xs_.SetPerms(dom + sub, rwperm, t));
    }
    RETURN_IF_ERROR(xs_.Write(vm + "/uuid", uuid.ToString(), t));
    RETURN_IF_ERROR(xs_.Write(vm + "/name", dname, t));
    RETURN_IF_ERROR(xs_.Write(dom + "/name", dname, t));
    RETURN_IF_ERROR(xs_.Write(dom + "/domid", D(domid), t));
    return xs_.Write(libxl + "/type", "pvh", t);
  });
}

ToolstackResult Toolstack::AddDevices(uint32_t domid, const std::vector<VtpmSpec>& vtpms) {
  ToolstackResult res;
  // libxl__build_post: introduce the domain to xenstored (@introduceDomain).
  res.status = xs_.IntroduceDomain(domid);
  for (const auto& spec : vtpms) {
    if (!res.status.ok()) break;
    ToolstackResult a = Attach(domid, spec);
    res.waits.insert(res.waits.end(), a.waits.begin(), a.waits.end());
    res.status = a.status;
    res.devid = a.devid;
    res.uuid = a.uuid;
  }
  return res;
}

ToolstackResult Toolstack::Attach(uint32_t domid, const VtpmSpec& spec) {
  ToolstackResult res;
  if (spec.devid) {
    res.devid = *spec.devid;
  } else {
    // libxl__device_nextid: highest devid under the libxl path + 1.
    auto ids = xs_.Directory("/libxl/" + D(domid) + "/device/vtpm");
    uint32_t next = 0;
    if (ids.ok()) {
      for (auto& i : *ids) next = std::max<uint32_t>(next, uint32_t(std::stoul(i)) + 1);
    }
    res.devid = next;
  }
  res.uuid = spec.uuid.empty() ? RandomUuid() : spec.uuid;
  const std::string be = BackendPath(domid, res.devid);
  const std::string fe = FrontendPath(domid, res.devid);
  const std::string lx = LibxlPath(domid, res.devid);
  const std::vector<std::pair<std::string, std::string>> bents = {
      {"frontend-id", D(domid)}, {"online", "1"},         {"state", "1"},
      {"handle", D(res.devid)},  {"uuid", res.uuid},       {"resume", "False"}};
  const std::vector<std::pair<std::string, std::string>> fents = {
      {"backend-id", "0"}, {"state", "1"}, {"handle", D(res.devid)}};
  // libxl__device_generic_add: one transaction.
  res.status = xs_.Transaction([&](XsTx t) {
    if (xs_.Exists(lx, t)) return Status(Code::kAlreadyExists, "ERROR_DEVICE_EXISTS: " + lx);
    RETURN_IF_ERROR(xs_.Rm(fe, t));
    RETURN_IF_ERROR(xs_.Mkdir(fe, t));
    RETURN_IF_ERROR(xs_.SetPerms(fe, {"n" + D(domid), "r0"}, t));
    RETURN_IF_ERROR(xs_.Write(fe + "/backend", be, t));
    for (auto& [k, v] : fents) RETURN_IF_ERROR(xs_.Write(fe + "/" + k, v, t));
    RETURN_IF_ERROR(xs_.Rm(be, t));
    RETURN_IF_ERROR(xs_.Mkdir(be, t));
    RETURN_IF_ERROR(xs_.SetPerms(be, {"n0", "r" + D(domid)}, t));
    RETURN_IF_ERROR(xs_.Write(be + "/frontend", fe, t));
    for (auto& [k, v] : bents) RETURN_IF_ERROR(xs_.Write(be + "/" + k, v, t));
    RETURN_IF_ERROR(xs_.Rm(lx, t));
    RETURN_IF_ERROR(xs_.Mkdir(lx, t));
    RETURN_IF_ERROR(xs_.SetPerms(lx, {"n0"}, t));
    RETURN_IF_ERROR(xs_.Write(lx + "/frontend", fe, t));
    RETURN_IF_ERROR(xs_.Write(lx + "/backend", be, t));
    for (auto& [k, v] : bents) RETURN_IF_ERROR(xs_.Write(lx + "/" + k, v, t));
    return Status::Ok();
  });
  if (!res.status.ok()) return res;
  // libxl__wait_device_connection: exactly InitWait.
  WaitRecord w = WaitState(be + "/state", "2", false);
  res.waits.push_back(w);
  if (!w.satisfied) res.status = Status(Code::kTimeout, "vtpm backend did not reach state 2 (InitWait)");
  return res;
}

Status Toolstack::RemoveRound(uint32_t domid, uint32_t devid, bool force, bool* backend_gone) {
  const std::string be = BackendPath(domid, devid);
  *backend_gone = false;
  return xs_.Transaction([&](XsTx t) {
    ASSIGN_OR_RETURN(auto state, xs_.Read(be + "/state", t));
    if (!state) {
      *backend_gone = true;
      return Status::Ok();
    }
    *backend_gone = false;
    if (force) RETURN_IF_ERROR(PathCleanup(FrontendPath(domid, devid), t));
    RETURN_IF_ERROR(xs_.Write(be + "/online", "0", t));
    if (*state != "6") RETURN_IF_ERROR(xs_.Write(be + "/state", "5", t));
    return Status::Ok();
  });
}

WaitRecord Toolstack::WaitState(const std::string& path, const std::string& want, bool forced) {
  WaitRecord w;
  w.path = path;
  w.wanted = want;
  w.forced = forced;
  auto start = Clock::now();
  std::optional<std::string> last;
  auto r = xs_.WaitFor(
      path,
      [&](const std::optional<std::string>& v) {
        last = v;
        return v && *v == want;
      },
      timeout_);
  w.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  w.satisfied = r.ok();
  w.last_value = last.value_or("<absent>");
  return w;
}

Status Toolstack::PathCleanup(const std::string& path, XsTx tx) {
  RETURN_IF_ERROR(xs_.Rm(path, tx));
  std::string p = path;
  for (;;) {
    auto slash = p.rfind('/');
    if (slash == std::string::npos || slash == 0) break;
    p.resize(slash);
    auto kids = xs_.Directory(p, tx);
    if (!kids.ok() || !kids->empty()) break;
    RETURN_IF_ERROR(xs_.Rm(p, tx));
  }
  return Status::Ok();
}

Status Toolstack::DestroyDeviceNodes(uint32_t domid, uint32_t devid) {
  // libxl__device_destroy: dom0 is both the toolstack and the backend domain.
  return xs_.Transaction([&](XsTx t) {
    RETURN_IF_ERROR(PathCleanup(FrontendPath(domid, devid), t));
    RETURN_IF_ERROR(PathCleanup(LibxlPath(domid, devid), t));
    return PathCleanup(BackendPath(domid, devid), t);
  });
}

ToolstackResult Toolstack::Detach(uint32_t domid, uint32_t devid) {
  ToolstackResult res;
  res.devid = devid;
  if (!xs_.Exists(LibxlPath(domid, devid)))
    res.status = Status(Code::kNotFound, "no vtpm " + D(devid) + " in domain " + D(domid));
  for (bool force : {false, true}) {
    if (!res.status.ok()) return res;
    bool gone = false;
    res.status = RemoveRound(domid, devid, force, &gone);
    if (!res.status.ok()) return res;
    if (gone) break;  // backend state absent: libxl only cleans up
    WaitRecord w = WaitState(BackendPath(domid, devid) + "/state", "6", force);
    res.waits.push_back(w);
    if (w.satisfied) break;
    if (force) {
      res.status = Status(Code::kTimeout, "unable to remove device with path " + BackendPath(domid, devid));
      return res;
    }
  }
  res.status = DestroyDeviceNodes(domid, devid);
  return res;
}

ToolstackResult Toolstack::Destroy(uint32_t domid) {
  ToolstackResult res;
  const std::string dom = "/local/domain/" + D(domid);
  auto vm = xs_.Read(dom + "/vm");
  auto devs = xs_.Directory("/libxl/" + D(domid) + "/device/vtpm");
  if (devs.ok()) {
    for (auto& d : *devs) {
      uint32_t devid = uint32_t(std::stoul(d));
      bool gone = false;
      res.status = RemoveRound(domid, devid, /*force=*/true, &gone);
      if (!res.status.ok()) return res;
      // FORCE_ON: a timeout is only logged; the nodes go regardless.
      if (!gone) res.waits.push_back(WaitState(BackendPath(domid, devid) + "/state", "6", true));
      res.status = DestroyDeviceNodes(domid, devid);
      if (!res.status.ok()) return res;
    }
  }
  res.status = xs_.Rm(dom);
  if (res.status.ok() && vm.ok() && vm->has_value()) res.status = xs_.Rm(**vm);
  if (res.status.ok()) res.status = xs_.Rm("/libxl/" + D(domid));
  // xc_domain_destroy: the hypervisor forgets the domain; xenstored fires
  // @releaseDomain (here on an explicit XS_RELEASE: the shim has no VIRQ).
  if (!sim_dir_.empty()) {
    Status removed = RemoveSimDomain(sim_dir_, domid);
    if (res.status.ok()) res.status = removed;
    ForgetDomain(sim_dir_, domid);
  }
  if (res.status.ok() && xs_.IsDomainIntroduced(domid)) res.status = xs_.ReleaseDomain(domid);
  return res;
}

}  // namespace vtpm::sim
