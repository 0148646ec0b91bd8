/*
 * DNS message parser for the sensor (decode.h: sen_dns_parse). It turns one
 * DNS message — from UDP, or from TCP after the 2-byte length prefix — into
 * observations: a dns.query for every question of a query, and a dns.answer
 * for every A, AAAA and CNAME record in the answer section of a response.
 * Checking each question on its own is the point: two queries on one
 * 5-tuple are two checks (peers that keep one name per flow miss the first).
 *
 * The bytes are hostile. Every read is bounds-checked, compression pointers
 * are followed at most DNS_MAX_JUMPS times, names longer than 255 bytes on
 * the wire are rejected, and the section counts are capped so that a
 * 12-byte header claiming 65,535 records costs nothing.
 */
#include "decode.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#define DNS_MAX_JUMPS     32
#define DNS_MAX_NAME      255 /* wire length limit (RFC 1035 3.1) */
#define DNS_MAX_QUESTIONS 64
#define DNS_MAX_ANSWERS   256
#define DNS_EVIDENCE      560

#define DNS_TYPE_A     1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_AAAA  28

/* Reads the name at msg[off] into out[256] as lowercase dotted text ("" for
 * the root) and sets *next to the offset after the name as it appears at
 * off. Returns 0, or -1 when it runs off the message, loops, uses a
 * reserved label type, is longer than 255 bytes or holds a NUL or a dot
 * inside a label (which would make the dotted text ambiguous). */
static int dns_read_name(const uint8_t *msg, size_t len, size_t off, char out[256], size_t *outlen,
                         size_t *next)
{
    size_t pos = off, n = 0, wire = 1;
    int jumps = 0, jumped = 0;

    for (;;) {
        uint8_t c;
        if (pos >= len)
            return -1;
        c = msg[pos];
        if (c == 0) {
            if (!jumped)
                *next = pos + 1;
            break;
        }
        if ((c & 0xC0) == 0xC0) {
            size_t ptr;
            if (pos + 1 >= len || ++jumps > DNS_MAX_JUMPS)
                return -1;
            ptr = ((size_t)(c & 0x3F) << 8) | msg[pos + 1];
            if (!jumped)
                *next = pos + 2;
            jumped = 1;
            pos = ptr;
            continue;
        }
        if ((c & 0xC0) != 0)
            return -1;
        if (pos + 1 + c > len)
            return -1;
        wire += (size_t)c + 1;
        if (wire > DNS_MAX_NAME)
            return -1;
        if (n > 0)
            out[n++] = '.';
        for (size_t i = 0; i < c; i++) {
            uint8_t ch = msg[pos + 1 + i];
            if (ch == 0 || ch == '.')
                return -1;
            out[n++] = (char)((ch >= 'A' && ch <= 'Z') ? ch + 32 : ch);
        }
        pos += 1 + (size_t)c;
    }
    out[n] = '\0';
    *outlen = n;
    return 0;
}

static size_t put_str(char *dst, size_t at, size_t cap, const char *s, size_t n)
{
    if (at >= cap)
        return at;
    if (n > cap - 1 - at)
        n = cap - 1 - at;
    memcpy(dst + at, s, n);
    dst[at + n] = '\0';
    return at + n;
}

static const char *dns_type_name(unsigned type, char tmp[12])
{
    static const struct {
        unsigned type;
        const char *name;
    } names[] = {{1, "A"},    {2, "NS"},    {5, "CNAME"},  {6, "SOA"},
                 {12, "PTR"}, {15, "MX"},   {16, "TXT"},   {28, "AAAA"},
                 {33, "SRV"}, {64, "SVCB"}, {65, "HTTPS"}, {255, "ANY"}};
    char digits[8];
    size_t n = 0, k = 0;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].type == type)
            return names[i].name;
    do {
        digits[n++] = (char)('0' + type % 10);
        type /= 10;
    } while (type > 0 && n < sizeof(digits));
    memcpy(tmp, "TYPE", 4);
    k = 4;
    while (n > 0)
        tmp[k++] = digits[--n];
    tmp[k] = '\0';
    return tmp;
}

static void obs_init(struct sen_obs *o, int where, const struct sen_tuple *t, int64_t ts_us,
                     const char *input)
{
    memset(o, 0, sizeof(*o));
    o->where = where;
    o->t = *t;
    o->ts_us = ts_us;
    o->input = input;
}

int sen_dns_parse(const uint8_t *msg, size_t len, const struct sen_tuple *t, int64_t ts_us,
                  const char *input, sen_obs_fn fn, void *ctx)
{
    char name[256], target[256], evidence[DNS_EVIDENCE], tmp[12];
    size_t off = 12, nlen, tlen, e;
    unsigned qd, an, flags;
    struct sen_obs o;

    if (msg == NULL || len < 12)
        return -1;
    flags = (unsigned)msg[2] << 8 | msg[3];
    qd = (unsigned)msg[4] << 8 | msg[5];
    an = (unsigned)msg[6] << 8 | msg[7];
    /* Only standard queries (opcode 0) carry names a host looks up. */
    if (((flags >> 11) & 0xF) != 0)
        return 0;
    if (qd > DNS_MAX_QUESTIONS)
        return -1;
    for (unsigned i = 0; i < qd; i++) {
        unsigned qtype;
        if (dns_read_name(msg, len, off, name, &nlen, &off) != 0 || off + 4 > len)
            return -1;
        qtype = (unsigned)msg[off] << 8 | msg[off + 1];
        off += 4;
        /* Responses repeat the question; only the query is the host's ask. */
        if ((flags & 0x8000) != 0 || nlen == 0)
            continue;
        e = put_str(evidence, 0, sizeof(evidence), dns_type_name(qtype, tmp),
                    strlen(dns_type_name(qtype, tmp)));
        e = put_str(evidence, e, sizeof(evidence), "? ", 2);
        put_str(evidence, e, sizeof(evidence), name, nlen);
        obs_init(&o, SEN_DNS_QUERY, t, ts_us, input);
        o.text = name;
        o.text_len = nlen;
        o.evidence = evidence;
        fn(ctx, &o);
    }
    if ((flags & 0x8000) == 0)
        return 0;
    if (an > DNS_MAX_ANSWERS)
        an = DNS_MAX_ANSWERS;
    for (unsigned i = 0; i < an; i++) {
        unsigned type, cls, rdlen;
        size_t rd, after;
        if (dns_read_name(msg, len, off, name, &nlen, &off) != 0 || off + 10 > len)
            return -1;
        type = (unsigned)msg[off] << 8 | msg[off + 1];
        cls = ((unsigned)msg[off + 2] << 8 | msg[off + 3]) & 0x7FFF; /* mDNS cache-flush bit */
        rdlen = (unsigned)msg[off + 8] << 8 | msg[off + 9];
        rd = off + 10;
        if (rd + rdlen > len)
            return -1;
        off = rd + rdlen;
        if (cls != 1)
            continue;
        obs_init(&o, SEN_DNS_ANSWER, t, ts_us, input);
        e = put_str(evidence, 0, sizeof(evidence), name, nlen);
        if ((type == DNS_TYPE_A && rdlen == 4) || (type == DNS_TYPE_AAAA && rdlen == 16)) {
            char addr[46];
            o.addr_family = type == DNS_TYPE_A ? AF_INET : AF_INET6;
            memcpy(o.addr, msg + rd, rdlen);
            sen_addr_format(o.addr_family, o.addr, addr);
            e = put_str(evidence, e, sizeof(evidence), type == DNS_TYPE_A ? " A " : " AAAA ",
                        type == DNS_TYPE_A ? 3 : 6);
            put_str(evidence, e, sizeof(evidence), addr, strlen(addr));
        } else if (type == DNS_TYPE_CNAME) {
            if (dns_read_name(msg, off, rd, target, &tlen, &after) != 0 || after != off)
                return -1;
            if (tlen == 0)
                continue;
            o.text = target;
            o.text_len = tlen;
            e = put_str(evidence, e, sizeof(evidence), " CNAME ", 7);
            put_str(evidence, e, sizeof(evidence), target, tlen);
        } else {
            continue;
        }
        o.evidence = evidence;
        fn(ctx, &o);
    }
    return 0;
}
