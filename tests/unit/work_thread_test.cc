// WorkThread: jobs run in order on one thread other than the caller's; the
// destructor finishes the running job, drops the waiting ones and joins.
#include "common/work_thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>
#include <vector>

namespace vtpm {
namespace {

TEST(WorkThreadTest, RunsJobsInOrderOffTheCallersThread) {
  std::vector<int> order;
  std::promise<std::thread::id> ran_on;
  std::promise<void> all_done;
  {
    WorkThread w;
    for (int i = 0; i < 5; ++i) w.Run([&order, i] { order.push_back(i); });
    w.Run([&] { ran_on.set_value(std::this_thread::get_id()); });
    w.Run([&] { all_done.set_value(); });
    all_done.get_future().wait();
  }
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_NE(ran_on.get_future().get(), std::this_thread::get_id());
}

TEST(WorkThreadTest, DestructorFinishesTheRunningJobAndDropsTheRest) {
  std::atomic<bool> first_finished{false};
  std::atomic<bool> second_ran{false};
  std::promise<void> started;
  std::promise<void> dropped;  // set when the second job's closure is destroyed
  std::shared_future<void> second_gone = dropped.get_future().share();
  {
    WorkThread w;
    w.Run([&, second_gone] {
      started.set_value();
      // Runs on until the destructor has dropped the second job.
      second_gone.wait_for(std::chrono::seconds(10));
      first_finished = true;
    });
    auto token = std::shared_ptr<int>(new int(0), [&](int* p) {
      delete p;
      dropped.set_value();
    });
    w.Run([&second_ran, token] { second_ran = true; });
    token.reset();
    started.get_future().wait();
  }
  EXPECT_TRUE(first_finished);
  EXPECT_FALSE(second_ran) << "a job not yet started ran after the destructor began";
}

}  // namespace
}  // namespace vtpm
