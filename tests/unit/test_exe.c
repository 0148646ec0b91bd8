/*
 * Unit tests for the PE and ELF layout parsers (lib/engine/pe.c, elf.c),
 * using images from the fixture generator (tests/fixtures/pegen.c) and, when
 * ../shared/data is present, ClamAV's own test executables: clam.exe must
 * give ClamAV's import hash, and pe_allmatch/test.exe must give the import
 * hash, section hashes and VersionInfo strings that ClamAV's signatures for
 * it were made from.
 */
#include "testutil.h"

#include "exe.h"
#include "khx.h"
#include "pegen.h"

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

static const uint8_t code_bytes[] = {0x55, 0x89, 0xe5, 0x31, 0xc0, 0x5d, 0xc3, 0x90};
static const uint8_t data_bytes[] = "some initialised data";

static void md5_hex(const void *p, size_t n, char out[33])
{
    uint8_t d[16];
    assert_int_equal(khx_md5(p, n, d), 0);
    khx_hex_encode(d, 16, out);
}

/* Builds a PE32 (or PE32+) with .text, .data, imports and VersionInfo. */
static uint8_t *build_sample_pe(int plus, struct pegen_layout *lay, size_t *len)
{
    static const struct pegen_section secs[] = {
        {".text", code_bytes, sizeof(code_bytes), 0, PEGEN_SCN_CODE},
        {".data", data_bytes, sizeof(data_bytes), 0, PEGEN_SCN_DATA},
    };
    static const struct pegen_func k32[] = {{"ExitProcess", 0, 0}, {"GetTickCount", 0, 1}};
    static const struct pegen_func u32[] = {{"MessageBoxA", 0, 0}};
    static const struct pegen_import imps[] = {{"KERNEL32.dll", k32, 2}, {"USER32.dll", u32, 1}};
    static const struct pegen_vstring vs[] = {
        {"CompanyName", "Khien Test"}, {"FileDescription", "Sample"}, {"InternalName", "x"}};
    struct pegen_pe pe = {.pe32plus = plus,
                          .sections = secs,
                          .nsections = 2,
                          .entry_section = 0,
                          .entry = 3,
                          .imports = imps,
                          .nimports = 2,
                          .version = vs,
                          .nversion = 3};
    uint8_t *img = NULL;
    assert_int_equal(pegen_pe_build(&pe, &img, len, lay), 0);
    return img;
}

/* Reads a file under ../shared/data, or returns NULL after printing SKIP. */
static uint8_t *read_shared(const char *rel, size_t *len, const char *test)
{
    const char *root = tu_shared_data();
    char path[4096];
    uint8_t *data = NULL;
    if (root == NULL) {
        printf("SKIP: %s: ../shared/data is absent\n", test);
        return NULL;
    }
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    if (khx_read_file(path, 64u << 20, &data, len) != 0) {
        printf("SKIP: %s: cannot read %s\n", test, path);
        return NULL;
    }
    return data;
}

/* ClamAV ships clam.exe XOR-obfuscated; see ../shared/data/MANIFEST.md. */
static uint8_t *load_clam_exe(size_t *len)
{
    static const char key[] =
        "bhcftqarohcdiayfohalohkgmoefxrrgfnczssgybajvkzjaahpfrlqsratkhhfvpxytculmwgmtyzujlbjlgrh"
        "twxhzpjazlibbwepffyjyfkjwzyofgpopoueurinpdujkphxwhnaxfkaiwrpzdqsnwughtejr";
    uint8_t *data = NULL;
    if (khx_read_file("/usr/share/clamav-testfiles/clam.exe", 1 << 20, &data, len) == 0)
        return data;
    data = read_shared("clamav/files/clamav_hdb_scanfiles_xor/clam.exe.xor", len, "clam.exe");
    if (data == NULL)
        return NULL;
    size_t klen = strlen(key);
    assert_int_equal(klen, 160);
    for (size_t i = 0; i < *len; i++)
        data[i] ^= (uint8_t)key[i % klen];
    return data;
}

/* ---- PE: generated images ----------------------------------------------- */

static void pe32_sections_and_entry_point(void **state)
{
    (void)state;
    struct pegen_layout lay;
    size_t len = 0;
    uint8_t *img = build_sample_pe(0, &lay, &len);
    struct khx_exe exe;

    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_int_equal(exe.type, KHX_EXE_PE32);
    assert_int_equal(exe.nsections, lay.nsections);
    assert_int_equal(exe.nsections, 4); /* .text .data .idata .rsrc */
    assert_string_equal(exe.sections[0].name, ".text");
    assert_string_equal(exe.sections[1].name, ".data");
    assert_string_equal(exe.sections[2].name, ".idata");
    assert_string_equal(exe.sections[3].name, ".rsrc");
    for (uint32_t i = 0; i < exe.nsections; i++) {
        assert_int_equal(exe.sections[i].rva, lay.sections[i].addr);
        assert_int_equal(exe.sections[i].raw_off, lay.sections[i].off);
        assert_int_equal(exe.sections[i].raw_size, lay.sections[i].size);
    }
    assert_memory_equal(img + exe.sections[0].raw_off, code_bytes, sizeof(code_bytes));
    assert_true(exe.ep_valid);
    assert_true(lay.entry_in_file);
    assert_int_equal(exe.ep, lay.entry_off);
    assert_int_equal(exe.ep, exe.sections[0].raw_off + 3);
    assert_int_equal(img[exe.ep], code_bytes[3]);
    khx_exe_clear(&exe);
    free(img);
}

static void pe32plus_sections_and_entry_point(void **state)
{
    (void)state;
    struct pegen_layout lay;
    size_t len = 0;
    uint8_t *img = build_sample_pe(1, &lay, &len);
    struct khx_exe exe;

    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_int_equal(exe.type, KHX_EXE_PE32PLUS);
    assert_int_equal(exe.nsections, 4);
    assert_true(exe.ep_valid);
    assert_int_equal(exe.ep, lay.entry_off);
    assert_int_equal(img[exe.ep], code_bytes[3]);
    khx_exe_clear(&exe);
    free(img);
}

static void pe_imphash_by_name(void **state)
{
    (void)state;
    for (int plus = 0; plus <= 1; plus++) {
        size_t len = 0;
        uint8_t *img = build_sample_pe(plus, NULL, &len);
        struct khx_exe exe;
        assert_int_equal(khx_pe_parse(img, len, &exe), 0);
        assert_non_null(exe.imphash_str);
        assert_string_equal(exe.imphash_str,
                            "kernel32.exitprocess,kernel32.gettickcount,user32.messageboxa");
        assert_int_equal(exe.imphash_len, strlen(exe.imphash_str));
        khx_exe_clear(&exe);
        free(img);
    }
}

/* Ordinal imports: the three socket/OLE DLLs are named from the ordinal
 * table, others become "ord<N>"; extensions .dll/.ocx/.sys after the first
 * dot are dropped, any other extension is kept. */
static void pe_imphash_ordinals_and_extensions(void **state)
{
    (void)state;
    static const struct pegen_section text[] = {{".text", code_bytes, 8, 0, PEGEN_SCN_CODE}};
    static const struct pegen_func ws2[] = {{NULL, 115, 0}, {NULL, 151, 0}, {NULL, 9999, 0}};
    static const struct pegen_func wsock[] = {{NULL, 3, 0}};
    static const struct pegen_func ole[] = {{NULL, 2, 0}, {NULL, 302, 0}};
    static const struct pegen_func k32[] = {{NULL, 17, 0}, {"Sleep", 0, 0}};
    static const struct pegen_func one[] = {{"Fn", 0, 0}};
    static const struct pegen_import imps[] = {
        {"WS2_32.dll", ws2, 3},   {"wsock32.DLL", wsock, 1}, {"OLEAUT32.dll", ole, 2},
        {"kernel32.dll", k32, 2}, {"ctl.OCX", one, 1},       {"drv.sys", one, 1},
        {"noext", one, 1},        {"x.dat.dll", one, 1},
    };
    const char *want = "ws2_32.wsastartup,ws2_32.__wsafdisset,ws2_32.ord9999,"
                       "wsock32.closesocket,oleaut32.sysallocstring,oleaut32.ord302,"
                       "kernel32.ord17,kernel32.sleep,ctl.fn,drv.fn,noext.fn,x.dat.dll.fn";
    for (int plus = 0; plus <= 1; plus++) {
        struct pegen_pe pe = {.pe32plus = plus,
                              .sections = text,
                              .nsections = 1,
                              .imports = imps,
                              .nimports = KHX_ARRAY_LEN(imps)};
        uint8_t *img = NULL;
        size_t len = 0;
        struct khx_exe exe;
        assert_int_equal(pegen_pe_build(&pe, &img, &len, NULL), 0);
        assert_int_equal(khx_pe_parse(img, len, &exe), 0);
        assert_non_null(exe.imphash_str);
        assert_string_equal(exe.imphash_str, want);
        khx_exe_clear(&exe);
        free(img);
    }
}

/* A name with a character outside [A-Za-z0-9_.] voids the whole import hash
 * (as in ClamAV), but the rest of the image still parses. */
static void pe_imphash_invalid_name_gives_none(void **state)
{
    (void)state;
    static const struct pegen_section text[] = {{".text", code_bytes, 8, 0, PEGEN_SCN_CODE}};
    static const struct pegen_func good[] = {{"Sleep", 0, 0}};
    static const struct pegen_func mangled[] = {{"?foo@@YAXXZ", 0, 0}};
    static const struct pegen_import bad_dll[] = {{"kernel32.dll", good, 1},
                                                  {"api-ms-win-core-synch-l1-2-0.dll", good, 1}};
    static const struct pegen_import bad_func[] = {{"msvcp140.dll", mangled, 1}};
    const struct pegen_import *cases[] = {bad_dll, bad_func};
    size_t counts[] = {2, 1};
    for (size_t c = 0; c < 2; c++) {
        struct pegen_pe pe = {
            .sections = text, .nsections = 1, .imports = cases[c], .nimports = counts[c]};
        uint8_t *img = NULL;
        size_t len = 0;
        struct khx_exe exe;
        assert_int_equal(pegen_pe_build(&pe, &img, &len, NULL), 0);
        assert_int_equal(khx_pe_parse(img, len, &exe), 0);
        assert_null(exe.imphash_str);
        assert_int_equal(exe.imphash_len, 0);
        assert_int_equal(exe.nsections, 2);
        khx_exe_clear(&exe);
        free(img);
    }
}

/* A lookup table of two million unreadable entries followed by one good one:
 * the walk gives up at its thunk limit instead of scanning the whole table. */
static void pe_import_walk_is_bounded(void **state)
{
    (void)state;
    const size_t big = 16u << 20;
    uint8_t *fill = malloc(big);
    assert_non_null(fill);
    memset(fill, 0x01, big); /* thunks 0x0101010101010101: RVA 0x01010101, unmapped */
    const struct pegen_section secs[] = {
        {".text", code_bytes, 8, 0, PEGEN_SCN_CODE},
        {".data", fill, big, 0, PEGEN_SCN_DATA},
    };
    static const struct pegen_func fn[] = {{"A", 0, 0}};
    static const struct pegen_import imps[] = {{"k.dll", fn, 1}};
    struct pegen_pe pe = {
        .pe32plus = 1, .sections = secs, .nsections = 2, .imports = imps, .nimports = 1};
    struct pegen_layout lay;
    uint8_t *img = NULL;
    size_t len = 0;
    struct khx_exe exe;
    assert_int_equal(pegen_pe_build(&pe, &img, &len, &lay), 0);
    free(fill);

    uint8_t *desc = img + lay.sections[2].off;
    uint32_t oft = (uint32_t)(desc[0] | desc[1] << 8 | desc[2] << 16 | (uint32_t)desc[3] << 24);
    const uint8_t *ilt = img + lay.sections[2].off + (oft - lay.sections[2].addr);
    uint8_t *data = img + lay.sections[1].off;
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_string_equal(exe.imphash_str, "k.a");
    khx_exe_clear(&exe);

    /* Point the lookup table at .data, ending in the good entry. */
    memcpy(data + big - 16, ilt, 8);
    memset(data + big - 8, 0, 8);
    uint32_t rva = (uint32_t)lay.sections[1].addr;
    for (int i = 0; i < 4; i++)
        desc[i] = (uint8_t)(rva >> (8 * i));
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_null(exe.imphash_str);

    /* The same table, short enough, is walked to its end. */
    khx_exe_clear(&exe);
    rva += (uint32_t)(big - 16 - 8 * 1000);
    for (int i = 0; i < 4; i++)
        desc[i] = (uint8_t)(rva >> (8 * i));
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_string_equal(exe.imphash_str, "k.a");
    khx_exe_clear(&exe);
    free(img);
}

static void pe_without_imports_has_no_imphash(void **state)
{
    (void)state;
    static const struct pegen_section text[] = {{".text", code_bytes, 8, 0, PEGEN_SCN_CODE}};
    struct pegen_pe pe = {.sections = text, .nsections = 1};
    uint8_t *img = NULL;
    size_t len = 0;
    struct khx_exe exe;
    assert_int_equal(pegen_pe_build(&pe, &img, &len, NULL), 0);
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_null(exe.imphash_str);
    assert_int_equal(exe.nverinfo, 0);
    assert_null(exe.verinfo);
    khx_exe_clear(&exe);
    free(img);
}

/* Each VersionInfo String is recorded at its key, covering key, terminator,
 * padding, value and terminator (and the padding to the next String). */
static void pe_verinfo_strings(void **state)
{
    (void)state;
    static const char *const keys[] = {"CompanyName", "FileDescription", "InternalName"};
    static const char *const values[] = {"Khien Test", "Sample", "x"};
    for (int plus = 0; plus <= 1; plus++) {
        size_t len = 0;
        uint8_t *img = build_sample_pe(plus, NULL, &len);
        struct khx_exe exe;
        assert_int_equal(khx_pe_parse(img, len, &exe), 0);
        assert_int_equal(exe.nverinfo, 3);
        for (uint32_t i = 0; i < 3; i++) {
            const struct khx_verinfo *v = &exe.verinfo[i];
            assert_true(v->off + v->len <= len);
            /* Expected bytes: UTF-16LE key, 0000, pad to 4 (counted from the
             * String's start, 6 bytes before the key), value, 0000. */
            uint8_t want[256];
            size_t n = 0;
            for (const char *k = keys[i]; *k; k++) {
                want[n++] = (uint8_t)*k;
                want[n++] = 0;
            }
            want[n++] = 0;
            want[n++] = 0;
            while ((n + 6) % 4 != 0)
                want[n++] = 0;
            for (const char *k = values[i]; *k; k++) {
                want[n++] = (uint8_t)*k;
                want[n++] = 0;
            }
            want[n++] = 0;
            want[n++] = 0;
            assert_true(n <= v->len && v->len <= n + 2);
            assert_memory_equal(img + v->off, want, n);
        }
        khx_exe_clear(&exe);
        free(img);
    }
}

/* A resource tree whose name level points back at the root must not loop
 * and yields no strings; a huge entry count stops at the end of the file. */
static void pe_resource_loops_and_counts_are_bounded(void **state)
{
    (void)state;
    struct pegen_layout lay;
    size_t len = 0;
    uint8_t *img = build_sample_pe(0, &lay, &len);
    uint8_t *rsrc = img + lay.sections[lay.rsrc_index].off;
    struct khx_exe exe;

    /* Name directory (at +24) entry -> root directory. */
    uint8_t saved[4];
    memcpy(saved, rsrc + 24 + 20, 4);
    memcpy(rsrc + 24 + 20, "\0\0\0\x80", 4);
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_int_equal(exe.nverinfo, 0);
    assert_non_null(exe.imphash_str);
    khx_exe_clear(&exe);
    memcpy(rsrc + 24 + 20, saved, 4);

    /* Root with 0xffff named and 0xffff ID entries. */
    memset(rsrc + 12, 0xff, 4);
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_int_equal(exe.nverinfo, 0);
    khx_exe_clear(&exe);
    free(img);
}

static void pe_entry_point_in_headers_and_unmapped(void **state)
{
    (void)state;
    static const struct pegen_section text[] = {{".text", code_bytes, 8, 0, PEGEN_SCN_CODE}};
    struct pegen_pe pe = {.sections = text, .nsections = 1, .entry_section = -1, .entry = 0x40};
    uint8_t *img = NULL;
    size_t len = 0;
    struct khx_exe exe;

    assert_int_equal(pegen_pe_build(&pe, &img, &len, NULL), 0);
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_true(exe.ep_valid);
    assert_int_equal(exe.ep, 0x40);
    khx_exe_clear(&exe);
    free(img);

    pe.entry = 0x900000; /* past every section */
    assert_int_equal(pegen_pe_build(&pe, &img, &len, NULL), 0);
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_false(exe.ep_valid);
    assert_int_equal(exe.nsections, 1);
    khx_exe_clear(&exe);
    free(img);
}

static void pe_virtual_section_has_no_raw_data(void **state)
{
    (void)state;
    static const struct pegen_section secs[] = {
        {".text", code_bytes, 8, 0, PEGEN_SCN_CODE},
        {".bss", NULL, 0, 0x3000, PEGEN_SCN_BSS},
    };
    struct pegen_pe pe = {.sections = secs, .nsections = 2};
    uint8_t *img = NULL;
    size_t len = 0;
    struct khx_exe exe;
    assert_int_equal(pegen_pe_build(&pe, &img, &len, NULL), 0);
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_int_equal(exe.sections[1].raw_size, 0);
    assert_int_equal(exe.sections[1].vsize, 0x3000);
    khx_exe_clear(&exe);
    free(img);
}

/* Raw data running past the end of the file is clamped to it. */
static void pe_section_clamped_to_file(void **state)
{
    (void)state;
    struct pegen_layout lay;
    size_t len = 0;
    uint8_t *img = build_sample_pe(0, &lay, &len);
    struct khx_exe exe;
    size_t cut = (size_t)lay.sections[3].off + 100; /* inside .rsrc */
    assert_int_equal(khx_pe_parse(img, cut, &exe), 0);
    assert_int_equal(exe.sections[3].raw_off, lay.sections[3].off);
    assert_int_equal(exe.sections[3].raw_size, 100);
    assert_int_equal(exe.nverinfo, 0); /* the blob is no longer in the file */
    khx_exe_clear(&exe);

    cut = (size_t)lay.sections[3].off; /* .rsrc wholly outside */
    assert_int_equal(khx_pe_parse(img, cut, &exe), 0);
    assert_int_equal(exe.nsections, 4);
    assert_int_equal(exe.sections[3].raw_size, 0);
    khx_exe_clear(&exe);
    free(img);
}

/* NumberOfSections above 96: the first 96 are parsed. */
static void pe_section_count_limited_to_96(void **state)
{
    (void)state;
    static const struct pegen_section text[] = {{".text", code_bytes, 8, 0, PEGEN_SCN_CODE}};
    struct pegen_pe pe = {.sections = text, .nsections = 1};
    uint8_t *img = NULL;
    size_t len = 0;
    struct khx_exe exe;
    assert_int_equal(pegen_pe_build(&pe, &img, &len, NULL), 0);
    /* Room for a 200-entry table of empty headers after the real one. */
    size_t big = len + 200 * 40;
    uint8_t *grown = realloc(img, big);
    assert_non_null(grown);
    img = grown;
    memset(img + len, 0, big - len);
    img[0x40 + 6] = 200; /* NumberOfSections */
    img[0x40 + 7] = 0;
    assert_int_equal(khx_pe_parse(img, big, &exe), 0);
    assert_int_equal(exe.nsections, 96);
    assert_string_equal(exe.sections[0].name, ".text");
    khx_exe_clear(&exe);
    free(img);
}

static void pe_rejects_malformed_headers(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *img = build_sample_pe(0, NULL, &len);
    struct khx_exe exe;
    struct {
        size_t off;
        uint8_t val;
    } breaks[] = {
        {0, 'X'},         /* not MZ */
        {0x3c, 0xff},     /* e_lfanew past the end */
        {0x3c + 1, 0xff}, /* e_lfanew past the end */
        {0x40, 'Q'},      /* no PE signature */
        {0x46, 0},        /* NumberOfSections = 0 (with 0x47 already 0) */
        {0x54, 0x10},     /* SizeOfOptionalHeader too small */
        {0x58, 0x07},     /* optional header magic 0x107 */
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(breaks); i++) {
        uint8_t saved = img[breaks[i].off];
        img[breaks[i].off] = breaks[i].val;
        memset(&exe, 0x5a, sizeof(exe));
        assert_int_equal(khx_pe_parse(img, len, &exe), KH_EFORMAT);
        assert_int_equal(exe.type, KHX_EXE_NONE);
        assert_null(exe.sections);
        assert_null(exe.imphash_str);
        img[breaks[i].off] = saved;
    }
    /* Unchanged, it parses. */
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    khx_exe_clear(&exe);
    assert_int_equal(khx_pe_parse(NULL, 0, &exe), KH_EFORMAT);
    assert_int_equal(khx_pe_parse(img, len, NULL), KH_EINVAL);
    free(img);
}

/* Every prefix of a valid image parses or fails cleanly (ASan checks reads),
 * and so does every single-byte corruption of its headers and tables. */
static void pe_truncations_and_corruptions_are_safe(void **state)
{
    (void)state;
    for (int plus = 0; plus <= 1; plus++) {
        size_t len = 0;
        uint8_t *img = build_sample_pe(plus, NULL, &len);
        struct khx_exe exe;
        for (size_t cut = 0; cut <= len; cut++) {
            /* A copy of exactly `cut` bytes, so that ASan sees overreads. */
            uint8_t *p = malloc(cut ? cut : 1);
            assert_non_null(p);
            memcpy(p, img, cut);
            int r = khx_pe_parse(p, cut, &exe);
            assert_true(r == 0 || r == KH_EFORMAT);
            khx_exe_clear(&exe);
            free(p);
        }
        uint32_t seed = 12345;
        for (int iter = 0; iter < 20000; iter++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            uint8_t saved = img[pos];
            img[pos] = (uint8_t)(seed >> 16);
            int r = khx_pe_parse(img, len, &exe);
            assert_true(r == 0 || r == KH_EFORMAT);
            for (uint32_t i = 0; r == 0 && i < exe.nsections; i++)
                assert_true(exe.sections[i].raw_size == 0 ||
                            exe.sections[i].raw_off + exe.sections[i].raw_size <= len);
            for (uint32_t i = 0; r == 0 && i < exe.nverinfo; i++)
                assert_true(exe.verinfo[i].off + exe.verinfo[i].len <= len);
            assert_true(!exe.ep_valid || exe.ep < len);
            khx_exe_clear(&exe);
            img[pos] = saved;
        }
        free(img);
    }
}

static void exe_clear_is_null_safe(void **state)
{
    (void)state;
    struct khx_exe exe;
    memset(&exe, 0, sizeof(exe));
    khx_exe_clear(NULL);
    khx_exe_clear(&exe);
    khx_exe_clear(&exe);
    assert_int_equal(exe.type, KHX_EXE_NONE);
}

/* ---- PE: ClamAV's test files -------------------------------------------- */

static void pe_clam_exe_imphash(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *img = load_clam_exe(&len);
    struct khx_exe exe;
    char hex[33];
    if (img == NULL)
        return;
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_int_equal(exe.type, KHX_EXE_PE32);
    assert_non_null(exe.imphash_str);
    assert_string_equal(exe.imphash_str, "kernel32.exitprocess,user32.messageboxa");
    assert_int_equal(exe.imphash_len, 39);
    md5_hex(exe.imphash_str, exe.imphash_len, hex);
    assert_string_equal(hex, "98c88d882f01a3f6ac1e5f7dfd761624");
    khx_exe_clear(&exe);
    free(img);
}

static const char testexe_path[] = "clamav/files/pe_allmatch/test.exe";
static const char alert_sigs[] = "clamav/sigs/pe_allmatch/alert-sigs";

static void pe_testexe_imphash(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *img = read_shared(testexe_path, &len, "pe_testexe_imphash");
    struct khx_exe exe;
    char hex[33];
    if (img == NULL)
        return;
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_non_null(exe.imphash_str);
    assert_int_equal(exe.imphash_len, 1351);
    md5_hex(exe.imphash_str, exe.imphash_len, hex);
    assert_string_equal(hex, "ddeba1ab394d6c43225d83208b2d8ee3");
    khx_exe_clear(&exe);
    free(img);
}

/* Checks one "size:hash:name" line of an .mdb/.msb file against the sections:
 * some section with raw data must have that hash (and that size, unless the
 * size is "*"). Returns 1 when the line held a signature. */
static int check_section_sig(const uint8_t *img, const struct khx_exe *exe, const char *line,
                             size_t n)
{
    const char *f[5];
    size_t fl[5];
    size_t nf = khx_split(line, n, ':', f, fl, 4);
    if (nf < 3)
        return 0;
    int star = fl[0] == 1 && f[0][0] == '*';
    uint64_t want_size = 0;
    if (!star)
        assert_int_equal(khx_parse_u64(f[0], fl[0], &want_size), 0);
    char want[65];
    assert_true(fl[1] < sizeof(want));
    memcpy(want, f[1], fl[1]);
    want[fl[1]] = '\0';
    for (uint32_t i = 0; i < exe->nsections; i++) {
        const struct khx_section *s = &exe->sections[i];
        uint8_t d[32];
        char hex[65];
        if (s->raw_size == 0 || (!star && s->raw_size != want_size))
            continue;
        if (fl[1] == 32)
            assert_int_equal(khx_md5(img + s->raw_off, s->raw_size, d), 0);
        else if (fl[1] == 40)
            assert_int_equal(khx_sha1(img + s->raw_off, s->raw_size, d), 0);
        else
            assert_int_equal(khx_sha256(img + s->raw_off, s->raw_size, d), 0);
        khx_hex_encode(d, fl[1] / 2, hex);
        if (strcmp(hex, want) == 0)
            return 1;
    }
    fail_msg("no section matches %.*s", (int)n, line);
    return 0;
}

static void pe_testexe_section_hashes(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *img = read_shared(testexe_path, &len, "pe_testexe_section_hashes");
    struct khx_exe exe;
    int checked = 0;
    if (img == NULL)
        return;
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_int_equal(exe.nsections, 8);
    /* Every .mdb/.msb file of the set holds one signature for test.exe. */
    char pattern[4096];
    glob_t g;
    snprintf(pattern, sizeof(pattern), "%s/%s/*.[m][ds][b]", tu_shared_data(), alert_sigs);
    assert_int_equal(glob(pattern, 0, NULL, &g), 0);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        size_t slen = 0;
        uint8_t *sig = NULL;
        assert_int_equal(khx_read_file(g.gl_pathv[i], 1 << 20, &sig, &slen), 0);
        struct khx_lines it;
        const char *line;
        size_t n;
        khx_lines_init(&it, sig, slen);
        while (khx_lines_next(&it, &line, &n))
            checked += check_section_sig(img, &exe, line, n);
        free(sig);
    }
    assert_true(g.gl_pathc >= 40);
    assert_int_equal(checked, (int)g.gl_pathc);
    globfree(&g);
    khx_exe_clear(&exe);
    free(img);
}

/* The 8 "VI" signatures of pe_allmatch start exactly at a recorded String
 * entry and fit inside it. */
static void pe_testexe_verinfo_matches_vi_sigs(void **state)
{
    (void)state;
    static const char *const files[] = {"NDB_01of22_companyname",    "NDB_02of22_filedescription",
                                        "NDB_03of22_fileversion",    "NDB_04of22_internalname",
                                        "NDB_05of22_legalcopyright", "NDB_06of22_originalfilename",
                                        "NDB_07of22_productname",    "NDB_08of22_productversion"};
    size_t len = 0;
    uint8_t *img = read_shared(testexe_path, &len, "pe_testexe_verinfo");
    struct khx_exe exe;
    if (img == NULL)
        return;
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_int_equal(exe.nverinfo, 8);
    for (size_t i = 0; i < KHX_ARRAY_LEN(files); i++) {
        char rel[512];
        snprintf(rel, sizeof(rel), "%s/Test.GenSig.%s.UNOFFICIAL.ndb", alert_sigs, files[i]);
        size_t slen = 0;
        uint8_t *sig = read_shared(rel, &slen, "pe_testexe_verinfo");
        assert_non_null(sig);
        const char *f[5];
        size_t fl[5];
        struct khx_lines it;
        const char *line;
        size_t n;
        khx_lines_init(&it, sig, slen);
        assert_true(khx_lines_next(&it, &line, &n));
        assert_int_equal(khx_split(line, n, ':', f, fl, 4), 4);
        assert_int_equal(fl[2], 2);
        assert_memory_equal(f[2], "VI", 2);
        size_t plen = fl[3] / 2;
        uint8_t *pat = malloc(plen);
        assert_non_null(pat);
        assert_int_equal(khx_hex_decode(f[3], plen, pat), 0);
        int found = 0;
        for (uint32_t v = 0; v < exe.nverinfo && !found; v++) {
            const struct khx_verinfo *e = &exe.verinfo[v];
            found = plen <= e->len && memcmp(img + e->off, pat, plen) == 0;
        }
        if (!found)
            fail_msg("VI signature %s is not at a VersionInfo entry", files[i]);
        free(pat);
        free(sig);
    }
    khx_exe_clear(&exe);
    free(img);
}

/* The EP- and section-anchored ndb signatures of pe_allmatch locate their
 * string where our EP and section 1 offsets say. */
static void pe_testexe_entry_point_and_sections(void **state)
{
    (void)state;
    static const char pat[] = "CLAMAV_TEST_PRINTF_STRING_ffa8_3994_1788_e8b6";
    size_t len = 0;
    uint8_t *img = read_shared(testexe_path, &len, "pe_testexe_entry_point");
    struct khx_exe exe;
    if (img == NULL)
        return;
    assert_int_equal(khx_pe_parse(img, len, &exe), 0);
    assert_true(exe.ep_valid);
    assert_int_equal(exe.ep, 0x8c0); /* RVA 0x14c0 in .text (RVA 0x1000, raw 0x400) */
    /* EP+69320,69365 and S1+36232,36277: the match starts in that window. */
    const uint64_t starts[2] = {exe.ep + 69320, exe.sections[1].raw_off + 36232};
    const uint64_t spans[2] = {69365, 36277};
    for (int k = 0; k < 2; k++) {
        assert_true(starts[k] + spans[k] + sizeof(pat) <= len);
        assert_non_null(memmem(img + starts[k], spans[k] + sizeof(pat) - 1, pat, sizeof(pat) - 1));
    }
    khx_exe_clear(&exe);
    free(img);
}

/* ---- ELF ---------------------------------------------------------------- */

static uint8_t *build_sample_elf(int is64, int big, int no_sh, struct pegen_layout *lay,
                                 size_t *len)
{
    static const uint8_t rodata[] = "read-only bytes";
    const struct pegen_elf_section secs[] = {
        {".text", PEGEN_SHT_PROGBITS, PEGEN_SHF_ALLOC | PEGEN_SHF_EXECINSTR, 0, code_bytes,
         sizeof(code_bytes)},
        {".rodata", PEGEN_SHT_PROGBITS, PEGEN_SHF_ALLOC, 0, rodata, sizeof(rodata)},
        {".bss", PEGEN_SHT_NOBITS, PEGEN_SHF_ALLOC | PEGEN_SHF_WRITE, 0, NULL, 4096},
        {".comment.long", PEGEN_SHT_PROGBITS, 0, 0, "GCC", 4},
    };
    struct pegen_elf d = {.elf64 = is64,
                          .big_endian = big,
                          .sections = secs,
                          .nsections = KHX_ARRAY_LEN(secs),
                          .entry_section = 0,
                          .entry = 2,
                          .omit_section_headers = no_sh};
    uint8_t *img = NULL;
    assert_int_equal(pegen_elf_build(&d, &img, len, lay), 0);
    return img;
}

static void elf_all_classes_and_byte_orders(void **state)
{
    (void)state;
    for (int is64 = 0; is64 <= 1; is64++) {
        for (int big = 0; big <= 1; big++) {
            struct pegen_layout lay;
            size_t len = 0;
            uint8_t *img = build_sample_elf(is64, big, 0, &lay, &len);
            struct khx_exe exe;
            assert_int_equal(khx_elf_parse(img, len, &exe), 0);
            assert_int_equal(exe.type, is64 ? KHX_EXE_ELF64 : KHX_EXE_ELF32);
            assert_true(exe.ep_valid);
            assert_int_equal(exe.ep, lay.entry_off);
            assert_int_equal(img[exe.ep], code_bytes[2]);
            /* null, 4 caller sections, .shstrtab */
            assert_int_equal(exe.nsections, 6);
            assert_string_equal(exe.sections[0].name, "");
            assert_string_equal(exe.sections[1].name, ".text");
            assert_string_equal(exe.sections[2].name, ".rodata");
            assert_string_equal(exe.sections[3].name, ".bss");
            assert_string_equal(exe.sections[4].name, ".comment"); /* cut to 8 bytes */
            assert_string_equal(exe.sections[5].name, ".shstrta");
            for (size_t i = 0; i < lay.nsections; i++) {
                assert_int_equal(exe.sections[i + 1].rva, lay.sections[i].addr);
                assert_int_equal(exe.sections[i + 1].raw_off, lay.sections[i].off);
                assert_int_equal(exe.sections[i + 1].raw_size, lay.sections[i].size);
            }
            /* SHT_NOBITS: memory size but no file data. */
            assert_int_equal(exe.sections[3].raw_size, 0);
            assert_int_equal(exe.sections[3].vsize, 4096);
            khx_exe_clear(&exe);
            free(img);
        }
    }
}

static void elf_without_section_headers_uses_segments(void **state)
{
    (void)state;
    struct pegen_layout lay;
    size_t len = 0;
    uint8_t *img = build_sample_elf(1, 0, 1, &lay, &len);
    struct khx_exe exe;
    assert_int_equal(khx_elf_parse(img, len, &exe), 0);
    assert_int_equal(exe.nsections, 3); /* the three SHF_ALLOC sections' PT_LOADs */
    assert_int_equal(exe.sections[0].raw_off, lay.sections[0].off);
    assert_int_equal(exe.sections[0].raw_size, sizeof(code_bytes));
    assert_int_equal(exe.sections[2].raw_size, 0);
    assert_int_equal(exe.sections[2].vsize, 4096);
    assert_true(exe.ep_valid);
    assert_int_equal(exe.ep, lay.entry_off);
    khx_exe_clear(&exe);
    free(img);
}

static void elf_entry_point_outside_segments(void **state)
{
    (void)state;
    const struct pegen_elf_section secs[] = {
        {".text", 0, PEGEN_SHF_ALLOC | PEGEN_SHF_EXECINSTR, 0, code_bytes, sizeof(code_bytes)},
    };
    struct pegen_elf d = {
        .elf64 = 1, .sections = secs, .nsections = 1, .entry_section = -1, .entry = 0x1234};
    uint8_t *img = NULL;
    size_t len = 0;
    struct khx_exe exe;
    assert_int_equal(pegen_elf_build(&d, &img, &len, NULL), 0);
    assert_int_equal(khx_elf_parse(img, len, &exe), 0);
    assert_false(exe.ep_valid);
    assert_int_equal(exe.nsections, 3);
    khx_exe_clear(&exe);
    free(img);
}

static void elf_rejects_bad_ident(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *img = build_sample_elf(1, 0, 0, NULL, &len);
    struct khx_exe exe;
    const size_t offs[] = {0, 3, 4, 5};
    for (size_t i = 0; i < KHX_ARRAY_LEN(offs); i++) {
        uint8_t saved = img[offs[i]];
        img[offs[i]] = 9;
        assert_int_equal(khx_elf_parse(img, len, &exe), KH_EFORMAT);
        assert_int_equal(exe.type, KHX_EXE_NONE);
        img[offs[i]] = saved;
    }
    assert_int_equal(khx_elf_parse(img, 40, &exe), KH_EFORMAT); /* shorter than the header */
    assert_int_equal(khx_elf_parse(NULL, 0, &exe), KH_EFORMAT);
    assert_int_equal(khx_elf_parse(img, len, NULL), KH_EINVAL);
    /* A PE is not an ELF and vice versa. */
    assert_int_equal(khx_pe_parse(img, len, &exe), KH_EFORMAT);
    free(img);
}

/* A section table that runs off the end of the file is ignored, not trusted. */
static void elf_truncations_and_corruptions_are_safe(void **state)
{
    (void)state;
    for (int v = 0; v < 4; v++) {
        size_t len = 0;
        uint8_t *img = build_sample_elf(v & 1, (v >> 1) & 1, 0, NULL, &len);
        struct khx_exe exe;
        for (size_t cut = 0; cut <= len; cut++) {
            uint8_t *p = malloc(cut ? cut : 1);
            assert_non_null(p);
            memcpy(p, img, cut);
            int r = khx_elf_parse(p, cut, &exe);
            assert_true(r == 0 || r == KH_EFORMAT);
            /* The section table is at the very end: once cut, the PT_LOAD
             * segments stand in for sections. */
            if (r == 0 && cut < len)
                assert_true(exe.nsections == 0 || exe.nsections == 3);
            khx_exe_clear(&exe);
            free(p);
        }
        uint32_t seed = 777u + (uint32_t)v;
        for (int iter = 0; iter < 20000; iter++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            uint8_t saved = img[pos];
            img[pos] = (uint8_t)(seed >> 16);
            int r = khx_elf_parse(img, len, &exe);
            assert_true(r == 0 || r == KH_EFORMAT);
            for (uint32_t i = 0; r == 0 && i < exe.nsections; i++)
                assert_true(exe.sections[i].raw_size == 0 ||
                            exe.sections[i].raw_off + exe.sections[i].raw_size <= len);
            assert_true(!exe.ep_valid || exe.ep < len);
            khx_exe_clear(&exe);
            img[pos] = saved;
        }
        free(img);
    }
}

static void pegen_rejects_bad_descriptions(void **state)
{
    (void)state;
    static const struct pegen_section text[] = {{".text", code_bytes, 8, 0, PEGEN_SCN_CODE}};
    uint8_t *img = NULL;
    size_t len = 0;
    struct pegen_pe none = {0};
    struct pegen_pe bad_ep = {.sections = text, .nsections = 1, .entry_section = 1};
    struct pegen_elf bad_elf = {.nsections = PEGEN_MAX_SECTIONS + 1};
    assert_int_equal(pegen_pe_build(&none, &img, &len, NULL), KH_EINVAL);
    assert_int_equal(pegen_pe_build(&bad_ep, &img, &len, NULL), KH_EINVAL);
    assert_int_equal(pegen_pe_build(NULL, &img, &len, NULL), KH_EINVAL);
    assert_int_equal(pegen_elf_build(&bad_elf, &img, &len, NULL), KH_EINVAL);
    assert_null(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pe32_sections_and_entry_point),
        cmocka_unit_test(pe32plus_sections_and_entry_point),
        cmocka_unit_test(pe_imphash_by_name),
        cmocka_unit_test(pe_imphash_ordinals_and_extensions),
        cmocka_unit_test(pe_imphash_invalid_name_gives_none),
        cmocka_unit_test(pe_import_walk_is_bounded),
        cmocka_unit_test(pe_without_imports_has_no_imphash),
        cmocka_unit_test(pe_verinfo_strings),
        cmocka_unit_test(pe_resource_loops_and_counts_are_bounded),
        cmocka_unit_test(pe_entry_point_in_headers_and_unmapped),
        cmocka_unit_test(pe_virtual_section_has_no_raw_data),
        cmocka_unit_test(pe_section_clamped_to_file),
        cmocka_unit_test(pe_section_count_limited_to_96),
        cmocka_unit_test(pe_rejects_malformed_headers),
        cmocka_unit_test(pe_truncations_and_corruptions_are_safe),
        cmocka_unit_test(exe_clear_is_null_safe),
        cmocka_unit_test(pe_clam_exe_imphash),
        cmocka_unit_test(pe_testexe_imphash),
        cmocka_unit_test(pe_testexe_section_hashes),
        cmocka_unit_test(pe_testexe_verinfo_matches_vi_sigs),
        cmocka_unit_test(pe_testexe_entry_point_and_sections),
        cmocka_unit_test(elf_all_classes_and_byte_orders),
        cmocka_unit_test(elf_without_section_headers_uses_segments),
        cmocka_unit_test(elf_entry_point_outside_segments),
        cmocka_unit_test(elf_rejects_bad_ident),
        cmocka_unit_test(elf_truncations_and_corruptions_are_safe),
        cmocka_unit_test(pegen_rejects_bad_descriptions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
