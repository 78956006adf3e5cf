#!/bin/bash
# The benchmark (design §7 "bench"): builds a plain Release build in
# build-bench and runs vtpm-bench on the simulated Xen host against swtpm and
# in-process libtpms. Needs root. Takes about 5 minutes on 2 cores.
#   scripts/bench.sh [vtpm-bench options, e.g. --smoke or --output table.md]
# BENCH_REF=<commit> measures that commit (exported with git archive into a
# temporary directory and built there) instead of the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
BUILD=${BUILD:-$PWD/build-bench}
if [[ -n ${BENCH_REF:-} ]]; then
  SRC=$(mktemp -d /tmp/vtpm-bench-src.XXXXXX)
  trap 'rm -rf "$SRC"' EXIT
  git archive "$BENCH_REF" | tar -x -C "$SRC"
  BUILD=$SRC/build
  echo "measuring $(git rev-parse --short "$BENCH_REF")" >&2
fi
# -O2 as Debian builds packages (GCC 12 at -O3 reports a false -Wrestrict in src/tpm/host).
# vtpm-bench is a test target: VTPM_TESTS=ON.
cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVTPM_TESTS=ON \
  "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG" >/dev/null
cmake --build "$BUILD" -j "${JOBS:-2}" --target vtpm-bench
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$BUILD/tests/bench/vtpm-bench" "$@"
