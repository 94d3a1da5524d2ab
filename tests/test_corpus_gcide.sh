#!/usr/bin/env bash
# test_corpus_gcide.sh: examples/corpus/gcide.sh builds the GCIDE corpus from the Debian package
# dict-gcide deterministically (two builds, the same bytes), at least 20 MB of prose without the
# dictionary's markup (no source tags alone on a line, no pronunciation after a headword, no
# braces), that moe trains on; bad usage, a missing package and an unwritable output are refused
# with exit 2 / 1 and leave no file.
#   MOE_BIN=build/moe bash tests/test_corpus_gcide.sh
set -u
: "${MOE_BIN:?MOE_BIN (the moe executable) must be set}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
SCRIPT="$(dirname "$0")/../examples/corpus/gcide.sh"
WORK=$(mktemp -d /tmp/moe-gcide-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

[ -r /usr/share/dictd/gcide.dict.dz ] || { echo "FAIL: dict-gcide is not installed (install-deps.sh installs it)" >&2; exit 1; }
sh "$SCRIPT" "$WORK/a.txt" || fail "first build: exit $?"
sh "$SCRIPT" "$WORK/b.txt" || fail "second build: exit $?"
cmp -s "$WORK/a.txt" "$WORK/b.txt" || fail "two builds differ"
size=$(wc -c <"$WORK/a.txt")
[ "$size" -ge 20000000 ] || fail "corpus is $size bytes, expected >= 20 MB"
grep -qE '^[[:space:]]*\[[^]]*\][[:space:]]*$' "$WORK/a.txt" && fail "a source tag line is left"
grep -qF '{' "$WORK/a.txt" && fail "cross-reference braces are left"
grep -q '^Abdomen, n\. ' "$WORK/a.txt" || fail "the entry 'Abdomen' does not read 'Abdomen, n. ...' (pronunciation kept?)"
grep -qF '\Ab*do"men\' "$WORK/a.txt" && fail "a headword pronunciation is left"
ls "$WORK" | grep -q tmp && fail "a temporary file is left"

# moe trains on it (two steps of the quickstart model).
cfg="$(dirname "$0")/../examples/tiny-moe.json"
timeout -k 5 120 "$MOE_BIN" train "$cfg" --set data.path="$WORK/a.txt" --set train.steps=2 \
    --set train.warmup_steps=1 --set out_dir="$WORK/run" >"$WORK/train.log" 2>&1 ||
    { cat "$WORK/train.log"; fail "moe train on the corpus: exit $?"; }

# Refusals.
sh "$SCRIPT" >/dev/null 2>&1; [ $? = 2 ] || fail "no argument: expected exit 2"
GCIDE_DICT=/nonexistent/gcide.dict.dz sh "$SCRIPT" "$WORK/c.txt" 2>"$WORK/err"; rc=$?
[ $rc = 2 ] || fail "missing package: exit $rc, expected 2"
grep -q "dict-gcide" "$WORK/err" || fail "missing package: the message does not name dict-gcide"
sh "$SCRIPT" "$WORK/nodir/c.txt" 2>/dev/null; [ $? = 2 ] || fail "missing directory: expected exit 2"
mkdir "$WORK/ro" && chmod 500 "$WORK/ro"
if [ "$(id -u)" != 0 ]; then  # root writes anywhere: the check needs a normal user
    sh "$SCRIPT" "$WORK/ro/c.txt" 2>/dev/null; [ $? = 1 ] || fail "unwritable directory: expected exit 1"
fi
[ -e "$WORK/c.txt" ] && fail "a refused build left its output"
ls "$WORK/ro" | grep -q . && fail "a refused build left a file"

[ $failures = 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "ok: gcide corpus ($size bytes)"
