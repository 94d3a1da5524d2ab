#!/bin/sh
# gcide.sh OUT: a ~30 MB English prose corpus from Debian's dict-gcide (the Collaborative
# International Dictionary of English: Webster's 1913 with WordNet 1.5 additions), for balancing
# experiments that need more than the quickstart's default corpus. Nothing is downloaded beyond the
# Debian package (install-deps.sh installs it). Deterministic: the same package version gives the
# same bytes (docs/data.md lists the version and the SHA-256 measured). Written to OUT.tmp, then
# renamed: a failure leaves no OUT. Exit 0 ok, 1 failed to write, 2 bad usage or package missing.
#
# What it keeps: every entry from the first headword on, each paragraph joined into one line; it
# drops the dictd header entries, the source tags alone on a line ([1913 Webster], [WordNet 1.5],
# [PJC], ...), the pronunciation after each headword (\Ab*do"men\) and the cross-reference braces.
set -u
SRC=${GCIDE_DICT:-/usr/share/dictd/gcide.dict.dz}
if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: sh examples/corpus/gcide.sh OUT   (writes the corpus to OUT)" >&2
    exit 2
fi
OUT=$1
if [ ! -r "$SRC" ]; then
    echo "gcide.sh: $SRC not found: install the Debian package dict-gcide (apt-get install -y dict-gcide; install-deps.sh does)" >&2
    exit 2
fi
dir=$(dirname -- "$OUT")
if [ ! -d "$dir" ]; then
    echo "gcide.sh: the directory of $OUT does not exist: create $dir first" >&2
    exit 2
fi
tmp="$OUT.tmp.$$"
trap 'rm -f "$tmp"' EXIT INT TERM
if ! gzip -dc "$SRC" | LC_ALL=C awk '
    function flush() { if (para != "") { print para; para = "" } }
    !started { if ($0 ~ /^[^ \t0*=].* \\[^\\]+\\/) started = 1; else next }
    /^[ \t]*\[[^]]*\][ \t]*$/ { next }
    /^[ \t]*$/ { flush(); blank = 1; next }
    {
        line = $0
        sub(/^[ \t]+/, "", line)
        gsub(/[{}]/, "", line)
        if ($0 !~ /^[ \t]/ && line ~ / \\[^\\]+\\/) {
            sub(/ \\[^\\]+\\/, "", line)
            if (blank) print ""
        }
        blank = 0
        para = para == "" ? line : para " " line
    }
    END { flush() }' >"$tmp"; then
    echo "gcide.sh: reading $SRC or writing $tmp failed" >&2
    exit 1
fi
if [ ! -s "$tmp" ] || ! mv -f "$tmp" "$OUT"; then
    echo "gcide.sh: could not write $OUT (disk full? permissions?)" >&2
    exit 1
fi
trap - EXIT INT TERM
ver=$(dpkg-query -W -f='${Version}' dict-gcide 2>/dev/null || echo unknown)
echo "gcide.sh: $OUT: $(wc -c <"$OUT") bytes from dict-gcide $ver"
