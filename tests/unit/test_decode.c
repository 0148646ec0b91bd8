/*
 * Tests for the sensor's packet decoder (sensor/decode.c, decode_flow.c,
 * app_dns.c, app_http.c): every link type and IP shape gives the same
 * observations; DNS and HTTP are checked per transaction (two queries on
 * one 5-tuple are two observations, pipelined requests are several);
 * DNS over TCP is joined across segments; bad input is counted, never a
 * crash. With tshark installed, generated pcaps are cross-checked against
 * it; with ../shared/data/net, the real maltrail and suricata-verify pcaps
 * are decoded and the Sofacy C2 queries of bug-2158 must both appear.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "testutil.h"

#include "decode.h"
#include "pcapgen.h"

struct rec {
    int where;
    char text[1100];
    char evidence[600];
    uint8_t addr_family, addr[16];
    uint16_t port;
    struct sen_tuple t;
};

struct col {
    struct rec *r;
    size_t n, cap;
};

static void collect(void *ctx, const struct sen_obs *o)
{
    struct col *c = ctx;
    struct rec *r;

    assert_true(o->where >= 0 && o->where < SEN_WHERE_COUNT);
    if (o->text != NULL)
        assert_int_equal(strlen(o->text), o->text_len);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->r = realloc(c->r, c->cap * sizeof(*c->r));
        assert_non_null(c->r);
    }
    r = &c->r[c->n++];
    memset(r, 0, sizeof(*r));
    r->where = o->where;
    if (o->text != NULL)
        snprintf(r->text, sizeof(r->text), "%s", o->text);
    if (o->evidence != NULL)
        snprintf(r->evidence, sizeof(r->evidence), "%s", o->evidence);
    r->addr_family = o->addr_family;
    memcpy(r->addr, o->addr, 16);
    r->port = o->port;
    r->t = o->t;
}

static void col_reset(struct col *c)
{
    c->n = 0;
}

static size_t count(const struct col *c, int where, const char *text)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->r[i].where == where && (text == NULL || strcmp(c->r[i].text, text) == 0))
            n++;
    return n;
}

static const struct rec *find(const struct col *c, int where, const char *text)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->r[i].where == where && (text == NULL || strcmp(c->r[i].text, text) == 0))
            return &c->r[i];
    return NULL;
}

static struct sen_decoder *dec_new(struct col *c)
{
    struct sen_decoder *d = NULL;
    assert_int_equal(sen_decoder_new(NULL, collect, c, &d), 0);
    return d;
}

static void feed(struct sen_decoder *d, const struct pg_spec *s)
{
    uint8_t frame[4096];
    size_t n = pg_frame(s, frame, sizeof(frame));
    assert_true(n > 0);
    sen_decode_packet(d, pg_link_dlt(s->link), frame, n, 1700000000000000LL);
}

static struct pg_spec udp4(const char *src, uint16_t sp, const char *dst, uint16_t dp,
                           const uint8_t *pl, size_t n)
{
    struct pg_spec s = {.family = AF_INET, .src = src, .dst = dst, .proto = IPPROTO_UDP};
    s.sport = sp;
    s.dport = dp;
    s.payload = pl;
    s.plen = n;
    return s;
}

static struct pg_spec tcp4(uint32_t seq, const uint8_t *pl, size_t n, uint16_t dport)
{
    struct pg_spec s = {.family = AF_INET, .src = "10.1.1.2", .dst = "198.51.100.7"};
    s.proto = IPPROTO_TCP;
    s.sport = 40000;
    s.dport = dport;
    s.seq = seq;
    s.payload = pl;
    s.plen = n;
    return s;
}

static void decode_every_link_type_gives_ip_and_dns_observations(void **state)
{
    uint8_t q[512];
    size_t qn = pg_dns_query(q, sizeof(q), 7, "Example.COM", 1);
    struct {
        int link, tags, qinq, pppoe, family;
    } cases[] = {
        {PG_ETH, 0, 0, 0, AF_INET},   {PG_ETH, 1, 0, 0, AF_INET},   {PG_ETH, 2, 1, 0, AF_INET6},
        {PG_ETH, 0, 0, 1, AF_INET},   {PG_ETH, 1, 0, 1, AF_INET6},  {PG_ETH, 3, 1, 0, AF_INET},
        {PG_RAW, 0, 0, 0, AF_INET},   {PG_RAW, 0, 0, 0, AF_INET6},  {PG_SLL, 0, 0, 0, AF_INET},
        {PG_SLL2, 0, 0, 0, AF_INET6}, {PG_NULL, 0, 0, 0, AF_INET},  {PG_NULL, 0, 0, 0, AF_INET6},
        {PG_LOOP, 0, 0, 0, AF_INET},  {PG_LOOP, 0, 0, 0, AF_INET6},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct col c = {0};
        struct sen_decoder *d = dec_new(&c);
        struct pg_spec s = udp4("10.0.0.5", 5555, "192.0.2.53", 53, q, qn);
        const struct rec *r;
        if (cases[i].family == AF_INET6) {
            s.family = AF_INET6;
            s.src = "2001:db8::5";
            s.dst = "2001:db8::53";
        }
        s.link = cases[i].link;
        s.vlan_tags = cases[i].tags;
        s.qinq = cases[i].qinq;
        s.pppoe = cases[i].pppoe;
        feed(d, &s);
        assert_int_equal(count(&c, SEN_DNS_QUERY, "example.com"), 1);
        r = find(&c, SEN_IP_DST, NULL);
        assert_non_null(r);
        assert_int_equal(r->port, 53);
        assert_int_equal(r->addr_family, cases[i].family);
        r = find(&c, SEN_IP_SRC, NULL);
        assert_non_null(r);
        assert_int_equal(r->port, 5555);
        r = find(&c, SEN_DNS_QUERY, NULL);
        assert_string_equal(r->evidence, "A? example.com");
        assert_int_equal(r->t.sport, 5555);
        assert_int_equal(r->t.dport, 53);
        assert_int_equal(r->t.proto, IPPROTO_UDP);
        sen_decoder_free(d);
        free(c.r);
    }
}

static void decode_raw_ipv4_and_ipv6_link_types(void **state)
{
    uint8_t q[512], frame[2048];
    size_t qn = pg_dns_query(q, sizeof(q), 7, "raw.example", 28), n;
    struct col c = {0};
    struct sen_decoder *d = dec_new(&c);
    struct pg_spec s = udp4("10.0.0.5", 5555, "192.0.2.53", 53, q, qn);
    (void)state;
    s.link = PG_RAW;
    n = pg_frame(&s, frame, sizeof(frame));
    sen_decode_packet(d, 228 /* DLT_IPV4 */, frame, n, 0);
    sen_decode_packet(d, 229 /* DLT_IPV6: not IPv6, so refused */, frame, n, 0);
    sen_decode_packet(d, 101 /* LINKTYPE_RAW */, frame, n, 0);
    sen_decode_packet(d, 9999, frame, n, 0);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "raw.example"), 2);
    {
        struct sen_decode_stats st;
        sen_decoder_stats(d, &st);
        assert_int_equal(st.unsupported_link, 1);
        assert_int_equal(st.malformed, 1);
        assert_int_equal(st.packets, 4);
    }
    sen_decoder_free(d);
    free(c.r);
}

static void decode_ipv4_options_and_fragments(void **state)
{
    uint8_t q[512];
    size_t qn = pg_dns_query(q, sizeof(q), 1, "opt.example", 1);
    struct col c = {0};
    struct sen_decoder *d = dec_new(&c);
    struct pg_spec s = udp4("10.0.0.5", 5555, "192.0.2.53", 53, q, qn);
    struct sen_decode_stats st;
    (void)state;
    s.ip4_options = 12;
    feed(d, &s);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "opt.example"), 1);
    /* First fragment: decoded. Later fragment: counted, addresses only. */
    col_reset(&c);
    s.ip4_options = 0;
    s.more_fragments = 1;
    feed(d, &s);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "opt.example"), 1);
    col_reset(&c);
    s.frag_offset = 3;
    s.more_fragments = 0;
    feed(d, &s);
    assert_int_equal(count(&c, SEN_DNS_QUERY, NULL), 0);
    assert_int_equal(count(&c, SEN_IP_DST, NULL), 1);
    sen_decoder_stats(d, &st);
    assert_int_equal(st.fragments, 1);
    assert_int_equal(st.malformed, 0);
    sen_decoder_free(d);
    free(c.r);
}

static void decode_ipv6_extension_headers(void **state)
{
    static const uint8_t chain[] = {0, 60, 43, 51};
    static const uint8_t frag[] = {0, 44};
    uint8_t q[512];
    size_t qn = pg_dns_query(q, sizeof(q), 1, "v6.example", 28);
    struct col c = {0};
    struct sen_decoder *d = dec_new(&c);
    struct pg_spec s = udp4("x", 5555, "y", 53, q, qn);
    struct sen_decode_stats st;
    const struct rec *r;
    (void)state;
    s.family = AF_INET6;
    s.src = "2001:db8::1";
    s.dst = "2001:db8::35";
    s.v6_ext = chain;
    s.v6_next = sizeof(chain);
    feed(d, &s);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "v6.example"), 1);
    r = find(&c, SEN_DNS_QUERY, NULL);
    assert_int_equal(r->t.family, AF_INET6);
    assert_int_equal(r->t.dport, 53);
    col_reset(&c);
    s.v6_ext = frag;
    s.v6_next = sizeof(frag);
    s.more_fragments = 1;
    feed(d, &s);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "v6.example"), 1);
    col_reset(&c);
    s.frag_offset = 10;
    feed(d, &s);
    assert_int_equal(count(&c, SEN_DNS_QUERY, NULL), 0);
    assert_int_equal(count(&c, SEN_IP_DST, NULL), 1);
    sen_decoder_stats(d, &st);
    assert_int_equal(st.fragments, 1);
    assert_int_equal(st.ipv6, 3);
    sen_decoder_free(d);
    free(c.r);
}

static void dns_response_gives_a_aaaa_and_cname_answers(void **state)
{
    uint8_t m[512];
    size_t n;
    struct col c = {0};
    struct sen_decoder *d = dec_new(&c);
    struct pg_spec s;
    const struct rec *r;
    uint8_t want[16];
    (void)state;
    n = pg_dns_response(m, sizeof(m), 9, "www.example.org", "cdn.Evil.example", "203.0.113.9");
    s = udp4("192.0.2.53", 53, "10.0.0.5", 5555, m, n);
    feed(d, &s);
    assert_int_equal(count(&c, SEN_DNS_QUERY, NULL), 0); /* the repeated question is not a query */
    r = find(&c, SEN_DNS_ANSWER, "cdn.evil.example");
    assert_non_null(r);
    assert_string_equal(r->evidence, "www.example.org CNAME cdn.evil.example");
    /* The client comes first in the tuple of a response's observations. */
    assert_int_equal(r->t.sport, 5555);
    assert_int_equal(r->t.dport, 53);
    r = NULL;
    for (size_t i = 0; i < c.n; i++)
        if (c.r[i].where == SEN_DNS_ANSWER && c.r[i].addr_family == AF_INET)
            r = &c.r[i];
    assert_non_null(r);
    inet_pton(AF_INET, "203.0.113.9", want);
    assert_memory_equal(r->addr, want, 4);
    assert_string_equal(r->evidence, "cdn.evil.example A 203.0.113.9");
    col_reset(&c);
    n = pg_dns_response(m, sizeof(m), 9, "v6.example.org", NULL, "2001:db8::99");
    s = udp4("192.0.2.53", 5353, "10.0.0.5", 5353, m, n);
    feed(d, &s);
    r = find(&c, SEN_DNS_ANSWER, NULL);
    assert_non_null(r);
    assert_int_equal(r->addr_family, AF_INET6);
    inet_pton(AF_INET6, "2001:db8::99", want);
    assert_memory_equal(r->addr, want, 16);
    sen_decoder_free(d);
    free(c.r);
}

static void dns_two_queries_on_one_tuple_are_two_observations(void **state)
{
    uint8_t q1[512], q2[512];
    size_t n1 = pg_dns_query(q1, sizeof(q1), 1, "first.example", 1);
    size_t n2 = pg_dns_query(q2, sizeof(q2), 2, "second.example", 1);
    struct col c = {0};
    struct sen_decoder *d = dec_new(&c);
    struct pg_spec s1 = udp4("10.0.0.5", 1030, "10.55.99.1", 53, q1, n1);
    struct pg_spec s2 = udp4("10.0.0.5", 1030, "10.55.99.1", 53, q2, n2);
    (void)state;
    feed(d, &s1);
    feed(d, &s2);
    feed(d, &s1);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "first.example"), 2);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "second.example"), 1);
    sen_decoder_free(d);
    free(c.r);
}

static size_t tcp_dns(uint8_t *out, size_t cap, uint16_t id, const char *name)
{
    size_t n = pg_dns_query(out + 2, cap - 2, id, name, 1);
    out[0] = (uint8_t)(n >> 8);
    out[1] = (uint8_t)n;
    return n + 2;
}

static void dns_over_tcp_several_per_segment_and_split(void **state)
{
    uint8_t buf[1024];
    size_t n = 0;
    struct col c = {0};
    struct sen_decoder *d = dec_new(&c);
    struct pg_spec s;
    struct sen_decode_stats st;
    uint32_t seq = 1000;
    (void)state;
    n += tcp_dns(buf + n, sizeof(buf) - n, 1, "one.example");
    n += tcp_dns(buf + n, sizeof(buf) - n, 2, "two.example");
    s = tcp4(seq, buf, n, 53);
    feed(d, &s);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "one.example"), 1);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "two.example"), 1);
    seq += (uint32_t)n;

    /* One message split 1 + 10 + rest bytes, with a retransmission. */
    col_reset(&c);
    n = tcp_dns(buf, sizeof(buf), 3, "split.over.segments.example");
    s = tcp4(seq, buf, 1, 53);
    feed(d, &s);
    s = tcp4(seq + 1, buf + 1, 10, 53);
    feed(d, &s);
    feed(d, &s); /* retransmitted: ignored */
    assert_int_equal(c.n, 3 * 2);
    s = tcp4(seq + 11, buf + 11, n - 11, 53);
    feed(d, &s);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "split.over.segments.example"), 1);
    seq += (uint32_t)n;

    /* A message completed in the same segment that starts the next one. */
    col_reset(&c);
    n = tcp_dns(buf, sizeof(buf), 4, "a.example");
    n += tcp_dns(buf + n, sizeof(buf) - n, 5, "b.example");
    s = tcp4(seq, buf, n - 5, 53);
    feed(d, &s);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "a.example"), 1);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "b.example"), 0);
    s = tcp4(seq + (uint32_t)n - 5, buf + n - 5, 5, 53);
    feed(d, &s);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "b.example"), 1);
    seq += (uint32_t)n;

    /* A gap drops the held message and is counted. */
    n = tcp_dns(buf, sizeof(buf), 6, "lost.example");
    s = tcp4(seq, buf, 4, 53);
    feed(d, &s);
    s = tcp4(seq + 8, buf + 8, n - 8, 53);
    feed(d, &s);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "lost.example"), 0);
    sen_decoder_stats(d, &st);
    assert_int_equal(st.reassembly_gaps, 1);
    assert_true(st.flows >= 3);

    /* Idle flows expire. */
    s = tcp4(seq + 100, buf, 4, 53);
    feed(d, &s);
    sen_decoder_expire(d, 1700000000000000LL + 61 * 1000000LL);
    s = tcp4(seq + 104, buf + 4, n - 4, 53);
    feed(d, &s);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "lost.example"), 0);
    sen_decoder_free(d);
    free(c.r);
}

static void dns_parser_rejects_loops_and_long_names(void **state)
{
    struct col c = {0};
    struct sen_tuple t = {0};
    uint8_t m[1024];
    size_t n = 12;
    (void)state;
    /* A question whose name points at itself. */
    memset(m, 0, sizeof(m));
    m[5] = 1;
    m[12] = 0xC0;
    m[13] = 12;
    assert_int_equal(sen_dns_parse(m, 18, &t, 0, "pcap", collect, &c), -1);
    /* Two pointers pointing at each other. */
    m[12] = 3;
    memcpy(m + 13, "abc", 3);
    m[16] = 0xC0;
    m[17] = 12;
    assert_int_equal(sen_dns_parse(m, 22, &t, 0, "pcap", collect, &c), -1);
    /* A 300-byte name. */
    for (int i = 0; i < 5; i++) {
        m[n++] = 60;
        memset(m + n, 'a', 60);
        n += 60;
    }
    m[n++] = 0;
    m[n++] = 0;
    m[n++] = 1;
    m[n++] = 0;
    m[n++] = 1;
    assert_int_equal(sen_dns_parse(m, n, &t, 0, "pcap", collect, &c), -1);
    /* Truncated header and question. */
    assert_int_equal(sen_dns_parse(m, 11, &t, 0, "pcap", collect, &c), -1);
    assert_int_equal(sen_dns_parse(m, 40, &t, 0, "pcap", collect, &c), -1);
    assert_int_equal(c.n, 0);
    /* A good name followed by a bad one: the first is still reported. */
    n = pg_dns_query(m, sizeof(m), 1, "good.example", 1);
    m[5] = 2;
    m[n++] = 0xC0;
    m[n++] = 0xFF;
    assert_int_equal(sen_dns_parse(m, n, &t, 0, "pcap", collect, &c), -1);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "good.example"), 1);
    free(c.r);
}

static void http_request_fields(void **state)
{
    char host[256], url[1025], line[512];
    const char *r1 = "GET /a/b?x=1 HTTP/1.1\r\nUser-Agent: t\r\nHost: WWW.Example.COM:8080\r\n\r\n";
    const char *r2 = "GET http://Proxy.Example:3128/p?q HTTP/1.1\r\nHost: other\r\n\r\n";
    const char *r3 = "CONNECT tunnel.example:443 HTTP/1.1\r\nHost: tunnel.example:443\r\n\r\n";
    const char *r4 = "POST /up HTTP/1.0\r\n\r\n";
    const char *r5 = "GET /x HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n";
    const char *r6 = "OPTIONS * HTTP/1.1\nHost: opt.example\n\n";
    (void)state;
    assert_int_equal(sen_http_request((const uint8_t *)r1, strlen(r1), host, url, line), 1);
    assert_string_equal(host, "www.example.com");
    assert_string_equal(url, "www.example.com/a/b?x=1");
    assert_string_equal(line, "GET /a/b?x=1 HTTP/1.1");
    assert_int_equal(sen_http_request((const uint8_t *)r2, strlen(r2), host, url, line), 1);
    assert_string_equal(host, "proxy.example");
    assert_string_equal(url, "proxy.example/p?q");
    assert_int_equal(sen_http_request((const uint8_t *)r3, strlen(r3), host, url, line), 1);
    assert_string_equal(host, "tunnel.example");
    assert_int_equal(sen_http_request((const uint8_t *)r4, strlen(r4), host, url, line), 1);
    assert_string_equal(host, "");
    assert_string_equal(url, "/up");
    assert_int_equal(sen_http_request((const uint8_t *)r5, strlen(r5), host, url, line), 1);
    assert_string_equal(host, "2001:db8::1");
    assert_int_equal(sen_http_request((const uint8_t *)r6, strlen(r6), host, url, line), 1);
    assert_string_equal(url, "opt.example");
    /* Incomplete, and not requests at all. */
    assert_int_equal(sen_http_request((const uint8_t *)r1, 30, host, url, line), 0);
    assert_int_equal(sen_http_request((const uint8_t *)"GE", 2, host, url, line), 0);
    assert_int_equal(
        sen_http_request((const uint8_t *)"HTTP/1.1 200 OK\r\n\r\n", 19, host, url, line), -1);
    assert_int_equal(sen_http_request((const uint8_t *)"GET / FTP/1\r\n\r\n", 15, host, url, line),
                     -1);
    assert_int_equal(
        sen_http_request((const uint8_t *)"GETX / HTTP/1.1\r\n\r\n", 19, host, url, line), -1);
}

static void http_pipelined_and_split_requests(void **state)
{
    const char *two = "GET /1 HTTP/1.1\r\nHost: a.example\r\n\r\n"
                      "POST /2 HTTP/1.1\r\nHost: b.example\r\nContent-Length: 5\r\n\r\nhello"
                      "HEAD /3 HTTP/1.1\r\nHost: c.example\r\n\r\n";
    const char *one = "GET /split/path HTTP/1.1\r\nHost: split.example\r\nAccept: */*\r\n\r\n";
    struct col c = {0};
    struct sen_decoder *d = dec_new(&c);
    struct pg_spec s = tcp4(1, (const uint8_t *)two, strlen(two), 80);
    struct sen_decode_stats st;
    const struct rec *r;
    (void)state;
    feed(d, &s);
    assert_int_equal(count(&c, SEN_HTTP_HOST, "a.example"), 1);
    assert_int_equal(count(&c, SEN_HTTP_HOST, "b.example"), 1);
    assert_int_equal(count(&c, SEN_HTTP_HOST, "c.example"), 1);
    assert_int_equal(count(&c, SEN_HTTP_URL, "b.example/2"), 1);
    r = find(&c, SEN_HTTP_URL, "c.example/3");
    assert_non_null(r);
    assert_string_equal(r->evidence, "HEAD /3 HTTP/1.1");
    col_reset(&c);
    s = tcp4(5000, (const uint8_t *)one, 20, 8080);
    feed(d, &s);
    assert_int_equal(c.n, 2);
    s = tcp4(5020, (const uint8_t *)one + 20, strlen(one) - 20, 8080);
    feed(d, &s);
    assert_int_equal(count(&c, SEN_HTTP_URL, "split.example/split/path"), 1);
    /* No Host: the server address names the URL. */
    col_reset(&c);
    s = tcp4(9000, (const uint8_t *)"GET /x.exe HTTP/1.0\r\n\r\n", 23, 80);
    feed(d, &s);
    assert_int_equal(count(&c, SEN_HTTP_URL, "198.51.100.7/x.exe"), 1);
    assert_int_equal(count(&c, SEN_HTTP_HOST, NULL), 0);
    /* A response, and another protocol that starts like a method, are not
     * requests and not errors. */
    s = tcp4(1, (const uint8_t *)"HTTP/1.1 200 OK\r\n\r\n", 19, 80);
    s.sport = 80;
    s.dport = 40000;
    feed(d, &s);
    s = tcp4(77, (const uint8_t *)"GETTING STARTED", 15, 80);
    feed(d, &s);
    sen_decoder_stats(d, &st);
    assert_int_equal(st.http_requests, 5);
    assert_int_equal(st.malformed, 0);
    sen_decoder_free(d);
    free(c.r);
}

static void truncated_and_malformed_packets_are_counted(void **state)
{
    uint8_t q[512], frame[2048], junk[256];
    size_t qn = pg_dns_query(q, sizeof(q), 1, "cut.example", 1), n;
    struct col c = {0};
    struct sen_decoder *d = dec_new(&c);
    struct sen_decode_stats st;
    static const int links[] = {PG_ETH, PG_SLL, PG_SLL2, PG_RAW, PG_NULL, PG_LOOP};
    static const uint8_t chain[] = {0, 60, 43};
    (void)state;
    for (size_t l = 0; l < sizeof(links) / sizeof(links[0]); l++) {
        for (int fam = 0; fam < 2; fam++) {
            struct pg_spec s = udp4("10.0.0.5", 5555, "192.0.2.53", 53, q, qn);
            s.link = links[l];
            s.vlan_tags = links[l] == PG_ETH ? 2 : 0;
            if (fam) {
                s.family = AF_INET6;
                s.src = "2001:db8::1";
                s.dst = "2001:db8::2";
                s.v6_ext = chain;
                s.v6_next = 3;
            }
            n = pg_frame(&s, frame, sizeof(frame));
            for (size_t cut = 0; cut < n; cut++) {
                /* Copy so that ASan sees reads past the cut. */
                uint8_t *p = malloc(cut ? cut : 1);
                memcpy(p, frame, cut);
                sen_decode_packet(d, pg_link_dlt(links[l]), p, cut, 0);
                free(p);
            }
        }
    }
    sen_decoder_stats(d, &st);
    assert_true(st.truncated > 0);
    assert_int_equal(count(&c, SEN_DNS_QUERY, "cut.example"), 0);
    /* Garbage of every length on every link type. */
    srand(7);
    for (int i = 0; i < 20000; i++) {
        n = (size_t)(rand() % (int)sizeof(junk));
        for (size_t k = 0; k < n; k++)
            junk[k] = (uint8_t)rand();
        if (n > 0 && (i & 1))
            junk[0] = (uint8_t)((i & 2) ? 0x45 : 0x60);
        sen_decode_packet(d, pg_link_dlt(i % 6), junk, n, i);
    }
    /* Malformed DNS on port 53 and an unknown HTTP method line. */
    {
        struct pg_spec s = udp4("10.0.0.5", 5555, "192.0.2.53", 53, junk, 20);
        memset(junk, 0, 20);
        junk[5] = 1;     /* one question */
        junk[12] = 0xC0; /* whose name points past the end */
        junk[13] = 0xFF;
        feed(d, &s);
    }
    sen_decoder_stats(d, &st);
    assert_true(st.malformed_dns >= 1);
    assert_true(st.malformed > 0);
    sen_decoder_free(d);
    free(c.r);
}

/* ---- pcap files: tshark cross-check and the shared corpora ---- */

static int decode_pcap_file(const char *path, struct sen_decoder *d)
{
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_open_offline(path, err);
    struct pcap_pkthdr *h;
    const u_char *data;
    int lt, r;

    if (p == NULL)
        return -1;
    lt = pcap_datalink(p);
    while ((r = pcap_next_ex(p, &h, &data)) == 1)
        sen_decode_packet(d, lt, data, h->caplen,
                          (int64_t)h->ts.tv_sec * 1000000 + (int64_t)h->ts.tv_usec);
    pcap_close(p);
    return 0;
}

static int have_tshark(void)
{
    return system("tshark --version >/dev/null 2>&1") == 0;
}

static void generated_pcap_matches_tshark(void **state)
{
    const char *dir = tu_mkdtemp();
    char path[512], cmd[1200], line[512];
    FILE *f, *pf;
    struct col c = {0};
    struct sen_decoder *d;
    static const char *names[] = {"alpha.example", "beta.example.net", "c.d.e.example.org",
                                  "xn--bcher-kva.example"};
    static const char *hosts[] = {"web.example", "api.example.com"};
    uint8_t buf[1024], frame[2048];
    size_t n, seen = 0;
    int64_t ts = 1700000000000000LL;
    (void)state;
    if (!have_tshark()) {
        printf("SKIP: tshark not installed; cross-check not run\n");
        tu_rmtree(dir);
        skip();
    }
    snprintf(path, sizeof(path), "%s/x.pcap", dir);
    f = pg_pcap_create(path, 1);
    assert_non_null(f);
    for (size_t i = 0; i < 4; i++) {
        struct pg_spec s;
        n = pg_dns_query(buf, sizeof(buf), (uint16_t)i, names[i], 1);
        s = udp4("10.0.0.9", (uint16_t)(3000 + i), "10.0.0.1", 53, buf, n);
        s.vlan_tags = (int)(i % 2);
        n = pg_frame(&s, frame, sizeof(frame));
        assert_int_equal(pg_pcap_write(f, ts++, frame, n), 0);
    }
    for (size_t i = 0; i < 2; i++) {
        struct pg_spec s;
        n = (size_t)snprintf((char *)buf, sizeof(buf), "GET /p%zu HTTP/1.1\r\nHost: %s\r\n\r\n", i,
                             hosts[i]);
        s = tcp4(1, buf, n, 80);
        s.sport = (uint16_t)(41000 + i);
        n = pg_frame(&s, frame, sizeof(frame));
        assert_int_equal(pg_pcap_write(f, ts++, frame, n), 0);
    }
    assert_int_equal(pg_pcap_close(f), 0);
    assert_int_equal(sen_decoder_new(NULL, collect, &c, &d), 0);
    assert_int_equal(decode_pcap_file(path, d), 0);
    snprintf(cmd, sizeof(cmd),
             "tshark -r %s -T fields -e dns.qry.name -e http.host -Y 'dns || http' 2>/dev/null",
             path);
    pf = popen(cmd, "r");
    assert_non_null(pf);
    while (fgets(line, sizeof(line), pf) != NULL) {
        char *tab = strchr(line, '\t'), *nl;
        if (tab == NULL)
            continue;
        *tab = '\0';
        if ((nl = strchr(tab + 1, '\n')) != NULL)
            *nl = '\0';
        if (line[0] != '\0') {
            assert_int_equal(count(&c, SEN_DNS_QUERY, line), 1);
            seen++;
        }
        if (tab[1] != '\0') {
            assert_int_equal(count(&c, SEN_HTTP_HOST, tab + 1), 1);
            seen++;
        }
    }
    pclose(pf);
    assert_int_equal(seen, 6);
    assert_int_equal(count(&c, SEN_DNS_QUERY, NULL), 4);
    assert_int_equal(count(&c, SEN_HTTP_HOST, NULL), 2);
    sen_decoder_free(d);
    free(c.r);
    tu_rmtree(dir);
}

static size_t corpus_files;
static struct sen_decoder *corpus_dec;

static int corpus_visit(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    size_t n = strlen(path);
    (void)sb;
    (void)ftw;
    if (type != FTW_F)
        return 0;
    if ((n > 5 && strcmp(path + n - 5, ".pcap") == 0) ||
        (n > 7 && strcmp(path + n - 7, ".pcapng") == 0)) {
        if (decode_pcap_file(path, corpus_dec) == 0)
            corpus_files++;
    }
    return 0;
}

static void shared_corpora_decode_without_crash(void **state)
{
    const char *data = tu_shared_data();
    char dir[1024];
    struct col c = {0};
    struct sen_decode_stats st;
    (void)state;
    if (data == NULL) {
        printf("SKIP: ../shared/data is absent; real pcaps not decoded\n");
        skip();
    }
    assert_int_equal(sen_decoder_new(NULL, collect, &c, &corpus_dec), 0);
    snprintf(dir, sizeof(dir), "%s/net/maltrail/sensor/tests/corpus", data);
    nftw(dir, corpus_visit, 16, FTW_PHYS);
    snprintf(dir, sizeof(dir), "%s/net/suricata-verify/tests", data);
    nftw(dir, corpus_visit, 16, FTW_PHYS);
    sen_decoder_stats(corpus_dec, &st);
    printf("decoded %zu pcaps: %llu packets, %llu DNS questions, %llu HTTP requests, "
           "%llu truncated, %llu malformed\n",
           corpus_files, (unsigned long long)st.packets, (unsigned long long)st.dns_questions,
           (unsigned long long)st.http_requests, (unsigned long long)st.truncated,
           (unsigned long long)st.malformed);
    if (corpus_files == 0) {
        printf("SKIP: no pcaps under %s/net\n", data);
    } else {
        assert_true(st.packets > 0);
        assert_true(st.dns_questions > 0);
    }
    sen_decoder_free(corpus_dec);
    free(c.r);
}

static void sofacy_pcap_gives_both_c2_queries(void **state)
{
    const char *data = tu_shared_data();
    char path[1024];
    struct col c = {0};
    struct sen_decoder *d;
    static const char *c2[] = {"drivres-update.info", "softupdates.info"};
    uint8_t src[4], dst[4];
    struct stat sb;
    (void)state;
    if (data != NULL)
        snprintf(path, sizeof(path),
                 "%s/net/suricata-verify/tests/bug-2158/public-ex1_section8_Sofacy.pcap", data);
    if (data == NULL || stat(path, &sb) != 0) {
        printf("SKIP: the suricata-verify bug-2158 pcap is absent\n");
        skip();
    }
    inet_pton(AF_INET, "192.168.35.10", src);
    inet_pton(AF_INET, "10.55.99.1", dst);
    assert_int_equal(sen_decoder_new(NULL, collect, &c, &d), 0);
    assert_int_equal(decode_pcap_file(path, d), 0);
    for (size_t i = 0; i < 2; i++) {
        const struct rec *r = find(&c, SEN_DNS_QUERY, c2[i]);
        assert_non_null(r);
        assert_int_equal(r->t.family, AF_INET);
        assert_memory_equal(r->t.src, src, 4);
        assert_memory_equal(r->t.dst, dst, 4);
        assert_int_equal(r->t.sport, 1030);
        assert_int_equal(r->t.dport, 53);
    }
    sen_decoder_free(d);
    free(c.r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decode_every_link_type_gives_ip_and_dns_observations),
        cmocka_unit_test(decode_raw_ipv4_and_ipv6_link_types),
        cmocka_unit_test(decode_ipv4_options_and_fragments),
        cmocka_unit_test(decode_ipv6_extension_headers),
        cmocka_unit_test(dns_response_gives_a_aaaa_and_cname_answers),
        cmocka_unit_test(dns_two_queries_on_one_tuple_are_two_observations),
        cmocka_unit_test(dns_over_tcp_several_per_segment_and_split),
        cmocka_unit_test(dns_parser_rejects_loops_and_long_names),
        cmocka_unit_test(http_request_fields),
        cmocka_unit_test(http_pipelined_and_split_requests),
        cmocka_unit_test(truncated_and_malformed_packets_are_counted),
        cmocka_unit_test(generated_pcap_matches_tshark),
        cmocka_unit_test(shared_corpora_decode_without_crash),
        cmocka_unit_test(sofacy_pcap_gives_both_c2_queries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
