#!/bin/bash
# Installs what the tests need, builds, and runs the selected test tiers.
#   scripts/test.sh                 # every tier: unit sim fuzz fault e2e
#   scripts/test.sh unit sim        # only those tiers
# unit, sim and fuzz run under ASan/UBSan; fault uses the plain build; e2e
# builds the Debian package (scripts/build-deb.sh build/deb) and installs it.
# Prints the time each tier took. Needs root (xenstored, swtpm, tcsd, seccomp users).
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
tiers=("$@")
((${#tiers[@]})) || tiers=(unit sim fuzz fault e2e)
for t in "${tiers[@]}"; do
  case $t in unit|sim|fuzz|fault|e2e) ;; *) echo "unknown tier '$t' (choose from: unit sim fuzz fault e2e)" >&2; exit 2;; esac
done
JOBS=${JOBS:-$(nproc)}
bash scripts/install-deps.sh

want() { local x; for x in "${tiers[@]}"; do [[ $x == "$1" ]] && return 0; done; return 1; }
build() {  # build <dir> <target> <cmake args...>: a test build (VTPM_TESTS=ON)
  local dir=$1 target=$2; shift 2
  cmake -S . -B "$dir" -G Ninja -DVTPM_TESTS=ON "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS" --target "$target"
}
declare -A took
status=0
run_tier() {  # run_tier <tier> <build dir>
  local t=$1 dir=$2 start=$SECONDS
  echo "=== tier $t ==="
  if ! ctest --test-dir "$dir" -L "^$t\$" --output-on-failure --no-tests=error -j "${CTEST_JOBS:-1}" --timeout 1500; then
    status=1
  fi
  took[$t]=$((SECONDS - start))
}

if want unit || want sim; then
  s=$SECONDS
  build build-asan all -DVTPM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  took[build-asan]=$((SECONDS - s))
  # gcc's ASan must be the first DSO; the sim tier preloads shims after it.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:verify_asan_link_order=0}
  want unit && run_tier unit build-asan
  want sim && run_tier sim build-asan
  unset ASAN_OPTIONS
fi
if want fuzz; then
  s=$SECONDS
  build build-fuzz fuzz_all -DVTPM_FUZZ=ON -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=Debug
  took[build-fuzz]=$((SECONDS - s))
  run_tier fuzz build-fuzz
fi
if want fault || want e2e; then
  s=$SECONDS
  build build all
  took[build]=$((SECONDS - s))
  want fault && run_tier fault build
  if want e2e; then
    # e2e installs the Debian package (release build, hardened, lintian-clean)
    # into a systemd dom0 on real Xen.
    s=$SECONDS
    if JOBS=$JOBS bash scripts/build-deb.sh build/deb; then
      took[package]=$((SECONDS - s))
      run_tier e2e build
    else
      took[package]=$((SECONDS - s)); status=1
    fi
  fi
fi
echo "=== time per step ==="
for k in build-asan unit sim build-fuzz fuzz build fault package e2e; do
  [[ -n ${took[$k]:-} ]] && printf '%-11s %5ss\n' "$k" "${took[$k]}"
done
exit $status
