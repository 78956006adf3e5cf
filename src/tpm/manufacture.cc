#include "tpm/manufacture.h"

#include <openssl/rand.h>

#include "tpm/tpm12.h"

namespace vtpm {

std::vector<AdminStep> ManufactureSteps() {
  std::array<uint8_t, 20> nonce{};
  RAND_bytes(nonce.data(), int(nonce.size()));
  return {
      {tpm12::Startup(tpm12::kStClear), false},
      {tpm12::PhysicalPresence(tpm12::kPpCmdDisable | tpm12::kPpHwEnable), false},
      {tpm12::PhysicalPresence(tpm12::kPpLifetimeLock), false},
      {tpm12::PhysicalEnable(), true},
      {tpm12::PhysicalSetDeactivated(false), true},
      {tpm12::CreateEndorsementKeyPair(nonce), false},
      {tpm12::NvLock(), true},
  };
}

std::unique_ptr<Manufacturer> Manufacturer::Start(EventLoop& loop, const WorkerOptions& worker,
                                                  std::chrono::milliseconds deadline, Done done) {
  std::unique_ptr<Manufacturer> m(new Manufacturer(deadline, std::move(done)));
  auto client = WorkerClient::Start(loop, worker);
  Manufacturer* self = m.get();
  if (!client.ok()) {
    std::weak_ptr<bool> alive = m->alive_;
    Status st = client.status();
    loop.Post([self, alive, st] {
      if (auto a = alive.lock(); a && *a) self->Finish(st.Annotate("manufacture"));
    });
    return m;
  }
  m->worker_ = std::move(client).value();
  WorkerRequest init;
  init.type = WorkerMsg::kInit;
  m->worker_->Call(init, deadline, [self](Result<WorkerReply> r) { self->Step(std::move(r)); });
  return m;
}

Manufacturer::Manufacturer(std::chrono::milliseconds deadline, Done done)
    : deadline_(deadline), done_(std::move(done)) {}

Manufacturer::~Manufacturer() { *alive_ = false; }

void Manufacturer::Step(Result<WorkerReply> reply) {
  if (!reply.ok()) return Finish(reply.status().Annotate("manufacture"));
  if (reply->type != WorkerMsg::kReply)
    return Finish(Status(Code::kUnavailable, "manufacture: worker failed: " + reply->message));
  for (auto& c : reply->changes) {
    if (c.kind == BlobKind::kPermanent && c.data) out_.permanent = *c.data;
  }
  if (init_done_) {
    const size_t done_step = next_ - 1;
    auto rc = tpm12::ResponseCode(reply->response);
    if (rc != tpm12::kSuccess) {
      return Finish(Status(Code::kTpmError,
                           "manufacture step " + std::to_string(done_step) + " failed",
                           rc.value_or(tpm12::kFail)));
    }
    if (done_step == kEkStepIndex) {
      auto ek = tpm12::PubkeyFromEkResponse(reply->response);
      if (!ek) return Finish(Status(Code::kTpmError, "manufacture: malformed EK response"));
      out_.ek_public = std::move(*ek);
    }
  }
  init_done_ = true;
  if (next_ == steps_.size()) {
    if (out_.permanent.empty() || out_.ek_public.empty())
      return Finish(Status(Code::kInternal, "manufacture: no permanent state or EK"));
    return Finish(std::move(out_));
  }
  WorkerRequest req;
  req.type = WorkerMsg::kExecute;
  req.command = steps_[next_].command;
  req.physical_presence = steps_[next_].physical_presence;
  ++next_;
  worker_->Call(req, deadline_, [this](Result<WorkerReply> r) { Step(std::move(r)); });
}

void Manufacturer::Finish(Result<ManufacturedTpm> r) {
  if (worker_) worker_->Kill();
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(std::move(r));
}

}  // namespace vtpm
