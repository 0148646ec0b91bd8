/*
 * The compiled indicator store's file format (store.h), shared by the
 * builder (store_build.c) and the reader (store.c), and the keyed hash both
 * use. docs/internals/ioc-store.md describes the layout in prose.
 *
 * A store file is a header followed by sections, each 8-byte aligned and
 * named by (offset, length) in the header's section table. All integers are
 * little-endian in the machine's own layout (the file is built and read on
 * the same host; the magic includes the format version and the header
 * records the byte order). Nothing in a section is trusted by the reader:
 * every offset is checked at open or before it is followed at lookup.
 */
#ifndef KHIEN_IOC_STORE_INT_H
#define KHIEN_IOC_STORE_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define STORE_MAGIC   "KHIOCS02"
#define STORE_VERSION 1
#define STORE_ENDIAN  0x01020304u

/* Sections, by table index (the writer places the domain data, then the
 * pool, tuples and sets, last; the reader takes any order). */
enum store_section {
    SEC_POOL = 0,  /* NUL-terminated source/category/family names */
    SEC_TUPLES,    /* struct store_tuple[] */
    SEC_SETIDX,    /* uint32_t[nsets + 1]: set i is SETS[idx[i] .. idx[i+1]) */
    SEC_SETS,      /* uint32_t tuple ids */
    SEC_V4BITS,    /* 2^24 bits, one per /24 an IPv4 indicator touches (or empty) */
    SEC_V4DIR,     /* uint32_t[65537]: exact IPv4 by the address's top 16 bits */
    SEC_V4,        /* struct store_v4[], sorted */
    SEC_V4PDIR,    /* uint32_t[65537]: IPv4:port by the address's top 16 bits */
    SEC_V4P,       /* struct store_v4p[], sorted by (addr, port) */
    SEC_V4NIDX,    /* uint32_t[34]: prefixes of length l are V4N[idx[l] .. idx[l+1]) */
    SEC_V4N,       /* struct store_v4[] (masked address, set): prefixes shorter than /16 */
    SEC_V4LDIR,    /* uint32_t[65537]: /16 to /31 prefixes by their top 16 bits */
    SEC_V4L,       /* struct store_v4l[], sorted by (top 16 bits, length down, address) */
    SEC_V6,        /* struct store_v6[], sorted */
    SEC_V6P,       /* struct store_v6p[], sorted */
    SEC_V6NIDX,    /* uint32_t[130] */
    SEC_V6N,       /* struct store_v6[] */
    SEC_AV4NIDX,   /* allowlist: uint32_t[34] */
    SEC_AV4N,      /* uint32_t masked addresses */
    SEC_AV6NIDX,   /* uint32_t[130] */
    SEC_AV6N,      /* 16-byte masked addresses */
    SEC_STR_FIRST, /* then per string table (STAB_*): a directory and data */
    SEC_COUNT = SEC_STR_FIRST + 2 * 8
};

/* String tables: indicators and allow entries for the four string kinds. */
enum store_stab {
    STAB_DOMAIN = 0,
    STAB_URL,
    STAB_JA3, /* 16 binary bytes */
    STAB_JA4,
    STAB_ADOMAIN,
    STAB_AURL,
    STAB_AJA3,
    STAB_AJA4,
    STAB_COUNT
};

#define SEC_STAB_DIR(t)  (SEC_STR_FIRST + 2 * (t))
#define SEC_STAB_DATA(t) (SEC_STR_FIRST + 2 * (t) + 1)

#define V4BITS_BYTES (1u << 21)

struct store_sec {
    uint64_t off, len;
};

struct store_header {
    char magic[8];
    uint32_t version;
    uint32_t endian;
    uint64_t file_bytes;
    int64_t built;
    uint8_t key[16]; /* the SipHash key */
    uint64_t counts[7];
    uint64_t allow_entries;
    uint64_t nsources;
    uint64_t nsets;
    uint64_t ntuples;
    uint64_t stab_count[STAB_COUNT]; /* entries per string table */
    struct store_sec sec[SEC_COUNT];
};

struct store_tuple {
    uint32_t source, category, family; /* offsets into SEC_POOL */
    uint32_t confidence;
    int64_t expires;
};

struct store_v4 {
    uint32_t addr; /* host order */
    uint32_t set;
};

struct store_v4l {
    uint32_t addr; /* masked, host order */
    uint8_t len;
    uint8_t pad[3];
    uint32_t set;
};

struct store_v4p {
    uint32_t addr;
    uint16_t port;
    uint16_t pad;
    uint32_t set;
};

struct store_v6 {
    uint8_t addr[16];
    uint32_t set;
};

struct store_v6p {
    uint8_t addr[16];
    uint16_t port;
    uint16_t pad;
    uint32_t set;
};

/*
 * String tables. Entries are grouped in buckets of about four (bucket =
 * high half of the hash scaled to the bucket count); the directory holds
 * one uint64_t per bucket plus one: the low 32 bits are where the bucket's
 * records start in the data, the high 32 bits a small filter with two bits
 * set per record (bits from the hash), so most misses read one directory
 * word and nothing else. A record is: one fingerprint byte (hash bits),
 * the value length and the set id as LEB128 varints, then the value bytes.
 */
#define STAB_PER_BUCKET 4

static inline uint64_t stab_nbuckets(uint64_t n)
{
    return n == 0 ? 0 : (n + STAB_PER_BUCKET - 1) / STAB_PER_BUCKET;
}

static inline uint64_t stab_bucket(uint64_t h, uint64_t nb)
{
    return (uint64_t)(((unsigned __int128)(h >> 32) * nb) >> 32);
}

static inline uint32_t stab_filter_bits(uint64_t h)
{
    return (uint32_t)1 << (h & 31) | (uint32_t)1 << ((h >> 5) & 31);
}

static inline uint8_t stab_fingerprint(uint64_t h)
{
    return (uint8_t)(h >> 10);
}

/* SipHash-1-3 (one compression round per word, three at the end): keyed, so
 * a hostile feed cannot choose names that collide into one bucket, and
 * cheap enough for a parent-suffix walk per observed name. */
#define SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIP_ROUND(v0, v1, v2, v3)                                                                  \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = SIP_ROTL(v1, 13);                                                                     \
        v1 ^= v0;                                                                                  \
        v0 = SIP_ROTL(v0, 32);                                                                     \
        v2 += v3;                                                                                  \
        v3 = SIP_ROTL(v3, 16);                                                                     \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = SIP_ROTL(v3, 21);                                                                     \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = SIP_ROTL(v1, 17);                                                                     \
        v1 ^= v2;                                                                                  \
        v2 = SIP_ROTL(v2, 32);                                                                     \
    } while (0)

static inline uint64_t store_siphash(const uint8_t key[16], const void *data, size_t len)
{
    uint64_t k0, k1, m;
    memcpy(&k0, key, 8);
    memcpy(&k1, key + 8, 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    const uint8_t *p = data;
    size_t left = len;
    while (left >= 8) {
        memcpy(&m, p, 8);
        v3 ^= m;
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= m;
        p += 8;
        left -= 8;
    }
    uint64_t b = (uint64_t)len << 56;
    switch (left) {
    case 7:
        b |= (uint64_t)p[6] << 48;
        /* fall through */
    case 6:
        b |= (uint64_t)p[5] << 40;
        /* fall through */
    case 5:
        b |= (uint64_t)p[4] << 32;
        /* fall through */
    case 4:
        b |= (uint64_t)p[3] << 24;
        /* fall through */
    case 3:
        b |= (uint64_t)p[2] << 16;
        /* fall through */
    case 2:
        b |= (uint64_t)p[1] << 8;
        /* fall through */
    case 1:
        b |= (uint64_t)p[0];
        break;
    default:
        break;
    }
    v3 ^= b;
    SIP_ROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

/* LEB128 helpers for string-table records. */
static inline size_t store_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline size_t store_varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Reads a varint of at most 5 bytes from p[0..end); returns the bytes used,
 * or 0 when it runs past end or is too long. */
static inline size_t store_varint_get(const uint8_t *p, const uint8_t *end, uint32_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < 5 && p + i < end; i++) {
        x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if ((p[i] & 0x80) == 0) {
            if (x > UINT32_MAX)
                return 0;
            *v = (uint32_t)x;
            return i + 1;
        }
    }
    return 0;
}

/* Bogon and private ranges never listed as indicators (unless the build
 * allows them): IPv4 as (address, length) in host order. */
struct store_bogon4 {
    uint32_t addr;
    uint8_t len;
};

#endif
