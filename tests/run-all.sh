#!/usr/bin/env bash
# run-all.sh: the README's test command. Installs the Debian packages, builds with -Werror, runs
# the whole suite, then builds with MOE_SANITIZE=address;undefined and runs the non-MPI and the
# np1/np2 tests under it, then builds the libFuzzer targets with clang and runs each for a bounded
# time (tests/fuzz/run.sh, docs/fuzzing.md).
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

# Fuzzing: each parser of outside input for MOE_FUZZ_SECONDS (default 20), two targets at a time,
# on a scratch copy of its seed corpus; any crash, leak, hang or out-of-memory fails CI.
MOE_FUZZ_BUILD="$PWD/build-fuzz-ci" MOE_FUZZ_JOBS=2 bash tests/fuzz/run.sh "${MOE_FUZZ_SECONDS:-20}"
