/*
 * The sensor's uplink (sensor/uplink.h) against the real server, started
 * from this build on a free loopback port (tu_server_start in testutil.c,
 * as test_client.c does): a sensor enrolls with a token and gets
 * the agent's files; the uplink thread checks in as role "sensor", sends the
 * hits the output spooled (and the spool is empty afterwards), and installs
 * a published bundle, handing its indicator list to on_indicators. Skips,
 * saying so, when the khien binary is not built.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <khien/khien.h>

#include "client.h"
#include "khx.h"
#include "output.h"
#include "spool.h"
#include "uplink.h"

/* The server every test talks to, started once for the group, and an
 * enrollment token made on it. */
static struct tu_server srv;
static char enroll_token[128]; /* reusable */

/* Starts the server, creates an agency and a reusable token. */
static int group_setup(void **state)
{
    char agency[32] = "";
    (void)state;
    if (tu_server_start(&srv) != 0)
        return -1;
    if (!srv.up)
        return 0;
    if (tu_admin_agency(&srv, "test-sensor", "Sensor test", agency, sizeof(agency)) != 0 ||
        tu_admin_token(&srv, agency, "{\"max_uses\":0}", enroll_token, sizeof(enroll_token), NULL,
                       0) != 0) {
        fprintf(stderr, "%s\n", srv.why);
        tu_server_print_log(&srv);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_server_stop(&srv);
    return 0;
}

#define NEED_SERVER() TU_NEED_SERVER(&srv)

/* ------------------------------------------------------------------------ */

struct seen {
    pthread_mutex_t lock;
    int64_t version;
    char iocs[4096];
    int networks_calls;
};

static void on_indicators(void *ctx, const char *path, int64_t version)
{
    struct seen *s = ctx;
    uint8_t *data = NULL;
    size_t len = 0;
    pthread_mutex_lock(&s->lock);
    s->version = version;
    if (khx_read_file(path, sizeof(s->iocs) - 1, &data, &len) == KH_OK)
        snprintf(s->iocs, sizeof(s->iocs), "%s", (const char *)data);
    free(data);
    pthread_mutex_unlock(&s->lock);
}

static void on_networks(void *ctx, json_t *networks)
{
    struct seen *s = ctx;
    (void)networks;
    pthread_mutex_lock(&s->lock);
    s->networks_calls++;
    pthread_mutex_unlock(&s->lock);
}

static void spool_one_hit(struct spool *sp)
{
    struct sen_output *o = NULL;
    struct sen_output_opts opts = {.window_s = 0, .spool = sp, .sensor = "uplink-test"};
    struct sen_obs obs;
    struct ioc_hit ih;
    struct sen_hit h;
    memset(&obs, 0, sizeof(obs));
    memset(&ih, 0, sizeof(ih));
    memset(&h, 0, sizeof(h));
    obs.where = SEN_DNS_QUERY;
    obs.t.family = AF_INET;
    obs.t.proto = IPPROTO_UDP;
    inet_pton(AF_INET, "10.1.2.3", obs.t.src);
    inet_pton(AF_INET, "10.9.9.53", obs.t.dst);
    obs.t.sport = 1030;
    obs.t.dport = 53;
    obs.ts_us = (int64_t)time(NULL) * 1000000;
    obs.text = "a.evil.example";
    obs.text_len = strlen(obs.text);
    obs.input = "pcap";
    ih.kind = IOC_DOMAIN;
    snprintf(ih.value, sizeof(ih.value), "evil.example");
    ih.nsources = 1;
    ih.sources[0] = (struct ioc_source_ref){"test", "c2", "", 90, 0};
    h.obs = &obs;
    h.ioc = &ih;
    h.host_family = AF_INET;
    memcpy(h.host, obs.t.src, 4);
    assert_int_equal(sen_output_new(&opts, &o), KH_OK);
    sen_output_hit(o, &h);
    struct sen_output_stats st;
    sen_output_stats(o, &st);
    assert_int_equal(st.hits_written, 1);
    assert_int_equal(st.spool_errors, 0);
    sen_output_free(o);
}

static int64_t publish_with_indicators(void)
{
    static const char ndb[] = "Khien.Test.SensorBundle:0:*:4b4849454e2d53454e534f52\n";
    static const char iocs[] = "evil.example c2 test\n203.0.113.7 c2 test\n";
    assert_int_equal(tu_admin_upload(&srv, "clamav", "sensor.ndb", ndb) / 100, 2);
    assert_int_equal(tu_admin_upload(&srv, "indicators", "c2.txt", iocs) / 100, 2);
    int64_t version = tu_admin_publish(&srv);
    assert_true(version > 0);
    return version;
}

static void sensor_enrolls_checks_in_sends_hits_and_installs_indicators(void **state)
{
    (void)state;
    NEED_SERVER();
    char dir[PATH_MAX], path[PATH_MAX + 32], err[512] = "";
    struct spool *sp = NULL;
    struct sen_uplink *u = NULL;
    struct seen seen;
    memset(&seen, 0, sizeof(seen));
    pthread_mutex_init(&seen.lock, NULL);
    snprintf(dir, sizeof(dir), "%s/sensor", srv.tmp);

    if (sen_uplink_enroll(dir, srv.url, enroll_token, srv.ca, err, sizeof(err)) != KH_OK)
        fail_msg("enroll: %s", err);
    static const char *const files[] = {"agent.key", "agent.crt", "ca.crt", "agent.json"};
    for (size_t i = 0; i < KHX_ARRAY_LEN(files); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        assert_int_equal(access(path, R_OK), 0);
    }
    int64_t version = publish_with_indicators();
    assert_true(version > 0);

    snprintf(path, sizeof(path), "%s/spool", dir);
    assert_int_equal(spool_open(path, 0, 0, &sp, err, sizeof(err)), KH_OK);
    spool_one_hit(sp);

    struct sen_uplink_opts o = {.state_dir = dir,
                                .spool = sp,
                                .ctx = &seen,
                                .on_indicators = on_indicators,
                                .on_networks = on_networks,
                                .checkin_s = 1,
                                .flush_s = 1};
    if (sen_uplink_start(&o, &u, err, sizeof(err)) != KH_OK)
        fail_msg("uplink: %s", err);
    struct sen_uplink_status st;
    int64_t got_version = 0;
    /* At most 60 s: a bound for a broken uplink, not a timing assertion. */
    for (int i = 0; i < 600; i++) {
        sen_uplink_status(u, &st);
        pthread_mutex_lock(&seen.lock);
        got_version = seen.version;
        pthread_mutex_unlock(&seen.lock);
        if (st.last_checkin > 0 && st.events_sent >= 1 && got_version == version)
            break;
        usleep(100000);
    }
    sen_uplink_free(u);
    if (st.last_checkin == 0)
        fail_msg("no check-in: %s", st.last_error);
    assert_true(st.events_sent >= 1);
    assert_int_equal(got_version, version);
    assert_int_equal(st.db_version, version);
    assert_non_null(strstr(seen.iocs, "evil.example"));
    assert_true(st.machine_id[0] != '\0');
    struct spool_stats ss;
    spool_stats(sp, &ss);
    assert_int_equal(ss.events, 0);

    /* A restart hands the installed list and the saved agency ranges over
     * again before any check-in. */
    memset(seen.iocs, 0, sizeof(seen.iocs));
    seen.version = 0;
    seen.networks_calls = 0;
    static const char nets[] =
        "[{\"cidr\":\"10.1.0.0/16\",\"agency_id\":7,\"agency_code\":\"SO-GD\"}]";
    free(tu_write(dir, "networks.json", nets, strlen(nets)));
    o.checkin_s = 3600;
    assert_int_equal(sen_uplink_start(&o, &u, err, sizeof(err)), KH_OK);
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&seen.lock);
        got_version = seen.version;
        pthread_mutex_unlock(&seen.lock);
        if (got_version != 0)
            break;
        usleep(50000);
    }
    sen_uplink_free(u);
    assert_int_equal(got_version, version);
    assert_true(seen.networks_calls >= 1);
    spool_close(sp);
}

static void uplink_without_enrollment_says_so(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    char err[512] = "";
    struct sen_uplink *u = NULL;
    struct sen_uplink_opts o = {.state_dir = dir};
    assert_int_equal(sen_uplink_start(&o, &u, err, sizeof(err)), KH_ENOTFOUND);
    assert_null(u);
    assert_non_null(strstr(err, "not enrolled"));
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sensor_enrolls_checks_in_sends_hits_and_installs_indicators),
        cmocka_unit_test(uplink_without_enrollment_says_so),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
