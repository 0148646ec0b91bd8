# Helpers shared by the shell tests that drive the real `khien` binary
# (cli_db.sh, cli_scan.sh). A test sources this file, calls case_init with
# the tools it needs, and then runs commands with `run` and checks what they
# printed with the check functions below. Every check counts as passed (ok) or
# failed (fail), and the test goes on after a failed check so that one run
# lists every difference; case_finish prints the result and exits 1 if any
# check failed.
#
# The name ends in .bash, not .sh, because CTest runs every tests/cases/*.sh
# as a test of its own.

# case_init TOOL...: checks that $KHIEN_BIN/khien exists (exit 1 otherwise)
# and that each TOOL is installed (exit 77, CTest's "skipped", otherwise),
# then makes a temporary folder $tmp, removed on exit, and enters it.
case_init() {
	: "${KHIEN_BIN:?KHIEN_BIN must name the folder holding the khien binary}"
	khien="$KHIEN_BIN/khien"
	if [ ! -x "$khien" ]; then
		echo "FAIL: $khien does not exist or is not executable (build the khien-cli target)"
		exit 1
	fi
	local tool
	for tool in "$@"; do
		if ! command -v "$tool" >/dev/null 2>&1; then
			echo "SKIP: '$tool' is not installed"
			exit 77
		fi
	done
	export LC_ALL=C
	unset KHIEN_DB
	tmp=$(mktemp -d)
	# A test may leave unreadable folders behind; make them removable first.
	trap 'chmod -R u+rwx "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
	cd "$tmp" || exit 1
}

failures=0 checks=0 label=""

# fail MESSAGE: records a failed check and shows what the command printed.
fail() {
	failures=$((failures + 1))
	echo "FAIL [$label]: $*"
	echo "  command: khien ${cmdline:-}"
	echo "  exit status: ${rc:-}"
	sed -n '1,25s/^/  stdout| /p' "$tmp/stdout" 2>/dev/null
	sed -n '1,10s/^/  stderr| /p' "$tmp/stderr" 2>/dev/null
}

ok() {
	checks=$((checks + 1))
}

# run LABEL ARGS...: runs khien ARGS with standard input from $stdin_file
# (default /dev/null); stdout, stderr and the status land in $tmp/stdout,
# $tmp/stderr and $rc.
stdin_file=/dev/null
run() {
	label=$1
	shift
	cmdline="$*"
	"$khien" "$@" <"$stdin_file" >"$tmp/stdout" 2>"$tmp/stderr"
	rc=$?
}

expect_rc() {
	if [ "$rc" = "$1" ]; then ok; else fail "exit status $rc, expected $1"; fi
}

# has_line LINE [FILE]: stdout (or FILE) has LINE exactly.
has_line() {
	if grep -Fxq -- "$1" "${2:-$tmp/stdout}"; then ok; else fail "${2:-stdout} lacks the line '$1'"; fi
}

# has_re ERE [FILE]: a line of stdout (or FILE) matches ERE; no_re the opposite.
has_re() {
	if grep -Eq -- "$1" "${2:-$tmp/stdout}"; then ok; else fail "no line matches /$1/ in ${2:-stdout}"; fi
}
no_re() {
	if grep -Eq -- "$1" "${2:-$tmp/stdout}"; then fail "a line matches /$1/ in ${2:-stdout}"; else ok; fi
}

# count_re ERE N [FILE]: exactly N lines of stdout (or FILE) match ERE.
count_re() {
	local n
	n=$(grep -Ec -- "$1" "${3:-$tmp/stdout}")
	if [ "$n" = "$2" ]; then ok; else fail "$n lines match /$1/ in ${3:-stdout}, expected $2"; fi
}

# same A B WHAT: two strings are equal; when not, shows how they differ.
same() {
	if [ "$1" = "$2" ]; then ok; else
		fail "$3 differ"
		diff <(printf '%s\n' "$1") <(printf '%s\n' "$2") | sed -n '1,20s/^/  diff| /p'
	fi
}

# jq_is LABEL FILTER EXPECTED: the filter's compact output over $jq_file
# (a JSON document or JSON lines) is EXPECTED.
jq_is() {
	label=$1
	local got
	got=$(jq -c "$2" "${jq_file:?set jq_file before jq_is}")
	same "$got" "$3" "$1"
}

# hex TEXT: TEXT as lower-case hex digits, as in a body signature.
hex() {
	printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'
}

# case_finish: prints the result and exits 1 if any check failed, 0 otherwise.
case_finish() {
	label=result
	if [ "$failures" -gt 0 ]; then
		echo "FAILED: $failures of $((checks + failures)) checks"
		exit 1
	fi
	echo "PASS: $checks checks"
	exit 0
}
