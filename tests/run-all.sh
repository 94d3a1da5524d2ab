#!/usr/bin/env bash
# run-all.sh: the README's test command. Installs the Debian packages, builds with -Werror, runs
# the whole suite, then builds with MOE_SANITIZE=address;undefined and runs the non-MPI and the
# np1/np2 tests under it.
set -euo pipefail
cd "$(dirname "$0")/.."
sh ./install-deps.sh
export OPENBLAS_NUM_THREADS=1

cmake -S . -B build-ci -DMOE_WERROR=ON -DCMAKE_BUILD_TYPE=Release
cmake --build build-ci -j2
(cd build-ci && ctest --output-on-failure -j2)

cmake -S . -B build-asan -DMOE_WERROR=ON -DMOE_SANITIZE="address;undefined" -DCMAKE_BUILD_TYPE=Debug
cmake --build build-asan -j2
(cd build-asan && ctest --output-on-failure -j2 -LE "np4|nosan")
