/*
 * E-mail unpacking: RFC 822 messages, mbox files, MIME multiparts, and the
 * encodings mail carries attachments in (base64, quoted-printable, uuencode,
 * BinHex 4.0).
 *
 * khx_mail_walk() turns a message into members the scanner can look at one
 * by one: every decoded MIME part or attachment, every uuencoded block and
 * every BinHex file found in a text body. It is written for hostile input,
 * and in particular for messages built to make a mail gateway and the
 * scanner behind it disagree about where the parts are: a boundary declared
 * twice, a boundary in the wrong header, a comment inside a header name, a
 * boundary that only some of the delimiter lines use. Rather than pick one
 * reading, the splitter accepts every reading a mail client might take: all
 * declared boundaries, from every Content-Type and Content-Disposition
 * header, and any "--token" line that is followed by a Content-* header.
 * Parts nested in parts are thereby often split at the outer level already;
 * each leaf is still delivered once.
 *
 * Bounds: nesting depth (MAX_DEPTH), candidate boundaries per multipart,
 * header value length, parameter count, decoded sizes (never more than the
 * input, except BinHex run-length expansion, which is capped by the member
 * size limit), and the walk limits of container.h: members, member size,
 * total bytes and deadline. Nothing here reads outside [buf, buf + len).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "container.h"
#include "khx.h"

/* Multiparts and message/rfc822 parts nested deeper than this are scanned
 * as plain text (for uuencode and BinHex) rather than split further. */
#define MAX_DEPTH 16
/* Distinct boundaries one multipart is split at. */
#define MAX_BOUNDARIES 16
/* Longest boundary (RFC 2046 allows 70; some mailers write more). */
#define MAX_BOUNDARY_LEN 200
/* Bytes kept of one unfolded header value; the rest is ignored. */
#define MAX_HEADER_VALUE 8192
/* Content-Type / Content-Disposition headers remembered per entity. */
#define MAX_TYPE_HEADERS 4
/* Parameters parsed from one header value. */
#define MAX_PARAMS 32
/* Longest member name delivered. */
#define MAX_NAME 255
/* No member is built past this size, even when max_member_size is 0. */
#define MEMBER_HARD_MAX ((size_t)1 << 31)
/* How often (in lines) the long loops look at the clock. */
#define DEADLINE_EVERY 4096

struct mail {
    const struct khx_walk_limits *lim;
    const struct khx_walk_cb *cb;
    uint64_t *total_used;
    uint32_t members; /* members offered, delivered or not */
    uint32_t parts;   /* numbering for unnamed parts */
    int stop;         /* a limit or the callback ended the walk */
    int rc;           /* the member callback's non-zero value, or KH_ENOMEM */
    uint32_t ticks;   /* lines since the last clock check */
    int deep_said;    /* the nesting bound was reported */
};

/* One unfolded header value, bounded. */
struct hval {
    char s[MAX_HEADER_VALUE + 1];
    size_t n;
};

/* What parse_entity needs from a header block. */
struct headers {
    struct hval type[MAX_TYPE_HEADERS];
    size_t ntype;
    struct hval disp[MAX_TYPE_HEADERS];
    size_t ndisp;
    struct hval enc;
    int have_enc;
};

enum encoding { ENC_IDENTITY, ENC_BASE64, ENC_QP, ENC_UU };

static uint64_t now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void issue(struct mail *m, const char *name, int what, const char *detail)
{
    if (m->cb->issue != NULL)
        m->cb->issue(m->cb->ud, name ? name : "", what, detail);
}

/* Stops the walk, with a MAX_TIME issue, once the deadline has passed. The
 * clock is read every DEADLINE_EVERY calls unless `now` is set. */
static int out_of_time(struct mail *m, int now)
{
    if (m->stop)
        return 1;
    if (m->lim->deadline_ms == 0 || (!now && ++m->ticks < DEADLINE_EVERY))
        return 0;
    m->ticks = 0;
    if (now_ms() < m->lim->deadline_ms)
        return 0;
    issue(m, "", KHX_WALK_MAX_TIME, "deadline passed while reading the mail");
    m->stop = 1;
    return 1;
}

/* Hands one decoded object to the caller, enforcing the limits. */
static void deliver(struct mail *m, const char *name, const uint8_t *data, size_t n)
{
    if (m->stop || out_of_time(m, 1))
        return;
    const struct khx_walk_limits *lim = m->lim;
    char d[64];
    switch (khx_walk_admit(lim, &m->members, m->total_used, n)) {
    case 0:
        break;
    case KHX_WALK_MAX_FILES:
        snprintf(d, sizeof(d), "more than %u parts", (unsigned)lim->max_members);
        issue(m, "", KHX_WALK_MAX_FILES, d);
        m->stop = 1;
        return;
    case KHX_WALK_MAX_FILESIZE:
        issue(m, name, KHX_WALK_MAX_FILESIZE, "decoded part is larger than the member limit");
        return;
    default:
        issue(m, name, KHX_WALK_MAX_SCANSIZE, "scan budget used up");
        m->stop = 1;
        return;
    }
    static const uint8_t empty[1];
    int rc = m->cb->member(m->cb->ud, name, n ? data : empty, n);
    if (rc != 0) {
        m->rc = rc;
        m->stop = 1;
    }
}

/* ------------------------------------------------------------------------ */
/* Lines                                                                     */
/* ------------------------------------------------------------------------ */

/* The line at p[pos..end): its length without the line ending, and where
 * the next one starts. Returns 0 at the end. */
static int next_line(const uint8_t *p, size_t pos, size_t end, size_t *llen, size_t *next)
{
    if (pos >= end)
        return 0;
    const uint8_t *nl = memchr(p + pos, '\n', end - pos);
    size_t stop = nl ? (size_t)(nl - p) : end;
    *next = nl ? stop + 1 : end;
    size_t l = stop - pos;
    if (l > 0 && p[pos + l - 1] == '\r')
        l--;
    *llen = l;
    return 1;
}

static int is_blank(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t')
            return 0;
    return 1;
}

/* A header field line "Name: value": returns the length of the name part
 * (comments in parentheses included), or -1. */
static int field_name_len(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && i < 200 && p[i] > ' ' && p[i] < 0x7F && p[i] != ':')
        i++;
    /* Some mailers put white space before the colon. */
    size_t j = i;
    while (j < n && (p[j] == ' ' || p[j] == '\t'))
        j++;
    if (i == 0 || j >= n || p[j] != ':')
        return -1;
    return (int)j;
}

/* The header name p[0..n), lowercased, with parenthesised comments and white
 * space removed ("Content-Type(meow)" is "content-type"), into out. */
static void canonical_name(const uint8_t *p, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    int depth = 0;
    for (size_t i = 0; i < n && o + 1 < outlen; i++) {
        uint8_t c = p[i];
        if (c == '(') {
            depth++;
        } else if (c == ')') {
            if (depth > 0)
                depth--;
        } else if (depth == 0 && c != ' ' && c != '\t') {
            out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
    }
    out[o] = '\0';
}

static void hval_append(struct hval *h, const uint8_t *p, size_t n)
{
    size_t room = MAX_HEADER_VALUE - h->n;
    n = KHX_MIN(n, room);
    memcpy(h->s + h->n, p, n);
    h->n += n;
    h->s[h->n] = '\0';
}

/* Parses the header block at p[s..e). Returns where the body starts: after
 * the empty line, or at s when the entity has no header block at all. */
static size_t parse_headers(struct mail *m, const uint8_t *p, size_t s, size_t e, struct headers *h)
{
    memset(h, 0, sizeof(*h));
    size_t pos = s, llen, next;
    struct hval *cur = NULL;
    int any = 0;
    while (next_line(p, pos, e, &llen, &next)) {
        if (out_of_time(m, 0))
            return e;
        const uint8_t *l = p + pos;
        if (llen == 0)
            return next;
        if ((l[0] == ' ' || l[0] == '\t') && any) {
            if (cur != NULL)
                hval_append(cur, l, llen);
            pos = next;
            continue;
        }
        int nl = field_name_len(l, llen);
        if (nl < 0) {
            /* Not a header: with no header seen yet the entity has none;
             * otherwise the block ended without its empty line. */
            return any ? pos : s;
        }
        any = 1;
        char name[64];
        canonical_name(l, (size_t)nl, name, sizeof(name));
        cur = NULL;
        if (strcmp(name, "content-type") == 0 && h->ntype < MAX_TYPE_HEADERS)
            cur = &h->type[h->ntype++];
        else if (strcmp(name, "content-disposition") == 0 && h->ndisp < MAX_TYPE_HEADERS)
            cur = &h->disp[h->ndisp++];
        else if (strcmp(name, "content-transfer-encoding") == 0 && !h->have_enc) {
            cur = &h->enc;
            h->have_enc = 1;
        }
        if (cur != NULL)
            hval_append(cur, l + nl + 1, llen - (size_t)nl - 1);
        pos = next;
    }
    return e;
}

/* ------------------------------------------------------------------------ */
/* Header parameters (RFC 2045, RFC 2231)                                    */
/* ------------------------------------------------------------------------ */

struct param {
    char key[64]; /* lowercased, without the section and '*' marks */
    int section;  /* -1 when the key has no "*N" part */
    int extended; /* ends in '*': charset'language'%XX value */
    char *value;  /* points into the caller's scratch buffer */
};

/* The media type ("multipart/mixed") of a Content-Type value, lowercased. */
static void media_type(const char *v, char *out, size_t outlen)
{
    size_t o = 0;
    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v && *v != ';' && *v != ' ' && *v != '\t' && *v != '(' && o + 1 < outlen; v++)
        out[o++] = (char)(*v >= 'A' && *v <= 'Z' ? *v + 32 : *v);
    out[o] = '\0';
}

/* Splits the parameters of a header value (after its first ';') into
 * params[], copying unquoted values into scratch (as long as the value).
 * Comments outside quotes are dropped. Returns the number found. */
static size_t parse_params(const char *v, char *scratch, struct param *params, size_t max)
{
    size_t np = 0, so = 0;
    const char *p = strchr(v, ';');
    while (p != NULL && *p != '\0' && np < max) {
        p++; /* past ';' */
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        /* Key. */
        char key[64];
        size_t k = 0;
        while (*p && *p != '=' && *p != ';') {
            if (*p != ' ' && *p != '\t' && k + 1 < sizeof(key))
                key[k++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
            p++;
        }
        key[k] = '\0';
        if (*p != '=') {
            p = strchr(p, ';');
            continue;
        }
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        /* Value: quoted string with backslash escapes, or a token. */
        char *val = scratch + so;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    p++;
                scratch[so++] = *p++;
            }
            if (*p == '"')
                p++;
        } else {
            int depth = 0;
            while (*p && (depth > 0 || *p != ';')) {
                if (*p == '(')
                    depth++;
                else if (*p == ')' && depth > 0)
                    depth--;
                else if (depth == 0 && *p != ' ' && *p != '\t')
                    scratch[so++] = *p;
                p++;
            }
        }
        scratch[so++] = '\0';
        if (k == 0)
            continue;
        struct param *pp = &params[np++];
        memset(pp, 0, sizeof(*pp));
        pp->value = val;
        pp->section = -1;
        if (k > 0 && key[k - 1] == '*') {
            pp->extended = 1;
            key[--k] = '\0';
        }
        char *star = strchr(key, '*');
        if (star != NULL) {
            pp->section = atoi(star + 1);
            *star = '\0';
        }
        snprintf(pp->key, sizeof(pp->key), "%s", key);
        /* Skip to the next ';' that ends this parameter, if the value
         * parser stopped before it. */
        while (*p && *p != ';')
            p++;
    }
    return np;
}

/* Appends an RFC 2231 extended value: the first section carries
 * charset'language' before the text; %XX escapes are decoded. */
static void append_extended(struct khx_buf *b, const char *v, int first)
{
    if (first) {
        const char *q1 = strchr(v, '\'');
        const char *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
        if (q2 != NULL)
            v = q2 + 1;
    }
    for (; *v; v++) {
        if (*v == '%' && khx_hexval(v[1]) >= 0 && khx_hexval(v[2]) >= 0) {
            khx_buf_append_u8(b, (uint8_t)(khx_hexval(v[1]) << 4 | khx_hexval(v[2])));
            v += 2;
        } else {
            khx_buf_append_u8(b, (uint8_t)*v);
        }
    }
}

/* The value of parameter `key` of header value v, with RFC 2231 sections
 * joined in order and extended values decoded, into out (NUL-terminated).
 * Returns 1 if the parameter is present. */
static int get_param(const char *v, const char *key, char *out, size_t outlen)
{
    char *scratch = malloc(strlen(v) + 1);
    struct param params[MAX_PARAMS];
    int found = 0;
    if (scratch == NULL || outlen == 0)
        goto out;
    size_t np = parse_params(v, scratch, params, MAX_PARAMS);
    struct khx_buf b;
    khx_buf_init(&b, outlen - 1);
    /* A plain key=value wins; otherwise sections 0, 1, 2 ... in order. */
    for (size_t i = 0; i < np && !found; i++) {
        if (strcmp(params[i].key, key) != 0 || params[i].section >= 0)
            continue;
        if (params[i].extended)
            append_extended(&b, params[i].value, 1);
        else
            khx_buf_append(&b, params[i].value, strlen(params[i].value));
        found = 1;
    }
    int plain = found;
    for (int sec = 0; !plain && sec < MAX_PARAMS; sec++) {
        int got = 0;
        for (size_t i = 0; i < np; i++) {
            if (strcmp(params[i].key, key) != 0 || params[i].section != sec)
                continue;
            if (params[i].extended)
                append_extended(&b, params[i].value, sec == 0);
            else
                khx_buf_append(&b, params[i].value, strlen(params[i].value));
            got = 1;
            break;
        }
        if (!got)
            break;
        if (sec == 0)
            found = 1;
    }
    if (found) {
        memcpy(out, b.data ? (const char *)b.data : "", b.len);
        out[b.len] = '\0';
    }
    khx_buf_free(&b);
out:
    free(scratch);
    return found;
}

/* ------------------------------------------------------------------------ */
/* Decoders                                                                  */
/* ------------------------------------------------------------------------ */

static int b64val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Base64, skipping anything outside the alphabet (line breaks, white space,
 * junk) the way mail clients do; '=' ends the current quantum. `out` must
 * hold n * 3 / 4 + 3 bytes. Returns the decoded length. */
static size_t decode_base64(const uint8_t *in, size_t n, uint8_t *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '=') {
            acc = 0;
            bits = 0;
            continue;
        }
        int v = b64val(in[i]);
        if (v < 0)
            continue;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}

/* Quoted-printable: "=XX" is a byte, "=" at the end of a line a soft break,
 * anything else itself. `out` must hold n bytes. */
static size_t decode_qp(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] != '=') {
            out[o++] = in[i];
            continue;
        }
        if (i + 2 < n && khx_hexval(in[i + 1]) >= 0 && khx_hexval(in[i + 2]) >= 0) {
            out[o++] = (uint8_t)(khx_hexval(in[i + 1]) << 4 | khx_hexval(in[i + 2]));
            i += 2;
            continue;
        }
        /* Soft line break: '=' then optional white space then a newline. */
        size_t j = i + 1;
        while (j < n && (in[j] == ' ' || in[j] == '\t'))
            j++;
        if (j < n && in[j] == '\r')
            j++;
        if (j < n && in[j] == '\n') {
            i = j;
            continue;
        }
        if (j >= n) {
            i = n;
            continue;
        }
        out[o++] = '=';
    }
    return o;
}

/* Decodes one uuencoded line (length character, then groups of four) into
 * out; returns the bytes written, or 0 for the terminating empty line. */
static size_t uu_line(const uint8_t *l, size_t n, uint8_t *out)
{
    if (n == 0)
        return 0;
    size_t want = (size_t)((l[0] - ' ') & 0x3F);
    size_t o = 0;
    for (size_t i = 1; o < want && i < n; i += 4) {
        uint8_t c[4];
        for (size_t k = 0; k < 4; k++)
            c[k] = (uint8_t)(i + k < n ? (l[i + k] - ' ') & 0x3F : 0);
        uint8_t b[3] = {(uint8_t)(c[0] << 2 | c[1] >> 4), (uint8_t)(c[1] << 4 | c[2] >> 2),
                        (uint8_t)(c[2] << 6 | c[3])};
        for (size_t k = 0; k < 3 && o < want; k++)
            out[o++] = b[k];
    }
    return o;
}

/* "begin 644 name": returns 1 and the name (NUL-terminated) if the line
 * starts a uuencoded block. */
static int uu_begin(const uint8_t *l, size_t n, char *name, size_t namelen)
{
    if (n < 8 || memcmp(l, "begin ", 6) != 0)
        return 0;
    size_t i = 6, digits = 0;
    while (i < n && l[i] >= '0' && l[i] <= '7' && digits < 6) {
        i++;
        digits++;
    }
    if (digits < 3 || i >= n || l[i] != ' ')
        return 0;
    i++;
    size_t k = KHX_MIN(n - i, namelen - 1);
    memcpy(name, l + i, k);
    name[k] = '\0';
    return 1;
}

static const char binhex_alphabet[] =
    "!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";

static int binhex_val(uint8_t c)
{
    static int8_t table[256];
    static int ready;
    if (!ready) {
        /* Idempotent: racing threads write the same values. */
        memset(table, -1, sizeof(table));
        for (int i = 0; i < 64; i++)
            table[(uint8_t)binhex_alphabet[i]] = (int8_t)i;
        ready = 1;
    }
    return table[c];
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Decodes the BinHex 4.0 text in[0..n) (the part after the opening ':') and
 * delivers its data fork and, if present, its resource fork. The 6-bit
 * text expands through run-length coding (0x90 n repeats the previous byte
 * n times in all, 0x90 0 is a literal 0x90), so the output is bounded by the
 * member size limit. CRCs are not checked: a damaged file is still scanned
 * as far as it goes. */
static void binhex_decode(struct mail *m, const uint8_t *in, size_t n)
{
    size_t max = m->lim->max_member_size ? (size_t)KHX_MIN(m->lim->max_member_size * 2 + 1024,
                                                           (uint64_t)MEMBER_HARD_MAX)
                                         : MEMBER_HARD_MAX;
    struct khx_buf b;
    khx_buf_init(&b, max);
    uint32_t acc = 0;
    int bits = 0, have_prev = 0, after_marker = 0, truncated = 0;
    uint8_t prev = 0;
    for (size_t i = 0; i < n && in[i] != ':' && !truncated; i++) {
        int v = binhex_val(in[i]);
        if (v < 0)
            continue;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits < 8)
            continue;
        bits -= 8;
        uint8_t c = (uint8_t)(acc >> bits);
        int r = 0;
        if (after_marker) {
            after_marker = 0;
            if (c == 0) {
                r = khx_buf_append_u8(&b, 0x90);
                prev = 0x90;
                have_prev = 1;
            } else if (have_prev) {
                for (unsigned k = 1; k < c && r == 0; k++)
                    r = khx_buf_append_u8(&b, prev);
            }
        } else if (c == 0x90) {
            after_marker = 1;
        } else {
            r = khx_buf_append_u8(&b, c);
            prev = c;
            have_prev = 1;
        }
        if (r == KH_ENOMEM) {
            m->rc = KH_ENOMEM;
            m->stop = 1;
            goto out;
        }
        if (r != 0)
            truncated = 1;
    }
    if (truncated)
        issue(m, "", KHX_WALK_MAX_FILESIZE, "BinHex data expands past the member limit");

    /* Header: name length, name, version, type, creator, flags, data
     * length, resource length, CRC. */
    const uint8_t *d = b.data;
    size_t dl = b.len;
    if (dl < 1 || dl < 1 + (size_t)d[0] + 1 + 4 + 4 + 2 + 4 + 4 + 2) {
        issue(m, "", KHX_WALK_CORRUPT, "BinHex header is truncated");
        goto out;
    }
    size_t nl = d[0];
    char name[MAX_NAME + 1];
    for (size_t i = 0; i < nl; i++)
        name[i] = (d[1 + i] < 0x20 || d[1 + i] == 0x7F) ? '_' : (char)d[1 + i];
    name[nl] = '\0';
    if (nl == 0)
        snprintf(name, sizeof(name), "binhex");
    size_t h = 1 + nl + 1 + 4 + 4 + 2;
    uint32_t data_len = be32(d + h), rsrc_len = be32(d + h + 4);
    size_t pos = h + 8 + 2;
    size_t take = KHX_MIN((size_t)data_len, dl - pos);
    if (take < data_len)
        issue(m, name, KHX_WALK_CORRUPT, "BinHex data fork is truncated");
    deliver(m, name, d + pos, take);
    pos += take;
    if (rsrc_len > 0 && dl - pos > 2) {
        pos += 2;
        char rname[MAX_NAME + 8];
        snprintf(rname, sizeof(rname), "%s.rsrc", name);
        deliver(m, rname, d + pos, KHX_MIN((size_t)rsrc_len, dl - pos));
    }
out:
    khx_buf_free(&b);
}

/* Looks through text for uuencoded blocks and BinHex files and delivers
 * what they hold. Returns 1 if it found any. */
static int scan_text(struct mail *m, const uint8_t *p, size_t s, size_t e)
{
    static const char binhex_mark[] = "(This file must be converted with BinHex";
    size_t pos = s, llen, next;
    int found = 0;
    while (!m->stop && next_line(p, pos, e, &llen, &next)) {
        if (out_of_time(m, 0))
            break;
        const uint8_t *l = p + pos;
        char name[MAX_NAME + 1];
        if (uu_begin(l, llen, name, sizeof(name))) {
            found = 1;
            /* Decoded bytes are fewer than the encoded ones. */
            uint8_t *out = malloc(e - next + 1);
            if (out == NULL) {
                m->rc = KH_ENOMEM;
                m->stop = 1;
                break;
            }
            size_t o = 0, q = next, ql, qn;
            while (next_line(p, q, e, &ql, &qn)) {
                const uint8_t *ul = p + q;
                q = qn;
                if (ql >= 3 && memcmp(ul, "end", 3) == 0 && is_blank(ul + 3, ql - 3))
                    break;
                o += uu_line(ul, ql, out + o);
            }
            deliver(m, name, out, o);
            free(out);
            pos = q;
            continue;
        }
        if (llen >= sizeof(binhex_mark) - 1 &&
            memcmp(l, binhex_mark, sizeof(binhex_mark) - 1) == 0) {
            /* The data starts at the first ':' after the mark's line. */
            const uint8_t *colon = memchr(p + next, ':', e - next);
            if (colon != NULL) {
                found = 1;
                size_t start = (size_t)(colon - p) + 1;
                binhex_decode(m, p + start, e - start);
                const uint8_t *end = memchr(p + start, ':', e - start);
                pos = end ? (size_t)(end - p) + 1 : e;
                continue;
            }
        }
        pos = next;
    }
    return found;
}

/* ------------------------------------------------------------------------ */
/* Names                                                                     */
/* ------------------------------------------------------------------------ */

/* Decodes RFC 2047 encoded words ("=?utf-8?B?...?=", "=?iso-8859-1?Q?...?=")
 * in a name, in place; the charset is not converted (bytes are kept). White
 * space between two encoded words is dropped, as the RFC says. */
static void decode_words(char *s)
{
    char out[MAX_NAME + 1];
    size_t o = 0;
    const char *p = s;
    int last_was_word = 0;
    while (*p && o < MAX_NAME) {
        const char *q1, *q2, *q3;
        if (p[0] == '=' && p[1] == '?' && (q1 = strchr(p + 2, '?')) != NULL &&
            (q1[1] == 'B' || q1[1] == 'b' || q1[1] == 'Q' || q1[1] == 'q') && q1[2] == '?' &&
            (q2 = q1 + 3) != NULL && (q3 = strstr(q2, "?=")) != NULL) {
            size_t n = (size_t)(q3 - q2);
            uint8_t tmp[MAX_HEADER_VALUE];
            size_t k;
            if (q1[1] == 'B' || q1[1] == 'b') {
                k = n * 3 / 4 + 3 <= sizeof(tmp) ? decode_base64((const uint8_t *)q2, n, tmp) : 0;
            } else {
                k = 0;
                for (size_t i = 0; i < n && k < sizeof(tmp); i++) {
                    if (q2[i] == '_')
                        tmp[k++] = ' ';
                    else if (q2[i] == '=' && i + 2 < n && khx_hexval(q2[i + 1]) >= 0 &&
                             khx_hexval(q2[i + 2]) >= 0) {
                        tmp[k++] = (uint8_t)(khx_hexval(q2[i + 1]) << 4 | khx_hexval(q2[i + 2]));
                        i += 2;
                    } else
                        tmp[k++] = (uint8_t)q2[i];
                }
            }
            for (size_t i = 0; i < k && o < MAX_NAME; i++)
                out[o++] = (char)tmp[i];
            p = q3 + 2;
            last_was_word = 1;
            continue;
        }
        if (last_was_word && (*p == ' ' || *p == '\t')) {
            const char *t = p;
            while (*t == ' ' || *t == '\t')
                t++;
            if (t[0] == '=' && t[1] == '?') {
                p = t;
                continue;
            }
        }
        last_was_word = 0;
        out[o++] = *p++;
    }
    out[o] = '\0';
    memcpy(s, out, o + 1);
}

/* Whether the part carries a file name (filename or name parameter). */
static int has_name(const struct headers *h)
{
    char buf[MAX_NAME + 1];
    for (size_t i = 0; i < h->ndisp; i++)
        if (get_param(h->disp[i].s, "filename", buf, sizeof(buf)))
            return 1;
    for (size_t i = 0; i < h->ntype; i++)
        if (get_param(h->type[i].s, "name", buf, sizeof(buf)))
            return 1;
    return 0;
}

/* The member name of a part: Content-Disposition filename, else
 * Content-Type name (RFC 2231 and RFC 2047 forms decoded), else "part-N".
 * Control bytes are replaced so that names are safe to print. */
static void part_name(struct mail *m, const struct headers *h, char *out, size_t outlen)
{
    char buf[MAX_HEADER_VALUE + 1];
    int found = 0;
    for (size_t i = 0; i < h->ndisp && !found; i++)
        found = get_param(h->disp[i].s, "filename", buf, sizeof(buf));
    for (size_t i = 0; i < h->ntype && !found; i++)
        found = get_param(h->type[i].s, "name", buf, sizeof(buf));
    if (found) {
        buf[MAX_NAME] = '\0';
        decode_words(buf);
    }
    if (!found || buf[0] == '\0') {
        snprintf(out, outlen, "part-%u", (unsigned)++m->parts);
        return;
    }
    size_t i;
    for (i = 0; buf[i] && i + 1 < outlen; i++) {
        unsigned char c = (unsigned char)buf[i];
        out[i] = (c < 0x20 || c == 0x7F) ? '_' : (char)c;
    }
    out[i] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Entities                                                                  */
/* ------------------------------------------------------------------------ */

static void parse_entity(struct mail *m, const uint8_t *p, size_t s, size_t e, int depth);

static enum encoding transfer_encoding(const struct headers *h)
{
    if (!h->have_enc)
        return ENC_IDENTITY;
    char v[64];
    media_type(h->enc.s, v, sizeof(v));
    if (strcmp(v, "base64") == 0)
        return ENC_BASE64;
    if (strcmp(v, "quoted-printable") == 0)
        return ENC_QP;
    if (strstr(v, "uuencode") != NULL || strcmp(v, "x-uue") == 0 || strcmp(v, "uue") == 0)
        return ENC_UU;
    return ENC_IDENTITY;
}

/* A leaf part: decoded and delivered, and its text searched for uuencoded
 * blocks and BinHex files. A plain-text part that needs no decoding and has
 * no file name is not delivered, since the message itself is scanned as it
 * is; everything else (HTML, attachments, decoded data) is. */
static void leaf(struct mail *m, const struct headers *h, const char *type, const uint8_t *p,
                 size_t s, size_t e)
{
    enum encoding enc = transfer_encoding(h);
    int is_text = type[0] == '\0' || strncmp(type, "text/", 5) == 0;
    int named = has_name(h);
    if (enc == ENC_UU) {
        if (!scan_text(m, p, s, e))
            issue(m, "", KHX_WALK_CORRUPT, "uuencoded part without a begin line");
        return;
    }
    if (enc == ENC_IDENTITY) {
        /* No Content-Type means text/plain (RFC 2045). */
        if (named || (type[0] != '\0' && strcmp(type, "text/plain") != 0)) {
            char name[MAX_NAME + 1];
            part_name(m, h, name, sizeof(name));
            deliver(m, name, p + s, e - s);
        }
        if (is_text)
            scan_text(m, p, s, e);
        return;
    }
    uint8_t *out = malloc((e - s) + 4);
    if (out == NULL) {
        m->rc = KH_ENOMEM;
        m->stop = 1;
        return;
    }
    size_t n = enc == ENC_BASE64 ? decode_base64(p + s, e - s, out) : decode_qp(p + s, e - s, out);
    char name[MAX_NAME + 1];
    part_name(m, h, name, sizeof(name));
    deliver(m, name, out, n);
    if (is_text && !m->stop)
        scan_text(m, out, 0, n);
    free(out);
}

/* Adds b to the boundary set unless present or the set is full. */
static void add_boundary(char set[][MAX_BOUNDARY_LEN + 1], size_t *n, const char *b, size_t len)
{
    if (len == 0 || len > MAX_BOUNDARY_LEN || *n >= MAX_BOUNDARIES)
        return;
    for (size_t i = 0; i < *n; i++)
        if (strlen(set[i]) == len && memcmp(set[i], b, len) == 0)
            return;
    memcpy(set[*n], b, len);
    set[*n][len] = '\0';
    (*n)++;
}

/* Whether the line l[0..n) is "--b" or "--b--" (trailing white space
 * allowed) for some b in the set; *close is set for the "--b--" form. */
static int delimiter(const uint8_t *l, size_t n, char set[][MAX_BOUNDARY_LEN + 1], size_t nset,
                     int *close)
{
    if (n < 3 || l[0] != '-' || l[1] != '-')
        return 0;
    while (n > 2 && (l[n - 1] == ' ' || l[n - 1] == '\t'))
        n--;
    for (size_t i = 0; i < nset; i++) {
        size_t bl = strlen(set[i]);
        if (n - 2 < bl || memcmp(l + 2, set[i], bl) != 0)
            continue;
        if (n - 2 == bl) {
            *close = 0;
            return 1;
        }
        if (n - 2 == bl + 2 && l[2 + bl] == '-' && l[3 + bl] == '-') {
            *close = 1;
            return 1;
        }
    }
    return 0;
}

/* Whether the line at p[pos..e) is a Content-* header. */
static int content_header_at(const uint8_t *p, size_t pos, size_t e)
{
    size_t llen, next;
    if (!next_line(p, pos, e, &llen, &next))
        return 0;
    int nl = field_name_len(p + pos, llen);
    return nl >= 8 && strncasecmp((const char *)p + pos, "content-", 8) == 0;
}

/* Splits the multipart body p[s..e) at every boundary a reader might take
 * (see the top of the file) and parses each part. Returns 0 if no delimiter
 * line was found. */
static int split_multipart(struct mail *m, const struct headers *h, const uint8_t *p, size_t s,
                           size_t e, int depth)
{
    char set[MAX_BOUNDARIES][MAX_BOUNDARY_LEN + 1];
    size_t nset = 0;
    char b[MAX_HEADER_VALUE + 1];
    for (size_t i = 0; i < h->ntype; i++)
        if (get_param(h->type[i].s, "boundary", b, sizeof(b)))
            add_boundary(set, &nset, b, strlen(b));
    for (size_t i = 0; i < h->ndisp; i++)
        if (get_param(h->disp[i].s, "boundary", b, sizeof(b)))
            add_boundary(set, &nset, b, strlen(b));
    /* Also every "--token" line followed by a Content-* header. */
    size_t pos = s, llen, next;
    while (next_line(p, pos, e, &llen, &next)) {
        if (out_of_time(m, 0))
            return 1;
        const uint8_t *l = p + pos;
        if (llen > 2 && l[0] == '-' && l[1] == '-' && content_header_at(p, next, e)) {
            size_t n = llen;
            while (n > 2 && (l[n - 1] == ' ' || l[n - 1] == '\t'))
                n--;
            int has_space = 0;
            for (size_t i = 2; i < n; i++)
                has_space |= l[i] == ' ' || l[i] == '\t';
            if (!has_space)
                add_boundary(set, &nset, (const char *)l + 2, n - 2);
        }
        pos = next;
    }
    if (nset == 0)
        return 0;

    int found = 0, in_part = 0;
    size_t part_start = 0;
    pos = s;
    while (!m->stop && next_line(p, pos, e, &llen, &next)) {
        if (out_of_time(m, 0))
            return 1;
        int close;
        if (delimiter(p + pos, llen, set, nset, &close)) {
            found = 1;
            if (in_part) {
                /* The line break before a delimiter belongs to it. */
                size_t end = pos;
                if (end > part_start && p[end - 1] == '\n')
                    end--;
                if (end > part_start && p[end - 1] == '\r')
                    end--;
                parse_entity(m, p, part_start, end, depth + 1);
            }
            in_part = !close;
            part_start = next;
        }
        pos = next;
    }
    /* A last part without its closing delimiter still counts. */
    if (in_part && !m->stop && part_start < e)
        parse_entity(m, p, part_start, e, depth + 1);
    return found;
}

/* Parses one entity (headers and body) at p[s..e). */
static void parse_entity(struct mail *m, const uint8_t *p, size_t s, size_t e, int depth)
{
    if (m->stop || out_of_time(m, 1))
        return;
    struct headers *h = malloc(sizeof(*h));
    if (h == NULL) {
        m->rc = KH_ENOMEM;
        m->stop = 1;
        return;
    }
    size_t body = parse_headers(m, p, s, e, h);
    char type[128] = "";
    if (h->ntype > 0)
        media_type(h->type[0].s, type, sizeof(type));
    int multipart = 0;
    for (size_t i = 0; i < h->ntype; i++) {
        char t[128];
        media_type(h->type[i].s, t, sizeof(t));
        multipart |= strncmp(t, "multipart/", 10) == 0;
    }
    if (depth >= MAX_DEPTH) {
        if (!m->deep_said)
            issue(m, "", KHX_WALK_CORRUPT, "MIME parts nested too deeply; inner parts not split");
        m->deep_said = 1;
        scan_text(m, p, body, e);
    } else if (multipart) {
        if (!split_multipart(m, h, p, body, e, depth))
            scan_text(m, p, body, e);
    } else if (strcmp(type, "message/rfc822") == 0 && transfer_encoding(h) == ENC_IDENTITY) {
        parse_entity(m, p, body, e, depth + 1);
    } else {
        leaf(m, h, type, p, body, e);
    }
    free(h);
}

/* Whether the line at p[pos..) starts a message in an mbox. */
static int mbox_from(const uint8_t *p, size_t pos, size_t llen)
{
    return llen > 5 && memcmp(p + pos, "From ", 5) == 0 && p[pos + 5] != ' ';
}

int khx_mail_walk(const uint8_t *buf, size_t len, const struct khx_walk_limits *lim,
                  uint64_t *total_used, const struct khx_walk_cb *cb)
{
    if (lim == NULL || total_used == NULL || cb == NULL || cb->member == NULL ||
        (buf == NULL && len > 0))
        return KH_EINVAL;
    struct mail m = {.lim = lim, .cb = cb, .total_used = total_used};
    if (len == 0) {
        issue(&m, "", KHX_WALK_CORRUPT, "empty mail");
        return 0;
    }
    size_t llen, next;
    if (!mbox_from(buf, 0, len) || !next_line(buf, 0, len, &llen, &next)) {
        parse_entity(&m, buf, 0, len, 0);
        return m.rc;
    }
    /* An mbox: each "From " line that follows an empty line (or starts the
     * file) begins a message, which runs to the next such line. */
    size_t msg = next, pos = next;
    int prev_empty = 0;
    while (!m.stop && next_line(buf, pos, len, &llen, &next)) {
        if (out_of_time(&m, 0))
            break;
        if (prev_empty && mbox_from(buf, pos, llen)) {
            parse_entity(&m, buf, msg, pos, 0);
            msg = next;
        }
        prev_empty = llen == 0;
        pos = next;
    }
    if (!m.stop && msg < len)
        parse_entity(&m, buf, msg, len, 0);
    return m.rc;
}
