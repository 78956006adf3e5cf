// File helpers of the simulated hypervisor (xen_sim.h): its state lives in
// small files under $VTPM_SIM_DIR, read and replaced whole under flock.
#pragma once

#include <optional>
#include <string>

#include "common/status.h"
#include "common/unique_fd.h"

namespace vtpm::sim::files {

Status Errno(const std::string& what);
// mkdir -p (mode 0755).
Status MkdirP(const std::string& path);

// Exclusive flock on a lock file for the lifetime of the object.
class DirLock {
 public:
  explicit DirLock(const std::string& path);
  bool ok() const { return fd_.valid(); }

 private:
  UniqueFd fd_;  // closing releases the lock
};

// The whole file, nullopt when it cannot be read.
std::optional<std::string> ReadFile(const std::string& path);
// Writes `<path>.tmp` and renames it over `path`: readers see old or new.
Status WriteFileAtomic(const std::string& path, const std::string& data);

}  // namespace vtpm::sim::files
