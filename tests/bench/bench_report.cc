#include "bench/bench_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace vtpm::bench {
namespace {

// `v` with `decimals` digits after the point, then `unit`.
std::string Fixed(double v, int decimals, const char* unit = "") {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f%s", decimals, v, unit);
  return buf;
}

const char* VerdictText(Verdict v) {
  switch (v) {
    case Verdict::kMet: return "MET";
    case Verdict::kMissed: return "**MISSED**";
    case Verdict::kNotMeasured: return "NOT MEASURED";
    case Verdict::kNone: break;
  }
  return "";
}

}  // namespace

std::optional<double> Quantile(std::vector<double> v, double q) {
  if (v.empty()) return std::nullopt;
  std::sort(v.begin(), v.end());
  size_t rank = size_t(std::ceil(q * double(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

std::string FormatSeconds(double s) {
  if (s < 1e-3) return Fixed(s * 1e6, 1, " µs");
  if (s < 1) return Fixed(s * 1e3, 2, " ms");
  return Fixed(s, 2, " s");
}

std::string FormatKib(double kib) {
  return kib < 10 * 1024 ? Fixed(kib, 0, " KiB") : Fixed(kib / 1024, 1, " MiB");
}

std::string FormatNumber(double v, int decimals) { return Fixed(v, decimals); }

std::string Ratio(double ours, double peer) { return peer > 0 ? Fixed(ours / peer, 2, "x") : "-"; }

void Report::Section(const std::string& title) { blocks_.push_back({title, {}}); }

void Report::Add(const std::string& section, Row row) {
  auto it = std::find_if(blocks_.begin(), blocks_.end(), [&](const Block& b) { return b.title == section; });
  if (it == blocks_.end()) {
    Section(section);
    it = blocks_.end() - 1;
  }
  it->rows.push_back(std::move(row));
}

void Report::NotMeasured(const std::string& section, const std::string& what, const std::string& why,
                         const std::string& target) {
  Add(section, {what, "not measured: " + why, "", "", target, Verdict::kNotMeasured});
}

std::string Report::Render() const {
  std::ostringstream out;
  for (const Block& b : blocks_) {
    if (b.rows.empty()) continue;
    if (!b.title.empty()) out << "\n**" << b.title << "**\n\n";
    out << "| measure | vtpmmgrd | peer | ratio | target | result |\n";
    out << "|---|---|---|---|---|---|\n";
    for (const Row& r : b.rows)
      out << "| " << r.what << " | " << r.ours << " | " << r.peer << " | " << r.ratio << " | " << r.target
          << " | " << VerdictText(r.verdict) << " |\n";
  }
  int met = 0;
  for (const Block& b : blocks_)
    for (const Row& r : b.rows) met += r.verdict == Verdict::kMet;
  out << "\nTargets: " << met << " met, " << missed() << " missed, " << not_measured() << " not measured.\n";
  return out.str();
}

int Report::missed() const {
  int n = 0;
  for (const Block& b : blocks_)
    for (const Row& r : b.rows) n += r.verdict == Verdict::kMissed;
  return n;
}

int Report::not_measured() const {
  int n = 0;
  for (const Block& b : blocks_)
    for (const Row& r : b.rows) n += r.verdict == Verdict::kNotMeasured;
  return n;
}

}  // namespace vtpm::bench
