// The real register window (mmap of a /dev/mem-like file) and the
// diagnosis for a refused /dev/mem, against a fake sysfs tree.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "common/unique_fd.h"
#include "host_tpm_swtpm.h"
#include "tpm/host/tis_devmem.h"
#include "tpm/host/tis_devmem_diagnosis.h"

namespace vtpm::tis {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

// A sparse file standing in for /dev/mem: the window lands at `base` in it.
TEST(TisDevMem, MapsTheWindowAtItsBaseAndAccessesEachWidth) {
  TempDir dir;
  const std::string path = dir.Sub("mem");
  const uint64_t base = 0xfed40000;
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd.get(), off_t(base + kWindowSize)), 0);
    uint32_t did_vid = 0x00011014;
    ASSERT_EQ(::pwrite(fd.get(), &did_vid, 4, off_t(base + LocalityOffset(2, kDidVid))), 4);
  }
  {
    auto w = DevMemWindow::Open(base, path);
    ASSERT_TRUE(w.ok()) << w.status().message();
    EXPECT_EQ((*w)->Read32(LocalityOffset(2, kDidVid)), 0x00011014u);
    EXPECT_EQ((*w)->Read8(LocalityOffset(2, kDidVid)), 0x14);
    (*w)->Write8(LocalityOffset(0, kAccess), kAccessRequestUse);
    (*w)->Write32(LocalityOffset(4, kSts), 0x04100040);
    EXPECT_EQ((*w)->Read8(LocalityOffset(4, kSts) + 1), 0x00);
    EXPECT_EQ((*w)->Read8(LocalityOffset(4, kSts) + 2), 0x10);
  }
  // Writes went to the file at the right physical offsets (shared mapping).
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  uint8_t access = 0;
  uint32_t sts = 0;
  ASSERT_EQ(::pread(fd.get(), &access, 1, off_t(base)), 1);
  ASSERT_EQ(::pread(fd.get(), &sts, 4, off_t(base + 4 * kLocalityStride + kSts)), 4);
  EXPECT_EQ(access, kAccessRequestUse);
  EXPECT_EQ(sts, 0x04100040u);
}

TEST(TisDevMemDeathTest, AnOffsetOutsideTheWindowNeverReachesMemory) {
  TempDir dir;
  const std::string path = dir.Sub("mem");
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd.get(), off_t(kDefaultBase + 2 * kWindowSize)), 0);
  }
  auto w = DevMemWindow::Open(kDefaultBase, path);
  ASSERT_TRUE(w.ok()) << w.status().message();
  EXPECT_EQ((*w)->Read32(kWindowSize - 4), 0u);
  EXPECT_DEATH((*w)->Read8(kWindowSize), "");
  EXPECT_DEATH((*w)->Write32(kWindowSize - 2, 1), "");
  EXPECT_DEATH((*w)->Read32(kSts + 1), "");  // unaligned
}

TEST(TisDevMem, MissingDeviceNamesTheCall) {
  TempDir dir;
  auto w = DevMemWindow::Open(kDefaultBase, dir.Sub("nope"));
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().code(), Code::kPermissionDenied);
  EXPECT_NE(w.status().message().find("open " + dir.Sub("nope")), std::string::npos) << w.status().message();
}

void Symlink(const fs::path& target, const fs::path& link) {
  fs::create_directories(link.parent_path());
  fs::create_directory_symlink(target, link);
}

// sysfs as Debian's dom0 kernel shows it with tpm_tis bound (xen-in-qemu.md).
TEST(TisDevMemDiagnosis, NamesTheBoundDriverLockdownAndCapability) {
  TempDir dir;
  fs::path sys = dir.Sub("sys");
  fs::path dev = sys / "devices/pci0000:00/0000:00:01.0/MSFT0101:00";
  fs::path drv = sys / "bus/platform/drivers/tpm_tis";
  fs::create_directories(dev);
  fs::create_directories(drv);
  Symlink(drv, dev / "driver");
  Symlink(dev, drv / "MSFT0101:00");
  fs::create_directories(dev / "tpm/tpm0");
  Symlink(dev, dev / "tpm/tpm0/device");
  Symlink(dev / "tpm/tpm0", sys / "class/tpm/tpm0");
  fs::create_directories(sys / "kernel/security");
  std::ofstream(sys / "kernel/security/lockdown") << "none [integrity] confidentiality\n";

  EXPECT_EQ(BoundTpmDrivers(sys), "tpm_tis bound to MSFT0101:00, tpm_tis bound to MSFT0101:00 (tpm0)");
  EXPECT_EQ(LockdownMode(sys), "[integrity]");
  std::string m = DiagnoseDevMemDenied("mmap /dev/mem", EPERM, 0xfed40000, sys);
  for (const char* part :
       {"mmap /dev/mem for the TPM TIS registers at 0xfed40000 (0x5000 bytes) failed: Operation not permitted",
        "detected: tpm_tis bound to MSFT0101:00", "initcall_blacklist=init_tis",
        "echo -n MSFT0101:00 > /sys/bus/platform/drivers/tpm_tis/unbind", "detected: [integrity]",
        "device:/dev/tpmrm0", "CAP_SYS_RAWIO", "CapabilityBoundingSet=CAP_SYS_RAWIO", "DeviceAllow=/dev/mem rw"})
    EXPECT_NE(m.find(part), std::string::npos) << part << "\n" << m;
  EXPECT_NE(m.find("(3) The process lacks CAP_SYS_RAWIO (or a device policy denies /dev/mem): detected: " +
                   RawIoCapability()),
            std::string::npos);
}

TEST(TisDevMemDiagnosis, SaysWhatItCannotTell) {
  TempDir dir;
  fs::path empty = dir.Sub("empty");
  EXPECT_EQ(BoundTpmDrivers(empty.string()).rfind("could not tell", 0), 0u);
  EXPECT_EQ(LockdownMode(empty.string()).rfind("could not tell", 0), 0u);
  // A readable sysfs without TPM drivers and without lockdown.
  fs::create_directories(empty / "bus/platform/drivers");
  fs::create_directories(empty / "kernel/security");
  std::ofstream(empty / "kernel/security/lockdown") << "[none] integrity confidentiality\n";
  EXPECT_EQ(BoundTpmDrivers(empty.string()), "none");
  EXPECT_EQ(LockdownMode(empty.string()), "[none]");
}

// What this host itself shows (reported, and each answer is well-formed).
TEST(TisDevMemDiagnosis, ThisHost) {
  std::string drivers = BoundTpmDrivers(), lockdown = LockdownMode(), rawio = RawIoCapability();
  std::cout << "bound TPM drivers: " << drivers << "\nlockdown: " << lockdown << "\nCAP_SYS_RAWIO: " << rawio << "\n";
  EXPECT_TRUE(drivers == "none" || drivers.find(" bound to ") != std::string::npos ||
              drivers.rfind("could not tell", 0) == 0) << drivers;
  EXPECT_TRUE(lockdown.front() == '[' || lockdown.rfind("could not tell", 0) == 0) << lockdown;
  EXPECT_TRUE(rawio == "present" || rawio == "missing from the effective set" || rawio.rfind("could not tell", 0) == 0);
}

}  // namespace
}  // namespace vtpm::tis
