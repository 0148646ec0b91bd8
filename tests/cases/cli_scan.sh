#!/usr/bin/env bash
# `khien scan` end to end: builds its own signatures (.ndb .hdb .ldb .yar),
# files, a zip, a zip inside a zip, a tar.gz, an encrypted zip and a file over
# a size limit in a temporary folder, runs the real binary on them and checks
# what it prints: clamscan-style lines, the summary's counts, exit status 0/1/2,
# the output filters (-i -o -q --no-summary), --allmatch, --exclude and
# --exclude-dir, the --max-filesize and encryption notices and their --alert-*
# promotions, --json (sizes and SHA-256 against sha256sum), the escaping of
# hostile file names, -j 1 against -j 2, and sources against a compiled .kdb.
#
# Every check compares real values, and the test goes on after a failed check
# so that one run lists every difference; it exits 1 if any check failed.
# Needs jq, zip, tar, gzip and sha256sum (skips, exit 77, when one is absent).
set -uo pipefail
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash"
case_init jq zip tar gzip sha256sum od

# ---------------------------------------------------------------------------
# Helpers of this test (the shared checks are in common.bash)
# ---------------------------------------------------------------------------

# summary FIELD: the value of "FIELD: value" in the summary (stdout, or
# stderr with --json).
summary() {
	sed -n "s/^$1: //p" "$tmp/stdout" "$tmp/stderr" | head -n 1
}
expect_summary() {
	local v
	v=$(summary "$1")
	if [ "$v" = "$2" ]; then ok; else fail "summary '$1' is '$v', expected '$2'"; fi
}

# The lines of a report without the summary block (which has the time).
report_lines() {
	sed '/^$/,$d' "$tmp/stdout"
}

padding() {
	local i
	for ((i = 1; i <= 60; i++)); do
		printf 'padding line %02d: repeated text so that zip and gzip compress it\n' "$i"
	done
}

# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

mkdir -p sigs files/sub/deeper files/skip.d clean/docs stage/inner stage/tb arc big

printf 'hello KHIEN-TEST-ALPHA world\n' >files/alpha.txt
printf 'nothing to see here\n' >files/clean.txt
printf 'a file known by its MD5\n' >files/hashed.bin
printf 'first LOGIC-PART-ONE then LOGIC-PART-TWO\n' >files/logic.txt
printf 'only LOGIC-PART-ONE here, so the logical signature must not match\n' >files/logic-half.txt
printf 'a text with KHIEN-YARA-MARKER inside\n' >files/yara.txt
printf 'KHIEN-TEST-ALPHA and KHIEN-TEST-BETA\n' >files/sub/both.txt
printf 'still clean\n' >files/sub/deeper/clean2.txt
printf 'KHIEN-TEST-ALPHA in a directory that --exclude-dir skips\n' >files/skip.d/in-skip.txt
printf 'KHIEN-TEST-ALPHA in a file that --exclude skips\n' >files/excl-alpha.txt

printf 'clean one\n' >clean/one.txt
printf 'clean two, a bit longer\n' >clean/docs/two.txt
printf 'clean three\n' >clean/docs/three.txt

# Archives. The members are padded so that they are compressed: a stored
# member would also match in the raw bytes of the archive, and the line would
# then name no member.
{
	printf 'KHIEN-TEST-ALPHA\n'
	padding
} >stage/inner/alpha.txt
{
	padding
	printf 'KHIEN-TEST-BETA\n'
} >stage/tb/beta.txt
padding >stage/secret.txt
(cd stage && zip -q -r ../arc/arc.zip inner) || exit 1
(cd arc && zip -q -0 ../stage/nested.zip arc.zip && mv ../stage/nested.zip .) || exit 1
tar -C stage -czf arc/beta.tar.gz tb || exit 1
(cd stage && zip -q -P secret-password ../arc/enc.zip secret.txt) || exit 1

# A file over a --max-filesize of 100K, with a detection at its end.
{
	for ((i = 0; i < 3000; i++)); do printf 'filler line %05d of a large text file\n' "$i"; done
	printf 'KHIEN-TEST-ALPHA\n'
} >big/big.txt

# Signatures.
{
	echo "Test.Alpha:0:*:$(hex KHIEN-TEST-ALPHA)"
	echo "Test.Beta:0:*:$(hex KHIEN-TEST-BETA)"
} >sigs/t.ndb
echo "$(md5sum files/hashed.bin | cut -c1-32):$(wc -c <files/hashed.bin | tr -d ' '):Test.Hash.Md5" >sigs/t.hdb
printf 'Test.Logical;Engine:51-255,Target:0;0&1;%s;%s\n' "$(hex LOGIC-PART-ONE)" "$(hex LOGIC-PART-TWO)" >sigs/t.ldb
cat >sigs/t.yar <<'EOF'
rule Test_Yara_Marker
{
    strings:
        $m = "KHIEN-YARA-MARKER"
    condition:
        $m
}
EOF

if ! "$khien" db compile -q sigs -o sigs.kdb >"$tmp/stdout" 2>"$tmp/stderr"; then
	label=setup rc=$? cmdline="db compile -q sigs -o sigs.kdb"
	fail "cannot compile the test signatures"
	exit 1
fi

# ---------------------------------------------------------------------------
# Exit status 0 and the summary of a clean tree
# ---------------------------------------------------------------------------

run clean_tree scan -d sigs.kdb -j 1 clean
expect_rc 0
same "$(report_lines)" "clean/docs/three.txt: OK
clean/docs/two.txt: OK
clean/one.txt: OK" "the lines for the clean tree (in name order with -j 1)"
expect_summary "Known signatures" 5
expect_summary "Scanned directories" 2
expect_summary "Scanned files" 3
expect_summary "Infected files" 0
expect_summary "Not fully scanned" 0
expect_summary "Errors" 0
bytes=$(cat clean/one.txt clean/docs/two.txt clean/docs/three.txt | wc -c | tr -d ' ')
has_re "^Data scanned: [0-9.]+ MB \\($bytes bytes\\)$"

# ---------------------------------------------------------------------------
# Exit status 1: clamscan-style lines for every signature format
# ---------------------------------------------------------------------------

run mixed_tree scan -d sigs.kdb -j 1 files
expect_rc 1
has_line "files/alpha.txt: Test.Alpha FOUND"
has_line "files/clean.txt: OK"
has_line "files/excl-alpha.txt: Test.Alpha FOUND"
has_line "files/hashed.bin: Test.Hash.Md5 FOUND"
has_line "files/logic.txt: Test.Logical FOUND"
has_line "files/logic-half.txt: OK"
has_line "files/yara.txt: YARA.Test_Yara_Marker FOUND"
has_line "files/skip.d/in-skip.txt: Test.Alpha FOUND"
has_line "files/sub/deeper/clean2.txt: OK"
# Without --allmatch a file gets one line, whichever signature matched first.
count_re '^files/sub/both\.txt: ' 1
has_re '^files/sub/both\.txt: Test\.(Alpha|Beta) FOUND$'
count_re ' (FOUND|OK|WARNING|ERROR)$' 10
expect_summary "Scanned directories" 4
expect_summary "Scanned files" 10
expect_summary "Infected files" 7
expect_summary "Errors" 0
mixed_report=$(report_lines)

# The same scan with -j 1 twice gives the same lines in the same order.
run mixed_tree_again scan -d sigs.kdb -j 1 files
same "$(report_lines)" "$mixed_report" "two -j 1 runs"

# ---------------------------------------------------------------------------
# Output filters
# ---------------------------------------------------------------------------

run infected_only scan -d sigs.kdb -j 1 --infected files
expect_rc 1
no_re ': OK$'
same "$(report_lines)" "$(grep -v ': OK$' <<<"$mixed_report")" "--infected lines and the FOUND lines of a full scan"
expect_summary "Infected files" 7

run suppress_ok scan -d sigs.kdb -j 1 -o files
expect_rc 1
no_re ': OK$'
count_re ' FOUND$' 7

run no_summary scan -d sigs.kdb -j 1 --no-summary files
expect_rc 1
no_re 'SCAN SUMMARY'
no_re '^(Scanned files|Infected files|Known signatures):'
same "$(cat "$tmp/stdout")" "$mixed_report" "--no-summary output and the report of a full scan"

run quiet scan -d sigs.kdb -q files
expect_rc 1
same "$(cat "$tmp/stdout")" "" "stdout with -q"

# ---------------------------------------------------------------------------
# --allmatch against first match
# ---------------------------------------------------------------------------

run allmatch scan -d sigs.kdb -j 1 --allmatch --no-summary files/sub/both.txt
expect_rc 1
has_line "files/sub/both.txt: Test.Alpha FOUND"
has_line "files/sub/both.txt: Test.Beta FOUND"
count_re '^files/sub/both\.txt: ' 2

run first_match_json scan -d sigs.kdb --json --no-summary files/sub/both.txt
n=$(jq '.detections | length' "$tmp/stdout")
same "$n" 1 "detections without --allmatch (1 expected)"
run allmatch_json scan -d sigs.kdb -z --json --no-summary files/sub/both.txt
same "$(jq -r '[.detections[].name] | sort | join(",")' "$tmp/stdout")" "Test.Alpha,Test.Beta" "detections with -z"

# ---------------------------------------------------------------------------
# --exclude and --exclude-dir
# ---------------------------------------------------------------------------

run exclude scan -d sigs.kdb -j 1 -v --exclude '/excl-[^/]*$' --exclude-dir '/skip\.d$' files
expect_rc 1
no_re '^files/excl-alpha\.txt: '
no_re '^files/skip\.d/'
has_line "files/alpha.txt: Test.Alpha FOUND"
has_re '^khien scan: files/excl-alpha\.txt: excluded$' "$tmp/stderr"
has_re '^khien scan: files/skip\.d: directory excluded$' "$tmp/stderr"
expect_summary "Scanned directories" 3
expect_summary "Scanned files" 8
expect_summary "Infected files" 5

# An --exclude that matches nothing changes nothing.
run exclude_nothing scan -d sigs.kdb -j 1 --no-summary --exclude 'no-such-name' files
same "$(cat "$tmp/stdout")" "$mixed_report" "the report with an --exclude that matches nothing"

run exclude_bad_regex scan -d sigs.kdb --exclude '(' files
expect_rc 2
has_re 'exclude' "$tmp/stderr"

# ---------------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------------

run archives scan -d sigs.kdb -j 1 arc/arc.zip arc/nested.zip arc/beta.tar.gz
expect_rc 1
has_line "arc/arc.zip: Test.Alpha FOUND"
has_line "arc/nested.zip: Test.Alpha FOUND"
has_line "arc/beta.tar.gz: Test.Beta FOUND"
expect_summary "Infected files" 3

run archives_verbose scan -d sigs.kdb -j 1 -a -z --no-summary arc/arc.zip arc/nested.zip arc/beta.tar.gz
has_line "arc/arc.zip!inner/alpha.txt: Test.Alpha FOUND"
has_line "arc/nested.zip!arc.zip/inner/alpha.txt: Test.Alpha FOUND"
has_re '^arc/beta\.tar\.gz!([^/]+/)?tb/beta\.txt: Test\.Beta FOUND$'

run no_archive scan -d sigs.kdb -j 1 --no-archive --no-summary arc/arc.zip arc/nested.zip
expect_rc 0
has_line "arc/arc.zip: OK"
has_line "arc/nested.zip: OK"

# ---------------------------------------------------------------------------
# Encrypted archives and --max-filesize: WARNING, or FOUND with --alert-*
# ---------------------------------------------------------------------------

run encrypted scan -d sigs.kdb -j 1 arc/enc.zip
expect_rc 0
has_re '^arc/enc\.zip: Heuristics\.Encrypted\.[A-Za-z0-9.]+ WARNING$'
count_re ' (FOUND|OK|WARNING|ERROR)$' 1
expect_summary "Infected files" 0
expect_summary "Not fully scanned" 1

run encrypted_alert scan -d sigs.kdb -j 1 --alert-encrypted arc/enc.zip
expect_rc 1
has_re '^arc/enc\.zip: Heuristics\.Encrypted\.[A-Za-z0-9.]+ FOUND$'
expect_summary "Infected files" 1

run encrypted_alert_no scan -d sigs.kdb --alert-encrypted=no --no-summary arc/enc.zip
expect_rc 0
has_re ' WARNING$'

run big_unlimited scan -d sigs.kdb --no-summary big/big.txt
expect_rc 1
has_line "big/big.txt: Test.Alpha FOUND"

run max_filesize scan -d sigs.kdb --max-filesize 100K big/big.txt
expect_rc 0
has_re '^big/big\.txt: Heuristics\.Limits\.Exceeded[A-Za-z0-9.]* WARNING$'
no_re 'Test\.Alpha'
expect_summary "Not fully scanned" 1
expect_summary "Infected files" 0

run max_filesize_alert scan -d sigs.kdb --max-filesize 100K --alert-exceeds-max big/big.txt
expect_rc 1
has_re '^big/big\.txt: Heuristics\.Limits\.Exceeded[A-Za-z0-9.]* FOUND$'
expect_summary "Infected files" 1

run max_filesize_bad scan -d sigs.kdb --max-filesize 12Q big/big.txt
expect_rc 2
has_re 'max-filesize' "$tmp/stderr"

# ---------------------------------------------------------------------------
# Exit status 2: errors
# ---------------------------------------------------------------------------

run missing_db scan -d "$tmp/no-such.kdb" files
expect_rc 2
has_re 'no-such\.kdb' "$tmp/stderr"
same "$(cat "$tmp/stdout")" "" "stdout when the database is missing"

KHIEN_DB="$tmp/also-missing.kdb" run missing_env_db scan files/clean.txt
expect_rc 2
has_re 'no signature database: .*also-missing\.kdb' "$tmp/stderr"

run missing_path scan -d sigs.kdb no-such-file
expect_rc 2
has_line "no-such-file: Can't open file or directory ERROR"
expect_summary "Errors" 1
expect_summary "Scanned files" 0

# "Found" wins over errors, as in clamscan.
run missing_path_and_found scan -d sigs.kdb -j 1 no-such-file files/alpha.txt
expect_rc 1
has_line "no-such-file: Can't open file or directory ERROR"
has_line "files/alpha.txt: Test.Alpha FOUND"
expect_summary "Errors" 1
expect_summary "Infected files" 1

# An unreadable path: a name below a regular file fails for root too.
run not_a_directory scan -d sigs.kdb files/clean.txt/below
expect_rc 2
has_line "files/clean.txt/below: Can't open file or directory ERROR"
if [ "$(id -u)" != 0 ]; then
	mkdir -p locked && printf 'KHIEN-TEST-ALPHA\n' >locked/f.txt && cp files/clean.txt unreadable.txt
	chmod 000 unreadable.txt
	run unreadable_file scan -d sigs.kdb unreadable.txt
	expect_rc 2
	has_line "unreadable.txt: Can't open file or directory ERROR"
	chmod 000 locked
	run unreadable_dir scan -d sigs.kdb locked
	expect_rc 2
	has_line "locked: Can't open file or directory ERROR"
	chmod 755 locked
else
	echo "note: running as root, the permission checks (chmod 000) are skipped"
fi

mkfifo fifo
run fifo scan -d sigs.kdb fifo
expect_rc 2
has_line "fifo: Not supported file type ERROR"

run no_path scan -d sigs.kdb
expect_rc 2
run bad_threads scan -d sigs.kdb -j 0 files
expect_rc 2
run bad_option scan -d sigs.kdb --no-such-option files
expect_rc 2
run kdb_and_sources scan -d sigs.kdb -d sigs files
expect_rc 2
has_re 'cannot be combined' "$tmp/stderr"

# ---------------------------------------------------------------------------
# Standard input
# ---------------------------------------------------------------------------

stdin_file=files/alpha.txt
run stdin scan -d sigs.kdb --no-summary -
stdin_file=/dev/null
expect_rc 1
has_line "stdin: Test.Alpha FOUND"

# ---------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------

run json scan -d sigs.kdb --json -z files arc no-such-file
expect_rc 1
if jq -e . "$tmp/stdout" >/dev/null 2>&1; then ok; else fail "stdout is not JSON lines"; fi
has_re '^----------- SCAN SUMMARY -----------$' "$tmp/stderr"
no_re 'SCAN SUMMARY'
same "$(jq -s 'length' "$tmp/stdout")" 15 "the number of JSON objects"
cp "$tmp/stdout" "$tmp/json"

# Size and SHA-256 of every scanned file against stat and sha256sum.
while IFS=$'\t' read -r path size sha; do
	want_size=$(wc -c <"$path" | tr -d ' ')
	want_sha=$(sha256sum "$path" | cut -c1-64)
	label=json_sizes
	if [ "$size" = "$want_size" ]; then ok; else fail "$path: size $size, expected $want_size"; fi
	if [ "$sha" = "$want_sha" ]; then ok; else fail "$path: sha256 $sha, expected $want_sha"; fi
done < <(jq -r 'select(.status != "error") | [.path, .size, .sha256] | @tsv' "$tmp/json")

jq_file="$tmp/json"
jq_is json_status_alpha 'select(.path == "files/alpha.txt") | .status' '"infected"'
jq_is json_status_clean 'select(.path == "files/clean.txt") | [.status, .detections]' '["clean",[]]'
jq_is json_body 'select(.path == "files/alpha.txt") | .detections' \
	'[{"name":"Test.Alpha","kind":"body","source":"t.ndb","inner_path":null,"severity":"malware"}]'
jq_is json_hash 'select(.path == "files/hashed.bin") | .detections[0] | [.name, .kind, .source]' \
	'["Test.Hash.Md5","hash","t.hdb"]'
jq_is json_logical 'select(.path == "files/logic.txt") | .detections[0] | [.name, .kind, .source]' \
	'["Test.Logical","logical","t.ldb"]'
jq_is json_yara 'select(.path == "files/yara.txt") | .detections[0] | [.name, .kind, .source]' \
	'["YARA.Test_Yara_Marker","yara","t.yar"]'
jq_is json_member 'select(.path == "arc/arc.zip") | [.status, (.detections[] | select(.inner_path == "inner/alpha.txt") | .name)]' \
	'["infected","Test.Alpha"]'
jq_is json_nested 'select(.path == "arc/nested.zip") | [.detections[].inner_path]' '["arc.zip/inner/alpha.txt"]'
jq_is json_notice 'select(.path == "arc/enc.zip") | [.status, .detections[0].severity, (.detections[0].name | startswith("Heuristics.Encrypted."))]' \
	'["clean","notice",true]'
jq_is json_error 'select(.path == "no-such-file") | [.status, has("size"), has("sha256"), (.error | startswith("Can'"'"'t open file or directory"))]' \
	'["error",false,false,true]'
jq_is json_allmatch 'select(.path == "files/sub/both.txt") | .detections | length' '2'

# -i filters objects as it filters lines.
run json_infected scan -d sigs.kdb --json -i --no-summary files
same "$(jq -r '.path' "$tmp/stdout" | sort | paste -sd ' ')" \
	"files/alpha.txt files/excl-alpha.txt files/hashed.bin files/logic.txt files/skip.d/in-skip.txt files/sub/both.txt files/yara.txt" \
	"the paths printed by --json -i"
no_re '"status":"clean"'

# ---------------------------------------------------------------------------
# Hostile file names
# ---------------------------------------------------------------------------

mkdir hostile
nl_name=$'hostile/line\nbreak.txt'
bad_name=$'hostile/bad\xffbyte.txt'
esc_name=$'hostile/esc\e[31mred.txt'
printf 'KHIEN-TEST-ALPHA\n' >"$nl_name"
printf 'KHIEN-TEST-ALPHA\n' >"$bad_name"
printf 'KHIEN-TEST-ALPHA\n' >"$esc_name"
run hostile_text scan -d sigs.kdb -j 1 --no-summary hostile
expect_rc 1
has_line 'hostile/bad\xffbyte.txt: Test.Alpha FOUND'
has_line 'hostile/esc\x1b[31mred.txt: Test.Alpha FOUND'
has_line 'hostile/line\x0abreak.txt: Test.Alpha FOUND'
count_re '' 3
run hostile_json scan -d sigs.kdb -j 1 --json --no-summary hostile
if jq -e . "$tmp/stdout" >/dev/null 2>&1; then ok; else fail "stdout is not JSON lines"; fi
same "$(jq -r 'select(has("path_hex")) | .path_hex' "$tmp/stdout")" "$(printf '%s' "$bad_name" | od -An -v -tx1 | tr -d ' \n')" \
	"path_hex of the name that is not UTF-8"
same "$(jq -r 'select(.path | startswith("hostile/line")) | .path' "$tmp/stdout")" "$nl_name" \
	"the JSON path of a name with a line break"

# ---------------------------------------------------------------------------
# -j 1 against -j 2, and sources against the compiled .kdb
# ---------------------------------------------------------------------------

run threads_1 scan -d sigs.kdb -j 1 -a -z --no-summary files arc big
expect_rc 1
one=$(sort "$tmp/stdout")
run threads_2 scan -d sigs.kdb -j 2 -a -z --no-summary files arc big
expect_rc 1
same "$(sort "$tmp/stdout")" "$one" "the lines of -j 1 and -j 2"
run threads_1_json scan -d sigs.kdb -j 1 -z --json --no-summary files arc big
one_json=$(jq -S -c . "$tmp/stdout" | sort)
run threads_2_json scan -d sigs.kdb -j 2 -z --json --no-summary files arc big
same "$(jq -S -c . "$tmp/stdout" | sort)" "$one_json" "the JSON of -j 1 and -j 2"

run sources scan -d sigs -j 1 -a -z files arc big
expect_rc 1
src_lines=$(report_lines)
src_known=$(summary "Known signatures")
src_infected=$(summary "Infected files")
run compiled scan -d sigs.kdb -j 1 -a -z files arc big
expect_rc 1
same "$(report_lines)" "$src_lines" "the lines with -d sigs/ and with -d sigs.kdb"
same "$(summary "Known signatures")" "$src_known" "Known signatures with sources and with the .kdb"
same "$(summary "Infected files")" "$src_infected" "Infected files with sources and with the .kdb"
run sources_files scan -d sigs/t.ndb -d sigs/t.hdb -d sigs/t.ldb -d sigs/t.yar -j 1 -a -z files arc big
same "$(report_lines)" "$src_lines" "the lines with four -d files and with -d sigs/"

# ---------------------------------------------------------------------------

case_finish
