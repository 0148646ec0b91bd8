/*
 * The sensor's packet decoder (decode.h): frame -> link layer -> IPv4/IPv6
 * -> TCP/UDP -> application parsers (app_dns.c, app_tls.c, app_http.c,
 * app_quic.c), emitting observations through the caller's callback.
 *
 * It runs once per captured packet, so the common path does no allocation,
 * no hashing and no string formatting: headers are read in place, the
 * tuple is filled once, and ip.dst/ip.src observations point at it. Only a
 * TCP payload whose message does not fit in the segment goes into the
 * reassembly table (decode_flow.c), and the table is consulted only while
 * it holds something. Every bad or short header is counted in the stats
 * and the packet is dropped from that layer on; nothing is fatal.
 */
#include "decode_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pcap/dlt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <khien/khien.h>

#define MAX_VLAN_TAGS 4
#define MAX_V6_EXT    8
#define LINKTYPE_RAW  101 /* the pcap-file value of DLT_RAW, accepted too */
#define ETH_IPV4      0x0800
#define ETH_IPV6      0x86DD
#define ETH_VLAN      0x8100
#define ETH_QINQ      0x88A8
#define ETH_QINQ_OLD  0x9100
#define ETH_PPPOE     0x8864

struct sen_decoder {
    sen_obs_fn fn;
    void *ctx;
    const char *input;
    unsigned timeout_s;
    struct sen_decode_stats st;
    struct dec_flow_table *flows;
    struct sen_quic_joins *quic; /* ClientHellos spanning several Initials */
};

/* What the IP layer hands to TCP/UDP for one packet. */
struct dec_pkt {
    struct sen_tuple t;
    int64_t ts_us;
    int partial; /* the payload may be cut (snap length or a first fragment) */
};

static inline uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int sen_decoder_new(const struct sen_decoder_opts *opts, sen_obs_fn fn, void *ctx,
                    struct sen_decoder **out)
{
    struct sen_decoder *d = NULL;
    size_t max_flows = 65536, buffer = 16384;
    int r = KH_ENOMEM;

    if (out == NULL || fn == NULL)
        return KH_EINVAL;
    if ((d = calloc(1, sizeof(*d))) == NULL)
        goto out;
    d->fn = fn;
    d->ctx = ctx;
    d->input = "pcap";
    d->timeout_s = 60;
    if (opts != NULL) {
        if (opts->max_flows > 0)
            max_flows = opts->max_flows;
        if (opts->flow_buffer > 0)
            buffer = opts->flow_buffer;
        if (opts->flow_timeout_s > 0)
            d->timeout_s = opts->flow_timeout_s;
        if (opts->input != NULL)
            d->input = opts->input;
    }
    /* A DNS-over-TCP message can be 65,537 bytes with its prefix; beyond
     * that nothing we parse needs joining. */
    if (buffer > 65537)
        buffer = 65537;
    if ((d->flows = dec_flow_table_new(max_flows, buffer)) == NULL ||
        (d->quic = sen_quic_joins_new(0, 0)) == NULL)
        goto out;
    *out = d;
    d = NULL;
    r = KH_OK;
out:
    sen_decoder_free(d);
    return r;
}

void sen_decoder_free(struct sen_decoder *d)
{
    if (d == NULL)
        return;
    dec_flow_table_free(d->flows);
    sen_quic_joins_free(d->quic);
    free(d);
}

void sen_decoder_stats(const struct sen_decoder *d, struct sen_decode_stats *st)
{
    *st = d->st;
    sen_quic_joins_stats(d->quic, &st->quic_joined, &st->quic_join_dropped);
}

void sen_decoder_expire(struct sen_decoder *d, int64_t now_us)
{
    if (dec_flow_count(d->flows) > 0)
        dec_flow_expire(d->flows, now_us - (int64_t)d->timeout_s * 1000000);
    if (sen_quic_joins_count(d->quic) > 0)
        sen_quic_joins_expire(d->quic, now_us);
}

/* ---- observations ---- */

static void emit_text(struct sen_decoder *d, int where, const struct dec_pkt *pk, const char *text,
                      const char *evidence)
{
    struct sen_obs o;

    memset(&o, 0, sizeof(o));
    o.where = where;
    o.t = pk->t;
    o.ts_us = pk->ts_us;
    o.text = text;
    o.text_len = strlen(text);
    o.evidence = evidence;
    o.input = d->input;
    d->fn(d->ctx, &o);
}

/* DNS observations pass through here so that the decoder can count them. */
static void dns_counter(void *ctx, const struct sen_obs *o)
{
    struct sen_decoder *d = ctx;

    if (o->where == SEN_DNS_QUERY)
        d->st.dns_questions++;
    else
        d->st.dns_answers++;
    d->fn(d->ctx, o);
}

static void app_dns(struct sen_decoder *d, const struct dec_pkt *pk, const uint8_t *msg, size_t len,
                    int partial)
{
    struct sen_tuple t = pk->t;

    d->st.dns_messages++;
    /* A response travels server -> client; observations name the client first. */
    if (len >= 3 && (msg[2] & 0x80) != 0) {
        t.sport = pk->t.dport;
        t.dport = pk->t.sport;
        memcpy(t.src, pk->t.dst, 16);
        memcpy(t.dst, pk->t.src, 16);
    }
    if (sen_dns_parse(msg, len, &t, pk->ts_us, d->input, dns_counter, d) != 0 && !partial) {
        d->st.malformed_dns++;
        d->st.malformed++;
    }
}

static void emit_hello(struct sen_decoder *d, const struct dec_pkt *pk,
                       const struct sen_client_hello *ch, int sni_where)
{
    if (ch->sni[0] != '\0')
        emit_text(d, sni_where, pk, ch->sni, NULL);
    if (ch->ja3[0] != '\0')
        emit_text(d, SEN_TLS_JA3, pk, ch->ja3, ch->ja3_string);
    if (ch->ja4[0] != '\0')
        emit_text(d, SEN_TLS_JA4, pk, ch->ja4, NULL);
}

static void app_http_emit(struct sen_decoder *d, const struct dec_pkt *pk, const char *host,
                          const char *url, const char *line)
{
    d->st.http_requests++;
    if (host[0] != '\0') {
        emit_text(d, SEN_HTTP_HOST, pk, host, line);
        emit_text(d, SEN_HTTP_URL, pk, url, line);
    } else if (url[0] == '/') {
        /* No Host (HTTP/1.0): the URL is named by the server's address. */
        char full[1025 + 46];
        size_t n;
        sen_addr_format(pk->t.family, pk->t.dst, full);
        n = strlen(full);
        snprintf(full + n, sizeof(full) - n, "%s", url);
        emit_text(d, SEN_HTTP_URL, pk, full, line);
    }
}

/* Length of the request at data (head plus a Content-Length body), or 0
 * when the head's end is not in data. */
static size_t http_request_span(const uint8_t *data, size_t len)
{
    size_t head = 0, body = 0;

    for (size_t i = 0; i + 1 < len; i++) {
        if (data[i] != '\n')
            continue;
        if (data[i + 1] == '\n') {
            head = i + 2;
            break;
        }
        if (data[i + 1] == '\r' && i + 2 < len && data[i + 2] == '\n') {
            head = i + 3;
            break;
        }
    }
    if (head == 0)
        return 0;
    for (size_t i = 0; i + 16 < head; i++) {
        if (data[i] == '\n' && (data[i + 1] | 0x20) == 'c' &&
            strncasecmp((const char *)data + i + 1, "content-length:", 15) == 0) {
            size_t j = i + 16;
            while (j < head && (data[j] == ' ' || data[j] == '\t'))
                j++;
            while (j < head && data[j] >= '0' && data[j] <= '9' && body < 0x10000000)
                body = body * 10 + (size_t)(data[j++] - '0');
            break;
        }
    }
    return head + body;
}

/* Whether p starts with a request method and a space (or a prefix of one
 * when the segment is that short), so that responses ("HTTP/1.1 200") and
 * other protocols are not taken for requests. */
static int http_starts(const uint8_t *p, size_t len)
{
    static const char *const methods[] = {"GET ",     "POST ",    "HEAD ",  "PUT ",  "DELETE ",
                                          "OPTIONS ", "CONNECT ", "PATCH ", "TRACE "};

    switch (p[0]) {
    case 'G':
    case 'P':
    case 'H':
    case 'D':
    case 'O':
    case 'C':
    case 'T':
        break;
    default:
        return 0;
    }
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        size_t m = strlen(methods[i]);
        if (memcmp(p, methods[i], len < m ? len : m) == 0)
            return 1;
    }
    return 0;
}

/* Runs the parser for `app` over data. Returns the bytes consumed; sets
 * *more when the last message is incomplete (the caller keeps the rest). */
static size_t app_tcp_consume(struct sen_decoder *d, int app, const struct dec_pkt *pk,
                              const uint8_t *data, size_t len, int *more)
{
    size_t off = 0;

    *more = 0;
    switch (app) {
    case DEC_APP_DNS:
        while (off < len) {
            size_t mlen;
            if (len - off < 2) {
                *more = 1;
                break;
            }
            mlen = rd16(data + off);
            if (mlen < 12) {
                d->st.malformed_dns++;
                d->st.malformed++;
                return len;
            }
            if (len - off - 2 < mlen) {
                *more = 1;
                break;
            }
            app_dns(d, pk, data + off + 2, mlen, 0);
            off += 2 + mlen;
        }
        return off;
    case DEC_APP_TLS: {
        struct sen_client_hello ch;
        int r;
        if (len < 6) {
            *more = 1;
            return 0;
        }
        if (data[5] != 0x01) /* not a ClientHello (a ServerHello, alert...) */
            return len;
        r = sen_tls_client_hello(data, len, 1, 0, &ch);
        if (r == 0) {
            *more = 1;
            return 0;
        }
        if (r < 0) {
            d->st.malformed_tls++;
            d->st.malformed++;
            return len;
        }
        d->st.tls_client_hellos++;
        emit_hello(d, pk, &ch, SEN_TLS_SNI);
        return len;
    }
    case DEC_APP_HTTP:
        while (off < len && http_starts(data + off, len - off)) {
            char host[256], url[1025], line[512];
            size_t span;
            int r = sen_http_request(data + off, len - off, host, url, line);
            if (r == 0) {
                *more = 1;
                break;
            }
            if (r < 0) {
                /* Bytes that are not a request mid-connection are a body
                 * or another protocol, not an error. */
                if (off == 0) {
                    d->st.malformed_http++;
                    d->st.malformed++;
                }
                return len;
            }
            app_http_emit(d, pk, host, url, line);
            span = http_request_span(data + off, len - off);
            if (span == 0 || span > len - off)
                return len; /* the body continues in later segments */
            off += span;
        }
        return off < len && !*more ? len : off;
    default:
        return len;
    }
}

static int tcp_app_for(const struct dec_pkt *pk, const uint8_t *p, size_t len)
{
    if (pk->t.dport == 53 || pk->t.sport == 53)
        return DEC_APP_DNS;
    if (p[0] == 0x16 && (len < 2 || p[1] == 0x03))
        return DEC_APP_TLS;
    if (http_starts(p, len))
        return DEC_APP_HTTP;
    return DEC_APP_NONE;
}

/* Keeps data[0..len) as the start of a message continuing at seq. */
static void flow_keep(struct sen_decoder *d, const struct dec_pkt *pk, int app, uint32_t seq,
                      const uint8_t *data, size_t len)
{
    struct dec_flow *f;
    int evicted = 0;

    if (len > dec_flow_buffer_size(d->flows))
        return; /* larger than anything we would parse: give up on it */
    if ((f = dec_flow_add(d->flows, &pk->t, &evicted)) == NULL)
        return;
    d->st.flows++;
    d->st.flow_evictions += (uint64_t)evicted;
    f->app = app;
    memcpy(f->buf, data, len);
    f->len = len;
    f->next_seq = seq + (uint32_t)len;
    f->last_us = pk->ts_us;
}

static void tcp_payload(struct sen_decoder *d, const struct dec_pkt *pk, uint32_t seq,
                        const uint8_t *p, size_t len)
{
    size_t used;
    int more, app;

    if (dec_flow_count(d->flows) > 0) {
        struct dec_flow *f = dec_flow_find(d->flows, &pk->t);
        if (f != NULL) {
            int32_t delta = (int32_t)(seq - f->next_seq);
            if (delta < 0 && (int64_t)delta + (int64_t)len <= 0)
                return; /* a retransmission of bytes we already hold */
            if (delta == 0 && f->len + len <= dec_flow_buffer_size(d->flows)) {
                memcpy(f->buf + f->len, p, len);
                f->len += len;
                f->next_seq += (uint32_t)len;
                f->last_us = pk->ts_us;
                used = app_tcp_consume(d, f->app, pk, f->buf, f->len, &more);
                if (!more || used >= f->len) {
                    dec_flow_remove(d->flows, f);
                } else {
                    memmove(f->buf, f->buf + used, f->len - used);
                    f->len -= used;
                }
                return;
            }
            /* A gap (lost or out-of-order segment) or an overflow: the held
             * message cannot be completed, so it is dropped. */
            d->st.reassembly_gaps++;
            dec_flow_remove(d->flows, f);
        }
    }
    app = tcp_app_for(pk, p, len);
    if (app == DEC_APP_NONE)
        return;
    used = app_tcp_consume(d, app, pk, p, len, &more);
    if (more && used < len && !pk->partial)
        flow_keep(d, pk, app, seq + (uint32_t)used, p + used, len - used);
}

static void udp_payload(struct sen_decoder *d, const struct dec_pkt *pk, const uint8_t *p,
                        size_t len)
{
    uint16_t sp = pk->t.sport, dp = pk->t.dport;

    if (len == 0)
        return;
    if (sp == 53 || dp == 53 || sp == 5353 || dp == 5353) {
        app_dns(d, pk, p, len, pk->partial);
        return;
    }
    /* A client's QUIC Initial: long header, Initial type for v1 (0b00) or
     * v2 (0b01), and padded to at least 1,200 bytes (RFC 9000 14.1). */
    if (len >= 1200 && (p[0] & 0xC0) == 0xC0) {
        uint32_t ver = rd32(p + 1);
        unsigned type = (p[0] >> 4) & 3;
        if ((ver == 1 && type == 0) || (ver == 0x6b3343cf && type == 1)) {
            struct sen_client_hello ch;
            int r = sen_quic_initial_join(d->quic, &pk->t, pk->ts_us, p, len, &ch);
            d->st.quic_initials++;
            if (r > 0)
                emit_hello(d, pk, &ch, SEN_QUIC_SNI);
            else if (r < 0) {
                d->st.malformed_quic++;
                d->st.malformed++;
            }
        }
    }
}

/* ---- IP and transport ---- */

static void emit_ip(struct sen_decoder *d, const struct dec_pkt *pk)
{
    struct sen_obs o;
    size_t alen = pk->t.family == AF_INET ? 4 : 16;

    memset(&o, 0, sizeof(o));
    o.where = SEN_IP_DST;
    o.t = pk->t;
    o.ts_us = pk->ts_us;
    o.input = d->input;
    o.addr_family = pk->t.family;
    memcpy(o.addr, pk->t.dst, alen);
    o.port = pk->t.dport;
    d->fn(d->ctx, &o);
    o.where = SEN_IP_SRC;
    memcpy(o.addr, pk->t.src, alen);
    o.port = pk->t.sport;
    d->fn(d->ctx, &o);
}

static void transport(struct sen_decoder *d, struct dec_pkt *pk, const uint8_t *p, size_t len)
{
    switch (pk->t.proto) {
    case IPPROTO_TCP: {
        size_t hl;
        d->st.tcp++;
        if (len < 20) {
            d->st.truncated++;
            break;
        }
        hl = (size_t)(p[12] >> 4) * 4;
        if (hl < 20) {
            d->st.malformed++;
            break;
        }
        if (hl > len) {
            d->st.truncated++;
            break;
        }
        pk->t.sport = rd16(p);
        pk->t.dport = rd16(p + 2);
        emit_ip(d, pk);
        if (len > hl)
            tcp_payload(d, pk, rd32(p + 4), p + hl, len - hl);
        return;
    }
    case IPPROTO_UDP: {
        size_t ulen;
        d->st.udp++;
        if (len < 8) {
            d->st.truncated++;
            break;
        }
        pk->t.sport = rd16(p);
        pk->t.dport = rd16(p + 2);
        ulen = rd16(p + 4);
        emit_ip(d, pk);
        if (ulen < 8) {
            d->st.malformed++;
            return;
        }
        if (ulen > len) {
            pk->partial = 1;
            ulen = len;
        }
        udp_payload(d, pk, p + 8, ulen - 8);
        return;
    }
    default:
        d->st.other_ip++;
        break;
    }
    emit_ip(d, pk);
}

static void decode_ipv4(struct sen_decoder *d, const uint8_t *p, size_t len, int64_t ts_us)
{
    struct dec_pkt pk;
    size_t hl, total;
    unsigned frag;

    d->st.ipv4++;
    if (len < 20) {
        d->st.truncated++;
        return;
    }
    hl = (size_t)(p[0] & 0x0F) * 4;
    total = rd16(p + 2);
    if ((p[0] >> 4) != 4 || hl < 20 || total < hl) {
        d->st.malformed++;
        return;
    }
    if (hl > len) {
        d->st.truncated++;
        return;
    }
    memset(&pk, 0, sizeof(pk));
    pk.ts_us = ts_us;
    if (total > len)
        pk.partial = 1; /* cut by the snap length */
    else
        len = total; /* drop Ethernet padding */
    pk.t.family = AF_INET;
    pk.t.proto = p[9];
    memcpy(pk.t.src, p + 12, 4);
    memcpy(pk.t.dst, p + 16, 4);
    frag = rd16(p + 6);
    if ((frag & 0x1FFF) != 0) {
        /* A later fragment has no transport header: counted, addresses only. */
        d->st.fragments++;
        emit_ip(d, &pk);
        return;
    }
    if (frag & 0x2000)
        pk.partial = 1;
    transport(d, &pk, p + hl, len - hl);
}

static void decode_ipv6(struct sen_decoder *d, const uint8_t *p, size_t len, int64_t ts_us)
{
    struct dec_pkt pk;
    size_t off = 40, plen;
    uint8_t nh;

    d->st.ipv6++;
    if (len < 40) {
        d->st.truncated++;
        return;
    }
    if ((p[0] >> 4) != 6) {
        d->st.malformed++;
        return;
    }
    memset(&pk, 0, sizeof(pk));
    pk.ts_us = ts_us;
    plen = rd16(p + 4);
    if (40 + plen > len)
        pk.partial = 1;
    else if (plen > 0)
        len = 40 + plen; /* plen 0 is a jumbogram: trust the capture */
    pk.t.family = AF_INET6;
    memcpy(pk.t.src, p + 8, 16);
    memcpy(pk.t.dst, p + 24, 16);
    nh = p[6];
    for (int i = 0;; i++) {
        size_t el;
        if (nh != 0 && nh != 43 && nh != 44 && nh != 60 && nh != 51)
            break;
        if (i == MAX_V6_EXT || off + 8 > len) {
            d->st.truncated += off + 8 > len;
            d->st.malformed += i == MAX_V6_EXT;
            pk.t.proto = nh;
            emit_ip(d, &pk);
            return;
        }
        if (nh == 44) {
            unsigned fo = rd16(p + off + 2);
            if ((fo & 0xFFF8) != 0) {
                d->st.fragments++;
                pk.t.proto = p[off];
                emit_ip(d, &pk);
                return;
            }
            if (fo & 1)
                pk.partial = 1;
            el = 8;
        } else if (nh == 51) {
            el = ((size_t)p[off + 1] + 2) * 4;
        } else {
            el = ((size_t)p[off + 1] + 1) * 8;
        }
        nh = p[off];
        off += el;
        if (off > len) {
            d->st.truncated++;
            pk.t.proto = nh;
            emit_ip(d, &pk);
            return;
        }
    }
    pk.t.proto = nh;
    if (nh == 59) { /* no next header */
        d->st.other_ip++;
        emit_ip(d, &pk);
        return;
    }
    transport(d, &pk, p + off, len - off);
}

static void decode_ethertype(struct sen_decoder *d, uint16_t type, const uint8_t *p, size_t len,
                             int64_t ts_us)
{
    for (int tags = 0; type == ETH_VLAN || type == ETH_QINQ || type == ETH_QINQ_OLD; tags++) {
        if (tags == MAX_VLAN_TAGS) {
            d->st.malformed++;
            return;
        }
        if (len < 4) {
            d->st.truncated++;
            return;
        }
        type = rd16(p + 2);
        p += 4;
        len -= 4;
    }
    if (type == ETH_PPPOE) {
        uint16_t proto;
        if (len < 8) {
            d->st.truncated++;
            return;
        }
        if (p[0] != 0x11 || p[1] != 0x00) { /* version 1, type 1, session data */
            d->st.malformed++;
            return;
        }
        proto = rd16(p + 6);
        p += 8;
        len -= 8;
        if (proto == 0x0021)
            type = ETH_IPV4;
        else if (proto == 0x0057)
            type = ETH_IPV6;
        else {
            d->st.non_ip++; /* LCP, IPCP, ... */
            return;
        }
    }
    if (type == ETH_IPV4)
        decode_ipv4(d, p, len, ts_us);
    else if (type == ETH_IPV6)
        decode_ipv6(d, p, len, ts_us);
    else
        d->st.non_ip++;
}

static void decode_raw_ip(struct sen_decoder *d, const uint8_t *p, size_t len, int64_t ts_us)
{
    if (len < 1) {
        d->st.truncated++;
        return;
    }
    if ((p[0] >> 4) == 4)
        decode_ipv4(d, p, len, ts_us);
    else if ((p[0] >> 4) == 6)
        decode_ipv6(d, p, len, ts_us);
    else
        d->st.non_ip++;
}

void sen_decode_packet(struct sen_decoder *d, int linktype, const uint8_t *pkt, size_t caplen,
                       int64_t ts_us)
{
    d->st.packets++;
    d->st.bytes += caplen;
    if (pkt == NULL)
        caplen = 0;
    switch (linktype) {
    case DLT_EN10MB:
        if (caplen < 14) {
            d->st.truncated++;
            return;
        }
        decode_ethertype(d, rd16(pkt + 12), pkt + 14, caplen - 14, ts_us);
        return;
    case DLT_RAW:
    case LINKTYPE_RAW:
        decode_raw_ip(d, pkt, caplen, ts_us);
        return;
    case DLT_IPV4:
        if (caplen < 1 || (pkt[0] >> 4) != 4) {
            d->st.malformed++;
            return;
        }
        decode_ipv4(d, pkt, caplen, ts_us);
        return;
    case DLT_IPV6:
        if (caplen < 1 || (pkt[0] >> 4) != 6) {
            d->st.malformed++;
            return;
        }
        decode_ipv6(d, pkt, caplen, ts_us);
        return;
    case DLT_LINUX_SLL:
        if (caplen < 16) {
            d->st.truncated++;
            return;
        }
        decode_ethertype(d, rd16(pkt + 14), pkt + 16, caplen - 16, ts_us);
        return;
    case DLT_LINUX_SLL2:
        if (caplen < 20) {
            d->st.truncated++;
            return;
        }
        decode_ethertype(d, rd16(pkt), pkt + 20, caplen - 20, ts_us);
        return;
    case DLT_NULL:
    case DLT_LOOP: {
        uint32_t fam;
        if (caplen < 4) {
            d->st.truncated++;
            return;
        }
        /* DLT_NULL's family is in the writer's byte order, DLT_LOOP's in
         * network order: a value above 0xFFFF was written the other way. */
        memcpy(&fam, pkt, 4);
        if (linktype == DLT_LOOP || fam > 0xFFFF)
            fam = rd32(pkt);
        if (fam > 0xFFFF)
            fam = (uint32_t)pkt[3] << 24 | (uint32_t)pkt[2] << 16 | (uint32_t)pkt[1] << 8 | pkt[0];
        if (fam == 2)
            decode_ipv4(d, pkt + 4, caplen - 4, ts_us);
        else if (fam == 10 || fam == 24 || fam == 28 || fam == 30)
            decode_ipv6(d, pkt + 4, caplen - 4, ts_us);
        else
            d->st.non_ip++;
        return;
    }
    default:
        d->st.unsupported_link++;
        return;
    }
}
