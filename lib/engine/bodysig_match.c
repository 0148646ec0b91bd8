/*
 * ClamAV body signatures (see bodysig.h), the matching half: the check of a
 * matcher program read from a .kdb (khx_body_prog_check) and the matcher
 * itself (khx_body_find). The programs are made by bodysig.c; their encoding
 * is in bodysig_int.h and docs/internals/bodysig.md.
 *
 * The program is a serialized expression tree. khx_body_find does not
 * backtrack: it evaluates each node over a set of positions, mapping the
 * positions where the node may start to the positions where it may end, with
 * the sets held as bitmaps over the search window. The work is therefore
 * O(window/64 * nodes * log(gap)) plus one byte test per candidate position
 * and node, whatever the input, and the recursion is never deeper than the
 * program's nesting, which khx_body_prog_check caps.
 */
#include "bodysig.h"

#include <stdlib.h>
#include <string.h>

#include "bodysig_int.h"
#include "khx.h"

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
