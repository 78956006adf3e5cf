#include "backend/backend.h"

#include <sys/epoll.h>

#include "backend/xs_values.h"
#include "common/log.h"
#include "common/log_rate_limit.h"

namespace vtpm {
namespace {
constexpr char kBackendToken[] = "vtpm-backend";
constexpr char kReleaseToken[] = "release-domain";
constexpr char kFrontendTokenPrefix[] = "fe:";
constexpr auto kReapInterval = std::chrono::milliseconds(5000);
// How soon a device whose instance was busy tries to connect again.
constexpr auto kConnectRetryInterval = std::chrono::milliseconds(500);
// How often due "suppressed N messages" lines are looked for (each guest's
// comes at most once per kGuestLogSummaryInterval).
constexpr auto kLogSummaryTick = std::chrono::milliseconds(1000);

// "<root>/<domid>/<devid>[/...]" -> {domid, devid}; {domid} alone if only that.
struct ParsedPath {
  std::optional<uint32_t> domid, devid;
};
ParsedPath ParseBackendPath(const std::string& root, const std::string& path) {
  ParsedPath out;
  if (path.size() <= root.size() + 1 || path.compare(0, root.size(), root) != 0 || path[root.size()] != '/')
    return out;
  std::string_view rest(path);
  rest.remove_prefix(root.size() + 1);
  auto slash = rest.find('/');
  out.domid = ParseDomid(rest.substr(0, slash));
  if (slash == std::string_view::npos || !out.domid) return out;
  rest.remove_prefix(slash + 1);
  out.devid = ParseU32(rest.substr(0, rest.find('/')));
  return out;
}
}  // namespace

Backend::Backend(EventLoop& loop, XenStore& xs, GrantTable& gnt, EventChannels& evtchn, Hypervisor& hyp,
                 EngineProvider& engines, const BackendOptions& opts)
    : loop_(loop), xs_(xs), gnt_(gnt), evtchn_(evtchn), hyp_(hyp), engines_(engines), opts_(opts) {}

Result<std::unique_ptr<Backend>> Backend::Start(EventLoop& loop, XenStore& xs, GrantTable& gnt,
                                                EventChannels& evtchn, Hypervisor& hyp, EngineProvider& engines,
                                                const BackendOptions& opts) {
  std::unique_ptr<Backend> b(new Backend(loop, xs, gnt, evtchn, hyp, engines, opts));
  RETURN_IF_ERROR(b->Init());
  return b;
}

Status Backend::Init() {
  RETURN_IF_ERROR(loop_.Add(xs_.watch_fd(), EPOLLIN, [this](uint32_t) { OnWatchFd(); }));
  RETURN_IF_ERROR(loop_.Add(evtchn_.fd(), EPOLLIN, [this](uint32_t) { OnEvtchnFd(); }));
  RETURN_IF_ERROR(xs_.Watch(backend_root(), kBackendToken));
  RETURN_IF_ERROR(xs_.Watch("@releaseDomain", kReleaseToken));
  // A watch reports only its own path at registration: walk what exists.
  Scan();
  ScheduleLogSummaries();
  return {};
}

void Backend::ScheduleLogSummaries() {
  log_timer_ = loop_.AddTimer(kLogSummaryTick, [this] {
    LogDueGuestSummaries();
    ScheduleLogSummaries();
  });
}

Backend::~Backend() {
  for (auto* t : {&reap_timer_, &log_timer_, &connect_retry_timer_})
    if (*t) loop_.CancelTimer(**t);
  loop_.Remove(xs_.watch_fd());
  loop_.Remove(evtchn_.fd());
  for (auto& w : fe_watches_) (void)xs_.Unwatch(w, kFrontendTokenPrefix + w);
  (void)xs_.Unwatch(backend_root(), kBackendToken);
  (void)xs_.Unwatch("@releaseDomain", kReleaseToken);
  devices_.clear();
}

std::string Backend::backend_root() const {
  return "/local/domain/" + std::to_string(opts_.own_domid) + "/backend/vtpm";
}

void Backend::OnWatchFd() {
  bool rescan = false;
  std::set<std::pair<uint32_t, uint32_t>> touched;
  bool released = false;
  for (auto& ev : xs_.TakeWatchEvents()) {
    if (ev.token == kReleaseToken) {
      released = true;
    } else if (ev.token.rfind(kFrontendTokenPrefix, 0) == 0) {
      for (auto& [key, dev] : devices_)
        if (dev->fe_state_path() == ev.path) touched.insert(key);
    } else if (ev.token == kBackendToken) {
      auto p = ParseBackendPath(backend_root(), ev.path);
      if (p.domid && p.devid) touched.insert({*p.domid, *p.devid});
      else rescan = true;
    }
  }
  if (rescan) Scan();
  for (auto& [domid, devid] : touched) ReconcileDevice(domid, devid);
  if (released) ReapIdleInstances();
}

void Backend::Scan() {
  std::set<std::pair<uint32_t, uint32_t>> seen;
  auto doms = xs_.Directory(backend_root());
  if (!doms.ok()) {
    LOG_ERROR("cannot list {}: {}", backend_root(), doms.status().message());
    return;
  }
  for (auto& d : *doms) {
    auto domid = ParseDomid(d);
    if (!domid) continue;
    auto devs = xs_.Directory(backend_root() + "/" + d);
    if (!devs.ok()) continue;
    for (auto& n : *devs)
      if (auto devid = ParseU32(n)) seen.insert({*domid, *devid});
  }
  for (auto& [key, dev] : devices_) seen.insert(key);  // known devices may have vanished
  for (auto& [domid, devid] : seen) ReconcileDevice(domid, devid);
}

void Backend::ReconcileDevice(uint32_t domid, uint32_t devid) {
  auto key = std::make_pair(domid, devid);
  auto it = devices_.find(key);
  std::shared_ptr<Device> dev;
  if (it == devices_.end()) {
    auto st = xs_.Read(backend_root() + "/" + std::to_string(domid) + "/" + std::to_string(devid) + "/state");
    if (!st.ok() || !*st) return;  // not (or no longer) a device
    dev = std::make_shared<Device>(*this, domid, devid);
    devices_[key] = dev;
  } else {
    dev = it->second;
  }
  bool keep = dev->Reconcile();
  // Watch the frontend's state once we know where it is.
  const std::string& fe = dev->fe_state_path();
  if (keep && !fe.empty() && !fe_watches_.count(fe)) {
    Status st = xs_.Watch(fe, kFrontendTokenPrefix + fe);
    if (st.ok()) fe_watches_.insert(fe);
    else VLOG_ERROR(dev->ctx(), "cannot watch {}: {}", fe, st.message());
  }
  if (!keep) {
    if (!fe.empty() && fe_watches_.erase(fe)) (void)xs_.Unwatch(fe, kFrontendTokenPrefix + fe);
    devices_.erase(key);
    // The successor's nodes were all written before that read: no watch
    // event is left to announce them.
    if (dev->recreated()) ReconcileDevice(domid, devid);
  }
}

void Backend::OnEvtchnFd() {
  // One port per wake-up: xenevtchn_pending() is a blocking read of the
  // evtchn device; the fd stays readable (level-triggered) while more wait.
  auto port = evtchn_.TakePending();
  if (!port) return;
  (void)evtchn_.Unmask(*port);
  auto it = ports_.find(*port);
  if (it == ports_.end()) return;
  if (auto dev = it->second.lock()) dev->OnNotify();
}

std::vector<DeviceInfo> Backend::List() const {
  std::vector<DeviceInfo> out;
  for (auto& [key, dev] : devices_)
    out.push_back({key.first, key.second, dev->ctx().uuid, dev->connected(), dev->refused()});
  return out;
}

std::shared_ptr<Device> Backend::FindByUuid(const Uuid& uuid) const {
  auto it = uuids_.find(uuid);
  return it == uuids_.end() ? nullptr : it->second.lock();
}

size_t Backend::connected_count() const {
  size_t n = 0;
  for (auto& [key, dev] : devices_) n += dev->connected();
  return n;
}

bool Backend::ClaimUuid(const Uuid& uuid, const std::shared_ptr<Device>& dev) {
  auto it = uuids_.find(uuid);
  if (it != uuids_.end() && !it->second.expired() && it->second.lock() != dev) return false;
  uuids_[uuid] = dev;
  return true;
}

void Backend::ReleaseUuid(const Uuid& uuid, const Device* dev) {
  auto it = uuids_.find(uuid);
  if (it == uuids_.end()) return;
  auto cur = it->second.lock();
  if (cur && cur.get() != dev) return;
  uuids_.erase(it);
  // Devices refused because `dev` held the uuid get another chance; not from
  // inside the caller (a Device's Reconcile or destructor).
  loop_.Post([this, uuid, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    std::vector<std::pair<uint32_t, uint32_t>> retry;
    for (auto& [key, d] : devices_)
      if (d->uuid() == uuid && d->RetryRefusedForUuid()) retry.push_back(key);
    for (auto& [domid, devid] : retry) ReconcileDevice(domid, devid);
  });
}

void Backend::RegisterPort(uint32_t port, const std::shared_ptr<Device>& dev) { ports_[port] = dev; }
void Backend::UnregisterPort(uint32_t port) { ports_.erase(port); }

std::optional<DomainInfo> Backend::DomainState(uint32_t domid, const GuestCtx& ctx) {
  auto info = hyp_.Domain(domid);
  if (!info.ok()) {
    VLOG_WARN(ctx, "{}", info.status().ToString());
    return std::nullopt;
  }
  return *info;
}

bool Backend::SuspendedPredecessor(const Device& holder, uint32_t domid, const GuestCtx& ctx) {
  if (holder.ctx().domid < 0 || uint32_t(holder.ctx().domid) == domid) return false;
  auto old_dom = DomainState(uint32_t(holder.ctx().domid), holder.ctx());
  if (!old_dom || old_dom->shutdown_reason != kShutdownSuspend) return false;
  auto new_dom = DomainState(domid, ctx);
  return new_dom && new_dom->handle == old_dom->handle;
}

bool Backend::DomainExists(uint32_t domid) {
  auto r = xs_.Read("/local/domain/" + std::to_string(domid) + "/domid");
  if (r.ok() && *r) return true;
  auto d = xs_.Directory("/local/domain/" + std::to_string(domid));
  return d.ok() && !d->empty();
}

void Backend::InstanceIdle(const Uuid& uuid, const GuestCtx& ctx) {
  idle_.push_back({uuid, ctx});
  ReapIdleInstances();
}

void Backend::RetryConnect(uint32_t domid, uint32_t devid) {
  connect_retries_.insert({domid, devid});
  if (connect_retry_timer_) return;
  connect_retry_timer_ = loop_.AddTimer(kConnectRetryInterval, [this] {
    connect_retry_timer_.reset();
    // The uuid the device claimed makes an idle instance of another domain
    // reapable now, rather than at the next reap tick.
    ReapIdleInstances();
    for (auto& [d, v] : std::exchange(connect_retries_, {})) ReconcileDevice(d, v);
  });
}

void Backend::ReapIdleInstances() {
  std::vector<std::pair<Uuid, GuestCtx>> keep;
  for (auto& [uuid, ctx] : idle_) {
    auto holder = FindByUuid(uuid);
    if (holder && holder->ctx().domid == ctx.domid) continue;  // re-attached to the same domain
    if (holder || !DomainExists(uint32_t(ctx.domid))) {
      VEVENT_INFO(kDomainGone, ctx, "domain gone: powering the vTPM off");
      engines_.Release(uuid, ctx);
    } else {
      keep.push_back({uuid, ctx});
    }
  }
  idle_.swap(keep);
  if (reap_timer_) loop_.CancelTimer(*reap_timer_);
  reap_timer_.reset();
  if (!idle_.empty())
    reap_timer_ = loop_.AddTimer(kReapInterval, [this] {
      reap_timer_.reset();
      ReapIdleInstances();
    });
}

}  // namespace vtpm
