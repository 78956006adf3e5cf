#include "common/log_event.h"

#include <array>

namespace vtpm {
namespace {
// Ids are random and fixed forever: a changed id breaks operators' filters.
constexpr std::array<LogEventInfo, 27> kEvents{{
    {LogEvent::kStarted, "started", "137dc4a478084f1690038fef27e189b1"},
    {LogEvent::kStopping, "stopping", "322f09ccc97f49769365b75d91249793"},
    {LogEvent::kStartRefused, "start-refused", "d03f64b8feb44d5199805b3a2caebcc9"},
    {LogEvent::kAttached, "attach", "0d6798e237e841a397ecf08a4736487b"},
    {LogEvent::kDetached, "detach", "9fcac21176d8458498df2e03a09615c9"},
    {LogEvent::kDomainGone, "domain-gone", "2e5f1b2d0917423f995be9cc48adcedf"},
    {LogEvent::kReadopted, "re-adopted", "5a5db248b0904607a6fbbf14896d78e8"},
    {LogEvent::kPoweredOn, "power-on", "7b5fc0f9b6374e2d96a37ddd2885cd73"},
    {LogEvent::kResumed, "resume", "13e9931b71ae40418a08f349e801dfe5"},
    {LogEvent::kCreated, "create", "7fb5c7c0bc8b4437b632478cdf13efa7"},
    {LogEvent::kManufactured, "manufacture", "82974f50bfad40cca50e0760621ea3e5"},
    {LogEvent::kWiped, "wipe", "d4333ded518f4724a26bc49607343435"},
    {LogEvent::kForceClosed, "wipe-force-close", "323d3c7489a748868118900bd77d08f1"},
    {LogEvent::kCleared, "clear", "eac024d4b6344c95b58f36f24eca4b18"},
    {LogEvent::kPruned, "prune", "3aa0ec7fc8ba4f78b00e58e858bae214"},
    {LogEvent::kDeviceRefused, "refuse", "f738c6f1c6c948e3b5b3db726790d084"},
    {LogEvent::kWorkerFault, "worker-fault", "2a54a610d91347e590600a7ab62bb734"},
    {LogEvent::kWorkerGaveUp, "worker-gave-up", "2879771cfddb4202bfb3d54d7d93f446"},
    {LogEvent::kSuppressed, "rate-limit", "f6baded894b04cc49ff2f38b39d63102"},
    {LogEvent::kXenstoreLost, "xenstore-lost", "580d401d58514d4894ad4912be145173"},
    {LogEvent::kSuspendCaptured, "suspend-capture", "c8d069891e8045f4b90b63a000a81dbd"},
    {LogEvent::kRestored, "restore-resume", "c7c1e973552a48798b878772a98c8ca5"},
    {LogEvent::kCaptureDropped, "capture-dropped", "26a0201268c54d98b4e36ad2e5a8cda2"},
    {LogEvent::kExported, "export", "d5b1a9bdb2594a1aa73da2258b4ad0d1"},
    {LogEvent::kImported, "import", "aa6da3f5ff1e4825b78a2800ae635be5"},
    {LogEvent::kWorkerAdopted, "worker-taken-over", "aad8e22337fb40e68137f6c9ccdf533a"},
    {LogEvent::kVolatileLost, "volatile-lost", "e93dcdd9f0f34b35924d07a5027983b8"},
}};

thread_local LogEvent g_event = LogEvent::kNone;
}  // namespace

std::span<const LogEventInfo> LogEvents() { return kEvents; }

std::string_view MessageId(LogEvent e) {
  if (e == LogEvent::kNone) return {};  // most lines: the journal sink asks for each
  for (const auto& i : kEvents)
    if (i.event == e) return i.message_id;
  return {};
}

LogEvent CurrentLogEvent() { return g_event; }
ScopedLogEvent::ScopedLogEvent(LogEvent e) : prev_(g_event) { g_event = e; }
ScopedLogEvent::~ScopedLogEvent() { g_event = prev_; }

}  // namespace vtpm
