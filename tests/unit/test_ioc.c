/*
 * Indicator sets (lib/ioc/ioc.c): every kind matches what it lists and not
 * its neighbours, the longest prefix wins, IPv4-mapped IPv6 is looked up as
 * IPv4, address:port entries, parent domains (but not look-alikes), bad
 * lines counted with their line number, the line normaliser's canonical
 * forms and refusals, and a million generated indicators loaded and looked
 * up (load time and bytes per indicator printed, not asserted).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <khien/khien.h>

#include "ioc.h"
#include "khx.h"

static struct ioc_set *load(const char *text)
{
    struct ioc_set *s = NULL;
    char err[256] = "";
    size_t bad = 0;
    if (ioc_set_load(text, strlen(text), 0, &s, &bad, err, sizeof(err)) != KH_OK)
        fail_msg("load: %s", err);
    if (bad != 0)
        fail_msg("%zu bad lines: %s", bad, err);
    return s;
}

/* Looks up a textual address (v4 or v6) and port; returns the match's
 * category, or NULL. */
static const char *addr_cat(const struct ioc_set *s, const char *text, uint16_t port,
                            struct ioc_match *m)
{
    uint8_t a[16];
    int family = strchr(text, ':') ? AF_INET6 : AF_INET;
    assert_int_equal(inet_pton(family, text, a), 1);
    return ioc_match_addr(s, family, a, port, m) ? m->category : NULL;
}

static const char *dom_cat(const struct ioc_set *s, const char *name, struct ioc_match *m)
{
    return ioc_match_domain(s, name, m) ? m->category : NULL;
}

static void ioc_every_kind_matches_and_not_its_neighbours(void **state)
{
    (void)state;
    struct ioc_match m;
    struct ioc_set *s = load("# a list\n"
                             "203.0.113.7 c2 feodo\n"
                             "198.51.100.0/24 scanner blocklist\n"
                             "2001:db8::1 apt\n"
                             "2001:db8:1::/48\n"
                             "192.0.2.9:443 c2\n"
                             "[2001:db8::9]:8443 phishing urlhaus\n"
                             "evil.example.com distribution\n");
    size_t counts[IOC_KIND_COUNT];
    ioc_set_counts(s, counts);
    assert_int_equal(counts[IOC_IP], 2);
    assert_int_equal(counts[IOC_CIDR], 2);
    assert_int_equal(counts[IOC_IP_PORT], 2);
    assert_int_equal(counts[IOC_DOMAIN], 1);

    assert_string_equal(addr_cat(s, "203.0.113.7", 0, &m), "c2");
    assert_int_equal(m.kind, IOC_IP);
    assert_string_equal(m.value, "203.0.113.7");
    assert_string_equal(m.source, "feodo");
    assert_null(addr_cat(s, "203.0.113.6", 0, &m));
    assert_null(addr_cat(s, "203.0.113.8", 0, &m));

    assert_string_equal(addr_cat(s, "198.51.100.0", 0, &m), "scanner");
    assert_string_equal(addr_cat(s, "198.51.100.255", 80, &m), "scanner");
    assert_int_equal(m.kind, IOC_CIDR);
    assert_string_equal(m.value, "198.51.100.0/24");
    assert_null(addr_cat(s, "198.51.99.255", 0, &m));
    assert_null(addr_cat(s, "198.51.101.0", 0, &m));

    assert_string_equal(addr_cat(s, "2001:db8::1", 0, &m), "apt");
    assert_string_equal(m.source, "-");
    assert_null(addr_cat(s, "2001:db8::2", 0, &m));
    assert_null(addr_cat(s, "2001:db8::", 0, &m));

    assert_string_equal(addr_cat(s, "2001:db8:1:ffff::1", 0, &m), "malware");
    assert_int_equal(m.kind, IOC_CIDR);
    assert_string_equal(m.value, "2001:db8:1::/48");
    assert_null(addr_cat(s, "2001:db8:2::1", 0, &m));
    assert_null(addr_cat(s, "2001:db8:0:ffff::1", 0, &m));

    assert_string_equal(addr_cat(s, "192.0.2.9", 443, &m), "c2");
    assert_int_equal(m.kind, IOC_IP_PORT);
    assert_string_equal(m.value, "192.0.2.9:443");
    assert_null(addr_cat(s, "192.0.2.9", 444, &m));
    assert_null(addr_cat(s, "192.0.2.10", 443, &m));
    assert_string_equal(addr_cat(s, "2001:db8::9", 8443, &m), "phishing");
    assert_string_equal(m.value, "[2001:db8::9]:8443");
    assert_null(addr_cat(s, "2001:db8::9", 443, &m));

    assert_string_equal(dom_cat(s, "evil.example.com", &m), "distribution");
    assert_int_equal(m.kind, IOC_DOMAIN);
    assert_string_equal(m.value, "evil.example.com");
    assert_null(dom_cat(s, "example.com", &m));
    assert_null(dom_cat(s, "evil.example.co", &m));

    /* Families and arguments that cannot match. */
    assert_int_equal(ioc_match_addr(s, AF_UNIX, "abcd", 0, &m), 0);
    assert_int_equal(ioc_match_addr(NULL, AF_INET, "abcd", 0, &m), 0);
    assert_int_equal(ioc_match_domain(s, "", &m), 0);
    assert_int_equal(ioc_match_domain(s, ".", &m), 0);
    assert_int_equal(ioc_match_domain(NULL, "evil.example.com", &m), 0);
    ioc_set_free(s);
    ioc_set_free(NULL);
}

static void ioc_longest_prefix_wins(void **state)
{
    (void)state;
    struct ioc_match m;
    struct ioc_set *s = load("10.1.0.0/16 wide\n"
                             "10.1.5.0/24 narrow\n"
                             "10.1.5.7 exact\n"
                             "10.0.0.0/8 widest\n"
                             "2001:db8::/32 wide6\n"
                             "2001:db8:5::/48 narrow6\n");
    assert_string_equal(addr_cat(s, "10.1.5.7", 0, &m), "exact");
    assert_string_equal(addr_cat(s, "10.1.5.8", 0, &m), "narrow");
    assert_string_equal(addr_cat(s, "10.1.6.8", 0, &m), "wide");
    assert_string_equal(addr_cat(s, "10.2.0.1", 0, &m), "widest");
    assert_null(addr_cat(s, "11.1.5.7", 0, &m));
    assert_string_equal(addr_cat(s, "2001:db8:5::1", 0, &m), "narrow6");
    assert_string_equal(addr_cat(s, "2001:db8:6::1", 0, &m), "wide6");
    assert_null(addr_cat(s, "2001:db9::1", 0, &m));
    ioc_set_free(s);
}

static void ioc_mapped_ipv6_is_looked_up_as_ipv4(void **state)
{
    (void)state;
    struct ioc_match m;
    struct ioc_set *s = load("203.0.113.7 c2\n"
                             "::ffff:192.0.2.1 mapped\n"
                             "::ffff:198.51.100.0/120 mappednet\n");
    assert_string_equal(addr_cat(s, "::ffff:203.0.113.7", 0, &m), "c2");
    assert_string_equal(m.value, "203.0.113.7");
    /* A mapped address in the list is stored as IPv4. */
    assert_string_equal(addr_cat(s, "192.0.2.1", 0, &m), "mapped");
    assert_string_equal(m.value, "192.0.2.1");
    assert_string_equal(addr_cat(s, "198.51.100.77", 0, &m), "mappednet");
    assert_string_equal(m.value, "198.51.100.0/24");
    assert_null(addr_cat(s, "::ffff:203.0.113.8", 0, &m));
    /* An IPv4-compatible or NAT64 address is not IPv4-mapped. */
    assert_null(addr_cat(s, "64:ff9b::203.0.113.7", 0, &m));
    ioc_set_free(s);
}

static void ioc_port_entries_match_their_port(void **state)
{
    (void)state;
    struct ioc_match m;
    struct ioc_set *s = load("192.0.2.5:8080 c2port\n"
                             "192.0.2.0/24 netblock\n"
                             "198.51.100.9:25 spam\n"
                             "198.51.100.9:587 spam2\n"
                             "[::ffff:203.0.113.1]:53 mappedport\n");
    assert_string_equal(addr_cat(s, "192.0.2.5", 8080, &m), "c2port");
    assert_int_equal(m.kind, IOC_IP_PORT);
    /* Another port of a listed address falls back to the prefix. */
    assert_string_equal(addr_cat(s, "192.0.2.5", 80, &m), "netblock");
    assert_string_equal(addr_cat(s, "192.0.2.5", 0, &m), "netblock");
    /* Without a port, an address listed only with ports still matches. */
    assert_string_equal(addr_cat(s, "198.51.100.9", 587, &m), "spam2");
    assert_null(addr_cat(s, "198.51.100.9", 26, &m));
    assert_non_null(addr_cat(s, "198.51.100.9", 0, &m));
    assert_int_equal(m.kind, IOC_IP_PORT);
    assert_null(addr_cat(s, "198.51.100.10", 0, &m));
    assert_string_equal(addr_cat(s, "203.0.113.1", 53, &m), "mappedport");
    assert_string_equal(m.value, "203.0.113.1:53");
    ioc_set_free(s);
}

static void ioc_domain_matches_parents_not_lookalikes(void **state)
{
    (void)state;
    struct ioc_match m;
    struct ioc_set *s = load("evil.com phishing\n"
                             "Deep.Sub.Example.ORG. c2\n"
                             "under_score.example.net\n");
    assert_string_equal(dom_cat(s, "evil.com", &m), "phishing");
    assert_string_equal(dom_cat(s, "www.evil.com", &m), "phishing");
    assert_string_equal(dom_cat(s, "a.b.c.evil.com", &m), "phishing");
    assert_string_equal(m.value, "evil.com");
    assert_string_equal(dom_cat(s, "EVIL.COM.", &m), "phishing");
    assert_null(dom_cat(s, "notevil.com", &m));
    assert_null(dom_cat(s, "evil.com.au", &m));
    assert_null(dom_cat(s, "vil.com", &m));
    assert_null(dom_cat(s, "com", &m));
    assert_null(dom_cat(s, "evil", &m));
    assert_string_equal(dom_cat(s, "x.deep.sub.example.org", &m), "c2");
    assert_string_equal(m.value, "deep.sub.example.org");
    assert_null(dom_cat(s, "sub.example.org", &m));
    assert_string_equal(dom_cat(s, "under_score.example.net", &m), "malware");
    /* Longer than a domain can be: not looked up. */
    char longname[400];
    memset(longname, 'a', sizeof(longname));
    snprintf(longname + sizeof(longname) - 10, 10, ".evil.com");
    assert_null(dom_cat(s, longname, &m));
    ioc_set_free(s);
}

static void ioc_bad_lines_are_counted_with_their_line_number(void **state)
{
    (void)state;
    struct ioc_set *s = NULL;
    struct ioc_match m;
    char err[256] = "";
    size_t bad = 0;
    static const char text[] = "203.0.113.7\n"
                               "\n"
                               "300.1.2.3\n"
                               "evil.com c2\n"
                               "http://evil.com/payload.exe\n"
                               "10.0.0.0/33\n";
    assert_int_equal(ioc_set_load(text, strlen(text), 0, &s, &bad, err, sizeof(err)), KH_OK);
    assert_int_equal(bad, 3);
    assert_true(strncmp(err, "line 3: ", 8) == 0);
    assert_true(ioc_match_domain(s, "evil.com", &m));
    ioc_set_free(s);

    /* The URL's reason is the one the server shows. */
    static const char url[] = "\n\nhttps://x.example/a\n";
    assert_int_equal(ioc_set_load(url, strlen(url), 0, &s, &bad, err, sizeof(err)), KH_OK);
    assert_int_equal(bad, 1);
    assert_non_null(strstr(err, "line 3: URLs are not supported in agent bundles"));
    ioc_set_free(s);

    /* More indicators than allowed: refused as a whole. */
    static const char three[] = "192.0.2.1\n192.0.2.2\n192.0.2.3\n";
    assert_int_equal(ioc_set_load(three, strlen(three), 2, &s, &bad, err, sizeof(err)), KH_ELIMIT);
    assert_null(s);
    assert_non_null(strstr(err, "line 3"));
    assert_int_equal(ioc_set_load(NULL, 1, 0, &s, NULL, NULL, 0), KH_EINVAL);

    /* An empty list is a valid, empty set. */
    assert_int_equal(ioc_set_load("", 0, 0, &s, NULL, NULL, 0), KH_OK);
    uint8_t a[4] = {192, 0, 2, 1};
    assert_int_equal(ioc_match_addr(s, AF_INET, a, 0, NULL), 0);
    assert_int_equal(ioc_match_domain(s, "evil.com", NULL), 0);
    ioc_set_free(s);
}

static void ioc_duplicates_keep_the_first_line(void **state)
{
    (void)state;
    struct ioc_match m;
    struct ioc_set *s = load("192.0.2.1 first\n"
                             "192.0.2.1 second\n"
                             "::ffff:192.0.2.1 third\n"
                             "evil.com first\n"
                             "EVIL.com. second\n"
                             "10.0.0.0/8 first\n"
                             "10.9.9.9/8 second\n"
                             "192.0.2.1:80 first\n"
                             "192.0.2.1:80 second\n");
    size_t counts[IOC_KIND_COUNT];
    ioc_set_counts(s, counts);
    assert_int_equal(counts[IOC_IP], 1);
    assert_int_equal(counts[IOC_CIDR], 1);
    assert_int_equal(counts[IOC_IP_PORT], 1);
    assert_int_equal(counts[IOC_DOMAIN], 1);
    assert_string_equal(addr_cat(s, "192.0.2.1", 0, &m), "first");
    assert_string_equal(addr_cat(s, "192.0.2.1", 80, &m), "first");
    assert_string_equal(addr_cat(s, "10.1.1.1", 0, &m), "first");
    assert_string_equal(dom_cat(s, "evil.com", &m), "first");
    ioc_set_free(s);
}

static void ioc_normalize_line_writes_the_canonical_form(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } good[] = {
        {"203.0.113.7", "203.0.113.7 malware -"},
        {"  203.0.113.7\tc2   feodo  ", "203.0.113.7 c2 feodo"},
        {"203.0.113.7 # a comment", "203.0.113.7 malware -"},
        {"2001:DB8:0:0:0:0:0:1 apt", "2001:db8::1 apt -"},
        {"203.0.113.77/24", "203.0.113.0/24 malware -"},
        {"203.0.113.7/32", "203.0.113.7 malware -"},
        {"2001:db8::ffff/32", "2001:db8::/32 malware -"},
        {"2001:db8::1/128", "2001:db8::1 malware -"},
        {"::ffff:192.0.2.1", "192.0.2.1 malware -"},
        {"::ffff:192.0.2.0/120", "192.0.2.0/24 malware -"},
        {"203.0.113.7:0443", "203.0.113.7:443 malware -"},
        {"[2001:DB8::1]:443 c2", "[2001:db8::1]:443 c2 -"},
        {"[::ffff:192.0.2.1]:53", "192.0.2.1:53 malware -"},
        {"Evil.Example.COM.", "evil.example.com malware -"},
        {"xn--80ak6aa92e.com", "xn--80ak6aa92e.com malware -"},
        {"\xef\xbb\xbf"
         "evil.com",
         "evil.com malware -"},
        {"evil.com,phishing,openphish", "evil.com phishing openphish"},
        {"\"203.0.113.7\", \"c2\" , \"feodo\"", "203.0.113.7 c2 feodo"},
        {"203.0.113.7,,feodo", "203.0.113.7 malware feodo"},
        {"0.0.0.0 ads.evil.com", "ads.evil.com malware -"},
        {"127.0.0.1\tads.evil.com", "ads.evil.com malware -"},
    };
    char out[IOC_NORMALIZED_MAX], again[IOC_NORMALIZED_MAX], err[256];
    for (size_t i = 0; i < KHX_ARRAY_LEN(good); i++) {
        err[0] = '\0';
        int r =
            ioc_normalize_line(good[i].in, strlen(good[i].in), out, sizeof(out), err, sizeof(err));
        if (r != 1 || strcmp(out, good[i].out) != 0)
            fail_msg("'%s' gave %d '%s' (%s), wanted '%s'", good[i].in, r, out, err, good[i].out);
        /* Normalising a normalised line changes nothing. */
        assert_int_equal(
            ioc_normalize_line(out, strlen(out), again, sizeof(again), err, sizeof(err)), 1);
        assert_string_equal(again, out);
    }

    static const char *const empty[] = {"", "   ", "# only a comment", "\t# x", "\r"};
    for (size_t i = 0; i < KHX_ARRAY_LEN(empty); i++)
        assert_int_equal(
            ioc_normalize_line(empty[i], strlen(empty[i]), out, sizeof(out), err, sizeof(err)), 0);

    static const struct {
        const char *in, *why;
    } bad[] = {
        {"http://evil.com/x", "URLs are not supported in agent bundles"},
        {"evil.com/path", "URLs are not supported in agent bundles"},
        {"300.1.2.3", "neither an IP address nor a domain name"},
        {"1.2.3", "neither"},
        {"10.0.0.0/0", "every address"},
        {"10.0.0.0/33", "length must be 1 to 32"},
        {"2001:db8::/129", "length must be 1 to 128"},
        {"0.0.0.0", "unspecified"},
        {"::", "unspecified"},
        {"203.0.113.7:0", "port 1 to 65535"},
        {"203.0.113.7:65536", "port 1 to 65535"},
        {"evil.com:443", "domain name takes no port"},
        {"[2001:db8::1]", "[IPv6 address]:port"},
        {"[2001:db8::1]:x", "[IPv6 address]:port"},
        {"2001:db8::g", "not a valid IPv6 address"},
        {"localhost", "at least two labels"},
        {"com.", "at least two labels"},
        {"evil..com", "empty label"},
        {".evil.com", "empty label"},
        {"ev il.com c2 src extra", "too many fields"},
        {"a,b,c,d", "too many fields"},
        {",c2", "value is empty"},
        {"\xd0\xbf\xd1\x80\xd0\xb8.com", "xn-- form"},
        {"evil!.com", "character '!'"},
        {"evil.com c2!", "category"},
        {"evil.com c2 my/list", "source"},
        {"evil.com "
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "a",
         "longer than 64"},
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        int r =
            ioc_normalize_line(bad[i].in, strlen(bad[i].in), out, sizeof(out), err, sizeof(err));
        if (r != -1 || strstr(err, bad[i].why) == NULL)
            fail_msg("'%s' gave %d (%s), wanted -1 with '%s'", bad[i].in, r, err, bad[i].why);
    }

    /* Labels and names at their limits. */
    char name[300];
    memset(name, 'a', 63);
    snprintf(name + 63, sizeof(name) - 63, ".com");
    assert_int_equal(ioc_normalize_line(name, strlen(name), out, sizeof(out), err, sizeof(err)), 1);
    memset(name, 'a', 64);
    snprintf(name + 64, sizeof(name) - 64, ".com");
    assert_int_equal(ioc_normalize_line(name, strlen(name), out, sizeof(out), err, sizeof(err)),
                     -1);
    /* 253 characters: 3 labels of 63, 1 of 61, and 3 dots. */
    memset(name, 'b', 253);
    name[63] = name[127] = name[191] = '.';
    name[253] = '\0';
    assert_int_equal(ioc_normalize_line(name, 253, out, sizeof(out), err, sizeof(err)), 1);
    name[253] = 'b';
    name[254] = '\0';
    assert_int_equal(ioc_normalize_line(name, 254, out, sizeof(out), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "longer than 253"));
    /* A line over 1024 bytes, and an output buffer too small. */
    char longline[1100];
    memset(longline, ' ', sizeof(longline));
    memcpy(longline, "evil.com", 8);
    assert_int_equal(
        ioc_normalize_line(longline, sizeof(longline), out, sizeof(out), err, sizeof(err)), -1);
    assert_int_equal(ioc_normalize_line("evil.com", 8, out, 5, err, sizeof(err)), -1);
    assert_string_equal(out, "");
    /* A NUL inside the line. */
    assert_int_equal(ioc_normalize_line("evil.com\0x", 10, out, sizeof(out), err, sizeof(err)), -1);
}

static double now_s(void)
{
    return (double)khx_now_ms() / 1000.0;
}

/* A reproducible pseudo-random sequence (xorshift). */
static uint32_t next_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return (uint32_t)(*x >> 16);
}

static void ioc_a_million_indicators_load_and_look_up(void **state)
{
    (void)state;
    const size_t n = 1000000;
    struct khx_buf text;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    khx_buf_init(&text, 1u << 30);
    /* The mix of a real feed set: mostly addresses, then domains, some
     * prefixes, IPv6 and address:port. Addresses are spread over 16.0.0.0/4
     * so that neighbours outside it are known not to be listed. */
    for (size_t i = 0; i < n; i++) {
        uint32_t r = next_rand(&rng);
        unsigned a = 16 + (r >> 28), b = (r >> 20) & 0xff, c = (r >> 12) & 0xff, d = r & 0xff;
        switch (i % 10) {
        case 0:
        case 1:
        case 2:
        case 3:
        case 4:
            assert_int_equal(khx_buf_printf(&text, "%u.%u.%u.%u c2 feed%zu\n", a, b, c, d, i % 7),
                             KH_OK);
            break;
        case 5:
        case 6:
            assert_int_equal(
                khx_buf_printf(&text, "host%zu.bad%u.example phishing list\n", i, r % 1000), KH_OK);
            break;
        case 7:
            assert_int_equal(khx_buf_printf(&text, "%u.%u.%u.0/24 scanner\n", a, b, c), KH_OK);
            break;
        case 8:
            assert_int_equal(khx_buf_printf(&text, "2001:db8:%x:%x::%x apt\n", r >> 16, r & 0xffff,
                                            (unsigned)(i & 0xffff)),
                             KH_OK);
            break;
        default:
            assert_int_equal(
                khx_buf_printf(&text, "%u.%u.%u.%u:%u c2\n", a, b, c, d, 1 + (r % 65000)), KH_OK);
            break;
        }
    }

    struct ioc_set *s = NULL;
    char err[256] = "";
    size_t bad = 0;
    double t0 = now_s();
    assert_int_equal(ioc_set_load((const char *)text.data, text.len, 0, &s, &bad, err, sizeof(err)),
                     KH_OK);
    double t1 = now_s();
    assert_int_equal(bad, 0);
    size_t counts[IOC_KIND_COUNT], total = 0;
    ioc_set_counts(s, counts);
    for (int k = 0; k < IOC_KIND_COUNT; k++)
        total += counts[k];
    size_t mem = ioc_set_memory(s);
    printf("ioc: %zu lines (%zu bytes of text) -> %zu indicators (ip %zu, cidr %zu, ip:port %zu,"
           " domain %zu) loaded in %.2f s; %zu bytes, %.1f bytes per indicator\n",
           n, text.len, total, counts[IOC_IP], counts[IOC_CIDR], counts[IOC_IP_PORT],
           counts[IOC_DOMAIN], t1 - t0, mem, (double)mem / (double)total);

    /* Every line's value is found again, with its own kind. */
    struct khx_lines it;
    const char *line;
    size_t len, found = 0;
    char value[300];
    khx_lines_init(&it, text.data, text.len);
    t0 = now_s();
    while (khx_lines_next(&it, &line, &len)) {
        const char *sp = memchr(line, ' ', len);
        size_t vl = (size_t)(sp - line);
        struct ioc_match m;
        uint8_t a[16];
        memcpy(value, line, vl);
        value[vl] = '\0';
        int ok;
        char *colon = strchr(value, ':'), *slash = strchr(value, '/');
        if (slash != NULL) {
            *slash = '\0';
            ok = inet_pton(AF_INET, value, a) == 1 && ioc_match_addr(s, AF_INET, a, 0, &m);
        } else if (colon != NULL && strchr(colon + 1, ':') == NULL) {
            *colon = '\0';
            ok = inet_pton(AF_INET, value, a) == 1 &&
                 ioc_match_addr(s, AF_INET, a, (uint16_t)atoi(colon + 1), &m);
        } else if (colon != NULL) {
            ok = inet_pton(AF_INET6, value, a) == 1 && ioc_match_addr(s, AF_INET6, a, 0, &m);
        } else if (inet_pton(AF_INET, value, a) == 1) {
            ok = ioc_match_addr(s, AF_INET, a, 0, &m);
        } else {
            ok = ioc_match_domain(s, value, &m);
        }
        if (!ok)
            fail_msg("line %u '%.*s' was not found", it.lineno, (int)len, line);
        found++;
    }
    /* Addresses outside 16.0.0.0/4 and names outside the lists are not. */
    size_t misses = 0;
    for (uint32_t i = 0; i < 200000; i++) {
        uint32_t r = next_rand(&rng);
        uint8_t a[4] = {(uint8_t)(1 + (r >> 28) % 15), (uint8_t)(r >> 16), (uint8_t)(r >> 8),
                        (uint8_t)r};
        char name[64];
        snprintf(name, sizeof(name), "host%u.good%u.example", r, i);
        misses += !ioc_match_addr(s, AF_INET, a, 443, NULL) && !ioc_match_domain(s, name, NULL);
    }
    double t2 = now_s();
    printf("ioc: %zu hits and %zu misses looked up in %.2f s\n", found, misses, t2 - t0);
    assert_int_equal(found, n);
    assert_int_equal(misses, 200000);
    ioc_set_free(s);
    khx_buf_free(&text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ioc_every_kind_matches_and_not_its_neighbours),
        cmocka_unit_test(ioc_longest_prefix_wins),
        cmocka_unit_test(ioc_mapped_ipv6_is_looked_up_as_ipv4),
        cmocka_unit_test(ioc_port_entries_match_their_port),
        cmocka_unit_test(ioc_domain_matches_parents_not_lookalikes),
        cmocka_unit_test(ioc_bad_lines_are_counted_with_their_line_number),
        cmocka_unit_test(ioc_duplicates_keep_the_first_line),
        cmocka_unit_test(ioc_normalize_line_writes_the_canonical_form),
        cmocka_unit_test(ioc_a_million_indicators_load_and_look_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
