// StateRecorder: every value a xenstore node takes, as seen through a watch
// on its own connection (a background thread). Used to prove what the
// backend wrote - e.g. that a restart never wrote 5 or 6.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vtpm::sim {

class StateRecorder {
 public:
  explicit StateRecorder(std::string path);
  ~StateRecorder();
  StateRecorder(const StateRecorder&) = delete;
  StateRecorder& operator=(const StateRecorder&) = delete;
  // Distinct consecutive values seen so far ("<absent>" when removed).
  std::vector<std::string> values() const;
  bool Saw(const std::string& v) const;

 private:
  void Run();
  std::string path_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<std::string> values_;
  std::thread thread_;
};

}  // namespace vtpm::sim
