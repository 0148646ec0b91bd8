#!/usr/bin/env bash
# The demonstration made by scripts/make-demo must keep working and keep
# telling the truth: this test builds it in a temporary folder, compiles its
# signatures, scans its files and compares the result with what the demo's
# own README.txt promises. The expectations are read from README.txt (the
# table of files with FOUND NAME / OK, the "Expected: N files detected
# (FOUND), M clean (OK), exit status S" sentence, the FILE!MEMBER lines it
# shows for -a, and the "A or B" names that -z must both print), so that a
# change to the demo's files, its signatures, its README or the scanner that
# makes them disagree fails here. It also checks that make-demo's output is
# the same when it is run again over the same folder.
#
# Needs zip, tar, gzip and jq, as make-demo does (skips, exit 77, without).
set -uo pipefail
: "${KHIEN_BIN:?KHIEN_BIN must name the folder holding the khien binary}"
: "${KHIEN_SRC:=$(cd "$(dirname "$0")/../.." && pwd)}"
khien="$KHIEN_BIN/khien"
make_demo="$KHIEN_SRC/scripts/make-demo"
if [ ! -x "$khien" ]; then
	echo "FAIL: $khien does not exist or is not executable (build the khien-cli target)"
	exit 1
fi
for tool in zip tar gzip od md5sum sha256sum jq; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: '$tool' is not installed (make-demo or this test needs it)"
		exit 77
	fi
done
export LC_ALL=C
unset KHIEN_DB
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

failures=0 checks=0
fail() {
	failures=$((failures + 1))
	echo "FAIL: $*"
}
ok() {
	checks=$((checks + 1))
}
same() {
	if [ "$1" = "$2" ]; then ok; else fail "$3: got '$1', expected '$2'"; fi
}
show() {
	sed -n '1,40s/^/  | /p' "$1"
}

# ---------------------------------------------------------------------------
# Build the demo, twice over the same folder
# ---------------------------------------------------------------------------

demo="$tmp/demo"
if ! bash "$make_demo" "$demo" >"$tmp/make1.out" 2>"$tmp/make1.err"; then
	fail "make-demo failed"
	show "$tmp/make1.err"
	exit 1
fi
hashes() {
	(cd "$demo" && find README.txt sigs files -type f -print0 | sort -z | xargs -0 sha256sum)
}
first_hashes=$(hashes)
if ! bash "$make_demo" "$demo" >"$tmp/make2.out" 2>"$tmp/make2.err"; then
	fail "make-demo failed when run again over its own folder"
	show "$tmp/make2.err"
	exit 1
fi
if [ "$(hashes)" = "$first_hashes" ]; then ok; else
	fail "make-demo made different files the second time"
	diff <(echo "$first_hashes") <(hashes) | sed 's/^/  | /'
fi
readme="$demo/README.txt"
cd "$demo" || exit 1

# ---------------------------------------------------------------------------
# Read the expectations from README.txt
# ---------------------------------------------------------------------------

# The table: "files/PATH   FOUND  NAME[ or NAME]" or "files/PATH   OK ...";
# a long PATH is alone on its line and the result starts the next one.
declare -A want_status=() want_names=()
rows=()
pending=""
while IFS= read -r line; do
	read -r -a w <<<"$line"
	[ ${#w[@]} -eq 0 ] && continue
	if [[ ${w[0]} == files/* ]]; then
		path=${w[0]}
		w=("${w[@]:1}")
		if [ ${#w[@]} -eq 0 ]; then
			pending=$path
			continue
		fi
	elif [ -n "$pending" ]; then
		path=$pending
	else
		continue
	fi
	pending=""
	case ${w[0]} in
	FOUND)
		names=()
		for t in "${w[@]:1}"; do [ "$t" = or ] || names+=("$t"); done
		want_status[$path]=FOUND
		want_names[$path]="${names[*]}"
		rows+=("$path")
		;;
	OK)
		want_status[$path]=OK
		rows+=("$path")
		;;
	esac
done <"$readme"

expect_re='Expected: ([0-9]+) files detected \(FOUND\), ([0-9]+) clean \(OK\), exit status ([0-9]+)'
if [[ $(tr '\n' ' ' <"$readme" | tr -s ' ') =~ $expect_re ]]; then
	want_found=${BASH_REMATCH[1]} want_ok=${BASH_REMATCH[2]} want_rc=${BASH_REMATCH[3]}
	ok
else
	fail "README.txt has no 'Expected: N files detected (FOUND), M clean (OK), exit status S' sentence"
	exit 1
fi
n_found=0 n_ok=0
for p in "${rows[@]}"; do
	if [ "${want_status[$p]}" = FOUND ]; then n_found=$((n_found + 1)); else n_ok=$((n_ok + 1)); fi
done
same "$n_found" "$want_found" "FOUND rows in the README table against its 'Expected' sentence"
same "$n_ok" "$want_ok" "OK rows in the README table against its 'Expected' sentence"
for p in "${rows[@]}"; do
	if [ -f "$p" ]; then ok; else fail "README.txt lists $p, which make-demo did not create"; fi
done
# make-demo's closing message repeats the expectation.
if grep -Eq "expect $want_found infected files, $want_ok OK, exit $want_rc" "$tmp/make1.out"; then ok; else
	fail "make-demo's message does not say 'expect $want_found infected files, $want_ok OK, exit $want_rc'"
	show "$tmp/make1.out"
fi

# ---------------------------------------------------------------------------
# Compile the demo's signatures
# ---------------------------------------------------------------------------

if "$khien" db compile sigs -o demo.kdb >"$tmp/compile.out" 2>"$tmp/compile.err"; then ok; else
	fail "khien db compile sigs -o demo.kdb failed"
	show "$tmp/compile.err"
	exit 1
fi
if [ -s "$tmp/compile.err" ]; then
	fail "compiling the demo's signatures printed problems"
	show "$tmp/compile.err"
else ok; fi
"$khien" db info --json demo.kdb >"$tmp/info.json" || fail "khien db info demo.kdb failed"
# Every signature file in sigs/ is a source with signatures and no errors.
for f in sigs/*; do
	name=${f#sigs/}
	got=$(jq -r --arg n "$name" '.sources[] | select(.name == $n) | "\(.signatures > 0) \(.errors)"' "$tmp/info.json")
	same "$got" "true 0" "db info: source $name (has signatures, errors)"
done

# ---------------------------------------------------------------------------
# Scan it: the README's table, line by line
# ---------------------------------------------------------------------------

"$khien" scan -d demo.kdb -j 1 files >"$tmp/scan.out" 2>"$tmp/scan.err"
rc=$?
same "$rc" "$want_rc" "exit status of 'khien scan -d demo.kdb files'"
same "$(sed -n 's/^Infected files: //p' "$tmp/scan.out")" "$want_found" "Infected files in the summary"
same "$(sed -n 's/^Scanned files: //p' "$tmp/scan.out")" "$((want_found + want_ok))" "Scanned files in the summary"
same "$(sed -n 's/^Errors: //p' "$tmp/scan.out")" 0 "Errors in the summary"
same "$(sed -n 's/^Not fully scanned: //p' "$tmp/scan.out")" 0 "Not fully scanned in the summary"

for p in "${rows[@]}"; do
	lines=$(grep -F -- "$p: " "$tmp/scan.out")
	n=$(grep -c . <<<"$lines")
	if [ "$n" != 1 ]; then
		fail "$p: $n result lines, expected 1"
		continue
	fi
	if [ "${want_status[$p]}" = OK ]; then
		same "$lines" "$p: OK" "the line for $p"
		continue
	fi
	matched=0
	for name in ${want_names[$p]}; do
		[ "$lines" = "$p: $name FOUND" ] && matched=1
	done
	if [ $matched = 1 ]; then ok; else
		fail "the line for $p is '$lines'; README.txt expects FOUND ${want_names[$p]// / or }"
	fi
done
# Nothing is reported that the README does not list.
while IFS= read -r reported; do
	if [ -n "${want_status[$reported]:-}" ]; then ok; else
		fail "the scan reports $reported, which README.txt does not list"
	fi
done < <(sed -n 's/^\(files\/[^:]*\): .*/\1/p' "$tmp/scan.out" | sort -u)

# -z prints every name of an "A or B" row.
"$khien" scan -d demo.kdb -j 1 -z --no-summary files >"$tmp/scan-z.out" 2>"$tmp/scan-z.err"
for p in "${rows[@]}"; do
	[ "${want_status[$p]}" = FOUND ] || continue
	for name in ${want_names[$p]}; do
		if grep -Fxq -- "$p: $name FOUND" "$tmp/scan-z.out"; then ok; else
			fail "with -z, no line '$p: $name FOUND'"
		fi
	done
done

# The FILE!MEMBER lines README.txt shows for -a.
"$khien" scan -d demo.kdb -j 1 -a --no-summary files >"$tmp/scan-a.out" 2>"$tmp/scan-a.err"
members=$(grep -Eo 'files/[^ !]+![^ ]+' "$readme" | sed 's/[.,;)]*$//' | sort -u)
if [ -n "$members" ]; then ok; else fail "README.txt shows no FILE!MEMBER line for -a"; fi
while IFS= read -r m; do
	[ -n "$m" ] || continue
	file=${m%%!*}
	want=""
	for name in ${want_names[$file]:-}; do
		grep -Fxq -- "$m: $name FOUND" "$tmp/scan-a.out" && want=$name
	done
	if [ -n "$want" ]; then ok; else
		fail "with -a, no line '$m: ${want_names[$file]:-?} FOUND' as README.txt shows"
		show "$tmp/scan-a.out"
	fi
done <<<"$members"

# --json says the same: infected for FOUND rows, clean for OK rows.
"$khien" scan -d demo.kdb -j 2 --json --no-summary files >"$tmp/scan.json" 2>"$tmp/scan-json.err"
for p in "${rows[@]}"; do
	got=$(jq -r --arg p "$p" 'select(.path == $p) | .status' "$tmp/scan.json")
	if [ "${want_status[$p]}" = FOUND ]; then want=infected; else want=clean; fi
	same "$got" "$want" "--json status of $p"
done

if [ "$failures" -gt 0 ]; then
	echo "FAILED: $failures of $((checks + failures)) checks (the demo in $demo is removed on exit)"
	exit 1
fi
echo "PASS: $checks checks (${#rows[@]} files of the demo's README table)"
exit 0
