#include "common/log.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <cstring>
#include <mutex>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "common/unique_fd.h"

namespace vtpm {
namespace {
thread_local const GuestCtx* g_ctx = nullptr;

int SyslogPriority(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug: return LOG_DEBUG;
    case spdlog::level::info: return LOG_INFO;
    case spdlog::level::warn: return LOG_WARNING;
    case spdlog::level::err: return LOG_ERR;
    default: return LOG_CRIT;
  }
}

// journald's native protocol: one datagram per entry, each field either
// "NAME=value\n" or, when the value holds a newline, "NAME\n" + little-endian
// 64-bit length + value + "\n". What sd_journal_sendv() writes, but to a
// socket path of our choice (tests capture it on a socket of their own).
void AppendField(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  if (value.find('\n') == std::string_view::npos) {
    out.push_back('=');
    out.append(value);
  } else {
    out.push_back('\n');
    uint64_t n = value.size();
    for (int i = 0; i < 8; ++i) out.push_back(char((n >> (8 * i)) & 0xFF));
    out.append(value);
  }
  out.push_back('\n');
}

class JournalSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  JournalSink(std::string identifier, const std::string& path) : identifier_(std::move(identifier)) {
    fd_ = UniqueFd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    addr_.sun_family = AF_UNIX;
    std::snprintf(addr_.sun_path, sizeof addr_.sun_path, "%s", path.c_str());
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string e;
    AppendField(e, "MESSAGE", std::string_view(msg.payload.data(), msg.payload.size()));
    AppendField(e, "PRIORITY", std::to_string(SyslogPriority(msg.level)));
    AppendField(e, "SYSLOG_IDENTIFIER", identifier_);
    if (const GuestCtx* c = CurrentLogContext()) {
      if (c->domid >= 0) AppendField(e, "DOMID", std::to_string(c->domid));
      if (c->devid >= 0) AppendField(e, "DEVID", std::to_string(c->devid));
      if (!c->uuid.empty()) AppendField(e, "UUID", c->uuid);
    }
    if (std::string_view id = MessageId(CurrentLogEvent()); !id.empty()) AppendField(e, "MESSAGE_ID", id);
    if (msg.source.filename) {
      AppendField(e, "CODE_FILE", msg.source.filename);
      AppendField(e, "CODE_LINE", std::to_string(msg.source.line));
      if (msg.source.funcname) AppendField(e, "CODE_FUNC", msg.source.funcname);
    }
    // A lost journal line must never stop the daemon; stderr keeps a trace.
    if (sendto(fd_.get(), e.data(), e.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr_),
               sizeof addr_) < 0) {
      std::string line = identifier_ + ": " + std::string(msg.payload.data(), msg.payload.size()) + "\n";
      (void)!write(STDERR_FILENO, line.data(), line.size());
    }
  }
  void flush_() override {}

 private:
  std::string identifier_;
  UniqueFd fd_;
  sockaddr_un addr_{};
};

}  // namespace

std::string GuestCtx::Prefix() const {
  if (domid < 0) return fmt::format("uuid={}", uuid.empty() ? "-" : uuid);  // an instance no domain has
  return fmt::format("domid={} devid={} uuid={}", domid, devid, uuid.empty() ? "-" : uuid);
}

const GuestCtx* CurrentLogContext() { return g_ctx; }

ScopedLogContext::ScopedLogContext(const GuestCtx* ctx) : prev_(g_ctx) { g_ctx = ctx; }
ScopedLogContext::~ScopedLogContext() { g_ctx = prev_; }

bool StderrIsJournal() {
  const char* js = getenv("JOURNAL_STREAM");
  if (!js) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st;
  return fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

void InitLogging(const std::string& program, bool use_journal, const std::string& level,
                 const std::string& journal_path) {
  std::shared_ptr<spdlog::logger> logger;
  if (use_journal) {
    logger = std::make_shared<spdlog::logger>(program, std::make_shared<JournalSink>(program, journal_path));
  } else {
    logger = std::make_shared<spdlog::logger>(program, std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n[%P] %l: %v");
  }
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

}  // namespace vtpm
