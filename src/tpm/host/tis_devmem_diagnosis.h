// Why the kernel refused /dev/mem for the TPM's TIS registers, as one
// operator message: the three causes (a kernel TPM driver holding the
// region, kernel lockdown, no CAP_SYS_RAWIO), what was detected for each on
// this host ("could not tell" where it cannot be read), and the fixes.
#pragma once

#include <cstdint>
#include <string>

namespace vtpm::tis {

// `failed_call` is e.g. "mmap /dev/mem"; `err` its errno. `sys_root` is
// where sysfs is mounted (tests pass a fake tree).
std::string DiagnoseDevMemDenied(const std::string& failed_call, int err, uint64_t base,
                                 const std::string& sys_root = "/sys");

// The kernel TPM drivers bound on this host, e.g. "tpm_tis bound to
// MSFT0101:00"; "none" when sysfs shows none; "could not tell (...)" when
// sysfs cannot be read.
std::string BoundTpmDrivers(const std::string& sys_root = "/sys");
// "[integrity]" style lockdown mode, or "could not tell (...)".
std::string LockdownMode(const std::string& sys_root = "/sys");
// Whether this process has CAP_SYS_RAWIO in its effective set (capget(2)).
std::string RawIoCapability();

}  // namespace vtpm::tis
