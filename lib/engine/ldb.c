/*
 * ClamAV logical signatures (.ldb): the text side.
 *
 * This file splits an .ldb line into its fields, parses the target
 * description block, classifies and parses subsignatures, and compiles the
 * logical expression into a small stack program that is stored in the .kdb
 * and evaluated once per scanned object. Everything here reads untrusted
 * signature text or untrusted .kdb bytes: every index is checked against the
 * length before it is read, recursion is bounded by an explicit depth, and a
 * program is only ever interpreted by code that checks each operand.
 *
 * The expression semantics follow ClamAV's evaluator, including its grouping
 * of unparenthesised mixed operators; docs/internals/ldb.md describes them
 * with examples.
 */
#include "ldb.h"

#include <string.h>

#include "khx.h"

/* Limits for the expression compiler and for programs read from a .kdb. A
 * real expression over 64 subsignatures is a few hundred characters; the
 * limits leave ample room while keeping the compiler's recursion and the
 * evaluator's stack small and fixed. */
#define LEXPR_VERSION   1
#define LEXPR_MAX_SRC   8192
#define LEXPR_MAX_DEPTH 64
#define LEXPR_MAX_STACK 128
#define LEXPR_MAX_PROG  65536

/* Program opcodes. A program is one version byte followed by instructions:
 *   OP_SUB idx           push subsignature idx's value
 *   OP_AND, OP_OR        pop two values, push their combination
 *   OP_MOD cmp X:u32le Y:u32le
 *                        pop one value, push it filtered by a count modifier
 */
enum { OP_SUB = 1, OP_AND = 2, OP_OR = 3, OP_MOD = 4 };
enum { CMP_EQ = 0, CMP_LT = 1, CMP_GT = 2 };
#define OP_MOD_LEN 10

/* ------------------------------------------------------------------------ */
/* Small text helpers                                                        */
/* ------------------------------------------------------------------------ */

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* strchr() also finds the terminating NUL; this does not. */
static int in_set(char c, const char *set)
{
    return c != '\0' && strchr(set, c) != NULL;
}

static int has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

/* Parses a decimal number that must fit in `max`. */
static int parse_num(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (khx_parse_u64(s, len, &v) != 0 || v > max)
        return KH_EFORMAT;
    *out = v;
    return KH_OK;
}

/* How much of a field to quote in an error message: enough to find it, never
 * so much that the message is truncated before the reason. */
static int quote_len(size_t len)
{
    return (int)(len > 40 ? 40 : len);
}

/* ------------------------------------------------------------------------ */
/* Line splitting                                                            */
/* ------------------------------------------------------------------------ */

int khx_ldb_split(const char *line, size_t len, struct khx_ldb_line *out, char *err, size_t errlen)
{
    struct khx_ldb_line l;
    unsigned field = 0;
    size_t pos = 0;

    if (line == NULL || out == NULL) {
        khx_errf(err, errlen, "no line");
        return KH_EINVAL;
    }
    memset(&l, 0, sizeof(l));
    /* A PCRE subsignature writes ';' as \x3B, so every ';' separates fields. */
    for (;;) {
        size_t end = pos;
        while (end < len && line[end] != ';')
            end++;
        const char *f = line + pos;
        size_t n = end - pos;
        if (field == 0) {
            l.name = f;
            l.name_len = n;
        } else if (field == 1) {
            l.tdb = f;
            l.tdb_len = n;
        } else if (field == 2) {
            l.expr = f;
            l.expr_len = n;
        } else {
            unsigned i = field - 3;
            if (i >= KHX_LDB_MAX_SUBSIGS) {
                khx_errf(err, errlen, "more than %d subsignatures", KHX_LDB_MAX_SUBSIGS);
                return KH_EFORMAT;
            }
            if (n == 0) {
                /* This also catches the trailing ';' ClamAV rejects. */
                khx_errf(err, errlen, "subsignature %u is empty (column %zu)", i, pos + 1);
                return KH_EFORMAT;
            }
            l.sub[i] = f;
            l.sub_len[i] = n;
            l.nsubsigs = i + 1;
        }
        field++;
        if (end == len)
            break;
        pos = end + 1;
    }
    if (field < 4) {
        khx_errf(err, errlen,
                 "expected Name;TargetDescriptionBlock;LogicalExpression;Subsig0[;...] but "
                 "found %u field%s",
                 field, field == 1 ? "" : "s");
        return KH_EFORMAT;
    }
    if (l.name_len == 0) {
        khx_errf(err, errlen, "empty signature name");
        return KH_EFORMAT;
    }
    if (l.tdb_len == 0) {
        khx_errf(err, errlen, "empty target description block");
        return KH_EFORMAT;
    }
    if (l.expr_len == 0) {
        khx_errf(err, errlen, "empty logical expression");
        return KH_EFORMAT;
    }
    *out = l;
    return KH_OK;
}

/* ------------------------------------------------------------------------ */
/* Target description block                                                  */
/* ------------------------------------------------------------------------ */

/* Parses "X" or "X-Y" (X <= Y <= max). */
static int parse_range(const char *v, size_t n, uint64_t max, uint64_t *lo, uint64_t *hi)
{
    const char *dash = memchr(v, '-', n);
    if (dash == NULL) {
        if (parse_num(v, n, max, lo) != 0)
            return KH_EFORMAT;
        *hi = *lo;
        return KH_OK;
    }
    size_t a = (size_t)(dash - v);
    if (parse_num(v, a, max, lo) != 0 || parse_num(dash + 1, n - a - 1, max, hi) != 0 || *lo > *hi)
        return KH_EFORMAT;
    return KH_OK;
}

/* Checks a ClamAV file type name: "CL_TYPE_" followed by [A-Z0-9_]. */
static int cl_type_ok(const char *v, size_t n)
{
    if (!has_prefix(v, n, "CL_TYPE_") || n == 8 || n >= 48)
        return 0;
    for (size_t i = 8; i < n; i++) {
        char c = v[i];
        if (!((c >= 'A' && c <= 'Z') || is_digit(c) || c == '_'))
            return 0;
    }
    return 1;
}

static int key_is(const char *k, size_t n, const char *name)
{
    return n == strlen(name) && memcmp(k, name, n) == 0;
}

/* Parses one "Key:Value" item into t. */
static int tdb_item(struct khx_tdb *t, const char *k, size_t kn, const char *v, size_t vn,
                    char *err, size_t errlen)
{
    uint64_t lo, hi;

    if (key_is(k, kn, "Engine")) {
        if (parse_range(v, vn, UINT32_MAX, &lo, &hi) != 0)
            goto bad_range;
        t->engine_min = (uint32_t)lo;
        t->engine_max = (uint32_t)hi;
        t->present |= KHX_TDB_ENGINE;
    } else if (key_is(k, kn, "Target")) {
        /* ClamAV's target types are 0..13; 255 leaves room for new ones while
         * keeping the value small enough for any table the caller keeps. */
        if (parse_num(v, vn, 255, &lo) != 0) {
            khx_errf(err, errlen, "Target: '%.*s' is not a number from 0 to 255", quote_len(vn), v);
            return KH_EFORMAT;
        }
        t->target = (int32_t)lo;
        t->present |= KHX_TDB_TARGET;
    } else if (key_is(k, kn, "FileSize")) {
        if (parse_range(v, vn, UINT64_MAX, &lo, &hi) != 0)
            goto bad_range;
        t->filesize_min = lo;
        t->filesize_max = hi;
        t->present |= KHX_TDB_FILESIZE;
    } else if (key_is(k, kn, "EntryPoint")) {
        if (parse_range(v, vn, UINT64_MAX, &lo, &hi) != 0)
            goto bad_range;
        t->ep_min = lo;
        t->ep_max = hi;
        t->present |= KHX_TDB_ENTRYPOINT;
    } else if (key_is(k, kn, "NumberOfSections")) {
        if (parse_range(v, vn, UINT32_MAX, &lo, &hi) != 0)
            goto bad_range;
        t->nsect_min = (uint32_t)lo;
        t->nsect_max = (uint32_t)hi;
        t->present |= KHX_TDB_NSECTIONS;
    } else if (key_is(k, kn, "Container") || key_is(k, kn, "HandlerType")) {
        if (!cl_type_ok(v, vn)) {
            khx_errf(err, errlen, "%.*s: '%.*s' is not a CL_TYPE_* name", (int)kn, k, quote_len(vn),
                     v);
            return KH_EFORMAT;
        }
        int container = key_is(k, kn, "Container");
        char *dst = container ? t->container : t->handler_type;
        memcpy(dst, v, vn);
        dst[vn] = '\0';
        t->present |= container ? KHX_TDB_CONTAINER : KHX_TDB_HANDLERTYPE;
    } else if (key_is(k, kn, "Intermediates")) {
        /* Up to 16 container types, top-down, separated by '>'. There is no
         * field to keep them in: the bit tells the caller to skip the sig. */
        unsigned layers = 0;
        size_t pos = 0;
        for (;;) {
            size_t end = pos;
            while (end < vn && v[end] != '>')
                end++;
            if (++layers > 16 || !cl_type_ok(v + pos, end - pos)) {
                khx_errf(err, errlen,
                         "Intermediates: '%.*s' is not a list of at most 16 CL_TYPE_* names "
                         "separated by '>'",
                         quote_len(vn), v);
                return KH_EFORMAT;
            }
            if (end == vn)
                break;
            pos = end + 1;
        }
        t->present |= KHX_TDB_INTERMEDIATES;
    } else if (key_is(k, kn, "IconGroup1") || key_is(k, kn, "IconGroup2")) {
        /* Icon group names come from .idb files, which we do not load. */
        for (size_t i = 0; i < vn; i++) {
            char c = v[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '_' ||
                  c == '-' || c == '.')) {
                khx_errf(err, errlen, "%.*s: bad icon group name '%.*s'", (int)kn, k, quote_len(vn),
                         v);
                return KH_EFORMAT;
            }
        }
        t->present |= KHX_TDB_ICONGROUP;
    } else {
        khx_errf(err, errlen, "unknown keyword '%.*s'", quote_len(kn), k);
        return KH_EFORMAT;
    }
    return KH_OK;

bad_range:
    khx_errf(err, errlen, "%.*s: '%.*s' is not a number or a min-max range", (int)kn, k,
             quote_len(vn), v);
    return KH_EFORMAT;
}

int khx_tdb_parse(const char *s, size_t len, struct khx_tdb *out, char *err, size_t errlen)
{
    struct khx_tdb t;
    size_t pos = 0;

    if (s == NULL || out == NULL) {
        khx_errf(err, errlen, "no target description block");
        return KH_EINVAL;
    }
    memset(&t, 0, sizeof(t));
    t.target = -1;
    if (len == 0) {
        khx_errf(err, errlen, "empty target description block");
        return KH_EFORMAT;
    }
    /* ClamAV asks for Engine to come first, but its own documentation has
     * signatures that repeat it later; order and repeats are accepted and the
     * last value of a key wins. */
    for (;;) {
        size_t end = pos;
        while (end < len && s[end] != ',')
            end++;
        const char *item = s + pos;
        size_t n = end - pos;
        const char *colon = memchr(item, ':', n);
        if (n == 0 || colon == NULL || colon == item || colon == item + n - 1) {
            khx_errf(err, errlen, "item '%.*s' at column %zu is not Key:Value", quote_len(n), item,
                     pos + 1);
            return KH_EFORMAT;
        }
        size_t kn = (size_t)(colon - item);
        int r = tdb_item(&t, item, kn, colon + 1, n - kn - 1, err, errlen);
        if (r != 0)
            return r;
        if (end == len)
            break;
        pos = end + 1;
    }
    *out = t;
    return KH_OK;
}

/* ------------------------------------------------------------------------ */
/* Logical expression compiler                                               */
/* ------------------------------------------------------------------------ */

/* The compiler works on ranges [b, e) of the source. It emits postfix code
 * directly and tracks the evaluator's stack height so that a program it
 * produces always passes khx_lexpr_check. */
struct lexc {
    const char *s;
    unsigned nsubsigs;
    struct khx_buf out;
    unsigned sp;
    char *err;
    size_t errlen;
};

static int lexc_fail(struct lexc *c, size_t pos, const char *what)
{
    khx_errf(c->err, c->errlen, "%s at column %zu", what, pos + 1);
    return KH_EFORMAT;
}

static int is_op(char ch)
{
    return ch == '&' || ch == '|';
}

static int emit_sub(struct lexc *c, unsigned idx, size_t pos)
{
    if (c->sp + 1 > LEXPR_MAX_STACK)
        return lexc_fail(c, pos, "expression too complex");
    if (khx_buf_append_u8(&c->out, OP_SUB) != 0 || khx_buf_append_u8(&c->out, (uint8_t)idx) != 0)
        return KH_ENOMEM;
    c->sp++;
    return KH_OK;
}

static int emit_op(struct lexc *c, char op)
{
    /* Both operands were emitted just before, so sp >= 2 here. */
    if (khx_buf_append_u8(&c->out, op == '&' ? OP_AND : OP_OR) != 0)
        return KH_ENOMEM;
    c->sp--;
    return KH_OK;
}

/* Returns the position of the first (or last) '&'/'|' outside parentheses
 * in [b, e), or e if there is none. The whole source was checked for
 * balanced parentheses before parsing, so depth never goes negative. */
static size_t find_top_op(const struct lexc *c, size_t b, size_t e, int last)
{
    size_t found = e;
    int depth = 0;
    for (size_t i = b; i < e; i++) {
        char ch = c->s[i];
        if (ch == '(') {
            depth++;
        } else if (ch == ')') {
            depth--;
        } else if (depth == 0 && is_op(ch)) {
            found = i;
            if (!last)
                break;
        }
    }
    return found;
}

/* Parses a count modifier "=X", "<X", ">X", "=X,Y" ... covering [b, e) and
 * emits OP_MOD. On a single subsignature ClamAV ignores ",Y"; so do we. */
static int parse_mod(struct lexc *c, size_t b, size_t e, int leaf)
{
    const char *s = c->s;
    uint64_t x, y = 0;
    uint8_t cmp;

    if (s[b] == '=')
        cmp = CMP_EQ;
    else if (s[b] == '<')
        cmp = CMP_LT;
    else if (s[b] == '>')
        cmp = CMP_GT;
    else
        return lexc_fail(c, b, "expected an operator, a modifier or the end");
    size_t i = b + 1, start = i;
    while (i < e && is_digit(s[i]))
        i++;
    if (i == start)
        return lexc_fail(c, start, "expected a number after the modifier");
    if (parse_num(s + start, i - start, UINT32_MAX, &x) != 0)
        return lexc_fail(c, start, "modifier count too large");
    if (i < e && s[i] == ',') {
        start = ++i;
        while (i < e && is_digit(s[i]))
            i++;
        if (i == start)
            return lexc_fail(c, start, "expected a number after ','");
        if (parse_num(s + start, i - start, UINT32_MAX, &y) != 0)
            return lexc_fail(c, start, "modifier count too large");
    }
    if (i != e)
        return lexc_fail(c, i, "unexpected character after the modifier");
    if (leaf)
        y = 0;
    if (khx_buf_append_u8(&c->out, OP_MOD) != 0 || khx_buf_append_u8(&c->out, cmp) != 0 ||
        khx_buf_append_u32(&c->out, (uint32_t)x) != 0 ||
        khx_buf_append_u32(&c->out, (uint32_t)y) != 0)
        return KH_ENOMEM;
    return KH_OK;
}

static int parse_free(struct lexc *c, size_t b, size_t e, unsigned depth);
static int parse_primary(struct lexc *c, size_t b, size_t e, unsigned depth);

/* The inside of a parenthesised block. ClamAV splits a block at its last
 * operator: (A o1 B o2 C) is ((A o1 B) o2 C), where the left part is read
 * like any other expression. */
static int parse_block(struct lexc *c, size_t b, size_t e, unsigned depth)
{
    int r;
    if (depth > LEXPR_MAX_DEPTH)
        return lexc_fail(c, b, "expression nested too deeply");
    if (b == e)
        return lexc_fail(c, b, "empty parentheses");
    size_t lp = find_top_op(c, b, e, 1);
    if (lp == e)
        return parse_free(c, b, e, depth);
    if ((r = parse_free(c, b, lp, depth)) != 0)
        return r;
    if ((r = parse_primary(c, lp + 1, e, depth)) != 0)
        return r;
    return emit_op(c, c->s[lp]);
}

/* One operand: a subsignature index or a parenthesised block, each with an
 * optional count modifier. [b, e) holds no operator outside parentheses. */
static int parse_primary(struct lexc *c, size_t b, size_t e, unsigned depth)
{
    const char *s = c->s;
    int r;

    if (b == e)
        return lexc_fail(c, b, "missing operand");
    if (s[b] == '(') {
        int d = 0;
        size_t m = b;
        for (; m < e; m++) {
            if (s[m] == '(')
                d++;
            else if (s[m] == ')' && --d == 0)
                break;
        }
        if (m == e)
            return lexc_fail(c, b, "missing ')'");
        if ((r = parse_block(c, b + 1, m, depth + 1)) != 0)
            return r;
        if (m + 1 < e) {
            /* "(0)>2,3" refers to a single subsignature, like "0>2,3". */
            size_t k = b + 1;
            while (k < m && !is_op(s[k]))
                k++;
            return parse_mod(c, m + 1, e, k == m);
        }
        return KH_OK;
    }
    if (!is_digit(s[b]))
        return lexc_fail(c, b, "expected a subsignature index or '('");
    size_t i = b;
    while (i < e && is_digit(s[i]))
        i++;
    uint64_t idx;
    if (parse_num(s + b, i - b, UINT32_MAX, &idx) != 0 || idx >= c->nsubsigs) {
        khx_errf(c->err, c->errlen,
                 "subsignature index '%.*s' at column %zu is out of range (the signature has %u)",
                 quote_len(i - b), s + b, b + 1, c->nsubsigs);
        return KH_EFORMAT;
    }
    if ((r = emit_sub(c, (unsigned)idx, b)) != 0)
        return r;
    if (i < e)
        return parse_mod(c, i, e, 1);
    return KH_OK;
}

/* A sequence of operands joined by '&' and '|'. ClamAV splits at the first
 * operator, so A o1 B o2 C is A o1 (B o2 C): runs of one operator are folded
 * left to right (both are associative), and where the operator changes the
 * rest of the sequence becomes the right operand. */
static int parse_free(struct lexc *c, size_t b, size_t e, unsigned depth)
{
    int r;
    if (depth > LEXPR_MAX_DEPTH)
        return lexc_fail(c, b, "expression nested too deeply");
    size_t p = find_top_op(c, b, e, 0);
    if ((r = parse_primary(c, b, p, depth)) != 0)
        return r;
    while (p < e) {
        char op = c->s[p];
        size_t nb = p + 1;
        size_t np = find_top_op(c, nb, e, 0);
        if (np < e && c->s[np] != op) {
            if ((r = parse_free(c, nb, e, depth + 1)) != 0)
                return r;
            return emit_op(c, op);
        }
        if ((r = parse_primary(c, nb, np, depth)) != 0)
            return r;
        if ((r = emit_op(c, op)) != 0)
            return r;
        p = np;
    }
    return KH_OK;
}

int khx_lexpr_compile(const char *s, size_t len, unsigned nsubsigs, uint8_t **prog,
                      size_t *prog_len, char *err, size_t errlen)
{
    int r = KH_EFORMAT;
    struct lexc c;
    int depth = 0;

    memset(&c, 0, sizeof(c));
    khx_buf_init(&c.out, LEXPR_MAX_PROG);
    c.s = s;
    c.nsubsigs = nsubsigs;
    c.err = err;
    c.errlen = errlen;
    if (s == NULL || prog == NULL || prog_len == NULL) {
        khx_errf(err, errlen, "no expression");
        r = KH_EINVAL;
        goto out;
    }
    if (len == 0) {
        khx_errf(err, errlen, "empty expression");
        goto out;
    }
    if (len > LEXPR_MAX_SRC) {
        khx_errf(err, errlen, "expression longer than %d characters", LEXPR_MAX_SRC);
        goto out;
    }
    if (nsubsigs > KHX_LDB_MAX_SUBSIGS) {
        khx_errf(err, errlen, "more than %d subsignatures", KHX_LDB_MAX_SUBSIGS);
        goto out;
    }
    /* Check the alphabet and the parentheses once, so that the parser below
     * can rely on balanced ranges. */
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '(') {
            depth++;
        } else if (ch == ')') {
            if (--depth < 0) {
                r = lexc_fail(&c, i, "')' without '('");
                goto out;
            }
        } else if (!is_digit(ch) && !is_op(ch) && ch != '=' && ch != '<' && ch != '>' &&
                   ch != ',') {
            khx_errf(err, errlen, "unexpected character 0x%02x at column %zu",
                     (unsigned)(unsigned char)ch, i + 1);
            goto out;
        }
    }
    if (depth != 0) {
        khx_errf(err, errlen, "missing ')' at the end of the expression");
        goto out;
    }
    if ((r = khx_buf_append_u8(&c.out, LEXPR_VERSION)) != 0)
        goto out;
    if ((r = parse_free(&c, 0, len, 0)) != 0)
        goto out;
    if (c.sp != 1) {
        /* Unreachable when the parser is right; kept as a guard. */
        khx_errf(err, errlen, "internal error: expression left %u values", c.sp);
        r = KH_EFORMAT;
        goto out;
    }
    *prog = khx_buf_steal(&c.out, prog_len);
    r = KH_OK;
out:
    if (r == KH_ELIMIT) {
        khx_errf(err, errlen, "compiled expression larger than %d bytes", LEXPR_MAX_PROG);
        r = KH_EFORMAT;
    } else if (r == KH_ENOMEM) {
        khx_errf(err, errlen, "out of memory");
    }
    khx_buf_free(&c.out);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Logical expression programs: checking, evaluation, references             */
/* ------------------------------------------------------------------------ */

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int khx_lexpr_check(const uint8_t *prog, size_t prog_len, unsigned nsubsigs)
{
    unsigned sp = 0;
    size_t i = 1;

    if (prog == NULL || prog_len < 3 || prog_len > LEXPR_MAX_PROG || prog[0] != LEXPR_VERSION ||
        nsubsigs > KHX_LDB_MAX_SUBSIGS)
        return KH_EFORMAT;
    while (i < prog_len) {
        switch (prog[i]) {
        case OP_SUB:
            if (prog_len - i < 2 || prog[i + 1] >= nsubsigs || sp >= LEXPR_MAX_STACK)
                return KH_EFORMAT;
            sp++;
            i += 2;
            break;
        case OP_AND:
        case OP_OR:
            if (sp < 2)
                return KH_EFORMAT;
            sp--;
            i++;
            break;
        case OP_MOD:
            if (prog_len - i < OP_MOD_LEN || prog[i + 1] > CMP_GT || sp < 1)
                return KH_EFORMAT;
            i += OP_MOD_LEN;
            break;
        default:
            return KH_EFORMAT;
        }
    }
    return sp == 1 ? KH_OK : KH_EFORMAT;
}

/* The value of a sub-expression. Invariant: when ok is 0, cnt and ids are 0,
 * which is what makes '&' and '|' associative and lets a false operand
 * contribute nothing to a block's count. */
struct lval {
    uint64_t cnt; /* matches counted by the parts that held */
    uint64_t ids; /* subsignatures with at least one match among those parts */
    int ok;
};

static int popcount64(uint64_t v)
{
    int n = 0;
    while (v) {
        v &= v - 1;
        n++;
    }
    return n;
}

int khx_lexpr_eval(const uint8_t *prog, size_t prog_len, const uint32_t *counts, unsigned nsubsigs)
{
    struct lval st[LEXPR_MAX_STACK];
    unsigned sp = 0;
    size_t i = 1;

    /* The checks mirror khx_lexpr_check, so that even an unchecked program
     * cannot make the evaluator read or write out of bounds; a malformed
     * program is simply false. */
    if (prog == NULL || prog_len < 3 || prog_len > LEXPR_MAX_PROG || prog[0] != LEXPR_VERSION ||
        nsubsigs > KHX_LDB_MAX_SUBSIGS || (counts == NULL && nsubsigs > 0))
        return 0;
    while (i < prog_len) {
        switch (prog[i]) {
        case OP_SUB: {
            if (prog_len - i < 2 || prog[i + 1] >= nsubsigs || sp >= LEXPR_MAX_STACK)
                return 0;
            unsigned idx = prog[i + 1];
            uint32_t n = counts[idx];
            st[sp].ok = n > 0;
            st[sp].cnt = n;
            st[sp].ids = n > 0 ? (uint64_t)1 << idx : 0;
            sp++;
            i += 2;
            break;
        }
        case OP_AND:
        case OP_OR: {
            if (sp < 2)
                return 0;
            struct lval *a = &st[sp - 2], *b = &st[sp - 1];
            int ok = prog[i] == OP_AND ? (a->ok && b->ok) : (a->ok || b->ok);
            if (ok) {
                a->cnt += b->cnt;
                a->ids |= b->ids;
            } else {
                a->cnt = 0;
                a->ids = 0;
            }
            a->ok = ok;
            sp--;
            i++;
            break;
        }
        case OP_MOD: {
            if (prog_len - i < OP_MOD_LEN || sp < 1)
                return 0;
            struct lval *a = &st[sp - 1];
            uint64_t x = get_u32(prog + i + 2);
            uint32_t y = get_u32(prog + i + 6);
            int pass;
            switch (prog[i + 1]) {
            case CMP_EQ:
                pass = a->cnt == x;
                break;
            case CMP_LT:
                pass = a->cnt < x;
                break;
            case CMP_GT:
                pass = a->cnt > x;
                break;
            default:
                return 0;
            }
            if (pass && y > 0 && (uint32_t)popcount64(a->ids) < y)
                pass = 0;
            if (!pass) {
                a->cnt = 0;
                a->ids = 0;
            }
            a->ok = pass;
            i += OP_MOD_LEN;
            break;
        }
        default:
            return 0;
        }
    }
    return sp == 1 && st[0].ok ? 1 : 0;
}

uint64_t khx_lexpr_refs(const uint8_t *prog, size_t prog_len)
{
    uint64_t mask = 0;
    size_t i = 1;

    if (prog == NULL || prog_len < 1 || prog[0] != LEXPR_VERSION)
        return 0;
    /* Walks the instructions; a malformed tail ends the walk. */
    while (i < prog_len) {
        switch (prog[i]) {
        case OP_SUB:
            if (prog_len - i < 2)
                return mask;
            if (prog[i + 1] < 64)
                mask |= (uint64_t)1 << prog[i + 1];
            i += 2;
            break;
        case OP_AND:
        case OP_OR:
            i++;
            break;
        case OP_MOD:
            i += OP_MOD_LEN;
            break;
        default:
            return mask;
        }
    }
    return mask;
}

/* ------------------------------------------------------------------------ */
/* Subsignatures                                                             */
/* ------------------------------------------------------------------------ */

/* Characters a hex body pattern may contain (checked in full later by
 * khx_body_parse); anything else means the text is not a body pattern. */
static int body_char_ok(char ch)
{
    return khx_hexval((unsigned char)ch) >= 0 || in_set(ch, "?*{}-()|![]LW");
}

static int parse_offset_prefix(const char *s, size_t n, struct khx_offset *off, char *err,
                               size_t errlen)
{
    char why[160];
    if (n == 0) {
        khx_errf(err, errlen, "empty offset before ':'");
        return KH_EFORMAT;
    }
    why[0] = '\0';
    if (khx_offset_parse(s, n, off, why, sizeof(why)) != 0) {
        khx_errf(err, errlen, "bad offset '%.*s': %s", quote_len(n), s, why);
        return KH_EFORMAT;
    }
    return KH_OK;
}

/* ${min-max}id$ */
static int parse_macro(const char *s, size_t len, char *err, size_t errlen)
{
    size_t i = 2, a = i;
    uint64_t lo, hi, id;
    while (i < len && is_digit(s[i]))
        i++;
    if (i == a || i >= len || s[i] != '-' || parse_num(s + a, i - a, UINT32_MAX, &lo) != 0)
        goto bad;
    a = ++i;
    while (i < len && is_digit(s[i]))
        i++;
    if (i == a || i >= len || s[i] != '}' || parse_num(s + a, i - a, UINT32_MAX, &hi) != 0 ||
        lo > hi)
        goto bad;
    a = ++i;
    while (i < len && is_digit(s[i]))
        i++;
    if (i == a || i + 1 != len || s[i] != '$' || parse_num(s + a, i - a, UINT32_MAX, &id) != 0)
        goto bad;
    return KH_OK;
bad:
    khx_errf(err, errlen, "macro subsignature '%.*s' is not ${min-max}id$", quote_len(len), s);
    return KH_EFORMAT;
}

/* N(>>off#opts#cmp) or N(<<off#opts#cmp): classified only, so the check is
 * of the shape, not of every option. */
static int is_bytecmp(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && is_digit(s[i]))
        i++;
    return i > 0 && len - i >= 3 && s[i] == '(' &&
           ((s[i + 1] == '>' && s[i + 2] == '>') || (s[i + 1] == '<' && s[i + 2] == '<'));
}

static int parse_bytecmp(const char *s, size_t len, struct khx_subsig *sub, char *err,
                         size_t errlen)
{
    size_t i = 0;
    uint64_t trig;
    unsigned hashes = 0;
    while (is_digit(s[i]))
        i++;
    if (parse_num(s, i, KHX_LDB_MAX_SUBSIGS - 1, &trig) != 0) {
        khx_errf(err, errlen, "byte-compare trigger '%.*s' is not a subsignature index",
                 quote_len(i), s);
        return KH_EFORMAT;
    }
    if (s[len - 1] != ')') {
        khx_errf(err, errlen, "byte-compare subsignature does not end with ')'");
        return KH_EFORMAT;
    }
    size_t prev = i + 1;
    for (size_t j = i + 1; j < len - 1; j++) {
        char ch = s[j];
        if (ch == '#') {
            if (j == prev)
                break;
            hashes++;
            prev = j + 1;
        } else if (!(khx_hexval((unsigned char)ch) >= 0 || in_set(ch, "<>=,xXhdailbe"))) {
            khx_errf(err, errlen, "unexpected character 0x%02x in byte-compare subsignature",
                     (unsigned)(unsigned char)ch);
            return KH_EFORMAT;
        }
    }
    if (hashes != 2 || prev == len - 1) {
        khx_errf(err, errlen, "byte-compare subsignature is not N(offset#options#comparisons)");
        return KH_EFORMAT;
    }
    sub->trigger = s;
    sub->trigger_len = i;
    return KH_OK;
}

static int parse_fuzzy(const char *s, size_t len, char *err, size_t errlen)
{
    size_t i = strlen("fuzzy_img#"), a = i;
    while (i < len && khx_hexval((unsigned char)s[i]) >= 0)
        i++;
    if (i == a || i >= len || s[i] != '#')
        goto bad;
    a = ++i;
    while (i < len && is_digit(s[i]))
        i++;
    if (i == a || i != len)
        goto bad;
    return KH_OK;
bad:
    khx_errf(err, errlen, "image fuzzy hash subsignature is not fuzzy_img#<hex>#<distance>");
    return KH_EFORMAT;
}

/* [offset:]Trigger/regex/[flags] */
static int parse_pcre(const char *s, size_t len, struct khx_subsig *sub, char *err, size_t errlen)
{
    const char *slash1 = memchr(s, '/', len);
    size_t p1 = (size_t)(slash1 - s);
    const char *colon = memchr(s, ':', p1);
    const char *trig = s;
    int r;

    if (colon != NULL) {
        if ((r = parse_offset_prefix(s, (size_t)(colon - s), &sub->offset, err, errlen)) != 0)
            return r;
        trig = colon + 1;
    }
    size_t tn = (size_t)(slash1 - trig);
    if (tn == 0) {
        khx_errf(err, errlen, "PCRE subsignature has no trigger before '/'");
        return KH_EFORMAT;
    }
    for (size_t i = 0; i < tn; i++) {
        if (!is_digit(trig[i]) && !in_set(trig[i], "&|()=<>,")) {
            khx_errf(err, errlen, "PCRE trigger '%.*s' is not a logical expression", quote_len(tn),
                     trig);
            return KH_EFORMAT;
        }
    }
    /* The regex runs to the last '/'; any '/' inside it must be escaped, so
     * the last one must not be. */
    size_t p2 = len - 1;
    while (p2 > p1 && s[p2] != '/')
        p2--;
    if (p2 == p1) {
        khx_errf(err, errlen, "PCRE subsignature has no closing '/'");
        return KH_EFORMAT;
    }
    size_t bs = 0;
    while (p2 - bs > p1 + 1 && s[p2 - bs - 1] == '\\')
        bs++;
    if (bs % 2 == 1) {
        khx_errf(err, errlen, "PCRE subsignature's closing '/' is escaped");
        return KH_EFORMAT;
    }
    if (p2 == p1 + 1) {
        khx_errf(err, errlen, "PCRE subsignature has an empty regular expression");
        return KH_EFORMAT;
    }
    for (size_t i = p2 + 1; i < len; i++) {
        if (!in_set(s[i], "greismxAEU")) {
            khx_errf(err, errlen, "unknown PCRE flag 0x%02x ('%c') at column %zu",
                     (unsigned)(unsigned char)s[i], s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?',
                     i + 1);
            return KH_EFORMAT;
        }
    }
    sub->trigger = trig;
    sub->trigger_len = tn;
    sub->regex = s + p1 + 1;
    sub->regex_len = p2 - p1 - 1;
    sub->flags = s + p2 + 1;
    sub->flags_len = len - p2 - 1;
    return KH_OK;
}

/* [offset:]hex[::mods] */
static int parse_body(const char *s, size_t len, struct khx_subsig *sub, char *err, size_t errlen)
{
    size_t body_len = len;
    int r;

    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] == ':' && s[i + 1] == ':') {
            body_len = i;
            break;
        }
    }
    if (body_len < len) {
        size_t m = body_len + 2;
        if (m == len) {
            khx_errf(err, errlen, "empty modifier list after '::'");
            return KH_EFORMAT;
        }
        for (; m < len; m++) {
            switch (s[m]) {
            case 'i':
                sub->mods |= KHX_MOD_NOCASE;
                break;
            case 'w':
                sub->mods |= KHX_MOD_WIDE;
                break;
            case 'f':
                sub->mods |= KHX_MOD_FULLWORD;
                break;
            case 'a':
                sub->mods |= KHX_MOD_ASCII;
                break;
            default:
                khx_errf(err, errlen, "unknown subsignature modifier 0x%02x at column %zu",
                         (unsigned)(unsigned char)s[m], m + 1);
                return KH_EFORMAT;
            }
        }
    }
    const char *hex = s;
    const char *colon = memchr(s, ':', body_len);
    if (colon != NULL) {
        if ((r = parse_offset_prefix(s, (size_t)(colon - s), &sub->offset, err, errlen)) != 0)
            return r;
        hex = colon + 1;
    }
    size_t hn = (size_t)(s + body_len - hex);
    if (hn == 0) {
        khx_errf(err, errlen, "empty hex pattern");
        return KH_EFORMAT;
    }
    for (size_t i = 0; i < hn; i++) {
        if (!body_char_ok(hex[i])) {
            khx_errf(err, errlen, "unexpected character 0x%02x at column %zu of the subsignature",
                     (unsigned)(unsigned char)hex[i], (size_t)(hex - s) + i + 1);
            return KH_EFORMAT;
        }
    }
    sub->hex = hex;
    sub->hex_len = hn;
    return KH_OK;
}

int khx_subsig_parse(const char *s, size_t len, struct khx_subsig *out, char *err, size_t errlen)
{
    struct khx_subsig sub;
    int r;

    if (s == NULL || out == NULL) {
        khx_errf(err, errlen, "no subsignature");
        return KH_EINVAL;
    }
    memset(&sub, 0, sizeof(sub));
    sub.offset.type = KHX_OFF_ANY;
    if (len == 0) {
        khx_errf(err, errlen, "empty subsignature");
        return KH_EFORMAT;
    }
    /* The kinds are told apart by their first characters, except PCRE, whose
     * '/' never occurs in the other kinds. */
    if (has_prefix(s, len, "fuzzy_img#")) {
        sub.kind = KHX_SUB_FUZZY_IMG;
        r = parse_fuzzy(s, len, err, errlen);
    } else if (has_prefix(s, len, "${")) {
        sub.kind = KHX_SUB_MACRO;
        r = parse_macro(s, len, err, errlen);
    } else if (is_bytecmp(s, len)) {
        sub.kind = KHX_SUB_BYTECMP;
        r = parse_bytecmp(s, len, &sub, err, errlen);
    } else if (memchr(s, '/', len) != NULL) {
        sub.kind = KHX_SUB_PCRE;
        r = parse_pcre(s, len, &sub, err, errlen);
    } else {
        sub.kind = KHX_SUB_BODY;
        r = parse_body(s, len, &sub, err, errlen);
    }
    if (r != 0)
        return r;
    *out = sub;
    return KH_OK;
}
