#include "tpm/host/tis_devmem_diagnosis.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

namespace vtpm::tis {
namespace fs = std::filesystem;

namespace {

// Last path component of a symlink's target, or "" when it is not a link.
std::string LinkName(const fs::path& link) {
  std::error_code ec;
  fs::path target = fs::read_symlink(link, ec);
  return ec ? std::string() : target.filename().string();
}

}  // namespace

std::string BoundTpmDrivers(const std::string& sys_root) {
  std::set<std::string> found;
  std::error_code ec;
  bool readable = false;
  // Devices the TPM core registered: /sys/class/tpm/tpmN/device/driver.
  fs::path cls = fs::path(sys_root) / "class/tpm";
  if (fs::is_directory(cls, ec)) {
    readable = true;
    for (const auto& e : fs::directory_iterator(cls, ec)) {
      std::string drv = LinkName(e.path() / "device/driver");
      if (!drv.empty()) found.insert(drv + " bound to " + LinkName(e.path() / "device") + " (" + e.path().filename().string() + ")");
    }
  }
  // Devices a TPM driver holds even when no tpmN exists (yet): the ACPI
  // TPM HIDs (MSFT0101 = TPM 2.0, PNP0C31 = TPM 1.2 TIS) on platform/pnp.
  for (const char* bus : {"bus/platform/drivers", "bus/pnp/drivers"}) {
    for (const char* drv : {"tpm_tis", "tpm_crb"}) {
      fs::path dir = fs::path(sys_root) / bus / drv;
      if (!fs::is_directory(dir, ec)) continue;
      readable = true;
      for (const auto& e : fs::directory_iterator(dir, ec))
        if (fs::is_symlink(e.symlink_status(ec)) && e.path().filename().string().find(':') != std::string::npos)
          found.insert(std::string(drv) + " bound to " + e.path().filename().string());
    }
  }
  if (fs::is_directory(fs::path(sys_root) / "bus", ec)) readable = true;
  if (!readable) return "could not tell (" + sys_root + " is not readable)";
  if (found.empty()) return "none";
  std::string out;
  for (const auto& f : found) out += (out.empty() ? "" : ", ") + f;
  return out;
}

std::string LockdownMode(const std::string& sys_root) {
  std::ifstream in(fs::path(sys_root) / "kernel/security/lockdown");
  std::string line;
  if (!in || !std::getline(in, line)) return "could not tell (" + sys_root + "/kernel/security/lockdown is not readable)";
  size_t open = line.find('['), close = line.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open)
    return "could not tell (lockdown file reads '" + line + "')";
  return line.substr(open, close - open + 1);
}

std::string RawIoCapability() {
  __user_cap_header_struct hdr{};
  hdr.version = _LINUX_CAPABILITY_VERSION_3;
  hdr.pid = 0;
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &hdr, data) != 0)
    return std::string("could not tell (capget: ") + std::strerror(errno) + ")";
  bool has = data[CAP_SYS_RAWIO / 32].effective & (1u << (CAP_SYS_RAWIO % 32));
  return has ? "present" : "missing from the effective set";
}

std::string DiagnoseDevMemDenied(const std::string& failed_call, int err, uint64_t base,
                                 const std::string& sys_root) {
  char where[64];
  std::snprintf(where, sizeof where, "0x%llx", static_cast<unsigned long long>(base));
  std::string drivers = BoundTpmDrivers(sys_root);
  std::string lockdown = LockdownMode(sys_root);
  std::string rawio = RawIoCapability();
  std::string m = failed_call + " for the TPM TIS registers at " + where + " (0x5000 bytes) failed: " +
                  std::strerror(err) + ". The kernel refuses /dev/mem for one of three reasons. ";
  m += "(1) A kernel TPM driver holds the region (IO_STRICT_DEVMEM; mmap fails with EPERM): detected: " + drivers +
       ". Fix: add initcall_blacklist=init_tis (tpm_tis; initcall_blacklist=crb_acpi_driver_init for tpm_crb, "
       "whose CRB interface has no TIS FIFO at all) to the dom0 Linux kernel command line, or unbind it at "
       "runtime, e.g. echo -n MSFT0101:00 > /sys/bus/platform/drivers/tpm_tis/unbind. ";
  m += "(2) Kernel lockdown (Secure Boot) forbids /dev/mem: detected: " + lockdown +
       ". Fix: with lockdown [integrity] or [confidentiality] no process may use /dev/mem; use "
       "tcti = \"device:/dev/tpmrm0\" instead. ";
  m += "(3) The process lacks CAP_SYS_RAWIO (or a device policy denies /dev/mem): detected: " + rawio +
       ". Fix: run as root with CAP_SYS_RAWIO; under systemd add the drop-in from vtpmmgrd(8) "
       "(CapabilityBoundingSet=CAP_SYS_RAWIO and DeviceAllow=/dev/mem rw).";
  return m;
}

}  // namespace vtpm::tis
