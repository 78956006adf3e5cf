// Status and Result<T>: how every module seam reports failure.
//
// A Status is OK or carries a code from a small closed set, a sub-code from the
// failing layer (errno, TSS2_RC, TPM_RESULT, SQLite result code) and one
// sentence for the operator. Exceptions never cross a module seam.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace vtpm {

enum class Code : uint8_t {
  kOk = 0,
  kInvalidArgument,   // bad input from a caller, a guest or a config file
  kNotFound,
  kAlreadyExists,
  kCorruption,        // stored or received bytes fail validation
  kIoError,           // an OS call failed (sub-code = errno)
  kBusy,              // try again later / resource held elsewhere
  kPermissionDenied,
  kTpmError,          // host TPM or TPM 1.2 engine returned an error (sub-code = rc)
  kUnavailable,       // peer gone: daemon, worker, xenstored
  kFailedPrecondition,
  kTimeout,
  kInternal,
};

const char* CodeName(Code c);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message, int64_t sub_code = 0)
      : code_(code), sub_code_(sub_code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  // errno-based failure: message gets ": strerror(err)" appended.
  static Status FromErrno(int err, const std::string& what);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  int64_t sub_code() const { return sub_code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Prefixes context ("loading instance X: ") to the message; no-op when OK.
  Status Annotate(const std::string& context) const;

 private:
  Code code_ = Code::kOk;
  int64_t sub_code_ = 0;
  std::string message_;
};

// Holds a T or a non-OK Status. Accessing value() of an error aborts.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    if (std::get<Status>(v_).ok()) v_ = Status(Code::kInternal, "Result built from OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace vtpm

#define VTPM_CONCAT_INNER(a, b) a##b
#define VTPM_CONCAT(a, b) VTPM_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                    \
  do {                                           \
    ::vtpm::Status _st = (expr);                 \
    if (!_st.ok()) return _st;                   \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, F())` binds the value or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(VTPM_CONCAT(_res_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
