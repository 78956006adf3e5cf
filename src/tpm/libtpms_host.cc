#include "tpm/libtpms_host.h"

#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>
#include <libtpms/tpm_memory.h>
#include <libtpms/tpm_nvfilename.h>

#include <string.h>  // explicit_bzero

#include <cstring>
#include <map>
#include <string_view>
#include <utility>

#include "tpm/tpm12.h"

namespace vtpm {
namespace {

// libtpms calls back into these; they are process-global like libtpms.
std::map<BlobKind, Bytes> g_nv;
std::map<BlobKind, std::optional<Bytes>> g_changes;  // nullopt = deleted
uint8_t g_locality = 0;
bool g_presence = false;
#ifdef VTPM_TEST_BUILD
std::function<void()> g_parse_probe;
#endif

// Called before libtpms is handed a stored blob.
void BeforeParse() {
#ifdef VTPM_TEST_BUILD
  if (auto probe = std::exchange(g_parse_probe, nullptr)) probe();
#endif
}

std::optional<BlobKind> KindOf(const char* name) {
  std::string_view n(name);
  if (n == TPM_PERMANENT_ALL_NAME) return BlobKind::kPermanent;
  if (n == TPM_SAVESTATE_NAME) return BlobKind::kSavestate;
  if (n == TPM_VOLATILESTATE_NAME) return BlobKind::kVolatile;
  return std::nullopt;
}

TPM_RESULT NvInit() { return TPM_SUCCESS; }

TPM_RESULT NvLoad(unsigned char** data, uint32_t* length, uint32_t, const char* name) {
  auto kind = KindOf(name);
  if (!kind) return TPM_FAIL;
  auto it = g_nv.find(*kind);
  if (it == g_nv.end()) return TPM_RETRY;  // libtpms' "does not exist yet"
  BeforeParse();
  *length = uint32_t(it->second.size());
  if (TPM_Malloc(data, *length ? *length : 1) != TPM_SUCCESS) return TPM_FAIL;
  if (*length) std::memcpy(*data, it->second.data(), *length);
  return TPM_SUCCESS;
}

TPM_RESULT NvStore(const unsigned char* data, uint32_t length, uint32_t, const char* name) {
  auto kind = KindOf(name);
  if (!kind) return TPM_FAIL;
  Bytes blob(data, data + length);
  g_nv[*kind] = blob;
  g_changes[*kind] = std::move(blob);
  return TPM_SUCCESS;
}

TPM_RESULT NvDelete(uint32_t, const char* name, TPM_BOOL must_exist) {
  auto kind = KindOf(name);
  if (!kind) return TPM_FAIL;
  bool existed = g_nv.erase(*kind) > 0;
  if (!existed && must_exist) return TPM_FAIL;
  if (existed || g_changes.count(*kind)) g_changes[*kind] = std::nullopt;
  return TPM_SUCCESS;
}

TPM_RESULT IoInit() { return TPM_SUCCESS; }

TPM_RESULT IoLocality(TPM_MODIFIER_INDICATOR* locality, uint32_t) {
  *locality = g_locality;
  return TPM_SUCCESS;
}

TPM_RESULT IoPresence(TPM_BOOL* presence, uint32_t) {
  *presence = g_presence ? TRUE : FALSE;
  return TPM_SUCCESS;
}

struct libtpms_callbacks g_callbacks = {
    .sizeOfStruct = sizeof(struct libtpms_callbacks),
    .tpm_nvram_init = NvInit,
    .tpm_nvram_loaddata = NvLoad,
    .tpm_nvram_storedata = NvStore,
    .tpm_nvram_deletename = NvDelete,
    .tpm_io_init = IoInit,
    .tpm_io_getlocality = IoLocality,
    .tpm_io_getphysicalpresence = IoPresence,
};

Status TpmStatus(TPM_RESULT rc, const char* what) {
  return Status(Code::kTpmError, std::string("libtpms ") + what, rc);
}

}  // namespace

LibtpmsHost::~LibtpmsHost() {
  if (started_) TPMLIB_Terminate();
  if (rbuf_) explicit_bzero(rbuf_, rbuf_size_);
  TPM_Free(rbuf_);
}

Status LibtpmsHost::Prepare() {
  if (prepared_) return Status::Ok();
  TPM_RESULT rc = TPMLIB_ChooseTPMVersion(TPMLIB_TPM_VERSION_1_2);
  if (rc) return TpmStatus(rc, "ChooseTPMVersion");
  if ((rc = TPMLIB_RegisterCallbacks(&g_callbacks))) return TpmStatus(rc, "RegisterCallbacks");
  TPMLIB_SetBufferSize(tpm12::kGuestBufferSize, nullptr, nullptr);
  // An empty TPM, started and dropped: what it stored is nobody's state.
  g_nv.clear();
  g_changes.clear();
  rc = TPMLIB_MainInit();
  if (rc == TPM_SUCCESS) TPMLIB_Terminate();
  g_nv.clear();
  g_changes.clear();
  if (rc) return TpmStatus(rc, "MainInit(empty)");
  prepared_ = true;
  return Status::Ok();
}

Result<WorkerReply> LibtpmsHost::Init(const WorkerRequest& init) {
  if (started_) return Status(Code::kFailedPrecondition, "libtpms already started");
  if (!init.permanent && (init.savestate || init.volatile_state))
    return Status(Code::kInvalidArgument, "state blobs without a permanent blob");
  RETURN_IF_ERROR(Prepare());
  TPM_RESULT rc = TPM_SUCCESS;
  g_nv.clear();
  g_changes.clear();
  // Permanent first: libtpms validates the others against it.
  if (init.permanent) {
    BeforeParse();
    g_nv[BlobKind::kPermanent] = *init.permanent;
    if ((rc = TPMLIB_SetState(TPMLIB_STATE_PERMANENT, init.permanent->data(),
                              uint32_t(init.permanent->size()))))
      return TpmStatus(rc, "SetState(permanent)");
  }
  if (init.savestate) {
    // Kept where libtpms' NV reads it at TPM_Startup(ST_STATE).
    g_nv[BlobKind::kSavestate] = *init.savestate;
  }
  if (init.volatile_state) {
    if ((rc = TPMLIB_SetState(TPMLIB_STATE_VOLATILE, init.volatile_state->data(),
                              uint32_t(init.volatile_state->size()))))
      return TpmStatus(rc, "SetState(volatile)");
  }
  if ((rc = TPMLIB_MainInit())) return TpmStatus(rc, "MainInit");
  started_ = true;
  return CollectReply({});
}

#ifdef VTPM_TEST_BUILD
void LibtpmsHost::SetParseProbe(std::function<void()> probe) { g_parse_probe = std::move(probe); }
#endif

WorkerReply LibtpmsHost::Execute(const WorkerRequest& req) {
  if (!started_) return CollectReply(tpm12::ErrorResponse(tpm12::kFail));
  g_locality = req.locality;
  g_presence = req.physical_presence;
  g_changes.clear();
  Bytes command = req.command;
  uint32_t rlen = 0;
  TPM_RESULT rc = TPMLIB_Process(&rbuf_, &rlen, &rbuf_size_, command.data(),
                                 uint32_t(command.size()));
  g_presence = false;
  Bytes response = rc ? tpm12::ErrorResponse(tpm12::kFail) : Bytes(rbuf_, rbuf_ + rlen);
  return CollectReply(tpm12::FixupGuestResponse(req.command, std::move(response)));
}

WorkerReply LibtpmsHost::CollectReply(Bytes response) {
  WorkerReply reply;
  reply.type = WorkerMsg::kReply;
  reply.response = std::move(response);
  for (auto& [kind, data] : g_changes) reply.changes.push_back({kind, std::move(data)});
  g_changes.clear();
  unsigned char* buf = nullptr;
  uint32_t len = 0;
  if (TPMLIB_GetState(TPMLIB_STATE_VOLATILE, &buf, &len) == TPM_SUCCESS && buf) {
    reply.volatile_state.assign(buf, buf + len);
    explicit_bzero(buf, len);  // plaintext TPM state: wiped before libtpms frees it
  }
  TPM_Free(buf);
  return reply;
}

}  // namespace vtpm
