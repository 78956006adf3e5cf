#!/bin/bash
# install_prefix_test.sh BUILD_DIR: `cmake --install BUILD_DIR --prefix P`
# (P differing from the configure-time prefix) yields a working layout:
# the unit's ExecStart is P/sbin/vtpmmgrd, the installed daemon finds the
# worker installed next to it (--check-config names it), the example
# configuration goes to /etc/vtpmmgrd and is not overwritten by a second
# install. Installs under a DESTDIR in a temporary directory.
set -uo pipefail
BUILD=${1:?usage: install_prefix_test.sh BUILD_DIR}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
P=/opt/vtpm-prefix-test
DESTDIR=$tmp cmake --install "$BUILD" --prefix "$P" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "cmake --install failed"; }
unit=$tmp$P/lib/systemd/system/vtpmmgrd.service
[[ -f $unit ]] || fail "no unit under $P/lib/systemd/system"
grep -qx "ExecStart=$P/sbin/vtpmmgrd --config /etc/vtpmmgrd/vtpmmgrd.conf" "$unit" || fail "unit ExecStart: $(grep ExecStart= "$unit")"
[[ -x $tmp$P/libexec/vtpmmgrd/vtpm-worker ]] || fail "no worker under $P/libexec/vtpmmgrd"
[[ -f $tmp/etc/vtpmmgrd/vtpmmgrd.conf ]] || fail "no configuration under /etc/vtpmmgrd"
for f in lib/sysusers.d/vtpmmgrd.conf lib/tmpfiles.d/vtpmmgrd.conf share/man/man8/vtpmmgrd.8 \
         share/bash-completion/completions/vtpmctl; do
  [[ -f $tmp$P/$f ]] || fail "missing $P/$f"
done
out=$("$tmp$P/sbin/vtpmmgrd" --config "$tmp/etc/vtpmmgrd/vtpmmgrd.conf" --check-config 2>&1) || fail "check-config: $out"
[[ $out == *"(worker $tmp$P/libexec/vtpmmgrd/vtpm-worker)"* ]] || fail "the installed daemon names another worker: $out"
# The check can fail: without the worker next to it, the daemon says where it looked.
mv "$tmp$P/libexec/vtpmmgrd/vtpm-worker" "$tmp/worker.moved"
out=$("$tmp$P/sbin/vtpmmgrd" --config "$tmp/etc/vtpmmgrd/vtpmmgrd.conf" --check-config 2>&1) && fail "check-config passed without a worker: $out"
[[ $out == *"$P/libexec/vtpmmgrd/vtpm-worker"*"not executable"* ]] || fail "unclear message without a worker: $out"
# An operator's edit survives a second install.
echo "# edited by the operator" >> "$tmp/etc/vtpmmgrd/vtpmmgrd.conf"
DESTDIR=$tmp cmake --install "$BUILD" --prefix "$P" >"$tmp/install2.log" 2>&1 || fail "second install failed"
grep -q "edited by the operator" "$tmp/etc/vtpmmgrd/vtpmmgrd.conf" || fail "a second install overwrote the configuration"
echo "PASS: prefix $P: unit, worker lookup and configuration as installed"
