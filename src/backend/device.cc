#include "backend/device.h"

#include <charconv>
#include <utility>

#include "backend/backend.h"
#include "backend/tpm12_wire.h"
#include "backend/xs_values.h"
#include "common/crash_point.h"
#include "common/log_rate_limit.h"

namespace vtpm {

Device::Device(Backend& backend, uint32_t domid, uint32_t devid)
    : backend_(backend),
      domid_(domid),
      devid_(devid),
      be_path_(backend.backend_root() + "/" + std::to_string(domid) + "/" + std::to_string(devid)) {
  ctx_.domid = int(domid);
  ctx_.devid = int(devid);
}

Device::~Device() {
  // Daemon shutdown or device removal: release local resources only. Any
  // xenstore writes were made by Disconnect/Reconcile before this point.
  if (cancel_timer_) backend_.loop().CancelTimer(*cancel_timer_);
  if (busy_ && engine_) engine_->Abort();
  if (port_.valid()) backend_.UnregisterPort(port_.port());
  if (uuid_claimed_) backend_.ReleaseUuid(*uuid_, this);
  ForgetGuestLog(ctx_);  // its pending "suppressed N messages" line
}

std::optional<uint32_t> Device::local_port() const {
  if (!port_.valid()) return std::nullopt;
  return port_.port();
}

void Device::Refuse(const std::string& reason) {
  refused_ = true;
  VEVENT_ERROR(kDeviceRefused, ctx_, "refused: {}", reason);
  Status st = backend_.xs().Transact([&](XenStore::Txn& t) {
    RETURN_IF_ERROR(t.Write(ErrorPath(), reason));
    ASSIGN_OR_RETURN(auto be_state, t.Read(be_path_ + "/state"));
    if (!be_state) return Status();  // backend dir removed meanwhile
    return t.Write(be_path_ + "/state", std::to_string(kClosed));
  });
  if (!st.ok()) VLOG_ERROR(ctx_, "cannot record refusal in xenstore: {}", st.message());
}

bool Device::RetryRefusedForUuid() {
  if (!refused_ || !std::exchange(refused_for_uuid_, false)) return false;
  VLOG_INFO(ctx_, "uuid {} is free now: trying the refused device again", ctx_.uuid);
  refused_ = false;
  adopted_ = false;
  retrying_ = true;
  Status st = backend_.xs().Direct().Remove(ErrorPath());
  if (!st.ok()) VLOG_WARN(ctx_, "cannot remove the refusal's error node: {}", st.message());
  return true;
}

std::string Device::ErrorPath() const {
  return "/local/domain/" + std::to_string(backend_.options().own_domid) + "/error/backend/vtpm/" +
         std::to_string(domid_) + "/" + std::to_string(devid_) + "/error";
}

bool Device::Adopt() {
  adopted_ = true;
  XenStore& xs = backend_.xs();
  auto uuid_s = xs.Read(be_path_ + "/uuid");
  auto fe = xs.Read(be_path_ + "/frontend");
  auto fe_id = xs.Read(be_path_ + "/frontend-id");
  if (!uuid_s.ok() || !fe.ok() || !fe_id.ok()) {
    VLOG_ERROR(ctx_, "cannot read backend nodes: {}",
               (!uuid_s.ok() ? uuid_s.status() : !fe.ok() ? fe.status() : fe_id.status()).message());
    return false;
  }
  if (*uuid_s) ctx_.uuid = **uuid_s;
  if (!*uuid_s) {
    Refuse("no uuid node in " + be_path_);
    return true;
  }
  auto parsed = Uuid::Parse(**uuid_s);
  if (!parsed.ok()) {
    Refuse("uuid '" + **uuid_s + "' is malformed: " + parsed.status().message());
    return true;
  }
  if (parsed->IsNil()) {
    Refuse("uuid is nil (00000000-0000-0000-0000-000000000000)");
    return true;
  }
  uuid_ = *parsed;
  ctx_.uuid = uuid_->ToString();
  auto fid = ParseDomid(fe_id->value_or(""));
  if (!fid || *fid != domid_) {
    Refuse("frontend-id '" + fe_id->value_or("") + "' does not match the device's domid " + std::to_string(domid_));
    return true;
  }
  if (!*fe || fe->value().empty()) {
    Refuse("no frontend node");
    return true;
  }
  fe_path_ = **fe;
  fe_state_path_ = fe_path_ + "/state";
  if (!backend_.ClaimUuid(*uuid_, shared_from_this())) {
    auto other = backend_.FindByUuid(*uuid_);
    if (other && backend_.SuspendedPredecessor(*other, domid_, ctx_)) {
      // xl migrate to this host: the receiving domain's device arrives while
      // the suspended sender still holds the uuid. It waits in InitWait and
      // claims the uuid once the sender's device is gone (design §6).
      awaiting_uuid_ = true;
      VLOG_INFO(ctx_,
                "uuid {} is held by domid {}, which suspended with this domain's handle (a migration on this host): "
                "this device takes it over once that domain's device is gone",
                ctx_.uuid, other->ctx().domid);
    } else {
      refused_for_uuid_ = true;  // retried when the uuid is released (RetryRefusedForUuid)
      Refuse("uuid " + ctx_.uuid + " is already attached to domid " +
             (other ? std::to_string(other->ctx().domid) + " devid " + std::to_string(other->ctx().devid)
                    : std::string("?")));
      return true;
    }
  } else {
    uuid_claimed_ = true;
  }

  auto be_state = xs.Read(be_path_ + "/state");
  int bs = be_state.ok() && *be_state ? ParseXbState(**be_state).value_or(kUnknown) : kUnknown;
  if (bs == kConnected) {
    // A previous daemon connected this device: re-adopt silently (never 5/6).
    auto fe_state = xs.Read(fe_state_path_);
    int fs = fe_state.ok() && *fe_state ? ParseXbState(**fe_state).value_or(kUnknown) : kUnknown;
    if (fs == kInitialised || fs == kConnected) {
      Status st = Connect();
      if (!st.ok()) {
        Refuse("cannot re-adopt connected device: " + st.message());
        return true;
      }
      VEVENT_INFO(kReadopted, ctx_, "re-adopted connected device (ring-ref {}, event-channel {})", ring_ref_,
                  remote_port_);
      found_pending_ = true;  // only a command already in the page now
      OnNotify();
      found_pending_ = false;
      return true;
    }
  }
  // A device retried after a refusal starts over from the refusal's 6.
  const bool retried = std::exchange(retrying_, false) && bs == kClosed;
  if (bs == kInitialising || bs == kUnknown || retried) {
    Status st = xs.Transact([&](XenStore::Txn& t) {
      ASSIGN_OR_RETURN(auto cur, t.Read(be_path_ + "/state"));
      if (!cur) return Status();  // removed meanwhile
      RETURN_IF_ERROR(t.Write(be_path_ + "/feature-protocol-v2", "1"));
      return t.Write(be_path_ + "/state", std::to_string(kInitWait));
    });
    if (!st.ok()) VLOG_ERROR(ctx_, "cannot enter InitWait: {}", st.message());
    else VLOG_INFO(ctx_, "new device, InitWait (frontend {})", fe_path_);
  }
  return true;
}

bool Device::Reconcile() {
  XenStore& xs = backend_.xs();
  auto be_state_r = xs.Read(be_path_ + "/state");
  if (!be_state_r.ok()) {
    VLOG_ERROR(ctx_, "cannot read backend state: {}", be_state_r.status().message());
    return true;
  }
  // Once adopted, only the toolstack writes state 1 (Initialising), and only
  // into a new directory: this device's was removed and written again
  // between two of its reads (design §6 "Device").
  recreated_ = *be_state_r && adopted_ && ParseXbState(**be_state_r) == kInitialising;
  if (!*be_state_r || recreated_) {
    // Backend directory removed by the toolstack: the device is gone.
    CheckSuspended();
    Disconnect();
    if (uuid_claimed_) {  // the uuid is free before the instance is judged idle
      backend_.ReleaseUuid(*uuid_, this);
      uuid_claimed_ = false;
    }
    if (uuid_ && !refused_) backend_.InstanceIdle(*uuid_, ctx_);
    VLOG_INFO(ctx_, "backend directory removed{}", recreated_ ? " (a new one already stands in its place)" : "");
    return false;
  }
  if (!adopted_ && !Adopt()) return true;
  if (refused_) return true;

  int bs = ParseXbState(**be_state_r).value_or(kUnknown);
  auto online_r = xs.Read(be_path_ + "/online");
  bool online = online_r.ok() && *online_r && **online_r == "1";
  auto fe_state_r = xs.Read(fe_state_path_);
  std::optional<int> fs;
  if (fe_state_r.ok() && *fe_state_r) fs = ParseXbState(**fe_state_r).value_or(kUnknown);

  if (!fs) {  // frontend directory gone (destroy, forced detach)
    CheckSuspended();
    Disconnect();
    if (bs != kClosed) WriteState(kClosed);
    return true;
  }
  if (!online || force_closing_) {  // the toolstack (or vtpmctl wipe) is removing the device
    if (!online) CheckSuspended();
    if (force_closing_ && online && bs != kClosing && bs != kClosed) WriteState(kClosing);
    if (!connected() || *fs == kClosed || *fs == kUnknown || *fs == kInitialising) {
      Disconnect();
      if (bs != kClosed) WriteState(kClosed);
    }
    return true;  // else wait for the frontend to close
  }
  switch (*fs) {
    case kInitialised:
    case kConnected: {
      if (connected()) {
        auto rr = xs.Read(fe_path_ + "/ring-ref");
        auto ec = xs.Read(fe_path_ + "/event-channel");
        auto r = rr.ok() && *rr ? ParseU32(**rr) : std::nullopt;
        auto e = ec.ok() && *ec ? ParseU32(**ec) : std::nullopt;
        if (r && e && (*r != ring_ref_ || *e != remote_port_)) {
          VLOG_INFO(ctx_, "frontend published a new ring (ring-ref {}, event-channel {}): reconnecting", *r, *e);
          Disconnect();
        }
      }
      if (!connected() && (bs == kInitWait || bs == kConnected)) {
        if (awaiting_uuid_) {
          if (!backend_.ClaimUuid(*uuid_, shared_from_this())) {
            backend_.RetryConnect(domid_, devid_);
            return true;
          }
          awaiting_uuid_ = false;
          uuid_claimed_ = true;
          VLOG_INFO(ctx_, "took over uuid {} from the migrated domain", ctx_.uuid);
        }
        Status st = Connect();
        if (st.code() == Code::kBusy) {
          // The instance is held by another domain whose device is gone, or
          // by vtpmctl: a passing cause (design §6 "Device"). Stay in
          // InitWait and try again; the frontend's command waits in the page.
          if (!std::exchange(waiting_for_instance_, true))
            VLOG_INFO(ctx_, "{}: connecting once it is free", st.message());
          backend_.RetryConnect(domid_, devid_);
          return true;
        }
        if (!st.ok()) {
          Refuse(st.message());
          return true;
        }
        if (bs != kConnected) WriteState(kConnected);
        VEVENT_INFO(kAttached, ctx_, "connected (ring-ref {}, event-channel {}, {}){}", ring_ref_, remote_port_,
                    linked_ ? std::string("served by the TPM's worker") : "local port " + std::to_string(port_.port()),
                    std::exchange(waiting_for_instance_, false) ? " after waiting for the instance" : "");
        OnNotify();  // the frontend's first notify may have been sent before we bound
      }
      break;
    }
    case kClosing:
      if (bs != kClosing && bs != kClosed) WriteState(kClosing);
      break;
    case kClosed:
      Disconnect();
      if (bs != kClosed) WriteState(kClosed);
      break;
    case kInitialising:
      // kexec / pv-grub hand-off: the frontend starts over after we closed.
      if (bs == kClosed || bs == kClosing) {
        Disconnect();
        WriteState(kInitWait);
      }
      break;
    default:
      break;
  }
  return true;
}

Status Device::Connect() {
  XenStore& xs = backend_.xs();
  ASSIGN_OR_RETURN(auto feat, xs.Read(fe_path_ + "/feature-protocol-v2"));
  if (!feat || *feat != "1")
    return Status(Code::kFailedPrecondition, "frontend lacks feature-protocol-v2=1 (old vTPM protocol not supported)");
  ASSIGN_OR_RETURN(auto rr, xs.Read(fe_path_ + "/ring-ref"));
  ASSIGN_OR_RETURN(auto ec, xs.Read(fe_path_ + "/event-channel"));
  const std::optional<uint32_t> ref = ParseU32(rr.value_or(""));
  const std::optional<uint32_t> port = ParseU32(ec.value_or(""));
  if (!ref)
    return Status(Code::kInvalidArgument, "frontend ring-ref '" + rr.value_or("") + "' is not a grant reference");
  if (!port)
    return Status(Code::kInvalidArgument, "frontend event-channel '" + ec.value_or("") + "' is not a port number");
  const uint32_t ref_v = ref.value_or(0), port_v = port.value_or(0);
  if (backend_.options().worker_data_path) {
    // The instance's worker maps the page and binds the channel itself.
    std::optional<DomainHandle> handle;
    if (auto dom = backend_.DomainState(domid_, ctx_)) handle = dom->handle;
    auto engine = backend_.engines().Connect(*uuid_, ctx_, handle);
    if (!engine.ok()) return engine.status().Annotate("vTPM instance " + ctx_.uuid);
    if (!(*engine)->AttachGuest(GuestLink{domid_, ref_v, port_v}, backend_.options().allow_any_locality))
      return Status(Code::kFailedPrecondition, "the TPM engine cannot serve a guest page itself");
    linked_ = true;
    ring_ref_ = ref_v;
    remote_port_ = port_v;
    engine_ = *engine;
    ++epoch_;
    return {};
  }
  ASSIGN_OR_RETURN(GrantMapping page, backend_.gnt().Map(domid_, ref_v));
  ASSIGN_OR_RETURN(BoundPort bound, backend_.evtchn().BindInterdomain(domid_, port_v));
  std::optional<DomainHandle> handle;
  if (auto dom = backend_.DomainState(domid_, ctx_)) handle = dom->handle;
  auto engine = backend_.engines().Connect(*uuid_, ctx_, handle);
  if (!engine.ok()) return engine.status().Annotate("vTPM instance " + ctx_.uuid);
  page_ = std::move(page);
  port_ = std::move(bound);
  ring_ref_ = ref_v;
  remote_port_ = port_v;
  engine_ = *engine;
  ++epoch_;
  backend_.RegisterPort(port_.port(), shared_from_this());
  return {};
}

void Device::CheckSuspended() {
  if (suspend_checked_ || !connected()) return;
  suspend_checked_ = true;
  auto dom = backend_.DomainState(domid_, ctx_);
  if (!dom) return;
  if (dom->shutdown_reason != kShutdownSuspend) {
    VLOG_DEBUG(ctx_, "device teardown; the domain {}", dom->shutdown_reason
                                                          ? "shut down with reason " + std::to_string(*dom->shutdown_reason)
                                                          : std::string("has not shut down"));
    return;
  }
  backend_.engines().Suspended(*uuid_, ctx_, dom->handle);
}

void Device::Disconnect() {
  if (!connected()) return;
  if (cancel_timer_) backend_.loop().CancelTimer(*cancel_timer_);
  cancel_timer_.reset();
  if (busy_ && engine_) engine_->Abort();
  busy_ = false;
  ++epoch_;
  const bool was_linked = std::exchange(linked_, false);
  if (was_linked && engine_) engine_->DetachGuest();
  if (port_.valid()) backend_.UnregisterPort(port_.port());
  port_ = BoundPort();
  page_ = GrantMapping();
  engine_.reset();
  backend_.engines().Disconnect(*uuid_, ctx_);
  VEVENT_INFO(kDetached, ctx_, "disconnected ({})",
              was_linked ? "the worker holding the page and the event channel is replaced"
                         : "grant unmapped, event channel unbound");
}

void Device::WriteState(int s) {
  bool skipped = false;
  Status st = backend_.xs().Transact([&](XenStore::Txn& t) {
    skipped = false;
    ASSIGN_OR_RETURN(auto cur, t.Read(be_path_ + "/state"));
    if (!cur) {
      skipped = true;  // backend dir removed meanwhile
      return Status();
    }
    if (s != kClosed) {
      ASSIGN_OR_RETURN(auto online, t.Read(be_path_ + "/online"));
      if ((!online || *online != "1") && !force_closing_) {
        skipped = true;  // the toolstack is tearing the device down
        return Status();
      }
    }
    if (*cur == std::to_string(s)) {
      skipped = true;
      return Status();
    }
    return t.Write(be_path_ + "/state", std::to_string(s));
  });
  if (!st.ok()) VLOG_ERROR(ctx_, "cannot write backend state {}: {}", s, st.message());
  else if (!skipped) VLOG_DEBUG(ctx_, "backend state {}", s);
}

void Device::ForceClose() {
  force_closing_ = true;
  Reconcile();
}

void Device::Notify() {
  Status st = port_.Notify();
  if (!st.ok()) VLOG_WARN(ctx_, "notify failed: {}", st.message());
}

void Device::OnNotify() {
  if (!page_.valid()) return;  // not connected, or the worker serves the page
  PageHeader hdr = SnapshotHeader(page_.data());
  switch (PageState(hdr.state)) {
    case PageState::kSubmit:
      if (!busy_) StartCommand(hdr);
      break;
    case PageState::kCancel:
      if (!busy_) {
        PublishState(page_.data(), PageState::kIdle);
        Notify();
        VLOG_DEBUG(ctx_, "cancel while idle: state IDLE");
      } else if (!cancel_timer_) {
        // Let the command finish if it does so within the guest's timeout_c;
        // otherwise abandon it (the engine restores its prior state).
        std::weak_ptr<Device> weak = shared_from_this();
        uint64_t epoch = epoch_;
        cancel_timer_ = backend_.loop().AddTimer(backend_.options().cancel_grace, [weak, epoch] {
          auto self = weak.lock();
          if (!self || self->epoch_ != epoch || !self->busy_) return;
          self->cancel_timer_.reset();
          if (self->engine_) self->engine_->Abort();
          self->busy_ = false;
          ++self->epoch_;
          PublishState(self->page_.data(), PageState::kIdle);
          self->Notify();
          VLOG_GUEST_WARN(self->ctx_, "cancelled command abandoned after {} ms: state IDLE",
                          self->backend_.options().cancel_grace.count());
        });
      }
      break;
    default:
      break;  // IDLE/FINISH: spurious notification
  }
}

void Device::StartCommand(const PageHeader& hdr) {
  auto parsed = ParseRequest(hdr, page_.data());
  if (auto* rej = std::get_if<PageReject>(&parsed)) {
    VLOG_GUEST_WARN(ctx_, "malformed request (length {}, nr_extra_pages {}): {}", hdr.length, hdr.nr_extra_pages,
                    rej->why);
    Respond(rej->offset, tpm12::ErrorResponse(rej->rc), false);
    return;
  }
  auto& req = std::get<PageRequest>(parsed);
  if (req.locality != 0 && !backend_.options().allow_any_locality) {
    VLOG_GUEST_WARN(ctx_, "request at locality {} refused (only locality 0 is allowed)", req.locality);
    Respond(req.offset, tpm12::ErrorResponse(tpm12::kBadLocality), false);
    return;
  }
  busy_ = true;
  busy_offset_ = req.offset;
  std::weak_ptr<Device> weak = shared_from_this();
  uint64_t epoch = epoch_;
  auto done = [weak, epoch](Bytes rsp) {
    if (auto self = weak.lock()) self->Complete(epoch, std::move(rsp));
  };
  if (std::exchange(found_pending_, false))
    engine_->ExecuteFound(std::move(req.command), req.locality, std::move(done));
  else
    engine_->Execute(std::move(req.command), req.locality, std::move(done));
}

void Device::Complete(uint64_t epoch, Bytes response) {
  if (epoch != epoch_ || !busy_ || !connected()) return;  // abandoned or disconnected
  busy_ = false;
  if (cancel_timer_) {
    backend_.loop().CancelTimer(*cancel_timer_);
    cancel_timer_.reset();
  }
  Respond(busy_offset_, std::move(response), true);
  // A command submitted while we were busy (a guest that does not wait) is
  // picked up now rather than waiting for another notify.
  OnNotify();
}

void Device::Respond(uint32_t offset, Bytes response, bool from_engine) {
  if (response.size() < tpm12::kHeaderSize || tpm12::ParamSize(response) != response.size()) {
    VLOG_ERROR(ctx_, "engine returned a malformed response ({} bytes): answering TPM_FAIL", response.size());
    response = tpm12::ErrorResponse(tpm12::kFail);
  } else if (response.size() > MaxResponseAt(offset) || response.size() > kMaxPacket) {
    VLOG_GUEST_WARN(ctx_, "response of {} bytes does not fit the page: answering TPM_SIZE", response.size());
    response = tpm12::ErrorResponse(tpm12::kSize);
  }
  WriteResponse(page_.data(), offset, response);
  if (from_engine) {
    CrashPoint("response-written");
    engine_->ResponseWritten();
    CrashPoint("response-marked");
  }
  PublishState(page_.data(), PageState::kFinish);
  Notify();
  if (from_engine) CrashPoint("finished");
}

}  // namespace vtpm
