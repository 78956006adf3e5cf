#include "bench/proc_stats.h"

#include <dirent.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>

#include <fstream>
#include <sstream>

namespace vtpm::bench {
namespace {

Result<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status(Code::kNotFound, "cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The value (KiB) of a "Key:   123 kB" line.
Result<uint64_t> KibField(const std::string& text, const std::string& key, const std::string& path) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return uint64_t(std::stoull(line.substr(key.size() + 1)));
  return Status(Code::kNotFound, "no " + key + " in " + path);
}

}  // namespace

Result<double> CpuSeconds(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  ASSIGN_OR_RETURN(std::string stat, ReadAll(path));
  // Fields after the command name, which may contain spaces: state is field 3,
  // utime field 14, stime field 15.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return Status(Code::kCorruption, "unexpected " + path);
  std::istringstream in(stat.substr(close + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  if (!in) return Status(Code::kCorruption, "short " + path);
  return double(utime + stime) / double(::sysconf(_SC_CLK_TCK));
}

Result<double> CpuSeconds(const std::vector<pid_t>& pids) {
  double total = 0;
  for (pid_t p : pids) {
    ASSIGN_OR_RETURN(double s, CpuSeconds(p));
    total += s;
  }
  return total;
}

Result<uint64_t> RssKib(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/status";
  ASSIGN_OR_RETURN(std::string text, ReadAll(path));
  return KibField(text, "VmRSS", path);
}

Result<uint64_t> PrivateKib(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/smaps_rollup";
  ASSIGN_OR_RETURN(std::string text, ReadAll(path));
  ASSIGN_OR_RETURN(uint64_t clean, KibField(text, "Private_Clean", path));
  ASSIGN_OR_RETURN(uint64_t dirty, KibField(text, "Private_Dirty", path));
  return clean + dirty;
}

std::vector<pid_t> ChildrenNamed(pid_t parent, const std::string& comm) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end) continue;
    auto stat = ReadAll("/proc/" + std::string(e->d_name) + "/stat");
    auto name = ReadAll("/proc/" + std::string(e->d_name) + "/comm");
    if (!stat.ok() || !name.ok()) continue;
    size_t close = stat->rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream in(stat->substr(close + 2));
    std::string state;
    long ppid = 0;
    in >> state >> ppid;
    std::string n = *name;
    while (!n.empty() && n.back() == '\n') n.pop_back();
    if (ppid == parent && n == comm && state != "Z") out.push_back(pid_t(pid));
  }
  ::closedir(d);
  return out;
}

Status PinToFirstCpus(const std::vector<pid_t>& pids, unsigned cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (unsigned c = 0; c < cpus; ++c) CPU_SET(c, &set);
  for (pid_t pid : pids) {
    const std::string dir = "/proc/" + std::to_string(pid) + "/task";
    DIR* d = ::opendir(dir.c_str());
    if (!d) return Status::FromErrno(errno, "opendir " + dir);
    Status st;
    while (dirent* e = ::readdir(d)) {
      char* end = nullptr;
      long tid = std::strtol(e->d_name, &end, 10);
      if (tid <= 0 || *end) continue;
      if (::sched_setaffinity(pid_t(tid), sizeof(set), &set) != 0 && errno != ESRCH)
        st = Status::FromErrno(errno, "sched_setaffinity of thread " + std::to_string(tid));
    }
    ::closedir(d);
    RETURN_IF_ERROR(st);
  }
  return Status::Ok();
}

std::string LoadAverage() {
  auto text = ReadAll("/proc/loadavg");
  if (!text.ok()) return "?";
  std::istringstream in(*text);
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

}  // namespace vtpm::bench
