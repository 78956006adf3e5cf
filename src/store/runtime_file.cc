#include "store/runtime_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "common/unique_fd.h"

namespace vtpm {
namespace {

// pwrite(2) of all of `data` at `offset`, retried on EINTR and short writes.
Status PwriteAll(int fd, ByteView data, off_t offset, const std::string& what) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + off, data.size() - off, offset + off_t(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "writing " + what);
    off += size_t(n);
  }
  return Status::Ok();
}

}  // namespace

Status ReplaceFile(const std::string& path, ByteView data) {
  const std::string tmp = path + ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return Status::FromErrno(errno, "opening " + tmp);
    Status st = PwriteAll(fd.get(), data, 0, tmp);
    if (st.ok() && ::ftruncate(fd.get(), off_t(data.size())) != 0) st = Status::FromErrno(errno, "truncating " + tmp);
    if (!st.ok()) {
      ::unlink(tmp.c_str());
      return st;
    }
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_EXCHANGE) == 0) return Status::Ok();
  if (errno != ENOENT && errno != EINVAL && errno != ENOSYS) {
    Status st = Status::FromErrno(errno, "exchanging " + tmp + " with " + path);
    ::unlink(tmp.c_str());
    return st;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status st = Status::FromErrno(errno, "renaming " + tmp);
    ::unlink(tmp.c_str());
    return st;
  }
  return Status::Ok();
}

Status WriteNewFileDurably(const std::string& path, ByteView data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) {
    if (errno == EEXIST) return Status(Code::kAlreadyExists, path + " already exists");
    return Status::FromErrno(errno, "creating " + path);
  }
  Status st = PwriteAll(fd.get(), data, 0, path);
  if (st.ok() && ::fsync(fd.get()) != 0) st = Status::FromErrno(errno, "fsync " + path);
  const size_t slash = path.rfind('/');
  const std::string dir = slash == 0 ? "/" : slash == std::string::npos ? "." : path.substr(0, slash);
  if (st.ok()) {
    UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d || ::fsync(d.get()) != 0) st = Status::FromErrno(errno, "fsync " + dir);
  }
  if (!st.ok()) ::unlink(path.c_str());
  return st;
}

Status OverwriteRecord(const std::string& path, ByteView data) {
  if (data.size() > kMaxInPlaceRecord) return ReplaceFile(path, data);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno == ENOENT) return ReplaceFile(path, data);
    return Status::FromErrno(errno, "opening " + path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
  if (uint64_t(st.st_size) != data.size()) return ReplaceFile(path, data);
  ssize_t n;
  do {
    n = ::pwrite(fd.get(), data.data(), data.size(), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::FromErrno(errno, "writing " + path);
  // A short write of a record within one page does not happen on tmpfs; if
  // another file system does it, the whole record is replaced instead.
  if (size_t(n) != data.size()) return ReplaceFile(path, data);
  return Status::Ok();
}

Result<std::optional<Bytes>> ReadFileIfPresent(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno == ENOENT) return std::optional<Bytes>();
    return Status::FromErrno(errno, "opening " + path);
  }
  Bytes data;
  uint8_t buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "reading " + path);
    if (n == 0) break;
    data.insert(data.end(), buf, buf + n);
  }
  return std::optional<Bytes>(std::move(data));
}

}  // namespace vtpm
