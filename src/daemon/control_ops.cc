#include "daemon/control_ops.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "common/log.h"
#include "store/runtime_file.h"

namespace vtpm {
namespace {

using nlohmann::json;
using Reply = ControlServer::Reply;

constexpr uint32_t kTpmClearDisabled = 0x05;  // TPM_CLEAR_DISABLED (TPM 1.2 main part 2, 16)

std::string Hex(const uint8_t* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  s.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    s.push_back(kDigits[p[i] >> 4]);
    s.push_back(kDigits[p[i] & 15]);
  }
  return s;
}

ControlResponse Error(ResultCode code, std::string sentence) {
  ControlResponse r;
  r.result = code;
  r.error = std::move(sentence);
  return r;
}

ControlResponse Ok(json data) {
  ControlResponse r;
  r.data = std::move(data);
  return r;
}

// A Status from the store or the instance manager, plus what to do about it.
ControlResponse FromStatus(const Status& st, const Uuid& uuid) {
  switch (st.code()) {
    case Code::kNotFound:
      return Error(ResultCode::kNotFound, "no vTPM instance " + uuid.ToString() +
                                              " exists; run 'vtpmctl list' to see the instances");
    case Code::kCorruption:
      return Error(ResultCode::kFailed, st.message() + "; restore the store from a backup or wipe the instance");
    default:
      return Error(ResultFor(st), st.message() + "; see the daemon's journal for details");
  }
}

// " by uid 0 pid 1234 (vtpmctl)": who asked, for admin lines (design §9).
std::string By(const std::string& requester) { return requester.empty() ? "" : " by " + requester; }

json TimeOrNull(int64_t t) { return t ? json(t) : json(nullptr); }

// The last attach or, when later, the last guest command seen by this
// daemon (in memory): design §8.
int64_t LastUsedAt(const InstanceMeta& m, int64_t last_command) {
  return std::max({m.created, m.last_attached, last_command});
}

json MovedJson(const MovedInstance& m) {
  return {{"peer", m.peer}, {"moved_at", m.moved_at}, {"export_id", m.export_id}};
}

}  // namespace

GuestCtx ControlOps::AdminCtx(const Uuid& uuid) const {
  if (auto dev = backend_.FindByUuid(uuid)) return dev->ctx();
  GuestCtx c;
  c.uuid = uuid.ToString();
  return c;
}

int64_t ControlOps::LastUsed(const InstanceMeta& m) const {
  return LastUsedAt(m, instances_ ? instances_->LastCommand(m.uuid) : 0);
}

void ControlOps::OffLoop(std::function<ControlResponse()> work, Reply done) {
  std::weak_ptr<bool> alive = alive_;
  EventLoop* loop = &loop_;
  work_.Run([work = std::move(work), done = std::move(done), alive, loop] {
    auto response = std::make_shared<ControlResponse>(work());
    // Serialised and freed here: a list of 10^4 instances is megabytes.
    response->encoded = EncodeResponse(std::move(*response));
    response->data = json::object();
    loop->Post([done, response, alive] {
      if (auto a = alive.lock(); a && *a) done(std::move(*response));
    });
  });
}

// The domain's name is the toolstack's /local/domain/<domid>/name; null when absent.
json ControlOps::Attachment(uint32_t domid, uint32_t devid, bool connected) const {
  json name = nullptr;
  if (auto n = backend_.xs().Read("/local/domain/" + std::to_string(domid) + "/name"); n.ok() && *n) name = **n;
  return {{"domid", domid}, {"devid", devid}, {"name", name}, {"connected", connected}};
}

ControlOps::ControlOps(EventLoop& loop, Backend& backend, Store* store, InstanceManager* instances,
                       const Config& cfg)
    : loop_(loop), backend_(backend), store_(store), instances_(instances), cfg_(cfg) {}

ControlOps::~ControlOps() { *alive_ = false; }

void ControlOps::Handle(const ControlRequest& req, Reply reply) {
  if (req.verb == Verb::kList) return List(std::move(reply));
  if (req.verb == Verb::kStatus) return StatusVerb(std::move(reply));
#ifdef VTPM_TEST_BUILD
  if (!store_ || !instances_)
    return reply(Error(ResultCode::kUnavailable,
                       std::string("this daemon runs the scripted test engine, which keeps no vTPM instances; "
                                   "set [engine] kind = \"libtpms\" to use '") +
                           VerbName(req.verb) + "'"));
#endif
  switch (req.verb) {
    case Verb::kShow: return Show(*req.uuid, std::move(reply));
    case Verb::kCreate: return Create(req, std::move(reply));
    case Verb::kWipe: return Wipe(req, std::move(reply));
    case Verb::kClear: return Clear(req, std::move(reply));
    case Verb::kDiscard: return Discard(req, std::move(reply));
    case Verb::kPrune: return Prune(req, std::move(reply));
    case Verb::kBackup: return Backup(req, std::move(reply));
    case Verb::kHostKey: return HostKey(std::move(reply));
    case Verb::kExport: return Export(req, std::move(reply));
    case Verb::kImport: return Import(req, std::move(reply));
    default: return reply(Error(ResultCode::kBadRequest, "unknown verb; see vtpmctl --help"));
  }
}

bool ControlOps::InUse(const Uuid& uuid) const {
  return backend_.FindByUuid(uuid) != nullptr || (instances_ && instances_->Running(uuid) != nullptr);
}

void ControlOps::List(Reply reply) {
  // What only the loop may read (devices, xenstore, powered instances), taken
  // now; the store is read and the answer built on work_.
  struct Attached {
    json attachment;
    bool connected;
  };
  std::map<std::string, Attached> devices;
  for (const DeviceInfo& d : backend_.List())
    if (!d.uuid.empty() && !d.refused) devices.emplace(d.uuid, Attached{Attachment(d.domid, d.devid, d.connected), d.connected});
  std::map<Uuid, int64_t> last_commands;
  if (instances_) last_commands = instances_->LastCommands();
  OffLoop([store = store_, devices = std::move(devices), last_commands = std::move(last_commands)]() mutable {
    auto attached = [&](const std::string& uuid) -> json {
      auto it = devices.find(uuid);
      return it == devices.end() ? json(nullptr) : it->second.attachment;
    };
    json rows = json::array();
    if (store) {
      auto metas = store->List();
      if (!metas.ok()) return Error(ResultCode::kFailed, metas.status().message() + "; check the store");
      // Rows are built in place and moved, never copied: nlohmann's
      // initializer lists copy every value, which at 20,000 instances cost
      // more than reading the store (README "Registered instances").
      rows.get_ref<json::array_t&>().reserve(metas->size());
      for (const InstanceMeta& m : *metas) {
        std::string u = m.uuid.ToString();
        auto cmd = last_commands.find(m.uuid);
        const int64_t last_command = cmd == last_commands.end() ? 0 : cmd->second;
        json row(json::value_t::object);
        auto& o = row.get_ref<json::object_t&>();
        o.emplace("attached", attached(u));
        o.emplace("tpm_version", m.tpm_version);
        o.emplace("suspended", m.suspended);
        o.emplace("created", m.created);
        o.emplace("last_used", LastUsedAt(m, last_command));
        o.emplace("last_command", TimeOrNull(last_command));
        o.emplace("size_bytes", m.size_bytes);
        o.emplace("auto_created", m.auto_created);
        devices.erase(u);
        o.emplace("uuid", std::move(u));
        rows.push_back(std::move(row));
      }
      auto moved = store->ListMoved();
      if (!moved.ok()) return Error(ResultCode::kFailed, moved.status().message() + "; check the store");
      for (const MovedInstance& m : *moved)
        rows.push_back({{"uuid", m.uuid.ToString()}, {"tpm_version", nullptr}, {"attached", attached(m.uuid.ToString())},
                        {"moved", MovedJson(m)}, {"created", nullptr}, {"last_used", nullptr},
                        {"last_command", nullptr}, {"size_bytes", nullptr}, {"auto_created", nullptr}});
    }
    // Devices without a stored instance: connected ones (being created, or a
    // test build's scripted engine). A closed one, such as the device that
    // wipe --force closed, has no TPM to list.
    for (auto& [u, d] : devices)
      if (!store || d.connected)
        rows.push_back({{"uuid", u}, {"tpm_version", nullptr}, {"attached", d.attachment}, {"created", nullptr},
                        {"last_used", nullptr}, {"last_command", nullptr}, {"size_bytes", nullptr},
                        {"auto_created", nullptr}});
    json data(json::value_t::object);
    data["instances"] = std::move(rows);
    return Ok(std::move(data));
  }, std::move(reply));
}

void ControlOps::Show(const Uuid& uuid, Reply reply) {
  auto metas = store_->List();
  if (!metas.ok()) return reply(FromStatus(metas.status(), uuid));
  const InstanceMeta* meta = nullptr;
  for (const InstanceMeta& m : *metas)
    if (m.uuid == uuid) meta = &m;
  if (!meta) {
    if (auto moved = FindMoved(*store_, uuid); moved.ok() && *moved)
      return reply(Ok({{"uuid", uuid.ToString()}, {"moved", MovedJson(**moved)}}));
    return reply(FromStatus(Status(Code::kNotFound, ""), uuid));
  }
  json data = {{"uuid", uuid.ToString()}, {"tpm_version", meta->tpm_version}, {"created", meta->created},
               {"last_used", LastUsed(*meta)}, {"last_command", TimeOrNull(instances_->LastCommand(uuid))},
               {"last_written", meta->last_written},
               {"size_bytes", meta->size_bytes}, {"auto_created", meta->auto_created}, {"attached", nullptr},
               {"pcrs", nullptr}};
  auto ek = instances_->ReadEkPublic(uuid);
  data["ek_public"] = ek.ok() ? json(Hex(ek->data(), ek->size())) : json(nullptr);
  data["suspended"] = nullptr;
  if (meta->suspended) {
    if (auto loaded = store_->Load(uuid); loaded.ok() && loaded->suspend)
      data["suspended"] = {{"domid", loaded->suspend->domid},
                           {"handle", Uuid{loaded->suspend->handle}.ToString()},
                           {"captured_at", loaded->suspend->captured_at},
                           {"sequence", loaded->suspend->sequence}};
  }
  if (auto dev = backend_.FindByUuid(uuid))
    data["attached"] = Attachment(uint32_t(dev->ctx().domid), uint32_t(dev->ctx().devid), dev->connected());
  if (!instances_->Running(uuid)) return reply(Ok(std::move(data)));
  std::weak_ptr<bool> alive = alive_;
  instances_->ReadPcrs(uuid, [alive, data = std::move(data), reply = std::move(reply)](
                                 Result<std::vector<tpm12::PcrValue>> pcrs) mutable {
    if (auto a = alive.lock(); !a || !*a) return;
    if (pcrs.ok()) {
      json list = json::array();
      for (auto& p : *pcrs) list.push_back(Hex(p.data(), p.size()));
      data["pcrs"] = std::move(list);
    } else {
      data["pcrs_error"] = pcrs.status().message();
    }
    reply(Ok(std::move(data)));
  });
}

void ControlOps::Create(const ControlRequest& req, Reply reply) {
  const Uuid uuid = *req.uuid;
  if (req.tpm_version != "1.2")
    return reply(Error(ResultCode::kBadRequest, "TPM version '" + req.tpm_version +
                                                    "' is not supported; vtpmmgrd emulates TPM 1.2 only (--tpm 1.2)"));
  std::weak_ptr<bool> alive = alive_;
  instances_->Create(uuid, [this, alive, uuid, by = By(req.requester), reply = std::move(reply)](Result<InstanceMeta> r) {
    if (auto a = alive.lock(); !a || !*a) return;
    if (!r.ok()) {
      if (r.status().code() == Code::kAlreadyExists && r.status().message().find(" moved to host ") != std::string::npos)
        return reply(Error(ResultCode::kConflict, r.status().message()));
      if (r.status().code() == Code::kAlreadyExists)
        return reply(Error(ResultCode::kConflict, "instance " + uuid.ToString() +
                                                      " already exists; use it, or wipe it first to start over"));
      return reply(FromStatus(r.status(), uuid));
    }
    VEVENT_INFO(kCreated, AdminCtx(uuid), "vtpmctl create{}: instance created (TPM {})", by, r->tpm_version);
    reply(Ok({{"uuid", uuid.ToString()}, {"tpm_version", r->tpm_version}, {"created", r->created}}));
  });
}

void ControlOps::StatusVerb(Reply reply) {
  // The device counts are the loop's; the store's figures and the host
  // TPM's PCRs (a hardware TPM answers in milliseconds) are read on work_.
  size_t known = backend_.List().size();
  json data = {{"version", "vtpmmgrd 0.1.0"},
               {"engine", cfg_.engine},
               {"control_socket", cfg_.ControlSocket()},
               {"devices", {{"known", known}, {"connected", backend_.connected_count()}}},
               {"store", nullptr},
               {"host_tpm", nullptr}};
  if (!store_) return reply(Ok(std::move(data)));
  OffLoop([store = store_, data = std::move(data), pcr_policy = cfg_.pcr_policy]() mutable {
    auto st = store->GetStatus();
    if (!st.ok()) return Error(ResultCode::kFailed, st.status().message() + "; check the host TPM and the store");
    json pcrs = json::array();
    for (auto& [i, v] : st->pcr_values) pcrs.push_back({{"index", i}, {"sha256", Hex(v.data(), v.size())}});
    data["store"] = {{"path", st->db_path}, {"runtime_dir", st->runtime_dir}, {"instances", st->instances},
                     {"size_bytes", st->db_bytes}, {"commits", st->commits}, {"commit_groups", st->commit_groups}};
    data["host_tpm"] = {{"transport", st->host_tpm_transport}, {"key_protection", st->key_protection},
                        {"pcr_policy", pcr_policy}, {"pcrs", pcrs}};
    return Ok(std::move(data));
  }, std::move(reply));
}

Status ControlOps::WipeNow(const Uuid& uuid, const GuestCtx& ctx, const std::string& by) {
  if (auto inst = instances_->Running(uuid)) instances_->Release(uuid, inst->ctx());
  RETURN_IF_ERROR(store_->Wipe(uuid));
  instances_->Forget(uuid);
  VEVENT_INFO(kWiped, ctx, "vtpmctl wipe{}: instance wiped (data key destroyed; older backups still hold it)", by);
  return {};
}

void ControlOps::Wipe(const ControlRequest& req, Reply reply) {
  const Uuid uuid = *req.uuid;
  auto loaded = store_->Load(uuid);
  if (!loaded.ok() && loaded.status().code() == Code::kNotFound) return reply(FromStatus(loaded.status(), uuid));
  auto dev = backend_.FindByUuid(uuid);
  auto inst = instances_->Running(uuid);
  if ((dev || inst) && !req.force) {
    const GuestCtx& where = dev ? dev->ctx() : inst->ctx();
    return reply(Error(ResultCode::kConflict,
                       "instance " + uuid.ToString() + " is attached to domid " + std::to_string(where.domid) +
                           " devid " + std::to_string(where.devid) +
                           "; detach it first (xl vtpm-detach) or use --force, which removes the guest's TPM"));
  }
  auto finish = [this, uuid, by = By(req.requester), reply](const GuestCtx& ctx, bool forced) {
    Status st = WipeNow(uuid, ctx, by);
    if (!st.ok()) return reply(FromStatus(st, uuid));
    reply(Ok({{"uuid", uuid.ToString()}, {"forced", forced}}));
  };
  if (!dev) return finish(inst ? inst->ctx() : AdminCtx(uuid), bool(inst));
  VEVENT_WARN(kForceClosed, dev->ctx(),
              "vtpmctl wipe --force{}: closing the device (backend 5, then 6); "
              "the uuid stays refused until its backend directory is recreated",
              By(req.requester));
  dev->ForceClose();
  std::weak_ptr<bool> alive = alive_;
  AwaitClosed(dev, EventLoop::Clock::now() + kForceCloseWait,
              [this, alive, dev, uuid, reply, finish](bool closed) {
                if (auto a = alive.lock(); !a || !*a) return;
                if (!closed)
                  return reply(Error(ResultCode::kFailed,
                                     "domid " + std::to_string(dev->ctx().domid) + " did not close its vTPM frontend within " +
                                         std::to_string(kForceCloseWait.count()) +
                                         " s; the device stays closed: destroy the guest (xl destroy) and run wipe again"));
                finish(dev->ctx(), true);
              });
}

void ControlOps::AwaitClosed(std::shared_ptr<Device> dev, EventLoop::Clock::time_point deadline,
                             std::function<void(bool)> done) {
  if (!dev->connected()) return done(true);
  if (EventLoop::Clock::now() >= deadline) return done(false);
  std::weak_ptr<bool> alive = alive_;
  loop_.AddTimer(std::chrono::milliseconds(20), [this, alive, dev, deadline, done = std::move(done)]() mutable {
    if (auto a = alive.lock(); !a || !*a) return;
    AwaitClosed(std::move(dev), deadline, std::move(done));
  });
}

void ControlOps::Clear(const ControlRequest& req, Reply reply) {
  const Uuid uuid = *req.uuid;
  std::weak_ptr<bool> alive = alive_;
  bool running = instances_->Running(uuid) != nullptr;
  instances_->Clear(uuid, [this, alive, uuid, running, by = By(req.requester), reply = std::move(reply)](Status st) {
    if (auto a = alive.lock(); !a || !*a) return;
    if (st.code() == Code::kTpmError && st.sub_code() == kTpmClearDisabled)
      return reply(Error(ResultCode::kTpmRefused,
                         "the guest disabled ForceClear (TPM_DisableForceClear) until its next TPM Startup; "
                         "reboot the guest and run clear again before it boots its OS"));
    if (!st.ok()) return reply(FromStatus(st, uuid));
    VEVENT_INFO(kCleared, AdminCtx(uuid), "vtpmctl clear{}: owner cleared (EK kept; enabled, activated at next Startup)",
                by);
    reply(Ok({{"uuid", uuid.ToString()},
              {"running", running},
              {"note", "the owner is removed and the EK kept; the TPM is enabled, and it is activated at the "
                       "guest's next TPM Startup (reboot the guest)"}}));
  });
}

void ControlOps::Discard(const ControlRequest& req, Reply reply) {
  const Uuid uuid = *req.uuid;
  if (auto inst = instances_->Running(uuid); inst && inst->ctx().domid >= 0)
    return reply(Error(ResultCode::kConflict, "instance " + uuid.ToString() + " is powered for domain " +
                                                  std::to_string(inst->ctx().domid) +
                                                  "; discard drops the state of a domain that suspended and is gone"));
  auto loaded = store_->Load(uuid);
  if (!loaded.ok()) return reply(FromStatus(loaded.status(), uuid));
  if (!loaded->suspend)
    return reply(Error(ResultCode::kNotFound, "instance " + uuid.ToString() + " holds no state captured at a suspend"));
  const SuspendCapture cap = *loaded->suspend;
  CommitRequest drop;
  drop.uuid = uuid;
  drop.expected_generation = loaded->generation;
  auto gen = store_->CommitSync(std::move(drop));
  if (!gen.ok()) {
    if (gen.status().code() == Code::kFailedPrecondition)
      return reply(Error(ResultCode::kConflict, "instance " + uuid.ToString() +
                                                    " changed meanwhile (a domain powered it on); run discard again"));
    return reply(FromStatus(gen.status(), uuid));
  }
  VEVENT_INFO(kCaptureDropped, AdminCtx(uuid),
              "vtpmctl discard{}: dropped the TPM state captured when domain {} suspended; its restore powers on fresh",
              By(req.requester), cap.domid);
  reply(Ok({{"uuid", uuid.ToString()}, {"domid", cap.domid}, {"captured_at", cap.captured_at}}));
}

void ControlOps::Prune(const ControlRequest& req, Reply reply) {
  const int64_t idle_for_seconds = req.idle_for_seconds;
  auto metas = store_->List();
  if (!metas.ok()) return reply(Error(ResultCode::kFailed, metas.status().message() + "; check the store"));
  const int64_t now = int64_t(std::time(nullptr));
  json pruned = json::array();
  for (const InstanceMeta& m : *metas) {
    if (!m.auto_created || InUse(m.uuid) || now - LastUsed(m) < idle_for_seconds) continue;
    Status st = store_->Wipe(m.uuid);
    if (st.ok()) instances_->Forget(m.uuid);
    if (!st.ok()) return reply(Error(ResultCode::kFailed, "pruning " + m.uuid.ToString() + ": " + st.message() +
                                                              "; the instances listed before it were pruned"));
    VEVENT_INFO(kPruned, AdminCtx(m.uuid), "vtpmctl prune{}: auto-created instance idle for {} s wiped",
                By(req.requester), now - LastUsed(m));
    pruned.push_back({{"uuid", m.uuid.ToString()}, {"last_used", LastUsed(m)}});
  }
  reply(Ok({{"pruned", pruned}, {"idle_for_seconds", idle_for_seconds}}));
}

void ControlOps::Backup(const ControlRequest& req, Reply reply) {
  OffLoop([store = store_, path = req.path, by = By(req.requester)] {
    Status st = store->Backup(path);
    if (st.code() == Code::kAlreadyExists)
      return Error(ResultCode::kConflict, path + " already exists; choose a new file name");
    if (!st.ok()) return Error(ResultCode::kFailed, st.message() + "; check that the directory exists and has room");
    LOG_INFO("vtpmctl backup{}: store copied to {}", by, path);
    return Ok({{"path", path}});
  }, std::move(reply));
}

Result<HostIdentity> ControlOps::Identity() {
  ASSIGN_OR_RETURN(SecretBytes secret, store_->HostKeys([] { return HostIdentity::NewSecret(); }));
  return HostIdentity::FromSecret(std::move(secret));
}

void ControlOps::HostKey(Reply reply) {
  auto id = Identity();
  if (!id.ok()) return reply(Error(ResultCode::kFailed, id.status().message() + "; check the store"));
  reply(Ok({{"host_key", id->PublicLine()}, {"peers_dir", cfg_.peers_dir}}));
}

void ControlOps::Export(const ControlRequest& req, Reply reply) {
  const Uuid uuid = *req.uuid;
  if (!ValidPeerName(req.peer))
    return reply(Error(ResultCode::kBadRequest, "'" + req.peer + "' is not a peer name (letters, digits, '.', '_', "
                                                "'-'; a file name in " + cfg_.peers_dir + ")"));
  if (auto dev = backend_.FindByUuid(uuid))
    return reply(Error(ResultCode::kConflict,
                       "instance " + uuid.ToString() + " is attached to domid " + std::to_string(dev->ctx().domid) +
                           "; save the domain first (xl save), which captures its TPM, then export"));
  if (auto inst = instances_->Running(uuid))
    return reply(Error(ResultCode::kConflict, "instance " + uuid.ToString() + " is powered for " +
                                                  (inst->ctx().domid < 0 ? std::string("vtpmctl")
                                                                         : "domain " + std::to_string(inst->ctx().domid)) +
                                                  "; export it once that domain is saved or gone"));
  auto loaded = store_->Load(uuid);
  if (!loaded.ok()) {
    if (auto moved = FindMoved(*store_, uuid); moved.ok() && *moved)
      return reply(Error(ResultCode::kConflict, MovedRefusal(**moved) + " already (export " + (*moved)->export_id + ")"));
    return reply(FromStatus(loaded.status(), uuid));
  }
  auto peers = LoadPeers(cfg_.peers_dir);
  if (!peers.ok()) return reply(Error(ResultCode::kFailed, peers.status().message() + "; fix the peers directory"));
  const PeerKey* to = nullptr;
  for (const PeerKey& p : *peers)
    if (p.name == req.peer) to = &p;
  if (!to)
    return reply(Error(ResultCode::kNotFound, "no host '" + req.peer + "' in " + cfg_.peers_dir +
                                                  "; copy the line 'vtpmctl host-key' prints on that host into " +
                                                  cfg_.peers_dir + "/" + req.peer));
  auto id = Identity();
  if (!id.ok()) return reply(Error(ResultCode::kFailed, id.status().message() + "; check the store"));
  ExportBundle bundle;
  bundle.tpm_version = loaded->meta.tpm_version;
  bundle.created = loaded->meta.created;
  bundle.auto_created = loaded->meta.auto_created;
  bundle.ek_public = loaded->meta.ek_public;
  bundle.permanent = loaded->permanent;
  bundle.savestate = loaded->savestate;
  if (loaded->suspend) {  // without a capture the receiver powers on fresh: no volatile state goes
    bundle.volatile_blob = loaded->volatile_copy;
    bundle.suspend = loaded->suspend;
  }
  ExportHeader header;
  auto file = id->SealExport(*to, uuid, bundle, &header);
  if (!file.ok()) return reply(Error(ResultCode::kFailed, file.status().message()));
  Status st = WriteNewFileDurably(req.path, *file);
  if (st.code() == Code::kAlreadyExists)
    return reply(Error(ResultCode::kConflict, req.path + " already exists; choose a new file name"));
  if (!st.ok()) return reply(Error(ResultCode::kFailed, st.message() + "; check that the directory exists and has room"));
  // The file is durable: only now the instance goes (tombstone and wipe in
  // one transaction). If that fails, the file is removed so that the
  // instance never lives on two hosts.
  const MovedInstance moved{uuid, to->name, header.created, ExportIdHex(header.export_id)};
  st = store_->MarkMoved(moved, loaded->generation);
  if (!st.ok()) {
    ::unlink(req.path.c_str());
    if (st.code() == Code::kFailedPrecondition)
      return reply(Error(ResultCode::kConflict, st.message() + "; nothing was exported: run export again"));
    return reply(Error(ResultCode::kFailed, st.message() + "; nothing was exported (" + req.path + " removed)"));
  }
  instances_->Forget(uuid);
  VEVENT_INFO(kExported, AdminCtx(uuid), "vtpmctl export{}: instance moved to host {} (export {}, file {}){}",
              By(req.requester), to->name, moved.export_id, req.path,
              bundle.suspend ? " with the TPM state captured when domain " + std::to_string(bundle.suspend->domid) +
                                   " suspended"
                             : "; it held no suspend capture, so it powers on fresh there");
  reply(Ok({{"uuid", uuid.ToString()}, {"peer", to->name}, {"path", req.path}, {"export_id", moved.export_id},
            {"moved_at", moved.moved_at}, {"suspended", bundle.suspend.has_value()}}));
}

void ControlOps::Import(const ControlRequest& req, Reply reply) {
  struct stat sb {};
  if (::stat(req.path.c_str(), &sb) != 0)
    return reply(Error(ResultCode::kNotFound, Status::FromErrno(errno, req.path).message()));
  if (!S_ISREG(sb.st_mode) || uint64_t(sb.st_size) > kExportMaxFile)
    return reply(Error(ResultCode::kBadRequest, req.path + " is not an export file (not a regular file of at most " +
                                                    std::to_string(kExportMaxFile) + " bytes)"));
  auto file = ReadFileIfPresent(req.path);
  if (!file.ok() || !*file)
    return reply(Error(ResultCode::kFailed, (file.ok() ? req.path + " vanished" : file.status().message())));
  auto peers = LoadPeers(cfg_.peers_dir);
  if (!peers.ok()) return reply(Error(ResultCode::kFailed, peers.status().message() + "; fix the peers directory"));
  auto id = Identity();
  if (!id.ok()) return reply(Error(ResultCode::kFailed, id.status().message() + "; check the store"));
  auto opened = id->OpenExport(*peers, **file);
  if (!opened.ok()) {
    std::string advice = "; copy the file again from the sending host";
    if (opened.status().code() == Code::kPermissionDenied)
      advice = " (" + cfg_.peers_dir + "); if you trust the sender, copy its 'vtpmctl host-key' line there";
    else if (opened.status().code() == Code::kInvalidArgument)
      advice = "; export it again with --to naming this host";
    LOG_WARN("vtpmctl import{}: refused {}: {}", By(req.requester), req.path, opened.status().message());
    return reply(Error(ResultCode::kBadRequest, "refused: " + opened.status().message() + advice));
  }
  const Uuid uuid = opened->header.uuid;
  const std::string export_id = ExportIdHex(opened->header.export_id);
  // A device being given a new instance of the uuid (auto-create): the store
  // refuses an instance that exists, with the precise reason, by itself.
  if (InUse(uuid) && store_->Load(uuid).status().code() == Code::kNotFound)
    return reply(Error(ResultCode::kConflict, "instance " + uuid.ToString() + " is being created on this host for "
                                                  "an attached device; detach it and wipe it before importing"));
  const ExportBundle& b = opened->bundle;
  ImportRequest ir;
  ir.meta.uuid = uuid;
  ir.meta.tpm_version = b.tpm_version;
  ir.meta.created = b.created;
  ir.meta.auto_created = b.auto_created;
  ir.meta.ek_public = b.ek_public;
  ir.blobs[BlobKind::kPermanent] = b.permanent;
  if (b.savestate) ir.blobs[BlobKind::kSavestate] = *b.savestate;
  if (b.volatile_blob) ir.blobs[BlobKind::kVolatile] = *b.volatile_blob;
  ir.suspend = b.suspend;
  ir.export_id = export_id;
  ir.peer = opened->peer;
  Status st = store_->Import(ir);
  if (st.code() == Code::kAlreadyExists) {
    if (st.message().rfind("export ", 0) == 0)
      return reply(Error(ResultCode::kConflict, st.message() + "; this file is a replayed or stale copy"));
    return reply(Error(ResultCode::kConflict, "instance " + uuid.ToString() +
                                                  " exists on this host; wipe it first if the imported one replaces it"));
  }
  if (!st.ok()) return reply(FromStatus(st, uuid));
  instances_->Forget(uuid);
  VEVENT_INFO(kImported, AdminCtx(uuid), "vtpmctl import{}: instance imported from host {} (export {}, file {}){}",
              By(req.requester), opened->peer, export_id, req.path,
              b.suspend ? "; the domain restored from its save image resumes the TPM" : "; it powers on fresh");
  reply(Ok({{"uuid", uuid.ToString()}, {"peer", opened->peer}, {"path", req.path}, {"export_id", export_id},
            {"exported_at", opened->header.created}, {"suspended", b.suspend.has_value()}}));
}

}  // namespace vtpm
