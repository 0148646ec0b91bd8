/*
 * Tests for the embedded-object search (lib/engine/embedded.c): PE images
 * and archives hidden inside other files, the extents members get, what is
 * not reported (offset 0, containers, things inside a delivered object,
 * signatures without a valid header behind them), and the limits. PE images
 * come from the fixture generator, zips are assembled here; ClamAV's
 * embedded test files from ../shared/data are used when present.
 */
#include "testutil.h"
#include "walkutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "container.h"
#include "khx.h"
#include "pegen.h"

static int walk_lim(const uint8_t *buf, size_t len, enum khx_ftype t,
                    const struct khx_walk_limits *lim, struct tu_rec *r)
{
    uint64_t total = 0;
    struct khx_walk_cb cb = tu_rec_cb(r);
    return khx_embedded_walk(buf, len, t, lim, &total, &cb);
}

static int walk(const uint8_t *buf, size_t len, struct tu_rec *r)
{
    return walk_lim(buf, len, khx_filetype(buf, len), &tu_generous, r);
}

/* A small PE: one code section with `fill` bytes. */
static uint8_t *make_pe(size_t fill, size_t *len)
{
    uint8_t *code = malloc(fill);
    assert_non_null(code);
    memset(code, 0xC3, fill);
    struct pegen_section sec = {".text", code, fill, 0, PEGEN_SCN_CODE};
    struct pegen_pe desc = {0};
    desc.sections = &sec;
    desc.nsections = 1;
    uint8_t *out = NULL;
    assert_int_equal(pegen_pe_build(&desc, &out, len, NULL), 0);
    free(code);
    return out;
}

/* A zip with one stored member, assembled by hand. */
static uint8_t *make_zip(const char *name, const char *body, size_t *len)
{
    size_t nl = strlen(name), bl = strlen(body);
    struct khx_buf b;
    khx_buf_init(&b, 1 << 20);
    uint32_t crc = (uint32_t)crc32(0, (const Bytef *)body, (uInt)bl);
    uint8_t lh[30] = {'P', 'K', 3, 4, 10, 0};
    memcpy(lh + 14, &crc, 4); /* little-endian hosts only; fine for the tests */
    uint32_t sz = (uint32_t)bl;
    memcpy(lh + 18, &sz, 4);
    memcpy(lh + 22, &sz, 4);
    lh[26] = (uint8_t)nl;
    khx_buf_append(&b, lh, sizeof(lh));
    khx_buf_append(&b, name, nl);
    khx_buf_append(&b, body, bl);
    uint32_t cd_off = (uint32_t)b.len;
    uint8_t ch[46] = {'P', 'K', 1, 2, 20, 3, 10, 0};
    memcpy(ch + 16, &crc, 4);
    memcpy(ch + 20, &sz, 4);
    memcpy(ch + 24, &sz, 4);
    ch[28] = (uint8_t)nl;
    khx_buf_append(&b, ch, sizeof(ch));
    khx_buf_append(&b, name, nl);
    uint32_t cd_size = (uint32_t)b.len - cd_off;
    uint8_t eocd[22] = {'P', 'K', 5, 6, 0, 0, 0, 0, 1, 0, 1, 0};
    memcpy(eocd + 12, &cd_size, 4);
    memcpy(eocd + 16, &cd_off, 4);
    khx_buf_append(&b, eocd, sizeof(eocd));
    return khx_buf_steal(&b, len);
}

static void embedded_pe_in_overlay_extent_from_sections(void **state)
{
    (void)state;
    size_t host_len, inner_len;
    uint8_t *host = make_pe(512, &host_len);
    uint8_t *inner = make_pe(3000, &inner_len);
    size_t len = host_len + 100 + inner_len + 50;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    memcpy(buf, host, host_len);
    memset(buf + host_len, 0, 100);
    memcpy(buf + host_len + 100, inner, inner_len);
    memset(buf + host_len + 100 + inner_len, 'Z', 50);
    assert_int_equal(khx_filetype(buf, len), KHX_FT_PE);

    struct tu_rec r = {0};
    assert_int_equal(walk(buf, len, &r), 0);
    /* The host at offset 0 is the object itself: not reported. */
    assert_int_equal(r.nmembers, 1);
    char want[64];
    snprintf(want, sizeof(want), "embedded-pe@0x%zx", host_len + 100);
    assert_string_equal(r.names[0], want);
    /* The member is the inner image, not the padding after it. */
    assert_int_equal(r.lens[0], inner_len);
    assert_ptr_equal(r.ptrs[0], buf + host_len + 100);
    free(buf);
    free(host);
    free(inner);
}

static void embedded_zips_appended_to_picture(void **state)
{
    (void)state;
    size_t z1_len, z2_len;
    uint8_t *z1 = make_zip("one.txt", "first hidden file", &z1_len);
    uint8_t *z2 = make_zip("two.txt", "second hidden file", &z2_len);
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 0};
    size_t len = sizeof(png) + 300 + z1_len + z2_len;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    memcpy(buf, png, sizeof(png));
    memset(buf + sizeof(png), 0x11, 300);
    memcpy(buf + sizeof(png) + 300, z1, z1_len);
    memcpy(buf + sizeof(png) + 300 + z1_len, z2, z2_len);
    /* Offsets count from each zip's start: the file stays binary. */
    assert_int_equal(khx_filetype(buf, len), KHX_FT_BINARY);

    struct tu_rec r = {0};
    assert_int_equal(walk(buf, len, &r), 0);
    assert_int_equal(r.nmembers, 2);
    size_t off1 = sizeof(png) + 300;
    char want[64];
    snprintf(want, sizeof(want), "embedded-zip@0x%zx", off1);
    assert_string_equal(r.names[0], want);
    /* Each zip ends at its own end record, so each is walked whole and on
     * its own; the second is not hidden inside the first. */
    assert_int_equal(r.lens[0], z1_len);
    assert_int_equal(r.lens[1], z2_len);
    for (int i = 0; i < 2; i++)
        assert_int_equal(khx_filetype(r.ptrs[i], r.lens[i]), KHX_FT_ZIP);
    free(buf);
    free(z1);
    free(z2);
}

static void embedded_not_reported_for_containers_or_offset_zero(void **state)
{
    (void)state;
    size_t z_len, pe_len;
    uint8_t *z = make_zip("a.txt", "hello", &z_len);
    uint8_t *pe = make_pe(100, &pe_len);
    struct tu_rec r = {0};
    /* A zip at offset 0: the container walk's business. */
    assert_int_equal(walk_lim(z, z_len, KHX_FT_ZIP, &tu_generous, &r), 0);
    assert_int_equal(r.nmembers, 0);
    /* A lone PE: itself, at offset 0. */
    assert_int_equal(walk(pe, pe_len, &r), 0);
    assert_int_equal(r.nmembers, 0);
    free(z);
    free(pe);
}

static void embedded_signatures_without_headers_ignored(void **state)
{
    (void)state;
    uint8_t buf[4096];
    memset(buf, 0x41, sizeof(buf));
    /* "MZ" with no PE header, "PK\3\4" with an empty name, "MSCF" with a
     * cabinet size past the end, a 7z signature of an unknown version. */
    memcpy(buf + 100, "MZ", 2);
    memcpy(buf + 300, "PK\3\4\x14\0\0\0\0\0", 10);
    memcpy(buf + 600, "MSCF\0\0\0\0\xff\xff\xff\x7f", 12);
    memcpy(buf + 900, "7z\xBC\xAF\x27\x1C\x09\x04", 8);
    memcpy(buf + 1200, "Rar!\x1A\x07\x05", 7);
    struct tu_rec r = {0};
    assert_int_equal(walk_lim(buf, sizeof(buf), KHX_FT_BINARY, &tu_generous, &r), 0);
    assert_int_equal(r.nmembers, 0);
    assert_int_equal(r.nissues, 0);
    /* A valid RAR signature runs to the end of the buffer. */
    memcpy(buf + 2000, "Rar!\x1A\x07\x00", 7);
    struct tu_rec r2 = {0};
    assert_int_equal(walk_lim(buf, sizeof(buf), KHX_FT_BINARY, &tu_generous, &r2), 0);
    assert_int_equal(r2.nmembers, 1);
    assert_string_equal(r2.names[0], "embedded-rar@0x7d0");
    assert_int_equal(r2.lens[0], sizeof(buf) - 2000);
}

static void embedded_limits_and_candidate_cap(void **state)
{
    (void)state;
    size_t z_len;
    uint8_t *z = make_zip("a.txt", "hello", &z_len);
    size_t n = 100;
    size_t len = 1 + n * z_len;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    buf[0] = 0;
    for (size_t i = 0; i < n; i++)
        memcpy(buf + 1 + i * z_len, z, z_len);

    struct tu_rec r = {0};
    assert_int_equal(walk_lim(buf, len, KHX_FT_BINARY, &tu_generous, &r), 0);
    assert_int_equal(r.nmembers, 64);
    assert_true(tu_find_issue(&r, KHX_WALK_MAX_FILES) >= 0);

    struct khx_walk_limits lim = tu_generous;
    lim.max_members = 5;
    struct tu_rec r2 = {0};
    assert_int_equal(walk_lim(buf, len, KHX_FT_BINARY, &lim, &r2), 0);
    assert_int_equal(r2.nmembers, 5);
    assert_true(tu_find_issue(&r2, KHX_WALK_MAX_FILES) >= 0);

    lim = tu_generous;
    lim.max_member_size = z_len - 1;
    struct tu_rec r3 = {0};
    assert_int_equal(walk_lim(buf, len, KHX_FT_BINARY, &lim, &r3), 0);
    assert_int_equal(r3.nmembers, 0);
    assert_true(tu_find_issue(&r3, KHX_WALK_MAX_FILESIZE) >= 0);

    lim = tu_generous;
    lim.max_total = 3 * z_len;
    struct tu_rec r4 = {0};
    assert_int_equal(walk_lim(buf, len, KHX_FT_BINARY, &lim, &r4), 0);
    assert_int_equal(r4.nmembers, 3);
    assert_true(tu_find_issue(&r4, KHX_WALK_MAX_SCANSIZE) >= 0);

    lim = tu_generous;
    lim.deadline_ms = 1;
    struct tu_rec r5 = {0};
    assert_int_equal(walk_lim(buf, len, KHX_FT_BINARY, &lim, &r5), 0);
    assert_true(tu_find_issue(&r5, KHX_WALK_MAX_TIME) >= 0);

    uint64_t total = 0;
    struct khx_walk_cb cb = tu_rec_cb(&r);
    assert_int_equal(khx_embedded_walk(NULL, 1, KHX_FT_BINARY, &tu_generous, &total, &cb),
                     KH_EINVAL);
    assert_int_equal(khx_embedded_walk(buf, len, KHX_FT_BINARY, NULL, &total, &cb), KH_EINVAL);
    free(buf);
    free(z);
}

/* ------------------------------------------------------------------------ */
/* ClamAV's embedded test files                                              */
/* ------------------------------------------------------------------------ */

/* Counts the members of the embedded objects whose SHA-256 starts with one
 * of the four payload prefixes of ClamAV's embedded .hsb signatures. */
struct payloads {
    int hits[4];
};

static int payload_member(void *ud, const char *name, const uint8_t *data, size_t len)
{
    struct payloads *p = ud;
    static const char *const want[4] = {"579de681", "b56f04ce", "1cce5c6d", "6d1c6cae"};
    (void)name;
    uint8_t h[32];
    char hex[65];
    assert_int_equal(khx_sha256(data, len, h), 0);
    khx_hex_encode(h, 32, hex);
    for (int i = 0; i < 4; i++)
        if (strncmp(hex, want[i], 8) == 0)
            p->hits[i]++;
    return 0;
}

static int walk_found_object(void *ud, const char *name, const uint8_t *data, size_t len)
{
    (void)name;
    enum khx_ftype t = khx_filetype(data, len);
    assert_true(khx_ftype_is_container(t));
    uint64_t total = 0;
    struct khx_walk_cb cb = {payload_member, NULL, ud};
    assert_int_equal(khx_container_walk(data, len, t, &tu_generous, &total, &cb), 0);
    return 0;
}

static void embedded_clamav_png_with_zips_and_cabs(void **state)
{
    (void)state;
    static const char *const files[] = {
        "clamav/files/embedded_testfiles/test.png.emb-zips",
        "clamav/files/embedded_testfiles/test.png.emb-cabs",
    };
    for (size_t f = 0; f < KHX_ARRAY_LEN(files); f++) {
        size_t len;
        uint8_t *data = tu_load_shared(files[f], &len);
        if (data == NULL)
            return;
        assert_false(khx_ftype_is_container(khx_filetype(data, len)));
        struct payloads p = {{0}};
        uint64_t total = 0;
        struct khx_walk_cb cb = {walk_found_object, NULL, &p};
        assert_int_equal(
            khx_embedded_walk(data, len, khx_filetype(data, len), &tu_generous, &total, &cb), 0);
        for (int i = 0; i < 4; i++)
            assert_int_equal(p.hits[i], 1);
        free(data);
    }
}

static void embedded_clamav_exe_with_exes(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = tu_load_shared("clamav/files/embedded_testfiles/clam.exe.emb-exes", &len);
    if (data == NULL)
        return;
    assert_int_equal(khx_filetype(data, len), KHX_FT_PE);
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, &r), 0);
    assert_int_equal(r.nmembers, 2);
    /* Each carries the string its .ldb signature looks for at 1552. */
    static const char *const marks[] = {"Lil EXE\n", "Smol EXE\n"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(khx_filetype(r.ptrs[i], r.lens[i]), KHX_FT_PE);
        assert_true(r.lens[i] > 1552 + strlen(marks[i]));
        assert_memory_equal(r.ptrs[i] + 1552, marks[i], strlen(marks[i]));
    }
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(embedded_pe_in_overlay_extent_from_sections),
        cmocka_unit_test(embedded_zips_appended_to_picture),
        cmocka_unit_test(embedded_not_reported_for_containers_or_offset_zero),
        cmocka_unit_test(embedded_signatures_without_headers_ignored),
        cmocka_unit_test(embedded_limits_and_candidate_cap),
        cmocka_unit_test(embedded_clamav_png_with_zips_and_cabs),
        cmocka_unit_test(embedded_clamav_exe_with_exes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
