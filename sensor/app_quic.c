/*
 * QUIC Initial decryption (decode.h: sen_quic_initial). A QUIC client's
 * first packets are encrypted, but with keys anyone can derive from the
 * Destination Connection ID in the clear header (RFC 9001 section 5.2,
 * RFC 9369 section 3.3 for version 2). This file derives them, removes the
 * header protection, decrypts the payload with AES-128-GCM, joins the CRYPTO
 * frames of the packet by offset and hands the ClientHello to
 * sen_tls_client_hello (app_tls.c) for its SNI, ALPN, JA3 and JA4.
 *
 * Only the first packet of a datagram is looked at: a client's Initial is
 * always first when packets are coalesced. A ClientHello that continues in
 * other Initial packets of the same connection (large post-quantum key
 * shares make Chrome's and Firefox's hellos span two or three) is joined
 * across them in a bounded table (struct sen_quic_joins): keyed by the
 * client's and server's addresses and ports and the DCID, at most
 * QUIC_CRYPTO_MAX bytes per connection, a fixed number of connections with
 * the oldest evicted, and entries that wait longer than a timeout dropped.
 * docs/internals/sensor-tls-quic.md has the details and limits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "decode.h"

/* CRYPTO data is joined into a buffer this large; bytes beyond it are
 * ignored (a ClientHello that long is refused by app_tls.c anyway). */
#define QUIC_CRYPTO_MAX (16 * 1024)
/* A connection ID is at most 20 bytes in versions 1 and 2. */
#define QUIC_MAX_CID 20
/* A UDP datagram cannot carry more. */
#define QUIC_MAX_PACKET 65535

struct quic_version {
    uint32_t version;
    uint8_t salt[20];
    const char *key_label, *iv_label, *hp_label;
    unsigned initial_type; /* the long-header packet type bits of an Initial */
};

static const struct quic_version quic_versions[] = {
    {0x00000001,
     {0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
      0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a},
     "quic key",
     "quic iv",
     "quic hp",
     0},
    {0x6b3343cf,
     {0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93,
      0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9},
     "quicv2 key",
     "quicv2 iv",
     "quicv2 hp",
     1},
    /* Drafts 29 to 32 share one salt; older clients still send them. */
    {0xff00001d,
     {0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97,
      0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0, 0x43, 0x90, 0xa8, 0x99},
     "quic key",
     "quic iv",
     "quic hp",
     0},
};

static const struct quic_version *find_version(uint32_t v)
{
    if (v >= 0xff00001d && v <= 0xff000020)
        v = 0xff00001d;
    for (size_t i = 0; i < sizeof(quic_versions) / sizeof(quic_versions[0]); i++) {
        if (quic_versions[i].version == v)
            return &quic_versions[i];
    }
    return NULL;
}

/* Reads a QUIC variable-length integer (RFC 9000 section 16). Returns 0, or
 * -1 when it runs past len. */
static int read_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v)
{
    if (*off >= len)
        return -1;
    size_t n = (size_t)1 << (p[*off] >> 6);
    if (len - *off < n)
        return -1;
    uint64_t x = p[*off] & 0x3f;
    for (size_t i = 1; i < n; i++)
        x = (x << 8) | p[*off + i];
    *off += n;
    *v = x;
    return 0;
}

/* HKDF-Expand-Label (RFC 8446 section 7.1) with an empty context, for
 * outputs of at most one SHA-256 block, which is all QUIC's Initial keys
 * need: the expansion is then a single HMAC. */
static int expand_label(const uint8_t secret[32], const char *label, uint8_t *out, size_t out_len)
{
    uint8_t info[2 + 1 + 6 + 32 + 1 + 1], block[32];
    size_t llen = strlen(label), n = 0;
    unsigned blen = 0;
    int r = -1;

    if (out_len > 32 || 6 + llen > 32)
        return -1;
    info[n++] = 0;
    info[n++] = (uint8_t)out_len;
    info[n++] = (uint8_t)(6 + llen);
    memcpy(info + n, "tls13 ", 6);
    n += 6;
    memcpy(info + n, label, llen);
    n += llen;
    info[n++] = 0; /* empty context */
    info[n++] = 1; /* HKDF-Expand counter T(1) */
    if (HMAC(EVP_sha256(), secret, 32, info, n, block, &blen) == NULL || blen != 32)
        goto out;
    memcpy(out, block, out_len);
    r = 0;
out:
    OPENSSL_cleanse(block, sizeof(block));
    return r;
}

struct initial_keys {
    uint8_t key[16], iv[12], hp[16];
};

/* The client's Initial keys for a DCID (RFC 9001 section 5.2). */
static int derive_keys(const struct quic_version *qv, const uint8_t *dcid, size_t dcid_len,
                       struct initial_keys *k)
{
    uint8_t initial[32], client[32];
    unsigned n = 0;
    int r = -1;

    /* HKDF-Extract(salt, DCID) is HMAC(salt, DCID). */
    if (HMAC(EVP_sha256(), qv->salt, sizeof(qv->salt), dcid, dcid_len, initial, &n) == NULL ||
        n != 32)
        goto out;
    if (expand_label(initial, "client in", client, 32) != 0 ||
        expand_label(client, qv->key_label, k->key, 16) != 0 ||
        expand_label(client, qv->iv_label, k->iv, 12) != 0 ||
        expand_label(client, qv->hp_label, k->hp, 16) != 0)
        goto out;
    r = 0;
out:
    OPENSSL_cleanse(initial, sizeof(initial));
    OPENSSL_cleanse(client, sizeof(client));
    return r;
}

/* The header-protection mask: AES-128-ECB of the 16-byte sample. */
static int hp_mask(const uint8_t hp[16], const uint8_t sample[16], uint8_t mask[16])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, r = -1;

    if (c == NULL)
        return -1;
    if (EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), NULL, hp, NULL) == 1 &&
        EVP_CIPHER_CTX_set_padding(c, 0) == 1 && EVP_EncryptUpdate(c, mask, &n, sample, 16) == 1 &&
        n == 16)
        r = 0;
    EVP_CIPHER_CTX_free(c);
    return r;
}

/* Decrypts ct into pt with AES-128-GCM. The associated data is the header
 * with protection removed, given in three pieces so that the packet is not
 * copied: the first byte, the bytes up to the packet number, the packet
 * number. Returns 1 when the tag verified, 0 when it did not (pt holds the
 * CTR-mode decryption either way), -1 on a library failure. */
static int gcm_open(const struct initial_keys *k, const uint8_t nonce[12], uint8_t first,
                    const uint8_t *mid, size_t mid_len, const uint8_t *pn, size_t pn_len,
                    const uint8_t *ct, size_t ct_len, const uint8_t tag[16], uint8_t *pt)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, r = -1;
    uint8_t tagbuf[16];

    if (c == NULL)
        return -1;
    memcpy(tagbuf, tag, 16);
    if (EVP_DecryptInit_ex(c, EVP_aes_128_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
        EVP_DecryptInit_ex(c, NULL, NULL, k->key, nonce) != 1 ||
        EVP_DecryptUpdate(c, NULL, &n, &first, 1) != 1 ||
        (mid_len > 0 && EVP_DecryptUpdate(c, NULL, &n, mid, (int)mid_len) != 1) ||
        EVP_DecryptUpdate(c, NULL, &n, pn, (int)pn_len) != 1 ||
        (ct_len > 0 && EVP_DecryptUpdate(c, pt, &n, ct, (int)ct_len) != 1) ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tagbuf) != 1)
        goto out;
    r = EVP_DecryptFinal_ex(c, pt + ct_len, &n) == 1 ? 1 : 0;
out:
    EVP_CIPHER_CTX_free(c);
    return r;
}

/* The CRYPTO stream of one packet: bytes by offset and which are present. */
struct crypto_join {
    uint8_t data[QUIC_CRYPTO_MAX];
    uint8_t have[QUIC_CRYPTO_MAX / 8];
};

/* Adds a CRYPTO frame's bytes. Two frames that give different bytes for
 * one offset are refused (-1): that is how an evasion would look. */
static int crypto_add(struct crypto_join *j, uint64_t off, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n && off + i < QUIC_CRYPTO_MAX; i++) {
        size_t at = (size_t)off + i;
        uint8_t bit = (uint8_t)(1u << (at & 7));
        if (j->have[at >> 3] & bit) {
            if (j->data[at] != p[i])
                return -1;
            continue;
        }
        j->have[at >> 3] |= bit;
        j->data[at] = p[i];
    }
    return 0;
}

/* Bytes present without a gap from offset 0. */
static size_t crypto_prefix(const struct crypto_join *j)
{
    size_t n = 0;
    while (n < QUIC_CRYPTO_MAX && (j->have[n >> 3] & (1u << (n & 7))))
        n++;
    return n;
}

/* Walks the frames of a decrypted Initial payload, collecting CRYPTO data.
 * Frames an Initial may carry (PADDING, PING, ACK, CRYPTO, CONNECTION_CLOSE)
 * are understood; the walk stops at any other type. Returns 0, or -1 when a
 * frame is cut short or CRYPTO frames disagree. */
static int walk_frames(const uint8_t *p, size_t len, struct crypto_join *j)
{
    size_t off = 0;
    uint64_t v, a, b;

    while (off < len) {
        uint8_t type = p[off++];
        switch (type) {
        case 0x00: /* PADDING */
        case 0x01: /* PING */
            break;
        case 0x02: /* ACK */
        case 0x03: {
            uint64_t count;
            if (read_varint(p, len, &off, &v) || read_varint(p, len, &off, &v) ||
                read_varint(p, len, &off, &count) || read_varint(p, len, &off, &v))
                return -1;
            if (count > len - off)
                return -1; /* each range takes at least two bytes */
            for (uint64_t i = 0; i < count; i++) {
                if (read_varint(p, len, &off, &a) || read_varint(p, len, &off, &b))
                    return -1;
            }
            if (type == 0x03 && (read_varint(p, len, &off, &a) || read_varint(p, len, &off, &b) ||
                                 read_varint(p, len, &off, &v)))
                return -1;
            break;
        }
        case 0x06: /* CRYPTO */
            if (read_varint(p, len, &off, &a) || read_varint(p, len, &off, &b) || b > len - off)
                return -1;
            if (crypto_add(j, a, p + off, (size_t)b) != 0)
                return -1;
            off += (size_t)b;
            break;
        case 0x1c: /* CONNECTION_CLOSE */
            if (read_varint(p, len, &off, &v) || read_varint(p, len, &off, &v) ||
                read_varint(p, len, &off, &b) || b > len - off)
                return -1;
            off += (size_t)b;
            break;
        default:
            return 0;
        }
    }
    return 0;
}

/* One client Initial opened: its DCID, whether its tag verified, and its
 * CRYPTO data in j. */
struct opened {
    uint8_t dcid[QUIC_MAX_CID];
    size_t dcid_len;
    int authentic;
};

/* Decrypts one Initial and walks its frames into j. Returns 1 when that
 * worked, 0 when the packet is not a client Initial we can open (or, for a
 * packet whose tag did not verify, anything else went wrong), -1 when it
 * is malformed. */
static int open_initial(const uint8_t *data, size_t len, struct crypto_join *j, struct opened *o)
{
    struct initial_keys k;
    uint8_t *pt = NULL;
    uint8_t mask[16], pnb[4], nonce[12];
    uint64_t token_len, length;
    size_t off = 5;
    int r = -1;

    memset(&k, 0, sizeof(k));
    if (len < 7 || !(data[0] & 0x80))
        return 0; /* a short header packet: not an Initial */
    uint32_t version =
        ((uint32_t)data[1] << 24) | ((uint32_t)data[2] << 16) | ((uint32_t)data[3] << 8) | data[4];
    const struct quic_version *qv = find_version(version);
    if (qv == NULL || ((data[0] >> 4) & 3) != qv->initial_type)
        return 0; /* version negotiation, an unknown version or another packet type */

    size_t dcid_len = data[off++];
    if (dcid_len > QUIC_MAX_CID || len - off < dcid_len + 1)
        return -1;
    const uint8_t *dcid = data + off;
    memcpy(o->dcid, dcid, dcid_len);
    o->dcid_len = dcid_len;
    off += dcid_len;
    size_t scid_len = data[off++];
    if (scid_len > QUIC_MAX_CID || len - off < scid_len)
        return -1;
    off += scid_len;
    if (read_varint(data, len, &off, &token_len) || token_len > len - off)
        return -1;
    off += (size_t)token_len;
    if (read_varint(data, len, &off, &length) || length > len - off || length > QUIC_MAX_PACKET)
        return -1;
    size_t pn_offset = off;
    /* The sample starts 4 bytes after the packet number's offset and the
     * payload ends with a 16-byte tag. */
    if (length < 4 + 16)
        return -1;

    if (derive_keys(qv, dcid, dcid_len, &k) != 0 || hp_mask(k.hp, data + pn_offset + 4, mask) != 0)
        goto out;
    uint8_t first = data[0] ^ (mask[0] & 0x0f);
    size_t pn_len = (size_t)(first & 3) + 1;
    uint64_t pn = 0;
    for (size_t i = 0; i < pn_len; i++) {
        pnb[i] = data[pn_offset + i] ^ mask[1 + i];
        pn = (pn << 8) | pnb[i];
    }
    if (length < pn_len + 16 + 1)
        goto out;
    /* The packet number is the truncated one: a client's first Initials
     * have small numbers, and a wrong guess only fails the tag. */
    memcpy(nonce, k.iv, 12);
    for (size_t i = 0; i < 8; i++)
        nonce[11 - i] ^= (uint8_t)(pn >> (8 * i));

    const uint8_t *ct = data + pn_offset + pn_len;
    size_t ct_len = (size_t)length - pn_len - 16;
    if ((pt = malloc(ct_len + 16)) == NULL)
        goto out;
    int authentic = gcm_open(&k, nonce, first, data + 1, pn_offset - 1, pnb, pn_len, ct, ct_len,
                             ct + ct_len, pt);
    if (authentic < 0)
        goto out;
    o->authentic = authentic;

    /* A packet whose tag does not verify is most often one the client keys
     * do not fit (a server's Initial, a client's Initial after a Retry).
     * It still goes through the frame walk: a ClientHello that parses
     * completely from CTR-decrypted bytes is no accident, and some capture
     * generators write Initials with a wrong tag that real parsers (which
     * do not check it) read. Anything less from such a packet gives 0,
     * never "malformed". */
    if (walk_frames(pt, ct_len, j) != 0) {
        r = authentic ? -1 : 0;
        goto out;
    }
    r = 1;
out:
    OPENSSL_cleanse(&k, sizeof(k));
    free(pt);
    return r;
}

int sen_quic_initial(const uint8_t *data, size_t len, struct sen_client_hello *ch)
{
    struct crypto_join *j = NULL;
    struct opened o;
    int r = -1;

    if (data == NULL || ch == NULL)
        return -1;
    memset(&o, 0, sizeof(o));
    if ((j = calloc(1, sizeof(*j))) == NULL)
        return -1;
    int opened = open_initial(data, len, j, &o);
    if (opened <= 0) {
        r = opened;
        goto out;
    }
    size_t prefix = crypto_prefix(j);
    if (prefix == 0) {
        r = 0; /* no ClientHello start in this packet */
        goto out;
    }
    r = sen_tls_client_hello(j->data, prefix, 0, 1, ch);
    if (!o.authentic && r != 1)
        r = 0;
out:
    free(j);
    return r;
}

/* ---- joining a ClientHello across Initial packets ---- */

/* One connection whose ClientHello is incomplete. */
struct quic_join {
    struct sen_tuple t; /* client -> server as on the wire */
    uint8_t dcid[QUIC_MAX_CID];
    size_t dcid_len;
    int64_t first_us; /* when its first packet came */
    struct crypto_join *j;
};

struct sen_quic_joins {
    size_t max, n;
    int64_t timeout_us;
    struct quic_join *e; /* e[0..n), in no order */
    uint64_t joined, dropped;
};

struct sen_quic_joins *sen_quic_joins_new(size_t max_conns, unsigned timeout_s)
{
    struct sen_quic_joins *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->max = max_conns > 0 ? max_conns : 256;
    t->timeout_us = (int64_t)(timeout_s > 0 ? timeout_s : 10) * 1000000;
    if ((t->e = calloc(t->max, sizeof(*t->e))) == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

void sen_quic_joins_free(struct sen_quic_joins *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->e[i].j);
    free(t->e);
    free(t);
}

size_t sen_quic_joins_count(const struct sen_quic_joins *t)
{
    return t != NULL ? t->n : 0;
}

void sen_quic_joins_stats(const struct sen_quic_joins *t, uint64_t *joined, uint64_t *dropped)
{
    *joined = t != NULL ? t->joined : 0;
    *dropped = t != NULL ? t->dropped : 0;
}

static void join_remove(struct sen_quic_joins *t, size_t i)
{
    free(t->e[i].j);
    t->e[i] = t->e[--t->n];
    memset(&t->e[t->n], 0, sizeof(t->e[t->n]));
}

void sen_quic_joins_expire(struct sen_quic_joins *t, int64_t now_us)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n;) {
        if (now_us - t->e[i].first_us > t->timeout_us) {
            join_remove(t, i);
            t->dropped++;
        } else {
            i++;
        }
    }
}

static int same_tuple(const struct sen_tuple *a, const struct sen_tuple *b)
{
    size_t al = a->family == AF_INET6 ? 16 : 4;
    return a->family == b->family && a->sport == b->sport && a->dport == b->dport &&
           memcmp(a->src, b->src, al) == 0 && memcmp(a->dst, b->dst, al) == 0;
}

static struct quic_join *join_find(struct sen_quic_joins *t, const struct sen_tuple *tu,
                                   const struct opened *o)
{
    for (size_t i = 0; i < t->n; i++) {
        struct quic_join *e = &t->e[i];
        if (e->dcid_len == o->dcid_len && memcmp(e->dcid, o->dcid, o->dcid_len) == 0 &&
            same_tuple(&e->t, tu))
            return e;
    }
    return NULL;
}

/* Adds j's bytes to the entry's; -1 when the two disagree. */
static int join_merge(struct crypto_join *into, const struct crypto_join *j)
{
    for (size_t w = 0; w < sizeof(j->have); w++) {
        uint8_t bits = j->have[w];
        if (bits == 0)
            continue;
        for (unsigned b = 0; b < 8; b++) {
            if (!(bits & (1u << b)))
                continue;
            size_t at = w * 8 + b;
            if (into->have[w] & (1u << b)) {
                if (into->data[at] != j->data[at])
                    return -1;
                continue;
            }
            into->have[w] |= (uint8_t)(1u << b);
            into->data[at] = j->data[at];
        }
    }
    return 0;
}

/* The ClientHello's whole length (handshake header included) once its
 * first 4 bytes are present, else 0. */
static size_t hello_need(const struct crypto_join *j, size_t prefix)
{
    if (prefix < 4)
        return 0;
    return 4 + ((size_t)j->data[1] << 16 | (size_t)j->data[2] << 8 | j->data[3]);
}

static int has_any(const struct crypto_join *j)
{
    for (size_t w = 0; w < sizeof(j->have); w++)
        if (j->have[w] != 0)
            return 1;
    return 0;
}

int sen_quic_initial_join(struct sen_quic_joins *t, const struct sen_tuple *tu, int64_t ts_us,
                          const uint8_t *data, size_t len, struct sen_client_hello *ch)
{
    struct crypto_join *j = NULL;
    struct opened o;
    int r = -1;

    if (t == NULL || tu == NULL)
        return sen_quic_initial(data, len, ch);
    if (data == NULL || ch == NULL)
        return -1;
    memset(&o, 0, sizeof(o));
    if ((j = calloc(1, sizeof(*j))) == NULL)
        return -1;
    int opened = open_initial(data, len, j, &o);
    if (opened <= 0) {
        r = opened;
        goto out;
    }
    struct quic_join *e = join_find(t, tu, &o);
    if (!o.authentic && e == NULL) {
        /* Only packets the client's keys open start a join; anything else
         * is read on its own, as sen_quic_initial does. */
        size_t prefix = crypto_prefix(j);
        r = prefix > 0 ? sen_tls_client_hello(j->data, prefix, 0, 1, ch) : 0;
        if (r != 1)
            r = 0;
        goto out;
    }
    if (e != NULL && o.authentic) {
        if (join_merge(e->j, j) != 0) {
            /* Two packets that disagree about the same bytes: evasion. */
            join_remove(t, (size_t)(e - t->e));
            r = -1;
            goto out;
        }
    }
    const struct crypto_join *cj = e != NULL ? e->j : j;
    size_t prefix = crypto_prefix(cj);
    if (prefix > 0) {
        /* 1 parsed, -1 not a ClientHello, 0 the length says it goes on. */
        r = sen_tls_client_hello(cj->data, prefix, 0, 1, ch);
        if (r != 0 || hello_need(cj, prefix) > QUIC_CRYPTO_MAX) {
            if (e != NULL) {
                t->joined += r == 1;
                join_remove(t, (size_t)(e - t->e));
            }
            if (!o.authentic && r != 1)
                r = 0;
            goto out;
        }
    }
    /* Incomplete: keep (or go on keeping) this connection's bytes. */
    r = 0;
    if (e != NULL || !has_any(j))
        goto out;
    if (t->n == t->max) {
        size_t old = 0;
        for (size_t i = 1; i < t->n; i++)
            if (t->e[i].first_us < t->e[old].first_us)
                old = i;
        join_remove(t, old);
        t->dropped++;
    }
    e = &t->e[t->n++];
    e->t = *tu;
    memcpy(e->dcid, o.dcid, o.dcid_len);
    e->dcid_len = o.dcid_len;
    e->first_us = ts_us;
    e->j = j;
    j = NULL;
out:
    free(j);
    return r;
}
