// DirLock: an exclusive flock on <dir>/lock for as long as the object lives,
// so one vtpmmgrd runs per state directory. The file holds the owner's pid.
#pragma once

#include <string>

#include "common/status.h"
#include "common/unique_fd.h"

namespace vtpm {

class DirLock {
 public:
  // Refusal::kLocked (naming the holder's pid) when another process - or
  // another DirLock in this process - holds it.
  static Result<DirLock> Acquire(const std::string& dir);

 private:
  explicit DirLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;  // closing it releases the lock
};

}  // namespace vtpm
