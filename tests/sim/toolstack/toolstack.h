// Toolstack simulator: writes and removes xenstore nodes exactly as libxl
// (Xen 4.17) does for `xl create`, `xl vtpm-attach`, `xl vtpm-detach` and
// `xl destroy` with a dom0 vTPM backend (protocol doc §2.2, §2.5), and waits
// like libxl: exactly be state 2 after attach, exactly 6 after detach/destroy,
// `timeout` (10 s) each; detach retries forced (frontend dir removed) after a
// timeout; destroy is forced from the start and only logs a timeout.
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
  uint32_t devid = 0;            // attach/create: the device created
  std::string uuid;              // attach/create: its uuid
  std::vector<WaitRecord> waits;
  // One line per wait: "waited 12 ms for <path> == 2: ok".
  std::string Report() const;
};

class Toolstack {
 public:
  // `sim_dir`: when non-empty, Destroy() also drops the domain's grants and
  // event channels there (the hypervisor forgets a destroyed domain).
  Toolstack(XsClient& xs, std::string sim_dir = {},
            std::chrono::milliseconds timeout = std::chrono::seconds(10))
      : xs_(xs), sim_dir_(std::move(sim_dir)), timeout_(timeout) {}

  // Dom0's own nodes, as xencommons leaves them.
  Status InitHost();
  // xl create: domain nodes (libxl__domain_make), XS_INTRODUCE, then each vtpm.
  ToolstackResult Create(uint32_t domid, const std::vector<VtpmSpec>& vtpms, const std::string& name = {});
  // xl vtpm-attach DOMID [uuid=U]
  ToolstackResult Attach(uint32_t domid, const VtpmSpec& spec);
  // xl vtpm-detach DOMID DEVID
  ToolstackResult Detach(uint32_t domid, uint32_t devid);
  // xl destroy DOMID
  ToolstackResult Destroy(uint32_t domid);

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

  XsClient& xs_;
  std::string sim_dir_;
  std::chrono::milliseconds timeout_;
};

// A random lower-case 8-4-4-4-12 uuid (version 4).
std::string RandomUuid();

}  // namespace vtpm::sim
