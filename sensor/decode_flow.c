/*
 * The decoder's TCP reassembly table (decode_int.h). It holds only the
 * connection directions whose current message — a DNS-over-TCP message, a
 * TLS ClientHello, an HTTP request head — did not fit in one segment; all
 * other traffic never touches it. The table is a fixed pool of entries
 * chained into power-of-two buckets, hashed with SipHash-1-3 under a random
 * per-table key so that an attacker who chooses ports and addresses cannot
 * steer every flow into one chain. Everything is bounded: the entry count
 * (the oldest-placed entry is evicted when full) and each entry's buffer.
 */
#include "decode_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct dec_flow_table {
    struct dec_flow *pool;
    uint32_t *buckets; /* index + 1 of the first entry, 0 = empty */
    uint32_t *free_list;
    size_t nfree;
    size_t max, mask, count, clock;
    size_t buffer_bytes;
    uint64_t k0, k1;
};

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

/* SipHash-1-3 (one compression round, three finalisation rounds): keyed,
 * so bucket placement cannot be predicted, and cheap for a 38-byte key. */
static uint64_t siphash13(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56, m;
    size_t i, left = len & 7;

    for (i = 0; i + 8 <= len; i += 8) {
        memcpy(&m, in + i, 8);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; j < left; j++)
        b |= (uint64_t)in[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static size_t flow_bucket(const struct dec_flow_table *ft, const struct sen_tuple *key)
{
    return (size_t)siphash13(ft->k0, ft->k1, (const uint8_t *)key, sizeof(*key)) & ft->mask;
}

struct dec_flow_table *dec_flow_table_new(size_t max_flows, size_t buffer_bytes)
{
    struct dec_flow_table *ft = calloc(1, sizeof(*ft));
    size_t nb = 16;
    uint64_t seed[2];

    if (ft == NULL)
        return NULL;
    if (max_flows > (1u << 24))
        max_flows = 1u << 24;
    while (nb < max_flows)
        nb <<= 1;
    ft->max = max_flows;
    ft->mask = nb - 1;
    ft->buffer_bytes = buffer_bytes;
    ft->pool = calloc(max_flows, sizeof(*ft->pool));
    ft->buckets = calloc(nb, sizeof(*ft->buckets));
    ft->free_list = calloc(max_flows, sizeof(*ft->free_list));
    if (ft->pool == NULL || ft->buckets == NULL || ft->free_list == NULL) {
        dec_flow_table_free(ft);
        return NULL;
    }
    for (size_t i = 0; i < max_flows; i++)
        ft->free_list[i] = (uint32_t)(max_flows - 1 - i);
    ft->nfree = max_flows;
    /* A weak seed (getrandom unavailable) still differs per process. */
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        seed[0] = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)ft;
        seed[1] = (uint64_t)(uintptr_t)&seed ^ 0xc2b2ae3d27d4eb4fULL;
    }
    ft->k0 = seed[0];
    ft->k1 = seed[1];
    return ft;
}

void dec_flow_table_free(struct dec_flow_table *ft)
{
    if (ft == NULL)
        return;
    if (ft->pool != NULL)
        for (size_t i = 0; i < ft->max; i++)
            free(ft->pool[i].buf);
    free(ft->pool);
    free(ft->buckets);
    free(ft->free_list);
    free(ft);
}

size_t dec_flow_count(const struct dec_flow_table *ft)
{
    return ft->count;
}

size_t dec_flow_buffer_size(const struct dec_flow_table *ft)
{
    return ft->buffer_bytes;
}

struct dec_flow *dec_flow_find(struct dec_flow_table *ft, const struct sen_tuple *key)
{
    uint32_t i = ft->buckets[flow_bucket(ft, key)];

    while (i != 0) {
        struct dec_flow *f = &ft->pool[i - 1];
        if (memcmp(&f->key, key, sizeof(*key)) == 0)
            return f;
        i = f->chain;
    }
    return NULL;
}

void dec_flow_remove(struct dec_flow_table *ft, struct dec_flow *f)
{
    uint32_t idx = (uint32_t)(f - ft->pool) + 1;
    uint32_t *link = &ft->buckets[flow_bucket(ft, &f->key)];

    if (!f->used)
        return;
    while (*link != 0 && *link != idx)
        link = &ft->pool[*link - 1].chain;
    if (*link == idx)
        *link = f->chain;
    f->used = 0;
    f->chain = 0;
    f->len = 0;
    f->app = DEC_APP_NONE;
    ft->free_list[ft->nfree++] = idx - 1;
    ft->count--;
}

struct dec_flow *dec_flow_add(struct dec_flow_table *ft, const struct sen_tuple *key, int *evicted)
{
    struct dec_flow *f;
    size_t b;

    *evicted = 0;
    if (ft->max == 0)
        return NULL;
    if (ft->nfree == 0) {
        /* Full: a clock hand over the pool picks the victim, so eviction
         * costs O(1) and cycles through every entry in turn. */
        f = &ft->pool[ft->clock];
        ft->clock = (ft->clock + 1) % ft->max;
        dec_flow_remove(ft, f);
        *evicted = 1;
    }
    f = &ft->pool[ft->free_list[ft->nfree - 1]];
    if (f->buf == NULL && (f->buf = malloc(ft->buffer_bytes ? ft->buffer_bytes : 1)) == NULL)
        return NULL;
    ft->nfree--;
    b = flow_bucket(ft, key);
    f->key = *key;
    f->used = 1;
    f->len = 0;
    f->app = DEC_APP_NONE;
    f->chain = ft->buckets[b];
    ft->buckets[b] = (uint32_t)(f - ft->pool) + 1;
    ft->count++;
    return f;
}

size_t dec_flow_expire(struct dec_flow_table *ft, int64_t cutoff_us)
{
    size_t n = 0;

    for (size_t i = 0; i < ft->max && ft->count > 0; i++) {
        struct dec_flow *f = &ft->pool[i];
        if (f->used && f->last_us < cutoff_us) {
            dec_flow_remove(ft, f);
            n++;
        }
    }
    return n;
}
