/*
 * ClamAV body signatures (see bodysig.h), the parsing and compiling half: the
 * offset field of .ndb lines and .ldb subsignatures, the ldb modifiers, and
 * the hex body pattern itself. The other half, bodysig_match.c, checks and
 * runs the programs made here; bodysig_int.h holds what the two share (the
 * program encoding).
 *
 * A body pattern is compiled in three steps. The text is first read into a
 * small token tree (bytes with nibble masks, gaps, alternates, the (B) (L) (W)
 * classes). The ldb modifiers are then applied to that tree the way ClamAV
 * applies them to the text (fullword wraps the pattern in (W), wide puts a 00
 * after every byte), and ClamAV's structural rules are checked on the result.
 * Finally one walk over the tree writes both outputs: a Hyperscan expression
 * and the matcher program.
 */
#include "bodysig.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bodysig_int.h"
#include "khx.h"

/* Limits on what a pattern may be. The text limit keeps the token tree, the
 * program and the expression small; real signatures are far below it. The
 * limits of the program encoding itself are in bodysig_int.h. */
#define BODY_MAX_TEXT      65536u
#define BODY_MAX_NEST      15u /* nested alternates; ClamAV's own limit */
#define BODY_MAX_REGEX     (16u << 20)
#define BODY_SPLIT_FIXED   128u   /* ClamAV expands {n} below this into ?? bytes */
#define BODY_BRACKET_MAX   32u    /* [x-y]: y may be at most this (ClamAV) */
#define BODY_ALT_RANGE_MAX 127u   /* ranges inside alternates stay below 128 */
#define BODY_RE_REPEAT_MAX 1024u  /* longer regex repeats are widened */
#define BODY_NEG_RE_MAX    512u   /* member bytes up to which !(..) gets an exact regex */
#define BODY_RE_HS_MAX     12000u /* Hyperscan refuses expressions of ~16k characters */

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

static int is_letter(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static uint8_t other_case(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return (uint8_t)(c + 32);
    if (c >= 'a' && c <= 'z')
        return (uint8_t)(c - 32);
    return c;
}

static void set_add(uint8_t *s, unsigned b)
{
    s[b >> 3] |= (uint8_t)(1u << (b & 7));
}

static void set_invert(uint8_t *s)
{
    for (unsigned i = 0; i < 32; i++)
        s[i] = (uint8_t)~s[i];
}

/* ------------------------------------------------------------------------ */
/* Offsets and modifiers                                                    */
/* ------------------------------------------------------------------------ */

static int offset_number(const char *s, size_t len, int64_t *out)
{
    uint64_t v;
    if (khx_parse_u64(s, len, &v) != 0 || v > (uint64_t)INT64_MAX)
        return KH_EFORMAT;
    *out = (int64_t)v;
    return 0;
}

static int prefix_is(const char *s, size_t len, const char *pre)
{
    size_t n = strlen(pre);
    return len >= n && memcmp(s, pre, n) == 0;
}

int khx_offset_parse(const char *s, size_t len, struct khx_offset *out, char *err, size_t errlen)
{
    struct khx_offset o = {0};
    size_t blen = len;
    int show = len > 40 ? 40 : (int)len;

    if (s == NULL || out == NULL || len == 0) {
        khx_errf(err, errlen, "empty offset");
        return KH_EFORMAT;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ',') {
            blen = i;
            uint64_t shift;
            if (khx_parse_u64(s + i + 1, len - i - 1, &shift) != 0) {
                khx_errf(err, errlen, "offset '%.*s': MaxShift after ',' must be a decimal number",
                         show, s);
                return KH_EFORMAT;
            }
            o.maxshift = shift;
            break;
        }
    }
    int floating = blen < len;

    if (blen == 1 && s[0] == '*') {
        o.type = KHX_OFF_ANY;
        if (floating) {
            khx_errf(err, errlen, "offset '%.*s': '*' cannot take a MaxShift", show, s);
            return KH_EFORMAT;
        }
    } else if (blen == 2 && memcmp(s, "VI", 2) == 0) {
        o.type = KHX_OFF_VI;
        if (floating) {
            khx_errf(err, errlen, "offset '%.*s': 'VI' cannot take a MaxShift", show, s);
            return KH_EFORMAT;
        }
    } else if (prefix_is(s, blen, "EOF-")) {
        o.type = KHX_OFF_EOF;
        if (offset_number(s + 4, blen - 4, &o.n) != 0)
            goto bad_number;
    } else if (prefix_is(s, blen, "EP+") || prefix_is(s, blen, "EP-")) {
        o.type = KHX_OFF_EP;
        if (offset_number(s + 3, blen - 3, &o.n) != 0)
            goto bad_number;
        if (s[2] == '-')
            o.n = -o.n;
    } else if (prefix_is(s, blen, "SL+")) {
        o.type = KHX_OFF_LASTSECT;
        if (offset_number(s + 3, blen - 3, &o.n) != 0)
            goto bad_number;
    } else if (prefix_is(s, blen, "SE")) {
        int64_t x;
        o.type = KHX_OFF_SECT_WHOLE;
        if (offset_number(s + 2, blen - 2, &x) != 0 || x > (int64_t)UINT32_MAX)
            goto bad_number;
        o.section = (uint32_t)x;
    } else if (blen >= 2 && s[0] == 'S' && s[1] >= '0' && s[1] <= '9') {
        size_t plus = 1;
        int64_t x;
        while (plus < blen && s[plus] >= '0' && s[plus] <= '9')
            plus++;
        if (plus >= blen || s[plus] != '+') {
            khx_errf(err, errlen, "offset '%.*s': a section offset is written Sx+n", show, s);
            return KH_EFORMAT;
        }
        o.type = KHX_OFF_SECT;
        if (offset_number(s + 1, plus - 1, &x) != 0 || x > (int64_t)UINT32_MAX)
            goto bad_number;
        o.section = (uint32_t)x;
        if (offset_number(s + plus + 1, blen - plus - 1, &o.n) != 0)
            goto bad_number;
    } else if (blen > 0 && s[0] >= '0' && s[0] <= '9') {
        o.type = KHX_OFF_ABS;
        if (offset_number(s, blen, &o.n) != 0)
            goto bad_number;
    } else if (blen > 0 && s[0] == '$') {
        khx_errf(err, errlen, "offset '%.*s': macro group offsets ($n) are not supported", show, s);
        return KH_EFORMAT;
    } else {
        khx_errf(err, errlen,
                 "offset '%.*s' is not one of *, n, EOF-n, EP+n, EP-n, Sx+n, SEx, "
                 "SL+n, VI",
                 show, s);
        return KH_EFORMAT;
    }
    *out = o;
    return 0;

bad_number:
    khx_errf(err, errlen, "offset '%.*s': expected a decimal number in range", show, s);
    return KH_EFORMAT;
}

int khx_offset_resolve(const struct khx_offset *o, const struct khx_layout *l, uint64_t *lo,
                       uint64_t *hi, uint64_t *end_max)
{
    uint64_t size = l->size, start, limit = size;
    const struct khx_exe *exe = l->exe;
    int is_exe = exe != NULL && exe->type != KHX_EXE_NONE;

    switch (o->type) {
    case KHX_OFF_ANY:
        *lo = 0;
        *hi = size;
        *end_max = size;
        return 0;
    case KHX_OFF_ABS:
        if (o->n < 0)
            return 1;
        start = (uint64_t)o->n;
        break;
    case KHX_OFF_EOF:
        if (o->n < 0 || (uint64_t)o->n > size)
            return 1;
        start = size - (uint64_t)o->n;
        break;
    case KHX_OFF_EP:
        if (!is_exe || !exe->ep_valid)
            return 1;
        if (o->n < 0) {
            uint64_t back = (uint64_t)(-(o->n + 1)) + 1; /* no overflow for INT64_MIN */
            if (back > exe->ep)
                return 1;
            start = exe->ep - back;
        } else {
            if ((uint64_t)o->n > UINT64_MAX - exe->ep)
                return 1;
            start = exe->ep + (uint64_t)o->n;
        }
        break;
    case KHX_OFF_SECT:
    case KHX_OFF_LASTSECT: {
        if (!is_exe || exe->nsections == 0 || exe->sections == NULL)
            return 1;
        uint32_t x = o->type == KHX_OFF_SECT ? o->section : exe->nsections - 1;
        if (x >= exe->nsections || o->n < 0)
            return 1;
        uint64_t base = exe->sections[x].raw_off;
        if ((uint64_t)o->n > UINT64_MAX - base)
            return 1;
        start = base + (uint64_t)o->n;
        break;
    }
    case KHX_OFF_SECT_WHOLE: {
        if (!is_exe || exe->sections == NULL || o->section >= exe->nsections)
            return 1;
        const struct khx_section *sec = &exe->sections[o->section];
        if (sec->raw_off > size)
            return 1;
        start = sec->raw_off;
        limit = sec->raw_size > size - start ? size : start + sec->raw_size;
        /* The whole section is already allowed, so a MaxShift adds nothing. */
        *lo = start;
        *hi = limit;
        *end_max = limit;
        return 0;
    }
    default: /* KHX_OFF_VI and unknown types */
        return 1;
    }
    if (start > size)
        return 1;
    *lo = start;
    *hi = o->maxshift > size - start ? size : start + o->maxshift;
    *end_max = limit;
    return 0;
}

int khx_mods_parse(const char *s, size_t len, unsigned *mods, char *err, size_t errlen)
{
    unsigned m = 0;
    if (s == NULL && len > 0) {
        khx_errf(err, errlen, "modifiers missing");
        return KH_EFORMAT;
    }
    for (size_t i = 0; i < len; i++) {
        switch (s[i]) {
        case 'i':
            m |= KHX_MOD_NOCASE;
            break;
        case 'w':
            m |= KHX_MOD_WIDE;
            break;
        case 'f':
            m |= KHX_MOD_FULLWORD;
            break;
        case 'a':
            m |= KHX_MOD_ASCII;
            break;
        default:
            if ((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f)
                khx_errf(err, errlen, "unknown subsignature modifier '%c' (expected i, w, f, a)",
                         s[i]);
            else
                khx_errf(err, errlen, "unknown subsignature modifier byte 0x%02x",
                         (unsigned char)s[i]);
            return KH_EFORMAT;
        }
    }
    *mods = m;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Compile-time memory: an arena freed in one go                            */
/* ------------------------------------------------------------------------ */

/* Every allocation of one khx_body_parse call comes from here, so error paths
 * need no per-object cleanup. `max` bounds the total. */
struct arena {
    void *head;
    size_t used, max;
    int over_limit; /* the last failure was the limit, not malloc */
};

#define ARENA_HDR (alignof(max_align_t) > sizeof(void *) ? alignof(max_align_t) : sizeof(void *))

static void *ar_alloc(struct arena *a, size_t n)
{
    if (n > a->max || a->used > a->max - n) {
        a->over_limit = 1;
        return NULL;
    }
    unsigned char *p = calloc(1, ARENA_HDR + n);
    if (p == NULL) {
        a->over_limit = 0;
        return NULL;
    }
    *(void **)p = a->head;
    a->head = p;
    a->used += n;
    return p + ARENA_HDR;
}

static void ar_free(struct arena *a)
{
    void *p = a->head;
    while (p != NULL) {
        void *next = *(void **)p;
        free(p);
        p = next;
    }
    a->head = NULL;
}

/* ------------------------------------------------------------------------ */
/* Token tree                                                               */
/* ------------------------------------------------------------------------ */

enum { TK_BYTE = 1, TK_GAP, TK_GROUP, TK_CLASS };
enum { GAP_STAR = 1, GAP_BRACE, GAP_BRACKET };

struct tlist;

struct tok {
    uint8_t kind;
    uint8_t value, mask; /* TK_BYTE: matches b when (b & mask) == value */
    uint8_t form;        /* TK_GAP: GAP_* */
    uint8_t fixed;       /* TK_GAP: written as {n} */
    uint8_t negated;     /* TK_GROUP, TK_CLASS */
    uint8_t cls;         /* TK_CLASS: 'B', 'L' or 'W' */
    uint8_t edge;        /* TK_CLASS: 'l' starts a subpattern, 'r' ends one, 0 inside */
    uint32_t min, max;   /* TK_GAP; max is BODY_GAP_INF when unbounded */
    uint32_t col;        /* 1-based column in the pattern text */
    uint32_t nalts, altcap;
    struct tlist *alts; /* TK_GROUP */
};

struct tlist {
    struct tok *v;
    uint32_t n, cap;
};

static struct tok *tl_push(struct arena *a, struct tlist *l)
{
    if (l->n == l->cap) {
        uint32_t ncap = l->cap ? l->cap * 2 : 8;
        struct tok *nv = ncap > l->cap ? ar_alloc(a, (size_t)ncap * sizeof(*nv)) : NULL;
        if (nv == NULL)
            return NULL;
        if (l->n > 0)
            memcpy(nv, l->v, (size_t)l->n * sizeof(*nv));
        l->v = nv;
        l->cap = ncap;
    }
    struct tok *t = &l->v[l->n++];
    memset(t, 0, sizeof(*t));
    return t;
}

static struct tlist *group_add_alt(struct arena *a, struct tok *g)
{
    if (g->nalts == g->altcap) {
        uint32_t ncap = g->altcap ? g->altcap * 2 : 4;
        struct tlist *nv = ncap > g->altcap ? ar_alloc(a, (size_t)ncap * sizeof(*nv)) : NULL;
        if (nv == NULL)
            return NULL;
        if (g->nalts > 0)
            memcpy(nv, g->alts, (size_t)g->nalts * sizeof(*nv));
        g->alts = nv;
        g->altcap = ncap;
    }
    struct tlist *l = &g->alts[g->nalts++];
    memset(l, 0, sizeof(*l));
    return l;
}

static int is_lit(const struct tok *t)
{
    return t->kind == TK_BYTE && t->mask == 0xff;
}

/* A token that matches any bytes: ?? or a gap. */
static int is_anybytes(const struct tok *t)
{
    return t->kind == TK_GAP || (t->kind == TK_BYTE && t->mask == 0);
}

/* Whether a gap splits the pattern into subpatterns. ClamAV turns {n} with
 * n < 128 into n ?? bytes, and [x-y] belongs to the subpattern it sits in. */
static int splits(const struct tok *t)
{
    if (t->kind != TK_GAP)
        return 0;
    if (t->form == GAP_STAR)
        return 1;
    if (t->form == GAP_BRACE)
        return !(t->fixed && t->min < BODY_SPLIT_FIXED);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Parser                                                                   */
/* ------------------------------------------------------------------------ */

struct parser {
    const char *s;
    size_t len, pos;
    struct arena *ar;
    char *err;
    size_t errlen;
};

static int perr(struct parser *p, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int perr(struct parser *p, size_t pos, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    khx_errf(p->err, p->errlen, "column %zu: %s", pos + 1, msg);
    return KH_EFORMAT;
}

/* Reports a failed arena allocation: the limit is a property of the pattern,
 * a failed malloc is not. */
static int arena_fail(struct arena *a, char *err, size_t errlen)
{
    if (a->over_limit) {
        khx_errf(err, errlen, "pattern is too complex to compile");
        return KH_EFORMAT;
    }
    khx_errf(err, errlen, "out of memory");
    return KH_ENOMEM;
}

static int parse_num(struct parser *p, uint32_t *out)
{
    size_t start = p->pos;
    uint64_t v = 0;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        v = v * 10 + (uint64_t)(p->s[p->pos] - '0');
        if (v > BODY_GAP_MAX)
            return perr(p, start, "number is too large (at most %u)", BODY_GAP_MAX);
        p->pos++;
    }
    if (p->pos == start)
        return perr(p, start, "expected a decimal number");
    *out = (uint32_t)v;
    return 0;
}

static int parse_brace(struct parser *p, int in_group, struct tlist *out)
{
    size_t at = p->pos++;
    uint32_t lo = 0, hi = BODY_GAP_INF;
    int fixed = 0, r;

    if (p->pos < p->len && p->s[p->pos] == '-') {
        p->pos++;
        if ((r = parse_num(p, &hi)) != 0)
            return r;
    } else {
        if ((r = parse_num(p, &lo)) != 0)
            return r;
        if (p->pos < p->len && p->s[p->pos] == '-') {
            p->pos++;
            if (p->pos < p->len && p->s[p->pos] != '}' && (r = parse_num(p, &hi)) != 0)
                return r;
        } else {
            hi = lo;
            fixed = 1;
        }
    }
    if (p->pos >= p->len || p->s[p->pos] != '}')
        return perr(p, at, "'{' is not closed by '}'");
    p->pos++;
    if (hi != BODY_GAP_INF && lo > hi)
        return perr(p, at, "range {%u-%u} has its minimum above its maximum", lo, hi);
    if (in_group && (hi == BODY_GAP_INF || hi > BODY_ALT_RANGE_MAX))
        return perr(p, at, "a range inside alternates must have a maximum of at most %u",
                    BODY_ALT_RANGE_MAX);
    struct tok *t = tl_push(p->ar, out);
    if (t == NULL)
        return arena_fail(p->ar, p->err, p->errlen);
    t->kind = TK_GAP;
    t->form = GAP_BRACE;
    t->fixed = (uint8_t)fixed;
    t->min = lo;
    t->max = hi;
    t->col = (uint32_t)at + 1;
    return 0;
}

static int parse_bracket(struct parser *p, struct tlist *out)
{
    size_t at = p->pos++;
    uint32_t lo, hi;
    int r;
    if ((r = parse_num(p, &lo)) != 0)
        return r;
    if (p->pos >= p->len || p->s[p->pos] != '-')
        return perr(p, at, "'[' must be followed by x-y]");
    p->pos++;
    if ((r = parse_num(p, &hi)) != 0)
        return r;
    if (p->pos >= p->len || p->s[p->pos] != ']')
        return perr(p, at, "'[' is not closed by ']'");
    p->pos++;
    if (lo > hi)
        return perr(p, at, "range [%u-%u] has its minimum above its maximum", lo, hi);
    if (hi > BODY_BRACKET_MAX)
        return perr(p, at, "range [%u-%u] may span at most %u bytes", lo, hi, BODY_BRACKET_MAX);
    struct tok *t = tl_push(p->ar, out);
    if (t == NULL)
        return arena_fail(p->ar, p->err, p->errlen);
    t->kind = TK_GAP;
    t->form = GAP_BRACKET;
    t->min = lo;
    t->max = hi;
    t->col = (uint32_t)at + 1;
    return 0;
}

static int parse_byte(struct parser *p, struct tlist *out)
{
    size_t at = p->pos;
    char c1 = p->s[at];
    if (at + 1 >= p->len)
        return perr(p, at, "odd number of hex digits: '%c' has no second digit", c1);
    char c2 = p->s[at + 1];
    int h1 = c1 == '?' ? -1 : khx_hexval((unsigned char)c1);
    int h2 = c2 == '?' ? -1 : khx_hexval((unsigned char)c2);
    if (c2 != '?' && h2 < 0)
        return perr(p, at,
                    "'%c' is not followed by a second hex digit or '?' (odd number of "
                    "hex digits)",
                    c1);
    struct tok *t = tl_push(p->ar, out);
    if (t == NULL)
        return arena_fail(p->ar, p->err, p->errlen);
    t->kind = TK_BYTE;
    t->mask = (uint8_t)((h1 >= 0 ? 0xf0 : 0) | (h2 >= 0 ? 0x0f : 0));
    t->value = (uint8_t)(((h1 >= 0 ? h1 : 0) << 4 | (h2 >= 0 ? h2 : 0)) & t->mask);
    t->col = (uint32_t)at + 1;
    p->pos += 2;
    return 0;
}

static int parse_list(struct parser *p, unsigned depth, int in_group, struct tlist *out);

/* Whether an alternative is plain bytes, as negation requires. */
static int alt_is_plain(const struct tlist *l)
{
    for (uint32_t i = 0; i < l->n; i++)
        if (!is_lit(&l->v[i]))
            return 0;
    return 1;
}

static int parse_paren(struct parser *p, unsigned depth, int in_group, struct tlist *out)
{
    size_t at = p->pos;
    int neg = 0, r;
    struct tok g;

    if (p->s[p->pos] == '!') {
        neg = 1;
        p->pos++;
        if (p->pos >= p->len || p->s[p->pos] != '(')
            return perr(p, at, "'!' must be followed by '('");
    }
    if (p->pos + 2 < p->len && p->s[p->pos + 2] == ')' &&
        (p->s[p->pos + 1] == 'B' || p->s[p->pos + 1] == 'L' || p->s[p->pos + 1] == 'W')) {
        if (in_group)
            return perr(p, at, "character class (%c) cannot be used inside alternates",
                        p->s[p->pos + 1]);
        struct tok *t = tl_push(p->ar, out);
        if (t == NULL)
            return arena_fail(p->ar, p->err, p->errlen);
        t->kind = TK_CLASS;
        t->cls = (uint8_t)p->s[p->pos + 1];
        t->negated = (uint8_t)neg;
        t->col = (uint32_t)at + 1;
        p->pos += 3;
        return 0;
    }
    if (depth >= BODY_MAX_NEST)
        return perr(p, at, "alternates nested more than %u deep", BODY_MAX_NEST);

    memset(&g, 0, sizeof(g));
    g.kind = TK_GROUP;
    g.negated = (uint8_t)neg;
    g.col = (uint32_t)at + 1;
    p->pos++;
    for (;;) {
        size_t alt_at = p->pos;
        struct tlist *alt = group_add_alt(p->ar, &g);
        if (alt == NULL)
            return arena_fail(p->ar, p->err, p->errlen);
        if ((r = parse_list(p, depth + 1, 1, alt)) != 0)
            return r;
        if (p->pos >= p->len)
            return perr(p, at, "'(' is not closed by ')'");
        if (alt->n == 0)
            return perr(p, alt_at, "empty alternative");
        if (p->s[p->pos++] == ')')
            break;
    }
    if (neg) {
        for (uint32_t k = 0; k < g.nalts; k++) {
            if (!alt_is_plain(&g.alts[k]) || g.alts[k].n != g.alts[0].n)
                return perr(p, at,
                            "only alternates of plain bytes, all of one length, can be "
                            "negated");
        }
        if (g.alts[0].n > BODY_NEG_WIDTH_MAX)
            return perr(p, at, "negated alternates may be at most %u bytes long",
                        BODY_NEG_WIDTH_MAX);
    }
    struct tok *t = tl_push(p->ar, out);
    if (t == NULL)
        return arena_fail(p->ar, p->err, p->errlen);
    *t = g;
    return 0;
}

/* Reads tokens until the end of the text or, inside alternates, until the
 * '|' or ')' that ends the alternative (left for the caller). The recursion
 * is bounded by BODY_MAX_NEST. */
static int parse_list(struct parser *p, unsigned depth, int in_group, struct tlist *out)
{
    int r;
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == '?' || khx_hexval((unsigned char)c) >= 0) {
            r = parse_byte(p, out);
        } else if (c == '*') {
            if (in_group)
                return perr(p, p->pos, "'*' cannot be used inside alternates");
            struct tok *t = tl_push(p->ar, out);
            if (t == NULL)
                return arena_fail(p->ar, p->err, p->errlen);
            t->kind = TK_GAP;
            t->form = GAP_STAR;
            t->min = 0;
            t->max = BODY_GAP_INF;
            t->col = (uint32_t)p->pos + 1;
            p->pos++;
            r = 0;
        } else if (c == '{') {
            r = parse_brace(p, in_group, out);
        } else if (c == '[') {
            if (in_group)
                return perr(p, p->pos, "'[x-y]' cannot be used inside alternates");
            r = parse_bracket(p, out);
        } else if (c == '(' || c == '!') {
            r = parse_paren(p, depth, in_group, out);
        } else if (c == ')' || c == '|') {
            if (in_group)
                return 0;
            return perr(p, p->pos, c == ')' ? "unbalanced ')'" : "'|' outside alternates");
        } else if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f) {
            return perr(p, p->pos, "unexpected character '%c'", c);
        } else {
            return perr(p, p->pos, "unexpected byte 0x%02x", (unsigned char)c);
        }
        if (r != 0)
            return r;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Modifiers as rewrites of the token tree                                  */
/* ------------------------------------------------------------------------ */

/* ClamAV's wide rewrite: every byte (wildcards included) is followed by 00;
 * gaps stay as they are, and [x-y] becomes {x-y} because the single byte
 * it joined is now two. Recursion is bounded by the group nesting. */
static int tl_widen(struct arena *a, const struct tlist *in, struct tlist *out)
{
    for (uint32_t i = 0; i < in->n; i++) {
        const struct tok *s = &in->v[i];
        struct tok *t = tl_push(a, out);
        if (t == NULL)
            return -1;
        *t = *s;
        if (s->kind == TK_BYTE) {
            struct tok *z = tl_push(a, out);
            if (z == NULL)
                return -1;
            z->kind = TK_BYTE;
            z->mask = 0xff;
            z->value = 0;
            z->col = s->col;
        } else if (s->kind == TK_GAP && s->form == GAP_BRACKET) {
            t->form = GAP_BRACE;
            t->fixed = 0;
        } else if (s->kind == TK_GROUP) {
            t->alts = NULL;
            t->nalts = t->altcap = 0;
            for (uint32_t k = 0; k < s->nalts; k++) {
                struct tlist *alt = group_add_alt(a, t);
                if (alt == NULL || tl_widen(a, &s->alts[k], alt) != 0)
                    return -1;
            }
        }
    }
    return 0;
}

/* ClamAV's fullword rewrite: (W) around the pattern, [x-y] turned to {x-y}. */
static int tl_fullword(struct arena *a, const struct tlist *in, struct tlist *out, uint32_t lastcol)
{
    struct tok *t = tl_push(a, out);
    if (t == NULL)
        return -1;
    t->kind = TK_CLASS;
    t->cls = 'W';
    t->col = 1;
    for (uint32_t i = 0; i < in->n; i++) {
        if ((t = tl_push(a, out)) == NULL)
            return -1;
        *t = in->v[i];
        if (t->kind == TK_GAP && t->form == GAP_BRACKET) {
            t->form = GAP_BRACE;
            t->fixed = 0;
        }
    }
    if ((t = tl_push(a, out)) == NULL)
        return -1;
    t->kind = TK_CLASS;
    t->cls = 'W';
    t->col = lastcol;
    return 0;
}

/* Splits a top-level token list into subpatterns, marks the classes that sit
 * on a subpattern's edge (ClamAV checks those against the neighbouring byte
 * instead of consuming one), and enforces ClamAV's rules: each subpattern has
 * two consecutive fixed bytes, and [x-y] joins a single byte to the rest. */
static int check_parts(struct tlist *l, char *err, size_t errlen)
{
    size_t a = 0;
    for (size_t i = 0; i <= l->n; i++) {
        if (i < l->n && !splits(&l->v[i]))
            continue;
        if (a == i) {
            uint32_t col = i < l->n ? l->v[i].col : l->v[i - 1].col;
            khx_errf(err, errlen,
                     "column %u: empty subpattern: '*' and '{...}' need two fixed "
                     "bytes on each side",
                     col);
            return KH_EFORMAT;
        }
        struct tok *v = l->v;
        if (v[a].kind == TK_CLASS)
            v[a].edge = 'l';
        if (i - 1 > a && v[i - 1].kind == TK_CLASS)
            v[i - 1].edge = 'r';
        int run = 0, ok = 0;
        for (size_t k = a; k < i; k++) {
            run = is_lit(&v[k]) ? run + 1 : 0;
            if (run >= 2)
                ok = 1;
        }
        if (!ok) {
            khx_errf(err, errlen,
                     "column %u: subpattern has no two consecutive fixed bytes "
                     "(ClamAV requires them in every part split by '*' or '{...}')",
                     v[a].col);
            return KH_EFORMAT;
        }
        for (size_t k = a; k < i; k++) {
            if (v[k].kind != TK_GAP || v[k].form != GAP_BRACKET)
                continue;
            int left = k >= a + 1 && is_lit(&v[k - 1]) &&
                       (k - 1 == a || (k - 2 == a && v[a].kind == TK_CLASS));
            int right = k + 1 < i && is_lit(&v[k + 1]) &&
                        (k + 1 == i - 1 || (k + 2 == i - 1 && v[i - 1].kind == TK_CLASS));
            if (!left && !right) {
                khx_errf(err, errlen,
                         "column %u: '[x-y]' must join a single byte to the rest of "
                         "its subpattern (aa[x-y]bbcc... or ...bbcc[x-y]aa)",
                         v[k].col);
                return KH_EFORMAT;
            }
        }
        a = i + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Emitting the program and the expression                                  */
/* ------------------------------------------------------------------------ */

struct emit {
    struct khx_buf prog, re;
    struct arena *ar;
    int nocase, wide;
    int exact;
    uint32_t level, maxlevel;
    /* Relaxations that keep a long expression under Hyperscan's limit: only
     * the first lit_cap bytes of a literal run are spelled out, and with
     * relax_groups an alternation becomes .{min,max}. Both keep every match
     * end of the pattern a match end of the expression. */
    uint32_t lit_cap;
    int relax_groups;
    char *err;
    size_t errlen;
};

static int eerr(struct emit *e, uint32_t col, const char *msg)
{
    khx_errf(e->err, e->errlen, "column %u: %s", col, msg);
    return KH_EFORMAT;
}

static int re_str(struct emit *e, const char *s)
{
    return khx_buf_append(&e->re, s, strlen(s));
}

static int re_hex(struct emit *e, uint8_t b)
{
    static const char digits[] = "0123456789abcdef";
    char t[4] = {'\\', 'x', digits[b >> 4], digits[b & 15]};
    return khx_buf_append(&e->re, t, 4);
}

/* A literal byte; a letter matches both cases under nocase. */
static int re_lit(struct emit *e, uint8_t b)
{
    int r;
    if (!e->nocase || !is_letter(b))
        return re_hex(e, b);
    if ((r = re_str(e, "[")) != 0 || (r = re_hex(e, (uint8_t)(b & ~0x20))) != 0 ||
        (r = re_hex(e, (uint8_t)(b | 0x20))) != 0)
        return r;
    return re_str(e, "]");
}

static int re_set(struct emit *e, const uint8_t *s)
{
    unsigned n = set_count(s);
    uint8_t inv[32];
    int r;
    if (n == 256)
        return re_str(e, ".");
    if (n == 1) {
        for (unsigned b = 0; b < 256; b++)
            if (set_has(s, b))
                return re_hex(e, (uint8_t)b);
    }
    if (n > 128) {
        memcpy(inv, s, 32);
        set_invert(inv);
        s = inv;
    }
    if ((r = re_str(e, n > 128 ? "[^" : "[")) != 0)
        return r;
    for (unsigned b = 0; b < 256;) {
        if (!set_has(s, b)) {
            b++;
            continue;
        }
        unsigned z = b;
        while (z + 1 < 256 && set_has(s, z + 1))
            z++;
        if ((r = re_hex(e, (uint8_t)b)) != 0)
            return r;
        if (z > b && (r = re_str(e, z > b + 1 ? "-" : "")) != 0)
            return r;
        if (z > b && (r = re_hex(e, (uint8_t)z)) != 0)
            return r;
        b = z + 1;
    }
    return re_str(e, "]");
}

/* Any min..max bytes. Repeats above BODY_RE_REPEAT_MAX are widened (and the
 * expression stops being exact) because Hyperscan compiles them poorly. */
static int re_gap(struct emit *e, uint32_t min, uint32_t max)
{
    char t[48];
    if (max != BODY_GAP_INF && max <= BODY_RE_REPEAT_MAX) {
        if (max == 0)
            return 0;
        if (min == max && min == 1)
            return re_str(e, ".");
        if (min == max)
            snprintf(t, sizeof(t), ".{%u}", min);
        else
            snprintf(t, sizeof(t), ".{%u,%u}", min, max);
        return re_str(e, t);
    }
    if (max != BODY_GAP_INF || min > BODY_RE_REPEAT_MAX)
        e->exact = 0;
    if (min > BODY_RE_REPEAT_MAX)
        min = BODY_RE_REPEAT_MAX;
    if (min == 0)
        return re_str(e, ".*");
    snprintf(t, sizeof(t), ".{%u,}", min);
    return re_str(e, t);
}

static int node_begin(struct emit *e, unsigned op, unsigned flags, size_t *at)
{
    uint8_t h[NODE_HDR] = {(uint8_t)op, (uint8_t)flags, 0, 0, 0, 0, 0, 0};
    *at = e->prog.len;
    return khx_buf_append(&e->prog, h, sizeof(h));
}

static void node_end(struct emit *e, size_t at)
{
    wr32(e->prog.data + at + 4, (uint32_t)(e->prog.len - at));
}

static int emit_u32(struct emit *e, uint32_t v)
{
    return khx_buf_append_u32(&e->prog, v);
}

static int emit_set(struct emit *e, const uint8_t *s)
{
    size_t at;
    int r;
    if ((r = node_begin(e, OP_SET, 0, &at)) != 0 || (r = khx_buf_append(&e->prog, s, 32)) != 0)
        return r;
    node_end(e, at);
    return re_set(e, s);
}

/* The extent of the node that starts at token i: a run of literal bytes, a run
 * of ?? and gaps (merged into one GAP), or a single token. */
enum { U_STR = 1, U_GAP, U_ONE };

static size_t unit_end(const struct tlist *l, size_t i, int *kind)
{
    size_t j = i + 1;
    if (is_lit(&l->v[i])) {
        while (j < l->n && is_lit(&l->v[j]))
            j++;
        *kind = U_STR;
    } else if (is_anybytes(&l->v[i])) {
        while (j < l->n && is_anybytes(&l->v[j]))
            j++;
        *kind = U_GAP;
    } else {
        *kind = U_ONE;
    }
    return j;
}

static int emit_list(struct emit *e, const struct tlist *l, uint64_t *mn, uint64_t *mx);

struct member {
    const uint8_t *p;
    uint32_t w;
};

static int member_cmp(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    return memcmp(x->p, y->p, x->w);
}

/* The expression for "any w bytes except the members", written as the
 * complement of the members' trie: at each trie node, a byte that no member
 * continues with followed by anything, or a member's byte followed by the
 * complement below it. m[lo..hi) share their first d bytes. *any is 0 when
 * nothing is left (every string of this prefix is a member). The recursion
 * is at most w <= BODY_NEG_WIDTH_MAX deep. */
static int re_neg(struct emit *e, const struct member *m, size_t lo, size_t hi, uint32_t w,
                  uint32_t d, int *any)
{
    size_t mark = e->re.len;
    uint8_t s[32] = {0};
    int n = 0, r;
    for (size_t k = lo; k < hi; k++) {
        set_add(s, m[k].p[d]);
        if (e->nocase)
            set_add(s, other_case(m[k].p[d]));
    }
    if ((r = re_str(e, "(?:")) != 0)
        return r;
    if (set_count(s) < 256) {
        set_invert(s);
        if ((r = re_set(e, s)) != 0 || (r = re_gap(e, w - d - 1, w - d - 1)) != 0)
            return r;
        n++;
    }
    for (size_t k = lo; k < hi;) {
        size_t g = k;
        while (g < hi && m[g].p[d] == m[k].p[d])
            g++;
        if (d + 1 < w) {
            size_t bmark = e->re.len;
            int sub;
            if (n > 0 && (r = re_str(e, "|")) != 0)
                return r;
            if ((r = re_lit(e, m[k].p[d])) != 0 || (r = re_neg(e, m, k, g, w, d + 1, &sub)) != 0)
                return r;
            if (sub)
                n++;
            else
                e->re.len = bmark;
        }
        k = g;
    }
    if (n == 0) {
        e->re.len = mark;
        *any = 0;
        return 0;
    }
    *any = 1;
    return re_str(e, ")");
}

/* !(aabb|ccdd): an OP_NEG node with the members sorted (folded under nocase)
 * for binary search. */
static int emit_neg(struct emit *e, const struct tok *g)
{
    uint32_t w = g->alts[0].n, count = g->nalts;
    size_t at, nu = 0;
    int r, any;
    uint8_t *bytes = ar_alloc(e->ar, (size_t)w * count);
    struct member *m = ar_alloc(e->ar, (size_t)count * sizeof(*m));
    if (bytes == NULL || m == NULL)
        return arena_fail(e->ar, e->err, e->errlen);
    for (uint32_t k = 0; k < count; k++) {
        for (uint32_t j = 0; j < w; j++) {
            uint8_t b = g->alts[k].v[j].value;
            bytes[(size_t)k * w + j] = e->nocase ? fold(b) : b;
        }
        m[k].p = bytes + (size_t)k * w;
        m[k].w = w;
    }
    qsort(m, count, sizeof(*m), member_cmp);
    for (uint32_t k = 0; k < count; k++)
        if (nu == 0 || memcmp(m[nu - 1].p, m[k].p, w) != 0)
            m[nu++] = m[k];

    if ((r = node_begin(e, OP_NEG, e->nocase ? F_NOCASE : 0, &at)) != 0 ||
        (r = emit_u32(e, w)) != 0 || (r = emit_u32(e, (uint32_t)nu)) != 0)
        return r;
    for (size_t k = 0; k < nu; k++)
        if ((r = khx_buf_append(&e->prog, m[k].p, w)) != 0)
            return r;
    node_end(e, at);

    if ((size_t)w * nu > BODY_NEG_RE_MAX) {
        e->exact = 0;
        return re_gap(e, w, w);
    }
    if ((r = re_neg(e, m, 0, nu, w, 0, &any)) != 0)
        return r;
    if (!any)
        return eerr(e, g->col, "negated alternates exclude every possible value");
    return 0;
}

static int emit_group_exact(struct emit *e, const struct tok *g, uint64_t *mn, uint64_t *mx);

static int emit_group(struct emit *e, const struct tok *g, uint64_t *mn, uint64_t *mx)
{
    size_t mark = e->re.len;
    int r = emit_group_exact(e, g, mn, mx);
    if (r != 0 || !e->relax_groups)
        return r;
    e->re.len = mark;
    e->exact = 0;
    return re_gap(e, (uint32_t)*mn, *mx == LEN_INF ? BODY_GAP_INF : (uint32_t)*mx);
}

static int emit_group_exact(struct emit *e, const struct tok *g, uint64_t *mn, uint64_t *mx)
{
    int single = 1, fixed = 1, r;
    for (uint32_t k = 0; k < g->nalts; k++) {
        const struct tlist *a = &g->alts[k];
        if (a->n != 1 || !is_lit(&a->v[0]))
            single = 0;
        if (!alt_is_plain(a) || a->n != g->alts[0].n)
            fixed = 0;
    }
    if (single) {
        uint8_t s[32] = {0};
        for (uint32_t k = 0; k < g->nalts; k++) {
            uint8_t b = g->alts[k].v[0].value;
            set_add(s, b);
            if (e->nocase)
                set_add(s, other_case(b));
        }
        if (g->negated)
            set_invert(s);
        if (set_count(s) == 0)
            return eerr(e, g->col, "negated alternates exclude every byte");
        *mn = *mx = 1;
        return emit_set(e, s);
    }
    if (g->negated && fixed) {
        *mn = *mx = g->alts[0].n;
        return emit_neg(e, g);
    }
    /* The parser rejects other negations; what is left is a plain alternation. */
    size_t at, table;
    uint64_t amin = LEN_INF, amax = 0;
    if (++e->level > e->maxlevel)
        e->maxlevel = e->level;
    if ((r = node_begin(e, OP_ALT, 0, &at)) != 0 || (r = emit_u32(e, g->nalts)) != 0)
        return r;
    table = e->prog.len;
    for (uint32_t k = 0; k < g->nalts; k++)
        if ((r = emit_u32(e, 0)) != 0)
            return r;
    if ((r = re_str(e, "(?:")) != 0)
        return r;
    for (uint32_t k = 0; k < g->nalts; k++) {
        uint64_t cmn, cmx;
        wr32(e->prog.data + table + 4 * (size_t)k, (uint32_t)(e->prog.len - at));
        if (k > 0 && (r = re_str(e, "|")) != 0)
            return r;
        if ((r = emit_list(e, &g->alts[k], &cmn, &cmx)) != 0)
            return r;
        amin = cmn < amin ? cmn : amin;
        amax = cmx > amax ? cmx : amax;
    }
    node_end(e, at);
    e->level--;
    *mn = amin;
    *mx = amax;
    return re_str(e, ")");
}

static int emit_unit(struct emit *e, const struct tlist *l, size_t i, size_t j, int kind,
                     uint64_t *mn, uint64_t *mx)
{
    const struct tok *t = &l->v[i];
    size_t at;
    int r;

    if (kind == U_STR) {
        int letters = 0;
        for (size_t k = i; k < j; k++)
            letters |= is_letter(l->v[k].value);
        if ((r = node_begin(e, OP_STR, e->nocase && letters ? F_NOCASE : 0, &at)) != 0 ||
            (r = emit_u32(e, (uint32_t)(j - i))) != 0)
            return r;
        for (size_t k = i; k < j; k++)
            if ((r = khx_buf_append_u8(&e->prog, l->v[k].value)) != 0 ||
                (k - i < e->lit_cap && (r = re_lit(e, l->v[k].value)) != 0))
                return r;
        node_end(e, at);
        if (j - i > e->lit_cap) {
            e->exact = 0;
            if ((r = re_gap(e, (uint32_t)(j - i - e->lit_cap), (uint32_t)(j - i - e->lit_cap))) !=
                0)
                return r;
        }
        *mn = *mx = j - i;
        return 0;
    }
    if (kind == U_GAP) {
        uint64_t gmin = 0, gmax = 0;
        for (size_t k = i; k < j; k++) {
            const struct tok *g = &l->v[k];
            uint64_t a = g->kind == TK_BYTE ? 1 : g->min;
            uint64_t b = g->kind == TK_BYTE ? 1 : g->max == BODY_GAP_INF ? LEN_INF : g->max;
            gmin += a;
            gmax =
                (gmax == LEN_INF || b == LEN_INF || gmax + b > BODY_GAP_MAX) ? LEN_INF : gmax + b;
            if (gmin > BODY_GAP_MAX)
                return eerr(e, t->col, "gap is too large");
        }
        uint32_t g32 = gmax == LEN_INF ? BODY_GAP_INF : (uint32_t)gmax;
        if ((r = node_begin(e, OP_GAP, 0, &at)) != 0 || (r = emit_u32(e, (uint32_t)gmin)) != 0 ||
            (r = emit_u32(e, g32)) != 0)
            return r;
        node_end(e, at);
        *mn = gmin;
        *mx = gmax;
        return re_gap(e, (uint32_t)gmin, g32);
    }
    if (t->kind == TK_BYTE) {
        uint8_t s[32] = {0};
        for (unsigned b = 0; b < 256; b++)
            if ((b & t->mask) == t->value)
                set_add(s, b);
        *mn = *mx = 1;
        return emit_set(e, s);
    }
    if (t->kind == TK_GROUP)
        return emit_group(e, t, mn, mx);
    if (t->kind == TK_CLASS && t->edge) {
        unsigned f = t->cls == 'B' ? A_B : t->cls == 'L' ? A_L : A_W;
        if (t->edge == 'r')
            f |= A_RIGHT;
        if (t->negated)
            f |= A_NEG;
        if (t->cls == 'W' && e->wide)
            f |= A_WIDE;
        if ((r = node_begin(e, OP_ASSERT, f, &at)) != 0)
            return r;
        node_end(e, at);
        /* Hyperscan has no look-around: the expression leaves the check out. */
        e->exact = 0;
        *mn = *mx = 0;
        return 0;
    }
    if (t->kind == TK_CLASS && t->cls == 'L') {
        if ((r = node_begin(e, OP_LINE, t->negated ? F_LINE_NEG : 0, &at)) != 0)
            return r;
        node_end(e, at);
        *mn = 1;
        *mx = t->negated ? 1 : 2;
        return re_str(e, t->negated ? "[^\\x0a\\x0d]" : "(?:\\x0d\\x0a|\\x0d|\\x0a)");
    }
    if (t->kind == TK_CLASS) {
        uint8_t s[32] = {0};
        for (unsigned b = 0; b < 256; b++) {
            int in = t->cls == 'B' ? (boundary_before((uint8_t)b) || boundary_after((uint8_t)b))
                                   : !is_alnum_byte((uint8_t)b);
            if (in != (int)t->negated)
                set_add(s, b);
        }
        *mn = *mx = 1;
        return emit_set(e, s);
    }
    return eerr(e, t->col, "internal error: unexpected token");
}

/* A token list as one node: its only unit, or an OP_SEQ of its units. */
static int emit_list(struct emit *e, const struct tlist *l, uint64_t *mn, uint64_t *mx)
{
    size_t n = 0, at, table, k = 0;
    int kind, r;
    for (size_t i = 0; i < l->n; i = unit_end(l, i, &kind))
        n++;
    if (n == 1)
        return emit_unit(e, l, 0, unit_end(l, 0, &kind), kind, mn, mx);

    if (++e->level > e->maxlevel)
        e->maxlevel = e->level;
    if ((r = node_begin(e, OP_SEQ, 0, &at)) != 0 || (r = emit_u32(e, (uint32_t)n)) != 0)
        return r;
    table = e->prog.len;
    for (size_t i = 0; i < n; i++)
        if ((r = emit_u32(e, 0)) != 0)
            return r;
    *mn = *mx = 0;
    for (size_t i = 0, j; i < l->n; i = j, k++) {
        uint64_t cmn, cmx;
        j = unit_end(l, i, &kind);
        wr32(e->prog.data + table + 4 * k, (uint32_t)(e->prog.len - at));
        if ((r = emit_unit(e, l, i, j, kind, &cmn, &cmx)) != 0)
            return r;
        *mn = len_add(*mn, cmn);
        *mx = len_add(*mx, cmx);
    }
    node_end(e, at);
    e->level--;
    return 0;
}

/* Writes the header placeholder and the root node into e (reset first), and
 * the expression; *mn and *mx get the pattern's lengths. */
static int emit_body(struct emit *e, struct tlist **variants, unsigned nvar, int wide, uint64_t *mn,
                     uint64_t *mx)
{
    static const uint8_t hdr[PROG_HDR];
    int r;
    e->prog.len = 0;
    e->re.len = 0;
    e->level = e->maxlevel = 0;
    e->exact = 1;
    if ((r = khx_buf_append(&e->prog, hdr, sizeof(hdr))) != 0)
        return r;
    if (nvar == 1) {
        e->wide = wide;
        return emit_list(e, variants[0], mn, mx);
    }
    /* "wa": the ascii and the wide form as the two branches of one ALT. */
    size_t at;
    uint64_t amn, amx, wmn, wmx;
    e->level = e->maxlevel = 1;
    e->wide = 0;
    if ((r = node_begin(e, OP_ALT, 0, &at)) != 0 || (r = emit_u32(e, 2)) != 0 ||
        (r = emit_u32(e, NODE_HDR + 12)) != 0 || (r = emit_u32(e, 0)) != 0 ||
        (r = re_str(e, "(?:")) != 0)
        return r;
    if ((r = emit_list(e, variants[0], &amn, &amx)) != 0)
        return r;
    wr32(e->prog.data + at + NODE_HDR + 8, (uint32_t)(e->prog.len - at));
    e->wide = 1;
    if ((r = re_str(e, "|")) != 0 || (r = emit_list(e, variants[1], &wmn, &wmx)) != 0 ||
        (r = re_str(e, ")")) != 0)
        return r;
    node_end(e, at);
    *mn = amn < wmn ? amn : wmn;
    *mx = amx > wmx ? amx : wmx;
    return 0;
}

static int buf_fail(int r, char *err, size_t errlen)
{
    if (r == KH_ENOMEM) {
        khx_errf(err, errlen, "out of memory");
        return KH_ENOMEM;
    }
    if (r == KH_ELIMIT) {
        khx_errf(err, errlen, "pattern is too large to compile");
        return KH_EFORMAT;
    }
    return r;
}

int khx_body_parse(const char *hex, size_t len, unsigned mods, struct khx_body *out, char *err,
                   size_t errlen)
{
    int r = KH_EFORMAT;
    struct arena ar = {0};
    struct emit e;
    struct tlist base = {0}, full = {0}, wide = {0};
    struct tlist *cur = &base, *variants[2];
    unsigned nvar = 0;
    uint64_t mn = 0, mx = 0;

    memset(&e, 0, sizeof(e));
    khx_buf_init(&e.prog, BODY_MAX_PROG);
    khx_buf_init(&e.re, BODY_MAX_REGEX);
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out == NULL || (hex == NULL && len > 0)) {
        khx_errf(err, errlen, "invalid argument");
        return KH_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    if (len == 0) {
        khx_errf(err, errlen, "empty pattern");
        goto out;
    }
    if (len > BODY_MAX_TEXT) {
        khx_errf(err, errlen, "pattern is longer than %u characters", BODY_MAX_TEXT);
        goto out;
    }
    if (mods & ~(unsigned)(KHX_MOD_NOCASE | KHX_MOD_WIDE | KHX_MOD_FULLWORD | KHX_MOD_ASCII)) {
        khx_errf(err, errlen, "unknown modifier bits 0x%x", mods);
        goto out;
    }

    /* The tree needs a few dozen bytes per character, twice over for wide. */
    ar.max = len * 512 + (1u << 20);
    struct parser p = {hex, len, 0, &ar, err, errlen};
    if ((r = parse_list(&p, 0, 0, &base)) != 0)
        goto out;
    if (mods & KHX_MOD_FULLWORD) {
        if (tl_fullword(&ar, &base, &full, (uint32_t)len) != 0) {
            r = arena_fail(&ar, err, errlen);
            goto out;
        }
        cur = &full;
    }
    if (!(mods & KHX_MOD_WIDE) || (mods & KHX_MOD_ASCII))
        variants[nvar++] = cur;
    if (mods & KHX_MOD_WIDE) {
        if (tl_widen(&ar, cur, &wide) != 0) {
            r = arena_fail(&ar, err, errlen);
            goto out;
        }
        variants[nvar++] = &wide;
    }
    for (unsigned v = 0; v < nvar; v++)
        if ((r = check_parts(variants[v], err, errlen)) != 0)
            goto out;

    e.ar = &ar;
    e.nocase = (mods & KHX_MOD_NOCASE) != 0;
    e.err = err;
    e.errlen = errlen;
    /* Spell the expression out in full if Hyperscan takes it, else relax it
     * step by step; the program is the same every time. */
    static const struct {
        uint32_t lit_cap;
        int relax_groups;
    } steps[] = {{UINT32_MAX, 0}, {1024, 0}, {256, 1}, {32, 1}};
    for (size_t k = 0;; k++) {
        if (k == KHX_ARRAY_LEN(steps)) {
            khx_errf(err, errlen, "pattern is too large for a Hyperscan expression");
            r = KH_EFORMAT;
            goto out;
        }
        e.lit_cap = steps[k].lit_cap;
        e.relax_groups = steps[k].relax_groups;
        if ((r = emit_body(&e, variants, nvar, (mods & KHX_MOD_WIDE) != 0, &mn, &mx)) != 0)
            goto out_buf;
        if (e.re.len <= BODY_RE_HS_MAX)
            break;
    }
    if (mn == LEN_INF) {
        khx_errf(err, errlen, "pattern is too long");
        r = KH_EFORMAT;
        goto out;
    }
    if ((r = khx_buf_append_u8(&e.re, 0)) != 0)
        goto out_buf;

    memcpy(e.prog.data, PROG_MAGIC, 4);
    wr32(e.prog.data + 4, (uint32_t)e.prog.len);
    wr32(e.prog.data + 8, (uint32_t)mn);
    wr32(e.prog.data + 12, mx == LEN_INF ? UINT32_MAX : (uint32_t)mx);
    wr16(e.prog.data + 16, (uint16_t)e.maxlevel);
    wr16(e.prog.data + 18, mn == mx ? HDR_FIXED : 0);
    if (khx_body_prog_check(e.prog.data, e.prog.len) != 0) {
        khx_errf(err, errlen, "internal error: compiled program does not verify");
        r = KH_EFORMAT;
        goto out;
    }

    out->minlen = (uint32_t)mn;
    out->maxlen = mx == LEN_INF ? UINT32_MAX : (uint32_t)mx;
    out->exact = e.exact;
    out->prog = khx_buf_steal(&e.prog, &out->prog_len);
    out->regex = (char *)khx_buf_steal(&e.re, NULL);
    r = 0;
    goto out;

out_buf:
    r = buf_fail(r, err, errlen);
out:
    khx_buf_free(&e.prog);
    khx_buf_free(&e.re);
    ar_free(&ar);
    return r;
}

void khx_body_clear(struct khx_body *b)
{
    if (b == NULL)
        return;
    free(b->prog);
    free(b->regex);
    memset(b, 0, sizeof(*b));
}
