#include "guest/frontend.h"

#include <poll.h>

#include <algorithm>
#include <cstring>

namespace vtpm::sim {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMaxPacket = kPageSize - kRingHeader;  // 4088

std::string D(uint32_t v) { return std::to_string(v); }

}  // namespace

Bytes Tpm12GetTimeoutsCommand() {
  Bytes b;
  AppendBe16(b, 0x00C1);  // TPM_TAG_RQU_COMMAND
  AppendBe32(b, 22);      // paramSize
  AppendBe32(b, 0x65);    // TPM_ORD_GetCapability
  AppendBe32(b, 5);       // TPM_CAP_PROPERTY
  AppendBe32(b, 4);       // subCapSize
  AppendBe32(b, 0x115);   // TPM_CAP_PROP_TIS_TIMEOUT
  return b;
}

std::optional<std::array<uint32_t, 4>> ParseTisTimeouts(ByteView r) {
  // tag C4 | paramSize 30 | returnCode 0 | respSize 16 | A B C D
  if (r.size() != 30 || LoadBe16(r.data()) != 0x00C4 || LoadBe32(r.data() + 2) != 30 ||
      LoadBe32(r.data() + 6) != 0 || LoadBe32(r.data() + 10) != 16)
    return std::nullopt;
  std::array<uint32_t, 4> t{};
  for (size_t i = 0; i < 4; ++i) t[i] = LoadBe32(r.data() + 14 + 4 * i);
  if (t[0] != 0 && t[0] < 1000) {
    for (auto& v : t) v *= 1000;  // the TPM answered in ms
  }
  return t;
}

Result<std::unique_ptr<GuestFrontend>> GuestFrontend::Create(const FrontendOptions& opts) {
  std::unique_ptr<GuestFrontend> f(new GuestFrontend(opts));
  if (f->opts_.sim_dir.empty()) {
    ASSIGN_OR_RETURN(f->opts_.sim_dir, SimDirFromEnv());
  }
  ASSIGN_OR_RETURN(auto xs, XsClient::Open());
  f->xs_.emplace(std::move(xs));
  f->fe_ = "/local/domain/" + D(opts.domid) + "/device/vtpm/" + D(opts.devid);
  ASSIGN_OR_RETURN(auto be, f->xs_->Read(f->fe_ + "/backend"));
  ASSIGN_OR_RETURN(auto be_id, f->xs_->Read(f->fe_ + "/backend-id"));
  if (!be || !be_id) return Status(Code::kNotFound, "no vtpm frontend dir at " + f->fe_);
  f->be_ = *be;
  f->backend_id_ = uint32_t(std::stoul(*be_id));
  ASSIGN_OR_RETURN(auto ep, EvtchnEndpoint::Open(f->opts_.sim_dir, opts.domid));
  ep.set_auto_mask(false);
  f->evtchn_.emplace(std::move(ep));
  f->watcher_ = std::thread([p = f.get()] { p->WatchBackend(); });
  return f;
}

GuestFrontend::~GuestFrontend() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  if (watcher_.joinable()) watcher_.join();
}

Status GuestFrontend::SetupRing() {
  if (port_ != 0) (void)evtchn_->Unbind(port_);
  port_ = 0;
  page_.reset();  // revokes the old grant; a backend mapping of it stays valid
  ASSIGN_OR_RETURN(auto page, GrantedPage::Grant(opts_.sim_dir, opts_.domid));
  page_.emplace(std::move(page));
  ASSIGN_OR_RETURN(port_, evtchn_->AllocUnbound(backend_id_));
  return Status::Ok();
}

Status GuestFrontend::WriteFeState(int state) {
  // Like Linux's __xenbus_switch_state: read the current state in the same
  // transaction and write nothing when the node is gone (the toolstack
  // removed the device), so a dying guest never recreates its directory.
  bool gone = false;
  RETURN_IF_ERROR(xs_->Transaction([&](XsTx t) {
    ASSIGN_OR_RETURN(auto cur, xs_->Read(fe_ + "/state", t));
    gone = !cur.has_value();
    return gone ? Status::Ok() : xs_->Write(fe_ + "/state", D(uint32_t(state)), t);
  }));
  if (gone) return Status(Code::kNotFound, "frontend " + fe_ + " was removed");
  std::lock_guard<std::mutex> l(mu_);
  fe_state_ = state;
  cv_.notify_all();
  return Status::Ok();
}

Status GuestFrontend::Connect() {
  {
    std::lock_guard<std::mutex> l(mu_);
    fatal_ = false;
    gone_ = false;
    shutting_down_ = false;
  }
  RETURN_IF_ERROR(SetupRing());
  if (opts_.mode == FrontendMode::kMiniOs) {
    RETURN_IF_ERROR(xs_->Write(fe_ + "/feature-protocol-v2", "1"));
    Status published = xs_->Transaction([&](XsTx t) {
      RETURN_IF_ERROR(xs_->Write(fe_ + "/ring-ref", D(page_->ref()), t));
      return xs_->Write(fe_ + "/event-channel", D(port_), t);
    });
    if (!published.ok()) return published;
    RETURN_IF_ERROR(WriteFeState(4));
    // mini-os waits for be 4 and gives up on 5, 6 or Unknown.
    ASSIGN_OR_RETURN(auto be_state, xs_->WaitFor(
        be_ + "/state",
        [](const std::optional<std::string>& v) { return !v || *v == "4" || *v == "5" || *v == "6" || *v == "0"; },
        opts_.connect_timeout));
    if (be_state != std::optional<std::string>("4"))
      return Status(Code::kUnavailable, "backend went to " + be_state.value_or("<absent>") + " instead of 4");
    return Status::Ok();
  }
  Status published = xs_->Transaction([&](XsTx t) {
    RETURN_IF_ERROR(xs_->Write(fe_ + "/ring-ref", D(page_->ref()), t));
    RETURN_IF_ERROR(xs_->Write(fe_ + "/event-channel", D(port_), t));
    return xs_->Write(fe_ + "/feature-protocol-v2", "1", t);
  });
  if (!published.ok()) return published;
  RETURN_IF_ERROR(WriteFeState(3));
  // tpmfront_probe: tpm_get_timeouts() right away, typically before the
  // backend has bound the port (that notification is lost).
  first_response_ = Transmit(Tpm12GetTimeoutsCommand(), opts_.first_command_duration);
  if (first_response_.ok() && opts_.adopt_tpm_timeouts) {
    if (auto t = ParseTisTimeouts(*first_response_))
      opts_.timeout_c = std::chrono::milliseconds((uint64_t(t->at(2)) + 999) / 1000);
  }
  std::unique_lock<std::mutex> l(mu_);
  if (!cv_.wait_for(l, opts_.connect_timeout, [&] { return fe_state_ == 4 || fatal_ || gone_; }))
    return Status(Code::kTimeout, "frontend did not reach Connected (backend never went to 3/4)");
  if (fatal_) return Status(Code::kFailedPrecondition, "backend lacks feature-protocol-v2 (vTPM protocol 2 required)");
  if (gone_) return Status(Code::kUnavailable, "backend closed during connect");
  return Status::Ok();
}

void GuestFrontend::WatchBackend() {
  auto xs = XsClient::Open();
  if (!xs.ok()) return;
  const std::string token = "guest-frontend";
  if (!xs->Watch(be_ + "/state", token).ok()) return;
  for (;;) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) break;
    }
    auto st = xs->Read(be_ + "/state");
    if (st.ok() && st->has_value()) {
      const std::string be_state = **st;
      std::unique_lock<std::mutex> l(mu_);
      const bool linux_mode = opts_.mode == FrontendMode::kLinux;
      std::optional<int> write_state;
      bool write_fatal = false;
      if (shutting_down_) {
        // During shutdown xenbus only reacts to the backend's Closing.
        if (be_state == "5" && fe_state_ == 5) write_state = 6;
      } else if (linux_mode && (be_state == "3" || be_state == "4") && fe_state_ == 3 && !fatal_) {
        l.unlock();
        auto feat = xs->Read(be_ + "/feature-protocol-v2");
        bool ok = feat.ok() && feat->has_value() && std::strtoul((*feat)->c_str(), nullptr, 10) != 0;
        l.lock();
        if (ok) {
          write_state = 4;
        } else {
          write_fatal = true;
          write_state = 5;
        }
      } else if (linux_mode && (be_state == "5" || be_state == "6") && !gone_ &&
                 (fe_state_ == 3 || fe_state_ == 4 || fe_state_ == 5)) {
        gone_ = true;  // device_unregister + xenbus_frontend_closed
        write_state = 6;
      }
      l.unlock();
      if (write_fatal) {
        (void)xs->Write("/local/domain/" + D(opts_.domid) + "/error/device/vtpm/" + D(opts_.devid) + "/error",
                        "22 vTPM protocol 2 required");
      }
      if (write_state) {
        // __xenbus_switch_state: nothing is written once the toolstack removed the node.
        (void)xs->Transaction([&](XsTx t) {
          auto cur = xs->Read(fe_ + "/state", t);
          if (!cur.ok() || !cur->has_value()) return Status::Ok();
          return xs->Write(fe_ + "/state", D(uint32_t(*write_state)), t);
        });
        std::lock_guard<std::mutex> g(mu_);
        fe_state_ = *write_state;
        if (write_fatal) fatal_ = true;
        cv_.notify_all();
      }
    }
    pollfd pfd{xs->watch_fd(), POLLIN, 0};
    ::poll(&pfd, 1, 20);
    xs->DrainWatchEvents();
  }
  xs->Unwatch(be_ + "/state", token);
}

void GuestFrontend::WriteHeader(uint32_t length, uint8_t state, uint8_t locality, uint8_t nr_extra_pages) {
  uint8_t* p = page();
  std::memcpy(p + kRingLength, &length, 4);
  p[kRingLocality] = locality;
  p[kRingPad] = 0;
  p[kRingNrExtra] = nr_extra_pages;
  __atomic_store_n(p + kRingState, state, __ATOMIC_RELEASE);
}

void GuestFrontend::WritePayload(size_t offset, ByteView bytes) {
  size_t n = std::min(bytes.size(), kPageSize - std::min(offset, kPageSize));
  std::memcpy(page() + offset, bytes.data(), n);
}

void GuestFrontend::SetState(uint8_t state) { __atomic_store_n(page() + kRingState, state, __ATOMIC_RELEASE); }

uint8_t GuestFrontend::state() const { return __atomic_load_n(page() + kRingState, __ATOMIC_ACQUIRE); }

uint32_t GuestFrontend::length() const {
  uint32_t len;
  std::memcpy(&len, page() + kRingLength, 4);
  return len;
}

Status GuestFrontend::Notify() { return evtchn_->Notify(port_); }

int GuestFrontend::DrainEvents() {
  int n = 0;
  while (evtchn_ && evtchn_->Pending(false).ok()) ++n;
  return n;
}

bool GuestFrontend::WaitIdle(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    uint8_t s = state();
    if (s == kIdle || s == kFinish) return true;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    // Linux polls every TPM_TIMEOUT (5 ms); a notification wakes it early.
    pollfd pfd{evtchn_->fd(), POLLIN, 0};
    if (::poll(&pfd, 1, int(std::min<int64_t>(left.count(), 5))) > 0) (void)evtchn_->Pending(false);
  }
}

void GuestFrontend::Cancel() {
  SetState(kCancel);
  (void)Notify();
}

Result<Bytes> GuestFrontend::Transmit(ByteView cmd, std::chrono::milliseconds duration) {
  if (device_gone()) return Status(Code::kUnavailable, "vtpm device unregistered (backend closed)");
  if (!page_) return Status(Code::kFailedPrecondition, "not connected");
  if (cmd.size() > kMaxPacket) return Status(Code::kInvalidArgument, "command larger than the page (-EINVAL)");
  if (!WaitIdle(opts_.timeout_c)) {
    Cancel();
    return Status(Code::kTimeout, "backend not idle within timeout_c (-ETIME)");
  }
  std::memcpy(page() + kRingHeader, cmd.data(), cmd.size());
  uint32_t len = uint32_t(cmd.size());
  std::memcpy(page() + kRingLength, &len, 4);
  SetState(kSubmit);
  RETURN_IF_ERROR(Notify());
  if (!WaitIdle(duration)) {
    Cancel();
    return Status(Code::kTimeout, "no response within the command duration (-ETIME), cancelled");
  }
  if (state() == kIdle) return Status(Code::kFailedPrecondition, "backend answered IDLE (-ECANCELED)");
  uint32_t rlen = length();
  size_t copy = std::min<size_t>(rlen, kMaxPacket);
  Bytes resp(page() + kRingHeader, page() + kRingHeader + copy);
  // tpm_try_transmit: at least a header, and exactly its paramSize.
  if (resp.size() < 10) return Status(Code::kCorruption, "response shorter than a TPM header (-EFAULT)");
  uint32_t param = LoadBe32(resp.data() + 2);
  if (param != resp.size() || param != rlen)
    return Status(Code::kCorruption, "response length " + std::to_string(rlen) + " != paramSize " +
                                         std::to_string(param) + " (-EFAULT)");
  return resp;
}

ShutdownResult GuestFrontend::Shutdown(std::chrono::milliseconds wait) {
  ShutdownResult r;
  auto start = Clock::now();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (fe_state_ != 4) {  // xenbus skips devices that are not Connected
      r.backend_state = "skipped (frontend not connected)";
      return r;
    }
    shutting_down_ = true;
  }
  (void)WriteFeState(5);
  {
    std::unique_lock<std::mutex> l(mu_);
    r.backend_answered = cv_.wait_for(l, wait, [&] { return fe_state_ == 6; });
  }
  r.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  auto be = xs_->Read(be_ + "/state");
  r.backend_state = be.ok() ? be->value_or("<absent>") : "<error>";
  return r;
}

Status GuestFrontend::Close(std::chrono::milliseconds wait) {
  RETURN_IF_ERROR(WriteFeState(5));
  RETURN_IF_ERROR(xs_->Rm(fe_ + "/ring-ref"));
  RETURN_IF_ERROR(xs_->Rm(fe_ + "/event-channel"));
  RETURN_IF_ERROR(WriteFeState(6));
  auto be_state = xs_->WaitFor(
      be_ + "/state", [](const std::optional<std::string>& v) { return v && (*v == "6" || *v == "2"); }, wait);
  RETURN_IF_ERROR(WriteFeState(1));
  if (port_ != 0) (void)evtchn_->Unbind(port_);
  port_ = 0;
  page_.reset();
  return be_state.ok() ? Status::Ok() : be_state.status();
}

Status GuestFrontend::Reopen() {
  // The next frontend starts after the backend has answered fe 1 (a
  // mini-os connect gives up at once on backend 5/6).
  auto be_state = xs_->WaitFor(
      be_ + "/state", [](const std::optional<std::string>& v) { return v && *v != "5" && *v != "6"; },
      opts_.connect_timeout);
  if (!be_state.ok()) return be_state.status();
  return Connect();
}

bool GuestFrontend::device_gone() const {
  std::lock_guard<std::mutex> l(mu_);
  return gone_;
}

}  // namespace vtpm::sim
