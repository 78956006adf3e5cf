#include "daemon/install_paths.h"

#include <sys/stat.h>
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

Result<std::string> WorkerPath(const Config& cfg) {
  if (cfg.worker_path.empty()) return InstalledWorkerPath();
  struct stat st;
  std::string why;
  if (stat(cfg.worker_path.c_str(), &st) != 0) why = std::strerror(errno);
  else if (!S_ISREG(st.st_mode)) why = "not a regular file";
  else if (access(cfg.worker_path.c_str(), X_OK) != 0) why = std::strerror(errno);
  if (why.empty()) return cfg.worker_path;
  return Status(Code::kInvalidArgument,
                cfg.worker_path_origin + ": [engine] worker_path " + cfg.worker_path + " is not an executable file (" +
                    why + "); name the vtpm-worker executable, or leave it empty for the installed one");
}

}  // namespace vtpm
