// Toolstack simulator: writes and removes xenstore nodes exactly as libxl
// (Xen 4.17) does for `xl create`, `xl vtpm-attach`, `xl vtpm-detach` and
// `xl destroy` with a dom0 vTPM backend (protocol doc §2.2, §2.5), and waits
// like libxl: exactly be state 2 after attach, exactly 6 after detach/destroy,
// `timeout` (10 s) each; detach retries forced (frontend dir removed) after a
// timeout; destroy is forced from the start and only logs a timeout.
// With a sim_dir it also keeps the simulated hypervisor's domain table
// (xen_sim.h, domains/<domid>) as Xen does for those commands, and plays
// `xl save`, `xl restore`, a guest reboot and `xl migrate <dom> localhost`
// as doc/xen-save-restore-signals.md §1, §2 and §6.4 describe them.
// Every operation returns what it waited for and how long.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "simhost/xs_client.h"

namespace vtpm::sim {

struct VtpmSpec {
  std::optional<uint32_t> devid;  // default: libxl's next free devid
  std::string uuid;               // default: random (libxl_uuid_generate)
  bool operator==(const VtpmSpec&) const = default;
};

// What xl keeps of a domain in a save file's config header and passes on at
// a reboot (libxl_retrieve_domain_configuration): c_info.uuid (the hypervisor
// domain handle), c_info.name and each vtpm's devid and uuid.
struct SavedDomain {
  std::string handle;
  std::string name;
  std::vector<VtpmSpec> vtpms;  // devid always set, ascending
  bool operator==(const SavedDomain&) const = default;
};

struct WaitRecord {
  std::string path;
  std::string wanted;      // exact value libxl compares against
  bool forced = false;     // part of the forced retry
  bool satisfied = false;
  std::string last_value;  // "<absent>" when the node was gone
  std::chrono::milliseconds elapsed{0};
};

struct ToolstackResult {
  Status status;
  uint32_t devid = 0;            // attach/create: the (last) device created
  std::string uuid;              // attach/create: its uuid
  std::string handle;            // create/restore/reboot/migrate: the new domain's handle
  std::optional<SavedDomain> saved;  // save: the save file's record
  std::vector<WaitRecord> waits;
  // One line per wait: "waited 12 ms for <path> == 2: ok".
  std::string Report() const;
};

class Toolstack {
 public:
  // `sim_dir`: when non-empty, Create() adds the domain to the hypervisor's
  // domain table there and Destroy() removes it and drops the domain's grants
  // and event channels (the hypervisor forgets a destroyed domain). The verbs
  // from Shutdown() on need it (kFailedPrecondition without).
  Toolstack(XsClient& xs, std::string sim_dir = {},
            std::chrono::milliseconds timeout = std::chrono::seconds(10))
      : xs_(xs), sim_dir_(std::move(sim_dir)), timeout_(timeout) {}

  // Dom0's own nodes, as xencommons leaves them.
  Status InitHost();
  // xl create: the hypervisor domain with `handle` (default random, as xl
  // gives a config without uuid=; kAlreadyExists when domid exists), domain
  // nodes with /vm/<handle> (libxl__domain_make), XS_INTRODUCE, then each
  // vtpm. A failure leaves what was made (libxl would destroy it).
  ToolstackResult Create(uint32_t domid, const std::vector<VtpmSpec>& vtpms, const std::string& name = {},
                         const std::string& handle = {});
  // xl vtpm-attach DOMID [uuid=U]
  ToolstackResult Attach(uint32_t domid, const VtpmSpec& spec);
  // xl vtpm-detach DOMID DEVID
  ToolstackResult Detach(uint32_t domid, uint32_t devid);
  // xl destroy DOMID: forced removal of each vtpm, the domain's nodes, then
  // xc_domain_destroy (domain table entry, grants, event channels) and
  // XS_RELEASE.
  ToolstackResult Destroy(uint32_t domid);

  // The guest shut itself down (SCHEDOP_shutdown) with SHUTDOWN_* `reason`:
  // Xen records the code, the first one sticking until a resume. Nothing in
  // xenstore changes; the guest's frontend is the guest simulator's part.
  Status Shutdown(uint32_t domid, uint8_t reason);
  // xl save DOMID FILE: records the domain's config (handle from the
  // hypervisor, name, vtpm devids and uuids), the guest suspends (code 2),
  // then exactly Destroy(). `saved` holds the record.
  ToolstackResult Save(uint32_t domid);
  // xl restore FILE: Create() on `domid` with the saved handle, name and vtpms.
  ToolstackResult Restore(uint32_t domid, const SavedDomain& saved);
  // A guest reboot under xl's monitor (on_reboot=restart): the guest shuts
  // down with code 1, xl records its config, Destroy(), then Create() on
  // `new_domid` with the same handle, name and vtpms (xl waits 2 s first;
  // the simulator does not).
  ToolstackResult Reboot(uint32_t domid, uint32_t new_domid);
  // xl migrate DOMID localhost: the receiver domain `new_domid` is made with
  // the same handle, named <name>--incoming; the sender suspends (code 2);
  // the receiver is introduced and gets the same vtpms while the sender still
  // exists. On success the sender is renamed <name>--migratedaway, the
  // receiver <name>, and only then the sender destroyed (which removes the
  // /vm/<handle> both share, as libxl does). When the receiver's creation
  // fails, the receiver is destroyed and the sender resumed (code cleared,
  // XS_RESUME), and the receiver's error returned.
  ToolstackResult MigrateLocal(uint32_t domid, uint32_t new_domid);

  static std::string BackendPath(uint32_t domid, uint32_t devid);
  static std::string FrontendPath(uint32_t domid, uint32_t devid);
  static std::string LibxlPath(uint32_t domid, uint32_t devid);

 private:
  // One removal round: `force` removes the frontend dir in the same commit.
  // Returns false in *backend_gone when the backend state node is absent.
  Status RemoveRound(uint32_t domid, uint32_t devid, bool force, bool* backend_gone);
  WaitRecord WaitState(const std::string& path, const std::string& want, bool forced);
  Status DestroyDeviceNodes(uint32_t domid, uint32_t devid);
  Status PathCleanup(const std::string& path, XsTx tx);  // libxl__xs_path_cleanup
  // libxl__domain_make: the hypervisor domain, then the domain's nodes.
  Status MakeDomain(uint32_t domid, const std::string& handle, const std::string& name);
  // libxl__build_post's XS_INTRODUCE, then each vtpm (libxl's domcreate chain).
  ToolstackResult AddDevices(uint32_t domid, const std::vector<VtpmSpec>& vtpms);
  // libxl_retrieve_domain_configuration, for save, reboot and migrate.
  Result<SavedDomain> RetrieveConfig(uint32_t domid);
  // libxl__domain_rename: name and /vm/<handle>/name in one transaction,
  // refused when another domain has `to` or the domain is not named `from`.
  Status Rename(uint32_t domid, const std::string& from, const std::string& to);
  Status NeedSimDir(const char* verb) const;

  XsClient& xs_;
  std::string sim_dir_;
  std::chrono::milliseconds timeout_;
};

// A random lower-case 8-4-4-4-12 uuid (version 4).
std::string RandomUuid();

}  // namespace vtpm::sim
