/*
 * Signed signature bundles: the file format (lib/common/bundle.c) and the
 * server side (server/bundle.c). A bundle built from a real .kdb verifies
 * and yields that .kdb; every single-byte change, every truncation, an
 * appended byte, another key and absurd manifest lengths are refused; a
 * bundle that also carries an indicator list yields it, and a changed or
 * cut list is refused (KH_ESIGNATURE, KH_EFORMAT). The
 * server's signing key is created private and checked when loaded, and a
 * publish against SQLite stores a bundle an agent accepts, serves it from
 * the cache or rebuilt from its chunks, and prunes old versions.
 */
#include "testutil.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <khien/khien.h>

#include "khx_bundle.h"
#include "../../server/api.h"
#include "bundle.h"
#include "khx.h"

/* "khien bundle test file\n" and its MD5. */
static const char sample[] = "khien bundle test file\n";

static char *sample_hdb(void)
{
    uint8_t md[16];
    char hex[33];
    char *line = malloc(128);
    khx_md5(sample, strlen(sample), md);
    khx_hex_encode(md, 16, hex);
    snprintf(line, 128, "%s:%zu:Khien.Test.Bundle\n", hex, strlen(sample));
    return line;
}

/* Compiles the sample .hdb with the real builder. */
static void make_kdb(uint8_t **kdb, size_t *len)
{
    kh_builder *b = NULL;
    char *hdb = sample_hdb();
    void *img = NULL;
    assert_int_equal(kh_builder_new(NULL, &b), KH_OK);
    assert_int_equal(kh_builder_add_mem(b, "test.hdb", hdb, strlen(hdb)), KH_OK);
    assert_int_equal(kh_builder_compile(b, &img, len), KH_OK);
    kh_builder_free(b);
    free(hdb);
    *kdb = img;
}

struct fixture {
    uint8_t pk[32], sk[64];
    uint8_t *kdb;
    size_t kdb_len;
    struct khx_buf file;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL || sodium_init() < 0)
        return -1;
    crypto_sign_keypair(f->pk, f->sk);
    make_kdb(&f->kdb, &f->kdb_len);
    khx_buf_init(&f->file, 1u << 30);
    if (khx_bundle_build(f->kdb, f->kdb_len, NULL, 0, 0, 7, 1790000000, 1, f->sk, &f->file) !=
        KH_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    khx_buf_free(&f->file);
    free(f->kdb);
    free(f);
    return 0;
}

static int on_hit(void *ud, const struct kh_detection *d)
{
    snprintf(ud, 64, "%s", d->name);
    return 0;
}

static void bundle_roundtrip_yields_the_kdb(void **state)
{
    struct fixture *f = *state;
    struct khx_bundle_manifest m;
    char why[256] = "", key_id[17], name[64] = "";
    size_t off = 0;

    assert_int_equal(
        khx_bundle_verify(f->file.data, f->file.len, f->pk, &m, &off, why, sizeof(why)), KH_OK);
    assert_int_equal(m.format, 1);
    assert_int_equal(m.version, 7);
    assert_int_equal(m.created_at, 1790000000);
    assert_int_equal(m.signatures, 1);
    assert_int_equal(m.kdb_size, f->kdb_len);
    /* A bundle without indicators says so, and its manifest does not
     * mention them at all (it is what bundles were before they could). */
    assert_int_equal(m.ioc_size, 0);
    assert_int_equal(m.indicators, 0);
    assert_null(memmem(f->file.data, off, "ioc_", 4));
    khx_bundle_key_id(f->pk, key_id);
    assert_string_equal(m.key_id, key_id);
    assert_int_equal(strlen(key_id), 16);
    assert_int_equal(off + f->kdb_len, f->file.len);
    assert_memory_equal(f->file.data + off, f->kdb, f->kdb_len);
    assert_memory_equal(f->file.data, "KHIENBND", 8);

    /* The .kdb inside is a working database. */
    kh_engine *e = NULL;
    kh_scanner *s = NULL;
    struct kh_scan_result res;
    void *copy = malloc(f->kdb_len);
    memcpy(copy, f->file.data + off, f->kdb_len);
    assert_int_equal(kh_engine_open_image(copy, f->kdb_len, &e, NULL, 0), KH_OK);
    assert_int_equal(kh_scanner_new(e, NULL, &s), KH_OK);
    assert_int_equal(kh_scan_mem(s, sample, strlen(sample), "x", on_hit, name, &res), KH_OK);
    assert_string_equal(name, "Khien.Test.Bundle");
    kh_scanner_free(s);
    kh_engine_free(e);
}

static void bundle_every_byte_change_is_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t *copy = malloc(f->file.len);
    static const uint8_t flips[] = {0x01, 0x80, 0xff};
    memcpy(copy, f->file.data, f->file.len);
    for (size_t i = 0; i < f->file.len; i++) {
        /* Header, manifest and signature get three different changes each;
         * the .kdb, where any change only moves its digest, one. */
        size_t nflips = i < f->file.len - f->kdb_len ? 3 : 1;
        for (size_t k = 0; k < nflips; k++) {
            copy[i] ^= flips[k];
            int r = khx_bundle_verify(copy, f->file.len, f->pk, NULL, NULL, NULL, 0);
            if (r == KH_OK)
                fail_msg("changing byte %zu (^0x%02x) was accepted", i, flips[k]);
            copy[i] ^= flips[k];
        }
    }
    assert_int_equal(khx_bundle_verify(copy, f->file.len, f->pk, NULL, NULL, NULL, 0), KH_OK);
    free(copy);
}

static void bundle_truncated_or_extended_is_refused(void **state)
{
    struct fixture *f = *state;
    char why[256];
    for (size_t n = 0; n < f->file.len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, f->file.data, n);
        if (khx_bundle_verify(copy, n, f->pk, NULL, NULL, why, sizeof(why)) == KH_OK)
            fail_msg("a file cut to %zu bytes was accepted", n);
        free(copy);
    }
    assert_int_equal(khx_bundle_verify(NULL, 0, f->pk, NULL, NULL, why, sizeof(why)), KH_EFORMAT);
    uint8_t *longer = malloc(f->file.len + 1);
    memcpy(longer, f->file.data, f->file.len);
    longer[f->file.len] = 0;
    assert_int_equal(
        khx_bundle_verify(longer, f->file.len + 1, f->pk, NULL, NULL, why, sizeof(why)),
        KH_ESIGNATURE);
    assert_non_null(strstr(why, "unsigned bytes"));
    free(longer);
}

static void bundle_other_key_is_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t pk2[32], sk2[64];
    char why[256] = "";
    crypto_sign_keypair(pk2, sk2);
    assert_int_equal(
        khx_bundle_verify(f->file.data, f->file.len, pk2, NULL, NULL, why, sizeof(why)),
        KH_ESIGNATURE);
    assert_non_null(strstr(why, "signed with key"));

    /* A bundle signed by another key that claims our key id. */
    struct khx_buf forged;
    char ours[17], theirs[17];
    khx_buf_init(&forged, 1u << 30);
    assert_int_equal(
        khx_bundle_build(f->kdb, f->kdb_len, NULL, 0, 0, 8, 1790000000, 1, sk2, &forged), KH_OK);
    khx_bundle_key_id(f->pk, ours);
    khx_bundle_key_id(pk2, theirs);
    char *at = memmem(forged.data, forged.len, theirs, 16);
    assert_non_null(at);
    memcpy(at, ours, 16);
    assert_int_equal(
        khx_bundle_verify(forged.data, forged.len, f->pk, NULL, NULL, why, sizeof(why)),
        KH_ESIGNATURE);
    assert_non_null(strstr(why, "signature does not verify"));
    khx_buf_free(&forged);
}

static void put_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void bundle_manifest_length_out_of_range_is_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t *copy = malloc(f->file.len);
    char why[256];
    const uint32_t lengths[] = {0,
                                1,
                                11,
                                0x10001,
                                0x7fffffff,
                                0x80000000,
                                0xffffffff,
                                0xfffffff4,
                                (uint32_t)f->file.len,
                                (uint32_t)f->file.len - 12};
    for (size_t i = 0; i < KHX_ARRAY_LEN(lengths); i++) {
        memcpy(copy, f->file.data, f->file.len);
        put_u32le(copy + 8, lengths[i]);
        int r = khx_bundle_verify(copy, f->file.len, f->pk, NULL, NULL, why, sizeof(why));
        if (r != KH_EFORMAT)
            fail_msg("manifest length %" PRIu32 " gave %d", lengths[i], r);
    }
    free(copy);
}

static void bundle_manifest_parser_is_strict(void **state)
{
    (void)state;
    struct khx_bundle_manifest m;
    char why[256];
    static const char good[] =
        "{\"format\":1,\"version\":3,\"created_at\":5,\"kdb_sha256\":\"" /* */
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\","
        "\"kdb_size\":10,\"key_id\":\"0123456789abcdef\",\"signatures\":2,\"future\":[1]}";
    assert_int_equal(khx_bundle_parse_manifest(good, strlen(good), &m, why, sizeof(why)), KH_OK);
    assert_int_equal(m.version, 3);
    assert_int_equal(m.kdb_size, 10);
    assert_int_equal(m.kdb_sha256[31], 0xff);

    static const char *const bad[] = {
        "",
        "[]",
        "{",
        "{\"format\":1}",
        /* format 2 */
        "{\"format\":2,\"version\":3,\"created_at\":5,\"kdb_sha256\":\"00112233445566778899aabbccdd"
        "eeff00112233445566778899aabbccddeeff\",\"kdb_size\":10,\"key_id\":\"0123456789abcdef\","
        "\"signatures\":2}",
        /* negative size */
        "{\"format\":1,\"version\":3,\"created_at\":5,\"kdb_sha256\":\"00112233445566778899aabbccdd"
        "eeff00112233445566778899aabbccddeeff\",\"kdb_size\":-1,\"key_id\":\"0123456789abcdef\","
        "\"signatures\":2}",
        /* version as a string */
        "{\"format\":1,\"version\":\"3\",\"created_at\":5,\"kdb_sha256\":\"00112233445566778899aabb"
        "ccddeeff00112233445566778899aabbccddeeff\",\"kdb_size\":10,\"key_id\":"
        "\"0123456789abcdef\","
        "\"signatures\":2}",
        /* uppercase hex */
        "{\"format\":1,\"version\":3,\"created_at\":5,\"kdb_sha256\":\"00112233445566778899AABBCCDD"
        "EEFF00112233445566778899aabbccddeeff\",\"kdb_size\":10,\"key_id\":\"0123456789abcdef\","
        "\"signatures\":2}",
        /* short key id */
        "{\"format\":1,\"version\":3,\"created_at\":5,\"kdb_sha256\":\"00112233445566778899aabbccdd"
        "eeff00112233445566778899aabbccddeeff\",\"kdb_size\":10,\"key_id\":\"0123456789abcde\","
        "\"signatures\":2}",
        /* duplicate key */
        "{\"format\":1,\"version\":3,\"version\":4,\"created_at\":5,\"kdb_sha256\":"
        "\"0011223344556677"
        "8899aabbccddeeff00112233445566778899aabbccddeeff\",\"kdb_size\":10,\"key_id\":"
        "\"0123456789abcdef\",\"signatures\":2}",
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(bad); i++)
        if (khx_bundle_parse_manifest(bad[i], strlen(bad[i]), &m, why, sizeof(why)) != KH_EFORMAT)
            fail_msg("manifest %zu was accepted", i);
}

/* ------------------------------------------------------------------------ */
/* Bundles that carry an indicator list.                                     */
/* ------------------------------------------------------------------------ */

static const char iocs[] = "203.0.113.7 c2 feodo\nevil.example.com phishing -\n";

static void build_with_iocs(const struct fixture *f, struct khx_buf *out)
{
    khx_buf_init(out, 1u << 30);
    assert_int_equal(khx_bundle_build(f->kdb, f->kdb_len, (const uint8_t *)iocs, strlen(iocs), 2, 9,
                                      1790000000, 1, f->sk, out),
                     KH_OK);
}

static void bundle_with_indicators_verifies_and_yields_both_parts(void **state)
{
    struct fixture *f = *state;
    struct khx_bundle_manifest m;
    struct khx_buf file;
    char why[256] = "";
    size_t off = 0;
    uint8_t md[32];
    build_with_iocs(f, &file);
    assert_int_equal(khx_bundle_verify(file.data, file.len, f->pk, &m, &off, why, sizeof(why)),
                     KH_OK);
    assert_int_equal(m.version, 9);
    assert_int_equal(m.kdb_size, f->kdb_len);
    assert_int_equal(m.ioc_size, strlen(iocs));
    assert_int_equal(m.indicators, 2);
    khx_sha256(iocs, strlen(iocs), md);
    assert_memory_equal(m.ioc_sha256, md, 32);
    assert_int_equal(off + m.kdb_size + m.ioc_size, file.len);
    assert_memory_equal(file.data + off, f->kdb, f->kdb_len);
    assert_memory_equal(file.data + off + m.kdb_size, iocs, strlen(iocs));
    khx_buf_free(&file);

    /* Arguments that cannot describe a list are refused. */
    struct khx_buf b;
    uint8_t sha[32] = {0};
    khx_buf_init(&b, 1u << 20);
    assert_int_equal(khx_bundle_build(f->kdb, f->kdb_len, NULL, 5, 1, 9, 1, 1, f->sk, &b),
                     KH_EINVAL);
    assert_int_equal(khx_bundle_header(9, 1, 1, 10, sha, 5, NULL, 1, f->sk, &b), KH_EINVAL);
    assert_int_equal(khx_bundle_header(9, 1, 1, 10, sha, 0, NULL, 3, f->sk, &b), KH_EINVAL);
    assert_int_equal(khx_bundle_header(9, 1, 1, 10, sha, 5, sha, -1, f->sk, &b), KH_EINVAL);
    assert_int_equal(b.len, 0);
    khx_buf_free(&b);
}

static void bundle_indicator_section_changed_or_cut_is_refused(void **state)
{
    struct fixture *f = *state;
    struct khx_buf file;
    char why[256] = "";
    build_with_iocs(f, &file);
    size_t ioc_off = file.len - strlen(iocs);

    /* Every byte of the list, changed: the signed digest no longer fits. */
    for (size_t i = ioc_off; i < file.len; i++) {
        file.data[i] ^= 0x20;
        int r = khx_bundle_verify(file.data, file.len, f->pk, NULL, NULL, why, sizeof(why));
        if (r != KH_ESIGNATURE)
            fail_msg("changing indicator byte %zu gave %d", i - ioc_off, r);
        assert_non_null(strstr(why, "indicator list's SHA-256"));
        file.data[i] ^= 0x20;
    }
    /* Cut anywhere in the list or in the .kdb: a truncated download. */
    for (size_t n = ioc_off - f->kdb_len; n < file.len; n++) {
        int r = khx_bundle_verify(file.data, n, f->pk, NULL, NULL, why, sizeof(why));
        if (r != KH_EFORMAT)
            fail_msg("cut to %zu bytes gave %d", n, r);
        assert_non_null(strstr(why, "truncated"));
    }
    /* A byte after the list is unsigned data. */
    assert_int_equal(khx_buf_append_u8(&file, '\n'), KH_OK);
    assert_int_equal(khx_bundle_verify(file.data, file.len, f->pk, NULL, NULL, why, sizeof(why)),
                     KH_ESIGNATURE);
    assert_non_null(strstr(why, "follow the indicator list"));
    file.len--;
    assert_int_equal(khx_bundle_verify(file.data, file.len, f->pk, NULL, NULL, why, sizeof(why)),
                     KH_OK);
    khx_buf_free(&file);
}

static void bundle_manifest_ioc_fields_are_checked(void **state)
{
    (void)state;
    struct khx_bundle_manifest m;
    char why[256];
#define MANIFEST_HEAD                                                                              \
    "{\"format\":1,\"version\":3,\"created_at\":5,\"kdb_sha256\":"                                 \
    "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\",\"kdb_size\":10,"        \
    "\"key_id\":\"0123456789abcdef\",\"signatures\":2"
#define IOC_SHA "\"ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\""
    static const char good[] =
        MANIFEST_HEAD ",\"ioc_size\":7,\"ioc_sha256\":" IOC_SHA ",\"indicators\":1}";
    assert_int_equal(khx_bundle_parse_manifest(good, strlen(good), &m, why, sizeof(why)), KH_OK);
    assert_int_equal(m.ioc_size, 7);
    assert_int_equal(m.indicators, 1);
    assert_int_equal(m.ioc_sha256[0], 0xff);
    static const char none[] = MANIFEST_HEAD ",\"ioc_size\":0}";
    assert_int_equal(khx_bundle_parse_manifest(none, strlen(none), &m, why, sizeof(why)), KH_OK);
    assert_int_equal(m.ioc_size, 0);

    static const char *const bad[] = {
        MANIFEST_HEAD ",\"ioc_size\":7}",                                /* no digest */
        MANIFEST_HEAD ",\"ioc_size\":-7,\"ioc_sha256\":" IOC_SHA "}",    /* negative */
        MANIFEST_HEAD ",\"ioc_size\":\"7\",\"ioc_sha256\":" IOC_SHA "}", /* a string */
        MANIFEST_HEAD ",\"ioc_size\":7,\"ioc_sha256\":\"abc\"}",         /* short */
        MANIFEST_HEAD ",\"ioc_size\":7,\"ioc_sha256\":" IOC_SHA ",\"indicators\":-1}",
        MANIFEST_HEAD ",\"indicators\":4}",                                         /* no list */
        MANIFEST_HEAD ",\"ioc_sha256\":7}",                                         /* not hex */
        MANIFEST_HEAD ",\"ioc_size\":7,\"ioc_size\":8,\"ioc_sha256\":" IOC_SHA "}", /* twice */
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(bad); i++)
        if (khx_bundle_parse_manifest(bad[i], strlen(bad[i]), &m, why, sizeof(why)) != KH_EFORMAT)
            fail_msg("manifest %zu was accepted", i);
#undef MANIFEST_HEAD
#undef IOC_SHA
}

/* ------------------------------------------------------------------------ */
/* The server's signing key.                                                 */
/* ------------------------------------------------------------------------ */

static char *join(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static void signer_key_is_private_and_checked(void **state)
{
    (void)state;
    char dir[256], err[256] = "";
    struct srv_signer *sg = NULL;
    struct stat st;
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    char *key = join(dir, "bundle.key"), *pub = join(dir, "bundle.pub");

    assert_int_equal(srv_signer_init_dir(dir, err, sizeof(err)), 0);
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 64);
    assert_int_equal(srv_signer_open(dir, &sg, err, sizeof(err)), 0);
    uint8_t pk[32];
    size_t pklen = 0;
    const char *b64 = srv_signer_public_b64(sg);
    assert_int_equal(strlen(b64), 44);
    assert_int_equal(sodium_base642bin(pk, sizeof(pk), b64, strlen(b64), NULL, &pklen, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(pklen, 32);
    char id[17];
    khx_bundle_key_id(pk, id);
    assert_string_equal(srv_signer_key_id(sg), id);
    uint8_t *text = NULL;
    size_t tlen = 0;
    assert_int_equal(khx_read_file(pub, 1024, &text, &tlen), 0);
    assert_int_equal(tlen, 45);
    assert_memory_equal(text, b64, 44);
    free(text);
    srv_signer_free(sg);

    /* init again keeps the key. */
    assert_int_equal(srv_signer_init_dir(dir, err, sizeof(err)), 0);
    assert_int_equal(srv_signer_open(dir, &sg, err, sizeof(err)), 0);
    assert_string_equal(srv_signer_key_id(sg), id);
    srv_signer_free(sg);

    /* Readable by others, or damaged: refused. */
    assert_int_equal(chmod(key, 0640), 0);
    assert_int_equal(srv_signer_open(dir, &sg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chmod 600"));
    assert_int_equal(chmod(key, 0600), 0);
    uint8_t *raw = NULL;
    size_t rlen = 0;
    assert_int_equal(khx_read_file(key, 64, &raw, &rlen), 0);
    raw[40] ^= 1;
    int fd = open(key, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, raw, rlen), 64);
    close(fd);
    free(raw);
    assert_int_equal(srv_signer_open(dir, &sg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "damaged"));
    srv_signer_free(NULL);

    free(key);
    free(pub);
    tu_rmtree(dir);
}

/* ------------------------------------------------------------------------ */
/* Publishing against SQLite.                                                */
/* ------------------------------------------------------------------------ */

struct pubenv {
    char dir[256];
    struct store_db *db;
    struct srv srv;
};

/* A fresh migrated store and a signer (tu_publisher_open); -1 when the
 * backend is not available (the caller skips). */
static int pub_open(struct pubenv *p, unsigned keep, int postgres)
{
    memset(p, 0, sizeof(*p));
    return tu_publisher_open(&p->srv, p->dir, &p->db, keep, postgres);
}

static void pub_close(struct pubenv *p)
{
    tu_publisher_close(&p->srv, p->dir, p->db);
}

static void add_upload(struct store_db *db, const char *name, const void *data, size_t len)
{
    struct store_stmt *st = NULL;
    assert_int_equal(store_prepare(db,
                                   "INSERT INTO sig_sources (kind, name, content, created_at)"
                                   " VALUES ('clamav', $1, $2, 1)",
                                   &st),
                     0);
    assert_int_equal(store_bind_text(st, 1, name), 0);
    assert_int_equal(store_bind_blob(st, 2, data, len), 0);
    assert_int_equal(store_step(st), STORE_DONE);
    store_finalize(st);
}

static void signer_pk(const struct srv_signer *sg, uint8_t pk[32])
{
    const char *b64 = srv_signer_public_b64(sg);
    size_t n = 0;
    assert_int_equal(
        sodium_base642bin(pk, 32, b64, strlen(b64), NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL),
        0);
}

/* Reads version `v` through srv_bundle_open and checks it as an agent would. */
static void check_served(struct pubenv *p, int64_t v, int64_t nsigs)
{
    struct srv_bundle_info info;
    int fd = -1;
    uint8_t pk[32], md[32];
    char hex[65], why[256] = "";
    struct khx_bundle_manifest m;
    assert_int_equal(srv_bundle_open(&p->srv, p->db, v, &info, &fd), STORE_ROW);
    assert_true(fd >= 0);
    assert_int_equal(info.version, v);
    uint8_t *data = malloc((size_t)info.size + 1);
    ssize_t got = read(fd, data, (size_t)info.size + 1);
    close(fd);
    assert_int_equal(got, info.size);
    khx_sha256(data, (size_t)got, md);
    khx_hex_encode(md, 32, hex);
    assert_string_equal(hex, info.sha256);
    signer_pk(p->srv.signer, pk);
    if (khx_bundle_verify(data, (size_t)got, pk, &m, NULL, why, sizeof(why)) != KH_OK)
        fail_msg("served bundle %" PRId64 " refused: %s", v, why);
    assert_int_equal(m.version, v);
    assert_int_equal(m.signatures, nsigs);
    assert_int_equal(info.signatures, nsigs);
    free(data);
}

static int64_t count(struct store_db *db, const char *sql)
{
    int64_t n = -1;
    assert_int_equal(store_query_int(db, &n, sql, ""), STORE_ROW);
    return n;
}

static void bundle_publish_stores_serves_and_prunes(int postgres)
{
    struct pubenv p;
    char err[512] = "";
    int64_t v = 0;
    if (pub_open(&p, 2, postgres) != 0) {
        skip();
        return;
    }
    struct srv_bundle_info info;
    assert_int_equal(srv_bundle_latest(p.db, &info), STORE_DONE);
    assert_int_equal(srv_bundle_publish(&p.srv, p.db, 0, &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no signature source"));

    /* A hash list big enough to need several 1 MiB chunks. */
    size_t n = 60000, len = 0;
    char *list = malloc(n * 64 + 1);
    for (size_t i = 0; i < n; i++) {
        uint8_t md[16];
        char hex[33];
        khx_md5(&i, sizeof(i), md);
        khx_hex_encode(md, 16, hex);
        len += (size_t)sprintf(list + len, "%s:%zu:Test.Hash.%zu\n", hex, 100 + i, i);
    }
    char *hdb = sample_hdb();
    add_upload(p.db, "sample.hdb", hdb, strlen(hdb));
    add_upload(p.db, "many.hdb", list, len);
    free(hdb);
    free(list);

    if (srv_bundle_publish(&p.srv, p.db, 0, &v, err, sizeof(err)) != 0)
        fail_msg("publish: %s", err);
    assert_int_equal(v, 1);
    assert_int_equal(srv_bundle_latest(p.db, &info), STORE_ROW);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.signatures, (int64_t)n + 1);
    assert_true(count(p.db, "SELECT COUNT(*) FROM bundle_chunks WHERE version = 1") >= 2);
    assert_int_equal(count(p.db, "SELECT SUM(length(data)) FROM bundle_chunks WHERE version = 1"),
                     info.size);
    check_served(&p, 1, (int64_t)n + 1);

    /* Without the cache file, the bundle is rebuilt from its chunks. */
    char cache[700];
    snprintf(cache, sizeof(cache), "%s/cache/bundle-1.khb", p.dir);
    assert_int_equal(access(cache, F_OK), 0);
    assert_int_equal(unlink(cache), 0);
    check_served(&p, 1, (int64_t)n + 1);
    assert_int_equal(access(cache, F_OK), 0);
    /* A cache file of the wrong size is replaced. */
    assert_int_equal(truncate(cache, 100), 0);
    check_served(&p, 1, (int64_t)n + 1);

    /* Three more versions with keep_bundles = 2 leave versions 3 and 4. */
    for (int64_t want = 2; want <= 4; want++) {
        if (srv_bundle_publish(&p.srv, p.db, 0, &v, err, sizeof(err)) != 0)
            fail_msg("publish %" PRId64 ": %s", want, err);
        assert_int_equal(v, want);
    }
    assert_int_equal(count(p.db, "SELECT COUNT(*) FROM bundles"), 2);
    assert_int_equal(count(p.db, "SELECT MIN(version) FROM bundles"), 3);
    assert_int_equal(count(p.db, "SELECT COUNT(*) FROM bundle_chunks WHERE version < 3"), 0);
    int fd = -1;
    assert_int_equal(srv_bundle_open(&p.srv, p.db, 1, &info, &fd), STORE_DONE);
    assert_int_equal(fd, -1);
    assert_int_not_equal(access(cache, F_OK), 0);
    check_served(&p, 4, (int64_t)n + 1);
    pub_close(&p);
}

static void bundle_publish_names_the_source_that_fails(int postgres)
{
    struct pubenv p;
    char err[512] = "";
    int64_t v = 0;
    if (pub_open(&p, 5, postgres) != 0) {
        skip();
        return;
    }
    char *hdb = sample_hdb();
    add_upload(p.db, "sample.hdb", hdb, strlen(hdb));
    free(hdb);

    /* Every line malformed: the source would add nothing. */
    static const char junk[] = "not a hash line\nnor this\n";
    add_upload(p.db, "broken.hdb", junk, strlen(junk));
    assert_int_equal(srv_bundle_publish(&p.srv, p.db, 0, &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "broken.hdb"));
    assert_int_equal(
        store_execf(p.db, NULL, "DELETE FROM sig_sources WHERE name = 'broken.hdb'", ""), 0);

    /* A folder on the server that has gone away. */
    assert_int_equal(store_execf(p.db, NULL,
                                 "INSERT INTO sig_sources (kind, name, path, created_at)"
                                 " VALUES ('mirror', 'gone', '/nonexistent/khien-mirror', 1)",
                                 ""),
                     0);
    assert_int_equal(srv_bundle_publish(&p.srv, p.db, 0, &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "gone"));
    assert_int_equal(
        store_execf(p.db, NULL, "UPDATE sig_sources SET enabled = 0 WHERE name = 'gone'", ""), 0);

    /* With it disabled, publishing works and nothing was half-stored. */
    assert_int_equal(count(p.db, "SELECT COUNT(*) FROM bundle_chunks"), 0);
    if (srv_bundle_publish(&p.srv, p.db, 0, &v, err, sizeof(err)) != 0)
        fail_msg("publish: %s", err);
    assert_int_equal(v, 1);
    check_served(&p, 1, 1);
    pub_close(&p);
}

/* ------------------------------------------------------------------------ */
/* The signature API (server/api_signature.c).                                */
/* ------------------------------------------------------------------------ */

/* Calls a handler as the router would for an administrator; returns the
 * parsed reply (NULL for an empty one) and its status. */
static json_t *call(struct pubenv *p, srv_handler h, const char *query, const char *param,
                    const char *body, unsigned *status)
{
    struct srv_principal admin;
    tu_principal_admin(&admin);
    return tu_call_handler(&p->srv, p->db, h, &admin, "POST", param, query, body, 0, status);
}

static void expect_status(struct pubenv *p, srv_handler h, const char *query, const char *param,
                          const char *body, unsigned want, const char *field)
{
    unsigned status = 0;
    json_t *j = call(p, h, query, param, body, &status);
    if (status != want)
        fail_msg("%s %s: status %u, wanted %u", query ? query : "", body ? body : "", status, want);
    if (field != NULL)
        assert_string_equal(json_string_value(json_object_get(j, "field")), field);
    json_decref(j);
}

static void signature_api_manages_sources_and_versions(int postgres)
{
    struct pubenv p;
    unsigned status = 0;
    if (pub_open(&p, 5, postgres) != 0) {
        skip();
        return;
    }
    assert_int_equal(store_execf(p.db, NULL,
                                 "INSERT INTO users (username, password_hash, role, created_at)"
                                 " VALUES ('admin', 'x', 'admin', 1)",
                                 ""),
                     0);
    char *hdb = sample_hdb();

    /* Uploads: a new name is created, the same name again replaced. */
    json_t *j = call(&p, api_sources_upload, "kind=clamav&name=sample.hdb", NULL, hdb, &status);
    assert_int_equal(status, 201);
    assert_int_equal(json_integer_value(json_object_get(j, "size")), strlen(hdb));
    assert_false(json_is_true(json_object_get(j, "replaced")));
    assert_null(json_object_get(j, "content"));
    json_int_t upload_id = json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    j = call(&p, api_sources_upload, "kind=clamav&name=sample.hdb", NULL, hdb, &status);
    assert_int_equal(status, 200);
    assert_true(json_is_true(json_object_get(j, "replaced")));
    assert_int_equal(json_integer_value(json_object_get(j, "id")), upload_id);
    json_decref(j);
    expect_status(&p, api_sources_upload, "kind=clamav&name=../x.hdb", NULL, hdb, 400, "name");
    expect_status(&p, api_sources_upload, "kind=clamav&name=x.exe", NULL, hdb, 400, "name");
    expect_status(&p, api_sources_upload, "kind=yara&name=x.hdb", NULL, hdb, 400, "name");
    expect_status(&p, api_sources_upload, "kind=mirror&name=x.hdb", NULL, hdb, 400, "kind");
    expect_status(&p, api_sources_upload, "name=x.hdb", NULL, hdb, 400, "kind");
    expect_status(&p, api_sources_upload, "kind=clamav&name=x.hdb", NULL, "", 400, NULL);

    /* Sources on the server must exist and fit their kind. */
    char *file = tu_write(p.dir, "local.hdb", hdb, strlen(hdb));
    char body[1200];
    snprintf(body, sizeof(body), "{\"kind\":\"hashlist\",\"path\":\"%s\"}", file);
    j = call(&p, api_sources_create, NULL, NULL, body, &status);
    assert_int_equal(status, 201);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "local.hdb");
    assert_string_equal(json_string_value(json_object_get(j, "origin")), "path");
    assert_int_equal(json_integer_value(json_object_get(j, "size")), strlen(hdb));
    json_decref(j);
    expect_status(&p, api_sources_create, NULL, NULL, body, 409, NULL);
    snprintf(body, sizeof(body), "{\"kind\":\"mirror\",\"name\":\"m\",\"path\":\"%s\"}", file);
    expect_status(&p, api_sources_create, NULL, NULL, body, 400, "path");
    expect_status(&p, api_sources_create, NULL, NULL,
                  "{\"kind\":\"clamav\",\"path\":\"/nonexistent/x.hdb\"}", 400, "path");
    expect_status(&p, api_sources_create, NULL, NULL, "{\"kind\":\"clamav\",\"path\":\"rel.hdb\"}",
                  400, "path");
    expect_status(&p, api_sources_create, NULL, NULL, "{\"kind\":\"other\",\"path\":\"/tmp\"}", 400,
                  "kind");

    j = call(&p, api_sources_list, NULL, NULL, NULL, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 2);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(j, "items"), 0), "created_by")),
                        "admin");
    json_decref(j);

    /* Publish, then see it among the versions with the machines on it. */
    j = call(&p, api_bundles_publish, NULL, NULL, NULL, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "signatures")), 2);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "sha256"))), 64);
    json_decref(j);
    assert_int_equal(store_execf(p.db, NULL,
                                 "INSERT INTO agencies (path, code, name, created_at)"
                                 " VALUES ('/1/', 'root', 'Root', 1)",
                                 ""),
                     0);
    assert_int_equal(store_execf(p.db, NULL,
                                 "INSERT INTO machines (id, agency_id, db_version, enrolled_at,"
                                 " retired) VALUES ('m1', 1, 1, 1, 0), ('m2', 1, 1, 1, 1),"
                                 " ('m3', 1, 0, 1, 0)",
                                 ""),
                     0);
    j = call(&p, api_bundles_list, NULL, NULL, NULL, &status);
    assert_int_equal(status, 200);
    json_t *item = json_array_get(json_object_get(j, "items"), 0);
    assert_int_equal(json_integer_value(json_object_get(item, "version")), 1);
    assert_int_equal(json_integer_value(json_object_get(item, "machines")), 1);
    assert_int_equal(json_array_size(json_object_get(j, "machines_by_version")), 2);
    json_decref(j);
    assert_int_equal(count(p.db, "SELECT COUNT(*) FROM audit WHERE action = 'bundle.publish'"), 1);
    assert_int_equal(
        count(p.db, "SELECT COUNT(*) FROM audit WHERE action LIKE 'signature_source.%'"), 3);

    /* Delete, twice. */
    char id[32];
    snprintf(id, sizeof(id), "%lld", (long long)upload_id);
    expect_status(&p, api_sources_delete, NULL, id, NULL, 204, NULL);
    expect_status(&p, api_sources_delete, NULL, id, NULL, 404, NULL);
    expect_status(&p, api_sources_delete, NULL, "abc", NULL, 404, NULL);

    free(file);
    free(hdb);
    pub_close(&p);
}

struct opener {
    struct pubenv *p;
    char url[600];
    int failures;
};

/* One request handler's worth of work: its own connection, then version 1
 * read through srv_bundle_open and checked as an agent would. */
static void *open_many(void *arg)
{
    struct opener *o = arg;
    struct store_db *db = NULL;
    uint8_t pk[32];
    signer_pk(o->p->srv.signer, pk);
    if (store_open(o->url, &db, NULL, 0) != 0) {
        o->failures++;
        return NULL;
    }
    for (int i = 0; i < 5; i++) {
        struct srv_bundle_info info;
        int fd = -1;
        if (srv_bundle_open(&o->p->srv, db, 1, &info, &fd) != STORE_ROW) {
            o->failures++;
            continue;
        }
        uint8_t *data = malloc((size_t)info.size);
        ssize_t got = read(fd, data, (size_t)info.size);
        close(fd);
        if (got != info.size ||
            khx_bundle_verify(data, (size_t)got, pk, NULL, NULL, NULL, 0) != KH_OK)
            o->failures++;
        free(data);
    }
    store_close(db);
    return NULL;
}

static void bundle_open_from_many_threads_agrees(void **state)
{
    (void)state;
    struct pubenv p;
    struct opener o[4];
    pthread_t t[4];
    char err[512] = "", cache[700];
    int64_t v = 0;
    if (pub_open(&p, 5, 0) != 0) {
        skip();
        return;
    }
    char *hdb = sample_hdb();
    add_upload(p.db, "sample.hdb", hdb, strlen(hdb));
    free(hdb);
    if (srv_bundle_publish(&p.srv, p.db, 0, &v, err, sizeof(err)) != 0)
        fail_msg("publish: %s", err);
    /* Every thread finds no cache file and builds one at the same time. */
    snprintf(cache, sizeof(cache), "%s/cache/bundle-1.khb", p.dir);
    assert_int_equal(unlink(cache), 0);
    for (int i = 0; i < 4; i++) {
        o[i].p = &p;
        o[i].failures = 0;
        snprintf(o[i].url, sizeof(o[i].url), "sqlite://%s/khien.db", p.dir);
        assert_int_equal(pthread_create(&t[i], NULL, open_many, &o[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(o[i].failures, 0);
    }
    assert_int_equal(access(cache, F_OK), 0);
    pub_close(&p);
}

/* Each store test runs on both backends. */
static void bundle_publish_stores_serves_and_prunes_sqlite(void **state)
{
    (void)state;
    bundle_publish_stores_serves_and_prunes(0);
}

static void bundle_publish_stores_serves_and_prunes_postgres(void **state)
{
    (void)state;
    bundle_publish_stores_serves_and_prunes(1);
}

static void bundle_publish_names_the_source_that_fails_sqlite(void **state)
{
    (void)state;
    bundle_publish_names_the_source_that_fails(0);
}

static void bundle_publish_names_the_source_that_fails_postgres(void **state)
{
    (void)state;
    bundle_publish_names_the_source_that_fails(1);
}

static void signature_api_manages_sources_and_versions_sqlite(void **state)
{
    (void)state;
    signature_api_manages_sources_and_versions(0);
}

static void signature_api_manages_sources_and_versions_postgres(void **state)
{
    (void)state;
    signature_api_manages_sources_and_versions(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(bundle_roundtrip_yields_the_kdb, setup, teardown),
        cmocka_unit_test_setup_teardown(bundle_every_byte_change_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(bundle_truncated_or_extended_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(bundle_other_key_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(bundle_manifest_length_out_of_range_is_refused, setup,
                                        teardown),
        cmocka_unit_test(bundle_manifest_parser_is_strict),
        cmocka_unit_test_setup_teardown(bundle_with_indicators_verifies_and_yields_both_parts,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(bundle_indicator_section_changed_or_cut_is_refused, setup,
                                        teardown),
        cmocka_unit_test(bundle_manifest_ioc_fields_are_checked),
        cmocka_unit_test(signer_key_is_private_and_checked),
        cmocka_unit_test(bundle_publish_stores_serves_and_prunes_sqlite),
        cmocka_unit_test(bundle_publish_stores_serves_and_prunes_postgres),
        cmocka_unit_test(bundle_publish_names_the_source_that_fails_sqlite),
        cmocka_unit_test(bundle_publish_names_the_source_that_fails_postgres),
        cmocka_unit_test(bundle_open_from_many_threads_agrees),
        cmocka_unit_test(signature_api_manages_sources_and_versions_sqlite),
        cmocka_unit_test(signature_api_manages_sources_and_versions_postgres),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
