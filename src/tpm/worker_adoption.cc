#include "tpm/worker_adoption.h"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string_view>

#include "common/background_reap.h"
#include "common/log.h"

namespace vtpm {
namespace {

constexpr std::string_view kPrefix = "vtpm-worker-";

// True once the process behind `pidfd` has ended.
bool Ended(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return poll(&p, 1, 0) != 0;
}

// True once the other end of `socket` is closed.
bool Hung(int socket) {
  pollfd p{socket, POLLRDHUP, 0};
  return poll(&p, 1, 0) != 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL));
}

bool IsPidfd(int fd) {
  char path[64], target[64] = {};
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, target, sizeof target - 1);
  return n > 0 && std::string_view(target, size_t(n)) == "anon_inode:[pidfd]";
}

// "Key:\t<number>" from a /proc file; -1 when absent.
long ProcField(const std::string& path, std::string_view key) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, key.size(), key) != 0) continue;
    return std::strtol(line.c_str() + key.size(), nullptr, 10);
  }
  return -1;
}

}  // namespace

std::string WorkerFdName(const Uuid& uuid) { return std::string(kPrefix) + uuid.ToString(); }

StoredWorker& StoredWorker::operator=(StoredWorker&& o) noexcept {
  if (this != &o) {
    Reset();
    store_ = std::move(o.store_);
    name_ = std::move(o.name_);
  }
  return *this;
}

void StoredWorker::Reset() {
  if (store_) store_->Remove(name_);
  store_.reset();
}

std::shared_ptr<AdoptableWorkers> AdoptableWorkers::Collect(std::vector<std::pair<std::string, UniqueFd>> fds,
                                                            std::shared_ptr<WorkerFdStore> store) {
  auto self = std::make_shared<AdoptableWorkers>();
  self->store_ = store;
  std::map<std::string, std::vector<UniqueFd>> named;
  for (auto& [name, fd] : fds) named[name].push_back(std::move(fd));
  for (auto& [name, group] : named) {
    auto uuid = name.compare(0, kPrefix.size(), kPrefix) == 0 ? Uuid::Parse(std::string_view(name).substr(kPrefix.size()))
                                                              : Result<Uuid>(Status(Code::kInvalidArgument, "not ours"));
    if (!uuid.ok()) {
      LOG_WARN("the service manager passed {} descriptor(s) named '{}', which is no worker's: closed", group.size(),
               name);
      if (store) store->Remove(name);
      continue;
    }
    AdoptableWorker w;
    w.uuid = *uuid;
    UniqueFd pidfd, flight;
    for (UniqueFd& fd : group) {
      struct stat st {};
      if (fstat(fd.get(), &st) != 0) continue;
      if (S_ISSOCK(st.st_mode)) w.socket = std::move(fd);
      else if (S_ISREG(st.st_mode)) flight = std::move(fd);
      else if (IsPidfd(fd.get())) pidfd = std::move(fd);
    }
    auto drop = [&](const std::string& why) {
      LOG_WARN("uuid={}: the worker a previous daemon left in the fd store is not taken over: {}", name.substr(kPrefix.size()),
               why);
      if (store) store->Remove(name);
    };
    Result<FlightPage> page = flight.valid() ? FlightPage::Adopt(std::move(flight))
                                             : Result<FlightPage>(Status(Code::kNotFound, "no flight record"));
    if (page.ok()) page->Revoke();
    // The worker may be gone; the state it kept in its flight record is not.
    auto keep_remains = [&] {
      if (page.ok()) self->remains_.emplace(w.uuid, std::move(page).value());
    };
    if (!w.socket.valid() || !page.ok() || !pidfd.valid()) {
      drop(!page.ok() && page.status().code() != Code::kNotFound
               ? page.status().ToString()
               : "its entry lacks the socket, the flight record or the pidfd");
      if (pidfd.valid() && !Ended(pidfd.get())) {
        const long pid = ProcField("/proc/self/fdinfo/" + std::to_string(pidfd.get()), "Pid:");
        if (pid > 0) ChildProcess::Adopt(pid_t(pid), std::move(pidfd)).Kill();
      }
      keep_remains();
      continue;
    }
    const long pid = ProcField("/proc/self/fdinfo/" + std::to_string(pidfd.get()), "Pid:");
    if (pid <= 0 || Ended(pidfd.get()) || Hung(w.socket.get())) {
      drop("it has ended");
      keep_remains();
      continue;
    }
    const long uid = ProcField("/proc/" + std::to_string(pid) + "/status", "Uid:");
    // Read after the pid: still running now, so that pid was this worker's.
    if (uid < 0 || Ended(pidfd.get())) {
      drop("it has ended");
      keep_remains();
      continue;
    }
    w.flight = std::move(page).value();
    w.uid = uid_t(uid);
    const FlightRecord& rec = w.flight.record();
    w.link = GuestLink{rec.link_domid, rec.link_ring_ref, rec.link_remote_port};
    w.process = ChildProcess::Adopt(pid_t(pid), std::move(pidfd));
    LOG_INFO("domid={} uuid={}: found worker {} of a previous daemon in the fd store, still serving its guest",
             w.link.domid, w.uuid.ToString(), pid);
    self->workers_.emplace(w.uuid, std::move(w));
  }
  return self;
}

const FlightPage* AdoptableWorkers::Flight(const Uuid& uuid) const {
  if (auto it = workers_.find(uuid); it != workers_.end()) return &it->second.flight;
  if (auto it = remains_.find(uuid); it != remains_.end()) return &it->second;
  return nullptr;
}

std::optional<AdoptableWorker> AdoptableWorkers::Take(const Uuid& uuid) {
  auto it = workers_.find(uuid);
  if (it == workers_.end()) return std::nullopt;
  AdoptableWorker w = std::move(it->second);
  workers_.erase(it);
  return w;
}

void AdoptableWorkers::ExpireAfter(EventLoop& loop, std::chrono::milliseconds after) {
  if (workers_.empty()) return;
  std::weak_ptr<AdoptableWorkers> weak = weak_from_this();
  EventLoop* l = &loop;
  loop.AddTimer(after, [weak, l] {
    if (auto self = weak.lock()) self->DropAll(*l, "no device of its instance came up with its guest link");
  });
}

void AdoptableWorkers::KillAll(const char* why) { EndAll(nullptr, why); }

void AdoptableWorkers::DropAll(EventLoop& loop, const char* why) { EndAll(&loop, why); }

void AdoptableWorkers::EndAll(EventLoop* loop, const char* why) {
  for (auto& [uuid, w] : workers_) {
    LOG_WARN("domid={} uuid={}: killing worker {} of a previous daemon: {}", w.link.domid, uuid.ToString(),
             w.process.pid(), why);
    if (store_) store_->Remove(WorkerFdName(uuid));
    if (loop)
      ReapInBackground(*loop, std::move(w.process), std::chrono::milliseconds(0));
    else
      w.process.Kill();  // returns once its pidfd says it has ended
    remains_.insert_or_assign(uuid, std::move(w.flight));  // revoked when found
  }
  workers_.clear();
}

}  // namespace vtpm
