/*
 * The fast ways of reading a large plain list (lib/ioc/feed_pipe.c: parsing
 * on a second thread, the fast path for canonical values and the hints it
 * passes to the builder so that checked domains and repeated words are not
 * checked again) must build the same store as reading on one thread. A
 * mixed list larger than the two-thread threshold is read both ways
 * (KHIEN_FEED_THREADS=1 and 2); the read counts, the build counts and every
 * lookup, with its sources, categories and families, must agree. Byte
 * comparison is not possible: every store has its own random hash key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "feed.h"
#include "khien/khien.h"
#include "store.h"
#include "testutil.h"

enum { LINES = 240000 }; /* about 7 MiB, above the two-thread threshold of 4 MiB */

/* One line of the mixed list, and the value a lookup should find (or not). */
static void line_of(unsigned i, char *line, size_t cap)
{
    static const char *const cats[] = {"c2", "malware", "phishing"};
    static const char *const srcs[] = {"feed-a", "feed-b"};
    /* Words change in runs, so the one-record caches see both repeats and
     * changes. */
    const char *cat = cats[(i / 7) % 3], *src = srcs[(i / 1000) % 2];
    switch (i % 12) {
    case 0:
        snprintf(line, cap, "bad-%u.example.net %s %s", i, cat, src);
        break;
    case 1:
        snprintf(line, cap, "Upper-%u.Example.COM. %s %s", i, cat, src);
        break;
    case 2:
        snprintf(line, cap, "0.0.0.0 hosts-%u.example.org", i);
        break;
    case 3:
        snprintf(line, cap, "203.%u.%u.%u %s", (i >> 16) & 255, (i >> 8) & 255, i & 255, cat);
        break;
    case 4:
        snprintf(line, cap, "198.%u.%u.%u:%u %s %s", (i >> 16) & 255, (i >> 8) & 255, i & 255,
                 1024 + i % 50000, cat, src);
        break;
    case 5:
        snprintf(line, cap, "100.%u.%u.0/24", (i >> 8) & 255, i & 255);
        break;
    case 6:
        snprintf(line, cap, "http://site-%u.example.info/path/%u?q=1 %s", i, i, cat);
        break;
    case 7:
        snprintf(line, cap, "not a valid line %u !!", i);
        break;
    case 8:
        snprintf(line, cap, "# comment %u", i);
        break;
    case 9:
        /* The same value from the other source: merged. */
        snprintf(line, cap, "bad-%u.example.net %s %s", i - 9, cat, srcs[1 - (i / 1000) % 2]);
        break;
    case 10:
        snprintf(line, cap, "xn--80ak6aa92e-%u.example %s", i, src);
        break;
    default:
        snprintf(line, cap, "bad_label-%u..example.net", i);
        break;
    }
}

struct built {
    struct ioc_read_stats rs;
    struct ioc_build_stats bs;
    struct ioc_store *store;
};

static void build(const char *list, const char *dir, const char *threads, struct built *out)
{
    struct ioc_builder *b = NULL;
    struct ioc_read_opts ro = {.source = "list", .category = "malware"};
    char path[600], err[256];
    memset(out, 0, sizeof(*out));
    setenv("KHIEN_FEED_THREADS", threads, 1);
    assert_int_equal(ioc_builder_new(NULL, &b), KH_OK);
    assert_int_equal(ioc_read_path(list, IOC_FMT_PLAIN, &ro, ioc_builder_add_fn, b, &out->rs),
                     KH_OK);
    snprintf(path, sizeof(path), "%s/t%s.kis", dir, threads);
    assert_int_equal(ioc_builder_write(b, path, &out->bs, err, sizeof(err)), KH_OK);
    ioc_builder_free(b);
    assert_int_equal(ioc_store_open(path, &out->store, err, sizeof(err)), KH_OK);
    unsetenv("KHIEN_FEED_THREADS");
}

/* The hit as one comparable text: value, then each source's words. */
static void hit_text(int r, const struct ioc_hit *h, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "%d", r);
    if (r != IOC_MATCH)
        return;
    n += (size_t)snprintf(out + n, cap - n, " %d %s", h->kind, h->value);
    for (size_t i = 0; i < h->nsources && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, " [%s %s %s %u]", h->sources[i].source,
                              h->sources[i].category, h->sources[i].family,
                              h->sources[i].confidence);
}

static void lookup(const struct ioc_store *s, unsigned i, char *out, size_t cap)
{
    struct ioc_hit h;
    char v[256];
    int r;
    memset(&h, 0, sizeof(h));
    switch (i % 12) {
    case 0:
    case 9:
        snprintf(v, sizeof(v), "www.bad-%u.example.net", i - i % 12);
        r = ioc_store_match_domain(s, v, strlen(v), 0, &h);
        break;
    case 1:
        snprintf(v, sizeof(v), "upper-%u.example.com", i);
        r = ioc_store_match_domain(s, v, strlen(v), 0, &h);
        break;
    case 2:
        snprintf(v, sizeof(v), "hosts-%u.example.org", i);
        r = ioc_store_match_domain(s, v, strlen(v), 0, &h);
        break;
    case 3:
    case 4:
    case 5: {
        uint8_t a[4];
        snprintf(v, sizeof(v), "%u.%u.%u.%u",
                 i % 12 == 3   ? 203
                 : i % 12 == 4 ? 198
                               : 100,
                 i % 12 == 5 ? (i >> 8) & 255 : (i >> 16) & 255,
                 i % 12 == 5 ? i & 255 : (i >> 8) & 255, i % 12 == 5 ? 77 : i & 255);
        assert_int_equal(inet_pton(AF_INET, v, a), 1);
        r = ioc_store_match_addr(s, AF_INET, a, (uint16_t)(i % 12 == 4 ? 1024 + i % 50000 : 0), 0,
                                 &h);
        break;
    }
    case 6:
        snprintf(v, sizeof(v), "site-%u.example.info/path/%u?q=1", i, i);
        r = ioc_store_match_url(s, v, strlen(v), 0, &h);
        break;
    case 10:
        snprintf(v, sizeof(v), "xn--80ak6aa92e-%u.example", i);
        r = ioc_store_match_domain(s, v, strlen(v), 0, &h);
        break;
    default:
        snprintf(v, sizeof(v), "miss-%u.example.net", i);
        r = ioc_store_match_domain(s, v, strlen(v), 0, &h);
        break;
    }
    hit_text(r, &h, out, cap);
}

static void two_threads_build_what_one_thread_builds(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    char list[600], line[300];
    snprintf(list, sizeof(list), "%s/mixed.txt", dir);
    FILE *f = fopen(list, "w");
    assert_non_null(f);
    for (unsigned i = 0; i < LINES; i++) {
        line_of(i, line, sizeof(line));
        fprintf(f, "%s\n", line);
    }
    assert_int_equal(fclose(f), 0);

    struct built one, two;
    build(list, dir, "1", &one);
    build(list, dir, "2", &two);
    assert_int_equal(one.rs.records, two.rs.records);
    assert_int_equal(one.rs.rejected, two.rs.rejected);
    assert_int_equal(one.rs.skipped, two.rs.skipped);
    assert_true(one.rs.rejected >= 2 * (LINES / 12));
    assert_int_equal(one.bs.indicators, two.bs.indicators);
    assert_int_equal(one.bs.merged, two.bs.merged);
    assert_true(one.bs.merged >= LINES / 12 - 1);
    for (int k = 0; k < IOC_KIND_COUNT; k++)
        assert_int_equal(one.bs.counts[k], two.bs.counts[k]);

    unsigned matched = 0;
    for (unsigned i = 0; i < LINES; i++) {
        char a[2048], b[2048];
        lookup(one.store, i, a, sizeof(a));
        lookup(two.store, i, b, sizeof(b));
        if (strcmp(a, b) != 0)
            fail_msg("line %u: one thread %s, two threads %s", i, a, b);
        matched += a[0] == '1';
    }
    /* Domains (4 kinds of line), addresses, ports, prefixes and URLs hit. */
    assert_true(matched >= 8 * (LINES / 12));
    ioc_store_close(one.store);
    ioc_store_close(two.store);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_threads_build_what_one_thread_builds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
