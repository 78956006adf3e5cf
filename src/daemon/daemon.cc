#include "daemon/daemon.h"

#include <signal.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <set>

#include "backend/backend.h"
#include "backend/xen.h"
#include "common/event_loop.h"
#include "common/log.h"
#include "daemon/control_ops.h"
#include "daemon/control_server.h"
#include "daemon/exit_codes.h"
#include "daemon/install_paths.h"
#include "daemon/store_options.h"
#include "daemon/systemd_fd_store.h"
#include "daemon/xenstore_liveness.h"
#ifdef VTPM_TEST_BUILD
#include "daemon/scripted_engine.h"
#endif
#include "store/open_store.h"
#include "store/refusal.h"
#include "tpm/instance_manager.h"

namespace vtpm {
namespace {

// How long a worker a previous daemon left serving waits to be taken over
// by its instance's device before it is killed.
constexpr std::chrono::milliseconds kAdoptionWindow{60000};

class SignalSource {
 public:
  static Result<SignalSource> Create(std::initializer_list<int> sigs) {
    sigset_t set;
    sigemptyset(&set);
    for (int s : sigs) sigaddset(&set, s);
    if (sigprocmask(SIG_BLOCK, &set, nullptr) < 0) return Status::FromErrno(errno, "sigprocmask");
    UniqueFd fd(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!fd) return Status::FromErrno(errno, "signalfd");
    return SignalSource(std::move(fd));
  }
  int fd() const { return fd_.get(); }
  std::optional<int> Take() {
    signalfd_siginfo si;
    if (read(fd_.get(), &si, sizeof si) != sizeof si) return std::nullopt;
    return int(si.ssi_signo);
  }

 private:
  explicit SignalSource(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

#ifdef VTPM_TEST_BUILD
std::unique_ptr<EngineProvider> MakeScriptedEngines(const Config& cfg, EventLoop& loop) {
  std::set<Uuid> slow;
  for (auto& s : cfg.scripted_slow_uuids)
    if (auto u = Uuid::Parse(s); u.ok()) slow.insert(*u);
  return std::make_unique<ScriptedEngineProvider>(loop, cfg.scripted_delay, std::move(slow),
                                                  cfg.scripted_slow_delay);
}
#endif

constexpr std::chrono::seconds kStatusInterval{5};

// Connects to xenstored, waiting for it when it is not up yet (the daemon may
// start before xen.service has started it): the log and STATUS= say what it
// waits for, the watchdog is fed, and SIGTERM/SIGINT end the wait. Returns
// nullptr when a stop signal arrived first.
std::unique_ptr<XenStore> WaitForXenStore(SignalSource& sigs) {
  auto start = std::chrono::steady_clock::now();
  auto delay = std::chrono::milliseconds(50);
  uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
  for (int attempt = 0;; ++attempt) {
    auto xs = XenStore::Open();
    if (xs.ok()) {
      if (attempt > 0)
        LOG_INFO("xenstored is up: connected after {} ms",
                 std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start)
                     .count());
      return std::move(xs).value();
    }
    if (attempt == 0) {
      LOG_WARN("{}; waiting for xenstored (not ready until connected)", xs.status().message());
      sd_notifyf(0, "STATUS=waiting for xenstored: %s", xs.status().message().c_str());
    }
    if (watchdog) sd_notify(0, "WATCHDOG=1");
    pollfd p{sigs.fd(), POLLIN, 0};
    if (poll(&p, 1, int(delay.count())) > 0) {
      while (auto sig = sigs.Take()) {
        if (*sig == SIGHUP) continue;
        EVENT_INFO(kStopping, "{} received while waiting for xenstored: stopping", strsignal(*sig));
        sd_notify(0, "STOPPING=1");
        return nullptr;
      }
    }
    delay = std::min(delay * 2, std::chrono::milliseconds(1000));
  }
}

std::string StatusLine(const Backend& backend) {
  return "serving " + std::to_string(backend.List().size()) + " devices, " +
         std::to_string(backend.connected_count()) + " connected";
}

}  // namespace

int RunReinitialise(const Config& cfg) {
  if (cfg.engine != "libtpms") {
    LOG_ERROR("--reinitialise: engine '{}' keeps no store", cfg.engine);
    return kExitConfig;
  }
  Status st = ReinitialiseStore(StoreOptionsFor(cfg));
  if (st.ok()) return kExitOk;
  LOG_ERROR("--reinitialise refused: {}", st.message());
  return st.code() == Code::kAlreadyExists ? kExitRefuse : StartExitStatus(st);
}

int RunDaemon(const Config& cfg) {
  auto loop_r = EventLoop::Create();
  if (!loop_r.ok()) {
    LOG_ERROR("{}", loop_r.status().message());
    return kExitFailure;
  }
  EventLoop& loop = **loop_r;
  auto sigs = SignalSource::Create({SIGTERM, SIGINT, SIGHUP});
  if (!sigs.ok()) {
    LOG_ERROR("{}", sigs.status().message());
    return kExitFailure;
  }

  // The store (and the host TPM behind its master key) comes first: if it
  // refuses, nothing else is touched.
  std::unique_ptr<Store> store;
  std::unique_ptr<EngineProvider> engines;
  InstanceManager* instances = nullptr;
#ifdef VTPM_TEST_BUILD
  if (cfg.engine == "scripted") {
    LOG_WARN("engine 'scripted' selected: guests get a test echo engine, not a TPM");
    engines = MakeScriptedEngines(cfg, loop);
  }
#endif
  if (!engines) {  // [engine] kind = "libtpms"
    auto worker = WorkerPath(cfg);
    if (!worker.ok()) {
      EVENT_ERROR(kStartRefused, "refusing to start: {}", worker.status().message());
      return kExitConfig;
    }
    auto opened = OpenStore(StoreOptionsFor(cfg));
    if (!opened.ok()) {
      EVENT_ERROR(kStartRefused, "refusing to start: {}", opened.status().message());
      return StartExitStatus(opened.status());
    }
    store = std::move(opened).value();
    auto boot_id = ReadBootId();
    if (!boot_id.ok()) {
      LOG_ERROR("{}", boot_id.status().message());
      return kExitFailure;
    }
    InstanceManagerOptions io;
    io.worker.path = *worker;
    io.worker.identities = WorkerIdentities::Create(cfg.worker_uid_base, kWorkerUidCount, ResolveWorkerGroup());
    io.auto_create = cfg.auto_create;
    io.startup_clear = cfg.startup == "clear";
    io.resume_by_handle = cfg.resume == "handle";
    io.command_deadline = cfg.command_deadline;
    io.admin_deadline = cfg.admin_deadline;
    io.boot_id = *boot_id;
    io.start_slots = StartSlots::Create(loop, StartSlots::DefaultLimit());
    // Workers of a previous daemon that went on serving their guests
    // (design §2 "Workers outlive the daemon"); on the daemon's own data
    // path there are none to serve, and nobody takes them.
    auto fd_store = SystemdFdStore::Connect();
    auto adoptable = AdoptableWorkers::Collect(TakeListenFds(), fd_store);
    // Their flight records may hold the newest volatile state either way.
    io.adoptable = adoptable;
    if (cfg.data_path == "worker") {
      io.fd_store = fd_store;
      adoptable->ExpireAfter(loop, kAdoptionWindow);
    } else {
      adoptable->KillAll("the daemon serves the guests' pages itself ([xen] data_path = \"daemon\")");
    }
    auto im = std::make_unique<InstanceManager>(loop, *store, io);
    instances = im.get();
    engines = std::move(im);
    LOG_INFO("state store {} opened; host TPM {} ({})", cfg.state_dir, cfg.tcti,
             cfg.pcr_policy.empty() ? "master key bound to the storage key" : "master key sealed to host PCRs");
  }

  std::unique_ptr<XenStore> xs = WaitForXenStore(*sigs);
  if (!xs) return kExitOk;
  auto gnt = GrantTable::Open();
  auto evt = EventChannels::Open();
  auto hyp = Hypervisor::Open();
  for (const Status* st : {&gnt.status(), &evt.status(), &hyp.status()})
    if (!st->ok()) {
      LOG_ERROR("{}", st->message());
      return kExitUnavailable;
    }
  BackendOptions bopts;
  bopts.own_domid = cfg.backend_domid;
  bopts.allow_any_locality = cfg.allow_any_locality;
  bopts.worker_data_path = cfg.data_path == "worker" && cfg.engine == "libtpms";
  auto backend = Backend::Start(loop, *xs, **gnt, **evt, **hyp, *engines, bopts);
  if (!backend.ok()) {
    LOG_ERROR("cannot start the vTPM backend: {}", backend.status().message());
    return kExitUnavailable;
  }

  ControlOps ops(loop, **backend, store.get(), instances, cfg);
  auto control = ControlServer::Start(
      loop, cfg.ControlSocket(),
      [&ops](const ControlRequest& req, ControlServer::Reply reply) { ops.Handle(req, std::move(reply)); });
  if (!control.ok()) {
    LOG_ERROR("cannot open the control socket: {}", control.status().message());
    return kExitFailure;
  }

  Status st = loop.Add(sigs->fd(), EPOLLIN, [&](uint32_t) {
    while (auto s = sigs->Take()) {
      if (*s == SIGHUP) continue;
      EVENT_INFO(kStopping, "{} received: stopping (connected devices are left as they are)", strsignal(*s));
      sd_notify(0, "STOPPING=1");
      loop.Stop();
    }
  });
  if (!st.ok()) {
    LOG_ERROR("{}", st.message());
    return kExitFailure;
  }

  // WATCHDOG=1 only from a loop that runs and a xenstored that answers; a
  // lost connection ends the daemon with kExitXenstoreLost, which systemd
  // restarts (Restart=on-failure): the next daemon connects to the new
  // xenstored, registers its watches and re-adopts its devices.
  uint64_t watchdog_usec = 0;
  std::optional<std::chrono::milliseconds> watchdog_period;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0)
    watchdog_period = std::chrono::milliseconds(watchdog_usec / 2000);
  int exit_status = kExitOk;
  XenstoreLiveness liveness(loop, *xs, (*backend)->backend_root(), watchdog_period, [&](const Status& why) {
    EVENT_ERROR(kXenstoreLost,
                "lost the connection to xenstored ({}): exiting with status {} for a restart, which re-registers "
                "with xenstored and re-adopts the devices",
                why.message(), kExitXenstoreLost);
    sd_notifyf(0, "STATUS=lost the connection to xenstored: %s", why.message().c_str());
    exit_status = kExitXenstoreLost;
    loop.Stop();
  });
  EVENT_INFO(kStarted, "vtpmmgrd ready: backend for {} ({} devices known), control socket {}",
             (*backend)->backend_root(), (*backend)->List().size(), (*control)->path());
  // STATUS= (systemctl status) follows the device counts.
  std::string last_status = StatusLine(**backend);
  sd_notifyf(0, "READY=1\nSTATUS=%s", last_status.c_str());
  std::function<void()> status_tick = [&] {
    std::string now = StatusLine(**backend);
    if (now != last_status) sd_notifyf(0, "STATUS=%s", now.c_str());
    last_status = now;
    loop.AddTimer(kStatusInterval, status_tick);
  };
  loop.AddTimer(kStatusInterval, status_tick);

  st = loop.Run();
  control->reset();
  // However the daemon ends, the workers in the fd store go on serving and
  // the next daemon takes them over; on a stop the service manager empties
  // the store and they exit (design §2 "Workers outlive the daemon").
  if (instances) {
    if (size_t left = instances->LeaveWorkersRunning())
      LOG_INFO("{} worker(s) left serving their guests in the service manager's fd store for the next daemon", left);
  }
  backend->reset();
  engines.reset();
  store.reset();
  if (!st.ok()) {
    LOG_ERROR("event loop failed: {}", st.message());
    return kExitFailure;
  }
  return exit_status;
}

}  // namespace vtpm
