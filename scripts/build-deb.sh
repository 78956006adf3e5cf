#!/bin/bash
# Builds the Debian package of this checkout and checks it:
#   sudo scripts/build-deb.sh [OUT_DIR]      (default OUT_DIR: ./dist)
# Installs the build dependencies (debian/control) and lintian, copies the
# tracked files of the checkout (with uncommitted changes) to a scratch
# directory, runs `dpkg-buildpackage -us -uc -b` there, runs lintian on the
# result (fails on any error), checks the binaries' hardening
# (scripts/check-hardening.sh) and leaves vtpmmgrd_<version>_amd64.deb and
# the build log in OUT_DIR. Also checks that the package's build tree has no
# test-only code (scripts/check-release-build.sh). VTPM_DEB_KEEP=1 keeps the scratch directory.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
OUT=$(realpath -m "${1:-$TOP/dist}")
[[ $(id -u) == 0 ]] || { echo "build-deb.sh needs root (apt-get)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

# Build-Depends from debian/control, plus the tools this script runs.
mapfile -t deps < <(sed -n '/^Build-Depends:/,/^[A-Z]/p' debian/control | sed '1s/^Build-Depends://; /^[A-Z]/d' |
  tr ',' '\n' | sed 's/([^)]*)//; s/^ *//; s/ *$//' | grep -v '^$' | sed "s/debhelper-compat.*/debhelper/; s/dh-sequence-installsysusers/debhelper/")
need=()
for p in "${deps[@]}" dpkg-dev fakeroot lintian binutils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  apt-get install -y --no-install-recommends "${need[@]}" >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
fi

work=$(mktemp -d /tmp/vtpmmgrd-deb.XXXXXX)
cleanup() { [[ ${VTPM_DEB_KEEP:-0} == 1 ]] && echo "scratch dir kept: $work" || rm -rf "$work"; }
trap cleanup EXIT
src=$work/vtpmmgrd
mkdir -p "$src" "$OUT"
git ls-files -z --cached --others --exclude-standard | grep -zv '^debian/\.debhelper\|^dist/' |
  xargs -0 cp --parents -t "$src" 2>/dev/null || true
[[ -f $src/debian/rules && -f $src/CMakeLists.txt ]] || { echo "copying the checkout failed" >&2; exit 1; }

log=$OUT/build.log
echo "building the package in $src (log: $log)"
if ! (cd "$src" && dpkg-buildpackage -us -uc -b -j"${JOBS:-$(nproc)}") > "$log" 2>&1; then
  tail -15 "$log" >&2; echo "dpkg-buildpackage failed (log: $log)" >&2; exit 1
fi
rm -f "$OUT"/vtpmmgrd_*.deb
cp "$work"/vtpmmgrd_*.deb "$work"/vtpmmgrd_*.buildinfo "$work"/vtpmmgrd_*.changes "$OUT/"
deb=$(ls "$OUT"/vtpmmgrd_*_amd64.deb)
echo "package: $deb"
dpkg-deb -c "$deb" | awk '{print "  " $1, $6, $7, $8}'

echo "lintian:"
lintian --fail-on error --display-info "$work"/vtpmmgrd_*.changes | sed 's/^/  /'
rc=${PIPESTATUS[0]}
((rc == 0)) || { echo "lintian reports errors" >&2; exit 1; }
echo "  (no errors)"

# Every compile of the package build had the hardening flags.
unflagged=$(grep -E '/usr/bin/c(\+\+|c) .* -c ' "$log" |
  awk '!/-D_FORTIFY_SOURCE=[23]/ || !/-fstack-protector-strong/' || true)
[[ -z $unflagged ]] || { echo "compiled without _FORTIFY_SOURCE or the stack protector:" >&2; echo "$unflagged" | head -5 >&2; exit 1; }
[[ $(grep -cE '/usr/bin/c(\+\+|c) .* -c ' "$log") -gt 0 ]] || { echo "no compile command in $log (not verbose?)" >&2; exit 1; }
echo "every compile line has -D_FORTIFY_SOURCE and -fstack-protector-strong"

# The package's build tree is a release build: no test-only code.
if ! rel=$(bash "$src/scripts/check-release-build.sh" "$src/obj-x86_64-linux-gnu" 2>&1); then
  echo "$rel" | grep -v '^ok:' >&2; exit 1
fi
echo "$rel" | tail -1

x=$work/extract
dpkg-deb -x "$deb" "$x"
bash "$TOP/scripts/check-hardening.sh" "$x/usr/sbin/vtpmmgrd" "$x/usr/sbin/vtpmctl" "$x"/usr/libexec/vtpmmgrd/vtpm-worker
