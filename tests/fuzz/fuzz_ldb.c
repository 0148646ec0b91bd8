/*
 * libFuzzer target for the .ldb text parsers and the logical expression
 * programs (lib/engine/ldb.c).
 *
 * The input is used three ways: as a whole .ldb line (split, TDB, expression
 * compiled and evaluated with counts derived from the input, every
 * subsignature classified); as a bare expression and a bare TDB, so the
 * fuzzer need not build a full line to reach them; and as a program read
 * from a .kdb, which khx_lexpr_check must either reject or make safe to
 * evaluate. A compiled program that fails the check is a bug, and so is a
 * reference outside the declared subsignatures.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "khx.h"
#include "ldb.h"

/* Counts for the evaluator, spread from the input's bytes so that runs see
 * zeros, small numbers and huge ones. */
static void make_counts(const uint8_t *data, size_t size, uint32_t *counts)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    for (unsigned i = 0; i < KHX_LDB_MAX_SUBSIGS; i++) {
        h = h * 1103515245u + 12345u;
        switch ((h >> 28) & 3) {
        case 0:
            counts[i] = 0;
            break;
        case 1:
            counts[i] = (h >> 8) & 7;
            break;
        case 2:
            counts[i] = (h >> 4) & 0xffff;
            break;
        default:
            counts[i] = UINT32_MAX - ((h >> 8) & 3);
            break;
        }
    }
}

static void expr_roundtrip(const char *s, size_t len, unsigned nsubsigs, const uint32_t *counts)
{
    uint8_t *prog = NULL;
    size_t plen = 0;
    char err[256];
    if (khx_lexpr_compile(s, len, nsubsigs, &prog, &plen, err, sizeof(err)) != 0)
        return;
    if (khx_lexpr_check(prog, plen, nsubsigs) != 0)
        abort();
    int v = khx_lexpr_eval(prog, plen, counts, nsubsigs);
    if (v != 0 && v != 1)
        abort();
    uint64_t refs = khx_lexpr_refs(prog, plen);
    if (nsubsigs < 64 && (refs >> nsubsigs) != 0)
        abort();
    free(prog);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    uint32_t counts[KHX_LDB_MAX_SUBSIGS];
    char err[256];
    struct khx_ldb_line l;
    struct khx_tdb t;
    struct khx_subsig sub;

    make_counts(data, size, counts);

    /* A whole line. */
    if (khx_ldb_split(s, size, &l, err, sizeof(err)) == 0) {
        (void)khx_tdb_parse(l.tdb, l.tdb_len, &t, err, sizeof(err));
        expr_roundtrip(l.expr, l.expr_len, l.nsubsigs, counts);
        for (unsigned i = 0; i < l.nsubsigs; i++) {
            if (khx_subsig_parse(l.sub[i], l.sub_len[i], &sub, err, sizeof(err)) == 0 &&
                sub.kind == KHX_SUB_PCRE)
                expr_roundtrip(sub.trigger, sub.trigger_len, i, counts);
        }
    }

    /* The parsers on their own. */
    (void)khx_tdb_parse(s, size, &t, err, sizeof(err));
    (void)khx_subsig_parse(s, size, &sub, err, sizeof(err));
    expr_roundtrip(s, size, size > 0 ? 1u + data[0] % KHX_LDB_MAX_SUBSIGS : 0, counts);

    /* The input as a program from a .kdb. */
    unsigned n = size > 1 ? data[1] % (KHX_LDB_MAX_SUBSIGS + 2) : 0;
    int ok = khx_lexpr_check(data, size, n) == 0;
    int v = khx_lexpr_eval(data, size, counts, n);
    if (v != 0 && v != 1)
        abort();
    if (!ok && v != 0)
        abort();
    (void)khx_lexpr_refs(data, size);
    return 0;
}
