/*
 * The dashboard's read/act API (server/api_machine.c, api_detection.c,
 * api_overview.c) against a real SQLite store holding a small known dataset:
 * a province with two agencies A and B, four machines and five detections.
 * Handlers are called directly with hand-built requests, as the province
 * administrator or as A's officer, and their JSON answers are checked: scope
 * (an officer sees only its subtree and gets 404 outside it), filters, the
 * sort whitelist, paging totals, the task queue, moving and retiring, the
 * detection workflow and the overview's figures. The SQL-building helpers of
 * server/query.c are also checked on their own, without a database. The
 * database tests run on SQLite and, when KHIEN_PG_URL names a server, again
 * on PostgreSQL.
 *
 * The dataset is written under schema version 2, before the dashboard's
 * running figures existed, and the store is then migrated to the newest
 * version: every test therefore starts from figures that migration 3 filled
 * in from existing rows. The figures must then stay equal to a count of the
 * detections from scratch through status changes, moves, retirements and
 * new batches, and the overview must answer exactly what counting the
 * detections (the overview's queries before migration 3) answers.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "api.h"
#include "ingest.h"
#include "query.h"
#include "store/migrations.h"
#include "store/store.h"

#define M_A1 "a1a1a1a1-0000-4000-8000-000000000001"
#define M_A2 "a2a2a2a2-0000-4000-8000-000000000002"
#define M_A3 "a3a3a3a3-0000-4000-8000-000000000003"
#define M_B1 "b1b1b1b1-0000-4000-8000-000000000004"
#define DAY  86400

/* The PostgreSQL server to run the database tests against a second time
 * (KHIEN_PG_URL, e.g. from scripts/pg-throwaway), or NULL for SQLite. Each
 * test starts from an empty public schema there. */
static const char *pg_url;

struct fixture {
    char dir[512];
    struct store_db *db;
    struct srv srv;
    int64_t now;
    int64_t root, a, b;
    int64_t admin_id, officer_id;
    int64_t det[6]; /* det[1..5] */
    struct srv_principal admin, officer;
};

/* ------------------------------------------------------------------------ */
/* The dataset.                                                              */
/* ------------------------------------------------------------------------ */

#define AGENCY_INSERT                                                                              \
    "INSERT INTO agencies (parent_id, path, code, name, expected_machines, created_at)"            \
    " VALUES ($1, '', $2, $3, $4, $5) RETURNING id"

static int64_t add_agency(struct fixture *f, int64_t parent, const char *code, int64_t expected)
{
    char path[64];
    int64_t id = 0;
    struct store_stmt *st = NULL;

    if (parent == 0)
        assert_int_equal(
            store_queryf(f->db, &st, AGENCY_INSERT, "nttii", code, code, expected, f->now),
            STORE_ROW);
    else
        assert_int_equal(
            store_queryf(f->db, &st, AGENCY_INSERT, "ittii", parent, code, code, expected, f->now),
            STORE_ROW);
    id = store_col_int(st, 0);
    store_finalize(st);
    if (parent == 0)
        snprintf(path, sizeof(path), "/%lld/", (long long)id);
    else
        snprintf(path, sizeof(path), "/%lld/%lld/", (long long)f->root, (long long)id);
    assert_int_equal(
        store_execf(f->db, NULL, "UPDATE agencies SET path = $1 WHERE id = $2", "ti", path, id), 0);
    return id;
}

static void add_machine(struct fixture *f, const char *id, int64_t agency, const char *hostname,
                        const char *ips, int64_t last_seen, int64_t db_time, int64_t db_version,
                        int retired)
{
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO machines (id, agency_id, hostname, os, ips,"
                                 " db_version, db_time, rtp, inventory, cert_sha256, enrolled_at,"
                                 " last_seen, retired) VALUES ($1, $2, $3, 'Debian GNU/Linux 12',"
                                 " $4, $5, $6, 1, '{\"cpus\":4}', 'abc', $7, $8, $9)",
                                 "tittiiiii", id, agency, hostname, ips, db_version, db_time,
                                 f->now - 100 * DAY, last_seen, (int64_t)retired),
                     0);
}

static int64_t add_detection(struct fixture *f, const char *event, const char *machine,
                             int64_t agency, const char *path, const char *family,
                             int64_t detected_at, const char *status)
{
    int64_t id = 0;
    char sig[64];

    snprintf(sig, sizeof(sig), "%s-Variant", family);
    assert_int_equal(store_query_int(f->db, &id,
                                     "INSERT INTO detections (event_id, machine_id, agency_id,"
                                     " path, sha256, signature, family, action, detected_at,"
                                     " received_at, status, status_at) VALUES ($1, $2, $3, $4,"
                                     " 'e3b0', $5, $6, 'quarantined', $7, $7, $8, $7)"
                                     " RETURNING id",
                                     "ttitttit", event, machine, agency, path, sig, family,
                                     detected_at, status),
                     STORE_ROW);
    return id;
}

#define USER_INSERT                                                                                \
    "INSERT INTO users (username, password_hash, role, agency_id, created_at)"                     \
    " VALUES ($1, 'x', $2, $3, $4) RETURNING id"

static int64_t add_user(struct fixture *f, const char *name, const char *role, int64_t agency)
{
    int64_t id = 0;
    if (agency == 0)
        assert_int_equal(store_query_int(f->db, &id, USER_INSERT, "ttni", name, role, f->now),
                         STORE_ROW);
    else
        assert_int_equal(
            store_query_int(f->db, &id, USER_INSERT, "ttii", name, role, agency, f->now),
            STORE_ROW);
    return id;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    *state = f;
    snprintf(f->dir, sizeof(f->dir), "%s", tu_mkdtemp());
    if ((f->db = tu_store_open(f->dir, pg_url, 2)) == NULL) {
        return 0;
    }
    f->now = srv_now();
    f->srv.cfg.offline_after = 180;
    f->srv.cfg.checkin_interval = 60;

    f->root = add_agency(f, 0, "P", 0);
    f->a = add_agency(f, f->root, "A", 4);
    f->b = add_agency(f, f->root, "B", 2);
    f->admin_id = add_user(f, "admin", "admin", 0);
    f->officer_id = add_user(f, "officer_a", "officer", f->a);

    /* A1: online, fresh bundle, two open detections. A2: offline, never
     * updated, one old open detection. A3: retired. B1: online, a bundle 20
     * days old, one acknowledged detection. */
    add_machine(f, M_A1, f->a, "pc-a1", "10.0.0.1 192.168.1.5", f->now - 10, f->now - DAY, 7, 0);
    add_machine(f, M_A2, f->a, "pc-a2", "10.0.0.2", f->now - 10000, 0, 0, 0);
    add_machine(f, M_A3, f->a, "web_01", "10.0.0.3", f->now - 50 * DAY, f->now - 60 * DAY, 1, 1);
    add_machine(f, M_B1, f->b, "pc-b1", "10.0.1.1", f->now - 5, f->now - 20 * DAY, 3, 0);

    f->det[1] =
        add_detection(f, "ev-1", M_A1, f->a, "/home/a/eicar.com", "Eicar", f->now - 100, "new");
    f->det[2] =
        add_detection(f, "ev-2", M_A1, f->a, "/tmp/x", "Eicar", f->now - 2 * DAY, "resolved");
    f->det[3] = add_detection(f, "ev-3", M_B1, f->b, "/srv/t.exe", "Trojan.X", f->now - 3 * DAY,
                              "acknowledged");
    f->det[4] = add_detection(f, "ev-4", M_A2, f->a, "/old", "Old", f->now - 40 * DAY, "new");
    f->det[5] = add_detection(f, "ev-5", M_A1, f->a, "/home/a/2", "Eicar", f->now - 5 * DAY,
                              "acknowledged");

    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO events (event_id, machine_id, type, at, received_at)"
                                 " VALUES ('ev-s', $1, 'scan_finished', $2, $2)",
                                 "ti", M_A1, f->now - 50),
                     0);
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO bundles (version, sha256, size, signature, key_id,"
                                 " created_at) VALUES (7, 'ff', 10, 'sig', 'k', $1)",
                                 "i", f->now - DAY),
                     0);
    /* The running figures of migration 3 are computed from these rows. */
    assert_int_equal(store_migrate(f->db), 0);

    f->admin.role = SRV_ROLE_ADMIN;
    f->admin.user_id = f->admin_id;
    snprintf(f->admin.username, sizeof(f->admin.username), "admin");
    snprintf(f->admin.scope_path, sizeof(f->admin.scope_path), "%%");
    f->officer.role = SRV_ROLE_OFFICER;
    f->officer.user_id = f->officer_id;
    f->officer.agency_id = f->a;
    snprintf(f->officer.username, sizeof(f->officer.username), "officer_a");
    snprintf(f->officer.scope_path, sizeof(f->officer.scope_path), "/%lld/%lld/%%",
             (long long)f->root, (long long)f->a);
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
        printf("SKIP: store_open(sqlite://...) does not work in this build\n");
        skip();
    }
    return f;
}

/* ------------------------------------------------------------------------ */
/* Calling handlers.                                                         */
/* ------------------------------------------------------------------------ */

/* Runs `h` as `who` and returns the parsed answer (the caller decrefs) with
 * the status in *status. */
static json_t *call(struct fixture *f, srv_handler h, const struct srv_principal *who,
                    const char *method, const char *param, const char *query, const char *body,
                    unsigned *status)
{
    return tu_call_handler(&f->srv, f->db, h, who, method, param, query, body, 1, status);
}

/* Calls a handler that must answer `want`, and returns the answer. */
static json_t *expect(struct fixture *f, srv_handler h, const struct srv_principal *who,
                      const char *method, const char *param, const char *query, const char *body,
                      unsigned want)
{
    unsigned status = 0;
    json_t *j = call(f, h, who, method, param, query, body, &status);
    if (status != want) {
        char *text = json_dumps(j, JSON_COMPACT);
        fail_msg("%s ?%s: status %u, wanted %u: %s", param ? param : "", query ? query : "", status,
                 want, text);
    }
    return j;
}

static int64_t jint(const json_t *obj, const char *path)
{
    const json_t *v = obj;
    char key[64];

    /* "a.b.c" walks nested objects. */
    while (*path != '\0') {
        size_t n = strcspn(path, ".");
        snprintf(key, sizeof(key), "%.*s", (int)n, path);
        v = json_object_get(v, key);
        path += n + (path[n] == '.');
    }
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", key);
    return json_integer_value(v);
}

static const char *jstr(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        fail_msg("%s is not a string", key);
    return json_string_value(v);
}

/* The number of items in a list answer. */
static size_t nitems(const json_t *page)
{
    return json_array_size(json_object_get(page, "items"));
}

static const json_t *item(const json_t *page, size_t i)
{
    const json_t *v = json_array_get(json_object_get(page, "items"), i);
    assert_non_null(v);
    return v;
}

/* Lists machines as `who` with `query` and checks the total. */
static json_t *machines(struct fixture *f, const struct srv_principal *who, const char *query,
                        int64_t total)
{
    json_t *page = expect(f, api_machines_list, who, "GET", NULL, query, NULL, 200);
    if (jint(page, "total") != total)
        fail_msg("machines ?%s: total %lld, wanted %lld", query ? query : "",
                 (long long)jint(page, "total"), (long long)total);
    return page;
}

static json_t *detections(struct fixture *f, const struct srv_principal *who, const char *query,
                          int64_t total)
{
    json_t *page = expect(f, api_detections_list, who, "GET", NULL, query, NULL, 200);
    if (jint(page, "total") != total)
        fail_msg("detections ?%s: total %lld, wanted %lld", query ? query : "",
                 (long long)jint(page, "total"), (long long)total);
    assert_true(json_is_false(json_object_get(page, "total_capped")));
    return page;
}

/* ------------------------------------------------------------------------ */
/* The running figures against counting the detections.                      */
/* ------------------------------------------------------------------------ */

/* Reads every row of a statement the way `row` builds it into an array. */
static json_t *rows_json(struct fixture *f, const char *sql, const char *scope, int64_t since,
                         json_t *(*row)(struct store_stmt *))
{
    struct store_stmt *st = NULL;
    json_t *a = json_array();
    int r = store_queryf(f->db, &st, sql, "ti", scope, since);

    while (r == STORE_ROW) {
        json_array_append_new(a, row(st));
        r = store_step(st);
    }
    store_finalize(st);
    if (r < 0)
        fail_msg("%s: %s", sql, store_errmsg(f->db));
    return a;
}

static json_t *family_row(struct store_stmt *st)
{
    return json_pack("{s:s, s:I}", "family", store_col_text(st, 0), "count",
                     (json_int_t)store_col_int(st, 1));
}

static json_t *agency_row(struct store_stmt *st)
{
    return json_pack("{s:I, s:s, s:s, s:I, s:I}", "agency_id", (json_int_t)store_col_int(st, 0),
                     "code", store_col_text(st, 1), "name", store_col_text(st, 2), "detections",
                     (json_int_t)store_col_int(st, 3), "infected_machines",
                     (json_int_t)store_col_int(st, 4));
}

#define FROM_SCOPED " FROM detections d JOIN agencies a ON a.id = d.agency_id WHERE a.path LIKE $1"

/* Counts the detections in `scope` with from <= detected_at < to and the
 * condition `extra` (a constant). */
static int64_t count_scoped(struct fixture *f, const char *extra, const char *scope, int64_t from,
                            int64_t to)
{
    char sql[512];
    int64_t n = -1;

    snprintf(sql, sizeof(sql),
             "SELECT count(*)" FROM_SCOPED " AND d.detected_at >= $2 AND d.detected_at < $3%s",
             extra);
    if (store_query_int(f->db, &n, sql, "tii", scope, from, to) != STORE_ROW)
        fail_msg("%s: %s", sql, store_errmsg(f->db));
    return n;
}

/* The overview's detection figures at time `now` for `who`, counted from the
 * detections the way the overview counted them before migration 3. */
static json_t *overview_by_counting(struct fixture *f, const struct srv_principal *who, int64_t now,
                                    int64_t days)
{
    const char *scope = who->scope_path;
    int64_t today = now / DAY, first = today - days + 1;
    json_t *by_day = json_array();

    for (int64_t day = first; day <= today; day++)
        json_array_append_new(by_day,
                              json_integer(count_scoped(f, "", scope, day * DAY, (day + 1) * DAY)));
    return json_pack(
        "{s:I, s:I, s:o, s:o, s:o}", "open",
        (json_int_t)count_scoped(f, " AND d.status IN ('new','acknowledged')", scope, 0, INT64_MAX),
        "last_24h", (json_int_t)count_scoped(f, "", scope, now - DAY, INT64_MAX), "by_day", by_day,
        "top_families",
        rows_json(f,
                  "SELECT CASE WHEN d.family = '' THEN d.signature ELSE d.family END, "
                  "count(*)" FROM_SCOPED
                  " AND d.detected_at >= $2 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
                  scope, now - 30 * DAY, family_row),
        "top_agencies",
        rows_json(f,
                  "SELECT d.agency_id, a.code, a.name, count(*), count(DISTINCT CASE WHEN"
                  " d.status IN ('new','acknowledged') THEN d.machine_id END)" FROM_SCOPED
                  " AND d.detected_at >= $2 GROUP BY d.agency_id, a.code, a.name"
                  " ORDER BY 4 DESC, 1 LIMIT 10",
                  scope, now - 30 * DAY, agency_row));
}

/* Asks for the overview as `who` and checks its detection figures against
 * counting the detections at the same second. */
static void overview_matches_counting(struct fixture *f, const struct srv_principal *who,
                                      int64_t days)
{
    char query[32];

    snprintf(query, sizeof(query), "days=%lld", (long long)days);
    for (int tries = 0;; tries++) {
        int64_t now = srv_now();
        json_t *want = overview_by_counting(f, who, now, days);
        json_t *o = expect(f, api_overview, who, "GET", NULL, query, NULL, 200);
        const json_t *det = json_object_get(o, "detections"), *v;
        json_t *got, *by_day = json_array();
        size_t i;

        json_array_foreach(json_object_get(det, "by_day"), i, v)
            json_array_append(by_day, json_object_get(v, "count"));
        got = json_pack("{s:O, s:O, s:o, s:O, s:O}", "open", json_object_get(det, "open"),
                        "last_24h", json_object_get(det, "last_24h"), "by_day", by_day,
                        "top_families", json_object_get(o, "top_families"), "top_agencies",
                        json_object_get(o, "top_agencies"));
        json_decref(o);
        if (srv_now() != now && tries < 5) {
            /* The second changed under the call: windows may differ. */
            json_decref(want);
            json_decref(got);
            continue;
        }
        if (!json_equal(want, got)) {
            char *w = json_dumps(want, JSON_COMPACT), *g = json_dumps(got, JSON_COMPACT);
            fail_msg("overview as %s differs from counting:\n want %s\n got  %s", who->username, w,
                     g);
        }
        json_decref(want);
        json_decref(got);
        return;
    }
}

/* GET /agencies' "infected" of every agency against counting the machines
 * (in service, by current agency) that have an open detection. */
static void agencies_infected_match_counting(struct fixture *f)
{
    json_t *list = expect(f, api_agencies_list, &f->admin, "GET", NULL, NULL, NULL, 200);
    const json_t *items = json_is_array(list) ? list : json_object_get(list, "items"), *a;
    size_t i;

    assert_true(json_array_size(items) > 0);
    json_array_foreach(items, i, a)
    {
        int64_t want = -1;
        assert_int_equal(store_query_int(f->db, &want,
                                         "SELECT COUNT(DISTINCT d.machine_id) FROM detections d"
                                         " JOIN machines m ON m.id = d.machine_id WHERE"
                                         " m.agency_id = $1 AND m.retired = 0 AND"
                                         " d.status IN ('new','acknowledged')",
                                         "i", jint(a, "id")),
                         STORE_ROW);
        if (jint(a, "infected") != want)
            fail_msg("agency %lld: infected %lld, counting gives %lld", (long long)jint(a, "id"),
                     (long long)jint(a, "infected"), (long long)want);
    }
    json_decref(list);
}

/* Every figure, for both callers. */
static void everything_matches_counting(struct fixture *f)
{
    tu_figures_match_recount(f->db, srv_now());
    overview_matches_counting(f, &f->admin, 30);
    overview_matches_counting(f, &f->officer, 30);
    overview_matches_counting(f, &f->admin, 365);
    agencies_infected_match_counting(f);
}

/* Posts detections of `machine` at the given times, with ids PREFIX-i and
 * families cycling through a few (every fifth with none). */
static void post_detections(struct fixture *f, const char *machine, const char *prefix,
                            const int64_t *at, size_t n)
{
    static const char *const sigs[] = {"Win.Worm.Autorun-1-0", "Doc.Downloader.Emotet-2-1",
                                       "Eicar-Variant", "Win.Trojan.Agent-3-0", "   "};
    json_t *batch = json_array(), *report = json_object();

    for (size_t i = 0; i < n; i++)
        json_array_append_new(batch,
                              json_pack("{s:o, s:s, s:I, s:s}", "id",
                                        json_sprintf("%s-%zu", prefix, i), "type", "detection",
                                        "at", (json_int_t)at[i], "signature", sigs[i % 5]));
    assert_int_equal(srv_ingest_events(f->db, machine, batch, f->now, report), 0);
    assert_int_equal(json_integer_value(json_object_get(report, "accepted")), (json_int_t)n);
    json_decref(batch);
    json_decref(report);
}

static void set_status(struct fixture *f, int64_t id, const char *status)
{
    char param[32], body[64];

    snprintf(param, sizeof(param), "%lld", (long long)id);
    snprintf(body, sizeof(body), "{\"status\":\"%s\"}", status);
    json_decref(expect(f, api_detections_status, &f->admin, "POST", param, NULL, body, 200));
}

/* ------------------------------------------------------------------------ */
/* query.c on its own.                                                       */
/* ------------------------------------------------------------------------ */

static void sql_builder_binds_user_text_as_parameters(void **state)
{
    struct srv_sql q;
    struct srv_req r;
    (void)state;

    memset(&r, 0, sizeof(r));
    srv_sql_init(&q);
    snprintf(r.who.scope_path, sizeof(r.who.scope_path), "/1/4/%%");
    srv_sql_add(&q, "SELECT 1 FROM agencies a WHERE 1=1");
    srv_sql_scope(&q, &r, "a.path");
    srv_sql_add(&q, " AND a.code = ");
    srv_sql_text(&q, "x'; DROP TABLE agencies; --");
    srv_sql_add(&q, " AND a.id = ");
    srv_sql_int(&q, 42);
    assert_string_equal(q.text,
                        "SELECT 1 FROM agencies a WHERE 1=1 AND a.path LIKE $1 AND a.code = $2"
                        " AND a.id = $3");
    assert_int_equal(q.nparams, 3);
    assert_string_equal(q.params[0].text, "/1/4/%");
    assert_string_equal(q.params[1].text, "x'; DROP TABLE agencies; --");
    assert_int_equal(q.params[2].num, 42);
    srv_sql_clear(&q);

    /* The whole province adds no condition at all. */
    snprintf(r.who.scope_path, sizeof(r.who.scope_path), "%%");
    srv_sql_add(&q, "SELECT 1 FROM agencies a WHERE 1=1");
    srv_sql_scope(&q, &r, "a.path");
    assert_string_equal(q.text, "SELECT 1 FROM agencies a WHERE 1=1");
    assert_int_equal(q.nparams, 0);
    srv_sql_clear(&q);
}

static void sql_builder_overflow_is_refused(void **state)
{
    struct srv_sql q;
    struct store_stmt *st = (struct store_stmt *)&q;
    char chunk[1000];
    (void)state;

    srv_sql_init(&q);
    memset(chunk, ' ', sizeof(chunk) - 1);
    chunk[sizeof(chunk) - 1] = '\0';
    for (int i = 0; i < 5; i++)
        srv_sql_add(&q, chunk);
    assert_true(q.failed);
    assert_int_equal(srv_sql_prepare(NULL, &q, &st), STORE_EINVAL);
    assert_null(st);
    srv_sql_clear(&q);

    for (int i = 0; i < SRV_SQL_MAXPARAMS; i++)
        assert_int_equal(srv_sql_int(&q, i), i + 1);
    assert_int_equal(srv_sql_int(&q, 99), -1);
    assert_true(q.failed);
    srv_sql_clear(&q);
}

static void sort_whitelist_picks_constant_fragments(void **state)
{
    static const struct srv_sort table[] = {
        {"name", "n ASC", "n DESC", 0},
        {"seen", "s ASC", "s DESC", 1},
        {NULL, NULL, NULL, 0},
    };
    struct srv_sql q;
    const char *bad = NULL;
    (void)state;

    srv_sql_init(&q);
    assert_int_equal(srv_sql_order(&q, table, NULL, NULL, &bad), 0);
    assert_string_equal(q.text, " ORDER BY n ASC");
    srv_sql_clear(&q);
    assert_int_equal(srv_sql_order(&q, table, "seen", NULL, &bad), 0);
    assert_string_equal(q.text, " ORDER BY s DESC");
    srv_sql_clear(&q);
    assert_int_equal(srv_sql_order(&q, table, "seen", "asc", &bad), 0);
    assert_string_equal(q.text, " ORDER BY s ASC");
    srv_sql_clear(&q);
    assert_int_equal(srv_sql_order(&q, table, "n; DROP TABLE x", NULL, &bad), -1);
    assert_string_equal(bad, "sort");
    assert_int_equal(srv_sql_order(&q, table, "name", "DESC", &bad), -1);
    assert_string_equal(bad, "order");
    assert_string_equal(q.text, "");
    srv_sql_clear(&q);
}

static void like_pattern_escapes_metacharacters(void **state)
{
    char out[32];
    (void)state;

    assert_int_equal(srv_like_pattern("web_01", 0, out, sizeof(out)), 0);
    assert_string_equal(out, "%web\\_01%");
    assert_int_equal(srv_like_pattern("50%\\", 1, out, sizeof(out)), 0);
    assert_string_equal(out, "50\\%\\\\%");
    assert_int_equal(srv_like_pattern("", 0, out, sizeof(out)), 0);
    assert_string_equal(out, "%%");
    /* "%" + 14 escaped characters + "%" + NUL needs 31 bytes; 15 need 33. */
    assert_int_equal(srv_like_pattern("______________", 0, out, sizeof(out)), 0);
    assert_int_equal(srv_like_pattern("_______________", 0, out, sizeof(out)), -1);
}

/* ------------------------------------------------------------------------ */
/* Machines.                                                                 */
/* ------------------------------------------------------------------------ */

static void machines_officer_sees_only_its_subtree(void **state)
{
    struct fixture *f = need_db(state);
    json_t *page;
    char q[64];

    json_decref(machines(f, &f->admin, NULL, 3));
    page = machines(f, &f->officer, NULL, 2);
    assert_string_equal(jstr(item(page, 0), "hostname"), "pc-a1");
    assert_string_equal(jstr(item(page, 1), "hostname"), "pc-a2");
    assert_int_equal(jint(item(page, 0), "agency.id"), f->a);
    json_decref(page);

    /* Filtering by an agency outside the scope is "no such agency". */
    snprintf(q, sizeof(q), "agency=%lld", (long long)f->b);
    json_decref(expect(f, api_machines_list, &f->officer, "GET", NULL, q, NULL, 404));
    json_decref(machines(f, &f->admin, q, 1));
    snprintf(q, sizeof(q), "agency=%lld", (long long)f->root);
    json_decref(machines(f, &f->admin, q, 3));

    json_decref(expect(f, api_machines_get, &f->officer, "GET", M_B1, NULL, NULL, 404));
    json_decref(expect(f, api_machines_get, &f->officer, "GET", "no-such", NULL, NULL, 404));
    json_decref(expect(f, api_machines_tasks_list, &f->officer, "GET", M_B1, NULL, NULL, 404));
}

static void machine_page_has_inventory_events_and_counts(void **state)
{
    struct fixture *f = need_db(state);
    json_t *m = expect(f, api_machines_get, &f->officer, "GET", M_A1, NULL, NULL, 200);
    const json_t *ev;

    assert_string_equal(jstr(m, "hostname"), "pc-a1");
    assert_string_equal(jstr(json_object_get(m, "agency"), "code"), "A");
    assert_true(json_is_true(json_object_get(m, "online")));
    assert_int_equal(jint(m, "open_detections"), 2);
    assert_int_equal(jint(m, "db_age_days"), 1);
    assert_int_equal(jint(m, "inventory.cpus"), 4);
    assert_int_equal(json_array_size(json_object_get(m, "ips")), 2);
    ev = json_array_get(json_object_get(m, "recent_events"), 0);
    assert_non_null(ev);
    assert_string_equal(jstr(ev, "type"), "scan_finished");
    json_decref(m);

    m = expect(f, api_machines_get, &f->admin, "GET", M_A2, NULL, NULL, 200);
    assert_true(json_is_false(json_object_get(m, "online")));
    assert_true(json_is_null(json_object_get(m, "db_age_days")));
    json_decref(m);
}

static void machines_unknown_sort_or_order_is_400(void **state)
{
    struct fixture *f = need_db(state);
    json_t *j;

    j = expect(f, api_machines_list, &f->admin, "GET", NULL, "sort=hostname;DROP", NULL, 400);
    assert_string_equal(jstr(j, "field"), "sort");
    json_decref(j);
    j = expect(f, api_machines_list, &f->admin, "GET", NULL, "sort=hostname&order=sideways", NULL,
               400);
    assert_string_equal(jstr(j, "field"), "order");
    json_decref(j);
    j = expect(f, api_machines_list, &f->admin, "GET", NULL, "status=dead", NULL, 400);
    assert_string_equal(jstr(j, "field"), "status");
    json_decref(j);
}

static void machines_sort_and_paging(void **state)
{
    struct fixture *f = need_db(state);
    json_t *page;

    page = machines(f, &f->admin, "sort=detections", 3);
    assert_string_equal(jstr(item(page, 0), "id"), M_A1);
    assert_int_equal(jint(item(page, 0), "open_detections"), 2);
    assert_int_equal(jint(item(page, 2), "open_detections"), 1);
    json_decref(page);
    page = machines(f, &f->admin, "sort=detections&order=asc", 3);
    assert_string_equal(jstr(item(page, 2), "id"), M_A1);
    json_decref(page);
    page = machines(f, &f->admin, "sort=hostname&order=desc", 3);
    assert_string_equal(jstr(item(page, 0), "hostname"), "pc-b1");
    json_decref(page);
    page = machines(f, &f->admin, "sort=db_version&order=desc", 3);
    assert_string_equal(jstr(item(page, 0), "hostname"), "pc-a1");
    json_decref(page);
    page = machines(f, &f->admin, "sort=agency&order=desc", 3);
    assert_string_equal(jstr(item(page, 0), "hostname"), "pc-b1");
    json_decref(page);
    page = machines(f, &f->admin, "sort=last_seen", 3);
    assert_string_equal(jstr(item(page, 0), "hostname"), "pc-b1");
    json_decref(page);

    /* page and per_page are equal here because reply.c's test accessor
     * keeps one buffer, which srv_paging's two lookups share. */
    page = machines(f, &f->admin, "per_page=2&page=2", 3);
    assert_int_equal(nitems(page), 1);
    assert_int_equal(jint(page, "page"), 2);
    assert_int_equal(jint(page, "per_page"), 2);
    assert_string_equal(jstr(item(page, 0), "hostname"), "pc-b1");
    json_decref(page);
    page = machines(f, &f->admin, "per_page=3&page=3", 3);
    assert_int_equal(nitems(page), 0);
    json_decref(page);
}

static void machines_status_and_search_filters(void **state)
{
    struct fixture *f = need_db(state);
    json_t *page;

    json_decref(machines(f, &f->admin, "status=online", 2));
    page = machines(f, &f->admin, "status=offline", 1);
    assert_string_equal(jstr(item(page, 0), "id"), M_A2);
    json_decref(page);
    json_decref(machines(f, &f->admin, "status=infected", 3));
    json_decref(machines(f, &f->admin, "status=outdated", 2));
    page = machines(f, &f->admin, "status=retired", 1);
    assert_string_equal(jstr(item(page, 0), "id"), M_A3);
    assert_true(json_is_true(json_object_get(item(page, 0), "retired")));
    json_decref(page);
    json_decref(machines(f, &f->officer, "status=outdated", 1));

    /* Hostname, address and id prefix; LIKE's '_' and '%' are literal. */
    json_decref(machines(f, &f->admin, "q=PC-A", 2));
    json_decref(machines(f, &f->admin, "q=192.168", 1));
    json_decref(machines(f, &f->admin, "q=b1b1b1", 1));
    json_decref(machines(f, &f->admin, "q=0000-4000", 0)); /* inside the id, not a prefix */
    json_decref(machines(f, &f->admin, "q=pc_", 0));
    json_decref(machines(f, &f->admin, "q=%25", 0));
    json_decref(machines(f, &f->admin, "status=retired&q=web_", 1));
}

static void machine_tasks_are_validated_and_queued(void **state)
{
    struct fixture *f = need_db(state);
    char many[2048];
    size_t o = 0;
    json_t *j;

    j = expect(f, api_machines_tasks_create, &f->officer, "POST", M_A1, NULL,
               "{\"kind\":\"scan\",\"args\":{\"paths\":[\"/home\",\"/tmp\"],\"full\":false}}", 201);
    assert_string_equal(jstr(j, "state"), "pending");
    json_decref(j);
    json_decref(expect(f, api_machines_tasks_create, &f->officer, "POST", M_A1, NULL,
                       "{\"kind\":\"quarantine_restore\",\"args\":{\"quarantine_id\":\"q-1\"}}",
                       201));
    json_decref(expect(f, api_machines_tasks_create, &f->officer, "POST", M_A1, NULL,
                       "{\"kind\":\"update\"}", 201));

    j = expect(f, api_machines_tasks_list, &f->officer, "GET", M_A1, NULL, NULL, 200);
    assert_int_equal(jint(j, "total"), 3);
    assert_string_equal(jstr(item(j, 0), "kind"), "update"); /* newest first */
    assert_string_equal(jstr(item(j, 2), "kind"), "scan");
    assert_string_equal(jstr(item(j, 2), "created_by"), "officer_a");
    assert_int_equal(json_array_size(json_object_get(json_object_get(item(j, 2), "args"), "paths")),
                     2);
    json_decref(j);

    json_decref(expect(f, api_machines_tasks_create, &f->officer, "POST", M_A1, NULL,
                       "{\"kind\":\"reboot\"}", 400));
    json_decref(expect(f, api_machines_tasks_create, &f->officer, "POST", M_A1, NULL,
                       "{\"kind\":\"quarantine_delete\",\"args\":{}}", 400));
    json_decref(expect(f, api_machines_tasks_create, &f->officer, "POST", M_A1, NULL,
                       "{\"kind\":\"quarantine_delete\",\"args\":{\"quarantine_id\":\"../x\"}}",
                       400));
    json_decref(expect(f, api_machines_tasks_create, &f->officer, "POST", M_A1, NULL,
                       "{\"kind\":\"scan\",\"args\":{\"full\":\"yes\"}}", 400));
    json_decref(expect(f, api_machines_tasks_create, &f->officer, "POST", M_A1, NULL,
                       "{\"kind\":\"scan\",\"args\":{\"exec\":\"/bin/sh\"}}", 400));
    json_decref(expect(f, api_machines_tasks_create, &f->officer, "POST", M_A1, NULL,
                       "{\"kind\":\"update\",\"args\":{\"paths\":[]}}", 400));
    o += (size_t)snprintf(many, sizeof(many), "{\"kind\":\"scan\",\"args\":{\"paths\":[");
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(many + o, sizeof(many) - o, "%s\"/p%d\"", i ? "," : "", i);
    snprintf(many + o, sizeof(many) - o, "]}}");
    json_decref(expect(f, api_machines_tasks_create, &f->officer, "POST", M_A1, NULL, many, 400));

    /* Out of scope, retired. */
    json_decref(expect(f, api_machines_tasks_create, &f->officer, "POST", M_B1, NULL,
                       "{\"kind\":\"update\"}", 404));
    j = expect(f, api_machines_tasks_create, &f->officer, "POST", M_A3, NULL,
               "{\"kind\":\"update\"}", 409);
    assert_string_equal(jstr(j, "error"), "conflict");
    json_decref(j);
}

static void machine_move_needs_both_agencies_in_scope(void **state)
{
    struct fixture *f = need_db(state);
    char body[64];
    int64_t agency = 0, audits = 0;
    json_t *j;

    snprintf(body, sizeof(body), "{\"agency_id\":%lld}", (long long)f->b);
    json_decref(expect(f, api_machines_move, &f->officer, "POST", M_A2, NULL, body, 404));
    json_decref(expect(f, api_machines_move, &f->officer, "POST", M_A2, NULL, "{}", 400));
    j = expect(f, api_machines_move, &f->admin, "POST", M_A2, NULL, body, 200);
    assert_string_equal(jstr(json_object_get(j, "agency"), "code"), "B");
    json_decref(j);

    assert_int_equal(
        store_query_int(f->db, &agency, "SELECT agency_id FROM machines WHERE id = $1", "t", M_A2),
        STORE_ROW);
    assert_int_equal(agency, f->b);
    /* Its detection stays with the agency it was made in. */
    assert_int_equal(store_query_int(f->db, &agency,
                                     "SELECT agency_id FROM detections WHERE id = $1", "i",
                                     f->det[4]),
                     STORE_ROW);
    assert_int_equal(agency, f->a);
    /* The officer of A no longer sees the machine, but still the detection. */
    json_decref(expect(f, api_machines_get, &f->officer, "GET", M_A2, NULL, NULL, 404));
    json_decref(detections(f, &f->officer, "status=open", 3));
    assert_int_equal(store_query_int(f->db, &audits,
                                     "SELECT count(*) FROM audit WHERE action = 'machine.move'",
                                     ""),
                     STORE_ROW);
    assert_int_equal(audits, 1);
}

static void machine_retire_revokes_certificate(void **state)
{
    struct fixture *f = need_db(state);
    char *cert = NULL;
    int64_t retired = 0, pending = 0;

    json_decref(expect(f, api_machines_tasks_create, &f->admin, "POST", M_B1, NULL,
                       "{\"kind\":\"update\"}", 201));
    json_decref(expect(f, api_machines_retire, &f->officer, "POST", M_B1, NULL, "{}", 404));
    json_decref(expect(f, api_machines_retire, &f->admin, "POST", M_B1, NULL, "{}", 200));
    assert_int_equal(
        store_query_text(f->db, &cert, "SELECT cert_sha256 FROM machines WHERE id = $1", "t", M_B1),
        STORE_ROW);
    assert_string_equal(cert, "");
    free(cert);
    assert_int_equal(
        store_query_int(f->db, &retired, "SELECT retired FROM machines WHERE id = $1", "t", M_B1),
        STORE_ROW);
    assert_int_equal(retired, 1);
    assert_int_equal(store_query_int(f->db, &pending,
                                     "SELECT count(*) FROM tasks WHERE machine_id = $1"
                                     " AND state = 'pending'",
                                     "t", M_B1),
                     STORE_ROW);
    assert_int_equal(pending, 0);
    json_decref(machines(f, &f->admin, NULL, 2));
    json_decref(machines(f, &f->admin, "status=retired", 2));
}

/* ------------------------------------------------------------------------ */
/* Detections.                                                               */
/* ------------------------------------------------------------------------ */

static void detections_list_filters_and_scope(void **state)
{
    struct fixture *f = need_db(state);
    json_t *page;
    char q[96];

    page = detections(f, &f->admin, NULL, 5);
    assert_int_equal(jint(item(page, 0), "id"), f->det[1]); /* newest first */
    assert_string_equal(jstr(json_object_get(item(page, 0), "machine"), "hostname"), "pc-a1");
    assert_string_equal(jstr(json_object_get(item(page, 0), "agency"), "code"), "A");
    assert_int_equal(jint(item(page, 4), "id"), f->det[4]);
    json_decref(page);

    json_decref(detections(f, &f->officer, NULL, 4));
    json_decref(detections(f, &f->admin, "status=new", 2));
    /* Open is two statuses, merged newest first, paged across both. */
    page = detections(f, &f->admin, "status=open", 4);
    assert_int_equal(jint(item(page, 0), "id"), f->det[1]);
    assert_int_equal(jint(item(page, 1), "id"), f->det[3]);
    assert_int_equal(jint(item(page, 2), "id"), f->det[5]);
    assert_int_equal(jint(item(page, 3), "id"), f->det[4]);
    json_decref(page);
    page = detections(f, &f->admin, "status=open&per_page=2&page=2", 4);
    assert_int_equal(nitems(page), 2);
    assert_int_equal(jint(item(page, 0), "id"), f->det[5]);
    assert_int_equal(jint(item(page, 1), "id"), f->det[4]);
    json_decref(page);
    page = detections(f, &f->officer, "status=open", 3);
    assert_int_equal(jint(item(page, 1), "id"), f->det[5]);
    json_decref(page);
    snprintf(q, sizeof(q), "status=open&machine=%s", M_A1);
    json_decref(detections(f, &f->admin, q, 2));
    json_decref(detections(f, &f->officer, "status=acknowledged", 1));
    json_decref(detections(f, &f->admin, "family=Eicar", 3));
    json_decref(detections(f, &f->admin, "q=EICAR.com", 1));
    json_decref(detections(f, &f->admin, "q=trojan", 1)); /* signature */
    json_decref(detections(f, &f->admin, "q=pc-b", 1));   /* hostname */
    json_decref(detections(f, &f->officer, "q=pc-b", 0)); /* out of scope */
    snprintf(q, sizeof(q), "machine=%s", M_A1);
    json_decref(detections(f, &f->admin, q, 3));
    snprintf(q, sizeof(q), "from=%lld&to=%lld", (long long)(f->now - 4 * DAY),
             (long long)(f->now - DAY));
    json_decref(detections(f, &f->admin, q, 2));
    snprintf(q, sizeof(q), "agency=%lld", (long long)f->b);
    json_decref(detections(f, &f->admin, q, 1));
    json_decref(expect(f, api_detections_list, &f->officer, "GET", NULL, q, NULL, 404));
    page = detections(f, &f->admin, "per_page=2&page=2", 5);
    assert_int_equal(nitems(page), 2);
    json_decref(page);

    json_decref(expect(f, api_detections_list, &f->admin, "GET", NULL, "status=gone", NULL, 400));
    json_decref(
        expect(f, api_detections_list, &f->admin, "GET", NULL, "from=yesterday", NULL, 400));
}

static void detection_get_is_scoped(void **state)
{
    struct fixture *f = need_db(state);
    char id[32];
    json_t *d;

    snprintf(id, sizeof(id), "%lld", (long long)f->det[3]);
    json_decref(expect(f, api_detections_get, &f->officer, "GET", id, NULL, NULL, 404));
    d = expect(f, api_detections_get, &f->admin, "GET", id, NULL, NULL, 200);
    assert_string_equal(jstr(d, "status"), "acknowledged");
    assert_string_equal(jstr(d, "family"), "Trojan.X");
    assert_int_equal(json_array_size(json_object_get(d, "notes")), 0);
    json_decref(d);
    json_decref(expect(f, api_detections_get, &f->admin, "GET", "12x", NULL, NULL, 404));
    json_decref(expect(f, api_detections_get, &f->admin, "GET", "999999", NULL, NULL, 404));
}

static void detection_status_change_writes_a_note(void **state)
{
    struct fixture *f = need_db(state);
    char id[32], big[2100 * 3 + 64];
    size_t o;
    int64_t n = 0;
    json_t *d;
    const json_t *note;

    snprintf(id, sizeof(id), "%lld", (long long)f->det[1]);
    d = expect(f, api_detections_status, &f->officer, "POST", id, NULL,
               "{\"status\":\"acknowledged\",\"note\":\"đã kiểm tra\"}", 200);
    assert_string_equal(jstr(d, "status"), "acknowledged");
    assert_string_equal(jstr(d, "status_by"), "officer_a");
    note = json_array_get(json_object_get(d, "notes"), 0);
    assert_non_null(note);
    assert_string_equal(jstr(note, "status_from"), "new");
    assert_string_equal(jstr(note, "status_to"), "acknowledged");
    assert_string_equal(jstr(note, "username"), "officer_a");
    assert_string_equal(jstr(note, "note"), "đã kiểm tra");
    json_decref(d);

    d = expect(f, api_detections_status, &f->officer, "POST", id, NULL, "{\"status\":\"resolved\"}",
               200);
    assert_int_equal(json_array_size(json_object_get(d, "notes")), 2);
    json_decref(d);
    assert_int_equal(store_query_int(f->db, &n,
                                     "SELECT count(*) FROM audit WHERE action = 'detection.status'",
                                     ""),
                     STORE_ROW);
    assert_int_equal(n, 2);

    json_decref(expect(f, api_detections_status, &f->officer, "POST", id, NULL,
                       "{\"status\":\"closed\"}", 400));
    /* 2,000 characters are allowed even when each takes three bytes. */
    o = (size_t)snprintf(big, sizeof(big), "{\"status\":\"new\",\"note\":\"");
    for (int i = 0; i < 2000; i++)
        o += (size_t)snprintf(big + o, sizeof(big) - o, "ệ");
    snprintf(big + o, sizeof(big) - o, "\"}");
    json_decref(expect(f, api_detections_status, &f->officer, "POST", id, NULL, big, 200));
    snprintf(big + o, sizeof(big) - o, "x\"}");
    json_decref(expect(f, api_detections_status, &f->officer, "POST", id, NULL, big, 400));

    snprintf(id, sizeof(id), "%lld", (long long)f->det[3]);
    json_decref(expect(f, api_detections_status, &f->officer, "POST", id, NULL,
                       "{\"status\":\"resolved\"}", 404));
}

/* ------------------------------------------------------------------------ */
/* Overview.                                                                 */
/* ------------------------------------------------------------------------ */

static void overview_figures_on_known_data(void **state)
{
    struct fixture *f = need_db(state);
    json_t *o = expect(f, api_overview, &f->admin, "GET", NULL, NULL, NULL, 200);
    const json_t *cov, *by_day, *fam, *top;
    int64_t sum = 0;

    assert_int_equal(jint(o, "machines.enrolled"), 3);
    assert_int_equal(jint(o, "machines.expected"), 6);
    assert_int_equal(jint(o, "machines.online"), 2);
    assert_int_equal(jint(o, "machines.offline"), 1);
    assert_int_equal(jint(o, "machines.outdated"), 2);
    assert_int_equal(jint(o, "machines.retired"), 1);

    cov = json_object_get(o, "coverage");
    assert_int_equal(json_array_size(cov), 2);
    assert_string_equal(jstr(json_array_get(cov, 0), "code"), "A");
    assert_int_equal(jint(json_array_get(cov, 0), "enrolled"), 2);
    assert_int_equal(jint(json_array_get(cov, 0), "expected"), 4);
    assert_int_equal(jint(json_array_get(cov, 1), "enrolled"), 1);

    assert_int_equal(jint(o, "db.latest_version"), 7);
    assert_int_equal(jint(o, "db.outdated_machines"), 2);
    assert_int_equal(jint(o, "db.outdated_days"), 15);

    assert_int_equal(jint(o, "detections.open"), 4);
    assert_int_equal(jint(o, "detections.last_24h"), 1);
    by_day = json_object_get(json_object_get(o, "detections"), "by_day");
    assert_int_equal(json_array_size(by_day), 30);
    for (size_t i = 0; i < json_array_size(by_day); i++)
        sum += jint(json_array_get(by_day, i), "count");
    assert_int_equal(sum, 4); /* the 40-day-old one is outside */
    assert_int_equal(jint(json_array_get(by_day, 29), "count"), 1);
    assert_int_equal(strlen(jstr(json_array_get(by_day, 0), "day")), 10);

    fam = json_object_get(o, "top_families");
    assert_string_equal(jstr(json_array_get(fam, 0), "family"), "Eicar");
    assert_int_equal(jint(json_array_get(fam, 0), "count"), 3);
    assert_int_equal(json_array_size(fam), 2);
    top = json_object_get(o, "top_agencies");
    assert_string_equal(jstr(json_array_get(top, 0), "code"), "A");
    assert_int_equal(jint(json_array_get(top, 0), "detections"), 3);
    assert_int_equal(jint(json_array_get(top, 0), "infected_machines"), 1);
    assert_int_equal(jint(json_array_get(top, 1), "detections"), 1);
    json_decref(o);

    /* The officer of A sees A only. */
    o = expect(f, api_overview, &f->officer, "GET", NULL, "days=60", NULL, 200);
    assert_int_equal(jint(o, "machines.enrolled"), 2);
    assert_int_equal(jint(o, "machines.expected"), 4);
    assert_int_equal(json_array_size(json_object_get(o, "coverage")), 1);
    assert_int_equal(jint(o, "detections.open"), 3);
    by_day = json_object_get(json_object_get(o, "detections"), "by_day");
    assert_int_equal(json_array_size(by_day), 60);
    assert_int_equal(json_array_size(json_object_get(o, "top_agencies")), 1);
    json_decref(o);

    json_decref(expect(f, api_overview, &f->admin, "GET", NULL, "days=366", NULL, 400));
    json_decref(expect(f, api_overview, &f->admin, "GET", NULL, "days=0", NULL, 400));
}

static void overview_coverage_counts_the_topmost_expectation(void **state)
{
    struct fixture *f = need_db(state);
    json_t *o;

    /* Once the province itself expects machines, it is the one row and
     * counts every machine below it; A and B are inside it. */
    assert_int_equal(store_execf(f->db, NULL,
                                 "UPDATE agencies SET expected_machines = 10 WHERE id = $1", "i",
                                 f->root),
                     0);
    o = expect(f, api_overview, &f->admin, "GET", NULL, NULL, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(o, "coverage")), 1);
    assert_int_equal(jint(json_array_get(json_object_get(o, "coverage"), 0), "enrolled"), 3);
    assert_int_equal(jint(o, "machines.expected"), 10);
    json_decref(o);
    /* The officer's scope starts at A, so A is its topmost. */
    o = expect(f, api_overview, &f->officer, "GET", NULL, NULL, NULL, 200);
    assert_int_equal(jint(o, "machines.expected"), 4);
    json_decref(o);
}

/* ------------------------------------------------------------------------ */
/* The running figures.                                                      */
/* ------------------------------------------------------------------------ */

static void migration_3_fills_figures_from_existing_rows(void **state)
{
    struct fixture *f = need_db(state);
    int version = 0;
    int64_t open = 0, days = 0;

    assert_int_equal(store_schema_version(f->db, &version), 0);
    assert_int_equal(version, store_schema_latest());
    tu_figures_match_recount(f->db, srv_now());
    /* Not a recount of nothing: the dataset's figures are there. */
    assert_int_equal(store_query_int(f->db, &open,
                                     "SELECT CAST(sum(open_detections) AS BIGINT) FROM machines",
                                     ""),
                     STORE_ROW);
    assert_int_equal(open, 4);
    assert_int_equal(store_query_int(f->db, &days, "SELECT count(*) FROM detection_daily", ""),
                     STORE_ROW);
    assert_int_equal(days, 5);
    everything_matches_counting(f);
}

/* Open to open, open to closed and back, closing the newest open detection
 * of a machine (its next newest becomes the one that counts for "infected
 * in the last 30 days") and the last one of another. */
static void figures_follow_status_changes_back_and_forth(void **state)
{
    struct fixture *f = need_db(state);
    static const char *const steps[] = {"acknowledged",   "resolved",     "new",
                                        "false_positive", "acknowledged", "resolved"};
    json_t *m;

    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        set_status(f, f->det[1], steps[i]);
        everything_matches_counting(f);
    }
    m = expect(f, api_machines_get, &f->admin, "GET", M_A1, NULL, NULL, 200);
    assert_int_equal(jint(m, "open_detections"), 1);
    json_decref(m);
    /* B1's only open detection closes: B has no infected machine left. */
    set_status(f, f->det[3], "resolved");
    everything_matches_counting(f);
    json_decref(machines(f, &f->admin, "status=infected", 2));
    set_status(f, f->det[5], "false_positive");
    set_status(f, f->det[4], "resolved");
    everything_matches_counting(f);
    json_decref(machines(f, &f->admin, "status=infected", 0));
    set_status(f, f->det[2], "new"); /* reopened from resolved */
    everything_matches_counting(f);
    json_decref(machines(f, &f->admin, "status=infected", 1));
}

/* A machine moved to another agency keeps its history there, a retired one
 * leaves the counts of machines, and new batches of both land where the
 * machine is now. */
static void figures_survive_moves_retirement_and_new_batches(void **state)
{
    struct fixture *f = need_db(state);
    char body[64];
    int64_t at[12], id = 0;

    snprintf(body, sizeof(body), "{\"agency_id\":%lld}", (long long)f->b);
    json_decref(expect(f, api_machines_move, &f->admin, "POST", M_A2, NULL, body, 200));
    everything_matches_counting(f);
    json_decref(expect(f, api_machines_retire, &f->admin, "POST", M_B1, NULL, "{}", 200));
    everything_matches_counting(f);

    for (size_t i = 0; i < 12; i++)
        at[i] = f->now - (int64_t)i * 3 * DAY - 60;
    post_detections(f, M_A2, "moved", at, 12);
    post_detections(f, M_A1, "stay", at, 6);
    everything_matches_counting(f);
    /* Close and reopen one of the moved machine's new detections. */
    assert_int_equal(
        store_query_int(f->db, &id, "SELECT id FROM detections WHERE event_id = 'moved-0'", ""),
        STORE_ROW);
    set_status(f, id, "resolved");
    everything_matches_counting(f);
    set_status(f, id, "acknowledged");
    everything_matches_counting(f);
    /* The old detection stays with A, where it was made. */
    set_status(f, f->det[4], "resolved");
    everything_matches_counting(f);
}

/* "The last 30 days" starts inside a UTC day: detections on both sides of
 * its start, within the day it starts in and around it, one from an agent
 * whose clock is ahead, and one exactly at the start (a few, since the
 * second the overview runs in is not known here). */
static void overview_window_starting_inside_a_day_is_exact(void **state)
{
    struct fixture *f = need_db(state);
    int64_t at[128];
    size_t n = 0;

    for (int k = -60; k <= 60; k += 2)
        at[n++] = f->now - 30 * DAY + (int64_t)k * 1800;
    for (int k = -3; k <= 3; k++)
        at[n++] = f->now - 30 * DAY + k;
    at[n++] = f->now + 3600;
    at[n++] = f->now - DAY + 1;
    at[n++] = f->now - DAY - 1;
    assert_true(n <= sizeof(at) / sizeof(at[0]));
    post_detections(f, M_A1, "edge", at, n);
    post_detections(f, M_B1, "edge", at, n / 2);
    everything_matches_counting(f);
    overview_matches_counting(f, &f->officer, 1);
    overview_matches_counting(f, &f->officer, 31);
}

/* A status change in flight while another connection changes the same
 * detection, as two officers acting at once. The other change holds its
 * transaction open; the handler, started meanwhile, must wait for it and then
 * replace the status that change left, not the one there before: on SQLite
 * its write lock waits, on PostgreSQL its guarded UPDATE finds the row
 * changed and reads it again. The note then says "from resolved", and the
 * open count drops once, not twice. */
struct racing_call {
    struct fixture *f;
    char param[32];
    unsigned status;
};

static void *racing_status_change(void *arg)
{
    struct racing_call *c = arg;
    json_decref(call(c->f, api_detections_status, &c->f->admin, "POST", c->param, NULL,
                     "{\"status\":\"false_positive\"}", &c->status));
    return NULL;
}

static void status_change_racing_another_officer_counts_once(void **state)
{
    struct fixture *f = need_db(state);
    struct store_db *other = NULL;
    struct racing_call c = {.f = f};
    pthread_t thread;
    char url[600], err[256] = "";
    char *from = NULL;

    if (pg_url != NULL)
        snprintf(url, sizeof(url), "%s", pg_url);
    else
        snprintf(url, sizeof(url), "sqlite://%s/khien.db", f->dir);
    assert_int_equal(store_open(url, &other, err, sizeof(err)), 0);
    /* The other officer resolves det[1], A1's newest open detection, and
     * moves the figures as api_detection.c would; det[5] becomes A1's newest
     * open one in A. */
    assert_int_equal(store_begin_write(other), 0);
    assert_int_equal(store_execf(other, NULL,
                                 "UPDATE detections SET status = 'resolved' WHERE id = $1", "i",
                                 f->det[1]),
                     0);
    assert_int_equal(store_execf(other, NULL,
                                 "UPDATE machines SET open_detections = open_detections - 1"
                                 " WHERE id = $1",
                                 "t", M_A1),
                     0);
    assert_int_equal(store_execf(other, NULL,
                                 "UPDATE open_by_agency SET open_count = open_count - 1,"
                                 " newest_open = $1 WHERE agency_id = $2 AND machine_id = $3",
                                 "iit", f->now - 5 * DAY, f->a, M_A1),
                     0);

    snprintf(c.param, sizeof(c.param), "%lld", (long long)f->det[1]);
    assert_int_equal(pthread_create(&thread, NULL, racing_status_change, &c), 0);
    usleep(300 * 1000); /* long enough for the handler to reach the lock */
    assert_int_equal(store_commit(other), 0);
    assert_int_equal(pthread_join(thread, NULL), 0);
    store_close(other);

    assert_int_equal(c.status, 200);
    assert_int_equal(store_query_text(f->db, &from,
                                      "SELECT status_from FROM detection_notes"
                                      " WHERE detection_id = $1",
                                      "i", f->det[1]),
                     STORE_ROW);
    assert_string_equal(from, "resolved");
    free(from);
    everything_matches_counting(f);
}

int main(void)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(sql_builder_binds_user_text_as_parameters),
        cmocka_unit_test(sql_builder_overflow_is_refused),
        cmocka_unit_test(sort_whitelist_picks_constant_fragments),
        cmocka_unit_test(like_pattern_escapes_metacharacters),
    };
    const struct CMUnitTest with_store[] = {
        cmocka_unit_test_setup_teardown(machines_officer_sees_only_its_subtree, setup, teardown),
        cmocka_unit_test_setup_teardown(machine_page_has_inventory_events_and_counts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(machines_unknown_sort_or_order_is_400, setup, teardown),
        cmocka_unit_test_setup_teardown(machines_sort_and_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(machines_status_and_search_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(machine_tasks_are_validated_and_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(machine_move_needs_both_agencies_in_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(machine_retire_revokes_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(detections_list_filters_and_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(detection_get_is_scoped, setup, teardown),
        cmocka_unit_test_setup_teardown(detection_status_change_writes_a_note, setup, teardown),
        cmocka_unit_test_setup_teardown(overview_figures_on_known_data, setup, teardown),
        cmocka_unit_test_setup_teardown(overview_coverage_counts_the_topmost_expectation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(migration_3_fills_figures_from_existing_rows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(figures_follow_status_changes_back_and_forth, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(figures_survive_moves_retirement_and_new_batches, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(overview_window_starting_inside_a_day_is_exact, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(status_change_racing_another_officer_counts_once, setup,
                                        teardown),
    };
    int failed = cmocka_run_group_tests_name("query", plain, NULL, NULL);

    failed += cmocka_run_group_tests_name("sqlite", with_store, NULL, NULL);
    pg_url = tu_pg_private_url();
    if (pg_url != NULL)
        failed += cmocka_run_group_tests_name("postgresql", with_store, NULL, NULL);
    else
        printf("SKIP: the PostgreSQL run needs KHIEN_PG_URL (scripts/pg-throwaway start DIR)\n");
    return failed;
}
