/*
 * Tests for ClamAV containers (lib/engine/cvd.c); patches are in
 * test_cdiff.c.
 *
 * ClamAV's private keys are not ours, so apart from the real signed test-6.cvd
 * in the shared data (opened with the built-in keys), every container here is
 * built and signed by the test itself with freshly generated RSA keys: the
 * helpers in cvd_testlib.h are the inverses of versig (textbook RSA over the
 * MD5) and versig2 (PSS with SHA-256 and a 32-byte salt). That lets each
 * tampering case change exactly one thing and check the message it produces.
 */
#include "cvd_testlib.h"

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
    uint8_t *buf = read_test6_or_skip(&len);
    if (buf == NULL)
        return;
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
    uint8_t *buf = read_test6_or_skip(&len);
    if (buf == NULL)
        return;
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
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
