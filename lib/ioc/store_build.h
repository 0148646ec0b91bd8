/*
 * What the two halves of the indicator store builder share: store_build.c
 * (collecting and merging records) and store_write.c (dropping, sorting
 * and writing the file). Internal to lib/ioc; the interface is store.h.
 */
#ifndef KHIEN_IOC_STORE_BUILD_H
#define KHIEN_IOC_STORE_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "store_int.h"

#define DEFAULT_MAX   50000000u
#define ARENA_MAX     ((uint64_t)1 << 40)
#define MAX_TUPLES    (UINT32_MAX / 2)
#define SMALL_V4      4096 /* IPv4 entries below which no bitmap or directories are written */
#define SET_MAX_TUPLE 4096 /* sources per value kept (further ones are dropped) */

/* Internal kinds: the key bytes each one keeps in the arena. */
enum sk {
    SK_V4 = 0, /* 4 bytes, network order */
    SK_V6,     /* 16 bytes */
    SK_V4N,    /* 4 + length byte */
    SK_V6N,    /* 16 + length byte */
    SK_V4P,    /* 4 + port (host order, 2 bytes) */
    SK_V6P,    /* 16 + port */
    SK_DOMAIN, /* text */
    SK_URL,    /* text */
    SK_JA3,    /* 16 binary bytes */
    SK_JA4,    /* text */
    SK_AV4N,   /* allowlist kinds */
    SK_AV6N,
    SK_ADOMAIN,
    SK_AURL,
    SK_AJA3,
    SK_AJA4,
    SK_COUNT
};

struct itab {
    uint64_t *slots; /* (hash32 << 32) | (index + 1); 0 = empty */
    size_t cap, n;   /* cap a power of two */
};

struct ioc_builder {
    size_t max;
    int allow_private;
    uint8_t key[16];
    /* values: arena records [sk][len u16][key bytes] */
    uint8_t *arena;
    uint64_t alen, acap;
    uint64_t *eoff;
    uint32_t *eset;
    size_t n, ecap, nindicators, nallow;
    struct itab values;
    /* names */
    char *pool;
    size_t plen, pcap;
    struct itab names;
    /* tuples and sets */
    struct store_tuple *tuples;
    size_t ntuples, tcap;
    struct itab tuptab;
    uint32_t *setw; /* set words */
    size_t nsetw, swcap;
    uint32_t *setidx; /* start word of set i; setidx[nsets] = nsetw */
    size_t nsets, sicap;
    struct itab settab;
    /* one-record cache: most records repeat the previous one's source */
    char last_src[IOC_WORD_MAX + 1], last_cat[IOC_WORD_MAX + 1], last_fam[IOC_WORD_MAX + 1];
    uint8_t last_conf;
    int64_t last_exp;
    uint32_t last_tuple, last_set;
    int have_last;
    /* the cache holds the words of the previous record given to
     * ioc_builder_add, added or not: a record hinted IOC_HINT_SAME_WORDS
     * then takes the cached tuple without comparing its words */
    int last_is_prev;
    uint64_t av4_lens;     /* bit l: an IPv4 allow prefix of length l exists */
    uint8_t av6_lens[129]; /* 1: an IPv6 allow prefix of this length exists */
    size_t merged;
    size_t nallow_sk[SK_COUNT]; /* allow entries per internal kind */
    /* indicator records, appended as they come: [sk][len u16][set u32][key];
     * duplicates are found and merged at write time by sorting */
    uint8_t *rec;
    uint64_t rlen, rcap;
    /* The SipHash of each string record's key (SK_DOMAIN..SK_JA4), in
     * record order: computed as it is added, on the thread that adds while
     * another parses, rather than at write time where it was the longest
     * part of sorting the domains. */
    uint64_t *rhash;
    size_t nrhash, rhcap;
    size_t nrec[SK_COUNT], nrecords;
    /* bounds for sizing the file before merging: string-table bytes per
     * kind as added, and IPv4 prefixes of /16 or longer */
    uint64_t sbytes[SK_COUNT];
    size_t nv4long;
};

#define REC_HDR 7

/* Finds an allow entry's value; with create, adds it. Returns the entry
 * index, -1 when absent, or a negative kh_err - 1. */
int64_t ioc_sb_value_find(struct ioc_builder *b, uint8_t sk, const uint8_t *p, size_t len,
                          int create, int *created);
/* The union of source sets a and then c (c's records came later). */
int ioc_sb_merge_sets(struct ioc_builder *b, uint32_t a, uint32_t c, uint32_t *out);
/* Clears the bits of a (bytes long) beyond the first len. */
void ioc_sb_mask_bits(uint8_t *a, size_t bytes, unsigned len);
int ioc_sb_cmp_u32(const void *a, const void *b);

#endif
