/*
 * Tests of the sensor's hit output (sensor/output.h): window 0 writes every
 * match, a window folds matches of one (host, indicator, where) into one hit
 * with its count and first and last time, the JSON line has the documented
 * fields, the spool receives the same hits as c2_hit events, the table of
 * open windows is bounded (the oldest is written early), and concurrent
 * matches are all counted.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "khx.h"
#include "output.h"
#include "spool.h"
#include "testutil.h"

#define T0 1700000000000000LL /* 2023-11-14T22:13:20Z */

struct fixture {
    struct sen_obs obs;
    struct ioc_hit ioc;
    struct sen_hit hit;
};

static void fixture_init(struct fixture *f, const char *name, int64_t ts)
{
    memset(f, 0, sizeof(*f));
    f->obs.where = SEN_DNS_QUERY;
    f->obs.t.family = AF_INET;
    f->obs.t.proto = IPPROTO_UDP;
    f->obs.t.sport = 1030;
    f->obs.t.dport = 53;
    inet_pton(AF_INET, "10.1.2.3", f->obs.t.src);
    inet_pton(AF_INET, "10.9.9.53", f->obs.t.dst);
    f->obs.ts_us = ts;
    f->obs.text = name;
    f->obs.text_len = name ? strlen(name) : 0;
    f->obs.evidence = "A? a.evil.example";
    f->obs.input = "pcap";
    f->ioc.kind = IOC_DOMAIN;
    snprintf(f->ioc.value, sizeof(f->ioc.value), "evil.example");
    f->ioc.nsources = 1;
    f->ioc.sources[0] = (struct ioc_source_ref){"maltrail", "c2", "sofacy", 80, 0};
    f->hit.obs = &f->obs;
    f->hit.ioc = &f->ioc;
    f->hit.host_family = AF_INET;
    memcpy(f->hit.host, f->obs.t.src, 4);
    f->hit.agency_id = 7;
    f->hit.agency_code = "SO-TTTT";
}

/* Reads back every JSON line written to f. */
static size_t read_lines(FILE *f, json_t **out, size_t max)
{
    char line[8192];
    size_t n = 0;
    rewind(f);
    while (n < max && fgets(line, sizeof(line), f) != NULL) {
        json_error_t je;
        out[n] = json_loads(line, 0, &je);
        assert_non_null(out[n]);
        n++;
    }
    return n;
}

static void free_lines(json_t **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(l[i]);
}

static void window_zero_writes_every_match_at_once(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    struct sen_output *o = NULL;
    struct sen_output_opts opts = {.window_s = 0, .jsonl = f, .sensor = "s1"};
    struct fixture fx;
    json_t *l[8];
    assert_int_equal(sen_output_new(&opts, &o), KH_OK);
    for (int i = 0; i < 3; i++) {
        fixture_init(&fx, "a.evil.example", T0 + i * 1000000LL);
        sen_output_hit(o, &fx.hit);
    }
    /* Written before any tick or flush. */
    fflush(f);
    size_t n = read_lines(f, l, 8);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(json_integer_value(json_object_get(l[i], "count")), 1);
    assert_string_not_equal(json_string_value(json_object_get(l[0], "id")),
                            json_string_value(json_object_get(l[1], "id")));
    assert_string_equal(json_string_value(json_object_get(l[2], "first_seen")),
                        "2023-11-14T22:13:22.000000Z");
    struct sen_output_stats st;
    sen_output_stats(o, &st);
    assert_int_equal(st.matches, 3);
    assert_int_equal(st.hits_written, 3);
    free_lines(l, n);
    sen_output_free(o);
    fclose(f);
}

static void window_folds_matches_into_one_hit_with_count_and_times(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    struct sen_output *o = NULL;
    struct sen_output_opts opts = {.window_s = 60, .jsonl = f, .sensor = "s1"};
    struct fixture fx;
    json_t *l[8];
    assert_int_equal(sen_output_new(&opts, &o), KH_OK);
    const int64_t at[] = {0, 10, 30};
    for (int i = 0; i < 3; i++) {
        fixture_init(&fx, "a.evil.example", T0 + at[i] * 1000000LL + 250);
        sen_output_hit(o, &fx.hit);
    }
    /* Another place (the answer) is another hit. */
    fixture_init(&fx, "a.evil.example", T0 + 5000000LL);
    fx.obs.where = SEN_DNS_ANSWER;
    sen_output_hit(o, &fx.hit);

    sen_output_tick(o, T0 + 59000000LL);
    fflush(f);
    assert_int_equal(read_lines(f, l, 8), 0);
    sen_output_tick(o, T0 + 61000000LL);
    fflush(f);
    size_t n = read_lines(f, l, 8);
    assert_int_equal(n, 1);
    assert_string_equal(json_string_value(json_object_get(l[0], "where")), "dns.query");
    assert_int_equal(json_integer_value(json_object_get(l[0], "count")), 3);
    assert_string_equal(json_string_value(json_object_get(l[0], "first_seen")),
                        "2023-11-14T22:13:20.000250Z");
    assert_string_equal(json_string_value(json_object_get(l[0], "last_seen")),
                        "2023-11-14T22:13:50.000250Z");
    free_lines(l, n);

    /* A match after the window opens a new hit, even before a tick. */
    fixture_init(&fx, "a.evil.example", T0 + 70000000LL);
    sen_output_hit(o, &fx.hit);
    sen_output_flush(o);
    fflush(f);
    n = read_lines(f, l, 8);
    assert_int_equal(n, 3);
    assert_string_equal(json_string_value(json_object_get(l[1], "where")), "dns.answer");
    assert_int_equal(json_integer_value(json_object_get(l[2], "count")), 1);
    assert_string_equal(json_string_value(json_object_get(l[2], "first_seen")),
                        "2023-11-14T22:14:30.000000Z");
    free_lines(l, n);
    sen_output_free(o);
    fclose(f);
}

static void json_line_has_the_documented_fields(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    struct sen_output *o = NULL;
    struct sen_output_opts opts = {.window_s = 0, .jsonl = f, .sensor = "sensor-1"};
    struct fixture fx;
    json_t *l[2];
    assert_int_equal(sen_output_new(&opts, &o), KH_OK);
    fixture_init(&fx, "a.evil.example", T0);
    sen_output_hit(o, &fx.hit);
    /* No agency, an address observation, a source that expires. */
    fixture_init(&fx, NULL, T0);
    fx.obs.text = NULL;
    fx.obs.where = SEN_IP_DST;
    fx.obs.addr_family = AF_INET;
    memcpy(fx.obs.addr, fx.obs.t.dst, 4);
    fx.obs.evidence = NULL;
    fx.ioc.kind = IOC_CIDR;
    snprintf(fx.ioc.value, sizeof(fx.ioc.value), "10.9.9.0/24");
    fx.ioc.sources[0] = (struct ioc_source_ref){"ipsum", "malware", "", 50, 1800000000};
    fx.hit.agency_id = 0;
    fx.hit.agency_code = NULL;
    sen_output_hit(o, &fx.hit);
    sen_output_free(o);
    fflush(f);
    assert_int_equal(read_lines(f, l, 2), 2);

    json_t *j = l[0];
    assert_string_equal(json_string_value(json_object_get(j, "type")), "c2_hit");
    assert_int_equal(strlen(json_string_value(json_object_get(j, "id"))), 36);
    assert_true(json_integer_value(json_object_get(j, "at")) > 1700000000);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "host")), "10.1.2.3");
    assert_int_equal(json_integer_value(json_object_get(j, "agency_id")), 7);
    assert_string_equal(json_string_value(json_object_get(j, "agency_code")), "SO-TTTT");
    assert_string_equal(json_string_value(json_object_get(j, "where")), "dns.query");
    assert_string_equal(json_string_value(json_object_get(j, "observed")), "a.evil.example");
    json_t *ind = json_object_get(j, "indicator");
    assert_string_equal(json_string_value(json_object_get(ind, "kind")), "domain");
    assert_string_equal(json_string_value(json_object_get(ind, "value")), "evil.example");
    json_t *src = json_array_get(json_object_get(ind, "sources"), 0);
    assert_string_equal(json_string_value(json_object_get(src, "source")), "maltrail");
    assert_string_equal(json_string_value(json_object_get(src, "category")), "c2");
    assert_string_equal(json_string_value(json_object_get(src, "family")), "sofacy");
    assert_int_equal(json_integer_value(json_object_get(src, "confidence")), 80);
    assert_true(json_is_null(json_object_get(src, "expires")));
    assert_string_equal(json_string_value(json_object_get(j, "category")), "c2");
    assert_string_equal(json_string_value(json_object_get(j, "proto")), "udp");
    assert_string_equal(json_string_value(json_object_get(j, "src_ip")), "10.1.2.3");
    assert_int_equal(json_integer_value(json_object_get(j, "src_port")), 1030);
    assert_string_equal(json_string_value(json_object_get(j, "dest_ip")), "10.9.9.53");
    assert_int_equal(json_integer_value(json_object_get(j, "dest_port")), 53);
    assert_string_equal(json_string_value(json_object_get(j, "evidence")), "A? a.evil.example");
    assert_string_equal(json_string_value(json_object_get(j, "input")), "pcap");
    assert_string_equal(json_string_value(json_object_get(j, "sensor")), "sensor-1");

    j = l[1];
    assert_true(json_is_null(json_object_get(j, "agency_id")));
    assert_true(json_is_null(json_object_get(j, "agency_code")));
    assert_string_equal(json_string_value(json_object_get(j, "where")), "ip.dst");
    assert_string_equal(json_string_value(json_object_get(j, "observed")), "10.9.9.53");
    ind = json_object_get(j, "indicator");
    assert_string_equal(json_string_value(json_object_get(ind, "kind")), "cidr");
    src = json_array_get(json_object_get(ind, "sources"), 0);
    assert_true(json_is_null(json_object_get(src, "family")));
    assert_int_equal(json_integer_value(json_object_get(src, "expires")), 1800000000);
    assert_true(json_is_null(json_object_get(j, "evidence")));
    free_lines(l, 2);
    fclose(f);
}

static void hits_reach_the_spool_as_c2_hit_events(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    char sdir[512], err[256] = "";
    struct spool *sp = NULL;
    snprintf(sdir, sizeof(sdir), "%s/spool", dir);
    assert_int_equal(spool_open(sdir, 0, 0, &sp, err, sizeof(err)), KH_OK);
    FILE *f = tmpfile();
    struct sen_output *o = NULL;
    struct sen_output_opts opts = {.window_s = 60, .jsonl = f, .spool = sp, .sensor = "s1"};
    struct fixture fx;
    assert_int_equal(sen_output_new(&opts, &o), KH_OK);
    fixture_init(&fx, "a.evil.example", T0);
    sen_output_hit(o, &fx.hit);
    sen_output_hit(o, &fx.hit);
    fixture_init(&fx, "b.evil.example", T0);
    fx.hit.host[3] = 4;
    sen_output_hit(o, &fx.hit);
    sen_output_flush(o);

    struct spool_batch b;
    memset(&b, 0, sizeof(b));
    assert_int_equal(spool_peek(sp, 0, 0, &b), KH_OK);
    assert_int_equal(b.count, 2);
    json_t *arr = json_loads(b.json, 0, NULL);
    assert_non_null(arr);
    json_t *lines[4];
    fflush(f);
    assert_int_equal(read_lines(f, lines, 4), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *ev = json_array_get(arr, i);
        assert_string_equal(json_string_value(json_object_get(ev, "type")), "c2_hit");
        /* The event is the JSON line: same id, same count. */
        assert_true(json_equal(ev, lines[i]));
    }
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "count")), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "host")),
                        "10.1.2.4");
    json_decref(arr);
    free_lines(lines, 2);
    spool_batch_free(&b);
    sen_output_free(o);
    spool_close(sp);
    fclose(f);
    tu_rmtree(dir);
}

static void full_table_writes_the_oldest_window_early(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    struct sen_output *o = NULL;
    struct sen_output_opts opts = {.window_s = 3600, .jsonl = f, .max_pending = 2};
    struct fixture fx;
    json_t *l[8];
    assert_int_equal(sen_output_new(&opts, &o), KH_OK);
    for (int i = 0; i < 3; i++) {
        fixture_init(&fx, "a.evil.example", T0 + i);
        fx.hit.host[3] = (uint8_t)(10 + i);
        sen_output_hit(o, &fx.hit);
        sen_output_hit(o, &fx.hit);
    }
    fflush(f);
    size_t n = read_lines(f, l, 8);
    assert_int_equal(n, 1);
    assert_string_equal(json_string_value(json_object_get(l[0], "host")), "10.1.2.10");
    assert_int_equal(json_integer_value(json_object_get(l[0], "count")), 2);
    free_lines(l, n);
    struct sen_output_stats st;
    sen_output_stats(o, &st);
    assert_int_equal(st.evicted_early, 1);
    assert_int_equal(st.matches, 6);
    sen_output_free(o);
    fflush(f);
    n = read_lines(f, l, 8);
    assert_int_equal(n, 3);
    free_lines(l, n);
    fclose(f);
}

struct racer {
    struct sen_output *o;
    int id;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct fixture fx;
    for (int i = 0; i < 2000; i++) {
        fixture_init(&fx, "a.evil.example", T0 + i);
        fx.obs.where = i % 2 ? SEN_DNS_QUERY : SEN_TLS_SNI;
        sen_output_hit(r->o, &fx.hit);
    }
    return NULL;
}

static void concurrent_matches_are_all_counted(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    struct sen_output *o = NULL;
    struct sen_output_opts opts = {.window_s = 3600, .jsonl = f};
    json_t *l[8];
    pthread_t t[4];
    struct racer r[4];
    assert_int_equal(sen_output_new(&opts, &o), KH_OK);
    for (int i = 0; i < 4; i++) {
        r[i] = (struct racer){o, i};
        pthread_create(&t[i], NULL, race, &r[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    sen_output_free(o);
    fflush(f);
    size_t n = read_lines(f, l, 8);
    assert_int_equal(n, 2);
    assert_int_equal(json_integer_value(json_object_get(l[0], "count")) +
                         json_integer_value(json_object_get(l[1], "count")),
                     8000);
    free_lines(l, n);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(window_zero_writes_every_match_at_once),
        cmocka_unit_test(window_folds_matches_into_one_hit_with_count_and_times),
        cmocka_unit_test(json_line_has_the_documented_fields),
        cmocka_unit_test(hits_reach_the_spool_as_c2_hit_events),
        cmocka_unit_test(full_table_writes_the_oldest_window_early),
        cmocka_unit_test(concurrent_matches_are_all_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
