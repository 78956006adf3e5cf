// Fuzzes what `vtpmctl import` reads from a file another host wrote: the
// export file structure, the bundle inside it, and the host-key line of a
// peers file. Accepted inputs must re-encode to the exact input bytes; the
// whole open path (signature, decryption) must refuse without crashing.
#include <cstdlib>
#include <string>

#include "store/export_codec.h"
#include "store/migration.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vtpm::ByteView in(data, size);
  const vtpm::Bytes bytes(data, data + size);
  auto file = vtpm::ParseExportFile(in);
  if (file.ok() && vtpm::EncodeExportFile(*file) != bytes) abort();
  auto bundle = vtpm::ParseExportBundle(in);
  if (bundle.ok() && vtpm::EncodeExportBundle(*bundle) != bytes) abort();
  (void)vtpm::ParseHostKeyLine(std::string_view(reinterpret_cast<const char*>(data), size));

  static const vtpm::HostIdentity* me = [] {
    vtpm::SecretBytes secret(vtpm::kHostKeySecretBytes);
    for (size_t i = 0; i < secret.size(); ++i) secret.data()[i] = uint8_t(i + 1);
    return new vtpm::HostIdentity(vtpm::HostIdentity::FromSecret(std::move(secret)).value());
  }();
  if (file.ok()) {
    vtpm::PeerKey sender;
    sender.name = "fuzz";
    sender.sign_pub = file->header.sender_sign_pub;  // any sender is "trusted": reach the verification
    if (me->OpenExport({sender}, in).ok()) abort();  // no valid signature can come from the fuzzer
  }
  return 0;
}
