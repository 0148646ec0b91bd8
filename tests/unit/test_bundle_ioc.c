/*
 * Indicator lists in published bundles (server/bundle.c, server/api_signature.c):
 * a publish gathers the enabled lists of kind "indicators" — uploads and
 * files on the server — normalises every line, names lists in lines that do
 * not name a source, drops duplicates (the first list wins) and signs the
 * result as the bundle's indicator section, which an agent's ioc_set_load()
 * reads back. A bad line fails the publish naming list and line; a bundle
 * without lists has no section; lists alone publish nothing. The upload API
 * checks lists line by line and refuses a list with bad lines, showing the
 * first problems as it does for signature files.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include <khien/khien.h>

#include "khx_bundle.h"
#include "../../server/api.h"
#include "bundle.h"
#include "ioc.h"
#include "khx.h"

struct env {
    char dir[256];
    struct store_db *db;
    struct srv srv;
};

/* A fresh migrated store and a signer (tu_publisher_open); -1 when the
 * backend is not available (the caller skips). */
static int env_open(struct env *e, int postgres)
{
    memset(e, 0, sizeof(*e));
    return tu_publisher_open(&e->srv, e->dir, &e->db, 5, postgres);
}

static void env_close(struct env *e)
{
    tu_publisher_close(&e->srv, e->dir, e->db);
}

/* Inserts a source as the API would have: an upload (content) or a file on
 * the server (path). */
static void add_source(struct store_db *db, const char *kind, const char *name, const char *path,
                       const char *content, int enabled)
{
    struct store_stmt *st = NULL;
    assert_int_equal(store_prepare(db,
                                   "INSERT INTO sig_sources (kind, name, path, content, enabled,"
                                   " created_at) VALUES ($1, $2, $3, $4, $5, 1)",
                                   &st),
                     0);
    assert_int_equal(store_bind_text(st, 1, kind), 0);
    assert_int_equal(store_bind_text(st, 2, name), 0);
    assert_int_equal(store_bind_text(st, 3, path ? path : ""), 0);
    assert_int_equal(
        content ? store_bind_blob(st, 4, content, strlen(content)) : store_bind_null(st, 4), 0);
    assert_int_equal(store_bind_int(st, 5, enabled), 0);
    assert_int_equal(store_step(st), STORE_DONE);
    store_finalize(st);
}

/* One signature, so that a bundle can be published at all. */
static void add_signature_source(struct store_db *db)
{
    static const char sample[] = "khien indicator bundle test\n";
    uint8_t md[16];
    char hex[33], line[128];
    khx_md5(sample, strlen(sample), md);
    khx_hex_encode(md, 16, hex);
    snprintf(line, sizeof(line), "%s:%zu:Khien.Test.Ioc\n", hex, strlen(sample));
    add_source(db, "clamav", "sample.hdb", NULL, line, 1);
}

static int64_t count(struct store_db *db, const char *sql)
{
    int64_t n = -1;
    assert_int_equal(store_query_int(db, &n, sql, ""), STORE_ROW);
    return n;
}

/* Reads version v as an agent would: verified against the server's public
 * key. Returns the file (malloc'd) and fills *m and *off. */
static uint8_t *fetch(struct env *e, int64_t v, size_t *len, struct khx_bundle_manifest *m,
                      size_t *off)
{
    struct srv_bundle_info info;
    uint8_t pk[32];
    char why[256] = "";
    size_t pklen = 0;
    int fd = -1;
    const char *b64 = srv_signer_public_b64(e->srv.signer);
    assert_int_equal(sodium_base642bin(pk, sizeof(pk), b64, strlen(b64), NULL, &pklen, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(srv_bundle_open(&e->srv, e->db, v, &info, &fd), STORE_ROW);
    uint8_t *data = malloc((size_t)info.size + 1);
    ssize_t got = read(fd, data, (size_t)info.size + 1);
    close(fd);
    assert_int_equal(got, info.size);
    if (khx_bundle_verify(data, (size_t)got, pk, m, off, why, sizeof(why)) != KH_OK)
        fail_msg("bundle %" PRId64 " refused: %s", v, why);
    *len = (size_t)got;
    return data;
}

static void publish_puts_normalised_lists_in_the_bundle(int postgres)
{
    struct env e;
    struct khx_bundle_manifest m;
    char err[512] = "";
    int64_t v = 0;
    size_t len = 0, off = 0;
    if (env_open(&e, postgres) != 0) {
        skip();
        return;
    }
    add_signature_source(e.db);
    add_source(e.db, SRV_KIND_INDICATORS, "feodo.txt", NULL,
               "# Feodo tracker, as published\n"
               "203.0.113.7 c2\n"
               "Evil.Example.COM.\n"
               "198.51.100.77/24 scanner abuse.ch\n"
               "\n"
               "evil.example.com phishing\n",
               1);
    static const char with_header[] = "value,category,source\n"
                                      "203.0.113.7,other,mine\n"
                                      "\"[2001:DB8::1]:443\",c2,\n";
    char *csv = tu_write(e.dir, "local list.csv", with_header, strlen(with_header));
    /* The header line of a CSV file is not an indicator: this one is fixed
     * below, first it fails. */
    add_source(e.db, SRV_KIND_INDICATORS, "local list.csv", csv, NULL, 1);
    add_source(e.db, SRV_KIND_INDICATORS, "off.txt", NULL, "192.0.2.200 off\n", 0);
    assert_int_equal(srv_bundle_publish(&e.srv, e.db, 0, &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "local list.csv:1: "));
    assert_int_equal(count(e.db, "SELECT COUNT(*) FROM bundles"), 0);
    free(csv);
    /* "#" makes the header a comment. */
    static const char commented[] = "# value,category,source\n"
                                    "203.0.113.7,other,mine\n"
                                    "\"[2001:DB8::1]:443\",c2,\n";
    csv = tu_write(e.dir, "local list.csv", commented, strlen(commented));

    if (srv_bundle_publish(&e.srv, e.db, 0, &v, err, sizeof(err)) != 0)
        fail_msg("publish: %s", err);
    assert_int_equal(v, 1);
    uint8_t *file = fetch(&e, 1, &len, &m, &off);
    assert_int_equal(m.signatures, 1);
    /* Canonical forms, the list's name where a line names no source, the
     * duplicates of the first list's lines gone, the disabled list absent. */
    static const char want[] = "203.0.113.7 c2 feodo.txt\n"
                               "evil.example.com malware feodo.txt\n"
                               "198.51.100.0/24 scanner abuse.ch\n"
                               "[2001:db8::1]:443 c2 local_list.csv\n";
    assert_int_equal(m.indicators, 4);
    assert_int_equal(m.ioc_size, strlen(want));
    assert_int_equal(off + m.kdb_size + m.ioc_size, len);
    assert_memory_equal(file + off + m.kdb_size, want, strlen(want));

    /* What the agent does with it. */
    struct ioc_set *set = NULL;
    struct ioc_match match;
    size_t bad = 0;
    uint8_t addr[16];
    assert_int_equal(ioc_set_load((const char *)file + off + m.kdb_size, (size_t)m.ioc_size, 0,
                                  &set, &bad, err, sizeof(err)),
                     KH_OK);
    assert_int_equal(bad, 0);
    assert_int_equal(ioc_match_domain(set, "cdn.evil.example.com", &match), 1);
    assert_string_equal(match.source, "feodo.txt");
    assert_int_equal(inet_pton(AF_INET, "198.51.100.9", addr), 1);
    assert_int_equal(ioc_match_addr(set, AF_INET, addr, 80, &match), 1);
    assert_string_equal(match.category, "scanner");
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", addr), 1);
    assert_int_equal(ioc_match_addr(set, AF_INET6, addr, 443, &match), 1);
    assert_int_equal(inet_pton(AF_INET, "192.0.2.200", addr), 1);
    assert_int_equal(ioc_match_addr(set, AF_INET, addr, 0, &match), 0);
    ioc_set_free(set);
    free(file);

    /* The version's sources say what each list contributed. */
    char *sources = NULL;
    assert_int_equal(
        store_query_text(e.db, &sources, "SELECT sources FROM bundles WHERE version = 1", ""),
        STORE_ROW);
    json_t *j = json_loads(sources, 0, NULL);
    assert_non_null(j);
    free(sources);
    size_t i, seen = 0;
    json_t *item;
    json_array_foreach(j, i, item)
    {
        const char *name = json_string_value(json_object_get(item, "name"));
        json_int_t n = json_integer_value(json_object_get(item, "indicators"));
        json_int_t d = json_integer_value(json_object_get(item, "duplicates"));
        if (strcmp(name, "feodo.txt") == 0) {
            assert_int_equal(n, 3);
            assert_int_equal(d, 1);
            seen++;
        } else if (strcmp(name, "local list.csv") == 0) {
            assert_int_equal(n, 1);
            assert_int_equal(d, 1);
            seen++;
        } else {
            assert_string_equal(name, "sample.hdb");
        }
    }
    assert_int_equal(seen, 2);
    json_decref(j);
    free(csv);
    env_close(&e);
}

static void publish_fails_on_a_bad_indicator_line(int postgres)
{
    struct env e;
    char err[512] = "";
    int64_t v = 0;
    if (env_open(&e, postgres) != 0) {
        skip();
        return;
    }
    add_signature_source(e.db);
    add_source(e.db, SRV_KIND_INDICATORS, "bad.txt", NULL,
               "203.0.113.7\n"
               "evil.example.com\n"
               "http://evil.example.com/payload.exe\n"
               "300.1.1.1\n",
               1);
    assert_int_equal(srv_bundle_publish(&e.srv, e.db, 0, &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bad.txt:3: URLs are not supported in agent bundles"));
    assert_non_null(strstr(err, "and more lines"));
    assert_int_equal(count(e.db, "SELECT COUNT(*) FROM bundles"), 0);
    assert_int_equal(count(e.db, "SELECT COUNT(*) FROM bundle_chunks"), 0);

    /* A list on the server that has gone away. */
    assert_int_equal(
        store_execf(e.db, NULL, "UPDATE sig_sources SET enabled = 0 WHERE name = 'bad.txt'", ""),
        0);
    add_source(e.db, SRV_KIND_INDICATORS, "gone.txt", "/nonexistent/khien-iocs.txt", NULL, 1);
    assert_int_equal(srv_bundle_publish(&e.srv, e.db, 0, &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "gone.txt"));
    assert_int_equal(
        store_execf(e.db, NULL, "UPDATE sig_sources SET enabled = 0 WHERE name = 'gone.txt'", ""),
        0);

    /* Without lists, the bundle has no indicator section. */
    struct khx_bundle_manifest m;
    size_t len = 0, off = 0;
    if (srv_bundle_publish(&e.srv, e.db, 0, &v, err, sizeof(err)) != 0)
        fail_msg("publish: %s", err);
    uint8_t *file = fetch(&e, v, &len, &m, &off);
    assert_int_equal(m.ioc_size, 0);
    assert_int_equal(m.indicators, 0);
    assert_int_equal(off + m.kdb_size, len);
    free(file);

    /* Lists alone would take every agent's signatures away. */
    assert_int_equal(store_execf(e.db, NULL, "DELETE FROM sig_sources", ""), 0);
    add_source(e.db, SRV_KIND_INDICATORS, "only.txt", NULL, "203.0.113.7\n", 1);
    assert_int_equal(srv_bundle_publish(&e.srv, e.db, 0, &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no signature source is enabled"));
    env_close(&e);
}

/* Calls a handler as the router would for an administrator; returns the
 * parsed reply and its status. */
static json_t *call(struct env *e, srv_handler h, const char *query, const char *body,
                    unsigned *status)
{
    struct srv_principal admin;
    tu_principal_admin(&admin);
    return tu_call_handler(&e->srv, e->db, h, &admin, "POST", NULL, query, body, 0, status);
}

static void signature_api_checks_indicator_lists(void **state)
{
    (void)state;
    struct env e;
    unsigned status = 0;
    json_t *j;
    if (env_open(&e, 0) != 0) {
        skip();
        return;
    }
    assert_int_equal(store_execf(e.db, NULL,
                                 "INSERT INTO users (username, password_hash, role, created_at)"
                                 " VALUES ('admin', 'x', 'admin', 1)",
                                 ""),
                     0);
    /* A good list is stored, with no problems. */
    j = call(&e, api_sources_upload, "kind=indicators&name=feed.txt",
             "203.0.113.7 c2\nevil.example.com\n", &status);
    assert_int_equal(status, 201);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "indicators");
    assert_int_equal(json_integer_value(json_object_get(j, "problems")), 0);
    json_decref(j);

    /* A list with bad lines is refused; the first problems are quoted with
     * list and line, as for signature files. */
    j = call(&e, api_sources_upload, "kind=indicators&name=bad.csv",
             "203.0.113.7,c2,feed\nhttps://evil.example.com/x,c2,feed\n\n10.0.0.0/0\n", &status);
    assert_int_equal(status, 400);
    assert_int_equal(json_integer_value(json_object_get(j, "problems")), 2);
    json_t *msgs = json_object_get(j, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_non_null(strstr(json_string_value(json_array_get(msgs, 0)),
                           "bad.csv:2: URLs are not supported in agent bundles"));
    assert_non_null(strstr(json_string_value(json_array_get(msgs, 1)), "bad.csv:4: "));
    assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "2 lines are not"));
    json_decref(j);
    assert_int_equal(count(e.db, "SELECT COUNT(*) FROM sig_sources WHERE name = 'bad.csv'"), 0);

    /* Feed formats are converted into the text form on upload: by the
     * format parameter, or by an extension that names one. Agent bundles
     * carry no URL, so a URL is counted, not stored. */
    j = call(&e, api_sources_upload, "kind=indicators&format=csv&name=feodo.txt",
             "first_seen_utc,dst_ip,dst_port,c2_status,last_online,malware\n"
             "2024-01-01 00:00:00,203.0.113.50,443,online,2024-01-02,Emotet\n"
             "2024-01-01 00:00:00,198.51.100.60,8080,offline,2024-01-02,QakBot\n",
             &status);
    assert_int_equal(status, 201);
    json_t *conv = json_object_get(j, "converted");
    assert_non_null(conv);
    assert_string_equal(json_string_value(json_object_get(conv, "format")), "csv");
    /* The offline C2 is skipped, as the sensor's reader skips it. */
    assert_int_equal(json_integer_value(json_object_get(conv, "indicators")), 1);
    assert_int_equal(json_integer_value(json_object_get(conv, "skipped")), 1);
    json_decref(j);
    char *stored = NULL;
    assert_int_equal(store_query_text(e.db, &stored,
                                      "SELECT content FROM sig_sources WHERE name = 'feodo.txt'",
                                      ""),
                     STORE_ROW);
    assert_non_null(strstr(stored, "203.0.113.50:443 malware feodo\n"));
    free(stored);
    j = call(&e, api_sources_upload, "kind=indicators&name=blocklist.netset",
             "# FireHOL blocklist\n192.0.2.0/24\n203.0.113.9\n", &status);
    assert_int_equal(status, 201);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "converted"), "format")), "firehol");
    json_decref(j);
    j = call(&e, api_sources_upload, "kind=indicators&name=intel.json",
             "{\"type\":\"bundle\",\"id\":\"bundle--1\",\"objects\":[{\"type\":\"indicator\","
             "\"id\":\"indicator--1\",\"pattern_type\":\"stix\",\"pattern\":"
             "\"[domain-name:value = 'c2.evil.example'] OR [url:value = "
             "'http://x.evil.example/a']\",\"indicator_types\":[\"malicious-activity\"]}]}",
             &status);
    assert_int_equal(status, 201);
    conv = json_object_get(j, "converted");
    assert_string_equal(json_string_value(json_object_get(conv, "format")), "stix");
    assert_int_equal(json_integer_value(json_object_get(conv, "indicators")), 1);
    assert_int_equal(json_integer_value(json_object_get(conv, "not_bundled")), 1);
    json_decref(j);
    /* Nothing usable, or a format the server does not know, is refused. */
    j = call(&e, api_sources_upload, "kind=indicators&format=zeek&name=empty.txt",
             "no fields line here\n", &status);
    assert_int_equal(status, 400);
    json_decref(j);
    j = call(&e, api_sources_upload, "kind=indicators&format=pdf&name=x.txt", "1.2.3.4\n", &status);
    assert_int_equal(status, 400);
    assert_string_equal(json_string_value(json_object_get(j, "field")), "format");
    json_decref(j);

    /* Extensions of the kind only. */
    j = call(&e, api_sources_upload, "kind=indicators&name=feed.hdb", "203.0.113.7\n", &status);
    assert_int_equal(status, 400);
    assert_string_equal(json_string_value(json_object_get(j, "field")), "name");
    json_decref(j);

    /* A list on the server: a file, not a folder. */
    static const char server_list[] = "198.51.100.0/24 scanner\n";
    char *path = tu_write(e.dir, "server.list", server_list, strlen(server_list));
    char body[1200];
    snprintf(body, sizeof(body), "{\"kind\":\"indicators\",\"path\":\"%s\"}", path);
    j = call(&e, api_sources_create, NULL, body, &status);
    assert_int_equal(status, 201);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "server.list");
    json_decref(j);
    snprintf(body, sizeof(body), "{\"kind\":\"indicators\",\"name\":\"dir\",\"path\":\"%s\"}",
             e.dir);
    j = call(&e, api_sources_create, NULL, body, &status);
    assert_int_equal(status, 400);
    assert_string_equal(json_string_value(json_object_get(j, "field")), "path");
    json_decref(j);
    j = call(&e, api_sources_create, NULL, "{\"kind\":\"iocs\",\"path\":\"/tmp\"}", &status);
    assert_int_equal(status, 400);
    assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "indicators"));
    json_decref(j);

    /* Publishing through the API carries both lists. */
    char line[128];
    uint8_t md[16];
    char hex[33];
    khx_md5("x", 1, md);
    khx_hex_encode(md, 16, hex);
    snprintf(line, sizeof(line), "%s:1:Khien.Test.Api\n", hex);
    j = call(&e, api_sources_upload, "kind=clamav&name=one.hdb", line, &status);
    assert_int_equal(status, 201);
    json_decref(j);
    j = call(&e, api_bundles_publish, NULL, NULL, &status);
    assert_int_equal(status, 200);
    json_t *srcs = json_object_get(j, "sources");
    size_t i, lists = 0;
    json_t *item;
    json_array_foreach(srcs, i, item)
    {
        if (json_object_get(item, "indicators") != NULL)
            lists++;
    }
    assert_int_equal(lists, 5);
    json_decref(j);
    struct khx_bundle_manifest m;
    size_t len = 0, off = 0;
    free(fetch(&e, 1, &len, &m, &off));
    /* feed.txt (2), server.list (1), feodo.txt (1), blocklist.netset (2), intel.json (1) */
    assert_int_equal(m.indicators, 7);
    free(path);
    env_close(&e);
}

static void publish_puts_normalised_lists_in_the_bundle_sqlite(void **state)
{
    (void)state;
    publish_puts_normalised_lists_in_the_bundle(0);
}

static void publish_puts_normalised_lists_in_the_bundle_postgres(void **state)
{
    (void)state;
    publish_puts_normalised_lists_in_the_bundle(1);
}

static void publish_fails_on_a_bad_indicator_line_sqlite(void **state)
{
    (void)state;
    publish_fails_on_a_bad_indicator_line(0);
}

static void publish_fails_on_a_bad_indicator_line_postgres(void **state)
{
    (void)state;
    publish_fails_on_a_bad_indicator_line(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(publish_puts_normalised_lists_in_the_bundle_sqlite),
        cmocka_unit_test(publish_puts_normalised_lists_in_the_bundle_postgres),
        cmocka_unit_test(publish_fails_on_a_bad_indicator_line_sqlite),
        cmocka_unit_test(publish_fails_on_a_bad_indicator_line_postgres),
        cmocka_unit_test(signature_api_checks_indicator_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
