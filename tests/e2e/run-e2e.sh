#!/bin/bash
# run-e2e.sh DEB_DIR [STEPS_FILE]
#
# The real-Xen end-to-end test of the Debian package: builds or reuses the
# cached Xen/dom0/guest images (images.sh), makes dom0's root disk (a
# Debian 12 system booted by systemd, ext4) with the package
# DEB_DIR/vtpmmgrd_*_amd64.deb (scripts/build-deb.sh DEB_DIR) and the test's
# own files under /e2e, boots Xen + dom0 under QEMU and runs the scenario
# steps (scenario.steps by default) over the serial console (drive.py). The
# steps install the package with apt-get, as an operator does, and the
# daemon is only ever run by systemd. A `boot` line reboots the machine:
# the root disk and swtpm's state carry over, like a host's disk and TPM.
# Then compares the recorded vtpm state-node sequences with the committed
# fixtures under fixtures/. Prints the time of each step.
# Environment: VTPM_E2E_CACHE (image cache, default /var/cache/vtpmmgrd-e2e),
# VTPM_E2E_KEEP=1 keeps the work dir, VTPM_E2E_DEADLINE (seconds in QEMU,
# default 2700), VTPM_E2E_TIMEOUT_SCALE (multiplies the step timeouts),
# VTPM_E2E_TIS_TCTI (the TIS boot's tcti setting). Logs of the last run stay
# in DEB_DIR/e2e-last-run.
set -Eeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DEBDIR=$(cd "${1:?usage: run-e2e.sh DEB_DIR [STEPS_FILE]}" && pwd)
STEPS=${2:-$HERE/scenario.steps}
CACHE=${VTPM_E2E_CACHE:-/var/cache/vtpmmgrd-e2e}
OUT=$DEBDIR/e2e-last-run
# Seconds in QEMU for all boots together (drive.py --deadline).
DEADLINE=${VTPM_E2E_DEADLINE:-2700}
# The daemon's TCTI for the TIS-MMIO transport (its own, in-process).
TIS_TCTI=${VTPM_E2E_TIS_TCTI:-tis:locality=0}
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
DEB=$(ls "$DEBDIR"/vtpmmgrd_*_amd64.deb 2>/dev/null | head -1)
[[ -n $DEB ]] || { echo "no vtpmmgrd_*_amd64.deb in $DEBDIR: run scripts/build-deb.sh $DEBDIR"; exit 1; }
for tool in qemu-system-x86_64 swtpm debootstrap cpio mkfs.ext4; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-deps.sh"; exit 1; }
done

images() { IMG=$("$HERE/images.sh" "$CACHE" | tail -1); echo "images in $IMG"; sed 's/^/  /' "$IMG/versions"; }

# Guest initramfs: busybox, xen-tpmfront.ko, init, tpmcmd and its commands,
# gtpm, trousers (tcsd) and tpm-tools with their libraries and the tss user.
guest_image() {
  local g=$WORK/guest tss
  mkdir -p "$g"/{bin,proc,sys,dev,tmp,lib/modules,tpm,etc,var/lib/tpm}
  cp -a "$IMG/guest/root/." "$g/"
  cp "$IMG/guest/busybox" "$g/bin/busybox"
  cp "$IMG/guest/xen-tpmfront.ko" "$g/lib/modules/"
  install -m 755 "$HERE/guest/init" "$g/init"
  install -m 755 "$HERE/guest/tpmcmd" "$g/bin/tpmcmd"
  install -m 755 "$HERE/guest/gtpm" "$g/bin/gtpm"
  cp "$IMG/guest/passwd" "$g/etc/passwd"
  cp "$IMG/guest/group" "$g/etc/group"
  echo '127.0.0.1 localhost' > "$g/etc/hosts"
  # Debian's tcsd refuses a config that is not root:tss mode 0640 (as the
  # package installs it); it runs as tss and keeps its data in /var/lib/tpm.
  tss=$(awk -F: '$1 == "tss" {print $3 ":" $4}' "$g/etc/passwd")
  chown "0:${tss#*:}" "$g/etc/tcsd.conf"
  chmod 0640 "$g/etc/tcsd.conf"
  chown "$tss" "$g/var/lib/tpm"
  chmod 0700 "$g/var/lib/tpm"
  # TPM 1.2 commands: GetRandom(8), PCRRead(0), Extend(10, 20 x 0x5a)
  printf '\x00\xc1\x00\x00\x00\x0e\x00\x00\x00\x46\x00\x00\x00\x08' > "$g/tpm/getrandom.bin"
  printf '\x00\xc1\x00\x00\x00\x0e\x00\x00\x00\x15\x00\x00\x00\x00' > "$g/tpm/pcrread0.bin"
  { printf '\x00\xc1\x00\x00\x00\x22\x00\x00\x00\x14\x00\x00\x00\x0a'; printf '\x5a%.0s' {1..20}; } > "$g/tpm/extend10.bin"
  (cd "$g" && find . | cpio -o -H newc --quiet | gzip -1) > "$WORK/guest-initrd.gz"
}

# dom0's root disk: the cached root tree plus the test's files: the package
# and the e2e config under /e2e (installed and applied by the steps), the
# guest kernel, initramfs and xl configs, the step script, and the console
# shell's unit. 2 GiB sparse; it is the host's disk for every boot.
dom0_image() {
  local r=$WORK/root
  cp -a "$IMG/dom0-root" "$r"
  mkdir -p "$r/e2e" "$r/usr/local/bin" "$r/usr/local/sbin"
  install -m 755 "$HERE/dom0/e2e" "$r/usr/local/bin/e2e"
  install -m 755 "$HERE/dom0/e2e-console" "$r/usr/local/sbin/e2e-console"
  install -m 644 "$HERE/dom0/e2e-console.service" "$r/etc/systemd/system/"
  mkdir -p "$r/etc/systemd/system/multi-user.target.wants"
  ln -sf /etc/systemd/system/e2e-console.service "$r/etc/systemd/system/multi-user.target.wants/"
  # trousers is in the dom0 tree only to be copied into the guest: its tcsd
  # must not take dom0's TPM.
  ln -sf /dev/null "$r/etc/systemd/system/tcsd.service"
  install -m 755 "$HERE/dom0/states.awk" "$r/e2e/states.awk"
  cp "$IMG/vmlinuz" "$WORK/guest-initrd.gz" "$DEB" "$HERE/vtpmmgrd.conf" "$r/e2e/"
  echo "$TIS_TCTI" > "$r/e2e/tis-tcti"
  guest_cfg e2eguest 7e2e0001-5eed-4c0d-9a1e-00000000e2e0 > "$r/e2e/e2eguest.cfg"
  guest_cfg e2eguest2 7e2e0002-5eed-4c0d-9a1e-00000000e2e0 > "$r/e2e/e2eguest2.cfg"
  guest_cfg e2eguest3 7e2e0003-5eed-4c0d-9a1e-00000000e2e0 > "$r/e2e/e2eguest3.cfg"
  echo "package: ${DEB##*/} ($(dpkg-deb -f "$DEB" Version))"
  truncate -s 2G "$WORK/root.img"
  mkfs.ext4 -q -F -L dom0-root -d "$r" "$WORK/root.img"
  rm -rf "$r"
}

# guest_cfg <name> <vtpm uuid>: xl config of a PV guest with one vTPM.
guest_cfg() {
  cat <<CFG
name = "$1"
type = "pv"
kernel = "/e2e/vmlinuz"
ramdisk = "/e2e/guest-initrd.gz"
extra = "console=hvc0"
memory = 128
vcpus = 1
on_crash = "preserve"
vtpm = ["backend=0,uuid=$2"]
CFG
}

boot_and_run() {
  mkdir -p "$OUT"; rm -rf "${OUT:?}"/*
  local rc=0
  /usr/bin/python3 "$HERE/drive.py" --xen "$IMG/xen" --kernel "$IMG/vmlinuz" \
    --dom0-initrd "$IMG/dom0-initrd.cpio" --steps "$STEPS" --workdir "$WORK" \
    --disk "$WORK/root.img" --swtpm-state "$WORK/swtpm" --deadline "$DEADLINE" \
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
