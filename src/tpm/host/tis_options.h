// The "tis:" host TPM transport setting: [host_tpm] tcti = "tis:locality=0"
// or "tis:locality=N,base=0x..." selects the in-process TIS FIFO TCTI over
// /dev/mem instead of a TCTI from the tpm2-tss loader. Pure parsing, no I/O.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/status.h"

namespace vtpm::tis {

struct Options {
  uint8_t locality = 0;           // 0-3 (4 is the CPU's, not software's)
  uint64_t base = 0xfed40000;     // physical address of locality 0's registers
};

// True for "tis" and "tis:..." (everything else goes to the TCTI loader).
bool IsTisTcti(std::string_view tcti);

// Parses the whole setting ("tis", "tis:", "tis:locality=1,base=0xfed40000").
// kInvalidArgument names the offending option on any unknown key, repeated
// key, empty item, or out-of-range / malformed value.
Result<Options> ParseOptions(std::string_view tcti);

}  // namespace vtpm::tis
