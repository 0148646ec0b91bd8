/*
 * Feed readers (lib/ioc/feed*.c): the value normaliser's canonical forms and
 * refusals (defanged, URLs, ports, prefixes), the category vocabulary, and
 * every format read from a fixture written here — Khiên's text form and
 * hosts files, CSV (Feodo, URLhaus and ThreatFox shapes), maltrail static
 * trails and trails.csv, ipsum, firehol, Suricata iprep, Zeek intel, STIX
 * 2.1, MISP events, MISP warninglists, a gzip file and a MISP feed folder —
 * with bad entries counted under their line or object number and expired
 * entries skipped. With ../shared/data/net present (skipped visibly
 * otherwise) it reads all of maltrail's static trails, ipsum, every MISP
 * warninglist, the maltrail corpus trails.csv and suricata-verify's iprep
 * lists, and prints counts and the time taken (not asserted).
 */
#include "testutil.h"

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include <khien/khien.h>

#include "feed.h"
#include "ioc.h"
#include "khx.h"

/* Records collected from a reader, as "kind value category source family
 * confidence expires" lines. */
struct got {
    char lines[64][1200];
    size_t n;
    size_t kinds[IOC_KIND_COUNT];
    size_t total;
    int stop_after; /* > 0: return 99 at this record */
};

static const char *const kind_names[IOC_KIND_COUNT] = {"ip",  "cidr", "ip_port", "domain",
                                                       "url", "ja3",  "ja4"};

static int collect(void *ctx, const struct ioc_record *r)
{
    struct got *g = ctx;
    assert_true(r->kind >= 0 && r->kind < IOC_KIND_COUNT);
    assert_non_null(r->value);
    assert_non_null(r->category);
    assert_non_null(r->source);
    g->kinds[r->kind]++;
    g->total++;
    if (g->n < 64)
        snprintf(g->lines[g->n++], sizeof(g->lines[0]), "%s %s %s %s %s %u %lld",
                 kind_names[r->kind], r->value, r->category, r->source, r->family ? r->family : "-",
                 r->confidence, (long long)r->expires);
    if (g->stop_after > 0 && g->total == (size_t)g->stop_after)
        return 99;
    return 0;
}

static int count_only(void *ctx, const struct ioc_record *r)
{
    struct got *g = ctx;
    g->kinds[r->kind]++;
    g->total++;
    return 0;
}

static int noop(void *ctx, const struct ioc_record *r)
{
    (void)ctx;
    (void)r;
    return 0;
}

static int has(const struct got *g, const char *line)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->lines[i], line) == 0)
            return 1;
    return 0;
}

static void expect(const struct got *g, const char *line)
{
    if (!has(g, line)) {
        for (size_t i = 0; i < g->n; i++)
            print_message("  got: %s\n", g->lines[i]);
        fail_msg("missing record: %s", line);
    }
}

#define NOW 1800000000LL /* 2027-01-15 */

static void read_text(enum ioc_format fmt, const char *text, const struct ioc_read_opts *o,
                      struct got *g, struct ioc_read_stats *st, int want)
{
    struct ioc_read_opts def = {0};
    def.now = NOW;
    memset(g, 0, sizeof(*g));
    int r = ioc_read_feed(fmt, text, strlen(text), o ? o : &def, collect, g, st);
    if (r != want)
        fail_msg("ioc_read_feed(%s) returned %d, not %d (%s)", ioc_format_name(fmt), r, want,
                 st->first_error);
}

static void norm_is(const char *in, int kind, const char *want)
{
    char out[IOC_VALUE_MAX + 1], err[200] = "";
    int k = ioc_normalize_value(-1, in, strlen(in), out, err, sizeof(err));
    if (k != kind || strcmp(out, want) != 0)
        fail_msg("'%s' -> %d '%s' (%s), expected %d '%s'", in, k, out, err, kind, want);
}

static void norm_refused(int kind, const char *in)
{
    char out[IOC_VALUE_MAX + 1], err[200] = "";
    int k = ioc_normalize_value(kind, in, strlen(in), out, err, sizeof(err));
    if (k != -1 || err[0] == '\0')
        fail_msg("'%s' was accepted as %d '%s'", in, k, out);
}

static void feed_normalize_gives_canonical_forms_and_undoes_defanging(void **state)
{
    (void)state;
    norm_is("hxxps://Evil[.]Example/a?b=1#frag", IOC_URL, "evil.example/a?b=1");
    norm_is("hXXp://user:pw@EVIL.example:80/x", IOC_URL, "evil.example/x");
    norm_is("https://evil.example:8443/x", IOC_URL, "evil.example:8443/x");
    norm_is("http://[2001:db8::5]:8080/p", IOC_URL, "[2001:db8::5]:8080/p");
    norm_is("http://203.0.113.9", IOC_IP, "203.0.113.9");
    norm_is("http://203.0.113.9:8080/", IOC_IP_PORT, "203.0.113.9:8080");
    norm_is("203.0.113.9/24", IOC_CIDR, "203.0.113.0/24");
    norm_is("203.0.113.9/32", IOC_IP, "203.0.113.9");
    norm_is("203[.]0[.]113[.]9", IOC_IP, "203.0.113.9");
    norm_is("::ffff:203.0.113.9", IOC_IP, "203.0.113.9");
    norm_is("[2001:DB8::1]:443", IOC_IP_PORT, "[2001:db8::1]:443");
    norm_is("2001:db8:0:0::1", IOC_IP, "2001:db8::1");
    norm_is("[::ffff:45.62.198.73]:53", IOC_IP_PORT, "45.62.198.73:53");
    norm_is("/\xd0\xb0.apk", IOC_URL, "/\xd0\xb0.apk");
    norm_is("2001:db8::1/48", IOC_CIDR, "2001:db8::/48");
    norm_is("203.0.113.9:8443", IOC_IP_PORT, "203.0.113.9:8443");
    norm_is("EVIL.Example.", IOC_DOMAIN, "evil.example");
    norm_is("hxxpfoo.example", IOC_DOMAIN, "hxxpfoo.example");
    norm_is("evil(.)example", IOC_DOMAIN, "evil.example");
    norm_is("*.evil.example", IOC_DOMAIN, "evil.example");
    norm_is("evil.example:8080", IOC_DOMAIN, "evil.example");
    norm_is("xn--bcher-kva.example", IOC_DOMAIN, "xn--bcher-kva.example");
    norm_is("/gate.php?id=1", IOC_URL, "/gate.php?id=1");
    norm_is("evil.example/bad/Path", IOC_URL, "evil.example/bad/Path");
    norm_is("51C64C77E60F3980EEA90869B68C58A8", IOC_JA3, "51c64c77e60f3980eea90869b68c58a8");
    norm_is("t13d1516h2_8daaf6152771_e5627efa2ab1", IOC_JA4,
            "t13d1516h2_8daaf6152771_e5627efa2ab1");
    norm_refused(-1, "localhost");
    norm_refused(-1, "0.0.0.0");
    norm_refused(-1, "0.0.0.0/32");
    norm_refused(IOC_IP, "::/128");
    norm_refused(-1, "203.0.113.0/0");
    norm_refused(-1, "evil example");
    norm_refused(-1, "");
    norm_refused(-1, "203.0.113.9:0");
    norm_refused(-1, "203.0.113.9:70000");
    norm_refused(-1, "b\xc3\xbc"
                     "cher.example");
    norm_refused(-1, "2001:db8::1:443x");
    norm_refused(-1, "http://");
    norm_refused(IOC_DOMAIN, "203.0.113.9");
    norm_refused(IOC_JA3, "not-a-hash");
    norm_refused(IOC_IP, "evil.example");
    /* A URL asked for keeps its root path. */
    char out[IOC_VALUE_MAX + 1], err[100];
    assert_int_equal(ioc_normalize_value(IOC_URL, "http://evil.example", 19, out, err, 100),
                     IOC_URL);
    assert_string_equal(out, "evil.example/");
    /* Longer than IOC_VALUE_MAX is refused, not cut. */
    char *big = malloc(2000);
    memset(big, 'a', 1999);
    memcpy(big, "evil.example/", 13);
    big[1999] = '\0';
    norm_refused(-1, big);
    free(big);
}

/* The fast path (plain domains and dotted IPv4) must give exactly what the
 * general path gives, and leave everything it does not fully understand to
 * it, errors included. */
static void feed_fast_path_agrees_with_the_general_normaliser(void **state)
{
    (void)state;
    norm_is("Evil-Host_1.EXAMPLE", IOC_DOMAIN, "evil-host_1.example");
    norm_is("a1b2.c3d4", IOC_DOMAIN, "a1b2.c3d4");
    norm_is("123.example", IOC_DOMAIN, "123.example");
    norm_is("1.2.3.4a", IOC_DOMAIN, "1.2.3.4a");
    norm_is("203.0.113.9", IOC_IP, "203.0.113.9");
    norm_is("203.0.113.255/25", IOC_CIDR, "203.0.113.128/25");
    norm_is("203.0.113.9/32", IOC_IP, "203.0.113.9");
    norm_is("203.0.113.9:65535", IOC_IP_PORT, "203.0.113.9:65535");
    norm_is("203.0.113.9:080", IOC_IP_PORT, "203.0.113.9:80"); /* general path */
    norm_is("203.0.113.9/08", IOC_CIDR, "203.0.0.0/8");        /* general path */
    norm_is(" \tevil.example \r", IOC_DOMAIN, "evil.example");
    norm_refused(-1, "203.0.113.256");
    norm_refused(-1, "203.0.113");
    norm_refused(-1, "01.2.3.4");
    norm_refused(-1, "example.123");
    norm_refused(-1, "a..example");
    norm_refused(-1, ".");
    norm_refused(IOC_DOMAIN, "203.0.113.9");
    norm_refused(IOC_IP, "203.0.113.9:80");
    norm_refused(IOC_IP_PORT, "203.0.113.9");
    norm_refused(IOC_URL, "203.0.113.9 x");
    char label[80];
    memset(label, 'a', 64);
    memcpy(label + 64, ".example", 9);
    norm_refused(-1, label); /* a 64-character label */
    /* Asked for a CIDR list, an address is accepted (as the general path does). */
    char out[IOC_VALUE_MAX + 1], err[100];
    assert_int_equal(ioc_normalize_value(IOC_CIDR, "203.0.113.9", 11, out, err, 100), IOC_IP);
    assert_int_equal(ioc_normalize_value(IOC_URL, "evil.example", 12, out, err, 100), IOC_URL);
    assert_string_equal(out, "evil.example/");
}

/* Records of a large list, in order, as one string per record. */
struct seq {
    size_t n, bad_order;
    char last[IOC_VALUE_MAX + 1];
    size_t next; /* the index expected next */
};

static int check_seq(void *ctx, const struct ioc_record *r)
{
    struct seq *q = ctx;
    char want[64];
    /* Every 7th record is an address, and the 1000th (+1) a line with a category. */
    if (q->next % 7 == 0)
        snprintf(want, sizeof(want), "10%zu.%zu.%zu.%zu", q->next % 10, (q->next >> 16) & 255,
                 (q->next >> 8) & 255, q->next & 255);
    else
        snprintf(want, sizeof(want), "host-%zu.example", q->next);
    if (strcmp(r->value, want) != 0 || strcmp(r->source, "big") != 0 ||
        strcmp(r->category, q->next % 1000 == 1 && q->next % 7 != 0 ? "phishing" : "c2") != 0)
        q->bad_order++;
    q->next++;
    q->n++;
    return 0;
}

/* A list over the size where the reader streams the file and parses it on a
 * second thread: the records arrive complete, in order, with the file's line
 * numbers in errors, and with a line that straddles the reader's pieces. */
static void feed_large_plain_list_is_read_in_order_with_line_numbers(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    char path[4096];
    snprintf(path, sizeof(path), "%s/big.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    size_t n = 500000, lines = 0, badline = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 300000) {
            fprintf(f, "bad value here too many fields x y\n");
            badline = ++lines;
        }
        if (i % 7 == 0)
            fprintf(f, "10%zu.%zu.%zu.%zu\n", i % 10, (i >> 16) & 255, (i >> 8) & 255, i & 255);
        else if (i % 1000 == 1)
            fprintf(f, "HOST-%zu.Example phishing # with a comment\r\n", i);
        else
            fprintf(f, "host-%zu.example\n", i);
        lines++;
        if (i % 50000 == 0) {
            fprintf(f, "# a comment line\n\n");
            lines += 2;
        }
    }
    assert_int_equal(fclose(f), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size > 4 << 20); /* the size where streaming and the second thread start */
    struct seq q;
    struct ioc_read_opts o = {.source = "big", .category = "c2"};
    struct ioc_read_stats st;
    char want[64];
    snprintf(want, sizeof(want), "line %zu:", badline);
    /* Streamed on one thread, then parsed on a second one. */
    for (int threads = 1; threads <= 2; threads++) {
        setenv("KHIEN_FEED_THREADS", threads == 1 ? "1" : "2", 1);
        memset(&q, 0, sizeof(q));
        assert_int_equal(ioc_read_path(path, IOC_FMT_AUTO, &o, check_seq, &q, &st), KH_OK);
        assert_int_equal(q.n, n);
        assert_int_equal(q.bad_order, 0);
        assert_int_equal(st.records, n);
        assert_int_equal(st.rejected, 1);
        if (strncmp(st.first_error, want, strlen(want)) != 0)
            fail_msg("first error '%s', expected it on line %zu", st.first_error, badline);
    }
    /* The same text in memory gives the same records. */
    uint8_t *text = NULL;
    size_t len = 0;
    assert_int_equal(khx_read_file(path, (size_t)1 << 30, &text, &len), 0);
    memset(&q, 0, sizeof(q));
    assert_int_equal(ioc_read_feed(IOC_FMT_PLAIN, (const char *)text, len, &o, check_seq, &q, &st),
                     KH_OK);
    assert_int_equal(q.n, n);
    assert_int_equal(q.bad_order, 0);
    assert_int_equal(st.rejected, 1);
    /* A callback that stops the read stops it, on any thread. */
    struct got g;
    memset(&g, 0, sizeof(g));
    g.stop_after = 123457;
    assert_int_equal(ioc_read_path(path, IOC_FMT_PLAIN, &o, collect, &g, &st), 99);
    assert_int_equal(g.total, 123457);
    setenv("KHIEN_FEED_THREADS", "1", 1);
    memset(&g, 0, sizeof(g));
    g.stop_after = 123457;
    assert_int_equal(ioc_read_path(path, IOC_FMT_PLAIN, &o, collect, &g, &st), 99);
    assert_int_equal(g.total, 123457);
    unsetenv("KHIEN_FEED_THREADS");
    free(text);
    unlink(path);
    rmdir(dir);
}

static void feed_category_word_maps_feed_vocabularies(void **state)
{
    (void)state;
    static const char *const pairs[][2] = {
        {"botnet_cc", "c2"},
        {"botnet c2 (test)", "c2"},
        {"payload_delivery", "distribution"},
        {"malware_download", "distribution"},
        {"Payload delivery", "distribution"},
        {"Phishing", "phishing"},
        {"apt_sofacy", "apt"},
        {"sofacy (apt)", "apt"},
        {"sinkhole testsink (malware)", "sinkhole"},
        {"mass scanner", "scanner"},
        {"known attacker", "attacker"},
        {"suspicious", "suspicious"},
        {"parking site (suspicious)", "parking"},
        {"malicious-activity", "malware"},
        {"anomalous-activity", "suspicious"},
        {"captcha solver", "malware"}, /* no "apt" inside a word */
        {"", "malware"},
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(pairs); i++) {
        const char *c = ioc_category_word(pairs[i][0], strlen(pairs[i][0]));
        if (strcmp(c, pairs[i][1]) != 0)
            fail_msg("'%s' -> '%s', expected '%s'", pairs[i][0], c, pairs[i][1]);
    }
}

static void feed_plain_reads_text_form_hosts_files_and_counts_bad_lines(void **state)
{
    (void)state;
    struct got g;
    struct ioc_read_stats st;
    read_text(IOC_FMT_PLAIN,
              "# list\n"
              "203.0.113.7 c2 feodo 90\n"
              "evil[.]example\n"
              "0.0.0.0 ads.example tracker.example\n"
              "127.0.0.1 localhost\n"
              "not a valid line\n"
              "old.example c2 - 50 2020-01-01\n"
              "late.example c2 - 50 2030-01-01T00:00:00Z\n"
              "badconf.example c2 - 500\n"
              "csv.example,phishing,openphish\n",
              NULL, &g, &st, KH_OK);
    expect(&g, "ip 203.0.113.7 c2 feodo - 90 0");
    expect(&g, "domain evil.example malware plain - 50 0");
    expect(&g, "domain ads.example malware plain - 50 0");
    expect(&g, "domain tracker.example malware plain - 50 0");
    expect(&g, "domain late.example c2 plain - 50 1893456000");
    expect(&g, "domain csv.example phishing openphish - 50 0");
    assert_int_equal(st.records, 6);
    assert_int_equal(st.rejected, 2);
    assert_int_equal(st.skipped, 2); /* localhost and the expired line */
    assert_non_null(strstr(st.first_error, "line 6:"));

    struct ioc_read_opts o = {0};
    o.now = NOW;
    o.keep_expired = 1;
    o.source = "mylist";
    o.category = "phishing";
    read_text(IOC_FMT_PLAIN, "old.example - - 50 2020-01-01\nx.example\n", &o, &g, &st, KH_OK);
    expect(&g, "domain old.example phishing mylist - 50 1577836800");
    expect(&g, "domain x.example phishing mylist - 50 0");
}

static void feed_csv_reads_abuse_ch_shapes(void **state)
{
    (void)state;
    struct got g;
    struct ioc_read_stats st;
    /* Feodo Tracker ipblocklist.csv: only online C2s. */
    read_text(IOC_FMT_CSV,
              "################\n# abuse.ch Feodo Tracker\n################\n"
              "\"first_seen_utc\",\"dst_ip\",\"dst_port\",\"c2_status\",\"last_online\","
              "\"malware\"\n"
              "\"2021-01-17 07:30:05\",\"67.213.75.205\",\"443\",\"online\",\"2023-05-22\","
              "\"QakBot\"\n"
              "\"2021-01-17 07:44:46\",\"192.0.2.5\",\"8080\",\"offline\",\"2023-05-22\","
              "\"Emotet\"\n"
              "\"2021-01-17 07:44:46\",\"not-an-ip\",\"8080\",\"online\",\"2023-05-22\","
              "\"Emotet\"\n",
              NULL, &g, &st, KH_OK);
    expect(&g, "ip_port 67.213.75.205:443 malware csv QakBot 50 0");
    assert_int_equal(st.records, 1);
    assert_int_equal(st.skipped, 1);
    assert_int_equal(st.rejected, 1);
    assert_non_null(strstr(st.first_error, "line 7:"));

    /* URLhaus CSV: the header is a comment. */
    read_text(IOC_FMT_CSV,
              "################\n"
              "# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n"
              "\"3\",\"2024-01-01 00:00:00\",\"http://198.51.100.7:44321/i\",\"online\","
              "\"2024-01-01\",\"malware_download\",\"32-bit,elf,mips,Mozi\",\"https://x\","
              "\"lrz_urlhaus\"\n"
              "\"4\",\"2024-01-01 00:00:00\",\"hxxps://bad[.]example/a.exe\",\"online\","
              "\"2024-01-01\",\"malware_download\",\"exe\",\"https://x\",\"r\"\n",
              NULL, &g, &st, KH_OK);
    expect(&g, "url 198.51.100.7:44321/i distribution csv - 50 0");
    expect(&g, "url bad.example/a.exe distribution csv - 50 0");

    /* ThreatFox CSV: quoted with ", " separators, typed rows, hashes skipped. */
    read_text(IOC_FMT_CSV,
              "# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\",\"threat_type\","
              "\"fk_malware\",\"malware_alias\",\"malware_printable\",\"last_seen_utc\","
              "\"confidence_level\",\"reference\",\"tags\",\"anonymous\",\"reporter\"\n"
              "\"2024-05-01 10:00:00\", \"1\", \"203.0.113.50:8080\", \"ip:port\", "
              "\"botnet_cc\", \"win.cobalt_strike\", \"None\", \"Cobalt Strike\", \"\", "
              "\"75\", \"\", \"cs\", \"0\", \"abuse_ch\"\n"
              "\"2024-05-01 10:00:00\", \"2\", \"c2.example\", \"domain\", \"botnet_cc\", "
              "\"win.emotet\", \"None\", \"Emotet\", \"\", \"100\", \"\", \"\", \"0\", \"x\"\n"
              "\"2024-05-01 10:00:00\", \"3\", \"d41d8cd98f00b204e9800998ecf8427e\", "
              "\"md5_hash\", \"payload\", \"win.emotet\", \"None\", \"Emotet\", \"\", \"50\", "
              "\"\", \"\", \"0\", \"x\"\n"
              "\"2024-05-01 10:00:00\", \"4\", \"c3.example\", \"domain\", \"botnet_cc\", "
              "\"win.emotet\", \"None\", \"Emotet\", \"\", \"900\", \"\", \"\", \"0\", \"x\"\n",
              NULL, &g, &st, KH_OK);
    expect(&g, "ip_port 203.0.113.50:8080 c2 csv Cobalt Strike 75 0");
    expect(&g, "domain c2.example c2 csv Emotet 100 0");
    assert_int_equal(st.records, 2);
    assert_int_equal(st.skipped, 1);
    assert_int_equal(st.rejected, 1);
    assert_non_null(strstr(st.first_error, "line 5:"));

    /* No header: "value,category,source". */
    read_text(IOC_FMT_CSV, "evil.example,c2,mine\n203.0.113.1,phishing\n", NULL, &g, &st, KH_OK);
    expect(&g, "domain evil.example c2 mine - 50 0");
    expect(&g, "ip 203.0.113.1 phishing csv - 50 0");
}

static void feed_maltrail_reads_static_trails_and_refuses_regex(void **state)
{
    (void)state;
    struct got g;
    struct ioc_read_stats st;
    struct ioc_read_opts o = {0};
    o.now = NOW;
    o.family = "sofacy";
    o.category = "apt";
    read_text(IOC_FMT_MALTRAIL,
              "# Copyright (c) 2014-2026 Maltrail developers\n"
              "# Aliases: apt28, fancy bear\n\n"
              "# Reference: https://example.org/report\n"
              "drivres-update.info\n"
              "http://147.78.103.91\n"
              "185.86.148.227\n"
              "185.86.148.228:8443\n"
              "[2001:db8::beef]:443\n"
              "evil-url.example/bad/path.php?a=\n"
              "/malicious-login.php\n"
              "dga[0-9]+\\.wildcard-test\\.com\n"
              "/default/get/[home|dashboard]\n"
              "129.82.138.12 # pinger1a.netsec.colostate.edu\n",
              &o, &g, &st, KH_OK);
    expect(&g, "domain drivres-update.info apt maltrail sofacy 50 0");
    expect(&g, "ip 147.78.103.91 apt maltrail sofacy 50 0");
    expect(&g, "ip 185.86.148.227 apt maltrail sofacy 50 0");
    expect(&g, "ip_port 185.86.148.228:8443 apt maltrail sofacy 50 0");
    expect(&g, "ip_port [2001:db8::beef]:443 apt maltrail sofacy 50 0");
    expect(&g, "url evil-url.example/bad/path.php?a= apt maltrail sofacy 50 0");
    expect(&g, "url /malicious-login.php apt maltrail sofacy 50 0");
    expect(&g, "ip 129.82.138.12 apt maltrail sofacy 50 0");
    assert_int_equal(st.records, 8);
    assert_int_equal(st.rejected, 2);
    assert_non_null(strstr(st.first_error, "line 12:"));
    assert_non_null(strstr(st.first_error, "regular expression"));

    /* trails.csv: info words become categories, "(malware)" names a family. */
    read_text(IOC_FMT_MALTRAIL,
              "evil-test-domain.com,malware (test),(static)\n"
              "198.51.100.66,botnet c2 (test),(static)\n"
              "198.51.100.53,known attacker,(static)\n"
              "198.51.100.90,sinkhole testsink (malware),(static)\n"
              "softupdates.info,sofacy (malware),(static)\n"
              "apt-host.example,apt_sofacy (malware),(static)\n"
              "7.7.7.7,phishing (test),(static)\n"
              "evilname,malware (test),(static)\n",
              NULL, &g, &st, KH_OK);
    expect(&g, "domain evil-test-domain.com malware maltrail - 50 0");
    expect(&g, "ip 198.51.100.66 c2 maltrail - 50 0");
    expect(&g, "ip 198.51.100.53 attacker maltrail - 50 0");
    expect(&g, "ip 198.51.100.90 sinkhole maltrail sinkhole testsink 50 0");
    expect(&g, "domain softupdates.info malware maltrail sofacy 50 0");
    expect(&g, "domain apt-host.example apt maltrail apt_sofacy 50 0");
    expect(&g, "ip 7.7.7.7 phishing maltrail - 50 0");
    assert_int_equal(st.rejected, 1); /* a one-label name */
    assert_non_null(strstr(st.first_error, "line 8:"));
}

static void feed_ipsum_firehol_and_iprep_read_address_lists(void **state)
{
    (void)state;
    struct got g;
    struct ioc_read_stats st;
    const char *ipsum = "# IPsum Threat Intelligence Feed\n#\n# IP\tnumber of (black)lists\n"
                        "203.0.113.1\t10\n203.0.113.2\t3\n203.0.113.3\t1\nbad\tline\n";
    read_text(IOC_FMT_IPSUM, ipsum, NULL, &g, &st, KH_OK);
    expect(&g, "ip 203.0.113.1 attacker ipsum - 100 0");
    expect(&g, "ip 203.0.113.3 attacker ipsum - 10 0");
    assert_int_equal(st.records, 3);
    assert_int_equal(st.rejected, 1);
    assert_non_null(strstr(st.first_error, "line 7:"));
    struct ioc_read_opts o = {0};
    o.now = NOW;
    o.ipsum_min_lists = 3;
    read_text(IOC_FMT_IPSUM, ipsum, &o, &g, &st, KH_OK);
    assert_int_equal(st.records, 2);
    assert_int_equal(st.skipped, 1);

    read_text(IOC_FMT_FIREHOL,
              "#\n# firehol_level1\n#\n0.0.0.0/8\n10.0.0.0/8\n203.0.113.9\n"
              "198.51.100.77/24\nnot-an-ip\n",
              NULL, &g, &st, KH_OK);
    expect(&g, "cidr 0.0.0.0/8 malware firehol - 50 0");
    expect(&g, "cidr 10.0.0.0/8 malware firehol - 50 0");
    expect(&g, "ip 203.0.113.9 malware firehol - 50 0");
    expect(&g, "cidr 198.51.100.0/24 malware firehol - 50 0");
    assert_int_equal(st.rejected, 1);

    const char *cats = "1,test,Testing\n2,CnC,Command and control\n";
    memset(&o, 0, sizeof(o));
    o.now = NOW;
    o.iprep_categories = cats;
    o.iprep_categories_len = strlen(cats);
    read_text(IOC_FMT_IPREP,
              "#8.8.8.8,10,100\n192.168.0.13/24,1,0\n4.4.4.4,2,127\n5.5.5.5,9,10\n"
              "6.6.6.6,2\n",
              &o, &g, &st, KH_OK);
    expect(&g, "cidr 192.168.0.0/24 test iprep - 0 0");
    expect(&g, "ip 4.4.4.4 cnc iprep - 100 0");
    assert_int_equal(st.rejected, 2);
    assert_non_null(strstr(st.first_error, "line 4:"));
    read_text(IOC_FMT_IPREP, "4.4.4.4,7,30\n", NULL, &g, &st, KH_OK);
    expect(&g, "ip 4.4.4.4 iprep-7 iprep - 30 0");
}

static void feed_zeek_intel_reads_typed_fields(void **state)
{
    (void)state;
    struct got g;
    struct ioc_read_stats st;
    read_text(IOC_FMT_ZEEK_INTEL,
              "#separator \\x09\n"
              "#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc\n"
              "203.0.113.5\tIntel::ADDR\tfeodo\tbotnet C2\n"
              "198.51.100.0/24\tIntel::SUBNET\tspamhaus\t-\n"
              "evil.example\tIntel::DOMAIN\tmine\tphishing kit\n"
              "evil.example/gate.php\tIntel::URL\t-\t-\n"
              "d41d8cd98f00b204e9800998ecf8427e\tIntel::FILE_HASH\tx\t-\n"
              "evil.example\tIntel::WHAT\tx\t-\n"
              "only-one-field\n",
              NULL, &g, &st, KH_OK);
    expect(&g, "ip 203.0.113.5 c2 feodo - 50 0");
    expect(&g, "cidr 198.51.100.0/24 malware spamhaus - 50 0");
    expect(&g, "domain evil.example phishing mine - 50 0");
    expect(&g, "url evil.example/gate.php malware zeek - 50 0");
    assert_int_equal(st.records, 4);
    assert_int_equal(st.skipped, 2); /* a file hash, a type we do not match */
    assert_int_equal(st.rejected, 1);
    assert_non_null(strstr(st.first_error, "line 9:"));
    read_text(IOC_FMT_ZEEK_INTEL, "203.0.113.5\tIntel::ADDR\n", NULL, &g, &st, KH_EFORMAT);
}

static const char stix_bundle[] =
    "{\"type\":\"bundle\",\"id\":\"bundle--1\",\"objects\":["
    "{\"type\":\"indicator\",\"spec_version\":\"2.1\",\"id\":\"indicator--a\","
    " \"pattern_type\":\"stix\",\"pattern\":\"[ipv4-addr:value = '198.51.100.1']\","
    " \"indicator_types\":[\"malicious-activity\"],\"confidence\":80,"
    " \"valid_from\":\"2024-01-01T00:00:00Z\"},"
    "{\"type\":\"indicator\",\"id\":\"indicator--b\",\"pattern_type\":\"stix\","
    " \"pattern\":\"[domain-name:value = 'c2.example' OR url:value = "
    "'http://c2.example/gate.php'] OR [ipv6-addr:value = '2001:db8::/32']\","
    " \"valid_until\":\"2030-01-01T00:00:00.000Z\"},"
    "{\"type\":\"indicator\",\"id\":\"indicator--c\",\"pattern_type\":\"stix\","
    " \"pattern\":\"[network-traffic:dst_ref.type = 'ipv4-addr' AND "
    "network-traffic:dst_ref.value = '203.0.113.4' AND network-traffic:dst_port = 443]\"},"
    "{\"type\":\"indicator\",\"id\":\"indicator--d\",\"pattern_type\":\"stix\","
    " \"pattern\":\"[domain-name:value = 'a.example'] FOLLOWEDBY [domain-name:value = "
    "'b.example']\"},"
    "{\"type\":\"indicator\",\"id\":\"indicator--e\",\"pattern_type\":\"stix\","
    " \"pattern\":\"[domain-name:value MATCHES '^x.*']\"},"
    "{\"type\":\"indicator\",\"id\":\"indicator--f\",\"pattern_type\":\"stix\",\"revoked\":true,"
    " \"pattern\":\"[domain-name:value = 'revoked.example']\"},"
    "{\"type\":\"indicator\",\"id\":\"indicator--g\",\"pattern_type\":\"stix\","
    " \"pattern\":\"[domain-name:value = "
    "'old.example']\",\"valid_until\":\"2020-01-01T00:00:00Z\"},"
    "{\"type\":\"indicator\",\"id\":\"indicator--h\",\"pattern_type\":\"snort\","
    " \"pattern\":\"alert tcp any any -> any any\"},"
    "{\"type\":\"indicator\",\"id\":\"indicator--i\",\"pattern_type\":\"stix\","
    " \"pattern\":\"[file:hashes.'SHA-256' = "
    "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa']\"},"
    "{\"type\":\"indicator\",\"id\":\"indicator--j\",\"pattern_type\":\"stix\","
    " \"pattern\":\"[domain-name:value = 'within.example'] WITHIN 300 SECONDS\"},"
    "{\"type\":\"indicator\",\"id\":\"indicator--k\",\"pattern_type\":\"stix\","
    " \"pattern\":\"[domain-name:value = 'half.example' OR file:name = 'x.exe']\"},"
    "{\"type\":\"intrusion-set\",\"id\":\"intrusion-set--s\",\"name\":\"Sofacy\"},"
    "{\"type\":\"relationship\",\"id\":\"relationship--1\",\"relationship_type\":\"indicates\","
    " \"source_ref\":\"indicator--b\",\"target_ref\":\"intrusion-set--s\"}"
    "]}";

static void feed_stix_reads_network_patterns_and_refuses_the_rest(void **state)
{
    (void)state;
    struct got g;
    struct ioc_read_stats st;
    read_text(IOC_FMT_STIX, stix_bundle, NULL, &g, &st, KH_OK);
    expect(&g, "ip 198.51.100.1 malware stix - 80 0");
    expect(&g, "domain c2.example apt stix Sofacy 50 1893456000");
    expect(&g, "url c2.example/gate.php apt stix Sofacy 50 1893456000");
    expect(&g, "cidr 2001:db8::/32 apt stix Sofacy 50 1893456000");
    expect(&g, "ip_port 203.0.113.4:443 malware stix - 50 0");
    expect(&g, "domain half.example malware stix - 50 0");
    assert_int_equal(st.records, 6);
    assert_int_equal(st.skipped, 2);  /* revoked, expired */
    assert_int_equal(st.rejected, 5); /* FOLLOWEDBY, MATCHES, snort, file hash, WITHIN */
    assert_non_null(strstr(st.first_error, "object 3:"));
    assert_non_null(strstr(st.first_error, "FOLLOWEDBY"));

    read_text(IOC_FMT_STIX, "not json", NULL, &g, &st, KH_EFORMAT);
    read_text(IOC_FMT_STIX,
              "{\"type\":\"indicator\",\"id\":\"indicator--z\",\"pattern_type\":\"stix\","
              "\"pattern\":\"[ipv4-addr:value = '203.0.113.99'\"}",
              NULL, &g, &st, KH_OK);
    assert_int_equal(st.rejected, 1);
}

static const char misp_event[] =
    "{\"Event\":{\"info\":\"OSINT Sofacy C2 infrastructure\",\"threat_level_id\":\"1\","
    " \"Tag\":[{\"name\":\"tlp:white\"},"
    "  {\"name\":\"misp-galaxy:threat-actor=\\\"Sofacy\\\"\"}],"
    " \"Attribute\":["
    "  {\"type\":\"domain\",\"category\":\"Network activity\",\"to_ids\":true,"
    "   \"value\":\"drivres-update[.]info\"},"
    "  {\"type\":\"ip-dst\",\"to_ids\":false,\"value\":\"203.0.113.8\"},"
    "  {\"type\":\"ip-dst|port\",\"to_ids\":true,\"value\":\"203.0.113.9|8443\"},"
    "  {\"type\":\"domain|ip\",\"to_ids\":true,\"value\":\"both.example|198.51.100.4\"},"
    "  {\"type\":\"url\",\"to_ids\":true,\"value\":\"https://both.example/x.php\","
    "   \"Tag\":[{\"name\":\"misp-galaxy:malpedia=\\\"X-Agent\\\"\"}]},"
    "  {\"type\":\"md5\",\"to_ids\":true,\"value\":\"d41d8cd98f00b204e9800998ecf8427e\"},"
    "  {\"type\":\"ja3-fingerprint-md5\",\"to_ids\":true,"
    "   \"value\":\"51c64c77e60f3980eea90869b68c58a8\"},"
    "  {\"type\":\"hostname\",\"to_ids\":true,\"value\":\"bad host\"}],"
    " \"Object\":[{\"name\":\"domain-ip\",\"Attribute\":["
    "  {\"type\":\"ip-src\",\"to_ids\":\"1\",\"value\":\"198.51.100.0/24\"}]}]}}";

static void feed_misp_event_reads_to_ids_network_attributes(void **state)
{
    (void)state;
    struct got g;
    struct ioc_read_stats st;
    read_text(IOC_FMT_MISP_EVENT, misp_event, NULL, &g, &st, KH_OK);
    expect(&g, "domain drivres-update.info apt misp Sofacy 90 0");
    expect(&g, "ip_port 203.0.113.9:8443 apt misp Sofacy 90 0");
    expect(&g, "domain both.example apt misp Sofacy 90 0");
    expect(&g, "ip 198.51.100.4 apt misp Sofacy 90 0");
    expect(&g, "url both.example/x.php apt misp X-Agent 90 0");
    expect(&g, "ja3 51c64c77e60f3980eea90869b68c58a8 apt misp Sofacy 90 0");
    expect(&g, "cidr 198.51.100.0/24 apt misp Sofacy 90 0");
    assert_int_equal(st.records, 7);
    assert_int_equal(st.skipped, 2); /* to_ids false, md5 */
    assert_int_equal(st.rejected, 1);
    assert_non_null(strstr(st.first_error, "attribute 8:"));
}

static void feed_warninglist_reads_allowlist_entries(void **state)
{
    (void)state;
    struct got g;
    struct ioc_read_stats st;
    read_text(IOC_FMT_WARNINGLIST,
              "{\"name\":\"List of RFC 1918 CIDR blocks\",\"type\":\"cidr\","
              "\"list\":[\"10.0.0.0/8\",\"192.168.0.0/16\",\"x\"]}",
              NULL, &g, &st, KH_OK);
    expect(&g, "cidr 10.0.0.0/8 allowlist warninglist List of RFC 1918 CIDR blocks 50 0");
    assert_int_equal(st.rejected, 1);
    read_text(IOC_FMT_WARNINGLIST,
              "{\"name\":\"Top\",\"type\":\"hostname\",\"list\":[\".google.com\",\"a.example\"]}",
              NULL, &g, &st, KH_OK);
    expect(&g, "domain google.com allowlist warninglist Top 50 0");
    read_text(IOC_FMT_WARNINGLIST,
              "{\"name\":\"S\",\"type\":\"string\",\"list\":[\"8.8.8.8\",\"user@example.com\","
              "\"dns.google\"]}",
              NULL, &g, &st, KH_OK);
    expect(&g, "ip 8.8.8.8 allowlist warninglist S 50 0");
    expect(&g, "domain dns.google allowlist warninglist S 50 0");
    assert_int_equal(st.skipped, 1);
    read_text(IOC_FMT_WARNINGLIST,
              "{\"name\":\"R\",\"type\":\"regex\",\"list\":[\"^a.*\",\"^b.*\"]}", NULL, &g, &st,
              KH_OK);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.skipped, 2);
}

static void write_gz(const char *path, const char *text)
{
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, text, (unsigned)strlen(text)), (int)strlen(text));
    assert_int_equal(gzclose(f), Z_OK);
}

static void feed_read_path_handles_gzip_guessing_and_misp_feed_folders(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    char path[700];
    struct got g;
    struct ioc_read_stats st;
    struct ioc_read_opts o = {0};
    o.now = NOW;

    snprintf(path, sizeof(path), "%s/ipsum.txt.gz", dir);
    write_gz(path, "# IPsum\n203.0.113.1\t5\n203.0.113.2\t1\n");
    memset(&g, 0, sizeof(g));
    assert_int_equal(ioc_read_path(path, IOC_FMT_AUTO, &o, collect, &g, &st), KH_OK);
    expect(&g, "ip 203.0.113.1 attacker ipsum - 50 0");
    assert_int_equal(st.records, 2);

    /* A gzip file cut short is an error naming the file. */
    FILE *f = fopen(path, "r+");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 20), 0);
    fclose(f);
    assert_int_not_equal(ioc_read_path(path, IOC_FMT_IPSUM, &o, collect, &g, &st), KH_OK);
    assert_non_null(strstr(st.first_error, "ipsum.txt.gz"));

    /* A maltrail static file names its family and category by its path. */
    char sub[512];
    snprintf(sub, sizeof(sub), "%s/malware", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    free(tu_write(sub, "apt_sofacy.txt", "# Maltrail developers\ndrivres-update.info\n", 41));
    snprintf(path, sizeof(path), "%s/apt_sofacy.txt", sub);
    memset(&g, 0, sizeof(g));
    assert_int_equal(ioc_read_path(path, IOC_FMT_MALTRAIL, &o, collect, &g, &st), KH_OK);
    expect(&g, "domain drivres-update.info apt maltrail apt_sofacy 50 0");

    /* A MISP feed folder: manifest.json names the events to read. */
    snprintf(sub, sizeof(sub), "%s/misp", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    const char *manifest = "{\"5f0c1a2b-0000-4000-8000-000000000001\":{\"info\":\"a\"},"
                           "\"5f0c1a2b-0000-4000-8000-000000000002\":{\"info\":\"b\"},"
                           "\"5f0c1a2b-0000-4000-8000-000000000003\":{\"info\":\"missing\"}}";
    free(tu_write(sub, "manifest.json", manifest, strlen(manifest)));
    free(
        tu_write(sub, "5f0c1a2b-0000-4000-8000-000000000001.json", misp_event, strlen(misp_event)));
    const char *ev2 = "{\"Event\":{\"info\":\"phishing\",\"Attribute\":[{\"type\":\"url\","
                      "\"to_ids\":true,\"value\":\"http://phish.example/login\"}]}}";
    free(tu_write(sub, "5f0c1a2b-0000-4000-8000-000000000002.json", ev2, strlen(ev2)));
    memset(&g, 0, sizeof(g));
    assert_int_equal(ioc_read_path(sub, IOC_FMT_AUTO, &o, collect, &g, &st), KH_OK);
    expect(&g, "url phish.example/login phishing misp - 50 0");
    assert_int_equal(st.records, 8);
    assert_int_equal(st.rejected, 2); /* a bad hostname and the missing event */

    snprintf(path, sizeof(path), "%s/none.txt", dir);
    assert_int_equal(ioc_read_path(path, IOC_FMT_PLAIN, &o, collect, &g, &st), KH_EIO);
    assert_non_null(strstr(st.first_error, "none.txt"));
    tu_rmtree(dir);
}

static void feed_format_guess_and_names_round_trip(void **state)
{
    (void)state;
    for (int f = IOC_FMT_AUTO; f < IOC_FMT_COUNT; f++)
        assert_int_equal(ioc_format_from_name(ioc_format_name((enum ioc_format)f)), f);
    assert_int_equal(ioc_format_from_name("nonsense"), IOC_FMT_COUNT);
    static const struct {
        const char *name, *text;
        enum ioc_format fmt;
    } g[] = {
        {"x.json", stix_bundle, IOC_FMT_STIX},
        {"x.json", misp_event, IOC_FMT_MISP_EVENT},
        {"list.json", "{\"name\":\"n\",\"type\":\"cidr\",\"list\":[]}", IOC_FMT_WARNINGLIST},
        {"intel.dat", "#separator \\x09\n#fields\tindicator\tindicator_type\n", IOC_FMT_ZEEK_INTEL},
        {"firehol_level1.netset", "# x\n1.2.3.0/24\n", IOC_FMT_FIREHOL},
        {"ipsum.txt", "1.2.3.4\t3\n", IOC_FMT_IPSUM},
        {"trails.csv", "a.example,malware,(static)\n", IOC_FMT_MALTRAIL},
        {"iprep.list", "1.2.3.4,1,10\n", IOC_FMT_IPREP},
        {"feodo.csv", "dst_ip,dst_port\n", IOC_FMT_CSV},
        {"list.txt", "evil.example\n", IOC_FMT_PLAIN},
        {NULL, "evil.example\n", IOC_FMT_PLAIN},
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(g); i++)
        if (ioc_format_guess(g[i].name, g[i].text, strlen(g[i].text)) != g[i].fmt)
            fail_msg("guess %zu (%s) gave %s", i, g[i].name ? g[i].name : "-",
                     ioc_format_name(ioc_format_guess(g[i].name, g[i].text, strlen(g[i].text))));
}

static void feed_callback_can_stop_a_reader(void **state)
{
    (void)state;
    struct got g;
    memset(&g, 0, sizeof(g));
    g.stop_after = 2;
    const char *t = "a.example\nb.example\nc.example\n";
    assert_int_equal(ioc_read_feed(IOC_FMT_PLAIN, t, strlen(t), NULL, collect, &g, NULL), 99);
    assert_int_equal(g.total, 2);
    memset(&g, 0, sizeof(g));
    g.stop_after = 1;
    assert_int_equal(
        ioc_read_feed(IOC_FMT_STIX, stix_bundle, strlen(stix_bundle), NULL, collect, &g, NULL), 99);
}

/* ---- real data in ../shared/data/net ---- */

static const char *net_dir(void)
{
    static char path[1024];
    const char *d = tu_shared_data();
    if (d == NULL)
        return NULL;
    snprintf(path, sizeof(path), "%.900s/net", d);
    struct stat sb;
    return stat(path, &sb) == 0 ? path : NULL;
}

#define NEED_NET(dir)                                                                              \
    do {                                                                                           \
        if ((dir) == NULL) {                                                                       \
            print_message("SKIP: ../shared/data/net is absent\n");                                 \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static struct {
    struct got g;
    size_t files, rejected, skipped, records;
    char first_error[300];
    ioc_record_fn fn;
} walk;

static int walk_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    struct ioc_read_stats st;
    if (type != FTW_F || !strstr(path, ".txt"))
        return 0;
    int r = ioc_read_path(path, IOC_FMT_MALTRAIL, NULL, walk.fn, &walk.g, &st);
    if (r != KH_OK)
        fail_msg("%s: %d %s", path, r, st.first_error);
    walk.files++;
    walk.rejected += st.rejected;
    walk.records += st.records;
    if (st.rejected && walk.first_error[0] == '\0')
        snprintf(walk.first_error, sizeof(walk.first_error), "%.60s: %.200s", khx_path_base(path),
                 st.first_error);
    return 0;
}

static void feed_real_maltrail_static_trails_read_whole(void **state)
{
    (void)state;
    const char *net = net_dir();
    NEED_NET(net);
    char path[4096];
    snprintf(path, sizeof(path), "%s/maltrail/trails/static", net);
    memset(&walk, 0, sizeof(walk));
    walk.fn = count_only;
    uint64_t t0 = khx_now_ms();
    assert_int_equal(nftw(path, walk_one, 16, FTW_PHYS), 0);
    uint64_t ms = khx_now_ms() - t0;
    print_message("maltrail static: %zu files, %zu records (ip %zu, cidr %zu, ip:port %zu, "
                  "domain %zu, url %zu), %zu rejected (first: %s), %llu ms\n",
                  walk.files, walk.records, walk.g.kinds[IOC_IP], walk.g.kinds[IOC_CIDR],
                  walk.g.kinds[IOC_IP_PORT], walk.g.kinds[IOC_DOMAIN], walk.g.kinds[IOC_URL],
                  walk.rejected, walk.first_error, (unsigned long long)ms);
    assert_true(walk.files > 3000);
    assert_true(walk.g.kinds[IOC_DOMAIN] > 1300000);
    assert_true(walk.g.kinds[IOC_IP_PORT] > 250000);
    /* "http://host" trails (about 60 k) are the host, as maltrail reads them. */
    assert_true(walk.g.kinds[IOC_URL] > 100000);
    assert_true(walk.g.kinds[IOC_CIDR] > 1000);
    /* Regex trails and a few malformed lines only. */
    assert_true(walk.rejected < walk.records / 100);
}

static void feed_real_ipsum_reads_every_address(void **state)
{
    (void)state;
    const char *net = net_dir();
    NEED_NET(net);
    char path[4096];
    struct ioc_read_stats st;
    struct ioc_read_opts o = {0};
    snprintf(path, sizeof(path), "%s/ipsum/ipsum.txt", net);
    uint64_t t0 = khx_now_ms();
    assert_int_equal(ioc_read_path(path, IOC_FMT_IPSUM, NULL, noop, NULL, &st), KH_OK);
    print_message("ipsum: %zu records, %zu rejected, %llu ms\n", st.records, st.rejected,
                  (unsigned long long)(khx_now_ms() - t0));
    assert_int_equal(st.records, 120430);
    assert_int_equal(st.rejected, 0);
    o.ipsum_min_lists = 3;
    assert_int_equal(ioc_read_path(path, IOC_FMT_AUTO, &o, noop, NULL, &st), KH_OK);
    assert_true(st.records > 1000 && st.records < 120430);
    assert_int_equal(st.records + st.skipped, 120430);
}

static void feed_real_reading_maltrail_and_ipsum_is_timed(void **state)
{
    (void)state;
    const char *net = net_dir();
    NEED_NET(net);
    char path[4096];
    struct ioc_read_stats st;
    memset(&walk, 0, sizeof(walk));
    walk.fn = noop;
    uint64_t t0 = khx_now_ms();
    snprintf(path, sizeof(path), "%s/maltrail/trails/static", net);
    assert_int_equal(nftw(path, walk_one, 16, FTW_PHYS), 0);
    snprintf(path, sizeof(path), "%s/ipsum/ipsum.txt", net);
    assert_int_equal(ioc_read_path(path, IOC_FMT_IPSUM, NULL, noop, NULL, &st), KH_OK);
    print_message("maltrail static + ipsum with a no-op callback: %zu records in %llu ms\n",
                  walk.records + st.records, (unsigned long long)(khx_now_ms() - t0));
    assert_true(walk.records + st.records > 1800000);
}

static void feed_real_warninglists_all_read(void **state)
{
    (void)state;
    const char *net = net_dir();
    NEED_NET(net);
    char path[4096];
    snprintf(path, sizeof(path), "%s/misp-warninglists/lists", net);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *e;
    size_t lists = 0, records = 0, skipped = 0, rejected = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char file[4600];
        struct ioc_read_stats st;
        snprintf(file, sizeof(file), "%.1500s/%.255s/list.json", path, e->d_name);
        int r = ioc_read_path(file, IOC_FMT_AUTO, NULL, noop, NULL, &st);
        if (r != KH_OK)
            fail_msg("%s: %d %s", file, r, st.first_error);
        lists++;
        records += st.records;
        skipped += st.skipped;
        rejected += st.rejected;
        if (st.rejected > st.records / 10 + 5)
            print_message("  %s: %zu records, %zu rejected (%s)\n", e->d_name, st.records,
                          st.rejected, st.first_error);
    }
    closedir(d);
    print_message("warninglists: %zu lists, %zu records, %zu skipped, %zu rejected\n", lists,
                  records, skipped, rejected);
    assert_true(lists >= 130);
    assert_true(records > 100000);
    assert_true(rejected < records / 50);
}

static void feed_real_maltrail_corpus_trails_csv(void **state)
{
    (void)state;
    const char *net = net_dir();
    NEED_NET(net);
    char path[4096];
    struct got g;
    struct ioc_read_stats st;
    memset(&g, 0, sizeof(g));
    snprintf(path, sizeof(path), "%s/maltrail/sensor/tests/corpus/trails.csv", net);
    assert_int_equal(ioc_read_path(path, IOC_FMT_AUTO, NULL, collect, &g, &st), KH_OK);
    print_message("corpus trails.csv: %zu records, %zu rejected (%s)\n", st.records, st.rejected,
                  st.first_error);
    expect(&g, "ip_port 6.6.6.6:8443 malware maltrail - 50 0");
    expect(&g, "ip_port [dead::beef]:443 malware maltrail - 50 0");
    expect(&g, "url /malicious-login.php malware maltrail - 50 0");
    expect(&g, "ip 198.51.100.66 c2 maltrail - 50 0");
    assert_true(st.records >= 15);
    assert_true(st.rejected <= 3); /* the regex trail and one-label names */
}

static void feed_real_suricata_iprep_lists(void **state)
{
    (void)state;
    const char *net = net_dir();
    NEED_NET(net);
    char path[4096];
    snprintf(path, sizeof(path), "%s/suricata-verify/tests", net);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *e;
    size_t dirs = 0, records = 0;
    while ((e = readdir(d)) != NULL) {
        if (strstr(e->d_name, "iprep") == NULL)
            continue;
        char dir[2048], cat[2400], list[2400];
        snprintf(dir, sizeof(dir), "%.1500s/%.255s", path, e->d_name);
        DIR *sd = opendir(dir);
        if (sd == NULL)
            continue;
        cat[0] = list[0] = '\0';
        struct dirent *f;
        while ((f = readdir(sd)) != NULL) {
            if (strstr(f->d_name, "categories"))
                snprintf(cat, sizeof(cat), "%s/%s", dir, f->d_name);
            else if (strstr(f->d_name, ".list"))
                snprintf(list, sizeof(list), "%s/%s", dir, f->d_name);
        }
        closedir(sd);
        if (list[0] == '\0')
            continue;
        uint8_t *ct = NULL;
        size_t ctl = 0;
        struct ioc_read_opts o = {0};
        struct ioc_read_stats st;
        if (cat[0] != '\0') {
            assert_int_equal(khx_read_file(cat, 1 << 20, &ct, &ctl), 0);
            o.iprep_categories = (const char *)ct;
            o.iprep_categories_len = ctl;
        }
        assert_int_equal(ioc_read_path(list, IOC_FMT_IPREP, &o, noop, NULL, &st), KH_OK);
        print_message("  %s: %zu records, %zu rejected %s\n", e->d_name, st.records, st.rejected,
                      st.first_error);
        assert_true(st.records >= 1);
        assert_int_equal(st.rejected, 0);
        records += st.records;
        dirs++;
        free(ct);
    }
    closedir(d);
    assert_true(dirs >= 10);
    print_message("suricata-verify iprep: %zu lists, %zu records\n", dirs, records);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(feed_normalize_gives_canonical_forms_and_undoes_defanging),
        cmocka_unit_test(feed_fast_path_agrees_with_the_general_normaliser),
        cmocka_unit_test(feed_large_plain_list_is_read_in_order_with_line_numbers),
        cmocka_unit_test(feed_category_word_maps_feed_vocabularies),
        cmocka_unit_test(feed_plain_reads_text_form_hosts_files_and_counts_bad_lines),
        cmocka_unit_test(feed_csv_reads_abuse_ch_shapes),
        cmocka_unit_test(feed_maltrail_reads_static_trails_and_refuses_regex),
        cmocka_unit_test(feed_ipsum_firehol_and_iprep_read_address_lists),
        cmocka_unit_test(feed_zeek_intel_reads_typed_fields),
        cmocka_unit_test(feed_stix_reads_network_patterns_and_refuses_the_rest),
        cmocka_unit_test(feed_misp_event_reads_to_ids_network_attributes),
        cmocka_unit_test(feed_warninglist_reads_allowlist_entries),
        cmocka_unit_test(feed_read_path_handles_gzip_guessing_and_misp_feed_folders),
        cmocka_unit_test(feed_format_guess_and_names_round_trip),
        cmocka_unit_test(feed_callback_can_stop_a_reader),
        cmocka_unit_test(feed_real_maltrail_static_trails_read_whole),
        cmocka_unit_test(feed_real_ipsum_reads_every_address),
        cmocka_unit_test(feed_real_reading_maltrail_and_ipsum_is_timed),
        cmocka_unit_test(feed_real_warninglists_all_read),
        cmocka_unit_test(feed_real_maltrail_corpus_trails_csv),
        cmocka_unit_test(feed_real_suricata_iprep_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
