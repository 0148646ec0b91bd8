#!/usr/bin/env bash
# Signing the AVReport with a key on a PKCS#11 token (docs/internals/sharing.md):
# a SoftHSM token in a temporary folder (its own SOFTHSM2_CONF), an RSA key
# generated on it with pkcs11-tool, a certificate for that key made by
# `openssl req` through the pkcs11 engine; then test_sharing's token test
# signs a document through the token with the server's code and verifies it
# with `xmlsec1 --verify`, and a changed document must fail. Exits 77 (skip)
# naming what is missing: softhsm2, pkcs11-tool, the OpenSSL pkcs11 engine,
# xmlsec1 or the test_sharing binary.
set -euo pipefail

skip() { echo "SKIP: $*" >&2; exit 77; }

module=""
for m in "${KHIEN_SOFTHSM_MODULE:-}" /usr/lib/softhsm/libsofthsm2.so \
         /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/lib64/pkcs11/libsofthsm2.so; do
    if [ -n "$m" ] && [ -f "$m" ]; then module=$m; break; fi
done
[ -n "$module" ] || skip "the SoftHSM module (libsofthsm2.so) is not installed (Debian: softhsm2)"
command -v softhsm2-util >/dev/null || skip "softhsm2-util is not installed (Debian: softhsm2)"
command -v pkcs11-tool >/dev/null || skip "pkcs11-tool is not installed (Debian: opensc)"
command -v openssl >/dev/null || skip "the openssl command is not installed"
command -v xmlsec1 >/dev/null || skip "xmlsec1 is not installed (Debian: xmlsec1)"
enginedir=$(openssl version -e | sed -n 's/^ENGINESDIR: "\(.*\)"$/\1/p')
[ -f "$enginedir/pkcs11.so" ] || skip "the OpenSSL pkcs11 engine is not in $enginedir (Debian: libengine-pkcs11-openssl)"

bin=${KHIEN_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin}
test_bin=${KHIEN_TEST_SHARING:-$(dirname "$bin")/tests/test_sharing}
[ -x "$test_bin" ] || skip "test_sharing is not built ($test_bin)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/tokens"
cat >"$tmp/softhsm2.conf" <<CONF
directories.tokendir = $tmp/tokens
objectstore.backend = file
log.level = ERROR
CONF
export SOFTHSM2_CONF="$tmp/softhsm2.conf"
pin=246810
printf '%s\n' "$pin" >"$tmp/pin"
chmod 600 "$tmp/pin"

softhsm2-util --init-token --free --label khien-test --pin "$pin" --so-pin 13579135 >"$tmp/init.log"
pkcs11-tool --module "$module" --token-label khien-test --login --pin "$pin" \
    --keypairgen --key-type rsa:2048 --id 01 --label avreport >"$tmp/keygen.log" 2>&1 ||
    { cat "$tmp/keygen.log" >&2; echo "FAIL: pkcs11-tool could not make the key" >&2; exit 1; }
uri="pkcs11:token=khien-test;object=avreport;type=private"

# The certificate: openssl signs it with the token's key through the engine,
# configured for this run only.
cat >"$tmp/openssl.cnf" <<CONF
openssl_conf = conf
[conf]
engines = engines
[engines]
pkcs11 = pkcs11
[pkcs11]
engine_id = pkcs11
MODULE_PATH = $module
PIN = $pin
init = 0
CONF
OPENSSL_CONF="$tmp/openssl.cnf" openssl req -new -x509 -days 30 -engine pkcs11 -keyform engine \
    -key "$uri" -subj "/C=VN/O=Khien Test/CN=AVReport Token Signer" -out "$tmp/cert.pem" \
    >"$tmp/req.log" 2>&1 ||
    { cat "$tmp/req.log" >&2; echo "FAIL: openssl could not certify the token's key" >&2; exit 1; }

KHIEN_TEST_PKCS11_MODULE="$module" KHIEN_TEST_PKCS11_URI="$uri" \
KHIEN_TEST_PKCS11_PIN_FILE="$tmp/pin" KHIEN_TEST_PKCS11_CERT="$tmp/cert.pem" \
    "$test_bin" >"$tmp/test.log" 2>&1 || { cat "$tmp/test.log" >&2; echo "FAIL: test_sharing" >&2; exit 1; }
if ! grep -q 'OK \] signs_through_a_pkcs11_token_when_one_is_given' "$tmp/test.log"; then
    cat "$tmp/test.log" >&2
    echo "FAIL: the token test did not run" >&2
    exit 1
fi
echo "PASS: signed through a SoftHSM token and verified with xmlsec1"
