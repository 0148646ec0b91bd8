/*
 * Tests for file typing and container walking (lib/engine/filetype.c,
 * container.c); the normalisers have test_normalize.c.
 *
 * Archives are built when the tests start, with the command-line tools a
 * developer machine has (zip, 7z, tar, gzip, bzip2, xz, zstd, lzma, gcab,
 * genisoimage, cpio, ar). A missing tool skips the cases that need it with a
 * visible "SKIP:" line. RAR and LHA have no archiver in Debian main: RAR 5 is
 * covered by an archive assembled here byte by byte, RAR 4 and LHA by
 * ClamAV's test files in ../shared/data (skipped when that folder is absent).
 */
#include "testutil.h"
#include "walkutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "container.h"
#include "khx.h"

static char fixdir[512];

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                  */
/* ------------------------------------------------------------------------ */

static int have_tool(const char *tool)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
    return system(cmd) == 0;
}

/* Runs a shell command inside the fixture folder; returns its exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char body[2048], cmd[2800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "cd '%s' && ( %s ) >/dev/null 2>&1", fixdir, body);
    return system(cmd);
}

static char *fixpath(const char *name)
{
    static char path[1024];
    snprintf(path, sizeof(path), "%s/%s", fixdir, name);
    return path;
}

static int fixture_exists(const char *name)
{
    FILE *f = fopen(fixpath(name), "rb");
    if (f == NULL)
        return 0;
    fclose(f);
    return 1;
}

/* Loads a fixture; NULL (and a SKIP line) when it was not built. */
static uint8_t *load(const char *name, size_t *len)
{
    uint8_t *data = NULL;
    if (!fixture_exists(name) || khx_read_file(fixpath(name), 64u << 20, &data, len) != 0) {
        printf("SKIP: fixture %s was not built (tool missing)\n", name);
        return NULL;
    }
    return data;
}

static void write_fixture(const char *name, const void *data, size_t len)
{
    free(tu_write(fixdir, name, data, len));
}

static int setup_fixtures(void **state)
{
    (void)state;
    snprintf(fixdir, sizeof(fixdir), "%s", tu_mkdtemp());
    sh("mkdir -p src/sub many bomb");
    const char *hello = "Hello from Khien " TU_MARKER "\n";
    write_fixture("src/hello.txt", hello, strlen(hello));
    write_fixture("src/sub/inner.txt", "inner file\n", 11);
    sh("ln -s hello.txt src/link");

    /* Pseudo-random bytes: they do not compress, so the archives that hold
     * them have ratio ~1 and a known, large member. */
    size_t big_len = 100000;
    uint8_t *big = malloc(big_len);
    assert_non_null(big);
    uint32_t x = 12345;
    for (size_t i = 0; i < big_len; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = (uint8_t)(x >> 16);
    }
    write_fixture("src/big.bin", big, big_len);
    free(big);

    uint8_t *zeros = calloc(1, 8u << 20);
    assert_non_null(zeros);
    write_fixture("bomb/zeros.bin", zeros, 8u << 20);
    free(zeros);

    for (int i = 0; i < 20; i++) {
        char name[32], body[32];
        snprintf(name, sizeof(name), "many/f%02d.txt", i);
        snprintf(body, sizeof(body), "file %d\n", i);
        write_fixture(name, body, strlen(body));
    }

    if (have_tool("zip")) {
        sh("cd src && zip -qry ../t.zip hello.txt sub link");
        sh("cd src && zip -q -P secret ../enc.zip hello.txt");
        sh("zip -qj bomb.zip bomb/zeros.bin");
        sh("cd many && zip -q ../many.zip *.txt");
        sh("zip -qj big.zip src/big.bin src/hello.txt");
        sh("zip -qj trunc_src.zip src/big.bin src/hello.txt");
    }
    if (have_tool("7z")) {
        sh("cd src && 7z a -bd -y ../t.7z hello.txt sub link");
        sh("cd src && 7z a -bd -y -psecret ../enc.7z hello.txt");
        sh("cd src && 7z a -bd -y -psecret -mhe=on ../enchdr.7z hello.txt");
    }
    if (have_tool("tar")) {
        sh("cd src && tar cf ../t.tar hello.txt sub link");
        if (have_tool("gzip"))
            sh("gzip -c t.tar > t.tar.gz");
    }
    if (have_tool("gzip")) {
        sh("gzip -c src/hello.txt > hello.gz");
        sh("gzip -c bomb/zeros.bin > bomb.gz");
        sh("gzip -c src/big.bin > big.gz");
        sh("head -c 65536 /dev/zero | gzip -c > small_zeros.gz");
    }
    if (have_tool("bzip2"))
        sh("bzip2 -c src/hello.txt > hello.bz2");
    if (have_tool("xz"))
        sh("xz -c src/hello.txt > hello.xz");
    if (have_tool("lzma"))
        sh("lzma -c src/hello.txt > hello.lzma");
    if (have_tool("zstd"))
        sh("zstd -q -c src/hello.txt > hello.zst");
    if (have_tool("gcab"))
        sh("cd src && gcab -c ../t.cab hello.txt sub/inner.txt");
    if (have_tool("genisoimage"))
        sh("genisoimage -quiet -R -J -o t.iso src");
    if (have_tool("cpio")) {
        sh("cd src && printf 'hello.txt\\nsub\\nsub/inner.txt\\nlink\\n' | cpio -o -H newc "
           "--quiet > ../t.newc.cpio");
        sh("cd src && printf 'hello.txt\\n' | cpio -o -H odc --quiet > ../t.odc.cpio");
        sh("cd src && printf 'hello.txt\\n' | cpio -o -H bin --quiet > ../t.bin.cpio");
    }
    if (have_tool("ar"))
        sh("cd src && ar rc ../t.a hello.txt big.bin");
    if (have_tool("zip") && fixture_exists("t.tar.gz"))
        sh("zip -qj nested.zip t.tar.gz");
    /* A split zip: big.bin fills the first 64 KiB part and ends in the
     * last one, where hello.txt's local header and the directory are. */
    if (have_tool("zip"))
        sh("zip -qj -s 64k split.zip src/big.bin src/hello.txt");
    return 0;
}

static int teardown_fixtures(void **state)
{
    (void)state;
    tu_rmtree(fixdir);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Walk recording                                                            */
/* ------------------------------------------------------------------------ */

/* Walks `buf` as type t with `lim`, recording into r. Returns the walk's result. */
static int walk(const uint8_t *buf, size_t len, enum khx_ftype t, const struct khx_walk_limits *lim,
                struct tu_rec *r)
{
    static uint64_t total;
    total = 0;
    r->lim = lim;
    r->total = &total;
    struct khx_walk_cb cb = tu_rec_cb(r);
    return khx_container_walk(buf, len, t, lim, &total, &cb);
}

/* Loads a fixture, checks its detected type, walks it and checks that the
 * member holding the marker is there under `marker_name`, and that no
 * other member than those in `names` (NULL-terminated) came out. */
static void check_archive(const char *fixture, enum khx_ftype want, const char *marker_name,
                          const char *const *names)
{
    size_t len;
    uint8_t *data = load(fixture, &len);
    if (data == NULL)
        return;
    assert_int_equal(khx_filetype(data, len), want);
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, want, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nissues, 0);
    int i = tu_find_member(&r, marker_name);
    assert_true(i >= 0);
    assert_true(r.marker[i]);
    int n = 0;
    for (; names[n] != NULL; n++)
        assert_true(tu_find_member(&r, names[n]) >= 0);
    assert_int_equal(r.nmembers, n);
    free(data);
}

/* ------------------------------------------------------------------------ */
/* Walking each format                                                       */
/* ------------------------------------------------------------------------ */

static void walk_zip_members_skip_dirs_and_symlinks(void **state)
{
    (void)state;
    static const char *const names[] = {"hello.txt", "sub/inner.txt", NULL};
    check_archive("t.zip", KHX_FT_ZIP, "hello.txt", names);
}

static void walk_7z_members(void **state)
{
    (void)state;
    static const char *const names[] = {"hello.txt", "sub/inner.txt", NULL};
    check_archive("t.7z", KHX_FT_7Z, "hello.txt", names);
}

static void walk_tar_members(void **state)
{
    (void)state;
    static const char *const names[] = {"hello.txt", "sub/inner.txt", NULL};
    check_archive("t.tar", KHX_FT_TAR, "hello.txt", names);
}

static void walk_single_streams_give_one_unnamed_member(void **state)
{
    (void)state;
    static const char *const names[] = {"", NULL};
    struct {
        const char *file;
        enum khx_ftype t;
    } streams[] = {
        {"hello.gz", KHX_FT_GZ},    {"hello.bz2", KHX_FT_BZ2},   {"hello.xz", KHX_FT_XZ},
        {"hello.zst", KHX_FT_ZSTD}, {"hello.lzma", KHX_FT_LZMA},
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(streams); i++)
        check_archive(streams[i].file, streams[i].t, "", names);
}

static void walk_cab_members(void **state)
{
    (void)state;
    static const char *const names[] = {"hello.txt", "sub/inner.txt", NULL};
    check_archive("t.cab", KHX_FT_CAB, "hello.txt", names);
}

static void walk_iso_members(void **state)
{
    (void)state;
    static const char *const names[] = {"hello.txt", "big.bin", "sub/inner.txt", NULL};
    check_archive("t.iso", KHX_FT_ISO, "hello.txt", names);
}

static void walk_cpio_variants(void **state)
{
    (void)state;
    static const char *const newc[] = {"hello.txt", "sub/inner.txt", NULL};
    static const char *const one[] = {"hello.txt", NULL};
    check_archive("t.newc.cpio", KHX_FT_CPIO, "hello.txt", newc);
    check_archive("t.odc.cpio", KHX_FT_CPIO, "hello.txt", one);
    check_archive("t.bin.cpio", KHX_FT_CPIO, "hello.txt", one);
}

static void walk_ar_members(void **state)
{
    (void)state;
    static const char *const names[] = {"hello.txt", "big.bin", NULL};
    check_archive("t.a", KHX_FT_AR, "hello.txt", names);
}

static void walk_nested_zip_gzip_tar(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("nested.zip", &len);
    if (data == NULL)
        return;
    struct tu_rec r = {.recurse = 1};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nissues, 0);
    /* zip -> t.tar.gz -> "" (the tar) -> hello.txt */
    assert_true(tu_find_member(&r, "t.tar.gz") >= 0);
    assert_true(tu_find_member(&r, "t.tar.gz>") >= 0);
    int i = tu_find_member(&r, "t.tar.gz>>hello.txt");
    assert_true(i >= 0);
    assert_true(r.marker[i]);
    free(data);
}

/* RAR 5 has no archiver in Debian main, so this builds a stored (method 0)
 * archive from the format description: signature, main header, one file
 * header with its data, end header. Each header is CRC32(size..end) +
 * vint size + type + flags + fields. */
static size_t put_vint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        p[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

static size_t rar5_header(uint8_t *out, const uint8_t *body, size_t body_len)
{
    /* body = type, flags, fields. Size counts from the type on. */
    uint8_t tmp[512];
    size_t n = put_vint(tmp, body_len);
    memcpy(tmp + n, body, body_len);
    n += body_len;
    uint32_t crc = (uint32_t)crc32(0, tmp, (uInt)n);
    out[0] = (uint8_t)crc;
    out[1] = (uint8_t)(crc >> 8);
    out[2] = (uint8_t)(crc >> 16);
    out[3] = (uint8_t)(crc >> 24);
    memcpy(out + 4, tmp, n);
    return 4 + n;
}

static size_t build_rar5(uint8_t *out, const char *name, const char *content, int encrypted)
{
    size_t o = 0, b;
    uint8_t body[256];
    memcpy(out, "Rar!\x1A\x07\x01\x00", 8);
    o = 8;
    /* Main archive header: type 1, no flags, archive flags 0. */
    b = 0;
    body[b++] = 1;
    body[b++] = 0;
    body[b++] = 0;
    o += rar5_header(out + o, body, b);
    /* File header: type 2, flags 0x0002 (data area) | 0x0001 (extra area
     * when encrypted), [extra size], data size, file flags 0x0004 (CRC32
     * present), unpacked size, attributes, CRC32, compression info 0
     * (version 0, method 0 = store), host OS 1 (Unix), name. */
    size_t clen = strlen(content);
    b = 0;
    body[b++] = 2;
    body[b++] = encrypted ? 0x03 : 0x02;
    uint8_t extra[80];
    size_t e = 0;
    if (encrypted) {
        /* File encryption record: size, type 1, version 0, flags 0,
         * KDF count 15, 16-byte salt, 16-byte IV. */
        uint8_t rec[64];
        size_t rl = 0;
        rec[rl++] = 0x01;
        rec[rl++] = 0x00;
        rec[rl++] = 0x00;
        rec[rl++] = 15;
        memset(rec + rl, 0xAB, 32);
        rl += 32;
        e = put_vint(extra, rl);
        memcpy(extra + e, rec, rl);
        e += rl;
        b += put_vint(body + b, e);
    }
    b += put_vint(body + b, clen);
    b += put_vint(body + b, 0x0004);
    b += put_vint(body + b, clen);
    b += put_vint(body + b, 0x1A4);
    uint32_t dcrc = (uint32_t)crc32(0, (const Bytef *)content, (uInt)clen);
    for (int k = 0; k < 4; k++)
        body[b++] = (uint8_t)(dcrc >> (8 * k));
    b += put_vint(body + b, 0);
    b += put_vint(body + b, 1);
    b += put_vint(body + b, strlen(name));
    memcpy(body + b, name, strlen(name));
    b += strlen(name);
    memcpy(body + b, extra, e);
    b += e;
    o += rar5_header(out + o, body, b);
    memcpy(out + o, content, clen);
    o += clen;
    /* End of archive: type 5, no flags, end flags 0. */
    b = 0;
    body[b++] = 5;
    body[b++] = 0;
    body[b++] = 0;
    o += rar5_header(out + o, body, b);
    return o;
}

static void walk_rar5_stored_built_in_code(void **state)
{
    (void)state;
    uint8_t rar[1024];
    size_t len = build_rar5(rar, "dir/hello.txt", "rar5 says " TU_MARKER "\n", 0);
    assert_int_equal(khx_filetype(rar, len), KHX_FT_RAR);
    struct tu_rec r = {0};
    assert_int_equal(walk(rar, len, KHX_FT_RAR, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nissues, 0);
    assert_int_equal(r.nmembers, 1);
    assert_string_equal(r.names[0], "dir/hello.txt");
    assert_true(r.marker[0]);
}

static void walk_rar5_encrypted_reported(void **state)
{
    (void)state;
    uint8_t rar[1024];
    size_t len = build_rar5(rar, "secret.txt", "rar5 says " TU_MARKER "\n", 1);
    struct tu_rec r = {0};
    assert_int_equal(walk(rar, len, KHX_FT_RAR, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 0);
    assert_true(tu_find_issue(&r, KHX_WALK_ENCRYPTED) >= 0);
}

/* RAR 4 (the 1.5-4.x block format), stored: marker block, archive header,
 * one file header (FHD_PASSWORD 0x0004 when `encrypted`), end block. Each
 * block's CRC is the low 16 bits of CRC32 over the block from its type. */
static size_t rar4_block(uint8_t *out, uint8_t type, uint16_t flags, const uint8_t *fields,
                         size_t nfields)
{
    uint16_t size = (uint16_t)(7 + nfields);
    out[2] = type;
    out[3] = (uint8_t)flags;
    out[4] = (uint8_t)(flags >> 8);
    out[5] = (uint8_t)size;
    out[6] = (uint8_t)(size >> 8);
    if (nfields > 0)
        memcpy(out + 7, fields, nfields);
    uint32_t crc = (uint32_t)crc32(0, out + 2, (uInt)(size - 2));
    out[0] = (uint8_t)crc;
    out[1] = (uint8_t)(crc >> 8);
    return size;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static size_t build_rar4(uint8_t *out, const char *name, const char *content, int encrypted)
{
    size_t o = 0;
    memcpy(out, "Rar!\x1A\x07\x00", 7);
    o = 7;
    uint8_t reserved[6] = {0};
    o += rar4_block(out + o, 0x73, 0, reserved, sizeof(reserved));
    uint8_t f[128];
    size_t clen = strlen(content), nlen = strlen(name);
    put_le32(f + 0, (uint32_t)clen);                                         /* PACK_SIZE */
    put_le32(f + 4, (uint32_t)clen);                                         /* UNP_SIZE */
    f[8] = 3;                                                                /* HOST_OS: Unix */
    put_le32(f + 9, (uint32_t)crc32(0, (const Bytef *)content, (uInt)clen)); /* FILE_CRC */
    put_le32(f + 13, 0x5A210000);                                            /* FTIME */
    f[17] = 29;                                                              /* UNP_VER */
    f[18] = 0x30;                                                            /* METHOD: store */
    f[19] = (uint8_t)nlen;
    f[20] = 0;
    put_le32(f + 21, 0x81A4); /* ATTR */
    memcpy(f + 25, name, nlen);
    o += rar4_block(out + o, 0x74, (uint16_t)(0x8000 | (encrypted ? 0x0004 : 0)), f, 25 + nlen);
    memcpy(out + o, content, clen);
    o += clen;
    o += rar4_block(out + o, 0x7B, 0x4000, NULL, 0);
    return o;
}

static void walk_rar4_stored_built_in_code(void **state)
{
    (void)state;
    uint8_t rar[512];
    size_t len = build_rar4(rar, "hello.txt", "rar4 says " TU_MARKER "\n", 0);
    assert_int_equal(khx_filetype(rar, len), KHX_FT_RAR);
    struct tu_rec r = {0};
    assert_int_equal(walk(rar, len, KHX_FT_RAR, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nissues, 0);
    assert_int_equal(r.nmembers, 1);
    assert_true(r.marker[0]);
}

static void walk_rar4_encrypted_reported(void **state)
{
    (void)state;
    uint8_t rar[512];
    size_t len = build_rar4(rar, "secret.txt", "rar4 says " TU_MARKER "\n", 1);
    struct tu_rec r = {0};
    assert_int_equal(walk(rar, len, KHX_FT_RAR, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 0);
    int i = tu_find_issue(&r, KHX_WALK_ENCRYPTED);
    assert_true(i >= 0);
    assert_string_equal(r.inames[i], "secret.txt");
}

/* A RAR 5 archive whose headers are encrypted starts with an archive
 * encryption header (type 4): nothing in it can be listed. */
static void walk_rar5_encrypted_headers_reported(void **state)
{
    (void)state;
    uint8_t rar[256];
    memcpy(rar, "Rar!\x1A\x07\x01\x00", 8);
    uint8_t body[64] = {4, 0, 0, 0, 15};
    memset(body + 5, 0xCD, 16 + 12);
    size_t len = 8 + rar5_header(rar + 8, body, 5 + 16 + 12);
    memset(rar + len, 0xEE, 64); /* the encrypted rest */
    len += 64;
    struct tu_rec r = {0};
    assert_int_equal(walk(rar, len, KHX_FT_RAR, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 0);
    assert_int_equal(r.nissues, 1);
    assert_int_equal(r.issues[0], KHX_WALK_ENCRYPTED);
}

/* ------------------------------------------------------------------------ */
/* Shared ClamAV test files: RAR 4, LHA, split zip, zstd with a skip frame   */
/* ------------------------------------------------------------------------ */

/* ClamAV ships its samples XOR-obfuscated; see ../shared/data/MANIFEST.md. */
static void walk_rar4_clamav_sample(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = tu_load_clamav_xor("clam-v3.rar", &len);
    if (data == NULL)
        return;
    assert_int_equal(khx_filetype(data, len), KHX_FT_RAR);
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_RAR, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nissues, 0);
    assert_int_equal(r.nmembers, 1);
    assert_string_equal(r.names[0], "clam.exe");
    assert_int_equal(r.lens[0], 544);
    assert_memory_equal(r.data[0], "MZ", 2);
    free(data);
}

/* libarchive cannot decode RAR 2.x compression; the member must then be
 * reported, not dropped silently. */
static void walk_rar_unsupported_method_reported(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = tu_load_clamav_xor("clam-v2.rar", &len);
    if (data == NULL)
        return;
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_RAR, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    if (r.nmembers == 1) {
        assert_int_equal(r.lens[0], 544);
    } else {
        assert_int_equal(r.nmembers, 0);
        int i = tu_find_issue(&r, KHX_WALK_CORRUPT);
        assert_true(i >= 0);
        assert_string_equal(r.inames[i], "clam.exe");
    }
    free(data);
}

static void walk_lha_clamav_samples(void **state)
{
    (void)state;
    static const char *const files[] = {"lh5.lzh",          "lh6.lzh",          "lh7.lzh",
                                        "default.sjis.lzh", "default.utf8.lzh", "default.euc.lzh"};
    for (size_t f = 0; f < KHX_ARRAY_LEN(files); f++) {
        char rel[256];
        snprintf(rel, sizeof(rel), "clamav/files/other_scanfiles/lha_lzh/%s", files[f]);
        size_t len;
        uint8_t *data = tu_load_shared(rel, &len);
        if (data == NULL)
            return;
        assert_int_equal(khx_filetype(data, len), KHX_FT_LHA);
        struct tu_rec r = {0};
        assert_int_equal(walk(data, len, KHX_FT_LHA, &tu_generous, &r), 0);
        printf("%s:\n", files[f]);
        tu_rec_dump(&r);
        assert_int_equal(r.nissues, 0);
        /* cisco.png, logo.png and a text file with a Japanese name. */
        assert_int_equal(r.nmembers, 3);
        assert_true(tu_find_member(&r, "archive_contents/images/logo.png") >= 0);
        assert_memory_equal(r.data[tu_find_member(&r, "archive_contents/images/logo.png")],
                            "\x89PNG", 4);
        free(data);
    }
}

/* libarchive has no -lh1- decoder: that member is reported, the others in
 * the same archive still come out. */
static void walk_lha_unsupported_method_reported(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = tu_load_shared("clamav/files/other_scanfiles/lha_lzh/lh1.lzh", &len);
    if (data == NULL)
        return;
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_LHA, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_true(tu_find_member(&r, "archive_contents/images/cisco.png") >= 0);
    int i = tu_find_issue(&r, KHX_WALK_CORRUPT);
    assert_true(i >= 0);
    assert_string_equal(r.inames[i], "archive_contents/images/logo.png");
    free(data);
}

static void walk_split_zip_single_segment(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = tu_load_clamav_xor("clam.split.oneseg.zip", &len);
    if (data == NULL)
        return;
    assert_memory_equal(data, "PK\x07\x08", 4);
    assert_int_equal(khx_filetype(data, len), KHX_FT_ZIP);
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &tu_generous, &r), 0);
    assert_int_equal(r.nmembers, 1);
    assert_int_equal(r.lens[0], 544);
    free(data);
}

static void walk_split_zip_last_part_gives_present_members(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("split.zip", &len);
    if (data == NULL)
        return;
    /* It starts with the tail of big.bin, not with a zip signature. */
    assert_true(memcmp(data, "PK", 2) != 0);
    assert_int_equal(khx_filetype(data, len), KHX_FT_ZIP);
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    int i = tu_find_member(&r, "hello.txt");
    assert_true(i >= 0);
    assert_true(r.marker[i]);
    assert_int_equal(r.nmembers, 1);
    /* big.bin started in the other part: said, not skipped silently. */
    i = tu_find_issue(&r, KHX_WALK_CORRUPT);
    assert_true(i >= 0);
    assert_string_equal(r.inames[i], "big.bin");
    assert_non_null(strstr(r.details[i], "split"));
    free(data);
}

static void walk_zip_damaged_local_header_rest_read(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("big.zip", &len);
    if (data == NULL)
        return;
    /* The first member's local header is destroyed; the central directory
     * still leads to the second. */
    memcpy(data, "XXXX", 4);
    assert_int_equal(khx_filetype(data, len), KHX_FT_ZIP);
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 1);
    assert_string_equal(r.names[0], "hello.txt");
    assert_true(r.marker[0]);
    int i = tu_find_issue(&r, KHX_WALK_CORRUPT);
    assert_true(i >= 0);
    assert_string_equal(r.inames[i], "big.bin");
    free(data);
}

static void filetype_zip_appended_to_other_data_is_not_zip(void **state)
{
    (void)state;
    size_t len;
    uint8_t *zip = load("t.zip", &len);
    if (zip == NULL)
        return;
    /* A zip appended to other data records offsets from its own start:
     * the file keeps its own type (the embedded walk finds the zip). */
    uint8_t *buf = malloc(len + 1000);
    assert_non_null(buf);
    memset(buf, 0xEE, 1000);
    memcpy(buf + 1000, zip, len);
    assert_int_equal(khx_filetype(buf, len + 1000), KHX_FT_BINARY);
    free(buf);
    free(zip);
}

static void walk_iso_joliet_image_members_once(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("t.iso", &len);
    if (data == NULL)
        return;
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_ISO, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    /* Both trees are read, but each file is delivered once. */
    int markers = 0;
    for (int i = 0; i < r.nmembers; i++)
        markers += r.marker[i];
    assert_int_equal(markers, 1);
    free(data);
}

static void walk_iso_primary_tree_when_joliet_tree_lacks_files(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = tu_load_shared("clamav/files/other_scanfiles/iso_no_joliet.logo.iso", &len);
    if (data == NULL)
        return;
    assert_int_equal(khx_filetype(data, len), KHX_FT_ISO);
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_ISO, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    /* The Joliet tree is empty; the file is only in the primary tree. */
    assert_int_equal(r.nmembers, 1);
    assert_string_equal(r.names[0], "EICAR.PNG");
    assert_int_equal(r.lens[0], 25476);
    free(data);
}

static void walk_split_zip_clamav_last_part(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = tu_load_shared("clamav/files/other_scanfiles/zip/logos.zip", &len);
    if (data == NULL)
        return;
    assert_int_equal(khx_filetype(data, len), KHX_FT_ZIP);
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 1);
    assert_string_equal(r.names[0], "logos/logo.3.png");
    assert_int_equal(r.lens[0], 25476);
    /* Three pictures start in logos.z01; the directory entry is not one. */
    int corrupt = 0;
    for (int i = 0; i < r.nissues; i++)
        corrupt += r.issues[i] == KHX_WALK_CORRUPT;
    assert_int_equal(corrupt, 3);
    free(data);
}

static void walk_mail_dispatched_to_mime_walker(void **state)
{
    (void)state;
    static const char mail[] = "From: a@example.org\r\n"
                               "Subject: x\r\n"
                               "Content-Type: application/octet-stream; name=\"m.bin\"\r\n"
                               "Content-Transfer-Encoding: base64\r\n"
                               "\r\n"
                               "S0hYLU1BUktFUi03ZjNh\r\n";
    assert_int_equal(khx_filetype((const uint8_t *)mail, strlen(mail)), KHX_FT_MAIL);
    assert_true(khx_ftype_is_container(KHX_FT_MAIL));
    struct tu_rec r = {0};
    assert_int_equal(walk((const uint8_t *)mail, strlen(mail), KHX_FT_MAIL, &tu_generous, &r), 0);
    assert_int_equal(r.nmembers, 1);
    assert_string_equal(r.names[0], "m.bin");
    assert_true(r.marker[0]);
}

static void walk_zstd_skippable_frame(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = tu_load_shared("clamav/files/other_scanfiles/zstd/skip_prefix.txt.zst", &len);
    if (data == NULL)
        return;
    assert_int_equal(khx_filetype(data, len), KHX_FT_ZSTD);
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZSTD, &tu_generous, &r), 0);
    assert_int_equal(r.nissues, 0);
    assert_int_equal(r.nmembers, 1);
    assert_true(r.lens[0] > 0);
    free(data);
}

/* ------------------------------------------------------------------------ */
/* Encrypted and damaged containers                                          */
/* ------------------------------------------------------------------------ */

static void walk_encrypted_zip_reported(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("enc.zip", &len);
    if (data == NULL)
        return;
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 0);
    int i = tu_find_issue(&r, KHX_WALK_ENCRYPTED);
    assert_true(i >= 0);
    assert_string_equal(r.inames[i], "hello.txt");
    char name[96];
    khx_walk_issue_name(KHX_WALK_ENCRYPTED, KHX_FT_ZIP, name, sizeof(name));
    assert_string_equal(name, "Heuristics.Encrypted.Zip");
    free(data);
}

static void walk_encrypted_7z_reported(void **state)
{
    (void)state;
    const char *files[] = {"enc.7z", "enchdr.7z"};
    for (size_t f = 0; f < 2; f++) {
        size_t len;
        uint8_t *data = load(files[f], &len);
        if (data == NULL)
            return;
        struct tu_rec r = {0};
        assert_int_equal(walk(data, len, KHX_FT_7Z, &tu_generous, &r), 0);
        tu_rec_dump(&r);
        assert_int_equal(r.nmembers, 0);
        assert_true(tu_find_issue(&r, KHX_WALK_ENCRYPTED) >= 0);
        assert_int_equal(tu_find_issue(&r, KHX_WALK_CORRUPT), -1);
        free(data);
    }
}

static void walk_truncated_zip_is_corrupt(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("trunc_src.zip", &len);
    if (data == NULL)
        return;
    size_t cut = len / 2;
    struct tu_rec r = {0};
    assert_int_equal(walk(data, cut, KHX_FT_ZIP, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(tu_find_member(&r, "big.bin"), -1);
    assert_true(tu_find_issue(&r, KHX_WALK_CORRUPT) >= 0);
    /* The whole file is fine: the same walk without the cut reports nothing. */
    struct tu_rec whole = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &tu_generous, &whole), 0);
    assert_int_equal(whole.nissues, 0);
    assert_int_equal(whole.nmembers, 2);
    free(data);
}

static void walk_truncated_gzip_is_corrupt(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("big.gz", &len);
    if (data == NULL)
        return;
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len - 100, KHX_FT_GZ, &tu_generous, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 0);
    assert_true(tu_find_issue(&r, KHX_WALK_CORRUPT) >= 0);
    free(data);
}

/* The raw reader would accept anything: a "gzip" that is not one must not
 * come back as its own single member (the caller would recurse forever). */
static void walk_wrong_type_is_corrupt_not_echoed(void **state)
{
    (void)state;
    const uint8_t junk[] = "this is not a gzip stream at all, just text";
    struct tu_rec r = {0};
    assert_int_equal(walk(junk, sizeof(junk), KHX_FT_GZ, &tu_generous, &r), 0);
    assert_int_equal(r.nmembers, 0);
    assert_true(tu_find_issue(&r, KHX_WALK_CORRUPT) >= 0);
    struct tu_rec z = {0};
    assert_int_equal(walk(junk, sizeof(junk), KHX_FT_ZIP, &tu_generous, &z), 0);
    assert_int_equal(z.nmembers, 0);
    assert_true(tu_find_issue(&z, KHX_WALK_CORRUPT) >= 0);
}

static void walk_empty_and_invalid_arguments(void **state)
{
    (void)state;
    struct tu_rec r = {0};
    assert_int_equal(walk((const uint8_t *)"", 0, KHX_FT_ZIP, &tu_generous, &r), 0);
    assert_true(tu_find_issue(&r, KHX_WALK_CORRUPT) >= 0);
    uint64_t total = 0;
    struct khx_walk_cb cb = tu_rec_cb(&r);
    assert_int_equal(
        khx_container_walk((const uint8_t *)"abc", 3, KHX_FT_TEXT, &tu_generous, &total, &cb),
        KH_EINVAL);
    assert_int_equal(khx_container_walk(NULL, 3, KHX_FT_ZIP, &tu_generous, &total, &cb), KH_EINVAL);
    assert_int_equal(khx_container_walk((const uint8_t *)"abc", 3, KHX_FT_ZIP, NULL, &total, &cb),
                     KH_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Limits                                                                    */
/* ------------------------------------------------------------------------ */

static void walk_zip_bomb_hits_ratio(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("bomb.zip", &len);
    if (data == NULL)
        return;
    struct khx_walk_limits lim = tu_generous;
    lim.max_ratio = 100; /* 8 MiB of zeros deflate ~1000:1 */
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &lim, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 0);
    int i = tu_find_issue(&r, KHX_WALK_MAX_RATIO);
    assert_true(i >= 0);
    assert_string_equal(r.inames[i], "zeros.bin");
    /* With the ratio check off (0) the same member comes out whole. */
    lim.max_ratio = 0;
    struct tu_rec ok = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &lim, &ok), 0);
    assert_int_equal(ok.nissues, 0);
    assert_int_equal(ok.nmembers, 1);
    assert_int_equal(ok.lens[0], 8u << 20);
    free(data);
}

static void walk_gzip_bomb_hits_ratio(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("bomb.gz", &len);
    if (data == NULL)
        return;
    struct khx_walk_limits lim = tu_generous;
    lim.max_ratio = 100;
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_GZ, &lim, &r), 0);
    assert_int_equal(r.nmembers, 0);
    assert_true(tu_find_issue(&r, KHX_WALK_MAX_RATIO) >= 0);
    free(data);
}

/* Small, very compressible files are not bombs: the ratio is judged only
 * past the first MiB of output. */
static void walk_small_compressible_member_is_not_a_bomb(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("small_zeros.gz", &len);
    if (data == NULL)
        return;
    struct khx_walk_limits lim = tu_generous;
    lim.max_ratio = 10;
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_GZ, &lim, &r), 0);
    assert_int_equal(r.nissues, 0);
    assert_int_equal(r.nmembers, 1);
    assert_int_equal(r.lens[0], 65536);
    free(data);
}

static void walk_too_many_members(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("many.zip", &len);
    if (data == NULL)
        return;
    struct khx_walk_limits lim = tu_generous;
    lim.max_members = 5;
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &lim, &r), 0);
    assert_int_equal(r.nmembers, 5);
    assert_int_equal(r.nissues, 1);
    assert_int_equal(r.issues[0], KHX_WALK_MAX_FILES);
    lim.max_members = 20;
    struct tu_rec all = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &lim, &all), 0);
    assert_int_equal(all.nmembers, 20);
    assert_int_equal(all.nissues, 0);
    free(data);
}

/* A member over max_member_size is reported by its declared size and
 * skipped; the walk goes on to the next one. */
static void walk_member_over_size_declared(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("big.zip", &len);
    if (data == NULL)
        return;
    struct khx_walk_limits lim = tu_generous;
    lim.max_member_size = 50000;
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &lim, &r), 0);
    tu_rec_dump(&r);
    int i = tu_find_issue(&r, KHX_WALK_MAX_FILESIZE);
    assert_true(i >= 0);
    assert_string_equal(r.inames[i], "big.bin");
    assert_int_equal(tu_find_member(&r, "big.bin"), -1);
    assert_true(tu_find_member(&r, "hello.txt") >= 0);
    free(data);
}

/* A gzip stream does not declare its size: extraction stops when the data
 * passes the limit. */
static void walk_member_over_size_actual(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("big.gz", &len);
    if (data == NULL)
        return;
    struct khx_walk_limits lim = tu_generous;
    lim.max_member_size = 50000;
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_GZ, &lim, &r), 0);
    assert_int_equal(r.nmembers, 0);
    assert_true(tu_find_issue(&r, KHX_WALK_MAX_FILESIZE) >= 0);
    lim.max_member_size = 100000;
    struct tu_rec ok = {0};
    assert_int_equal(walk(data, len, KHX_FT_GZ, &lim, &ok), 0);
    assert_int_equal(ok.nmembers, 1);
    assert_int_equal(ok.lens[0], 100000);
    free(data);
}

/* max_total is shared with the caller: the walk adds what it extracts to
 * *total_used and stops when a member would go past the budget. */
static void walk_total_budget_shared(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("t.a", &len);
    if (data == NULL)
        return;
    struct khx_walk_limits lim = tu_generous;
    lim.max_total = 150000;
    struct tu_rec r = {0};
    uint64_t total = 0;
    struct khx_walk_cb cb = tu_rec_cb(&r);
    assert_int_equal(khx_container_walk(data, len, KHX_FT_AR, &lim, &total, &cb), 0);
    assert_int_equal(r.nmembers, 2);
    assert_int_equal(total, 100000 + strlen("Hello from Khien " TU_MARKER "\n"));

    struct tu_rec over = {0};
    total = 60000; /* already used by earlier objects of the same scan */
    cb.ud = &over;
    assert_int_equal(khx_container_walk(data, len, KHX_FT_AR, &lim, &total, &cb), 0);
    tu_rec_dump(&over);
    assert_int_equal(over.nmembers, 1); /* hello.txt fits, big.bin does not */
    int i = tu_find_issue(&over, KHX_WALK_MAX_SCANSIZE);
    assert_true(i >= 0);
    assert_string_equal(over.inames[i], "big.bin");
    free(data);
}

static void walk_deadline_passed(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("t.zip", &len);
    if (data == NULL)
        return;
    struct khx_walk_limits lim = tu_generous;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    lim.deadline_ms = now > 1 ? now - 1 : 1;
    struct tu_rec r = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &lim, &r), 0);
    assert_int_equal(r.nmembers, 0);
    assert_int_equal(r.nissues, 1);
    assert_int_equal(r.issues[0], KHX_WALK_MAX_TIME);
    /* A deadline an hour away does not get in the way. */
    lim.deadline_ms = now + 3600u * 1000u;
    struct tu_rec ok = {0};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &lim, &ok), 0);
    assert_int_equal(ok.nissues, 0);
    assert_int_equal(ok.nmembers, 2);
    free(data);
}

static void walk_callback_stops_walk(void **state)
{
    (void)state;
    size_t len;
    uint8_t *data = load("many.zip", &len);
    if (data == NULL)
        return;
    struct tu_rec r = {.stop_after = 3, .stop_value = 42};
    assert_int_equal(walk(data, len, KHX_FT_ZIP, &tu_generous, &r), 42);
    assert_int_equal(r.nmembers, 3);
    free(data);
}

/* ------------------------------------------------------------------------ */
/* File typing                                                               */
/* ------------------------------------------------------------------------ */

static void filetype_archives_built_by_tools(void **state)
{
    (void)state;
    struct {
        const char *file;
        enum khx_ftype t;
    } cases[] = {
        {"t.zip", KHX_FT_ZIP},          {"t.7z", KHX_FT_7Z},
        {"t.tar", KHX_FT_TAR},          {"t.tar.gz", KHX_FT_GZ},
        {"hello.bz2", KHX_FT_BZ2},      {"hello.xz", KHX_FT_XZ},
        {"hello.zst", KHX_FT_ZSTD},     {"hello.lzma", KHX_FT_LZMA},
        {"t.cab", KHX_FT_CAB},          {"t.iso", KHX_FT_ISO},
        {"t.newc.cpio", KHX_FT_CPIO},   {"t.odc.cpio", KHX_FT_CPIO},
        {"t.bin.cpio", KHX_FT_CPIO},    {"t.a", KHX_FT_AR},
        {"src/hello.txt", KHX_FT_TEXT}, {"src/big.bin", KHX_FT_BINARY},
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(cases); i++) {
        size_t len;
        uint8_t *data = load(cases[i].file, &len);
        if (data == NULL)
            continue;
        if (khx_filetype(data, len) != cases[i].t)
            printf("  %s: got %s\n", cases[i].file, khx_ftype_name(khx_filetype(data, len)));
        assert_int_equal(khx_filetype(data, len), cases[i].t);
        free(data);
    }
}

static void filetype_pe_needs_pe_header(void **state)
{
    (void)state;
    uint8_t pe[256] = {0};
    memcpy(pe, "MZ", 2);
    pe[0x3C] = 0x80;
    memcpy(pe + 0x80, "PE\0\0", 4);
    assert_int_equal(khx_filetype(pe, sizeof(pe)), KHX_FT_PE);
    /* e_lfanew past the end, or pointing at something else: not PE. */
    pe[0x3C] = 0xFE;
    assert_int_not_equal(khx_filetype(pe, sizeof(pe)), KHX_FT_PE);
    pe[0x3C] = 0x80;
    pe[0x81] = 'X';
    assert_int_not_equal(khx_filetype(pe, sizeof(pe)), KHX_FT_PE);
    /* A text file that starts with "MZ" is text. */
    const char *mz = "MZ is the start of this sentence, nothing more.\n";
    assert_int_equal(khx_filetype((const uint8_t *)mz, strlen(mz)), KHX_FT_TEXT);
    assert_int_equal(khx_filetype((const uint8_t *)"MZ", 2), KHX_FT_TEXT);
}

static void filetype_elf(void **state)
{
    (void)state;
    uint8_t elf[64] = {0x7F, 'E', 'L', 'F', 2, 1, 1};
    assert_int_equal(khx_filetype(elf, sizeof(elf)), KHX_FT_ELF);
    assert_int_equal(khx_filetype(elf, 3), KHX_FT_BINARY);
}

static void filetype_zip_empty_and_split_markers(void **state)
{
    (void)state;
    uint8_t empty[22] = {'P', 'K', 5, 6};
    assert_int_equal(khx_filetype(empty, sizeof(empty)), KHX_FT_ZIP);
    uint8_t split[30] = {'P', 'K', 7, 8, 'P', 'K', 3, 4};
    assert_int_equal(khx_filetype(split, sizeof(split)), KHX_FT_ZIP);
    struct tu_rec r = {0};
    assert_int_equal(walk(empty, sizeof(empty), KHX_FT_ZIP, &tu_generous, &r), 0);
    assert_int_equal(r.nmembers, 0);
}

static void filetype_magic_only_formats(void **state)
{
    (void)state;
    uint8_t rar4[16] = "Rar!\x1A\x07\x00";
    uint8_t rar5[16] = "Rar!\x1A\x07\x01\x00";
    uint8_t cab[40] = "MSCF\0\0\0\0";
    uint8_t lha[32] = {0x20, 0x00, '-', 'l', 'h', '5', '-'};
    uint8_t lhx[32] = {0x20, 0x00, '-', 'l', 'h', '5', '-'};
    lhx[20] = 9; /* no such header level */
    uint8_t zstd_skip[16] = {0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0};
    uint8_t bz[16] = "BZh91AY&SY";
    uint8_t notbz[16] = "BZh0";
    assert_int_equal(khx_filetype(rar4, sizeof(rar4)), KHX_FT_RAR);
    assert_int_equal(khx_filetype(rar5, sizeof(rar5)), KHX_FT_RAR);
    assert_int_equal(khx_filetype(cab, sizeof(cab)), KHX_FT_CAB);
    assert_int_equal(khx_filetype(lha, sizeof(lha)), KHX_FT_LHA);
    assert_int_not_equal(khx_filetype(lhx, sizeof(lhx)), KHX_FT_LHA);
    assert_int_equal(khx_filetype(zstd_skip, sizeof(zstd_skip)), KHX_FT_ZSTD);
    assert_int_equal(khx_filetype(bz, sizeof(bz)), KHX_FT_BZ2);
    assert_int_not_equal(khx_filetype(notbz, sizeof(notbz)), KHX_FT_BZ2);
    assert_int_equal(khx_filetype((const uint8_t *)"!<arch>\n", 8), KHX_FT_AR);
    assert_int_equal(khx_filetype((const uint8_t *)"070707", 6), KHX_FT_CPIO);
    assert_int_equal(khx_filetype((const uint8_t *)"\xFD"
                                                   "7zXZ\0",
                                  6),
                     KHX_FT_XZ);
}

static void filetype_iso_and_tar_by_offset(void **state)
{
    (void)state;
    size_t n = 40000;
    uint8_t *iso = calloc(1, n);
    assert_non_null(iso);
    memcpy(iso + 32769, "CD001", 5);
    assert_int_equal(khx_filetype(iso, n), KHX_FT_ISO);
    assert_int_equal(khx_filetype(iso, 32772), KHX_FT_BINARY); /* cut inside the magic */
    free(iso);

    uint8_t tar[512] = {0};
    memcpy(tar, "file.txt", 8);
    memcpy(tar + 257, "ustar", 5);
    assert_int_equal(khx_filetype(tar, sizeof(tar)), KHX_FT_TAR);
    /* A pre-POSIX tar has no magic; its header checksum identifies it. */
    memset(tar + 257, 0, 8);
    memcpy(tar + 100, "0000644", 7);
    memcpy(tar + 124, "00000000012", 11);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += (i >= 148 && i < 156) ? ' ' : tar[i];
    snprintf((char *)tar + 148, 8, "%06o", sum);
    assert_int_equal(khx_filetype(tar, sizeof(tar)), KHX_FT_TAR);
    tar[0] = 'g'; /* the checksum no longer matches */
    assert_int_not_equal(khx_filetype(tar, sizeof(tar)), KHX_FT_TAR);
}

static void filetype_html_text_binary(void **state)
{
    (void)state;
    struct {
        const char *s;
        enum khx_ftype t;
    } cases[] = {
        {"<!DOCTYPE html><p>x</p>", KHX_FT_HTML},
        {"  \n<HTML><body>hi</body></HTML>", KHX_FT_HTML},
        {"\xEF\xBB\xBF<html>", KHX_FT_HTML},
        {"Some words first, then <script>alert(1)</script>", KHX_FT_HTML},
        {"<IFRAME src=x>", KHX_FT_HTML},
        {"if (a < b && c > d) return <body>;", KHX_FT_HTML},
        {"plain text where a < b and <b>bold</b> is mentioned\n", KHX_FT_TEXT},
        {"Tiếng Việt có dấu, UTF-8 text.\n", KHX_FT_TEXT},
        {"caf\xE9 au lait, Latin-1 is still text for us\n", KHX_FT_TEXT},
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(cases); i++)
        assert_int_equal(khx_filetype((const uint8_t *)cases[i].s, strlen(cases[i].s)), cases[i].t);
    uint8_t nul[] = "text with a \0 NUL byte";
    assert_int_equal(khx_filetype(nul, sizeof(nul)), KHX_FT_BINARY);
    uint8_t ctl[64];
    for (size_t i = 0; i < sizeof(ctl); i++)
        ctl[i] = (uint8_t)(1 + i % 8);
    assert_int_equal(khx_filetype(ctl, sizeof(ctl)), KHX_FT_BINARY);
    assert_int_equal(khx_filetype(NULL, 0), KHX_FT_BINARY);
    assert_int_equal(khx_filetype((const uint8_t *)"", 0), KHX_FT_BINARY);
}

static void filetype_names_and_cltypes(void **state)
{
    (void)state;
    assert_string_equal(khx_ftype_cltype(KHX_FT_ZIP), "CL_TYPE_ZIP");
    assert_string_equal(khx_ftype_cltype(KHX_FT_PE), "CL_TYPE_MSEXE");
    assert_string_equal(khx_ftype_cltype(KHX_FT_TAR), "CL_TYPE_POSIX_TAR");
    assert_string_equal(khx_ftype_cltype(KHX_FT_CAB), "CL_TYPE_MSCAB");
    assert_string_equal(khx_ftype_cltype(KHX_FT_LHA), "CL_TYPE_LHA_LZH");
    assert_string_equal(khx_ftype_cltype(KHX_FT_TEXT), "CL_TYPE_TEXT_ASCII");
    assert_string_equal(khx_ftype_name(KHX_FT_7Z), "7z");
    assert_string_equal(khx_ftype_name(KHX_FT_RAR), "rar");
    for (int t = 0; t < KHX_FT_COUNT; t++) {
        assert_non_null(khx_ftype_cltype((enum khx_ftype)t));
        assert_non_null(khx_ftype_name((enum khx_ftype)t));
        assert_int_equal(strncmp(khx_ftype_cltype((enum khx_ftype)t), "CL_TYPE_", 8), 0);
    }
    assert_string_equal(khx_ftype_name(KHX_FT_COUNT), "binary");
    assert_string_equal(khx_ftype_name((enum khx_ftype) - 3), "binary");
    assert_true(khx_ftype_is_container(KHX_FT_ZIP));
    assert_true(khx_ftype_is_container(KHX_FT_LZMA));
    assert_false(khx_ftype_is_container(KHX_FT_PE));
    assert_false(khx_ftype_is_container(KHX_FT_HTML));
    assert_false(khx_ftype_is_container(KHX_FT_COUNT));
}

static void issue_names(void **state)
{
    (void)state;
    char buf[96];
    khx_walk_issue_name(KHX_WALK_ENCRYPTED, KHX_FT_7Z, buf, sizeof(buf));
    assert_string_equal(buf, "Heuristics.Encrypted.7Zip");
    khx_walk_issue_name(KHX_WALK_ENCRYPTED, KHX_FT_RAR, buf, sizeof(buf));
    assert_string_equal(buf, "Heuristics.Encrypted.RAR");
    khx_walk_issue_name(KHX_WALK_CORRUPT, KHX_FT_ZIP, buf, sizeof(buf));
    assert_string_equal(buf, "Heuristics.Broken.Zip");
    khx_walk_issue_name(KHX_WALK_MAX_FILESIZE, KHX_FT_ZIP, buf, sizeof(buf));
    assert_string_equal(buf, "Heuristics.Limits.Exceeded.MaxFileSize");
    khx_walk_issue_name(KHX_WALK_MAX_SCANSIZE, KHX_FT_ZIP, buf, sizeof(buf));
    assert_string_equal(buf, "Heuristics.Limits.Exceeded.MaxScanSize");
    khx_walk_issue_name(KHX_WALK_MAX_FILES, KHX_FT_ZIP, buf, sizeof(buf));
    assert_string_equal(buf, "Heuristics.Limits.Exceeded.MaxFiles");
    khx_walk_issue_name(KHX_WALK_MAX_RATIO, KHX_FT_GZ, buf, sizeof(buf));
    assert_string_equal(buf, "Heuristics.Limits.Exceeded.MaxCompressionRatio");
    khx_walk_issue_name(KHX_WALK_MAX_TIME, KHX_FT_GZ, buf, sizeof(buf));
    assert_string_equal(buf, "Heuristics.Limits.Exceeded.MaxScanTime");
    /* Truncated into a small buffer, still NUL-terminated; NULL is ignored. */
    char small[12];
    khx_walk_issue_name(KHX_WALK_MAX_TIME, KHX_FT_GZ, small, sizeof(small));
    assert_string_equal(small, "Heuristics.");
    khx_walk_issue_name(KHX_WALK_MAX_TIME, KHX_FT_GZ, NULL, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(walk_zip_members_skip_dirs_and_symlinks),
        cmocka_unit_test(walk_7z_members),
        cmocka_unit_test(walk_tar_members),
        cmocka_unit_test(walk_single_streams_give_one_unnamed_member),
        cmocka_unit_test(walk_cab_members),
        cmocka_unit_test(walk_iso_members),
        cmocka_unit_test(walk_cpio_variants),
        cmocka_unit_test(walk_ar_members),
        cmocka_unit_test(walk_nested_zip_gzip_tar),
        cmocka_unit_test(walk_rar5_stored_built_in_code),
        cmocka_unit_test(walk_rar5_encrypted_reported),
        cmocka_unit_test(walk_rar5_encrypted_headers_reported),
        cmocka_unit_test(walk_rar4_stored_built_in_code),
        cmocka_unit_test(walk_rar4_encrypted_reported),
        cmocka_unit_test(walk_rar4_clamav_sample),
        cmocka_unit_test(walk_rar_unsupported_method_reported),
        cmocka_unit_test(walk_lha_clamav_samples),
        cmocka_unit_test(walk_lha_unsupported_method_reported),
        cmocka_unit_test(walk_split_zip_single_segment),
        cmocka_unit_test(walk_split_zip_last_part_gives_present_members),
        cmocka_unit_test(walk_zip_damaged_local_header_rest_read),
        cmocka_unit_test(filetype_zip_appended_to_other_data_is_not_zip),
        cmocka_unit_test(walk_iso_joliet_image_members_once),
        cmocka_unit_test(walk_iso_primary_tree_when_joliet_tree_lacks_files),
        cmocka_unit_test(walk_split_zip_clamav_last_part),
        cmocka_unit_test(walk_mail_dispatched_to_mime_walker),
        cmocka_unit_test(walk_zstd_skippable_frame),
        cmocka_unit_test(walk_encrypted_zip_reported),
        cmocka_unit_test(walk_encrypted_7z_reported),
        cmocka_unit_test(walk_truncated_zip_is_corrupt),
        cmocka_unit_test(walk_truncated_gzip_is_corrupt),
        cmocka_unit_test(walk_wrong_type_is_corrupt_not_echoed),
        cmocka_unit_test(walk_empty_and_invalid_arguments),
        cmocka_unit_test(walk_zip_bomb_hits_ratio),
        cmocka_unit_test(walk_gzip_bomb_hits_ratio),
        cmocka_unit_test(walk_small_compressible_member_is_not_a_bomb),
        cmocka_unit_test(walk_too_many_members),
        cmocka_unit_test(walk_member_over_size_declared),
        cmocka_unit_test(walk_member_over_size_actual),
        cmocka_unit_test(walk_total_budget_shared),
        cmocka_unit_test(walk_deadline_passed),
        cmocka_unit_test(walk_callback_stops_walk),
        cmocka_unit_test(filetype_archives_built_by_tools),
        cmocka_unit_test(filetype_pe_needs_pe_header),
        cmocka_unit_test(filetype_elf),
        cmocka_unit_test(filetype_zip_empty_and_split_markers),
        cmocka_unit_test(filetype_magic_only_formats),
        cmocka_unit_test(filetype_iso_and_tar_by_offset),
        cmocka_unit_test(filetype_html_text_binary),
        cmocka_unit_test(filetype_names_and_cltypes),
        cmocka_unit_test(issue_names),
    };
    return cmocka_run_group_tests(tests, setup_fixtures, teardown_fixtures);
}
