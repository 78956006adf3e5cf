// Bench phases that build the scene: the simulated host with the daemon and
// both peers (SetUp), and the guests the later phases drive (the first guest
// of a new uuid, then the load guests BulkInsert registered). Attaching
// guests also yields the lifecycle rows (xl create, connect, first command).
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>

#include "bench/bench.h"
#include "bench/expect_success.h"
#include "bench/load.h"

namespace vtpm::bench {
namespace {

constexpr uint32_t kFirstDomid = 1, kLoadDomidBase = 10;

Status FirstAnswer(const BenchGuest& g, const Bytes& rsp) {
  return ExpectSuccess(rsp, "domain " + std::to_string(g.domid()) + ": first command answered");
}

}  // namespace

Status Bench::SetUp() {
  ASSIGN_OR_RETURN(host_, sim::SimHost::Start());
  ASSIGN_OR_RETURN(auto xs, sim::XsClient::Open());
  xs_.emplace(std::move(xs));
  RETURN_IF_ERROR(xs_->Write("/local/domain/0/name", "Domain-0"));
  RETURN_IF_ERROR(xs_->Write("/local/domain/0/domid", "0"));
  ts_ = std::make_unique<sim::Toolstack>(*xs_, host_->sim_dir());
  RETURN_IF_ERROR(ts_->InitHost());
  // The runtime directory is tmpfs on a real host (/run/vtpmmgrd): the
  // volatile copy written after every command must not hit a disk here.
  std::string shm = "/dev/shm/vtpm-bench-XXXXXX";
  if (!::mkdtemp(shm.data())) return Status::FromErrno(errno, "mkdtemp " + shm);
  shm_dir_ = shm;
  if (::mkdir((shm_dir_ + "/run").c_str(), 0700) != 0) return Status::FromErrno(errno, "mkdir run");
  if (::symlink((shm_dir_ + "/run").c_str(), (host_->dir() + "/run").c_str()) != 0)
    return Status::FromErrno(errno, "symlink run");
  const std::string host_tpm = host_->dir() + "/host-tpm";
  if (::mkdir(host_tpm.c_str(), 0700) != 0) return Status::FromErrno(errno, "mkdir " + host_tpm);
  ASSIGN_OR_RETURN(auto swtpm2, testing::Swtpm::Start(host_tpm));
  swtpm2_ = std::make_unique<testing::Swtpm>(std::move(swtpm2));
  sim::DaemonOptions d;
  d.log_level = "info";
  d.data_path = o_.data_path;
  d.extra_config = "[engine]\nkind = \"libtpms\"\nworker_path = \"" VTPM_WORKER_BIN "\"\n[host_tpm]\ntcti = \"" +
                   swtpm2_->tcti() + "\"\n";
  daemon_ = std::make_unique<sim::DaemonProcess>(*host_, d);
  const auto t0 = Clock::now();
  RETURN_IF_ERROR(daemon_->Start());
  Note(kScale, "first start to READY (provisions SRK, storage key, master key in the host TPM)",
       Us(Seconds(Clock::now() - t0)));
  const auto s0 = Clock::now();
  ASSIGN_OR_RETURN(swtpm12_, Swtpm12::Start(host_->dir() + "/swtpm12"));
  swtpm12_start_ = Seconds(Clock::now() - s0);
  return Status::Ok();
}

Result<Bench::AttachTimes> Bench::Attach(uint32_t domid, const std::string& uuid, bool first_command) {
  AttachTimes t;
  auto t0 = Clock::now();
  auto r = ts_->Create(domid, {{0u, uuid}});
  t.create = Seconds(Clock::now() - t0);
  if (!r.status.ok()) return r.status.Annotate(r.Report());
  ASSIGN_OR_RETURN(auto g, BenchGuest::Connect(*xs_, host_->sim_dir(), domid, 0, &t.init_to_connected));
  guests_.push_back(std::move(g));
  if (!first_command) return t;
  t0 = Clock::now();
  ASSIGN_OR_RETURN(Bytes rsp, guests_.back()->Transact(PcrReadCommand(0)));
  t.first_command = Seconds(Clock::now() - t0);
  RETURN_IF_ERROR(FirstAnswer(*guests_.back(), rsp));
  return t;
}

Status Bench::FirstCommandsTogether(size_t from) {
  for (size_t i = from; i < guests_.size(); ++i) RETURN_IF_ERROR(guests_[i]->Submit(PcrReadCommand(0)));
  const auto deadline = Clock::now() + std::chrono::minutes(5);
  std::vector<pollfd> fds;
  for (size_t i = from; i < guests_.size(); ++i) fds.push_back({guests_[i]->fd(), POLLIN, 0});
  size_t left = fds.size();
  std::vector<bool> done(fds.size(), false);
  while (left > 0) {
    if (Clock::now() > deadline) return Status(Code::kTimeout, std::to_string(left) + " guests unanswered after 5 min");
    ::poll(fds.data(), fds.size(), 100);
    for (size_t k = 0; k < fds.size(); ++k) {
      if (done[k] || !guests_[from + k]->Finished()) continue;
      ASSIGN_OR_RETURN(Bytes rsp, guests_[from + k]->Response());
      RETURN_IF_ERROR(FirstAnswer(*guests_[from + k], rsp));
      done[k] = true;
      fds[k].fd = -1;
      --left;
    }
  }
  return Status::Ok();
}

Status Bench::AttachFirstGuest() {
  first_uuid_ = sim::RandomUuid();
  ASSIGN_OR_RETURN(AttachTimes t, Attach(kFirstDomid, first_uuid_));
  Note(kLifecycle, "first command after attach of a new uuid (auto-create: manufacture + worker start)",
       Us(t.first_command));
  return Status::Ok();
}

// The first kSequentialAttaches guests one after another (a quiet host:
// their first command shows worker start-up); the rest attach in a row
// and get their first command together.
// Meanwhile the first guest sends TPM_PCRRead back to back (issue 16, item 4:
// attaches must not hold other guests up).
Status Bench::AttachLoadGuests() {
  constexpr size_t kSequentialAttaches = 8;
  std::vector<double> creates, connects, firsts, during[2];  // [0] attaches, [1] first commands together
  std::atomic<bool> attaching{true};
  std::atomic<int> stage{0};
  Status reader_status;
  BenchGuest* first = guests_.front().get();
  std::thread reader([&] {
    for (uint32_t n = 0; attaching && reader_status.ok(); ++n) {
      const auto t0 = Clock::now();
      auto rsp = first->Transact(PcrReadCommand(n));
      reader_status = rsp.ok() ? ExpectSuccess(*rsp, "TPM_PCRRead during the attaches") : rsp.status();
      during[stage].push_back(Seconds(Clock::now() - t0));
    }
  });
  auto attach_all = [&]() -> Result<double> {
    for (size_t i = 0; i < load_uuids_.size(); ++i) {
      const bool alone = i < kSequentialAttaches;
      ASSIGN_OR_RETURN(AttachTimes t, Attach(kLoadDomidBase + uint32_t(i), load_uuids_[i], alone));
      creates.push_back(t.create);
      connects.push_back(t.init_to_connected);
      if (alone) firsts.push_back(t.first_command);
    }
    stage = 1;
    const auto t0 = Clock::now();
    const size_t together = guests_.size() - std::min(guests_.size(), size_t(1) + kSequentialAttaches);
    RETURN_IF_ERROR(FirstCommandsTogether(guests_.size() - together));
    return Seconds(Clock::now() - t0);
  };
  Result<double> attached = attach_all();
  attaching = false;
  reader.join();
  if (!attached.ok()) return attached.status();
  RETURN_IF_ERROR(reader_status);
  const double storm = *attached;
  const size_t together = guests_.size() - std::min(guests_.size(), size_t(1) + kSequentialAttaches);
  const std::string m = " (median of " + std::to_string(creates.size()) + ")";
  Note(kLifecycle, "xl create: backend dir written to backend InitWait (toolstack wall)" + m, Us(Med(creates)));
  Note(kLifecycle, "frontend Initialised to backend Connected" + m, Us(Med(connects)));
  Note(kLifecycle,
       "first command after attach of a registered instance (worker start + TPM_Startup + command; median of " +
           std::to_string(firsts.size()) + ")",
       Us(Med(firsts)));
  if (together > 0)
    Note(kLifecycle,
         std::to_string(together) + " more guests attached, first commands sent together: all answered after",
         Us(storm));
  const char* when[2] = {"while the others attach one by one", "while their first commands run together"};
  for (int k = 0; k < 2; ++k)
    Note(kLifecycle,
         std::string("the first guest's TPM_PCRRead round trip ") + when[k] + " (" + std::to_string(during[k].size()) +
             " commands, back to back): median / longest",
         Us(Med(during[k])) + " / " +
             Us(during[k].empty() ? 0.0 : *std::max_element(during[k].begin(), during[k].end())));
  return Status::Ok();
}

}  // namespace vtpm::bench
