/*
 * The sensor's uplink (sensor/uplink.h) against the real server, started
 * from this build on a free loopback port as in test_client.c (whose
 * server scaffold this file repeats): a sensor enrolls with a token and gets
 * the agent's files; the uplink thread checks in as role "sensor", sends the
 * hits the output spooled (and the spool is empty afterwards), and installs
 * a published bundle, handing its indicator list to on_indicators. Skips,
 * saying so, when the khien binary is not built.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include <khien/khien.h>

#include "client.h"
#include "khx.h"
#include "output.h"
#include "spool.h"
#include "uplink.h"

extern char **environ;

/* The server every test talks to, started once for the group. */
static struct {
    int up;
    char why[512]; /* why the tests skip, when !up */
    pid_t pid;
    char tmp[256];
    char data[320];
    char ca[400];
    char url[64];
    char password[128];
    char csrf[128];
    char token[128]; /* reusable */
    CURL *admin;
} srv;

/* ------------------------------------------------------------------------ */
/* Starting the server                                                      */
/* ------------------------------------------------------------------------ */

/* A port nothing listens on now: bind to port 0 and ask which one we got. */
static int free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* Runs argv with stdout and stderr to `out`; returns the child's pid. */
static pid_t spawn(char *const argv[], const char *out)
{
    posix_spawn_file_actions_t fa;
    pid_t pid = -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

static void print_file(const char *path)
{
    uint8_t *text = NULL;
    size_t len = 0;
    if (khx_read_file(path, 64 * 1024, &text, &len) == KH_OK)
        fprintf(stderr, "--- %s ---\n%s\n---\n", path, (char *)text);
    free(text);
}

static size_t collect(char *data, size_t size, size_t nmemb, void *ud)
{
    return khx_buf_append(ud, data, size * nmemb) == KH_OK ? size * nmemb : 0;
}

/* One dashboard API call as the administrator (session cookie and CSRF
 * header); the answer's JSON in *out (may be NULL). Returns the status. */
static long admin_call(const char *method, const char *path, const char *ctype, const char *body,
                       json_t **out)
{
    struct khx_buf b;
    struct curl_slist *h = NULL;
    char url[512], hdr[200];
    long status = 0;

    khx_buf_init(&b, 1u << 20);
    snprintf(url, sizeof(url), "%s/api/v1%s", srv.url, path);
    if (ctype != NULL) {
        snprintf(hdr, sizeof(hdr), "Content-Type: %s", ctype);
        h = curl_slist_append(h, hdr);
    }
    if (srv.csrf[0] != '\0') {
        snprintf(hdr, sizeof(hdr), "X-CSRF-Token: %s", srv.csrf);
        h = curl_slist_append(h, hdr);
    }
    CURL *c = srv.admin;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (body != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    else
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    if (out != NULL)
        *out = b.len > 0 ? json_loadb((const char *)b.data, b.len, 0, NULL) : NULL;
    khx_buf_free(&b);
    return status;
}

/* Copies the string field `key` of the object into dst; 0 when it is one. */
static int json_field(json_t *obj, const char *key, char *dst, size_t cap)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        snprintf(dst, cap, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(dst, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        return -1;
    return 0;
}

/* Logs in, creates an agency, a reusable token and a revoked one. */
static int admin_setup(void)
{
    json_t *j = NULL, *body = NULL;
    char agency[32] = "", path[128];
    char *text = NULL;
    int ok = -1;

    srv.admin = curl_easy_init();
    curl_easy_setopt(srv.admin, CURLOPT_CAINFO, srv.ca);
    curl_easy_setopt(srv.admin, CURLOPT_COOKIEFILE, ""); /* the cookie engine, in memory */
    curl_easy_setopt(srv.admin, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(srv.admin, CURLOPT_TIMEOUT, 30L);

    body = json_pack("{s:s,s:s}", "username", "admin", "password", srv.password);
    text = json_dumps(body, JSON_COMPACT);
    if (admin_call("POST", "/login", "application/json", text, &j) != 200 ||
        json_field(j, "csrf", srv.csrf, sizeof(srv.csrf)) != 0) {
        snprintf(srv.why, sizeof(srv.why), "administrator login failed");
        goto out;
    }
    json_decref(j);
    j = NULL;
    if (admin_call("POST", "/agencies", "application/json",
                   "{\"code\":\"test-sensor\",\"name\":\"Sensor test\",\"kind\":\"department\"}",
                   &j) /
                100 !=
            2 ||
        json_field(j, "id", agency, sizeof(agency)) != 0) {
        snprintf(srv.why, sizeof(srv.why), "creating an agency failed");
        goto out;
    }
    json_decref(j);
    j = NULL;
    snprintf(path, sizeof(path), "/agencies/%s/enroll-tokens", agency);
    if (admin_call("POST", path, "application/json", "{\"max_uses\":0}", &j) / 100 != 2 ||
        json_field(j, "token", srv.token, sizeof(srv.token)) != 0) {
        snprintf(srv.why, sizeof(srv.why), "creating an enrollment token failed");
        goto out;
    }
    ok = 0;
out:
    json_decref(j);
    json_decref(body);
    free(text);
    return ok;
}

/* Waits until /health answers 200 (or the server dies). */
static int wait_healthy(void)
{
    struct client_opts o = {.server = srv.url, .ca_file = srv.ca, .timeout_s = 5};
    struct client *c = NULL;
    int ok = -1;
    if (client_new(&o, &c, NULL, 0) != KH_OK)
        return -1;
    for (int i = 0; i < 300; i++) {
        struct client_resp resp;
        int status;
        if (waitpid(srv.pid, &status, WNOHANG) == srv.pid) {
            srv.pid = -1;
            break;
        }
        if (client_call(c, "GET", "/health", NULL, 0, 0, &resp) == KH_OK && resp.status == 200) {
            client_resp_free(&resp);
            ok = 0;
            break;
        }
        client_resp_free(&resp);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    client_free(c);
    return ok;
}

static int group_setup(void **state)
{
    (void)state;
    char bin[PATH_MAX], out[400], log[400], listen[64], line[256];
    const char *dir = getenv("KHIEN_BIN");

    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    snprintf(bin, sizeof(bin), "%s/khien", dir != NULL ? dir : "bin");
    if (access(bin, X_OK) != 0) {
        if (snprintf(srv.why, sizeof(srv.why), "%s is not built (target khien-cli)", bin) < 0)
            srv.why[0] = '\0';
        return 0;
    }
    snprintf(srv.tmp, sizeof(srv.tmp), "%s", tu_mkdtemp());
    snprintf(srv.data, sizeof(srv.data), "%s/data", srv.tmp);
    snprintf(srv.ca, sizeof(srv.ca), "%s/ca.crt", srv.data);
    snprintf(out, sizeof(out), "%s/init.out", srv.tmp);
    snprintf(log, sizeof(log), "%s/server.log", srv.tmp);

    /* A free port may be taken between finding it and the server binding
     * it: a few tries. */
    for (int attempt = 0; attempt < 5 && !srv.up; attempt++) {
        int port = free_port(), status = 0;
        if (port <= 0)
            continue;
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        snprintf(srv.url, sizeof(srv.url), "https://127.0.0.1:%d", port);
        if (attempt == 0) {
            char *init[] = {bin, "server", "init", "--data", srv.data, "--listen", listen, NULL};
            pid_t pid = spawn(init, out);
            if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
                WEXITSTATUS(status) != 0) {
                print_file(out);
                snprintf(srv.why, sizeof(srv.why), "khien server init failed");
                return -1;
            }
            FILE *f = fopen(out, "r");
            while (f != NULL && fgets(line, sizeof(line), f) != NULL)
                if (sscanf(line, "admin password: %127s", srv.password) == 1)
                    break;
            if (f != NULL)
                fclose(f);
            if (srv.password[0] == '\0') {
                print_file(out);
                return -1;
            }
        }
        char *run[] = {bin, "server", "run", "--data", srv.data, "--listen", listen, NULL};
        if ((srv.pid = spawn(run, log)) < 0)
            return -1;
        if (wait_healthy() == 0) {
            srv.up = 1;
            break;
        }
        if (srv.pid > 0) {
            kill(srv.pid, SIGTERM);
            waitpid(srv.pid, NULL, 0);
            srv.pid = -1;
        }
    }
    if (!srv.up) {
        print_file(log);
        return -1;
    }
    if (admin_setup() != 0) {
        fprintf(stderr, "%s\n", srv.why);
        print_file(log);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (srv.pid > 0) {
        kill(srv.pid, SIGTERM);
        waitpid(srv.pid, NULL, 0);
    }
    if (srv.admin != NULL)
        curl_easy_cleanup(srv.admin);
    if (srv.tmp[0] != '\0')
        tu_rmtree(srv.tmp);
    curl_global_cleanup();
    return 0;
}

#define NEED_SERVER()                                                                              \
    do {                                                                                           \
        if (!srv.up) {                                                                             \
            print_message("SKIP: %s\n", srv.why);                                                  \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

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
    json_t *j = NULL;
    char version[32] = "";
    assert_int_equal(admin_call("PUT", "/signatures/sources/upload?kind=clamav&name=sensor.ndb",
                                "application/octet-stream", ndb, NULL) /
                         100,
                     2);
    assert_int_equal(admin_call("PUT", "/signatures/sources/upload?kind=indicators&name=c2.txt",
                                "application/octet-stream", iocs, NULL) /
                         100,
                     2);
    assert_int_equal(admin_call("POST", "/signatures/publish", "application/json", "{}", &j), 200);
    assert_int_equal(json_field(j, "version", version, sizeof(version)), 0);
    json_decref(j);
    return strtoll(version, NULL, 10);
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

    if (sen_uplink_enroll(dir, srv.url, srv.token, srv.ca, err, sizeof(err)) != KH_OK)
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
