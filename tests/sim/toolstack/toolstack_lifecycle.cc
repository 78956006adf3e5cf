// Toolstack verbs around a domain's life that involve the hypervisor: guest
// shutdown, xl save / restore, a guest reboot under xl, xl migrate to
// localhost (doc/xen-save-restore-signals.md §1, §2, §6.4).
#include <algorithm>

#include "common/uuid.h"
#include "toolstack/toolstack.h"
#include "xen_sim.h"

namespace vtpm::sim {
namespace {

std::string D(uint32_t v) { return std::to_string(v); }

void Append(ToolstackResult& into, const ToolstackResult& from) {
  into.waits.insert(into.waits.end(), from.waits.begin(), from.waits.end());
}

// A result carrying only `st`.
ToolstackResult Failed(Status st) {
  ToolstackResult r;
  r.status = std::move(st);
  return r;
}

}  // namespace

Status Toolstack::NeedSimDir(const char* verb) const {
  if (!sim_dir_.empty()) return Status::Ok();
  return Status(Code::kFailedPrecondition, std::string(verb) + " needs the simulated hypervisor (sim_dir)");
}

Status Toolstack::Shutdown(uint32_t domid, uint8_t reason) {
  RETURN_IF_ERROR(NeedSimDir("shutdown"));
  if (reason > kShutdownSoftReset)
    return Status(Code::kInvalidArgument, "shutdown reason " + D(reason) + " is not 0..5");
  // domain_shutdown(): the first code sticks until domain_resume().
  return UpdateSimDomain(sim_dir_, domid, [&](SimDomain& d) {
    if (!d.shutdown) d.shutdown = reason;
  });
}

Result<SavedDomain> Toolstack::RetrieveConfig(uint32_t domid) {
  RETURN_IF_ERROR(NeedSimDir("retrieving a domain's configuration"));
  SavedDomain out;
  // c_info.uuid: the hypervisor's domain handle (libxl_domain_info).
  ASSIGN_OR_RETURN(auto dom, ReadSimDomain(sim_dir_, domid));
  if (!dom) return Status(Code::kNotFound, "ERROR_DOMAIN_NOTFOUND: domain " + D(domid));
  out.handle = dom->handle;
  ASSIGN_OR_RETURN(auto name, xs_.Read("/local/domain/" + D(domid) + "/name"));
  out.name = name.value_or("");
  // vtpms: the devices under the libxl path, each uuid read from its
  // backend (libxl__vtpm_from_xenstore), else the one libxl stored.
  auto ids = xs_.Directory("/libxl/" + D(domid) + "/device/vtpm");
  std::vector<uint32_t> devids;
  if (ids.ok()) {
    for (const auto& i : *ids) devids.push_back(uint32_t(std::stoul(i)));
  }
  std::sort(devids.begin(), devids.end());
  for (uint32_t devid : devids) {
    ASSIGN_OR_RETURN(auto be, xs_.Read(LibxlPath(domid, devid) + "/backend"));
    if (!be) return Status(Code::kNotFound, LibxlPath(domid, devid) + "/backend is missing");
    ASSIGN_OR_RETURN(auto uuid, xs_.Read(*be + "/uuid"));
    if (!uuid) {
      ASSIGN_OR_RETURN(uuid, xs_.Read(LibxlPath(domid, devid) + "/uuid"));
    }
    out.vtpms.push_back(VtpmSpec{devid, uuid.value_or("")});
  }
  return out;
}

ToolstackResult Toolstack::Save(uint32_t domid) {
  auto config = RetrieveConfig(domid);
  if (!config.ok()) return Failed(config.status());
  // libxl suspends the guest; the guest's SCHEDOP_shutdown(suspend).
  Status st = Shutdown(domid, kShutdownSuspend);
  if (!st.ok()) return Failed(st);
  // Memory goes to the file, then save_domain() calls libxl_domain_destroy.
  ToolstackResult res = Destroy(domid);
  if (res.status.ok()) res.saved = std::move(config).value();
  return res;
}

ToolstackResult Toolstack::Restore(uint32_t domid, const SavedDomain& saved) {
  return Create(domid, saved.vtpms, saved.name, saved.handle);
}

ToolstackResult Toolstack::Reboot(uint32_t domid, uint32_t new_domid) {
  Status st = Shutdown(domid, kShutdownReboot);
  if (!st.ok()) return Failed(st);
  // xl's monitor: the config first, then destroy and create it again.
  auto config = RetrieveConfig(domid);
  if (!config.ok()) return Failed(config.status());
  ToolstackResult res = Destroy(domid);
  if (!res.status.ok()) return res;
  ToolstackResult created = Restore(new_domid, *config);
  Append(res, created);
  res.status = created.status;
  res.devid = created.devid;
  res.uuid = created.uuid;
  res.handle = created.handle;
  return res;
}

ToolstackResult Toolstack::MigrateLocal(uint32_t domid, uint32_t new_domid) {
  auto config = RetrieveConfig(domid);
  if (!config.ok()) return Failed(config.status());
  const std::string incoming = config->name + "--incoming";
  // Receiver: libxl__domain_make runs before the stream is read, while the
  // sender still runs its pre-copy.
  ToolstackResult res;
  res.handle = config->handle;
  res.status = MakeDomain(new_domid, config->handle, incoming);
  if (!res.status.ok()) return res;
  // Sender: the guest suspends for the last round.
  res.status = Shutdown(domid, kShutdownSuspend);
  // Receiver, stream done: introduce, then the devices (sender still alive).
  if (res.status.ok()) {
    ToolstackResult added = AddDevices(new_domid, config->vtpms);
    Append(res, added);
    res.status = added.status;
    res.devid = added.devid;
    res.uuid = added.uuid;
  }
  if (!res.status.ok()) {
    // libxl destroys the failed receiver; the sender resumes
    // (libxl_domain_resume: xc_domain_resume clears the code, XS_RESUME).
    Append(res, Destroy(new_domid));
    (void)UpdateSimDomain(sim_dir_, domid, [](SimDomain& d) { d.shutdown.reset(); });
    if (xs_.IsDomainIntroduced(domid)) (void)xs_.ResumeDomain(domid);
    return res;
  }
  res.status = Rename(domid, config->name, config->name + "--migratedaway");
  // "GO": the receiver takes the name and is unpaused.
  if (res.status.ok()) res.status = Rename(new_domid, incoming, config->name);
  if (!res.status.ok()) return res;
  ToolstackResult destroyed = Destroy(domid);
  Append(res, destroyed);
  res.status = destroyed.status;
  return res;
}

Status Toolstack::Rename(uint32_t domid, const std::string& from, const std::string& to) {
  ASSIGN_OR_RETURN(auto dom, ReadSimDomain(sim_dir_, domid));
  if (!dom) return Status(Code::kNotFound, "ERROR_DOMAIN_NOTFOUND: domain " + D(domid));
  ASSIGN_OR_RETURN(auto others, ListSimDomains(sim_dir_, 0, kFirstReservedDomid));
  const std::string name_path = "/local/domain/" + D(domid) + "/name";
  return xs_.Transaction([&](XsTx t) {
    // libxl_name_to_domid: nonempty names are unique.
    for (const SimDomain& o : others) {
      if (o.domid == domid) continue;
      ASSIGN_OR_RETURN(auto n, xs_.Read("/local/domain/" + D(o.domid) + "/name", t));
      if (n == to) return Status(Code::kAlreadyExists, "domain with name \"" + to + "\" already exists");
    }
    ASSIGN_OR_RETURN(auto current, xs_.Read(name_path, t));
    if (current != from)
      return Status(Code::kFailedPrecondition, "domain " + D(domid) + " is not named " + from);
    RETURN_IF_ERROR(xs_.Write(name_path, to, t));
    return xs_.Write("/vm/" + dom->handle + "/name", to, t);
  });
}

}  // namespace vtpm::sim
