#!/bin/bash
# run-e2e.sh BUILD_DIR [STEPS_FILE]
#
# The real-Xen end-to-end test: builds or reuses the cached Xen/dom0/guest
# images (images.sh), installs this build of vtpmmgrd and its tools into the
# dom0 image, boots Xen + dom0 under QEMU and runs the scenario steps
# (scenario.steps by default) over the serial console (drive.py). Then
# compares the recorded vtpm state-node sequences with the committed
# fixtures under fixtures/. Prints the time of each step.
# Environment: VTPM_E2E_CACHE (image cache, default /var/cache/vtpmmgrd-e2e),
# VTPM_E2E_KEEP=1 keeps the work dir. Logs of the last run stay in
# BUILD_DIR/tests/e2e/last-run.
set -Eeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:?usage: run-e2e.sh BUILD_DIR [STEPS_FILE]}" && pwd)
STEPS=${2:-$HERE/scenario.steps}
CACHE=${VTPM_E2E_CACHE:-/var/cache/vtpmmgrd-e2e}
OUT=$BUILD/tests/e2e/last-run
WORK=$(mktemp -d /tmp/vtpm-e2e.XXXXXX)
cleanup() { [[ ${VTPM_E2E_KEEP:-0} == 1 ]] && echo "work dir kept: $WORK" || rm -rf "$WORK"; }
trap cleanup EXIT

declare -a timings
step() {  # step <name> <command...>: runs and times one host-side step
  local name=$1 t0=$SECONDS; shift
  echo "=== e2e: $name"
  if ! "$@"; then echo "=== e2e: $name FAILED after $((SECONDS - t0))s"; report; exit 1; fi
  timings+=("$(printf '%-10s %5ss' "$name" "$((SECONDS - t0))")")
}
report() { echo "=== e2e: host step times"; printf '  %s\n' "${timings[@]}"; }

[[ $(id -u) == 0 ]] || { echo "run-e2e.sh needs root (debootstrap, chroot)"; exit 1; }
for tool in qemu-system-x86_64 swtpm debootstrap cpio; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-deps.sh"; exit 1; }
done

images() { IMG=$("$HERE/images.sh" "$CACHE" | tail -1); echo "images in $IMG"; sed 's/^/  /' "$IMG/versions"; }

# Guest initramfs: busybox, xen-tpmfront.ko, init, tpmcmd and its commands.
guest_image() {
  local g=$WORK/guest
  mkdir -p "$g"/{bin,proc,sys,dev,tmp,lib/modules,tpm}
  cp "$IMG/guest/busybox" "$g/bin/busybox"
  cp "$IMG/guest/xen-tpmfront.ko" "$g/lib/modules/"
  install -m 755 "$HERE/guest/init" "$g/init"
  install -m 755 "$HERE/guest/tpmcmd" "$g/bin/tpmcmd"
  # TPM 1.2 commands: GetRandom(8), PCRRead(0)
  printf '\x00\xc1\x00\x00\x00\x0e\x00\x00\x00\x46\x00\x00\x00\x08' > "$g/tpm/getrandom.bin"
  printf '\x00\xc1\x00\x00\x00\x0e\x00\x00\x00\x15\x00\x00\x00\x00' > "$g/tpm/pcrread0.bin"
  (cd "$g" && find . | cpio -o -H newc --quiet | gzip -1) > "$WORK/guest-initrd.gz"
}

# dom0 overlay: appended to the cached dom0 cpio (the kernel unpacks
# concatenated archives in order, later files win).
dom0_image() {
  local o=$WORK/overlay b
  mkdir -p "$o/e2e" "$o/usr/local/bin" "$o/etc/vtpmmgrd"
  install -m 755 "$HERE/dom0/init" "$o/init"
  install -m 755 "$HERE/dom0/e2e" "$o/usr/local/bin/e2e"
  install -m 755 "$HERE/dom0/states.awk" "$o/e2e/states.awk"
  cp "$IMG/vmlinuz" "$WORK/guest-initrd.gz" "$o/e2e/"
  cat > "$o/e2e/guest.cfg" <<CFG
name = "e2eguest"
type = "pv"
kernel = "/e2e/vmlinuz"
ramdisk = "/e2e/guest-initrd.gz"
extra = "console=hvc0"
memory = 128
vcpus = 1
on_crash = "preserve"
vtpm = ["backend=0,uuid=7e2e0001-5eed-4c0d-9a1e-00000000e2e0"]
CFG
  # This build's install tree, else its binaries where the build left them.
  DESTDIR=$o cmake --install "$BUILD" >/dev/null 2>&1 || true
  for b in src/daemon/vtpmmgrd src/tpm/vtpm-worker src/ctl/vtpmctl; do
    [[ -x $BUILD/$b ]] || continue
    [[ -n $(find "$o" -type f -name "${b##*/}" | head -1) ]] || install -D -m 755 "$BUILD/$b" "$o/usr/local/sbin/${b##*/}"
  done
  (cd "$o" && find . -type f \( -name vtpmmgrd -o -name vtpm-worker -o -name vtpmctl \) | sed 's/^\.//') > "$o/e2e/binaries"
  echo "installed into dom0:"; sed 's/^/  /' "$o/e2e/binaries"
  cp "$HERE/vtpmmgrd.conf" "$o/etc/vtpmmgrd/vtpmmgrd.conf"
  (cd "$o" && find . | cpio -o -H newc --quiet) > "$WORK/overlay.cpio"
  cat "$IMG/dom0.cpio" "$WORK/overlay.cpio" > "$WORK/dom0.cpio"
}

boot_and_run() {
  mkdir -p "$OUT"; rm -rf "${OUT:?}"/*
  local rc=0
  /usr/bin/python3 "$HERE/drive.py" --xen "$IMG/xen" --kernel "$IMG/vmlinuz" \
    --dom0-initrd "$WORK/dom0.cpio" --steps "$STEPS" --workdir "$WORK" \
    --capture-dir "$OUT/states" || rc=$?
  cp "$WORK/serial.log" "$OUT/" 2>/dev/null || true
  return $rc
}

# Every recorded sequence must match its fixture (the sequences the
# simulator is checked against), writer by writer: one writer's order is
# fixed, the interleaving of writers is not (fixtures/README.md).
compare_fixtures() {
  local f fx w differs bad=0 n=0
  for fx in "$HERE"/fixtures/states/*; do
    n=$((n + 1))
    f=$OUT/states/${fx##*/}
    [[ -f $f ]] || { echo "state sequence ${fx##*/}: not recorded"; bad=1; continue; }
    differs=0
    for w in toolstack backend frontend; do
      diff -u --label "fixture ${fx##*/} ($w)" --label "recorded ${fx##*/} ($w)" \
        <(grep "^$w " "$fx") <(grep "^$w " "$f") || differs=1
    done
    if ((differs)); then
      bad=1; echo "state sequence ${fx##*/} DIFFERS; recorded:"; sed 's/^/  /' "$f"
    else
      echo "state sequence ${fx##*/}: matches fixture"
    fi
  done
  ((n > 0)) || { echo "no fixtures under $HERE/fixtures/states"; return 1; }
  return $bad
}

step images images
step guest guest_image
step dom0 dom0_image
step qemu boot_and_run
step fixtures compare_fixtures
report
