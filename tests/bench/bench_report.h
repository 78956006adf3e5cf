// The benchmark's figures: samples and their quantiles, and the table it
// prints (Markdown, so README.md can carry it unchanged). A row holds our
// figure, its peer's, their ratio and a target verdict; a figure that could
// not be measured says so instead of showing a number.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace vtpm::bench {

// q-quantile (0..1, nearest rank) of `v`; nullopt when empty.
std::optional<double> Quantile(std::vector<double> v, double q);
inline std::optional<double> Median(std::vector<double> v) { return Quantile(std::move(v), 0.5); }

// "12.3 µs", "4.56 ms", "1.20 s" for a duration in seconds.
std::string FormatSeconds(double s);
// "123 KiB" / "12.3 MiB".
std::string FormatKib(double kib);
std::string FormatNumber(double v, int decimals = 0);

enum class Verdict { kNone, kMet, kMissed, kNotMeasured };

struct Row {
  std::string what;
  std::string ours;
  std::string peer;      // "swtpm 1.2: 80 µs"; empty when none
  std::string ratio;     // ours / peer; empty when none
  std::string target;    // "<= 1.5x swtpm"; empty when none
  Verdict verdict = Verdict::kNone;
};

class Report {
 public:
  // Declares a section; sections print in declaration order.
  void Section(const std::string& title);
  // Adds a row to a declared section (an undeclared one is appended).
  void Add(const std::string& section, Row row);
  // A row whose figure is missing, with the reason in place of the value.
  void NotMeasured(const std::string& section, const std::string& what, const std::string& why,
                   const std::string& target = {});
  // Markdown table (one per section) plus a summary of the targets.
  std::string Render() const;
  int missed() const;
  int not_measured() const;

 private:
  struct Block {
    std::string title;
    std::vector<Row> rows;
  };
  std::vector<Block> blocks_;
};

// Ratio text "1.23x", or "-" when the divisor is not positive.
std::string Ratio(double ours, double peer);
inline Verdict Check(bool met) { return met ? Verdict::kMet : Verdict::kMissed; }

}  // namespace vtpm::bench
