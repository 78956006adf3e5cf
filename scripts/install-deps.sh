#!/bin/bash
# Installs every Debian package the build, the tests and the demo need.
# Safe to run again; needs root. --no-update: the caller ran apt-get update.
set -euo pipefail
update=1
[[ ${1:-} == --no-update ]] && update=0
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  build-essential cmake pkg-config ninja-build
  libxen-dev xen-utils-4.17 xenstore-utils
  libtpms-dev swtpm swtpm-tools
  libtss2-dev tpm2-tools
  libssl-dev libsqlite3-dev sqlite3 libseccomp-dev
  libspdlog-dev libfmt-dev libsystemd-dev
  libcli11-dev nlohmann-json3-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  trousers tpm-tools libtspi-dev
  clang-14 libclang-rt-14-dev
  procps psmisc util-linux systemd man-db
  qemu-system-x86 debootstrap cpio python3 e2fsprogs
  debhelper dpkg-dev fakeroot lintian binutils
)
need=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  # trousers' postinst tries to start tcsd; no service may start from a package install.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  ((update)) && apt-get update
  apt-get install -y --no-install-recommends "${need[@]}"
fi
