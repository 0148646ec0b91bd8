/*
 * The agent's HTTPS client (agent/client.c) against the real server: the
 * test starts `khien server` from this build on a free loopback port,
 * creates an agency and enrollment tokens through the dashboard API as an
 * administrator would, and then acts as an agent. Proven here: enrollment
 * writes a private key (0600) and the certificates, re-enrollment with the
 * machine id keeps the id and supersedes the old certificate, a refused
 * token leaves earlier files alone and says why, check-in over mutual TLS
 * is accepted and refused without a certificate, gzip'd bodies are
 * accepted, downloads land only on 200 (and unpack with the bundle key from
 * enrollment) and respect their size cap, and a server that is down or not
 * trusted is a transport error with a message. The tests skip, saying so,
 * when the khien binary is not built.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include <khien/khien.h>

#include "client.h"
#include "khx.h"
#include "update.h"

/* The server every test talks to, started once for the group, and the
 * enrollment tokens made on it. */
static struct tu_server srv;
static char enroll_token[128];  /* reusable */
static char revoked_token[128]; /* revoked at once */

/* Starts the server, creates an agency, a reusable token and a revoked one. */
static int group_setup(void **state)
{
    char agency[32] = "", revoked_id[32] = "", path[128];
    (void)state;
    if (tu_server_start(&srv) != 0)
        return -1;
    if (!srv.up)
        return 0;
    if (tu_admin_agency(&srv, "test-client", "Client test", agency, sizeof(agency)) != 0 ||
        tu_admin_token(&srv, agency, "{\"max_uses\":0}", enroll_token, sizeof(enroll_token), NULL,
                       0) != 0 ||
        tu_admin_token(&srv, agency, "{}", revoked_token, sizeof(revoked_token), revoked_id,
                       sizeof(revoked_id)) != 0)
        goto fail;
    snprintf(path, sizeof(path), "/enroll-tokens/%s", revoked_id);
    if (tu_admin_call(&srv, "DELETE", path, NULL, NULL, NULL) / 100 != 2) {
        snprintf(srv.why, sizeof(srv.why), "revoking a token failed");
        goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "%s\n", srv.why);
    tu_server_print_log(&srv);
    return -1;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_server_stop(&srv);
    return 0;
}

#define NEED_SERVER() TU_NEED_SERVER(&srv)

/* ------------------------------------------------------------------------ */
/* Helpers for the tests                                                    */
/* ------------------------------------------------------------------------ */

static void file_in(const char *dir, const char *name, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        fail_msg("path %s/%s is too long", dir, name);
}

/* A fresh state folder under the group's temporary folder. */
static void state_dir(const char *name, char *out, size_t cap)
{
    file_in(srv.tmp, name, out, cap);
}

static int enroll(const char *dir, const char *token, const char *ca, const char *machine_id,
                  struct enroll_result *res, char *err, size_t errlen)
{
    struct enroll_request req = {
        .server = srv.url,
        .ca_file = ca,
        .token = token,
        .hostname = "test-host",
        .machine_key = NULL,
        .machine_id = machine_id,
        .state_dir = dir,
    };
    memset(res, 0, sizeof(*res));
    return client_enroll(&req, res, err, errlen);
}

/* An mTLS client with the enrollment in `dir`. */
static struct client *agent_client(const char *dir)
{
    char ca[PATH_MAX], crt[PATH_MAX], key[PATH_MAX], err[256] = "";
    struct client *c = NULL;
    file_in(dir, "ca.crt", ca, sizeof(ca));
    file_in(dir, "agent.crt", crt, sizeof(crt));
    file_in(dir, "agent.key", key, sizeof(key));
    struct client_opts o = {
        .server = srv.url, .ca_file = ca, .cert_file = crt, .key_file = key, .timeout_s = 20};
    if (client_new(&o, &c, err, sizeof(err)) != KH_OK)
        fail_msg("client_new: %s", err);
    return c;
}

static char *slurp(const char *path)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (khx_read_file(path, 1u << 20, &data, &len) != KH_OK)
        return NULL;
    return (char *)data;
}

static void assert_no_staged_files(const char *dir)
{
    static const char *const names[] = {"agent.key.new", "agent.crt.new", "ca.crt.new"};
    char path[PATH_MAX];
    for (size_t i = 0; i < KHX_ARRAY_LEN(names); i++) {
        file_in(dir, names[i], path, sizeof(path));
        if (access(path, F_OK) == 0)
            fail_msg("%s was left behind", path);
    }
}

/* POST /agent/checkin with a small document; returns the status. */
static long checkin(struct client *c)
{
    static const char doc[] = "{\"hostname\":\"test-host\",\"agent_version\":\"0.1.0\"}";
    struct client_resp resp;
    int r = client_call(c, "POST", "/agent/checkin", doc, strlen(doc), 0, &resp);
    if (r != KH_OK)
        fail_msg("check-in: %s", resp.error);
    long status = resp.status;
    client_resp_free(&resp);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Enrollment                                                               */
/* ------------------------------------------------------------------------ */

static void client_enroll_writes_a_private_key_and_certificates(void **state)
{
    (void)state;
    NEED_SERVER();
    struct enroll_result res;
    char dir[PATH_MAX], path[PATH_MAX], err[256] = "";
    struct stat st;
    state_dir("enroll", dir, sizeof(dir));

    assert_int_equal(enroll(dir, enroll_token, srv.ca, NULL, &res, err, sizeof(err)), KH_OK);
    assert_int_equal(strlen(res.machine_id), 36);
    assert_int_equal(strlen(res.key_id), 16);
    assert_true(strlen(res.bundle_key) == 44);
    assert_string_equal(res.agency_code, "test-client");
    assert_string_equal(res.agency_name, "Client test");
    assert_true(res.checkin_interval > 0);
    assert_false(res.reenrolled);

    file_in(dir, "agent.key", path, sizeof(path));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *key = slurp(path);
    assert_non_null(strstr(key, "PRIVATE KEY"));
    free(key);
    file_in(dir, "agent.crt", path, sizeof(path));
    char *crt = slurp(path);
    assert_non_null(crt);
    assert_memory_equal(crt, "-----BEGIN CERTIFICATE-----", 27);
    free(crt);
    /* The stored CA is the server's. */
    file_in(dir, "ca.crt", path, sizeof(path));
    char *ca = slurp(path), *server_ca = slurp(srv.ca);
    assert_string_equal(ca, server_ca);
    free(ca);
    free(server_ca);
    assert_no_staged_files(dir);
}

static void client_reenroll_with_machine_id_keeps_the_id(void **state)
{
    (void)state;
    NEED_SERVER();
    struct enroll_result first, second;
    char dir[PATH_MAX], old_dir[PATH_MAX], from[PATH_MAX], err[256] = "";
    state_dir("reenroll", dir, sizeof(dir));
    state_dir("reenroll-old", old_dir, sizeof(old_dir));

    assert_int_equal(enroll(dir, enroll_token, srv.ca, NULL, &first, err, sizeof(err)), KH_OK);
    /* Keep the first enrollment's files to try them afterwards. */
    assert_int_equal(mkdir(old_dir, 0700), 0);
    static const char *const names[] = {"agent.key", "agent.crt", "ca.crt"};
    for (size_t i = 0; i < 3; i++) {
        file_in(dir, names[i], from, sizeof(from));
        char *text = slurp(from);
        free(tu_write(old_dir, names[i], text, strlen(text)));
        free(text);
    }
    file_in(dir, "agent.key", from, sizeof(from));
    char *key1 = slurp(from);

    assert_int_equal(enroll(dir, enroll_token, srv.ca, first.machine_id, &second, err, sizeof(err)),
                     KH_OK);
    assert_string_equal(second.machine_id, first.machine_id);
    assert_true(second.reenrolled);
    /* A new key, and the old certificate is superseded. */
    char *key2 = slurp(from);
    assert_string_not_equal(key1, key2);
    struct client *now = agent_client(dir), *old = agent_client(old_dir);
    assert_int_equal(checkin(now), 200);
    assert_int_equal(checkin(old), 401);
    client_free(now);
    client_free(old);
    free(key1);
    free(key2);
}

static void client_enroll_refused_token_keeps_earlier_files(void **state)
{
    (void)state;
    NEED_SERVER();
    struct enroll_result res;
    char dir[PATH_MAX], path[PATH_MAX], err[256] = "";
    static const char *const names[] = {"agent.key", "agent.crt", "ca.crt"};
    char *before[3];
    state_dir("refused", dir, sizeof(dir));

    assert_int_equal(enroll(dir, enroll_token, srv.ca, NULL, &res, err, sizeof(err)), KH_OK);
    for (int i = 0; i < 3; i++) {
        file_in(dir, names[i], path, sizeof(path));
        before[i] = slurp(path);
    }

    assert_int_equal(enroll(dir, revoked_token, srv.ca, NULL, &res, err, sizeof(err)), KH_EINVAL);
    assert_string_equal(err, "enrollment refused (403): this enrollment token has been revoked");
    assert_int_equal(
        enroll(dir, "khe_0000000000000000000000000000", srv.ca, NULL, &res, err, sizeof(err)),
        KH_EINVAL);
    assert_non_null(strstr(err, "enrollment refused (401): "));
    assert_non_null(strstr(err, "unknown enrollment token"));

    for (int i = 0; i < 3; i++) {
        file_in(dir, names[i], path, sizeof(path));
        char *after = slurp(path);
        assert_string_equal(after, before[i]);
        free(after);
        free(before[i]);
    }
    assert_no_staged_files(dir);
    /* And they still work. */
    struct client *c = agent_client(dir);
    assert_int_equal(checkin(c), 200);
    client_free(c);
}

static void client_enroll_refuses_a_server_it_does_not_trust(void **state)
{
    (void)state;
    NEED_SERVER();
    struct enroll_result res;
    char dir[PATH_MAX], err[256] = "";
    state_dir("untrusted", dir, sizeof(dir));

    /* No CA file: the system's trust store, which does not know the
     * server's private CA. */
    assert_int_equal(enroll(dir, enroll_token, NULL, NULL, &res, err, sizeof(err)), KH_EIO);
    print_message("untrusted: %s\n", err);
    assert_non_null(strstr(err, "enrollment failed: "));
    assert_true(strlen(err) > strlen("enrollment failed: "));
    /* Nothing is left in the folder. */
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    assert_int_equal(n, 2); /* . and .. */
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* ------------------------------------------------------------------------ */
/* Calls                                                                    */
/* ------------------------------------------------------------------------ */

static void client_checkin_with_certificate_is_accepted(void **state)
{
    (void)state;
    NEED_SERVER();
    struct enroll_result res;
    struct client_resp resp;
    char dir[PATH_MAX], err[256] = "";
    state_dir("checkin", dir, sizeof(dir));
    assert_int_equal(enroll(dir, enroll_token, srv.ca, NULL, &res, err, sizeof(err)), KH_OK);

    struct client *c = agent_client(dir);
    static const char doc[] = "{\"hostname\":\"test-host\",\"db_version\":0}";
    assert_int_equal(client_call(c, "POST", "/agent/checkin", doc, strlen(doc), 0, &resp), KH_OK);
    assert_int_equal(resp.status, 200);
    json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
    assert_non_null(j);
    assert_true(json_integer_value(json_object_get(j, "server_time")) > 1700000000);
    assert_int_equal(resp.body[resp.len], '\0');
    json_decref(j);
    client_resp_free(&resp);
    assert_null(resp.body);

    /* The same handle serves the next calls, GET after POST too. */
    assert_int_equal(client_call(c, "GET", "/agent/tasks", NULL, 0, 0, &resp), KH_OK);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(resp.body, "\"items\""));
    client_resp_free(&resp);
    assert_int_equal(checkin(c), 200);
    client_free(c);
}

static void client_checkin_without_certificate_is_unauthorized(void **state)
{
    (void)state;
    NEED_SERVER();
    struct client_opts o = {.server = srv.url, .ca_file = srv.ca};
    struct client *c = NULL;
    assert_int_equal(client_new(&o, &c, NULL, 0), KH_OK);
    assert_int_equal(checkin(c), 401);
    client_free(c);
}

static void client_gzip_event_batch_is_accepted(void **state)
{
    (void)state;
    NEED_SERVER();
    struct enroll_result res;
    struct client_resp resp;
    char dir[PATH_MAX], err[256] = "", batch[512];
    state_dir("gzip", dir, sizeof(dir));
    assert_int_equal(enroll(dir, enroll_token, srv.ca, NULL, &res, err, sizeof(err)), KH_OK);
    struct client *c = agent_client(dir);

    snprintf(batch, sizeof(batch),
             "{\"events\":[{\"id\":\"client-test-%s\",\"type\":\"scan_finished\",\"at\":%lld,"
             "\"files\":12}]}",
             res.machine_id, (long long)time(NULL));
    assert_int_equal(client_call(c, "POST", "/agent/events", batch, strlen(batch), 1, &resp),
                     KH_OK);
    assert_int_equal(resp.status, 200);
    json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "accepted")), 1);
    json_decref(j);
    client_resp_free(&resp);

    /* The same batch again is a duplicate: the server read the same event. */
    assert_int_equal(client_call(c, "POST", "/agent/events", batch, strlen(batch), 1, &resp),
                     KH_OK);
    assert_int_equal(resp.status, 200);
    j = json_loadb(resp.body, resp.len, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "duplicates")), 1);
    json_decref(j);
    client_resp_free(&resp);
    client_free(c);
}

static void client_server_down_is_a_transport_error(void **state)
{
    (void)state;
    struct client_opts o = {.server = NULL, .ca_file = NULL, .timeout_s = 5};
    struct client_resp resp;
    struct client *c = NULL;
    char url[64];
    int port = tu_free_port();
    assert_true(port > 0);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", port);
    o.server = url;
    assert_int_equal(client_new(&o, &c, NULL, 0), KH_OK);
    assert_int_equal(client_call(c, "GET", "/health", NULL, 0, 0, &resp), KH_EIO);
    assert_int_equal(resp.status, 0);
    assert_null(resp.body);
    assert_true(strlen(resp.error) > 0);
    print_message("server down: %s\n", resp.error);
    client_free(c);
}

static void client_new_refuses_a_plain_http_server(void **state)
{
    (void)state;
    struct client_opts o = {.server = "http://127.0.0.1:8443"};
    struct client *c = NULL;
    char err[256] = "";
    assert_int_equal(client_new(&o, &c, err, sizeof(err)), KH_EINVAL);
    assert_null(c);
    assert_non_null(strstr(err, "https://"));
}

/* ------------------------------------------------------------------------ */
/* Downloads                                                                */
/* ------------------------------------------------------------------------ */

static void client_download_missing_bundle_leaves_no_file(void **state)
{
    (void)state;
    NEED_SERVER();
    struct enroll_result res;
    char dir[PATH_MAX], dest[PATH_MAX], tmp[PATH_MAX + 8], err[256] = "";
    long status = 0;
    state_dir("missing", dir, sizeof(dir));
    assert_int_equal(enroll(dir, enroll_token, srv.ca, NULL, &res, err, sizeof(err)), KH_OK);
    struct client *c = agent_client(dir);
    file_in(dir, "bundle.bin", dest, sizeof(dest));
    snprintf(tmp, sizeof(tmp), "%s.tmp", dest);

    assert_int_equal(
        client_download(c, "/agent/bundles/999999", dest, 1u << 20, &status, err, sizeof(err)),
        KH_OK);
    assert_int_equal(status, 404);
    assert_int_not_equal(access(dest, F_OK), 0);
    assert_int_not_equal(access(tmp, F_OK), 0);
    client_free(c);
}

/* Uploads a one-line signature source and publishes a bundle; returns its
 * version. */
static int64_t publish_bundle(void)
{
    static const char ndb[] = "Khien.Test.ClientBundle:0:*:4b4849454e2d434c49454e54\n";
    assert_int_equal(tu_admin_upload(&srv, "clamav", "client.ndb", ndb) / 100, 2);
    int64_t version = tu_admin_publish(&srv);
    assert_true(version > 0);
    return version;
}

static void client_download_published_bundle_unpacks_with_the_enrollment_key(void **state)
{
    (void)state;
    NEED_SERVER();
    struct enroll_result res;
    struct update_db db;
    uint8_t pk[32];
    size_t pk_len = 0;
    char dir[PATH_MAX], dest[PATH_MAX], dbdir[PATH_MAX], path[64], err[256] = "";
    long status = 0;
    struct stat st;
    state_dir("download", dir, sizeof(dir));
    assert_int_equal(enroll(dir, enroll_token, srv.ca, NULL, &res, err, sizeof(err)), KH_OK);
    assert_int_equal(sodium_base642bin(pk, sizeof(pk), res.bundle_key, strlen(res.bundle_key), NULL,
                                       &pk_len, NULL, sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(pk_len, 32);
    int64_t version = publish_bundle();
    assert_true(version > 0);

    struct client *c = agent_client(dir);
    file_in(dir, "bundle.bin", dest, sizeof(dest));
    snprintf(path, sizeof(path), "/agent/bundles/%" PRId64, version);
    /* Too small a cap: refused, nothing kept. */
    assert_int_equal(client_download(c, path, dest, 100, &status, err, sizeof(err)), KH_ELIMIT);
    assert_int_not_equal(access(dest, F_OK), 0);

    assert_int_equal(client_download(c, path, dest, 64u << 20, &status, err, sizeof(err)), KH_OK);
    assert_int_equal(status, 200);
    assert_int_equal(stat(dest, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    file_in(dir, "db", dbdir, sizeof(dbdir));
    if (update_unpack(dest, pk, dbdir, 0, &db, err, sizeof(err)) != KH_OK)
        fail_msg("unpack: %s", err);
    assert_int_equal(db.version, version);
    assert_int_equal(update_switch(dbdir, version, err, sizeof(err)), KH_OK);
    client_free(c);
}

/* ------------------------------------------------------------------------ */
/* Parsers (no server)                                                      */
/* ------------------------------------------------------------------------ */

static void client_retry_after_reads_seconds_and_dates(void **state)
{
    (void)state;
    time_t now = 1795000000;
    assert_int_equal(client_parse_retry_after(" 7\r\n", 4, now), 7);
    assert_int_equal(client_parse_retry_after("120", 3, now), 120);
    assert_int_equal(client_parse_retry_after("99999999999999999999", 20, now), 86400);
    assert_int_equal(client_parse_retry_after("-5", 2, now), 0);
    assert_int_equal(client_parse_retry_after("5x", 2, now), 0);
    assert_int_equal(client_parse_retry_after("", 0, now), 0);
    /* 1795000000 is Wed, 18 Nov 2026 11:06:40 GMT. */
    const char *date = "Wed, 18 Nov 2026 11:07:10 GMT";
    assert_int_equal(client_parse_retry_after(date, strlen(date), now), 30);
    const char *past = "Wed, 18 Nov 2026 11:00:00 GMT";
    assert_int_equal(client_parse_retry_after(past, strlen(past), now), 0);
}

static void client_enroll_answer_parser_refuses_bad_fields(void **state)
{
    (void)state;
    struct enroll_result res;
    char *cert = NULL, *ca = NULL, err[256];
    static const char good[] =
        "{\"machine_id\":\"11b7c565-43e1-4ea2-969f-b9acf44f60db\","
        "\"certificate\":\"-----BEGIN CERTIFICATE-----\\nx\\n-----END CERTIFICATE-----\\n\","
        "\"ca\":\"-----BEGIN CERTIFICATE-----\\ny\\n-----END CERTIFICATE-----\\n\","
        "\"bundle_key\":\"TDrvgRar918K8+rUA+lGOIVUlQ65SXySejK1JT3IFo4=\",\"key_id\":"
        "\"4e53997164b79a3a\",\"agency\":{\"id\":1,\"code\":\"so-tt\",\"name\":\"S\\u1edf\"},"
        "\"checkin_interval\":60,\"reenrolled\":true}";
    assert_int_equal(
        client_parse_enroll_answer(good, strlen(good), &res, &cert, &ca, err, sizeof(err)), KH_OK);
    assert_string_equal(res.machine_id, "11b7c565-43e1-4ea2-969f-b9acf44f60db");
    assert_string_equal(res.agency_name, "S\xe1\xbb\x9f");
    assert_int_equal(res.checkin_interval, 60);
    assert_true(res.reenrolled);
    assert_non_null(strstr(cert, "\nx\n"));
    free(cert);
    free(ca);

    static const char *const bad[] = {
        "[]",
        "{\"machine_id\":\"../../etc\",\"certificate\":\"-----BEGIN CERTIFICATE-----\","
        "\"ca\":\"-----BEGIN CERTIFICATE-----\"}",
        "{\"machine_id\":\"abc\",\"certificate\":\"not pem\",\"ca\":\"-----BEGIN "
        "CERTIFICATE-----\"}",
        "{\"machine_id\":\"abc\",\"certificate\":\"-----BEGIN CERTIFICATE-----\"}",
        "{\"machine_id\":5,\"certificate\":\"-----BEGIN CERTIFICATE-----\","
        "\"ca\":\"-----BEGIN CERTIFICATE-----\"}",
        "{\"machine_id\":\"abc\",\"key_id\":\"0123456789abcdef0\","
        "\"certificate\":\"-----BEGIN CERTIFICATE-----\",\"ca\":\"-----BEGIN CERTIFICATE-----\"}",
        "{\"machine_id\":\"abc\",\"checkin_interval\":0,"
        "\"certificate\":\"-----BEGIN CERTIFICATE-----\",\"ca\":\"-----BEGIN CERTIFICATE-----\"}",
        "{\"machine_id\":\"a\\u0000b\",\"certificate\":\"-----BEGIN CERTIFICATE-----\","
        "\"ca\":\"-----BEGIN CERTIFICATE-----\"}",
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(bad); i++) {
        cert = ca = NULL;
        err[0] = '\0';
        int r =
            client_parse_enroll_answer(bad[i], strlen(bad[i]), &res, &cert, &ca, err, sizeof(err));
        if (r != KH_EFORMAT)
            fail_msg("answer %zu was not refused: %s", i, bad[i]);
        assert_null(cert);
        assert_null(ca);
        assert_true(strlen(err) > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(client_enroll_writes_a_private_key_and_certificates),
        cmocka_unit_test(client_reenroll_with_machine_id_keeps_the_id),
        cmocka_unit_test(client_enroll_refused_token_keeps_earlier_files),
        cmocka_unit_test(client_enroll_refuses_a_server_it_does_not_trust),
        cmocka_unit_test(client_checkin_with_certificate_is_accepted),
        cmocka_unit_test(client_checkin_without_certificate_is_unauthorized),
        cmocka_unit_test(client_gzip_event_batch_is_accepted),
        cmocka_unit_test(client_server_down_is_a_transport_error),
        cmocka_unit_test(client_new_refuses_a_plain_http_server),
        cmocka_unit_test(client_download_missing_bundle_leaves_no_file),
        cmocka_unit_test(client_download_published_bundle_unpacks_with_the_enrollment_key),
        cmocka_unit_test(client_retry_after_reads_seconds_and_dates),
        cmocka_unit_test(client_enroll_answer_parser_refuses_bad_fields),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
