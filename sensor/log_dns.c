/*
 * DNS server query logs (logs.h): BIND's query and RPZ lines, dnsmasq's
 * log-queries lines, Unbound's log-queries / log-replies / local-action
 * lines and the Windows DNS server's debug log packet lines. Each question
 * a client asked becomes a dns.query observation with the client as the
 * tuple's source; answers that carry an address (dnsmasq "reply ... is
 * 1.2.3.4") become dns.answer. A server's other messages (zone loads,
 * DHCP, statistics) are ignored, not malformed; a line that says it is a
 * query but lacks its name or client is malformed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "khx.h"
#include "log_int.h"

/* Sets the client half of a tuple from "10.0.0.5#5353", "10.0.0.5@5353"
 * or "10.0.0.5/5353" (sep), or a bare address. Returns 0 or -1. */
static int client_addr(const char *s, size_t n, char sep, struct sen_tuple *t)
{
    const char *hash = NULL;
    uint64_t port = 0;
    int fam;

    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == sep) {
            hash = s + i - 1;
            break;
        }
    if (hash != NULL) {
        if (senlog_parse_uint(hash + 1, n - (size_t)(hash - s) - 1, 65535, &port) != 0)
            return -1;
        n = (size_t)(hash - s);
    }
    if ((fam = senlog_parse_ip(s, n, t->src)) == 0)
        return -1;
    t->family = (uint8_t)fam;
    t->sport = (uint16_t)port;
    t->dport = 53;
    if (t->proto == 0)
        t->proto = IPPROTO_UDP;
    return 0;
}

/* ---- BIND ---- */

/* "21-Nov-2026 10:00:00.123" -> local time. Returns bytes used or 0. */
static size_t bind_time(const char *s, size_t n, int64_t *us)
{
    int d, mon, y1, y2, h, mi, sec;
    long ms = 0;
    size_t i = 20;

    if (n < 20 || s[2] != '-' || s[6] != '-' || s[11] != ' ' || s[14] != ':' || s[17] != ':')
        return 0;
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return 0;
    d = (s[0] - '0') * 10 + (s[1] - '0');
    if ((mon = senlog_month(s + 3, 3)) < 0)
        return 0;
    for (int k = 0; k < 4; k++)
        if (s[7 + k] < '0' || s[7 + k] > '9')
            return 0;
    y1 = (s[7] - '0') * 10 + (s[8] - '0');
    y2 = (s[9] - '0') * 10 + (s[10] - '0');
    for (int k = 12; k < 20; k++)
        if (k != 14 && k != 17 && (s[k] < '0' || s[k] > '9'))
            return 0;
    h = (s[12] - '0') * 10 + (s[13] - '0');
    mi = (s[15] - '0') * 10 + (s[16] - '0');
    sec = (s[18] - '0') * 10 + (s[19] - '0');
    if (d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return 0;
    if (i < n && s[i] == '.') {
        int digits = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++)
            if (digits < 3)
                ms = ms * 10 + (s[i] - '0');
        for (; digits < 3; digits++)
            ms *= 10;
    }
    *us = senlog_local_us(y1 * 100 + y2, mon, d, h, mi, sec, ms * 1000);
    return i;
}

int senlog_bind_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts)
{
    const char *p = s, *end = s + n, *tok, *q;
    size_t tlen, used;
    struct sen_tuple t;
    int dated = ts != 0;

    memset(&t, 0, sizeof(t));
    if ((used = bind_time(s, n, &ts)) != 0) {
        p += used;
        dated = 1;
    }
    /* Skip "queries: info: " (print-category / print-severity). */
    for (;;) {
        const char *save = p;
        if (!senlog_token(&p, end, &tok, &tlen))
            break;
        if (tlen == 6 && memcmp(tok, "client", 6) == 0)
            goto client;
        if (tok[tlen - 1] != ':') {
            p = save;
            break;
        }
    }
    return dated ? 0 : senlog_bad(r, "bind: no date and no \"client\"");
client:
    if (!senlog_token(&p, end, &tok, &tlen))
        return senlog_bad(r, "bind: nothing after \"client\"");
    if (senlog_starts(tok, tlen, "@0x") && !senlog_token(&p, end, &tok, &tlen))
        return senlog_bad(r, "bind: nothing after the client object");
    /* "10.0.0.5#5353", "10.0.0.5#5353:" or "10.0.0.5#5353 (name):". */
    if (tlen > 0 && tok[tlen - 1] == ':')
        tlen--;
    if (client_addr(tok, tlen, '#', &t) != 0)
        return senlog_bad(r, "bind: bad client address \"%.*s\"", (int)KHX_MIN(tlen, 64), tok);
    if ((q = senlog_find(p, (size_t)(end - p), "query: ")) != NULL) {
        const char *name, *tail;
        size_t nlen;
        uint8_t srv[16];
        p = q + 7;
        if (!senlog_token(&p, end, &name, &nlen))
            return senlog_bad(r, "bind: query without a name");
        /* The flags ("+E(0)K") say T for TCP; the last "(addr)" is the
         * server address the query came in on. */
        tail = p;
        while (senlog_token(&p, end, &tok, &tlen)) {
            if (tok[0] == '+' || tok[0] == '-') {
                if (memchr(tok, 'T', tlen) != NULL)
                    t.proto = IPPROTO_TCP;
            } else if (tlen > 2 && tok[0] == '(' && tok[tlen - 1] == ')') {
                int fam = senlog_parse_ip(tok + 1, tlen - 2, srv);
                if (fam == t.family)
                    memcpy(t.dst, srv, 16);
            }
        }
        (void)tail;
        senlog_emit_text(r, SEN_DNS_QUERY, &t, ts, name, nlen);
        return 1;
    }
    if ((q = senlog_find(p, (size_t)(end - p), "query (cache) '")) != NULL) {
        const char *name = q + 15, *slash;
        slash = memchr(name, '/', (size_t)(end - name));
        if (slash == NULL)
            return senlog_bad(r, "bind: denied query without a name");
        senlog_emit_text(r, SEN_DNS_QUERY, &t, ts, name, (size_t)(slash - name));
        return 1;
    }
    if (senlog_find(p, (size_t)(end - p), "rpz ") != NULL &&
        (q = senlog_find(p, (size_t)(end - p), " rewrite ")) != NULL) {
        const char *name = q + 9, *slash;
        slash = memchr(name, '/', (size_t)(end - name));
        if (slash == NULL)
            return senlog_bad(r, "bind: rpz rewrite without name/type/class");
        senlog_emit_text(r, SEN_DNS_QUERY, &t, ts, name, (size_t)(slash - name));
        return 1;
    }
    return 0;
}

/* ---- dnsmasq ---- */

int senlog_dnsmasq_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts)
{
    const char *p = s, *end = s + n, *verb, *name, *tok, *save;
    size_t vlen, nlen, tlen;
    struct sen_tuple t;
    uint64_t serial;

    memset(&t, 0, sizeof(t));
    if (!senlog_token(&p, end, &verb, &vlen))
        return 0;
    /* log-queries=extra: "<serial> <client>/<port> query[A] ...". */
    if (senlog_parse_uint(verb, vlen, UINT64_MAX, &serial) == 0) {
        if (!senlog_token(&p, end, &tok, &tlen) || client_addr(tok, tlen, '/', &t) != 0)
            return senlog_bad(r, "dnsmasq: bad client after serial");
        if (!senlog_token(&p, end, &verb, &vlen))
            return senlog_bad(r, "dnsmasq: nothing after the client");
    }
    if (senlog_starts(verb, vlen, "query[")) {
        if (verb[vlen - 1] != ']')
            return senlog_bad(r, "dnsmasq: bad query type");
        if (!senlog_token(&p, end, &name, &nlen))
            return senlog_bad(r, "dnsmasq: query without a name");
        if (!senlog_token(&p, end, &tok, &tlen) || tlen != 4 || memcmp(tok, "from", 4) != 0 ||
            !senlog_token(&p, end, &tok, &tlen))
            return senlog_bad(r, "dnsmasq: query without \"from <client>\"");
        {
            /* The extra form already gave the client with its port. */
            struct sen_tuple from;
            memset(&from, 0, sizeof(from));
            if (client_addr(tok, tlen, '#', &from) != 0)
                return senlog_bad(r, "dnsmasq: bad client address");
            if (!(t.family == from.family && memcmp(t.src, from.src, 16) == 0))
                t = from;
        }
        senlog_emit_text(r, SEN_DNS_QUERY, &t, ts, name, nlen);
        return 1;
    }
    if ((vlen == 5 && memcmp(verb, "reply", 5) == 0) ||
        (vlen == 6 && memcmp(verb, "cached", 6) == 0)) {
        uint8_t a[16];
        int fam;
        if (!senlog_token(&p, end, &name, &nlen))
            return senlog_bad(r, "dnsmasq: reply without a name");
        save = p;
        if (!senlog_token(&p, end, &tok, &tlen) || tlen != 2 || memcmp(tok, "is", 2) != 0 ||
            !senlog_token(&p, end, &tok, &tlen))
            return senlog_bad(r, "dnsmasq: reply without \"is <data>\"");
        (void)save;
        /* "<CNAME>", "NXDOMAIN", "NODATA-IPv6"...: nothing to check. */
        if ((fam = senlog_parse_ip(tok, tlen, a)) == 0)
            return 0;
        senlog_emit_addr(r, SEN_DNS_ANSWER, &t, ts, fam, a, 0);
        return 1;
    }
    return 0;
}

/* ---- Unbound ---- */

int senlog_unbound_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts)
{
    const char *p = s, *end = s + n, *tok, *info, *name = NULL;
    size_t tlen, nlen = 0;
    struct sen_tuple t;
    int is_reply;

    memset(&t, 0, sizeof(t));
    /* Unbound's own log file: "[1700000000] unbound[123:0] info: ...". */
    if (p < end && *p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        int64_t us;
        if (close != NULL && senlog_parse_epoch(p + 1, (size_t)(close - p - 1), &us) == 0) {
            ts = us;
            p = close + 1;
        }
    }
    if ((info = senlog_find(p, (size_t)(end - p), "info: ")) == NULL)
        return 0;
    p = info + 6;
    if (senlog_starts(p, (size_t)(end - p), "rpz: applied") ||
        senlog_find(p, (size_t)(end - p), "@")) {
        /* Local actions: "... <client>@<port> <qname> <type> <class>". */
        while (senlog_token(&p, end, &tok, &tlen)) {
            if (memchr(tok, '@', tlen) != NULL && client_addr(tok, tlen, '@', &t) == 0) {
                if (!senlog_token(&p, end, &name, &nlen))
                    return senlog_bad(r, "unbound: local action without a name");
                senlog_emit_text(r, SEN_DNS_QUERY, &t, ts, name, nlen);
                return 1;
            }
        }
        return 0;
    }
    /* "<client> <qname> <type> <class>" and, for log-replies, then
     * "<rcode> <time> <cached> <size>". */
    {
        const char *f[8];
        size_t fl[8];
        int k = 0;
        while (k < 8 && senlog_token(&p, end, &f[k], &fl[k]))
            k++;
        if (k != 4 && k != 8)
            return 0;
        if (client_addr(f[0], fl[0], '@', &t) != 0)
            return senlog_bad(r, "unbound: bad client address \"%.*s\"", (int)KHX_MIN(fl[0], 64),
                              f[0]);
        if (fl[3] != 2 && fl[3] != 3 && fl[3] != 4)
            return senlog_bad(r, "unbound: bad class");
        is_reply = k == 8;
        if (!is_reply)
            r->unbound_saw_queries = 1;
        else if (r->unbound_saw_queries)
            return 0; /* the query line already gave this question */
        senlog_emit_text(r, SEN_DNS_QUERY, &t, ts, f[1], fl[1]);
        return 1;
    }
}

/* ---- Windows DNS debug log ---- */

/* "11/21/2026 10:00:00 AM" (the server's locale; day first when the first
 * number cannot be a month). Returns bytes used or 0. */
static size_t windns_time(const char *s, size_t n, int64_t *us)
{
    int v[6] = {0}, k = 0;
    size_t i = 0;
    int mon, day;

    while (i < n && k < 6) {
        int x = 0, digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && digits < 4) {
            x = x * 10 + (s[i++] - '0');
            digits++;
        }
        if (digits == 0)
            return 0;
        v[k++] = x;
        if (k == 6)
            break;
        if (i >= n)
            return 0;
        if (k < 3 && s[i] != '/')
            return 0;
        if (k == 3 && s[i] != ' ')
            return 0;
        if (k > 3 && s[i] != ':')
            return 0;
        i++;
    }
    if (k != 6)
        return 0;
    if (i + 3 <= n && s[i] == ' ' && (s[i + 1] == 'A' || s[i + 1] == 'P') && s[i + 2] == 'M') {
        if (v[3] == 12)
            v[3] = 0;
        if (s[i + 1] == 'P')
            v[3] += 12;
        i += 3;
    }
    mon = v[0];
    day = v[1];
    if (mon > 12) {
        mon = v[1];
        day = v[0];
    }
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || v[2] < 1970 || v[3] > 23 || v[4] > 59 ||
        v[5] > 60)
        return 0;
    *us = senlog_local_us(v[2], mon - 1, day, v[3], v[4], v[5], 0);
    return i;
}

/* "(3)www(7)example(3)com(0)" -> "www.example.com". Returns the length,
 * 0 for the root, -1 when malformed. */
static int windns_name(const char *s, size_t n, char *out, size_t outmax)
{
    size_t i = 0, o = 0;
    while (i < n) {
        uint64_t len;
        const char *close;
        if (s[i] != '(' || (close = memchr(s + i, ')', n - i)) == NULL)
            return -1;
        if (senlog_parse_uint(s + i + 1, (size_t)(close - s - i - 1), 63, &len) != 0)
            return -1;
        i = (size_t)(close - s) + 1;
        if (len == 0)
            return i == n ? (int)o : -1;
        if (i + len > n || o + len + 1 >= outmax)
            return -1;
        if (o > 0)
            out[o++] = '.';
        memcpy(out + o, s + i, len);
        o += len;
        i += len;
    }
    return -1;
}

int senlog_windns_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts)
{
    const char *p = s, *end = s + n, *tok;
    size_t tlen, used;
    struct sen_tuple t;
    int rcv, response = 0;
    char name[256];
    int nlen;

    memset(&t, 0, sizeof(t));
    if ((used = windns_time(s, n, &ts)) == 0) {
        /* The file's preamble ("Message logging key ...") and blank lines. */
        if (senlog_find(s, n, "PACKET ") != NULL)
            return senlog_bad(r, "windns: packet line without a date");
        return 0;
    }
    p += used;
    if (!senlog_token(&p, end, &tok, &tlen) || !senlog_token(&p, end, &tok, &tlen))
        return senlog_bad(r, "windns: truncated line");
    if (tlen != 6 || memcmp(tok, "PACKET", 6) != 0)
        return 0; /* EVENT, Note and other non-packet lines */
    if (!senlog_token(&p, end, &tok, &tlen) || !senlog_token(&p, end, &tok, &tlen))
        return senlog_bad(r, "windns: packet line without a protocol");
    if (tlen == 3 && memcmp(tok, "UDP", 3) == 0)
        t.proto = IPPROTO_UDP;
    else if (tlen == 3 && memcmp(tok, "TCP", 3) == 0)
        t.proto = IPPROTO_TCP;
    else
        return senlog_bad(r, "windns: protocol \"%.*s\"", (int)KHX_MIN(tlen, 16), tok);
    if (!senlog_token(&p, end, &tok, &tlen) || tlen != 3)
        return senlog_bad(r, "windns: no direction");
    if (memcmp(tok, "Rcv", 3) == 0)
        rcv = 1;
    else if (memcmp(tok, "Snd", 3) == 0)
        rcv = 0;
    else
        return senlog_bad(r, "windns: direction \"%.*s\"", (int)tlen, tok);
    if (!senlog_token(&p, end, &tok, &tlen) || client_addr(tok, tlen, '#', &t) != 0)
        return senlog_bad(r, "windns: bad remote address");
    if (!senlog_token(&p, end, &tok, &tlen)) /* transaction id */
        return senlog_bad(r, "windns: no transaction id");
    if (!senlog_token(&p, end, &tok, &tlen))
        return senlog_bad(r, "windns: no opcode");
    if (tlen == 1 && tok[0] == 'R') {
        response = 1;
        if (!senlog_token(&p, end, &tok, &tlen))
            return senlog_bad(r, "windns: no opcode");
    }
    if (!(tlen == 1 && tok[0] == 'Q'))
        return 0; /* updates, notifies */
    {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (close == NULL)
            return senlog_bad(r, "windns: no [flags]");
        p = close + 1;
    }
    if (!senlog_token(&p, end, &tok, &tlen)) /* query type */
        return senlog_bad(r, "windns: no query type");
    if (!senlog_token(&p, end, &tok, &tlen))
        return senlog_bad(r, "windns: no query name");
    if ((nlen = windns_name(tok, tlen, name, sizeof(name))) < 0)
        return senlog_bad(r, "windns: bad encoded name \"%.*s\"", (int)KHX_MIN(tlen, 64), tok);
    /* A question a client sent us ("Rcv", not a response). Responses we
     * send ("Snd R") repeat it, and "Snd Q" / "Rcv R" are our own
     * recursion to forwarders: counting them would double the client's. */
    if (!rcv || response)
        return 0;
    senlog_emit_text(r, SEN_DNS_QUERY, &t, ts, name, (size_t)nlen);
    return 1;
}
