/*
 * The compiled indicator store (lib/ioc/store_build.c, store.c): every kind
 * matches what it lists and not its neighbours, parent domains, the longest
 * prefix, address:port before the address, expiry, sources merged per
 * value, allowlists and the private/bogon ranges, a fresh hash key per
 * build, corrupt and truncated files refused with a message, the slot
 * swapped while another thread reads (the old store unmapped once
 * released), and a million generated indicators that all hit while random
 * others miss.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <khien/khien.h>

#include "khx.h"
#include "store.h"
#include "store_int.h"

#define NOW 1700000000

static void add(struct ioc_builder *b, int kind, const char *value, const char *source)
{
    struct ioc_record r = {kind, value, "c2", source, NULL, 50, 0};
    int rc = ioc_builder_add(b, &r);
    if (rc != KH_OK)
        fail_msg("add %s: %d", value, rc);
}

static void allow(struct ioc_builder *b, int kind, const char *value)
{
    struct ioc_record r = {kind, value, "allow", "warninglist", NULL, 50, 0};
    int rc = ioc_builder_allow(b, &r);
    if (rc != KH_OK)
        fail_msg("allow %s: %d", value, rc);
}

/* Writes b to dir/name, frees it and opens the result. */
static struct ioc_store *finish(struct ioc_builder *b, const char *dir, const char *name,
                                struct ioc_build_stats *st)
{
    char path[4096], err[256] = "";
    struct ioc_store *s = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (ioc_builder_write(b, path, st, err, sizeof(err)) != KH_OK)
        fail_msg("write: %s", err);
    ioc_builder_free(b);
    if (ioc_store_open(path, &s, err, sizeof(err)) != KH_OK)
        fail_msg("open: %s", err);
    return s;
}

static struct ioc_builder *builder(int allow_private)
{
    struct ioc_builder *b = NULL;
    struct ioc_build_opts o = {allow_private, 0};
    assert_int_equal(ioc_builder_new(&o, &b), KH_OK);
    return b;
}

/* Looks up "addr" or "addr port" text; returns the result and fills h. */
static int addr(const struct ioc_store *s, const char *text, uint16_t port, struct ioc_hit *h)
{
    uint8_t a[16];
    if (inet_pton(AF_INET, text, a) == 1)
        return ioc_store_match_addr(s, AF_INET, a, port, NOW, h);
    if (inet_pton(AF_INET6, text, a) == 1)
        return ioc_store_match_addr(s, AF_INET6, a, port, NOW, h);
    fail_msg("bad address %s", text);
    return -1;
}

static int dom(const struct ioc_store *s, const char *name, struct ioc_hit *h)
{
    return ioc_store_match_domain(s, name, strlen(name), NOW, h);
}

static void ioc_store_every_kind_matches_and_not_its_neighbours(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    struct ioc_builder *b = builder(0);
    struct ioc_hit h;
    struct ioc_build_stats st;
    add(b, IOC_IP, "203.0.113.7", "feodo");
    add(b, IOC_IP, "2001:db8::7", "feodo");
    add(b, IOC_CIDR, "198.51.100.0/24", "firehol");
    add(b, IOC_CIDR, "2001:db8:1::/48", "firehol");
    add(b, IOC_IP_PORT, "192.0.2.10:8080", "threatfox");
    add(b, IOC_IP_PORT, "[2001:db8::10]:443", "threatfox");
    add(b, IOC_DOMAIN, "evil.example", "maltrail");
    add(b, IOC_URL, "bad.example/gate.php", "urlhaus");
    add(b, IOC_JA3, "51c64c77e60f3980eea90869b68c58a8", "sslbl");
    add(b, IOC_JA4, "t13d1516h2_8daaf6152771_e5627efa2ab1", "ja4db");
    struct ioc_store *s = finish(b, dir, "s.store", &st);
    assert_int_equal(st.indicators, 10);
    assert_int_equal(st.counts[IOC_IP], 2);
    assert_int_equal(st.counts[IOC_CIDR], 2);
    assert_int_equal(st.counts[IOC_IP_PORT], 2);

    assert_int_equal(addr(s, "203.0.113.7", 0, &h), IOC_MATCH);
    assert_int_equal(h.kind, IOC_IP);
    assert_string_equal(h.value, "203.0.113.7");
    assert_int_equal(h.nsources, 1);
    assert_string_equal(h.sources[0].source, "feodo");
    assert_string_equal(h.sources[0].category, "c2");
    assert_string_equal(h.sources[0].family, "");
    assert_int_equal(addr(s, "203.0.113.8", 0, NULL), IOC_MISS);
    assert_int_equal(addr(s, "2001:db8::7", 0, &h), IOC_MATCH);
    assert_string_equal(h.value, "2001:db8::7");
    assert_int_equal(addr(s, "2001:db8::8", 0, NULL), IOC_MISS);
    assert_int_equal(addr(s, "198.51.100.200", 0, &h), IOC_MATCH);
    assert_int_equal(h.kind, IOC_CIDR);
    assert_string_equal(h.value, "198.51.100.0/24");
    assert_int_equal(addr(s, "198.51.101.1", 0, NULL), IOC_MISS);
    assert_int_equal(addr(s, "2001:db8:1:ffff::1", 0, &h), IOC_MATCH);
    assert_string_equal(h.value, "2001:db8:1::/48");
    assert_int_equal(addr(s, "2001:db8:2::1", 0, NULL), IOC_MISS);
    assert_int_equal(addr(s, "192.0.2.10", 8080, &h), IOC_MATCH);
    assert_int_equal(h.kind, IOC_IP_PORT);
    assert_string_equal(h.value, "192.0.2.10:8080");
    assert_int_equal(addr(s, "192.0.2.10", 8081, NULL), IOC_MISS);
    assert_int_equal(addr(s, "192.0.2.10", 0, NULL), IOC_MISS);
    assert_int_equal(addr(s, "2001:db8::10", 443, &h), IOC_MATCH);
    assert_string_equal(h.value, "[2001:db8::10]:443");
    assert_int_equal(addr(s, "2001:db8::10", 80, NULL), IOC_MISS);

    assert_int_equal(dom(s, "EVIL.example.", &h), IOC_MATCH);
    assert_int_equal(h.kind, IOC_DOMAIN);
    assert_string_equal(h.value, "evil.example");
    assert_int_equal(dom(s, "evil.example.org", NULL), IOC_MISS);
    const char *u = "http://BAD.example/gate.php?id=3#x";
    assert_int_equal(ioc_store_match_url(s, u, strlen(u), NOW, &h), IOC_MATCH);
    assert_string_equal(h.value, "bad.example/gate.php");
    u = "bad.example/gate.php5";
    assert_int_equal(ioc_store_match_url(s, u, strlen(u), NOW, NULL), IOC_MISS);
    u = "bad.example/gate.php/x/y";
    assert_int_equal(ioc_store_match_url(s, u, strlen(u), NOW, &h), IOC_MATCH);
    assert_string_equal(h.value, "bad.example/gate.php");
    const char *fp = "51C64C77E60F3980EEA90869B68C58A8";
    assert_int_equal(ioc_store_match_fingerprint(s, IOC_JA3, fp, 32, NOW, &h), IOC_MATCH);
    assert_string_equal(h.value, "51c64c77e60f3980eea90869b68c58a8");
    fp = "51c64c77e60f3980eea90869b68c58a9";
    assert_int_equal(ioc_store_match_fingerprint(s, IOC_JA3, fp, 32, NOW, NULL), IOC_MISS);
    fp = "t13d1516h2_8daaf6152771_e5627efa2ab1";
    assert_int_equal(ioc_store_match_fingerprint(s, IOC_JA4, fp, strlen(fp), NOW, &h), IOC_MATCH);
    assert_string_equal(h.value, fp);
    assert_int_equal(ioc_store_match_fingerprint(s, IOC_JA4, fp, strlen(fp) - 1, NOW, NULL),
                     IOC_MISS);

    struct ioc_store_info info;
    ioc_store_info(s, &info);
    assert_int_equal(info.counts[IOC_DOMAIN], 1);
    assert_int_equal(info.sources, 7);
    ioc_store_close(s);
    tu_rmtree(dir);
}

static void ioc_store_bad_values_are_refused(void **state)
{
    (void)state;
    struct ioc_builder *b = builder(0);
    static const struct {
        int kind;
        const char *v;
    } bad[] = {{IOC_IP, "203.0.113"},     {IOC_IP, "203.0.113.7/24"}, {IOC_CIDR, "10.0.0.0/33"},
               {IOC_CIDR, "10.0.0.0/0"},  {IOC_IP_PORT, "1.2.3.4:0"}, {IOC_IP_PORT, "1.2.3.4"},
               {IOC_DOMAIN, "localhost"}, {IOC_DOMAIN, "a..b"},       {IOC_DOMAIN, "a b.com"},
               {IOC_JA3, "xyz"},          {IOC_URL, "a b/c"},         {IOC_KIND_COUNT, "x"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ioc_record r = {bad[i].kind, bad[i].v, "c2", "s", NULL, 50, 0};
        if (ioc_builder_add(b, &r) != KH_EINVAL)
            fail_msg("%s was accepted", bad[i].v);
    }
    ioc_builder_free(b);
}

static void ioc_store_domain_matches_parents_not_lookalikes(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    struct ioc_builder *b = builder(0);
    struct ioc_hit h;
    add(b, IOC_DOMAIN, "evil.example", "a");
    add(b, IOC_DOMAIN, "deep.sub.other.test", "b");
    struct ioc_store *s = finish(b, dir, "s.store", NULL);
    assert_int_equal(dom(s, "a.b.c.evil.example", &h), IOC_MATCH);
    assert_string_equal(h.value, "evil.example");
    assert_int_equal(dom(s, "notevil.example", NULL), IOC_MISS);
    assert_int_equal(dom(s, "example", NULL), IOC_MISS);
    assert_int_equal(dom(s, "evil.example.com", NULL), IOC_MISS);
    assert_int_equal(dom(s, "x.deep.sub.other.test", &h), IOC_MATCH);
    assert_string_equal(h.value, "deep.sub.other.test");
    assert_int_equal(dom(s, "sub.other.test", NULL), IOC_MISS);
    assert_int_equal(dom(s, "", NULL), IOC_MISS);
    assert_int_equal(dom(s, ".", NULL), IOC_MISS);
    ioc_store_close(s);
    tu_rmtree(dir);
}

/* Small stores leave out the IPv4 bitmap and /16 directories; `filler`
 * extra addresses (in 45.0.0.0/8) make a store big enough to have them. */
static void longest_prefix(size_t filler)
{
    const char *dir = tu_mkdtemp();
    struct ioc_builder *b = builder(0);
    struct ioc_hit h;
    char v[64];
    for (size_t i = 0; i < filler; i++) {
        snprintf(v, sizeof(v), "45.%zu.%zu.%zu", i >> 16 & 255, i >> 8 & 255, i & 255);
        add(b, IOC_IP, v, "filler");
    }
    add(b, IOC_CIDR, "203.0.113.64/26", "in-the-same-16");
    add(b, IOC_CIDR, "203.0.112.0/20", "in-the-same-16");
    add(b, IOC_CIDR, "203.0.0.0/8", "wide");
    add(b, IOC_CIDR, "203.0.113.0/24", "narrow");
    add(b, IOC_CIDR, "203.0.113.128/25", "narrower");
    add(b, IOC_CIDR, "2001:db8::/32", "wide");
    add(b, IOC_CIDR, "2001:db8:0:1::/64", "narrow");
    add(b, IOC_CIDR, "2001:db8:0:1::/127", "narrower");
    add(b, IOC_CIDR, "128.0.0.0/1", "half");
    struct ioc_store *s = finish(b, dir, "s.store", NULL);
    assert_int_equal(addr(s, "203.0.113.200", 0, &h), IOC_MATCH);
    assert_string_equal(h.value, "203.0.113.128/25");
    assert_int_equal(addr(s, "203.0.113.7", 0, &h), IOC_MATCH);
    assert_string_equal(h.value, "203.0.113.0/24");
    assert_string_equal(h.sources[0].source, "narrow");
    assert_int_equal(addr(s, "203.9.9.9", 0, &h), IOC_MATCH);
    assert_string_equal(h.value, "203.0.0.0/8");
    assert_int_equal(addr(s, "::ffff:203.0.113.7", 0, &h), IOC_MATCH);
    assert_string_equal(h.value, "203.0.113.0/24");
    assert_int_equal(addr(s, "2001:db8:0:1::1", 0, &h), IOC_MATCH);
    assert_string_equal(h.value, "2001:db8:0:1::/127");
    assert_int_equal(addr(s, "2001:db8:0:1::2", 0, &h), IOC_MATCH);
    assert_string_equal(h.value, "2001:db8:0:1::/64");
    assert_int_equal(addr(s, "2001:db8:ffff::1", 0, &h), IOC_MATCH);
    assert_string_equal(h.value, "2001:db8::/32");
    assert_int_equal(addr(s, "2001:db9::1", 0, NULL), IOC_MISS);
    assert_int_equal(addr(s, "8.8.8.8", 0, NULL), IOC_MISS);
    /* 128.0.0.0/1 holds 224/4 and 240/4, so the bogon rule dropped it */
    assert_int_equal(addr(s, "130.1.1.1", 0, NULL), IOC_MISS);
    assert_int_equal(addr(s, "203.0.113.65", 0, &h), IOC_MATCH);
    assert_string_equal(h.value, "203.0.113.64/26");
    assert_int_equal(addr(s, "203.0.114.1", 0, &h), IOC_MATCH);
    assert_string_equal(h.value, "203.0.112.0/20");
    assert_int_equal(addr(s, "45.0.0.1", 0, &h), filler > 1 ? IOC_MATCH : IOC_MISS);
    ioc_store_close(s);
    tu_rmtree(dir);
}

static void ioc_store_longest_prefix_wins(void **state)
{
    (void)state;
    longest_prefix(0);
    longest_prefix(5000);
}

static void ioc_store_address_port_comes_before_the_address(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    struct ioc_builder *b = builder(0);
    struct ioc_hit h;
    add(b, IOC_IP_PORT, "198.51.100.7:443", "ports");
    add(b, IOC_IP, "198.51.100.7", "addrs");
    add(b, IOC_IP_PORT, "198.51.100.8:443", "ports");
    struct ioc_store *s = finish(b, dir, "s.store", NULL);
    assert_int_equal(addr(s, "198.51.100.7", 443, &h), IOC_MATCH);
    assert_int_equal(h.kind, IOC_IP_PORT);
    assert_string_equal(h.sources[0].source, "ports");
    assert_int_equal(addr(s, "198.51.100.7", 80, &h), IOC_MATCH);
    assert_int_equal(h.kind, IOC_IP);
    assert_string_equal(h.sources[0].source, "addrs");
    assert_int_equal(addr(s, "198.51.100.7", 0, &h), IOC_MATCH);
    assert_int_equal(h.kind, IOC_IP);
    assert_int_equal(addr(s, "198.51.100.8", 80, NULL), IOC_MISS);
    assert_int_equal(addr(s, "::ffff:198.51.100.8", 443, &h), IOC_MATCH);
    assert_string_equal(h.value, "198.51.100.8:443");
    ioc_store_close(s);
    tu_rmtree(dir);
}

static void ioc_store_expired_sources_do_not_match(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    struct ioc_builder *b = builder(0);
    struct ioc_hit h;
    struct ioc_record r1 = {IOC_DOMAIN, "old.example", "c2", "a", NULL, 50, NOW - 10};
    struct ioc_record r2 = {IOC_DOMAIN, "both.example", "c2", "a", NULL, 50, NOW - 10};
    struct ioc_record r3 = {IOC_DOMAIN, "both.example", "phishing", "b", "emotet", 80, NOW + 10};
    assert_int_equal(ioc_builder_add(b, &r1), KH_OK);
    assert_int_equal(ioc_builder_add(b, &r2), KH_OK);
    assert_int_equal(ioc_builder_add(b, &r3), KH_OK);
    struct ioc_store *s = finish(b, dir, "s.store", NULL);
    assert_int_equal(ioc_store_match_domain(s, "old.example", 11, NOW - 11, &h), IOC_MATCH);
    assert_int_equal(ioc_store_match_domain(s, "old.example", 11, NOW - 10, NULL), IOC_MISS);
    memset(&h, 0x5a, sizeof(h));
    assert_int_equal(ioc_store_match_domain(s, "x.old.example", 13, NOW, &h), IOC_MISS);
    assert_int_equal(h.kind, 0x5a5a5a5a); /* the miss path leaves h alone */
    assert_int_equal(ioc_store_match_domain(s, "both.example", 12, NOW, &h), IOC_MATCH);
    assert_int_equal(h.nsources, 1);
    assert_string_equal(h.sources[0].source, "b");
    assert_string_equal(h.sources[0].family, "emotet");
    assert_int_equal(h.sources[0].confidence, 80);
    assert_int_equal(h.sources[0].expires, NOW + 10);
    assert_int_equal(ioc_store_match_domain(s, "both.example", 12, NOW - 20, &h), IOC_MATCH);
    assert_int_equal(h.nsources, 2);
    ioc_store_close(s);
    tu_rmtree(dir);
}

static void ioc_store_sources_of_one_value_merge(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    struct ioc_builder *b = builder(0);
    struct ioc_hit h;
    struct ioc_build_stats st;
    struct ioc_record r[] = {
        {IOC_IP, "203.0.113.9", "c2", "feodo", "qakbot", 60, NOW + 100},
        {IOC_IP, "203.0.113.9", "malware", "ipsum", NULL, 30, 0},
        {IOC_IP, "203.0.113.9", "c2", "feodo", "qakbot", 90, NOW + 50}, /* same source again */
        {IOC_IP, "203.0.113.9", "scanner", "firehol", NULL, 40, 0},
        {IOC_IP, "203.0.113.10", "c2", "feodo", "qakbot", 60, NOW + 100},
        {IOC_DOMAIN, "merge.example", "c2", "x", NULL, 50, 0},
        {IOC_DOMAIN, "merge.example", "c2", "y", NULL, 50, 0},
    };
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
        assert_int_equal(ioc_builder_add(b, &r[i]), KH_OK);
    struct ioc_store *s = finish(b, dir, "s.store", &st);
    assert_int_equal(st.indicators, 3);
    assert_int_equal(st.merged, 4);
    assert_int_equal(addr(s, "203.0.113.9", 0, &h), IOC_MATCH);
    assert_int_equal(h.nsources, 3);
    int seen = 0;
    for (size_t i = 0; i < h.nsources; i++)
        if (strcmp(h.sources[i].source, "feodo") == 0) {
            seen++;
            assert_int_equal(h.sources[i].confidence, 90);     /* the highest */
            assert_int_equal(h.sources[i].expires, NOW + 100); /* the latest */
            assert_string_equal(h.sources[i].family, "qakbot");
        }
    assert_int_equal(seen, 1);
    assert_int_equal(addr(s, "203.0.113.10", 0, &h), IOC_MATCH);
    assert_int_equal(h.nsources, 1);
    assert_int_equal(dom(s, "merge.example", &h), IOC_MATCH);
    assert_int_equal(h.nsources, 2);
    struct ioc_store_info info;
    ioc_store_info(s, &info);
    assert_int_equal(info.sources, 5);
    ioc_store_close(s);
    tu_rmtree(dir);
}

static void ioc_store_allowlist_and_bogons_suppress(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    struct ioc_builder *b = builder(0);
    struct ioc_hit h;
    struct ioc_build_stats st;
    allow(b, IOC_CIDR, "8.8.8.0/24");
    allow(b, IOC_IP, "2001:4860:4860::8888");
    allow(b, IOC_DOMAIN, "google.com");
    allow(b, IOC_DOMAIN, "safe.cdn.example");
    allow(b, IOC_URL, "bad.example/ok.php");
    allow(b, IOC_JA3, "00000000000000000000000000000000");
    add(b, IOC_IP, "8.8.8.8", "x");                           /* dropped: allowlisted */
    add(b, IOC_IP_PORT, "8.8.8.8:53", "x");                   /* dropped */
    add(b, IOC_CIDR, "8.8.0.0/16", "x");                      /* kept: wider than the allow entry */
    add(b, IOC_IP, "2001:4860:4860::8888", "x");              /* dropped */
    add(b, IOC_DOMAIN, "evil.google.com", "x");               /* dropped */
    add(b, IOC_DOMAIN, "cdn.example", "x");                   /* kept */
    add(b, IOC_URL, "bad.example/ok.php", "x");               /* dropped */
    add(b, IOC_URL, "bad.example/", "x");                     /* kept */
    add(b, IOC_JA3, "00000000000000000000000000000000", "x"); /* dropped */
    add(b, IOC_IP, "10.1.2.3", "x");                          /* bogons: all dropped */
    add(b, IOC_CIDR, "10.0.0.0/8", "x");
    add(b, IOC_CIDR, "0.0.0.0/1", "x");
    add(b, IOC_IP_PORT, "192.168.1.1:80", "x");
    add(b, IOC_IP, "100.64.0.1", "x");
    add(b, IOC_IP, "169.254.1.1", "x");
    add(b, IOC_IP, "224.0.0.251", "x");
    add(b, IOC_IP, "255.255.255.255", "x");
    add(b, IOC_IP, "127.0.0.1", "x");
    add(b, IOC_IP, "::1", "x");
    add(b, IOC_IP, "fe80::1", "x");
    add(b, IOC_IP, "fd00::1", "x");
    add(b, IOC_CIDR, "ff00::/8", "x");
    add(b, IOC_CIDR, "fc00::/6", "x");
    add(b, IOC_IP, "172.16.5.4", "x");
    struct ioc_store *s = finish(b, dir, "s.store", &st);
    assert_int_equal(st.indicators, 3);
    assert_int_equal(st.allowlisted, 21);
    assert_int_equal(st.allow_entries, 6);
    assert_int_equal(addr(s, "8.8.8.8", 0, &h), IOC_ALLOWED);
    assert_string_equal(h.value, "8.8.0.0/16");
    assert_int_equal(addr(s, "8.8.9.9", 0, &h), IOC_MATCH);
    assert_int_equal(addr(s, "10.1.2.3", 0, NULL), IOC_MISS);
    assert_int_equal(dom(s, "x.cdn.example", NULL), IOC_MATCH);
    assert_int_equal(dom(s, "a.safe.cdn.example", &h), IOC_ALLOWED);
    assert_string_equal(h.value, "cdn.example");
    assert_int_equal(dom(s, "evil.google.com", NULL), IOC_MISS);
    const char *u = "bad.example/ok.php";
    assert_int_equal(ioc_store_match_url(s, u, strlen(u), NOW, NULL), IOC_ALLOWED);
    u = "bad.example/other.php";
    assert_int_equal(ioc_store_match_url(s, u, strlen(u), NOW, NULL), IOC_MATCH);
    ioc_store_close(s);

    /* with allow_private the private ranges stay */
    b = builder(1);
    add(b, IOC_IP, "10.1.2.3", "x");
    add(b, IOC_CIDR, "10.0.0.0/8", "x");
    s = finish(b, dir, "p.store", &st);
    assert_int_equal(st.allowlisted, 0);
    assert_int_equal(addr(s, "10.1.2.3", 0, &h), IOC_MATCH);
    assert_int_equal(addr(s, "10.9.9.9", 0, &h), IOC_MATCH);
    assert_string_equal(h.value, "10.0.0.0/8");
    ioc_store_close(s);
    tu_rmtree(dir);
}

static void read_key(const char *path, uint8_t key[16])
{
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(khx_read_file(path, 1 << 20, &data, &len), KH_OK);
    assert_true(len >= sizeof(struct store_header));
    memcpy(key, data + offsetof(struct store_header, key), 16);
    free(data);
}

static void ioc_store_hash_key_differs_between_builds(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    char p1[4096], p2[4096];
    uint8_t k1[16], k2[16];
    for (int i = 0; i < 2; i++) {
        struct ioc_builder *b = builder(0);
        add(b, IOC_DOMAIN, "same.example", "x");
        ioc_store_close(finish(b, dir, i ? "b.store" : "a.store", NULL));
    }
    snprintf(p1, sizeof(p1), "%s/a.store", dir);
    snprintf(p2, sizeof(p2), "%s/b.store", dir);
    read_key(p1, k1);
    read_key(p2, k2);
    assert_memory_not_equal(k1, k2, 16);
    tu_rmtree(dir);
}

/* Opens bytes as a store; when that works, runs a few lookups (which must
 * not crash) and returns KH_OK. */
static int open_and_probe(const uint8_t *data, size_t len, char *err, size_t errlen)
{
    struct ioc_store *s = NULL;
    struct ioc_hit h;
    int rc = ioc_store_open_mem(data, len, &s, err, errlen);
    if (rc != KH_OK)
        return rc;
    addr(s, "203.0.113.7", 0, &h);
    addr(s, "203.0.113.7", 443, &h);
    addr(s, "192.0.2.1", 80, &h);
    addr(s, "198.51.100.9", 0, &h);
    addr(s, "203.1.1.1", 0, &h);
    addr(s, "2001:db8::1", 443, &h);
    addr(s, "2001:db8:1::5", 0, &h);
    dom(s, "a.evil.example", &h);
    ioc_store_match_url(s, "bad.example/x/y", 15, NOW, &h);
    ioc_store_match_fingerprint(s, IOC_JA3, "51c64c77e60f3980eea90869b68c58a8", 32, NOW, &h);
    ioc_store_match_fingerprint(s, IOC_JA4, "t13d", 4, NOW, &h);
    ioc_store_close(s);
    return KH_OK;
}

static void ioc_store_corrupt_or_truncated_file_is_refused(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    char path[4096], err[256];
    struct ioc_builder *b = builder(0);
    struct ioc_store *s = NULL;
    /* a small store (no IPv4 bitmap): every byte can be tried */
    add(b, IOC_IP, "2001:db8::7", "x");
    add(b, IOC_IP, "203.0.113.7", "x");
    add(b, IOC_IP_PORT, "192.0.2.1:80", "x");
    add(b, IOC_CIDR, "198.51.100.0/24", "x");
    add(b, IOC_CIDR, "203.0.0.0/8", "x");
    add(b, IOC_IP_PORT, "[2001:db8::1]:443", "x");
    add(b, IOC_CIDR, "2001:db8:1::/48", "x");
    add(b, IOC_DOMAIN, "evil.example", "x");
    add(b, IOC_URL, "bad.example/x", "x");
    add(b, IOC_JA4, "t13d", "x");
    allow(b, IOC_IP, "203.0.113.7");
    ioc_store_close(finish(b, dir, "s.store", NULL));
    snprintf(path, sizeof(path), "%s/s.store", dir);
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(khx_read_file(path, 64 << 20, &data, &len), KH_OK);
    uint64_t *copy = malloc(len + 8);
    assert_non_null(copy);
    uint8_t *c = (uint8_t *)copy;

    /* truncated */
    memcpy(c, data, len);
    assert_int_equal(ioc_store_open_mem(c, len - 1, &s, err, sizeof(err)), KH_EFORMAT);
    assert_non_null(strstr(err, "truncated"));
    char *p = tu_write(dir, "short.store", data, len / 2);
    assert_int_equal(ioc_store_open(p, &s, err, sizeof(err)), KH_EFORMAT);
    free(p);
    assert_non_null(strstr(err, "truncated"));
    p = tu_write(dir, "tiny.store", data, 10);
    assert_int_equal(ioc_store_open(p, &s, err, sizeof(err)), KH_EFORMAT);
    free(p);
    assert_non_null(strstr(err, "shorter than a header"));
    /* bad magic */
    c[0] ^= 1;
    assert_int_equal(ioc_store_open_mem(c, len, &s, err, sizeof(err)), KH_EFORMAT);
    assert_non_null(strstr(err, "magic"));
    /* a section pointing past the end */
    memcpy(c, data, len);
    struct store_header h;
    memcpy(&h, c, sizeof(h));
    h.sec[SEC_STAB_DATA(STAB_DOMAIN)].len = len;
    memcpy(c, &h, sizeof(h));
    assert_int_equal(ioc_store_open_mem(c, len, &s, err, sizeof(err)), KH_EFORMAT);
    assert_non_null(strstr(err, "domains"));
    /* a set index out of order */
    memcpy(c, data, len);
    memcpy(&h, c, sizeof(h));
    uint32_t big = 1000;
    memcpy(c + h.sec[SEC_SETIDX].off, &big, 4);
    assert_int_equal(ioc_store_open_mem(c, len, &s, err, sizeof(err)), KH_EFORMAT);
    assert_non_null(strstr(err, "set"));
    /* every byte flipped in turn (after the header): refused or harmless */
    int opened = 0, refused = 0;
    for (size_t i = 0; i < len; i++) {
        memcpy(c, data, len);
        c[i] ^= (uint8_t)(0x5a + i);
        if (open_and_probe(c, len, err, sizeof(err)) == KH_OK)
            opened++;
        else
            refused++;
    }
    print_message("  %zu-byte store, one byte changed: %d opened (lookups ran), %d refused\n", len,
                  opened, refused);
    assert_true(refused > 0);
    /* the untouched copy still opens */
    memcpy(c, data, len);
    assert_int_equal(open_and_probe(c, len, err, sizeof(err)), KH_OK);
    free(copy);
    free(data);
    tu_rmtree(dir);
}

/* ---- the slot ---- */

static int mapped(const char *path)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[8192];
    int found = 0;
    assert_non_null(f);
    while (fgets(line, sizeof(line), f))
        if (strstr(line, path) != NULL)
            found = 1;
    fclose(f);
    return found;
}

struct reader {
    struct ioc_slot *slot;
    atomic_int stop;
    long lookups, matched;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    uint8_t a[4] = {203, 0, 113, 7};
    while (!atomic_load(&r->stop)) {
        const struct ioc_store *s = ioc_slot_acquire(r->slot);
        for (int i = 0; i < 50; i++) {
            struct ioc_hit h;
            r->matched += ioc_store_match_addr(s, AF_INET, a, 0, NOW, &h) == IOC_MATCH;
            r->matched += ioc_store_match_domain(s, "a.evil.example", 14, NOW, &h) == IOC_MATCH;
            r->lookups += 2;
        }
        ioc_slot_release(r->slot, s);
    }
    return NULL;
}

static void ioc_store_slot_swaps_while_another_thread_reads(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    char pa[4096], pb[4096], err[256];
    for (int i = 0; i < 2; i++) {
        struct ioc_builder *b = builder(0);
        add(b, IOC_IP, "203.0.113.7", i ? "b" : "a");
        add(b, IOC_DOMAIN, "evil.example", i ? "b" : "a");
        ioc_store_close(finish(b, dir, i ? "b.store" : "a.store", NULL));
    }
    snprintf(pa, sizeof(pa), "%s/a.store", dir);
    snprintf(pb, sizeof(pb), "%s/b.store", dir);

    struct ioc_slot *slot = NULL;
    struct ioc_store *s = NULL;
    assert_int_equal(ioc_slot_new(&slot), KH_OK);
    assert_null(ioc_slot_acquire(slot));
    ioc_slot_release(slot, NULL);

    /* one reader holding the old store across a swap */
    assert_int_equal(ioc_store_open(pa, &s, err, sizeof(err)), KH_OK);
    ioc_slot_swap(slot, s);
    const struct ioc_store *held = ioc_slot_acquire(slot);
    assert_ptr_equal(held, s);
    assert_int_equal(ioc_store_open(pb, &s, err, sizeof(err)), KH_OK);
    ioc_slot_swap(slot, s);
    assert_true(mapped(pa)); /* still in use */
    struct ioc_hit h;
    uint8_t a[4] = {203, 0, 113, 7};
    assert_int_equal(ioc_store_match_addr(held, AF_INET, a, 0, NOW, &h), IOC_MATCH);
    assert_string_equal(h.sources[0].source, "a");
    ioc_slot_release(slot, held);
    assert_false(mapped(pa)); /* the last reader left: unmapped */
    const struct ioc_store *cur = ioc_slot_acquire(slot);
    assert_int_equal(ioc_store_match_addr(cur, AF_INET, a, 0, NOW, &h), IOC_MATCH);
    assert_string_equal(h.sources[0].source, "b");
    ioc_slot_release(slot, cur);
    assert_true(mapped(pb));

    /* a thread reading while the store is swapped many times */
    struct reader r = {slot, 0, 0, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reader_main, &r), 0);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(ioc_store_open(i % 2 ? pb : pa, &s, err, sizeof(err)), KH_OK);
        ioc_slot_swap(slot, s);
        if (i % 50 == 0)
            usleep(1000);
    }
    ioc_slot_swap(slot, NULL);
    usleep(2000);
    atomic_store(&r.stop, 1);
    pthread_join(t, NULL);
    print_message("  reader: %ld lookups, %ld matched, during 200 swaps\n", r.lookups, r.matched);
    ioc_slot_free(slot);
    assert_false(mapped(pa));
    assert_false(mapped(pb));
    tu_rmtree(dir);
}

/* ---- a million ---- */

static uint32_t perm32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static int public4(uint32_t a)
{
    unsigned t = a >> 24;
    return !(t == 0 || t == 10 || t == 127 || t >= 224 || (a & 0xffc00000u) == 0x64400000u ||
             (a & 0xffff0000u) == 0xa9fe0000u || (a & 0xfff00000u) == 0xac100000u ||
             (a & 0xffff0000u) == 0xc0a80000u);
}

static void ioc_store_a_million_indicators_all_hit_and_others_miss(void **state)
{
    (void)state;
    const size_t n = 1000000;
    const char *dir = tu_mkdtemp();
    struct ioc_builder *b = builder(0);
    struct ioc_build_stats st;
    char v[128];
    size_t added = 0;
    double t0 = (double)khx_now_ms();
    for (size_t i = 0; i < n; i++) {
        uint32_t a = perm32((uint32_t)i), na = htonl(a);
        struct ioc_record r = {IOC_DOMAIN, v, "c2", "gen", NULL, 50, 0};
        if (i % 10 < 7) {
            snprintf(v, sizeof(v), "h%zx.example%zu.com", i, i % 97);
        } else if (i % 10 < 9) {
            if (!public4(a))
                continue;
            r.kind = i % 10 == 7 ? IOC_IP : IOC_IP_PORT;
            inet_ntop(AF_INET, &na, v, sizeof(v));
            if (r.kind == IOC_IP_PORT)
                snprintf(v + strlen(v), sizeof(v) - strlen(v), ":%zu", 1 + i % 65535);
        } else {
            r.kind = IOC_URL;
            snprintf(v, sizeof(v), "u%zx.example/p/%zu", i, i * 7);
        }
        assert_int_equal(ioc_builder_add(b, &r), KH_OK);
        added++;
    }
    struct ioc_store *s = finish(b, dir, "m.store", &st);
    print_message("  %zu indicators built, written and opened in %.0f ms: %llu bytes\n",
                  st.indicators, (double)khx_now_ms() - t0, (unsigned long long)st.file_bytes);
    assert_int_equal(st.indicators, added);
    size_t missed = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t a = perm32((uint32_t)i), na = htonl(a);
        int rc;
        if (i % 10 < 7) {
            int l = snprintf(v, sizeof(v), "www.h%zx.example%zu.com", i, i % 97);
            rc = ioc_store_match_domain(s, v, (size_t)l, NOW, NULL);
        } else if (i % 10 < 9) {
            if (!public4(a))
                continue;
            rc = ioc_store_match_addr(s, AF_INET, &na, i % 10 == 7 ? 0 : (uint16_t)(1 + i % 65535),
                                      NOW, NULL);
        } else {
            int l = snprintf(v, sizeof(v), "u%zx.example/p/%zu?q=1", i, i * 7);
            rc = ioc_store_match_url(s, v, (size_t)l, NOW, NULL);
        }
        missed += rc != IOC_MATCH;
    }
    assert_int_equal(missed, 0);
    size_t false_hits = 0;
    for (size_t i = 0; i < 100000; i++) {
        int l = snprintf(v, sizeof(v), "h%zx.example%zu.com", i, (i + 1) % 97);
        false_hits += ioc_store_match_domain(s, v, (size_t)l, NOW, NULL) != IOC_MISS;
        l = snprintf(v, sizeof(v), "u%zx.example/p/%zu", i, i * 7 + 1);
        false_hits += ioc_store_match_url(s, v, (size_t)l, NOW, NULL) != IOC_MISS;
        uint32_t a = perm32((uint32_t)(i + 2 * n)), na = htonl(a);
        /* addresses beyond the first n of the permutation are not listed; a
         * port entry on another port must not match either */
        false_hits += ioc_store_match_addr(s, AF_INET, &na, 0, NOW, NULL) != IOC_MISS;
    }
    assert_int_equal(false_hits, 0);
    ioc_store_close(s);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ioc_store_every_kind_matches_and_not_its_neighbours),
        cmocka_unit_test(ioc_store_bad_values_are_refused),
        cmocka_unit_test(ioc_store_domain_matches_parents_not_lookalikes),
        cmocka_unit_test(ioc_store_longest_prefix_wins),
        cmocka_unit_test(ioc_store_address_port_comes_before_the_address),
        cmocka_unit_test(ioc_store_expired_sources_do_not_match),
        cmocka_unit_test(ioc_store_sources_of_one_value_merge),
        cmocka_unit_test(ioc_store_allowlist_and_bogons_suppress),
        cmocka_unit_test(ioc_store_hash_key_differs_between_builds),
        cmocka_unit_test(ioc_store_corrupt_or_truncated_file_is_refused),
        cmocka_unit_test(ioc_store_slot_swaps_while_another_thread_reads),
        cmocka_unit_test(ioc_store_a_million_indicators_all_hit_and_others_miss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
