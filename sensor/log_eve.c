/*
 * Suricata eve.json (logs.h), one JSON object per line, read with jansson.
 * The event_type says what the record holds:
 *   dns    v1 ("type":"query" with rrname; "type":"answer" with one
 *          rrtype/rdata), v2 ("answers" array or "grouped" object) and
 *          v3 ("queries" array, "type":"request"/"response");
 *   tls    sni, ja3.hash, ja4;   http  hostname and url;
 *   quic   sni, ja4 (and ja3.hash when present);
 *   flow, netflow, alert   src/dest ip and port -> ip.dst.
 * Other event types (stats, fileinfo, anomaly...) are ignored.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <string.h>

#include "khx.h"
#include "log_int.h"

static const char *jstr(json_t *o, const char *key, size_t *len)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return NULL;
    *len = json_string_length(v);
    return json_string_value(v);
}

static int eve_tuple(struct sen_log_reader *r, json_t *o, struct sen_tuple *t)
{
    const char *s, *d, *p;
    size_t sl, dl, pl;
    json_t *v;
    int fam;

    memset(t, 0, sizeof(*t));
    if ((s = jstr(o, "src_ip", &sl)) == NULL || (d = jstr(o, "dest_ip", &dl)) == NULL)
        return 0; /* records without addresses (stats) */
    if ((fam = senlog_parse_ip(s, sl, t->src)) == 0 || senlog_parse_ip(d, dl, t->dst) != fam)
        return senlog_bad(r, "eve: bad src_ip/dest_ip");
    t->family = (uint8_t)fam;
    v = json_object_get(o, "src_port");
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 65535)
        t->sport = (uint16_t)json_integer_value(v);
    v = json_object_get(o, "dest_port");
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 65535)
        t->dport = (uint16_t)json_integer_value(v);
    if ((p = jstr(o, "proto", &pl)) != NULL) {
        if (pl == 3 && strncasecmp(p, "TCP", 3) == 0)
            t->proto = IPPROTO_TCP;
        else if (pl == 3 && strncasecmp(p, "UDP", 3) == 0)
            t->proto = IPPROTO_UDP;
        else if (pl == 4 && strncasecmp(p, "ICMP", 4) == 0)
            t->proto = IPPROTO_ICMP;
        else if (pl == 9 && strncasecmp(p, "IPv6-ICMP", 9) == 0)
            t->proto = IPPROTO_ICMPV6;
    }
    return 0;
}

static void swap_tuple(struct sen_tuple *t)
{
    uint8_t a[16];
    uint16_t p = t->sport;
    memcpy(a, t->src, 16);
    memcpy(t->src, t->dst, 16);
    memcpy(t->dst, a, 16);
    t->sport = t->dport;
    t->dport = p;
}

static void dns_answer(struct sen_log_reader *r, const struct sen_tuple *t, int64_t ts,
                       const char *rrtype, const char *rdata, size_t rlen)
{
    uint8_t a[16];
    int fam;

    if (rrtype == NULL || rdata == NULL)
        return;
    if (strcmp(rrtype, "A") == 0 || strcmp(rrtype, "AAAA") == 0) {
        if ((fam = senlog_parse_ip(rdata, rlen, a)) != 0)
            senlog_emit_addr(r, SEN_DNS_ANSWER, t, ts, fam, a, 0);
    } else if (strcmp(rrtype, "CNAME") == 0) {
        senlog_emit_text(r, SEN_DNS_ANSWER, t, ts, rdata, rlen);
    }
}

static int eve_dns(struct sen_log_reader *r, json_t *dns, struct sen_tuple *t, int64_t ts)
{
    const char *type, *name;
    size_t tl, nl;
    json_t *arr, *grouped, *e;
    size_t i;
    int answer;

    if (!json_is_object(dns))
        return senlog_bad(r, "eve dns: no \"dns\" object");
    type = jstr(dns, "type", &tl);
    answer = type != NULL && (strcmp(type, "answer") == 0 || strcmp(type, "response") == 0);
    /* Answers are logged in the response's direction: the client is the
     * side that is not port 53. */
    if (answer && t->sport == 53 && t->dport != 53)
        swap_tuple(t);
    if (!answer) {
        if ((arr = json_object_get(dns, "queries")) != NULL && json_is_array(arr)) {
            json_array_foreach(arr, i, e)
            {
                if ((name = jstr(e, "rrname", &nl)) != NULL)
                    senlog_emit_text(r, SEN_DNS_QUERY, t, ts, name, nl);
            }
        } else if ((name = jstr(dns, "rrname", &nl)) != NULL) {
            senlog_emit_text(r, SEN_DNS_QUERY, t, ts, name, nl);
        } else {
            return senlog_bad(r, "eve dns: query without rrname or queries");
        }
        return 1;
    }
    arr = json_object_get(dns, "answers");
    grouped = json_object_get(dns, "grouped");
    if (json_is_array(arr)) {
        json_array_foreach(arr, i, e)
        {
            size_t rl, yl;
            const char *rd = jstr(e, "rdata", &rl), *ty = jstr(e, "rrtype", &yl);
            dns_answer(r, t, ts, ty, rd, rd != NULL ? rl : 0);
        }
    } else if (json_is_object(grouped)) {
        static const char *const types[] = {"A", "AAAA", "CNAME"};
        for (size_t k = 0; k < KHX_ARRAY_LEN(types); k++) {
            json_t *g = json_object_get(grouped, types[k]);
            if (!json_is_array(g))
                continue;
            json_array_foreach(g, i, e)
            {
                if (json_is_string(e))
                    dns_answer(r, t, ts, types[k], json_string_value(e), json_string_length(e));
            }
        }
    } else {
        /* v1: one answer per record. */
        size_t rl, yl;
        const char *rd = jstr(dns, "rdata", &rl), *ty = jstr(dns, "rrtype", &yl);
        dns_answer(r, t, ts, ty, rd, rd != NULL ? rl : 0);
    }
    return 1;
}

static void ja3_hash(struct sen_log_reader *r, json_t *o, const struct sen_tuple *t, int64_t ts)
{
    json_t *ja3 = json_object_get(o, "ja3");
    size_t l;
    const char *h;
    if (json_is_object(ja3) && (h = jstr(ja3, "hash", &l)) != NULL)
        senlog_emit_text(r, SEN_TLS_JA3, t, ts, h, l);
}

static int eve_http(struct sen_log_reader *r, json_t *http, const struct sen_tuple *t, int64_t ts)
{
    const char *h, *u;
    size_t hl, ul = 0;
    char url[2048];

    if (!json_is_object(http))
        return senlog_bad(r, "eve http: no \"http\" object");
    if ((h = jstr(http, "hostname", &hl)) == NULL)
        return 0;
    senlog_emit_text(r, SEN_HTTP_HOST, t, ts, h, hl);
    if ((u = jstr(http, "url", &ul)) != NULL) {
        const char *sch = memmem(u, ul, "://", 3);
        if (sch != NULL) {
            const char *sl = memchr(sch + 3, '/', ul - (size_t)(sch + 3 - u));
            ul = sl != NULL ? ul - (size_t)(sl - u) : 0;
            u = sl;
        }
        if (hl + ul + 1 < sizeof(url)) {
            size_t n = hl;
            memcpy(url, h, hl);
            if (ul == 0 || u[0] != '/')
                url[n++] = '/';
            if (ul > 0)
                memcpy(url + n, u, ul);
            senlog_emit_text(r, SEN_HTTP_URL, t, ts, url, n + ul);
        }
    }
    return 1;
}

int senlog_eve_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts)
{
    json_error_t err;
    json_t *o = NULL, *sub;
    const char *ev, *tstr, *v;
    size_t evl, tl, vl;
    struct sen_tuple t;
    int rc = -1;

    if (n == 0 || s[0] != '{')
        return senlog_bad(r, "eve: not a JSON object");
    if ((o = json_loadb(s, n, JSON_REJECT_DUPLICATES, &err)) == NULL)
        return senlog_bad(r, "eve: %s at column %d", err.text, err.column);
    if (!json_is_object(o)) {
        rc = senlog_bad(r, "eve: not a JSON object");
        goto out;
    }
    if ((ev = jstr(o, "event_type", &evl)) == NULL) {
        rc = senlog_bad(r, "eve: no event_type");
        goto out;
    }
    if ((tstr = jstr(o, "timestamp", &tl)) != NULL && senlog_parse_iso8601(tstr, tl, &ts) != 0) {
        rc = senlog_bad(r, "eve: bad timestamp \"%.*s\"", (int)KHX_MIN(tl, 40), tstr);
        goto out;
    }
    if (eve_tuple(r, o, &t) != 0)
        goto out;
    if (strcmp(ev, "dns") == 0) {
        rc = eve_dns(r, json_object_get(o, "dns"), &t, ts);
    } else if (strcmp(ev, "tls") == 0) {
        sub = json_object_get(o, "tls");
        if (!json_is_object(sub)) {
            rc = senlog_bad(r, "eve tls: no \"tls\" object");
            goto out;
        }
        if ((v = jstr(sub, "sni", &vl)) != NULL)
            senlog_emit_text(r, SEN_TLS_SNI, &t, ts, v, vl);
        ja3_hash(r, sub, &t, ts);
        if ((v = jstr(sub, "ja4", &vl)) != NULL)
            senlog_emit_text(r, SEN_TLS_JA4, &t, ts, v, vl);
        rc = 1;
    } else if (strcmp(ev, "quic") == 0) {
        sub = json_object_get(o, "quic");
        if (!json_is_object(sub)) {
            rc = senlog_bad(r, "eve quic: no \"quic\" object");
            goto out;
        }
        if ((v = jstr(sub, "sni", &vl)) != NULL)
            senlog_emit_text(r, SEN_QUIC_SNI, &t, ts, v, vl);
        ja3_hash(r, sub, &t, ts);
        if ((v = jstr(sub, "ja4", &vl)) != NULL)
            senlog_emit_text(r, SEN_TLS_JA4, &t, ts, v, vl);
        rc = 1;
    } else if (strcmp(ev, "http") == 0) {
        rc = eve_http(r, json_object_get(o, "http"), &t, ts);
    } else if (strcmp(ev, "flow") == 0 || strcmp(ev, "netflow") == 0 || strcmp(ev, "alert") == 0) {
        if (t.family == 0) {
            rc = senlog_bad(r, "eve %s: no src_ip/dest_ip", ev);
            goto out;
        }
        senlog_emit_addr(r, SEN_IP_DST, &t, ts, t.family, t.dst, t.dport);
        rc = 1;
    } else {
        rc = 0;
    }
out:
    json_decref(o);
    return rc;
}
