#include "harness/state_recorder.h"

#include <poll.h>

#include <algorithm>
#include <cstdlib>

extern "C" {
#include <xenstore.h>
}

namespace vtpm::sim {

StateRecorder::StateRecorder(std::string path) : path_(std::move(path)) {
  std::atomic<bool> ready{false};
  thread_ = std::thread([this, &ready] {
    xs_handle* h = xs_open(0);
    if (!h) {
      ready = true;
      return;
    }
    xs_watch(h, path_.c_str(), "rec");
    ready = true;
    while (!stop_) {
      pollfd p{xs_fileno(h), POLLIN, 0};
      poll(&p, 1, 20);
      while (char** ev = xs_check_watch(h)) {
        free(ev);
        unsigned len = 0;
        void* v = xs_read(h, XBT_NULL, path_.c_str(), &len);
        std::string s = v ? std::string(static_cast<char*>(v), len) : "<absent>";
        free(v);
        std::lock_guard<std::mutex> l(mu_);
        if (values_.empty() || values_.back() != s) values_.push_back(s);
      }
    }
    xs_close(h);
  });
  while (!ready) std::this_thread::yield();
}

StateRecorder::~StateRecorder() {
  stop_ = true;
  thread_.join();
}

std::vector<std::string> StateRecorder::values() const {
  std::lock_guard<std::mutex> l(mu_);
  return values_;
}

bool StateRecorder::Saw(const std::string& v) const {
  auto vals = values();
  return std::find(vals.begin(), vals.end(), v) != vals.end();
}

}  // namespace vtpm::sim
