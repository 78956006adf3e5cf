// The public areas of the objects vtpmmgrd creates in the host TPM 2.0, and
// the PCR selection of its policy (doc/design.md §5). Used by host_tpm.cc
// only; kept apart because they are fixed data: changing one changes the
// keys every existing store was provisioned with.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace vtpm {

// RSA-2048 storage primary as the TCG provisioning guidance defines it
// (unique = 256 zero bytes): the SRK.
TPM2B_PUBLIC SrkTemplate();
// ECC P-256 endorsement primary whose Name identifies the TPM: it depends
// only on the endorsement seed, which TPM2_Clear keeps, so it tells
// "other TPM" from "cleared".
TPM2B_PUBLIC TpmIdTemplate();
// RSA-2048 OAEP-SHA256 decryption key under the SRK: the SK that unbinds the
// master key.
TPM2B_PUBLIC SkTemplate();
// A SHA-256 bank selection of `pcrs`; fails for an index outside 0-23.
Result<TPML_PCR_SELECTION> Sha256Selection(const std::vector<uint32_t>& pcrs);

}  // namespace vtpm
