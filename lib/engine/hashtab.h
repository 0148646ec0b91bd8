/*
 * Hash tables of the .kdb image: whole-file, PE section, import-table and
 * allowlist hashes, one table per (class, algorithm), used in place from the
 * mapped image. A table costs the digest plus 4 bytes per signature, plus
 * 16 bytes per distinct file size, and a lookup touches a handful of pages,
 * so an 8.6-million-signature database stays out of memory until it is used.
 *
 * Serialized layout (little-endian, 8-byte aligned):
 *
 *   struct kdb_hashtab     header: digest length, record and size counts
 *   uint64_t sizes[n]      distinct file sizes, ascending (none in "*" tables)
 *   uint64_t first[n + 1]  index of the first record of each size; first[n] = records
 *   uint8_t  digests[]     records * dlen bytes, sorted within each size's run
 *   uint32_t sigs[]        signature index of each record (after padding to 8)
 *   uint64_t bloom[]       a Bloom filter over the digests (10 bits per record, 3 probes),
 *                          so that a file whose digest is in no table — nearly every
 *                          file — never touches the records' pages
 */
#ifndef KHX_HASHTAB_H
#define KHX_HASHTAB_H

#include <stddef.h>
#include <stdint.h>

#include "khx.h"

struct kdb_hashtab {
    uint32_t dlen;
    uint32_t reserved;
    uint64_t records;
    uint64_t nsizes;
    uint64_t bloom_words; /* a power of two */
};

struct khx_hashtab {
    unsigned dlen;
    size_t n;      /* records */
    size_t nsizes; /* 0 for a "*" (any size) table */
    const uint64_t *sizes;
    const uint64_t *first;
    const uint8_t *digests;
    const uint32_t *sigs;
    const uint64_t *bloom;
    uint64_t bloom_mask; /* bits - 1 */
};

/* One record handed to the builder. */
struct khx_hashrec {
    uint64_t size; /* ignored for "*" tables */
    uint8_t digest[32];
    uint32_t sig;
};

/* Sorts `recs` and appends the serialized table to `out`. `sized` is 0 for
 * a "*" table. */
int khx_hashtab_write(struct khx_hashrec *recs, size_t n, unsigned dlen, int sized,
                      struct khx_buf *out);

/* Attaches to a serialized table of `len` bytes at `p` (8-byte aligned).
 * Checks the header and that the arrays fit, in constant time; the contents
 * are checked as lookups read them. Returns 0 or KH_EFORMAT. */
int khx_hashtab_attach(const uint8_t *p, size_t len, unsigned dlen, int sized,
                       struct khx_hashtab *t);

/* Whether any record has this size (always true for a non-empty "*" table). */
int khx_hashtab_has_size(const struct khx_hashtab *t, uint64_t size);

/* Finds the records with this size (ignored for "*" tables) and digest:
 * sets [*lo, *hi) to their indexes, an empty range when there are none. */
void khx_hashtab_find(const struct khx_hashtab *t, uint64_t size, const uint8_t *digest, size_t *lo,
                      size_t *hi);

#endif
