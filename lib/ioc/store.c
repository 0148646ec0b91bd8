/*
 * The indicator store reader (store.h): maps a file written by
 * store_build.c, checks every section's bounds once at open, and answers
 * lookups by reading the map only (format in store_int.h).
 *
 * The lookups are on the per-packet path, so the common case — a miss — is
 * kept to a cache line or two: an IPv4 address first tests one bit of a
 * 2 MiB bitmap of the /24s any IPv4 indicator touches; a name first reads
 * one directory word whose filter bits say whether its bucket can hold the
 * name at all. What open() does not check (set ids in entries, record
 * lengths inside a bucket) is checked before use at lookup, so a corrupt
 * file can give wrong answers but never a read outside the map.
 *
 * The slot (ioc_slot) publishes the current store in one 64-bit word: the
 * pointer in the low 48 bits and a count of readers holding it in the high
 * 16. A reader takes it with one fetch-add; a swap exchanges the word and
 * hands the readers' count to the old store, which is unmapped when the
 * last of them releases it.
 */
#include "store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <khien/khien.h>

#include "khx.h"
#include "store_int.h"

#define DOMAIN_MAX 253
#define JA4_MAX    128

struct stab {
    const uint64_t *dir;
    uint64_t nb;
    const uint8_t *data;
    uint64_t dlen, count;
};

struct ioc_store {
    const uint8_t *base;
    size_t len;
    int mapped;
    uint8_t key[16];
    int64_t built;
    uint64_t counts[IOC_KIND_COUNT], allow_entries, nsources;
    const char *pool;
    size_t plen;
    const struct store_tuple *tuples;
    size_t ntuples;
    const uint32_t *setidx, *sets;
    size_t nsets, nsetw;
    const uint8_t *v4bits;
    const uint32_t *v4dir, *v4pdir, *v4nidx, *av4nidx, *v6nidx, *av6nidx;
    const struct store_v4 *v4, *v4n;
    const struct store_v4l *v4l;
    const uint32_t *v4ldir;
    size_t nv4l;
    const struct store_v4p *v4p;
    const struct store_v6 *v6, *v6n;
    const struct store_v6p *v6p;
    const uint32_t *av4n;
    const uint8_t *av6n;
    size_t nv4, nv4p, nv4n, nv6, nv6p, nv6n, nav4n, nav6n;
    uint8_t v4lens[33], v6lens[129]; /* prefix lengths in use, longest first */
    unsigned nv4lens, nv6lens;
    struct stab stab[STAB_COUNT];
    atomic_long refs; /* see ioc_slot */
};

/* ------------------------------------------------------------------------ */
/* Opening.                                                                  */
/* ------------------------------------------------------------------------ */

static const char *const sec_names[SEC_COUNT] = {"pool",
                                                 "tuples",
                                                 "set index",
                                                 "sets",
                                                 "ipv4 bitmap",
                                                 "ipv4 directory",
                                                 "ipv4",
                                                 "ipv4:port directory",
                                                 "ipv4:port",
                                                 "ipv4 prefix index",
                                                 "ipv4 prefixes",
                                                 "ipv4 long prefix directory",
                                                 "ipv4 long prefixes",
                                                 "ipv6",
                                                 "ipv6:port",
                                                 "ipv6 prefix index",
                                                 "ipv6 prefixes",
                                                 "allow ipv4 index",
                                                 "allow ipv4",
                                                 "allow ipv6 index",
                                                 "allow ipv6",
                                                 "domain directory",
                                                 "domains",
                                                 "url directory",
                                                 "urls",
                                                 "ja3 directory",
                                                 "ja3",
                                                 "ja4 directory",
                                                 "ja4",
                                                 "allow domain directory",
                                                 "allow domains",
                                                 "allow url directory",
                                                 "allow urls",
                                                 "allow ja3 directory",
                                                 "allow ja3",
                                                 "allow ja4 directory",
                                                 "allow ja4"};

/* Checks a sorted offset index: n+1 words, non-decreasing, last == total. */
static int index_ok(const uint32_t *idx, size_t words, uint64_t total)
{
    if (idx[0] != 0)
        return 0;
    for (size_t i = 1; i < words; i++)
        if (idx[i] < idx[i - 1])
            return 0;
    return idx[words - 1] == total;
}

/* An optional fixed-size index section guarding an array of n entries:
 * absent (small stores leave the /16 directories out), or exactly `words`
 * words that index_ok accepts. */
static int fixed_index(const struct store_header *h, int sec, size_t words, size_t n,
                       const uint8_t *base, const uint32_t **out)
{
    *out = NULL;
    if (h->sec[sec].len == 0)
        return 1;
    if (h->sec[sec].len != words * 4)
        return 0;
    *out = (const uint32_t *)(base + h->sec[sec].off);
    return index_ok(*out, words, n);
}

static int check(struct ioc_store *s, const struct store_header *h, char *err, size_t errlen)
{
    const uint8_t *base = s->base;
    int bad = -1;
#define SEC(i)      (base + h->sec[i].off)
#define NELEM(i, t) (h->sec[i].len / sizeof(t))
#define FAIL(i)                                                                                    \
    do {                                                                                           \
        bad = (i);                                                                                 \
        goto out;                                                                                  \
    } while (0)
    for (int i = 0; i < SEC_COUNT; i++) {
        const struct store_sec *x = &h->sec[i];
        if (x->off % 8 != 0 || x->off < sizeof(*h) || x->off > s->len || x->len > s->len - x->off)
            FAIL(i);
    }
    s->pool = (const char *)SEC(SEC_POOL);
    s->plen = h->sec[SEC_POOL].len;
    if (s->plen > UINT32_MAX || (s->plen > 0 && s->pool[s->plen - 1] != '\0'))
        FAIL(SEC_POOL);
    if (h->sec[SEC_TUPLES].len % sizeof(struct store_tuple) != 0)
        FAIL(SEC_TUPLES);
    s->tuples = (const struct store_tuple *)SEC(SEC_TUPLES);
    s->ntuples = NELEM(SEC_TUPLES, struct store_tuple);
    for (size_t i = 0; i < s->ntuples; i++) {
        const struct store_tuple *t = &s->tuples[i];
        if (t->source >= s->plen || t->category >= s->plen || t->family >= s->plen)
            FAIL(SEC_TUPLES);
    }
    if (h->sec[SEC_SETS].len % 4 != 0 || h->sec[SEC_SETS].len / 4 >= UINT32_MAX)
        FAIL(SEC_SETS);
    s->sets = (const uint32_t *)SEC(SEC_SETS);
    s->nsetw = NELEM(SEC_SETS, uint32_t);
    for (size_t i = 0; i < s->nsetw; i++)
        if (s->sets[i] >= s->ntuples)
            FAIL(SEC_SETS);
    if (h->sec[SEC_SETIDX].len % 4 != 0 || h->sec[SEC_SETIDX].len < 4)
        FAIL(SEC_SETIDX);
    s->setidx = (const uint32_t *)SEC(SEC_SETIDX);
    s->nsets = NELEM(SEC_SETIDX, uint32_t) - 1;
    if (!index_ok(s->setidx, s->nsets + 1, s->nsetw))
        FAIL(SEC_SETIDX);
    /* IPv4 */
    if (h->sec[SEC_V4].len % sizeof(struct store_v4) != 0)
        FAIL(SEC_V4);
    s->v4 = (const struct store_v4 *)SEC(SEC_V4);
    s->nv4 = NELEM(SEC_V4, struct store_v4);
    if (!fixed_index(h, SEC_V4DIR, 65537, s->nv4, base, &s->v4dir))
        FAIL(SEC_V4DIR);
    if (h->sec[SEC_V4P].len % sizeof(struct store_v4p) != 0)
        FAIL(SEC_V4P);
    s->v4p = (const struct store_v4p *)SEC(SEC_V4P);
    s->nv4p = NELEM(SEC_V4P, struct store_v4p);
    if (!fixed_index(h, SEC_V4PDIR, 65537, s->nv4p, base, &s->v4pdir))
        FAIL(SEC_V4PDIR);
    if (h->sec[SEC_V4N].len % sizeof(struct store_v4) != 0)
        FAIL(SEC_V4N);
    s->v4n = (const struct store_v4 *)SEC(SEC_V4N);
    s->nv4n = NELEM(SEC_V4N, struct store_v4);
    if (!fixed_index(h, SEC_V4NIDX, 34, s->nv4n, base, &s->v4nidx) ||
        (s->nv4n != 0 && s->v4nidx == NULL))
        FAIL(SEC_V4NIDX);
    if (h->sec[SEC_V4L].len % sizeof(struct store_v4l) != 0)
        FAIL(SEC_V4L);
    s->v4l = (const struct store_v4l *)SEC(SEC_V4L);
    s->nv4l = NELEM(SEC_V4L, struct store_v4l);
    if (!fixed_index(h, SEC_V4LDIR, 65537, s->nv4l, base, &s->v4ldir))
        FAIL(SEC_V4LDIR);
    if (h->sec[SEC_V4BITS].len != 0 && h->sec[SEC_V4BITS].len != V4BITS_BYTES)
        FAIL(SEC_V4BITS);
    s->v4bits = h->sec[SEC_V4BITS].len ? SEC(SEC_V4BITS) : NULL;
    if (h->sec[SEC_AV4N].len % 4 != 0)
        FAIL(SEC_AV4N);
    s->av4n = (const uint32_t *)SEC(SEC_AV4N);
    s->nav4n = NELEM(SEC_AV4N, uint32_t);
    if (!fixed_index(h, SEC_AV4NIDX, 34, s->nav4n, base, &s->av4nidx) ||
        (s->nav4n != 0 && s->av4nidx == NULL))
        FAIL(SEC_AV4NIDX);
    /* IPv6 */
    if (h->sec[SEC_V6].len % sizeof(struct store_v6) != 0)
        FAIL(SEC_V6);
    s->v6 = (const struct store_v6 *)SEC(SEC_V6);
    s->nv6 = NELEM(SEC_V6, struct store_v6);
    if (h->sec[SEC_V6P].len % sizeof(struct store_v6p) != 0)
        FAIL(SEC_V6P);
    s->v6p = (const struct store_v6p *)SEC(SEC_V6P);
    s->nv6p = NELEM(SEC_V6P, struct store_v6p);
    if (h->sec[SEC_V6N].len % sizeof(struct store_v6) != 0)
        FAIL(SEC_V6N);
    s->v6n = (const struct store_v6 *)SEC(SEC_V6N);
    s->nv6n = NELEM(SEC_V6N, struct store_v6);
    if (!fixed_index(h, SEC_V6NIDX, 130, s->nv6n, base, &s->v6nidx) ||
        (s->nv6n != 0 && s->v6nidx == NULL))
        FAIL(SEC_V6NIDX);
    if (h->sec[SEC_AV6N].len % 16 != 0)
        FAIL(SEC_AV6N);
    s->av6n = SEC(SEC_AV6N);
    s->nav6n = h->sec[SEC_AV6N].len / 16;
    if (!fixed_index(h, SEC_AV6NIDX, 130, s->nav6n, base, &s->av6nidx) ||
        (s->nav6n != 0 && s->av6nidx == NULL))
        FAIL(SEC_AV6NIDX);
    for (int l = 32; l >= 1 && s->v4nidx; l--)
        if (s->v4nidx[l + 1] > s->v4nidx[l])
            s->v4lens[s->nv4lens++] = (uint8_t)l;
    for (int l = 128; l >= 1 && s->v6nidx; l--)
        if (s->v6nidx[l + 1] > s->v6nidx[l])
            s->v6lens[s->nv6lens++] = (uint8_t)l;
    /* string tables */
    for (int t = 0; t < STAB_COUNT; t++) {
        const struct store_sec *d = &h->sec[SEC_STAB_DIR(t)], *x = &h->sec[SEC_STAB_DATA(t)];
        struct stab *st = &s->stab[t];
        if (x->len >= UINT32_MAX)
            FAIL(SEC_STAB_DATA(t));
        if (d->len == 0)
            continue;
        if (d->len % 8 != 0 || d->len < 16)
            FAIL(SEC_STAB_DIR(t));
        st->dir = (const uint64_t *)SEC(SEC_STAB_DIR(t));
        st->nb = d->len / 8 - 1;
        st->data = SEC(SEC_STAB_DATA(t));
        st->dlen = x->len;
        st->count = h->stab_count[t];
        uint32_t prev = 0;
        for (uint64_t b = 0; b <= st->nb; b++) {
            uint32_t o = (uint32_t)st->dir[b];
            if (o < prev || o > x->len || (b == 0 && o != 0))
                FAIL(SEC_STAB_DIR(t));
            prev = o;
        }
    }
#undef SEC
#undef NELEM
#undef FAIL
    return KH_OK;
out:
    khx_errf(err, errlen, "ioc store: section %d (%s) is out of bounds or inconsistent", bad,
             sec_names[bad]);
    return KH_EFORMAT;
}

int ioc_store_open_mem(const void *data, size_t len, struct ioc_store **out, char *err,
                       size_t errlen)
{
    struct store_header h;
    struct ioc_store *s = NULL;
    int r = KH_EFORMAT;
    if (data == NULL || len < sizeof(h)) {
        khx_errf(err, errlen, "ioc store: %zu bytes is shorter than a header", len);
        goto out;
    }
    if ((uintptr_t)data % 8 != 0) {
        khx_errf(err, errlen, "ioc store: data is not 8-byte aligned");
        r = KH_EINVAL;
        goto out;
    }
    memcpy(&h, data, sizeof(h));
    if (memcmp(h.magic, STORE_MAGIC, 8) != 0 || h.version != STORE_VERSION ||
        h.endian != STORE_ENDIAN) {
        khx_errf(err, errlen,
                 "ioc store: not a store of version %d (bad magic, version or "
                 "byte order)",
                 STORE_VERSION);
        goto out;
    }
    if (h.file_bytes != len) {
        khx_errf(err, errlen, "ioc store: truncated or extended (%zu bytes, header says %llu)", len,
                 (unsigned long long)h.file_bytes);
        goto out;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    s->base = data;
    s->len = len;
    memcpy(s->key, h.key, 16);
    s->built = h.built;
    for (int k = 0; k < IOC_KIND_COUNT; k++)
        s->counts[k] = h.counts[k];
    s->allow_entries = h.allow_entries;
    s->nsources = h.nsources;
    if ((r = check(s, &h, err, errlen)) != KH_OK)
        goto out;
    atomic_init(&s->refs, 0);
    *out = s;
    s = NULL;
    r = KH_OK;
out:
    free(s);
    return r;
}

int ioc_store_open(const char *path, struct ioc_store **out, char *err, size_t errlen)
{
    struct stat st;
    void *map = MAP_FAILED;
    size_t len = 0;
    int fd = -1, r = KH_EIO;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
        khx_errf(err, errlen, "ioc store: cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    len = (size_t)st.st_size;
    if (len < sizeof(struct store_header)) {
        khx_errf(err, errlen, "ioc store: %s: %zu bytes is shorter than a header", path, len);
        r = KH_EFORMAT;
        goto out;
    }
    if ((map = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0)) == MAP_FAILED) {
        khx_errf(err, errlen, "ioc store: cannot map %s: %s", path, strerror(errno));
        goto out;
    }
    if ((r = ioc_store_open_mem(map, len, out, err, errlen)) != KH_OK)
        goto out;
    (*out)->mapped = 1;
    map = MAP_FAILED;
out:
    if (map != MAP_FAILED)
        munmap(map, len);
    if (fd >= 0)
        close(fd);
    return r;
}

void ioc_store_close(struct ioc_store *s)
{
    if (s == NULL)
        return;
    if (s->mapped)
        munmap((void *)s->base, s->len);
    free(s);
}

void ioc_store_info(const struct ioc_store *s, struct ioc_store_info *info)
{
    memset(info, 0, sizeof(*info));
    if (s == NULL)
        return;
    for (int k = 0; k < IOC_KIND_COUNT; k++)
        info->counts[k] = (size_t)s->counts[k];
    info->allow_entries = (size_t)s->allow_entries;
    info->sources = (size_t)s->nsources;
    info->file_bytes = s->len;
    info->built = s->built;
}

/* ------------------------------------------------------------------------ */
/* Sources and hits.                                                         */
/* ------------------------------------------------------------------------ */

static int tuple_live(const struct store_tuple *t, int64_t now)
{
    return t->expires == 0 || t->expires > now;
}

/* Whether set `set` has a source not expired at `now`. */
static int set_live(const struct ioc_store *s, uint32_t set, int64_t now)
{
    if (set >= s->nsets)
        return 0;
    for (uint32_t i = s->setidx[set]; i < s->setidx[set + 1]; i++)
        if (tuple_live(&s->tuples[s->sets[i]], now))
            return 1;
    return 0;
}

static void fill_sources(const struct ioc_store *s, uint32_t set, int64_t now, struct ioc_hit *h)
{
    h->nsources = 0;
    for (uint32_t i = s->setidx[set]; i < s->setidx[set + 1]; i++) {
        const struct store_tuple *t = &s->tuples[s->sets[i]];
        if (!tuple_live(t, now) || h->nsources == IOC_HIT_MAX_SOURCES)
            continue;
        struct ioc_source_ref *ref = &h->sources[h->nsources++];
        ref->source = s->pool + t->source;
        ref->category = s->pool + t->category;
        ref->family = s->pool + t->family;
        ref->confidence = (uint8_t)(t->confidence > 100 ? 100 : t->confidence);
        ref->expires = t->expires;
    }
}

/* ------------------------------------------------------------------------ */
/* String tables.                                                            */
/* ------------------------------------------------------------------------ */

/* Finds a key of hash h; returns its set id, or UINT32_MAX. */
static uint32_t stab_find_h(const struct ioc_store *s, int t, uint64_t h, const void *key,
                            size_t len)
{
    const struct stab *st = &s->stab[t];
    if (st->nb == 0)
        return UINT32_MAX;
    uint64_t b = stab_bucket(h, st->nb);
    uint64_t d = st->dir[b];
    uint32_t want = stab_filter_bits(h);
    if (((uint32_t)(d >> 32) & want) != want)
        return UINT32_MAX;
    uint32_t start = (uint32_t)d, end = (uint32_t)st->dir[b + 1];
    if (start > end || end > st->dlen)
        return UINT32_MAX;
    const uint8_t *p = st->data + start, *e = st->data + end;
    uint8_t fp = stab_fingerprint(h);
    while (p < e) {
        uint8_t f = *p++;
        uint32_t rlen, set;
        size_t n = store_varint_get(p, e, &rlen);
        if (n == 0)
            break;
        p += n;
        if ((n = store_varint_get(p, e, &set)) == 0)
            break;
        p += n;
        if (rlen > (size_t)(e - p))
            break;
        if (f == fp && rlen == len && memcmp(p, key, len) == 0)
            return set;
        p += rlen;
    }
    return UINT32_MAX;
}

static uint32_t stab_find(const struct ioc_store *s, int t, const void *key, size_t len)
{
    if (s->stab[t].nb == 0)
        return UINT32_MAX;
    return stab_find_h(s, t, store_siphash(s->key, key, len), key, len);
}

static int finish(const struct ioc_store *s, int kind, uint32_t set, const char *value, size_t vlen,
                  int allowed, int64_t now, struct ioc_hit *h)
{
    if (h != NULL) {
        h->kind = kind;
        if (vlen > IOC_VALUE_MAX)
            vlen = IOC_VALUE_MAX;
        memcpy(h->value, value, vlen);
        h->value[vlen] = '\0';
        fill_sources(s, set, now, h);
    }
    return allowed ? IOC_ALLOWED : IOC_MATCH;
}

/* Lowercases a name into buf without a trailing dot; returns its length,
 * or 0 when it is empty or too long. */
static size_t norm_domain(const char *name, size_t len, char *buf)
{
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > DOMAIN_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        buf[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    return len;
}

/* Walks name and its parents (two labels or more) in table t; returns the
 * offset of the first suffix found with a live set (set in *set), or -1. */
static long walk_suffixes(const struct ioc_store *s, int t, const char *d, size_t len, int64_t now,
                          uint32_t *set, int need_live)
{
    enum { AHEAD = 8 };
    const struct stab *st = &s->stab[t];
    size_t off = 0, offs[AHEAD];
    uint64_t hs[AHEAD];
    if (st->nb == 0)
        return -1;
    for (;;) {
        /* Hash a few suffixes and prefetch their directory words first, so
         * the memory reads of one name overlap instead of queueing. */
        unsigned n = 0;
        while (n < AHEAD) {
            const char *dot = memchr(d + off, '.', len - off);
            if (dot == NULL)
                break; /* one label left: no indicator is a bare top-level name */
            offs[n] = off;
            hs[n] = store_siphash(s->key, d + off, len - off);
            __builtin_prefetch(&st->dir[stab_bucket(hs[n], st->nb)]);
            n++;
            off = (size_t)(dot - d) + 1;
        }
        for (unsigned k = 0; k < n; k++) {
            uint32_t x = stab_find_h(s, t, hs[k], d + offs[k], len - offs[k]);
            if (x != UINT32_MAX && (!need_live || set_live(s, x, now))) {
                *set = x;
                return (long)offs[k];
            }
        }
        if (n < AHEAD)
            return -1;
    }
}

int ioc_store_match_domain(const struct ioc_store *s, const char *name, size_t len, int64_t now,
                           struct ioc_hit *h)
{
    char buf[DOMAIN_MAX + 1];
    uint32_t set, aset;
    if (s == NULL || name == NULL || (len = norm_domain(name, len, buf)) == 0)
        return IOC_MISS;
    long off = walk_suffixes(s, STAB_DOMAIN, buf, len, now, &set, 1);
    if (off < 0)
        return IOC_MISS;
    int allowed = walk_suffixes(s, STAB_ADOMAIN, buf, len, now, &aset, 0) >= 0;
    return finish(s, IOC_DOMAIN, set, buf + off, len - (size_t)off, allowed, now, h);
}

int ioc_store_match_url(const struct ioc_store *s, const char *url, size_t len, int64_t now,
                        struct ioc_hit *h)
{
    char buf[IOC_VALUE_MAX + 1];
    uint32_t set;
    size_t n = 0, host_end, qpos;
    if (s == NULL || url == NULL || s->stab[STAB_URL].nb == 0)
        return IOC_MISS;
    for (size_t i = 0; i + 2 < len && i < 16; i++)
        if (url[i] == ':' && url[i + 1] == '/' && url[i + 2] == '/') {
            url += i + 3;
            len -= i + 3;
            break;
        }
    const char *hash = memchr(url, '#', len);
    if (hash != NULL)
        len = (size_t)(hash - url);
    if (len == 0 || len > IOC_VALUE_MAX)
        return IOC_MISS;
    for (host_end = 0; host_end < len && url[host_end] != '/' && url[host_end] != '?'; host_end++)
        buf[host_end] = url[host_end] >= 'A' && url[host_end] <= 'Z'
                            ? (char)(url[host_end] - 'A' + 'a')
                            : url[host_end];
    memcpy(buf + host_end, url + host_end, len - host_end);
    n = len;
    const char *q = memchr(buf, '?', n);
    qpos = q ? (size_t)(q - buf) : n;
    /* candidates: exact, without the query, then prefixes at each '/' */
    size_t found = 0;
    uint32_t x = stab_find(s, STAB_URL, buf, n);
    if (x != UINT32_MAX && set_live(s, x, now))
        found = n;
    if (!found && qpos < n) {
        x = stab_find(s, STAB_URL, buf, qpos);
        if (x != UINT32_MAX && set_live(s, x, now))
            found = qpos;
    }
    for (size_t i = qpos; !found && i > host_end; i--) {
        if (buf[i - 1] != '/')
            continue;
        /* "host/a/" then "host/a" */
        x = stab_find(s, STAB_URL, buf, i);
        if (x != UINT32_MAX && set_live(s, x, now)) {
            found = i;
            break;
        }
        if (i - 1 > host_end) {
            x = stab_find(s, STAB_URL, buf, i - 1);
            if (x != UINT32_MAX && set_live(s, x, now))
                found = i - 1;
        }
    }
    /* A listed path without a host ("/gate.php", as maltrail and MISP "uri"
     * list them) matches that path on any host: the path with its query,
     * then without it. */
    size_t path_off = 0;
    if (!found && host_end < n && buf[host_end] == '/') {
        x = stab_find(s, STAB_URL, buf + host_end, n - host_end);
        if (x != UINT32_MAX && set_live(s, x, now)) {
            found = n - host_end;
            path_off = host_end;
        } else if (qpos < n) {
            x = stab_find(s, STAB_URL, buf + host_end, qpos - host_end);
            if (x != UINT32_MAX && set_live(s, x, now)) {
                found = qpos - host_end;
                path_off = host_end;
            }
        }
    }
    if (!found)
        return IOC_MISS;
    set = x;
    if (path_off > 0) {
        int pallowed = stab_find(s, STAB_AURL, buf, n) != UINT32_MAX;
        return finish(s, IOC_URL, set, buf + path_off, found, pallowed, now, h);
    }
    int allowed = stab_find(s, STAB_AURL, buf, n) != UINT32_MAX ||
                  stab_find(s, STAB_AURL, buf, qpos) != UINT32_MAX;
    return finish(s, IOC_URL, set, buf, found, allowed, now, h);
}

int ioc_store_match_fingerprint(const struct ioc_store *s, int kind, const char *fp, size_t len,
                                int64_t now, struct ioc_hit *h)
{
    uint8_t bin[16];
    char hex[33];
    uint32_t set;
    if (s == NULL || fp == NULL)
        return IOC_MISS;
    if (kind == IOC_JA3) {
        if (len != 32 || s->stab[STAB_JA3].nb == 0 || khx_hex_decode(fp, 16, bin) != 0)
            return IOC_MISS;
        set = stab_find(s, STAB_JA3, bin, 16);
        if (set == UINT32_MAX || !set_live(s, set, now))
            return IOC_MISS;
        khx_hex_encode(bin, 16, hex);
        return finish(s, IOC_JA3, set, hex, 32, stab_find(s, STAB_AJA3, bin, 16) != UINT32_MAX, now,
                      h);
    }
    if (kind != IOC_JA4 || len == 0 || len > JA4_MAX)
        return IOC_MISS;
    set = stab_find(s, STAB_JA4, fp, len);
    if (set == UINT32_MAX || !set_live(s, set, now))
        return IOC_MISS;
    return finish(s, IOC_JA4, set, fp, len, stab_find(s, STAB_AJA4, fp, len) != UINT32_MAX, now, h);
}

/* ------------------------------------------------------------------------ */
/* Addresses.                                                                */
/* ------------------------------------------------------------------------ */

static uint32_t mask4(unsigned len)
{
    return len == 0 ? 0 : ~(uint32_t)0 << (32 - len);
}

static void mask6(uint8_t *a, unsigned len)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned bit = i * 8;
        if (bit >= len)
            a[i] = 0;
        else if (bit + 8 > len)
            a[i] &= (uint8_t)(0xff << (8 - (len - bit)));
    }
}

/* Binary searches of a sorted range [lo, hi) for a key; they return the
 * entry's set or UINT32_MAX. They read v[lo] at the end, so they are only
 * called through search*() below, which check that the range is non-empty
 * and that its last key is not below the one sought (then lo < hi). */
static uint32_t find4(const struct store_v4 *v, size_t lo, size_t hi, uint32_t a)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].addr < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return v[lo].addr == a ? v[lo].set : UINT32_MAX;
}

static uint32_t find4p(const struct store_v4p *v, size_t lo, size_t hi, uint32_t a, uint16_t port)
{
    uint64_t k = (uint64_t)a << 16 | port;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (((uint64_t)v[mid].addr << 16 | v[mid].port) < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return v[lo].addr == a && v[lo].port == port ? v[lo].set : UINT32_MAX;
}

static uint32_t find6(const struct store_v6 *v, size_t lo, size_t hi, const uint8_t *a)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(v[mid].addr, a, 16) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return memcmp(v[lo].addr, a, 16) == 0 ? v[lo].set : UINT32_MAX;
}

static uint32_t search4(const struct store_v4 *v, size_t lo, size_t hi, uint32_t a)
{
    if (lo >= hi || v[hi - 1].addr < a)
        return UINT32_MAX;
    return find4(v, lo, hi, a);
}

static uint32_t search4p(const struct store_v4p *v, size_t lo, size_t hi, uint32_t a, uint16_t p)
{
    if (lo >= hi || ((uint64_t)v[hi - 1].addr << 16 | v[hi - 1].port) < ((uint64_t)a << 16 | p))
        return UINT32_MAX;
    return find4p(v, lo, hi, a, p);
}

static uint32_t search6(const struct store_v6 *v, size_t lo, size_t hi, const uint8_t *a)
{
    if (lo >= hi || memcmp(v[hi - 1].addr, a, 16) < 0)
        return UINT32_MAX;
    return find6(v, lo, hi, a);
}

static uint32_t search6p(const struct store_v6p *v, size_t n, const uint8_t *a, uint16_t port)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(v[mid].addr, a, 16);
        if (c < 0 || (c == 0 && v[mid].port < port))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && memcmp(v[lo].addr, a, 16) == 0 && v[lo].port == port ? v[lo].set : UINT32_MAX;
}

/* The longest /16../31 prefix holding a: the entries of a's /16 come in
 * groups of one length, longest first, each sorted by address, so each
 * group is two binary searches (its end, then the address) and a hostile
 * list cannot make one /16 a long scan. Returns the set (plen set) or
 * UINT32_MAX. */
static uint32_t find4_long(const struct ioc_store *s, uint32_t a, int64_t now, unsigned *plen)
{
    const struct store_v4l *v = s->v4l;
    size_t i, hi;
    if (s->v4ldir != NULL) {
        i = s->v4ldir[a >> 16];
        hi = s->v4ldir[(a >> 16) + 1];
    } else {
        /* a small store without the directory: the /16's range by search */
        size_t lo = 0, up = s->nv4l;
        while (lo < up) {
            size_t mid = lo + (up - lo) / 2;
            if ((v[mid].addr >> 16) < (a >> 16))
                lo = mid + 1;
            else
                up = mid;
        }
        i = lo;
        for (up = s->nv4l; lo < up;) {
            size_t mid = lo + (up - lo) / 2;
            if ((v[mid].addr >> 16) <= (a >> 16))
                lo = mid + 1;
            else
                up = mid;
        }
        hi = lo;
    }
    while (i < hi) {
        unsigned l = v[i].len;
        size_t lo = i + 1, end = hi;
        while (lo < end) {
            size_t mid = lo + (end - lo) / 2;
            if (v[mid].len >= l)
                lo = mid + 1;
            else
                end = mid;
        }
        end = lo; /* the group is [i, end) */
        if (l >= 16 && l <= 32) {
            uint32_t m = a & mask4(l);
            size_t x = i, y = end;
            while (x < y) {
                size_t mid = x + (y - x) / 2;
                if (v[mid].addr < m)
                    x = mid + 1;
                else
                    y = mid;
            }
            if (x < end && v[x].addr == m && set_live(s, v[x].set, now)) {
                *plen = l;
                return v[x].set;
            }
        }
        i = end;
    }
    return UINT32_MAX;
}

static int allowed4(const struct ioc_store *s, uint32_t a)
{
    if (s->av4nidx == NULL)
        return 0;
    for (unsigned l = 1; l <= 32; l++) {
        size_t lo = s->av4nidx[l], hi = s->av4nidx[l + 1];
        uint32_t m = a & mask4(l);
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (s->av4n[mid] < m)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < s->av4nidx[l + 1] && s->av4n[lo] == m)
            return 1;
    }
    return 0;
}

static int allowed6(const struct ioc_store *s, const uint8_t *a)
{
    if (s->av6nidx == NULL)
        return 0;
    for (unsigned l = 1; l <= 128; l++) {
        size_t lo = s->av6nidx[l], hi = s->av6nidx[l + 1];
        uint8_t m[16];
        if (lo == hi)
            continue;
        memcpy(m, a, 16);
        mask6(m, l);
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (memcmp(s->av6n + 16 * mid, m, 16) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < s->av6nidx[l + 1] && memcmp(s->av6n + 16 * lo, m, 16) == 0)
            return 1;
    }
    return 0;
}

/* Writes v in decimal; returns the digits written (at most 5 here). */
static size_t put_uint(char *out, unsigned v)
{
    char tmp[10];
    size_t n = 0, k = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        out[k++] = tmp[--n];
    return k;
}

static int match4(const struct ioc_store *s, uint32_t a, uint16_t port, int64_t now,
                  struct ioc_hit *h)
{
    uint32_t set = UINT32_MAX;
    int kind = -1;
    unsigned plen = 32;
    if (s->v4bits != NULL && !(s->v4bits[a >> 11] >> ((a >> 8) & 7) & 1))
        return IOC_MISS;
    if (port != 0 && s->nv4p != 0) {
        size_t lo = s->v4pdir ? s->v4pdir[a >> 16] : 0;
        size_t hi = s->v4pdir ? s->v4pdir[(a >> 16) + 1] : s->nv4p;
        set = search4p(s->v4p, lo, hi, a, port);
        if (set != UINT32_MAX && set_live(s, set, now))
            kind = IOC_IP_PORT;
    }
    if (kind < 0 && s->nv4 != 0) {
        size_t lo = s->v4dir ? s->v4dir[a >> 16] : 0;
        size_t hi = s->v4dir ? s->v4dir[(a >> 16) + 1] : s->nv4;
        set = search4(s->v4, lo, hi, a);
        if (set != UINT32_MAX && set_live(s, set, now))
            kind = IOC_IP;
    }
    if (kind < 0 && s->nv4l != 0) {
        set = find4_long(s, a, now, &plen);
        if (set != UINT32_MAX)
            kind = IOC_CIDR;
    }
    for (unsigned i = 0; kind < 0 && i < s->nv4lens; i++) {
        unsigned l = s->v4lens[i];
        set = search4(s->v4n, s->v4nidx[l], s->v4nidx[l + 1], a & mask4(l));
        if (set != UINT32_MAX && set_live(s, set, now)) {
            kind = IOC_CIDR;
            plen = l;
        }
    }
    if (kind < 0)
        return IOC_MISS;
    int allowed = allowed4(s, a);
    if (h == NULL)
        return allowed ? IOC_ALLOWED : IOC_MATCH;
    /* formatted by hand: snprintf and inet_ntop would double a hit's cost */
    char text[INET_ADDRSTRLEN + 8];
    uint32_t m = a & mask4(plen);
    size_t n = 0;
    for (int i = 3; i >= 0; i--) {
        n += put_uint(text + n, m >> (8 * i) & 0xff);
        if (i > 0)
            text[n++] = '.';
    }
    if (kind == IOC_IP_PORT) {
        text[n++] = ':';
        n += put_uint(text + n, port);
    } else if (kind == IOC_CIDR) {
        text[n++] = '/';
        n += put_uint(text + n, plen);
    }
    return finish(s, kind, set, text, n, allowed, now, h);
}

static int match6(const struct ioc_store *s, const uint8_t *a, uint16_t port, int64_t now,
                  struct ioc_hit *h)
{
    uint32_t set = UINT32_MAX;
    int kind = -1;
    unsigned plen = 128;
    uint8_t m[16];
    if (port != 0 && s->nv6p != 0) {
        set = search6p(s->v6p, s->nv6p, a, port);
        if (set != UINT32_MAX && set_live(s, set, now))
            kind = IOC_IP_PORT;
    }
    if (kind < 0 && s->nv6 != 0) {
        set = search6(s->v6, 0, s->nv6, a);
        if (set != UINT32_MAX && set_live(s, set, now))
            kind = IOC_IP;
    }
    for (unsigned i = 0; kind < 0 && i < s->nv6lens; i++) {
        unsigned l = s->v6lens[i];
        memcpy(m, a, 16);
        mask6(m, l);
        set = search6(s->v6n, s->v6nidx[l], s->v6nidx[l + 1], m);
        if (set != UINT32_MAX && set_live(s, set, now)) {
            kind = IOC_CIDR;
            plen = l;
        }
    }
    if (kind < 0)
        return IOC_MISS;
    int allowed = allowed6(s, a);
    if (h == NULL)
        return allowed ? IOC_ALLOWED : IOC_MATCH;
    char text[INET6_ADDRSTRLEN + 16];
    memcpy(m, a, 16);
    mask6(m, plen);
    size_t n = 0;
    if (kind == IOC_IP_PORT)
        text[n++] = '[';
    inet_ntop(AF_INET6, m, text + n, sizeof(text) - n);
    n = strlen(text);
    if (kind == IOC_IP_PORT)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "]:%u", port);
    else if (kind == IOC_CIDR)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "/%u", plen);
    return finish(s, kind, set, text, n, allowed, now, h);
}

int ioc_store_match_addr(const struct ioc_store *s, int family, const void *addr, uint16_t port,
                         int64_t now, struct ioc_hit *h)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    uint32_t a;
    if (s == NULL || addr == NULL)
        return IOC_MISS;
    if (family == AF_INET6 && memcmp(addr, mapped, 12) == 0) {
        family = AF_INET;
        addr = (const uint8_t *)addr + 12;
    }
    if (family == AF_INET) {
        memcpy(&a, addr, 4);
        return match4(s, ntohl(a), port, now, h);
    }
    if (family == AF_INET6)
        return match6(s, addr, port, now, h);
    return IOC_MISS;
}

/* ------------------------------------------------------------------------ */
/* The slot.                                                                 */
/* ------------------------------------------------------------------------ */

#define SLOT_PTR_MASK ((UINT64_C(1) << 48) - 1)
#define SLOT_ONE      (UINT64_C(1) << 48)

struct ioc_slot {
    _Atomic uint64_t word; /* store pointer | readers holding it << 48 */
};

int ioc_slot_new(struct ioc_slot **out)
{
    struct ioc_slot *slot = calloc(1, sizeof(*slot));
    if (slot == NULL)
        return KH_ENOMEM;
    atomic_init(&slot->word, 0);
    *out = slot;
    return KH_OK;
}

static void store_unref(struct ioc_store *s, long n)
{
    if (atomic_fetch_add(&s->refs, n) + n == 0)
        ioc_store_close(s);
}

void ioc_slot_swap(struct ioc_slot *slot, struct ioc_store *s)
{
    /* User-space pointers fit in 48 bits on the 64-bit targets we build
     * for; a store that did not would corrupt the reader count. */
    if (s != NULL && ((uintptr_t)s & ~SLOT_PTR_MASK) != 0)
        abort();
    uint64_t old = atomic_exchange(&slot->word, (uint64_t)(uintptr_t)s);
    struct ioc_store *prev = (struct ioc_store *)(uintptr_t)(old & SLOT_PTR_MASK);
    if (prev != NULL)
        store_unref(prev, (long)(old >> 48));
}

const struct ioc_store *ioc_slot_acquire(struct ioc_slot *slot)
{
    uint64_t w = atomic_fetch_add(&slot->word, SLOT_ONE);
    const struct ioc_store *s = (const struct ioc_store *)(uintptr_t)(w & SLOT_PTR_MASK);
    if (s == NULL)
        ioc_slot_release(slot, NULL);
    return s;
}

void ioc_slot_release(struct ioc_slot *slot, const struct ioc_store *s)
{
    uint64_t w = atomic_load(&slot->word);
    /* While the slot still holds s, give the reference back there. */
    while ((w & SLOT_PTR_MASK) == (uint64_t)(uintptr_t)s && (w >> 48) != 0)
        if (atomic_compare_exchange_weak(&slot->word, &w, w - SLOT_ONE))
            return;
    /* Swapped out meanwhile: the swap moved our count onto the store. */
    if (s != NULL)
        store_unref((struct ioc_store *)(uintptr_t)s, -1);
}

void ioc_slot_free(struct ioc_slot *slot)
{
    if (slot == NULL)
        return;
    ioc_slot_swap(slot, NULL);
    free(slot);
}
