/*
 * Tests for the log readers and the NetFlow/IPFIX parser (sensor/logs.h).
 * The sample lines are written by hand from each format's documentation
 * (BIND ARM, dnsmasq and Unbound manuals, Microsoft's DNS debug logging,
 * the kernel's nf_log output, Squid's native log format, Zeek's log
 * writers, Suricata's eve.json schema); the NetFlow datagrams are built
 * byte by byte from RFC 3954 / RFC 7011, and, when softflowd is installed,
 * also made by softflowd from a pcap this test writes.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <khien/khien.h>

#include "logs.h"
#include "testutil.h"

#define MAX_OBS 64

/* Each observation, flattened to "where value src>dst/proto" so a test
 * compares it with one string. */
struct got {
    int n;
    char s[MAX_OBS][512];
    int64_t ts[MAX_OBS];
    char input[MAX_OBS][48];
    char evidence[MAX_OBS][64];
};

static void collect(void *ctx, const struct sen_obs *o)
{
    struct got *g = ctx;
    char v[200], src[46], dst[46];

    if (g->n >= MAX_OBS)
        return;
    if (o->text != NULL)
        snprintf(v, sizeof(v), "%.*s", (int)o->text_len, o->text);
    else
        sen_addr_format(o->addr_family, o->addr, v);
    sen_addr_format(o->t.family, o->t.src, src);
    sen_addr_format(o->t.family, o->t.dst, dst);
    if (o->t.family == 0)
        snprintf(g->s[g->n], sizeof(g->s[0]), "%s %s", sen_where_name(o->where), v);
    else
        snprintf(g->s[g->n], sizeof(g->s[0]), "%s %s %s:%u>%s:%u/%u", sen_where_name(o->where), v,
                 src, o->t.sport, dst, o->t.dport, o->t.proto);
    g->ts[g->n] = o->ts_us;
    snprintf(g->input[g->n], sizeof(g->input[0]), "%s", o->input != NULL ? o->input : "");
    snprintf(g->evidence[g->n], sizeof(g->evidence[0]), "%s",
             o->evidence != NULL ? o->evidence : "");
    g->n++;
}

static int feed(struct sen_log_reader *r, struct got *g, const char *line)
{
    return sen_log_line(r, line, strlen(line), collect, g);
}

static struct sen_log_reader *reader(enum sen_log_format f)
{
    struct sen_log_reader *r = NULL;
    assert_int_equal(sen_log_reader_new(f, NULL, &r), KH_OK);
    return r;
}

/* Local-time dates in the logs are read as UTC in these tests. */
static int setup_tz(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    return 0;
}

static int64_t utc_us(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm) * 1000000;
}

static int current_year(void)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    return tm.tm_year + 1900;
}

/* ---- DNS servers ---- */

static void bind_query_and_rpz_lines_give_client_queries(void **state)
{
    struct sen_log_reader *r = reader(SEN_LOG_BIND);
    struct got g = {0};
    struct sen_log_stats st;
    (void)state;

    assert_int_equal(feed(r, &g,
                          "21-Nov-2026 10:00:00.123 queries: info: client @0x7f3a2c0d1e68 "
                          "10.0.0.5#53512 (www.example.com): query: www.example.com IN A +E(0)K "
                          "(10.0.0.1)"),
                     1);
    assert_string_equal(g.s[0], "dns.query www.example.com 10.0.0.5:53512>10.0.0.1:53/17");
    assert_true(g.ts[0] == utc_us(2026, 11, 21, 10, 0, 0) + 123000);
    assert_string_equal(g.input[0], "bind");
    assert_non_null(strstr(g.evidence[0], "21-Nov-2026 10:00:00.123 queries"));
    /* BIND 9.9 form: no client object, no name in parentheses; TCP flag. */
    assert_int_equal(feed(r, &g,
                          "21-Nov-2026 10:00:01.000 client 2001:db8::5#40000: query: "
                          "evil.example.net IN AAAA +T (2001:db8::53)"),
                     1);
    assert_string_equal(g.s[1], "dns.query evil.example.net 2001:db8::5:40000>2001:db8::53:53/6");
    assert_int_equal(feed(r, &g,
                          "21-Nov-2026 10:00:02.000 rpz: info: client @0x7f3a2c0d2000 "
                          "10.0.0.6#5353 (bad.example.org): rpz QNAME NXDOMAIN rewrite "
                          "bad.example.org/A/IN via bad.example.org.rpz.local"),
                     1);
    assert_string_equal(g.s[2], "dns.query bad.example.org 10.0.0.6:5353>0.0.0.0:53/17");
    assert_int_equal(feed(r, &g,
                          "21-Nov-2026 10:00:03.000 security: info: client @0x55d0 "
                          "10.0.0.7#1234 (denied.example): query (cache) 'denied.example/A/IN' "
                          "denied"),
                     1);
    assert_string_equal(g.s[3], "dns.query denied.example 10.0.0.7:1234>0.0.0.0:53/17");
    /* A server message that is not about a client is ignored. */
    assert_int_equal(
        feed(r, &g, "21-Nov-2026 10:00:04.000 general: info: zone example.com/IN: loaded serial 7"),
        0);
    sen_log_stats(r, &st);
    assert_int_equal(st.lines, 5);
    assert_int_equal(st.observations, 4);
    assert_int_equal(st.ignored, 1);
    assert_int_equal(st.malformed, 0);
    sen_log_reader_free(r);
}

static void dnsmasq_queries_and_replies_with_addresses(void **state)
{
    struct sen_log_reader *r = reader(SEN_LOG_DNSMASQ);
    struct got g = {0};
    (void)state;

    /* A log-facility file: the syslog-like date, no host name. */
    assert_int_equal(
        feed(r, &g, "Nov 21 10:00:00 dnsmasq[812]: query[A] c2.example.net from 192.168.1.20"), 1);
    assert_string_equal(g.s[0], "dns.query c2.example.net 192.168.1.20:0>0.0.0.0:53/17");
    assert_true(g.ts[0] == utc_us(current_year(), 11, 21, 10, 0, 0) ||
                g.ts[0] == utc_us(current_year() - 1, 11, 21, 10, 0, 0));
    assert_int_equal(
        feed(r, &g, "Nov 21 10:00:00 dnsmasq[812]: forwarded c2.example.net to 1.1.1.1"), 0);
    assert_int_equal(feed(r, &g, "Nov 21 10:00:00 dnsmasq[812]: reply c2.example.net is <CNAME>"),
                     0);
    assert_int_equal(
        feed(r, &g, "Nov 21 10:00:00 dnsmasq[812]: reply cdn.example.net is 203.0.113.9"), 1);
    assert_string_equal(g.s[1], "dns.answer 203.0.113.9");
    assert_int_equal(
        feed(r, &g, "Nov 21 10:00:01 dnsmasq[812]: cached c2.example.net is 2001:db8::9"), 1);
    assert_string_equal(g.s[2], "dns.answer 2001:db8::9");
    assert_int_equal(feed(r, &g, "Nov 21 10:00:01 dnsmasq[812]: reply nx.example.net is NXDOMAIN"),
                     0);
    /* log-queries=extra: serial and client/port before the verb. */
    assert_int_equal(feed(r, &g,
                          "Nov 21 10:00:02 dnsmasq[812]: 17 192.168.1.21/40411 query[AAAA] "
                          "x.example.org from 192.168.1.21"),
                     1);
    assert_string_equal(g.s[3], "dns.query x.example.org 192.168.1.21:40411>0.0.0.0:53/17");
    assert_int_equal(feed(r, &g,
                          "Nov 21 10:00:02 dnsmasq[812]: 17 192.168.1.21/40411 reply "
                          "x.example.org is 2001:db8::77"),
                     1);
    assert_string_equal(g.s[4], "dns.answer 2001:db8::77 192.168.1.21:40411>0.0.0.0:53/17");
    sen_log_reader_free(r);
}

static void unbound_queries_then_replies_counted_once(void **state)
{
    struct sen_log_reader *r = reader(SEN_LOG_UNBOUND);
    struct sen_log_reader *r2 = reader(SEN_LOG_UNBOUND);
    struct got g = {0};
    (void)state;

    assert_int_equal(
        feed(r, &g, "[1763719200] unbound[1234:0] info: 10.0.0.5 www.example.com. A IN"), 1);
    assert_string_equal(g.s[0], "dns.query www.example.com 10.0.0.5:0>0.0.0.0:53/17");
    assert_true(g.ts[0] == (int64_t)1763719200 * 1000000);
    /* With log-queries on, the log-replies line repeats the question. */
    assert_int_equal(feed(r, &g,
                          "[1763719200] unbound[1234:0] info: 10.0.0.5 www.example.com. A IN "
                          "NOERROR 0.000123 0 61"),
                     0);
    assert_int_equal(g.n, 1);
    /* A server that only logs replies still gives the question. */
    assert_int_equal(feed(r2, &g,
                          "[1763719201] unbound[1234:0] info: 2001:db8::5 evil.example. AAAA IN "
                          "NXDOMAIN 0.020000 0 90"),
                     1);
    assert_string_equal(g.s[1], "dns.query evil.example 2001:db8::5:0>:::53/17");
    /* Local actions (RPZ and local-zone) name client@port and the query. */
    assert_int_equal(feed(r2, &g,
                          "[1763719202] unbound[1234:0] info: rpz: applied [rpz.local] "
                          "bad.example. rpz-nxdomain 10.0.0.9@5353 bad.example. A IN"),
                     1);
    assert_string_equal(g.s[2], "dns.query bad.example 10.0.0.9:5353>0.0.0.0:53/17");
    assert_int_equal(feed(r2, &g, "[1763719203] unbound[1234:0] notice: init module 0: validator"),
                     0);
    sen_log_reader_free(r);
    sen_log_reader_free(r2);
}

static void windns_debug_log_received_queries(void **state)
{
    struct sen_log_reader *r = reader(SEN_LOG_WINDNS);
    struct got g = {0};
    struct sen_log_stats st;
    (void)state;

    assert_int_equal(feed(r, &g, "DNS Server log file creation at 11/21/2026 9:59:58 AM"), 0);
    assert_int_equal(feed(r, &g,
                          "Message logging key (for packets - other items use a subset "
                          "of these fields):"),
                     0);
    assert_int_equal(feed(r, &g,
                          "11/21/2026 10:00:00 AM 0FD4 PACKET  000000D5D3C8B1A0 UDP Rcv 10.0.0.5  "
                          "      c4a3   Q [0001   D   NOERROR] A      (3)www(7)example(3)com(0)"),
                     1);
    assert_string_equal(g.s[0], "dns.query www.example.com 10.0.0.5:0>0.0.0.0:53/17");
    assert_true(g.ts[0] == utc_us(2026, 11, 21, 10, 0, 0));
    /* Our response to the same question is not a second question. */
    assert_int_equal(feed(r, &g,
                          "11/21/2026 10:00:00 AM 0FD4 PACKET  000000D5D3C8B1A0 UDP Snd 10.0.0.5  "
                          "      c4a3 R Q [8081   DR  NOERROR] A      (3)www(7)example(3)com(0)"),
                     0);
    assert_int_equal(feed(r, &g,
                          "11/21/2026 1:05:09 PM 0FD4 PACKET  000000D5D3C8B1A0 TCP Rcv "
                          "2001:db8::5     0a01   Q [0001   D   NOERROR] AAAA   "
                          "(4)evil(7)example(3)org(0)"),
                     1);
    assert_string_equal(g.s[1], "dns.query evil.example.org 2001:db8::5:0>:::53/6");
    assert_true(g.ts[1] == utc_us(2026, 11, 21, 13, 5, 9));
    assert_int_equal(feed(r, &g,
                          "11/21/2026 10:00:00 AM 0FD4 PACKET  000000D5D3C8B1A0 UDP Rcv 10.0.0.5 "
                          " c4a3   Q [0001   D   NOERROR] A      (3)www(9)example(3)com(0)"),
                     -1);
    sen_log_stats(r, &st);
    assert_int_equal(st.malformed, 1);
    assert_non_null(strstr(st.first_error, "bad encoded name"));
    sen_log_reader_free(r);
}

/* ---- firewalls and proxies ---- */

static void netfilter_log_lines_give_both_addresses(void **state)
{
    struct sen_log_reader *r = reader(SEN_LOG_NETFILTER);
    struct got g = {0};
    (void)state;

    assert_int_equal(feed(r, &g,
                          "Nov 21 10:00:00 fw kernel: [123456.789012] OUTBOUND: IN=eth1 OUT=eth0 "
                          "MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC=10.0.0.5 "
                          "DST=93.184.216.34 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=4242 DF "
                          "PROTO=TCP SPT=40000 DPT=443 WINDOW=64240 RES=0x00 SYN URGP=0"),
                     1);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.s[0], "ip.dst 93.184.216.34 10.0.0.5:40000>93.184.216.34:443/6");
    assert_string_equal(g.s[1], "ip.src 10.0.0.5 10.0.0.5:40000>93.184.216.34:443/6");
    /* nftables "log prefix" with IPv6 and UDP, no syslog header. */
    assert_int_equal(feed(r, &g,
                          "nft-drop: IN= OUT=eth0 SRC=2001:db8::5 DST=2001:db8:ffff::1 LEN=80 "
                          "TC=0 HOPLIMIT=64 FLOWLBL=0 PROTO=UDP SPT=5353 DPT=53 LEN=40"),
                     1);
    assert_string_equal(g.s[2], "ip.dst 2001:db8:ffff::1 2001:db8::5:5353>2001:db8:ffff::1:53/17");
    assert_int_equal(feed(r, &g,
                          "IN=eth0 OUT= SRC=198.51.100.1 DST=10.0.0.5 LEN=84 PROTO=ICMP TYPE=8 "
                          "CODE=0 ID=1 SEQ=1"),
                     1);
    assert_string_equal(g.s[4], "ip.dst 10.0.0.5 198.51.100.1:0>10.0.0.5:0/1");
    assert_int_equal(feed(r, &g, "IN=eth0 OUT= SRC=10.0.0.300 DST=10.0.0.5 PROTO=TCP"), -1);
    assert_int_equal(feed(r, &g, "Nov 21 10:00:00 fw kernel: usb 1-1: new device"), 0);
    sen_log_reader_free(r);
}

static void squid_requests_give_host_url_and_peer(void **state)
{
    struct sen_log_reader *r = reader(SEN_LOG_SQUID);
    struct got g = {0};
    (void)state;

    assert_int_equal(feed(r, &g,
                          "1763719200.123    150 10.0.0.5 TCP_MISS/200 5120 GET "
                          "http://Download.Example.com/payload.bin?id=7 - "
                          "HIER_DIRECT/203.0.113.10 application/octet-stream"),
                     1);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.s[0], "http.host Download.Example.com 10.0.0.5:0>203.0.113.10:80/6");
    assert_string_equal(
        g.s[1], "http.url download.example.com/payload.bin?id=7 10.0.0.5:0>203.0.113.10:80/6");
    assert_string_equal(g.s[2], "ip.dst 203.0.113.10 10.0.0.5:0>203.0.113.10:80/6");
    assert_true(g.ts[0] == (int64_t)1763719200 * 1000000 + 123000);
    /* CONNECT names only host:port: the host, no URL. */
    assert_int_equal(feed(r, &g,
                          "1763719201.500  30000 10.0.0.6 TCP_TUNNEL/200 4410 CONNECT "
                          "c2.example.net:8443 - HIER_DIRECT/198.51.100.7 -"),
                     1);
    assert_int_equal(g.n, 5);
    assert_string_equal(g.s[3], "http.host c2.example.net 10.0.0.6:0>198.51.100.7:8443/6");
    assert_string_equal(g.s[4], "ip.dst 198.51.100.7 10.0.0.6:0>198.51.100.7:8443/6");
    /* A cache hit has no peer. */
    assert_int_equal(feed(r, &g,
                          "1763719202.000      0 10.0.0.7 TCP_MEM_HIT/200 900 GET "
                          "http://www.example.org/ - HIER_NONE/- text/html"),
                     1);
    assert_int_equal(g.n, 7);
    assert_string_equal(g.s[6], "http.url www.example.org/ 10.0.0.7:0>0.0.0.0:80/6");
    assert_int_equal(feed(r, &g,
                          "1763719203.000 0 10.0.0.8 NONE/400 0 NONE error:invalid-request "
                          "- HIER_NONE/- -"),
                     0);
    assert_int_equal(feed(r, &g, "not-a-time 0 10.0.0.8 TCP_MISS/200 0 GET http://a/ - -/- -"), -1);
    sen_log_reader_free(r);
}

/* ---- Zeek ---- */

static void zeek_tsv_rows_after_fields_header(void **state)
{
    struct sen_log_reader *r = reader(SEN_LOG_ZEEK);
    struct got g = {0};
    struct sen_log_stats st;
    (void)state;

    /* A data row before any #fields cannot be read. */
    assert_int_equal(feed(r, &g, "1763719200.1\tCx\t10.0.0.5\t1\t2.2.2.2\t53"), -1);
    assert_int_equal(feed(r, &g, "#separator \\x09"), 0);
    assert_int_equal(feed(r, &g, "#set_separator\t,"), 0);
    assert_int_equal(feed(r, &g, "#empty_field\t(empty)"), 0);
    assert_int_equal(feed(r, &g, "#unset_field\t-"), 0);
    assert_int_equal(feed(r, &g, "#path\tdns"), 0);
    assert_int_equal(feed(r, &g, "#open\t2026-11-21-10-00-00"), 0);
    assert_int_equal(feed(r, &g,
                          "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\t"
                          "proto\ttrans_id\tquery\tqtype_name\trcode_name\tanswers\tTTLs"),
                     0);
    assert_int_equal(feed(r, &g,
                          "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tcount\t"
                          "string\tstring\tstring\tvector[string]\tvector[interval]"),
                     0);
    assert_int_equal(feed(r, &g,
                          "1763719200.250000\tCAbc12\t10.0.0.5\t53001\t10.0.0.1\t53\tudp\t"
                          "4242\twww.example.com\tA\tNOERROR\tcdn.example.net,203.0.113.5\t"
                          "60.000000,60.000000"),
                     1);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.s[0], "dns.query www.example.com 10.0.0.5:53001>10.0.0.1:53/17");
    assert_string_equal(g.s[1], "dns.answer cdn.example.net 10.0.0.5:53001>10.0.0.1:53/17");
    assert_string_equal(g.s[2], "dns.answer 203.0.113.5 10.0.0.5:53001>10.0.0.1:53/17");
    assert_string_equal(g.input[0], "zeek.dns");
    assert_true(g.ts[0] == (int64_t)1763719200 * 1000000 + 250000);
    /* A row with a column missing is malformed. */
    assert_int_equal(feed(r, &g, "1763719200.3\tCx\t10.0.0.5\t1\t10.0.0.1\t53\tudp"), -1);

    /* A second header in the same stream (a rotated conn log follows). */
    assert_int_equal(feed(r, &g, "#path\tconn"), 0);
    assert_int_equal(feed(r, &g,
                          "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\t"
                          "proto\tservice\tduration\tconn_state"),
                     0);
    assert_int_equal(feed(r, &g,
                          "1763719201.000000\tCdef34\t10.0.0.5\t40000\t198.51.100.7\t443\t"
                          "tcp\tssl\t1.5\tSF"),
                     1);
    assert_string_equal(g.s[3], "ip.dst 198.51.100.7 10.0.0.5:40000>198.51.100.7:443/6");
    assert_string_equal(g.input[3], "zeek.conn");

    assert_int_equal(feed(r, &g, "#path\tssl"), 0);
    assert_int_equal(feed(r, &g,
                          "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\t"
                          "version\tserver_name\tja3"),
                     0);
    assert_int_equal(feed(r, &g,
                          "1763719202.000000\tCghi56\t10.0.0.5\t40001\t198.51.100.8\t443\t"
                          "TLSv13\tevil.example.org\t51c64c77e60f3980eea90869b68c58a8"),
                     1);
    assert_string_equal(g.s[4], "tls.sni evil.example.org 10.0.0.5:40001>198.51.100.8:443/0");
    assert_string_equal(g.s[5], "tls.ja3 51c64c77e60f3980eea90869b68c58a8 "
                                "10.0.0.5:40001>198.51.100.8:443/0");

    assert_int_equal(feed(r, &g, "#path\thttp"), 0);
    assert_int_equal(feed(r, &g,
                          "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\t"
                          "method\thost\turi\tuser_agent"),
                     0);
    assert_int_equal(feed(r, &g,
                          "1763719203.000000\tCjkl78\t10.0.0.5\t40002\t198.51.100.9\t80\t"
                          "GET\tdl.example.com:8080\t/a/b.exe?x=1\t-"),
                     1);
    assert_string_equal(g.s[6], "http.host dl.example.com 10.0.0.5:40002>198.51.100.9:80/0");
    assert_string_equal(g.s[7], "http.url dl.example.com/a/b.exe?x=1 "
                                "10.0.0.5:40002>198.51.100.9:80/0");
    /* ISO 8601 times (LogAscii::use_json=F with json_timestamps style). */
    assert_int_equal(feed(r, &g,
                          "2026-11-21T10:00:04.000000Z\tCmno9\t10.0.0.5\t40003\t"
                          "198.51.100.9\t80\tGET\tiso.example\t/\t-"),
                     1);
    assert_string_equal(g.s[8], "http.host iso.example 10.0.0.5:40003>198.51.100.9:80/0");
    assert_true(g.ts[8] == utc_us(2026, 11, 21, 10, 0, 4));
    sen_log_stats(r, &st);
    assert_int_equal(st.malformed, 2);
    assert_non_null(strstr(st.first_error, "line 1: zeek: data row before a #fields header"));
    sen_log_reader_free(r);
}

static void zeek_json_lines(void **state)
{
    struct sen_log_reader *r = reader(SEN_LOG_ZEEK);
    struct got g = {0};
    (void)state;

    assert_int_equal(feed(r, &g,
                          "{\"ts\":1763719200.5,\"uid\":\"C1\",\"id.orig_h\":\"10.0.0.5\","
                          "\"id.orig_p\":53002,\"id.resp_h\":\"10.0.0.1\",\"id.resp_p\":53,"
                          "\"proto\":\"udp\",\"query\":\"softupdates.info\",\"qtype_name\":"
                          "\"A\",\"answers\":[\"192.0.2.44\",\"TXT 5 hello\"]}"),
                     1);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.s[0], "dns.query softupdates.info 10.0.0.5:53002>10.0.0.1:53/17");
    assert_string_equal(g.s[1], "dns.answer 192.0.2.44 10.0.0.5:53002>10.0.0.1:53/17");
    assert_true(g.ts[0] == (int64_t)1763719200 * 1000000 + 500000);
    assert_string_equal(g.input[0], "zeek.dns");
    /* ISO 8601 timestamps (LogAscii::json_timestamps) and _path. */
    assert_int_equal(feed(r, &g,
                          "{\"_path\":\"ssl\",\"ts\":\"2026-11-21T10:00:01.000000Z\","
                          "\"id.orig_h\":\"10.0.0.5\",\"id.orig_p\":40001,\"id.resp_h\":"
                          "\"198.51.100.8\",\"id.resp_p\":443,\"server_name\":\"x.example\"}"),
                     1);
    assert_string_equal(g.s[2], "tls.sni x.example 10.0.0.5:40001>198.51.100.8:443/0");
    assert_true(g.ts[2] == utc_us(2026, 11, 21, 10, 0, 1));
    assert_int_equal(feed(r, &g,
                          "{\"ts\":1763719202.0,\"id.orig_h\":\"10.0.0.5\",\"id.orig_p\":1,"
                          "\"id.resp_h\":\"203.0.113.99\",\"id.resp_p\":8080,\"proto\":"
                          "\"tcp\",\"conn_state\":\"S0\"}"),
                     1);
    assert_string_equal(g.s[3], "ip.dst 203.0.113.99 10.0.0.5:1>203.0.113.99:8080/6");
    assert_int_equal(feed(r, &g, "{\"ts\":1763719203.0,\"fuid\":\"F1\",\"mime_type\":\"x\"}"), 0);
    assert_int_equal(feed(r, &g, "{\"ts\":1763719203.0,\"query\":"), -1);
    sen_log_reader_free(r);
}

/* ---- Suricata eve.json ---- */

static void eve_dns_v1_v2_v3(void **state)
{
    struct sen_log_reader *r = reader(SEN_LOG_EVE);
    struct got g = {0};
    (void)state;

    assert_int_equal(feed(r, &g,
                          "{\"timestamp\":\"2026-11-21T10:00:00.123456+0000\",\"flow_id\":1,"
                          "\"event_type\":\"dns\",\"src_ip\":\"192.168.35.10\",\"src_port\":"
                          "1030,\"dest_ip\":\"10.55.99.1\",\"dest_port\":53,\"proto\":\"UDP\","
                          "\"dns\":{\"type\":\"query\",\"id\":1,\"rrname\":"
                          "\"drivres-update.info\",\"rrtype\":\"A\",\"tx_id\":0}}"),
                     1);
    assert_string_equal(g.s[0],
                        "dns.query drivres-update.info 192.168.35.10:1030>10.55.99.1:53/17");
    assert_true(g.ts[0] == utc_us(2026, 11, 21, 10, 0, 0) + 123456);
    /* v1 answer: one record per answer, logged in the response direction. */
    assert_int_equal(feed(r, &g,
                          "{\"timestamp\":\"2026-11-21T10:00:00.200000+0000\",\"event_type\""
                          ":\"dns\",\"src_ip\":\"10.55.99.1\",\"src_port\":53,\"dest_ip\":"
                          "\"192.168.35.10\",\"dest_port\":1030,\"proto\":\"UDP\",\"dns\":{"
                          "\"type\":\"answer\",\"id\":1,\"rrname\":\"drivres-update.info\","
                          "\"rrtype\":\"A\",\"ttl\":60,\"rdata\":\"198.51.100.77\"}}"),
                     1);
    assert_string_equal(g.s[1], "dns.answer 198.51.100.77 192.168.35.10:1030>10.55.99.1:53/17");
    /* v2 answer with the answers array (grouped is the same data again). */
    assert_int_equal(feed(r, &g,
                          "{\"timestamp\":\"2026-11-21T10:00:01+00:00\",\"event_type\":"
                          "\"dns\",\"src_ip\":\"10.55.99.1\",\"src_port\":53,\"dest_ip\":"
                          "\"192.168.35.10\",\"dest_port\":1031,\"proto\":\"UDP\",\"dns\":{"
                          "\"version\":2,\"type\":\"answer\",\"id\":2,\"rrname\":"
                          "\"softupdates.info\",\"rrtype\":\"A\",\"rcode\":\"NOERROR\","
                          "\"answers\":[{\"rrname\":\"softupdates.info\",\"rrtype\":\"CNAME\","
                          "\"ttl\":5,\"rdata\":\"edge.example.net\"},{\"rrname\":"
                          "\"edge.example.net\",\"rrtype\":\"A\",\"ttl\":5,\"rdata\":"
                          "\"192.0.2.10\"}],\"grouped\":{\"A\":[\"192.0.2.10\"],\"CNAME\":"
                          "[\"edge.example.net\"]}}}"),
                     1);
    assert_int_equal(g.n, 4);
    assert_string_equal(g.s[2], "dns.answer edge.example.net 192.168.35.10:1031>10.55.99.1:53/17");
    assert_string_equal(g.s[3], "dns.answer 192.0.2.10 192.168.35.10:1031>10.55.99.1:53/17");
    /* v2 with only grouped answers. */
    assert_int_equal(feed(r, &g,
                          "{\"timestamp\":\"2026-11-21T10:00:01+00:00\",\"event_type\":"
                          "\"dns\",\"src_ip\":\"10.55.99.1\",\"src_port\":53,\"dest_ip\":"
                          "\"192.168.35.10\",\"dest_port\":1032,\"dns\":{\"version\":2,"
                          "\"type\":\"answer\",\"rrname\":\"a.example\",\"grouped\":{"
                          "\"AAAA\":[\"2001:db8::1\"]}}}"),
                     1);
    assert_string_equal(g.s[4], "dns.answer 2001:db8::1 192.168.35.10:1032>10.55.99.1:53/0");
    /* v3 (Suricata 8): a request with a queries array. */
    assert_int_equal(feed(r, &g,
                          "{\"timestamp\":\"2026-11-21T10:00:02.000000+0000\",\"event_type\""
                          ":\"dns\",\"src_ip\":\"10.0.0.5\",\"src_port\":5000,\"dest_ip\":"
                          "\"10.0.0.1\",\"dest_port\":53,\"proto\":\"UDP\",\"dns\":{"
                          "\"version\":3,\"type\":\"request\",\"id\":3,\"queries\":[{"
                          "\"rrname\":\"one.example\",\"rrtype\":\"A\"},{\"rrname\":"
                          "\"two.example\",\"rrtype\":\"AAAA\"}]}}"),
                     1);
    assert_string_equal(g.s[5], "dns.query one.example 10.0.0.5:5000>10.0.0.1:53/17");
    assert_string_equal(g.s[6], "dns.query two.example 10.0.0.5:5000>10.0.0.1:53/17");
    sen_log_reader_free(r);
}

static void eve_tls_http_quic_flow_alert(void **state)
{
    struct sen_log_reader *r = reader(SEN_LOG_EVE);
    struct got g = {0};
    (void)state;

    assert_int_equal(feed(r, &g,
                          "{\"timestamp\":\"2026-11-21T10:00:00.000000+0000\",\"event_type\""
                          ":\"tls\",\"src_ip\":\"10.0.0.5\",\"src_port\":40000,\"dest_ip\":"
                          "\"198.51.100.8\",\"dest_port\":443,\"proto\":\"TCP\",\"tls\":{"
                          "\"sni\":\"evil.example.org\",\"version\":\"TLS 1.2\",\"ja3\":{"
                          "\"hash\":\"51c64c77e60f3980eea90869b68c58a8\",\"string\":\"771,"
                          "49195,0-23,29,0\"},\"ja4\":\"t12d1909h2_d83cc789557e_7af1ed941c26\""
                          "}}"),
                     1);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.s[0], "tls.sni evil.example.org 10.0.0.5:40000>198.51.100.8:443/6");
    assert_string_equal(
        g.s[1], "tls.ja3 51c64c77e60f3980eea90869b68c58a8 10.0.0.5:40000>198.51.100.8:443/6");
    assert_string_equal(
        g.s[2], "tls.ja4 t12d1909h2_d83cc789557e_7af1ed941c26 10.0.0.5:40000>198.51.100.8:443/6");
    assert_int_equal(feed(r, &g,
                          "{\"timestamp\":\"2026-11-21T10:00:01.000000+0000\",\"event_type\""
                          ":\"http\",\"src_ip\":\"10.0.0.5\",\"src_port\":40001,\"dest_ip\":"
                          "\"198.51.100.9\",\"dest_port\":80,\"proto\":\"TCP\",\"http\":{"
                          "\"hostname\":\"dl.example.com\",\"url\":\"/x.exe\","
                          "\"http_method\":\"GET\",\"status\":200}}"),
                     1);
    assert_string_equal(g.s[3], "http.host dl.example.com 10.0.0.5:40001>198.51.100.9:80/6");
    assert_string_equal(g.s[4], "http.url dl.example.com/x.exe 10.0.0.5:40001>198.51.100.9:80/6");
    assert_int_equal(feed(r, &g,
                          "{\"timestamp\":\"2026-11-21T10:00:02.000000+0000\",\"event_type\""
                          ":\"quic\",\"src_ip\":\"10.0.0.5\",\"src_port\":50000,\"dest_ip\":"
                          "\"198.51.100.10\",\"dest_port\":443,\"proto\":\"UDP\",\"quic\":{"
                          "\"version\":\"1\",\"sni\":\"q.example.net\",\"ja4\":"
                          "\"q13d0310h3_55b375c5d22e_cd85d2d88918\"}}"),
                     1);
    assert_string_equal(g.s[5], "quic.sni q.example.net 10.0.0.5:50000>198.51.100.10:443/17");
    assert_string_equal(g.s[6], "tls.ja4 q13d0310h3_55b375c5d22e_cd85d2d88918 "
                                "10.0.0.5:50000>198.51.100.10:443/17");
    assert_int_equal(feed(r, &g,
                          "{\"timestamp\":\"2026-11-21T10:00:03.000000+0000\",\"event_type\""
                          ":\"flow\",\"src_ip\":\"10.0.0.5\",\"src_port\":40003,\"dest_ip\":"
                          "\"203.0.113.1\",\"dest_port\":4444,\"proto\":\"TCP\",\"flow\":{"
                          "\"pkts_toserver\":3}}"),
                     1);
    assert_string_equal(g.s[7], "ip.dst 203.0.113.1 10.0.0.5:40003>203.0.113.1:4444/6");
    assert_int_equal(feed(r, &g,
                          "{\"timestamp\":\"2026-11-21T10:00:04.000000+0000\",\"event_type\""
                          ":\"alert\",\"src_ip\":\"10.0.0.5\",\"src_port\":40004,\"dest_ip\":"
                          "\"203.0.113.2\",\"dest_port\":80,\"proto\":\"TCP\",\"alert\":{"
                          "\"signature_id\":1}}"),
                     1);
    assert_string_equal(g.s[8], "ip.dst 203.0.113.2 10.0.0.5:40004>203.0.113.2:80/6");
    assert_int_equal(feed(r, &g,
                          "{\"timestamp\":\"2026-11-21T10:00:05.000000+0000\",\"event_type\""
                          ":\"stats\",\"stats\":{\"uptime\":5}}"),
                     0);
    assert_int_equal(feed(r, &g, "{\"timestamp\":\"yesterday\",\"event_type\":\"flow\"}"), -1);
    sen_log_reader_free(r);
}

/* ---- syslog framing and auto mode ---- */

static void syslog_strip_rfc3164_5424_and_bare(void **state)
{
    char prog[64];
    const char *msg;
    size_t ml;
    const char *l1 = "<30>Nov 21 10:00:00 gw dnsmasq[812]: query[A] a.example from 10.0.0.5";
    const char *l2 = "<165>1 2026-11-21T10:00:00.003Z ns1 named 4242 - [exampleSDID@32473 "
                     "iut=\"3\" eventSource=\"App]lication\"] client @0x1 10.0.0.5#1 (a): query: "
                     "a IN A + (10.0.0.1)";
    const char *l3 = "Nov  1 09:08:07 fw kernel: [1.0] IN=eth0";
    const char *l4 = "21-Nov-2026 10:00:00.123 queries: info: client";
    (void)state;

    assert_int_equal(sen_syslog_strip(l1, strlen(l1), prog, &msg, &ml), 1);
    assert_string_equal(prog, "dnsmasq");
    assert_int_equal(ml, strlen("query[A] a.example from 10.0.0.5"));
    assert_memory_equal(msg, "query[A]", 8);
    assert_int_equal(sen_syslog_strip(l2, strlen(l2), prog, &msg, &ml), 1);
    assert_string_equal(prog, "named");
    assert_memory_equal(msg, "client @0x1", 11);
    assert_int_equal(sen_syslog_strip(l3, strlen(l3), prog, &msg, &ml), 1);
    assert_string_equal(prog, "kernel");
    assert_memory_equal(msg, "[1.0] IN=eth0", 13);
    assert_int_equal(sen_syslog_strip(l4, strlen(l4), prog, &msg, &ml), 0);
    assert_string_equal(prog, "");
    assert_ptr_equal(msg, l4);
}

static void auto_mode_reads_syslog_wrapped_lines(void **state)
{
    struct sen_log_reader *r = reader(SEN_LOG_AUTO);
    struct got g = {0};
    struct sen_log_stats st;
    (void)state;

    assert_int_equal(
        feed(r, &g, "<30>Nov 21 10:00:00 gw dnsmasq[812]: query[A] c2.example.net from 10.0.0.5"),
        1);
    assert_string_equal(g.s[0], "dns.query c2.example.net 10.0.0.5:0>0.0.0.0:53/17");
    assert_string_equal(g.input[0], "dnsmasq");
    assert_int_equal(feed(r, &g,
                          "<30>Nov 21 10:00:01 ns1 named[4242]: client @0x7f00 10.0.0.6#4000 "
                          "(x.example): query: x.example IN A + (10.0.0.1)"),
                     1);
    assert_string_equal(g.s[1], "dns.query x.example 10.0.0.6:4000>10.0.0.1:53/17");
    assert_string_equal(g.input[1], "bind");
    assert_int_equal(feed(r, &g,
                          "<4>Nov 21 10:00:02 fw kernel: [99.5] OUT: IN= OUT=eth0 SRC=10.0.0.7 "
                          "DST=203.0.113.50 LEN=60 PROTO=TCP SPT=1000 DPT=22"),
                     1);
    assert_string_equal(g.s[2], "ip.dst 203.0.113.50 10.0.0.7:1000>203.0.113.50:22/6");
    assert_string_equal(g.input[2], "netfilter");
    assert_int_equal(feed(r, &g,
                          "<165>1 2026-11-21T10:00:03.000Z ns1 named 4242 - - client @0x7f00 "
                          "10.0.0.8#4001 (y.example): query: y.example IN AAAA + (10.0.0.1)"),
                     1);
    assert_string_equal(g.s[4], "dns.query y.example 10.0.0.8:4001>10.0.0.1:53/17");
    assert_true(g.ts[4] == utc_us(2026, 11, 21, 10, 0, 3));
    /* Files without <PRI>, as rsyslog and dnsmasq write them. */
    assert_int_equal(
        feed(r, &g, "Nov 21 10:00:04 dnsmasq[812]: reply c2.example.net is 198.51.100.1"), 1);
    assert_string_equal(g.s[5], "dns.answer 198.51.100.1");
    assert_int_equal(feed(r, &g,
                          "Nov 21 10:00:05 gw unbound: [812:0] info: 10.0.0.9 "
                          "z.example. A IN"),
                     1);
    assert_string_equal(g.s[6], "dns.query z.example 10.0.0.9:0>0.0.0.0:53/17");
    /* Lines with no header are recognised by their shape. */
    assert_int_equal(feed(r, &g,
                          "1763719200.123 5 10.0.0.5 TCP_MISS/200 10 GET "
                          "http://s.example/ - HIER_DIRECT/203.0.113.3 text/html"),
                     1);
    assert_string_equal(g.input[7], "squid");
    assert_int_equal(feed(r, &g,
                          "{\"timestamp\":\"2026-11-21T10:00:00Z\",\"event_type\":\"tls\","
                          "\"src_ip\":\"10.0.0.5\",\"dest_ip\":\"1.2.3.4\",\"tls\":{\"sni\":"
                          "\"t.example\"}}"),
                     1);
    assert_string_equal(g.input[10], "eve");
    assert_int_equal(feed(r, &g, "<13>Nov 21 10:00:06 host cron[1]: (root) CMD (true)"), -1);
    sen_log_stats(r, &st);
    assert_int_equal(st.malformed, 1);
    assert_non_null(strstr(st.first_error, "no known log format"));
    sen_log_reader_free(r);
}

static void garbage_lines_are_malformed_with_reasons(void **state)
{
    static const struct {
        enum sen_log_format f;
        const char *line, *reason;
    } cases[] = {
        {SEN_LOG_BIND, "complete garbage", "no date"},
        {SEN_LOG_BIND, "21-Nov-2026 10:00:00.1 client @0x1 10.0.0.999#1 (a): query: a IN A",
         "bad client address"},
        {SEN_LOG_DNSMASQ, "query[A] a.example from", "from <client>"},
        {SEN_LOG_DNSMASQ, "query[A a.example from 10.0.0.5", "bad query type"},
        {SEN_LOG_UNBOUND, "info: notanip a.example. A IN", "bad client address"},
        {SEN_LOG_WINDNS, "PACKET without a date", "without a date"},
        {SEN_LOG_NETFILTER, "IN=eth0 OUT= DST=1.2.3.4", "without SRC"},
        {SEN_LOG_SQUID, "1 2 3", "fields"},
        {SEN_LOG_ZEEK, "{\"ts\":", "zeek json"},
        {SEN_LOG_EVE, "[1,2,3]", "not a JSON object"},
        {SEN_LOG_EVE, "{\"timestamp\":\"2026-11-21T10:00:00Z\"}", "no event_type"},
        {SEN_LOG_EVE, "{\"event_type\":\"dns\",\"dns\":{\"type\":\"query\"}}", "without rrname"},
        {SEN_LOG_AUTO, "a\x01line with a control byte", "control byte 0x01"},
    };
    struct got g = {0};
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sen_log_reader *r = reader(cases[i].f);
        struct sen_log_stats st;
        if (feed(r, &g, cases[i].line) != -1)
            fail_msg("case %zu (\"%s\") was not malformed", i, cases[i].line);
        sen_log_stats(r, &st);
        assert_int_equal(st.malformed, 1);
        if (strstr(st.first_error, cases[i].reason) == NULL)
            fail_msg("case %zu: \"%s\" does not say \"%s\"", i, st.first_error, cases[i].reason);
        assert_non_null(strstr(st.first_error, "line 1: "));
        sen_log_reader_free(r);
    }
    {
        /* Lines over 64 KiB are refused before any format looks at them. */
        size_t n = 64 * 1024 + 1;
        char *big = malloc(n);
        struct sen_log_reader *r = reader(SEN_LOG_SQUID);
        struct sen_log_stats st;
        assert_non_null(big);
        memset(big, 'a', n);
        assert_int_equal(sen_log_line(r, big, n, collect, &g), -1);
        sen_log_stats(r, &st);
        assert_non_null(strstr(st.first_error, "64 KiB"));
        free(big);
        sen_log_reader_free(r);
    }
    assert_int_equal(g.n, 0);
    assert_int_equal(sen_log_format_from_name("zeek"), SEN_LOG_ZEEK);
    assert_int_equal(sen_log_format_from_name("nope"), SEN_LOG_COUNT);
    assert_string_equal(sen_log_format_name(SEN_LOG_WINDNS), "windns");
}

/* ---- NetFlow / IPFIX ---- */

struct wbuf {
    uint8_t b[2048];
    size_t n;
};

static void w8(struct wbuf *w, unsigned v)
{
    w->b[w->n++] = (uint8_t)v;
}
static void w16(struct wbuf *w, unsigned v)
{
    w8(w, v >> 8);
    w8(w, v & 0xff);
}
static void w32(struct wbuf *w, uint32_t v)
{
    w16(w, v >> 16);
    w16(w, v & 0xffff);
}
static void wip(struct wbuf *w, const char *a)
{
    uint8_t x[16];
    if (strchr(a, ':') != NULL) {
        assert_int_equal(inet_pton(AF_INET6, a, x), 1);
        memcpy(w->b + w->n, x, 16);
        w->n += 16;
    } else {
        assert_int_equal(inet_pton(AF_INET, a, x), 1);
        memcpy(w->b + w->n, x, 4);
        w->n += 4;
    }
}
static void patch16(struct wbuf *w, size_t at, unsigned v)
{
    w->b[at] = (uint8_t)(v >> 8);
    w->b[at + 1] = (uint8_t)v;
}

static const uint8_t exporter4[4] = {192, 0, 2, 1};

static void netflow_v5_records(void **state)
{
    struct sen_netflow *nf = NULL;
    struct wbuf w = {0};
    struct got g = {0};
    struct sen_netflow_stats st;
    (void)state;

    assert_int_equal(sen_netflow_new(&nf), KH_OK);
    w16(&w, 5), w16(&w, 2), w32(&w, 100000), w32(&w, 1763719200), w32(&w, 500000000);
    w32(&w, 1), w8(&w, 0), w8(&w, 0), w16(&w, 0);
    for (int i = 0; i < 2; i++) {
        wip(&w, "10.0.0.5"), wip(&w, i == 0 ? "198.51.100.7" : "203.0.113.8"), wip(&w, "0.0.0.0");
        w16(&w, 1), w16(&w, 2), w32(&w, 10), w32(&w, 1000), w32(&w, 90000);
        w32(&w, 98000); /* Last: 2 s before the export */
        w16(&w, 40000 + i), w16(&w, i == 0 ? 443 : 53), w8(&w, 0), w8(&w, 0x1b);
        w8(&w, i == 0 ? 6 : 17), w8(&w, 0), w16(&w, 0), w16(&w, 0), w8(&w, 24), w8(&w, 24);
        w16(&w, 0);
    }
    assert_int_equal(sen_netflow_datagram(nf, AF_INET, exporter4, w.b, w.n, 1, collect, &g), 2);
    assert_string_equal(g.s[0], "ip.dst 198.51.100.7 10.0.0.5:40000>198.51.100.7:443/6");
    assert_string_equal(g.s[1], "ip.dst 203.0.113.8 10.0.0.5:40001>203.0.113.8:53/17");
    assert_true(g.ts[0] == (int64_t)1763719200 * 1000000 + 500000 - 2000000);
    assert_string_equal(g.input[0], "netflow");
    assert_non_null(strstr(g.evidence[0], "NetFlow v5 from 192.0.2.1"));
    /* Truncated: the header promises two records, one is there. */
    assert_int_equal(sen_netflow_datagram(nf, AF_INET, exporter4, w.b, w.n - 48, 1, collect, &g),
                     -1);
    sen_netflow_stats(nf, &st);
    assert_int_equal(st.datagrams, 2);
    assert_int_equal(st.records, 2);
    assert_int_equal(st.malformed, 1);
    assert_non_null(strstr(st.first_error, "datagram 2: v5 datagram"));
    sen_netflow_free(nf);
}

/* A v9 template (id 260: src, dst, sport, dport, proto, LAST_SWITCHED). */
static void v9_header(struct wbuf *w, uint32_t source_id)
{
    w->n = 0;
    w16(w, 9), w16(w, 1), w32(w, 100000), w32(w, 1763719200), w32(w, 7), w32(w, source_id);
}

static void v9_template(struct wbuf *w)
{
    static const unsigned f[][2] = {{8, 4}, {12, 4}, {7, 2}, {11, 2}, {4, 1}, {21, 4}, {1, 4}};
    size_t at = w->n;
    w16(w, 0), w16(w, 0), w16(w, 260), w16(w, 7);
    for (int i = 0; i < 7; i++)
        w16(w, f[i][0]), w16(w, f[i][1]);
    patch16(w, at + 2, (unsigned)(w->n - at));
}

static void v9_data(struct wbuf *w, const char *dst)
{
    size_t at = w->n;
    w16(w, 260), w16(w, 0);
    wip(w, "10.0.0.5"), wip(w, dst), w16(w, 40000), w16(w, 443), w8(w, 6), w32(w, 99000);
    w32(w, 1234);
    w8(w, 0), w8(w, 0), w8(w, 0); /* padding to 4 bytes */
    patch16(w, at + 2, (unsigned)(w->n - at));
}

static void netflow_v9_template_then_data(void **state)
{
    struct sen_netflow *nf = NULL;
    struct wbuf w = {0};
    struct got g = {0};
    struct sen_netflow_stats st;
    (void)state;

    assert_int_equal(sen_netflow_new(&nf), KH_OK);
    /* Data before its template: skipped and counted, not malformed. */
    v9_header(&w, 1);
    v9_data(&w, "198.51.100.7");
    assert_int_equal(sen_netflow_datagram(nf, AF_INET, exporter4, w.b, w.n, 1, collect, &g), 0);
    sen_netflow_stats(nf, &st);
    assert_int_equal(st.unknown_template, 1);
    assert_int_equal(st.malformed, 0);
    /* Template and data in one datagram. */
    v9_header(&w, 1);
    v9_template(&w);
    v9_data(&w, "198.51.100.7");
    assert_int_equal(sen_netflow_datagram(nf, AF_INET, exporter4, w.b, w.n, 1, collect, &g), 1);
    assert_string_equal(g.s[0], "ip.dst 198.51.100.7 10.0.0.5:40000>198.51.100.7:443/6");
    assert_true(g.ts[0] == (int64_t)1763719200 * 1000000 - 1000000);
    /* Later data alone uses the cached template... */
    v9_header(&w, 1);
    v9_data(&w, "203.0.113.9");
    assert_int_equal(sen_netflow_datagram(nf, AF_INET, exporter4, w.b, w.n, 1, collect, &g), 1);
    assert_string_equal(g.s[1], "ip.dst 203.0.113.9 10.0.0.5:40000>203.0.113.9:443/6");
    /* ...but not one from another source id or another exporter. */
    v9_header(&w, 2);
    v9_data(&w, "203.0.113.9");
    assert_int_equal(sen_netflow_datagram(nf, AF_INET, exporter4, w.b, w.n, 1, collect, &g), 0);
    {
        static const uint8_t other[4] = {192, 0, 2, 2};
        v9_header(&w, 1);
        v9_data(&w, "203.0.113.9");
        assert_int_equal(sen_netflow_datagram(nf, AF_INET, other, w.b, w.n, 1, collect, &g), 0);
    }
    /* A flowset longer than the datagram is malformed. */
    v9_header(&w, 1);
    v9_data(&w, "203.0.113.9");
    patch16(&w, 22, 200);
    assert_int_equal(sen_netflow_datagram(nf, AF_INET, exporter4, w.b, w.n, 1, collect, &g), -1);
    sen_netflow_stats(nf, &st);
    assert_int_equal(st.unknown_template, 3);
    assert_int_equal(st.templates, 1);
    assert_int_equal(st.records, 2);
    assert_int_equal(st.malformed, 1);
    assert_non_null(strstr(st.first_error, "length 200"));
    sen_netflow_free(nf);
}

static void ipfix_variable_enterprise_and_options(void **state)
{
    struct sen_netflow *nf = NULL;
    struct wbuf w = {0};
    struct got g = {0};
    struct sen_netflow_stats st;
    size_t at;
    (void)state;

    assert_int_equal(sen_netflow_new(&nf), KH_OK);
    w16(&w, 10), w16(&w, 0), w32(&w, 1763719300), w32(&w, 1), w32(&w, 77);
    /* Options template 300 (scope: observationDomainId), skipped. */
    at = w.n;
    w16(&w, 3), w16(&w, 0), w16(&w, 300), w16(&w, 2), w16(&w, 1);
    w16(&w, 149), w16(&w, 4), w16(&w, 41), w16(&w, 8);
    patch16(&w, at + 2, (unsigned)(w.n - at));
    /* Template 256: IPv6 src/dst, ports, proto, a variable-length field,
     * an enterprise field, flowEndMilliseconds. */
    at = w.n;
    w16(&w, 2), w16(&w, 0), w16(&w, 256), w16(&w, 8);
    w16(&w, 27), w16(&w, 16), w16(&w, 28), w16(&w, 16), w16(&w, 7), w16(&w, 2);
    w16(&w, 11), w16(&w, 2), w16(&w, 4), w16(&w, 1);
    w16(&w, 82), w16(&w, 65535);                      /* interfaceName, variable */
    w16(&w, 0x8000 | 12), w16(&w, 6), w32(&w, 29305); /* enterprise field, 6 bytes */
    w16(&w, 153), w16(&w, 8);
    patch16(&w, at + 2, (unsigned)(w.n - at));
    /* Options data, then flow data: two records, the second with a long
     * (3-byte length) variable field. */
    at = w.n;
    w16(&w, 300), w16(&w, 0), w32(&w, 77), w32(&w, 0), w32(&w, 5);
    patch16(&w, at + 2, (unsigned)(w.n - at));
    at = w.n;
    w16(&w, 256), w16(&w, 0);
    wip(&w, "2001:db8::5"), wip(&w, "2001:db8:bad::1"), w16(&w, 50000), w16(&w, 8443), w8(&w, 6);
    w8(&w, 4), memcpy(w.b + w.n, "eth0", 4), w.n += 4;
    w16(&w, 0xdead), w32(&w, 0xbeef);
    w32(&w, 0x00000199), w32(&w, 0xa5a5a5a5); /* ms since the epoch */
    wip(&w, "2001:db8::6"), wip(&w, "2001:db8:bad::2"), w16(&w, 50001), w16(&w, 53), w8(&w, 17);
    w8(&w, 255), w16(&w, 300);
    memset(w.b + w.n, 'x', 300), w.n += 300;
    w16(&w, 0), w32(&w, 0);
    w32(&w, 0), w32(&w, 1000);
    patch16(&w, at + 2, (unsigned)(w.n - at));
    patch16(&w, 2, (unsigned)w.n);
    assert_int_equal(sen_netflow_datagram(nf, AF_INET, exporter4, w.b, w.n, 1, collect, &g), 2);
    assert_string_equal(g.s[0], "ip.dst 2001:db8:bad::1 2001:db8::5:50000>2001:db8:bad::1:8443/6");
    assert_string_equal(g.s[1], "ip.dst 2001:db8:bad::2 2001:db8::6:50001>2001:db8:bad::2:53/17");
    assert_true(g.ts[0] == (int64_t)0x199a5a5a5a5LL * 1000);
    assert_true(g.ts[1] == 1000000);
    assert_non_null(strstr(g.evidence[0], "IPFIX"));
    sen_netflow_stats(nf, &st);
    assert_int_equal(st.templates, 2);
    assert_int_equal(st.unknown_template, 0);
    /* The header's length must fit the datagram. */
    patch16(&w, 2, (unsigned)w.n + 1);
    assert_int_equal(sen_netflow_datagram(nf, AF_INET, exporter4, w.b, w.n, 1, collect, &g), -1);
    /* A variable-length field that runs past its set. */
    {
        struct wbuf v = {0};
        w16(&v, 10), w16(&v, 0), w32(&v, 1), w32(&v, 1), w32(&v, 77);
        /* As long as the template's shortest record, but the variable
         * field says 200 bytes. */
        w16(&v, 256), w16(&v, 4 + 37 + 1 + 14);
        wip(&v, "2001:db8::5"), wip(&v, "2001:db8:bad::1"), w16(&v, 1), w16(&v, 2), w8(&v, 6);
        w8(&v, 200);
        memset(v.b + v.n, 0, 14), v.n += 14;
        patch16(&v, 2, (unsigned)v.n);
        assert_int_equal(sen_netflow_datagram(nf, AF_INET, exporter4, v.b, v.n, 1, collect, &g),
                         -1);
    }
    sen_netflow_stats(nf, &st);
    assert_int_equal(st.malformed, 2);
    assert_int_equal(sen_netflow_datagram(nf, AF_INET, exporter4, (const uint8_t *)"\x00\x07", 2, 1,
                                          collect, &g),
                     -1);
    sen_netflow_free(nf);
}

static void ipfix_uptime_times_use_options_system_init(void **state)
{
    struct sen_netflow *nf = NULL;
    struct wbuf w = {0};
    struct got g = {0};
    size_t at;
    (void)state;

    assert_int_equal(sen_netflow_new(&nf), KH_OK);
    w16(&w, 10), w16(&w, 0), w32(&w, 1763719300), w32(&w, 1), w32(&w, 5);
    at = w.n;
    w16(&w, 3), w16(&w, 0), w16(&w, 300), w16(&w, 2), w16(&w, 1);
    w16(&w, 143), w16(&w, 4), w16(&w, 160), w16(&w, 8);
    patch16(&w, at + 2, (unsigned)(w.n - at));
    at = w.n;
    w16(&w, 2), w16(&w, 0), w16(&w, 257), w16(&w, 3);
    w16(&w, 8), w16(&w, 4), w16(&w, 12), w16(&w, 4), w16(&w, 21), w16(&w, 4);
    patch16(&w, at + 2, (unsigned)(w.n - at));
    at = w.n;
    /* systemInitTimeMilliseconds = 1763719000000 (0x19aa5d82fc0). */
    w16(&w, 300), w16(&w, 0), w32(&w, 1), w32(&w, 0x19a), w32(&w, 0xa5d82fc0);
    patch16(&w, at + 2, (unsigned)(w.n - at));
    at = w.n;
    w16(&w, 257), w16(&w, 0), wip(&w, "10.0.0.5"), wip(&w, "198.51.100.7"), w32(&w, 5000);
    patch16(&w, at + 2, (unsigned)(w.n - at));
    patch16(&w, 2, (unsigned)w.n);
    assert_int_equal(sen_netflow_datagram(nf, AF_INET, exporter4, w.b, w.n, 1, collect, &g), 1);
    assert_string_equal(g.s[0], "ip.dst 198.51.100.7 10.0.0.5:0>198.51.100.7:0/0");
    assert_true(g.ts[0] == ((int64_t)1763719000000 + 5000) * 1000);
    sen_netflow_free(nf);
}

static void netflow_template_cache_is_bounded(void **state)
{
    struct sen_netflow *nf = NULL;
    struct wbuf w = {0};
    struct got g = {0};
    (void)state;

    assert_int_equal(sen_netflow_new(&nf), KH_OK);
    /* 2,000 exporters each send template 260: the oldest are forgotten. */
    for (uint32_t i = 0; i < 2000; i++) {
        uint8_t exp[4] = {10, 1, (uint8_t)(i >> 8), (uint8_t)i};
        v9_header(&w, 1);
        v9_template(&w);
        assert_int_equal(sen_netflow_datagram(nf, AF_INET, exp, w.b, w.n, 1, collect, &g), 0);
    }
    {
        uint8_t first[4] = {10, 1, 0, 0}, last[4] = {10, 1, 1999 >> 8, 1999 & 0xff};
        v9_header(&w, 1);
        v9_data(&w, "198.51.100.7");
        assert_int_equal(sen_netflow_datagram(nf, AF_INET, first, w.b, w.n, 1, collect, &g), 0);
        assert_int_equal(sen_netflow_datagram(nf, AF_INET, last, w.b, w.n, 1, collect, &g), 1);
    }
    sen_netflow_free(nf);
}

/* ---- softflowd as a real exporter ---- */

static void pcap_packet(FILE *f, uint32_t ts, const uint8_t dst[4], uint16_t sport, uint16_t dport,
                        int proto)
{
    uint8_t p[64] = {0};
    size_t l4 = proto == 6 ? 20 : 8, n = 14 + 20 + l4;
    uint32_t hdr[4] = {ts, 0, (uint32_t)n, (uint32_t)n}, sum = 0;

    memset(p + 6, 0x11, 6);
    p[12] = 0x08;
    p[14] = 0x45;
    p[16] = (uint8_t)((20 + l4) >> 8), p[17] = (uint8_t)(20 + l4);
    p[22] = 64, p[23] = (uint8_t)proto;
    p[26] = 10, p[27] = 0, p[28] = 0, p[29] = 5;
    memcpy(p + 30, dst, 4);
    for (int i = 14; i < 34; i += 2)
        sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    sum = (sum >> 16) + (sum & 0xffff);
    sum += sum >> 16;
    p[24] = (uint8_t)(~sum >> 8), p[25] = (uint8_t)~sum;
    p[34] = (uint8_t)(sport >> 8), p[35] = (uint8_t)sport;
    p[36] = (uint8_t)(dport >> 8), p[37] = (uint8_t)dport;
    if (proto == 6) {
        p[46] = 0x50, p[47] = 0x02, p[48] = 0x04;
    } else {
        p[39] = 8;
    }
    fwrite(hdr, sizeof(hdr), 1, f);
    fwrite(p, n, 1, f);
}

static int softflowd_present(void)
{
    return access("/usr/sbin/softflowd", X_OK) == 0 || access("/usr/bin/softflowd", X_OK) == 0;
}

static void softflowd_exports_read_back(void **state)
{
    static const char *const versions[] = {"5", "9", "10"};
    const char *dir;
    char pcap[512], pidf[512];
    FILE *f;
    (void)state;

    if (!softflowd_present()) {
        printf("SKIP softflowd_exports_read_back: softflowd is not installed\n");
        skip();
    }
    dir = tu_mkdtemp();
    snprintf(pcap, sizeof(pcap), "%s/flows.pcap", dir);
    snprintf(pidf, sizeof(pidf), "%s/sf.pid", dir);
    f = fopen(pcap, "wb");
    assert_non_null(f);
    {
        uint32_t gh[6] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
        static const uint8_t d1[4] = {198, 51, 100, 7}, d2[4] = {203, 0, 113, 9};
        fwrite(gh, sizeof(gh), 1, f);
        pcap_packet(f, 1763719200, d1, 40000, 443, 6);
        pcap_packet(f, 1763719201, d1, 40000, 443, 6);
        pcap_packet(f, 1763719202, d2, 50000, 53, 17);
    }
    fclose(f);

    for (size_t v = 0; v < sizeof(versions) / sizeof(versions[0]); v++) {
        struct sen_netflow *nf = NULL;
        struct got g = {0};
        struct sockaddr_in sa = {0};
        socklen_t sl = sizeof(sa);
        struct timeval tv = {5, 0};
        char target[64];
        int s, status, found1 = 0, found2 = 0;
        pid_t pid;

        s = socket(AF_INET, SOCK_DGRAM, 0);
        assert_true(s >= 0);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        snprintf(target, sizeof(target), "127.0.0.1:%u", ntohs(sa.sin_port));
        fflush(stdout); /* the child must not repeat buffered output */
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            freopen("/dev/null", "w", stdout);
            freopen("/dev/null", "w", stderr);
            /* No control socket: with -r, softflowd 1.1.0 would check a
             * poll result it never filled in and can block in accept(). */
            execlp("softflowd", "softflowd", "-d", "-r", pcap, "-n", target, "-v", versions[v],
                   "-p", pidf, "-c", "none", (char *)NULL);
            _exit(127);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_int_equal(sen_netflow_new(&nf), KH_OK);
        for (;;) {
            uint8_t buf[65536];
            uint8_t lo[4] = {127, 0, 0, 1};
            ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
            if (n < 0)
                break;
            assert_true(sen_netflow_datagram(nf, AF_INET, lo, buf, (size_t)n, 1, collect, &g) >= 0);
        }
        for (int i = 0; i < g.n; i++) {
            if (strcmp(g.s[i], "ip.dst 198.51.100.7 10.0.0.5:40000>198.51.100.7:443/6") == 0)
                found1++;
            if (strcmp(g.s[i], "ip.dst 203.0.113.9 10.0.0.5:50000>203.0.113.9:53/17") == 0)
                found2++;
        }
        if (found1 != 1 || found2 != 1) {
            for (int i = 0; i < g.n; i++)
                printf("  got: %s\n", g.s[i]);
            fail_msg("softflowd -v %s: flows not read back", versions[v]);
        }
        assert_int_equal(g.n, 2);
        sen_netflow_free(nf);
        close(s);
    }
    tu_rmtree(dir);
}

/* Every distinct IPv4 TCP/UDP 5-tuple in a shared capture, as tshark sees
 * it, must come back from softflowd's IPFIX export as exactly one distinct
 * record, and nothing else. */
struct strset {
    char **v;
    size_t n, cap;
};

static void set_add(struct strset *s, const char *x)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], x) == 0)
            return;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        assert_non_null(s->v);
    }
    s->v[s->n] = strdup(x);
    assert_non_null(s->v[s->n]);
    s->n++;
}

static int set_has(const struct strset *s, const char *x)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], x) == 0)
            return 1;
    return 0;
}

static void set_free(struct strset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

static void collect_set(void *ctx, const struct sen_obs *o)
{
    char src[46], dst[46], line[200];
    if (o->t.proto != 6 && o->t.proto != 17)
        return;
    sen_addr_format(o->t.family, o->t.src, src);
    sen_addr_format(o->t.family, o->t.dst, dst);
    snprintf(line, sizeof(line), "%s:%u>%s:%u/%u", src, o->t.sport, dst, o->t.dport, o->t.proto);
    set_add(ctx, line);
}

static void softflowd_matches_tshark_on_shared_pcaps(void **state)
{
    static const char *const pcaps[] = {
        "net/suricata-verify/tests/bug-2158/public-ex1_section8_Sofacy.pcap",
        "net/suricata-verify/tests/ja4-quic/input.pcap",
        "net/suricata-verify/tests/datasets-pcrexform/input.pcap",
    };
    const char *data = tu_shared_data();
    char pidf[512];
    (void)state;

    if (data == NULL) {
        printf("SKIP softflowd_matches_tshark_on_shared_pcaps: ../shared/data is absent\n");
        skip();
    }
    if (!softflowd_present() || system("tshark -v >/dev/null 2>&1") != 0) {
        printf("SKIP softflowd_matches_tshark_on_shared_pcaps: softflowd or tshark missing\n");
        skip();
    }
    /* softflowd unlinks its pid file on exit even when it wrote none. */
    snprintf(pidf, sizeof(pidf), "%s/sf.pid", tu_mkdtemp());
    for (size_t k = 0; k < sizeof(pcaps) / sizeof(pcaps[0]); k++) {
        char path[1024], cmd[1400], line[512], target[64];
        struct strset want = {0}, got = {0};
        struct sen_netflow *nf = NULL;
        struct sockaddr_in sa = {0};
        socklen_t sl = sizeof(sa);
        FILE *p;
        int s, status;
        pid_t pid;

        snprintf(path, sizeof(path), "%s/%s", data, pcaps[k]);
        if (access(path, R_OK) != 0) {
            printf("SKIP %s: absent\n", path);
            continue;
        }
        snprintf(cmd, sizeof(cmd),
                 "tshark -r '%s' -Y 'ip && ip.flags.mf == 0 && (tcp || udp)' -T fields -e ip.src "
                 "-e ip.dst -e tcp.srcport -e tcp.dstport -e udp.srcport -e udp.dstport "
                 "-e ip.proto 2>/dev/null",
                 path);
        p = popen(cmd, "r");
        assert_non_null(p);
        while (fgets(line, sizeof(line), p) != NULL) {
            char f[7][64] = {{0}}, out[512];
            int nf_ = 0;
            /* Empty fields are adjacent tabs: split by hand. */
            char *c = line;
            for (nf_ = 0; nf_ < 7; nf_++) {
                char *tab = strpbrk(c, "\t\n");
                size_t n = tab != NULL ? (size_t)(tab - c) : strlen(c);
                snprintf(f[nf_], sizeof(f[0]), "%.*s", (int)n, c);
                if (tab == NULL)
                    break;
                c = tab + 1;
            }
            if (strchr(f[0], ',') != NULL || strchr(f[1], ',') != NULL)
                continue; /* tunnelled: softflowd sees the outer header */
            snprintf(out, sizeof(out), "%s:%s>%s:%s/%s", f[0], f[2][0] ? f[2] : f[4], f[1],
                     f[3][0] ? f[3] : f[5], f[6]);
            set_add(&want, out);
        }
        pclose(p);
        assert_true(want.n > 0);

        s = socket(AF_INET, SOCK_DGRAM, 0);
        assert_true(s >= 0);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
        snprintf(target, sizeof(target), "127.0.0.1:%u", ntohs(sa.sin_port));
        fflush(stdout); /* the child must not repeat buffered output */
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            freopen("/dev/null", "w", stdout);
            freopen("/dev/null", "w", stderr);
            execlp("softflowd", "softflowd", "-d", "-r", path, "-n", target, "-v", "10", "-p", pidf,
                   "-c", "none", (char *)NULL);
            _exit(127);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_int_equal(sen_netflow_new(&nf), KH_OK);
        for (;;) {
            uint8_t buf[65536];
            uint8_t lo[4] = {127, 0, 0, 1};
            ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
            if (n < 0)
                break;
            assert_true(
                sen_netflow_datagram(nf, AF_INET, lo, buf, (size_t)n, 1, collect_set, &got) >= 0);
        }
        for (size_t i = 0; i < want.n; i++)
            if (!set_has(&got, want.v[i]))
                fail_msg("%s: tshark's %s is not in the IPFIX export", pcaps[k], want.v[i]);
        for (size_t i = 0; i < got.n; i++)
            if (!set_has(&want, got.v[i]))
                fail_msg("%s: IPFIX record %s is not in tshark's view", pcaps[k], got.v[i]);
        printf("%s: %zu flows match\n", pcaps[k], got.n);
        sen_netflow_free(nf);
        close(s);
        set_free(&want);
        set_free(&got);
    }
    {
        char *slash = strrchr(pidf, '/');
        *slash = '\0';
        tu_rmtree(pidf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bind_query_and_rpz_lines_give_client_queries),
        cmocka_unit_test(dnsmasq_queries_and_replies_with_addresses),
        cmocka_unit_test(unbound_queries_then_replies_counted_once),
        cmocka_unit_test(windns_debug_log_received_queries),
        cmocka_unit_test(netfilter_log_lines_give_both_addresses),
        cmocka_unit_test(squid_requests_give_host_url_and_peer),
        cmocka_unit_test(zeek_tsv_rows_after_fields_header),
        cmocka_unit_test(zeek_json_lines),
        cmocka_unit_test(eve_dns_v1_v2_v3),
        cmocka_unit_test(eve_tls_http_quic_flow_alert),
        cmocka_unit_test(syslog_strip_rfc3164_5424_and_bare),
        cmocka_unit_test(auto_mode_reads_syslog_wrapped_lines),
        cmocka_unit_test(garbage_lines_are_malformed_with_reasons),
        cmocka_unit_test(netflow_v5_records),
        cmocka_unit_test(netflow_v9_template_then_data),
        cmocka_unit_test(ipfix_variable_enterprise_and_options),
        cmocka_unit_test(ipfix_uptime_times_use_options_system_init),
        cmocka_unit_test(netflow_template_cache_is_bounded),
        cmocka_unit_test(softflowd_exports_read_back),
        cmocka_unit_test(softflowd_matches_tshark_on_shared_pcaps),
    };
    return cmocka_run_group_tests(tests, setup_tz, NULL);
}
