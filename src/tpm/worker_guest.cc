#include "tpm/worker_guest.h"

#include <unistd.h>

#include <cerrno>

#include "backend/shared_page.h"
#include "backend/tpm12_wire.h"
#include "common/crash_point.h"

namespace vtpm {

std::optional<Bytes> WorkerConn::Read() {
  for (;;) {
    auto next = reader_.Next();
    if (!next.ok()) return std::nullopt;
    if (*next) return std::move(**next);
    if (!ReadSome()) return std::nullopt;
  }
}

bool WorkerConn::ReadSome() {
  uint8_t buf[16384];
  for (;;) {
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    reader_.Feed(ByteView(buf, size_t(n)));
    return true;
  }
}

bool WorkerConn::Send(const Bytes& frame) {
  size_t off = 0;
  while (off < frame.size()) {
    ssize_t n = write(fd_, frame.data() + off, frame.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += size_t(n);
  }
  return true;
}

bool GuestServer::ServePage() {
  for (;;) {
    PageHeader hdr = SnapshotHeader(ch_.page());
    const PageState state = PageState(hdr.state);
    if (state == PageState::kCancel) {
      PublishState(ch_.page(), PageState::kIdle);
      (void)ch_.Notify();
      return true;
    }
    if (state != PageState::kSubmit) {
      opts_.found = false;  // only a request already waiting at start-up is "found"
      return true;
    }
    auto parsed = ParseRequest(hdr, ch_.page());
    if (auto* rej = std::get_if<PageReject>(&parsed)) {
      if (!Reject(rej->offset, rej->rc, rej->why, hdr.length, hdr.nr_extra_pages)) return false;
      continue;
    }
    auto& req = std::get<PageRequest>(parsed);
    if (req.locality != 0 && !opts_.any_locality) {
      if (!Reject(req.offset, tpm12::kBadLocality, "locality other than 0", hdr.length, hdr.nr_extra_pages))
        return false;
      continue;
    }
    if (!Serve(req.offset, req.locality, std::move(req.command))) return false;
  }
}

bool GuestServer::Reject(uint32_t offset, uint32_t rc, const char* why, uint32_t length, uint8_t nr_extra) {
  Publish(offset, tpm12::ErrorResponse(rc), {}, /*from_tpm=*/false);
  WorkerReply note;
  note.type = WorkerMsg::kGuestRejected;
  note.code = rc;
  note.message = why;
  note.header_length = length;
  note.nr_extra_pages = nr_extra;
  return conn_.Send(EncodeReply(note));
}

bool GuestServer::Serve(uint32_t offset, uint8_t locality, Bytes command) {
  if (std::exchange(opts_.found, false) || opts_.no_tpm) {
    WorkerReply found;
    found.type = WorkerMsg::kGuestFound;
    found.request = command;
    found.locality = locality;
    outstanding_ = EncodeReply(found);
    if (!conn_.Send(outstanding_)) return false;
    auto answer = AwaitRelease(/*run_allowed=*/!opts_.no_tpm);
    if (!answer) return false;
    if (answer->type == WorkerMsg::kRelease) {
      Publish(offset, std::move(answer->command), answer->mark);
      return true;
    }
  }
  WorkerRequest exec;
  exec.type = WorkerMsg::kExecute;
  exec.locality = locality;
  exec.command = command;
  if (opts_.flight) opts_.flight->Begin(command);
  WorkerReply reply = tpm_.Execute(exec);
  if (opts_.flight) opts_.flight->End();
  if (baseline_.KeptNothing(reply)) {
    Publish(offset, std::move(reply.response), {});
    return true;
  }
  if (auto seq = KeepInSlot(command, reply)) {
    Publish(offset, std::move(reply.response), {}, true, *seq);
    return true;
  }
  reply.type = WorkerMsg::kGuestExecuted;
  reply.request = std::move(command);
  reply.locality = locality;
  outstanding_ = EncodeReply(reply);
  if (!conn_.Send(outstanding_)) return false;
  auto release = AwaitRelease(/*run_allowed=*/false);
  if (!release) return false;
  baseline_.Apply(reply);
  if (release->settled) baseline_.settled_volatile = std::move(reply.volatile_state);
  Publish(offset, std::move(release->command), release->mark);
  return true;
}

void TpmBaseline::Init(const WorkerRequest& init) {
  permanent = init.permanent;
  savestate = init.savestate;
  settled_volatile.reset();
}

void TpmBaseline::Apply(const WorkerReply& reply) {
  for (const BlobChange& c : reply.changes) {
    if (c.kind == BlobKind::kPermanent && c.data) permanent = c.data;
    if (c.kind == BlobKind::kSavestate) savestate = c.data;
  }
  settled_volatile.reset();
}

bool TpmBaseline::KeptNothing(const WorkerReply& reply) const {
  return settled_volatile && reply.volatile_state == *settled_volatile && !ChangesBlobs(reply);
}

bool TpmBaseline::ChangesBlobs(const WorkerReply& reply) const {
  for (const BlobChange& c : reply.changes) {
    if (c.kind == BlobKind::kPermanent && !(c.data && permanent && *c.data == *permanent)) return true;
    if (c.kind == BlobKind::kSavestate && (c.data ? !(savestate && *c.data == *savestate) : savestate.has_value()))
      return true;
  }
  return false;
}

std::optional<uint64_t> GuestServer::KeepInSlot(ByteView request, const WorkerReply& reply) {
  // Settled: the current slot holds the state this command ran on.
  if (!opts_.volatile_slots || !opts_.flight || !baseline_.settled_volatile || reply.volatile_state.empty() ||
      baseline_.ChangesBlobs(reply))
    return std::nullopt;
  VolatileSlot slot;
  slot.sequence = opts_.flight->SlotSequence() + 1;
  slot.request_digest = RequestDigest(request);
  slot.response = reply.response;
  slot.volatile_state = reply.volatile_state;
  if (!opts_.flight->WriteSlot(EncodeVolatileSlot(slot), slot.sequence)) return std::nullopt;
  baseline_.settled_volatile = reply.volatile_state;
  return slot.sequence;
}

Bytes TpmBaseline::Digest() const {
  if (!settled_volatile) return {};
  return TpmStateDigest(permanent, savestate, settled_volatile);
}

WorkerReply AdoptedReply(const WorkerRequest& adopt, const TpmBaseline& baseline, uint8_t flags) {
  WorkerReply r;
  r.type = WorkerMsg::kAdopted;
  r.nonce = adopt.nonce;
  r.state_digest = baseline.Digest();
  r.adopted_flags = flags;
  return r;
}

std::optional<WorkerRequest> GuestServer::AwaitRelease(bool run_allowed) {
  for (;;) {
    auto body = conn_.Read();
    if (!body) return std::nullopt;
    // A daemon that took this worker over while it waited hears of it now.
    if (opts_.flight) opts_.flight->Alive();
    auto req = DecodeRequest(*body);
    if (!req.ok()) return std::nullopt;
    if (req->type == WorkerMsg::kExecute) {
      deferred_.push_back(std::move(*req));
      continue;
    }
    if (req->type == WorkerMsg::kAdopt) {
      const uint8_t flags = kAdoptedGuestFrameFollows | (deferred_.empty() ? 0 : kAdoptedDeferred);
      if (!conn_.Send(EncodeReply(AdoptedReply(*req, baseline_, flags))) || !conn_.Send(outstanding_))
        return std::nullopt;
      continue;
    }
    if (req->type == WorkerMsg::kRelease || (run_allowed && req->type == WorkerMsg::kRun)) return std::move(*req);
    return std::nullopt;
  }
}

void GuestServer::Publish(uint32_t offset, Bytes response, ByteView mark, bool from_tpm,
                          std::optional<uint64_t> slot_seq) {
  if (response.size() < tpm12::kHeaderSize || tpm12::ParamSize(response) != response.size())
    response = tpm12::ErrorResponse(tpm12::kFail);
  else if (response.size() > MaxResponseAt(offset) || response.size() > kMaxPacket)
    response = tpm12::ErrorResponse(tpm12::kSize);
  WriteResponse(ch_.page(), offset, response);
  if (from_tpm) CrashPoint("response-written");
  if (!mark.empty() && opts_.mark_fd >= 0) {
    // One pwrite of a record within the first page: whole or not at all
    // (store/runtime_file.h, OverwriteRecord).
    ssize_t n = pwrite(opts_.mark_fd, mark.data(), mark.size(), 0);
    if (n != ssize_t(mark.size())) {
      static const char kMsg[] = "vtpm-worker: writing the responded mark failed\n";
      [[maybe_unused]] ssize_t w = write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
    }
  }
  if (slot_seq && opts_.flight) opts_.flight->SetResponded(*slot_seq);
  if (from_tpm) CrashPoint("response-marked");
  PublishState(ch_.page(), PageState::kFinish);
  (void)ch_.Notify();
  if (from_tpm) CrashPoint("finished");
}

}  // namespace vtpm
