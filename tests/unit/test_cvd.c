/*
 * Tests for ClamAV containers and patches (lib/engine/cvd.c, cdiff.c).
 *
 * ClamAV's private keys are not ours, so apart from the real signed test-6.cvd
 * in the shared data (opened with the built-in keys), every container and
 * patch here is built and signed by the test itself with freshly generated
 * RSA keys: the helpers below are the inverses of versig (textbook RSA over
 * the MD5) and versig2 (PSS with SHA-256 and a 32-byte salt). That lets each
 * tampering case change exactly one thing and check the message it produces.
 */
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

static void versig_md5_accepts_own_signature(void **state)
{
    (void)state;
    const char *md5 = "3e249e00076b0b15bb54ced37be880c7";
    char *sig = sign_md5(&cvd_key, md5);
    assert_int_equal(khx_versig_md5(sig, md5, &cvd_key.pub), 0);
    assert_int_equal(khx_versig_md5(sig, "3E249E00076B0B15BB54CED37BE880C7", &cvd_key.pub), 0);
    free(sig);
}

static void versig_md5_rejects_other_digest_key_and_garbage(void **state)
{
    (void)state;
    const char *md5 = "3e249e00076b0b15bb54ced37be880c7";
    char *sig = sign_md5(&cvd_key, md5);
    assert_int_equal(khx_versig_md5(sig, "3e249e00076b0b15bb54ced37be880c8", &cvd_key.pub),
                     KH_ESIGNATURE);
    assert_int_equal(khx_versig_md5(sig, md5, NULL), KH_ESIGNATURE); /* built-in key */
    assert_int_equal(khx_versig_md5(sig, "3e249e", &cvd_key.pub), KH_ESIGNATURE);
    sig[3] = sig[3] == 'a' ? 'b' : 'a';
    assert_int_equal(khx_versig_md5(sig, md5, &cvd_key.pub), KH_ESIGNATURE);
    sig[3] = ':';
    assert_int_equal(khx_versig_md5(sig, md5, &cvd_key.pub), KH_ESIGNATURE);
    assert_int_equal(khx_versig_md5("", md5, &cvd_key.pub), KH_ESIGNATURE);
    struct khx_rsa_key bad = {.n = "12x4", .e = "3"};
    assert_int_equal(khx_versig_md5("abc", md5, &bad), KH_EINVAL);
    free(sig);
}

static void versig_md5_rejects_signature_not_below_modulus(void **state)
{
    (void)state;
    char big[400];
    memset(big, '/', 300); /* 2^1800 - 1, far above a 1024-bit n */
    big[300] = '\0';
    assert_int_equal(khx_versig_md5(big, "3e249e00076b0b15bb54ced37be880c7", &cvd_key.pub),
                     KH_ESIGNATURE);
    memset(big, '/', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0'; /* longer than any dsig we accept */
    assert_int_equal(khx_versig_md5(big, "3e249e00076b0b15bb54ced37be880c7", &cvd_key.pub),
                     KH_ESIGNATURE);
}

static void versig2_accepts_own_pss_signature(void **state)
{
    (void)state;
    uint8_t d[32];
    sha256("hello", 5, d);
    char *sig = sign_pss(&info_key, d);
    assert_int_equal(khx_versig2(sig, d, &info_key.pub), 0);
    free(sig);
}

static void versig2_rejects_wrong_digest_key_and_flipped_char(void **state)
{
    (void)state;
    uint8_t d[32];
    sha256("hello", 5, d);
    char *sig = sign_pss(&info_key, d);
    d[0] ^= 1;
    assert_int_equal(khx_versig2(sig, d, &info_key.pub), KH_ESIGNATURE);
    d[0] ^= 1;
    assert_int_equal(khx_versig2(sig, d, &cdiff_key.pub), KH_ESIGNATURE);
    assert_int_equal(khx_versig2(sig, d, &khx_clamav_info_key), KH_ESIGNATURE);
    sig[10] = sig[10] == 'a' ? 'b' : 'a';
    assert_int_equal(khx_versig2(sig, d, &info_key.pub), KH_ESIGNATURE);
    assert_int_equal(khx_versig2(sig, d, NULL), KH_EINVAL);
    free(sig);
}

static void versig2_rejects_block_without_bc_trailer(void **state)
{
    (void)state;
    uint8_t em[256], d[32];
    memset(em, 0x11, sizeof(em));
    em[0] = 0;
    sha256("x", 1, d);
    char *sig = sign_raw(&info_key, em, sizeof(em));
    assert_int_equal(khx_versig2(sig, d, &info_key.pub), KH_ESIGNATURE);
    free(sig);
}

/* ------------------------------------------------------------------------ */
/* Header                                                                    */
/* ------------------------------------------------------------------------ */

static void header_parses_fields_and_keeps_name(void **state)
{
    (void)state;
    uint8_t buf[512];
    char err[256];
    char *h = hdr_line(42, "3e249e00076b0b15bb54ced37be880c7", "abc+/");
    struct khx_cvd_header hdr;
    memset(buf, ' ', sizeof(buf));
    memcpy(buf, h, strlen(h));
    memset(&hdr, 0, sizeof(hdr));
    strcpy(hdr.name, "daily");
    assert_int_equal(khx_cvd_parse_header(buf, sizeof(buf), &hdr, err, sizeof(err)), 0);
    assert_string_equal(hdr.name, "daily");
    assert_string_equal(hdr.build_time, "01 Jan 2024 10-00 +0000");
    assert_int_equal(hdr.version, 42);
    assert_int_equal(hdr.sigs, 3);
    assert_int_equal(hdr.flevel, 212);
    assert_string_equal(hdr.md5, "3e249e00076b0b15bb54ced37be880c7");
    assert_string_equal(hdr.dsig, "abc+/");
    assert_string_equal(hdr.builder, "khien-test");
    assert_int_equal(hdr.stime, 1704103200);
    free(h);
}

static void header_without_stime_is_accepted(void **state)
{
    (void)state;
    uint8_t buf[512];
    char err[256];
    const char *h = "ClamAV-VDB:01 Jan 2024:7:1:60:X:X:tk\n";
    struct khx_cvd_header hdr;
    memset(buf, ' ', sizeof(buf));
    memcpy(buf, h, strlen(h));
    assert_int_equal(khx_cvd_parse_header(buf, sizeof(buf), &hdr, err, sizeof(err)), 0);
    assert_int_equal(hdr.version, 7);
    assert_int_equal(hdr.stime, 0);
    assert_string_equal(hdr.md5, "X");
}

static void header_rejects_malformed_fields(void **state)
{
    (void)state;
    static const char *bad[] = {
        "ClamAV-VDX:01 Jan:1:1:1:X:X:b:1",           /* magic */
        "ClamAV-VDB:01 Jan:1x:1:1:X:X:b:1",          /* version */
        "ClamAV-VDB:01 Jan:1:1:1:0123:X:b:1",        /* md5 */
        "ClamAV-VDB:01 Jan:1:1:1:X:ab*c:b:1",        /* dsig alphabet */
        "ClamAV-VDB:01 Jan:1:1:1:X:X:b:1:extra",     /* field count */
        "ClamAV-VDB:01 Jan:1:1:1:X:X",               /* field count */
        "ClamAV-VDB:01 Jan:1:1:1:X:X::1",            /* empty builder */
        "ClamAV-VDB:01 Jan:1:1:1:X:X:b:-5",          /* stime */
        "ClamAV-VDB:01 Jan:99999999999:1:1:X:X:b:1", /* version range */
        "ClamAV-VDB:01\tJan:1:1:1:X:X:b:1",          /* control character */
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(bad); i++) {
        uint8_t buf[512];
        char err[256] = "";
        struct khx_cvd_header hdr;
        memset(buf, ' ', sizeof(buf));
        memcpy(buf, bad[i], strlen(bad[i]));
        assert_int_equal(khx_cvd_parse_header(buf, sizeof(buf), &hdr, err, sizeof(err)),
                         KH_EFORMAT);
        assert_true(err[0] != '\0');
    }
}

static void header_rejects_truncated_input(void **state)
{
    (void)state;
    uint8_t buf[512];
    char err[256];
    struct khx_cvd_header hdr;
    const char *h = "ClamAV-VDB:01 Jan:1:1:1:X:X:b:1";
    memset(buf, ' ', sizeof(buf));
    memcpy(buf, h, strlen(h));
    assert_int_equal(khx_cvd_parse_header(buf, 511, &hdr, err, sizeof(err)), KH_EFORMAT);
    assert_non_null(strstr(err, "truncated"));
}

/* ------------------------------------------------------------------------ */
/* The real, ClamAV-signed test-6.cvd                                        */
/* ------------------------------------------------------------------------ */

static void real_cvd_opens_with_builtin_keys(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = read_shared("clamav/sigs/test-6.cvd", &len);
    if (buf == NULL) {
        printf("SKIP: shared data absent (clamav/sigs/test-6.cvd)\n");
        return;
    }
    struct collect c = {.want = "test.hdb"};
    struct khx_cvd_header h;
    char err[256] = "";
    memset(&h, 0, sizeof(h));
    strcpy(h.name, "test");
    int r = khx_cvd_open(buf, len, 0, NULL, &h, collect_fn, &c, err, sizeof(err));
    if (r != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(r, 0);
    assert_string_equal(h.name, "test");
    assert_int_equal(h.version, 6);
    assert_int_equal(h.sigs, 14);
    assert_int_equal(h.flevel, 81);
    assert_string_equal(h.md5, "3e249e00076b0b15bb54ced37be880c7");
    assert_string_equal(h.builder, "micasnyd");
    assert_int_equal(h.stime, 1624412045);
    static const char *want[] = {"test.hdb", "test.hsb", "test.mdb", "test.msb", "test.ndb",
                                 "test.ldb", "test.fp",  "test.sfp", "test.cfg", "test.cdb"};
    for (size_t i = 0; i < KHX_ARRAY_LEN(want); i++)
        assert_true(has_name(&c, want[i]));
    assert_false(has_name(&c, "test.info"));
    assert_false(has_name(&c, "COPYING"));
    assert_int_equal(c.n, 18);
    assert_non_null(c.data);
    assert_int_equal(c.len, 113);
    free(c.data);
    free(buf);
}

static void real_cvd_flipped_body_byte_fails(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = read_shared("clamav/sigs/test-6.cvd", &len);
    if (buf == NULL) {
        printf("SKIP: shared data absent (clamav/sigs/test-6.cvd)\n");
        return;
    }
    struct collect c = {0};
    char err[256];
    buf[600] ^= 0x20;
    assert_int_equal(open_with(buf, len, 0, NULL, &c, err), KH_ESIGNATURE);
    assert_non_null(strstr(err, "MD5"));
    buf[600] ^= 0x20;
    /* The same file against our test keys: the header dsig no longer decodes. */
    struct khx_cvd_keys k = {.cvd = &cvd_key.pub};
    assert_int_equal(open_with(buf, len, 0, &k, &c, err), KH_ESIGNATURE);
    assert_non_null(strstr(err, "dsig"));
    /* And with our .info key the manifest's DSIG fails. */
    struct khx_cvd_keys k2 = {.info = &info_key.pub};
    assert_int_equal(open_with(buf, len, 0, &k2, &c, err), KH_ESIGNATURE);
    assert_non_null(strstr(err, "DSIG of test.info"));
    assert_int_equal(c.n, 0);
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* Self-signed containers                                                    */
/* ------------------------------------------------------------------------ */

static void cvd_selfsigned_opens_in_tar_order(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_std(0, NULL, NULL, 0, &len);
    struct collect c = {.want = "test.ndb"};
    char err[256];
    assert_int_equal(open_with(buf, len, 0, test_keys(), &c, err), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.names[0], "test.hdb");
    assert_string_equal(c.names[1], "test.ndb");
    assert_string_equal(c.names[2], "test.cdb");
    assert_string_equal(c.data, NDB);
    free(c.data);
    free(buf);
}

static void cvd_selfsigned_fails_with_builtin_keys(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_std(0, NULL, NULL, 0, &len);
    struct collect c = {0};
    char err[256];
    assert_int_equal(open_with(buf, len, 0, NULL, &c, err), KH_ESIGNATURE);
    assert_non_null(strstr(err, "dsig"));
    struct khx_cvd_keys k = {.cvd = &cvd_key.pub}; /* built-in .info key */
    assert_int_equal(open_with(buf, len, 0, &k, &c, err), KH_ESIGNATURE);
    assert_non_null(strstr(err, "DSIG"));
    free(buf);
}

static void cvd_flipped_body_byte_fails_md5(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_std(0, NULL, NULL, 0, &len);
    buf[len - 5] ^= 1;
    expect_fail(buf, len, 0, KH_ESIGNATURE, "MD5");
    free(buf);
}

static void cvd_wrong_header_md5_fails(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_std(0, NULL, NULL, 0, &len);
    char *md5 = strstr((char *)buf, ":212:") + 5;
    md5[0] = md5[0] == '0' ? '1' : '0';
    expect_fail(buf, len, 0, KH_ESIGNATURE, "MD5");
    free(buf);
}

static void cvd_bad_header_dsig_fails(void **state)
{
    (void)state;
    size_t len;
    uint8_t *good = make_std(0, NULL, NULL, 0, &len);
    /* Same body, dsig signed over a different MD5. */
    char md5[33], *sig, *h;
    md5_hex(good + 512, len - 512, md5);
    sig = sign_md5(&cvd_key, "00000000000000000000000000000001");
    h = hdr_line(5, md5, sig);
    memset(good, ' ', 512);
    memcpy(good, h, strlen(h));
    expect_fail(good, len, 0, KH_ESIGNATURE, "dsig");
    free(sig);
    free(h);
    free(good);
}

static void cvd_bad_info_sha256_fails(void **state)
{
    (void)state;
    /* The manifest describes other test.ndb bytes of the same length. */
    struct tentry files[3];
    memcpy(files, DB_FILES, sizeof(files));
    char other[sizeof(NDB)];
    memset(other, 'x', sizeof(other) - 1);
    other[sizeof(other) - 1] = '\0';
    files[1].data = other;
    char *info = make_info(5, files, 3, &info_key);
    size_t len;
    uint8_t *buf = make_std(0, info, NULL, 0, &len);
    expect_fail(buf, len, 0, KH_ESIGNATURE, "member test.ndb: SHA-256 differs");
    free(info);
    free(buf);
}

static void cvd_member_size_mismatch_fails(void **state)
{
    (void)state;
    struct tentry files[3];
    memcpy(files, DB_FILES, sizeof(files));
    files[0].data = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature-2\n";
    files[0].len = strlen(files[0].data);
    char *info = make_info(5, files, 3, &info_key);
    size_t len;
    uint8_t *buf = make_std(0, info, NULL, 0, &len);
    expect_fail(buf, len, 0, KH_ESIGNATURE, "member test.hdb has 57 bytes but test.info says 59");
    free(info);
    free(buf);
}

static void cvd_bad_info_dsig_fails(void **state)
{
    (void)state;
    /* Signed with the wrong key. */
    char *info = make_info(5, DB_FILES, 3, &cdiff_key);
    size_t len;
    uint8_t *buf = make_std(0, info, NULL, 0, &len);
    expect_fail(buf, len, 0, KH_ESIGNATURE, "DSIG of test.info does not verify");
    free(buf);
    free(info);
    /* Signed correctly, then one listed line changed. */
    info = make_info(5, DB_FILES, 3, &info_key);
    char *p = strstr(info, ":212:");
    p[1] = '3';
    buf = make_std(0, info, NULL, 0, &len);
    expect_fail(buf, len, 0, KH_ESIGNATURE, "DSIG of test.info does not verify");
    free(buf);
    free(info);
    /* No DSIG line at all. */
    info = make_info(5, DB_FILES, 3, &info_key);
    *strstr(info, "DSIG:") = '\0';
    buf = make_std(0, info, NULL, 0, &len);
    expect_fail(buf, len, 0, KH_ESIGNATURE, "has no DSIG line");
    free(buf);
    free(info);
}

static void cvd_info_data_after_dsig_fails(void **state)
{
    (void)state;
    char *info = make_info(5, DB_FILES, 3, &info_key);
    size_t n = strlen(info);
    char *longer = malloc(n + 32);
    snprintf(longer, n + 32, "%sextra:1:00\n", info);
    size_t len;
    uint8_t *buf = make_std(0, longer, NULL, 0, &len);
    expect_fail(buf, len, 0, KH_EFORMAT, "data follows the DSIG line");
    free(buf);
    free(longer);
    free(info);
}

static void cvd_info_version_must_match_header(void **state)
{
    (void)state;
    char *info = make_info(4, DB_FILES, 3, &info_key); /* header says 5 */
    size_t len;
    uint8_t *buf = make_std(0, info, NULL, 0, &len);
    expect_fail(buf, len, 0, KH_ESIGNATURE, "header version 5 differs");
    free(buf);
    free(info);
}

static void cvd_truncated_header_fails(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_std(0, NULL, NULL, 0, &len);
    expect_fail(buf, 300, 0, KH_EFORMAT, "truncated");
    expect_fail(buf, 0, 0, KH_EFORMAT, "truncated");
    free(buf);
}

static void cvd_non_gzip_body_fails(void **state)
{
    (void)state;
    static const char body[] = "this is not a tar archive, compressed or otherwise\n";
    size_t len;
    uint8_t *buf = make_container(5, (const uint8_t *)body, sizeof(body), &cvd_key, &len);
    expect_fail(buf, len, 0, KH_EFORMAT, "body is not a tar");
    free(buf);
    /* Header only, no body at all. */
    buf = make_container(5, (const uint8_t *)"", 0, &cvd_key, &len);
    expect_fail(buf, len, 0, KH_EFORMAT, "empty");
    free(buf);
}

static void cvd_truncated_gzip_body_fails(void **state)
{
    (void)state;
    /* Random bytes do not compress, so half the gzip ends inside the member.
     * (A cut after the last member reads as a shorter archive; the .info
     * check catches that case.) */
    struct tentry big = {"test.ndb", NULL, 200000, 0};
    char *data = malloc(big.len);
    assert_int_equal(RAND_bytes((unsigned char *)data, (int)big.len), 1);
    big.data = data;
    size_t blen, len;
    uint8_t *body = make_tar(&big, 1, 1, &blen);
    uint8_t *buf = make_container(5, body, blen / 2, &cvd_key, &len);
    struct collect c = {0};
    char err[256];
    assert_int_equal(open_with(buf, len, 0, test_keys(), &c, err), KH_EFORMAT);
    assert_non_null(strstr(err, "test.ndb"));
    free(buf);
    free(body);
    free(data);
}

static void cvd_member_names_with_slash_or_dotdot_fail(void **state)
{
    (void)state;
    static const char *names[] = {"sub/test.ldb", "../test.ldb", "/etc/passwd", "a..b", ".hidden"};
    for (size_t i = 0; i < KHX_ARRAY_LEN(names); i++) {
        struct tentry extra = {names[i], "x\n", 2, 0};
        size_t len;
        uint8_t *buf = make_std(0, NULL, &extra, 1, &len);
        expect_fail(buf, len, 0, KH_EFORMAT, "refusing member name");
        expect_fail(buf, len, KHX_CVD_NO_VERIFY, KH_EFORMAT, "refusing member name");
        free(buf);
    }
}

static void cvd_directory_member_fails(void **state)
{
    (void)state;
    struct tentry extra = {"subdir", NULL, 0, 1};
    size_t len;
    uint8_t *buf = make_std(0, NULL, &extra, 1, &len);
    expect_fail(buf, len, 0, KH_EFORMAT, "refusing member name \"subdir/\"");
    free(buf);
}

static void cvd_unlisted_member_fails(void **state)
{
    (void)state;
    struct tentry extra = {"test.ldb", "Sig;Engine:51-255,Target:0;0;41\n", 32, 0};
    size_t len;
    uint8_t *buf = make_std(0, NULL, &extra, 1, &len);
    expect_fail(buf, len, 0, KH_ESIGNATURE, "member test.ldb is not listed in test.info");
    free(buf);
}

static void cvd_listed_member_missing_fails(void **state)
{
    (void)state;
    struct tentry files[4];
    memcpy(files, DB_FILES, sizeof(DB_FILES));
    files[3] = (struct tentry){"test.ldb", "x\n", 2, 0};
    char *info = make_info(5, files, 4, &info_key);
    size_t len;
    uint8_t *buf = make_std(0, info, NULL, 0, &len);
    expect_fail(buf, len, 0, KH_ESIGNATURE, "lists test.ldb, which is missing");
    free(buf);
    free(info);
}

static void cvd_duplicate_member_fails(void **state)
{
    (void)state;
    struct tentry extra = {"test.ndb", NDB, sizeof(NDB) - 1, 0};
    size_t len;
    uint8_t *buf = make_std(0, NULL, &extra, 1, &len);
    expect_fail(buf, len, 0, KH_EFORMAT, "test.ndb appears twice");
    free(buf);
}

static void cvd_without_info_fails_unless_no_verify(void **state)
{
    (void)state;
    size_t blen, len;
    uint8_t *body = make_tar(DB_FILES, 3, 1, &blen);
    uint8_t *buf = make_container(5, body, blen, &cvd_key, &len);
    expect_fail(buf, len, 0, KH_ESIGNATURE, "no .info");
    struct collect c = {0};
    char err[256];
    assert_int_equal(open_with(buf, len, KHX_CVD_NO_VERIFY, NULL, &c, err), 0);
    assert_int_equal(c.n, 3);
    free(buf);
    free(body);
}

static void cvd_no_verify_accepts_bad_signatures(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_std(0, NULL, NULL, 0, &len);
    struct collect c = {0};
    char err[256];
    /* Built-in keys cannot verify our container, but NO_VERIFY skips them. */
    assert_int_equal(open_with(buf, len, KHX_CVD_NO_VERIFY, NULL, &c, err), 0);
    assert_int_equal(c.n, 3);
    free(buf);
}

static void cvd_callback_value_stops_and_is_returned(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_std(0, NULL, NULL, 0, &len);
    struct collect c = {.stop_at = 2};
    char err[256];
    assert_int_equal(open_with(buf, len, 0, test_keys(), &c, err), 7);
    assert_int_equal(c.n, 2);
    /* No callback: verification only. */
    assert_int_equal(khx_cvd_open(buf, len, 0, test_keys(), NULL, NULL, NULL, err, sizeof(err)), 0);
    free(buf);
}

static void cld_with_x_header_opens_via_info_dsig(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_std(1, NULL, NULL, 0, &len); /* plain tar, X:X header */
    struct collect c = {0};
    char err[256];
    assert_int_equal(open_with(buf, len, KHX_CVD_IS_CLD, test_keys(), &c, err), 0);
    assert_int_equal(c.n, 3);
    /* Without the CLD flag an X:X header is refused. */
    expect_fail(buf, len, 0, KH_ESIGNATURE, "is it a CLD");
    /* A CLD with a tampered member fails through the manifest. */
    uint8_t *p = memmem(buf + 512, len - 512, "Khien.Test.B", 12);
    assert_non_null(p);
    p[0] = 'k';
    expect_fail(buf, len, KHX_CVD_IS_CLD, KH_ESIGNATURE, "member test.ndb: SHA-256 differs");
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* Unpacking                                                                 */
/* ------------------------------------------------------------------------ */

static void unpack_writes_every_member_including_info(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_std(0, NULL, NULL, 0, &len);
    char *dir = strdup(tu_mkdtemp());
    char err[256];
    struct khx_cvd_header h;
    assert_int_equal(khx_cvd_unpack(buf, len, 0, test_keys(), dir, &h, err, sizeof(err)), 0);
    assert_int_equal(h.version, 5);
    static const char *names[] = {"COPYING", "test.info", "test.hdb", "test.ndb", "test.cdb"};
    for (size_t i = 0; i < KHX_ARRAY_LEN(names); i++)
        assert_true(file_exists(dir, names[i]));
    char *ndb = read_text(dir, "test.ndb", NULL);
    assert_string_equal(ndb, NDB);
    free(ndb);
    tu_rmtree(dir);
    free(dir);
    free(buf);
}

static void unpack_of_tampered_container_writes_nothing(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_std(0, NULL, NULL, 0, &len);
    buf[len - 5] ^= 1;
    char *dir = strdup(tu_mkdtemp());
    char err[256];
    assert_int_equal(khx_cvd_unpack(buf, len, 0, test_keys(), dir, NULL, err, sizeof(err)),
                     KH_ESIGNATURE);
    assert_false(file_exists(dir, "test.info"));
    assert_false(file_exists(dir, "COPYING"));
    assert_int_equal(
        khx_cvd_unpack(buf, len, 0, test_keys(), "/nonexistent/khien", NULL, err, sizeof(err)),
        KH_EINVAL);
    tu_rmtree(dir);
    free(dir);
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* CDIFF                                                                     */
/* ------------------------------------------------------------------------ */

/* Builds "ClamAV-Diff:<ver>:<len>:" + gzip(script) + ":" + signature. A
 * declared length of 0 means the real one. */
static uint8_t *make_cdiff(const char *script, const struct test_key *k, size_t declared,
                           size_t *len)
{
    size_t slen = strlen(script);
    uLong cap = compressBound((uLong)slen) + 64;
    uint8_t *gz = malloc(cap);
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)script;
    zs.avail_in = (uInt)slen;
    zs.next_out = gz;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t gzlen = zs.total_out;
    deflateEnd(&zs);

    struct khx_buf b;
    khx_buf_init(&b, 1 << 26);
    assert_int_equal(khx_buf_printf(&b, "ClamAV-Diff:9:%zu:", declared ? declared : slen), 0);
    assert_int_equal(khx_buf_append(&b, gz, gzlen), 0);
    char *sig = sign_pss_data(k, b.data, b.len);
    assert_int_equal(khx_buf_printf(&b, ":%s", sig), 0);
    free(sig);
    free(gz);
    return khx_buf_steal(&b, len);
}

/* A scratch database folder: a.ndb (3 lines), b.hdb (2 lines). */
static char *cdiff_dir(void)
{
    char *dir = strdup(tu_mkdtemp());
    free(tu_write(dir, "a.ndb", "A1 one\nA2 two\nA3 three\n", 23));
    free(tu_write(dir, "b.hdb", "B1 x\nB2 y\n", 10));
    return dir;
}

static int apply(const char *dir, const char *script, const struct test_key *k, char *err)
{
    size_t len;
    uint8_t *cd = make_cdiff(script, k, 0, &len);
    err[0] = '\0';
    int r = khx_cdiff_apply(cd, len, dir, 0, test_keys(), err, 256);
    free(cd);
    return r;
}

static void assert_file(const char *dir, const char *name, const char *want)
{
    char *got = read_text(dir, name, NULL);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void cdiff_open_add_del_xchg_close_edits_file(void **state)
{
    (void)state;
    char *dir = cdiff_dir();
    char err[256];
    int r = apply(dir,
                  "# a comment\n"
                  "OPEN a.ndb\n"
                  "XCHG 3 A3 A3 changed line\n"
                  "DEL 1 A1 one\n"
                  "ADD A4 added\n"
                  "ADD A5 also added\n"
                  "CLOSE\n"
                  "\n",
                  &cdiff_key, err);
    if (r)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(r, 0);
    assert_file(dir, "a.ndb", "A2 two\nA3 changed line\nA4 added\nA5 also added\n");
    assert_file(dir, "b.hdb", "B1 x\nB2 y\n");
    tu_rmtree(dir);
    free(dir);
}

static void cdiff_add_creates_new_file(void **state)
{
    (void)state;
    char *dir = cdiff_dir();
    char err[256];
    assert_int_equal(apply(dir, "OPEN c.ldb\nADD C1 new\nCLOSE\n", &cdiff_key, err), 0);
    assert_file(dir, "c.ldb", "C1 new\n");
    tu_rmtree(dir);
    free(dir);
}

static void cdiff_move_moves_line_range(void **state)
{
    (void)state;
    char *dir = cdiff_dir();
    char err[256];
    int r = apply(dir, "MOVE a.ndb b.hdb 2 A2 3 A3\n", &cdiff_key, err);
    if (r)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(r, 0);
    assert_file(dir, "a.ndb", "A1 one\n");
    assert_file(dir, "b.hdb", "B1 x\nB2 y\nA2 two\nA3 three\n");
    /* Into a file that does not exist yet. */
    assert_int_equal(apply(dir, "MOVE b.hdb d.ndb 1 B1 1 B1\n", &cdiff_key, err), 0);
    assert_file(dir, "d.ndb", "B1 x\n");
    assert_file(dir, "b.hdb", "B2 y\nA2 two\nA3 three\n");
    /* Into a file whose last line has no newline: the lines stay apart. */
    free(tu_write(dir, "e.ndb", "E1 end", 6));
    assert_int_equal(apply(dir, "MOVE a.ndb e.ndb 1 A1 1 A1\n", &cdiff_key, err), 0);
    assert_file(dir, "e.ndb", "E1 end\nA1 one\n");
    tu_rmtree(dir);
    free(dir);
}

static void cdiff_move_conflict_fails(void **state)
{
    (void)state;
    char *dir = cdiff_dir();
    char err[256];
    assert_int_equal(apply(dir, "MOVE a.ndb b.hdb 2 A2 3 A9\n", &cdiff_key, err), KH_EFORMAT);
    assert_non_null(strstr(err, "line 3 of a.ndb does not start with \"A9\""));
    assert_int_equal(apply(dir, "MOVE a.ndb b.hdb 2 A2 5 A5\n", &cdiff_key, err), KH_EFORMAT);
    assert_non_null(strstr(err, "has only 3 lines"));
    assert_int_equal(apply(dir, "MOVE a.ndb b.hdb 3 A3 2 A2\n", &cdiff_key, err), KH_EFORMAT);
    assert_int_equal(apply(dir, "MOVE a.ndb a.ndb 1 A1 1 A1\n", &cdiff_key, err), KH_EFORMAT);
    assert_int_equal(apply(dir, "MOVE x.ndb b.hdb 1 A1 1 A1\n", &cdiff_key, err), KH_EFORMAT);
    assert_non_null(strstr(err, "x.ndb does not exist"));
    assert_int_equal(apply(dir, "OPEN a.ndb\nMOVE a.ndb b.hdb 1 A1 1 A1\n", &cdiff_key, err),
                     KH_EFORMAT);
    assert_non_null(strstr(err, "while a.ndb is open"));
    assert_file(dir, "a.ndb", "A1 one\nA2 two\nA3 three\n");
    assert_file(dir, "b.hdb", "B1 x\nB2 y\n");
    tu_rmtree(dir);
    free(dir);
}

static void cdiff_unlink_removes_file(void **state)
{
    (void)state;
    char *dir = cdiff_dir();
    char err[256];
    assert_int_equal(apply(dir, "UNLINK b.hdb\n", &cdiff_key, err), 0);
    assert_false(file_exists(dir, "b.hdb"));
    assert_true(file_exists(dir, "a.ndb"));
    tu_rmtree(dir);
    free(dir);
}

static void cdiff_unlink_of_missing_file_fails(void **state)
{
    (void)state;
    char *dir = cdiff_dir();
    char err[256];
    assert_int_equal(apply(dir, "UNLINK a.ndb\nUNLINK nothere.ndb\n", &cdiff_key, err), KH_EFORMAT);
    assert_non_null(strstr(err, "line 2: UNLINK: nothere.ndb does not exist"));
    assert_true(file_exists(dir, "a.ndb")); /* the first UNLINK was not carried out */
    /* Unlinking twice is the same mistake. */
    assert_int_equal(apply(dir, "UNLINK a.ndb\nUNLINK a.ndb\n", &cdiff_key, err), KH_EFORMAT);
    assert_true(file_exists(dir, "a.ndb"));
    tu_rmtree(dir);
    free(dir);
}

static void cdiff_wrong_prefix_fails_and_leaves_folder_unchanged(void **state)
{
    (void)state;
    char *dir = cdiff_dir();
    char err[256];
    int r = apply(dir,
                  "OPEN b.hdb\nADD B3 z\nCLOSE\n"
                  "UNLINK a.ndb\n"
                  "OPEN c.ndb\nADD new\nCLOSE\n"
                  "OPEN b.hdb\nXCHG 2 B9 wrong\nCLOSE\n",
                  &cdiff_key, err);
    assert_int_equal(r, KH_EFORMAT);
    assert_non_null(strstr(err, "line 9: XCHG: line 2 of b.hdb does not start with \"B9\""));
    assert_file(dir, "a.ndb", "A1 one\nA2 two\nA3 three\n");
    assert_file(dir, "b.hdb", "B1 x\nB2 y\n");
    assert_false(file_exists(dir, "c.ndb"));
    /* DEL compares the whole rest of its line as the prefix. */
    assert_int_equal(apply(dir, "OPEN a.ndb\nDEL 1 A1 two\nCLOSE\n", &cdiff_key, err), KH_EFORMAT);
    assert_non_null(strstr(err, "DEL: line 1 of a.ndb"));
    tu_rmtree(dir);
    free(dir);
}

static void cdiff_naming_directory_fails(void **state)
{
    (void)state;
    char *dir = cdiff_dir();
    char err[256], sub[4096];
    snprintf(sub, sizeof(sub), "%s/sub.ndb", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(apply(dir, "OPEN sub.ndb\nADD x\nCLOSE\n", &cdiff_key, err), KH_EFORMAT);
    assert_non_null(strstr(err, "sub.ndb is a directory"));
    assert_int_equal(apply(dir, "UNLINK sub.ndb\n", &cdiff_key, err), KH_EFORMAT);
    assert_int_equal(apply(dir, "MOVE a.ndb sub.ndb 1 A1 1 A1\n", &cdiff_key, err), KH_EFORMAT);
    assert_file(dir, "a.ndb", "A1 one\nA2 two\nA3 three\n");
    tu_rmtree(dir);
    free(dir);
}

static void cdiff_forbidden_names_fail(void **state)
{
    (void)state;
    static const char *scripts[] = {
        "OPEN ../a.ndb\nADD x\nCLOSE\n", "OPEN sub/a.ndb\nADD x\nCLOSE\n",
        "OPEN ..\nADD x\nCLOSE\n",       "UNLINK /etc/passwd\n",
        "OPEN .hidden\nADD x\nCLOSE\n",  "OPEN a.ndb b\nCLOSE\n",
        "MOVE a.ndb ../b 1 A1 1 A1\n",
    };
    char *dir = cdiff_dir();
    char err[256];
    for (size_t i = 0; i < KHX_ARRAY_LEN(scripts); i++) {
        assert_int_equal(apply(dir, scripts[i], &cdiff_key, err), KH_EFORMAT);
        assert_non_null(strstr(err, "forbidden database name"));
    }
    tu_rmtree(dir);
    free(dir);
}

static void cdiff_script_errors_name_their_line(void **state)
{
    (void)state;
    static const struct {
        const char *script, *needle;
    } cases[] = {
        {"OPEN a.ndb\nADD x\n", "a.ndb was not closed"},
        {"ADD x\n", "line 1: ADD without OPEN"},
        {"OPEN a.ndb\nOPEN b.hdb\n", "line 2: OPEN while a.ndb is open"},
        {"FROB a\n", "line 1: unknown command \"FROB\""},
        {"OPEN a.ndb\nDEL 9 A9\nCLOSE\n", "line 2: DEL: a.ndb has only 3 lines, not 9"},
        {"OPEN a.ndb\nDEL 1 A1\nXCHG 1 A1 z\nCLOSE\n", "line 1 of a.ndb is already edited"},
        {"OPEN a.ndb\nDEL x A1\nCLOSE\n", "line 2: bad line number"},
        {"OPEN a.ndb\nDEL 0 A1\nCLOSE\n", "line 2: bad line number"},
        {"OPEN a.ndb\nXCHG 1 A1\nCLOSE\n", "XCHG needs"},
        {"OPEN a.ndb\nCLOSE now\n", "CLOSE takes no arguments"},
        {"OPEN new.ndb\nDEL 1 x\nCLOSE\n", "DEL/XCHG on new.ndb, which does not exist"},
        {"MOVE a.ndb b.hdb 1 A1\n", "MOVE needs 6 arguments"},
        {"CLOSE\n", "CLOSE without OPEN"},
    };
    char *dir = cdiff_dir();
    char err[256];
    for (size_t i = 0; i < KHX_ARRAY_LEN(cases); i++) {
        int r = apply(dir, cases[i].script, &cdiff_key, err);
        if (r != KH_EFORMAT || strstr(err, cases[i].needle) == NULL)
            fprintf(stderr, "case %zu: %d \"%s\"\n", i, r, err);
        assert_int_equal(r, KH_EFORMAT);
        assert_non_null(strstr(err, cases[i].needle));
    }
    assert_file(dir, "a.ndb", "A1 one\nA2 two\nA3 three\n");
    tu_rmtree(dir);
    free(dir);
}

static void cdiff_bad_signature_fails(void **state)
{
    (void)state;
    char *dir = cdiff_dir();
    char err[256];
    const char *script = "OPEN a.ndb\nADD x\nCLOSE\n";
    /* Signed with the .info key instead of the cdiff key. */
    assert_int_equal(apply(dir, script, &info_key, err), KH_ESIGNATURE);
    assert_non_null(strstr(err, "signature does not verify"));
    /* Our own signature against ClamAV's built-in key. */
    size_t len;
    uint8_t *cd = make_cdiff(script, &cdiff_key, 0, &len);
    assert_int_equal(khx_cdiff_apply(cd, len, dir, 0, NULL, err, sizeof(err)), KH_ESIGNATURE);
    /* A flipped byte inside the signed data. */
    cd[20] ^= 1;
    assert_int_equal(khx_cdiff_apply(cd, len, dir, 0, test_keys(), err, sizeof(err)),
                     KH_ESIGNATURE);
    cd[20] ^= 1;
    /* A truncated signature. */
    assert_int_equal(khx_cdiff_apply(cd, len - 3, dir, 0, test_keys(), err, sizeof(err)),
                     KH_ESIGNATURE);
    /* The untouched patch still applies. */
    assert_int_equal(khx_cdiff_apply(cd, len, dir, 0, test_keys(), err, sizeof(err)), 0);
    assert_file(dir, "a.ndb", "A1 one\nA2 two\nA3 three\nx\n");
    free(cd);
    tu_rmtree(dir);
    free(dir);
}

static void cdiff_malformed_container_fails(void **state)
{
    (void)state;
    char *dir = cdiff_dir();
    char err[256];
    size_t len;
    const char *script = "OPEN a.ndb\nADD x\nCLOSE\n";
    /* Declared length does not match the script. */
    uint8_t *cd = make_cdiff(script, &cdiff_key, strlen(script) + 1, &len);
    assert_int_equal(khx_cdiff_apply(cd, len, dir, 0, test_keys(), err, sizeof(err)), KH_EFORMAT);
    assert_non_null(strstr(err, "header says"));
    free(cd);
    cd = make_cdiff(script, &cdiff_key, strlen(script) - 1, &len);
    assert_int_equal(khx_cdiff_apply(cd, len, dir, 0, test_keys(), err, sizeof(err)), KH_EFORMAT);
    assert_non_null(strstr(err, "longer than"));
    free(cd);
    static const char *bad[] = {"",
                                "ClamAV-Diff",
                                "ClamAV-Diff:1:2",
                                "ClamAV-Diff:x:2:abc:def",
                                "ClamAV-Diff:1:99999999999:abc:def",
                                "ClamAV-Diff:1:5:no-colon",
                                "ClamAV-Diff:1:5::sig"};
    for (size_t i = 0; i < KHX_ARRAY_LEN(bad); i++) {
        int r = khx_cdiff_apply((const uint8_t *)bad[i], strlen(bad[i]), dir, KHX_CVD_NO_VERIFY,
                                NULL, err, sizeof(err));
        assert_true(r == KH_EFORMAT || r == KH_ELIMIT);
    }
    /* Not a gzip stream between header and signature. */
    const char *raw = "ClamAV-Diff:1:5:hello:abc";
    assert_int_equal(khx_cdiff_apply((const uint8_t *)raw, strlen(raw), dir, KHX_CVD_NO_VERIFY,
                                     NULL, err, sizeof(err)),
                     KH_EFORMAT);
    assert_non_null(strstr(err, "gzip"));
    assert_int_equal(khx_cdiff_apply(NULL, 0, "/nonexistent/khien", 0, NULL, err, sizeof(err)),
                     KH_EINVAL);
    assert_file(dir, "a.ndb", "A1 one\nA2 two\nA3 three\n");
    tu_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------------------ */
/* Round trip: unpack, patch (including the .info), pack as CLD, open        */
/* ------------------------------------------------------------------------ */

#define RT_SIG "Khien.Test.Roundtrip:0:*:4b6869656e2d726f756e642d74726970"

/* Writes a cdiff that appends RT_SIG to test.ndb, removes test.cdb and
 * rewrites test.info accordingly (new version, sizes, hashes and a DSIG from
 * our .info key), as Talos' patches do. */
static uint8_t *make_roundtrip_cdiff(const char *dir, uint32_t *new_version, size_t *len)
{
    size_t ilen = 0, nlen = 0;
    char *info = read_text(dir, "test.info", &ilen);
    char *ndb = read_text(dir, "test.ndb", &nlen);
    struct khx_buf script, newinfo;
    struct khx_lines it;
    const char *line;
    size_t ll;
    struct khx_cvd_header h;
    char err[256];
    assert_non_null(info);
    assert_non_null(ndb);
    khx_buf_init(&script, 1 << 20);
    khx_buf_init(&newinfo, 1 << 20);

    /* The new test.ndb and its manifest line. */
    char *ndb2 = malloc(nlen + sizeof(RT_SIG) + 1);
    memcpy(ndb2, ndb, nlen);
    memcpy(ndb2 + nlen, RT_SIG "\n", sizeof(RT_SIG));
    uint8_t d[32];
    char hex[65];
    sha256(ndb2, nlen + sizeof(RT_SIG), d);
    khx_hex_encode(d, 32, hex);

    assert_int_equal(khx_buf_printf(&script, "OPEN test.ndb\nADD %s\nCLOSE\n", RT_SIG), 0);
    assert_int_equal(khx_buf_printf(&script, "UNLINK test.cdb\nOPEN test.info\n"), 0);
    khx_lines_init(&it, info, ilen);
    while (khx_lines_next(&it, &line, &ll)) {
        if (it.lineno == 1) {
            uint8_t hb[512];
            memset(hb, ' ', sizeof(hb));
            memcpy(hb, line, ll);
            assert_int_equal(khx_cvd_parse_header(hb, sizeof(hb), &h, err, sizeof(err)), 0);
            *new_version = h.version + 1;
            char nh[512];
            snprintf(nh, sizeof(nh), "ClamAV-VDB:%s:%u:%u:%u:X:X:%s:%lld", h.build_time,
                     *new_version, h.sigs + 1, h.flevel, h.builder, (long long)h.stime + 60);
            assert_int_equal(khx_buf_printf(&script, "XCHG 1 ClamAV-VDB: %s\n", nh), 0);
            assert_int_equal(khx_buf_printf(&newinfo, "%s\n", nh), 0);
        } else if (ll > 9 && memcmp(line, "test.ndb:", 9) == 0) {
            assert_int_equal(khx_buf_printf(&script, "XCHG %u test.ndb: test.ndb:%zu:%s\n",
                                            it.lineno, nlen + sizeof(RT_SIG), hex),
                             0);
            assert_int_equal(
                khx_buf_printf(&newinfo, "test.ndb:%zu:%s\n", nlen + sizeof(RT_SIG), hex), 0);
        } else if (ll > 9 && memcmp(line, "test.cdb:", 9) == 0) {
            assert_int_equal(khx_buf_printf(&script, "DEL %u test.cdb:\n", it.lineno), 0);
        } else if (ll > 5 && memcmp(line, "DSIG:", 5) == 0) {
            char *sig = sign_pss_data(&info_key, newinfo.data, newinfo.len);
            assert_int_equal(khx_buf_printf(&script, "XCHG %u DSIG: DSIG:%s\n", it.lineno, sig), 0);
            free(sig);
        } else {
            assert_int_equal(khx_buf_printf(&newinfo, "%.*s\n", (int)ll, line), 0);
        }
    }
    assert_int_equal(khx_buf_printf(&script, "CLOSE\n"), 0);
    assert_int_equal(khx_buf_append_u8(&script, 0), 0);
    uint8_t *cd = make_cdiff((const char *)script.data, &cdiff_key, 0, len);
    khx_buf_free(&script);
    khx_buf_free(&newinfo);
    free(info);
    free(ndb);
    free(ndb2);
    return cd;
}

static void roundtrip(const uint8_t *cvd, size_t cvd_len, const struct khx_cvd_keys *open_keys)
{
    char *dir = strdup(tu_mkdtemp());
    char err[256] = "";
    struct khx_cvd_header h;
    int r = khx_cvd_unpack(cvd, cvd_len, 0, open_keys, dir, &h, err, sizeof(err));
    if (r)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(r, 0);
    assert_true(file_exists(dir, "test.cdb"));

    uint32_t version = 0;
    size_t cdlen;
    uint8_t *cd = make_roundtrip_cdiff(dir, &version, &cdlen);
    r = khx_cdiff_apply(cd, cdlen, dir, 0, test_keys(), err, sizeof(err));
    if (r)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(r, 0);
    assert_false(file_exists(dir, "test.cdb"));

    uint8_t *cld = NULL;
    size_t cld_len = 0;
    r = khx_cld_pack(dir, "test", &cld, &cld_len, err, sizeof(err));
    if (r)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(r, 0);
    assert_true(cld_len > 1024);
    assert_true(cld[511] == ' ');

    struct collect c = {.want = "test.ndb"};
    struct khx_cvd_keys k = {.info = &info_key.pub};
    memset(&h, 0, sizeof(h));
    r = khx_cvd_open(cld, cld_len, KHX_CVD_IS_CLD, &k, &h, collect_fn, &c, err, sizeof(err));
    if (r)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(r, 0);
    assert_int_equal(h.version, version);
    assert_string_equal(h.md5, "X");
    assert_true(has_name(&c, "test.hdb"));
    assert_false(has_name(&c, "test.cdb"));
    assert_non_null(c.data);
    assert_non_null(strstr(c.data, RT_SIG "\n"));
    assert_true(c.len > sizeof(RT_SIG));
    assert_string_equal(c.data + c.len - sizeof(RT_SIG), RT_SIG "\n");
    free(c.data);

    /* ClamAV's own .info key cannot vouch for our rewritten manifest. */
    struct collect c2 = {0};
    assert_int_equal(open_with(cld, cld_len, KHX_CVD_IS_CLD, NULL, &c2, err), KH_ESIGNATURE);
    assert_non_null(strstr(err, "DSIG of test.info"));

    /* Packing refuses a folder with a stray subfolder in it. */
    char sub[4096];
    snprintf(sub, sizeof(sub), "%s/junk", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    uint8_t *cld2 = NULL;
    size_t cld2_len = 0;
    assert_int_equal(khx_cld_pack(dir, "test", &cld2, &cld2_len, err, sizeof(err)), KH_EFORMAT);
    assert_non_null(strstr(err, "not a regular file"));
    assert_int_equal(khx_cld_pack(dir, "../test", &cld2, &cld2_len, err, sizeof(err)), KH_EINVAL);
    assert_int_equal(khx_cld_pack(dir, "none", &cld2, &cld2_len, err, sizeof(err)), KH_ENOTFOUND);

    free(cld);
    free(cd);
    tu_rmtree(dir);
    free(dir);
}

static void roundtrip_selfsigned_unpack_patch_pack_open(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_std(0, NULL, NULL, 0, &len);
    roundtrip(buf, len, test_keys());
    free(buf);
}

static void roundtrip_real_cvd_unpack_patch_pack_open(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = read_shared("clamav/sigs/test-6.cvd", &len);
    if (buf == NULL) {
        printf("SKIP: shared data absent (clamav/sigs/test-6.cvd)\n");
        return;
    }
    roundtrip(buf, len, NULL); /* unpacked with ClamAV's built-in keys */
    free(buf);
}

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(versig_md5_accepts_own_signature),
        cmocka_unit_test(versig_md5_rejects_other_digest_key_and_garbage),
        cmocka_unit_test(versig_md5_rejects_signature_not_below_modulus),
        cmocka_unit_test(versig2_accepts_own_pss_signature),
        cmocka_unit_test(versig2_rejects_wrong_digest_key_and_flipped_char),
        cmocka_unit_test(versig2_rejects_block_without_bc_trailer),
        cmocka_unit_test(header_parses_fields_and_keeps_name),
        cmocka_unit_test(header_without_stime_is_accepted),
        cmocka_unit_test(header_rejects_malformed_fields),
        cmocka_unit_test(header_rejects_truncated_input),
        cmocka_unit_test(real_cvd_opens_with_builtin_keys),
        cmocka_unit_test(real_cvd_flipped_body_byte_fails),
        cmocka_unit_test(cvd_selfsigned_opens_in_tar_order),
        cmocka_unit_test(cvd_selfsigned_fails_with_builtin_keys),
        cmocka_unit_test(cvd_flipped_body_byte_fails_md5),
        cmocka_unit_test(cvd_wrong_header_md5_fails),
        cmocka_unit_test(cvd_bad_header_dsig_fails),
        cmocka_unit_test(cvd_bad_info_sha256_fails),
        cmocka_unit_test(cvd_member_size_mismatch_fails),
        cmocka_unit_test(cvd_bad_info_dsig_fails),
        cmocka_unit_test(cvd_info_data_after_dsig_fails),
        cmocka_unit_test(cvd_info_version_must_match_header),
        cmocka_unit_test(cvd_truncated_header_fails),
        cmocka_unit_test(cvd_non_gzip_body_fails),
        cmocka_unit_test(cvd_truncated_gzip_body_fails),
        cmocka_unit_test(cvd_member_names_with_slash_or_dotdot_fail),
        cmocka_unit_test(cvd_directory_member_fails),
        cmocka_unit_test(cvd_unlisted_member_fails),
        cmocka_unit_test(cvd_listed_member_missing_fails),
        cmocka_unit_test(cvd_duplicate_member_fails),
        cmocka_unit_test(cvd_without_info_fails_unless_no_verify),
        cmocka_unit_test(cvd_no_verify_accepts_bad_signatures),
        cmocka_unit_test(cvd_callback_value_stops_and_is_returned),
        cmocka_unit_test(cld_with_x_header_opens_via_info_dsig),
        cmocka_unit_test(unpack_writes_every_member_including_info),
        cmocka_unit_test(unpack_of_tampered_container_writes_nothing),
        cmocka_unit_test(cdiff_open_add_del_xchg_close_edits_file),
        cmocka_unit_test(cdiff_add_creates_new_file),
        cmocka_unit_test(cdiff_move_moves_line_range),
        cmocka_unit_test(cdiff_move_conflict_fails),
        cmocka_unit_test(cdiff_unlink_removes_file),
        cmocka_unit_test(cdiff_unlink_of_missing_file_fails),
        cmocka_unit_test(cdiff_wrong_prefix_fails_and_leaves_folder_unchanged),
        cmocka_unit_test(cdiff_naming_directory_fails),
        cmocka_unit_test(cdiff_forbidden_names_fail),
        cmocka_unit_test(cdiff_script_errors_name_their_line),
        cmocka_unit_test(cdiff_bad_signature_fails),
        cmocka_unit_test(cdiff_malformed_container_fails),
        cmocka_unit_test(roundtrip_selfsigned_unpack_patch_pack_open),
        cmocka_unit_test(roundtrip_real_cvd_unpack_patch_pack_open),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
