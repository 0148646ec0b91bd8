#!/usr/bin/env bash
# `make run` must keep working: runs scripts/run-demo (the main job) with
# KHIEN_DEMO_EXIT=1 in a scratch "build" folder that points at the real
# binaries, and checks that the scanner part finds the planted samples, the
# server starts, the simulated province is seeded through the real API, and
# the administrator's password is printed.
set -uo pipefail
: "${KHIEN_BIN:?KHIEN_BIN must name the folder holding the khien binary}"
: "${KHIEN_SRC:=$(cd "$(dirname "$0")/../.." && pwd)}"
for tool in curl zip tar gzip jq; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: '$tool' is not installed"
		exit 77
	fi
done
if [ ! -x "$KHIEN_BIN/../bench/khien-sim" ]; then
	echo "FAIL: $KHIEN_BIN/../bench/khien-sim is missing (build the khien-sim target)"
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ln -s "$(cd "$KHIEN_BIN" && pwd)" "$tmp/bin"
ln -s "$(cd "$KHIEN_BIN/../bench" && pwd)" "$tmp/bench"

failed=0
check() { # check DESCRIPTION PATTERN
	if grep -Eq "$2" "$tmp/out"; then
		echo "PASS: $1"
	else
		echo "FAIL: $1 (no line matching /$2/)"
		failed=$((failed + 1))
	fi
}

KHIEN_DEMO_EXIT=1 KHIEN_DEMO_PORT=$((20000 + RANDOM % 20000)) \
	"$KHIEN_SRC/scripts/run-demo" "$tmp" >"$tmp/out" 2>&1 </dev/null
rc=$?
if [ "$rc" -ne 0 ]; then
	echo "FAIL: run-demo exited $rc"
	sed 's/^/  | /' "$tmp/out" | tail -n 40
	exit 1
fi
echo "PASS: run-demo exited 0"
check "the scanner finds the planted samples" 'Exit code 1: detections found'
check "the province's agencies are seeded" '^ *agencies.*1[23]'
check "machines are enrolled through the API" '^ *machines.*120'
check "detections are posted through the API" '^ *detections.*400'
check "the admin password is printed" '^admin password: [A-Za-z0-9]{16}$'
check "the quarterly report is produced as PDF, CSV and XLSX" 'khien-report-[0-9]{4}Q[1-4]\.xlsx +[0-9]+ bytes +sha256 [0-9a-f]{64}'
[ "$failed" -eq 0 ] || sed 's/^/  | /' "$tmp/out" | tail -n 40
echo "$((7 - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
