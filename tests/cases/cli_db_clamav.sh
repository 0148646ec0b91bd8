#!/usr/bin/env bash
# `khien db unpack` and `khien db patch` on a real signed ClamAV database
# (../shared/data/clamav/sigs/test-6.cvd): unpacking verifies and writes every
# member; a patch whose signature does not verify is refused and nothing is
# written; a damaged container is refused. Skips when the shared data is absent.
set -uo pipefail
: "${KHIEN_BIN:?}" "${KHIEN_SHARED:=$(dirname "$0")/../../../shared}"
cvd="$KHIEN_SHARED/data/clamav/sigs/test-6.cvd"
if [ ! -f "$cvd" ]; then
	echo "SKIP: $cvd is absent (the shared ClamAV test data is not part of the repository)"
	exit 77
fi
khien="$KHIEN_BIN/khien"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # description, command...
	local what=$1
	shift
	if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}

mkdir "$tmp/out"
"$khien" db unpack "$cvd" -o "$tmp/out" >"$tmp/unpack.log" 2>&1
check "unpack exits 0" test $? -eq 0
check "unpack writes test.ndb" test -s "$tmp/out/test.ndb"
check "unpack writes the .info manifest" grep -q '^ClamAV-VDB:' "$tmp/out/test.info"
check "unpacked members match the manifest's SHA-256" bash -c "
	cd '$tmp/out' && grep -E '^[a-z0-9.]+:[0-9]+:[0-9a-f]{64}$' test.info | while IFS=: read -r n s h; do
		[ \"\$(sha256sum \"\$n\" | cut -d' ' -f1)\" = \"\$h\" ] || exit 1
		[ \"\$(stat -c %s \"\$n\")\" = \"\$s\" ] || exit 1
	done"

# A damaged container: one byte flipped in the body.
cp "$cvd" "$tmp/bad.cvd"
printf '\x00' | dd of="$tmp/bad.cvd" bs=1 seek=2000 conv=notrunc 2>/dev/null
mkdir "$tmp/out2"
"$khien" db unpack "$tmp/bad.cvd" -o "$tmp/out2" >"$tmp/bad.log" 2>&1
check "damaged container exits 2" test $? -eq 2
check "damaged container names the file" grep -q "bad.cvd" "$tmp/bad.log"
check "damaged container writes nothing" test -z "$(ls -A "$tmp/out2")"

# A patch with a forged signature.
printf 'OPEN test.ndb\nADD Forged.Sig:0:*:41414141\nCLOSE\n' >"$tmp/script"
script_len=$(stat -c %s "$tmp/script")
{
	printf 'ClamAV-Diff:7:%s:' "$script_len"
	gzip -c <"$tmp/script"
	printf ':%s' "$(head -c 340 /dev/zero | tr '\0' 'A')"
} >"$tmp/test-7.cdiff"
"$khien" db patch "$cvd" "$tmp/test-7.cdiff" -o "$tmp/test.cld" >"$tmp/patch.log" 2>&1
check "forged patch exits 2" test $? -eq 2
check "forged patch is named in the message" grep -q "test-7.cdiff" "$tmp/patch.log"
check "forged patch writes no .cld" test ! -e "$tmp/test.cld"

# Usage errors.
"$khien" db patch "$cvd" -o "$tmp/x.cld" >/dev/null 2>&1
check "patch without a .cdiff exits 2" test $? -eq 2
"$khien" db unpack "$cvd" >/dev/null 2>&1
check "unpack without -o exits 2" test $? -eq 2

[ $fail -eq 0 ] && echo "cli_db_clamav: all checks passed"
exit $fail
