#!/bin/bash
# images.sh CACHE_ROOT
#
# Builds (or reuses) the base images of the real-Xen e2e test from Debian
# packages and prints the directory that holds them on the last line of stdout:
#   xen          uncompressed Xen hypervisor (QEMU's multiboot loader takes it)
#   vmlinuz      Debian kernel, used for dom0 and for the guest
#   dom0-root/   dom0's root file system, a Debian 12 system booted by
#                systemd: debootstrap minbase + systemd-sysv, udev, tpm-udev,
#                xen-utils matching the hypervisor (its xen and xendomains
#                init scripts), the runtime dependencies of the vtpmmgrd
#                package (installed from its .deb by the test, offline), and
#                trousers/tpm-tools; run-e2e.sh turns it into a disk image
#   dom0-initrd.cpio  the dom0 initramfs: busybox loads virtio-blk and ext4,
#                mounts /dev/vda and hands over to /sbin/init (systemd)
#   guest/       busybox (static) and xen-tpmfront.ko for the guest initramfs
#   guest/root/  trousers' tcsd and tpm-tools with their shared libraries,
#                /etc/tcsd.conf and the tss user's passwd/group lines, taken
#                from the dom0 root (the guest runs the same Debian userland)
#   versions     package versions the image was built from
# The directory is named after a hash of those package versions and of this
# script, so a Debian update or an edit here builds a new image; older images
# are removed. Concurrent callers serialise on a lock. Needs root and the
# Debian archive (the mirror is taken from the host's apt sources).
set -Eeuo pipefail
CACHE=${1:?usage: images.sh CACHE_ROOT}
SUITE=bookworm
XEN_PKG=xen-hypervisor-4.17-amd64
XEN_UTILS=xen-utils-4.17
# Runtime libraries of vtpmmgrd, vtpm-worker and vtpmctl, plus tools the
# scenarios use in dom0. Keep in step with the daemon's link line; a missing
# one is reported by the dom0 ldd check of the e2e run.
DOM0_PKGS=(
  "$XEN_UTILS" xenstore-utils kmod procps busybox psmisc
  systemd-sysv udev tpm-udev
  libtpms0 libtss2-esys-3.0.2-0 libtss2-mu0 libtss2-rc0 libtss2-sys1
  libtss2-tctildr0 libtss2-tcti-device0 tpm2-tools
  libspdlog1.10 libfmt9 libtomlplusplus3 libsystemd0 libseccomp2 libsqlite3-0 libssl3
)
GUEST_PKGS=(busybox-static)
# TPM 1.2 client software of the guest, installed into the dom0 root (with
# no service started) and copied from there into guest/root.
GUEST_TOOLS_PKGS=(trousers tpm-tools)
GUEST_TOOLS=(/usr/sbin/tcsd /usr/sbin/tpm_version /usr/sbin/tpm_takeownership /usr/sbin/tpm_getpubek
  /usr/sbin/tpm_nvdefine /usr/sbin/tpm_nvwrite /usr/sbin/tpm_nvread /usr/sbin/tpm_nvinfo)

log() { echo "[images] $*" >&2; }
# dom0_system ROOT: makes the debootstrapped tree a Debian dom0 that boots
# with systemd as an operator's would, plus what the harness needs: xen and
# xendomains enabled as their package leaves them (sysv scripts, run through
# systemd's generator), xenconsoled logging guest consoles, default target
# multi-user, no getty on hvc0 (the harness owns the console: e2e-console),
# apt's timers masked (no network).
dom0_system() {
  local r=$1
  echo dom0 > "$r/etc/hostname"
  echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > "$r/etc/fstab"
  : > "$r/etc/machine-id"
  mkdir -p "$r/var/log/journal" "$r/var/log/xen/console" "$r/etc/xen/auto"
  echo 'XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"' >> "$r/etc/default/xen"
  ln -sf /lib/systemd/system/multi-user.target "$r/etc/systemd/system/default.target"
  for u in serial-getty@hvc0.service getty@tty1.service apt-daily.timer apt-daily-upgrade.timer \
           e2scrub_all.timer fstrim.timer systemd-timesyncd.service; do
    ln -sf /dev/null "$r/etc/systemd/system/$u"
  done
  [[ -e $r/etc/rc2.d/S01xen || -n $(ls "$r"/etc/rc2.d/S*xen 2>/dev/null) ]] ||
    { log "xen-utils-common left no rc2.d link for its xen init script"; return 1; }
}

# "<package> <candidate version>" for each package, in one apt-cache call.
candidates() {
  apt-cache policy "$@" | awk '/^[^ ].*:$/{p=substr($0, 1, length($0)-1)} /^  Candidate:/{print p, $2}'
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
[[ -n $kpkg ]] || { log "cannot resolve the kernel package behind linux-image-amd64"; exit 1; }
all=("$XEN_PKG" "$kpkg" "${DOM0_PKGS[@]}" "${GUEST_PKGS[@]}" "${GUEST_TOOLS_PKGS[@]}")
versions=$(candidates "${all[@]}")
if [[ $(grep -cv ' (none)$' <<<"$versions") != "${#all[@]}" ]]; then
  log "packages without an installable version:"; log "$versions"; exit 1
fi
key=$( (echo "$versions"; cat "$0") | sha256sum | cut -c1-16)
out=$CACHE/$key
if [[ -e $out/ready ]]; then
  log "cached: $out"
  echo "$out"; exit 0
fi
log "building $out (cold)"
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
work=$CACHE/tmp-$key
rm -rf "$work"; mkdir -p "$work"/{debs,xen,kernel,img/guest}
trap 'rm -rf "$work"' EXIT

t0=$SECONDS
(cd "$work/debs" && apt-get download -q -o APT::Sandbox::User=root "$XEN_PKG" "$kpkg" "${GUEST_PKGS[@]}" >/dev/null)
dpkg -x "$work"/debs/"${XEN_PKG}"_*.deb "$work/xen"
dpkg -x "$work"/debs/"${kpkg}"_*.deb "$work/kernel"
dpkg -x "$work"/debs/busybox-static_*.deb "$work/bb"
kver=${kpkg#linux-image-}
zcat "$work"/xen/boot/xen-4.17-amd64.gz > "$work/img/xen"
cp "$work/kernel/boot/vmlinuz-$kver" "$work/img/vmlinuz"
cp "$work/bb/bin/busybox" "$work/img/guest/busybox"
mods=$work/kernel/lib/modules/$kver
cp "$mods/kernel/drivers/char/tpm/xen-tpmfront.ko" "$work/img/guest/"
log "fetch: $((SECONDS - t0))s"

t0=$SECONDS
root=$work/root
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[[ -n $mirror ]] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
incl=$(IFS=,; echo "${DOM0_PKGS[*]}")
if ! debootstrap --variant=minbase --include="$incl" "$SUITE" "$root" "$mirror" > "$work/debootstrap.log" 2>&1; then
  tail -20 "$work/debootstrap.log" >&2; log "debootstrap failed"; exit 1
fi
# debootstrap only sees the release suite; take the point-release and security
# updates the host uses so xen-utils matches the hypervisor.
cp /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/" 2>/dev/null || cp /etc/apt/sources.list "$root/etc/apt/"
chroot "$root" apt-get -q update > "$work/upgrade.log" 2>&1
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get -q -y upgrade >> "$work/upgrade.log" 2>&1 ||
  { tail -20 "$work/upgrade.log" >&2; log "apt-get upgrade in dom0 root failed"; exit 1; }
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod +x "$root/usr/sbin/policy-rc.d"
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get -q -y install --no-install-recommends "${GUEST_TOOLS_PKGS[@]}" \
  >> "$work/upgrade.log" 2>&1 || { tail -20 "$work/upgrade.log" >&2; log "installing ${GUEST_TOOLS_PKGS[*]} failed"; exit 1; }
rm -f "$root/usr/sbin/policy-rc.d"
hv=$(dpkg-deb -f "$work"/debs/"${XEN_PKG}"_*.deb Version)
ut=$(chroot "$root" dpkg-query -W -f='${Version}' "$XEN_UTILS")
[[ $hv == "$ut" ]] || { log "dom0 $XEN_UTILS $ut does not match hypervisor $hv"; exit 1; }
log "dom0 root: $((SECONDS - t0))s"

# The guest's TPM 1.2 tools: binaries, the libraries ldd resolves in the
# chroot (copied as files under their resolved paths), the loader, tcsd.conf,
# and libgcc_s, which glibc loads at run time for pthread_exit (tcsd's
# threads; ldd does not list it).
g=$work/img/guest/root
libs=$(chroot "$root" ldd "${GUEST_TOOLS[@]}" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | sort -u)
for f in "${GUEST_TOOLS[@]}" $libs /lib/x86_64-linux-gnu/libgcc_s.so.1 /etc/tcsd.conf; do
  mkdir -p "$g$(dirname "$f")"; cp -L "$root$f" "$g$f"
done
grep -E '^(root|tss):' "$root/etc/passwd" > "$work/img/guest/passwd"
grep -E '^(root|tss):' "$root/etc/group" > "$work/img/guest/group"
grep -q '^tss:' "$work/img/guest/passwd" || { log "trousers did not create the tss user"; exit 1; }

t0=$SECONDS
(cd "$root" && rm -rf var/cache/apt/* var/lib/apt/lists/* usr/share/doc/* usr/share/man/* \
   usr/share/locale/* usr/share/info/* etc/apt/sources.list.d/*.sources)
mkdir -p "$root/lib/modules/$kver"
# Xen and TPM drivers; virtio-blk and ext4 for the root disk.
(cd "$mods" && cp -a --parents kernel/drivers/xen kernel/drivers/char/tpm \
   kernel/drivers/block/virtio_blk.ko kernel/drivers/virtio kernel/fs/ext4 kernel/fs/jbd2 \
   kernel/fs/mbcache.ko kernel/lib kernel/crypto kernel/arch/x86/crypto \
   modules.builtin modules.builtin.modinfo modules.order "$root/lib/modules/$kver/")
chroot "$root" depmod "$kver"
dom0_system "$root"

# The initramfs: busybox, the modules that reach the root disk, an init
# that mounts it and switches to systemd.
ird=$work/initrd
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lib/modules/$kver}
cp "$work/img/guest/busybox" "$ird/bin/busybox"
(cd "$mods" && cp -a --parents kernel/drivers/block/virtio_blk.ko kernel/drivers/virtio kernel/fs/ext4 \
   kernel/fs/jbd2 kernel/fs/mbcache.ko kernel/lib kernel/crypto kernel/arch/x86/crypto \
   modules.builtin modules.builtin.modinfo modules.order "$ird/lib/modules/$kver/")
# depmod of the dom0 root (the host may have no kmod), on a copy inside it.
mkdir -p "$root/tmp/ird"; mv "$ird/lib" "$root/tmp/ird/"
chroot "$root" depmod -b /tmp/ird "$kver"
mv "$root/tmp/ird/lib" "$ird/"; rm -rf "$root/tmp/ird"
cat > "$ird/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
# The kernel asks /sbin/modprobe for what ext4 needs at mount (crc32c).
mkdir -p /sbin; ln -s /bin/modprobe /sbin/modprobe
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_pci virtio_blk crc32c_generic ext4; do modprobe "$m" || echo "E2E-DOM0-ERROR: modprobe $m failed"; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
mount -t ext4 -o rw /dev/vda /newroot || { echo "E2E-DOM0-ERROR: cannot mount the root disk /dev/vda"; exec sh; }
umount /proc /sys; mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
INIT
chmod 755 "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet) > "$work/img/dom0-initrd.cpio"
mv "$root" "$work/img/dom0-root"
{ echo "$versions"; echo "dom0 $XEN_UTILS $ut"; echo "kernel $kver"; } > "$work/img/versions"
touch "$work/img/ready"
mv "$work/img" "$out"
log "pack: $((SECONDS - t0))s"
echo "$out"
