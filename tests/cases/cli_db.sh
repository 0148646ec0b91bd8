#!/usr/bin/env bash
# `khien db compile` and `khien db info` end to end: writes signature sources
# (.ndb .hdb .hsb .ldb .yar, good and malformed) in a temporary folder,
# compiles them with the real binary and checks the diagnostics
# ("file:line: reason" on stderr), the exit status with and without --strict
# (0 written, 1 --strict refused, 2 other failures), that nothing is written
# or replaced when compiling fails, the counts printed after compiling and by
# `db info` (text and --json) against the signatures written, and that damaged
# or foreign images are refused. A compiled image is then used by `khien scan`
# to check that what `db info` reports is what a scan loads.
#
# Every check compares real values; the test goes on after a failed check and
# exits 1 if any failed. Needs jq (skips, exit 77, when it is absent).
set -uo pipefail
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash"
case_init jq od md5sum sha256sum cmp

# ---------------------------------------------------------------------------
# Helpers of this test (the shared checks are in common.bash)
# ---------------------------------------------------------------------------

# field NAME: the value of the "NAME:   value" line of a summary, spaces
# trimmed; kind NAME: the count of one kind in the indented per-kind list.
field() {
	sed -n "s/^$1: *//p" "$tmp/stdout" | head -n 1
}
kind() {
	sed -n "s/^  $1  *\\([0-9][0-9]*\\)\$/\\1/p" "$tmp/stdout" | head -n 1
}
# source_row NAME: "signatures skipped errors" of the source table's row NAME.
source_row() {
	awk -v n="$1" '$1 == n && NF == 6 { print $3, $4, $5 }' "$tmp/stdout"
}

# ---------------------------------------------------------------------------
# Fixtures: good sources, and sources with malformed lines
# ---------------------------------------------------------------------------

mkdir -p good bad
printf 'a file known by its hash\n' >hashed.bin
md5=$(md5sum hashed.bin | cut -c1-32)
sha=$(sha256sum hashed.bin | cut -c1-64)
size=$(wc -c <hashed.bin | tr -d ' ')
{
	echo "Test.Alpha:0:*:$(hex KHIEN-TEST-ALPHA)"
	echo "Test.Beta:0:*:$(hex KHIEN-TEST-BETA)"
	echo "Test.Gamma:0:0:$(hex KHIEN-GAMMA-AT-START)"
} >good/t.ndb
echo "$md5:$size:Test.Hash.Md5" >good/t.hdb
echo "$sha:$size:Test.Hash.Sha256" >good/t.hsb
printf 'Test.Logical;Engine:51-255,Target:0;0&1;%s;%s\n' "$(hex LOGIC-ONE)" "$(hex LOGIC-TWO)" >good/t.ldb
cat >good/t.yar <<'EOF'
rule Test_Yara_One
{
    strings:
        $a = "KHIEN-YARA-ONE"
    condition:
        $a
}

rule Test_Yara_Two
{
    strings:
        $a = "KHIEN-YARA-TWO"
    condition:
        $a
}
EOF

# bad/b.ndb: line 1 good, line 2 has a bad hex digit, line 3 too few fields,
# line 4 good.
{
	echo "Bad.Good.One:0:*:$(hex GOOD-ONE)"
	echo "Bad.Hex:0:*:$(hex ABC)zz"
	echo "Bad.Fields"
	echo "Bad.Good.Two:0:*:$(hex GOOD-TWO)"
} >bad/b.ndb
# bad/h.hdb: line 1 a hash of the wrong length, line 2 good, line 3 a bad size.
{
	echo "0123456789abcdef:12:Bad.Short.Hash"
	echo "$md5:$size:Bad.Good.Hash"
	echo "$md5:twelve:Bad.Size"
} >bad/h.hdb
# bad/y.yar: the second rule names a string it does not define (line 2). As
# with yarac, an error anywhere in a YARA file drops the whole file, so its
# first rule is not loaded either.
# shellcheck disable=SC2016 # $a and $b are YARA string names
printf 'rule good_rule { strings: $a = "KHIEN-Y-GOOD" condition: $a }\nrule bad_rule { strings: $a = "x" condition: $b }\n' >bad/y.yar

# ---------------------------------------------------------------------------
# compile: a clean set of sources
# ---------------------------------------------------------------------------

run compile_good db compile good -o good.kdb
expect_rc 0
if [ -s good.kdb ]; then ok; else fail "good.kdb was not written"; fi
same "$(cat "$tmp/stderr")" "" "stderr of a clean compile"
has_line "Wrote:           good.kdb ($(wc -c <good.kdb | tr -d ' ') bytes)"
same "$(field Problems)" 0 "Problems"
same "$(field Signatures)" 8 "Signatures"
same "$(kind hash)" 2 "hash signatures"
same "$(kind body)" 3 "body signatures"
same "$(kind logical)" 1 "logical signatures"
same "$(kind yara)" 2 "yara signatures"
same "$(kind allow)" 0 "allow entries"
same "$(field Sources)" 5 "Sources"
same "$(source_row t.ndb)" "3 0 0" "the t.ndb row"
same "$(source_row t.yar)" "2 0 0" "the t.yar row"
same "$(source_row t.hsb)" "1 0 0" "the t.hsb row"

run compile_strict_good db compile --strict good -o strict-good.kdb
expect_rc 0
same "$(field Signatures)" 8 "Signatures with --strict"
same "$(wc -c <strict-good.kdb | tr -d ' ')" "$(wc -c <good.kdb | tr -d ' ')" "the image sizes with and without --strict"

# Files named one by one give the same counts as their directory.
run compile_files db compile good/t.ndb good/t.hdb good/t.hsb good/t.ldb good/t.yar -o files.kdb
expect_rc 0
same "$(field Signatures)" 8 "Signatures from five named files"

run compile_quiet db compile -q good -o quiet.kdb
expect_rc 0
same "$(cat "$tmp/stdout")" "" "stdout with -q"
if [ -s quiet.kdb ]; then ok; else fail "quiet.kdb was not written"; fi

# ---------------------------------------------------------------------------
# info: text and JSON
# ---------------------------------------------------------------------------

run info_text db info good.kdb
expect_rc 0
has_line "File:            good.kdb"
has_line "Image size:      $(wc -c <good.kdb | tr -d ' ') bytes"
has_re '^Format version:  [1-9][0-9]*$'
has_re '^Created:         [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'
same "$(field Signatures)" 8 "Signatures in db info"
same "$(kind hash)/$(kind body)/$(kind logical)/$(kind yara)" "2/3/1/2" "per-kind counts in db info"
same "$(source_row t.ldb)" "1 0 0" "the t.ldb row in db info"

run info_json db info --json good.kdb
expect_rc 0
if jq -e . "$tmp/stdout" >/dev/null 2>&1; then ok; else fail "db info --json is not JSON"; fi
cp "$tmp/stdout" info.json
jq_file=info.json
jq_is info_json_file '.file' '"good.kdb"'
jq_is info_json_total '.signatures' 8
jq_is info_json_counts '.counts | [.hash, .body, .logical, .yara, .allow, .["pe-section"], .imphash, .heuristic]' '[2,3,1,2,0,0,0,0]'
jq_is info_json_size '.image_size' "$(wc -c <good.kdb | tr -d ' ')"
jq_is info_json_sources '[.sources[] | [.name, .signatures, .skipped, .errors]] | sort' \
	'[["t.hdb",1,0,0],["t.hsb",1,0,0],["t.ldb",1,0,0],["t.ndb",3,0,0],["t.yar",2,0,0]]'
jq_is info_json_built '[.sources[].built] | unique' '[null]'
jq_is info_json_created '[(.created | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$")), (.created_unix > 0), (.format_version >= 1)]' \
	'[true,true,true]'
jq_is info_json_ignored '.ignored' 0

# ---------------------------------------------------------------------------
# compile: malformed lines, "file:line: reason", with and without --strict
# ---------------------------------------------------------------------------

run compile_bad db compile bad -o bad.kdb
expect_rc 0
if [ -s bad.kdb ]; then ok; else fail "bad.kdb was not written without --strict"; fi
has_re '^bad/b\.ndb:2: .+' "$tmp/stderr"
has_re '^bad/b\.ndb:3: .+' "$tmp/stderr"
has_re '^bad/h\.hdb:1: .+' "$tmp/stderr"
has_re '^bad/h\.hdb:3: .+' "$tmp/stderr"
has_re '^bad/y\.yar:2: .+' "$tmp/stderr"
no_re '^bad/b\.ndb:[14]: ' "$tmp/stderr"
no_re '^bad/h\.hdb:2: ' "$tmp/stderr"
count_re '^bad/[a-z]+\.[a-z]+:[0-9]+: ' 5 "$tmp/stderr"
same "$(field Problems)" "5 (lines skipped; listed above)" "Problems"
same "$(field Signatures)" 3 "Signatures kept from the bad sources"
same "$(source_row b.ndb)" "2 0 2" "the b.ndb row"
same "$(source_row h.hdb)" "1 0 2" "the h.hdb row"

run info_bad db info --json bad.kdb
expect_rc 0
same "$(jq -c '[.sources[] | [.name, .signatures, .errors]] | sort' "$tmp/stdout")" \
	'[["b.ndb",2,2],["h.hdb",1,2],["y.yar",0,1]]' "per-source errors in db info --json"

# --strict: exit 1, nothing written, an existing image left as it was.
cp good.kdb target.kdb
run compile_bad_strict db compile --strict bad -o target.kdb
expect_rc 1
has_re '^bad/b\.ndb:2: ' "$tmp/stderr"
has_re 'nothing written' "$tmp/stderr"
if cmp -s good.kdb target.kdb; then ok; else fail "--strict failure changed the existing target.kdb"; fi
run compile_bad_strict_new db compile --strict bad -o never.kdb
expect_rc 1
if [ -e never.kdb ]; then fail "never.kdb was written although --strict failed"; else ok; fi
same "$(cat "$tmp/stdout")" "" "stdout of a refused --strict compile"

# One bad source among good ones: still exit 1 with --strict.
run compile_mixed_strict db compile --strict good bad/h.hdb -o never.kdb
expect_rc 1
if [ -e never.kdb ]; then fail "never.kdb was written"; else ok; fi

# ---------------------------------------------------------------------------
# compile and info: exit status 2
# ---------------------------------------------------------------------------

run compile_missing_source db compile good no-such-source.ndb -o never.kdb
expect_rc 2
has_re 'no-such-source\.ndb' "$tmp/stderr"
if [ -e never.kdb ]; then fail "never.kdb was written with a missing source"; else ok; fi

printf 'whatever\n' >notes.unknownext
run compile_unknown_type db compile notes.unknownext -o never.kdb
expect_rc 2
has_re 'notes\.unknownext' "$tmp/stderr"

run compile_no_output db compile good
expect_rc 2
run compile_no_sources db compile -o never.kdb
expect_rc 2
run compile_bad_option db compile --no-such-option good -o never.kdb
expect_rc 2
if [ -e never.kdb ]; then fail "never.kdb was written by a failed command"; else ok; fi

# An output name without .kdb works but is warned about.
run compile_odd_name db compile good -o image.bin
expect_rc 0
has_re 'does not end in \.kdb' "$tmp/stderr"

head -c 4096 /dev/zero | tr '\0' 'K' >junk.kdb
run info_junk db info junk.kdb
expect_rc 2
has_re 'junk\.kdb' "$tmp/stderr"
same "$(cat "$tmp/stdout")" "" "stdout of db info on junk"

head -c $(($(wc -c <good.kdb) / 2)) good.kdb >truncated.kdb
run info_truncated db info truncated.kdb
expect_rc 2
has_re 'truncated\.kdb' "$tmp/stderr"

# One byte changed in the middle must fail the checksum.
cp good.kdb damaged.kdb
mid=$(($(wc -c <good.kdb) / 2))
orig_byte=$(od -An -tu1 -j "$mid" -N 1 good.kdb | tr -d ' ')
# shellcheck disable=SC2059 # the format is the octal escape of one byte
printf "\\$(printf '%03o' $(((orig_byte + 1) % 256)))" | dd of=damaged.kdb bs=1 seek="$mid" conv=notrunc 2>/dev/null
if cmp -s good.kdb damaged.kdb; then fail "the test did not manage to damage the image"; else ok; fi
run info_damaged db info damaged.kdb
expect_rc 2
run scan_damaged scan -d damaged.kdb hashed.bin
expect_rc 2

run info_missing db info no-such.kdb
expect_rc 2
run info_two_files db info good.kdb files.kdb
expect_rc 2
run db_unknown db frobnicate
expect_rc 2

# ---------------------------------------------------------------------------
# What db info reports is what a scan loads and finds
# ---------------------------------------------------------------------------

run scan_good scan -d good.kdb -j 1 hashed.bin
expect_rc 1
has_line "hashed.bin: Test.Hash.Md5 FOUND"
has_line "Known signatures: 8"

printf 'x GOOD-ONE y\n' >good-one.txt
printf 'x GOOD-TWO y\n' >good-two.txt
run scan_bad_sources scan -d bad -j 1 --no-summary good-one.txt good-two.txt
expect_rc 1
has_line "good-one.txt: Bad.Good.One FOUND"
has_line "good-two.txt: Bad.Good.Two FOUND"
has_re 'problem\(s\) in the signature sources were skipped' "$tmp/stderr"

run scan_bad_sources_strict scan -d bad --strict good-one.txt
expect_rc 2
same "$(cat "$tmp/stdout")" "" "stdout of a scan refused by --strict"

run scan_bad_sources_verbose scan -d bad -v --no-summary good-one.txt
has_re '^bad/b\.ndb:2: ' "$tmp/stderr"

# ---------------------------------------------------------------------------

case_finish
