/*
 * Signed signature bundles: the writer the management server uses and the
 * verifier the agent uses, in one file so the two can never disagree about
 * the format. The layout is described in khx_bundle.h and
 * docs/internals/bundle.md.
 *
 * The verifier treats every byte as hostile. It checks the fixed header and
 * the manifest length before touching anything else, parses the manifest
 * (bounded to 64 KiB) to learn which key the bundle claims, checks the
 * Ed25519 signature over header and manifest, and only then hashes the .kdb
 * and the indicator list, whose sizes and digests the signed manifest fixes.
 */
#include "khx_bundle.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

/* The manifest of a bundle we write is well under this (about 420 bytes
 * with indicators); the bound only keeps snprintf's result checkable. */
#define MANIFEST_WRITE_MAX 768

static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int khx_bundle_key_id(const uint8_t pk[KHX_BUNDLE_PK_LEN], char key_id[KHX_BUNDLE_KEY_ID_LEN + 1])
{
    uint8_t md[32];
    int r = khx_sha256(pk, KHX_BUNDLE_PK_LEN, md);
    if (r != KH_OK)
        return r;
    khx_hex_encode(md, KHX_BUNDLE_KEY_ID_LEN / 2, key_id);
    return KH_OK;
}

int khx_bundle_header(int64_t version, int64_t created_at, int64_t nsigs, uint64_t kdb_size,
                      const uint8_t kdb_sha256[32], uint64_t ioc_size, const uint8_t ioc_sha256[32],
                      int64_t indicators, const uint8_t sk[KHX_BUNDLE_SK_LEN], struct khx_buf *out)
{
    char key_id[KHX_BUNDLE_KEY_ID_LEN + 1];
    char sha_hex[65], ioc_hex[65];
    char ioc_fields[160] = "";
    char manifest[MANIFEST_WRITE_MAX];
    uint8_t sig[KHX_BUNDLE_SIG_LEN];
    size_t start = 0;
    int r = KH_EINVAL;

    if (kdb_sha256 == NULL || sk == NULL || out == NULL || version < 0 || nsigs < 0 ||
        kdb_size > (uint64_t)INT64_MAX || ioc_size > (uint64_t)INT64_MAX || indicators < 0 ||
        (ioc_size > 0 && ioc_sha256 == NULL) || (ioc_size == 0 && indicators != 0))
        return KH_EINVAL;
    if (sodium_init() < 0)
        return KH_ENOMEM;
    /* The second half of a libsodium Ed25519 secret key is its public key. */
    if ((r = khx_bundle_key_id(sk + 32, key_id)) != KH_OK)
        return r;
    khx_hex_encode(kdb_sha256, 32, sha_hex);
    /* A bundle without indicators has the manifest it always had. */
    if (ioc_size > 0) {
        khx_hex_encode(ioc_sha256, 32, ioc_hex);
        snprintf(ioc_fields, sizeof(ioc_fields),
                 ",\"ioc_size\":%" PRIu64 ",\"ioc_sha256\":\"%s\",\"indicators\":%" PRId64,
                 ioc_size, ioc_hex, indicators);
    }
    int n = snprintf(manifest, sizeof(manifest),
                     "{\"format\":%d,\"version\":%" PRId64 ",\"created_at\":%" PRId64
                     ",\"kdb_sha256\":\"%s\",\"kdb_size\":%" PRIu64
                     ",\"key_id\":\"%s\",\"signatures\":%" PRId64 "%s}",
                     KHX_BUNDLE_FORMAT, version, created_at, sha_hex, kdb_size, key_id, nsigs,
                     ioc_fields);
    if (n < 0 || (size_t)n >= sizeof(manifest))
        return KH_EINVAL;

    start = out->len;
    if ((r = khx_buf_reserve(out, KHX_BUNDLE_PREFIX_LEN + (size_t)n + KHX_BUNDLE_SIG_LEN)) != 0)
        return r;
    if ((r = khx_buf_append(out, KHX_BUNDLE_MAGIC, KHX_BUNDLE_MAGIC_LEN)) != 0 ||
        (r = khx_buf_append_u32(out, (uint32_t)n)) != 0 ||
        (r = khx_buf_append(out, manifest, (size_t)n)) != 0)
        goto out;
    if (crypto_sign_detached(sig, NULL, out->data + start, out->len - start, sk) != 0) {
        r = KH_EINVAL;
        goto out;
    }
    if ((r = khx_buf_append(out, sig, sizeof(sig))) != 0)
        goto out;
    r = KH_OK;
out:
    if (r != KH_OK)
        out->len = start;
    return r;
}

int khx_bundle_build(const uint8_t *kdb, size_t kdb_len, const uint8_t *ioc, size_t ioc_len,
                     int64_t indicators, int64_t version, int64_t created_at, int64_t nsigs,
                     const uint8_t sk[KHX_BUNDLE_SK_LEN], struct khx_buf *out)
{
    uint8_t md[32], ioc_md[32];
    int r;

    if ((kdb == NULL && kdb_len > 0) || (ioc == NULL && ioc_len > 0) || out == NULL)
        return KH_EINVAL;
    if ((r = khx_sha256(kdb_len ? kdb : (const uint8_t *)"", kdb_len, md)) != KH_OK ||
        (ioc_len > 0 && (r = khx_sha256(ioc, ioc_len, ioc_md)) != KH_OK))
        return r;
    size_t start = out->len;
    if ((r = khx_bundle_header(version, created_at, nsigs, kdb_len, md, ioc_len,
                               ioc_len > 0 ? ioc_md : NULL, indicators, sk, out)) != KH_OK)
        return r;
    if ((kdb_len > 0 && (r = khx_buf_append(out, kdb, kdb_len)) != KH_OK) ||
        (ioc_len > 0 && (r = khx_buf_append(out, ioc, ioc_len)) != KH_OK)) {
        out->len = start;
        return r;
    }
    return KH_OK;
}

/* Reads a required non-negative integer field. */
static int manifest_int(json_t *root, const char *key, int64_t min, int64_t *out, char *why,
                        size_t whylen)
{
    json_t *v = json_object_get(root, key);
    if (!json_is_integer(v)) {
        khx_errf(why, whylen, "manifest field \"%s\" is missing or not an integer", key);
        return KH_EFORMAT;
    }
    json_int_t x = json_integer_value(v);
    if (x < min) {
        khx_errf(why, whylen, "manifest field \"%s\" is out of range", key);
        return KH_EFORMAT;
    }
    *out = (int64_t)x;
    return KH_OK;
}

/* Reads a required string of exactly `len` lowercase hex digits. */
static int manifest_hex(json_t *root, const char *key, size_t len, const char **out, char *why,
                        size_t whylen)
{
    json_t *v = json_object_get(root, key);
    const char *s = json_string_value(v);
    if (s == NULL || json_string_length(v) != len) {
        khx_errf(why, whylen, "manifest field \"%s\" is missing or not %zu hex digits", key, len);
        return KH_EFORMAT;
    }
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            khx_errf(why, whylen, "manifest field \"%s\" is not lowercase hex", key);
            return KH_EFORMAT;
        }
    }
    *out = s;
    return KH_OK;
}

int khx_bundle_parse_manifest(const char *json, size_t len, struct khx_bundle_manifest *m,
                              char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *root = NULL;
    const char *sha = NULL, *key_id = NULL;
    int64_t size = 0;
    int r = KH_EFORMAT;

    if (json == NULL || m == NULL || len == 0 || len > KHX_BUNDLE_MAX_MANIFEST) {
        khx_errf(why, whylen, "manifest length %zu is out of range", len);
        return KH_EFORMAT;
    }
    memset(m, 0, sizeof(*m));
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        khx_errf(why, whylen, "manifest is not JSON: %s at column %d", jerr.text, jerr.column);
        goto out;
    }
    if (!json_is_object(root)) {
        khx_errf(why, whylen, "manifest is not a JSON object");
        goto out;
    }
    if ((r = manifest_int(root, "format", 0, &m->format, why, whylen)) != KH_OK)
        goto out;
    if (m->format != KHX_BUNDLE_FORMAT) {
        khx_errf(why, whylen, "bundle format %" PRId64 " is not supported", m->format);
        r = KH_EFORMAT;
        goto out;
    }
    if ((r = manifest_int(root, "version", 0, &m->version, why, whylen)) != KH_OK ||
        (r = manifest_int(root, "created_at", INT64_MIN, &m->created_at, why, whylen)) != KH_OK ||
        (r = manifest_int(root, "kdb_size", 0, &size, why, whylen)) != KH_OK ||
        (r = manifest_int(root, "signatures", 0, &m->signatures, why, whylen)) != KH_OK ||
        (r = manifest_hex(root, "kdb_sha256", 64, &sha, why, whylen)) != KH_OK ||
        (r = manifest_hex(root, "key_id", KHX_BUNDLE_KEY_ID_LEN, &key_id, why, whylen)) != KH_OK)
        goto out;
    m->kdb_size = (uint64_t)size;
    if ((r = khx_hex_decode(sha, 32, m->kdb_sha256)) != KH_OK)
        goto out;
    /* The indicator list is optional: absent fields read as none. */
    size = 0;
    if ((json_object_get(root, "ioc_size") != NULL &&
         (r = manifest_int(root, "ioc_size", 0, &size, why, whylen)) != KH_OK) ||
        (json_object_get(root, "indicators") != NULL &&
         (r = manifest_int(root, "indicators", 0, &m->indicators, why, whylen)) != KH_OK))
        goto out;
    m->ioc_size = (uint64_t)size;
    if (m->ioc_size > 0 || json_object_get(root, "ioc_sha256") != NULL) {
        if ((r = manifest_hex(root, "ioc_sha256", 64, &sha, why, whylen)) != KH_OK ||
            (r = khx_hex_decode(sha, 32, m->ioc_sha256)) != KH_OK)
            goto out;
    }
    if (m->ioc_size == 0 && m->indicators != 0) {
        khx_errf(why, whylen, "manifest counts %" PRId64 " indicators but carries none",
                 m->indicators);
        r = KH_EFORMAT;
        goto out;
    }
    memcpy(m->key_id, key_id, KHX_BUNDLE_KEY_ID_LEN);
    m->key_id[KHX_BUNDLE_KEY_ID_LEN] = '\0';
    r = KH_OK;
out:
    json_decref(root);
    return r;
}

int khx_bundle_verify(const uint8_t *data, size_t len, const uint8_t pk[KHX_BUNDLE_PK_LEN],
                      struct khx_bundle_manifest *m, size_t *kdb_off, char *why, size_t whylen)
{
    struct khx_bundle_manifest mf;
    char want_id[KHX_BUNDLE_KEY_ID_LEN + 1];
    uint8_t md[32];
    int r;

    if ((data == NULL && len > 0) || pk == NULL) {
        khx_errf(why, whylen, "invalid argument");
        return KH_EINVAL;
    }
    if (len < KHX_BUNDLE_PREFIX_LEN || memcmp(data, KHX_BUNDLE_MAGIC, KHX_BUNDLE_MAGIC_LEN) != 0) {
        khx_errf(why, whylen, "not a Khien bundle (bad magic)");
        return KH_EFORMAT;
    }
    uint32_t mlen = get_u32le(data + KHX_BUNDLE_MAGIC_LEN);
    if (mlen == 0 || mlen > KHX_BUNDLE_MAX_MANIFEST) {
        khx_errf(why, whylen, "manifest length %" PRIu32 " is out of range", mlen);
        return KH_EFORMAT;
    }
    /* mlen is at most 64 KiB, so these sums cannot overflow. */
    size_t signed_len = KHX_BUNDLE_PREFIX_LEN + (size_t)mlen;
    size_t off = signed_len + KHX_BUNDLE_SIG_LEN;
    if (len < off) {
        khx_errf(why, whylen, "truncated: %zu bytes, the header alone needs %zu", len, off);
        return KH_EFORMAT;
    }
    if ((r = khx_bundle_parse_manifest((const char *)data + KHX_BUNDLE_PREFIX_LEN, mlen, &mf, why,
                                       whylen)) != KH_OK)
        return r;
    if ((r = khx_bundle_key_id(pk, want_id)) != KH_OK)
        return r;
    if (strcmp(mf.key_id, want_id) != 0) {
        khx_errf(why, whylen, "signed with key %s, but the trusted key is %s", mf.key_id, want_id);
        return KH_ESIGNATURE;
    }
    if (sodium_init() < 0)
        return KH_ENOMEM;
    if (crypto_sign_verify_detached(data + signed_len, data, signed_len, pk) != 0) {
        khx_errf(why, whylen, "the signature does not verify");
        return KH_ESIGNATURE;
    }
    /* From here on the manifest is authentic; the file must hold exactly the
     * image and the indicator list it describes. Each size is at most
     * INT64_MAX, so their sum fits in 64 bits. */
    uint64_t rest = (uint64_t)(len - off), want = mf.kdb_size + mf.ioc_size;
    if (rest < mf.kdb_size) {
        khx_errf(why, whylen, "truncated: the database has %" PRIu64 " of its %" PRIu64 " bytes",
                 rest, mf.kdb_size);
        return KH_EFORMAT;
    }
    if (rest < want) {
        khx_errf(why, whylen,
                 "truncated: the indicator list has %" PRIu64 " of its %" PRIu64 " bytes",
                 rest - mf.kdb_size, mf.ioc_size);
        return KH_EFORMAT;
    }
    if (rest > want) {
        khx_errf(why, whylen, "%" PRIu64 " unsigned bytes follow the %s", rest - want,
                 mf.ioc_size > 0 ? "indicator list" : "database");
        return KH_ESIGNATURE;
    }
    size_t kdb_len = (size_t)mf.kdb_size, ioc_len = (size_t)mf.ioc_size;
    if ((r = khx_sha256(kdb_len > 0 ? data + off : (const uint8_t *)"", kdb_len, md)) != KH_OK)
        return r;
    if (memcmp(md, mf.kdb_sha256, sizeof(md)) != 0) {
        khx_errf(why, whylen, "the database's SHA-256 is not the signed one");
        return KH_ESIGNATURE;
    }
    if (ioc_len > 0) {
        if ((r = khx_sha256(data + off + kdb_len, ioc_len, md)) != KH_OK)
            return r;
        if (memcmp(md, mf.ioc_sha256, sizeof(md)) != 0) {
            khx_errf(why, whylen, "the indicator list's SHA-256 is not the signed one");
            return KH_ESIGNATURE;
        }
    }
    if (m != NULL)
        *m = mf;
    if (kdb_off != NULL)
        *kdb_off = off;
    return KH_OK;
}
