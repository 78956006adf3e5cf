// Logging: every line about a guest names its domid, devid and uuid; a line
// about an instance no domain has attached (domid < 0) names its uuid alone.
//
// Use VLOG_INFO(ctx, "fmt", args...) with a GuestCtx, or LOG_INFO("fmt", ...)
// for lines about the daemon itself. Text output reads
//   "domid=3 devid=0 uuid=...: connected (ring-ref 8, port 5)".
// The journal sink (log.cc) sends each line as a journal entry (native
// protocol) with DOMID, DEVID and UUID fields read from the context active
// while the line is emitted.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

#include "common/log_event.h"

namespace vtpm {

struct GuestCtx {
  int domid = -1;
  int devid = -1;
  std::string uuid;  // may be empty when not known yet
  std::string Prefix() const;
};

// The context of the line currently being logged (nullptr for daemon lines).
const GuestCtx* CurrentLogContext();

class ScopedLogContext {
 public:
  explicit ScopedLogContext(const GuestCtx* ctx);
  ~ScopedLogContext();
  ScopedLogContext(const ScopedLogContext&) = delete;
  ScopedLogContext& operator=(const ScopedLogContext&) = delete;

 private:
  const GuestCtx* prev_;
};

inline constexpr char kJournalSocket[] = "/run/systemd/journal/socket";

// Sets up the default logger: the journal when `use_journal` (entries sent
// as datagrams in the journal's native protocol to `journal_path`),
// stderr otherwise. `level` is one of spdlog's names (trace, debug, info,
// warn, error).
void InitLogging(const std::string& program, bool use_journal, const std::string& level,
                 const std::string& journal_path = kJournalSocket);

// True when stderr is connected to the journal (systemd's $JOURNAL_STREAM
// names stderr's device and inode): log_target = auto then picks the journal.
bool StderrIsJournal();

}  // namespace vtpm

// Every line carries its code location (CODE_FILE, CODE_LINE, CODE_FUNC in
// the journal; file paths relative to the source tree).
#define VTPM_LOG_HERE \
  ::spdlog::source_loc { __FILE__, __LINE__, static_cast<const char*>(__func__) }
#define VLOG_AT(lvl, ctx, ...)                                                        \
  do {                                                                                \
    const ::vtpm::GuestCtx& _c = (ctx);                                               \
    ::vtpm::ScopedLogContext _s(&_c);                                                 \
    spdlog::log(VTPM_LOG_HERE, lvl, "{}: {}", _c.Prefix(), fmt::format(__VA_ARGS__)); \
  } while (0)
#define VLOG_DEBUG(ctx, ...) VLOG_AT(spdlog::level::debug, ctx, __VA_ARGS__)
#define VLOG_INFO(ctx, ...) VLOG_AT(spdlog::level::info, ctx, __VA_ARGS__)
#define VLOG_WARN(ctx, ...) VLOG_AT(spdlog::level::warn, ctx, __VA_ARGS__)
#define VLOG_ERROR(ctx, ...) VLOG_AT(spdlog::level::err, ctx, __VA_ARGS__)
#define LOG_AT(lvl, ...) spdlog::log(VTPM_LOG_HERE, lvl, __VA_ARGS__)
#define LOG_DEBUG(...) LOG_AT(spdlog::level::debug, __VA_ARGS__)
#define LOG_INFO(...) LOG_AT(spdlog::level::info, __VA_ARGS__)
#define LOG_WARN(...) LOG_AT(spdlog::level::warn, __VA_ARGS__)
#define LOG_ERROR(...) LOG_AT(spdlog::level::err, __VA_ARGS__)
// A documented event (common/log_event.h): the entry also carries its MESSAGE_ID.
#define VLOG_EVENT(lvl, event, ctx, ...) \
  do {                                   \
    ::vtpm::ScopedLogEvent _e(event);    \
    VLOG_AT(lvl, ctx, __VA_ARGS__);      \
  } while (0)
#define LOG_EVENT(lvl, event, ...)    \
  do {                                \
    ::vtpm::ScopedLogEvent _e(event); \
    LOG_AT(lvl, __VA_ARGS__);         \
  } while (0)
#define VEVENT_INFO(event, ctx, ...) VLOG_EVENT(spdlog::level::info, ::vtpm::LogEvent::event, ctx, __VA_ARGS__)
#define VEVENT_WARN(event, ctx, ...) VLOG_EVENT(spdlog::level::warn, ::vtpm::LogEvent::event, ctx, __VA_ARGS__)
#define VEVENT_ERROR(event, ctx, ...) VLOG_EVENT(spdlog::level::err, ::vtpm::LogEvent::event, ctx, __VA_ARGS__)
#define EVENT_INFO(event, ...) LOG_EVENT(spdlog::level::info, ::vtpm::LogEvent::event, __VA_ARGS__)
#define EVENT_ERROR(event, ...) LOG_EVENT(spdlog::level::err, ::vtpm::LogEvent::event, __VA_ARGS__)
