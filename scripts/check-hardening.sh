#!/bin/bash
# check-hardening.sh BINARY...: fails unless every ELF binary is built as
# Debian's `hardening=+all` builds packages:
#   PIE          ELF type DYN with an interpreter
#   full RELRO   a GNU_RELRO segment and BIND_NOW (DT_FLAGS BIND_NOW or FLAGS_1 NOW)
#   stack protector   calls __stack_chk_fail
#   _FORTIFY_SOURCE   calls at least one __*_chk function. A binary where
#                     the compiler bounded no call site (no buffer of known
#                     size reaches memcpy, read, ...) has none even when
#                     built with it: that is reported, not failed, as
#                     lintian does (hardening-no-fortify-functions, an info
#                     tag); build-deb.sh checks the flag on every compile
#                     line of the package build instead.
# Reads the binaries with readelf (binutils); prints one line per binary.
set -uo pipefail
((${#})) || { echo "usage: check-hardening.sh BINARY..." >&2; exit 2; }
bad=0
for b in "$@"; do
  [[ -f $b ]] || { echo "$b: missing"; bad=1; continue; }
  hdr=$(readelf -h -l -d --dyn-syms -W "$b" 2>/dev/null) || { echo "$b: not an ELF file"; bad=1; continue; }
  miss=()
  grep -q 'Type: *DYN' <<<"$hdr" && grep -q 'Requesting program interpreter' <<<"$hdr" || miss+=(PIE)
  grep -q 'GNU_RELRO' <<<"$hdr" || miss+=(RELRO)
  grep -Eq '\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' <<<"$hdr" || miss+=(BIND_NOW)
  grep -q '__stack_chk_fail' <<<"$hdr" || miss+=(stack-protector)
  fortify=fortify
  grep -Eq ' __[a-z0-9_]+_chk(@|$)' <<<"$hdr" || fortify="fortify: no bounded call site"
  if ((${#miss[@]})); then
    echo "$b: NOT hardened: missing ${miss[*]}"; bad=1
  else
    echo "$b: hardened (PIE, full RELRO, stack protector, $fortify)"
  fi
done
exit $bad
