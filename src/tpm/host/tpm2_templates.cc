#include "tpm/host/tpm2_templates.h"

#include <string>

namespace vtpm {
namespace {

constexpr TPMA_OBJECT kStorageKeyAttrs = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                         TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                                         TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
constexpr TPMT_SYM_DEF_OBJECT kAes128Cfb = {TPM2_ALG_AES, {.aes = 128}, {.aes = TPM2_ALG_CFB}};

}  // namespace

TPM2B_PUBLIC SrkTemplate() {  // TCG TPM v2.0 Provisioning Guidance, RSA-2048 storage key
  TPM2B_PUBLIC t{};
  auto& p = t.publicArea;
  p.type = TPM2_ALG_RSA;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = kStorageKeyAttrs;
  p.parameters.rsaDetail.symmetric = kAes128Cfb;
  p.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
  p.parameters.rsaDetail.keyBits = 2048;
  p.unique.rsa.size = 256;  // 256 zero bytes
  return t;
}

TPM2B_PUBLIC TpmIdTemplate() {
  TPM2B_PUBLIC t{};
  auto& p = t.publicArea;
  p.type = TPM2_ALG_ECC;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = kStorageKeyAttrs;
  p.parameters.eccDetail.symmetric = kAes128Cfb;
  p.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
  p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  p.unique.ecc.x.size = 32;
  p.unique.ecc.y.size = 32;
  return t;
}

TPM2B_PUBLIC SkTemplate() {
  TPM2B_PUBLIC t{};
  auto& p = t.publicArea;
  p.type = TPM2_ALG_RSA;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                       TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_DECRYPT;
  p.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
  p.parameters.rsaDetail.scheme.scheme = TPM2_ALG_OAEP;
  p.parameters.rsaDetail.scheme.details.oaep.hashAlg = TPM2_ALG_SHA256;
  p.parameters.rsaDetail.keyBits = 2048;
  return t;
}

Result<TPML_PCR_SELECTION> Sha256Selection(const std::vector<uint32_t>& pcrs) {
  TPML_PCR_SELECTION s{};
  s.count = 1;
  s.pcrSelections[0].hash = TPM2_ALG_SHA256;
  s.pcrSelections[0].sizeofSelect = 3;
  for (uint32_t i : pcrs) {
    if (i >= 24) return Status(Code::kInvalidArgument, "PCR index " + std::to_string(i) + " is not 0-23");
    s.pcrSelections[0].pcrSelect[i / 8] |= uint8_t(1u << (i % 8));
  }
  return s;
}

}  // namespace vtpm
