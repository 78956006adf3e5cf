// SqliteStore's store thread (design §2 "The store thread"): the queue of
// commit jobs, group commit with per-member retry, the delivered marks that
// ride along with a group, and the yield that lets long readers (List,
// Backup) give waiting commits the database between two chunks.
#include <algorithm>
#include <future>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "common/log.h"
#include "store/sqlite_store.h"
#include "store/sqlite_store_internal.h"

namespace vtpm {

using sqlite_store_internal::NoInstance;
using sqlite_store_internal::Now;
using sqlite_store_internal::U;

void SqliteStore::Enqueue(Job job) {
  {
    std::lock_guard<std::mutex> l(q_mu_);
    queue_.push_back(std::move(job));
  }
  q_cv_.notify_one();
}

void SqliteStore::Commit(CommitRequest req, std::function<void(Result<uint64_t>)> done) {
  auto shared = std::make_shared<CommitRequest>(std::move(req));
  Enqueue(Job{[this, shared] { return ApplyCommit(*shared); }, std::move(done)});
}

Result<uint64_t> SqliteStore::CommitSync(CommitRequest req) {
  std::promise<Result<uint64_t>> p;
  auto f = p.get_future();
  Commit(std::move(req), [&p](Result<uint64_t> r) { p.set_value(std::move(r)); });
  return f.get();
}

Status SqliteStore::MarkDelivered(const Uuid& uuid, uint64_t sequence) {
  std::lock_guard<std::mutex> l(q_mu_);
  uint64_t& pending = delivered_[uuid];
  pending = std::max(pending, sequence);
  return Status::Ok();
}

// The job that applies the delivered marks taken from delivered_; put first
// in a group, before any commit that replaces a marked record.
SqliteStore::Job SqliteStore::DeliveredJob(std::map<Uuid, uint64_t> marks) {
  auto shared = std::make_shared<std::map<Uuid, uint64_t>>(std::move(marks));
  return Job{[this, shared]() -> Result<uint64_t> {
               for (const auto& [uuid, sequence] : *shared) {
                 ASSIGN_OR_RETURN(Stmt * s, Query("UPDATE records SET delivered=1 WHERE uuid=? AND sequence=?"));
                 RETURN_IF_ERROR(s->Bind(1, U(uuid)).Bind(2, int64_t(sequence)).Run());
               }
               return uint64_t(0);
             },
             [shared](Result<uint64_t> r) {
               if (!r.ok())
                 LOG_WARN("marking {} records delivered failed: {}", shared->size(), r.status().message());
             },
             /*counted=*/false};
}

Status SqliteStore::TouchAttached(const Uuid& uuid) {
  // Queued like MarkDelivered: the attach time is informational and the
  // loop must not wait for an fsync.
  Enqueue(Job{[this, uuid]() -> Result<uint64_t> {
                ASSIGN_OR_RETURN(Stmt * s, Query("UPDATE instances SET last_attached=? WHERE uuid=?"));
                RETURN_IF_ERROR(s->Bind(1, Now()).Bind(2, U(uuid)).Run());
                if (db_.Changes() == 0) return NoInstance(uuid);
                return uint64_t(0);
              },
              [uuid](Result<uint64_t> r) {
                if (!r.ok()) LOG_WARN("instance {}: recording the attach time failed: {}", uuid.ToString(),
                                      r.status().message());
              }});
  return Status::Ok();
}

void SqliteStore::YieldToCommits() {
  std::unique_lock<std::mutex> l(q_mu_);
  const uint64_t target = groups_ + (in_group_ ? 1 : 0) + (queue_.empty() ? 0 : 1);
  group_done_cv_.wait(l, [&] { return groups_ >= target || stopping_; });
}

void SqliteStore::ThreadMain() {
  for (;;) {
    std::vector<Job> group;
    {
      std::unique_lock<std::mutex> l(q_mu_);
      q_cv_.wait(l, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && delivered_.empty()) return;  // stopping and drained
      if (!delivered_.empty()) group.push_back(DeliveredJob(std::exchange(delivered_, {})));
      while (!queue_.empty() && group.size() < settings_.max_group) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      in_group_ = true;
    }
    RunGroup(group);
  }
}

Status SqliteStore::RunAlone(Job& job, Result<uint64_t>* out) {
  RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
  *out = job.apply();
  Status st = out->ok() ? db_.Exec("COMMIT") : out->status();
  if (!st.ok()) (void)Rollback();
  return st;
}

void SqliteStore::RunGroup(std::vector<Job>& group) {
  std::vector<Result<uint64_t>> results;
  results.reserve(group.size());
  {
    std::lock_guard<std::mutex> l(db_mu_);
    Status st = db_.Exec("BEGIN IMMEDIATE");
    if (st.ok()) {
      for (Job& j : group) {
        results.push_back(j.apply());
        if (!results.back().ok()) {
          st = results.back().status();
          break;
        }
      }
      if (st.ok()) st = db_.Exec("COMMIT");
    }
    if (!st.ok()) {
      (void)Rollback();
      results.clear();
      if (group.size() == 1) {
        results.push_back(st);
      } else {
        // Retry each member alone: one member's failure is not another's.
        for (Job& j : group) {
          Result<uint64_t> r = Status(Code::kInternal, "not run");
          Status alone = RunAlone(j, &r);
          results.push_back(alone.ok() ? std::move(r) : Result<uint64_t>(alone));
        }
      }
    }
  }
  {
    std::lock_guard<std::mutex> l(q_mu_);
    commits_ += size_t(std::count_if(group.begin(), group.end(), [](const Job& j) { return j.counted; }));
    ++groups_;
    in_group_ = false;
  }
  group_done_cv_.notify_all();
  for (size_t i = 0; i < group.size(); ++i)
    if (group[i].done) group[i].done(std::move(results[i]));
}

}  // namespace vtpm
