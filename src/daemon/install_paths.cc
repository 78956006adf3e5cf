#include "daemon/install_paths.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace vtpm {

Result<std::string> InstalledWorkerPath() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return Status(Code::kNotFound, "cannot read /proc/self/exe to locate vtpm-worker: " + ec.message());
  std::string path = (self.parent_path() / VTPM_WORKER_RELATIVE_PATH).lexically_normal().string();
  if (access(path.c_str(), X_OK) != 0) {
    int err = errno;
    return Status(Code::kNotFound, "the worker " + path + " next to " + self.string() + " is not executable (" +
                         std::strerror(err) + "); install vtpm-worker there or set [engine] worker_path");
  }
  return path;
}

}  // namespace vtpm
