/*
 * ClamAV body signatures (see bodysig.h): the offset field of .ndb lines and
 * .ldb subsignatures, the ldb modifiers, and the hex body pattern itself.
 *
 * A body pattern is compiled in three steps. The text is first read into a
 * small token tree (bytes with nibble masks, gaps, alternates, the (B) (L) (W)
 * classes). The ldb modifiers are then applied to that tree the way ClamAV
 * applies them to the text (fullword wraps the pattern in (W), wide puts a 00
 * after every byte), and ClamAV's structural rules are checked on the result.
 * Finally one walk over the tree writes both outputs: a Hyperscan expression
 * and the matcher program.
 *
 * The program is a serialized expression tree (docs/internals/bodysig.md gives
 * the encoding). khx_body_find does not backtrack: it evaluates each node over
 * a set of positions, mapping the positions where the node may start to the
 * positions where it may end, with the sets held as bitmaps over the search
 * window. The work is therefore O(window/64 * nodes * log(gap)) plus one byte
 * test per candidate position and node, whatever the input, and the recursion
 * is never deeper than the program's nesting, which khx_body_prog_check caps.
 */
#include "bodysig.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "khx.h"

/* Limits on what a pattern may be. The text limit keeps the token tree, the
 * program and the expression small; real signatures are far below it. */
#define BODY_MAX_TEXT      65536u
#define BODY_MAX_NEST      15u /* nested alternates; ClamAV's own limit */
#define BODY_MAX_DEPTH     40u /* SEQ/ALT nesting khx_body_prog_check accepts */
#define BODY_MAX_PROG      (16u << 20)
#define BODY_MAX_REGEX     (16u << 20)
#define BODY_GAP_INF       UINT32_MAX        /* a GAP with no upper bound */
#define BODY_GAP_MAX       (UINT32_MAX - 1u) /* the largest finite gap */
#define BODY_SPLIT_FIXED   128u              /* ClamAV expands {n} below this into ?? bytes */
#define BODY_BRACKET_MAX   32u               /* [x-y]: y may be at most this (ClamAV) */
#define BODY_ALT_RANGE_MAX 127u              /* ranges inside alternates stay below 128 */
#define BODY_RE_REPEAT_MAX 1024u             /* longer regex repeats are widened */
#define BODY_NEG_RE_MAX    512u /* member bytes up to which !(..) gets an exact regex */
#define BODY_NEG_WIDTH_MAX 255u
#define BODY_RE_HS_MAX     12000u /* Hyperscan refuses expressions of ~16k characters */

/* Lengths are computed in 64 bits; anything at or above UINT32_MAX counts as
 * unbounded, which is what khx_body.maxlen reports. */
#define LEN_INF UINT64_MAX

/* Program encoding: a 20-byte header, then the root node. */
#define PROG_MAGIC "KHB1"
#define PROG_HDR   20u
#define NODE_HDR   8u
#define HDR_FIXED  1u /* header flag: every match has the same length */

enum {
    OP_STR = 1, /* u32 len, bytes: a literal run (flag F_NOCASE) */
    OP_SET,     /* 32-byte bitmap: one byte out of a set */
    OP_GAP,     /* u32 min, u32 max: any min..max bytes (max BODY_GAP_INF: no limit) */
    OP_SEQ,     /* u32 n, u32 child offsets[n], children: concatenation */
    OP_ALT,     /* same layout: alternation */
    OP_NEG,     /* u32 width, u32 count, sorted members: any width bytes but those */
    OP_LINE,    /* (L) inside a pattern: CR LF, LF or CR; negated: one other byte */
    OP_ASSERT,  /* zero-width (B) (L) (W) at the edge of a subpattern */
};

#define F_NOCASE   1u /* OP_STR, OP_NEG: ASCII letters match either case */
#define F_LINE_NEG 1u

/* OP_ASSERT flags. */
#define A_KIND  3u
#define A_B     1u
#define A_L     2u
#define A_W     3u
#define A_RIGHT 4u  /* checks the byte after the position; else the byte before */
#define A_NEG   8u  /* !(B) !(L) !(W) */
#define A_WIDE  16u /* (W) of a wide pattern: a wide character is "alnum, 00" */

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* ClamAV compares in the C locale: only ASCII letters and digits count. */
static int is_alnum_byte(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int is_letter(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static uint8_t fold(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

static uint8_t other_case(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return (uint8_t)(c + 32);
    if (c >= 'a' && c <= 'z')
        return (uint8_t)(c - 32);
    return c;
}

/* ClamAV's word-boundary characters. Its matcher accepts some of them only
 * before a match and some only after one; inside a pattern any of them does. */
static int boundary_before(uint8_t c)
{
    return c == ' ' || c == '-' || c == '.' || c == '/' || c == '<' || c == '@' || c == '_';
}

static int boundary_after(uint8_t c)
{
    return c == '\n' || c == '\r' || c == ' ' || c == '"' || c == '\'' || c == '-' || c == '/' ||
           c == '=' || c == '>' || c == '_';
}

static void set_add(uint8_t *s, unsigned b)
{
    s[b >> 3] |= (uint8_t)(1u << (b & 7));
}

static int set_has(const uint8_t *s, unsigned b)
{
    return (s[b >> 3] >> (b & 7)) & 1;
}

static unsigned set_count(const uint8_t *s)
{
    unsigned n = 0;
    for (unsigned i = 0; i < 32; i++)
        n += (unsigned)__builtin_popcount(s[i]);
    return n;
}

static void set_invert(uint8_t *s)
{
    for (unsigned i = 0; i < 32; i++)
        s[i] = (uint8_t)~s[i];
}

static uint64_t len_add(uint64_t a, uint64_t b)
{
    if (a == LEN_INF || b == LEN_INF)
        return LEN_INF;
    uint64_t s = a + b; /* both are below 2^32 here */
    return s >= UINT32_MAX ? LEN_INF : s;
}

/* Whether the zero-width assertion `flags` holds at position p of buf. File
 * edges satisfy every non-negated assertion, as in ClamAV. */
static int assert_holds(unsigned flags, const uint8_t *buf, size_t len, size_t p)
{
    unsigned kind = flags & A_KIND;
    int ok;
    if (!(flags & A_RIGHT)) {
        if (p == 0) {
            ok = 1;
        } else {
            uint8_t c = buf[p - 1];
            if (kind == A_B)
                ok = boundary_before(c);
            else if (kind == A_L)
                ok = c == '\n' || c == '\r';
            else if ((flags & A_WIDE) && p >= 2)
                ok = !(is_alnum_byte(buf[p - 2]) && c == 0);
            else
                ok = !is_alnum_byte(c);
        }
    } else {
        if (p >= len) {
            ok = 1;
        } else {
            uint8_t c = buf[p];
            if (kind == A_B)
                ok = boundary_after(c);
            else if (kind == A_L)
                ok = c == '\n' || c == '\r';
            else if ((flags & A_WIDE) && p + 1 < len)
                ok = !(is_alnum_byte(c) && buf[p + 1] == 0);
            else
                ok = !is_alnum_byte(c);
        }
    }
    return (flags & A_NEG) ? !ok : ok;
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

/* ------------------------------------------------------------------------ */
/* Program verification                                                     */
/* ------------------------------------------------------------------------ */

/* Checks the node at `off` that must fit in `avail` bytes, and computes its
 * shortest and longest match. SEQ/ALT nesting may not exceed `maxlevel`,
 * which bounds the recursion. */
static int check_node(const uint8_t *p, size_t off, size_t avail, uint32_t level, uint32_t maxlevel,
                      uint64_t *mn, uint64_t *mx)
{
    if (avail < NODE_HDR)
        return KH_EFORMAT;
    unsigned op = p[off], flags = p[off + 1];
    size_t size = rd32(p + off + 4);
    if (size < NODE_HDR || size > avail || rd16(p + off + 2) != 0)
        return KH_EFORMAT;
    const uint8_t *body = p + off + NODE_HDR;
    size_t blen = size - NODE_HDR;

    switch (op) {
    case OP_STR: {
        if (blen < 4 || (flags & ~F_NOCASE) != 0)
            return KH_EFORMAT;
        uint32_t n = rd32(body);
        if (n == 0 || n != blen - 4)
            return KH_EFORMAT;
        *mn = *mx = n;
        return 0;
    }
    case OP_SET:
        if (blen != 32 || flags != 0 || set_count(body) == 0)
            return KH_EFORMAT;
        *mn = *mx = 1;
        return 0;
    case OP_GAP: {
        if (blen != 8 || flags != 0)
            return KH_EFORMAT;
        uint32_t lo = rd32(body), hi = rd32(body + 4);
        if (lo > BODY_GAP_MAX || (hi != BODY_GAP_INF && lo > hi))
            return KH_EFORMAT;
        *mn = lo;
        *mx = hi == BODY_GAP_INF ? LEN_INF : hi;
        return 0;
    }
    case OP_SEQ:
    case OP_ALT: {
        if (level >= maxlevel || flags != 0 || blen < 4)
            return KH_EFORMAT;
        uint32_t n = rd32(body);
        if (n == 0 || n > (blen - 4) / 4)
            return KH_EFORMAT;
        size_t expect = NODE_HDR + 4 + 4 * (size_t)n;
        *mn = op == OP_SEQ ? 0 : LEN_INF;
        *mx = 0;
        for (uint32_t k = 0; k < n; k++) {
            uint64_t cmn, cmx;
            size_t co = rd32(body + 4 + 4 * (size_t)k);
            if (co != expect || co >= size)
                return KH_EFORMAT;
            if (check_node(p, off + co, size - co, level + 1, maxlevel, &cmn, &cmx) != 0)
                return KH_EFORMAT;
            expect += rd32(p + off + co + 4);
            if (op == OP_SEQ) {
                *mn = len_add(*mn, cmn);
                *mx = len_add(*mx, cmx);
            } else {
                *mn = cmn < *mn ? cmn : *mn;
                *mx = cmx > *mx ? cmx : *mx;
            }
        }
        return expect == size ? 0 : KH_EFORMAT;
    }
    case OP_NEG: {
        if (blen < 8 || (flags & ~F_NOCASE) != 0)
            return KH_EFORMAT;
        uint32_t w = rd32(body), count = rd32(body + 4);
        if (w == 0 || w > BODY_NEG_WIDTH_MAX || count == 0 ||
            (uint64_t)w * count != (uint64_t)(blen - 8))
            return KH_EFORMAT;
        for (uint32_t k = 1; k < count; k++)
            if (memcmp(body + 8 + (size_t)(k - 1) * w, body + 8 + (size_t)k * w, w) >= 0)
                return KH_EFORMAT;
        *mn = *mx = w;
        return 0;
    }
    case OP_LINE:
        if (blen != 0 || (flags & ~F_LINE_NEG) != 0)
            return KH_EFORMAT;
        *mn = 1;
        *mx = (flags & F_LINE_NEG) ? 1 : 2;
        return 0;
    case OP_ASSERT:
        if (blen != 0 || (flags & A_KIND) == 0 || (flags & ~31u) != 0)
            return KH_EFORMAT;
        *mn = *mx = 0;
        return 0;
    default:
        return KH_EFORMAT;
    }
}

int khx_body_prog_check(const uint8_t *prog, size_t prog_len)
{
    uint64_t mn, mx;
    if (prog == NULL || prog_len < PROG_HDR + NODE_HDR || prog_len > BODY_MAX_PROG)
        return KH_EFORMAT;
    if (memcmp(prog, PROG_MAGIC, 4) != 0 || rd32(prog + 4) != prog_len)
        return KH_EFORMAT;
    uint32_t minlen = rd32(prog + 8), maxlen = rd32(prog + 12);
    unsigned depth = rd16(prog + 16), flags = rd16(prog + 18);
    if (depth > BODY_MAX_DEPTH || (flags & ~HDR_FIXED) != 0)
        return KH_EFORMAT;
    if (rd32(prog + PROG_HDR + 4) != prog_len - PROG_HDR)
        return KH_EFORMAT;
    if (check_node(prog, PROG_HDR, prog_len - PROG_HDR, 0, depth, &mn, &mx) != 0)
        return KH_EFORMAT;
    if (mn == LEN_INF || mn != minlen || (mx == LEN_INF ? UINT32_MAX : mx) != maxlen)
        return KH_EFORMAT;
    if (((flags & HDR_FIXED) != 0) != (mn == mx))
        return KH_EFORMAT;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Matching over position sets                                              */
/* ------------------------------------------------------------------------ */

/* A set of positions of the search window as a bitmap; bit i is position
 * base + i. Only words first..last may be nonzero, which keeps sparse sets
 * cheap; the set is empty when first > last. */
struct bset {
    uint64_t *w;
    size_t first, last;
};

struct finder {
    const uint8_t *prog;
    const uint8_t *buf;
    size_t len;   /* the whole buffer: its edges are the file edges */
    size_t base;  /* position of bit 0 */
    size_t end;   /* no byte at or after this is consumed */
    size_t nbits; /* positions base..end */
    size_t nwords;
    struct bset *tmp; /* two per SEQ/ALT level, allocated on first use */
    int nomem;
};

static int bs_empty(const struct bset *b)
{
    return b->first > b->last;
}

static void bs_clear(struct bset *b)
{
    if (!bs_empty(b))
        memset(b->w + b->first, 0, (b->last - b->first + 1) * sizeof(uint64_t));
    b->first = 1;
    b->last = 0;
}

static void bs_touch(struct bset *b, size_t wi)
{
    if (bs_empty(b)) {
        b->first = b->last = wi;
    } else {
        if (wi < b->first)
            b->first = wi;
        if (wi > b->last)
            b->last = wi;
    }
}

static void bs_set(struct bset *b, size_t i)
{
    b->w[i >> 6] |= (uint64_t)1 << (i & 63);
    bs_touch(b, i >> 6);
}

/* Sets bits a..z inclusive. */
static void bs_set_range(struct bset *b, size_t a, size_t z)
{
    size_t wa = a >> 6, wz = z >> 6;
    uint64_t ma = ~(uint64_t)0 << (a & 63), mz = ~(uint64_t)0 >> (63 - (z & 63));
    if (wa == wz) {
        b->w[wa] |= ma & mz;
    } else {
        b->w[wa] |= ma;
        for (size_t k = wa + 1; k < wz; k++)
            b->w[k] = ~(uint64_t)0;
        b->w[wz] |= mz;
    }
    bs_touch(b, wa);
    bs_touch(b, wz);
}

static size_t bs_first(const struct bset *b)
{
    for (size_t wi = b->first; wi <= b->last && !bs_empty(b); wi++)
        if (b->w[wi])
            return wi * 64 + (size_t)__builtin_ctzll(b->w[wi]);
    return SIZE_MAX;
}

static size_t bs_last(const struct bset *b)
{
    if (bs_empty(b))
        return SIZE_MAX;
    for (size_t wi = b->last + 1; wi-- > b->first;)
        if (b->w[wi])
            return wi * 64 + 63 - (size_t)__builtin_clzll(b->w[wi]);
    return SIZE_MAX;
}

static void bs_or(struct bset *d, const struct bset *s)
{
    if (bs_empty(s))
        return;
    for (size_t wi = s->first; wi <= s->last; wi++)
        d->w[wi] |= s->w[wi];
    bs_touch(d, s->first);
    bs_touch(d, s->last);
}

/* Drops bits at or beyond nbits, which shifts toward higher positions make. */
static void bs_trim(const struct finder *f, struct bset *b)
{
    if ((f->nbits & 63) != 0 && !bs_empty(b) && b->last == f->nwords - 1)
        b->w[b->last] &= ((uint64_t)1 << (f->nbits & 63)) - 1;
}

/* dst = src moved k positions up (forward) or down (reverse). */
static void bs_shift(const struct finder *f, const struct bset *src, struct bset *dst, size_t k,
                     int down)
{
    size_t q = k >> 6;
    unsigned r = (unsigned)(k & 63);
    bs_clear(dst);
    if (bs_empty(src))
        return;
    for (size_t wi = src->first; wi <= src->last; wi++) {
        uint64_t w = src->w[wi];
        if (w == 0)
            continue;
        if (!down) {
            size_t t = wi + q;
            if (t >= f->nwords)
                break;
            dst->w[t] |= w << r;
            bs_touch(dst, t);
            if (r != 0 && t + 1 < f->nwords && (w >> (64 - r)) != 0) {
                dst->w[t + 1] |= w >> (64 - r);
                bs_touch(dst, t + 1);
            }
        } else {
            if (wi < q)
                continue;
            size_t t = wi - q;
            if ((w >> r) != 0) {
                dst->w[t] |= w >> r;
                bs_touch(dst, t);
            }
            if (r != 0 && t >= 1 && (w << (64 - r)) != 0) {
                dst->w[t - 1] |= w << (64 - r);
                bs_touch(dst, t - 1);
            }
        }
    }
    bs_trim(f, dst);
}

/* b |= b moved s >= 1 positions up or down, in place. Words are visited in
 * the order that reads every source word before it is written. */
static void bs_or_shifted(const struct finder *f, struct bset *b, size_t s, int down)
{
    size_t q = s >> 6;
    unsigned r = (unsigned)(s & 63);
    if (bs_empty(b))
        return;
    if (!down) {
        if (b->first + q >= f->nwords)
            return;
        size_t top = b->last + q + (r != 0);
        if (top >= f->nwords)
            top = f->nwords - 1;
        for (size_t wi = top;; wi--) {
            size_t src = wi - q;
            uint64_t add = r == 0 ? b->w[src] : b->w[src] << r;
            if (r != 0 && src >= 1)
                add |= b->w[src - 1] >> (64 - r);
            b->w[wi] |= add;
            if (wi == b->first + q)
                break;
        }
        b->last = top;
        bs_trim(f, b);
    } else {
        if (b->last < q)
            return;
        size_t lead = q + (r != 0);
        size_t bottom = b->first > lead ? b->first - lead : 0;
        for (size_t wi = bottom; wi + q <= b->last; wi++) {
            size_t src = wi + q;
            uint64_t add = r == 0 ? b->w[src] : b->w[src] >> r;
            if (r != 0 && src + 1 < f->nwords)
                add |= b->w[src + 1] << (64 - r);
            b->w[wi] |= add;
        }
        b->first = bottom;
    }
}

/* b = union of b moved 0..d positions, by doubling: O(log d) passes. */
static void bs_spread(const struct finder *f, struct bset *b, uint64_t d, int down)
{
    if (d > f->nbits)
        d = f->nbits;
    for (uint64_t covered = 1; covered <= d;) {
        uint64_t s = covered < d + 1 - covered ? covered : d + 1 - covered;
        bs_or_shifted(f, b, (size_t)s, down);
        covered += s;
    }
}

static int bytes_equal(const uint8_t *a, const uint8_t *s, uint32_t n, int nocase)
{
    if (!nocase)
        return memcmp(a, s, n) == 0;
    for (uint32_t k = 0; k < n; k++)
        if (fold(a[k]) != fold(s[k]))
            return 0;
    return 1;
}

static int neg_is_member(const uint8_t *win, const uint8_t *m, uint32_t w, uint32_t count,
                         int nocase)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint8_t *x = m + mid * w;
        int c = 0;
        for (uint32_t k = 0; k < w && c == 0; k++) {
            uint8_t a = nocase ? fold(win[k]) : win[k];
            c = a < x[k] ? -1 : a > x[k] ? 1 : 0;
        }
        if (c == 0)
            return 1;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return 0;
}

/* The first set bit at or after i, or SIZE_MAX. */
static size_t bs_next_set(const struct bset *b, size_t i)
{
    size_t wi = i >> 6;
    if (bs_empty(b) || wi > b->last)
        return SIZE_MAX;
    if (wi < b->first) {
        wi = b->first;
        i = wi * 64;
    }
    uint64_t w = b->w[wi] & (~(uint64_t)0 << (i & 63));
    for (;;) {
        if (w != 0)
            return wi * 64 + (size_t)__builtin_ctzll(w);
        if (++wi > b->last)
            return SIZE_MAX;
        w = b->w[wi];
    }
}

/* The first clear bit after i (a set bit), or nbits. */
static size_t bs_next_clear(const struct finder *f, const struct bset *b, size_t i)
{
    size_t wi = i >> 6;
    uint64_t w = ~b->w[wi] & (~(uint64_t)0 << (i & 63));
    for (;;) {
        if (w != 0) {
            size_t z = wi * 64 + (size_t)__builtin_ctzll(w);
            return z < f->nbits ? z : f->nbits;
        }
        if (++wi > b->last || wi >= f->nwords)
            return wi * 64 < f->nbits ? wi * 64 : f->nbits;
        w = ~b->w[wi];
    }
}

/* Literal runs. Dense stretches of candidates (after a '*' or at the start
 * of a large window) are searched with memmem instead of position by position. */
static void leaf_str(struct finder *f, const uint8_t *node, int rev, const struct bset *in,
                     struct bset *out)
{
    uint32_t n = rd32(node + NODE_HDR);
    const uint8_t *str = node + NODE_HDR + 4;
    int nocase = node[1] & F_NOCASE;
    const uint8_t *buf = f->buf;

    for (size_t a = bs_next_set(in, 0); a != SIZE_MAX;) {
        size_t z = bs_next_clear(f, in, a); /* the run is bits a..z-1 */
        /* Candidate starts as positions: [qa, qz). */
        size_t qa, qz;
        if (!rev) {
            qa = f->base + a;
            qz = f->base + z;
            if (n > f->end - qa)
                qz = qa; /* no room before end_max */
            else if (f->end - n + 1 < qz)
                qz = f->end - n + 1;
        } else {
            size_t lo = a > n ? a : n;
            qa = f->base + lo - n;
            qz = f->base + (z > n ? z - n : 0);
        }
        if (!nocase && qz > qa + 16) {
            const uint8_t *from = buf + qa;
            size_t avail = qz - qa + n - 1;
            while (avail >= n) {
                const uint8_t *hit = memmem(from, avail, str, n);
                if (hit == NULL)
                    break;
                /* Repetitive data matches at many neighbouring places: test
                 * those directly rather than calling memmem for each. */
                const uint8_t *stop = from + avail - n;
                do {
                    bs_set(out, (size_t)(hit - buf) - f->base + (rev ? 0 : n));
                    hit++;
                } while (hit <= stop && memcmp(hit, str, n) == 0);
                avail -= (size_t)(hit - from);
                from = hit;
            }
        } else {
            for (size_t q = qa; q < qz; q++)
                if (fold(buf[q]) == fold(str[0]) && bytes_equal(buf + q, str, n, nocase))
                    bs_set(out, q - f->base + (rev ? 0 : n));
        }
        a = z < f->nbits ? bs_next_set(in, z) : SIZE_MAX;
    }
}

/* out |= the passing bits m of input word wi, moved by d positions. */
static void bs_or_moved(const struct finder *f, struct bset *out, size_t wi, uint64_t m, size_t d,
                        int down)
{
    size_t q = d >> 6;
    unsigned r = (unsigned)(d & 63);
    if (m == 0)
        return;
    if (!down) {
        size_t t = wi + q;
        if (t >= f->nwords)
            return;
        out->w[t] |= m << r;
        bs_touch(out, t);
        if (r != 0 && t + 1 < f->nwords && (m >> (64 - r)) != 0) {
            out->w[t + 1] |= m >> (64 - r);
            bs_touch(out, t + 1);
        }
    } else {
        if (wi < q)
            return;
        size_t t = wi - q;
        if ((m >> r) != 0) {
            out->w[t] |= m >> r;
            bs_touch(out, t);
        }
        if (r != 0 && t >= 1 && (m << (64 - r)) != 0) {
            out->w[t - 1] |= m << (64 - r);
            bs_touch(out, t - 1);
        }
    }
}

/* SET, NEG and ASSERT consume a fixed number of bytes (1, the width, 0), so
 * the passing positions of each input word move together, a word at a time. */
static void leaf_fixed_width(struct finder *f, const uint8_t *node, int rev, const struct bset *in,
                             struct bset *out)
{
    unsigned op = node[0], flags = node[1];
    const uint8_t *body = node + NODE_HDR;
    const uint8_t *buf = f->buf;
    uint32_t w = op == OP_SET ? 1 : op == OP_NEG ? rd32(body) : 0;
    uint32_t count = op == OP_NEG ? rd32(body + 4) : 0;

    for (size_t wi = in->first; wi <= in->last; wi++) {
        uint64_t word = in->w[wi], pass = 0;
        while (word != 0) {
            unsigned t = (unsigned)__builtin_ctzll(word);
            size_t i = wi * 64 + t, p = f->base + i;
            int ok;
            word &= word - 1;
            if (op == OP_ASSERT)
                ok = assert_holds(flags, buf, f->len, p);
            else if (!rev && w > f->end - p)
                ok = 0;
            else if (rev && i < w)
                ok = 0;
            else if (op == OP_SET)
                ok = set_has(body, rev ? buf[p - 1] : buf[p]);
            else
                ok = !neg_is_member(rev ? buf + p - w : buf + p, body + 8, w, count,
                                    flags & F_NOCASE);
            if (ok)
                pass |= (uint64_t)1 << t;
        }
        bs_or_moved(f, out, wi, pass, w, rev);
    }
    if (!rev)
        bs_trim(f, out);
}

/* The leaf nodes. Forward, a start bit i becomes end bit i + width when the
 * bytes at base + i fit; in reverse, an end bit i becomes start bit i - width
 * when the bytes before base + i fit. (L) inside a pattern is the one leaf
 * whose width varies (CR LF, LF or CR), so it is handled bit by bit here. */
static void eval_leaf(struct finder *f, const uint8_t *node, int rev, const struct bset *in,
                      struct bset *out)
{
    unsigned op = node[0], neg = node[1] & F_LINE_NEG;
    const uint8_t *buf = f->buf;

    bs_clear(out);
    if (bs_empty(in))
        return;
    if (op == OP_STR) {
        leaf_str(f, node, rev, in, out);
        return;
    }
    if (op != OP_LINE) {
        leaf_fixed_width(f, node, rev, in, out);
        return;
    }
    for (size_t wi = in->first; wi <= in->last; wi++) {
        uint64_t word = in->w[wi];
        while (word != 0) {
            size_t i = wi * 64 + (size_t)__builtin_ctzll(word);
            size_t p = f->base + i;
            word &= word - 1;
            if (!rev && p < f->end) {
                uint8_t c = buf[p];
                if ((c == '\n' || c == '\r') != (int)neg)
                    bs_set(out, i + 1);
                if (!neg && c == '\r' && p + 1 < f->end && buf[p + 1] == '\n')
                    bs_set(out, i + 2);
            } else if (rev && i >= 1) {
                uint8_t c = buf[p - 1];
                if ((c == '\n' || c == '\r') != (int)neg)
                    bs_set(out, i - 1);
                if (!neg && c == '\n' && i >= 2 && buf[p - 2] == '\r')
                    bs_set(out, i - 2);
            }
        }
    }
}

static void eval_gap(struct finder *f, const uint8_t *node, int rev, const struct bset *in,
                     struct bset *out)
{
    uint32_t lo = rd32(node + NODE_HDR), hi = rd32(node + NODE_HDR + 4);
    bs_clear(out);
    if (lo >= f->nbits)
        return;
    if (hi == BODY_GAP_INF) {
        /* Every position from the first start on (or up to the last end). */
        if (!rev) {
            size_t a = bs_first(in);
            if (a != SIZE_MAX && lo < f->nbits - a)
                bs_set_range(out, a + lo, f->nbits - 1);
        } else {
            size_t z = bs_last(in);
            if (z != SIZE_MAX && z >= lo)
                bs_set_range(out, 0, z - lo);
        }
        return;
    }
    bs_shift(f, in, out, lo, rev);
    bs_spread(f, out, (uint64_t)hi - lo, rev);
}

/* The width of a leaf that always consumes the same number of bytes, else 0. */
static uint32_t fixed_width(const uint8_t *node)
{
    if (node[0] == OP_STR || node[0] == OP_NEG)
        return rd32(node + NODE_HDR);
    return node[0] == OP_SET ? 1 : 0;
}

/* Keeps the bits of b whose position, moved back by w (forward) or ahead by
 * w (reverse), satisfies the assertion. */
static void bs_filter_assert(struct finder *f, struct bset *b, unsigned flags, uint32_t w, int rev)
{
    for (size_t wi = b->first; wi <= b->last && !bs_empty(b); wi++) {
        uint64_t word = b->w[wi];
        while (word != 0) {
            unsigned t = (unsigned)__builtin_ctzll(word);
            size_t p = f->base + wi * 64 + t;
            word &= word - 1;
            if (!assert_holds(flags, f->buf, f->len, rev ? p + w : p - w))
                b->w[wi] &= ~((uint64_t)1 << t);
        }
    }
}

static struct bset *tmp_get(struct finder *f, uint32_t level, unsigned k)
{
    struct bset *b = &f->tmp[2 * (size_t)level + k];
    if (b->w == NULL) {
        b->w = calloc(f->nwords, sizeof(uint64_t));
        b->first = 1;
        b->last = 0;
        if (b->w == NULL) {
            f->nomem = 1;
            return NULL;
        }
    }
    return b;
}

/* out = the positions where the node at `off` ends when it starts in `in`
 * (forward), or starts when it ends in `in` (rev). `in` and `out` are never
 * the same set. SEQ and ALT at `level` use that level's two scratch sets. */
static void eval(struct finder *f, size_t off, int rev, const struct bset *in, struct bset *out,
                 uint32_t level)
{
    const uint8_t *node = f->prog + off;
    unsigned op = node[0];

    if (op == OP_GAP) {
        eval_gap(f, node, rev, in, out);
        return;
    }
    if (op != OP_SEQ && op != OP_ALT) {
        eval_leaf(f, node, rev, in, out);
        return;
    }
    uint32_t n = rd32(node + NODE_HDR);
    struct bset *t0 = tmp_get(f, level, 0), *t1 = tmp_get(f, level, 1);
    if (t0 == NULL || t1 == NULL) {
        bs_clear(out);
        return;
    }
    if (op == OP_ALT) {
        bs_clear(out);
        for (uint32_t k = 0; k < n; k++) {
            eval(f, off + rd32(node + NODE_HDR + 4 + 4 * (size_t)k), rev, in, t0, level + 1);
            bs_or(out, t0);
        }
        return;
    }
    const struct bset *cur = in;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t idx = rev ? n - 1 - k : k;
        const uint8_t *child = f->prog + off + rd32(node + NODE_HDR + 4 + 4 * (size_t)idx);
        uint32_t w = 0;
        /* An edge check followed by bytes of fixed width (the leading (W) of
         * a fullword pattern, say) is cheaper the other way round: match the
         * bytes, then check the few survivors. */
        if (child[0] == OP_ASSERT && k + 1 < n) {
            uint32_t nidx = rev ? idx - 1 : idx + 1;
            const uint8_t *next = f->prog + off + rd32(node + NODE_HDR + 4 + 4 * (size_t)nidx);
            w = fixed_width(next);
            if (w != 0) {
                struct bset *dst = k + 1 == n - 1 ? out : cur == t0 ? t1 : t0;
                eval_leaf(f, next, rev, cur, dst);
                bs_filter_assert(f, dst, child[1], w, rev);
                k++;
                if (bs_first(dst) == SIZE_MAX) {
                    bs_clear(out);
                    return;
                }
                cur = dst;
                continue;
            }
        }
        struct bset *dst = k == n - 1 ? out : cur == t0 ? t1 : t0;
        eval(f, (size_t)(child - f->prog), rev, cur, dst, level + 1);
        if (bs_first(dst) == SIZE_MAX) {
            bs_clear(out);
            return;
        }
        cur = dst;
    }
}

/* The contract has only "match" and "no match", and callers test the result
 * as a boolean, so a failed allocation of the scratch bitmaps (window/8 bytes
 * each) reads as no match rather than as a negative error code. */
int khx_body_find(const uint8_t *prog, size_t prog_len, const uint8_t *buf, size_t len, uint64_t lo,
                  uint64_t hi, uint64_t end_max, size_t *start, size_t *end)
{
    int r = 0;
    struct finder f;
    struct bset x = {0}, ends = {0};
    size_t s, e;

    memset(&f, 0, sizeof(f));
    if (prog == NULL || prog_len < PROG_HDR + NODE_HDR || memcmp(prog, PROG_MAGIC, 4) != 0 ||
        rd32(prog + 4) != prog_len || (buf == NULL && len > 0))
        return 0;
    uint32_t minlen = rd32(prog + 8), maxlen = rd32(prog + 12);
    unsigned depth = rd16(prog + 16), fixed = rd16(prog + 18) & HDR_FIXED;
    if (depth > BODY_MAX_DEPTH)
        return 0;

    /* Narrow the window to what a match could touch. */
    if (end_max > len)
        end_max = len;
    if (lo > hi || lo > end_max || end_max - lo < minlen)
        return 0;
    if (hi > end_max - minlen)
        hi = end_max - minlen;
    if (maxlen != UINT32_MAX && end_max - hi > maxlen)
        end_max = hi + maxlen;
    if (end_max - lo >= SIZE_MAX - 128)
        return 0;

    f.prog = prog;
    f.buf = buf;
    f.len = len;
    f.base = (size_t)lo;
    f.end = (size_t)end_max;
    f.nbits = (size_t)(end_max - lo) + 1;
    f.nwords = (f.nbits + 63) / 64;
    f.tmp = calloc(depth ? 2 * (size_t)depth : 1, sizeof(*f.tmp));
    x.w = calloc(f.nwords, sizeof(uint64_t));
    ends.w = calloc(f.nwords, sizeof(uint64_t));
    if (f.tmp == NULL || x.w == NULL || ends.w == NULL)
        goto out; /* out of memory: no match, see above */
    x.first = ends.first = 1;

    /* Forward from every allowed start gives every end; the earliest start is
     * then found by running the pattern backward from those ends, unless the
     * length is fixed or there is only one start. */
    bs_set_range(&x, 0, (size_t)(hi - lo));
    eval(&f, PROG_HDR, 0, &x, &ends, 0);
    if (f.nomem)
        goto out;
    if ((e = bs_first(&ends)) == SIZE_MAX)
        goto out;
    if (fixed) {
        s = e - minlen;
    } else if (lo == hi) {
        s = 0;
    } else {
        /* x is free again: it takes the starts. */
        eval(&f, PROG_HDR, 1, &ends, &x, 0);
        s = bs_first(&x);
        if (f.nomem)
            goto out;
        if (s == SIZE_MAX || s > hi - lo)
            goto out;
        bs_clear(&x);
        bs_set(&x, s);
        eval(&f, PROG_HDR, 0, &x, &ends, 0);
        if (f.nomem)
            goto out;
        if ((e = bs_first(&ends)) == SIZE_MAX)
            goto out;
    }
    *start = f.base + s;
    *end = f.base + e;
    r = 1;

out:
    if (f.tmp != NULL)
        for (size_t k = 0; k < 2 * (size_t)depth; k++)
            free(f.tmp[k].w);
    free(f.tmp);
    free(x.w);
    free(ends.w);
    return r;
}
