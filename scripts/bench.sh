#!/bin/bash
# The benchmark (design §7 "bench"): builds a plain Release build in
# build-bench and runs vtpm-bench on the simulated Xen host against swtpm and
# in-process libtpms. Needs root. Takes about 5 minutes on 2 cores.
#   scripts/bench.sh [vtpm-bench options, e.g. --smoke or --output table.md]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-$PWD/build-bench}
# -O2 as Debian builds packages (GCC 12 at -O3 reports a false -Wrestrict in src/tpm/host).
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG" >/dev/null
cmake --build "$BUILD" -j "${JOBS:-2}" --target vtpm-bench
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec "$BUILD/tests/bench/vtpm-bench" "$@"
