// Fuzzes the parent<->worker protocol (src/tpm/worker_protocol.h) from both
// ends. The first input byte picks the direction:
//   even: a request body as the worker decodes it; a decoded kExecute then
//         runs through the worker's libtpms host, started once per process
//         (libtpms is never re-initialised per input);
//   odd:  a reply body as the daemon decodes it (the worker may be
//         compromised).
// Anything accepted must re-encode to exactly the input (one encoding per
// message), and the frame splitter must never hand out more than it got.
#include <cstdlib>

#include "tpm/libtpms_host.h"
#include "tpm/tpm12.h"
#include "tpm/worker_protocol.h"

namespace {

vtpm::LibtpmsHost& Tpm() {
  static vtpm::LibtpmsHost* host = [] {
    auto* h = new vtpm::LibtpmsHost();
    vtpm::WorkerRequest init;
    init.type = vtpm::WorkerMsg::kInit;
    if (!h->Init(init).ok()) abort();
    vtpm::WorkerRequest startup;
    startup.command = vtpm::tpm12::Startup(vtpm::tpm12::kStClear);
    h->Execute(startup);
    return h;
  }();
  return *host;
}

void CheckCanonical(const vtpm::Bytes& frame, vtpm::ByteView body) {
  if (frame.size() != body.size() + 4 || !std::equal(body.begin(), body.end(), frame.begin() + 4))
    abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  vtpm::ByteView body(data + 1, size - 1);

  vtpm::FrameReader reader;
  reader.Feed(body);
  size_t handed_out = 0;
  for (;;) {
    auto next = reader.Next();
    if (!next.ok() || !*next) break;
    handed_out += (*next)->size() + 4;
    if (handed_out > body.size()) abort();
  }

  if (data[0] % 2 == 0) {
    auto req = vtpm::DecodeRequest(body);
    if (!req.ok()) return 0;
    CheckCanonical(vtpm::EncodeRequest(*req), body);
    if (req->type == vtpm::WorkerMsg::kExecute) {
      vtpm::WorkerReply reply = Tpm().Execute(*req);
      if (reply.response.size() < 10 || reply.response.size() > vtpm::tpm12::kGuestBufferSize)
        abort();
      auto back = vtpm::DecodeReply(vtpm::ByteView(vtpm::EncodeReply(reply)).subspan(4));
      if (!back.ok()) abort();
    }
  } else {
    auto reply = vtpm::DecodeReply(body);
    if (!reply.ok()) return 0;
    CheckCanonical(vtpm::EncodeReply(*reply), body);
  }
  return 0;
}
