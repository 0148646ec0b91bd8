/*
 * Private definitions shared by the two halves of the body-signature module:
 * bodysig.c, which parses a pattern and compiles it into a Hyperscan
 * expression and a matcher program, and bodysig_match.c, which checks such a
 * program and runs it. What they share is the program encoding (written by
 * one, read by the other), the limits both must agree on, and a few byte
 * classifications that must give the same answer at compile and at match
 * time. Nothing outside those two files includes this header; the module's
 * interface is bodysig.h.
 */
#ifndef KHX_BODYSIG_INT_H
#define KHX_BODYSIG_INT_H

#include <stddef.h>
#include <stdint.h>

/* Limits that belong to the program encoding: the compiler writes programs
 * with them and khx_body_prog_check refuses a program that exceeds them. */
#define BODY_MAX_DEPTH     40u /* SEQ/ALT nesting khx_body_prog_check accepts */
#define BODY_MAX_PROG      (16u << 20)
#define BODY_GAP_INF       UINT32_MAX        /* a GAP with no upper bound */
#define BODY_GAP_MAX       (UINT32_MAX - 1u) /* the largest finite gap */
#define BODY_NEG_WIDTH_MAX 255u

/* Lengths are computed in 64 bits; anything at or above UINT32_MAX counts as
 * unbounded, which is what khx_body.maxlen reports. */
#define LEN_INF UINT64_MAX

/* Program encoding: a 20-byte header, then the root node. All integers are
 * little-endian; docs/internals/bodysig.md gives the full layout. */
#define PROG_MAGIC "KHB1"
#define PROG_HDR   20u
#define NODE_HDR   8u
#define HDR_FIXED  1u /* header flag: every match has the same length */

enum {
    OP_STR = 1, /* u32 len, bytes: a literal run (flag F_NOCASE) */
    OP_SET,     /* 32-byte bitmap: one byte out of a set */
    OP_GAP,     /* u32 min, u32 max: any min..max bytes (max BODY_GAP_INF: no limit) */
    OP_SEQ,     /* u32 n, u32 child offsets[n], children: concatenation */
    OP_ALT,     /* same layout: alternation */
    OP_NEG,     /* u32 width, u32 count, sorted members: any width bytes but those */
    OP_LINE,    /* (L) inside a pattern: CR LF, LF or CR; negated: one other byte */
    OP_ASSERT,  /* zero-width (B) (L) (W) at the edge of a subpattern */
};

#define F_NOCASE   1u /* OP_STR, OP_NEG: ASCII letters match either case */
#define F_LINE_NEG 1u

/* OP_ASSERT flags. */
#define A_KIND  3u
#define A_B     1u
#define A_L     2u
#define A_W     3u
#define A_RIGHT 4u  /* checks the byte after the position; else the byte before */
#define A_NEG   8u  /* !(B) !(L) !(W) */
#define A_WIDE  16u /* (W) of a wide pattern: a wide character is "alnum, 00" */

/* The program's integers, read and written byte by byte so that neither the
 * host's byte order nor the alignment of the .kdb mapping matters. */
static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* ClamAV compares in the C locale: only ASCII letters and digits count. */
static inline int is_alnum_byte(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static inline uint8_t fold(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* ClamAV's word-boundary characters. Its matcher accepts some of them only
 * before a match and some only after one; inside a pattern any of them does. */
static inline int boundary_before(uint8_t c)
{
    return c == ' ' || c == '-' || c == '.' || c == '/' || c == '<' || c == '@' || c == '_';
}

static inline int boundary_after(uint8_t c)
{
    return c == '\n' || c == '\r' || c == ' ' || c == '"' || c == '\'' || c == '-' || c == '/' ||
           c == '=' || c == '>' || c == '_';
}

/* A byte set is a 32-byte bitmap, as stored in OP_SET. */
static inline int set_has(const uint8_t *s, unsigned b)
{
    return (s[b >> 3] >> (b & 7)) & 1;
}

static inline unsigned set_count(const uint8_t *s)
{
    unsigned n = 0;
    for (unsigned i = 0; i < 32; i++)
        n += (unsigned)__builtin_popcount(s[i]);
    return n;
}

static inline uint64_t len_add(uint64_t a, uint64_t b)
{
    if (a == LEN_INF || b == LEN_INF)
        return LEN_INF;
    uint64_t s = a + b; /* both are below 2^32 here */
    return s >= UINT32_MAX ? LEN_INF : s;
}

#endif
