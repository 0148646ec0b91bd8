/*
 * The compiled indicator store (store_*.c): what the sensor (and, later, the
 * agent) matches traffic against. A builder collects records from the feed
 * readers (feed.h), merges several sources of one value, drops what the
 * allowlists cover, and writes one immutable file; ioc_store_open() maps
 * that file read-only, so the indicators live in the page cache, not in
 * anonymous memory, and a reload maps the new file beside the old one and
 * swaps a pointer (ioc_slot) — never two heap copies (the out-of-memory on
 * reload that maltrail and Zeek users report).
 *
 * Layout (docs/internals/ioc-store.md): a header with a random 128-bit
 * SipHash key chosen at build time (so an attacker cannot pick colliding
 * names), then per-kind sections: IPv4 and IPv6 exact addresses and
 * address:port pairs, prefixes per length (longest prefix wins), and one
 * open-addressing table of strings (domains, URLs, JA3, JA4) over a byte
 * arena; every entry points at a merged list of (source, category, family,
 * confidence, expiry) tuples. Lookups only read the map: any number of
 * threads may share one store.
 */
#ifndef KHIEN_IOC_STORE_H
#define KHIEN_IOC_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "feed.h"

/* ---- building ---- */

struct ioc_builder;

struct ioc_build_opts {
    int allow_private;     /* keep indicators inside private/bogon ranges (default: drop them) */
    size_t max_indicators; /* records accepted by ioc_builder_add, duplicates
                              included (they merge at write time); 0 = 50 million */
};

struct ioc_build_stats {
    size_t indicators; /* distinct values written */
    size_t counts[IOC_KIND_COUNT];
    size_t merged;        /* records that added a source to a value already present */
    size_t allowlisted;   /* records dropped because an allowlist or the bogon ranges cover them */
    size_t allow_entries; /* allowlist entries kept in the store for lookup-time checks */
    uint64_t file_bytes;  /* size of the written store */
};

/* Creates a builder (opts may be NULL). The caller frees it with
 * ioc_builder_free. Returns KH_OK or KH_ENOMEM. */
int ioc_builder_new(const struct ioc_build_opts *opts, struct ioc_builder **out);
void ioc_builder_free(struct ioc_builder *b); /* NULL-safe */

/* Adds one indicator (copied). A value already present gains the record's
 * source (a second record of the same source updates its category,
 * confidence and expiry to the highest/latest). Returns KH_OK, KH_EINVAL for
 * a record whose value is not a normalised value of its kind, KH_ELIMIT
 * beyond max_indicators, KH_ENOMEM. Usable directly as an ioc_record_fn. */
int ioc_builder_add(struct ioc_builder *b, const struct ioc_record *r);
int ioc_builder_add_fn(void *builder, const struct ioc_record *r);

/* What a feed reader already knows about a record, so that the builder may
 * skip work (0 is always right; the feed readers pass them, see
 * feed_pipe.c). IOC_HINT_CANONICAL: the value is in the builder's
 * canonical form already (a domain: lowercase, labels of 1..63 characters
 * of [a-z0-9_-]). IOC_HINT_SAME_WORDS: category, source, family,
 * confidence and expiry are those of the previous record given to
 * ioc_builder_add / _hinted. */
#define IOC_HINT_CANONICAL  1u
#define IOC_HINT_SAME_WORDS 2u
int ioc_builder_add_hinted(struct ioc_builder *b, const struct ioc_record *r, unsigned hints);

/* Adds one allowlist entry: IOC_IP / IOC_CIDR (addresses inside never
 * match), IOC_DOMAIN (the name and every name below it never match),
 * IOC_URL, IOC_JA3, IOC_JA4 (exact). Indicators the entry covers are dropped
 * at write time, and observed values it covers are refused at lookup time.
 * Usable as an ioc_record_fn (ioc_builder_allow_fn) for a warninglist reader. */
int ioc_builder_allow(struct ioc_builder *b, const struct ioc_record *r);
int ioc_builder_allow_fn(void *builder, const struct ioc_record *r);

/* Writes the store to `path` (a temporary file renamed into place, so a
 * reader never maps half a store). stats may be NULL. Returns KH_OK, KH_EIO
 * or KH_ENOMEM with err set. The builder may be freed afterwards. */
int ioc_builder_write(struct ioc_builder *b, const char *path, struct ioc_build_stats *stats,
                      char *err, size_t errlen);

/* ---- using ---- */

struct ioc_store;

/* Maps a store file read-only and checks its header and every section's
 * bounds (a store is a local file, but a truncated or corrupt one must give
 * an error, not a crash). Returns KH_OK, KH_EIO, KH_EFORMAT with err. The
 * caller closes it with ioc_store_close. */
int ioc_store_open(const char *path, struct ioc_store **out, char *err, size_t errlen);
/* The same over bytes the caller keeps alive while the store is open (used
 * by the fuzz target and tests). */
int ioc_store_open_mem(const void *data, size_t len, struct ioc_store **out, char *err,
                       size_t errlen);
void ioc_store_close(struct ioc_store *s); /* NULL-safe */

struct ioc_store_info {
    size_t counts[IOC_KIND_COUNT];
    size_t allow_entries;
    size_t sources; /* distinct source names */
    uint64_t file_bytes;
    int64_t built; /* Unix seconds */
};
void ioc_store_info(const struct ioc_store *s, struct ioc_store_info *info);

/* What one indicator says, per source that named it. */
struct ioc_source_ref {
    const char *source; /* NUL-terminated, inside the map */
    const char *category;
    const char *family; /* "" when none */
    uint8_t confidence;
    int64_t expires; /* 0 = never */
};

#define IOC_HIT_MAX_SOURCES 8

/* A match. value is the indicator as listed (a parent domain, a CIDR, an
 * IP:port ...), formatted into the struct. */
struct ioc_hit {
    int kind; /* enum ioc_kind */
    char value[IOC_VALUE_MAX + 1];
    size_t nsources; /* sources not expired at `now`, at most IOC_HIT_MAX_SOURCES */
    struct ioc_source_ref sources[IOC_HIT_MAX_SOURCES];
};

/* Lookup results. */
#define IOC_MISS    0
#define IOC_MATCH   1
#define IOC_ALLOWED 2 /* an indicator matched but an allowlist entry covers the observed value */

/* Address (AF_INET 4 bytes / AF_INET6 16 bytes, network order) and port
 * (host order, 0 = none): address:port first, then the exact address, then
 * the longest prefix. `now` (Unix seconds) drops expired sources; a value
 * whose sources all expired is a miss. h may be NULL when only the answer
 * matters. The miss path must not write to h. */
int ioc_store_match_addr(const struct ioc_store *s, int family, const void *addr, uint16_t port,
                         int64_t now, struct ioc_hit *h);
/* A domain name (any case, trailing dot ignored, len bytes, not
 * NUL-terminated): the name, then each parent. */
int ioc_store_match_domain(const struct ioc_store *s, const char *name, size_t len, int64_t now,
                           struct ioc_hit *h);
/* A URL as "host/path?query" or with a scheme: the exact URL, then the URL
 * without its query, then "host/path" prefixes ending at a '/'. */
int ioc_store_match_url(const struct ioc_store *s, const char *url, size_t len, int64_t now,
                        struct ioc_hit *h);
/* kind IOC_JA3 (32 hex digits, any case) or IOC_JA4. */
int ioc_store_match_fingerprint(const struct ioc_store *s, int kind, const char *fp, size_t len,
                                int64_t now, struct ioc_hit *h);

/* ---- swapping ---- */

/* A slot holds the store in use. Readers take a reference for a batch of
 * lookups; a swap installs a new store at once, and the old one is unmapped
 * when its last reader lets go. */
struct ioc_slot;
int ioc_slot_new(struct ioc_slot **out);
void ioc_slot_free(struct ioc_slot *slot); /* closes the current store; no reader may hold one */
/* Installs s (ownership passes to the slot; may be NULL to empty it). */
void ioc_slot_swap(struct ioc_slot *slot, struct ioc_store *s);
/* Returns the current store with a reference (NULL when empty); pair with
 * ioc_slot_release. Lock-free on the reader side beyond one atomic. */
const struct ioc_store *ioc_slot_acquire(struct ioc_slot *slot);
void ioc_slot_release(struct ioc_slot *slot, const struct ioc_store *s);

#endif
