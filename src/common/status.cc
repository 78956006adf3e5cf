#include "common/status.h"

#include <cstring>

namespace vtpm {

const char* CodeName(Code c) {
  switch (c) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kNotFound: return "not found";
    case Code::kAlreadyExists: return "already exists";
    case Code::kCorruption: return "corruption";
    case Code::kIoError: return "I/O error";
    case Code::kBusy: return "busy";
    case Code::kPermissionDenied: return "permission denied";
    case Code::kTpmError: return "TPM error";
    case Code::kUnavailable: return "unavailable";
    case Code::kFailedPrecondition: return "failed precondition";
    case Code::kTimeout: return "timeout";
    case Code::kInternal: return "internal error";
  }
  return "unknown";
}

Status Status::FromErrno(int err, const std::string& what) {
  Code code = Code::kIoError;
  if (err == ENOENT) code = Code::kNotFound;
  else if (err == EACCES || err == EPERM) code = Code::kPermissionDenied;
  else if (err == EEXIST) code = Code::kAlreadyExists;
  else if (err == EAGAIN || err == EBUSY) code = Code::kBusy;
  else if (err == EINVAL) code = Code::kInvalidArgument;
  return Status(code, what + ": " + std::strerror(err), err);
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return message_;
}

Status Status::Annotate(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + message_, sub_code_);
}

}  // namespace vtpm
