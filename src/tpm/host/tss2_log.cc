#include "tpm/host/tss2_log.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/log.h"
#include "common/unique_fd.h"

namespace vtpm {
namespace {
UniqueFd g_file;       // the memory file tpm2-tss appends to
off_t g_consumed = 0;  // bytes of it already logged

spdlog::level::level_enum LevelOf(std::string_view tss_level) {
  if (tss_level == "ERROR") return spdlog::level::err;
  if (tss_level == "WARNING") return spdlog::level::warn;
  if (tss_level == "info") return spdlog::level::info;
  return spdlog::level::debug;  // debug, trace
}

// Splits off the text before the next ':' of `rest`.
std::string_view Field(std::string_view& rest) {
  auto c = rest.find(':');
  if (c == std::string_view::npos) {
    std::string_view f = rest;
    rest = {};
    return f;
  }
  std::string_view f = rest.substr(0, c);
  rest.remove_prefix(c + 1);
  return f;
}
}  // namespace

Status Tss2Log::Install() {
  if (getenv("TSS2_LOGFILE")) return Status::Ok();
  UniqueFd fd(memfd_create("tss2-log", MFD_CLOEXEC));
  if (!fd) return Status(Code::kInternal, std::string("memfd_create for tpm2-tss's log: ") + strerror(errno));
  const std::string path = "/proc/self/fd/" + std::to_string(fd.get());
  if (setenv("TSS2_LOGFILE", path.c_str(), 1) != 0)
    return Status(Code::kInternal, std::string("setenv TSS2_LOGFILE: ") + strerror(errno));
  g_file = std::move(fd);
  g_consumed = 0;
  return Status::Ok();
}

void Tss2Log::LogLine(std::string_view line) {
  while (!line.empty() && (line.back() == ' ' || line.back() == '\n')) line.remove_suffix(1);
  if (line.empty()) return;
  // "LEVEL:module:file:line:func() text"
  std::string_view rest = line;
  std::string_view level = Field(rest), module = Field(rest), file = Field(rest), lineno = Field(rest);
  auto paren = rest.find("() ");
  int n = 0;
  auto [end, ec] = std::from_chars(lineno.data(), lineno.data() + lineno.size(), n);
  if (paren == std::string_view::npos || ec != std::errc() || end != lineno.data() + lineno.size() || n <= 0) {
    LOG_WARN("tss2: {}", line);
    return;
  }
  const std::string file_s(file), func_s(rest.substr(0, paren));
  spdlog::log(spdlog::source_loc{file_s.c_str(), n, func_s.c_str()}, LevelOf(level), "tss2 {}: {}: {}", module, func_s,
              rest.substr(paren + 3));
}

void Tss2Log::Drain() {
  if (!g_file) return;
  const off_t end = lseek(g_file.get(), 0, SEEK_END);
  if (end <= g_consumed) return;
  std::string text(size_t(end - g_consumed), '\0');
  ssize_t got = pread(g_file.get(), text.data(), text.size(), g_consumed);
  if (got <= 0) return;
  text.resize(size_t(got));
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
    LogLine(std::string_view(text).substr(start, nl - start));
  g_consumed += off_t(start);
  // Everything read: start the file over (tpm2-tss appends, so it follows).
  if (g_consumed == end && ftruncate(g_file.get(), 0) == 0) g_consumed = 0;
}

}  // namespace vtpm
