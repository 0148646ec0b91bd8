/*
 * Engine integration: sources added to a builder, compiled to a .kdb image,
 * opened, and used to scan buffers. Each test proves one feature end to end
 * (loader -> compiled image -> scanner -> detection) with a positive and a
 * negative case.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "exe.h"
#include "khx.h"
#include "pegen.h"

struct diags {
    unsigned n;
    char last[512];
};

static void on_diag(void *ud, const char *source, unsigned line, const char *msg)
{
    struct diags *d = ud;
    d->n++;
    snprintf(d->last, sizeof(d->last), "%s:%u: %s", source, line, msg);
}

struct hits {
    unsigned n;
    char names[32][128];
    char inner[32][256];
    int severity[32];
};

static int on_hit(void *ud, const struct kh_detection *det)
{
    struct hits *h = ud;
    if (h->n < 32) {
        snprintf(h->names[h->n], sizeof(h->names[0]), "%s", det->name);
        snprintf(h->inner[h->n], sizeof(h->inner[0]), "%s", det->inner_path ? det->inner_path : "");
        h->severity[h->n] = det->severity;
    }
    h->n++;
    return 0;
}

static int has(const struct hits *h, const char *name)
{
    for (unsigned i = 0; i < h->n && i < 32; i++)
        if (strcmp(h->names[i], name) == 0)
            return 1;
    return 0;
}

/* Builds an engine from (name, text) pairs terminated by NULL. */
static kh_engine *engine_from(struct diags *d, int strict, ...)
{
    struct kh_build_opts o = {.strict = strict, .diag = on_diag, .diag_ud = d};
    kh_builder *b = NULL;
    assert_int_equal(kh_builder_new(&o, &b), KH_OK);
    va_list ap;
    va_start(ap, strict);
    const char *name;
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *text = va_arg(ap, const char *);
        kh_builder_add_mem(b, name, text, strlen(text));
    }
    va_end(ap);
    void *img = NULL;
    size_t len = 0;
    assert_int_equal(kh_builder_compile(b, &img, &len), KH_OK);
    kh_builder_free(b);
    kh_engine *e = NULL;
    char err[256] = "";
    int r = kh_engine_open_image(img, len, &e, err, sizeof(err));
    if (r != 0)
        fail_msg("open image: %s", err);
    return e;
}

static struct hits scan(kh_engine *e, const void *data, size_t len, int allmatch)
{
    struct kh_scan_opts o;
    kh_scan_opts_default(&o);
    o.allmatch = allmatch;
    kh_scanner *s = NULL;
    assert_int_equal(kh_scanner_new(e, &o, &s), KH_OK);
    struct hits h;
    memset(&h, 0, sizeof(h));
    struct kh_scan_result res;
    assert_int_equal(kh_scan_mem(s, data, len, "test", on_hit, &h, &res), KH_OK);
    kh_scanner_free(s);
    return h;
}

static const char eicar[] = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

static void hdb_md5_sized_and_any(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "t.hdb",
                               "44d88612fea8a8f36de82e1278abb02f:68:Eicar.Sized\n"
                               "44d88612fea8a8f36de82e1278abb02f:*:Eicar.Any:73\n",
                               NULL);
    assert_int_equal(d.n, 0);
    struct hits h = scan(e, eicar, 68, 1);
    assert_true(has(&h, "Eicar.Sized"));
    assert_true(has(&h, "Eicar.Any"));
    h = scan(e, "clean data", 10, 1);
    assert_int_equal(h.n, 0);
    kh_engine_free(e);
}

static void hsb_sha256_wrong_size_misses(void **state)
{
    (void)state;
    struct diags d = {0};
    uint8_t sha[32];
    char hex[65], text[200];
    khx_sha256(eicar, 68, sha);
    khx_hex_encode(sha, 32, hex);
    snprintf(text, sizeof(text), "%s:69:Wrong.Size\n%s:68:Right.Size\n", hex, hex);
    kh_engine *e = engine_from(&d, 0, "t.hsb", text, NULL);
    struct hits h = scan(e, eicar, 68, 1);
    assert_true(has(&h, "Right.Size"));
    assert_false(has(&h, "Wrong.Size"));
    kh_engine_free(e);
}

static void hdb_star_without_flevel_is_error(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e =
        engine_from(&d, 0, "t.hdb", "44d88612fea8a8f36de82e1278abb02f:*:Eicar.Any\n", NULL);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.last, "t.hdb:1:"));
    struct hits h = scan(e, eicar, 68, 1);
    assert_int_equal(h.n, 0);
    kh_engine_free(e);
}

static void bad_lines_reported_and_skipped(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "t.hdb",
                               "zz:68:Bad.Hex\n"
                               "44d88612fea8a8f36de82e1278abb02f:68\n"
                               "44d88612fea8a8f36de82e1278abb02f:68:Good\n",
                               NULL);
    assert_int_equal(d.n, 2);
    struct hits h = scan(e, eicar, 68, 0);
    assert_true(has(&h, "Good"));
    kh_engine_free(e);
}

static void strict_mode_fails_the_load(void **state)
{
    (void)state;
    struct kh_build_opts o = {.strict = 1};
    kh_builder *b = NULL;
    assert_int_equal(kh_builder_new(&o, &b), KH_OK);
    const char *text = "nonsense\n";
    assert_int_equal(kh_builder_add_mem(b, "x.ndb", text, strlen(text)), KH_ESTRICT);
    kh_builder_free(b);
}

static void flevel_outside_range_is_skipped(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "t.ndb",
                               "Future:0:*:4549434152:999\n"
                               "Past:0:*:4549434152:1:5\n"
                               "Now:0:*:4549434152\n",
                               NULL);
    assert_int_equal(d.n, 0);
    struct kh_db_info info;
    kh_engine_info(e, &info);
    assert_int_equal(info.counts[KH_SIG_BODY], 1);
    assert_int_equal(info.sources[0].skipped, 2);
    struct hits h = scan(e, eicar, 68, 1);
    assert_true(has(&h, "Now"));
    assert_int_equal(h.n, 1);
    kh_engine_free(e);
}

static void ndb_body_with_wildcards(void **state)
{
    (void)state;
    struct diags d = {0};
    /* "EICAR" ?? "STANDARD" with a jump, anywhere; and anchored at EOF-2. */
    kh_engine *e = engine_from(&d, 0, "t.ndb",
                               "Body.Jump:0:*:4549434152{1-3}5354414e44415244\n"
                               "Body.Eof:0:EOF-2:482a\n"
                               "Body.Abs.Miss:0:5:4549434152\n",
                               NULL);
    assert_int_equal(d.n, 0);
    struct hits h = scan(e, eicar, 68, 1);
    assert_true(has(&h, "Body.Jump"));
    assert_true(has(&h, "Body.Eof"));
    assert_false(has(&h, "Body.Abs.Miss"));
    kh_engine_free(e);
}

static void ndb_target_pe_needs_pe(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "t.ndb", "Pe.Only:1:*:4549434152\n", NULL);
    struct hits h = scan(e, eicar, 68, 1);
    assert_int_equal(h.n, 0);
    kh_engine_free(e);
}

static void ndb_ascii_target_matches_normalised_text(void **state)
{
    (void)state;
    struct diags d = {0};
    /* "hello world" lowercase, with the input in upper case and extra spaces. */
    kh_engine *e = engine_from(&d, 0, "t.ndb", "Ascii.Hello:7:*:68656c6c6f20776f726c64\n", NULL);
    const char *text = "Some text: HELLO    WORLD and more text.\n";
    struct hits h = scan(e, text, strlen(text), 1);
    assert_true(has(&h, "Ascii.Hello"));
    const uint8_t bin[] = {0, 1, 2, 'H', 'E', 'L', 'L', 'O', ' ', 'W', 'O', 'R', 'L', 'D', 0xff};
    h = scan(e, bin, sizeof(bin), 1);
    assert_int_equal(h.n, 0);
    kh_engine_free(e);
}

static void ldb_expression_and_counts(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "t.ldb",
                               "Ldb.And;Engine:51-255,Target:0;0&1;4549434152;482b\n"
                               "Ldb.Count;Engine:51-255,Target:0;0>1;5354\n"
                               "Ldb.Count.Miss;Engine:51-255,Target:0;0>2;5354\n"
                               "Ldb.Miss;Engine:51-255,Target:0;0&1;4549434152;7a7a7a7a\n",
                               NULL);
    struct hits h = scan(e, eicar, 68, 1);
    assert_true(has(&h, "Ldb.And"));
    if (d.n)
        fail_msg("%s", d.last);
    assert_true(has(&h, "Ldb.Count")); /* "ST" occurs twice */
    assert_false(has(&h, "Ldb.Count.Miss"));
    assert_false(has(&h, "Ldb.Miss"));
    kh_engine_free(e);
}

static void ldb_negation_fires_without_any_match(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e =
        engine_from(&d, 0, "t.ldb", "Ldb.NoEicar;Engine:51-255,Target:0;0=0;4549434152\n", NULL);
    if (d.n)
        fail_msg("%s", d.last);
    struct hits h = scan(e, "plain clean text", 16, 1);
    assert_true(has(&h, "Ldb.NoEicar"));
    h = scan(e, eicar, 68, 1);
    assert_false(has(&h, "Ldb.NoEicar"));
    kh_engine_free(e);
}

static void ldb_pcre_subsignature(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e =
        engine_from(&d, 0, "t.ldb",
                    "Ldb.Pcre;Engine:81-255,Target:0;0&1;4549434152;0/TEST-FILE!\\$H/\n"
                    "Ldb.Pcre.Miss;Engine:81-255,Target:0;0&1;4549434152;0/NOPE[0-9]+/\n",
                    NULL);
    if (d.n)
        fail_msg("%s", d.last);
    struct hits h = scan(e, eicar, 68, 1);
    assert_true(has(&h, "Ldb.Pcre"));
    assert_false(has(&h, "Ldb.Pcre.Miss"));
    kh_engine_free(e);
}

static void fp_allowlist_suppresses(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "t.ndb", "Body:0:*:4549434152\n", "t.fp",
                               "44d88612fea8a8f36de82e1278abb02f:68:Allowed.File\n", NULL);
    struct hits h = scan(e, eicar, 68, 1);
    assert_int_equal(h.n, 0);
    kh_engine_free(e);
}

static void ign2_drops_signature(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "a.ign2", "Body.Ignored\n", "t.ndb",
                               "Body.Ignored:0:*:4549434152\nBody.Kept:0:*:4549434152\n", NULL);
    struct kh_db_info info;
    kh_engine_info(e, &info);
    assert_int_equal(info.ignored, 1);
    struct hits h = scan(e, eicar, 68, 1);
    assert_true(has(&h, "Body.Kept"));
    assert_false(has(&h, "Body.Ignored"));
    kh_engine_free(e);
}

static void yara_rule_matches_with_prefix(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e =
        engine_from(&d, 0, "r.yar",
                    "rule Eicar_Yara { strings: $a = \"EICAR-STANDARD\" condition: $a }\n"
                    "rule Never { strings: $a = \"zzzzzzzz\" condition: $a }\n",
                    NULL);
    assert_int_equal(d.n, 0);
    struct kh_db_info info;
    kh_engine_info(e, &info);
    assert_int_equal(info.counts[KH_SIG_YARA], 2);
    struct hits h = scan(e, eicar, 68, 1);
    assert_true(has(&h, "YARA.Eicar_Yara"));
    assert_false(has(&h, "YARA.Never"));
    kh_engine_free(e);
}

static void yara_syntax_error_reported_with_line(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "bad.yar", "rule Ok { condition: true }\nrule { oops\n",
                               "good.yar", "rule Good { condition: true }\n", NULL);
    assert_true(d.n >= 1);
    assert_non_null(strstr(d.last, "bad.yar:2"));
    struct hits h = scan(e, "x", 1, 1);
    assert_true(has(&h, "YARA.Good"));
    assert_false(has(&h, "YARA.Ok"));
    kh_engine_free(e);
}

static void hash_list_with_comments(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e =
        engine_from(&d, 0, "feed.sha256",
                    "# a feed\n"
                    "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f;Eicar "
                    "test file\n"
                    "not-a-hash\n",
                    NULL);
    assert_int_equal(d.n, 1);
    struct hits h = scan(e, eicar, 68, 1);
    assert_true(has(&h, "Eicar_test_file"));
    kh_engine_free(e);
}

static void kdb_file_roundtrip_and_tamper(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    char path[512];
    snprintf(path, sizeof(path), "%s/t.kdb", dir);
    kh_builder *b = NULL;
    assert_int_equal(kh_builder_new(NULL, &b), KH_OK);
    const char *ndb = "Body:0:*:4549434152\n";
    assert_int_equal(kh_builder_add_mem(b, "t.ndb", ndb, strlen(ndb)), KH_OK);
    assert_int_equal(kh_builder_write(b, path), KH_OK);
    kh_builder_free(b);

    kh_engine *e = NULL;
    char err[256];
    assert_int_equal(kh_engine_open(path, &e, err, sizeof(err)), KH_OK);
    struct hits h = scan(e, eicar, 68, 0);
    assert_true(has(&h, "Body"));
    kh_engine_free(e);

    /* Opened once, the file is stamped as verified; a change in place must
     * still be caught on the next open (the stamp names the mtime). */
    assert_int_equal(kh_engine_open(path, &e, err, sizeof(err)), KH_OK);
    kh_engine_free(e);
    {
        FILE *f = fopen(path, "r+b");
        assert_non_null(f);
        fseek(f, -100, SEEK_END);
        int ch = fgetc(f);
        fseek(f, -100, SEEK_END);
        fputc(ch ^ 0x40, f);
        fclose(f);
        assert_int_equal(kh_engine_open(path, &e, err, sizeof(err)), KH_ESIGNATURE);
        f = fopen(path, "r+b");
        fseek(f, -100, SEEK_END);
        fputc(ch, f);
        fclose(f);
    }

    /* Flip one byte in the payload: the checksum must catch it. */
    uint8_t *data;
    size_t len;
    assert_int_equal(khx_read_file(path, 1 << 30, &data, &len), KH_OK);
    data[len - 100] ^= 0x40;
    char *bad = tu_write(dir, "bad.kdb", data, len);
    assert_int_equal(kh_engine_open(bad, &e, err, sizeof(err)), KH_ESIGNATURE);
    assert_non_null(strstr(err, "checksum"));
    /* Truncated. */
    char *cut = tu_write(dir, "cut.kdb", data, len / 2);
    assert_int_equal(kh_engine_open(cut, &e, err, sizeof(err)), KH_EFORMAT);
    /* Not a database at all. */
    char *txt = tu_write(dir, "t.txt", ndb, strlen(ndb));
    assert_int_not_equal(kh_engine_open(txt, &e, err, sizeof(err)), KH_OK);
    free(data);
    free(bad);
    free(cut);
    free(txt);
    tu_rmtree(dir);
}

static void first_match_stops_without_allmatch(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e =
        engine_from(&d, 0, "t.ndb", "One:0:*:4549434152\nTwo:0:*:5354414e44415244\n", NULL);
    struct hits h = scan(e, eicar, 68, 0);
    assert_int_equal(h.n, 1);
    h = scan(e, eicar, 68, 1);
    assert_int_equal(h.n, 2);
    kh_engine_free(e);
}

static void pe_section_and_import_hashes(void **state)
{
    (void)state;
    /* A generated PE with one section and two imports. */
    static const char code[] = "\x55\x89\xe5\x31\xc0\x5d\xc3 KHIEN-TEST-SECTION";
    struct pegen_section sec = {".text", code, sizeof(code), 0, PEGEN_SCN_CODE};
    struct pegen_func funcs[] = {{"ExitProcess", 0, 0}};
    struct pegen_import imp = {"KERNEL32.dll", funcs, 1};
    struct pegen_pe desc;
    memset(&desc, 0, sizeof(desc));
    desc.sections = &sec;
    desc.nsections = 1;
    desc.entry_section = 0;
    desc.entry = 0;
    desc.imports = &imp;
    desc.nimports = 1;
    uint8_t *pe = NULL;
    size_t pelen = 0;
    struct pegen_layout layout;
    assert_int_equal(pegen_pe_build(&desc, &pe, &pelen, &layout), 0);

    struct khx_exe x;
    memset(&x, 0, sizeof(x));
    assert_int_equal(khx_pe_parse(pe, pelen, &x), 0);
    assert_true(x.nsections >= 1);
    assert_non_null(x.imphash_str);
    uint8_t md[16];
    char sect_hex[33], imp_hex[33], text[512];
    khx_md5(pe + x.sections[0].raw_off, x.sections[0].raw_size, md);
    khx_hex_encode(md, 16, sect_hex);
    khx_md5(x.imphash_str, x.imphash_len, md);
    khx_hex_encode(md, 16, imp_hex);
    snprintf(text, sizeof(text), "%llu:%s:Sect.Hash\n*:%s:Sect.Any:73\n",
             (unsigned long long)x.sections[0].raw_size, sect_hex, sect_hex);
    char imptext[256];
    snprintf(imptext, sizeof(imptext), "%s:%zu:Imp.Hash\n", imp_hex, x.imphash_len);
    khx_exe_clear(&x);

    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "t.mdb", text, "t.imp", imptext, "p.ndb",
                               "Pe.Body:1:EP+0:5589e5\nPe.Body.Wrong:1:EP+1:5589e5\n", NULL);
    if (d.n)
        fail_msg("%s", d.last);
    struct hits h = scan(e, pe, pelen, 1);
    assert_true(has(&h, "Sect.Hash"));
    assert_true(has(&h, "Sect.Any"));
    assert_true(has(&h, "Imp.Hash"));
    assert_true(has(&h, "Pe.Body"));
    assert_false(has(&h, "Pe.Body.Wrong"));
    h = scan(e, eicar, 68, 1);
    assert_int_equal(h.n, 0);
    kh_engine_free(e);
    free(pe);
}

/* A large binary full of bytes that could start an embedded object ("MZ",
 * "PK") must not be reported as "not fully scanned". */
static void embedded_search_no_notice_on_dense_magic(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "t.ndb", "Body:0:*:4549434152\n", NULL);
    size_t n = 4u << 20;
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = "MZPK7R"[i % 6];
    struct hits h = scan(e, buf, n, 1);
    assert_int_equal(h.n, 0);
    free(buf);
    kh_engine_free(e);
}

/* Wraps data in `levels` gzip layers; the result is malloc'd. */
static uint8_t *gzip_layers(const void *data, size_t len, int levels, size_t *out_len)
{
    uint8_t *cur = malloc(len);
    memcpy(cur, data, len);
    size_t cur_len = len;
    for (int i = 0; i < levels; i++) {
        z_stream z;
        memset(&z, 0, sizeof(z));
        assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
        size_t cap = deflateBound(&z, cur_len) + 64;
        uint8_t *next = malloc(cap);
        z.next_in = cur;
        z.avail_in = (uInt)cur_len;
        z.next_out = next;
        z.avail_out = (uInt)cap;
        assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
        size_t n = cap - z.avail_out;
        deflateEnd(&z);
        free(cur);
        cur = next;
        cur_len = n;
    }
    *out_len = cur_len;
    return cur;
}

/* Wraps data in `levels` tar archives, each holding one member "m". */
static uint8_t *tar_layers(const void *data, size_t len, int levels, size_t *out_len)
{
    uint8_t *cur = malloc(len);
    memcpy(cur, data, len);
    size_t cur_len = len;
    for (int i = 0; i < levels; i++) {
        size_t padded = (cur_len + 511) / 512 * 512;
        size_t n = 512 + padded + 1024;
        uint8_t *t = calloc(1, n);
        memcpy(t, "m", 1);
        memcpy(t + 100, "0000644", 7);
        memcpy(t + 108, "0000000", 7);
        memcpy(t + 116, "0000000", 7);
        snprintf((char *)t + 124, 12, "%011o", (unsigned)cur_len);
        memcpy(t + 136, "00000000000", 11);
        t[156] = '0';
        memcpy(t + 257, "ustar\00000", 8);
        memset(t + 148, ' ', 8);
        unsigned sum = 0;
        for (int k = 0; k < 512; k++)
            sum += t[k];
        snprintf((char *)t + 148, 8, "%06o", sum);
        memcpy(t + 512, cur, cur_len);
        free(cur);
        cur = t;
        cur_len = n;
    }
    *out_len = cur_len;
    return cur;
}

static struct hits scan_with(kh_engine *e, const void *data, size_t len,
                             const struct kh_limits *lim)
{
    struct kh_scan_opts o;
    kh_scan_opts_default(&o);
    o.allmatch = 1;
    o.limits = *lim;
    kh_scanner *s = NULL;
    assert_int_equal(kh_scanner_new(e, &o, &s), KH_OK);
    struct hits h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(kh_scan_mem(s, data, len, "t.gz", on_hit, &h, NULL), KH_OK);
    kh_scanner_free(s);
    return h;
}

/* A binary that merely contains an archive's magic (libarchive itself holds
 * "Rar!\x1a\x07") must not be reported as a broken archive. */
static void embedded_false_magic_is_not_broken(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "t.ndb", "Body:0:*:4549434152\n", NULL);
    uint8_t buf[4096];
    memset(buf, 0x90, sizeof(buf));
    memcpy(buf + 1000, "Rar!\x1a\x07\x00garbage follows", 22);
    memcpy(buf + 2000, "PK\x03\x04\x14\x00\x00\x00\x08\x00", 10);
    struct hits h = scan(e, buf, sizeof(buf), 1);
    assert_int_equal(h.n, 0);
    kh_engine_free(e);
}

static void limit_max_recursion_reported(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "t.ndb", "Body:0:*:4549434152\n", NULL);
    /* gzip(tar(gzip(tar(...)))): five container levels, none showing the
     * plain bytes to the layer above. */
    size_t n = 68;
    uint8_t *tar = malloc(68);
    memcpy(tar, eicar, 68);
    for (int i = 0; i < 3; i++) {
        size_t tn, gn;
        uint8_t *t = tar_layers(tar, n, 1, &tn);
        uint8_t *g = gzip_layers(t, tn, 1, &gn);
        free(t);
        free(tar);
        tar = g;
        n = gn;
    }
    struct kh_limits lim;
    kh_limits_default(&lim);
    struct hits h = scan_with(e, tar, n, &lim);
    assert_true(has(&h, "Body"));
    lim.max_recursion = 3;
    h = scan_with(e, tar, n, &lim);
    assert_false(has(&h, "Body"));
    assert_true(has(&h, "Heuristics.Limits.Exceeded.MaxRecursion"));
    assert_int_equal(h.severity[0], KH_SEV_NOTICE);
    free(tar);
    kh_engine_free(e);
}

static void limit_max_filesize_top_and_member(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "t.ndb", "Body:0:*:4549434152\n", NULL);
    struct kh_limits lim;
    kh_limits_default(&lim);
    lim.max_filesize = 60; /* EICAR is 68 bytes */
    struct hits h = scan_with(e, eicar, 68, &lim);
    assert_false(has(&h, "Body"));
    assert_true(has(&h, "Heuristics.Limits.Exceeded.MaxFileSize"));
    /* A member over the limit inside a small container. */
    uint8_t big[4096];
    memset(big, 'x', sizeof(big));
    memcpy(big + 100, eicar, 68);
    size_t n;
    uint8_t *gz = gzip_layers(big, sizeof(big), 1, &n);
    lim.max_filesize = 1024;
    h = scan_with(e, gz, n, &lim);
    assert_false(has(&h, "Body"));
    assert_true(has(&h, "Heuristics.Limits.Exceeded.MaxFileSize"));
    free(gz);
    kh_engine_free(e);
}

static void limit_max_scansize_and_ratio(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "t.ndb", "Body:0:*:4549434152\n", NULL);
    size_t big_len = 8u << 20;
    uint8_t *big = calloc(1, big_len);
    memcpy(big + big_len - 100, eicar, 68);
    size_t n;
    uint8_t *gz = gzip_layers(big, big_len, 1, &n);
    struct kh_limits lim;
    kh_limits_default(&lim);
    struct hits h = scan_with(e, gz, n, &lim); /* 8 MiB of zeros: ratio ~1000 */
    assert_true(has(&h, "Heuristics.Limits.Exceeded.MaxCompressionRatio"));
    lim.max_ratio = 0; /* no ratio limit */
    lim.max_scansize = 1u << 20;
    h = scan_with(e, gz, n, &lim);
    assert_false(has(&h, "Body"));
    assert_true(has(&h, "Heuristics.Limits.Exceeded.MaxScanSize"));
    lim.max_scansize = 64u << 20;
    h = scan_with(e, gz, n, &lim);
    assert_true(has(&h, "Body"));
    free(gz);
    free(big);
    kh_engine_free(e);
}

static int cancel_on_first(void *ud, const struct kh_detection *d)
{
    (void)d;
    kh_scanner_cancel(ud);
    return 0;
}

static void cancel_stops_the_scan(void **state)
{
    (void)state;
    struct diags d = {0};
    kh_engine *e = engine_from(&d, 0, "t.ndb", "Body:0:*:4549434152\n", NULL);
    struct kh_scan_opts o;
    kh_scan_opts_default(&o);
    o.allmatch = 1;
    kh_scanner *s = NULL;
    assert_int_equal(kh_scanner_new(e, &o, &s), KH_OK);
    assert_int_equal(kh_scan_mem(s, eicar, 68, "x", cancel_on_first, s, NULL), KH_EABORTED);
    assert_int_equal(kh_scan_mem(s, eicar, 68, "x", NULL, NULL, NULL), KH_EABORTED);
    kh_scanner_reset_cancel(s);
    struct kh_scan_result res;
    assert_int_equal(kh_scan_mem(s, eicar, 68, "x", NULL, NULL, &res), KH_OK);
    assert_int_equal(res.detections, 1);
    kh_scanner_free(s);
    kh_engine_free(e);
}

static void portable_database_scans_the_same(void **state)
{
    (void)state;
    struct kh_build_opts o = {.portable = 1};
    kh_builder *b = NULL;
    assert_int_equal(kh_builder_new(&o, &b), KH_OK);
    const char *ndb = "Body.Jump:0:*:4549434152{1-3}5354414e44415244\n";
    assert_int_equal(kh_builder_add_mem(b, "t.ndb", ndb, strlen(ndb)), KH_OK);
    void *img = NULL;
    size_t len = 0;
    assert_int_equal(kh_builder_compile(b, &img, &len), KH_OK);
    kh_builder_free(b);
    kh_engine *e = NULL;
    assert_int_equal(kh_engine_open_image(img, len, &e, NULL, 0), KH_OK);
    struct hits h = scan(e, eicar, 68, 1);
    assert_true(has(&h, "Body.Jump"));
    kh_engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hdb_md5_sized_and_any),
        cmocka_unit_test(hsb_sha256_wrong_size_misses),
        cmocka_unit_test(hdb_star_without_flevel_is_error),
        cmocka_unit_test(bad_lines_reported_and_skipped),
        cmocka_unit_test(strict_mode_fails_the_load),
        cmocka_unit_test(flevel_outside_range_is_skipped),
        cmocka_unit_test(ndb_body_with_wildcards),
        cmocka_unit_test(ndb_target_pe_needs_pe),
        cmocka_unit_test(ndb_ascii_target_matches_normalised_text),
        cmocka_unit_test(ldb_expression_and_counts),
        cmocka_unit_test(ldb_negation_fires_without_any_match),
        cmocka_unit_test(ldb_pcre_subsignature),
        cmocka_unit_test(fp_allowlist_suppresses),
        cmocka_unit_test(ign2_drops_signature),
        cmocka_unit_test(yara_rule_matches_with_prefix),
        cmocka_unit_test(yara_syntax_error_reported_with_line),
        cmocka_unit_test(hash_list_with_comments),
        cmocka_unit_test(kdb_file_roundtrip_and_tamper),
        cmocka_unit_test(first_match_stops_without_allmatch),
        cmocka_unit_test(pe_section_and_import_hashes),
        cmocka_unit_test(embedded_search_no_notice_on_dense_magic),
        cmocka_unit_test(embedded_false_magic_is_not_broken),
        cmocka_unit_test(limit_max_recursion_reported),
        cmocka_unit_test(limit_max_filesize_top_and_member),
        cmocka_unit_test(limit_max_scansize_and_ratio),
        cmocka_unit_test(cancel_stops_the_scan),
        cmocka_unit_test(portable_database_scans_the_same),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
