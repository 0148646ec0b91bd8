/*
 * Shared by test_cvd.c and test_cdiff.c: RSA test keys and the signing side
 * of versig / versig2, tar and container builders, and small file helpers.
 * ClamAV's private keys are not ours, so every container and patch in these
 * tests is built and signed with keys generated here. Static functions: each
 * test program uses a subset.
 */
#ifndef KHIEN_CVD_TESTLIB_H
#define KHIEN_CVD_TESTLIB_H

#include "testutil.h"

#include "cvd.h"
#include "khx.h"

#include <archive.h>
#include <archive_entry.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"

/* ------------------------------------------------------------------------ */
/* Test keys and the signing side of versig / versig2                        */
/* ------------------------------------------------------------------------ */

struct test_key {
    BIGNUM *n, *d;
    char *n_dec, *e_dec; /* OPENSSL_free */
    struct khx_rsa_key pub;
};

static struct test_key cvd_key, info_key, cdiff_key;

static void key_gen(struct test_key *k, unsigned bits)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    BIGNUM *e = NULL;
    assert_non_null(pk);
    assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &k->n), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_D, &k->d), 1);
    k->n_dec = BN_bn2dec(k->n);
    k->e_dec = BN_bn2dec(e);
    k->pub.n = k->n_dec;
    k->pub.e = k->e_dec;
    BN_free(e);
    EVP_PKEY_free(pk);
}

static void key_free(struct test_key *k)
{
    BN_free(k->n);
    BN_clear_free(k->d);
    OPENSSL_free(k->n_dec);
    OPENSSL_free(k->e_dec);
}

/* Raises m to d mod n and writes the result in ClamAV's alphabet, least
 * significant six bits first. Returns a malloc'd string. */
static char *sign_raw(const struct test_key *k, const uint8_t *m, size_t mlen)
{
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
    BN_CTX *ctx = BN_CTX_new();
    BIGNUM *x = BN_bin2bn(m, (int)mlen, NULL), *s = BN_new();
    assert_true(ctx && x && s);
    assert_int_equal(BN_mod_exp(s, x, k->d, k->n, ctx), 1);
    char *out = calloc(1, 512);
    size_t i = 0;
    while (!BN_is_zero(s)) {
        BN_ULONG v = BN_div_word(s, 64);
        out[i++] = alphabet[v];
    }
    BN_free(x);
    BN_free(s);
    BN_CTX_free(ctx);
    return out;
}

static char *sign_md5(const struct test_key *k, const char *md5_hex)
{
    uint8_t m[16];
    assert_int_equal(khx_hex_decode(md5_hex, 16, m), 0);
    return sign_raw(k, m, sizeof(m));
}

static void sha256(const void *p, size_t n, uint8_t out[32])
{
    assert_int_equal(EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL), 1);
}

static void md5_hex(const void *p, size_t n, char out[33])
{
    uint8_t d[16];
    assert_int_equal(EVP_Digest(p, n, d, NULL, EVP_md5(), NULL), 1);
    khx_hex_encode(d, 16, out);
}

/* The PSS encoding versig2 undoes: maskedDB(223) || H(32) || 0xbc with
 * DB = zeros(190) || 0x01 || salt(32), H = SHA256(0^8 || digest || salt). */
static char *sign_pss(const struct test_key *k, const uint8_t digest[32])
{
    uint8_t em[256], salt[32], mp[72], db[223];
    assert_int_equal(RAND_bytes(salt, sizeof(salt)), 1);
    memset(mp, 0, 8);
    memcpy(mp + 8, digest, 32);
    memcpy(mp + 40, salt, 32);
    sha256(mp, sizeof(mp), em + 223);
    memset(db, 0, sizeof(db));
    db[190] = 0x01;
    memcpy(db + 191, salt, 32);
    for (uint32_t c = 0; c * 32 < sizeof(db); c++) {
        uint8_t in[36], mask[32];
        memcpy(in, em + 223, 32);
        in[32] = (uint8_t)(c >> 24);
        in[33] = (uint8_t)(c >> 16);
        in[34] = (uint8_t)(c >> 8);
        in[35] = (uint8_t)c;
        sha256(in, sizeof(in), mask);
        for (size_t i = 0; i < 32 && c * 32 + i < sizeof(db); i++)
            em[c * 32 + i] = db[c * 32 + i] ^ mask[i];
    }
    em[0] &= 0x7f;
    em[255] = 0xbc;
    return sign_raw(k, em, sizeof(em));
}

static char *sign_pss_data(const struct test_key *k, const void *p, size_t n)
{
    uint8_t d[32];
    sha256(p, n, d);
    return sign_pss(k, d);
}

/* ------------------------------------------------------------------------ */
/* Building containers                                                       */
/* ------------------------------------------------------------------------ */

struct tentry {
    const char *name;
    const char *data;
    size_t len;
    int dir; /* a directory entry instead of a file */
};

static la_ssize_t tar_write_cb(struct archive *a, void *ud, const void *p, size_t n)
{
    (void)a;
    return khx_buf_append(ud, p, n) == 0 ? (la_ssize_t)n : -1;
}

/* Writes a ustar archive of the entries, gzip'd or not. */
static uint8_t *make_tar(const struct tentry *e, size_t n, int gzip, size_t *len)
{
    struct khx_buf b;
    struct archive *a = archive_write_new();
    khx_buf_init(&b, 1 << 26);
    assert_int_equal(archive_write_set_format_ustar(a), ARCHIVE_OK);
    if (gzip)
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open(a, &b, NULL, tar_write_cb, NULL), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *ae = archive_entry_new();
        archive_entry_set_pathname(ae, e[i].name);
        archive_entry_set_filetype(ae, e[i].dir ? AE_IFDIR : AE_IFREG);
        archive_entry_set_perm(ae, 0644);
        archive_entry_set_size(ae, e[i].dir ? 0 : (la_int64_t)e[i].len);
        assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
        if (!e[i].dir && e[i].len)
            assert_int_equal(archive_write_data(a, e[i].data, e[i].len), (la_ssize_t)e[i].len);
        archive_entry_free(ae);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    return khx_buf_steal(&b, len);
}

static char *hdr_line(uint32_t version, const char *md5, const char *dsig)
{
    char *s = malloc(600);
    snprintf(s, 600, "ClamAV-VDB:01 Jan 2024 10-00 +0000:%u:3:212:%s:%s:khien-test:1704103200",
             version, md5, dsig);
    return s;
}

/* A .info manifest listing the entries, signed with `k`. */
static char *make_info(uint32_t version, const struct tentry *e, size_t n, const struct test_key *k)
{
    struct khx_buf b;
    char *h = hdr_line(version, "X", "X");
    khx_buf_init(&b, 1 << 20);
    assert_int_equal(khx_buf_printf(&b, "%s\n", h), 0);
    for (size_t i = 0; i < n; i++) {
        uint8_t d[32];
        char hex[65];
        sha256(e[i].data, e[i].len, d);
        khx_hex_encode(d, 32, hex);
        assert_int_equal(khx_buf_printf(&b, "%s:%zu:%s\n", e[i].name, e[i].len, hex), 0);
    }
    char *sig = sign_pss_data(k, b.data, b.len);
    assert_int_equal(khx_buf_printf(&b, "DSIG:%s\n", sig), 0);
    assert_int_equal(khx_buf_append_u8(&b, 0), 0);
    free(sig);
    free(h);
    return (char *)khx_buf_steal(&b, NULL);
}

/* Header (MD5 and dsig over the body with `k`, or X:X when k is NULL) and body. */
static uint8_t *make_container(uint32_t version, const uint8_t *body, size_t blen,
                               const struct test_key *k, size_t *len)
{
    char md5[33];
    char *sig = NULL, *h;
    md5_hex(body, blen, md5);
    if (k) {
        sig = sign_md5(k, md5);
        h = hdr_line(version, md5, sig);
    } else {
        h = hdr_line(version, "X", "X");
    }
    uint8_t *out = malloc(512 + blen);
    memset(out, ' ', 512);
    memcpy(out, h, strlen(h));
    memcpy(out + 512, body, blen);
    *len = 512 + blen;
    free(sig);
    free(h);
    return out;
}

static const char NDB[] = "Khien.Test.A:0:*:4b6869656e\nKhien.Test.B:0:*:414243\n";
static const char HDB[] = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n";
static const char CDB[] = "Khien.Test.C:CL_TYPE_ZIP:*:x:*:*:*:*:*:*\n";
static const char COPYING_TEXT[] = "Licence text.\n";

/* The database files of the standard self-built container. */
static const struct tentry DB_FILES[] = {
    {"test.hdb", HDB, sizeof(HDB) - 1, 0},
    {"test.ndb", NDB, sizeof(NDB) - 1, 0},
    {"test.cdb", CDB, sizeof(CDB) - 1, 0},
};

/* Builds the standard container: COPYING, test.info, the database files.
 * `info` replaces the generated manifest when not NULL; `extra` entries are
 * appended to the tar; gzip'd CVD signed with cvd_key unless cld. */
static uint8_t *make_std(int cld, const char *info, const struct tentry *extra, size_t nextra,
                         size_t *len)
{
    struct tentry e[16];
    size_t n = 0;
    char *own = info ? NULL : make_info(5, DB_FILES, 3, &info_key);
    const char *inf = info ? info : own;
    e[n++] = (struct tentry){"COPYING", COPYING_TEXT, sizeof(COPYING_TEXT) - 1, 0};
    e[n++] = (struct tentry){"test.info", inf, strlen(inf), 0};
    for (size_t i = 0; i < 3; i++)
        e[n++] = DB_FILES[i];
    for (size_t i = 0; i < nextra; i++)
        e[n++] = extra[i];
    size_t blen;
    uint8_t *body = make_tar(e, n, !cld, &blen);
    uint8_t *out = make_container(5, body, blen, cld ? NULL : &cvd_key, len);
    free(body);
    free(own);
    return out;
}

static const struct khx_cvd_keys *test_keys(void)
{
    static struct khx_cvd_keys k;
    k.cvd = &cvd_key.pub;
    k.info = &info_key.pub;
    k.cdiff = &cdiff_key.pub;
    return &k;
}

/* Collects the members handed to the callback. */
struct collect {
    char names[64][128];
    size_t n;
    const char *want; /* keep a copy of this member's data */
    char *data;
    size_t len;
    int stop_at; /* return 7 at this call (1-based), 0: never */
};

static int collect_fn(void *ud, const char *name, const uint8_t *data, size_t len)
{
    struct collect *c = ud;
    assert_true(c->n < 64);
    snprintf(c->names[c->n++], sizeof(c->names[0]), "%s", name);
    if (c->want && strcmp(name, c->want) == 0) {
        free(c->data);
        c->data = khx_strndup((const char *)data, len);
        c->len = len;
    }
    return c->stop_at && (int)c->n == c->stop_at ? 7 : 0;
}

static int has_name(const struct collect *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->names[i], name) == 0)
            return 1;
    return 0;
}

static int open_with(const uint8_t *buf, size_t len, unsigned flags,
                     const struct khx_cvd_keys *keys, struct collect *c, char *err)
{
    struct khx_cvd_header h;
    memset(&h, 0, sizeof(h));
    err[0] = '\0';
    return khx_cvd_open(buf, len, flags, keys, &h, collect_fn, c, err, 256);
}

static void expect_fail(const uint8_t *buf, size_t len, unsigned flags, int code,
                        const char *needle)
{
    struct collect c = {0};
    char err[256];
    int r = open_with(buf, len, flags, test_keys(), &c, err);
    if (r != code || strstr(err, needle) == NULL)
        fprintf(stderr, "got %d \"%s\", wanted %d with \"%s\"\n", r, err, code, needle);
    assert_int_equal(r, code);
    assert_non_null(strstr(err, needle));
    assert_int_equal(c.n, 0); /* nothing reaches the caller before all checks pass */
    free(c.data);
}

static uint8_t *read_shared(const char *rel, size_t *len)
{
    const char *base = tu_shared_data();
    char path[4096];
    uint8_t *data = NULL;
    if (base == NULL)
        return NULL;
    snprintf(path, sizeof(path), "%s/%s", base, rel);
    if (khx_read_file(path, 1 << 26, &data, len) != 0)
        return NULL;
    return data;
}

/* The real signed test-6.cvd from ../shared/data, or NULL after printing a
 * visible SKIP line when that folder is absent. */
static uint8_t *read_test6_or_skip(size_t *len)
{
    uint8_t *buf = read_shared("clamav/sigs/test-6.cvd", len);
    if (buf == NULL)
        printf("SKIP: shared data absent (clamav/sigs/test-6.cvd)\n");
    return buf;
}

static char *read_text(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    uint8_t *data = NULL;
    size_t n = 0;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (khx_read_file(path, 1 << 26, &data, &n) != 0)
        return NULL;
    if (len)
        *len = n;
    return (char *)data;
}

static int file_exists(const char *dir, const char *name)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

/* ------------------------------------------------------------------------ */
/* Signatures                                                                */
/* ------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    key_gen(&cvd_key, 1024);
    key_gen(&info_key, 2048);
    key_gen(&cdiff_key, 2048);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    key_free(&cvd_key);
    key_free(&info_key);
    key_free(&cdiff_key);
    return 0;
}

#pragma GCC diagnostic pop

#endif
