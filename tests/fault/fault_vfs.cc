#include "fault_vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace vtpm::testing {
namespace {

struct Op {
  bool truncate = false;
  sqlite3_int64 off = 0;  // write offset, or new size for truncate
  std::vector<uint8_t> data;
};

// Unsynced operations per path; survives close/reopen of the same file.
std::mutex g_mu;
std::map<std::string, std::vector<Op>> g_pending;
bool g_power_off = false;
bool g_full = false;
bool g_torn = false;
uint64_t g_torn_rng = 0x2545f4914f6cdd1dull;
int64_t g_ops = 0;
int64_t g_cut_at = -1;
sqlite3_vfs* g_base = nullptr;
sqlite3_vfs g_vfs;

struct File {
  sqlite3_file base;
  sqlite3_file* real;
  std::string* path;
};

sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<File*>(f)->real; }
const std::string& PathOf(sqlite3_file* f) { return *reinterpret_cast<File*>(f)->path; }

// Power goes off. Torn: each unsynced write or truncate independently did or
// did not reach the platter (in order); otherwise none did. g_mu held.
void PowerOffLocked() {
  g_power_off = true;
  if (g_torn) {
    for (const auto& [path, ops] : g_pending) {
      int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) continue;
      for (const Op& op : ops) {
        g_torn_rng ^= g_torn_rng << 13;
        g_torn_rng ^= g_torn_rng >> 7;
        g_torn_rng ^= g_torn_rng << 17;
        if (g_torn_rng & 1) continue;
        if (op.truncate) {
          if (::ftruncate(fd, op.off) != 0) break;
        } else if (::pwrite(fd, op.data.data(), op.data.size(), op.off) != ssize_t(op.data.size())) {
          break;
        }
      }
      ::close(fd);
    }
  }
  g_pending.clear();
  g_cut_at = -1;
}

// Counts a write or sync; cuts power when the armed count is reached. g_mu held.
bool CountOpAndMaybeCut() {
  ++g_ops;
  if (g_cut_at >= 0 && g_ops >= g_cut_at) PowerOffLocked();
  return g_power_off;
}

int Close(sqlite3_file* f) {
  File* p = reinterpret_cast<File*>(f);
  int rc = p->real->pMethods ? p->real->pMethods->xClose(p->real) : SQLITE_OK;
  sqlite3_free(p->real);
  delete p->path;
  return rc;
}

sqlite3_int64 EffectiveSize(sqlite3_file* f, sqlite3_int64 real_size) {
  sqlite3_int64 size = real_size;
  auto it = g_pending.find(PathOf(f));
  if (it == g_pending.end()) return size;
  for (const Op& op : it->second)
    size = op.truncate ? op.off : std::max<sqlite3_int64>(size, op.off + sqlite3_int64(op.data.size()));
  return size;
}

int Read(sqlite3_file* f, void* buf, int amt, sqlite3_int64 off) {
  std::lock_guard<std::mutex> l(g_mu);
  if (g_power_off) return SQLITE_IOERR_READ;
  sqlite3_int64 real_size = 0;
  int rc = Real(f)->pMethods->xFileSize(Real(f), &real_size);
  if (rc != SQLITE_OK) return rc;
  rc = Real(f)->pMethods->xRead(Real(f), buf, amt, off);
  if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) return rc;
  auto* out = static_cast<uint8_t*>(buf);
  auto it = g_pending.find(PathOf(f));
  if (it != g_pending.end()) {
    for (const Op& op : it->second) {
      if (op.truncate) {
        if (op.off < off + amt) {
          sqlite3_int64 from = std::max<sqlite3_int64>(op.off, off);
          std::memset(out + (from - off), 0, size_t(off + amt - from));
        }
        continue;
      }
      sqlite3_int64 lo = std::max<sqlite3_int64>(op.off, off);
      sqlite3_int64 hi = std::min<sqlite3_int64>(op.off + sqlite3_int64(op.data.size()), off + amt);
      if (lo < hi) std::memcpy(out + (lo - off), op.data.data() + (lo - op.off), size_t(hi - lo));
    }
  }
  sqlite3_int64 size = EffectiveSize(f, real_size);
  if (off + amt > size) {
    sqlite3_int64 from = std::max<sqlite3_int64>(size, off);
    std::memset(out + (from - off), 0, size_t(off + amt - from));
    return SQLITE_IOERR_SHORT_READ;
  }
  return SQLITE_OK;
}

int Write(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) {
  std::lock_guard<std::mutex> l(g_mu);
  if (g_power_off || CountOpAndMaybeCut()) return SQLITE_IOERR_WRITE;
  if (g_full) return SQLITE_FULL;
  const auto* p = static_cast<const uint8_t*>(buf);
  g_pending[PathOf(f)].push_back(Op{false, off, std::vector<uint8_t>(p, p + amt)});
  return SQLITE_OK;
}

int Truncate(sqlite3_file* f, sqlite3_int64 size) {
  std::lock_guard<std::mutex> l(g_mu);
  if (g_power_off) return SQLITE_IOERR_TRUNCATE;
  g_pending[PathOf(f)].push_back(Op{true, size, {}});
  return SQLITE_OK;
}

int Sync(sqlite3_file* f, int flags) {
  std::lock_guard<std::mutex> l(g_mu);
  if (g_power_off || CountOpAndMaybeCut()) return SQLITE_IOERR_FSYNC;
  auto it = g_pending.find(PathOf(f));
  if (it != g_pending.end()) {
    for (const Op& op : it->second) {
      int rc = op.truncate ? Real(f)->pMethods->xTruncate(Real(f), op.off)
                           : Real(f)->pMethods->xWrite(Real(f), op.data.data(), int(op.data.size()), op.off);
      if (rc != SQLITE_OK) return rc;
    }
    g_pending.erase(it);
  }
  return Real(f)->pMethods->xSync(Real(f), flags);
}

int FileSize(sqlite3_file* f, sqlite3_int64* size) {
  std::lock_guard<std::mutex> l(g_mu);
  if (g_power_off) return SQLITE_IOERR_FSTAT;
  sqlite3_int64 real_size = 0;
  int rc = Real(f)->pMethods->xFileSize(Real(f), &real_size);
  if (rc == SQLITE_OK) *size = EffectiveSize(f, real_size);
  return rc;
}

int Lock(sqlite3_file* f, int l) { return Real(f)->pMethods->xLock(Real(f), l); }
int Unlock(sqlite3_file* f, int l) { return Real(f)->pMethods->xUnlock(Real(f), l); }
int CheckReserved(sqlite3_file* f, int* out) { return Real(f)->pMethods->xCheckReservedLock(Real(f), out); }
int FileControl(sqlite3_file* f, int op, void* arg) {
  return Real(f)->pMethods->xFileControl(Real(f), op, arg);
}
int SectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
int DeviceCharacteristics(sqlite3_file* f) {
  // Writes are not atomic or ordered here: that is the point.
  return Real(f)->pMethods->xDeviceCharacteristics(Real(f)) &
         ~(SQLITE_IOCAP_ATOMIC | SQLITE_IOCAP_SAFE_APPEND | SQLITE_IOCAP_SEQUENTIAL |
           SQLITE_IOCAP_POWERSAFE_OVERWRITE);
}

// Version 1: no shared memory and no mmap, so every byte goes through
// xRead/xWrite (WAL works because the store uses locking_mode=EXCLUSIVE).
const sqlite3_io_methods kMethods = {
    1, Close, Read, Write, Truncate, Sync, FileSize, Lock, Unlock, CheckReserved, FileControl, SectorSize,
    DeviceCharacteristics, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
};

int Open(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  File* p = reinterpret_cast<File*>(f);
  p->base.pMethods = nullptr;
  {
    std::lock_guard<std::mutex> l(g_mu);
    if (g_power_off) return SQLITE_CANTOPEN;
  }
  p->real = static_cast<sqlite3_file*>(sqlite3_malloc(g_base->szOsFile));
  if (!p->real) return SQLITE_NOMEM;
  std::memset(p->real, 0, size_t(g_base->szOsFile));
  int rc = g_base->xOpen(g_base, name, p->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    sqlite3_free(p->real);
    return rc;
  }
  p->path = new std::string(name ? name : "");
  p->base.pMethods = &kMethods;
  return SQLITE_OK;
}

int Delete(sqlite3_vfs*, const char* name, int sync_dir) {
  {
    std::lock_guard<std::mutex> l(g_mu);
    if (g_power_off) return SQLITE_IOERR_DELETE;
    g_pending.erase(name);
  }
  return g_base->xDelete(g_base, name, sync_dir);
}
int Access(sqlite3_vfs*, const char* name, int flags, int* out) { return g_base->xAccess(g_base, name, flags, out); }
int FullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_base->xFullPathname(g_base, name, n, out);
}
int Randomness(sqlite3_vfs*, int n, char* out) { return g_base->xRandomness(g_base, n, out); }
int Sleep(sqlite3_vfs*, int us) { return g_base->xSleep(g_base, us); }
int CurrentTime(sqlite3_vfs*, double* t) { return g_base->xCurrentTime(g_base, t); }
int GetLastError(sqlite3_vfs*, int n, char* out) { return g_base->xGetLastError(g_base, n, out); }

}  // namespace

void FaultVfs::Register() {
  std::lock_guard<std::mutex> l(g_mu);
  if (g_base) return;
  g_base = sqlite3_vfs_find(nullptr);
  std::memset(&g_vfs, 0, sizeof g_vfs);
  g_vfs.iVersion = 1;
  g_vfs.szOsFile = int(sizeof(File));
  g_vfs.mxPathname = g_base->mxPathname;
  g_vfs.zName = kName;
  g_vfs.xOpen = Open;
  g_vfs.xDelete = Delete;
  g_vfs.xAccess = Access;
  g_vfs.xFullPathname = FullPathname;
  g_vfs.xDlOpen = nullptr;
  g_vfs.xRandomness = Randomness;
  g_vfs.xSleep = Sleep;
  g_vfs.xCurrentTime = CurrentTime;
  g_vfs.xGetLastError = GetLastError;
  sqlite3_vfs_register(&g_vfs, 0);
}

void FaultVfs::CutPower() {
  std::lock_guard<std::mutex> l(g_mu);
  PowerOffLocked();
}

void FaultVfs::ArmPowerCut(int64_t n) {
  std::lock_guard<std::mutex> l(g_mu);
  g_cut_at = n > 0 ? g_ops + n : -1;
}

void FaultVfs::SetTornWrites(bool torn) {
  std::lock_guard<std::mutex> l(g_mu);
  g_torn = torn;
}

bool FaultVfs::PowerIsOff() {
  std::lock_guard<std::mutex> l(g_mu);
  return g_power_off;
}

void FaultVfs::RestorePower() {
  std::lock_guard<std::mutex> l(g_mu);
  g_power_off = false;
  g_pending.clear();
  g_cut_at = -1;
}

void FaultVfs::SetDiskFull(bool full) {
  std::lock_guard<std::mutex> l(g_mu);
  g_full = full;
}

int64_t FaultVfs::ops() {
  std::lock_guard<std::mutex> l(g_mu);
  return g_ops;
}

}  // namespace vtpm::testing
