/*
 * Network device logs (logs.h): the kernel's netfilter LOG target lines
 * that iptables and nftables write ("SRC=.. DST=.. PROTO=TCP SPT=..
 * DPT=.."), and Squid's native access.log. A netfilter line gives ip.dst
 * and ip.src for its addresses; a Squid line gives http.host and http.url
 * for the request (a CONNECT only names host:port, so only http.host) and
 * ip.dst for the peer the hierarchy field names when that is an address.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "khx.h"
#include "log_int.h"

/* ---- netfilter LOG ---- */

/* The value of KEY= in the line (the first occurrence at a token start). */
static int nf_field(const char *s, size_t n, const char *key, const char **v, size_t *vlen)
{
    size_t klen = strlen(key);
    const char *p = s, *end = s + n;

    while ((p = memmem(p, (size_t)(end - p), key, klen)) != NULL) {
        if (p == s || p[-1] == ' ' || p[-1] == '\t') {
            const char *e = p + klen;
            while (e < end && *e != ' ' && *e != '\t')
                e++;
            *v = p + klen;
            *vlen = (size_t)(e - p - klen);
            return 1;
        }
        p += klen;
    }
    return 0;
}

static int nf_proto(const char *v, size_t n)
{
    static const struct {
        const char *name;
        int proto;
    } names[] = {{"TCP", IPPROTO_TCP},       {"UDP", IPPROTO_UDP},         {"ICMP", IPPROTO_ICMP},
                 {"ICMPv6", IPPROTO_ICMPV6}, {"UDPLITE", IPPROTO_UDPLITE}, {"SCTP", IPPROTO_SCTP},
                 {"GRE", IPPROTO_GRE},       {"ESP", IPPROTO_ESP},         {"AH", IPPROTO_AH}};
    uint64_t x;
    for (size_t i = 0; i < KHX_ARRAY_LEN(names); i++)
        if (strlen(names[i].name) == n && memcmp(v, names[i].name, n) == 0)
            return names[i].proto;
    if (senlog_parse_uint(v, n, 255, &x) == 0)
        return (int)x;
    return -1;
}

int senlog_netfilter_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts)
{
    const char *v;
    size_t vlen;
    struct sen_tuple t;
    uint8_t dst[16];
    uint64_t port;
    int fam, proto;

    memset(&t, 0, sizeof(t));
    if (!nf_field(s, n, "SRC=", &v, &vlen)) {
        if (senlog_find(s, n, "IN=") != NULL)
            return senlog_bad(r, "netfilter: LOG line without SRC=");
        return 0; /* other kernel messages */
    }
    if ((fam = senlog_parse_ip(v, vlen, t.src)) == 0)
        return senlog_bad(r, "netfilter: bad SRC=\"%.*s\"", (int)KHX_MIN(vlen, 64), v);
    if (!nf_field(s, n, "DST=", &v, &vlen))
        return senlog_bad(r, "netfilter: SRC= without DST=");
    if (senlog_parse_ip(v, vlen, dst) != fam)
        return senlog_bad(r, "netfilter: bad DST=\"%.*s\"", (int)KHX_MIN(vlen, 64), v);
    memcpy(t.dst, dst, 16);
    t.family = (uint8_t)fam;
    if (nf_field(s, n, "PROTO=", &v, &vlen)) {
        if ((proto = nf_proto(v, vlen)) < 0)
            return senlog_bad(r, "netfilter: unknown PROTO=\"%.*s\"", (int)KHX_MIN(vlen, 16), v);
        t.proto = (uint8_t)proto;
    }
    if (nf_field(s, n, "SPT=", &v, &vlen)) {
        if (senlog_parse_uint(v, vlen, 65535, &port) != 0)
            return senlog_bad(r, "netfilter: bad SPT=");
        t.sport = (uint16_t)port;
    }
    if (nf_field(s, n, "DPT=", &v, &vlen)) {
        if (senlog_parse_uint(v, vlen, 65535, &port) != 0)
            return senlog_bad(r, "netfilter: bad DPT=");
        t.dport = (uint16_t)port;
    }
    senlog_emit_addr(r, SEN_IP_DST, &t, ts, fam, t.dst, t.dport);
    senlog_emit_addr(r, SEN_IP_SRC, &t, ts, fam, t.src, t.sport);
    return 1;
}

/* ---- Squid native access.log ---- */

/* Splits an absolute URL or CONNECT authority into host and the rest.
 * "http://user@Host:8080/p?q" -> host "Host", port 8080, path "/p?q".
 * Returns 0, or -1 when there is no host. */
static int url_split(const char *u, size_t n, const char **host, size_t *hlen, uint16_t *port,
                     const char **path, size_t *plen)
{
    const char *p = u, *end = u + n, *h, *he, *colon = NULL;
    const char *scheme = memmem(u, n, "://", 3);
    uint64_t pv;

    *port = 0;
    if (scheme != NULL) {
        *port = (scheme - u == 5 && strncasecmp(u, "https", 5) == 0) ? 443 : 80;
        p = scheme + 3;
    }
    h = p;
    while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
    he = p;
    for (const char *q = h; q < he; q++)
        if (*q == '@')
            h = q + 1;
    if (h < he && *h == '[') {
        const char *close = memchr(h, ']', (size_t)(he - h));
        if (close == NULL)
            return -1;
        if (close + 1 < he && close[1] == ':')
            colon = close + 1;
        *host = h + 1;
        *hlen = (size_t)(close - h - 1);
    } else {
        colon = memchr(h, ':', (size_t)(he - h));
        *host = h;
        *hlen = (size_t)((colon != NULL ? colon : he) - h);
    }
    if (colon != NULL) {
        if (senlog_parse_uint(colon + 1, (size_t)(he - colon - 1), 65535, &pv) != 0)
            return -1;
        *port = (uint16_t)pv;
    }
    *path = he;
    *plen = (size_t)(end - he);
    return *hlen > 0 ? 0 : -1;
}

int senlog_squid_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts)
{
    const char *p = s, *end = s + n;
    const char *f[10];
    size_t fl[10];
    int k = 0;
    struct sen_tuple t;
    const char *host, *path, *slash;
    size_t hlen, plen;
    uint16_t port;
    uint8_t peer[16];
    int connect, peer_fam = 0;
    char url[2048];
    size_t ulen;

    memset(&t, 0, sizeof(t));
    /* time elapsed client code/status bytes method URL user hier/peer type */
    while (k < 10 && senlog_token(&p, end, &f[k], &fl[k]))
        k++;
    if (k < 7)
        return senlog_bad(r, "squid: %d fields, want at least 7", k);
    if (senlog_parse_epoch(f[0], fl[0], &ts) != 0)
        return senlog_bad(r, "squid: bad time \"%.*s\"", (int)KHX_MIN(fl[0], 32), f[0]);
    if ((t.family = (uint8_t)senlog_parse_ip(f[2], fl[2], t.src)) == 0)
        return senlog_bad(r, "squid: bad client address \"%.*s\"", (int)KHX_MIN(fl[2], 64), f[2]);
    if (memchr(f[3], '/', fl[3]) == NULL)
        return senlog_bad(r, "squid: bad result code \"%.*s\"", (int)KHX_MIN(fl[3], 32), f[3]);
    t.proto = IPPROTO_TCP;
    connect = fl[5] == 7 && memcmp(f[5], "CONNECT", 7) == 0;
    if (fl[6] == 1 && f[6][0] == '-')
        return 0; /* error entries ("NONE/400 ... error:invalid-request") */
    if (connect) {
        if (url_split(f[6], fl[6], &host, &hlen, &port, &path, &plen) != 0)
            return senlog_bad(r, "squid: bad CONNECT authority");
        if (port == 0)
            port = 443;
    } else {
        if (memmem(f[6], fl[6], "://", 3) == NULL)
            return 0; /* "error:..." or a relative URL: no host to check */
        if (url_split(f[6], fl[6], &host, &hlen, &port, &path, &plen) != 0)
            return senlog_bad(r, "squid: URL without a host");
    }
    t.dport = port;
    if (k >= 9 && (slash = memchr(f[8], '/', fl[8])) != NULL) {
        size_t off = (size_t)(slash - f[8]) + 1;
        peer_fam = senlog_parse_ip(slash + 1, fl[8] - off, peer);
        if (peer_fam == t.family)
            memcpy(t.dst, peer, 16);
    }
    senlog_emit_text(r, SEN_HTTP_HOST, &t, ts, host, hlen);
    if (!connect && hlen + plen < sizeof(url)) {
        /* http.url is "host/path?query": no scheme, no port. */
        memcpy(url, host, hlen);
        ulen = hlen;
        if (plen == 0)
            url[ulen++] = '/';
        memcpy(url + ulen, path, plen);
        ulen += plen;
        for (size_t i = 0; i < hlen; i++)
            if (url[i] >= 'A' && url[i] <= 'Z')
                url[i] = (char)(url[i] - 'A' + 'a');
        senlog_emit_text(r, SEN_HTTP_URL, &t, ts, url, ulen);
    }
    if (peer_fam != 0 && peer_fam == t.family)
        senlog_emit_addr(r, SEN_IP_DST, &t, ts, peer_fam, peer, port);
    return 1;
}
