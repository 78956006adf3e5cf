// Fuzzes the control protocol's parsers (daemon side: requests; vtpmctl
// side: responses; durations): any bytes give a value or an error, never a
// crash, and whatever parses survives an encode/parse round trip unchanged.
#include <cstdlib>
#include <string>

#include "daemon/control_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto req = vtpm::ParseRequest(text); req.ok()) {
    std::string line = vtpm::EncodeRequest(*req);
    if (line.empty() || line.back() != '\n') abort();
    line.pop_back();
    auto again = vtpm::ParseRequest(line);
    if (!again.ok() || again->verb != req->verb || again->uuid != req->uuid || again->force != req->force ||
        again->idle_for_seconds != req->idle_for_seconds || again->path != req->path || again->peer != req->peer)
      abort();
  } else if (req.status().message().empty()) {
    abort();  // every refusal carries a sentence
  }

  if (auto rsp = vtpm::ParseResponse(text); rsp.ok()) {
    std::string line = vtpm::EncodeResponse(*rsp);
    line.pop_back();
    auto again = vtpm::ParseResponse(line);
    if (!again.ok() || again->result != rsp->result || again->error != rsp->error || again->data != rsp->data)
      abort();
  }

  if (auto d = vtpm::ParseDuration(text); d.ok() && (*d <= 0 || *d > 100LL * 366 * 86400)) abort();
  return 0;
}
