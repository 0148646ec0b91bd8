/*
 * Upward federation's document (server/report/federation.c): what a
 * provincial server builds from its index tables and what a parent accepts.
 * The tables are made by hand (a province P with a department D and an
 * agency A under it, for one month and one quarter), so these tests need no
 * store.
 *
 * What is proved: a built document passes the parent's validator and keeps
 * every component, index, code, kind and parent; names lose the characters
 * of paths and accounts; the validator refuses each kind of bad input
 * (unknown fields anywhere, missing fields, path-like or account-like
 * names, bad codes, counts out of range, non-canonical or mismatched
 * periods, parents not listed before, duplicates, wrong schema, non-JSON,
 * an oversized document) with a message naming the field. With a store
 * (SQLite, and PostgreSQL when KHIEN_PG_URL names one): a document built
 * from a seeded database by idx_compute carries its figures but none of its
 * paths, host names, addresses or user names; on the parent a push with the
 * province's token is stored and shown side by side, a revoked or unknown
 * token is refused with 401, repeated refusals lock the address (429), and
 * only administrators and auditors of the whole server see provinces.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "federation.h"
#include "store/store.h"

#define OFFSET (7 * 3600)

static void fill(struct idx_components *c, int64_t base)
{
    c->managed = base + 10;
    c->expected = base + 12;
    c->infected = base + 1;
    c->stale = base + 2;
    c->c2_hosts = base + 3;
    c->c2_hits = base + 4;
    c->detections = base + 5;
    c->families = base + 6;
    c->open = base + 7;
    c->resolved = base + 8;
    c->share_slots = base + 9;
    c->share_accepted = base;
}

static void row(struct idx_row *r, int64_t id, int64_t parent, const char *code, const char *name,
                const char *kind, int64_t base)
{
    memset(r, 0, sizeof(*r));
    r->agency_id = id;
    r->parent_id = parent;
    snprintf(r->code, sizeof(r->code), "%s", code);
    snprintf(r->name, sizeof(r->name), "%s", name);
    snprintf(r->kind, sizeof(r->kind), "%s", kind);
    fill(&r->own, base);
    fill(&r->total, base * 10);
    r->index = 0.25 + (double)base / 100;
}

/* Two tables (November 2026 and 2026Q4) of three agencies each. */
static void tables(struct idx_table t[2], struct idx_row rows[2][3])
{
    for (int i = 0; i < 2; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        row(&rows[i][0], 1, 0, "P", "Tỉnh Thái Bình", "province", 1 + i);
        row(&rows[i][1], 2, 1, "D", "Sở TT/TT @ C:\\Users\\an", "department", 2 + i);
        row(&rows[i][2], 3, 2, "A.01", "UBND xã\tAn Bình", "agency", 3 + i);
        t[i].rows = rows[i];
        t[i].n = 3;
        fill(&t[i].province, 100 + i);
        t[i].province_index = 0.5 + i;
    }
    rpt_period_month(2026, 11, OFFSET, &t[0].period);
    rpt_period_quarter(2026, 4, OFFSET, &t[1].period);
}

static json_t *built(void)
{
    struct idx_table t[2];
    struct idx_row rows[2][3];
    json_t *doc = NULL;
    char err[256] = "";

    tables(t, rows);
    if (fed_doc_build("000.00.00.H34", "Sở TT&TT Thái Bình", t, 2, 3600, 1795000000, &doc, err,
                      sizeof(err)) != 0)
        fail_msg("build failed: %s", err);
    return doc;
}

/* Validates `doc` (dumped); returns the error or "" when accepted. */
static const char *check(json_t *doc)
{
    static char err[512];
    char *text = json_dumps(doc, JSON_COMPACT);
    json_t *out = NULL;

    assert_non_null(text);
    err[0] = '\0';
    if (fed_doc_validate(text, strlen(text), &out, err, sizeof(err)) == 0) {
        json_decref(out);
        err[0] = '\0';
    } else {
        assert_true(err[0] != '\0');
    }
    free(text);
    return err;
}

static void refused_naming(json_t *doc, const char *field)
{
    const char *err = check(doc);

    if (err[0] == '\0')
        fail_msg("accepted a document that should name %s", field);
    if (strstr(err, field) == NULL)
        fail_msg("error \"%s\" does not name %s", err, field);
    json_decref(doc);
}

static json_t *agency(json_t *doc, size_t period, size_t i)
{
    return json_array_get(
        json_object_get(json_array_get(json_object_get(doc, "periods"), period), "agencies"), i);
}

static void a_built_document_passes_and_keeps_every_figure(void **state)
{
    json_t *doc = built(), *a, *p;
    struct idx_components c, want;
    (void)state;

    assert_string_equal(check(doc), "");
    p = json_array_get(json_object_get(doc, "periods"), 1);
    assert_string_equal(json_string_value(json_object_get(p, "period")), "2026Q4");
    assert_string_equal(json_string_value(json_object_get(p, "kind")), "quarter");
    assert_int_equal(fed_components_from_json(json_object_get(p, "totals"), &c), 0);
    fill(&want, 101);
    assert_memory_equal(&c, &want, sizeof(c));
    assert_true(json_real_value(json_object_get(p, "index")) == 1.5);

    a = agency(doc, 0, 2);
    assert_string_equal(json_string_value(json_object_get(a, "code")), "A.01");
    assert_string_equal(json_string_value(json_object_get(a, "kind")), "agency");
    assert_string_equal(json_string_value(json_object_get(a, "parent")), "D");
    assert_int_equal(fed_components_from_json(json_object_get(a, "own"), &c), 0);
    fill(&want, 3);
    assert_memory_equal(&c, &want, sizeof(c));
    assert_int_equal(fed_components_from_json(json_object_get(a, "total"), &c), 0);
    fill(&want, 30);
    assert_memory_equal(&c, &want, sizeof(c));
    assert_true(json_is_null(json_object_get(agency(doc, 0, 0), "parent")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(doc, "province"), "code")),
        "000.00.00.H34");
    assert_int_equal(json_integer_value(json_object_get(doc, "interval")), 3600);
    json_decref(doc);
}

static void names_lose_the_characters_of_paths_and_accounts(void **state)
{
    json_t *doc = built();
    char *text;
    (void)state;

    assert_string_equal(json_string_value(json_object_get(agency(doc, 0, 1), "name")),
                        "Sở TT-TT - C:-Users-an");
    assert_string_equal(json_string_value(json_object_get(agency(doc, 0, 2), "name")),
                        "UBND xã-An Bình");
    text = json_dumps(doc, 0);
    assert_null(strstr(text, "\\\\"));
    assert_null(strstr(text, "@"));
    free(text);
    json_decref(doc);
}

static void a_bad_province_code_is_not_built(void **state)
{
    struct idx_table t[2];
    struct idx_row rows[2][3];
    json_t *doc = NULL;
    char err[256] = "";
    (void)state;

    tables(t, rows);
    assert_int_equal(fed_doc_build("", "x", t, 2, 60, 1795000000, &doc, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "org_id"));
    assert_int_equal(fed_doc_build("a/b", "x", t, 2, 60, 1795000000, &doc, err, sizeof(err)), -1);
    assert_null(doc);
}

static void unknown_fields_are_refused_anywhere(void **state)
{
    json_t *doc;
    (void)state;

    doc = built();
    json_object_set_new(doc, "files", json_string("C:\\x.exe"));
    refused_naming(doc, "files: unknown field");

    doc = built();
    json_object_set_new(json_object_get(doc, "province"), "admin", json_string("an"));
    refused_naming(doc, "province.admin");

    doc = built();
    json_object_set_new(agency(doc, 1, 2), "user", json_string("nguyen.van.an"));
    refused_naming(doc, "periods[1].agencies[2].user");

    doc = built();
    json_object_set_new(json_object_get(agency(doc, 0, 1), "own"), "hostname", json_integer(1));
    refused_naming(doc, "periods[0].agencies[1].own.hostname");

    doc = built();
    json_object_set_new(json_array_get(json_object_get(doc, "periods"), 0), "machines",
                        json_array());
    refused_naming(doc, "periods[0].machines");
}

static void missing_fields_are_named(void **state)
{
    json_t *doc;
    (void)state;

    doc = built();
    json_object_del(doc, "generated_at");
    refused_naming(doc, "generated_at: missing");

    doc = built();
    json_object_del(json_object_get(agency(doc, 0, 0), "total"), "stale");
    refused_naming(doc, "periods[0].agencies[0].total.stale: missing");

    doc = built();
    json_object_del(agency(doc, 1, 0), "parent");
    refused_naming(doc, "periods[1].agencies[0].parent: missing");
}

static void names_and_codes_that_could_carry_a_path_or_account_are_refused(void **state)
{
    static const char *const names[] = {"C:\\Users\\an", "/home/an", "an@tinh.gov.vn",
                                        "line\nbreak", ""};
    json_t *doc;
    (void)state;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        doc = built();
        json_object_set_new(agency(doc, 0, 1), "name", json_string(names[i]));
        refused_naming(doc, "periods[0].agencies[1].name");
    }
    doc = built();
    json_object_set_new(json_object_get(doc, "province"), "name", json_string("a/b"));
    refused_naming(doc, "province.name");

    doc = built();
    json_object_set_new(agency(doc, 0, 1), "code", json_string("D/../x"));
    refused_naming(doc, "periods[0].agencies[1].code");

    doc = built();
    /* A NUL inside a name is refused by the parser already. */
    json_object_set_new(agency(doc, 0, 1), "name", json_stringn("a\0b", 3));
    refused_naming(doc, "not JSON");

    doc = built();
    json_object_set_new(agency(doc, 0, 1), "name", json_integer(5));
    refused_naming(doc, "periods[0].agencies[1].name: must be a string");
}

static void counts_and_indexes_out_of_range_are_refused(void **state)
{
    json_t *doc;
    (void)state;

    doc = built();
    json_object_set_new(json_object_get(agency(doc, 0, 2), "own"), "managed", json_integer(-1));
    refused_naming(doc, "periods[0].agencies[2].own.managed");

    doc = built();
    json_object_set_new(json_object_get(agency(doc, 0, 2), "own"), "infected", json_real(1.5));
    refused_naming(doc, "periods[0].agencies[2].own.infected");

    doc = built();
    json_object_set_new(
        json_object_get(json_array_get(json_object_get(doc, "periods"), 1), "totals"), "detections",
        json_integer(FED_COUNT_MAX + 1));
    refused_naming(doc, "periods[1].totals.detections");

    doc = built();
    json_object_set_new(agency(doc, 1, 1), "index", json_string("0.5"));
    refused_naming(doc, "periods[1].agencies[1].index");

    doc = built();
    json_object_set_new(doc, "schema", json_integer(2));
    refused_naming(doc, "schema");
}

static void periods_must_be_canonical_matching_and_unique(void **state)
{
    json_t *doc, *p;
    (void)state;

    doc = built();
    p = json_array_get(json_object_get(doc, "periods"), 1);
    json_object_set_new(p, "period", json_string("2026q4"));
    refused_naming(doc, "periods[1].period");

    doc = built();
    p = json_array_get(json_object_get(doc, "periods"), 1);
    json_object_set_new(p, "kind", json_string("month"));
    refused_naming(doc, "periods[1].kind");

    doc = built();
    p = json_array_get(json_object_get(doc, "periods"), 0);
    json_object_set_new(p, "start", json_integer(1000));
    refused_naming(doc, "periods[0].start");

    doc = built();
    json_array_append(json_object_get(doc, "periods"),
                      json_array_get(json_object_get(doc, "periods"), 0));
    refused_naming(doc, "periods[2]: the period appears twice");

    doc = built();
    json_array_clear(json_object_get(doc, "periods"));
    refused_naming(doc, "periods: must be an array of 1 to");
}

static void parents_must_be_listed_before_and_codes_unique(void **state)
{
    json_t *doc;
    (void)state;

    doc = built();
    json_object_set_new(agency(doc, 0, 1), "parent", json_string("A.01"));
    refused_naming(doc, "periods[0].agencies[1].parent");

    doc = built();
    json_object_set_new(agency(doc, 0, 2), "code", json_string("D"));
    refused_naming(doc, "periods[0].agencies[2].code: appears twice");

    doc = built();
    json_object_set_new(agency(doc, 0, 2), "kind", json_string("school"));
    refused_naming(doc, "periods[0].agencies[2].kind");
}

static void malformed_and_oversized_input_is_refused(void **state)
{
    static const char *const bad[] = {
        "", "[]", "null", "{", "{\"schema\":1,\"schema\":1}", "\"x\"", "{\"schema\":1}",
    };
    json_t *out = NULL;
    char err[256];
    char *big;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(fed_doc_validate(bad[i], strlen(bad[i]), &out, err, sizeof(err)), -1);
        assert_null(out);
        assert_true(err[0] != '\0');
    }
    big = calloc(1, FED_DOC_MAX + 2);
    assert_non_null(big);
    memset(big, ' ', FED_DOC_MAX + 1);
    assert_int_equal(fed_doc_validate(big, FED_DOC_MAX + 1, &out, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "larger than"));
    free(big);
}

/* ------------------------------------------------------------------------ */
/* With a store.                                                             */
/* ------------------------------------------------------------------------ */

static const char *pg_url;

struct fixture {
    char dir[512];
    struct store_db *db;
    struct srv srv;
    int64_t now;
    struct srv_principal admin, auditor, officer;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    *state = f;
    snprintf(f->dir, sizeof(f->dir), "%s", tu_mkdtemp());
    if ((f->db = tu_store_open(f->dir, pg_url, 0)) == NULL)
        return 0;
    f->now = srv_now();
    srv_report_config_defaults(&f->srv.cfg.report);
    tu_principal_admin(&f->admin);
    /* The administrator is a real user: children.created_by refers to it. */
    assert_int_equal(store_query_int(f->db, &f->admin.user_id,
                                     "INSERT INTO users (username, password_hash, role, created_at)"
                                     " VALUES ('fedadmin', 'x', 'admin', $1) RETURNING id",
                                     "i", f->now),
                     STORE_ROW);
    f->auditor = f->admin;
    f->auditor.role = SRV_ROLE_AUDITOR;
    f->officer = f->admin;
    f->officer.role = SRV_ROLE_OFFICER;
    f->officer.agency_id = 1;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->db);
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

static struct fixture *need_db(void **state)
{
    struct fixture *f = *state;
    if (f->db == NULL) {
        printf("SKIP: the store cannot be opened in this build\n");
        skip();
    }
    return f;
}

static int64_t seed_agency(struct fixture *f, int64_t parent, const char *code, const char *name,
                           int64_t expected)
{
    int64_t id = 0;
    char path[64];
    char *ppath = NULL;

    if (parent != 0)
        assert_int_equal(
            store_query_text(f->db, &ppath, "SELECT path FROM agencies WHERE id = $1", "i", parent),
            STORE_ROW);
    if (parent == 0)
        assert_int_equal(store_query_int(f->db, &id,
                                         "INSERT INTO agencies (parent_id, code, name, kind,"
                                         " expected_machines, created_at) VALUES (NULL, $1, $2,"
                                         " 'agency', $3, $4) RETURNING id",
                                         "ttii", code, name, expected, f->now),
                         STORE_ROW);
    else
        assert_int_equal(store_query_int(f->db, &id,
                                         "INSERT INTO agencies (parent_id, code, name, kind,"
                                         " expected_machines, created_at) VALUES ($1, $2, $3,"
                                         " 'agency', $4, $5) RETURNING id",
                                         "ittii", parent, code, name, expected, f->now),
                         STORE_ROW);
    snprintf(path, sizeof(path), "%s%lld/", ppath ? ppath : "/", (long long)id);
    free(ppath);
    assert_int_equal(
        store_execf(f->db, NULL, "UPDATE agencies SET path = $1 WHERE id = $2", "ti", path, id), 0);
    return id;
}

static void seed_machine(struct fixture *f, const char *id, int64_t agency, const char *host)
{
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO machines (id, agency_id, hostname, ips, db_time,"
                                 " enrolled_at, last_seen) VALUES ($1, $2, $3, '10.77.66.55', $4,"
                                 " $5, $4)",
                                 "titii", id, agency, host, f->now, f->now - 86400),
                     0);
}

static void seed_detection(struct fixture *f, const char *event, const char *machine,
                           int64_t agency, const char *path, const char *status)
{
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO detections (event_id, machine_id, agency_id, path,"
                                 " signature, family, detected_at, received_at, status,"
                                 " status_at) VALUES ($1, $2, $3, $4, 'Win.Trojan.Secret-1',"
                                 " 'Win.Trojan.Secret', $5, $5, $6, $5)",
                                 "ttitit", event, machine, agency, path, f->now - 30, status),
                     0);
}

static void a_document_from_the_store_holds_figures_but_nothing_private(void **state)
{
    struct fixture *f = need_db(state);
    struct rpt_period p;
    struct idx_table t;
    json_t *doc = NULL, *out = NULL;
    char err[256] = "", *text;
    static const char *const secrets[] = {"nguyenvanan", "AppData",    "PC-KETOAN", "10.77.66",
                                          "aaaaaaaa-",   "Win.Trojan", "tranthib"};

    int64_t p1 = seed_agency(f, 0, "TB", "Tỉnh / Thái Bình", 5);
    int64_t a1 = seed_agency(f, p1, "TB.XA", "UBND xã @ An Bình", 3);
    seed_machine(f, "aaaaaaaa-0000-4000-8000-000000000001", p1, "PC-KETOAN-1");
    seed_machine(f, "aaaaaaaa-0000-4000-8000-000000000002", a1, "PC-KETOAN-2");
    seed_machine(f, "aaaaaaaa-0000-4000-8000-000000000003", a1, "PC-KETOAN-3");
    seed_detection(f, "e1", "aaaaaaaa-0000-4000-8000-000000000002", a1,
                   "C:\\Users\\nguyenvanan\\AppData\\Local\\Temp\\x.exe", "new");
    seed_detection(f, "e2", "aaaaaaaa-0000-4000-8000-000000000003", a1, "/home/tranthib/x.sh",
                   "resolved");

    rpt_period_at(f->now, RPT_MONTH, f->srv.cfg.report.utc_offset, &p);
    memset(&t, 0, sizeof(t));
    if (idx_compute(f->db, &f->srv.cfg.report, &p, 0, f->now, &t, err, sizeof(err)) != 0)
        fail_msg("idx_compute: %s", err);
    assert_int_equal(
        fed_doc_build("H34", "Tỉnh Thái Bình", &t, 1, 600, f->now, &doc, err, sizeof(err)), 0);
    idx_table_free(&t);
    text = json_dumps(doc, JSON_COMPACT);
    assert_non_null(text);
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        if (strstr(text, secrets[i]) != NULL)
            fail_msg("the document holds \"%s\": %s", secrets[i], text);
    if (fed_doc_validate(text, strlen(text), &out, err, sizeof(err)) != 0)
        fail_msg("the parent refuses the built document: %s", err);
    json_t *tot = json_object_get(json_array_get(json_object_get(out, "periods"), 0), "totals");
    assert_int_equal(json_integer_value(json_object_get(tot, "managed")), 3);
    assert_int_equal(json_integer_value(json_object_get(tot, "expected")), 8);
    assert_int_equal(json_integer_value(json_object_get(tot, "infected")), 1);
    assert_int_equal(json_integer_value(json_object_get(tot, "detections")), 2);
    assert_int_equal(json_integer_value(json_object_get(tot, "resolved")), 1);
    assert_string_equal(json_string_value(json_object_get(agency(out, 0, 0), "name")),
                        "Tỉnh - Thái Bình");
    assert_string_equal(json_string_value(json_object_get(agency(out, 0, 1), "parent")), "TB");
    free(text);
    json_decref(out);
    json_decref(doc);
}

/* POSTs `body` to the push handler with `token` as the Bearer token. */
static json_t *push(struct fixture *f, const char *token, const char *body, unsigned *status)
{
    struct srv_req *r = calloc(1, sizeof(*r));
    char authz[128];
    const char *headers[3] = {"Authorization", authz, NULL};
    json_t *j;

    assert_non_null(r);
    snprintf(authz, sizeof(authz), "Bearer %s", token);
    r->srv = &f->srv;
    r->db = f->db;
    r->method = "POST";
    r->path = "/api/v1/federation/push";
    r->fake_headers = headers;
    r->body = (const uint8_t *)body;
    r->body_len = strlen(body);
    snprintf(r->remote, sizeof(r->remote), "192.0.2.7");
    r->resp.fd = -1;
    assert_int_equal(api_federation_push(r), 0);
    *status = r->resp.status;
    j = r->resp.body ? json_loadb(r->resp.body, r->resp.body_len, 0, NULL) : NULL;
    free(r->resp.body);
    for (unsigned i = 0; i < r->resp.nheaders; i++) {
        free(r->resp.headers[i].name);
        free(r->resp.headers[i].value);
    }
    free(r);
    return j;
}

static void a_push_is_stored_shown_and_refused_once_revoked(void **state)
{
    struct fixture *f = need_db(state);
    json_t *j, *doc = built(), *prov;
    unsigned status = 0;
    char token[80], id[24], *body;

    j = tu_call_handler(&f->srv, f->db, api_federation_children_create, &f->admin, "POST", NULL,
                        NULL, "{\"code\":\"000.00.00.H34\",\"name\":\"Thái Bình\"}", 1, &status);
    assert_int_equal(status, 201);
    snprintf(token, sizeof(token), "%s", json_string_value(json_object_get(j, "token")));
    snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(j, "id")));
    json_decref(j);
    body = json_dumps(doc, JSON_COMPACT);

    j = push(f, token, body, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "accepted")), 2);
    json_decref(j);

    j = tu_call_handler(&f->srv, f->db, api_federation_provinces, &f->auditor, "GET", NULL,
                        "period=2026Q4", NULL, 1, &status);
    assert_int_equal(status, 200);
    prov = json_array_get(json_object_get(j, "provinces"), 0);
    assert_string_equal(json_string_value(json_object_get(prov, "code")), "000.00.00.H34");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(prov, "figures"), "totals"), "managed")),
                     111);
    assert_true(json_is_false(json_object_get(prov, "stale")));
    assert_int_equal(json_array_size(json_object_get(prov, "trend")), 1);
    json_decref(j);

    j = tu_call_handler(&f->srv, f->db, api_federation_provinces, &f->officer, "GET", NULL, NULL,
                        NULL, 1, &status);
    assert_int_equal(status, 403);
    json_decref(j);

    /* Under another province's code. */
    json_object_set_new(json_object_get(doc, "province"), "code", json_string("H99"));
    free(body);
    body = json_dumps(doc, JSON_COMPACT);
    j = push(f, token, body, &status);
    assert_int_equal(status, 403);
    json_decref(j);

    j = tu_call_handler(&f->srv, f->db, api_federation_children_revoke, &f->admin, "DELETE", id,
                        NULL, NULL, 0, &status);
    assert_int_equal(status, 204);
    json_decref(j);
    j = push(f, token, body, &status);
    assert_int_equal(status, 401);
    json_decref(j);
    free(body);
    json_decref(doc);
}

static void repeated_bad_tokens_lock_the_address(void **state)
{
    struct fixture *f = need_db(state);
    unsigned status = 0;
    json_t *j;
    int i;

    for (i = 0; i < 40; i++) {
        j = push(f, "khf_0123", "{}", &status);
        json_decref(j);
        if (status != 401)
            break;
    }
    assert_int_equal(status, 429);
    assert_true(i >= 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_built_document_passes_and_keeps_every_figure),
        cmocka_unit_test(names_lose_the_characters_of_paths_and_accounts),
        cmocka_unit_test(a_bad_province_code_is_not_built),
        cmocka_unit_test(unknown_fields_are_refused_anywhere),
        cmocka_unit_test(missing_fields_are_named),
        cmocka_unit_test(names_and_codes_that_could_carry_a_path_or_account_are_refused),
        cmocka_unit_test(counts_and_indexes_out_of_range_are_refused),
        cmocka_unit_test(periods_must_be_canonical_matching_and_unique),
        cmocka_unit_test(parents_must_be_listed_before_and_codes_unique),
        cmocka_unit_test(malformed_and_oversized_input_is_refused),
    };
    const struct CMUnitTest with_store[] = {
        cmocka_unit_test_setup_teardown(a_document_from_the_store_holds_figures_but_nothing_private,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_push_is_stored_shown_and_refused_once_revoked, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(repeated_bad_tokens_lock_the_address, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("federation", tests, NULL, NULL);

    failed += cmocka_run_group_tests_name("sqlite", with_store, NULL, NULL);
    pg_url = tu_pg_private_url();
    if (pg_url != NULL)
        failed += cmocka_run_group_tests_name("postgresql", with_store, NULL, NULL);
    else
        printf("SKIP: the PostgreSQL run needs KHIEN_PG_URL (scripts/pg-throwaway start DIR)\n");
    return failed;
}
