// Files of the runtime directory (the volatile copy, the responded mark):
// they only have to outlive the daemon, not the host (the directory is tmpfs
// on a real host), so they are never fsync'd. What they must survive is the
// daemon being killed (SIGKILL, a crash) at any instruction: a reader started
// afterwards sees either the previous content or the new one, never a mix.
#pragma once

#include <optional>
#include <string>

#include "common/bytes.h"
#include "common/status.h"

namespace vtpm {

// Replaces the content of `path` with `data`, atomically with respect to the
// writer being killed. `data` goes into `<path>.tmp` (created on first use,
// overwritten in place and cut to size afterwards), which is then swapped
// with `path` by renameat2(RENAME_EXCHANGE): `path` names the old whole file
// until the swap and the new whole file after it. The swap leaves the
// previous content under `<path>.tmp` for the next write to overwrite, so
// after the first two writes no inode is created or freed per write. Where
// the file system cannot exchange (or `path` does not exist yet) it falls
// back to rename(2), atomic too. Callers serialize writes to one `path`.
Status ReplaceFile(const std::string& path, ByteView data);

// Largest record OverwriteRecord() writes in place.
inline constexpr size_t kMaxInPlaceRecord = 512;

// Writes a small fixed-size record at offset 0 of `path` in place: one
// pwrite(2) into the existing file, no new inode, no rename. Atomic with
// respect to the writer being killed because the kernel copies a write into
// the page cache one page at a time and acts on a fatal signal only before
// a page's copy, never inside it: a record that lies within the first page
// (`data.size()` <= kMaxInPlaceRecord, offset 0) from a resident buffer is
// written whole or not at all. A record spanning pages could be cut between
// them, hence the size limit; a crash of the host is outside the contract
// (tmpfs loses everything anyway). When `path` is absent, or holds a record
// of another size (which an in-place write would leave partly in the file),
// or `data` is larger than the limit, it goes through ReplaceFile().
Status OverwriteRecord(const std::string& path, ByteView data);

// Creates `path` (mode 0600; kAlreadyExists if it exists), writes `data`,
// fsyncs it and its directory: on success the file survives a host crash.
// A failure removes what it created.
Status WriteNewFileDurably(const std::string& path, ByteView data);

// The whole file, or nullopt if it does not exist.
Result<std::optional<Bytes>> ReadFileIfPresent(const std::string& path);

}  // namespace vtpm
