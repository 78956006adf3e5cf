#include "simhost/xs_client.h"

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

extern "C" {
#include <xenstore.h>
}

namespace vtpm::sim {
namespace {

Status XsErr(const std::string& what) { return Status::FromErrno(errno, "xenstore " + what); }

std::string PermString(const xs_permissions& p) {
  const bool r = p.perms & XS_PERM_READ, w = p.perms & XS_PERM_WRITE;
  char letter = r && w ? 'b' : r ? 'r' : w ? 'w' : 'n';
  return letter + std::to_string(p.id);
}

std::optional<xs_permissions> ParsePerm(const std::string& s) {
  if (s.size() < 2) return std::nullopt;
  xs_permissions p{};
  switch (s[0]) {
    case 'n': p.perms = XS_PERM_NONE; break;
    case 'r': p.perms = XS_PERM_READ; break;
    case 'w': p.perms = XS_PERM_WRITE; break;
    case 'b': p.perms = XS_PERM_READ | XS_PERM_WRITE; break;
    default: return std::nullopt;
  }
  char* end = nullptr;
  p.id = unsigned(std::strtoul(s.c_str() + 1, &end, 10));
  if (*end != '\0') return std::nullopt;
  return p;
}

std::atomic<unsigned> g_token{0};

}  // namespace

Result<XsClient> XsClient::Open() {
  xs_handle* h = xs_open(0);
  if (h == nullptr) return XsErr("open (XENSTORED_PATH)");
  return XsClient(h);
}

XsClient::~XsClient() {
  if (h_ != nullptr) xs_close(h_);
}

XsClient::XsClient(XsClient&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}

XsClient& XsClient::operator=(XsClient&& o) noexcept {
  if (this != &o) {
    if (h_ != nullptr) xs_close(h_);
    h_ = std::exchange(o.h_, nullptr);
  }
  return *this;
}

Result<std::optional<std::string>> XsClient::Read(const std::string& path, XsTx tx) {
  unsigned len = 0;
  void* v = xs_read(h_, tx, path.c_str(), &len);
  if (v == nullptr) {
    if (errno == ENOENT) return std::optional<std::string>();
    return XsErr("read " + path);
  }
  std::string s(static_cast<char*>(v), len);
  std::free(v);
  return std::optional<std::string>(std::move(s));
}

Status XsClient::Write(const std::string& path, const std::string& value, XsTx tx) {
  if (!xs_write(h_, tx, path.c_str(), value.data(), unsigned(value.size())))
    return XsErr("write " + path);
  return Status::Ok();
}

Status XsClient::Mkdir(const std::string& path, XsTx tx) {
  if (!xs_mkdir(h_, tx, path.c_str())) return XsErr("mkdir " + path);
  return Status::Ok();
}

Status XsClient::Rm(const std::string& path, XsTx tx) {
  if (!xs_rm(h_, tx, path.c_str()) && errno != ENOENT) return XsErr("rm " + path);
  return Status::Ok();
}

bool XsClient::Exists(const std::string& path, XsTx tx) {
  unsigned len = 0;
  void* v = xs_read(h_, tx, path.c_str(), &len);
  std::free(v);
  return v != nullptr;
}

Result<std::vector<std::string>> XsClient::Directory(const std::string& path, XsTx tx) {
  unsigned n = 0;
  char** d = xs_directory(h_, tx, path.c_str(), &n);
  if (d == nullptr) return XsErr("directory " + path);
  std::vector<std::string> out(d, d + n);
  std::free(d);
  return out;
}

Result<std::vector<std::string>> XsClient::GetPerms(const std::string& path, XsTx tx) {
  unsigned n = 0;
  xs_permissions* p = xs_get_permissions(h_, tx, path.c_str(), &n);
  if (p == nullptr) return XsErr("get_permissions " + path);
  std::vector<std::string> out;
  for (unsigned i = 0; i < n; ++i) out.push_back(PermString(p[i]));
  std::free(p);
  return out;
}

Status XsClient::SetPerms(const std::string& path, const std::vector<std::string>& perms, XsTx tx) {
  std::vector<xs_permissions> p(perms.size());
  for (size_t i = 0; i < perms.size(); ++i) {
    auto one = ParsePerm(perms[i]);
    if (!one) return Status(Code::kInvalidArgument, "bad permission '" + perms[i] + "'");
    p[i] = *one;
  }
  if (!xs_set_permissions(h_, tx, path.c_str(), p.data(), unsigned(p.size())))
    return XsErr("set_permissions " + path);
  return Status::Ok();
}

Status XsClient::Transaction(const std::function<Status(XsTx)>& body) {
  for (;;) {
    xs_transaction_t t = xs_transaction_start(h_);
    if (t == XBT_NULL) return XsErr("transaction_start");
    Status st = body(t);
    if (!st.ok()) {
      xs_transaction_end(h_, t, true);
      return st;
    }
    if (xs_transaction_end(h_, t, false)) return Status::Ok();
    if (errno != EAGAIN) return XsErr("transaction_end");
  }
}

Status XsClient::IntroduceDomain(uint32_t domid) {
  // The ring mfn and port are never used: the xenstored shim maps a dead page.
  if (!xs_introduce_domain(h_, domid, 0xfefff, 1)) return XsErr("introduce_domain");
  return Status::Ok();
}

Status XsClient::ReleaseDomain(uint32_t domid) {
  if (!xs_release_domain(h_, domid)) return XsErr("release_domain");
  return Status::Ok();
}

Status XsClient::ResumeDomain(uint32_t domid) {
  if (!xs_resume_domain(h_, domid)) return XsErr("resume_domain");
  return Status::Ok();
}

Status XsClient::Watch(const std::string& path, const std::string& token) {
  if (!xs_watch(h_, path.c_str(), token.c_str())) return XsErr("watch " + path);
  return Status::Ok();
}

void XsClient::Unwatch(const std::string& path, const std::string& token) {
  xs_unwatch(h_, path.c_str(), token.c_str());
}

int XsClient::watch_fd() { return xs_fileno(h_); }

void XsClient::DrainWatchEvents() {
  while (char** ev = xs_check_watch(h_)) std::free(ev);
}

bool XsClient::IsDomainIntroduced(uint32_t domid) { return xs_is_domain_introduced(h_, domid); }

Result<std::optional<std::string>> XsClient::WaitFor(
    const std::string& path, const std::function<bool(const std::optional<std::string>&)>& pred,
    std::chrono::milliseconds timeout) {
  std::string token = "vtpm-sim-wait-" + std::to_string(g_token.fetch_add(1));
  RETURN_IF_ERROR(Watch(path, token));
  auto deadline = std::chrono::steady_clock::now() + timeout;
  Result<std::optional<std::string>> out = Status(Code::kTimeout, "waiting for " + path);
  for (;;) {
    auto v = Read(path);
    if (!v.ok()) {
      out = v.status();
      break;
    }
    if (pred(*v)) {
      out = std::move(v);
      break;
    }
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      out = Status(Code::kTimeout, "timed out waiting for " + path + " (last value '" +
                                       v->value_or("<absent>") + "')");
      break;
    }
    pollfd pfd{watch_fd(), POLLIN, 0};
    ::poll(&pfd, 1, int(std::min<int64_t>(left.count(), 100)));
    DrainWatchEvents();
  }
  Unwatch(path, token);
  return out;
}

Result<std::vector<std::string>> DumpTree(XsClient& xs, const std::string& root) {
  std::vector<std::string> lines;
  std::vector<std::string> todo{root};
  while (!todo.empty()) {
    std::string p = todo.back();
    todo.pop_back();
    ASSIGN_OR_RETURN(auto value, xs.Read(p));
    if (!value) continue;
    ASSIGN_OR_RETURN(auto perms, xs.GetPerms(p));
    std::string line = p + " = \"" + *value + "\" [";
    for (size_t i = 0; i < perms.size(); ++i) line += (i ? "," : "") + perms[i];
    lines.push_back(line + "]");
    ASSIGN_OR_RETURN(auto kids, xs.Directory(p));
    for (auto& k : kids) todo.push_back(p == "/" ? "/" + k : p + "/" + k);
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

}  // namespace vtpm::sim
