/*
 * Compact sorted hash tables; see hashtab.h for the layout and why.
 */
#include "hashtab.h"

#include <stdlib.h>
#include <string.h>

#define BLOOM_BITS_PER_RECORD 10
#define BLOOM_PROBES          3

/* Digests are uniformly distributed, so their bytes serve as the two hash
 * values of double hashing. Every digest is at least 16 bytes. */
static void bloom_keys(const uint8_t *digest, uint64_t *h1, uint64_t *h2)
{
    memcpy(h1, digest, 8);
    memcpy(h2, digest + 8, 8);
    *h2 |= 1; /* odd, so the probes differ */
}

static int cmp_rec(const void *a, const void *b)
{
    const struct khx_hashrec *x = a, *y = b;
    if (x->size != y->size)
        return x->size < y->size ? -1 : 1;
    return memcmp(x->digest, y->digest, sizeof(x->digest));
}

int khx_hashtab_write(struct khx_hashrec *recs, size_t n, unsigned dlen, int sized,
                      struct khx_buf *out)
{
    int r;
    if (dlen == 0 || dlen > 32)
        return KH_EINVAL;
    if (!sized)
        for (size_t i = 0; i < n; i++)
            recs[i].size = 0;
    qsort(recs, n, sizeof(*recs), cmp_rec);
    size_t nsizes = 0;
    for (size_t i = 0; sized && i < n; i++)
        nsizes += i == 0 || recs[i].size != recs[i - 1].size;
    uint64_t words = 1;
    while (words * 64 < (uint64_t)n * BLOOM_BITS_PER_RECORD)
        words *= 2;
    struct kdb_hashtab h = {dlen, 0, n, nsizes, words};
    if ((r = khx_buf_align(out, 8)) != 0 || (r = khx_buf_append(out, &h, sizeof(h))) != 0)
        return r;
    for (size_t i = 0; sized && i < n; i++)
        if ((i == 0 || recs[i].size != recs[i - 1].size) &&
            (r = khx_buf_append_u64(out, recs[i].size)) != 0)
            return r;
    for (size_t i = 0; sized && i < n; i++)
        if ((i == 0 || recs[i].size != recs[i - 1].size) && (r = khx_buf_append_u64(out, i)) != 0)
            return r;
    if (sized && (r = khx_buf_append_u64(out, n)) != 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if ((r = khx_buf_append(out, recs[i].digest, dlen)) != 0)
            return r;
    if ((r = khx_buf_align(out, 8)) != 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if ((r = khx_buf_append_u32(out, recs[i].sig)) != 0)
            return r;
    if ((r = khx_buf_align(out, 8)) != 0)
        return r;
    uint64_t *bloom = calloc(words, sizeof(uint64_t));
    if (bloom == NULL)
        return KH_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uint64_t h1, h2;
        bloom_keys(recs[i].digest, &h1, &h2);
        for (int j = 0; j < BLOOM_PROBES; j++) {
            uint64_t bit = (h1 + (uint64_t)j * h2) & (words * 64 - 1);
            bloom[bit / 64] |= (uint64_t)1 << (bit % 64);
        }
    }
    for (uint64_t i = 0; i < words && r == 0; i++)
        r = khx_buf_append_u64(out, bloom[i]);
    free(bloom);
    return r;
}

int khx_hashtab_attach(const uint8_t *p, size_t len, unsigned dlen, int sized,
                       struct khx_hashtab *t)
{
    memset(t, 0, sizeof(*t));
    if (len == 0)
        return KH_OK;
    struct kdb_hashtab h;
    if (len < sizeof(h) || ((uintptr_t)p & 7) != 0)
        return KH_EFORMAT;
    memcpy(&h, p, sizeof(h));
    if (h.dlen != dlen || (!sized && h.nsizes != 0) || (sized && h.records > 0 && h.nsizes == 0))
        return KH_EFORMAT;
    /* Every count is bounded by the section length before it is multiplied. */
    uint64_t room = len - sizeof(h);
    if (h.records > room / (dlen + 4) || h.nsizes > room / 16 || h.nsizes > h.records ||
        h.bloom_words == 0 || (h.bloom_words & (h.bloom_words - 1)) != 0 ||
        h.bloom_words > room / 8)
        return KH_EFORMAT;
    uint64_t idx = sized ? 16 * h.nsizes + 8 : 0;
    uint64_t dig = h.records * dlen;
    uint64_t sigs_end = sizeof(h) + idx + ((dig + 7) & ~(uint64_t)7) + 4 * h.records;
    uint64_t bloom_at = (sigs_end + 7) & ~(uint64_t)7;
    if (bloom_at > len || 8 * h.bloom_words > len - bloom_at)
        return KH_EFORMAT;
    t->dlen = dlen;
    t->n = (size_t)h.records;
    t->nsizes = (size_t)h.nsizes;
    const uint8_t *q = p + sizeof(h);
    if (sized) {
        t->sizes = (const uint64_t *)q;
        t->first = (const uint64_t *)(q + 8 * h.nsizes);
        q += idx;
    }
    t->digests = q;
    t->sigs = (const uint32_t *)(q + ((dig + 7) & ~(uint64_t)7));
    t->bloom = (const uint64_t *)(p + bloom_at);
    t->bloom_mask = h.bloom_words * 64 - 1;
    return KH_OK;
}

/* Index of `size` in sizes[], or -1. */
static int64_t size_index(const struct khx_hashtab *t, uint64_t size)
{
    size_t lo = 0, hi = t->nsizes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->sizes[mid] < size)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->nsizes && t->sizes[lo] == size ? (int64_t)lo : -1;
}

int khx_hashtab_has_size(const struct khx_hashtab *t, uint64_t size)
{
    if (t->n == 0)
        return 0;
    return t->nsizes == 0 ? 1 : size_index(t, size) >= 0;
}

void khx_hashtab_find(const struct khx_hashtab *t, uint64_t size, const uint8_t *digest,
                      size_t *lo_out, size_t *hi_out)
{
    size_t lo = 0, hi = t->n;
    *lo_out = *hi_out = 0;
    if (t->n == 0)
        return;
    uint64_t h1, h2;
    bloom_keys(digest, &h1, &h2);
    for (int j = 0; j < BLOOM_PROBES; j++) {
        uint64_t bit = (h1 + (uint64_t)j * h2) & t->bloom_mask;
        if (!(t->bloom[bit / 64] & ((uint64_t)1 << (bit % 64))))
            return; /* certainly absent: the records are not touched */
    }
    if (t->nsizes > 0) {
        int64_t k = size_index(t, size);
        if (k < 0)
            return;
        lo = (size_t)t->first[k];
        hi = (size_t)t->first[k + 1];
        /* A damaged index must not send the search outside the table. */
        if (lo > hi || hi > t->n)
            return;
    }
    /* Lower bound of the digest within [lo, hi). */
    size_t a = lo, b = hi;
    while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (memcmp(t->digests + mid * t->dlen, digest, t->dlen) < 0)
            a = mid + 1;
        else
            b = mid;
    }
    size_t end = a;
    while (end < hi && memcmp(t->digests + end * t->dlen, digest, t->dlen) == 0)
        end++;
    *lo_out = a;
    *hi_out = end;
}
