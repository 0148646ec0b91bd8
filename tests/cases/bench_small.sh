#!/usr/bin/env bash
# The benchmark's correctness check at small scale (bench/run measures speed;
# this proves the detections): generates the bench database (10 k hash + 2 k
# body signatures in .hdb/.hsb/.ndb) and a small corpus with planted
# detections, compiles the database with `khien db compile`, scans the corpus
# and requires khien's findings to equal the ground truth exactly: every
# planted file reported with the right name, nothing else reported.
#
# It also checks that the generators are deterministic (a second run with
# the same seed gives identical bytes) and that the plants cover every kind
# the benchmark relies on (MD5, SHA-256, body signatures of each class and
# offset kind, zip and tar.gz members), so that a passing run means
# something. No peers, no timing. Exits 0 on success, 1 on failure, 77 when
# a needed tool is missing.
set -uo pipefail
: "${KHIEN_BIN:?KHIEN_BIN must name the folder holding the khien binary}"
khien=$KHIEN_BIN/khien
bench=$(dirname "$KHIEN_BIN")/bench
for f in "$khien" "$bench/gen_db" "$bench/gen_corpus"; do
	if [ ! -x "$f" ]; then
		echo "FAIL: $f does not exist or is not executable (build everything first)"
		exit 1
	fi
done
for tool in awk sort diff cmp; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: '$tool' is not installed"
		exit 77
	fi
done
export LC_ALL=C
unset KHIEN_DB
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

failures=0
fail() {
	failures=$((failures + 1))
	echo "FAIL: $*"
}

# Small scale, with a smaller corpus and more plants than bench/run's, so
# that every kind of plant occurs while the test stays fast (also under
# ASan, where the scan is several times slower).
args=(--scale small --seed 7 --corpus-mb 8 --plants 120)
gen() {
	"$bench/gen_db" "${args[@]}" --db "$1/db" --yara "$1/bench.yar" &&
		"$bench/gen_corpus" "${args[@]}" --out "$1/corpus" --truth "$1/truth.tsv"
}
mkdir -p "$tmp/a" "$tmp/b"
if ! gen "$tmp/a"; then
	echo "FAIL: the generators failed"
	exit 1
fi

# Determinism: the same seed gives the same bytes, database and corpus alike.
if ! gen "$tmp/b"; then
	fail "the second generation failed"
elif ! diff -r -q "$tmp/a" "$tmp/b" >"$tmp/det.diff"; then
	fail "two runs with the same seed differ:"
	sed -n '1,10s/^/  /p' "$tmp/det.diff"
fi
rm -rf "$tmp/b"

# The database has the sizes asked for, and the plants cover every kind.
nhash=$(cat "$tmp/a/db/bench.hdb" "$tmp/a/db/bench.hsb" | wc -l)
nbody=$(wc -l <"$tmp/a/db/bench.ndb")
[ "$nhash" -eq 10000 ] || fail "expected 10000 hash signatures, got $nhash"
[ "$nbody" -eq 2000 ] || fail "expected 2000 body signatures, got $nbody"
nplanted=$(grep -vc '^#' "$tmp/a/truth.tsv")
[ "$nplanted" -eq 120 ] || fail "expected 120 planted files in the truth, got $nplanted"
for want in kind=md5 kind=sha256 kind=body container=file container=zip container=tgz \
	host=bin host=text host=pe class=plain class=anyq class=alt class=gap class=star \
	offset=any offset=abs offset=eof offset=ep offset=sec offset=sl target=0 target=1; do
	col=${want%%=*} val=${want#*=}
	n=$(awk -F'\t' -v col="$col" -v val="$val" '
		/^#/ { for (i = 1; i <= NF; i++) { h = $i; sub(/^# /, "", h); idx[h] = i }; next }
		$(idx[col]) == val { n++ } END { print n + 0 }' "$tmp/a/truth.tsv")
	[ "$n" -gt 0 ] || fail "no plant with $want: the check would not cover it"
done

# Compile and scan.
if ! "$khien" db compile -q "$tmp/a/db" -o "$tmp/a.kdb" >"$tmp/compile.out" 2>&1; then
	fail "khien db compile failed:"
	sed -n '1,10s/^/  /p' "$tmp/compile.out"
	exit 1
fi
"$khien" scan -d "$tmp/a.kdb" --no-summary -i "$tmp/a/corpus" >"$tmp/scan.out" 2>"$tmp/scan.err"
rc=$?
[ "$rc" -eq 1 ] || fail "khien scan exited with $rc, expected 1 (infected files found)"
if grep -v ' FOUND$' "$tmp/scan.out" | grep -q .; then
	fail "khien printed lines other than findings:"
	grep -v ' FOUND$' "$tmp/scan.out" | sed -n '1,10s/^/  /p'
fi

# The findings, as "path<TAB>name" relative to the corpus, against the truth.
awk -F'\t' '!/^#/ { print $1 "\t" $2 }' "$tmp/a/truth.tsv" | sort >"$tmp/want"
awk -v prefix="$tmp/a/corpus/" '/ FOUND$/ {
	line = $0
	sub(/ FOUND$/, "", line)
	i = match(line, /: [^:]*$/)
	path = substr(line, 1, i - 1)
	if (index(path, prefix) == 1) path = substr(path, length(prefix) + 1)
	print path "\t" substr(line, i + 2)
}' "$tmp/scan.out" | sort >"$tmp/got"
if ! diff "$tmp/want" "$tmp/got" >"$tmp/found.diff"; then
	fail "khien's findings differ from the ground truth ('<' expected, '>' reported):"
	sed -n '1,30s/^/  /p' "$tmp/found.diff"
	# Name the kind of each missed plant, to point at the failing feature.
	grep '^<' "$tmp/found.diff" | cut -c3- | cut -f1 | head -n 10 | while read -r p; do
		grep -F "$p	" "$tmp/a/truth.tsv" | sed 's/^/  missed: /'
	done
fi

if [ "$failures" -gt 0 ]; then
	echo "bench_small: $failures check(s) failed"
	exit 1
fi
echo "bench_small: $nplanted planted detections found exactly, generators deterministic"
exit 0
