#include "tpm/host/tis_options.h"

#include <charconv>
#include <string>

#include "tpm/host/tis_registers.h"

namespace vtpm::tis {
namespace {

Status Bad(std::string_view tcti, const std::string& why) {
  return Status(Code::kInvalidArgument, "TCTI '" + std::string(tcti) + "': " + why +
                                            " (expected tis:locality=N[,base=0xADDRESS])");
}

// Whole-string unsigned parse in `radix`; nullopt-like false on any junk.
bool ParseUnsigned(std::string_view s, int radix, uint64_t& out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, radix);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

bool IsTisTcti(std::string_view tcti) { return tcti == "tis" || tcti.starts_with("tis:"); }

Result<Options> ParseOptions(std::string_view tcti) {
  if (!IsTisTcti(tcti)) return Bad(tcti, "not a tis: setting");
  std::string_view rest = tcti.size() > 3 ? tcti.substr(4) : std::string_view();
  Options o;
  bool seen_locality = false, seen_base = false;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (item.empty() || (comma != std::string_view::npos && rest.empty()))
      return Bad(tcti, "empty option");
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) return Bad(tcti, "option '" + std::string(item) + "' has no '=value'");
    std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    uint64_t v = 0;
    if (key == "locality") {
      if (seen_locality) return Bad(tcti, "option 'locality' given twice");
      seen_locality = true;
      if (value == "4") return Bad(tcti, "option 'locality=4' is reserved for the CPU; use 0-3");
      if (!ParseUnsigned(value, 10, v) || v >= kLocalities - 1)
        return Bad(tcti, "option 'locality' must be 0-3, not '" + std::string(value) + "'");
      o.locality = uint8_t(v);
    } else if (key == "base") {
      if (seen_base) return Bad(tcti, "option 'base' given twice");
      seen_base = true;
      if (!value.starts_with("0x") || !ParseUnsigned(value.substr(2), 16, v))
        return Bad(tcti, "option 'base' must be a hex address like 0xfed40000, not '" + std::string(value) + "'");
      if (v == 0 || v % 0x1000 != 0 || v > UINT64_MAX - kWindowSize)
        return Bad(tcti, "option 'base' must be a non-zero, 4 KiB aligned address, not '" + std::string(value) + "'");
      o.base = v;
    } else {
      return Bad(tcti, "unknown option '" + std::string(key) + "'");
    }
  }
  return o;
}

}  // namespace vtpm::tis
