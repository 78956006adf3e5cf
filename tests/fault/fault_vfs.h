// A SQLite VFS ("vtpm_fault") over the default one, for power-loss and
// disk-full tests.
//
// Power loss: writes and truncates are held in memory until the file's
// xSync, as a disk cache would hold them. CutPower() drops every write not
// yet synced and fails all later I/O, so what is on disk afterwards is
// exactly what was synced. ArmPowerCut(n) cuts power at the n-th write or
// sync from now, i.e. at a random point inside a commit.
// Torn (SetTornWrites): at the cut, each unsynced write independently
// reaches the disk or not, as with a drive that reorders its cache.
// Disk full: while SetDiskFull(true), every write fails with SQLITE_FULL.
// Not modelled: directory entries (file creation is durable at once).
#pragma once

#include <cstdint>

namespace vtpm::testing {

class FaultVfs {
 public:
  static constexpr const char* kName = "vtpm_fault";
  static void Register();       // idempotent
  static void CutPower();
  static void ArmPowerCut(int64_t ops_from_now);  // <= 0 disarms
  static void SetTornWrites(bool torn);
  static bool PowerIsOff();
  static void RestorePower();   // forgets everything unsynced; new opens work again
  static void SetDiskFull(bool full);
  static int64_t ops();         // writes + syncs seen so far
};

}  // namespace vtpm::testing
