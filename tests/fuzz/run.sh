#!/usr/bin/env bash
# run.sh [SECONDS]: builds the libFuzzer targets (clang, MOE_FUZZ=ON, in build-fuzz/) and runs each
# for SECONDS (default 20) on a scratch copy of its seed corpus and regression inputs, so the
# committed corpus is never modified. Exits non-zero when any target found a crash, a leak, an
# out-of-memory or a timeout; the input that did it is printed and kept under the scratch directory.
# Environment: MOE_FUZZ_BUILD (build dir, default build-fuzz), MOE_FUZZ_TARGETS (a subset, e.g.
# "config sweep"), MOE_FUZZ_KEEP (scratch dir to use and keep, e.g. to grow a corpus over runs),
# MOE_FUZZ_JOBS (targets run side by side, default 1). docs/fuzzing.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
secs="${1:-20}"
build="${MOE_FUZZ_BUILD:-$root/build-fuzz}"
targets="${MOE_FUZZ_TARGETS:-config hf_config sweep manifest latest data safetensors trace}"
jobs="${MOE_FUZZ_JOBS:-1}"

if [ ! -f "$build/CMakeCache.txt" ]; then
  cc="${CC:-$(command -v clang || command -v clang-14 || echo clang)}"
  CC="$cc" cmake -S "$root" -B "$build" -DMOE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$build" --target fuzz -j2

scratch="${MOE_FUZZ_KEEP:-$(mktemp -d /tmp/moe-fuzz-run-XXXXXX)}"
mkdir -p "$scratch"
export OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

dict_of() {
  case "$1" in
    config | hf_config | sweep | safetensors) echo "$here/json.dict" ;;
    manifest) echo "$here/proto.dict" ;;
    *) echo "" ;;
  esac
}

run_one() {
  local t="$1" w="$scratch/$1"
  mkdir -p "$w/corpus" "$w/artifacts"
  cp -n "$here/corpus/$t/"* "$w/corpus/" 2>/dev/null || true
  find "$here/regress/$t" -type f ! -name '.*' -exec cp -n {} "$w/corpus/" \;
  local dict
  dict="$(dict_of "$t")"
  local rc=0
  (cd "$w" && "$build/tests/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=30 \
     -print_final_stats=1 -artifact_prefix="$w/artifacts/" ${dict:+-dict="$dict"} \
     "$w/corpus") >"$w/log" 2>&1 || rc=$?
  local execs cov ft
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$w/log" | tail -1)"
  cov="$(grep -o 'cov: [0-9]*' "$w/log" | tail -1 | cut -d' ' -f2)"
  ft="$(grep -o 'ft: [0-9]*' "$w/log" | tail -1 | cut -d' ' -f2)"
  if [ "$rc" -ne 0 ]; then
    echo "fuzz_$t: FAILED (exit $rc) after ${execs:-?} executions; last lines of $w/log:"
    tail -40 "$w/log"
    ls -l "$w/artifacts"
    return 1
  fi
  echo "fuzz_$t: ok, ${execs:-?} executions in ${secs}s, cov ${cov:-?}, ft ${ft:-?}, corpus $(ls "$w/corpus" | wc -l)"
}

fail=0
pids=()
names=()
for t in $targets; do
  run_one "$t" >"$scratch/$t.summary" 2>&1 &
  pids+=($!)
  names+=("$t")
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    wait "${pids[0]}" || fail=1
    cat "$scratch/${names[0]}.summary"
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || fail=1
  cat "$scratch/${names[$i]}.summary"
done

if [ "$fail" -ne 0 ]; then
  echo "fuzz: a target failed; its input is in $scratch/<target>/artifacts/ — add it to" \
       "tests/fuzz/regress/<target>/ with the fix (docs/fuzzing.md)"
  exit 1
fi
[ -n "${MOE_FUZZ_KEEP:-}" ] || rm -rf "$scratch"
echo "fuzz: every target ran ${secs}s without a failure"
