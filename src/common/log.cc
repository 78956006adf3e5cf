#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace vtpm {
namespace {
thread_local const GuestCtx* g_ctx = nullptr;
}

std::string GuestCtx::Prefix() const {
  return fmt::format("domid={} devid={} uuid={}", domid, devid, uuid.empty() ? "-" : uuid);
}

const GuestCtx* CurrentLogContext() { return g_ctx; }

ScopedLogContext::ScopedLogContext(const GuestCtx* ctx) : prev_(g_ctx) { g_ctx = ctx; }
ScopedLogContext::~ScopedLogContext() { g_ctx = prev_; }

void InitLogging(const std::string& program, bool use_journal, const std::string& level) {
  (void)use_journal;  // the journal sink is added by log_journal.cc when built
  auto logger = std::make_shared<spdlog::logger>(program, std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n[%P] %l: %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

}  // namespace vtpm
