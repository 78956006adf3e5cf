#include "daemon/scripted_engine.h"

#include "backend/tpm12_wire.h"

namespace vtpm {

void ScriptedEngine::Execute(Bytes command, uint8_t /*locality*/, Done done) {
  Bytes rsp;
  AppendBe16(rsp, tpm12::kTagRspCommand);
  AppendBe32(rsp, uint32_t(command.size() + 4));
  AppendBe32(rsp, 0);
  AppendBe32(rsp, ++sequence_);
  rsp.insert(rsp.end(), command.begin() + tpm12::kHeaderSize, command.end());
  timer_ = loop_.AddTimer(delay_, [this, rsp = std::move(rsp), done = std::move(done)]() mutable {
    timer_.reset();
    done(std::move(rsp));
  });
}

void ScriptedEngine::Abort() {
  if (timer_) {
    loop_.CancelTimer(*timer_);
    timer_.reset();
    --sequence_;  // the abandoned command leaves no trace
  }
}

Result<std::shared_ptr<Engine>> ScriptedEngineProvider::Connect(const Uuid& uuid, const GuestCtx& ctx,
                                                                const std::optional<DomainHandle>&) {
  auto it = on_.find(uuid);
  if (it != on_.end() && it->second.domid == ctx.domid) return std::shared_ptr<Engine>(it->second.engine);
  auto delay = slow_.count(uuid) ? slow_delay_ : delay_;
  auto engine = std::make_shared<ScriptedEngine>(loop_, delay);
  on_[uuid] = {ctx.domid, engine};
  VLOG_INFO(ctx, "scripted engine powered on ({} ms per command)", delay.count());
  return std::shared_ptr<Engine>(engine);
}

void ScriptedEngineProvider::Disconnect(const Uuid&, const GuestCtx&) {}

void ScriptedEngineProvider::Release(const Uuid& uuid, const GuestCtx& ctx) {
  auto it = on_.find(uuid);
  if (it != on_.end() && it->second.domid == ctx.domid) {
    on_.erase(it);
    VLOG_INFO(ctx, "scripted engine powered off");
  }
}

}  // namespace vtpm
