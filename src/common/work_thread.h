// WorkThread: one thread that runs jobs in submission order, off the event
// loop, for work whose length grows with the store (design §8 "Control
// socket and vtpmctl": list and backup of tens of thousands of instances).
//
// Run() may be called from any thread. The destructor lets the job in
// progress finish, drops the ones not started and joins the thread; a job
// must therefore hold no reference to anything destroyed before its
// WorkThread. Results go back to the loop with EventLoop::Post.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace vtpm {

class WorkThread {
 public:
  WorkThread();
  ~WorkThread();
  WorkThread(const WorkThread&) = delete;
  WorkThread& operator=(const WorkThread&) = delete;

  void Run(std::function<void()> job);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;  // last: started once the members above exist
};

}  // namespace vtpm
