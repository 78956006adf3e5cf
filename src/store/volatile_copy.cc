// VolatileCopyUsable() and ReadBootId() from store.h.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "common/unique_fd.h"
#include "common/uuid.h"
#include "store/store.h"

namespace vtpm {

bool VolatileCopyUsable(const VolatileCopy& copy, const std::array<uint8_t, 16>& boot_id, uint32_t domid,
                        const std::optional<std::array<uint8_t, 16>>& handle, uint64_t store_generation,
                        std::string* why) {
  std::string reason;
  if (copy.boot_id != boot_id) reason = "it was written before the host rebooted";
  else if (copy.domid != domid)
    reason = "it belongs to domain " + std::to_string(copy.domid) + ", not " + std::to_string(domid);
  else if (copy.handle && handle && *copy.handle != *handle)
    reason = "it belongs to an earlier domain " + std::to_string(domid) + " (handle " +
             Uuid{*copy.handle}.ToString() + ", this one has " + Uuid{*handle}.ToString() + ")";
  else if (copy.generation != store_generation)
    reason = "it goes with state generation " + std::to_string(copy.generation) + ", the store holds " +
             std::to_string(store_generation);
  if (why) *why = reason;
  return reason.empty();
}

Result<std::array<uint8_t, 16>> ReadBootId() {
  const char* path = "/proc/sys/kernel/random/boot_id";
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return Status::FromErrno(errno, std::string("opening ") + path);
  char buf[64] = {};
  ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  if (n < 36) return Status(Code::kIoError, std::string(path) + " is shorter than a uuid");
  ASSIGN_OR_RETURN(Uuid id, Uuid::Parse(std::string_view(buf, 36)));
  return id.bytes;
}

}  // namespace vtpm
