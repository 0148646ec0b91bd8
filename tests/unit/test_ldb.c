/*
 * Tests for lib/engine/ldb.c and lib/engine/pcre.c: .ldb line splitting, the
 * target description block, the logical expression compiler and evaluator
 * (including programs that did not come from the compiler), subsignature
 * classification, and PCRE subsignatures (compile, serialize, load, count in
 * windows). The last test reads the real .ldb files in ../shared/data.
 */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "khx.h"
#include "ldb.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* Compiles expr for n subsignatures and evaluates it with counts. */
static int ev(const char *expr, unsigned n, const uint32_t *counts)
{
    uint8_t *prog = NULL;
    size_t len = 0;
    char err[256] = "";
    int r = khx_lexpr_compile(expr, strlen(expr), n, &prog, &len, err, sizeof(err));
    if (r != 0)
        fail_msg("'%s' did not compile: %s", expr, err);
    assert_int_equal(khx_lexpr_check(prog, len, n), 0);
    int v = khx_lexpr_eval(prog, len, counts, n);
    free(prog);
    return v;
}

#define EV(expr, ...)                                                                              \
    ev(expr, (unsigned)(sizeof((uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t)),                     \
       (uint32_t[]){__VA_ARGS__})

/* Asserts that expr does not compile and that the message mentions `what`. */
static void compile_fails(const char *expr, unsigned n, const char *what)
{
    uint8_t *prog = NULL;
    size_t len = 0;
    char err[256] = "";
    int r = khx_lexpr_compile(expr, strlen(expr), n, &prog, &len, err, sizeof(err));
    if (r == 0) {
        free(prog);
        fail_msg("'%s' compiled but should not have", expr);
    }
    assert_int_equal(r, KH_EFORMAT);
    assert_null(prog);
    if (strstr(err, what) == NULL)
        fail_msg("'%s': message '%s' does not mention '%s'", expr, err, what);
}

static int tdb(const char *s, struct khx_tdb *t, char *err, size_t errlen)
{
    return khx_tdb_parse(s, strlen(s), t, err, errlen);
}

static void tdb_fails(const char *s, const char *what)
{
    struct khx_tdb t;
    char err[256] = "";
    assert_int_equal(tdb(s, &t, err, sizeof(err)), KH_EFORMAT);
    if (strstr(err, what) == NULL)
        fail_msg("TDB '%s': message '%s' does not mention '%s'", s, err, what);
}

static struct khx_subsig sub_ok(const char *s)
{
    struct khx_subsig sub;
    char err[256] = "";
    if (khx_subsig_parse(s, strlen(s), &sub, err, sizeof(err)) != 0)
        fail_msg("subsignature '%s' rejected: %s", s, err);
    return sub;
}

static void sub_fails(const char *s, const char *what)
{
    struct khx_subsig sub;
    char err[256] = "";
    assert_int_equal(khx_subsig_parse(s, strlen(s), &sub, err, sizeof(err)), KH_EFORMAT);
    if (strstr(err, what) == NULL)
        fail_msg("subsignature '%s': message '%s' does not mention '%s'", s, err, what);
}

static int span_is(const char *p, size_t n, const char *want)
{
    return p != NULL && n == strlen(want) && memcmp(p, want, n) == 0;
}

/* Compiles and loads a PCRE; fails the test on error. */
static struct khx_pcre *pcre_make(const char *regex, const char *flags)
{
    uint8_t *ser = NULL;
    size_t ser_len = 0;
    unsigned cflags = 0;
    char err[256] = "";
    struct khx_pcre *p = NULL;
    if (khx_pcre_compile(regex, strlen(regex), flags, strlen(flags), &ser, &ser_len, &cflags, err,
                         sizeof(err)) != 0)
        fail_msg("/%s/%s did not compile: %s", regex, flags, err);
    assert_int_equal(khx_pcre_load(ser, ser_len, cflags, &p), 0);
    free(ser);
    return p;
}

static int pcre_count_str(const char *regex, const char *flags, const char *text, uint64_t lo,
                          uint64_t hi, uint64_t end_max)
{
    struct khx_pcre *p = pcre_make(regex, flags);
    int n = khx_pcre_count(p, (const uint8_t *)text, strlen(text), lo, hi, end_max);
    khx_pcre_free(p);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Logical expressions                                                       */
/* ------------------------------------------------------------------------ */

static void lexpr_single_subsig_needs_a_match(void **state)
{
    (void)state;
    assert_int_equal(EV("0", 0), 0);
    assert_int_equal(EV("0", 1), 1);
    assert_int_equal(EV("1", 0, 7), 1);
    assert_int_equal(EV("1", 7, 0), 0);
}

static void lexpr_and_or_truth_tables(void **state)
{
    (void)state;
    assert_int_equal(EV("0&1", 0, 0), 0);
    assert_int_equal(EV("0&1", 1, 0), 0);
    assert_int_equal(EV("0&1", 0, 1), 0);
    assert_int_equal(EV("0&1", 1, 1), 1);
    assert_int_equal(EV("0|1", 0, 0), 0);
    assert_int_equal(EV("0|1", 1, 0), 1);
    assert_int_equal(EV("0|1", 0, 1), 1);
    assert_int_equal(EV("0&1&2&3&4", 1, 1, 1, 1, 1), 1);
    assert_int_equal(EV("0&1&2&3&4", 1, 1, 1, 0, 1), 0);
    assert_int_equal(EV("(0&1&2&3)&(4|1)", 1, 1, 1, 1, 0), 1);
    assert_int_equal(EV("(0&1&2&3)&(4|1)", 1, 1, 1, 0, 1), 0);
    assert_int_equal(EV("((0|1)&(2|3))&4", 0, 1, 1, 0, 1), 1);
    assert_int_equal(EV("((0|1)&(2|3))&4", 0, 1, 0, 0, 1), 0);
}

/* The example from ClamAV's documentation: subsignatures 0..2 together match
 * more than 5 times with at least 2 distinct ones, and 3 or 1 matches. */
static void lexpr_block_count_and_distinct(void **state)
{
    (void)state;
    const char *e = "((0|1|2)>5,2)&(3|1)";
    assert_int_equal(EV(e, 3, 3, 0, 1), 1);
    assert_int_equal(EV(e, 3, 3, 0, 0), 1); /* 1 satisfies the right side too */
    assert_int_equal(EV(e, 6, 0, 0, 1), 0); /* only one distinct subsignature */
    assert_int_equal(EV(e, 3, 2, 0, 1), 0); /* 5 is not more than 5 */
    assert_int_equal(EV(e, 0, 0, 6, 6), 0); /* distinct: only 2 */
    assert_int_equal(EV(e, 4, 0, 4, 0), 0); /* right side false */
    assert_int_equal(EV(e, 4, 0, 4, 1), 1);
    assert_int_equal(EV("(0|1|2)>5,3", 2, 2, 2), 1);
    assert_int_equal(EV("(0|1|2)>5,3", 5, 2, 0), 0);
}

static void lexpr_eq_zero_is_negation(void **state)
{
    (void)state;
    assert_int_equal(EV("0=0", 0), 1);
    assert_int_equal(EV("0=0", 1), 0);
    assert_int_equal(EV("0&1=0", 1, 0), 1);
    assert_int_equal(EV("0&1=0", 1, 2), 0);
    assert_int_equal(EV("(0|1)=0", 0, 0), 1);
    assert_int_equal(EV("(0|1)=0", 0, 3), 0);
}

static void lexpr_exact_counts(void **state)
{
    (void)state;
    assert_int_equal(EV("0=2", 2), 1);
    assert_int_equal(EV("0=2", 1), 0);
    assert_int_equal(EV("0=2", 3), 0);
    assert_int_equal(EV("(0|1)=3", 1, 2), 1);
    assert_int_equal(EV("(0|1)=3", 3, 0), 1);
    assert_int_equal(EV("(0|1)=3,2", 3, 0), 0);
    assert_int_equal(EV("(0|1)=3,2", 2, 1), 1);
}

/* A block's count is the sum over the parts that held: if the '&' inside
 * fails, the block counts 0 (as in ClamAV). */
static void lexpr_block_of_and_counts_only_when_true(void **state)
{
    (void)state;
    assert_int_equal(EV("(0&1)>1", 1, 1), 1);
    assert_int_equal(EV("(0&1)>1", 5, 0), 0);
    assert_int_equal(EV("(0&1)>1", 1, 0), 0);
    assert_int_equal(EV("(0&1)>1", 2, 3), 1);
    assert_int_equal(EV("(0&1)=0", 4, 0), 1);
    assert_int_equal(EV("(0&1)=0", 4, 1), 0);
    assert_int_equal(EV("(0&1)<3", 9, 0), 1);
    assert_int_equal(EV("(0&1)<3", 1, 1), 1);
    assert_int_equal(EV("(0&1)<3", 2, 1), 0);
}

static void lexpr_less_than(void **state)
{
    (void)state;
    assert_int_equal(EV("0<3", 0), 1);
    assert_int_equal(EV("0<3", 2), 1);
    assert_int_equal(EV("0<3", 3), 0);
    assert_int_equal(EV("(0|1)<3,2", 1, 1), 1);
    assert_int_equal(EV("(0|1)<3,2", 2, 0), 0);
    assert_int_equal(EV("(0|1)<3,2", 2, 1), 0);
    assert_int_equal(EV("0>0", 1), 1);
    assert_int_equal(EV("0>0", 0), 0);
}

/* ClamAV reads A o1 B o2 C as A o1 (B o2 C), but splits a parenthesised block
 * at its last operator: (A o1 B o2 C) is ((A o1 B) o2 C). */
static void lexpr_mixed_operators_group_like_clamav(void **state)
{
    (void)state;
    assert_int_equal(EV("0&1|2", 0, 0, 1), 0); /* 0&(1|2) */
    assert_int_equal(EV("0&1|2", 1, 0, 1), 1);
    assert_int_equal(EV("(0&1|2)", 0, 0, 1), 1); /* (0&1)|2 */
    assert_int_equal(EV("0|1&2", 1, 0, 0), 1);   /* 0|(1&2) */
    assert_int_equal(EV("(0|1&2)", 1, 0, 0), 0); /* (0|1)&2 */
    assert_int_equal(EV("(0|1&2)", 1, 0, 1), 1);
    /* (0|1&2|3) is ((0|(1&2))|3). */
    assert_int_equal(EV("(0|1&2|3)", 1, 0, 0, 0), 1);
    assert_int_equal(EV("(0|1&2|3)", 0, 1, 0, 0), 0);
    assert_int_equal(EV("(0|1&2|3)", 0, 0, 0, 1), 1);
}

static void lexpr_leaf_modifier_ignores_distinct_count(void **state)
{
    (void)state;
    assert_int_equal(EV("0=2,5", 2), 1);
    assert_int_equal(EV("0>1,9", 2), 1);
    assert_int_equal(EV("(0)>1,9", 2), 1);
}

static void lexpr_nested_block_counts(void **state)
{
    (void)state;
    assert_int_equal(EV("((0|1)>1|2)>2", 1, 1, 1), 1);
    assert_int_equal(EV("((0|1)>1|2)>2", 1, 0, 1), 0);
    assert_int_equal(EV("((0|1)>1|2)>2,3", 1, 1, 1), 1);
    assert_int_equal(EV("((0|1)>1|2)>2,3", 2, 0, 1), 0);
    assert_int_equal(EV("((0|1))", 0, 1), 1);
    assert_int_equal(EV("((((((0))))))", 1), 1);
}

static void lexpr_repeated_subsig_counts_each_reference(void **state)
{
    (void)state;
    assert_int_equal(EV("(0|0)>3", 2), 1);
    assert_int_equal(EV("(0|0)>3,2", 2), 0);
}

static void lexpr_large_counts(void **state)
{
    (void)state;
    assert_int_equal(EV("0>4294967294", UINT32_MAX), 1);
    assert_int_equal(EV("0=4294967295", UINT32_MAX), 1);
    assert_int_equal(EV("(0|1)>4294967295", UINT32_MAX, 1), 1);
}

static void lexpr_compile_rejects_malformed(void **state)
{
    (void)state;
    compile_fails("", 1, "empty");
    compile_fails("0&", 2, "missing operand");
    compile_fails("&0", 2, "missing operand");
    compile_fails("0&&1", 2, "missing operand");
    compile_fails("(0|1", 2, "missing ')'");
    compile_fails("0|1)", 2, "')' without '('");
    compile_fails("()", 1, "empty parentheses");
    compile_fails("5", 2, "out of range");
    compile_fails("0|64", 64, "out of range");
    compile_fails("99999999999999999999999", 2, "out of range");
    compile_fails("0>", 1, "expected a number");
    compile_fails("0>1>2", 1, "unexpected character after the modifier");
    compile_fails("0>1,", 1, "expected a number after ','");
    compile_fails("0 & 1", 2, "unexpected character 0x20");
    compile_fails("0>99999999999", 1, "too large");
    compile_fails("(0|1)2", 2, "expected an operator");
    compile_fails("0(1)", 2, "expected an operator");
    compile_fails("0,1", 2, "expected an operator");
    compile_fails(">1", 1, "expected a subsignature index");
    compile_fails("=0", 1, "expected a subsignature index");
    compile_fails("a", 1, "unexpected character");
    compile_fails("0;1", 2, "unexpected character");
    compile_fails("0", 0, "out of range");
}

static void lexpr_nesting_and_length_limits(void **state)
{
    (void)state;
    char buf[9000];
    uint8_t *prog = NULL;
    size_t len = 0;
    char err[256];
    const uint32_t one[1] = {1};

    /* 64 levels of parentheses are accepted, 65 are not. */
    for (int depth = 64; depth <= 65; depth++) {
        size_t n = 0;
        for (int i = 0; i < depth; i++)
            buf[n++] = '(';
        buf[n++] = '0';
        for (int i = 0; i < depth; i++)
            buf[n++] = ')';
        int r = khx_lexpr_compile(buf, n, 1, &prog, &len, err, sizeof(err));
        if (depth == 64) {
            assert_int_equal(r, 0);
            assert_int_equal(khx_lexpr_eval(prog, len, one, 1), 1);
            free(prog);
            prog = NULL;
        } else {
            assert_int_equal(r, KH_EFORMAT);
            assert_non_null(strstr(err, "nested too deeply"));
        }
    }
    /* Alternating operators nest to the right, so they count too. */
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        buf[n++] = '0';
        buf[n++] = i % 2 ? '&' : '|';
    }
    buf[n++] = '0';
    assert_int_equal(khx_lexpr_compile(buf, n, 1, &prog, &len, err, sizeof(err)), KH_EFORMAT);
    assert_non_null(strstr(err, "nested too deeply"));

    /* A long chain of one operator is flat and fine. */
    n = 0;
    for (int i = 0; i < 2000; i++) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%d&", i % 64);
    }
    buf[n - 1] = '\0';
    n--;
    assert_int_equal(khx_lexpr_compile(buf, n, 64, &prog, &len, err, sizeof(err)), 0);
    assert_int_equal(khx_lexpr_check(prog, len, 64), 0);
    free(prog);
    prog = NULL;

    memset(buf, '0', sizeof(buf));
    assert_int_equal(khx_lexpr_compile(buf, 8193, 1, &prog, &len, err, sizeof(err)), KH_EFORMAT);
    assert_non_null(strstr(err, "longer than"));
}

static void lexpr_check_rejects_hostile_programs(void **state)
{
    (void)state;
    uint8_t *prog = NULL;
    size_t len = 0;
    char err[128];
    const uint32_t counts[4] = {1, 1, 1, 1};

    assert_int_equal(khx_lexpr_compile("(0|1)>1,2&2", 11, 3, &prog, &len, err, sizeof(err)), 0);
    assert_int_equal(khx_lexpr_check(prog, len, 3), 0);
    /* Fewer subsignatures than the program refers to. */
    assert_int_equal(khx_lexpr_check(prog, len, 2), KH_EFORMAT);
    assert_int_equal(khx_lexpr_eval(prog, len, counts, 2), 0);
    /* A truncation is either rejected, and then evaluates to false, or ends
     * on an instruction boundary with one value left (a shorter program). */
    unsigned rejected = 0;
    for (size_t n = 0; n < len; n++) {
        if (khx_lexpr_check(prog, n, 3) != 0) {
            assert_int_equal(khx_lexpr_eval(prog, n, counts, 3), 0);
            rejected++;
        }
    }
    assert_int_equal(rejected, len - 3); /* valid prefixes: "0", "0|1", "(0|1)>1,2" */
    free(prog);

    static const uint8_t bad_version[] = {2, 1, 0};
    static const uint8_t unknown_op[] = {1, 1, 0, 9};
    static const uint8_t underflow[] = {1, 1, 0, 2};
    static const uint8_t two_left[] = {1, 1, 0, 1, 1};
    static const uint8_t bad_cmp[] = {1, 1, 0, 4, 3, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t mod_empty[] = {1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0};
    static const uint8_t idx_64[] = {1, 1, 64};
    static const uint8_t ok[] = {1, 1, 0, 1, 1, 3};
    assert_int_equal(khx_lexpr_check(bad_version, sizeof(bad_version), 1), KH_EFORMAT);
    assert_int_equal(khx_lexpr_check(unknown_op, sizeof(unknown_op), 1), KH_EFORMAT);
    assert_int_equal(khx_lexpr_check(underflow, sizeof(underflow), 1), KH_EFORMAT);
    assert_int_equal(khx_lexpr_check(two_left, sizeof(two_left), 2), KH_EFORMAT);
    assert_int_equal(khx_lexpr_check(bad_cmp, sizeof(bad_cmp), 1), KH_EFORMAT);
    assert_int_equal(khx_lexpr_check(mod_empty, sizeof(mod_empty), 1), KH_EFORMAT);
    assert_int_equal(khx_lexpr_check(idx_64, sizeof(idx_64), 64), KH_EFORMAT);
    assert_int_equal(khx_lexpr_check(ok, sizeof(ok), 2), 0);
    assert_int_equal(khx_lexpr_check(ok, sizeof(ok), 65), KH_EFORMAT);
    assert_int_equal(khx_lexpr_check(NULL, 3, 1), KH_EFORMAT);
    assert_int_equal(khx_lexpr_eval(bad_cmp, sizeof(bad_cmp), counts, 1), 0);
    assert_int_equal(khx_lexpr_eval(underflow, sizeof(underflow), counts, 1), 0);
    assert_int_equal(khx_lexpr_eval(ok, sizeof(ok), counts, 2), 1);
    assert_int_equal(khx_lexpr_eval(ok, sizeof(ok), NULL, 2), 0);

    /* A program that would overflow the evaluator's stack. */
    uint8_t deep[1 + 2 * 200 + 199];
    size_t n = 0;
    deep[n++] = 1;
    for (int i = 0; i < 200; i++) {
        deep[n++] = 1;
        deep[n++] = 0;
    }
    for (int i = 0; i < 199; i++)
        deep[n++] = 2;
    assert_int_equal(khx_lexpr_check(deep, n, 1), KH_EFORMAT);
    assert_int_equal(khx_lexpr_eval(deep, n, counts, 1), 0);
}

static void lexpr_refs_lists_mentioned_subsigs(void **state)
{
    (void)state;
    uint8_t *prog = NULL;
    size_t len = 0;
    char err[128];
    assert_int_equal(khx_lexpr_compile("(0|3)>2,2&5&63", 14, 64, &prog, &len, err, sizeof(err)), 0);
    assert_true(khx_lexpr_refs(prog, len) ==
                ((1ull << 0) | (1ull << 3) | (1ull << 5) | (1ull << 63)));
    free(prog);
    static const uint8_t junk[] = {7, 1, 0};
    assert_true(khx_lexpr_refs(junk, sizeof(junk)) == 0);
    assert_true(khx_lexpr_refs(NULL, 0) == 0);
}

/* ------------------------------------------------------------------------ */
/* Target description block                                                  */
/* ------------------------------------------------------------------------ */

static void tdb_all_keys(void **state)
{
    (void)state;
    struct khx_tdb t;
    char err[256];
    assert_int_equal(tdb("Engine:51-255,Target:1,FileSize:10-200,EntryPoint:0-4096,"
                         "NumberOfSections:3,Container:CL_TYPE_ZIP",
                         &t, err, sizeof(err)),
                     0);
    assert_int_equal(t.present, KHX_TDB_ENGINE | KHX_TDB_TARGET | KHX_TDB_FILESIZE |
                                    KHX_TDB_ENTRYPOINT | KHX_TDB_NSECTIONS | KHX_TDB_CONTAINER);
    assert_int_equal(t.engine_min, 51);
    assert_int_equal(t.engine_max, 255);
    assert_int_equal(t.target, 1);
    assert_int_equal(t.filesize_min, 10);
    assert_int_equal(t.filesize_max, 200);
    assert_int_equal(t.ep_min, 0);
    assert_int_equal(t.ep_max, 4096);
    assert_int_equal(t.nsect_min, 3);
    assert_int_equal(t.nsect_max, 3);
    assert_string_equal(t.container, "CL_TYPE_ZIP");
    assert_string_equal(t.handler_type, "");
}

static void tdb_target_absent_is_minus_one(void **state)
{
    (void)state;
    struct khx_tdb t;
    char err[256];
    assert_int_equal(tdb("Engine:81-255", &t, err, sizeof(err)), 0);
    assert_int_equal(t.target, -1);
    assert_int_equal(t.present, KHX_TDB_ENGINE);
    assert_int_equal(tdb("Target:0", &t, err, sizeof(err)), 0);
    assert_int_equal(t.target, 0);
    assert_int_equal(t.present, KHX_TDB_TARGET);
}

static void tdb_unsupported_keys_set_their_bits(void **state)
{
    (void)state;
    struct khx_tdb t;
    char err[256];
    assert_int_equal(
        tdb("Engine:51-255,Target:1,IconGroup1:TEST_ICON_GROUP_1", &t, err, sizeof(err)), 0);
    assert_true(t.present & KHX_TDB_ICONGROUP);
    assert_int_equal(tdb("Target:0,IconGroup2:x.y-z", &t, err, sizeof(err)), 0);
    assert_true(t.present & KHX_TDB_ICONGROUP);
    assert_int_equal(
        tdb("Target:0,Intermediates:CL_TYPE_ZIP>CL_TYPE_ANY>CL_TYPE_MSEXE", &t, err, sizeof(err)),
        0);
    assert_true(t.present & KHX_TDB_INTERMEDIATES);
    assert_int_equal(tdb("Target:0,Intermediates:CL_TYPE_RAR", &t, err, sizeof(err)), 0);
    assert_int_equal(tdb("Target:0,HandlerType:CL_TYPE_MSEXE", &t, err, sizeof(err)), 0);
    assert_true(t.present & KHX_TDB_HANDLERTYPE);
    assert_string_equal(t.handler_type, "CL_TYPE_MSEXE");
}

/* ClamAV's own documentation has "Target:0,Engine:81-255" and a repeated
 * Engine key; both load there, so they load here. */
static void tdb_engine_late_and_repeated(void **state)
{
    (void)state;
    struct khx_tdb t;
    char err[256];
    assert_int_equal(tdb("Engine:81-255,Target:0,Engine:81-255", &t, err, sizeof(err)), 0);
    assert_int_equal(t.engine_min, 81);
    assert_int_equal(tdb("Target:0,Engine:90-200", &t, err, sizeof(err)), 0);
    assert_int_equal(t.engine_min, 90);
    assert_int_equal(t.engine_max, 200);
}

static void tdb_rejects_malformed(void **state)
{
    (void)state;
    struct khx_tdb t;
    char err[256];
    assert_int_equal(khx_tdb_parse("", 0, &t, err, sizeof(err)), KH_EFORMAT);
    tdb_fails("Colour:1", "unknown keyword 'Colour'");
    tdb_fails("target:1", "unknown keyword");
    tdb_fails("Target:abc", "Target");
    tdb_fails("Target:256", "0 to 255");
    tdb_fails("Target:-1", "Target");
    tdb_fails("FileSize:200-10", "FileSize");
    tdb_fails("FileSize:10-", "FileSize");
    tdb_fails("FileSize:-10", "FileSize");
    tdb_fails("Engine:51-255-3", "Engine");
    tdb_fails("Engine:4294967296", "Engine");
    tdb_fails("NumberOfSections:1-4294967296", "NumberOfSections");
    tdb_fails("Engine:", "Key:Value");
    tdb_fails(":1", "Key:Value");
    tdb_fails("Target", "Key:Value");
    tdb_fails("Target:1,", "column 10");
    tdb_fails("Target:1,,Engine:51-255", "Key:Value");
    tdb_fails("Container:ZIP", "CL_TYPE_");
    tdb_fails("Container:CL_TYPE_", "CL_TYPE_");
    tdb_fails("Container:CL_TYPE_zip", "CL_TYPE_");
    tdb_fails("Container:CL_TYPE_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "CL_TYPE_");
    tdb_fails("Intermediates:CL_TYPE_ZIP>", "Intermediates");
    tdb_fails("Intermediates:CL_TYPE_A>CL_TYPE_A>CL_TYPE_A>CL_TYPE_A>CL_TYPE_A>CL_TYPE_A>CL_TYPE_"
              "A>CL_TYPE_A>CL_TYPE_A>CL_TYPE_A>CL_TYPE_A>CL_TYPE_A>CL_TYPE_A>CL_TYPE_A>CL_TYPE_A>"
              "CL_TYPE_A>CL_TYPE_A",
              "at most 16");
    tdb_fails("IconGroup1:a b", "icon group");
}

/* ------------------------------------------------------------------------ */
/* Subsignatures                                                             */
/* ------------------------------------------------------------------------ */

static void subsig_body_plain_and_modifiers(void **state)
{
    (void)state;
    struct khx_subsig s = sub_ok("6b6f74656b");
    assert_int_equal(s.kind, KHX_SUB_BODY);
    assert_true(span_is(s.hex, s.hex_len, "6b6f74656b"));
    assert_int_equal(s.mods, 0);
    assert_int_equal(s.offset.type, KHX_OFF_ANY);

    s = sub_ok("68656c6c6f::iwfa");
    assert_true(span_is(s.hex, s.hex_len, "68656c6c6f"));
    assert_int_equal(s.mods, KHX_MOD_NOCASE | KHX_MOD_WIDE | KHX_MOD_FULLWORD | KHX_MOD_ASCII);
    s = sub_ok("41414141::i");
    assert_int_equal(s.mods, KHX_MOD_NOCASE);
    s = sub_ok("68656c6c6f::wa");
    assert_int_equal(s.mods, KHX_MOD_WIDE | KHX_MOD_ASCII);
    s = sub_ok("22??232c2d252229{-15}6e6573(63|64)61706528");
    assert_int_equal(s.kind, KHX_SUB_BODY);
    s = sub_ok("41(B)42*43[1-4]44!(45|46)(L)(W)");
    assert_int_equal(s.kind, KHX_SUB_BODY);
}

static void subsig_body_offsets(void **state)
{
    (void)state;
    struct khx_subsig s = sub_ok("EP+123:33c06834f04100f2aef7d14951684cf04100e8110a00");
    assert_int_equal(s.offset.type, KHX_OFF_EP);
    assert_int_equal(s.offset.n, 123);
    assert_true(span_is(s.hex, s.hex_len, "33c06834f04100f2aef7d14951684cf04100e8110a00"));
    s = sub_ok("S2+78:22??232c2d252229{-15}6e6573(63|64)61706528");
    assert_int_equal(s.offset.type, KHX_OFF_SECT);
    assert_int_equal(s.offset.section, 2);
    assert_int_equal(s.offset.n, 78);
    s = sub_ok("SL+550:6300680065005c0046006900");
    assert_int_equal(s.offset.type, KHX_OFF_LASTSECT);
    assert_int_equal(s.offset.n, 550);
    s = sub_ok("100,50:4142");
    assert_int_equal(s.offset.type, KHX_OFF_ABS);
    assert_int_equal(s.offset.n, 100);
    assert_int_equal(s.offset.maxshift, 50);
    s = sub_ok("EOF-20:41424344");
    assert_int_equal(s.offset.type, KHX_OFF_EOF);
    assert_int_equal(s.offset.n, 20);
    s = sub_ok("*:41424344");
    assert_int_equal(s.offset.type, KHX_OFF_ANY);
    s = sub_ok("1552:4c696c204558450a");
    assert_int_equal(s.offset.type, KHX_OFF_ABS);
    assert_int_equal(s.offset.n, 1552);
    s = sub_ok("EP-4:41424344::i");
    assert_int_equal(s.offset.type, KHX_OFF_EP);
    assert_int_equal(s.offset.n, -4);
    assert_int_equal(s.mods, KHX_MOD_NOCASE);
    assert_true(span_is(s.hex, s.hex_len, "41424344"));
}

static void subsig_pcre_fields(void **state)
{
    (void)state;
    struct khx_subsig s = sub_ok("0/clamav/g");
    assert_int_equal(s.kind, KHX_SUB_PCRE);
    assert_true(span_is(s.trigger, s.trigger_len, "0"));
    assert_true(span_is(s.regex, s.regex_len, "clamav"));
    assert_true(span_is(s.flags, s.flags_len, "g"));
    assert_int_equal(s.offset.type, KHX_OFF_ANY);

    s = sub_ok("299:0&1/clamav/");
    assert_int_equal(s.offset.type, KHX_OFF_ABS);
    assert_int_equal(s.offset.n, 299);
    assert_true(span_is(s.trigger, s.trigger_len, "0&1"));
    assert_int_equal(s.flags_len, 0);

    s = sub_ok("200,300:0&1&2/clamav/ge");
    assert_int_equal(s.offset.n, 200);
    assert_int_equal(s.offset.maxshift, 300);
    assert_true(span_is(s.flags, s.flags_len, "ge"));

    s = sub_ok("0&1/\\x2Eview\\x2Eselection.*?\\x2Etree\\s*\\x3D\\s*null.*?\\x2Einvalidate/smi");
    assert_true(span_is(s.regex, s.regex_len,
                        "\\x2Eview\\x2Eselection.*?\\x2Etree\\s*\\x3D\\s*null.*?\\x2Einvalidate"));
    assert_true(span_is(s.flags, s.flags_len, "smi"));

    /* An escaped '/' belongs to the regex. */
    s = sub_ok("(0|1)>2/a\\/b\\\\/iA");
    assert_true(span_is(s.trigger, s.trigger_len, "(0|1)>2"));
    assert_true(span_is(s.regex, s.regex_len, "a\\/b\\\\"));
    assert_true(span_is(s.flags, s.flags_len, "iA"));

    s = sub_ok("50:0&1&2/variable=(?<nilshell>.{16})end/gr");
    assert_true(span_is(s.regex, s.regex_len, "variable=(?<nilshell>.{16})end"));
    s = sub_ok("0/x/greismxAEU");
    assert_int_equal(s.flags_len, 10);
}

static void subsig_special_kinds(void **state)
{
    (void)state;
    struct khx_subsig s = sub_ok("0(>>26#ib2#>512)");
    assert_int_equal(s.kind, KHX_SUB_BYTECMP);
    assert_true(span_is(s.trigger, s.trigger_len, "0"));
    s = sub_ok("12(<<0x1A#hle4#=0x1234,>5)");
    assert_int_equal(s.kind, KHX_SUB_BYTECMP);
    s = sub_ok("${6-7}12$");
    assert_int_equal(s.kind, KHX_SUB_MACRO);
    s = sub_ok("fuzzy_img#af2ad01ed42993c7#0");
    assert_int_equal(s.kind, KHX_SUB_FUZZY_IMG);
    /* Digits followed by an alternate are a body pattern, not byte-compare. */
    s = sub_ok("4142(43|44)4546");
    assert_int_equal(s.kind, KHX_SUB_BODY);
}

static void subsig_rejects_malformed(void **state)
{
    (void)state;
    struct khx_subsig s;
    char err[128];
    assert_int_equal(khx_subsig_parse("", 0, &s, err, sizeof(err)), KH_EFORMAT);
    sub_fails("4142::", "empty modifier list");
    sub_fails("4142::iz", "unknown subsignature modifier 0x7a");
    sub_fails("1:2:4142", "unexpected character 0x3a");
    sub_fails("41 42", "unexpected character 0x20");
    sub_fails(":4142", "empty offset");
    sub_fails("EP+:4142", "bad offset");
    sub_fails("100:", "empty hex pattern");
    sub_fails("0//", "empty regular expression");
    sub_fails("0/abc", "no closing '/'");
    sub_fails("0/abc\\/", "escaped");
    sub_fails("/abc/", "no trigger");
    sub_fails("0/abc/z", "unknown PCRE flag 0x7a");
    sub_fails("x/abc/", "not a logical expression");
    sub_fails("200,300:/abc/", "no trigger");
    sub_fails("${7-6}12$", "macro");
    sub_fails("${6-7}$", "macro");
    sub_fails("${6-7}12", "macro");
    sub_fails("0(>>26#ib2)", "byte-compare");
    sub_fails("0(>>26#ib2#>5", "')'");
    sub_fails("64(>>26#ib2#>5)", "trigger");
    sub_fails("0(>>26#i;b2#>5)", "unexpected character 0x3b");
    sub_fails("fuzzy_img#xyz#0", "fuzzy");
    sub_fails("fuzzy_img#af2a#", "fuzzy");
    /* A NUL is never accepted, whichever kind it hides in. */
    assert_int_equal(khx_subsig_parse("41\0"
                                      "42",
                                      5, &s, err, sizeof(err)),
                     KH_EFORMAT);
    assert_int_equal(khx_subsig_parse("0/a/\0", 5, &s, err, sizeof(err)), KH_EFORMAT);
    assert_int_equal(khx_subsig_parse("0\0/a/", 5, &s, err, sizeof(err)), KH_EFORMAT);
}

/* ------------------------------------------------------------------------ */
/* Line splitting                                                            */
/* ------------------------------------------------------------------------ */

static void ldb_split_fields(void **state)
{
    (void)state;
    const char *line =
        "Sig4;Engine:51-255,Target:1;((0|1)&(2|3))&4;EP+123:33c06834f04100f2aef7d14951684cf04100e8"
        "110a00;S2+78:22??232c2d252229{-15}6e6573(63|64)61706528;S3+50:68efa311c3b9963cb1ee8e586d3"
        "2aeb9043e;f9c58dcf43987e4f519d629b103375;SL+550:6300680065005c0046006900";
    struct khx_ldb_line l;
    char err[256];
    assert_int_equal(khx_ldb_split(line, strlen(line), &l, err, sizeof(err)), 0);
    assert_true(span_is(l.name, l.name_len, "Sig4"));
    assert_true(span_is(l.tdb, l.tdb_len, "Engine:51-255,Target:1"));
    assert_true(span_is(l.expr, l.expr_len, "((0|1)&(2|3))&4"));
    assert_int_equal(l.nsubsigs, 5);
    assert_true(span_is(l.sub[4], l.sub_len[4], "SL+550:6300680065005c0046006900"));
    for (unsigned i = 0; i < l.nsubsigs; i++) {
        struct khx_subsig s;
        assert_int_equal(khx_subsig_parse(l.sub[i], l.sub_len[i], &s, err, sizeof(err)), 0);
        assert_int_equal(s.kind, KHX_SUB_BODY);
    }
}

static void ldb_split_subsig_limit(void **state)
{
    (void)state;
    char line[1024];
    struct khx_ldb_line l;
    char err[256];
    int n = snprintf(line, sizeof(line), "S;Target:0;0");
    for (int i = 0; i < 64; i++)
        n += snprintf(line + n, sizeof(line) - (size_t)n, ";4142");
    assert_int_equal(khx_ldb_split(line, (size_t)n, &l, err, sizeof(err)), 0);
    assert_int_equal(l.nsubsigs, 64);
    n += snprintf(line + n, sizeof(line) - (size_t)n, ";4142");
    assert_int_equal(khx_ldb_split(line, (size_t)n, &l, err, sizeof(err)), KH_EFORMAT);
    assert_non_null(strstr(err, "more than 64"));
}

static void ldb_split_rejects_malformed(void **state)
{
    (void)state;
    struct khx_ldb_line l;
    char err[256];
    static const struct {
        const char *line;
        const char *what;
    } cases[] = {
        {"Name;Target:0;0", "found 3 fields"},
        {"Name", "found 1 field"},
        {"", "found 1 field"},
        {"Name;Target:0;0;4142;", "subsignature 1 is empty"},
        {"Name;Target:0;0;;4142", "subsignature 0 is empty"},
        {";Target:0;0;4142", "empty signature name"},
        {"Name;;0;4142", "empty target description block"},
        {"Name;Target:0;;4142", "empty logical expression"},
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(cases); i++) {
        int r = khx_ldb_split(cases[i].line, strlen(cases[i].line), &l, err, sizeof(err));
        if (r != KH_EFORMAT || strstr(err, cases[i].what) == NULL)
            fail_msg("'%s': r=%d err='%s', expected '%s'", cases[i].line, r, err, cases[i].what);
    }
}

/* ------------------------------------------------------------------------ */
/* PCRE                                                                      */
/* ------------------------------------------------------------------------ */

static void pcre_count_first_and_global(void **state)
{
    (void)state;
    const char *t = "xx clamav yy clamav zz clamav";
    size_t n = strlen(t);
    assert_int_equal(pcre_count_str("clamav", "", t, 0, n, n), 1);
    assert_int_equal(pcre_count_str("clamav", "g", t, 0, n, n), 3);
    assert_int_equal(pcre_count_str("nothere", "g", t, 0, n, n), 0);
    /* \x3B stands for ';' in .ldb files and PCRE reads it itself. */
    assert_int_equal(pcre_count_str("a\\x3Bb", "g", "a;b a;b", 0, 7, 7), 2);
    /* So does an escaped '/'. */
    assert_int_equal(pcre_count_str("a\\/b", "", "xa/b", 0, 4, 4), 1);
}

static void pcre_window_start_positions(void **state)
{
    (void)state;
    const char *t = "xx clamav yy clamav";
    size_t n = strlen(t);
    /* A one-position window anchors the match there. */
    assert_int_equal(pcre_count_str("clamav", "g", t, 3, 3, n), 1);
    assert_int_equal(pcre_count_str("clamav", "g", t, 2, 2, n), 0);
    assert_int_equal(pcre_count_str("clamav", "g", t, 4, 4, n), 0);
    /* A wider window admits matches starting anywhere inside it. */
    assert_int_equal(pcre_count_str("clamav", "g", t, 0, 12, n), 1);
    assert_int_equal(pcre_count_str("clamav", "g", t, 0, 13, n), 2);
    assert_int_equal(pcre_count_str("clamav", "g", t, 4, 13, n), 1);
    /* 'r' (rolling) turns a one-position window into "from here on". */
    assert_int_equal(pcre_count_str("clamav", "gr", t, 2, 2, n), 2);
    assert_int_equal(pcre_count_str("clamav", "r", t, 4, 4, n), 1);
    /* The subject starts at the window, as in ClamAV: ^ matches there. */
    assert_int_equal(pcre_count_str("^clamav", "", t, 3, 3, n), 1);
    assert_int_equal(pcre_count_str("^clamav", "", t, 0, n, n), 0);
    /* Windows past the end. */
    assert_int_equal(pcre_count_str("x", "", t, n, n, n), 0);
    assert_int_equal(pcre_count_str("x", "", t, 100, 200, 300), 0);
    assert_int_equal(pcre_count_str("v", "g", t, 0, 1000, 1000), 2);
}

static void pcre_encompass_confines_the_match(void **state)
{
    (void)state;
    const char *t = "0123456789clamav";
    size_t n = strlen(t);
    /* Without 'e' a match may run past the window's end... */
    assert_int_equal(pcre_count_str("clamav", "", t, 8, 12, n), 1);
    /* ...with 'e' it must end inside it. */
    assert_int_equal(pcre_count_str("clamav", "e", t, 8, 12, n), 0);
    assert_int_equal(pcre_count_str("clamav", "e", t, 8, 16, n), 1);
    assert_int_equal(pcre_count_str("clamav", "e", t, 8, 16, 15), 0);
    /* $ sees the end of the window. */
    assert_int_equal(pcre_count_str("[0-9]+$", "e", t, 0, 5, n), 1);
    assert_int_equal(pcre_count_str("[0-9]+$", "", t, 0, 5, n), 0);
}

static void pcre_flags_change_matching(void **state)
{
    (void)state;
    assert_int_equal(pcre_count_str("clamav", "", "CLAMAV", 0, 6, 6), 0);
    assert_int_equal(pcre_count_str("clamav", "i", "CLAMAV", 0, 6, 6), 1);
    assert_int_equal(pcre_count_str("abc", "A", "xabc", 0, 4, 4), 0);
    assert_int_equal(pcre_count_str("abc", "A", "abcx", 0, 4, 4), 1);
    assert_int_equal(pcre_count_str("abc", "Ag", "abcabcxabc", 0, 10, 10), 2);
    assert_int_equal(pcre_count_str("^b", "", "a\nb", 0, 3, 3), 0);
    assert_int_equal(pcre_count_str("^b", "m", "a\nb", 0, 3, 3), 1);
    assert_int_equal(pcre_count_str("a.b", "", "a\nb", 0, 3, 3), 0);
    assert_int_equal(pcre_count_str("a.b", "s", "a\nb", 0, 3, 3), 1);
    assert_int_equal(pcre_count_str("a b # comment", "x", "ab", 0, 2, 2), 1);
    assert_int_equal(pcre_count_str("b$", "", "ab\n", 0, 3, 3), 1);
    assert_int_equal(pcre_count_str("b$", "E", "ab\n", 0, 3, 3), 0);
    /* U makes quantifiers lazy: "a.*b" then stops at the first b, which the
     * encompassed window allows. */
    assert_int_equal(pcre_count_str("a.*b", "e", "a1b2b3", 0, 3, 3), 1);
    assert_int_equal(pcre_count_str("a.*b", "gU", "a1b2b3a4b", 0, 9, 9), 2);
}

static void pcre_empty_matches_advance(void **state)
{
    (void)state;
    assert_int_equal(pcre_count_str("x*", "g", "abc", 0, 3, 3), 4);
    assert_int_equal(pcre_count_str("(?=b)", "g", "abcb", 0, 4, 4), 2);
}

static void pcre_compile_rejects_bad_input(void **state)
{
    (void)state;
    uint8_t *ser = NULL;
    size_t n = 0;
    unsigned cf = 0;
    char err[256];
    assert_int_equal(khx_pcre_compile("(abc", 4, "", 0, &ser, &n, &cf, err, sizeof(err)),
                     KH_EFORMAT);
    assert_non_null(strstr(err, "missing closing parenthesis"));
    assert_null(ser);
    assert_int_equal(khx_pcre_compile("abc", 3, "gz", 2, &ser, &n, &cf, err, sizeof(err)),
                     KH_EFORMAT);
    assert_non_null(strstr(err, "unknown PCRE flag 0x7a"));
    assert_int_equal(khx_pcre_compile("", 0, "", 0, &ser, &n, &cf, err, sizeof(err)), KH_EFORMAT);
    assert_non_null(strstr(err, "empty"));
    /* ClamAV forbids switching to UTF from inside the pattern. */
    assert_int_equal(khx_pcre_compile("(*UTF)abc", 9, "", 0, &ser, &n, &cf, err, sizeof(err)),
                     KH_EFORMAT);
    assert_int_equal(khx_pcre_compile("(*UCP)\\w", 8, "", 0, &ser, &n, &cf, err, sizeof(err)),
                     KH_EFORMAT);
    char *big = malloc(40000);
    memset(big, 'a', 40000);
    assert_int_equal(khx_pcre_compile(big, 40000, "", 0, &ser, &n, &cf, err, sizeof(err)),
                     KH_EFORMAT);
    assert_non_null(strstr(err, "longer than"));
    free(big);
    char nest[400];
    memset(nest, '(', 200);
    memset(nest + 200, ')', 200);
    assert_int_equal(khx_pcre_compile(nest, 400, "", 0, &ser, &n, &cf, err, sizeof(err)),
                     KH_EFORMAT);
    assert_null(ser);
}

static void pcre_compile_reports_cflags(void **state)
{
    (void)state;
    uint8_t *ser = NULL;
    size_t n = 0;
    unsigned cf = 0;
    char err[256];
    assert_int_equal(khx_pcre_compile("a", 1, "greismxAEU", 10, &ser, &n, &cf, err, sizeof(err)),
                     0);
    assert_int_equal(cf, KHX_PCRE_GLOBAL | KHX_PCRE_ROLLING | KHX_PCRE_ENCOMPASS);
    free(ser);
    assert_int_equal(khx_pcre_compile("a", 1, NULL, 0, &ser, &n, &cf, err, sizeof(err)), 0);
    assert_int_equal(cf, 0);
    free(ser);
}

static void pcre_load_rejects_damaged_blobs(void **state)
{
    (void)state;
    uint8_t *ser = NULL;
    size_t n = 0;
    unsigned cf = 0;
    char err[256];
    struct khx_pcre *p = NULL;
    assert_int_equal(khx_pcre_compile("cla(m|n)av", 10, "g", 1, &ser, &n, &cf, err, sizeof(err)),
                     0);

    /* Every truncation. */
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(khx_pcre_load(ser, k, cf, &p), KH_EFORMAT);
        assert_null(p);
    }
    /* Trailing bytes, and a size field that claims more than there is. */
    uint8_t *longer = malloc(n + 64);
    memcpy(longer, ser, n);
    memset(longer + n, 0, 64);
    assert_int_equal(khx_pcre_load(longer, n + 1, cf, &p), KH_EFORMAT);
    assert_int_equal(khx_pcre_load(longer, n + 64, cf, &p), KH_EFORMAT);
    /* A damaged header. */
    memcpy(longer, ser, n);
    longer[0] ^= 0xff;
    assert_int_equal(khx_pcre_load(longer, n, cf, &p), KH_EFORMAT);
    /* Unknown matcher flags. */
    assert_int_equal(khx_pcre_load(ser, n, 0x80, &p), KH_EFORMAT);
    assert_int_equal(khx_pcre_load(NULL, n, cf, &p), KH_EFORMAT);
    assert_int_equal(khx_pcre_load(ser, n, cf, NULL), KH_EINVAL);

    /* An unaligned copy of a good blob loads and matches. */
    memcpy(longer + 1, ser, n);
    assert_int_equal(khx_pcre_load(longer + 1, n, cf, &p), 0);
    assert_int_equal(khx_pcre_count(p, (const uint8_t *)"clamav clanav", 13, 0, 13, 13), 2);
    khx_pcre_free(p);
    khx_pcre_free(NULL);
    free(longer);
    free(ser);
}

/* A pattern that backtracks heavily at every start position, on a subject
 * made so that no single position reaches PCRE2's match limit: the step
 * budget must stop the search, and quickly. */
static void pcre_hostile_regex_is_bounded(void **state)
{
    (void)state;
    size_t n = 1u << 20;
    uint8_t *buf = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (i % 14 == 13) ? 'c' : 'a';
    struct khx_pcre *p = pcre_make("(*NO_START_OPT)(?:a+)+b", "g");
    assert_int_equal(khx_pcre_count(p, buf, n, 0, n, n), KH_EMATCHER);
    khx_pcre_free(p);

    /* A single catastrophic position hits the match limit. */
    memset(buf, 'a', n);
    p = pcre_make("(*NO_START_OPT)(a|aa)+c", "");
    assert_int_equal(khx_pcre_count(p, buf, 4096, 0, 0, 4096), KH_EMATCHER);
    khx_pcre_free(p);

    /* A normal regex over the same megabyte is fine. */
    p = pcre_make("a{13}c", "g");
    for (size_t i = 0; i < n; i++)
        buf[i] = (i % 14 == 13) ? 'c' : 'a';
    assert_int_equal(khx_pcre_count(p, buf, n, 0, n, n), (int)(n / 14));
    khx_pcre_free(p);
    free(buf);
}

static void pcre_count_rejects_bad_arguments(void **state)
{
    (void)state;
    struct khx_pcre *p = pcre_make("a", "");
    assert_int_equal(khx_pcre_count(NULL, (const uint8_t *)"a", 1, 0, 1, 1), KH_EINVAL);
    assert_int_equal(khx_pcre_count(p, NULL, 1, 0, 1, 1), KH_EINVAL);
    assert_int_equal(khx_pcre_count(p, NULL, 0, 0, 0, 0), 0);
    assert_int_equal(khx_pcre_count(p, (const uint8_t *)"a", 1, 1, 0, 1), 0);
    khx_pcre_free(p);
}

/* The documented example, end to end: split, parse the PCRE subsignature,
 * compile its trigger and regex, and count. */
static void pcre_ldb_line_end_to_end(void **state)
{
    (void)state;
    const char *line = "Find.All.ClamAV;Engine:81-255,Target:0;1;"
                       "6265676c6164697427736e6f7462797465636f6465;0/clamav/g";
    struct khx_ldb_line l;
    struct khx_subsig s;
    char err[256];
    uint8_t *trig = NULL, *ser = NULL;
    size_t trig_len = 0, ser_len = 0;
    unsigned cf = 0;
    struct khx_pcre *p = NULL;

    assert_int_equal(khx_ldb_split(line, strlen(line), &l, err, sizeof(err)), 0);
    assert_int_equal(l.nsubsigs, 2);
    assert_int_equal(khx_subsig_parse(l.sub[1], l.sub_len[1], &s, err, sizeof(err)), 0);
    assert_int_equal(s.kind, KHX_SUB_PCRE);
    assert_int_equal(
        khx_lexpr_compile(s.trigger, s.trigger_len, 1, &trig, &trig_len, err, sizeof(err)), 0);
    assert_int_equal(khx_pcre_compile(s.regex, s.regex_len, s.flags, s.flags_len, &ser, &ser_len,
                                      &cf, err, sizeof(err)),
                     0);
    assert_int_equal(khx_pcre_load(ser, ser_len, cf, &p), 0);
    const char *data = "begladit'snotbytecode clamav clamav";
    uint32_t counts[2] = {1, 0};
    assert_int_equal(khx_lexpr_eval(trig, trig_len, counts, 1), 1);
    counts[1] = (uint32_t)khx_pcre_count(p, (const uint8_t *)data, strlen(data), 0, strlen(data),
                                         strlen(data));
    assert_int_equal(counts[1], 2);
    uint8_t *expr = NULL;
    size_t expr_len = 0;
    assert_int_equal(
        khx_lexpr_compile(l.expr, l.expr_len, l.nsubsigs, &expr, &expr_len, err, sizeof(err)), 0);
    assert_int_equal(khx_lexpr_eval(expr, expr_len, counts, 2), 1);
    free(expr);
    free(trig);
    free(ser);
    khx_pcre_free(p);
}

/* ------------------------------------------------------------------------ */
/* Real signature files                                                      */
/* ------------------------------------------------------------------------ */

/* Parses every line of one .ldb file; returns the number of signatures. */
static unsigned parse_ldb_file(const char *path)
{
    uint8_t *data = NULL;
    size_t len = 0;
    struct khx_lines it;
    const char *line;
    size_t n;
    unsigned sigs = 0;

    if (khx_read_file(path, 1 << 24, &data, &len) != 0)
        fail_msg("cannot read %s", path);
    khx_lines_init(&it, data, len);
    while (khx_lines_next(&it, &line, &n)) {
        struct khx_ldb_line l;
        struct khx_tdb t;
        char err[256];
        uint8_t *prog = NULL;
        size_t plen = 0;
        if (n == 0 || line[0] == '#')
            continue;
        if (khx_ldb_split(line, n, &l, err, sizeof(err)) != 0 ||
            khx_tdb_parse(l.tdb, l.tdb_len, &t, err, sizeof(err)) != 0 ||
            khx_lexpr_compile(l.expr, l.expr_len, l.nsubsigs, &prog, &plen, err, sizeof(err)) != 0)
            fail_msg("%s:%u: %s", path, it.lineno, err);
        assert_int_equal(khx_lexpr_check(prog, plen, l.nsubsigs), 0);
        free(prog);
        for (unsigned i = 0; i < l.nsubsigs; i++) {
            struct khx_subsig s;
            if (khx_subsig_parse(l.sub[i], l.sub_len[i], &s, err, sizeof(err)) != 0)
                fail_msg("%s:%u: subsignature %u: %s", path, it.lineno, i, err);
        }
        /* Facts about the known files. */
        if (span_is(l.name, l.name_len, "Win.Test.LilEXE")) {
            struct khx_subsig s;
            assert_int_equal(khx_subsig_parse(l.sub[0], l.sub_len[0], &s, err, sizeof(err)), 0);
            assert_int_equal(s.offset.type, KHX_OFF_ABS);
            assert_int_equal(s.offset.n, 1552);
            assert_int_equal(t.engine_min, 90);
            assert_int_equal(t.target, 1);
        }
        if (span_is(l.name, l.name_len, "Test.Sig.LDB_1of2_PE_ICON_1"))
            assert_true(t.present & KHX_TDB_ICONGROUP);
        if (span_is(l.name, l.name_len, "Test.LDB")) {
            assert_int_equal(t.engine_min, 52);
            assert_int_equal(l.nsubsigs, 1);
        }
        sigs++;
    }
    free(data);
    return sigs;
}

static void ldb_real_clamav_files(void **state)
{
    (void)state;
    const char *data = tu_shared_data();
    if (data == NULL) {
        printf("SKIP: ../shared/data is absent; real .ldb files not tested\n");
        return;
    }
    static const char *const dirs[] = {"clamav/sigs/allmatch_test_inline",
                                       "clamav/sigs/embedded_testfiles",
                                       "clamav/sigs/pe_allmatch/alert-sigs"};
    unsigned files = 0, sigs = 0;
    for (size_t d = 0; d < KHX_ARRAY_LEN(dirs); d++) {
        char dir[1024];
        snprintf(dir, sizeof(dir), "%s/%s", data, dirs[d]);
        DIR *dh = opendir(dir);
        if (dh == NULL) {
            printf("SKIP: %s is absent\n", dir);
            continue;
        }
        struct dirent *de;
        while ((de = readdir(dh)) != NULL) {
            if (strcmp(khx_path_ext(de->d_name), "ldb") != 0)
                continue;
            char path[2048];
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            sigs += parse_ldb_file(path);
            files++;
        }
        closedir(dh);
    }
    printf("parsed %u signatures from %u real .ldb files\n", sigs, files);
    if (files > 0)
        assert_true(sigs >= files);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lexpr_single_subsig_needs_a_match),
        cmocka_unit_test(lexpr_and_or_truth_tables),
        cmocka_unit_test(lexpr_block_count_and_distinct),
        cmocka_unit_test(lexpr_eq_zero_is_negation),
        cmocka_unit_test(lexpr_exact_counts),
        cmocka_unit_test(lexpr_block_of_and_counts_only_when_true),
        cmocka_unit_test(lexpr_less_than),
        cmocka_unit_test(lexpr_mixed_operators_group_like_clamav),
        cmocka_unit_test(lexpr_leaf_modifier_ignores_distinct_count),
        cmocka_unit_test(lexpr_nested_block_counts),
        cmocka_unit_test(lexpr_repeated_subsig_counts_each_reference),
        cmocka_unit_test(lexpr_large_counts),
        cmocka_unit_test(lexpr_compile_rejects_malformed),
        cmocka_unit_test(lexpr_nesting_and_length_limits),
        cmocka_unit_test(lexpr_check_rejects_hostile_programs),
        cmocka_unit_test(lexpr_refs_lists_mentioned_subsigs),
        cmocka_unit_test(tdb_all_keys),
        cmocka_unit_test(tdb_target_absent_is_minus_one),
        cmocka_unit_test(tdb_unsupported_keys_set_their_bits),
        cmocka_unit_test(tdb_engine_late_and_repeated),
        cmocka_unit_test(tdb_rejects_malformed),
        cmocka_unit_test(subsig_body_plain_and_modifiers),
        cmocka_unit_test(subsig_body_offsets),
        cmocka_unit_test(subsig_pcre_fields),
        cmocka_unit_test(subsig_special_kinds),
        cmocka_unit_test(subsig_rejects_malformed),
        cmocka_unit_test(ldb_split_fields),
        cmocka_unit_test(ldb_split_subsig_limit),
        cmocka_unit_test(ldb_split_rejects_malformed),
        cmocka_unit_test(pcre_count_first_and_global),
        cmocka_unit_test(pcre_window_start_positions),
        cmocka_unit_test(pcre_encompass_confines_the_match),
        cmocka_unit_test(pcre_flags_change_matching),
        cmocka_unit_test(pcre_empty_matches_advance),
        cmocka_unit_test(pcre_compile_rejects_bad_input),
        cmocka_unit_test(pcre_compile_reports_cflags),
        cmocka_unit_test(pcre_load_rejects_damaged_blobs),
        cmocka_unit_test(pcre_hostile_regex_is_bounded),
        cmocka_unit_test(pcre_count_rejects_bad_arguments),
        cmocka_unit_test(pcre_ldb_line_end_to_end),
        cmocka_unit_test(ldb_real_clamav_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
