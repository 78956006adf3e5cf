// ScriptedEngine: a test engine for the backend tier ([engine] kind =
// "scripted"). It answers every well-formed command after a configured delay
// with  tag 0x00C4 | paramSize | rc 0 | be32 sequence | command body,
// i.e. 4 bytes longer than the command, so a 4086-byte command produces a
// response too big for the page. The sequence restarts at power-on. Not for
// production: it emulates no TPM.
#pragma once

#include <map>
#include <optional>
#include <memory>
#include <set>

#include "common/event_loop.h"
#include "tpm/engine.h"

namespace vtpm {

class ScriptedEngine : public Engine {
 public:
  ScriptedEngine(EventLoop& loop, std::chrono::milliseconds delay) : loop_(loop), delay_(delay) {}
  ~ScriptedEngine() override { Abort(); }
  void Execute(Bytes command, uint8_t locality, Done done) override;
  void Abort() override;
  bool busy() const override { return timer_.has_value(); }

 private:
  EventLoop& loop_;
  std::chrono::milliseconds delay_;
  std::optional<EventLoop::TimerId> timer_;
  uint32_t sequence_ = 0;
};

class ScriptedEngineProvider : public EngineProvider {
 public:
  ScriptedEngineProvider(EventLoop& loop, std::chrono::milliseconds delay, std::set<Uuid> slow,
                         std::chrono::milliseconds slow_delay)
      : loop_(loop), delay_(delay), slow_(std::move(slow)), slow_delay_(slow_delay) {}
  Result<std::shared_ptr<Engine>> Connect(const Uuid& uuid, const GuestCtx& ctx,
                                          const std::optional<DomainHandle>& handle) override;
  void Disconnect(const Uuid& uuid, const GuestCtx& ctx) override;
  void Release(const Uuid& uuid, const GuestCtx& ctx) override;

 private:
  struct Powered {
    int domid;
    std::shared_ptr<ScriptedEngine> engine;
  };
  EventLoop& loop_;
  std::chrono::milliseconds delay_;
  std::set<Uuid> slow_;
  std::chrono::milliseconds slow_delay_;
  std::map<Uuid, Powered> on_;
};

}  // namespace vtpm
