#include "bench/bench_guest.h"

#include <poll.h>

#include <cstring>

#include "guest/frontend.h"  // page layout and ring states

namespace vtpm::bench {
namespace {

std::string D(uint32_t v) { return std::to_string(v); }

}  // namespace

Result<std::unique_ptr<BenchGuest>> BenchGuest::Connect(sim::XsClient& xs, const std::string& sim_dir,
                                                        uint32_t domid, uint32_t devid,
                                                        double* init_to_connected) {
  const std::string fe = "/local/domain/" + D(domid) + "/device/vtpm/" + D(devid);
  ASSIGN_OR_RETURN(auto be, xs.Read(fe + "/backend"));
  ASSIGN_OR_RETURN(auto be_id, xs.Read(fe + "/backend-id"));
  if (!be || !be_id) return Status(Code::kNotFound, "no vtpm frontend dir at " + fe);
  ASSIGN_OR_RETURN(auto evtchn, sim::EvtchnEndpoint::Open(sim_dir, domid));
  evtchn.set_auto_mask(false);
  ASSIGN_OR_RETURN(auto page, sim::GrantedPage::Grant(sim_dir, domid));
  ASSIGN_OR_RETURN(uint32_t port, evtchn.AllocUnbound(uint32_t(std::stoul(*be_id))));
  Status published = xs.Transaction([&](sim::XsTx t) {
    RETURN_IF_ERROR(xs.Write(fe + "/ring-ref", D(page.ref()), t));
    RETURN_IF_ERROR(xs.Write(fe + "/event-channel", D(port), t));
    return xs.Write(fe + "/feature-protocol-v2", "1", t);
  });
  RETURN_IF_ERROR(published);
  const auto t0 = Clock::now();
  RETURN_IF_ERROR(xs.Write(fe + "/state", "3"));
  ASSIGN_OR_RETURN(auto state, xs.WaitFor(
      *be + "/state", [](const std::optional<std::string>& v) { return v && (*v == "4" || *v == "5" || *v == "6"); },
      std::chrono::seconds(30)));
  if (init_to_connected) *init_to_connected = Seconds(Clock::now() - t0);
  if (state != std::optional<std::string>("4"))
    return Status(Code::kUnavailable, "backend " + *be + " went to " + state.value_or("<absent>"));
  RETURN_IF_ERROR(xs.Write(fe + "/state", "4"));
  return std::unique_ptr<BenchGuest>(new BenchGuest(domid, std::move(page), std::move(evtchn), port));
}

uint8_t BenchGuest::State() const { return __atomic_load_n(page_.data() + sim::kRingState, __ATOMIC_ACQUIRE); }

Status BenchGuest::Submit(ByteView cmd) {
  if (cmd.size() > sim::kPageSize - sim::kRingHeader) return Status(Code::kInvalidArgument, "command too long");
  uint8_t* p = page_.data();
  std::memcpy(p + sim::kRingHeader, cmd.data(), cmd.size());
  const uint32_t len = uint32_t(cmd.size());
  std::memcpy(p + sim::kRingLength, &len, 4);
  __atomic_store_n(p + sim::kRingState, uint8_t(sim::kSubmit), __ATOMIC_RELEASE);
  return evtchn_.Notify(port_);
}

bool BenchGuest::Finished() {
  while (evtchn_.Pending(false).ok()) {
  }
  return State() == sim::kFinish;
}

Result<Bytes> BenchGuest::Response() const {
  if (State() != sim::kFinish) return Status(Code::kFailedPrecondition, "no response in the page");
  uint32_t len;
  std::memcpy(&len, page_.data() + sim::kRingLength, 4);
  if (len < 10 || len > sim::kPageSize - sim::kRingHeader)
    return Status(Code::kCorruption, "response length " + D(len));
  Bytes rsp(page_.data() + sim::kRingHeader, page_.data() + sim::kRingHeader + len);
  if (LoadBe32(rsp.data() + 2) != len) return Status(Code::kCorruption, "length != paramSize");
  return rsp;
}

Result<Bytes> BenchGuest::Transact(ByteView cmd, std::chrono::milliseconds timeout) {
  RETURN_IF_ERROR(Submit(cmd));
  const auto deadline = Clock::now() + timeout;
  while (!Finished()) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return Status(Code::kTimeout, "no response from the backend of domain " + D(domid_));
    pollfd pfd{fd(), POLLIN, 0};
    ::poll(&pfd, 1, int(left.count()));
  }
  return Response();
}

}  // namespace vtpm::bench
