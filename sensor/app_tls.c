/*
 * TLS ClientHello parser (decode.h: sen_tls_client_hello): the server name
 * (SNI), the first ALPN protocol and the two client fingerprints that
 * indicator feeds publish, JA3 (Salesforce) and JA4 (FoxIO). The TCP decoder
 * calls it on the first bytes a client sends (record=1); the QUIC Initial
 * decryptor (app_quic.c) calls it on joined CRYPTO data (record=0, quic=1).
 *
 * Everything here is hostile input: each length is checked against what is
 * left before it is used, counts are capped, and a message that claims more
 * than SEN_TLS_MAX_HELLO bytes is refused instead of being waited for.
 * docs/internals/sensor-tls-quic.md describes the fingerprints exactly.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "khx.h"

/* The largest ClientHello we wait for or parse. Real ones are 200 bytes to
 * about 2 KiB (post-quantum key shares); a bigger claim is an attack or
 * garbage and would only make the flow buffer hold bytes for nothing. */
#define SEN_TLS_MAX_HELLO (32 * 1024)
/* TLSPlaintext.length may not exceed 2^14; some stacks send a little more. */
#define TLS_MAX_RECORD (16384 + 2048)

/* Caps on the lists a fingerprint is made of. A ClientHello over them is
 * refused as malformed rather than fingerprinted wrongly. */
#define MAX_CIPHERS 1024
#define MAX_EXTS    512
#define MAX_GROUPS  512
#define MAX_SIGALGS 512
#define MAX_FORMATS 256

/* A forward-only reader over a bounded byte range. `bad` is set on the first
 * read past the end, after which every read returns 0, so a parser can read
 * a whole structure and check once. */
struct rd {
    const uint8_t *p;
    size_t n, off;
    int bad;
};

static int rd_need(struct rd *r, size_t k)
{
    if (r->bad || r->n - r->off < k) {
        r->bad = 1;
        return 0;
    }
    return 1;
}

static unsigned rd_u8(struct rd *r)
{
    if (!rd_need(r, 1))
        return 0;
    return r->p[r->off++];
}

static unsigned rd_u16(struct rd *r)
{
    if (!rd_need(r, 2))
        return 0;
    unsigned v = ((unsigned)r->p[r->off] << 8) | r->p[r->off + 1];
    r->off += 2;
    return v;
}

/* Returns a sub-reader over the next k bytes and skips them. */
static struct rd rd_sub(struct rd *r, size_t k)
{
    struct rd s = {NULL, 0, 0, 1};
    if (!rd_need(r, k))
        return s;
    s.p = r->p + r->off;
    s.n = k;
    s.bad = 0;
    r->off += k;
    return s;
}

static size_t rd_left(const struct rd *r)
{
    return r->bad ? 0 : r->n - r->off;
}

/* GREASE values (RFC 8701) are 0x?a?a with both bytes equal. */
static int is_grease(unsigned v)
{
    return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

/* What the fingerprints are made of, collected in wire order with GREASE
 * already removed. Lives on the heap: about 6 KiB. */
struct hello {
    unsigned version;      /* legacy_version */
    unsigned best_version; /* highest supported_versions entry, 0 = none */
    int has_sni;           /* the server_name extension is present */
    const uint8_t *alpn;   /* first ALPN value on the wire */
    size_t alpn_len;
    size_t n_ciphers, n_exts, n_groups, n_formats, n_sigalgs;
    uint16_t ciphers[MAX_CIPHERS];
    uint16_t exts[MAX_EXTS];
    uint16_t groups[MAX_GROUPS];
    uint8_t formats[MAX_FORMATS];
    uint16_t sigalgs[MAX_SIGALGS];
};

/* Copies the first host_name of a server_name extension into ch->sni,
 * lowercased. A name with bytes outside printable ASCII (or too long) is
 * not copied: the extension still counts for JA4, the name is just unusable
 * as an indicator. Returns 0, or -1 when the extension is malformed. */
static int parse_sni(struct rd ext, struct sen_client_hello *ch, struct hello *h)
{
    h->has_sni = 1;
    if (rd_left(&ext) == 0)
        return 0; /* a server's empty echo; a client may not send it, but it is harmless */
    struct rd list = rd_sub(&ext, rd_u16(&ext));
    if (ext.bad || rd_left(&ext) != 0)
        return -1;
    while (rd_left(&list) > 0) {
        unsigned type = rd_u8(&list);
        struct rd name = rd_sub(&list, rd_u16(&list));
        if (list.bad)
            return -1;
        if (type != 0 || ch->sni[0] != '\0')
            continue;
        if (name.n == 0 || name.n >= sizeof(ch->sni))
            continue;
        size_t i;
        for (i = 0; i < name.n; i++) {
            if (name.p[i] <= 0x20 || name.p[i] >= 0x7f)
                break;
        }
        if (i < name.n)
            continue;
        for (i = 0; i < name.n; i++)
            ch->sni[i] = (char)tolower(name.p[i]);
        ch->sni[name.n] = '\0';
    }
    return 0;
}

/* Keeps the first protocol of an ALPN extension (raw, for JA4) and copies it
 * into ch->alpn when it is printable and fits. */
static int parse_alpn(struct rd ext, struct sen_client_hello *ch, struct hello *h)
{
    struct rd list = rd_sub(&ext, rd_u16(&ext));
    if (ext.bad || rd_left(&ext) != 0)
        return -1;
    int first = 1;
    while (rd_left(&list) > 0) {
        struct rd proto = rd_sub(&list, rd_u8(&list));
        if (list.bad)
            return -1;
        if (!first)
            continue;
        first = 0;
        h->alpn = proto.p;
        h->alpn_len = proto.n;
        if (proto.n == 0 || proto.n >= sizeof(ch->alpn))
            continue;
        size_t i;
        for (i = 0; i < proto.n; i++) {
            if (proto.p[i] < 0x20 || proto.p[i] >= 0x7f)
                break;
        }
        if (i == proto.n) {
            memcpy(ch->alpn, proto.p, proto.n);
            ch->alpn[proto.n] = '\0';
        }
    }
    return 0;
}

/* Reads a list of 16-bit values with a length prefix of `prefix` bytes (1 or
 * 2) into out[], dropping GREASE. Returns 0, or -1 when malformed or over cap. */
static int parse_u16_list(struct rd ext, int prefix, uint16_t *out, size_t cap, size_t *n)
{
    size_t len = prefix == 1 ? rd_u8(&ext) : rd_u16(&ext);
    struct rd list = rd_sub(&ext, len);
    if (ext.bad || rd_left(&ext) != 0 || len % 2 != 0)
        return -1;
    *n = 0;
    while (rd_left(&list) > 0) {
        unsigned v = rd_u16(&list);
        if (is_grease(v))
            continue;
        if (*n >= cap)
            return -1;
        out[(*n)++] = (uint16_t)v;
    }
    return 0;
}

static int parse_extension(unsigned type, struct rd ext, struct sen_client_hello *ch,
                           struct hello *h)
{
    switch (type) {
    case 0x0000:
        return parse_sni(ext, ch, h);
    case 0x0010:
        return parse_alpn(ext, ch, h);
    case 0x000a:
        return parse_u16_list(ext, 2, h->groups, MAX_GROUPS, &h->n_groups);
    case 0x000d:
        return parse_u16_list(ext, 2, h->sigalgs, MAX_SIGALGS, &h->n_sigalgs);
    case 0x000b: {
        struct rd list = rd_sub(&ext, rd_u8(&ext));
        if (ext.bad || rd_left(&ext) != 0 || list.n > MAX_FORMATS)
            return -1;
        memcpy(h->formats, list.p, list.n);
        h->n_formats = list.n;
        return 0;
    }
    case 0x002b: {
        uint16_t v[128];
        size_t n = 0;
        if (parse_u16_list(ext, 1, v, 128, &n) != 0)
            return -1;
        for (size_t i = 0; i < n; i++) {
            if (v[i] > h->best_version)
                h->best_version = v[i];
        }
        return 0;
    }
    default:
        return 0;
    }
}

/* Parses the ClientHello body (after the 4-byte handshake header). */
static int parse_body(struct rd body, struct sen_client_hello *ch, struct hello *h)
{
    h->version = rd_u16(&body);
    (void)rd_sub(&body, 32); /* random */
    struct rd sid = rd_sub(&body, rd_u8(&body));
    struct rd ciphers = rd_sub(&body, rd_u16(&body));
    struct rd comp = rd_sub(&body, rd_u8(&body));
    if (body.bad || sid.n > 32 || ciphers.n % 2 != 0)
        return -1;
    (void)comp;
    while (rd_left(&ciphers) > 0) {
        unsigned v = rd_u16(&ciphers);
        if (is_grease(v))
            continue;
        if (h->n_ciphers >= MAX_CIPHERS)
            return -1;
        h->ciphers[h->n_ciphers++] = (uint16_t)v;
    }
    if (rd_left(&body) == 0)
        return 0; /* no extensions at all (SSL 3.0 style) */
    struct rd exts = rd_sub(&body, rd_u16(&body));
    if (body.bad)
        return -1;
    while (rd_left(&exts) > 0) {
        unsigned type = rd_u16(&exts);
        struct rd ext = rd_sub(&exts, rd_u16(&exts));
        if (exts.bad)
            return -1;
        if (is_grease(type))
            continue;
        if (h->n_exts >= MAX_EXTS)
            return -1;
        h->exts[h->n_exts++] = (uint16_t)type;
        if (parse_extension(type, ext, ch, h) != 0)
            return -1;
    }
    return 0;
}

/* A bounded text builder. Callers size it for the worst case, so a short
 * write is a bug, reported as failure rather than a wrong hash. */
struct txt {
    char *s;
    size_t n, cap;
    int overflow;
};

static void txt_str(struct txt *t, const char *str)
{
    size_t k = strlen(str);
    if (t->overflow || k >= t->cap - t->n) {
        t->overflow = 1;
        return;
    }
    memcpy(t->s + t->n, str, k + 1);
    t->n += k;
}

/* Appends v in decimal, or as 4 lowercase hex digits when hex is set. */
static void txt_num(struct txt *t, unsigned v, int hex)
{
    char b[16];
    if (hex)
        snprintf(b, sizeof(b), "%04x", v);
    else
        snprintf(b, sizeof(b), "%u", v);
    txt_str(t, b);
}

static int cmp_u16(const void *a, const void *b)
{
    unsigned x = *(const uint16_t *)a, y = *(const uint16_t *)b;
    return (x > y) - (x < y);
}

/* Appends "v1<sep>v2..." with each value formatted by fmt. */
static void txt_join(struct txt *t, const uint16_t *v, size_t n, const char *sep, int hex)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            txt_str(t, sep);
        txt_num(t, v[i], hex);
    }
}

/* SHA-256 of text, first 12 hex characters, into out[13]. */
static int ja4_hash12(const char *text, size_t len, char out[13])
{
    uint8_t d[32];
    char hex[65];
    if (khx_sha256(text, len, d) != 0)
        return -1;
    khx_hex_encode(d, 32, hex);
    memcpy(out, hex, 12);
    out[12] = '\0';
    return 0;
}

static const char *ja4_version(unsigned v)
{
    switch (v) {
    case 0x0304:
        return "13";
    case 0x0303:
        return "12";
    case 0x0302:
        return "11";
    case 0x0301:
        return "10";
    case 0x0300:
        return "s3";
    case 0x0002:
        return "s2";
    case 0xfeff:
        return "d1";
    case 0xfefd:
        return "d2";
    case 0xfefc:
        return "d3";
    default:
        return "00";
    }
}

static int is_alnum_byte(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* JA4_a's last two characters: the first and last character of the first
 * ALPN value; when either is not alphanumeric, the first and last hex digit
 * of the value instead; "00" without a (non-empty) value. */
static void ja4_alpn(const struct hello *h, char out[3])
{
    static const char hexd[] = "0123456789abcdef";
    out[0] = out[1] = '0';
    out[2] = '\0';
    if (h->alpn == NULL || h->alpn_len == 0)
        return;
    uint8_t first = h->alpn[0], last = h->alpn[h->alpn_len - 1];
    if (is_alnum_byte(first) && is_alnum_byte(last)) {
        out[0] = (char)first;
        out[1] = (char)last;
    } else {
        out[0] = hexd[first >> 4];
        out[1] = hexd[last & 0x0f];
    }
}

/* Builds ja3_string, ja3 and ja4 from h. text is scratch of cap bytes. */
static int fingerprint(struct hello *h, int quic, struct sen_client_hello *ch, char *text,
                       size_t cap)
{
    struct txt t = {text, 0, cap, 0};
    uint8_t md5[16];
    text[0] = '\0';

    /* JA3: version,ciphers,extensions,groups,point formats (decimal). */
    txt_num(&t, h->version, 0);
    txt_str(&t, ",");
    txt_join(&t, h->ciphers, h->n_ciphers, "-", 0);
    txt_str(&t, ",");
    txt_join(&t, h->exts, h->n_exts, "-", 0);
    txt_str(&t, ",");
    txt_join(&t, h->groups, h->n_groups, "-", 0);
    txt_str(&t, ",");
    for (size_t i = 0; i < h->n_formats; i++) {
        if (i > 0)
            txt_str(&t, "-");
        txt_num(&t, h->formats[i], 0);
    }
    if (t.overflow || khx_md5(t.s, t.n, md5) != 0)
        return -1;
    khx_hex_encode(md5, 16, ch->ja3);
    snprintf(ch->ja3_string, sizeof(ch->ja3_string), "%s", t.s);

    /* JA4_a. */
    unsigned ver = h->best_version != 0 ? h->best_version : h->version;
    size_t nc = h->n_ciphers > 99 ? 99 : h->n_ciphers;
    size_t ne = h->n_exts > 99 ? 99 : h->n_exts;
    char alpn[3], b[13], c[13];
    ja4_alpn(h, alpn);

    /* JA4_b: sorted cipher list. */
    if (h->n_ciphers == 0) {
        memcpy(b, "000000000000", 13);
    } else {
        qsort(h->ciphers, h->n_ciphers, sizeof(uint16_t), cmp_u16);
        t.n = 0;
        t.s[0] = '\0';
        txt_join(&t, h->ciphers, h->n_ciphers, ",", 1);
        if (t.overflow || ja4_hash12(t.s, t.n, b) != 0)
            return -1;
    }

    /* JA4_c: sorted extensions without SNI and ALPN, then '_' and the
     * signature algorithms in wire order (no '_' when there are none). */
    size_t k = 0;
    for (size_t i = 0; i < h->n_exts; i++) {
        if (h->exts[i] != 0x0000 && h->exts[i] != 0x0010)
            h->exts[k++] = h->exts[i];
    }
    if (k == 0) {
        memcpy(c, "000000000000", 13);
    } else {
        qsort(h->exts, k, sizeof(uint16_t), cmp_u16);
        t.n = 0;
        t.s[0] = '\0';
        txt_join(&t, h->exts, k, ",", 1);
        if (h->n_sigalgs > 0) {
            txt_str(&t, "_");
            txt_join(&t, h->sigalgs, h->n_sigalgs, ",", 1);
        }
        if (t.overflow || ja4_hash12(t.s, t.n, c) != 0)
            return -1;
    }
    snprintf(ch->ja4, sizeof(ch->ja4), "%c%s%c%02zu%02zu%s_%s_%s", quic ? 'q' : 't',
             ja4_version(ver), h->has_sni ? 'd' : 'i', nc, ne, alpn, b, c);
    return 0;
}

/* Parses one complete handshake message (header included). */
static int parse_handshake(const uint8_t *msg, size_t len, int quic, struct sen_client_hello *ch)
{
    struct hello *h = NULL;
    char *text = NULL;
    /* A listed 16-bit value takes at most 6 characters ("65535-"), a point
     * format 4 ("255-"): never more than 4 characters per message byte. */
    size_t cap = 4 * len + 64;
    int r = -1;

    struct rd body = {msg + 4, len - 4, 0, 0};
    if ((h = calloc(1, sizeof(*h))) == NULL || (text = malloc(cap)) == NULL)
        goto out;
    memset(ch, 0, sizeof(*ch));
    if (parse_body(body, ch, h) != 0 || fingerprint(h, quic, ch, text, cap) != 0) {
        memset(ch, 0, sizeof(*ch));
        goto out;
    }
    r = 1;
out:
    free(text);
    free(h);
    return r;
}

/* Checks a TLS record header at p (5 bytes present): a handshake record of a
 * plausible size. */
static int record_ok(const uint8_t *p)
{
    size_t rlen = ((size_t)p[3] << 8) | p[4];
    return p[0] == 22 && p[1] == 3 && p[2] <= 4 && rlen > 0 && rlen <= TLS_MAX_RECORD;
}

/* Joins the handshake bytes of consecutive handshake records into out[need].
 * Returns 1 when complete, 0 when the data ends first, -1 when a record in
 * between is not a handshake record. */
static int join_records(const uint8_t *data, size_t len, uint8_t *out, size_t need)
{
    size_t off = 0, have = 0;
    while (have < need) {
        if (len - off < 5)
            return 0;
        if (!record_ok(data + off))
            return -1;
        size_t rlen = ((size_t)data[off + 3] << 8) | data[off + 4];
        off += 5;
        size_t avail = len - off < rlen ? len - off : rlen;
        size_t take = need - have < avail ? need - have : avail;
        memcpy(out + have, data + off, take);
        have += take;
        if (avail < rlen && have < need)
            return 0;
        off += rlen;
    }
    return 1;
}

int sen_tls_client_hello(const uint8_t *data, size_t len, int record, int quic,
                         struct sen_client_hello *ch)
{
    const uint8_t *hs = data;
    size_t avail = len;

    if (data == NULL || ch == NULL)
        return -1;
    if (record) {
        if (len < 1)
            return 0;
        if (data[0] != 22)
            return -1;
        if (len < 5)
            return (len < 2 || data[1] == 3) && (len < 3 || data[2] <= 4) ? 0 : -1;
        if (!record_ok(data))
            return -1;
        size_t rlen = ((size_t)data[3] << 8) | data[4];
        hs = data + 5;
        avail = len - 5 < rlen ? len - 5 : rlen;
    }
    if (avail < 1)
        return 0;
    if (hs[0] != 1)
        return -1;
    uint8_t head[4];
    if (avail >= 4) {
        memcpy(head, hs, 4);
    } else if (!record) {
        return 0;
    } else {
        /* The handshake header itself spans records (legal, if odd). */
        int jr = join_records(data, len, head, 4);
        if (jr != 1)
            return jr;
    }
    size_t hlen = ((size_t)head[1] << 16) | ((size_t)head[2] << 8) | head[3];
    if (hlen < 2 + 32 + 1 + 2 + 1 || hlen + 4 > SEN_TLS_MAX_HELLO)
        return -1;
    if (avail >= hlen + 4)
        return parse_handshake(hs, hlen + 4, quic, ch);
    if (!record)
        return 0;
    /* The message is longer than the first record holds (or than what has
     * arrived): join the records it spans. */
    uint8_t *joined = malloc(hlen + 4);
    if (joined == NULL)
        return -1;
    int r = join_records(data, len, joined, hlen + 4);
    if (r == 1)
        r = parse_handshake(joined, hlen + 4, quic, ch);
    free(joined);
    return r;
}
