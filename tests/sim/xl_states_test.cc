// The simulator against real Xen: the vtpm device's xenbus writes recorded
// here (real xenstored's -T trace, the simulated toolstack and Linux guest,
// the real daemon) must match, writer by writer, what the e2e test recorded
// on real Xen 4.17 with xl and a Linux guest (tests/e2e/fixtures/states/).
// Normalisation follows tests/e2e/dom0/states.awk: "<writer> <be|fe> <node>
// [value]"; toolstack = a connection that wrote under /libxl, frontend = a
// connection of the guest simulator (the others that write frontend nodes;
// it uses two, where a Linux guest has one ring), backend = the rest.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "backend_test_util.h"

namespace vtpm::sim {
namespace {

using namespace std::chrono_literals;
const std::string kUuid = "7e2e0001-5eed-4c0d-9a1e-00000000e2e0";

struct Op {
  int conn;
  std::string op, path, value;
};

// Parses xenstored's -T trace ("CREATE connection 0x..", "IN 0x.. date time
// OP (args)", "OUT ..." replies) and returns the requests from byte offset
// `from` on, a transaction's only once it committed. Connection pointers are
// reused, so each CREATE (read from the start) starts a new id. (A client
// runs one transaction at a time here.)
std::vector<Op> ReadTrace(const std::string& file, size_t from) {
  std::ifstream in(file);
  std::map<std::string, int> ids;
  std::map<std::string, std::vector<Op>> in_tx;  // per connection, while a transaction is open
  std::map<std::string, bool> ending;            // TRANSACTION_END sent, reply pending
  int next_id = 1;
  std::vector<Op> out;
  static const std::regex kLine(R"(^(IN|OUT) (0x[0-9a-f]+) \S+ \S+ (\w+) \((.*)\)$)");
  size_t offset = 0;
  for (std::string line; std::getline(in, line); offset += line.size() + 1) {
    if (line.rfind("CREATE connection ", 0) == 0) {
      ids[line.substr(18)] = next_id++;
      continue;
    }
    std::smatch m;
    if (!std::regex_match(line, m, kLine)) continue;
    const std::string dir = m[1], conn = m[2], type = m[3];
    std::string args = m[4];
    if (!args.empty() && args.back() == ' ') args.pop_back();
    if (dir == "OUT") {
      // A transaction's writes count only once it commits (EAGAIN = retried).
      if (ending[conn] && (type == "TRANSACTION_END" || type == "ERROR")) {
        ending[conn] = false;
        if (type == "TRANSACTION_END" && args == "OK")
          for (auto& op : in_tx[conn]) out.push_back(op);
        in_tx.erase(conn);
      }
      continue;
    }
    if (type == "TRANSACTION_START") {
      in_tx[conn];
      continue;
    }
    if (type == "TRANSACTION_END") {
      if (args == "T") ending[conn] = true;
      else in_tx.erase(conn);
      continue;
    }
    if (offset < from) continue;
    auto sp = args.find(' ');
    Op op{ids.count(conn) ? ids[conn] : 0, type, args.substr(0, sp),
          sp == std::string::npos ? "" : args.substr(sp + 1)};
    if (in_tx.count(conn)) in_tx[conn].push_back(op);
    else out.push_back(op);
  }
  return out;
}

// {writer -> its lines, in order}
using PerWriter = std::map<std::string, std::vector<std::string>>;

PerWriter Normalise(const std::vector<Op>& ops, std::map<int, std::string>& writers) {
  static const std::regex kBe(R"(^/local/domain/0/backend/vtpm/\d+/\d+(/(.*))?$)");
  static const std::regex kFe(R"(^/local/domain/\d+/device/vtpm/\d+(/(.*))?$)");
  for (auto& o : ops)
    if ((o.op == "WRITE" || o.op == "RM") && o.path.rfind("/libxl/", 0) == 0) writers[o.conn] = "toolstack";
  for (auto& o : ops) {
    std::smatch m;
    if (o.op == "WRITE" && std::regex_match(o.path, m, kFe) && !writers.count(o.conn)) writers[o.conn] = "frontend";
  }
  PerWriter out;
  for (auto& o : ops) {
    std::smatch m;
    std::string side;
    if (std::regex_match(o.path, m, kBe)) side = "be";
    else if (std::regex_match(o.path, m, kFe)) side = "fe";
    else continue;
    std::string node = m[2];
    std::string who = writers.count(o.conn) ? writers[o.conn] : "backend";
    if (o.op == "RM" && node.empty()) {
      out[who].push_back(who + " " + side + " rm");
    } else if (o.op == "WRITE") {
      if (node == "state" || node == "online" || node == "feature-protocol-v2" || node == "ready")
        out[who].push_back(who + " " + side + " " + node + " " + o.value);
      else if (node == "ring-ref" || node == "event-channel")
        out[who].push_back(who + " " + side + " " + node);
    }
  }
  return out;
}

PerWriter Fixture(const std::string& name) {
  std::ifstream in(std::string(VTPM_SOURCE_DIR) + "/tests/e2e/fixtures/states/" + name);
  EXPECT_TRUE(in.good()) << "no fixture " << name;
  PerWriter out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out[line.substr(0, line.find(' '))].push_back(line);
  return out;
}

std::string Show(const PerWriter& p) {
  std::ostringstream s;
  for (auto& [w, lines] : p)
    for (auto& l : lines) s << "  " << l << "\n";
  return s.str();
}

class XlStatesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SimHostOptions o;
    o.xenstored_trace = true;
    auto h = SimHost::Start(o);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    host_ = std::move(h).value();
    auto c = XsClient::Open();
    ASSERT_TRUE(c.ok());
    xs_.emplace(std::move(c).value());
    ts_ = std::make_unique<Toolstack>(*xs_, host_->sim_dir());
    ASSERT_TRUE(ts_->InitHost().ok());
    daemon_ = std::make_unique<DaemonProcess>(*host_, DaemonOptions{});
    ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
    Mark();
  }
  void TearDown() override {
    guests_.clear();
    daemon_.reset();
    ts_.reset();
    xs_.reset();
    host_.reset();
  }
  std::string TraceFile() const { return host_->dir() + "/xenstored/trace.log"; }
  void Mark() {
    std::ifstream in(TraceFile(), std::ios::ate);
    mark_ = size_t(in.tellg());
  }
  // The writes since the last Mark() must match fixture `name`.
  void ExpectStates(const std::string& name) {
    std::this_thread::sleep_for(300ms);  // let the last writes land in the trace
    PerWriter got = Normalise(ReadTrace(TraceFile(), mark_), writers_);
    PerWriter want = Fixture(name);
    EXPECT_EQ(got, want) << "scenario " << name << "\nsimulator:\n" << Show(got) << "real Xen:\n" << Show(want);
    Mark();
  }
  GuestFrontend& Guest(uint32_t domid, uint32_t devid) {
    FrontendOptions o;
    o.domid = domid;
    o.devid = devid;
    auto g = GuestFrontend::Create(o);
    EXPECT_TRUE(g.ok()) << g.status().ToString();
    guests_.push_back(std::move(g).value());
    return *guests_.back();
  }

  std::unique_ptr<SimHost> host_;
  std::optional<XsClient> xs_;
  std::unique_ptr<Toolstack> ts_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::vector<std::unique_ptr<GuestFrontend>> guests_;
  std::map<int, std::string> writers_;
  size_t mark_ = 0;
};

TEST_F(XlStatesTest, CreateDetachAttachRestartDestroyMatchRealXen) {
  auto c = ts_->Create(9, {{0, kUuid}});
  ASSERT_TRUE(c.status.ok()) << c.Report();
  ASSERT_TRUE(Guest(9, 0).Connect().ok());
  ExpectStates("create");

  auto d = ts_->Detach(9, 0);
  ASSERT_TRUE(d.status.ok()) << d.Report();
  ExpectStates("detach");

  auto a = ts_->Attach(9, {std::nullopt, kUuid});
  ASSERT_TRUE(a.status.ok()) << a.Report();
  ASSERT_TRUE(Guest(9, a.devid).Connect().ok());
  ExpectStates("attach");

  daemon_->Kill();
  ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
  ASSERT_TRUE(guests_.back()->Transmit(TestCommand(0x65), 5s).ok());
  ExpectStates("restart");

  auto x = ts_->Destroy(9);
  ASSERT_TRUE(x.status.ok()) << x.Report();
  ExpectStates("destroy");
}

}  // namespace
}  // namespace vtpm::sim
