/*
 * Indicator sets (ioc.h): the one line parser behind both ioc_set_load() and
 * ioc_normalize_line(), so that what the server writes into a bundle is
 * exactly what the agent reads back, and the lookup structures.
 *
 * The set is built for a few million indicators on an endpoint, so memory is
 * counted in bytes per indicator (docs/internals/ioc.md has the figures):
 *
 *   - One arena of strings. Each indicator has a record in it: its tag, a
 *     16-bit index into the table of distinct (category, source) pairs, and
 *     then its normalised value, NUL-terminated. Lists repeat the same few
 *     categories and sources on every line; each pair is stored once.
 *   - Addresses and prefixes in sorted arrays, one per family and prefix
 *     length (an exact address is a /32 or /128). A longest-prefix lookup is
 *     one binary search per prefix length in use, longest first. An IPv4
 *     entry is 8 bytes: the masked address and its record's offset.
 *   - Address:port pairs in sorted arrays of their own.
 *   - Domains in an open-addressing hash table of record offsets, hashed
 *     with SipHash under a key drawn at random for each set, so that a list
 *     cannot be written to make its names collide and slow every lookup.
 *
 * Sorted arrays rather than hashes for addresses: no worst case for a
 * hostile list to find, no empty slots, and about 21 comparisons for a
 * million entries. Duplicates are removed while building, the first line
 * winning (records are appended in line order, so the smaller offset is the
 * earlier line).
 */
#include "ioc.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include <khien/khien.h>

#include "fields.h"
#include "khx.h"

#define LINE_MAX_LEN     1024
#define WORD_MAX_LEN     64
#define DOMAIN_MAX_LEN   253
#define LABEL_MAX_LEN    63
#define VALUE_MAX        (DOMAIN_MAX_LEN + 1) /* the longest value text, a domain, and a NUL */
#define DEFAULT_MAX      10000000u
#define TAG_MAX          65535u
#define ARENA_MAX        ((size_t)UINT32_MAX) /* records are found by 32-bit offsets */
#define EMPTY_SLOT       UINT32_MAX
#define DEFAULT_CATEGORY "malware"
#define DEFAULT_SOURCE   "-"
#define SHOW_MAX         96 /* how much of a bad value an error message quotes */

/* ------------------------------------------------------------------------ */
/* Parsing one line.                                                         */
/* ------------------------------------------------------------------------ */

/* One indicator line, parsed and normalised. */
struct parsed {
    int kind;
    int family;       /* AF_INET or AF_INET6 for the address kinds */
    uint8_t addr[16]; /* network order; an IPv4 address in the first 4 bytes */
    unsigned prefix;  /* CIDR only */
    uint16_t port;    /* IP_PORT only */
    char value[VALUE_MAX];
    char category[WORD_MAX_LEN + 1];
    char source[WORD_MAX_LEN + 1];
};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_mapped_v4(const uint8_t a[16])
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, prefix, sizeof(prefix)) == 0;
}

/* Parses s[0..n) as an address of `family` (AF_UNSPEC: either) with
 * inet_pton, which accepts only the strict textual forms. Returns 0 or -1. */
static int parse_addr(const char *s, size_t n, int family, int *got, uint8_t addr[16])
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (n == 0 || n >= sizeof(buf) || memchr(s, '\0', n) != NULL)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(addr, 0, 16);
    if (family != AF_INET6 && inet_pton(AF_INET, buf, addr) == 1) {
        *got = AF_INET;
        return 0;
    }
    if (family != AF_INET && inet_pton(AF_INET6, buf, addr) == 1) {
        *got = AF_INET6;
        return 0;
    }
    return -1;
}

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is stored and looked up as
 * the IPv4 address it carries. */
static void unmap(int *family, uint8_t addr[16])
{
    if (*family == AF_INET6 && is_mapped_v4(addr)) {
        memmove(addr, addr + 12, 4);
        memset(addr + 4, 0, 12);
        *family = AF_INET;
    }
}

static int all_zero(const uint8_t *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != 0)
            return 0;
    return 1;
}

/* Clears the bits of `a` (nbytes long) after the first `prefix`. */
static void clear_host_bits(uint8_t *a, size_t nbytes, unsigned prefix)
{
    for (size_t i = 0; i < nbytes; i++) {
        unsigned bit = (unsigned)i * 8;
        if (bit >= prefix)
            a[i] = 0;
        else if (prefix - bit < 8)
            a[i] &= (uint8_t)(0xff << (8 - (prefix - bit)));
    }
}

/* Parses a decimal number of 1 to `maxdigits` digits. Returns 0 or -1. */
static int parse_number(const char *s, size_t n, size_t maxdigits, unsigned *out)
{
    unsigned v = 0;
    if (n == 0 || n > maxdigits)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

static int parse_port(const char *s, size_t n, uint16_t *port)
{
    unsigned v = 0;
    if (parse_number(s, n, 5, &v) != 0 || v == 0 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* Validates and lowercases a domain name into out (VALUE_MAX bytes). */
static int parse_domain(const char *s, size_t n, char *out, char *err, size_t errlen)
{
    char show[SHOW_MAX];
    size_t label = 0, labels = 0;
    int numeric = 1;

    khx_printable(show, sizeof(show), s, n);
    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n > DOMAIN_MAX_LEN) {
        khx_errf(err, errlen, "the domain name '%s' is longer than %d characters", show,
                 DOMAIN_MAX_LEN);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if ((unsigned char)c >= 0x80) {
            khx_errf(err, errlen,
                     "'%s' is not ASCII: write an internationalised domain name in its xn-- form",
                     show);
            return -1;
        }
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c == '.') {
            if (label == 0) {
                khx_errf(err, errlen, "the domain name '%s' has an empty label", show);
                return -1;
            }
            labels++;
            label = 0;
            numeric = 1;
        } else if (is_alpha(c) || is_digit(c) || c == '-' || c == '_') {
            if (++label > LABEL_MAX_LEN) {
                khx_errf(err, errlen, "the domain name '%s' has a label longer than %d characters",
                         show, LABEL_MAX_LEN);
                return -1;
            }
            if (!is_digit(c))
                numeric = 0;
        } else {
            khx_errf(err, errlen,
                     "'%s' is not an IP address, CIDR prefix, address:port or domain name"
                     " (character '%c' is not allowed in a domain name)",
                     show, c >= 0x20 && c < 0x7f ? c : '?');
            return -1;
        }
        out[i] = c;
    }
    if (label == 0) {
        khx_errf(err, errlen, "the domain name '%s' has an empty label", show);
        return -1;
    }
    /* One label alone ("com", "localhost") would match every name under it
     * or a name that only exists on one network: refused. */
    if (++labels < 2) {
        khx_errf(err, errlen,
                 "'%s' is not an indicator: a domain name needs at least two labels"
                 " (example.com)",
                 show);
        return -1;
    }
    if (numeric) {
        khx_errf(err, errlen, "'%s' is neither an IP address nor a domain name", show);
        return -1;
    }
    out[n] = '\0';
    return 0;
}

/* Writes the canonical text of an address kind into p->value. */
static void format_value(struct parsed *p)
{
    char a[INET6_ADDRSTRLEN];
    if (inet_ntop(p->family, p->addr, a, sizeof(a)) == NULL)
        a[0] = '\0';
    if (p->kind == IOC_IP)
        snprintf(p->value, sizeof(p->value), "%s", a);
    else if (p->kind == IOC_CIDR)
        snprintf(p->value, sizeof(p->value), "%s/%u", a, p->prefix);
    else if (p->family == AF_INET)
        snprintf(p->value, sizeof(p->value), "%s:%u", a, (unsigned)p->port);
    else
        snprintf(p->value, sizeof(p->value), "[%s]:%u", a, (unsigned)p->port);
}

static const char url_message[] = "URLs are not supported in agent bundles";

/* Parses a CIDR prefix "addr/len" whose slash is at s[slash]. */
static int parse_cidr(const char *s, size_t n, size_t slash, struct parsed *p, const char *show,
                      char *err, size_t errlen)
{
    unsigned len = 0;
    if (parse_addr(s, slash, AF_UNSPEC, &p->family, p->addr) != 0) {
        /* "evil.example/path": a URL without its scheme. */
        for (size_t i = 0; i < slash; i++) {
            if (is_alpha(s[i])) {
                khx_errf(err, errlen, "%s ('%s')", url_message, show);
                return -1;
            }
        }
        khx_errf(err, errlen, "'%s' is not a CIDR prefix: the address is not valid", show);
        return -1;
    }
    unsigned bits = p->family == AF_INET ? 32 : 128;
    if (parse_number(s + slash + 1, n - slash - 1, 3, &len) != 0 || len > bits) {
        khx_errf(err, errlen, "'%s' is not a CIDR prefix: the length must be 1 to %u", show, bits);
        return -1;
    }
    clear_host_bits(p->addr, bits / 8, len);
    /* ::ffff:a.b.c.d/N with N >= 96 is the IPv4 prefix /N-96. */
    if (p->family == AF_INET6 && len >= 96 && is_mapped_v4(p->addr)) {
        unmap(&p->family, p->addr);
        len -= 96;
        bits = 32;
    }
    if (len == 0) {
        khx_errf(err, errlen, "'%s' would match every address: a prefix needs 1 bit or more", show);
        return -1;
    }
    p->prefix = len;
    p->kind = len == bits ? IOC_IP : IOC_CIDR;
    return 0;
}

/* Parses the value field into p (kind, address or domain, value text). */
static int parse_value(const char *s, size_t n, struct parsed *p, char *err, size_t errlen)
{
    char show[SHOW_MAX];
    const char *slash = memchr(s, '/', n);
    size_t colons = 0;

    khx_printable(show, sizeof(show), s, n);
    if (memmem(s, n, "://", 3) != NULL) {
        khx_errf(err, errlen, "%s ('%s')", url_message, show);
        return -1;
    }
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL || (size_t)(close - s) + 2 > n || close[1] != ':' ||
            parse_addr(s + 1, (size_t)(close - s) - 1, AF_INET6, &p->family, p->addr) != 0 ||
            parse_port(close + 2, n - (size_t)(close - s) - 2, &p->port) != 0) {
            khx_errf(err, errlen, "'%s' is not [IPv6 address]:port (port 1 to 65535)", show);
            return -1;
        }
        unmap(&p->family, p->addr);
        p->kind = IOC_IP_PORT;
    } else if (slash != NULL) {
        if (parse_cidr(s, n, (size_t)(slash - s), p, show, err, errlen) != 0)
            return -1;
    } else if (parse_addr(s, n, AF_UNSPEC, &p->family, p->addr) == 0) {
        unmap(&p->family, p->addr);
        p->kind = IOC_IP;
    } else {
        for (size_t i = 0; i < n; i++)
            colons += s[i] == ':';
        if (colons > 1) {
            khx_errf(err, errlen, "'%s' is not a valid IPv6 address", show);
            return -1;
        }
        if (colons == 1) {
            const char *colon = memchr(s, ':', n);
            size_t alen = (size_t)(colon - s);
            if (parse_addr(s, alen, AF_INET, &p->family, p->addr) != 0 ||
                parse_port(colon + 1, n - alen - 1, &p->port) != 0) {
                khx_errf(err, errlen,
                         "'%s' is not IPv4-address:port (port 1 to 65535; an IPv6 address with"
                         " a port is written [address]:port; a domain name takes no port)",
                         show);
                return -1;
            }
            p->kind = IOC_IP_PORT;
        } else {
            if (parse_domain(s, n, p->value, err, errlen) != 0)
                return -1;
            p->kind = IOC_DOMAIN;
            return 0;
        }
    }
    if ((p->kind == IOC_IP || p->kind == IOC_IP_PORT) &&
        all_zero(p->addr, p->family == AF_INET ? 4 : 16)) {
        khx_errf(err, errlen, "'%s' is the unspecified address, not an indicator", show);
        return -1;
    }
    if (p->kind == IOC_IP)
        p->prefix = p->family == AF_INET ? 32 : 128;
    format_value(p);
    return 0;
}

/* A category or source word: [A-Za-z0-9._-], 1 to 64 characters; an absent
 * or empty field takes the default. */
static int parse_word(const struct ioc_field *f, const char *what, const char *dflt, char *out,
                      char *err, size_t errlen)
{
    char show[SHOW_MAX];
    if (f == NULL || f->n == 0) {
        snprintf(out, WORD_MAX_LEN + 1, "%s", dflt);
        return 0;
    }
    khx_printable(show, sizeof(show), f->p, f->n);
    if (f->n > WORD_MAX_LEN) {
        khx_errf(err, errlen, "the %s '%s' is longer than %d characters", what, show, WORD_MAX_LEN);
        return -1;
    }
    for (size_t i = 0; i < f->n; i++) {
        char c = f->p[i];
        if (!(is_alpha(c) || is_digit(c) || c == '.' || c == '_' || c == '-')) {
            khx_errf(err, errlen, "the %s '%s' may only contain letters, digits, '.', '_' and '-'",
                     what, show);
            return -1;
        }
    }
    memcpy(out, f->p, f->n);
    out[f->n] = '\0';
    return 0;
}

/* The addresses a hosts file points blocked names at. */
static int null_route(const struct ioc_field *f)
{
    static const char *const routes[] = {"0.0.0.0", "127.0.0.1", "::", "::1"};
    for (size_t i = 0; i < KHX_ARRAY_LEN(routes); i++)
        if (f->n == strlen(routes[i]) && memcmp(f->p, routes[i], f->n) == 0)
            return 1;
    return 0;
}

/* Parses one line. Returns 1 with *p filled, 0 for a blank or comment line,
 * or -1 with the reason in err. */
static int parse_line(const char *line, size_t len, struct parsed *p, char *err, size_t errlen)
{
    struct ioc_field f[3];
    size_t nf;

    memset(p, 0, offsetof(struct parsed, value));
    p->value[0] = '\0';
    if (len > LINE_MAX_LEN) {
        khx_errf(err, errlen, "the line is longer than %d bytes", LINE_MAX_LEN);
        return -1;
    }
    /* A byte order mark, as editors on Windows write at the start of a file. */
    if (len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
        line += 3;
        len -= 3;
    }
    const char *hash = memchr(line, '#', len);
    if (hash != NULL)
        len = (size_t)(hash - line);
    ioc__trim(&line, &len);
    if (len == 0)
        return 0;
    if (memchr(line, '\0', len) != NULL) {
        khx_errf(err, errlen, "the line contains a NUL byte");
        return -1;
    }
    int csv = memchr(line, ',', len) != NULL;
    nf = csv ? ioc__split_sep(line, len, ',', f, 3) : ioc__split_blanks(line, len, f, 3);
    if (nf > 3) {
        khx_errf(err, errlen, "too many fields: expected <value> [<category> [<source>]]");
        return -1;
    }
    /* "0.0.0.0 evil.example" (a hosts file that blocks names): the name is
     * the indicator. */
    if (!csv && nf == 2 && null_route(&f[0]) && memchr(f[1].p, '.', f[1].n) != NULL &&
        parse_domain(f[1].p, f[1].n, p->value, NULL, 0) == 0) {
        f[0] = f[1];
        nf = 1;
    }
    if (f[0].n == 0) {
        khx_errf(err, errlen, "the value is empty");
        return -1;
    }
    if (parse_value(f[0].p, f[0].n, p, err, errlen) != 0 ||
        parse_word(nf > 1 ? &f[1] : NULL, "category", DEFAULT_CATEGORY, p->category, err, errlen) !=
            0 ||
        parse_word(nf > 2 ? &f[2] : NULL, "source", DEFAULT_SOURCE, p->source, err, errlen) != 0)
        return -1;
    return 1;
}

int ioc_normalize_line(const char *line, size_t len, char *out, size_t outlen, char *err,
                       size_t errlen)
{
    struct parsed p;
    if ((line == NULL && len > 0) || out == NULL || outlen == 0) {
        khx_errf(err, errlen, "invalid argument");
        return -1;
    }
    out[0] = '\0';
    int r = parse_line(line, len, &p, err, errlen);
    if (r <= 0)
        return r;
    int n = snprintf(out, outlen, "%s %s %s", p.value, p.category, p.source);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        khx_errf(err, errlen, "the output buffer is too small (%d bytes needed)", n + 1);
        return -1;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* The set.                                                                  */
/* ------------------------------------------------------------------------ */

/* A masked IPv4 address (host order) and the offset of its record. */
struct net4 {
    uint32_t addr;
    uint32_t ref;
};

struct net6 {
    uint8_t addr[16];
    uint32_t ref;
};

struct port4 {
    uint32_t addr;
    uint32_t ref;
    uint16_t port;
};

struct port6 {
    uint8_t addr[16];
    uint32_t ref;
    uint16_t port;
};

struct tag {
    uint32_t category; /* arena offsets of NUL-terminated words */
    uint32_t source;
};

/* A sorted array; for the prefix tables, index = prefix length. */
struct table {
    void *e;
    size_t n;
};

struct ioc_set {
    char *arena;
    size_t arena_len;
    struct tag *tags;
    size_t ntags;
    struct table v4[33];  /* by prefix length; [32] holds single addresses */
    struct table v6[129]; /* [128] holds single addresses */
    struct table p4, p6;
    uint32_t *dom; /* hash slots: record offsets or EMPTY_SLOT */
    size_t dom_cap, ndom;
    unsigned char key[crypto_shorthash_KEYBYTES];
};

static uint64_t hash_bytes(const unsigned char *key, const void *p, size_t n)
{
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t h;
    crypto_shorthash(out, p, n, key);
    memcpy(&h, out, sizeof(h));
    return h;
}

static uint32_t load_be32(const uint8_t *a)
{
    return (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
}

static void fill_match(const struct ioc_set *s, int kind, uint32_t ref, struct ioc_match *m)
{
    if (m == NULL)
        return;
    const unsigned char *rec = (const unsigned char *)s->arena + ref;
    unsigned tag = (unsigned)rec[0] | (unsigned)rec[1] << 8;
    m->kind = kind;
    m->value = (const char *)rec + 2;
    m->category = s->arena + s->tags[tag].category;
    m->source = s->arena + s->tags[tag].source;
}

/* Comparators: by key, then by record offset (the earlier line first). */
static int cmp_u32(uint32_t a, uint32_t b)
{
    return a < b ? -1 : a > b;
}

static int cmp_net4(const void *a, const void *b)
{
    const struct net4 *x = a, *y = b;
    int c = cmp_u32(x->addr, y->addr);
    return c ? c : cmp_u32(x->ref, y->ref);
}

static int cmp_net6(const void *a, const void *b)
{
    const struct net6 *x = a, *y = b;
    int c = memcmp(x->addr, y->addr, 16);
    return c ? c : cmp_u32(x->ref, y->ref);
}

static int cmp_port4(const void *a, const void *b)
{
    const struct port4 *x = a, *y = b;
    int c = cmp_u32(x->addr, y->addr);
    if (c == 0)
        c = cmp_u32(x->port, y->port);
    return c ? c : cmp_u32(x->ref, y->ref);
}

static int cmp_port6(const void *a, const void *b)
{
    const struct port6 *x = a, *y = b;
    int c = memcmp(x->addr, y->addr, 16);
    if (c == 0)
        c = cmp_u32(x->port, y->port);
    return c ? c : cmp_u32(x->ref, y->ref);
}

/* Equality of keys, ignoring the record offset. */
static int same_net4(const void *a, const void *b)
{
    return ((const struct net4 *)a)->addr == ((const struct net4 *)b)->addr;
}

static int same_net6(const void *a, const void *b)
{
    return memcmp(((const struct net6 *)a)->addr, ((const struct net6 *)b)->addr, 16) == 0;
}

static int same_port4(const void *a, const void *b)
{
    const struct port4 *x = a, *y = b;
    return x->addr == y->addr && x->port == y->port;
}

static int same_port6(const void *a, const void *b)
{
    const struct port6 *x = a, *y = b;
    return memcmp(x->addr, y->addr, 16) == 0 && x->port == y->port;
}

/* Sorts a vector, keeps the first of each key, and moves it into a table
 * whose allocation is exactly its size. */
static void finish_table(struct khx_vec *v, int (*cmp)(const void *, const void *),
                         int (*same)(const void *, const void *), struct table *t)
{
    size_t n = 0;
    char *items = v->items;
    if (v->len > 1)
        qsort(items, v->len, v->elem, cmp);
    for (size_t i = 0; i < v->len; i++) {
        if (n > 0 && same(items + (n - 1) * v->elem, items + i * v->elem))
            continue;
        if (n != i)
            memcpy(items + n * v->elem, items + i * v->elem, v->elem);
        n++;
    }
    void *shrunk = n > 0 ? realloc(items, n * v->elem) : NULL;
    if (n == 0)
        free(items);
    t->e = n > 0 ? (shrunk ? shrunk : items) : NULL;
    t->n = n;
    v->items = NULL;
    v->len = v->cap = 0;
}

/* Everything a load accumulates before the tables are sorted. */
struct builder {
    struct ioc_set *s;
    struct khx_buf arena;
    struct khx_vec tags;
    uint32_t *tag_slots; /* tag index + 1, 0 empty */
    size_t tag_cap;
    struct khx_vec v4[33], v6[129], p4, p6, dom;
    size_t last_tag; /* the previous line's, as lists repeat one pair for many lines */
    int have_last;
};

static void builder_free(struct builder *b)
{
    khx_buf_free(&b->arena);
    khx_vec_free(&b->tags);
    free(b->tag_slots);
    for (size_t i = 0; i < KHX_ARRAY_LEN(b->v4); i++)
        khx_vec_free(&b->v4[i]);
    for (size_t i = 0; i < KHX_ARRAY_LEN(b->v6); i++)
        khx_vec_free(&b->v6[i]);
    khx_vec_free(&b->p4);
    khx_vec_free(&b->p6);
    khx_vec_free(&b->dom);
}

static int tag_equals(const struct builder *b, size_t t, const char *cat, const char *src)
{
    const struct tag *tg = KHX_VEC_AT(&b->tags, struct tag, t);
    return strcmp((const char *)b->arena.data + tg->category, cat) == 0 &&
           strcmp((const char *)b->arena.data + tg->source, src) == 0;
}

static uint64_t tag_hash(const struct builder *b, const char *cat, const char *src)
{
    char key[2 * WORD_MAX_LEN + 2];
    size_t nc = strlen(cat), ns = strlen(src);
    memcpy(key, cat, nc + 1);
    memcpy(key + nc + 1, src, ns);
    return hash_bytes(b->s->key, key, nc + 1 + ns);
}

/* Doubles the tag hash (or creates it) and re-inserts every tag. */
static int tag_grow(struct builder *b)
{
    size_t cap = b->tag_cap ? b->tag_cap * 2 : 64;
    uint32_t *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return KH_ENOMEM;
    for (size_t t = 0; t < b->tags.len; t++) {
        const struct tag *tg = KHX_VEC_AT(&b->tags, struct tag, t);
        uint64_t h = tag_hash(b, (const char *)b->arena.data + tg->category,
                              (const char *)b->arena.data + tg->source);
        size_t i = (size_t)h & (cap - 1);
        while (slots[i] != 0)
            i = (i + 1) & (cap - 1);
        slots[i] = (uint32_t)t + 1;
    }
    free(b->tag_slots);
    b->tag_slots = slots;
    b->tag_cap = cap;
    return KH_OK;
}

static int arena_add_string(struct builder *b, const char *str, uint32_t *off)
{
    size_t at = b->arena.len;
    int r = khx_buf_append(&b->arena, str, strlen(str) + 1);
    if (r == KH_OK)
        *off = (uint32_t)at;
    return r;
}

/* Finds or adds the (category, source) pair; *tag gets its index. Returns
 * KH_OK, KH_ENOMEM, or KH_ELIMIT past 65,535 distinct pairs. */
static int intern_tag(struct builder *b, const char *cat, const char *src, size_t *tag)
{
    int r;
    if (b->have_last && tag_equals(b, b->last_tag, cat, src)) {
        *tag = b->last_tag;
        return KH_OK;
    }
    if (b->tag_cap == 0 && (r = tag_grow(b)) != KH_OK)
        return r;
    uint64_t h = tag_hash(b, cat, src);
    size_t i = (size_t)h & (b->tag_cap - 1);
    for (; b->tag_slots[i] != 0; i = (i + 1) & (b->tag_cap - 1)) {
        if (tag_equals(b, b->tag_slots[i] - 1, cat, src)) {
            *tag = b->last_tag = b->tag_slots[i] - 1;
            b->have_last = 1;
            return KH_OK;
        }
    }
    if (b->tags.len >= TAG_MAX)
        return KH_ELIMIT;
    struct tag tg;
    if ((r = arena_add_string(b, cat, &tg.category)) != KH_OK ||
        (r = arena_add_string(b, src, &tg.source)) != KH_OK)
        return r;
    struct tag *slot = khx_vec_push(&b->tags);
    if (slot == NULL)
        return KH_ENOMEM;
    *slot = tg;
    b->tag_slots[i] = (uint32_t)b->tags.len;
    *tag = b->last_tag = b->tags.len - 1;
    b->have_last = 1;
    /* Keep the table at most half full. */
    if (b->tags.len * 2 > b->tag_cap && (r = tag_grow(b)) != KH_OK)
        return r;
    return KH_OK;
}

/* Appends the indicator's record to the arena and its entry to the right
 * vector. */
static int add_indicator(struct builder *b, const struct parsed *p)
{
    size_t tag = 0;
    int r = intern_tag(b, p->category, p->source, &tag);
    if (r != KH_OK)
        return r;
    size_t at = b->arena.len;
    uint8_t tl[2] = {(uint8_t)tag, (uint8_t)(tag >> 8)};
    if ((r = khx_buf_append(&b->arena, tl, 2)) != KH_OK ||
        (r = khx_buf_append(&b->arena, p->value, strlen(p->value) + 1)) != KH_OK)
        return r;
    uint32_t ref = (uint32_t)at;
    if (p->kind == IOC_DOMAIN) {
        uint32_t *d = khx_vec_push(&b->dom);
        if (d == NULL)
            return KH_ENOMEM;
        *d = ref;
    } else if (p->kind == IOC_IP_PORT && p->family == AF_INET) {
        struct port4 *e = khx_vec_push(&b->p4);
        if (e == NULL)
            return KH_ENOMEM;
        e->addr = load_be32(p->addr);
        e->port = p->port;
        e->ref = ref;
    } else if (p->kind == IOC_IP_PORT) {
        struct port6 *e = khx_vec_push(&b->p6);
        if (e == NULL)
            return KH_ENOMEM;
        memcpy(e->addr, p->addr, 16);
        e->port = p->port;
        e->ref = ref;
    } else if (p->family == AF_INET) {
        struct net4 *e = khx_vec_push(&b->v4[p->prefix]);
        if (e == NULL)
            return KH_ENOMEM;
        e->addr = load_be32(p->addr);
        e->ref = ref;
    } else {
        struct net6 *e = khx_vec_push(&b->v6[p->prefix]);
        if (e == NULL)
            return KH_ENOMEM;
        memcpy(e->addr, p->addr, 16);
        e->ref = ref;
    }
    return KH_OK;
}

/* Finds `name` (n bytes, lowercase) in the domain table. */
static int dom_find(const struct ioc_set *s, const char *name, size_t n, uint32_t *ref)
{
    if (s->dom_cap == 0)
        return 0;
    size_t mask = s->dom_cap - 1;
    for (size_t i = (size_t)hash_bytes(s->key, name, n) & mask;; i = (i + 1) & mask) {
        uint32_t r = s->dom[i];
        if (r == EMPTY_SLOT)
            return 0;
        const char *v = s->arena + r + 2;
        if (strncmp(v, name, n) == 0 && v[n] == '\0') {
            *ref = r;
            return 1;
        }
    }
}

/* Builds the domain hash table, at most three-quarters full, from the
 * records in line order; a repeated name keeps its first record. */
static int build_domains(struct builder *b)
{
    struct ioc_set *s = b->s;
    size_t cap = 16;
    while (cap / 4 * 3 < b->dom.len + 1)
        cap *= 2;
    if ((s->dom = malloc(cap * sizeof(*s->dom))) == NULL)
        return KH_ENOMEM;
    memset(s->dom, 0xff, cap * sizeof(*s->dom));
    s->dom_cap = cap;
    for (size_t k = 0; k < b->dom.len; k++) {
        uint32_t ref = *KHX_VEC_AT(&b->dom, uint32_t, k), found;
        const char *v = s->arena + ref + 2;
        size_t n = strlen(v);
        if (dom_find(s, v, n, &found))
            continue;
        size_t i = (size_t)hash_bytes(s->key, v, n) & (cap - 1);
        while (s->dom[i] != EMPTY_SLOT)
            i = (i + 1) & (cap - 1);
        s->dom[i] = ref;
        s->ndom++;
    }
    khx_vec_free(&b->dom);
    return KH_OK;
}

/* Turns the builder's vectors into the set's tables. */
static int builder_finish(struct builder *b)
{
    struct ioc_set *s = b->s;
    size_t len = 0;
    /* The arena is final: shrink it to its size before pointing into it. */
    uint8_t *data = khx_buf_steal(&b->arena, &len);
    char *shrunk = len > 0 ? realloc(data, len) : NULL;
    s->arena = shrunk ? shrunk : (char *)data;
    s->arena_len = len;
    s->ntags = b->tags.len;
    s->tags = b->tags.items;
    b->tags.items = NULL;
    b->tags.len = b->tags.cap = 0;
    for (size_t i = 1; i < KHX_ARRAY_LEN(b->v4); i++)
        finish_table(&b->v4[i], cmp_net4, same_net4, &s->v4[i]);
    for (size_t i = 1; i < KHX_ARRAY_LEN(b->v6); i++)
        finish_table(&b->v6[i], cmp_net6, same_net6, &s->v6[i]);
    finish_table(&b->p4, cmp_port4, same_port4, &s->p4);
    finish_table(&b->p6, cmp_port6, same_port6, &s->p6);
    return build_domains(b);
}

void ioc_set_free(struct ioc_set *s)
{
    if (s == NULL)
        return;
    free(s->arena);
    free(s->tags);
    for (size_t i = 0; i < KHX_ARRAY_LEN(s->v4); i++)
        free(s->v4[i].e);
    for (size_t i = 0; i < KHX_ARRAY_LEN(s->v6); i++)
        free(s->v6[i].e);
    free(s->p4.e);
    free(s->p6.e);
    free(s->dom);
    sodium_memzero(s->key, sizeof(s->key));
    free(s);
}

int ioc_set_load(const char *text, size_t len, size_t max, struct ioc_set **out, size_t *bad,
                 char *err, size_t errlen)
{
    struct builder b;
    struct khx_lines it;
    struct parsed p;
    const char *line;
    size_t n, count = 0, nbad = 0;
    char why[256];
    int r = KH_ENOMEM;

    if (out == NULL || (text == NULL && len > 0)) {
        khx_errf(err, errlen, "invalid argument");
        return KH_EINVAL;
    }
    *out = NULL;
    if (bad != NULL)
        *bad = 0;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (max == 0)
        max = DEFAULT_MAX;
    memset(&b, 0, sizeof(b));
    if (sodium_init() < 0 || (b.s = calloc(1, sizeof(*b.s))) == NULL) {
        khx_errf(err, errlen, "out of memory");
        return KH_ENOMEM;
    }
    randombytes_buf(b.s->key, sizeof(b.s->key));
    khx_buf_init(&b.arena, ARENA_MAX);
    khx_vec_init(&b.tags, sizeof(struct tag), TAG_MAX);
    for (size_t i = 0; i < KHX_ARRAY_LEN(b.v4); i++)
        khx_vec_init(&b.v4[i], sizeof(struct net4), max);
    for (size_t i = 0; i < KHX_ARRAY_LEN(b.v6); i++)
        khx_vec_init(&b.v6[i], sizeof(struct net6), max);
    khx_vec_init(&b.p4, sizeof(struct port4), max);
    khx_vec_init(&b.p6, sizeof(struct port6), max);
    khx_vec_init(&b.dom, sizeof(uint32_t), max);

    khx_lines_init(&it, text, len);
    while (khx_lines_next(&it, &line, &n)) {
        int pr = parse_line(line, n, &p, why, sizeof(why));
        if (pr == 0)
            continue;
        if (pr < 0) {
            if (nbad++ == 0)
                khx_errf(err, errlen, "line %u: %s", it.lineno, why);
            continue;
        }
        if (count == max) {
            khx_errf(err, errlen, "line %u: more than %zu indicators", it.lineno, max);
            r = KH_ELIMIT;
            goto out;
        }
        if ((r = add_indicator(&b, &p)) != KH_OK) {
            khx_errf(err, errlen, "line %u: %s", it.lineno,
                     r == KH_ELIMIT ? "the list is too large (text or distinct category/source"
                                      " pairs)"
                                    : "out of memory");
            goto out;
        }
        count++;
    }
    if ((r = builder_finish(&b)) != KH_OK) {
        khx_errf(err, errlen, "out of memory");
        goto out;
    }
    if (bad != NULL)
        *bad = nbad;
    *out = b.s;
    b.s = NULL;
    r = KH_OK;
out:
    builder_free(&b);
    ioc_set_free(b.s);
    return r;
}

void ioc_set_counts(const struct ioc_set *s, size_t counts[IOC_KIND_COUNT])
{
    memset(counts, 0, IOC_KIND_COUNT * sizeof(counts[0]));
    if (s == NULL)
        return;
    for (size_t i = 1; i < KHX_ARRAY_LEN(s->v4); i++)
        counts[i == 32 ? IOC_IP : IOC_CIDR] += s->v4[i].n;
    for (size_t i = 1; i < KHX_ARRAY_LEN(s->v6); i++)
        counts[i == 128 ? IOC_IP : IOC_CIDR] += s->v6[i].n;
    counts[IOC_IP_PORT] = s->p4.n + s->p6.n;
    counts[IOC_DOMAIN] = s->ndom;
}

size_t ioc_set_memory(const struct ioc_set *s)
{
    if (s == NULL)
        return 0;
    size_t total = sizeof(*s) + s->arena_len + s->ntags * sizeof(struct tag) +
                   s->p4.n * sizeof(struct port4) + s->p6.n * sizeof(struct port6) +
                   s->dom_cap * sizeof(*s->dom);
    for (size_t i = 0; i < KHX_ARRAY_LEN(s->v4); i++)
        total += s->v4[i].n * sizeof(struct net4);
    for (size_t i = 0; i < KHX_ARRAY_LEN(s->v6); i++)
        total += s->v6[i].n * sizeof(struct net6);
    return total;
}

/* ------------------------------------------------------------------------ */
/* Lookups.                                                                  */
/* ------------------------------------------------------------------------ */

static const struct net4 *find_net4(const struct table *t, uint32_t addr)
{
    const struct net4 *e = t->e;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (e[mid].addr == addr)
            return &e[mid];
        if (e[mid].addr < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const struct net6 *find_net6(const struct table *t, const uint8_t addr[16])
{
    const struct net6 *e = t->e;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(e[mid].addr, addr, 16);
        if (c == 0)
            return &e[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The first entry not below (addr, port); port 0 sorts before every real
 * port, so with port 0 this finds the address's first entry if any. */
static const struct port4 *find_port4(const struct table *t, uint32_t addr, uint16_t port)
{
    const struct port4 *e = t->e;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (e[mid].addr < addr || (e[mid].addr == addr && e[mid].port < port))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < t->n && e[lo].addr == addr && (port == 0 || e[lo].port == port))
        return &e[lo];
    return NULL;
}

static const struct port6 *find_port6(const struct table *t, const uint8_t addr[16], uint16_t port)
{
    const struct port6 *e = t->e;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(e[mid].addr, addr, 16);
        if (c < 0 || (c == 0 && e[mid].port < port))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < t->n && memcmp(e[lo].addr, addr, 16) == 0 && (port == 0 || e[lo].port == port))
        return &e[lo];
    return NULL;
}

static int match_v4(const struct ioc_set *s, uint32_t addr, uint16_t port, struct ioc_match *m)
{
    const struct port4 *pe;
    if (port != 0 && (pe = find_port4(&s->p4, addr, port)) != NULL) {
        fill_match(s, IOC_IP_PORT, pe->ref, m);
        return 1;
    }
    for (unsigned len = 32; len >= 1; len--) {
        if (s->v4[len].n == 0)
            continue;
        uint32_t masked = len == 32 ? addr : addr & ~(UINT32_MAX >> len);
        const struct net4 *e = find_net4(&s->v4[len], masked);
        if (e != NULL) {
            fill_match(s, len == 32 ? IOC_IP : IOC_CIDR, e->ref, m);
            return 1;
        }
    }
    /* Without a port, an address:port entry for the address still says
     * the address is listed; it is the least specific answer. */
    if (port == 0 && (pe = find_port4(&s->p4, addr, 0)) != NULL) {
        fill_match(s, IOC_IP_PORT, pe->ref, m);
        return 1;
    }
    return 0;
}

static int match_v6(const struct ioc_set *s, const uint8_t addr[16], uint16_t port,
                    struct ioc_match *m)
{
    const struct port6 *pe;
    uint8_t masked[16];
    if (port != 0 && (pe = find_port6(&s->p6, addr, port)) != NULL) {
        fill_match(s, IOC_IP_PORT, pe->ref, m);
        return 1;
    }
    for (unsigned len = 128; len >= 1; len--) {
        if (s->v6[len].n == 0)
            continue;
        memcpy(masked, addr, 16);
        clear_host_bits(masked, 16, len);
        const struct net6 *e = find_net6(&s->v6[len], masked);
        if (e != NULL) {
            fill_match(s, len == 128 ? IOC_IP : IOC_CIDR, e->ref, m);
            return 1;
        }
    }
    if (port == 0 && (pe = find_port6(&s->p6, addr, 0)) != NULL) {
        fill_match(s, IOC_IP_PORT, pe->ref, m);
        return 1;
    }
    return 0;
}

int ioc_match_addr(const struct ioc_set *s, int family, const void *addr, uint16_t port,
                   struct ioc_match *m)
{
    if (s == NULL || addr == NULL)
        return 0;
    if (family == AF_INET)
        return match_v4(s, load_be32(addr), port, m);
    if (family != AF_INET6)
        return 0;
    if (is_mapped_v4(addr))
        return match_v4(s, load_be32((const uint8_t *)addr + 12), port, m);
    return match_v6(s, addr, port, m);
}

int ioc_match_domain(const struct ioc_set *s, const char *name, struct ioc_match *m)
{
    char buf[DOMAIN_MAX_LEN + 1];
    uint32_t ref;
    if (s == NULL || name == NULL || s->ndom == 0)
        return 0;
    size_t n = strnlen(name, DOMAIN_MAX_LEN + 2);
    if (n > 0 && name[n - 1] == '.')
        n--;
    if (n == 0 || n > DOMAIN_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        buf[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    buf[n] = '\0';
    /* The name itself, then each parent: a.b.example.com, b.example.com,
     * example.com (a single label is never listed). */
    for (size_t off = 0; off < n;) {
        if (dom_find(s, buf + off, n - off, &ref)) {
            fill_match(s, IOC_DOMAIN, ref, m);
            return 1;
        }
        const char *dot = memchr(buf + off, '.', n - off);
        if (dot == NULL)
            break;
        off = (size_t)(dot - buf) + 1;
    }
    return 0;
}
