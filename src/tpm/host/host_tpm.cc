// With tpm2_templates.cc, the only code that includes tpm2-tss headers.
#include "tpm/host/host_tpm.h"

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include <cstdio>
#include <cstring>
#include <optional>

#include "common/log.h"
#include "store/refusal.h"
#include "tpm/host/rsa_oaep.h"
#include "tpm/host/tis_devmem.h"
#include "tpm/host/tis_tcti.h"
#include "tpm/host/tpm2_templates.h"
#include "tpm/host/tss2_log.h"

namespace vtpm {
namespace {

// OAEP label for the bound master key; the TPM requires the trailing NUL.
constexpr uint8_t kBindLabel[] = "VTPMMGRD MASTER KEY";  // sizeof includes the NUL

std::string RcText(TSS2_RC rc) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%x", rc);
  return std::string(hex) + " (" + Tss2_RC_Decode(rc) + ")";
}

Status TpmFail(const std::string& what, TSS2_RC rc) {
  return Status(Code::kTpmError, "host TPM: " + what + " failed: " + RcText(rc), int64_t(rc));
}

// TPM_RC_LOCKOUT: a format-zero warning, without handle or session number.
bool IsLockout(TSS2_RC rc) { return rc == TPM2_RC_LOCKOUT; }

Status LockoutRefusal(const std::string& what) {
  return Refuse(Refusal::kTpmLockout,
                "host TPM: " + what + " refused with TPM_RC_LOCKOUT: the TPM is in dictionary-attack lockout "
                "(too many failed authorisations by some user of the TPM) and refuses to use the store's key "
                "until its lockout recovery time has passed or the lockout hierarchy's owner resets it "
                "(tpm2_dictionarylockout --clear-lockout); the store itself is intact");
}

bool IsPolicyFail(TSS2_RC rc) {
  // Format-one TPM response code TPM_RC_POLICY_FAIL (0x09D) with any session/parameter number.
  return (rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER && (rc & 0x80) && (rc & 0x3f) == (TPM2_RC_POLICY_FAIL & 0x3f);
}

Bytes NameBytes(const TPM2B_NAME& n) { return Bytes(n.name, n.name + n.size); }

template <typename T, TSS2_RC (*Marshal)(const T*, uint8_t*, size_t, size_t*)>
Result<Bytes> MarshalTo(const T& v) {
  Bytes out(sizeof(T));
  size_t off = 0;
  TSS2_RC rc = Marshal(&v, out.data(), out.size(), &off);
  if (rc) return TpmFail("marshalling", rc);
  out.resize(off);
  return out;
}

template <typename T, TSS2_RC (*Unmarshal)(const uint8_t*, size_t, size_t*, T*)>
Result<T> UnmarshalFrom(ByteView b, const char* what) {
  T v{};
  size_t off = 0;
  if (Unmarshal(b.data(), b.size(), &off, &v) != TSS2_RC_SUCCESS || off != b.size())
    return Refuse(Refusal::kBadManagerRecord, std::string("stored ") + what + " is malformed");
  return v;
}

}  // namespace

std::string PcrListString(const std::vector<uint32_t>& pcrs) {
  std::string s = "sha256:";
  for (size_t i = 0; i < pcrs.size(); ++i) s += (i ? "," : "") + std::to_string(pcrs[i]);
  return s;
}

struct HostTpm::Impl {
  TSS2_TCTI_CONTEXT* tcti = nullptr;
  std::unique_ptr<tis::Tcti> tis;  // "tis:" transport: owns `tcti`
  ESYS_CONTEXT* esys = nullptr;

  ~Impl() {
    if (esys) Esys_Finalize(&esys);
    if (tis) tis.reset();
    else if (tcti) Tss2_TctiLdr_Finalize(&tcti);
  }

  // "tis:...": our TIS FIFO TCTI over the register window.
  Status OpenTis(const HostTpmConfig& cfg) {
    auto opts = tis::ParseOptions(cfg.tcti);
    if (!opts.ok()) return opts.status();
    Result<std::unique_ptr<tis::Registers>> window = Status(Code::kInternal, "unset");
    if (cfg.open_tis_window) {
      window = cfg.open_tis_window(*opts);
    } else {
      auto w = tis::DevMemWindow::Open(opts->base);
      if (w.ok()) window = std::unique_ptr<tis::Registers>(std::move(w).value());
      else window = w.status();
    }
    if (!window.ok())
      return Refuse(Refusal::kTpmUnavailable, "cannot open the host TPM through TCTI '" + cfg.tcti + "': " +
                                                  window.status().message());
    auto t = tis::Tcti::Open(std::move(window).value(), opts->locality);
    if (!t.ok())
      return Refuse(Refusal::kTpmUnavailable, "cannot open the host TPM through TCTI '" + cfg.tcti + "': " +
                                                  t.status().message());
    tis = std::move(t).value();
    tcti = tis->context();
    return Status::Ok();
  }

  // Owner of one ESYS_TR: flushes transient objects and sessions, closes
  // the ESYS handle of persistent ones.
  class Handle {
   public:
    Handle(ESYS_CONTEXT* e, ESYS_TR h, bool flush) : e_(e), h_(h), flush_(flush) {}
    Handle(Handle&& o) noexcept : e_(o.e_), h_(std::exchange(o.h_, ESYS_TR_NONE)), flush_(o.flush_) {}
    Handle& operator=(Handle&&) = delete;
    Handle(const Handle&) = delete;
    ~Handle() {
      if (h_ == ESYS_TR_NONE) return;
      if (flush_) Esys_FlushContext(e_, h_);
      else Esys_TR_Close(e_, &h_);
    }
    ESYS_TR get() const { return h_; }
    // The handle became persistent (EvictControl): close, don't flush.
    void set_flush(bool f) { flush_ = f; }

   private:
    ESYS_CONTEXT* e_;
    ESYS_TR h_;
    bool flush_;
  };

  Status FlushLeftovers() {
    for (TPM2_HANDLE first : {TPM2_TRANSIENT_FIRST, TPM2_LOADED_SESSION_FIRST}) {
      TPMS_CAPABILITY_DATA* cap = nullptr;
      TPMI_YES_NO more = 0;
      TSS2_RC rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, first,
                                      TPM2_MAX_CAP_HANDLES, &more, &cap);
      if (rc) return TpmFail("GetCapability(handles)", rc);
      for (UINT32 i = 0; i < cap->data.handles.count; ++i) {
        ESYS_TR tr = ESYS_TR_NONE;
        TPM2_HANDLE h = cap->data.handles.handle[i];
        if (Esys_TR_FromTPMPublic(esys, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr) == 0 &&
            Esys_FlushContext(esys, tr) == 0)
          LOG_INFO("host TPM: flushed leftover handle {:#010x}", h);
      }
      Esys_Free(cap);
    }
    return Status::Ok();
  }

  Result<bool> HandleExists(uint32_t handle) {
    TPMS_CAPABILITY_DATA* cap = nullptr;
    TPMI_YES_NO more = 0;
    TSS2_RC rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, handle, 1,
                                    &more, &cap);
    if (rc) return TpmFail("GetCapability(handles)", rc);
    bool found = cap->data.handles.count > 0 && cap->data.handles.handle[0] == handle;
    Esys_Free(cap);
    return found;
  }

  Result<Bytes> NameOf(ESYS_TR h) {
    TPM2B_NAME* name = nullptr;
    TSS2_RC rc = Esys_TR_GetName(esys, h, &name);
    if (rc) return TpmFail("TR_GetName", rc);
    Bytes out = NameBytes(*name);
    Esys_Free(name);
    return out;
  }

  Result<Handle> CreatePrimary(ESYS_TR hierarchy, const TPM2B_PUBLIC& tmpl, const char* what) {
    TPM2B_SENSITIVE_CREATE sens{};
    TPM2B_DATA outside{};
    TPML_PCR_SELECTION creation_pcr{};
    ESYS_TR h = ESYS_TR_NONE;
    TPM2B_PUBLIC* pub = nullptr;
    TSS2_RC rc = Esys_CreatePrimary(esys, hierarchy, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl,
                                    &outside, &creation_pcr, &h, &pub, nullptr, nullptr, nullptr);
    Esys_Free(pub);
    if (rc) return TpmFail(std::string("CreatePrimary(") + what + ")", rc);
    return Handle(esys, h, true);
  }

  // The ESYS object of a TPM handle (persistent object or NV index); `what`
  // names it in the error.
  Result<ESYS_TR> Tr(uint32_t handle, const char* what) {
    ESYS_TR h = ESYS_TR_NONE;
    TSS2_RC rc = Esys_TR_FromTPMPublic(esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &h);
    if (rc) return TpmFail(std::string("TR_FromTPMPublic(") + what + ")", rc);
    return h;
  }

  Result<Handle> OpenPersistent(uint32_t handle) {
    ASSIGN_OR_RETURN(ESYS_TR h, Tr(handle, "persistent SRK"));
    return Handle(esys, h, false);
  }

  Status UndefineNv(uint32_t index, const char* what) {
    ASSIGN_OR_RETURN(ESYS_TR nv, Tr(index, what));
    TSS2_RC rc = Esys_NV_UndefineSpace(esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE);
    if (rc) return TpmFail(std::string("NV_UndefineSpace(") + what + ")", rc);
    return Status::Ok();
  }

  // An object vtpmmgrd did not create at `handle` is used as the SRK only
  // if its public area is the SRK template's (its key, `unique`, aside).
  Status CheckSrkTemplate(ESYS_TR h, uint32_t handle) {
    TPM2B_PUBLIC* pub = nullptr;
    TSS2_RC rc = Esys_ReadPublic(esys, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, nullptr, nullptr);
    if (rc) return TpmFail("ReadPublic(persistent SRK)", rc);
    std::unique_ptr<TPM2B_PUBLIC, decltype(&Esys_Free)> owner(pub, Esys_Free);
    const TPMT_PUBLIC& got = pub->publicArea;
    const TPMT_PUBLIC want = SrkTemplate().publicArea;
    const auto& gr = got.parameters.rsaDetail;
    const auto& wr = want.parameters.rsaDetail;
    const bool same = got.type == want.type && got.nameAlg == want.nameAlg &&
                      got.objectAttributes == want.objectAttributes && got.authPolicy.size == 0 &&
                      gr.symmetric.algorithm == wr.symmetric.algorithm &&
                      gr.symmetric.keyBits.aes == wr.symmetric.keyBits.aes &&
                      gr.symmetric.mode.aes == wr.symmetric.mode.aes && gr.scheme.scheme == wr.scheme.scheme &&
                      gr.keyBits == wr.keyBits && (gr.exponent == 0 || gr.exponent == 65537);
    if (same) return Status::Ok();
    char found[160];
    std::snprintf(found, sizeof found, "type %#06x, nameAlg %#06x, attributes %#010x, policy %u bytes", got.type,
                  got.nameAlg, got.objectAttributes, unsigned(got.authPolicy.size));
    char wanted[160];
    std::snprintf(wanted, sizeof wanted, "type %#06x (RSA), nameAlg %#06x (SHA-256), attributes %#010x, no policy",
                  want.type, want.nameAlg, want.objectAttributes);
    if (got.type == want.type)
      std::snprintf(found + std::strlen(found), sizeof found - std::strlen(found), ", %u-bit, symmetric %#06x",
                    unsigned(gr.keyBits), gr.symmetric.algorithm);
    char hex[16];
    std::snprintf(hex, sizeof hex, "%#010x", handle);
    return Refuse(Refusal::kForeignSrk,
                  std::string("host TPM: persistent handle ") + hex + " (srk_handle) holds a key that vtpmmgrd did "
                  "not create and that is not an SRK of the TCG RSA-2048 storage template (found " + found +
                  "; expected " + wanted + "); another program uses that handle: set [host_tpm] srk_handle to a "
                  "free persistent handle (tpm2_getcap handles-persistent lists the used ones)");
  }

  // Empty when the endorsement hierarchy refuses (e.g. it has an auth value).
  Bytes TpmId() {
    auto h = CreatePrimary(ESYS_TR_RH_ENDORSEMENT, TpmIdTemplate(), "endorsement identity key");
    if (!h.ok()) {
      LOG_WARN("{}; a changed SRK will not be told apart from a different TPM", h.status().message());
      return {};
    }
    auto name = NameOf(h->get());
    return name.ok() ? *name : Bytes{};
  }

  // Session salted by `srk` with AES-128-CFB parameter encryption both ways.
  Result<Handle> SaltedSession(ESYS_TR srk, TPM2_SE type) {
    const TPMT_SYM_DEF aes = {TPM2_ALG_AES, {.aes = 128}, {.aes = TPM2_ALG_CFB}};
    ESYS_TR s = ESYS_TR_NONE;
    TSS2_RC rc = Esys_StartAuthSession(esys, srk, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr,
                                       type, &aes, TPM2_ALG_SHA256, &s);
    if (rc) return TpmFail("StartAuthSession(salted)", rc);
    Handle session(esys, s, true);
    rc = Esys_TRSess_SetAttributes(esys, s,
                                   TPMA_SESSION_CONTINUESESSION | TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT, 0xff);
    if (rc) return TpmFail("TRSess_SetAttributes", rc);
    return session;
  }

  Result<Handle> Load(ESYS_TR parent, const TPM2B_PRIVATE& priv, const TPM2B_PUBLIC& pub, const char* what) {
    ESYS_TR h = ESYS_TR_NONE;
    TSS2_RC rc = Esys_Load(esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub, &h);
    if (IsLockout(rc)) return LockoutRefusal(std::string("loading the stored ") + what);
    if (rc)
      return Refuse(Refusal::kBadManagerRecord,
                    std::string("host TPM cannot load the stored ") + what + ": " + RcText(rc) +
                        "; the manager records do not belong to this SRK (restore the store from a backup)");
    return Handle(esys, h, true);
  }

  Result<TPM2B_DIGEST> PcrPolicyDigest(const TPML_PCR_SELECTION& sel) {
    TPMT_SYM_DEF none{};
    none.algorithm = TPM2_ALG_NULL;
    ESYS_TR s = ESYS_TR_NONE;
    TSS2_RC rc = Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                       nullptr, TPM2_SE_TRIAL, &none, TPM2_ALG_SHA256, &s);
    if (rc) return TpmFail("StartAuthSession(trial)", rc);
    Handle trial(esys, s, true);
    TPM2B_DIGEST empty{};
    rc = Esys_PolicyPCR(esys, s, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &empty, &sel);
    if (rc) return TpmFail("PolicyPCR(trial)", rc);
    TPM2B_DIGEST* d = nullptr;
    rc = Esys_PolicyGetDigest(esys, s, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &d);
    if (rc) return TpmFail("PolicyGetDigest", rc);
    TPM2B_DIGEST out = *d;
    Esys_Free(d);
    return out;
  }

  Result<SecretBytes> RsaDecrypt(ESYS_TR srk, ESYS_TR sk, ByteView ciphertext) {
    ASSIGN_OR_RETURN(Handle session, SaltedSession(srk, TPM2_SE_HMAC));
    TPM2B_PUBLIC_KEY_RSA in{};
    if (ciphertext.size() > sizeof in.buffer)
      return Refuse(Refusal::kBadManagerRecord, "stored bound master key is too long");
    in.size = uint16_t(ciphertext.size());
    std::memcpy(in.buffer, ciphertext.data(), ciphertext.size());
    TPMT_RSA_DECRYPT scheme{};
    scheme.scheme = TPM2_ALG_OAEP;
    scheme.details.oaep.hashAlg = TPM2_ALG_SHA256;
    TPM2B_DATA label{};
    label.size = sizeof kBindLabel;
    std::memcpy(label.buffer, kBindLabel, sizeof kBindLabel);
    TPM2B_PUBLIC_KEY_RSA* out = nullptr;
    TSS2_RC rc = Esys_RSA_Decrypt(esys, sk, session.get(), ESYS_TR_NONE, ESYS_TR_NONE, &in, &scheme, &label, &out);
    if (IsLockout(rc)) return LockoutRefusal("unbinding the master key with the SK");
    if (rc)
      return Refuse(Refusal::kBadManagerRecord,
                    "host TPM cannot unbind the master key with the stored SK: " + RcText(rc));
    SecretBytes key(ByteView(out->buffer, out->size));
    OPENSSL_cleanse(out->buffer, out->size);
    Esys_Free(out);
    return key;
  }

  // Status names the PCRs when the policy fails.
  Result<SecretBytes> Unseal(ESYS_TR srk, ESYS_TR sealed, const TPML_PCR_SELECTION& sel,
                             const std::vector<uint32_t>& pcrs) {
    ASSIGN_OR_RETURN(Handle session, SaltedSession(srk, TPM2_SE_POLICY));
    TPM2B_DIGEST empty{};
    TSS2_RC rc = Esys_PolicyPCR(esys, session.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &empty, &sel);
    if (rc) return TpmFail("PolicyPCR", rc);
    TPM2B_SENSITIVE_DATA* out = nullptr;
    rc = Esys_Unseal(esys, sealed, session.get(), ESYS_TR_NONE, ESYS_TR_NONE, &out);
    if (IsLockout(rc)) return LockoutRefusal("unsealing the master key");
    if (IsPolicyFail(rc))
      return Refuse(Refusal::kPcrChanged,
                    "host PCRs " + PcrListString(pcrs) +
                        " differ from their values when the master key was sealed (dom0's boot chain changed); "
                        "boot the measured configuration again, or restore the store with the master key from "
                        "a host that still unseals it");
    if (rc) return TpmFail("Unseal", rc);
    SecretBytes key(ByteView(out->buffer, out->size));
    OPENSSL_cleanse(out->buffer, out->size);
    Esys_Free(out);
    return key;
  }
};

HostTpm::HostTpm(HostTpmConfig cfg, std::unique_ptr<Impl> impl) : cfg_(std::move(cfg)), impl_(std::move(impl)) {}
HostTpm::~HostTpm() {
  impl_.reset();  // Esys_Finalize may log
  Tss2Log::Drain();
}

Result<std::unique_ptr<HostTpm>> HostTpm::Open(const HostTpmConfig& cfg) {
  Tss2LogDrain drain;
  auto impl = std::make_unique<Impl>();
  const bool is_tis = tis::IsTisTcti(cfg.tcti);
  TSS2_RC rc = TSS2_RC_SUCCESS;
  if (is_tis) {
    RETURN_IF_ERROR(impl->OpenTis(cfg));
  } else if ((rc = Tss2_TctiLdr_Initialize(cfg.tcti.c_str(), &impl->tcti))) {
    return Refuse(Refusal::kTpmUnavailable, "cannot open the host TPM through TCTI '" + cfg.tcti + "': " +
                                                RcText(rc) + "; check the device or the tcti setting");
  }
  rc = Esys_Initialize(&impl->esys, impl->tcti, nullptr);
  if (rc) return Refuse(Refusal::kTpmUnavailable, "Esys_Initialize on '" + cfg.tcti + "' failed: " + RcText(rc));
  rc = Esys_Startup(impl->esys, TPM2_SU_CLEAR);  // success also when already started
  if (rc && impl->tis && !impl->tis->last_error().ok())
    return Refuse(Refusal::kTpmUnavailable, "host TPM through TCTI '" + cfg.tcti + "': Startup(CLEAR) failed: " +
                                                impl->tis->last_error().message());
  if (rc) LOG_WARN("host TPM: Startup(CLEAR) returned {}", RcText(rc));
  // No resource manager between us and the TPM: /dev/tpm0 and the TIS registers.
  if (cfg.flush_leftovers || cfg.tcti == "device:/dev/tpm0" || is_tis) RETURN_IF_ERROR(impl->FlushLeftovers());
  return std::unique_ptr<HostTpm>(new HostTpm(cfg, std::move(impl)));
}

Result<ManagerKeys> HostTpm::Provision(const SecretBytes& master) {
  Tss2LogDrain drain;
  Impl& t = *impl_;
  ManagerKeys k;
  k.srk_handle = cfg_.srk_handle;
  k.pcrs = cfg_.pcr_policy;
  k.tpm_id = t.TpmId();
  ASSIGN_OR_RETURN(bool persistent, t.HandleExists(cfg_.srk_handle));
  std::optional<Impl::Handle> srk;
  created_srk_ = false;
  if (persistent) {
    ASSIGN_OR_RETURN(Impl::Handle h, t.OpenPersistent(cfg_.srk_handle));
    RETURN_IF_ERROR(t.CheckSrkTemplate(h.get(), cfg_.srk_handle));
    srk.emplace(std::move(h));
    LOG_INFO("host TPM: using the persistent SRK at {:#010x} (it has the SRK template)", cfg_.srk_handle);
  } else {
    ASSIGN_OR_RETURN(Impl::Handle h, t.CreatePrimary(ESYS_TR_RH_OWNER, SrkTemplate(), "SRK"));
    srk.emplace(std::move(h));
    if (cfg_.persist_srk) {
      ESYS_TR persisted = ESYS_TR_NONE;
      TSS2_RC rc = Esys_EvictControl(t.esys, ESYS_TR_RH_OWNER, srk->get(), ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                     ESYS_TR_NONE, cfg_.srk_handle, &persisted);
      if (rc) {
        LOG_WARN("host TPM: cannot persist the SRK at {:#010x}: {}", cfg_.srk_handle, RcText(rc));
      } else {
        Esys_TR_Close(t.esys, &persisted);
        created_srk_ = true;
      }
    }
  }
  ASSIGN_OR_RETURN(k.srk_name, t.NameOf(srk->get()));

  TPM2B_PUBLIC tmpl{};
  TPM2B_SENSITIVE_CREATE sens{};
  if (k.pcrs.empty()) {
    tmpl = SkTemplate();
  } else {
    ASSIGN_OR_RETURN(TPML_PCR_SELECTION sel, Sha256Selection(k.pcrs));
    ASSIGN_OR_RETURN(TPM2B_DIGEST policy, t.PcrPolicyDigest(sel));
    tmpl.publicArea.type = TPM2_ALG_KEYEDHASH;
    tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
    tmpl.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT;  // policy only
    tmpl.publicArea.authPolicy = policy;
    tmpl.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
    sens.sensitive.data.size = uint16_t(master.size());
    std::memcpy(sens.sensitive.data.buffer, master.data(), master.size());
  }
  // The salted session encrypts inSensitive (the sealed master key) on the bus.
  ASSIGN_OR_RETURN(Impl::Handle session, t.SaltedSession(srk->get(), TPM2_SE_HMAC));
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION creation_pcr{};
  TPM2B_PRIVATE* priv = nullptr;
  TPM2B_PUBLIC* pub = nullptr;
  TSS2_RC rc = Esys_Create(t.esys, srk->get(), session.get(), ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl, &outside,
                           &creation_pcr, &priv, &pub, nullptr, nullptr, nullptr);
  OPENSSL_cleanse(&sens, sizeof sens);
  if (rc) return TpmFail(k.pcrs.empty() ? "Create(SK)" : "Create(sealed master key)", rc);
  std::unique_ptr<TPM2B_PRIVATE, decltype(&Esys_Free)> priv_owner(priv, Esys_Free);
  std::unique_ptr<TPM2B_PUBLIC, decltype(&Esys_Free)> pub_owner(pub, Esys_Free);
  ASSIGN_OR_RETURN(k.key_public, (MarshalTo<TPM2B_PUBLIC, Tss2_MU_TPM2B_PUBLIC_Marshal>(*pub)));
  ASSIGN_OR_RETURN(k.key_private, (MarshalTo<TPM2B_PRIVATE, Tss2_MU_TPM2B_PRIVATE_Marshal>(*priv)));
  if (k.pcrs.empty()) {
    const auto& rsa = pub->publicArea.unique.rsa;
    ASSIGN_OR_RETURN(k.bound_master,
                     RsaOaepSha256Encrypt(ByteView(rsa.buffer, rsa.size), pub->publicArea.parameters.rsaDetail.exponent,
                                          ByteView(kBindLabel, sizeof kBindLabel), master.view()));
  }
  // Prove the round trip now rather than at the next start.
  ASSIGN_OR_RETURN(SecretBytes back, Recover(k));
  if (back.size() != master.size() || CRYPTO_memcmp(back.data(), master.data(), master.size()) != 0)
    return Status(Code::kTpmError, "host TPM: the provisioned master key does not round-trip");
  return k;
}

Result<SecretBytes> HostTpm::Recover(const ManagerKeys& k) {
  Tss2LogDrain drain;
  Impl& t = *impl_;
  std::optional<Impl::Handle> srk;
  ASSIGN_OR_RETURN(bool persistent, t.HandleExists(k.srk_handle));
  if (persistent) {
    ASSIGN_OR_RETURN(Impl::Handle h, t.OpenPersistent(k.srk_handle));
    ASSIGN_OR_RETURN(Bytes name, t.NameOf(h.get()));
    if (name == k.srk_name) srk.emplace(std::move(h));
    else LOG_WARN("host TPM: the key at {:#010x} is not the recorded SRK; trying the SRK template", k.srk_handle);
  }
  if (!srk) {
    ASSIGN_OR_RETURN(Impl::Handle h, t.CreatePrimary(ESYS_TR_RH_OWNER, SrkTemplate(), "SRK"));
    ASSIGN_OR_RETURN(Bytes name, t.NameOf(h.get()));
    if (name != k.srk_name) {
      Bytes id = t.TpmId();
      if (!k.tpm_id.empty() && id == k.tpm_id)
        return Refuse(Refusal::kOwnerCleared,
                      "the host TPM is the one this store was provisioned on, but its owner hierarchy was cleared "
                      "(the SRK changed), so the master key is lost on this TPM; restore the state directory "
                      "together with a TPM that still holds the key, or move the store away to start anew");
      return Refuse(Refusal::kDifferentTpm,
                    std::string("the host TPM is not the one this store was provisioned on") +
                        (k.tpm_id.empty() ? " (or its owner hierarchy was cleared)" : "") +
                        ": its SRK differs; run vtpmmgrd on the original host or TPM, or move the state "
                        "directory away to start anew (every vTPM in it is then lost)");
    }
    srk.emplace(std::move(h));
  }
  ASSIGN_OR_RETURN(TPM2B_PUBLIC pub, (UnmarshalFrom<TPM2B_PUBLIC, Tss2_MU_TPM2B_PUBLIC_Unmarshal>(
                                         k.key_public, "key public area")));
  ASSIGN_OR_RETURN(TPM2B_PRIVATE priv, (UnmarshalFrom<TPM2B_PRIVATE, Tss2_MU_TPM2B_PRIVATE_Unmarshal>(
                                           k.key_private, "key private area")));
  if (k.pcrs.empty()) {
    ASSIGN_OR_RETURN(Impl::Handle sk, t.Load(srk->get(), priv, pub, "SK"));
    return t.RsaDecrypt(srk->get(), sk.get(), k.bound_master);
  }
  ASSIGN_OR_RETURN(TPML_PCR_SELECTION sel, Sha256Selection(k.pcrs));
  ASSIGN_OR_RETURN(Impl::Handle sealed, t.Load(srk->get(), priv, pub, "sealed master key"));
  return t.Unseal(srk->get(), sealed.get(), sel, k.pcrs);
}

Result<std::optional<StoreMarker>> HostTpm::ReadMarker() {
  Tss2LogDrain drain;
  Impl& t = *impl_;
  const uint32_t index = cfg_.marker_index;
  ASSIGN_OR_RETURN(bool defined, t.HandleExists(index));
  if (!defined) return std::optional<StoreMarker>();
  ASSIGN_OR_RETURN(ESYS_TR nv, t.Tr(index, "store marker"));
  Impl::Handle nv_owner(t.esys, nv, false);
  TPM2B_NV_PUBLIC* pub = nullptr;
  TSS2_RC rc = Esys_NV_ReadPublic(t.esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, nullptr);
  if (rc) return TpmFail("NV_ReadPublic(store marker)", rc);
  const TPMA_NV attrs = pub->nvPublic.attributes;
  const uint16_t size = pub->nvPublic.dataSize;
  Esys_Free(pub);
  // Defined but never written: a provisioning that stopped in between.
  if (!(attrs & TPMA_NV_WRITTEN)) return std::optional<StoreMarker>();
  char hex[16];
  std::snprintf(hex, sizeof hex, "%#010x", index);
  const std::string not_ours = std::string("host TPM: NV index ") + hex +
                               " holds data that is not a vtpmmgrd store marker; another program uses it";
  if (!(attrs & TPMA_NV_AUTHREAD)) return Status(Code::kTpmError, not_ours);
  TPM2B_MAX_NV_BUFFER* data = nullptr;
  rc = Esys_NV_Read(t.esys, nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, size, 0, &data);
  if (rc) return TpmFail(std::string("NV_Read(store marker at ") + hex + ")", rc);
  std::optional<StoreMarker> m = DecodeStoreMarker(ByteView(data->buffer, data->size));
  Esys_Free(data);
  if (!m) return Status(Code::kTpmError, not_ours);
  return m;
}

Status HostTpm::WriteMarker(const StoreMarker& m) {
  Tss2LogDrain drain;
  Impl& t = *impl_;
  RETURN_IF_ERROR(ReadMarker().status());  // never replace another program's index
  ASSIGN_OR_RETURN(bool defined, t.HandleExists(cfg_.marker_index));
  // Unwritten (ReadMarker found no marker), or an older marker being replaced.
  if (defined) RETURN_IF_ERROR(t.UndefineNv(cfg_.marker_index, "store marker"));
  const Bytes data = EncodeStoreMarker(m);
  TPM2B_NV_PUBLIC pub{};
  pub.nvPublic.nvIndex = cfg_.marker_index;
  pub.nvPublic.nameAlg = TPM2_ALG_SHA256;
  pub.nvPublic.attributes = TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD | TPMA_NV_NO_DA;
  pub.nvPublic.dataSize = uint16_t(data.size());
  TPM2B_AUTH auth{};
  ESYS_TR nv = ESYS_TR_NONE;
  TSS2_RC rc = Esys_NV_DefineSpace(t.esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &auth,
                                   &pub, &nv);
  if (rc) return TpmFail("NV_DefineSpace(store marker)", rc);
  Impl::Handle nv_owner(t.esys, nv, false);
  TPM2B_MAX_NV_BUFFER buf{};
  buf.size = uint16_t(data.size());
  std::memcpy(buf.buffer, data.data(), data.size());
  rc = Esys_NV_Write(t.esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &buf, 0);
  if (rc) return TpmFail("NV_Write(store marker)", rc);
  LOG_INFO("host TPM: NV index {:#010x} records the store ({})", cfg_.marker_index, DescribeStoreMarker(m));
  return Status::Ok();
}

Status HostTpm::Forget(const StoreMarker& m) {
  Tss2LogDrain drain;
  Impl& t = *impl_;
  if (m.srk_created) {
    ASSIGN_OR_RETURN(bool there, t.HandleExists(m.srk_handle));
    if (there) {
      ASSIGN_OR_RETURN(ESYS_TR srk, t.Tr(m.srk_handle, "old SRK"));
      ESYS_TR gone = ESYS_TR_NONE;
      TSS2_RC rc = Esys_EvictControl(t.esys, ESYS_TR_RH_OWNER, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                             m.srk_handle, &gone);
      if (rc) return TpmFail("EvictControl(old SRK)", rc);
      LOG_INFO("host TPM: evicted the SRK vtpmmgrd had made persistent at {:#010x}", m.srk_handle);
    }
  }
  RETURN_IF_ERROR(t.UndefineNv(cfg_.marker_index, "store marker"));
  LOG_INFO("host TPM: removed the store marker at NV index {:#010x} ({})", cfg_.marker_index,
           DescribeStoreMarker(m));
  return Status::Ok();
}

Result<PcrValues> HostTpm::ReadPcrs(const std::vector<uint32_t>& indices) {
  Tss2LogDrain drain;
  PcrValues out;
  for (uint32_t i : indices) {  // one per call: simple, and PCR_Read returns at most 8 digests
    ASSIGN_OR_RETURN(TPML_PCR_SELECTION sel, Sha256Selection({i}));
    UINT32 counter = 0;
    TPML_PCR_SELECTION* got_sel = nullptr;
    TPML_DIGEST* values = nullptr;
    TSS2_RC rc = Esys_PCR_Read(impl_->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, &counter, &got_sel,
                               &values);
    if (rc) return TpmFail("PCR_Read", rc);
    if (values->count == 1) out.emplace_back(i, Bytes(values->digests[0].buffer,
                                                      values->digests[0].buffer + values->digests[0].size));
    Esys_Free(got_sel);
    Esys_Free(values);
  }
  return out;
}

}  // namespace vtpm
