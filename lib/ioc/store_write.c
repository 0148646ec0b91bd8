/*
 * The indicator store builder's second half (store.h, ioc_builder_write):
 * drops what the allowlists and the private/bogon ranges cover, sorts the
 * address kinds with a radix sort, groups the string kinds into hash
 * buckets, merges duplicate values (their source sets united), and writes
 * the file (format in store_int.h) into a temporary file that is renamed
 * into place, so the store is never held twice in anonymous memory. The
 * file is sized from bounds known before merging, so it is created and its
 * blocks allocated on a second thread while the values sort. The string
 * tables (most of a store) are written with pwrite() from two reused 1 MiB
 * buffers each; the rest is filled through a shared mapping. The domain
 * table is sorted and written on a second thread beside the other kinds.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <khien/khien.h>

#include "khx.h"
#include "store_build.h"

/* ------------------------------------------------------------------------ */
/* Writing: what is dropped.                                                 */
/* ------------------------------------------------------------------------ */

static const struct {
    uint32_t addr;
    uint8_t len;
} bogons4[] = {
    {0x00000000u, 8},  {0x0a000000u, 8},  {0x64400000u, 10}, {0x7f000000u, 8}, {0xa9fe0000u, 16},
    {0xac100000u, 12}, {0xc0a80000u, 16}, {0xe0000000u, 4},  {0xf0000000u, 4},
};

static const struct {
    uint8_t addr[16];
    uint8_t len;
} bogons6[] = {
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 128},
    {{0xfc}, 7},
    {{0xfe, 0x80}, 10},
    {{0xff}, 8},
};

static uint32_t mask4(unsigned len)
{
    return len == 0 ? 0 : ~(uint32_t)0 << (32 - len);
}

/* Whether two prefixes overlap (one contains the other). */
static int overlap4(uint32_t a, unsigned la, uint32_t b, unsigned lb)
{
    uint32_t m = mask4(la < lb ? la : lb);
    return (a & m) == (b & m);
}

static int overlap6(const uint8_t *a, unsigned la, const uint8_t *b, unsigned lb)
{
    uint8_t x[16], y[16];
    unsigned m = la < lb ? la : lb;
    memcpy(x, a, 16);
    memcpy(y, b, 16);
    ioc_sb_mask_bits(x, 16, m);
    ioc_sb_mask_bits(y, 16, m);
    return memcmp(x, y, 16) == 0;
}

static int bogon4(uint32_t a, unsigned len)
{
    for (size_t i = 0; i < sizeof(bogons4) / sizeof(bogons4[0]); i++)
        if (overlap4(a, len, bogons4[i].addr, bogons4[i].len))
            return 1;
    return 0;
}

static int bogon6(const uint8_t *a, unsigned len)
{
    for (size_t i = 0; i < sizeof(bogons6) / sizeof(bogons6[0]); i++)
        if (overlap6(a, len, bogons6[i].addr, bogons6[i].len))
            return 1;
    return 0;
}

static int has(struct ioc_builder *b, uint8_t sk, const uint8_t *p, size_t len)
{
    int created;
    if (b->nallow_sk[sk] == 0)
        return 0;
    return ioc_sb_value_find(b, sk, p, len, 0, &created) >= 0;
}

/* Whether an allow prefix of length <= len contains a (network order). */
static int allowed4(struct ioc_builder *b, const uint8_t *a, unsigned len)
{
    uint32_t x;
    memcpy(&x, a, 4);
    x = ntohl(x);
    for (unsigned l = 1; l <= len && (b->av4_lens >> l) != 0; l++) {
        if (!(b->av4_lens >> l & 1))
            continue;
        uint8_t k[5];
        uint32_t m = htonl(x & mask4(l));
        memcpy(k, &m, 4);
        k[4] = (uint8_t)l;
        if (has(b, SK_AV4N, k, 5))
            return 1;
    }
    return 0;
}

static int allowed6(struct ioc_builder *b, const uint8_t *a, unsigned len)
{
    for (unsigned l = 1; l <= len; l++) {
        if (!b->av6_lens[l])
            continue;
        uint8_t k[17];
        memcpy(k, a, 16);
        ioc_sb_mask_bits(k, 16, l);
        k[16] = (uint8_t)l;
        if (has(b, SK_AV6N, k, 17))
            return 1;
    }
    return 0;
}

static int allowed_domain(struct ioc_builder *b, const uint8_t *d, size_t len)
{
    if (b->nallow_sk[SK_ADOMAIN] == 0)
        return 0;
    for (;;) {
        if (has(b, SK_ADOMAIN, d, len))
            return 1;
        const uint8_t *dot = memchr(d, '.', len);
        if (dot == NULL)
            return 0;
        len -= (size_t)(dot + 1 - d);
        d = dot + 1;
    }
}

/* Whether indicator entry i is dropped (allowlist or bogon). */
static int dropped(struct ioc_builder *b, uint8_t sk, const uint8_t *k, size_t len)
{
    uint32_t a4;
    switch (sk) {
    case SK_V4:
    case SK_V4P:
    case SK_V4N: {
        unsigned l = sk == SK_V4N ? k[4] : 32;
        memcpy(&a4, k, 4);
        return (!b->allow_private && bogon4(ntohl(a4), l)) || allowed4(b, k, l);
    }
    case SK_V6:
    case SK_V6P:
    case SK_V6N: {
        unsigned l = sk == SK_V6N ? k[16] : 128;
        return (!b->allow_private && bogon6(k, l)) || allowed6(b, k, l);
    }
    case SK_DOMAIN:
        return allowed_domain(b, k, len);
    case SK_URL:
        return has(b, SK_AURL, k, len);
    case SK_JA3:
        return has(b, SK_AJA3, k, len);
    case SK_JA4:
        return has(b, SK_AJA4, k, len);
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Writing: sorting and layout.                                              */
/* ------------------------------------------------------------------------ */

struct pair {
    uint64_t k, v;
};

/* LSD radix sort by the low `bits` bits of k, 16 bits a pass. Returns the
 * array that holds the result (a or tmp). */
static struct pair *radix_pairs(struct pair *a, struct pair *tmp, size_t n, unsigned bits,
                                size_t *count)
{
    for (unsigned shift = 0; shift < bits; shift += 16) {
        memset(count, 0, 65536 * sizeof(*count));
        for (size_t i = 0; i < n; i++)
            count[(a[i].k >> shift) & 0xffff]++;
        size_t sum = 0;
        for (size_t d = 0; d < 65536; d++) {
            size_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            tmp[count[(a[i].k >> shift) & 0xffff]++] = a[i];
        struct pair *t = a;
        a = tmp;
        tmp = t;
    }
    return a;
}

static int cmp_v6(const void *x, const void *y)
{
    return memcmp(x, y, 16);
}

static int cmp_v6p(const void *x, const void *y)
{
    const struct store_v6p *a = x, *b = y;
    int c = memcmp(a->addr, b->addr, 16);
    return c ? c : (a->port > b->port) - (a->port < b->port);
}

/* Prefixes: by length, then address. */
struct net6 {
    uint8_t addr[16];
    uint32_t len, set;
};

static int cmp_net6(const void *x, const void *y)
{
    const struct net6 *a = x, *b = y;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return memcmp(a->addr, b->addr, 16);
}

/* One pair array per output group. */
enum grp { G_V4, G_V4P, G_V4N, G_AV4N, G_V4L, G_COUNT }; /* G_V4L: split from G_V4N */

struct wstate {
    struct pair *g[G_COUNT]; /* sorted */
    size_t gn[G_COUNT];
    struct store_v6 *v6;
    struct store_v6p *v6p;
    struct net6 *v6n, *av6n;
    size_t nv6, nv6p, nv6n, nav6n;
    struct pair *st[4 + 4]; /* string tables: k = bucket, v = entry << 32 | low hash */
    size_t stn[8];
    uint64_t stbytes[8];
    uint64_t nb[8]; /* buckets per string table (from the counts before merging) */
    int big;        /* the IPv4 bitmap and /16 directories are written */
    struct store_header h;
};

static void wstate_free(struct wstate *w)
{
    for (int i = 0; i < G_COUNT; i++)
        free(w->g[i]);
    for (int i = 0; i < STAB_COUNT; i++)
        free(w->st[i]);
    free(w->v6);
    free(w->v6p);
    free(w->v6n);
    free(w->av6n);
}

static int stab_of(uint8_t sk)
{
    switch (sk) {
    case SK_DOMAIN:
        return STAB_DOMAIN;
    case SK_URL:
        return STAB_URL;
    case SK_JA3:
        return STAB_JA3;
    case SK_JA4:
        return STAB_JA4;
    case SK_ADOMAIN:
        return STAB_ADOMAIN;
    case SK_AURL:
        return STAB_AURL;
    case SK_AJA3:
        return STAB_AJA3;
    case SK_AJA4:
        return STAB_AJA4;
    default:
        return -1;
    }
}

static int grp_of(uint8_t sk)
{
    switch (sk) {
    case SK_V4:
        return G_V4;
    case SK_V4P:
        return G_V4P;
    case SK_V4N:
        return G_V4N;
    case SK_AV4N:
        return G_AV4N;
    default:
        return -1;
    }
}

static const uint8_t stab_sk[STAB_COUNT] = {SK_DOMAIN,  SK_URL,  SK_JA3,  SK_JA4,
                                            SK_ADOMAIN, SK_AURL, SK_AJA3, SK_AJA4};

/* A string-table record's parts: indicators live in b->rec with their set,
 * allow entries in b->arena with none. */
static const uint8_t *stab_rec(const struct ioc_builder *b, int t, uint64_t off, uint16_t *len,
                               uint32_t *set)
{
    const uint8_t *r = (t < STAB_ADOMAIN ? b->rec : b->arena) + off;
    memcpy(len, r + 1, 2);
    if (t < STAB_ADOMAIN) {
        memcpy(set, r + 3, 4);
        return r + REC_HDR;
    }
    *set = 0;
    return r + 3;
}

static uint64_t stab_size(uint16_t len, uint32_t set)
{
    return 1 + store_varint_len(len) + store_varint_len(set) + len;
}

/* Puts one kept value into its output group; h is a string's SipHash. */
static void push(struct wstate *w, const uint64_t *nb, uint8_t sk, const uint8_t *k, uint16_t len,
                 uint32_t set, uint64_t off, uint64_t h)
{
    int g = grp_of(sk), t = stab_of(sk);
    uint32_t a4;
    uint16_t port;
    if (g >= 0) {
        memcpy(&a4, k, 4);
        a4 = ntohl(a4);
        struct pair *p = &w->g[g][w->gn[g]++];
        p->v = set;
        if (g == G_V4) {
            p->k = a4;
        } else if (g == G_V4P) {
            memcpy(&port, k + 4, 2);
            p->k = (uint64_t)a4 << 16 | port;
        } else {
            p->k = (uint64_t)k[4] << 32 | a4;
        }
    } else if (t >= 0) {
        struct pair *p = &w->st[t][w->stn[t]++];
        p->k = (h & 0xffffffffu) << 32 | stab_bucket(h, nb[t]);
        p->v = off;
        w->stbytes[t] += stab_size(len, set);
    } else if (sk == SK_V6) {
        memcpy(w->v6[w->nv6].addr, k, 16);
        w->v6[w->nv6++].set = set;
    } else if (sk == SK_V6P) {
        memcpy(w->v6p[w->nv6p].addr, k, 16);
        memcpy(&w->v6p[w->nv6p].port, k + 16, 2);
        w->v6p[w->nv6p++].set = set;
    } else {
        struct net6 *n6 = sk == SK_V6N ? &w->v6n[w->nv6n++] : &w->av6n[w->nav6n++];
        memcpy(n6->addr, k, 16);
        n6->len = k[16];
        n6->set = set;
    }
}

/* Duplicates are rare, but the domain table is merged on a second thread
 * while the other kinds are merged on the first, and merging interns new
 * tuples and sets in the builder: one lock around it. */
static pthread_mutex_t merge_lock = PTHREAD_MUTEX_INITIALIZER;

static int merge_locked(struct ioc_builder *b, uint32_t a, uint32_t c, uint32_t *out)
{
    pthread_mutex_lock(&merge_lock);
    int rc = ioc_sb_merge_sets(b, a, c, out);
    b->merged++;
    pthread_mutex_unlock(&merge_lock);
    return rc;
}

/* Runs fn(a) on a second thread and fn(c) on this one, then waits; without
 * a thread (creation failed), runs both here. */
static void run_pair(void *(*fn)(void *), void *a, void *c)
{
    pthread_t t;
    int threaded = pthread_create(&t, NULL, fn, a) == 0;
    if (!threaded)
        fn(a);
    fn(c);
    if (threaded)
        pthread_join(t, NULL);
}

/* Merges adjacent equal keys of a sorted pair array (v = set). */
static int dedupe_pairs(struct ioc_builder *b, struct pair *a, size_t *n)
{
    size_t o = 0;
    int rc;
    for (size_t i = 0; i < *n; i++) {
        if (o > 0 && a[o - 1].k == a[i].k) {
            uint32_t x;
            if ((rc = merge_locked(b, (uint32_t)a[o - 1].v, (uint32_t)a[i].v, &x)) != KH_OK)
                return rc;
            a[o - 1].v = x;
        } else {
            a[o++] = a[i];
        }
    }
    *n = o;
    return KH_OK;
}

/* The same for an array of structs whose first `keylen` bytes are the key
 * and whose uint32_t set sits at `setoff`. */
static int dedupe_structs(struct ioc_builder *b, uint8_t *a, size_t size, size_t keylen,
                          size_t setoff, size_t *n)
{
    size_t o = 0;
    int rc;
    for (size_t i = 0; i < *n; i++) {
        uint8_t *cur = a + i * size, *last = a + (o - 1) * size;
        if (o > 0 && memcmp(last, cur, keylen) == 0) {
            uint32_t x, y;
            memcpy(&x, last + setoff, 4);
            memcpy(&y, cur + setoff, 4);
            if ((rc = merge_locked(b, x, y, &x)) != KH_OK)
                return rc;
            memcpy(last + setoff, &x, 4);
        } else {
            memmove(a + o * size, cur, size);
            o++;
        }
    }
    *n = o;
    return KH_OK;
}

/* Merges equal strings inside each bucket of a sorted string table (only
 * indicator tables can hold duplicates). */
static int dedupe_stab(struct ioc_builder *b, struct wstate *w, int t)
{
    struct pair *a = w->st[t];
    size_t o = 0, start = 0;
    int rc;
    for (size_t i = 0; i < w->stn[t]; i++) {
        if (o == 0 || (uint32_t)a[o - 1].k != (uint32_t)a[i].k)
            start = o;
        size_t j;
        uint16_t li = 0, lj = 0;
        uint32_t si = 0, sj = 0;
        const uint8_t *ki = NULL, *kj;
        /* records are read only when the low hash half and the bucket agree */
        for (j = start; j < o; j++) {
            if (a[j].k != a[i].k)
                continue;
            if (ki == NULL)
                ki = stab_rec(b, t, a[i].v, &li, &si);
            kj = stab_rec(b, t, a[j].v, &lj, &sj);
            if (li == lj && memcmp(ki, kj, li) == 0)
                break;
        }
        if (j == o) {
            a[o++] = a[i];
            continue;
        }
        uint32_t x;
        if ((rc = merge_locked(b, sj, si, &x)) != KH_OK)
            return rc;
        w->stbytes[t] -= stab_size(lj, sj) + stab_size(li, si);
        w->stbytes[t] += stab_size(lj, x);
        memcpy(b->rec + a[j].v + 3, &x, 4);
    }
    w->stn[t] = o;
    return KH_OK;
}

/* One half of the work of collect(): the domain table (most of a real
 * store) or everything else, so that two cores share a big build. */
struct half {
    struct ioc_builder *b;
    struct wstate *w;
    const uint64_t *nb;
    int domains;
    size_t dropped;
    struct pair *tmp; /* sort space, as large as the largest array sorted */
    size_t *count;    /* 65536 counters */
    int rc;
};

static void *push_half(void *arg)
{
    struct half *h = arg;
    struct ioc_builder *b = h->b;
    size_t si = 0; /* string records so far: the index into b->rhash */
    for (uint64_t off = 0; off < b->rlen;) {
        const uint8_t *rec = b->rec + off;
        uint16_t len;
        uint32_t set;
        memcpy(&len, rec + 1, 2);
        memcpy(&set, rec + 3, 4);
        int str = rec[0] >= SK_DOMAIN && rec[0] <= SK_JA4;
        if ((rec[0] == SK_DOMAIN) == h->domains) {
            if (dropped(b, rec[0], rec + REC_HDR, len))
                h->dropped++;
            else
                push(h->w, h->nb, rec[0], rec + REC_HDR, len, set, off, str ? b->rhash[si] : 0);
        }
        si += str;
        off += REC_HDR + len;
    }
    return NULL;
}

static void *sort_half(void *arg)
{
    struct half *h = arg;
    struct wstate *w = h->w;
    for (int t = 0; t < STAB_COUNT; t++) {
        if ((t == STAB_DOMAIN) != h->domains)
            continue;
        struct pair *s = radix_pairs(w->st[t], h->tmp, w->stn[t], 32, h->count);
        if (s == h->tmp)
            memcpy(w->st[t], h->tmp, w->stn[t] * sizeof(*h->tmp));
        if (t < STAB_ADOMAIN && h->rc == KH_OK)
            h->rc = dedupe_stab(h->b, w, t);
    }
    return NULL;
}

/* Sorts everything kept into wstate, merging duplicates; fills the stats. */
static int collect(struct ioc_builder *b, struct wstate *w, struct ioc_build_stats *st)
{
    size_t *count = NULL, cnt[SK_COUNT];
    struct pair *tmp = NULL;
    uint64_t nb[STAB_COUNT];
    struct half hd = {b, w, NULL, 1, 0, NULL, NULL, KH_OK},
                ho = {b, w, NULL, 0, 0, NULL, NULL, KH_OK};
    pthread_t dom_thread;
    int threaded = 0, r = KH_ENOMEM;
    for (int sk = 0; sk < SK_COUNT; sk++)
        cnt[sk] = sk < SK_AV4N ? b->nrec[sk] : b->nallow_sk[sk];
    for (int sk = 0; sk < SK_COUNT; sk++) {
        int g = grp_of((uint8_t)sk), t = stab_of((uint8_t)sk);
        size_t n = cnt[sk] ? cnt[sk] : 1;
        if (g >= 0 && (w->g[g] = malloc(n * sizeof(struct pair))) == NULL)
            goto out;
        if (t >= 0 && (w->st[t] = malloc(n * sizeof(struct pair))) == NULL)
            goto out;
    }
    if ((w->v6 = malloc((cnt[SK_V6] + 1) * sizeof(*w->v6))) == NULL ||
        (w->v6p = calloc(cnt[SK_V6P] + 1, sizeof(*w->v6p))) == NULL ||
        (w->v6n = malloc((cnt[SK_V6N] + 1) * sizeof(*w->v6n))) == NULL ||
        (w->av6n = malloc((cnt[SK_AV6N] + 1) * sizeof(*w->av6n))) == NULL)
        goto out;
    for (int t = 0; t < STAB_COUNT; t++)
        w->nb[t] = nb[t] = stab_nbuckets(cnt[stab_sk[t]]);
    hd.nb = ho.nb = nb;
    run_pair(push_half, &hd, &ho);
    st->allowlisted = hd.dropped + ho.dropped;
    for (size_t i = 0; i < b->n; i++) {
        const uint8_t *rec = b->arena + b->eoff[i];
        uint16_t len;
        memcpy(&len, rec + 1, 2);
        uint64_t hs = stab_of(rec[0]) >= 0 ? store_siphash(b->key, rec + 3, len) : 0;
        push(w, nb, rec[0], rec + 3, len, 0, b->eoff[i], hs);
    }
    /* sorting, then merging duplicates */
    size_t maxn = 1;
    for (int g = 0; g < G_COUNT; g++)
        maxn = w->gn[g] > maxn ? w->gn[g] : maxn;
    for (int t = 0; t < STAB_COUNT; t++)
        if (t != STAB_DOMAIN)
            maxn = w->stn[t] > maxn ? w->stn[t] : maxn;
    if ((tmp = malloc(maxn * sizeof(*tmp))) == NULL ||
        (count = malloc(65536 * sizeof(*count))) == NULL ||
        (hd.tmp = malloc((w->stn[STAB_DOMAIN] + 1) * sizeof(*tmp))) == NULL ||
        (hd.count = malloc(65536 * sizeof(*count))) == NULL)
        goto out;
    ho.tmp = tmp;
    ho.count = count;
    /* the domain table sorts and merges on a second thread meanwhile */
    threaded = pthread_create(&dom_thread, NULL, sort_half, &hd) == 0;
    if (!threaded)
        sort_half(&hd);
    static const unsigned gbits[G_COUNT] = {32, 48, 48, 48, 0};
    for (int g = 0; g < G_V4L; g++) {
        struct pair *s = radix_pairs(w->g[g], tmp, w->gn[g], gbits[g], count);
        if (s == tmp)
            memcpy(w->g[g], tmp, w->gn[g] * sizeof(*tmp));
        if (g != G_AV4N && (r = dedupe_pairs(b, w->g[g], &w->gn[g])) != KH_OK)
            goto out;
    }
    /* prefixes of /16 and longer go under a /16 directory, longest first */
    size_t nl = 0, ns = 0;
    for (size_t i = 0; i < w->gn[G_V4N]; i++)
        nl += (w->g[G_V4N][i].k >> 32) >= 16;
    if ((w->g[G_V4L] = malloc((nl + 1) * sizeof(struct pair))) == NULL)
        goto out;
    for (size_t i = 0; i < w->gn[G_V4N]; i++) {
        struct pair p = w->g[G_V4N][i];
        uint64_t len = p.k >> 32, a = (uint32_t)p.k;
        if (len >= 16)
            w->g[G_V4L][w->gn[G_V4L]++] =
                (struct pair){(a >> 16) << 40 | (63 - len) << 32 | a, p.v};
        else
            w->g[G_V4N][ns++] = p;
    }
    w->gn[G_V4N] = ns;
    struct pair *sl = radix_pairs(w->g[G_V4L], tmp, w->gn[G_V4L], 64, count);
    if (sl == tmp)
        memcpy(w->g[G_V4L], tmp, w->gn[G_V4L] * sizeof(*tmp));
    sort_half(&ho);
    qsort(w->v6, w->nv6, sizeof(*w->v6), cmp_v6);
    qsort(w->v6p, w->nv6p, sizeof(*w->v6p), cmp_v6p);
    qsort(w->v6n, w->nv6n, sizeof(*w->v6n), cmp_net6);
    qsort(w->av6n, w->nav6n, sizeof(*w->av6n), cmp_net6);
    if ((r = dedupe_structs(b, (uint8_t *)w->v6, sizeof(*w->v6), 16, offsetof(struct store_v6, set),
                            &w->nv6)) != KH_OK ||
        (r = dedupe_structs(b, (uint8_t *)w->v6p, sizeof(*w->v6p), 18,
                            offsetof(struct store_v6p, set), &w->nv6p)) != KH_OK ||
        (r = dedupe_structs(b, (uint8_t *)w->v6n, sizeof(*w->v6n), 20, offsetof(struct net6, set),
                            &w->nv6n)) != KH_OK)
        goto out;
    if (threaded)
        pthread_join(dom_thread, NULL);
    threaded = 0;
    if ((r = hd.rc) != KH_OK || (r = ho.rc) != KH_OK)
        goto out;
    st->counts[IOC_IP] = w->gn[G_V4] + w->nv6;
    st->counts[IOC_CIDR] = w->gn[G_V4N] + w->gn[G_V4L] + w->nv6n;
    st->counts[IOC_IP_PORT] = w->gn[G_V4P] + w->nv6p;
    st->counts[IOC_DOMAIN] = w->stn[STAB_DOMAIN];
    st->counts[IOC_URL] = w->stn[STAB_URL];
    st->counts[IOC_JA3] = w->stn[STAB_JA3];
    st->counts[IOC_JA4] = w->stn[STAB_JA4];
    for (int k = 0; k < IOC_KIND_COUNT; k++)
        st->indicators += st->counts[k];
    st->allow_entries = b->nallow;
    st->merged = b->merged;
    r = KH_OK;
out:
    if (threaded)
        pthread_join(dom_thread, NULL);
    free(tmp);
    free(count);
    free(hd.tmp);
    free(hd.count);
    return r;
}

static uint64_t distinct_sources(const struct ioc_builder *b)
{
    uint32_t *s = malloc((b->ntuples + 1) * 4);
    uint64_t n = 0;
    if (s == NULL)
        return 0;
    for (size_t i = 0; i < b->ntuples; i++)
        s[i] = b->tuples[i].source;
    qsort(s, b->ntuples, 4, ioc_sb_cmp_u32);
    for (size_t i = 0; i < b->ntuples; i++)
        n += i == 0 || s[i] != s[i - 1];
    free(s);
    return n;
}

/* Section sizes: with reserve, upper bounds known before sorting and
 * merging (from the records as added); otherwise the exact sizes. */
static void sizes(const struct ioc_builder *b, const struct wstate *w, int reserve, uint64_t *len)
{
    size_t n4, n4p, n4n, n4l, na4, nv6, nv6p, nv6n, nav6n, stn[STAB_COUNT];
    if (reserve) {
        n4 = b->nrec[SK_V4];
        n4p = b->nrec[SK_V4P];
        n4l = b->nv4long;
        n4n = b->nrec[SK_V4N] - n4l;
        na4 = b->nallow_sk[SK_AV4N];
        nv6 = b->nrec[SK_V6];
        nv6p = b->nrec[SK_V6P];
        nv6n = b->nrec[SK_V6N];
        nav6n = b->nallow_sk[SK_AV6N];
        for (int t = 0; t < STAB_COUNT; t++)
            stn[t] = t < STAB_ADOMAIN ? b->nrec[stab_sk[t]] : b->nallow_sk[stab_sk[t]];
    } else {
        n4 = w->gn[G_V4];
        n4p = w->gn[G_V4P];
        n4n = w->gn[G_V4N];
        n4l = w->gn[G_V4L];
        na4 = w->gn[G_AV4N];
        nv6 = w->nv6;
        nv6p = w->nv6p;
        nv6n = w->nv6n;
        nav6n = w->nav6n;
        for (int t = 0; t < STAB_COUNT; t++)
            stn[t] = w->stn[t];
    }
    memset(len, 0, SEC_COUNT * sizeof(*len));
    len[SEC_POOL] = b->plen;
    len[SEC_TUPLES] = b->ntuples * sizeof(struct store_tuple);
    len[SEC_SETIDX] = (b->nsets + 1) * 4;
    len[SEC_SETS] = b->nsetw * 4;
    len[SEC_V4BITS] = w->big ? V4BITS_BYTES : 0;
    len[SEC_V4LDIR] = w->big && n4l ? 65537 * 4 : 0;
    len[SEC_V4L] = n4l * sizeof(struct store_v4l);
    len[SEC_V4DIR] = w->big && n4 ? 65537 * 4 : 0;
    len[SEC_V4] = n4 * sizeof(struct store_v4);
    len[SEC_V4PDIR] = w->big && n4p ? 65537 * 4 : 0;
    len[SEC_V4P] = n4p * sizeof(struct store_v4p);
    len[SEC_V4NIDX] = n4n ? 34 * 4 : 0;
    len[SEC_V4N] = n4n * sizeof(struct store_v4);
    len[SEC_V6] = nv6 * sizeof(struct store_v6);
    len[SEC_V6P] = nv6p * sizeof(struct store_v6p);
    len[SEC_V6NIDX] = nv6n ? 130 * 4 : 0;
    len[SEC_V6N] = nv6n * sizeof(struct store_v6);
    len[SEC_AV4NIDX] = na4 ? 34 * 4 : 0;
    len[SEC_AV4N] = na4 * 4;
    len[SEC_AV6NIDX] = nav6n ? 130 * 4 : 0;
    len[SEC_AV6N] = nav6n * 16;
    for (int t = 0; t < STAB_COUNT; t++) {
        uint64_t nb = reserve ? stab_nbuckets(stn[t]) : w->nb[t];
        len[SEC_STAB_DIR(t)] = stn[t] ? (nb + 1) * 8 : 0;
        len[SEC_STAB_DATA(t)] = reserve ? b->sbytes[stab_sk[t]] : w->stbytes[t];
    }
}

static uint64_t align8(uint64_t x)
{
    return (x + 7) & ~(uint64_t)7;
}

/* The pool, tuples and sets can grow while duplicates merge: they go last,
 * after the domain data, and are written once their size is known. */
static int late_section(int s)
{
    return s == SEC_POOL || s == SEC_TUPLES || s == SEC_SETIDX || s == SEC_SETS;
}

/* Places every section but the late ones, by their reserved sizes, with
 * the domain data last (its unused reserve is cut off at the end); returns
 * where the late sections may start at the latest. */
static uint64_t place(struct wstate *w, const uint64_t *len)
{
    uint64_t off = align8(sizeof(struct store_header));
    for (int s = 0; s < SEC_COUNT; s++) {
        if (late_section(s) || s == SEC_STAB_DATA(STAB_DOMAIN))
            continue;
        w->h.sec[s].off = off;
        off = align8(off + len[s]);
    }
    w->h.sec[SEC_STAB_DATA(STAB_DOMAIN)].off = off;
    return align8(off + len[SEC_STAB_DATA(STAB_DOMAIN)]);
}

/* Prefix index: idx[l] = first entry of length l (entries sorted by length). */
static void fill_index(uint32_t *idx, unsigned maxlen, const uint8_t *lens, size_t stride, size_t n)
{
    size_t j = 0;
    for (unsigned l = 0; l <= maxlen + 1; l++) {
        while (j < n && lens[j * stride] < l)
            j++;
        idx[l] = (uint32_t)j;
    }
}

static void fill_dir(uint32_t *dir, const struct pair *p, size_t n, unsigned shift)
{
    size_t j = 0;
    for (uint32_t top = 0; top <= 65536; top++) {
        while (j < n && (p[j].k >> shift) < top)
            j++;
        dir[top] = (uint32_t)j;
    }
}

static void set_bits4(uint8_t *bits, uint32_t a, unsigned len)
{
    uint32_t first = a >> 8;
    uint32_t span = len >= 24 ? 1 : (uint32_t)1 << (24 - len);
    for (uint32_t i = 0; i < span; i++)
        bits[(first + i) >> 3] |= (uint8_t)(1u << ((first + i) & 7));
}

/* A section written front to back through a reused buffer and pwrite()
 * rather than through the mapping: a store's pages written through a
 * shared mapping of a fresh file are first zero-filled by the kernel (most
 * of a store is string tables), while whole pages copied in by pwrite()
 * are not. */
struct wbuf {
    int fd, failed;
    uint64_t off; /* where buf[0] goes in the file */
    uint8_t *buf;
    size_t n, cap;
};

#define WBUF_BYTES ((size_t)1 << 20)

static void wb_flush(struct wbuf *wb)
{
    if (wb->n > 0 && !wb->failed) {
        const uint8_t *p = wb->buf;
        size_t left = wb->n;
        uint64_t off = wb->off;
        while (left > 0) {
            ssize_t k = pwrite(wb->fd, p, left, (off_t)off);
            if (k <= 0) {
                wb->failed = errno ? errno : EIO;
                break;
            }
            p += k;
            left -= (size_t)k;
            off += (uint64_t)k;
        }
    }
    wb->off += wb->n;
    wb->n = 0;
}

/* Room for `need` more bytes (need <= cap). */
static uint8_t *wb_room(struct wbuf *wb, size_t need)
{
    if (wb->n + need > wb->cap)
        wb_flush(wb);
    return wb->buf + wb->n;
}

/* Writes string table t: its directory and data, each through its own
 * buffer. A bucket's directory word is the last one put when its entries
 * come (they are sorted by bucket), so it is still in the buffer to take
 * their filter bits. Returns 0 or an errno value. */
static int write_stab(const struct ioc_builder *b, const struct wstate *w, int t, int fd)
{
    struct wbuf d = {fd, 0, w->h.sec[SEC_STAB_DIR(t)].off, NULL, 0, WBUF_BYTES};
    struct wbuf x = {fd, 0, w->h.sec[SEC_STAB_DATA(t)].off, NULL, 0, WBUF_BYTES};
    const uint8_t *arena = t < STAB_ADOMAIN ? b->rec : b->arena;
    uint64_t nb = w->nb[t], pos = 0, next = 0, *dir;
    int r = ENOMEM;
    if ((d.buf = malloc(d.cap)) == NULL || (x.buf = malloc(x.cap)) == NULL)
        goto out;
    dir = (uint64_t *)d.buf;
    for (size_t i = 0; i < w->stn[t]; i++) {
        const struct pair *p = &w->st[t][i];
        if (i + 16 < w->stn[t])
            __builtin_prefetch(arena + w->st[t][i + 16].v);
        uint32_t bucket = (uint32_t)p->k, hl = (uint32_t)(p->k >> 32), set;
        uint16_t len;
        const uint8_t *key = stab_rec(b, t, p->v, &len, &set);
        while (next <= bucket) {
            wb_room(&d, 8);
            dir[d.n / 8] = pos;
            d.n += 8;
            next++;
        }
        dir[d.n / 8 - 1] |= (uint64_t)stab_filter_bits(hl) << 32;
        uint8_t *o = wb_room(&x, 1 + 3 + 5 + (size_t)len);
        size_t k = 0;
        o[k++] = stab_fingerprint(hl);
        k += store_varint_put(o + k, len);
        k += store_varint_put(o + k, set);
        memcpy(o + k, key, len);
        k += len;
        x.n += k;
        pos += k;
    }
    while (next <= nb) {
        wb_room(&d, 8);
        dir[d.n / 8] = pos;
        d.n += 8;
        next++;
    }
    wb_flush(&d);
    wb_flush(&x);
    r = d.failed ? d.failed : x.failed;
out:
    free(d.buf);
    free(x.buf);
    return r;
}

static int fill(const struct ioc_builder *b, struct wstate *w, uint8_t *base, int fd)
{
    int rc = 0;
    const struct store_sec *sec = w->h.sec;
    uint8_t *bits = base + sec[SEC_V4BITS].off;
    if (sec[SEC_V4BITS].len) {
        for (size_t i = 0; i < w->gn[G_V4]; i++)
            set_bits4(bits, (uint32_t)w->g[G_V4][i].k, 32);
        for (size_t i = 0; i < w->gn[G_V4P]; i++)
            set_bits4(bits, (uint32_t)(w->g[G_V4P][i].k >> 16), 32);
        for (size_t i = 0; i < w->gn[G_V4N]; i++)
            set_bits4(bits, (uint32_t)w->g[G_V4N][i].k, (unsigned)(w->g[G_V4N][i].k >> 32));
        for (size_t i = 0; i < w->gn[G_V4L]; i++)
            set_bits4(bits, (uint32_t)w->g[G_V4L][i].k,
                      63 - (unsigned)((w->g[G_V4L][i].k >> 32) & 0xff));
    }
    if (w->gn[G_V4L]) {
        if (sec[SEC_V4LDIR].len)
            fill_dir((uint32_t *)(base + sec[SEC_V4LDIR].off), w->g[G_V4L], w->gn[G_V4L], 40);
        struct store_v4l *v = (struct store_v4l *)(base + sec[SEC_V4L].off);
        for (size_t i = 0; i < w->gn[G_V4L]; i++) {
            const struct pair *p = &w->g[G_V4L][i];
            v[i] = (struct store_v4l){
                (uint32_t)p->k, (uint8_t)(63 - ((p->k >> 32) & 0xff)), {0, 0, 0}, (uint32_t)p->v};
        }
    }
    if (w->gn[G_V4]) {
        if (sec[SEC_V4DIR].len)
            fill_dir((uint32_t *)(base + sec[SEC_V4DIR].off), w->g[G_V4], w->gn[G_V4], 16);
        struct store_v4 *v = (struct store_v4 *)(base + sec[SEC_V4].off);
        for (size_t i = 0; i < w->gn[G_V4]; i++)
            v[i] = (struct store_v4){(uint32_t)w->g[G_V4][i].k, (uint32_t)w->g[G_V4][i].v};
    }
    if (w->gn[G_V4P]) {
        if (sec[SEC_V4PDIR].len)
            fill_dir((uint32_t *)(base + sec[SEC_V4PDIR].off), w->g[G_V4P], w->gn[G_V4P], 32);
        struct store_v4p *v = (struct store_v4p *)(base + sec[SEC_V4P].off);
        for (size_t i = 0; i < w->gn[G_V4P]; i++) {
            const struct pair *p = &w->g[G_V4P][i];
            v[i] = (struct store_v4p){(uint32_t)(p->k >> 16), (uint16_t)p->k, 0, (uint32_t)p->v};
        }
    }
    if (w->gn[G_V4N]) {
        uint32_t *idx = (uint32_t *)(base + sec[SEC_V4NIDX].off);
        struct store_v4 *v = (struct store_v4 *)(base + sec[SEC_V4N].off);
        size_t j = 0;
        for (unsigned l = 0; l <= 33; l++) {
            while (j < w->gn[G_V4N] && (w->g[G_V4N][j].k >> 32) < l)
                j++;
            idx[l] = (uint32_t)j;
        }
        for (size_t i = 0; i < w->gn[G_V4N]; i++)
            v[i] = (struct store_v4){(uint32_t)w->g[G_V4N][i].k, (uint32_t)w->g[G_V4N][i].v};
    }
    if (w->gn[G_AV4N]) {
        uint32_t *idx = (uint32_t *)(base + sec[SEC_AV4NIDX].off);
        uint32_t *v = (uint32_t *)(base + sec[SEC_AV4N].off);
        size_t j = 0;
        for (unsigned l = 0; l <= 33; l++) {
            while (j < w->gn[G_AV4N] && (w->g[G_AV4N][j].k >> 32) < l)
                j++;
            idx[l] = (uint32_t)j;
        }
        for (size_t i = 0; i < w->gn[G_AV4N]; i++)
            v[i] = (uint32_t)w->g[G_AV4N][i].k;
    }
    memcpy(base + sec[SEC_V6].off, w->v6, sec[SEC_V6].len);
    memcpy(base + sec[SEC_V6P].off, w->v6p, sec[SEC_V6P].len);
    if (w->nv6n) {
        fill_index((uint32_t *)(base + sec[SEC_V6NIDX].off), 128, (const uint8_t *)&w->v6n[0].len,
                   sizeof(struct net6), w->nv6n);
        struct store_v6 *v = (struct store_v6 *)(base + sec[SEC_V6N].off);
        for (size_t i = 0; i < w->nv6n; i++) {
            memcpy(v[i].addr, w->v6n[i].addr, 16);
            v[i].set = w->v6n[i].set;
        }
    }
    if (w->nav6n) {
        fill_index((uint32_t *)(base + sec[SEC_AV6NIDX].off), 128, (const uint8_t *)&w->av6n[0].len,
                   sizeof(struct net6), w->nav6n);
        uint8_t *v = base + sec[SEC_AV6N].off;
        for (size_t i = 0; i < w->nav6n; i++)
            memcpy(v + 16 * i, w->av6n[i].addr, 16);
    }
    for (int t = 0; t < STAB_COUNT && rc == 0; t++)
        if (w->stn[t] && t != STAB_DOMAIN)
            rc = write_stab(b, w, t, fd);
    return rc;
}

struct fill_job {
    const struct ioc_builder *b;
    struct wstate *w;
    int fd, rc;
};

static void *fill_domains(void *arg)
{
    struct fill_job *j = arg;
    if (j->w->stn[STAB_DOMAIN])
        j->rc = write_stab(j->b, j->w, STAB_DOMAIN, j->fd);
    return NULL;
}

/* Creates, sizes and maps the temporary file and allocates its blocks, on
 * a second thread while collect() sorts. The mapping is not populated: its
 * pages would be zero-filled first, and most of them are string tables,
 * which write_stab() writes with pwrite() instead. */
struct prep {
    const char *path;
    uint64_t size;
    char *tmp;
    int fd, err_no;
    uint8_t *map;
    const char *what;
};

/* fallocate() without posix_fallocate()'s fallback of writing every block,
 * which would be slower than not allocating at all. */
static int posix_fallocate_quiet(int fd, uint64_t size)
{
    return size > 0 ? fallocate(fd, 0, 0, (off_t)size) : 0;
}

static void *prepare_file(void *arg)
{
    struct prep *p = arg;
    if (asprintf(&p->tmp, "%s.tmpXXXXXX", p->path) < 0) {
        p->tmp = NULL;
        p->err_no = ENOMEM;
        p->what = "name";
        return NULL;
    }
    if ((p->fd = mkstemp(p->tmp)) < 0) {
        p->err_no = errno;
        p->what = "create";
        free(p->tmp);
        p->tmp = NULL;
        return NULL;
    }
    /* Blocks allocated now, beside the sort, are not allocated by the
     * rename: ext4 allocates a delayed-allocation file's blocks when it is
     * renamed over an existing store (auto_da_alloc), which took 0.18 s of
     * a 10 M build on the caller's thread. Where fallocate() is not
     * supported nothing is lost but that. */
    (void)posix_fallocate_quiet(p->fd, p->size);
    if (ftruncate(p->fd, (off_t)p->size) != 0 ||
        (p->map = mmap(NULL, p->size, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0)) ==
            MAP_FAILED) {
        p->err_no = errno;
        p->what = "size";
    }
    return NULL;
}

static int pwrite_all(int fd, const void *data, uint64_t len, uint64_t off)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n <= 0)
            return -1;
        p += n;
        len -= (uint64_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int ioc_builder_write(struct ioc_builder *b, const char *path, struct ioc_build_stats *stats,
                      char *err, size_t errlen)
{
    struct wstate w;
    struct ioc_build_stats st;
    struct prep prep = {path, 0, NULL, -1, 0, MAP_FAILED, NULL};
    uint64_t reserve[SEC_COUNT], actual[SEC_COUNT], total = 0;
    pthread_t prep_thread;
    int prepping = 0, r = KH_ENOMEM;
    memset(&w, 0, sizeof(w));
    memset(&st, 0, sizeof(st));
    if (b == NULL || path == NULL) {
        khx_errf(err, errlen, "ioc store: no builder or path");
        return KH_EINVAL;
    }
    /* The bitmap and the /16 directories cost 2.8 MiB: a small store does
     * without (its lookups search the short arrays whole). */
    w.big = b->nrec[SK_V4] + b->nrec[SK_V4P] + b->nrec[SK_V4N] >= SMALL_V4;
    sizes(b, &w, 1, reserve);
    prep.size = place(&w, reserve);
    prepping = pthread_create(&prep_thread, NULL, prepare_file, &prep) == 0;
    if (!prepping)
        prepare_file(&prep);
    if ((r = collect(b, &w, &st)) != KH_OK) {
        khx_errf(err, errlen, "ioc store: out of memory sorting %zu values", b->nrecords);
        goto out;
    }
    if (prepping)
        pthread_join(prep_thread, NULL);
    prepping = 0;
    r = KH_EIO;
    if (prep.what != NULL) {
        khx_errf(err, errlen, "ioc store: cannot %s %s.tmp* (%llu bytes): %s", prep.what, path,
                 (unsigned long long)prep.size, strerror(prep.err_no));
        goto out;
    }
    sizes(b, &w, 0, actual);
    for (int s = 0; s < SEC_COUNT; s++) {
        if (!late_section(s) && actual[s] > reserve[s]) {
            khx_errf(err, errlen, "ioc store: section %d outgrew its bound", s);
            goto out;
        }
        w.h.sec[s].len = actual[s];
    }
    for (int t = 0; t < STAB_COUNT; t++) {
        w.h.stab_count[t] = w.stn[t];
        if (w.stbytes[t] >= UINT32_MAX) {
            khx_errf(err, errlen, "ioc store: more than 4 GiB of strings in one table");
            r = KH_ELIMIT;
            goto out;
        }
    }
    uint64_t off =
        align8(w.h.sec[SEC_STAB_DATA(STAB_DOMAIN)].off + actual[SEC_STAB_DATA(STAB_DOMAIN)]);
    static const int late[] = {SEC_POOL, SEC_TUPLES, SEC_SETIDX, SEC_SETS};
    for (size_t i = 0; i < 4; i++) {
        w.h.sec[late[i]].off = off;
        off = align8(off + actual[late[i]]);
    }
    total = off;
    memcpy(w.h.magic, STORE_MAGIC, 8);
    w.h.version = STORE_VERSION;
    w.h.endian = STORE_ENDIAN;
    w.h.built = (int64_t)time(NULL);
    memcpy(w.h.key, b->key, 16);
    for (int k = 0; k < IOC_KIND_COUNT; k++)
        w.h.counts[k] = st.counts[k];
    w.h.allow_entries = st.allow_entries;
    w.h.nsources = distinct_sources(b);
    w.h.nsets = b->nsets;
    w.h.ntuples = b->ntuples;
    w.h.file_bytes = total;
    if (total > prep.size)
        (void)fallocate(prep.fd, 0, (off_t)prep.size, (off_t)(total - prep.size));
    memcpy(prep.map, &w.h, sizeof(w.h));
    /* the domain table, most of the bytes, is written on a second thread */
    struct fill_job job = {b, &w, prep.fd, 0};
    pthread_t t;
    int threaded = pthread_create(&t, NULL, fill_domains, &job) == 0;
    if (!threaded)
        fill_domains(&job);
    int frc = fill(b, &w, prep.map, prep.fd);
    if (threaded)
        pthread_join(t, NULL);
    if (frc == 0)
        frc = job.rc;
    int bad = munmap(prep.map, prep.size) != 0;
    prep.map = MAP_FAILED;
    if (frc != 0) {
        khx_errf(err, errlen, "ioc store: writing %s: %s", prep.tmp, strerror(frc));
        goto out;
    }
    /* the gap after the domain data is cut off here: the size shrinks to
     * the exact end (or grows for the late sections) */
    if (bad || ftruncate(prep.fd, (off_t)total) != 0 ||
        pwrite_all(prep.fd, b->pool, b->plen, w.h.sec[SEC_POOL].off) != 0 ||
        pwrite_all(prep.fd, b->tuples, actual[SEC_TUPLES], w.h.sec[SEC_TUPLES].off) != 0 ||
        pwrite_all(prep.fd, b->setidx, actual[SEC_SETIDX], w.h.sec[SEC_SETIDX].off) != 0 ||
        pwrite_all(prep.fd, b->setw, actual[SEC_SETS], w.h.sec[SEC_SETS].off) != 0 ||
        fchmod(prep.fd, 0644) != 0) {
        khx_errf(err, errlen, "ioc store: writing %s: %s", prep.tmp, strerror(errno));
        goto out;
    }
    int fd = prep.fd;
    prep.fd = -1;
    if (close(fd) != 0) {
        khx_errf(err, errlen, "ioc store: writing %s: %s", prep.tmp, strerror(errno));
        goto out;
    }
    if (rename(prep.tmp, path) != 0) {
        khx_errf(err, errlen, "ioc store: cannot rename to %s: %s", path, strerror(errno));
        goto out;
    }
    free(prep.tmp);
    prep.tmp = NULL;
    st.file_bytes = total;
    if (stats != NULL)
        *stats = st;
    r = KH_OK;
out:
    if (prepping)
        pthread_join(prep_thread, NULL);
    if (prep.map != MAP_FAILED)
        munmap(prep.map, prep.size);
    if (prep.fd >= 0)
        close(prep.fd);
    if (prep.tmp != NULL) {
        unlink(prep.tmp);
        free(prep.tmp);
    }
    wstate_free(&w);
    return r;
}
