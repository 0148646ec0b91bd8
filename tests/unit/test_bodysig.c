/*
 * Tests for lib/engine/bodysig.c: ClamAV body patterns, offsets and
 * modifiers. Every pattern that parses is also compiled with Hyperscan the
 * way the engine will compile it (HS_FLAG_DOTALL, plus HS_FLAG_PREFILTER when
 * the expression is not exact), and the Hyperscan reports are checked against
 * khx_body_find: a true match end must always be reported, and for exact
 * expressions an anchored Hyperscan scan from every start is an independent
 * oracle for the matcher program.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hs/hs.h>

#include "bodysig.h"
#include "khx.h"
#include "testutil.h"

/* ------------------------------------------------------------------------ */
/* Hyperscan helpers                                                        */
/* ------------------------------------------------------------------------ */

#define MAX_ENDS 4096

struct ends {
    size_t v[MAX_ENDS]; /* the first reports */
    size_t n;
    size_t min;  /* the smallest report, SIZE_MAX if none */
    size_t want; /* a report to look out for, however many come before it */
    int saw_want;
};

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                    void *ctx)
{
    struct ends *e = ctx;
    (void)id;
    (void)from;
    (void)flags;
    if (e->n < MAX_ENDS)
        e->v[e->n] = (size_t)to;
    e->n++;
    if ((size_t)to < e->min)
        e->min = (size_t)to;
    if ((size_t)to == e->want)
        e->saw_want = 1;
    return 0;
}

static hs_database_t *hs_build(const char *re, int exact, int anchored)
{
    hs_database_t *db = NULL;
    hs_compile_error_t *ce = NULL;
    size_t n = strlen(re) + 8;
    char *expr = malloc(n);
    assert_non_null(expr);
    snprintf(expr, n, anchored ? "^(?:%s)" : "%s", re);
    unsigned flags = HS_FLAG_DOTALL | (exact ? 0 : HS_FLAG_PREFILTER);
    if (hs_compile(expr, flags, HS_MODE_BLOCK, NULL, &db, &ce) != HS_SUCCESS) {
        fail_msg("Hyperscan rejects '%s': %s", expr, ce ? ce->message : "?");
    }
    free(expr);
    return db;
}

/* One scratch space serves every database of this test program. */
static hs_scratch_t *scratch;

static void hs_run(hs_database_t *db, const void *data, size_t len, struct ends *e)
{
    static const char empty[1];
    e->n = 0;
    e->min = SIZE_MAX;
    e->saw_want = 0;
    assert_int_equal(hs_alloc_scratch(db, &scratch), HS_SUCCESS);
    assert_int_equal(hs_scan(db, len ? data : empty, (unsigned)len, 0, scratch, on_match, e),
                     HS_SUCCESS);
}

static size_t ends_min(const struct ends *e)
{
    return e->min;
}

/* ------------------------------------------------------------------------ */
/* Checking one pattern                                                     */
/* ------------------------------------------------------------------------ */

static void parse_ok(const char *pat, unsigned mods, struct khx_body *b)
{
    char err[256];
    int r = khx_body_parse(pat, strlen(pat), mods, b, err, sizeof(err));
    if (r != 0)
        fail_msg("'%s' was rejected: %s", pat, err);
    assert_int_equal(khx_body_prog_check(b->prog, b->prog_len), 0);
    assert_non_null(b->regex);
}

/* For an exact expression, Hyperscan anchored at each start s gives the ends
 * of the matches that start at s: the earliest must be what khx_body_find
 * returns for the window [s, s]. The unanchored scan gives all ends: a match
 * ending at or before e exists exactly when the smallest report is <= e. */
static void oracle_dbs(const struct khx_body *b, hs_database_t *anch, hs_database_t *all,
                       const uint8_t *data, size_t len)
{
    struct ends he = {.want = SIZE_MAX};
    size_t best_s = SIZE_MAX, best_e = SIZE_MAX;
    size_t *minend = calloc(len + 1, sizeof(*minend));
    assert_non_null(minend);

    for (size_t s = 0; s <= len; s++) {
        size_t fs = 0, fe = 0;
        hs_run(anch, data + s, len - s, &he);
        minend[s] = he.n ? s + ends_min(&he) : SIZE_MAX;
        int f = khx_body_find(b->prog, b->prog_len, data, len, s, s, len, &fs, &fe);
        if (he.n == 0) {
            if (f != 0)
                fail_msg("'%s': find says [%zu,%zu) but Hyperscan has no match at %zu", b->regex,
                         fs, fe, s);
        } else {
            if (f != 1 || fs != s || fe != s + ends_min(&he))
                fail_msg("'%s' at %zu: find=%d [%zu,%zu), Hyperscan's earliest end %zu", b->regex,
                         s, f, fs, fe, s + ends_min(&he));
            if (best_s == SIZE_MAX) {
                best_s = s;
                best_e = s + ends_min(&he);
            }
        }
    }
    size_t fs = 0, fe = 0;
    int f = khx_body_find(b->prog, b->prog_len, data, len, 0, len, len, &fs, &fe);
    assert_int_equal(f, best_s != SIZE_MAX);
    if (f == 1) {
        assert_int_equal(fs, best_s);
        assert_int_equal(fe, best_e);
    }
    hs_run(all, data, len, &he);
    size_t first = ends_min(&he);
    for (size_t e = 0; e <= len; e++) {
        f = khx_body_find(b->prog, b->prog_len, data, len, 0, len, e, &fs, &fe);
        assert_int_equal(f, first <= e);
    }
    /* Arbitrary windows: the first start in [lo, hi] whose earliest end fits. */
    for (unsigned k = 0; k < 40; k++) {
        size_t lo = (size_t)rand() % (len + 1), hi = lo + (size_t)rand() % (len + 2 - lo);
        size_t em = (size_t)rand() % (len + 2), want = SIZE_MAX;
        for (size_t st = lo; st <= hi && st <= len && want == SIZE_MAX; st++)
            if (minend[st] <= em)
                want = st;
        f = khx_body_find(b->prog, b->prog_len, data, len, lo, hi, em, &fs, &fe);
        if (f != (want != SIZE_MAX) || (f == 1 && (fs != want || fe != minend[want])))
            fail_msg("'%s' window [%zu,%zu] end %zu: find=%d [%zu,%zu), expected start %zu",
                     b->regex, lo, hi, em, f, fs, fe, want);
    }
    free(minend);
}

static void oracle(const struct khx_body *b, const uint8_t *data, size_t len)
{
    hs_database_t *anch = hs_build(b->regex, 1, 1), *all = hs_build(b->regex, 1, 0);
    oracle_dbs(b, anch, all, data, len);
    hs_free_database(anch);
    hs_free_database(all);
}

/* Parses pat, checks that Hyperscan compiles its expression, and that the
 * whole-buffer search finds [s, e) (or nothing when s < 0). */
static void check_len(const char *pat, unsigned mods, const void *vdata, size_t len, long s, long e)
{
    const uint8_t *data = vdata;
    struct khx_body b;
    struct ends he = {.want = SIZE_MAX};
    size_t fs = 0, fe = 0;

    parse_ok(pat, mods, &b);
    hs_database_t *db = hs_build(b.regex, b.exact, 0);
    he.want = s >= 0 ? (size_t)e : SIZE_MAX;
    hs_run(db, data, len, &he);
    int f = khx_body_find(b.prog, b.prog_len, data, len, 0, len, len, &fs, &fe);
    if (s >= 0) {
        if (f != 1 || (long)fs != s || (long)fe != e)
            fail_msg("'%s' (re %s): expected [%ld,%ld), find=%d [%zu,%zu)", pat, b.regex, s, e, f,
                     fs, fe);
        if (!he.saw_want)
            fail_msg("'%s': Hyperscan (%s) does not report the end %ld", pat, b.regex, e);
    } else {
        if (f != 0)
            fail_msg("'%s': expected no match, find=%d [%zu,%zu)", pat, f, fs, fe);
        if (b.exact && he.n != 0)
            fail_msg("'%s': exact expression %s reports %zu on a non-match", pat, b.regex, he.v[0]);
    }
    if (b.exact)
        oracle(&b, data, len);
    hs_free_database(db);
    khx_body_clear(&b);
}

static void check(const char *pat, unsigned mods, const char *data, long s, long e)
{
    check_len(pat, mods, data, strlen(data), s, e);
}

static void rejects(const char *pat, unsigned mods, const char *want)
{
    struct khx_body b;
    char err[256];
    int r = khx_body_parse(pat, strlen(pat), mods, &b, err, sizeof(err));
    if (r != KH_EFORMAT)
        fail_msg("'%s' was accepted (r=%d)", pat, r);
    if (strstr(err, want) == NULL)
        fail_msg("'%s': message '%s' lacks '%s'", pat, err, want);
    assert_null(b.prog);
    assert_null(b.regex);
}

static int exact_of(const char *pat, unsigned mods)
{
    struct khx_body b;
    parse_ok(pat, mods, &b);
    int x = b.exact;
    khx_body_clear(&b);
    return x;
}

/* ------------------------------------------------------------------------ */
/* Syntax elements                                                          */
/* ------------------------------------------------------------------------ */

static void body_literal_bytes(void **state)
{
    (void)state;
    check("68656c6c6f", 0, "say hello", 4, 9);
    check("68656C6C6F", 0, "say hello", 4, 9);
    check("68656c6c6f", 0, "say hellO", -1, -1);
    check_len("00ff0001", 0, "\x01\x00\xff\x00\x01", 5, 1, 5);
    assert_int_equal(exact_of("68656c6c6f", 0), 1);
}

static void body_wildcard_any_byte(void **state)
{
    (void)state;
    check("6162??6364", 0, "xxabZcd", 2, 7);
    check("6162??6364", 0, "xxabcd", -1, -1);
    check("6162????6364", 0, "ab12cd", 0, 6);
}

static void body_nibble_high(void **state)
{
    (void)state;
    check("61624?", 0, "abJ", 0, 3);   /* J = 0x4a */
    check("61624?", 0, "abZ", -1, -1); /* Z = 0x5a */
}

static void body_nibble_low(void **state)
{
    (void)state;
    check("6162?a", 0, "abZ", 0, 3); /* Z = 0x5a */
    check("6162?a", 0, "abY", -1, -1);
}

static void body_star_gap(void **state)
{
    (void)state;
    check("6162*6364", 0, "xxab---------cd", 2, 15);
    check("6162*6364", 0, "xxabcd", 2, 6);
    check("6162*6364", 0, "cdxxab", -1, -1);
}

static void body_fixed_gap(void **state)
{
    (void)state;
    check("6162{2}6364", 0, "ab12cd", 0, 6);
    check("6162{2}6364", 0, "ab1cd ab123cd", -1, -1);
    /* {n} with n >= 128 splits the pattern (both sides need two bytes). */
    char big[300];
    memset(big, '-', sizeof(big));
    memcpy(big, "ab", 2);
    memcpy(big + 2 + 200, "cd", 2);
    check_len("6162{200}6364", 0, big, 204, 0, 204);
    check_len("6162{201}6364", 0, big, 204, -1, -1);
}

static void body_gap_at_most(void **state)
{
    (void)state;
    check("6162{-3}6364", 0, "ab123cd", 0, 7);
    check("6162{-3}6364", 0, "abcd", 0, 4);
    check("6162{-3}6364", 0, "ab1234cd", -1, -1);
}

static void body_gap_at_least(void **state)
{
    (void)state;
    check("6162{3-}6364", 0, "ab123456cd", 0, 10);
    check("6162{3-}6364", 0, "ab12cd", -1, -1);
}

static void body_gap_range(void **state)
{
    (void)state;
    check("6162{2-4}6364", 0, "ab123cd", 0, 7);
    check("6162{2-4}6364", 0, "ab1cd ab12345cd", -1, -1);
    check("6162{3-3}6364", 0, "ab123cd", 0, 7);
}

static void body_bracket_range(void **state)
{
    (void)state;
    /* HEXSIG[x-y]aa and aa[x-y]HEXSIG. */
    check("616263[1-3]7a", 0, "abc12z", 0, 6);
    check("616263[1-3]7a", 0, "abcz abc1234z", -1, -1);
    check("7a[0-2]616263", 0, "z1abc", 0, 5);
    check("7a[0-2]616263", 0, "z123abc", -1, -1);
}

static void body_alt_single_byte(void **state)
{
    (void)state;
    check("6162(63|64)", 0, "abd", 0, 3);
    check("6162(63|64)", 0, "abe", -1, -1);
}

static void body_alt_negated_single_byte(void **state)
{
    (void)state;
    check("6162!(63|64)", 0, "abcabdabe", 6, 9);
    check("6162!(63|64)", 0, "abcabd", -1, -1);
}

static void body_alt_multibyte(void **state)
{
    (void)state;
    check("6162(6364|6566)", 0, "abef", 0, 4);
    check("6162(6364|6566)", 0, "abed abcf", -1, -1);
}

static void body_alt_negated_multibyte(void **state)
{
    (void)state;
    check("!(6162|6364)6566", 0, "abefcdefxyef", 8, 12);
    check("!(6162|6364)6566", 0, "abefcdef", -1, -1);
    check("6566!(616263|646566)", 0, "efabd", 0, 5);
    check("6566!(616263|646566)", 0, "efabcxefdef", -1, -1);
    /* The negation has its own exact expression, not a widened one. */
    assert_int_equal(exact_of("!(6162|6364)6566", 0), 1);
}

static void body_alt_generic(void **state)
{
    (void)state;
    /* Variable lengths, nibble wildcards and a bounded range inside. */
    check("6162(63|6465|7?{1-2}7a)6162", 0, "abdeab", 0, 6);
    check("6162(63|6465|7?{1-2}7a)6162", 0, "abp12zab", 0, 8);
    check("6162(63|6465|7?{1-2}7a)6162", 0, "abp123zab abdab", -1, -1);
    /* Nested alternates. */
    check("6162(63(64|65)|66)6768", 0, "abcegh", 0, 6);
    check("6162(63(64|65)|66)6768", 0, "abcfgh", -1, -1);
}

/* (B) checks the neighbouring byte at the edge of a subpattern (file edges
 * count) and consumes one boundary byte inside it. */
static void body_class_boundary(void **state)
{
    (void)state;
    check("(B)68656c6c6f(B)", 0, "say hello there", 4, 9);
    check("(B)68656c6c6f(B)", 0, "hello", 0, 5);
    check("(B)68656c6c6f(B)", 0, "sayhello there", -1, -1);
    check("(B)68656c6c6f(B)", 0, "say hellothere", -1, -1);
    check("6869(B)7468657265", 0, "hi there", 0, 8);
    check("6869(B)7468657265", 0, "hixthere", -1, -1);
    check("!(B)68656c6c6f", 0, "sayhello", 3, 8);
    check("!(B)68656c6c6f", 0, "say hello", -1, -1);
    assert_int_equal(exact_of("(B)68656c6c6f", 0), 0);
    assert_int_equal(exact_of("6869(B)7468657265", 0), 1);
}

/* (L): a line edge (after LF or CR, before LF or CR, or a file edge), or
 * inside a pattern one line break (CR LF, LF or CR). */
static void body_class_line(void **state)
{
    (void)state;
    check("(L)6b6579", 0, "x\nkey", 2, 5);
    check("(L)6b6579", 0, "key", 0, 3);
    check("(L)6b6579", 0, "x key", -1, -1);
    check("6b6579(L)", 0, "key\r\nx", 0, 3);
    check("6b6579(L)", 0, "keyx", -1, -1);
    check("6b6579(L)7661", 0, "key\r\nva", 0, 7);
    check("6b6579(L)7661", 0, "key\nva", 0, 6);
    check("6b6579(L)7661", 0, "key\rva", 0, 6);
    check("6b6579(L)7661", 0, "key va", -1, -1);
    check("6b6579!(L)7661", 0, "key va", 0, 6);
    check("6b6579!(L)7661", 0, "key\nva", -1, -1);
}

/* (W): one non-alphanumeric byte inside a pattern, a non-alphanumeric
 * neighbour (or file edge) at its edge. */
static void body_class_nonalnum(void **state)
{
    (void)state;
    check("6a6a6a(W)6a6a", 0, "jjj&jj", 0, 6);
    check("6a6a6a(W)6a6a", 0, "jjjxjj", -1, -1);
    check("6b6b6b6b6b(W)", 0, "kkkkk", 0, 5);
    check("(W)6c6c6c6c6c", 0, "slllll", -1, -1);
    check("6d6d6d6d6d(W)", 0, "mmmmme", -1, -1);
    check("6a6a6a!(W)6a6a", 0, "jjjxjj", 0, 6);
    check("6a6a6a!(W)6a6a", 0, "jjj&jj", -1, -1);
}

/* ------------------------------------------------------------------------ */
/* Modifiers                                                                */
/* ------------------------------------------------------------------------ */

static void body_mod_nocase(void **state)
{
    (void)state;
    check("68656c6c6f", KHX_MOD_NOCASE, "say HeLLo", 4, 9);
    check("68656c6c6f", KHX_MOD_NOCASE, "say HeLLa", -1, -1);
    check("6162(63|64)", KHX_MOD_NOCASE, "ABD", 0, 3);
    check("!(6162|6364)6566", KHX_MOD_NOCASE, "ABEFxyef", 4, 8);
    check("!(6162|6364)6566", KHX_MOD_NOCASE, "ABEF", -1, -1);
}

static void body_mod_wide(void **state)
{
    (void)state;
    static const char w[] = "x\0h\0e\0l\0l\0o\0";
    check_len("68656c6c6f", KHX_MOD_WIDE, w, sizeof(w) - 1, 2, 12);
    check("68656c6c6f", KHX_MOD_WIDE, "hello", -1, -1);
    /* Wildcards stay one byte wide: ?? becomes ?? 00. */
    static const char w2[] = "a\0b\0Z\0c\0";
    check_len("6162??63", KHX_MOD_WIDE, w2, sizeof(w2) - 1, 0, 8);
    check_len("6162(63|64)", KHX_MOD_WIDE, "a\0b\0d\0", 6, 0, 6);
}

static void body_mod_wide_ascii(void **state)
{
    (void)state;
    static const char w[] = "h\0e\0l\0l\0o\0";
    check_len("68656c6c6f", KHX_MOD_WIDE | KHX_MOD_ASCII, w, sizeof(w) - 1, 0, 10);
    check("68656c6c6f", KHX_MOD_WIDE | KHX_MOD_ASCII, "hello", 0, 5);
    check("68656c6c6f", KHX_MOD_ASCII, "hello", 0, 5);
    check_len("68656c6c6f", KHX_MOD_ASCII, w, sizeof(w) - 1, -1, -1);
    struct khx_body b;
    parse_ok("68656c6c6f", KHX_MOD_WIDE | KHX_MOD_ASCII, &b);
    assert_int_equal(b.minlen, 5);
    assert_int_equal(b.maxlen, 10);
    khx_body_clear(&b);
}

static void body_mod_fullword(void **state)
{
    (void)state;
    check("6e6e6e6e6e", KHX_MOD_NOCASE | KHX_MOD_FULLWORD, "nNnNn", 0, 5);
    check("6f6f6f6f6f", KHX_MOD_NOCASE | KHX_MOD_FULLWORD, "soOoOo", -1, -1);
    check("7070707070", KHX_MOD_NOCASE | KHX_MOD_FULLWORD, "pPpPpe", -1, -1);
    check("68656c6c6f", KHX_MOD_FULLWORD, "(hello)", 1, 6);
    check("68656c6c6f", KHX_MOD_FULLWORD, "hello_", 0, 5);
    /* Wide fullword: the neighbour is a wide character. */
    static const char w1[] = "-\0h\0i\0g\0h\0-\0";
    static const char w2[] = "x\0h\0i\0g\0h\0-\0";
    check_len("68696768", KHX_MOD_WIDE | KHX_MOD_FULLWORD, w1, sizeof(w1) - 1, 2, 10);
    check_len("68696768", KHX_MOD_WIDE | KHX_MOD_FULLWORD, w2, sizeof(w2) - 1, -1, -1);
    assert_int_equal(exact_of("68656c6c6f", KHX_MOD_FULLWORD), 0);
}

static void mods_parse_letters(void **state)
{
    (void)state;
    unsigned m = 99;
    char err[128];
    assert_int_equal(khx_mods_parse("iwfa", 4, &m, err, sizeof(err)), 0);
    assert_int_equal(m, KHX_MOD_NOCASE | KHX_MOD_WIDE | KHX_MOD_FULLWORD | KHX_MOD_ASCII);
    assert_int_equal(khx_mods_parse("", 0, &m, err, sizeof(err)), 0);
    assert_int_equal(m, 0);
    assert_int_equal(khx_mods_parse("ix", 2, &m, err, sizeof(err)), KH_EFORMAT);
    assert_non_null(strstr(err, "'x'"));
    assert_int_equal(khx_mods_parse("I", 1, &m, err, sizeof(err)), KH_EFORMAT);
}

/* ------------------------------------------------------------------------ */
/* Lengths, exactness and the search window                                 */
/* ------------------------------------------------------------------------ */

static void body_minlen_maxlen(void **state)
{
    (void)state;
    static const struct {
        const char *pat;
        unsigned mods;
        uint32_t mn, mx;
    } cases[] = {
        {"6162636465", 0, 5, 5},
        {"6162{2-4}6364", 0, 6, 8},
        {"6162*6364", 0, 4, UINT32_MAX},
        {"6162{5-}6364", 0, 9, UINT32_MAX},
        {"6162{-5}6364", 0, 4, 9},
        {"6162(63|6465|66{1-3}67)", 0, 3, 7},
        {"(B)6162(L)6364(B)", 0, 5, 6},
        {"616263[2-5]64", 0, 6, 9},
        {"6162??????", KHX_MOD_WIDE, 10, 10},
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(cases); i++) {
        struct khx_body b;
        parse_ok(cases[i].pat, cases[i].mods, &b);
        if (b.minlen != cases[i].mn || b.maxlen != cases[i].mx)
            fail_msg("'%s': min %u max %u, expected %u %u", cases[i].pat, b.minlen, b.maxlen,
                     cases[i].mn, cases[i].mx);
        khx_body_clear(&b);
    }
}

/* Bounded repeats above 1024 bytes are widened in the expression, which then
 * stops being exact; the program still enforces the real bounds. */
static void body_huge_repeat_widened(void **state)
{
    (void)state;
    size_t len = 6000;
    char *buf = malloc(len);
    assert_non_null(buf);
    memset(buf, '-', len);
    memcpy(buf, "ab", 2);
    memcpy(buf + 2 + 3000, "cd", 2);
    assert_int_equal(exact_of("6162{2000-4000}6364", 0), 0);
    assert_int_equal(exact_of("6162{100-1000}6364", 0), 1);
    check_len("6162{2000-4000}6364", 0, buf, len, 0, 3004);
    check_len("6162{3001-4000}6364", 0, buf, len, -1, -1);
    check_len("6162{2000-2999}6364", 0, buf, len, -1, -1);
    check_len("6162{3000}6364", 0, buf, len, 0, 3004);
    free(buf);
}

/* Hyperscan refuses expressions of about 16,000 characters; longer patterns
 * get a relaxed expression that still reports every true match end. */
static void body_long_pattern_fits_hyperscan(void **state)
{
    (void)state;
    size_t n = 20000;
    char *pat = malloc(2 * n + 1);
    uint8_t *data = malloc(n + 10);
    assert_non_null(pat);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++) {
        data[5 + i] = (uint8_t)('a' + (i * 7) % 26);
        snprintf(pat + 2 * i, 3, "%02x", data[5 + i]);
    }
    memset(data, '-', 5);
    memset(data + 5 + n, '-', 5);
    check_len(pat, 0, data, n + 10, 5, 5 + (long)n);
    assert_int_equal(exact_of(pat, 0), 0);
    data[5 + n - 1] ^= 1; /* the last byte lies beyond what the expression spells out */
    check_len(pat, 0, data, n + 10, -1, -1);

    /* Many alternates: each group becomes .{min,max} in the expression. */
    size_t k = 0;
    k += (size_t)snprintf(pat + k, 2 * n + 1 - k, "6162");
    for (unsigned i = 0; i < 900; i++)
        k += (size_t)snprintf(pat + k, 2 * n + 1 - k, "(6%x|7%x6%x)", i % 16, i % 16, (i + 1) % 16);
    k += (size_t)snprintf(pat + k, 2 * n + 1 - k, "6364");
    struct khx_body b;
    parse_ok(pat, 0, &b);
    assert_true(strlen(b.regex) < 16000);
    assert_int_equal(b.exact, 0);
    hs_free_database(hs_build(b.regex, b.exact, 0));
    khx_body_clear(&b);
    free(pat);
    free(data);
}

static void body_find_window(void **state)
{
    (void)state;
    struct khx_body b;
    const char *d = "ab--ab--ab";
    size_t s = 0, e = 0;
    parse_ok("6162", 0, &b);
    assert_int_equal(khx_body_find(b.prog, b.prog_len, (const uint8_t *)d, 10, 1, 4, 10, &s, &e),
                     1);
    assert_int_equal(s, 4);
    assert_int_equal(e, 6);
    /* The start must lie in [lo, hi]. */
    assert_int_equal(khx_body_find(b.prog, b.prog_len, (const uint8_t *)d, 10, 1, 3, 10, &s, &e),
                     0);
    /* The end must not pass end_max. */
    assert_int_equal(khx_body_find(b.prog, b.prog_len, (const uint8_t *)d, 10, 4, 4, 5, &s, &e), 0);
    assert_int_equal(khx_body_find(b.prog, b.prog_len, (const uint8_t *)d, 10, 4, 4, 6, &s, &e), 1);
    /* Windows beyond the buffer are clamped, inverted ones are empty. */
    assert_int_equal(khx_body_find(b.prog, b.prog_len, (const uint8_t *)d, 10, 8, 100, 100, &s, &e),
                     1);
    assert_int_equal(s, 8);
    assert_int_equal(khx_body_find(b.prog, b.prog_len, (const uint8_t *)d, 10, 5, 4, 10, &s, &e),
                     0);
    assert_int_equal(khx_body_find(b.prog, b.prog_len, (const uint8_t *)d, 10, 11, 20, 30, &s, &e),
                     0);
    assert_int_equal(khx_body_find(b.prog, b.prog_len, NULL, 0, 0, 0, 0, &s, &e), 0);
    khx_body_clear(&b);
}

/* For variable-length patterns the earliest start wins, then its earliest end. */
static void body_find_earliest_start(void **state)
{
    (void)state;
    check("6162*6364", 0, "xab ab cd cd", 1, 9);
    check("6162{-6}6364", 0, "ab ab cd", 0, 8);
    check("6162{-2}6364", 0, "ab ab cd", 3, 8);
    check("(6162|61)6263", 0, "aabc", 1, 4);
}

/* The set-based matcher stays linear on inputs that make backtracking
 * matchers explode. */
static void body_find_pathological_input(void **state)
{
    (void)state;
    size_t len = 1 << 20;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    memset(buf, 'a', len);
    const char *pats[] = {
        "6161*6161*6161*6161*6162",
        "6161(61|6161|616161){0-10}(61|6161)6162",
        "6161{0-100}6161{0-100}6161{0-100}6162",
        "(B)6161(61|6161)*6162(B)",
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(pats); i++) {
        struct khx_body b;
        size_t s, e;
        parse_ok(pats[i], 0, &b);
        clock_t t0 = clock();
        assert_int_equal(khx_body_find(b.prog, b.prog_len, buf, len, 0, len, len, &s, &e), 0);
        double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
        if (secs > 10)
            fail_msg("'%s' took %.1f s on 1 MiB", pats[i], secs);
        khx_body_clear(&b);
    }
    /* And it still finds the one match at the very end. */
    buf[len - 1] = 'b';
    struct khx_body b;
    size_t s = 0, e = 0;
    parse_ok("6161*6161*6161*6161*6162", 0, &b);
    assert_int_equal(khx_body_find(b.prog, b.prog_len, buf, len, 0, len, len, &s, &e), 1);
    assert_int_equal(s, 0);
    assert_int_equal(e, len);
    khx_body_clear(&b);
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* Rejections                                                               */
/* ------------------------------------------------------------------------ */

static void body_reject_malformed(void **state)
{
    (void)state;
    rejects("", 0, "empty pattern");
    rejects("616", 0, "column 3: odd number of hex digits");
    rejects("6162636*6465", 0, "column 7");
    rejects("6162zz6364", 0, "column 5: unexpected character 'z'");
    rejects("6162 6364", 0, "column 5: unexpected character ' '");
    rejects("6162(6364", 0, "column 5: '(' is not closed");
    rejects("61626364)", 0, "column 9: unbalanced ')'");
    rejects("6162|6364", 0, "column 5: '|' outside alternates");
    rejects("6162{5-3}6364", 0, "column 5: range {5-3} has its minimum above its maximum");
    rejects("6162{5", 0, "column 5: '{' is not closed");
    rejects("6162{}6364", 0, "column 6: expected a decimal number");
    rejects("6162{99999999999}6364", 0, "number is too large");
    rejects("6162[1-33]63", 0, "at most 32");
    rejects("6162[3-1]63", 0, "minimum above its maximum");
    rejects("6162(63||64)", 0, "column 9: empty alternative");
    rejects("6162()", 0, "empty alternative");
    rejects("6162(63*64)", 0, "'*' cannot be used inside alternates");
    rejects("6162(63{1-}64)", 0, "range inside alternates");
    rejects("6162(63{200}64)", 0, "range inside alternates");
    rejects("6162(63[1-2]64)", 0, "'[x-y]' cannot be used inside alternates");
    rejects("6162((B)|63)", 0, "character class (B) cannot be used inside alternates");
    rejects("6162!(63|6465)", 0, "column 5: only alternates of plain bytes");
    rejects("6162!(6?|64)", 0, "only alternates of plain bytes");
    rejects("6162!6364", 0, "'!' must be followed by '('");
    rejects("6162((((((((((((((((63))))))))))))))))", 0, "nested more than 15 deep");
    rejects("6162!(00|01|02|03|04|05|06|07|08|09|0a|0b|0c|0d|0e|0f|10|11|12|13|14|15|16|17|18|"
            "19|1a|1b|1c|1d|1e|1f|20|21|22|23|24|25|26|27|28|29|2a|2b|2c|2d|2e|2f|30|31|32|33|"
            "34|35|36|37|38|39|3a|3b|3c|3d|3e|3f|40|41|42|43|44|45|46|47|48|49|4a|4b|4c|4d|4e|"
            "4f|50|51|52|53|54|55|56|57|58|59|5a|5b|5c|5d|5e|5f|60|61|62|63|64|65|66|67|68|69|"
            "6a|6b|6c|6d|6e|6f|70|71|72|73|74|75|76|77|78|79|7a|7b|7c|7d|7e|7f|80|81|82|83|84|"
            "85|86|87|88|89|8a|8b|8c|8d|8e|8f|90|91|92|93|94|95|96|97|98|99|9a|9b|9c|9d|9e|9f|"
            "a0|a1|a2|a3|a4|a5|a6|a7|a8|a9|aa|ab|ac|ad|ae|af|b0|b1|b2|b3|b4|b5|b6|b7|b8|b9|ba|"
            "bb|bc|bd|be|bf|c0|c1|c2|c3|c4|c5|c6|c7|c8|c9|ca|cb|cc|cd|ce|cf|d0|d1|d2|d3|d4|d5|"
            "d6|d7|d8|d9|da|db|dc|dd|de|df|e0|e1|e2|e3|e4|e5|e6|e7|e8|e9|ea|eb|ec|ed|ee|ef|f0|"
            "f1|f2|f3|f4|f5|f6|f7|f8|f9|fa|fb|fc|fd|fe|ff)",
            0, "exclude every byte");
}

/* ClamAV: every part split by '*' or '{...}' (but not {n} with n < 128) needs
 * two consecutive fixed bytes; [x-y] joins a single byte to a subpattern. */
static void body_reject_short_subpattern(void **state)
{
    (void)state;
    rejects("61", 0, "column 1: subpattern has no two consecutive fixed bytes");
    rejects("61??62", 0, "column 1: subpattern has no two consecutive fixed bytes");
    rejects("(61|62)(63|64)", 0, "no two consecutive fixed bytes");
    rejects("6162*63", 0, "column 6: subpattern has no two consecutive fixed bytes");
    rejects("6162{1-5}63??64", 0, "column 10: subpattern");
    rejects("6162{200}63", 0, "column 10: subpattern");
    rejects("*6162", 0, "column 1: empty subpattern");
    rejects("6162*", 0, "column 5: empty subpattern");
    rejects("6162**6364", 0, "column 6: empty subpattern");
    rejects("61[1-2]62", 0, "no two consecutive fixed bytes");
    rejects("6162[1-2]6364", 0, "column 5: '[x-y]' must join a single byte");
    rejects("61626364[1-2]", 0, "'[x-y]' must join a single byte");
    /* {n} with n < 128 does not split, so one part holds two fixed bytes. */
    struct khx_body b;
    parse_ok("61{5}6263", 0, &b);
    khx_body_clear(&b);
    parse_ok("6162{127}63", 0, &b);
    khx_body_clear(&b);
    /* Under wide, 61 becomes 61 00: two fixed bytes. */
    parse_ok("61??62", KHX_MOD_WIDE, &b);
    khx_body_clear(&b);
    rejects("61??62", KHX_MOD_WIDE | KHX_MOD_ASCII, "no two consecutive fixed bytes");
}

/* ------------------------------------------------------------------------ */
/* Programs from untrusted .kdb bytes                                       */
/* ------------------------------------------------------------------------ */

static void body_prog_check_rejects_corruption(void **state)
{
    (void)state;
    const char *pats[] = {"6162(63|6465|7?{1-2}7a)*!(6162|6364)6566(B)",
                          "(L)6b6579(L)7661{2-}7777(W)", "68656c6c6f"};
    const char *data = "ab\ncdefxyef key\r\nva  www-";
    for (size_t pi = 0; pi < KHX_ARRAY_LEN(pats); pi++) {
        struct khx_body b;
        parse_ok(pats[pi], pi == 2 ? KHX_MOD_WIDE | KHX_MOD_ASCII | KHX_MOD_NOCASE : 0, &b);
        uint8_t *copy = malloc(b.prog_len);
        assert_non_null(copy);
        size_t rejected = 0;
        for (size_t i = 0; i < b.prog_len; i++) {
            for (unsigned bit = 0; bit < 8; bit++) {
                size_t s, e;
                memcpy(copy, b.prog, b.prog_len);
                copy[i] ^= (uint8_t)(1u << bit);
                if (khx_body_prog_check(copy, b.prog_len) != 0) {
                    rejected++;
                    continue;
                }
                /* Accepted mutations must still run safely (ASan watches). */
                (void)khx_body_find(copy, b.prog_len, (const uint8_t *)data, strlen(data), 0,
                                    strlen(data), strlen(data), &s, &e);
            }
        }
        assert_true(rejected > b.prog_len); /* most flips are caught */
        for (size_t cut = 0; cut < b.prog_len; cut++)
            assert_int_equal(khx_body_prog_check(b.prog, cut), KH_EFORMAT);
        assert_int_equal(khx_body_prog_check(NULL, 0), KH_EFORMAT);
        free(copy);
        khx_body_clear(&b);
    }
    khx_body_clear(NULL);
}

/* ------------------------------------------------------------------------ */
/* Random patterns against Hyperscan                                        */
/* ------------------------------------------------------------------------ */

static uint32_t rng_state = 12345;

static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return (rng_state >> 8) % n;
}

static void gen_elem(char *p, size_t cap, int depth)
{
    size_t n = strlen(p);
    static const char *bytes[] = {"61", "62", "63"};
    switch (rnd(depth > 0 ? 8 : 12)) {
    case 0:
    case 1:
    case 2:
        snprintf(p + n, cap - n, "%s", bytes[rnd(3)]);
        break;
    case 3:
        snprintf(p + n, cap - n, "??");
        break;
    case 4:
        snprintf(p + n, cap - n, rnd(2) ? "6?" : "?%u", 1 + rnd(3));
        break;
    case 5:
        snprintf(p + n, cap - n, "(%s|%s)", bytes[rnd(3)], bytes[rnd(3)]);
        break;
    case 6:
        snprintf(p + n, cap - n, "!(%s|%s)", bytes[rnd(3)], bytes[rnd(3)]);
        break;
    case 7:
        snprintf(p + n, cap - n, "{%u-%u}", rnd(2), 2 + rnd(2));
        break;
    case 8:
        snprintf(p + n, cap - n, "(%s%s|%s%s)", bytes[rnd(3)], bytes[rnd(3)], bytes[rnd(3)],
                 bytes[rnd(3)]);
        break;
    case 9:
        snprintf(p + n, cap - n, "!(%s%s|%s%s|%s%s)", bytes[rnd(3)], bytes[rnd(3)], bytes[rnd(3)],
                 bytes[rnd(3)], bytes[rnd(3)], bytes[rnd(3)]);
        break;
    default: {
        /* A generic alternation of short sequences. */
        unsigned k = 2 + rnd(2);
        snprintf(p + n, cap - n, "(");
        for (unsigned i = 0; i < k; i++) {
            if (i > 0)
                strncat(p, "|", cap - strlen(p) - 1);
            unsigned m = 1 + rnd(3);
            for (unsigned j = 0; j < m; j++)
                gen_elem(p, cap, depth + 1);
        }
        strncat(p, ")", cap - strlen(p) - 1);
        break;
    }
    }
}

static void gen_pattern(char *p, size_t cap)
{
    static const char *gaps[] = {"*", "{0-2}", "{1-}", "{-2}", "{2-3}", "{3}"};
    static const char *pairs[] = {"6162", "6263", "6361", "6161"};
    p[0] = '\0';
    unsigned parts = 1 + rnd(3);
    for (unsigned i = 0; i < parts; i++) {
        if (i > 0)
            strncat(p, gaps[rnd(6)], cap - strlen(p) - 1);
        unsigned before = rnd(3), after = rnd(3);
        for (unsigned j = 0; j < before; j++)
            gen_elem(p, cap, 0);
        strncat(p, pairs[rnd(4)], cap - strlen(p) - 1);
        for (unsigned j = 0; j < after; j++)
            gen_elem(p, cap, 0);
    }
}

static void body_random_against_hyperscan(void **state)
{
    (void)state;
    char pat[512], err[256];
    uint8_t data[64];
    srand(7);
    unsigned tested = 0;
    for (unsigned iter = 0; iter < 600; iter++) {
        struct khx_body b;
        static const unsigned modsets[] = {
            0, 0, 0, KHX_MOD_NOCASE, KHX_MOD_WIDE, KHX_MOD_WIDE | KHX_MOD_ASCII | KHX_MOD_NOCASE};
        unsigned mods = modsets[rnd(KHX_ARRAY_LEN(modsets))];
        gen_pattern(pat, sizeof(pat));
        if (khx_body_parse(pat, strlen(pat), mods, &b, err, sizeof(err)) != 0)
            continue;
        hs_database_t *anch = hs_build(b.regex, b.exact, 1), *all = hs_build(b.regex, b.exact, 0);
        for (unsigned round = 0; round < 4; round++) {
            size_t len = rnd(40);
            for (size_t i = 0; i < len; i++)
                data[i] = (uint8_t)(rnd(9) == 0 ? 'A' + rnd(3) : 'a' + rnd(3));
            /* Wide patterns need NUL-interleaved text to match. */
            if ((mods & KHX_MOD_WIDE) && rnd(2))
                for (size_t i = 1; i < len; i += 2)
                    data[i] = rnd(8) ? 0 : data[i];
            if (b.exact) {
                oracle_dbs(&b, anch, all, data, len);
            } else {
                /* A prefiltering expression must still report every true end. */
                struct ends he = {.want = SIZE_MAX};
                size_t s, e;
                he.want = SIZE_MAX;
                if (khx_body_find(b.prog, b.prog_len, data, len, 0, len, len, &s, &e) == 1)
                    he.want = e;
                hs_run(all, data, len, &he);
                assert_true(he.want == SIZE_MAX || he.saw_want);
            }
        }
        hs_free_database(anch);
        hs_free_database(all);
        tested++;
        khx_body_clear(&b);
    }
    assert_true(tested > 300);
}

/* ------------------------------------------------------------------------ */
/* Offsets                                                                  */
/* ------------------------------------------------------------------------ */

static struct khx_offset off_ok(const char *s)
{
    struct khx_offset o;
    char err[128];
    if (khx_offset_parse(s, strlen(s), &o, err, sizeof(err)) != 0)
        fail_msg("offset '%s' rejected: %s", s, err);
    return o;
}

static void offset_parse_forms(void **state)
{
    (void)state;
    struct khx_offset o;
    o = off_ok("*");
    assert_int_equal(o.type, KHX_OFF_ANY);
    o = off_ok("100");
    assert_int_equal(o.type, KHX_OFF_ABS);
    assert_int_equal(o.n, 100);
    assert_int_equal(o.maxshift, 0);
    o = off_ok("10,5");
    assert_int_equal(o.n, 10);
    assert_int_equal(o.maxshift, 5);
    o = off_ok("EOF-10");
    assert_int_equal(o.type, KHX_OFF_EOF);
    assert_int_equal(o.n, 10);
    o = off_ok("EP+0,32");
    assert_int_equal(o.type, KHX_OFF_EP);
    assert_int_equal(o.n, 0);
    assert_int_equal(o.maxshift, 32);
    o = off_ok("EP-16");
    assert_int_equal(o.n, -16);
    o = off_ok("S2+4");
    assert_int_equal(o.type, KHX_OFF_SECT);
    assert_int_equal(o.section, 2);
    assert_int_equal(o.n, 4);
    o = off_ok("SE1");
    assert_int_equal(o.type, KHX_OFF_SECT_WHOLE);
    assert_int_equal(o.section, 1);
    o = off_ok("SL+8");
    assert_int_equal(o.type, KHX_OFF_LASTSECT);
    assert_int_equal(o.n, 8);
    o = off_ok("VI");
    assert_int_equal(o.type, KHX_OFF_VI);
    o = off_ok("EP+0,134217728");
    assert_int_equal(o.maxshift, 134217728);
}

static void offset_parse_rejects(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "*,5",
                         "VI,2",
                         "EOF+3",
                         "EOF-",
                         "EP",
                         "EP*3",
                         "S+3",
                         "S1-3",
                         "S1",
                         "SE",
                         "SL-1",
                         "12x",
                         "-5",
                         "10,",
                         "10,x",
                         "$12",
                         "99999999999999999999999",
                         "EP+9223372036854775808"};
    for (size_t i = 0; i < KHX_ARRAY_LEN(bad); i++) {
        struct khx_offset o;
        char err[128] = "";
        if (khx_offset_parse(bad[i], strlen(bad[i]), &o, err, sizeof(err)) != KH_EFORMAT)
            fail_msg("offset '%s' was accepted", bad[i]);
        assert_true(err[0] != '\0');
    }
}

/* A fake executable: entry point 0x50, three sections. */
static struct khx_section sections[3] = {
    {.rva = 0x1000, .vsize = 0x40, .raw_off = 0x40, .raw_size = 0x40, .name = ".text"},
    {.rva = 0x2000, .vsize = 0x40, .raw_off = 0x80, .raw_size = 0x40, .name = ".data"},
    {.rva = 0x3000, .vsize = 0x40, .raw_off = 0xc0, .raw_size = 0x40, .name = ".rsrc"},
};

static struct khx_exe fake_exe(void)
{
    struct khx_exe x;
    memset(&x, 0, sizeof(x));
    x.type = KHX_EXE_PE32;
    x.ep_valid = 1;
    x.ep = 0x50;
    x.nsections = 3;
    x.sections = sections;
    return x;
}

static void resolve_expect(const char *off, const struct khx_layout *l, int rr, uint64_t lo,
                           uint64_t hi, uint64_t em)
{
    uint64_t a = 0, b = 0, c = 0;
    struct khx_offset o = off_ok(off);
    int r = khx_offset_resolve(&o, l, &a, &b, &c);
    if (r != rr)
        fail_msg("offset '%s': resolve gave %d, expected %d", off, r, rr);
    if (r == 0 && (a != lo || b != hi || c != em))
        fail_msg("offset '%s': [%llu,%llu] end %llu, expected [%llu,%llu] end %llu", off,
                 (unsigned long long)a, (unsigned long long)b, (unsigned long long)c,
                 (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)em);
}

static void offset_resolve_all_types(void **state)
{
    (void)state;
    struct khx_exe x = fake_exe();
    struct khx_layout pe = {0x100, &x}, plain = {0x100, NULL};
    resolve_expect("*", &plain, 0, 0, 0x100, 0x100);
    resolve_expect("16", &plain, 0, 16, 16, 0x100);
    resolve_expect("16,8", &plain, 0, 16, 24, 0x100);
    resolve_expect("250,100", &plain, 0, 250, 256, 0x100);
    resolve_expect("257", &plain, 1, 0, 0, 0);
    resolve_expect("EOF-16", &plain, 0, 0xf0, 0xf0, 0x100);
    resolve_expect("EOF-16,4", &plain, 0, 0xf0, 0xf4, 0x100);
    resolve_expect("EOF-257", &plain, 1, 0, 0, 0);
    resolve_expect("EP+4", &pe, 0, 0x54, 0x54, 0x100);
    resolve_expect("EP-16,8", &pe, 0, 0x40, 0x48, 0x100);
    resolve_expect("EP-81", &pe, 1, 0, 0, 0);
    resolve_expect("EP+0", &plain, 1, 0, 0, 0);
    resolve_expect("S1+4", &pe, 0, 0x84, 0x84, 0x100);
    resolve_expect("S0+0,16", &pe, 0, 0x40, 0x50, 0x100);
    resolve_expect("S3+0", &pe, 1, 0, 0, 0);
    resolve_expect("SE1", &pe, 0, 0x80, 0xc0, 0xc0);
    resolve_expect("SE5", &pe, 1, 0, 0, 0);
    resolve_expect("SL+8", &pe, 0, 0xc8, 0xc8, 0x100);
    resolve_expect("SL+8", &plain, 1, 0, 0, 0);
    resolve_expect("VI", &pe, 1, 0, 0, 0);
}

/* End to end: resolve each offset type and search, with a positive and a
 * negative placement of the same bytes. */
static void offset_find_end_to_end(void **state)
{
    (void)state;
    struct khx_exe x = fake_exe();
    struct khx_layout pe = {0x100, &x};
    uint8_t file[0x100];
    struct khx_body b;
    parse_ok("deadbeef", 0, &b);

    static const struct {
        const char *off;
        size_t at;    /* where the bytes are put */
        int expected; /* 1 if the offset admits that place */
    } cases[] = {
        {"32", 32, 1},        {"32", 33, 0},        {"32,4", 36, 1},       {"32,4", 37, 0},
        {"EOF-4", 0xfc, 1},   {"EOF-4", 0xfb, 0},   {"EOF-10,6", 0xfc, 1}, {"EOF-10,5", 0xfc, 0},
        {"EP+16", 0x60, 1},   {"EP+16", 0x61, 0},   {"EP-16", 0x40, 1},    {"EP-16", 0x41, 0},
        {"EP+0,32", 0x70, 1}, {"EP+0,32", 0x71, 0}, {"S1+8", 0x88, 1},     {"S1+8", 0x89, 0},
        {"S2+0,8", 0xc8, 1},  {"S2+0,8", 0xc9, 0},  {"SE1", 0xbc, 1},      {"SE1", 0xbd, 0},
        {"SE1", 0x80, 1},     {"SE1", 0x7f, 0},     {"SL+4", 0xc4, 1},     {"SL+4", 0xc5, 0},
        {"*", 0x13, 1},
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(cases); i++) {
        uint64_t lo, hi, em;
        size_t s, e;
        memset(file, 0, sizeof(file));
        memcpy(file + cases[i].at, "\xde\xad\xbe\xef", 4);
        struct khx_offset o = off_ok(cases[i].off);
        assert_int_equal(khx_offset_resolve(&o, &pe, &lo, &hi, &em), 0);
        int f = khx_body_find(b.prog, b.prog_len, file, sizeof(file), lo, hi, em, &s, &e);
        if (f != cases[i].expected)
            fail_msg("offset %s with bytes at 0x%zx: find=%d", cases[i].off, cases[i].at, f);
        if (f == 1) {
            assert_int_equal(s, cases[i].at);
            assert_int_equal(e, cases[i].at + 4);
        }
    }
    khx_body_clear(&b);
}

/* ------------------------------------------------------------------------ */
/* Real ClamAV test signatures                                              */
/* ------------------------------------------------------------------------ */

/* Parses one "[offset:]hex[::mods]" body; returns 0 or the parse error. */
static int real_body(const char *off, size_t offlen, const char *hex, size_t hexlen,
                     const char *what)
{
    struct khx_offset o;
    struct khx_body b;
    char err[256];
    if (offlen > 0 && khx_offset_parse(off, offlen, &o, err, sizeof(err)) != 0)
        fail_msg("%s: offset: %s", what, err);
    int r = khx_body_parse(hex, hexlen, 0, &b, err, sizeof(err));
    if (r != 0)
        fail_msg("%s: body '%.*s': %s", what, (int)hexlen, hex, err);
    hs_free_database(hs_build(b.regex, b.exact, 0));
    khx_body_clear(&b);
    return 0;
}

/* Feeds every body of one .ndb or .ldb file to real_body. */
static unsigned real_file(const char *path)
{
    uint8_t *data;
    size_t len;
    unsigned bodies = 0;
    int ldb = strcmp(khx_path_ext(path), "ldb") == 0;
    if (khx_read_file(path, 1 << 20, &data, &len) != 0)
        fail_msg("cannot read %s", path);
    struct khx_lines it;
    const char *line;
    size_t ll;
    khx_lines_init(&it, data, len);
    while (khx_lines_next(&it, &line, &ll)) {
        const char *f[70];
        size_t fl[70];
        if (ll == 0 || line[0] == '#')
            continue;
        if (!ldb) {
            size_t n = khx_split(line, ll, ':', f, fl, 7);
            assert_true(n >= 4 && n <= 6);
            real_body(f[2], fl[2], f[3], fl[3], path);
            bodies++;
            continue;
        }
        size_t n = khx_split(line, ll, ';', f, fl, 68);
        assert_true(n >= 4 && n <= 67);
        for (size_t k = 3; k < n; k++) {
            const char *g[3];
            size_t gl[3];
            size_t m = khx_split(f[k], fl[k], ':', g, gl, 2);
            if (m == 2)
                real_body(g[0], gl[0], g[1], gl[1], path);
            else
                real_body(NULL, 0, g[0], gl[0], path);
            bodies++;
        }
    }
    free(data);
    return bodies;
}

static void body_real_clamav_signatures(void **state)
{
    (void)state;
    const char *shared = tu_shared_data();
    if (shared == NULL) {
        printf("SKIP: ../shared/data is absent; real ClamAV signatures not tested\n");
        return;
    }
    static const char *dirs[] = {
        "clamav/sigs/allmatch_test_inline",    "clamav/sigs/other_sigs",
        "clamav/sigs/embedded_testfiles",      "clamav/sigs/pe_allmatch/alert-sigs",
        "clamav/sigs/pe_allmatch/broken-sigs", "clamav/sigs/pe_allmatch/weak-sigs",
    };
    char path[4096];
    unsigned bodies = 0;
    for (size_t i = 0; i < KHX_ARRAY_LEN(dirs); i++) {
        snprintf(path, sizeof(path), "%s/%s", shared, dirs[i]);
        DIR *d = opendir(path);
        if (d == NULL) {
            printf("SKIP: %s is absent\n", path);
            continue;
        }
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            const char *ext = khx_path_ext(de->d_name);
            if (strcmp(ext, "ndb") != 0 && strcmp(ext, "ldb") != 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s/%s", shared, dirs[i], de->d_name);
            bodies += real_file(path);
        }
        closedir(d);
    }
    /* The ANY-offset signature is in test.exe. */
    uint8_t *exe;
    size_t exelen;
    snprintf(path, sizeof(path), "%s/clamav/files/pe_allmatch/test.exe", shared);
    if (khx_read_file(path, 8 << 20, &exe, &exelen) == 0) {
        struct khx_body b;
        size_t s, e;
        const char *hex = "434c414d41565f544553545f5052494e54465f535452494e475f666661385f333939345f"
                          "313738385f65386236";
        parse_ok(hex, 0, &b);
        assert_int_equal(khx_body_find(b.prog, b.prog_len, exe, exelen, 0, exelen, exelen, &s, &e),
                         1);
        assert_memory_equal(exe + s, "CLAMAV_TEST_PRINTF_STRING_ffa8", 30);
        khx_body_clear(&b);
        /* One changed byte and it is gone. */
        parse_ok("434c414d41565f544553545f5052494e54465f535452494e475f666661385f333939345f"
                 "313738385f65386237",
                 0, &b);
        assert_int_equal(khx_body_find(b.prog, b.prog_len, exe, exelen, 0, exelen, exelen, &s, &e),
                         0);
        khx_body_clear(&b);
        free(exe);
    } else {
        printf("SKIP: %s is absent\n", path);
    }
    printf("parsed %u real ClamAV bodies\n", bodies);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(body_literal_bytes),
        cmocka_unit_test(body_wildcard_any_byte),
        cmocka_unit_test(body_nibble_high),
        cmocka_unit_test(body_nibble_low),
        cmocka_unit_test(body_star_gap),
        cmocka_unit_test(body_fixed_gap),
        cmocka_unit_test(body_gap_at_most),
        cmocka_unit_test(body_gap_at_least),
        cmocka_unit_test(body_gap_range),
        cmocka_unit_test(body_bracket_range),
        cmocka_unit_test(body_alt_single_byte),
        cmocka_unit_test(body_alt_negated_single_byte),
        cmocka_unit_test(body_alt_multibyte),
        cmocka_unit_test(body_alt_negated_multibyte),
        cmocka_unit_test(body_alt_generic),
        cmocka_unit_test(body_class_boundary),
        cmocka_unit_test(body_class_line),
        cmocka_unit_test(body_class_nonalnum),
        cmocka_unit_test(body_mod_nocase),
        cmocka_unit_test(body_mod_wide),
        cmocka_unit_test(body_mod_wide_ascii),
        cmocka_unit_test(body_mod_fullword),
        cmocka_unit_test(mods_parse_letters),
        cmocka_unit_test(body_minlen_maxlen),
        cmocka_unit_test(body_huge_repeat_widened),
        cmocka_unit_test(body_long_pattern_fits_hyperscan),
        cmocka_unit_test(body_find_window),
        cmocka_unit_test(body_find_earliest_start),
        cmocka_unit_test(body_find_pathological_input),
        cmocka_unit_test(body_reject_malformed),
        cmocka_unit_test(body_reject_short_subpattern),
        cmocka_unit_test(body_prog_check_rejects_corruption),
        cmocka_unit_test(body_random_against_hyperscan),
        cmocka_unit_test(offset_parse_forms),
        cmocka_unit_test(offset_parse_rejects),
        cmocka_unit_test(offset_resolve_all_types),
        cmocka_unit_test(offset_find_end_to_end),
        cmocka_unit_test(body_real_clamav_signatures),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    hs_free_scratch(scratch);
    return failed;
}
