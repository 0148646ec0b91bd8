/*
 * The indicator store builder's first half (store.h): parses normalised
 * records into binary keys, interns their sources, and keeps allowlist
 * entries; store_write.c drops, merges, sorts and writes.
 *
 * Building is sized for tens of millions of indicators in a couple of
 * seconds, so the hot path (ioc_builder_add) does no hashing and no lookup:
 * it appends [kind][length][source set][key] to one byte arena, and
 * duplicates are found at write time by sorting (one random probe per
 * record into a global table was the largest cost of a 10 M build).
 * Sources are interned three times over: names into a pool, (source,
 * category, family, confidence, expiry) into tuples, and sorted lists of
 * tuples into "source sets"; a feed's values all share one set, so each
 * value carries one 32-bit set id. Allow entries are few and go into an
 * open-addressing table (its slots keep 32 hash bits, from which a slot's
 * home is derived, so the table doubles without rehashing keys).
 */
#include "store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <khien/khien.h>

#include "khx.h"
#include "store_int.h"

#include "store_build.h"

#define DOMAIN_MAX 253
#define JA4_MAX    128

/* ------------------------------------------------------------------------ */
/* Small growable arrays and the interning table.                            */
/* ------------------------------------------------------------------------ */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return KH_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (q == NULL)
        return KH_ENOMEM;
    *p = q;
    *cap = c;
    return KH_OK;
}

static int itab_init(struct itab *t, size_t cap)
{
    t->slots = calloc(cap, sizeof(*t->slots));
    t->cap = cap;
    t->n = 0;
    return t->slots ? KH_OK : KH_ENOMEM;
}

/* A slot's home position comes from the upper hash half, which the slot
 * itself keeps, so the table doubles without looking at a single key. */
static size_t itab_home(uint32_t tag, size_t cap)
{
    return (size_t)(((uint64_t)tag * cap) >> 32);
}

static int itab_grow(struct itab *t)
{
    size_t cap = t->cap * 2;
    uint64_t *s = calloc(cap, sizeof(*s));
    if (s == NULL)
        return KH_ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        uint64_t v = t->slots[i];
        if (v == 0)
            continue;
        size_t j = itab_home((uint32_t)(v >> 32), cap);
        while (s[j] != 0)
            j = (j + 1) & (cap - 1);
        s[j] = v;
    }
    free(t->slots);
    t->slots = s;
    t->cap = cap;
    return KH_OK;
}

/* Probes for a key: eq(ctx, index) says whether entry `index` is it.
 * Returns the index, or -1 with *slot set to the empty slot to fill. */
static int64_t itab_find(const struct itab *t, uint64_t h, int (*eq)(void *, uint32_t), void *ctx,
                         size_t *slot)
{
    uint32_t tag = (uint32_t)(h >> 32);
    size_t j = itab_home(tag, t->cap);
    for (;;) {
        uint64_t v = t->slots[j];
        if (v == 0) {
            *slot = j;
            return -1;
        }
        if ((uint32_t)(v >> 32) == tag && eq(ctx, (uint32_t)(v & 0xffffffffu) - 1))
            return (int64_t)(uint32_t)((v & 0xffffffffu) - 1);
        j = (j + 1) & (t->cap - 1);
    }
}

static void itab_put(struct itab *t, size_t slot, uint64_t h, uint32_t index)
{
    t->slots[slot] = (h >> 32) << 32 | ((uint64_t)index + 1);
    t->n++;
}

/* ------------------------------------------------------------------------ */
/* Values.                                                                   */
/* ------------------------------------------------------------------------ */

struct vkey {
    struct ioc_builder *b;
    uint8_t sk;
    const uint8_t *p;
    uint16_t len;
};

static uint64_t value_hash(const struct ioc_builder *b, uint8_t sk, const uint8_t *p, size_t len)
{
    return store_siphash(b->key, p, len) + (uint64_t)sk * 0x9e3779b97f4a7c15ULL;
}

static int value_eq(void *ctx, uint32_t i)
{
    const struct vkey *k = ctx;
    const uint8_t *r = k->b->arena + k->b->eoff[i];
    uint16_t len;
    memcpy(&len, r + 1, 2);
    return r[0] == k->sk && len == k->len && memcmp(r + 3, k->p, len) == 0;
}

/* Finds a value; with create, adds it (set UINT32_MAX) when absent.
 * Returns the entry index, -1 when absent, or a negative kh_err - 1. */
int64_t ioc_sb_value_find(struct ioc_builder *b, uint8_t sk, const uint8_t *p, size_t len,
                          int create, int *created)
{
    struct vkey k = {b, sk, p, (uint16_t)len};
    uint64_t h = value_hash(b, sk, p, len);
    size_t slot;
    int64_t i = itab_find(&b->values, h, value_eq, &k, &slot);
    *created = 0;
    if (i >= 0 || !create)
        return i;
    if (b->n >= UINT32_MAX - 1 || b->alen + len + 3 > ARENA_MAX)
        return KH_ELIMIT - 1;
    if (b->n == b->ecap) {
        /* eset grows with eoff, to the same capacity */
        size_t ec = b->ecap;
        if (grow((void **)&b->eoff, &ec, b->n + 1, sizeof(*b->eoff)) != KH_OK)
            return KH_ENOMEM - 1;
        void *q = realloc(b->eset, ec * sizeof(*b->eset));
        if (q == NULL)
            return KH_ENOMEM - 1;
        b->eset = q;
        b->ecap = ec;
    }
    if (b->alen + len + 3 > b->acap) {
        uint64_t c = b->acap ? b->acap : 1 << 20;
        while (c < b->alen + len + 3)
            c *= 2;
        uint8_t *a = realloc(b->arena, c);
        if (a == NULL)
            return KH_ENOMEM - 1;
        b->arena = a;
        b->acap = c;
    }
    uint8_t *r = b->arena + b->alen;
    uint16_t l16 = (uint16_t)len;
    r[0] = sk;
    memcpy(r + 1, &l16, 2);
    memcpy(r + 3, p, len);
    b->eoff[b->n] = b->alen;
    b->eset[b->n] = UINT32_MAX;
    b->alen += len + 3;
    itab_put(&b->values, slot, h, (uint32_t)b->n);
    i = (int64_t)b->n++;
    *created = 1;
    if (b->values.n * 4 > b->values.cap * 3 && itab_grow(&b->values) != KH_OK)
        return KH_ENOMEM - 1;
    return i;
}

/* ------------------------------------------------------------------------ */
/* Names, tuples and sets.                                                   */
/* ------------------------------------------------------------------------ */

struct nkey {
    struct ioc_builder *b;
    const char *s;
    size_t len;
};

static int name_eq(void *ctx, uint32_t off)
{
    const struct nkey *k = ctx;
    return strncmp(k->b->pool + off, k->s, k->len) == 0 && k->b->pool[off + k->len] == '\0';
}

static int name_intern(struct ioc_builder *b, const char *s, uint32_t *out)
{
    size_t len = strnlen(s, IOC_WORD_MAX + 1);
    if (len > IOC_WORD_MAX)
        return KH_EINVAL;
    struct nkey k = {b, s, len};
    uint64_t h = store_siphash(b->key, s, len);
    size_t slot;
    int64_t i = itab_find(&b->names, h, name_eq, &k, &slot);
    if (i >= 0) {
        *out = (uint32_t)i;
        return KH_OK;
    }
    if (grow((void **)&b->pool, &b->pcap, b->plen + len + 1, 1) != KH_OK)
        return KH_ENOMEM;
    uint32_t off = (uint32_t)b->plen;
    memcpy(b->pool + off, s, len);
    b->pool[off + len] = '\0';
    b->plen += len + 1;
    itab_put(&b->names, slot, h, off);
    if (b->names.n * 2 > b->names.cap && itab_grow(&b->names) != KH_OK)
        return KH_ENOMEM;
    *out = off;
    return KH_OK;
}

struct tkey {
    struct ioc_builder *b;
    const struct store_tuple *t;
};

static int tuple_eq(void *ctx, uint32_t i)
{
    const struct tkey *k = ctx;
    return memcmp(&k->b->tuples[i], k->t, sizeof(*k->t)) == 0;
}

static int tuple_intern(struct ioc_builder *b, const struct store_tuple *t, uint32_t *out)
{
    struct tkey k = {b, t};
    uint64_t h = store_siphash(b->key, t, sizeof(*t));
    size_t slot;
    int64_t i = itab_find(&b->tuptab, h, tuple_eq, &k, &slot);
    if (i >= 0) {
        *out = (uint32_t)i;
        return KH_OK;
    }
    if (b->ntuples >= MAX_TUPLES)
        return KH_ELIMIT;
    if (grow((void **)&b->tuples, &b->tcap, b->ntuples + 1, sizeof(*b->tuples)) != KH_OK)
        return KH_ENOMEM;
    b->tuples[b->ntuples] = *t;
    itab_put(&b->tuptab, slot, h, (uint32_t)b->ntuples);
    *out = (uint32_t)b->ntuples++;
    if (b->tuptab.n * 2 > b->tuptab.cap && itab_grow(&b->tuptab) != KH_OK)
        return KH_ENOMEM;
    return KH_OK;
}

struct skey {
    struct ioc_builder *b;
    const uint32_t *w;
    size_t n;
};

static int set_eq(void *ctx, uint32_t i)
{
    const struct skey *k = ctx;
    const struct ioc_builder *b = k->b;
    size_t n = b->setidx[i + 1] - b->setidx[i];
    return n == k->n && memcmp(b->setw + b->setidx[i], k->w, n * 4) == 0;
}

/* Interns a list of tuple ids (sorted by the caller). */
static int set_intern(struct ioc_builder *b, const uint32_t *w, size_t n, uint32_t *out)
{
    struct skey k = {b, w, n};
    uint64_t h = store_siphash(b->key, w, n * 4);
    size_t slot;
    int64_t i = itab_find(&b->settab, h, set_eq, &k, &slot);
    if (i >= 0) {
        *out = (uint32_t)i;
        return KH_OK;
    }
    if (b->nsetw + n >= UINT32_MAX || b->nsets >= UINT32_MAX - 2)
        return KH_ELIMIT;
    if (grow((void **)&b->setw, &b->swcap, b->nsetw + n, 4) != KH_OK ||
        grow((void **)&b->setidx, &b->sicap, b->nsets + 2, 4) != KH_OK)
        return KH_ENOMEM;
    memcpy(b->setw + b->nsetw, w, n * 4);
    b->nsetw += n;
    b->setidx[b->nsets + 1] = (uint32_t)b->nsetw;
    itab_put(&b->settab, slot, h, (uint32_t)b->nsets);
    *out = (uint32_t)b->nsets++;
    if (b->settab.n * 2 > b->settab.cap && itab_grow(&b->settab) != KH_OK)
        return KH_ENOMEM;
    return KH_OK;
}

/* ------------------------------------------------------------------------ */
/* Parsing normalised values into keys.                                      */
/* ------------------------------------------------------------------------ */

/* Dotted IPv4 as the feed readers write it (no leading zeros, which
 * inet_pton refuses too); 0 when it is one, -1 to leave it to inet_pton. */
static int fast_v4(const char *s, size_t len, uint8_t out[4])
{
    size_t i = 0;
    for (int k = 0; k < 4; k++) {
        unsigned v = 0;
        size_t d = 0;
        while (i < len && d < 4 && s[i] >= '0' && s[i] <= '9') {
            v = v * 10 + (unsigned)(s[i++] - '0');
            d++;
        }
        if (d == 0 || d > 3 || v > 255 || (d > 1 && s[i - d] == '0'))
            return -1;
        out[k] = (uint8_t)v;
        if (k < 3 && (i >= len || s[i++] != '.'))
            return -1;
    }
    return i == len ? 0 : -1;
}

static int parse_addr(const char *s, size_t len, uint8_t out[16], int *v6)
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    if (s[0] >= '0' && s[0] <= '9' && len <= 15 && fast_v4(s, len, out) == 0) {
        *v6 = 0;
        return 0;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, out) == 1) {
        *v6 = 0;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, out) != 1)
        return -1;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(out, mapped, 12) == 0) {
        memmove(out, out + 12, 4);
        *v6 = 0;
        return 0;
    }
    *v6 = 1;
    return 0;
}

static int parse_uint(const char *s, size_t len, unsigned max, unsigned *out)
{
    unsigned v = 0;
    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

void ioc_sb_mask_bits(uint8_t *a, size_t bytes, unsigned len)
{
    for (size_t i = 0; i < bytes; i++) {
        unsigned bit = (unsigned)i * 8;
        if (bit >= len)
            a[i] = 0;
        else if (bit + 8 > len)
            a[i] &= (uint8_t)(0xff << (8 - (len - bit)));
    }
}

/* 1: a lower-case letter, digit, '-' or '_'; 2: an upper-case letter; 3:
 * the dot; 0: anything else. */
static const uint8_t name_class[256] = {
    ['-'] = 1, ['_'] = 1, ['.'] = 3, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,
    ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,
    ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,
    ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['A'] = 2,
    ['B'] = 2, ['C'] = 2, ['D'] = 2, ['E'] = 2, ['F'] = 2, ['G'] = 2, ['H'] = 2, ['I'] = 2,
    ['J'] = 2, ['K'] = 2, ['L'] = 2, ['M'] = 2, ['N'] = 2, ['O'] = 2, ['P'] = 2, ['Q'] = 2,
    ['R'] = 2, ['S'] = 2, ['T'] = 2, ['U'] = 2, ['V'] = 2, ['W'] = 2, ['X'] = 2, ['Y'] = 2,
    ['Z'] = 2,
};

/* Copies a domain from s to d lowercased, checking its syntax on the way:
 * one pass over the characters with no branch on their class (names in
 * large lists mix letters and digits at random, which such a branch
 * mispredicts), noting where the dots are, then the labels between them. */
static int domain_ok(const char *s, char *d, size_t len)
{
    uint8_t dot[DOMAIN_MAX + 1];
    size_t nd = 0, start = 0;
    unsigned bad = 0;
    if (len == 0 || len > DOMAIN_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        unsigned k = name_class[c];
        bad |= k == 0;
        d[i] = (char)(c | (k == 2 ? 0x20 : 0));
        dot[nd] = (uint8_t)i;
        nd += k == 3;
    }
    if (bad || nd == 0)
        return 0;
    for (size_t j = 0; j < nd; j++) {
        if (dot[j] == start || dot[j] - start > 63)
            return 0;
        start = (size_t)dot[j] + 1;
    }
    return start < len && len - start <= 63;
}

/* Turns (kind, value) into an internal kind and key bytes in out (at least
 * IOC_VALUE_MAX + 1 bytes). Returns the key length or -1. With canonical
 * (the record's IOC_HINT_CANONICAL), a domain is taken as it is, only
 * its length checked: the feed reader's fast path has lowercased it and
 * checked its labels as domain_ok would, and checking a name twice was a
 * tenth of a large build. */
static int parse_value(int kind, int allow, int canonical, const char *v, uint8_t *out, uint8_t *sk)
{
    size_t len = strnlen(v, IOC_VALUE_MAX + 1);
    int v6;
    unsigned n;
    if (len > IOC_VALUE_MAX)
        return -1;
    switch (kind) {
    case IOC_IP:
        if (parse_addr(v, len, out, &v6) != 0)
            return -1;
        if (allow) {
            out[v6 ? 16 : 4] = v6 ? 128 : 32;
            *sk = v6 ? SK_AV6N : SK_AV4N;
            return v6 ? 17 : 5;
        }
        *sk = v6 ? SK_V6 : SK_V4;
        return v6 ? 16 : 4;
    case IOC_CIDR: {
        const char *slash = memchr(v, '/', len);
        if (slash == NULL || parse_addr(v, (size_t)(slash - v), out, &v6) != 0 ||
            parse_uint(slash + 1, len - (size_t)(slash - v) - 1, v6 ? 128 : 32, &n) != 0 || n == 0)
            return -1;
        ioc_sb_mask_bits(out, v6 ? 16 : 4, n);
        if (!allow && n == (v6 ? 128u : 32u)) {
            *sk = v6 ? SK_V6 : SK_V4;
            return v6 ? 16 : 4;
        }
        out[v6 ? 16 : 4] = (uint8_t)n;
        *sk = allow ? (v6 ? SK_AV6N : SK_AV4N) : (v6 ? SK_V6N : SK_V4N);
        return v6 ? 17 : 5;
    }
    case IOC_IP_PORT: {
        const char *colon;
        size_t alen;
        if (allow)
            return -1;
        if (v[0] == '[') {
            const char *close = memchr(v, ']', len);
            if (close == NULL || close[1] != ':')
                return -1;
            colon = close + 1;
            if (parse_addr(v + 1, (size_t)(close - v - 1), out, &v6) != 0)
                return -1;
        } else {
            colon = memchr(v, ':', len);
            if (colon == NULL || memchr(colon + 1, ':', len - (size_t)(colon - v) - 1) != NULL)
                return -1;
            alen = (size_t)(colon - v);
            if (parse_addr(v, alen, out, &v6) != 0 || v6)
                return -1;
        }
        if (parse_uint(colon + 1, len - (size_t)(colon - v) - 1, 65535, &n) != 0 || n == 0)
            return -1;
        uint16_t port = (uint16_t)n;
        memcpy(out + (v6 ? 16 : 4), &port, 2);
        *sk = v6 ? SK_V6P : SK_V4P;
        return v6 ? 18 : 6;
    }
    case IOC_DOMAIN:
        if (canonical) {
            if (len == 0 || len > DOMAIN_MAX)
                return -1;
            memcpy(out, v, len);
            *sk = allow ? SK_ADOMAIN : SK_DOMAIN;
            return (int)len;
        }
        if (len > 0 && v[len - 1] == '.')
            len--;
        if (!domain_ok(v, (char *)out, len))
            return -1;
        *sk = allow ? SK_ADOMAIN : SK_DOMAIN;
        return (int)len;
    case IOC_URL:
        if (len == 0)
            return -1;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)v[i] <= ' ' || v[i] == 0x7f)
                return -1;
        memcpy(out, v, len);
        *sk = allow ? SK_AURL : SK_URL;
        return (int)len;
    case IOC_JA3:
        if (len != 32 || khx_hex_decode(v, 16, out) != 0)
            return -1;
        *sk = allow ? SK_AJA3 : SK_JA3;
        return 16;
    case IOC_JA4:
        if (len == 0 || len > JA4_MAX)
            return -1;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)v[i] <= ' ' || (unsigned char)v[i] >= 0x7f)
                return -1;
        memcpy(out, v, len);
        *sk = allow ? SK_AJA4 : SK_JA4;
        return (int)len;
    default:
        return -1;
    }
}

/* ------------------------------------------------------------------------ */
/* The public builder calls.                                                 */
/* ------------------------------------------------------------------------ */

int ioc_builder_new(const struct ioc_build_opts *opts, struct ioc_builder **out)
{
    int r = KH_ENOMEM;
    struct ioc_builder *b = calloc(1, sizeof(*b));
    if (b == NULL)
        goto out;
    b->max = opts && opts->max_indicators ? opts->max_indicators : DEFAULT_MAX;
    b->allow_private = opts ? opts->allow_private : 0;
    if (getrandom(b->key, sizeof(b->key), 0) != (ssize_t)sizeof(b->key)) {
        r = KH_EIO;
        goto out;
    }
    if (itab_init(&b->values, 1 << 16) != KH_OK || itab_init(&b->names, 64) != KH_OK ||
        itab_init(&b->tuptab, 64) != KH_OK || itab_init(&b->settab, 64) != KH_OK)
        goto out;
    if (grow((void **)&b->setidx, &b->sicap, 2, 4) != KH_OK)
        goto out;
    b->setidx[0] = 0;
    /* set 0 is the empty set, used by allow entries */
    b->setidx[1] = 0;
    b->nsets = 1;
    *out = b;
    b = NULL;
    r = KH_OK;
out:
    ioc_builder_free(b);
    return r;
}

void ioc_builder_free(struct ioc_builder *b)
{
    if (b == NULL)
        return;
    free(b->arena);
    free(b->eoff);
    free(b->eset);
    free(b->values.slots);
    free(b->pool);
    free(b->names.slots);
    free(b->tuples);
    free(b->tuptab.slots);
    free(b->setw);
    free(b->setidx);
    free(b->settab.slots);
    free(b->rec);
    free(b->rhash);
    free(b);
}

static int word_ok(const char *w)
{
    return w != NULL && strnlen(w, IOC_WORD_MAX + 1) <= IOC_WORD_MAX;
}

/* The tuple for a record, through the one-record cache. */
static int record_tuple(struct ioc_builder *b, const struct ioc_record *r, uint32_t *tuple)
{
    const char *fam = r->family ? r->family : "";
    if (b->have_last && b->last_conf == r->confidence && b->last_exp == r->expires &&
        strcmp(b->last_src, r->source) == 0 && strcmp(b->last_cat, r->category) == 0 &&
        strcmp(b->last_fam, fam) == 0) {
        *tuple = b->last_tuple;
        return KH_OK;
    }
    struct store_tuple t = {0};
    int rc;
    if ((rc = name_intern(b, r->source, &t.source)) != KH_OK ||
        (rc = name_intern(b, r->category, &t.category)) != KH_OK ||
        (rc = name_intern(b, fam, &t.family)) != KH_OK)
        return rc;
    t.confidence = r->confidence > 100 ? 100 : r->confidence;
    t.expires = r->expires < 0 ? 0 : r->expires;
    if ((rc = tuple_intern(b, &t, tuple)) != KH_OK)
        return rc;
    uint32_t w = *tuple;
    if ((rc = set_intern(b, &w, 1, &b->last_set)) != KH_OK)
        return rc;
    snprintf(b->last_src, sizeof(b->last_src), "%s", r->source);
    snprintf(b->last_cat, sizeof(b->last_cat), "%s", r->category);
    snprintf(b->last_fam, sizeof(b->last_fam), "%s", fam);
    b->last_conf = r->confidence;
    b->last_exp = r->expires;
    b->last_tuple = *tuple;
    b->have_last = 1;
    return KH_OK;
}

int ioc_sb_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The set `s` plus tuple t: a tuple of the same source is replaced by the
 * merge of both (the later record's category, the highest confidence, the
 * latest expiry with 0 = never as the latest). */
static int merge_set(struct ioc_builder *b, uint32_t s, uint32_t t, uint32_t *out)
{
    uint32_t w[SET_MAX_TUPLE];
    size_t n = b->setidx[s + 1] - b->setidx[s], k = 0;
    int rc, replaced = 0;
    *out = s;
    if (n >= SET_MAX_TUPLE)
        return KH_OK;
    memcpy(w, b->setw + b->setidx[s], n * 4);
    for (k = 0; k < n; k++) {
        if (w[k] == t)
            return KH_OK;
        const struct store_tuple *ot = &b->tuples[w[k]], *nt = &b->tuples[t];
        if (ot->source != nt->source)
            continue;
        struct store_tuple m = *nt;
        if (ot->confidence > m.confidence)
            m.confidence = ot->confidence;
        m.expires = (ot->expires == 0 || nt->expires == 0) ? 0
                    : ot->expires > nt->expires            ? ot->expires
                                                           : nt->expires;
        if ((rc = tuple_intern(b, &m, &w[k])) != KH_OK)
            return rc;
        replaced = 1;
        break;
    }
    if (!replaced)
        w[n++] = t;
    qsort(w, n, 4, ioc_sb_cmp_u32);
    return set_intern(b, w, n, out);
}

/* The union of sets a and then c (c's records came later). */
int ioc_sb_merge_sets(struct ioc_builder *b, uint32_t a, uint32_t c, uint32_t *out)
{
    uint32_t w[SET_MAX_TUPLE];
    size_t n = b->setidx[c + 1] - b->setidx[c];
    int rc;
    if (n > SET_MAX_TUPLE)
        n = SET_MAX_TUPLE;
    memcpy(w, b->setw + b->setidx[c], n * 4); /* set_intern may move setw */
    for (size_t k = 0; k < n; k++)
        if ((rc = merge_set(b, a, w[k], &a)) != KH_OK)
            return rc;
    *out = a;
    return KH_OK;
}

int ioc_builder_add(struct ioc_builder *b, const struct ioc_record *r)
{
    return ioc_builder_add_hinted(b, r, 0);
}

int ioc_builder_add_hinted(struct ioc_builder *b, const struct ioc_record *r, unsigned hints)
{
    uint8_t key[IOC_VALUE_MAX + 1];
    uint8_t sk = 0;
    uint32_t tuple;
    int rc;
    if (b == NULL || r == NULL || r->value == NULL)
        return KH_EINVAL;
    /* The same words as the previous record, which the cache holds: they
     * were checked then, and its tuple is this one's. */
    int same = (hints & IOC_HINT_SAME_WORDS) && b->last_is_prev;
    b->last_is_prev = 0;
    if (!same && (!word_ok(r->source) || !word_ok(r->category) ||
                  (r->family != NULL && !word_ok(r->family))))
        return KH_EINVAL;
    int len = parse_value(r->kind, 0, (hints & IOC_HINT_CANONICAL) != 0, r->value, key, &sk);
    /* a record refused here leaves the cache as it was: still the previous
     * record's words when they were this one's too */
    if (len < 0) {
        b->last_is_prev = same;
        return KH_EINVAL;
    }
    if (b->nrecords >= b->max || b->rlen + REC_HDR + (uint64_t)len > ARENA_MAX) {
        b->last_is_prev = same;
        return KH_ELIMIT;
    }
    if (same)
        tuple = b->last_tuple;
    else if ((rc = record_tuple(b, r, &tuple)) != KH_OK)
        return rc;
    b->last_is_prev = 1;
    int str = sk >= SK_DOMAIN && sk <= SK_JA4;
    if (str && grow((void **)&b->rhash, &b->rhcap, b->nrhash + 1, sizeof(*b->rhash)) != KH_OK)
        return KH_ENOMEM;
    if (b->rlen + REC_HDR + (uint64_t)len > b->rcap) {
        uint64_t c = b->rcap ? b->rcap : 1 << 20;
        while (c < b->rlen + REC_HDR + (uint64_t)len)
            c *= 2;
        uint8_t *a = realloc(b->rec, c);
        if (a == NULL)
            return KH_ENOMEM;
        b->rec = a;
        b->rcap = c;
    }
    uint8_t *p = b->rec + b->rlen;
    uint16_t l16 = (uint16_t)len;
    p[0] = sk;
    memcpy(p + 1, &l16, 2);
    memcpy(p + 3, &b->last_set, 4); /* record_tuple left the singleton set of `tuple` there */
    memcpy(p + REC_HDR, key, (size_t)len);
    b->rlen += REC_HDR + (uint64_t)len;
    if (str)
        b->rhash[b->nrhash++] = store_siphash(b->key, key, (size_t)len);
    b->nrec[sk]++;
    b->sbytes[sk] +=
        1 + store_varint_len((uint64_t)len) + store_varint_len(b->last_set) + (uint64_t)len;
    if (sk == SK_V4N && key[4] >= 16)
        b->nv4long++;
    b->nrecords++;
    return KH_OK;
}

int ioc_builder_add_fn(void *builder, const struct ioc_record *r)
{
    int rc = ioc_builder_add(builder, r);
    return rc == KH_EINVAL ? KH_OK : rc; /* a bad value does not stop a reader */
}

int ioc_builder_allow(struct ioc_builder *b, const struct ioc_record *r)
{
    uint8_t key[IOC_VALUE_MAX + 1];
    uint8_t sk = 0;
    int created;
    if (b == NULL || r == NULL || r->value == NULL)
        return KH_EINVAL;
    int len = parse_value(r->kind, 1, 0, r->value, key, &sk);
    if (len < 0)
        return KH_EINVAL;
    int64_t i = ioc_sb_value_find(b, sk, key, (size_t)len, b->nallow < b->max, &created);
    if (i < -1)
        return (int)(i + 1);
    if (i == -1)
        return KH_ELIMIT;
    if (created) {
        b->eset[i] = 0;
        b->nallow++;
        b->nallow_sk[sk]++;
        b->sbytes[sk] += 1 + store_varint_len((uint64_t)len) + 1 + (uint64_t)len;
        if (sk == SK_AV4N)
            b->av4_lens |= (uint64_t)1 << key[4];
        else if (sk == SK_AV6N)
            b->av6_lens[key[16]] = 1;
    }
    return KH_OK;
}

int ioc_builder_allow_fn(void *builder, const struct ioc_record *r)
{
    int rc = ioc_builder_allow(builder, r);
    return rc == KH_EINVAL ? KH_OK : rc;
}
