#!/bin/bash
# test_version.sh: `moe --version` exits 0 and prints moe's version (the project's), the git
# revision of the source tree (captured at build time: HEAD or, after later commits, an ancestor;
# "unknown" outside a checkout) and every dependency's version as pkg-config reports it at configure time.
# Args: MOE_BIN SRC_DIR PROJECT_VERSION OPENBLAS HWLOC PROTOBUFC JANSSON (pkg-config versions).
set -u
bin=$1 src=$2 ver=$3
out=$("$bin" --version) || { echo "FAIL: moe --version exit $?"; exit 1; }
fails=0
need() { # LABEL REGEX
    grep -qE -- "$2" <<<"$out" || { echo "FAIL: $1: no line matching '$2' in:"; echo "$out"; fails=$((fails + 1)); }
}
need version "^moe ${ver//./\\.}\$"
# The revision of the last build: HEAD, or an ancestor of it when commits came after the build
# (ctest does not rebuild); "unknown" only outside a git checkout.
got=$(sed -n 's/^  git revision  \([0-9a-f]*\|unknown\)\(-dirty\)\{0,1\}$/\1/p' <<<"$out")
if git -C "$src" rev-parse HEAD >/dev/null 2>&1; then
    [ -n "$got" ] && [ "$got" != unknown ] && [ ${#got} = 12 ] &&
        git -C "$src" merge-base --is-ancestor "$got" HEAD 2>/dev/null ||
        { echo "FAIL: git revision '$got' is not HEAD or an ancestor of it:"; echo "$out"; fails=$((fails + 1)); }
else
    need "git revision" "^  git revision  unknown\$"
fi
need "Open MPI" "^  Open MPI      Open MPI v[0-9]+\.[0-9]+\.[0-9]+ \(header Open MPI [0-9]+\.[0-9]+\.[0-9]+, MPI [0-9]\.[0-9]\)\$"
need OpenBLAS "^  OpenBLAS      ${4//./\\.} \(OpenBLAS ${4//./\\.} .*; header ${4//./\\.}\)\$"
need hwloc "^  hwloc         ${5//./\\.} \(header; runtime API [0-9]+\.[0-9]+\.[0-9]+\)\$"
need protobuf-c "^  protobuf-c    ${6//./\\.} \(header ${6//./\\.}\)\$"
need jansson "^  jansson       ${7//./\\.} \(header ${7//./\\.}\)\$"
"$bin" --help | grep -qF -- "moe --version" || { echo "FAIL: moe --help does not mention --version"; fails=$((fails + 1)); }
[ $fails = 0 ] && echo "test_version: all passed"
[ $fails = 0 ]
