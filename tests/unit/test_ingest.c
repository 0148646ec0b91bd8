/*
 * Event ingestion (server/ingest.c) against a real SQLite store: a retried
 * batch stores nothing twice, invalid events are reported by index without
 * stopping the valid ones, detections get their family and the machine's
 * current agency, and a malformed call stores nothing. The validation and
 * family rules are also checked on their own, without a database. Tests
 * that need the store skip when it cannot be opened; they run on SQLite and,
 * when KHIEN_PG_URL names a server, again on PostgreSQL.
 *
 * After each batch the dashboard's running figures (migration 3: the
 * machines' open counts, open detections per agency and machine, detections
 * per day and agency, and per day, agency and family) must equal what
 * counting the detections from scratch gives.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ingest.h"
#include "store/store.h"

#define MACHINE "6f1c2a9e-3b7d-4c55-9a0e-1d2f3a4b5c6d"
#define NOW     1800000000LL

/* The PostgreSQL server to run the store tests against a second time, or
 * NULL for SQLite. Each test starts from an empty public schema there. */
static const char *pg_url;

struct fixture {
    char dir[512];
    struct store_db *db;
    int64_t agency_a;
    int64_t agency_b;
};

static int64_t insert_agency(struct store_db *db, const char *code)
{
    struct store_stmt *st = NULL;
    int r = store_queryf(db, &st,
                         "INSERT INTO agencies (parent_id, path, code, name, created_at) VALUES "
                         "(NULL, '', $1, $1, $2) RETURNING id",
                         "ti", code, (int64_t)NOW);
    assert_int_equal(r, STORE_ROW);
    int64_t id = store_col_int(st, 0);
    store_finalize(st);
    return id;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s", tu_mkdtemp());
    if ((f->db = tu_store_open(f->dir, pg_url, 0)) == NULL) {
        *state = f;
        return 0;
    }
    f->agency_a = insert_agency(f->db, "A");
    f->agency_b = insert_agency(f->db, "B");
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO machines (id, agency_id, hostname, enrolled_at) "
                                 "VALUES ($1, $2, 'pc-01', $3)",
                                 "tii", MACHINE, f->agency_a, (int64_t)NOW),
                     0);
    *state = f;
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

static struct store_db *need_db(void **state)
{
    struct fixture *f = *state;
    if (f->db == NULL) {
        printf("SKIP: store_open(sqlite://...) does not work in this build\n");
        skip();
    }
    return f->db;
}

static int64_t count(struct store_db *db, const char *sql)
{
    int64_t n = -1;
    assert_int_equal(store_query_int(db, &n, sql, ""), STORE_ROW);
    return n;
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (j == NULL)
        fail_msg("bad test JSON at %d:%d: %s", e.line, e.column, e.text);
    return j;
}

/* Runs one batch and returns the report (caller decrefs). */
static json_t *ingest(struct store_db *db, const char *machine, const char *events)
{
    json_t *batch = parse(events);
    json_t *report = json_object();
    assert_int_equal(srv_ingest_events(db, machine, batch, NOW, report), 0);
    json_decref(batch);
    return report;
}

static int64_t report_int(const json_t *report, const char *name)
{
    const json_t *v = json_object_get(report, name);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static const char three_events[] =
    "[{\"id\":\"e-1\",\"type\":\"scan_started\",\"at\":1799999000},"
    " {\"id\":\"e-2\",\"type\":\"detection\",\"at\":1799999001,\"path\":\"/home/a/eicar.com\","
    "  \"sha256\":\"275A021BBFB6489E54D471899F7DB9D1663FC695EC2FE2A2C4538AABF651FD0F\","
    "  \"md5\":\"44d88612fea8a8f36de82e1278abb02f\",\"size\":68,"
    "  \"signature\":\"Win.Test.EICAR_HDB-1\",\"action\":\"quarantined\"},"
    " {\"id\":\"e-3\",\"type\":\"scan_finished\",\"at\":1799999002,\"files\":12}]";

static void ingest_retried_batch_creates_no_duplicates(void **state)
{
    struct store_db *db = need_db(state);
    json_t *first = ingest(db, MACHINE, three_events);
    assert_int_equal(report_int(first, "accepted"), 3);
    assert_int_equal(report_int(first, "duplicates"), 0);
    assert_int_equal(json_array_size(json_object_get(first, "rejected")), 0);
    json_decref(first);

    json_t *again = ingest(db, MACHINE, three_events);
    assert_int_equal(report_int(again, "accepted"), 0);
    assert_int_equal(report_int(again, "duplicates"), 3);
    json_decref(again);

    assert_int_equal(count(db, "SELECT COUNT(*) FROM events"), 3);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM detections"), 1);
    tu_figures_match_recount(db, NOW);
    assert_int_equal(count(db, "SELECT open_detections FROM machines"), 1);

    /* The detection row carries what the event said, normalized. */
    struct store_stmt *st = NULL;
    assert_int_equal(store_queryf(db, &st,
                                  "SELECT machine_id, path, sha256, md5, size, signature, family, "
                                  "action, detected_at, received_at, status, status_at FROM "
                                  "detections WHERE event_id = 'e-2'",
                                  ""),
                     STORE_ROW);
    assert_string_equal(store_col_text(st, 0), MACHINE);
    assert_string_equal(store_col_text(st, 1), "/home/a/eicar.com");
    assert_string_equal(store_col_text(st, 2),
                        "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f");
    assert_string_equal(store_col_text(st, 3), "44d88612fea8a8f36de82e1278abb02f");
    assert_int_equal(store_col_int(st, 4), 68);
    assert_string_equal(store_col_text(st, 5), "Win.Test.EICAR_HDB-1");
    assert_string_equal(store_col_text(st, 6), "Win.Test.EICAR_HDB");
    assert_string_equal(store_col_text(st, 7), "quarantined");
    assert_int_equal(store_col_int(st, 8), 1799999001);
    assert_int_equal(store_col_int(st, 9), NOW);
    assert_string_equal(store_col_text(st, 10), "new");
    assert_int_equal(store_col_int(st, 11), NOW);
    store_finalize(st);

    /* The event keeps its whole document, extra fields included. */
    char *data = NULL;
    assert_int_equal(
        store_query_text(db, &data, "SELECT data FROM events WHERE event_id = 'e-3'", ""),
        STORE_ROW);
    json_t *doc = parse(data);
    assert_int_equal(json_integer_value(json_object_get(doc, "files")), 12);
    json_decref(doc);
    free(data);
}

static void ingest_duplicate_id_within_one_batch(void **state)
{
    struct store_db *db = need_db(state);
    json_t *report = ingest(db, MACHINE,
                            "[{\"id\":\"same\",\"type\":\"rtp_off\",\"at\":1799999000},"
                            " {\"id\":\"same\",\"type\":\"rtp_off\",\"at\":1799999001}]");
    assert_int_equal(report_int(report, "accepted"), 1);
    assert_int_equal(report_int(report, "duplicates"), 1);
    json_decref(report);
}

/* Each invalid event lands in "rejected" with its index, its id when it has
 * a usable one, and a message naming the field; the rest are stored. */
static void ingest_mixed_valid_and_invalid_events(void **state)
{
    struct store_db *db = need_db(state);
    json_t *report = ingest(
        db, MACHINE,
        "[{\"id\":\"ok-1\",\"type\":\"scan_started\",\"at\":1799999000},"
        " {\"id\":\"bad id!\",\"type\":\"scan_started\",\"at\":1799999000},"
        " {\"id\":\"no-type\",\"at\":1799999000},"
        " {\"id\":\"old\",\"type\":\"scan_started\",\"at\":12},"
        " {\"id\":\"no-sig\",\"type\":\"detection\",\"at\":1799999000},"
        " {\"id\":\"bad-action\",\"type\":\"detection\",\"at\":1799999000,\"signature\":\"X\","
        "  \"action\":\"ignored\"},"
        " 42,"
        " {\"id\":\"ok-2\",\"type\":\"detection\",\"at\":1799999000,\"signature\":\"Eicar-Test-"
        "Signature\"},"
        " {\"id\":\"bad-hash\",\"type\":\"detection\",\"at\":1799999000,\"signature\":\"X\","
        "  \"sha256\":\"xyz\"},"
        " {\"id\":\"Type\",\"type\":\"Detection\",\"at\":1799999000},"
        " {\"id\":\"float-at\",\"type\":\"rtp_off\",\"at\":1799999000.5}]");
    assert_int_equal(report_int(report, "accepted"), 2);
    assert_int_equal(report_int(report, "duplicates"), 0);
    const json_t *rejected = json_object_get(report, "rejected");
    static const struct {
        int index;
        const char *id; /* NULL: echoed as null */
        const char *field;
    } want[] = {
        {1, "bad id!", "id"},       {2, "no-type", "type"},      {3, "old", "at"},
        {4, "no-sig", "signature"}, {5, "bad-action", "action"}, {6, NULL, "object"},
        {8, "bad-hash", "sha256"},  {9, "Type", "type"},         {10, "float-at", "at"},
    };
    assert_int_equal(json_array_size(rejected), sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const json_t *item = json_array_get(rejected, i);
        assert_int_equal(json_integer_value(json_object_get(item, "index")), want[i].index);
        const json_t *id = json_object_get(item, "id");
        if (want[i].id == NULL)
            assert_true(json_is_null(id));
        else
            assert_string_equal(json_string_value(id), want[i].id);
        const char *message = json_string_value(json_object_get(item, "message"));
        assert_non_null(message);
        if (strstr(message, want[i].field) == NULL)
            fail_msg("rejection %zu says '%s', which does not name '%s'", i, message,
                     want[i].field);
    }
    json_decref(report);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM events"), 2);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM detections"), 1);
    char *family = NULL;
    assert_int_equal(
        store_query_text(db, &family, "SELECT family FROM detections WHERE event_id = 'ok-2'", ""),
        STORE_ROW);
    assert_string_equal(family, "Eicar-Test-Signature");
    free(family);
}

/* A detection is filed under the agency the machine belongs to when it
 * arrives, not the one it was enrolled in. */
static void ingest_detection_gets_machine_current_agency(void **state)
{
    struct fixture *f = *state;
    struct store_db *db = need_db(state);
    json_t *report = ingest(db, MACHINE,
                            "[{\"id\":\"d-a\",\"type\":\"detection\",\"at\":1799999000,"
                            "\"signature\":\"Win.Trojan.Agent-1234567-0\"}]");
    json_decref(report);
    assert_int_equal(store_execf(db, NULL, "UPDATE machines SET agency_id = $1 WHERE id = $2", "it",
                                 f->agency_b, MACHINE),
                     0);
    report = ingest(db, MACHINE,
                    "[{\"id\":\"d-b\",\"type\":\"detection\",\"at\":1799999001,"
                    "\"signature\":\"Win.Trojan.Agent-7654321-1\",\"action\":\"blocked\"}]");
    json_decref(report);
    int64_t a = 0, b = 0;
    assert_int_equal(
        store_query_int(db, &a, "SELECT agency_id FROM detections WHERE event_id = 'd-a'", ""),
        STORE_ROW);
    assert_int_equal(
        store_query_int(db, &b, "SELECT agency_id FROM detections WHERE event_id = 'd-b'", ""),
        STORE_ROW);
    assert_int_equal(a, f->agency_a);
    assert_int_equal(b, f->agency_b);
    assert_int_equal(count(db, "SELECT COUNT(DISTINCT family) FROM detections"), 1);
    /* The figures follow the detections' agency, not the machine's. */
    tu_figures_match_recount(db, NOW);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM open_by_agency"), 2);
    assert_int_equal(count(db, "SELECT open_detections FROM machines"), 2);
}

/* Builds a batch of `n` detections with ids PREFIX-i, spread over three UTC
 * days (and several hours of the last) and `families` families. Every
 * seventh has a signature of spaces only, which has no family and is
 * counted under the signature. */
static json_t *detection_batch(const char *prefix, int n, int families)
{
    json_t *batch = json_array();
    assert_non_null(batch);
    for (int i = 0; i < n; i++) {
        char id[64], sig[64];
        snprintf(id, sizeof(id), "%s-%d", prefix, i);
        if (i % 7 == 6)
            snprintf(sig, sizeof(sig), "   ");
        else
            snprintf(sig, sizeof(sig), "Win.Trojan.F%d-%d-0", i % families, 1000 + i);
        json_array_append_new(
            batch, json_pack("{s:s, s:s, s:I, s:s}", "id", id, "type", "detection", "at",
                             (json_int_t)(NOW - (i % 3) * 86400 - i * 20), "signature", sig));
    }
    return batch;
}

static void ingest_batch(struct store_db *db, const char *machine, json_t *batch, int64_t accepted,
                         int64_t duplicates)
{
    json_t *report = json_object();
    assert_int_equal(srv_ingest_events(db, machine, batch, NOW, report), 0);
    assert_int_equal(report_int(report, "accepted"), accepted);
    assert_int_equal(report_int(report, "duplicates"), duplicates);
    json_decref(report);
}

/* Full batches with many families, duplicates inside a batch, a retried
 * batch, a second machine, and a machine moved between batches: after each,
 * the figures equal a recount. */
static void ingest_keeps_dashboard_figures_exact(void **state)
{
    struct fixture *f = *state;
    struct store_db *db = need_db(state);
    json_t *batch;

    /* 1,000 detections over 300 families and three days in one batch. */
    batch = detection_batch("big", SRV_INGEST_MAX_EVENTS, 300);
    ingest_batch(db, MACHINE, batch, SRV_INGEST_MAX_EVENTS, 0);
    tu_figures_match_recount(db, NOW);
    assert_int_equal(count(db, "SELECT open_detections FROM machines"), SRV_INGEST_MAX_EVENTS);
    assert_int_equal(count(db, "SELECT CAST(sum(detections) AS BIGINT) FROM detection_daily"),
                     SRV_INGEST_MAX_EVENTS);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM detection_daily"), 3);
    /* Retried: nothing moves. */
    ingest_batch(db, MACHINE, batch, 0, SRV_INGEST_MAX_EVENTS);
    json_decref(batch);
    tu_figures_match_recount(db, NOW);
    assert_int_equal(count(db, "SELECT open_detections FROM machines"), SRV_INGEST_MAX_EVENTS);

    /* The same ids twice in one batch, and some already stored. */
    batch = detection_batch("big", 20, 5);
    for (int i = 0; i < 10; i++) {
        json_t *copy = json_deep_copy(json_array_get(batch, (size_t)i));
        json_object_set_new(copy, "id", json_sprintf("dup-%d", i));
        json_array_append_new(batch, copy);
        json_array_append(batch, copy);
    }
    ingest_batch(db, MACHINE, batch, 10, 30);
    json_decref(batch);
    tu_figures_match_recount(db, NOW);

    /* A second machine in agency B, then MACHINE moved to B. */
    assert_int_equal(store_execf(db, NULL,
                                 "INSERT INTO machines (id, agency_id, hostname, enrolled_at) "
                                 "VALUES ('m-2', $1, 'pc-02', $2)",
                                 "ii", f->agency_b, (int64_t)NOW),
                     0);
    batch = detection_batch("two", 50, 4);
    ingest_batch(db, "m-2", batch, 50, 0);
    json_decref(batch);
    assert_int_equal(store_execf(db, NULL, "UPDATE machines SET agency_id = $1 WHERE id = $2", "it",
                                 f->agency_b, MACHINE),
                     0);
    batch = detection_batch("moved", 30, 4);
    ingest_batch(db, MACHINE, batch, 30, 0);
    json_decref(batch);
    tu_figures_match_recount(db, NOW);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM open_by_agency"), 3);
    assert_int_equal(count(db, "SELECT CAST(sum(open_count) AS BIGINT) FROM open_by_agency"),
                     SRV_INGEST_MAX_EVENTS + 10 + 50 + 30);

    /* Five days later the old hours are deleted by the next batch, and the
     * hours the last 24 hours need are still exact. */
    json_t *report = json_object();
    batch = parse("[{\"id\":\"later\",\"type\":\"detection\",\"at\":1800431000,"
                  "\"signature\":\"Win.Worm.Autorun-1-0\"}]");
    assert_int_equal(srv_ingest_events(db, MACHINE, batch, NOW + 5 * 86400, report), 0);
    json_decref(batch);
    json_decref(report);
    tu_figures_match_recount(db, NOW + 5 * 86400);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM detection_hourly"), 1);
}

/* A call the HTTP layer should never make stores nothing and says so. */
static void ingest_refuses_malformed_calls(void **state)
{
    struct store_db *db = need_db(state);
    json_t *report = json_object();
    json_t *one = parse("[{\"id\":\"x-1\",\"type\":\"rtp_off\",\"at\":1799999000}]");
    json_t *not_array = parse("{\"id\":\"x-1\"}");
    json_t *too_many = json_array();
    for (int i = 0; i <= SRV_INGEST_MAX_EVENTS; i++)
        json_array_append_new(too_many, json_pack("{s:s,s:s,s:I}", "id", "y", "type", "rtp_off",
                                                  "at", (json_int_t)1799999000));
    assert_int_equal(srv_ingest_events(db, "no-such-machine", one, NOW, report), STORE_EINVAL);
    assert_int_equal(srv_ingest_events(db, MACHINE, not_array, NOW, report), STORE_EINVAL);
    assert_int_equal(srv_ingest_events(db, MACHINE, too_many, NOW, report), STORE_EINVAL);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM events"), 0);
    json_decref(one);
    json_decref(not_array);
    json_decref(too_many);
    json_decref(report);
}

/* ------------------------------------------------------------------------ */
/* Rules that need no database.                                              */
/* ------------------------------------------------------------------------ */

static void ingest_family_rule(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"Win.Trojan.Agent-1234567-0", "Win.Trojan.Agent"},
        {"Win.Test.EICAR_HDB-1", "Win.Test.EICAR_HDB"},
        {"Eicar-Test-Signature", "Eicar-Test-Signature"},
        {"Win.Trojan.Agent-998-1.UNOFFICIAL", "Win.Trojan.Agent"},
        {"Sanesecurity.Foxhole.JS_Zip_1.UNOFFICIAL", "Sanesecurity.Foxhole.JS_Zip_1"},
        {"Doc.Dropper.Agent-6361133-0 ", "Doc.Dropper.Agent"},
        {"Heuristics.Phishing.Email.SpoofedDomain", "Heuristics.Phishing.Email.SpoofedDomain"},
        {"Html.Exploit.CVE_2016_0108-4958745-0", "Html.Exploit.CVE_2016_0108"},
        {"Win.Ransomware.Locky-1-2-3", "Win.Ransomware.Locky-1"},
        {"Trojan-42", "Trojan"},
        {"-1234-0", "-1234"},
        {"1234", "1234"},
        {".UNOFFICIAL", ".UNOFFICIAL"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[128];
        srv_ingest_family(cases[i][0], out, sizeof(out));
        if (strcmp(out, cases[i][1]) != 0)
            fail_msg("family of '%s' is '%s', expected '%s'", cases[i][0], out, cases[i][1]);
    }
    char small[8];
    srv_ingest_family("Win.Trojan.Agent-1-0", small, sizeof(small));
    assert_string_equal(small, "Win.Tro");
    srv_ingest_family(NULL, small, sizeof(small));
    assert_string_equal(small, "");
}

static void ingest_validate_event_rules(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int ok;
    } cases[] = {
        {"{\"id\":\"a\",\"type\":\"x\",\"at\":946684800}", 1},
        {"{\"id\":\"a\",\"type\":\"x\",\"at\":946684799}", 0},
        {"{\"id\":\"a\",\"type\":\"x\",\"at\":4102444800}", 1},
        {"{\"id\":\"a\",\"type\":\"x\",\"at\":4102444801}", 0},
        {"{\"id\":\"A.b_c:d-9\",\"type\":\"scan_finished2\",\"at\":1799999000}", 1},
        {"{\"id\":\"\",\"type\":\"x\",\"at\":1799999000}", 0},
        {"{\"id\":\"a/b\",\"type\":\"x\",\"at\":1799999000}", 0},
        {"{\"id\":\"a\\u0000b\",\"type\":\"x\",\"at\":1799999000}", 0},
        {"{\"id\":7,\"type\":\"x\",\"at\":1799999000}", 0},
        {"{\"id\":\"a\",\"type\":\"_x\",\"at\":1799999000}", 0},
        {"{\"id\":\"a\",\"type\":\"x y\",\"at\":1799999000}", 0},
        {"{\"id\":\"a\",\"type\":\"x\",\"at\":\"1799999000\"}", 0},
        {"{\"id\":\"a\",\"type\":\"detection\",\"at\":1799999000,\"signature\":\"S\"}", 1},
        {"{\"id\":\"a\",\"type\":\"detection\",\"at\":1799999000,\"signature\":\"\"}", 0},
        {"{\"id\":\"a\",\"type\":\"detection\",\"at\":1799999000,\"signature\":\"S\\n\"}", 0},
        {"{\"id\":\"a\",\"type\":\"detection\",\"at\":1799999000,\"signature\":\"S\","
         "\"size\":-1}",
         0},
        {"{\"id\":\"a\",\"type\":\"detection\",\"at\":1799999000,\"signature\":\"S\","
         "\"md5\":\"\",\"sha256\":\"\",\"path\":\"\"}",
         1},
        {"{\"id\":\"a\",\"type\":\"detection\",\"at\":1799999000,\"signature\":\"S\","
         "\"action\":\"deleted\"}",
         1},
        {"[]", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char msg[160] = "";
        json_error_t e;
        json_t *ev = json_loads(cases[i].json, JSON_ALLOW_NUL | JSON_DECODE_ANY, &e);
        assert_non_null(ev);
        int r = srv_ingest_validate_event(ev, msg, sizeof(msg));
        if ((r == 0) != cases[i].ok)
            fail_msg("%s: expected %s, got %d (%s)", cases[i].json,
                     cases[i].ok ? "valid" : "invalid", r, msg);
        if (r != 0)
            assert_true(msg[0] != '\0');
        json_decref(ev);
    }
    /* An id of exactly 64 characters is the longest allowed. */
    char id[80];
    memset(id, 'a', 64);
    id[64] = '\0';
    json_t *ev = json_pack("{s:s,s:s,s:I}", "id", id, "type", "x", "at", (json_int_t)1799999000);
    assert_int_equal(srv_ingest_validate_event(ev, NULL, 0), 0);
    id[64] = 'a';
    id[65] = '\0';
    json_object_set_new(ev, "id", json_string(id));
    assert_int_equal(srv_ingest_validate_event(ev, NULL, 0), -1);
    /* So is an event of more than 16 KiB of JSON. */
    char *big = calloc(1, SRV_INGEST_MAX_EVENT_BYTES + 1);
    assert_non_null(big);
    memset(big, 'x', SRV_INGEST_MAX_EVENT_BYTES);
    json_object_set_new(ev, "id", json_string("a"));
    json_object_set_new(ev, "note", json_string(big));
    assert_int_equal(srv_ingest_validate_event(ev, NULL, 0), -1);
    free(big);
    json_decref(ev);
}

int main(void)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(ingest_family_rule),
        cmocka_unit_test(ingest_validate_event_rules),
    };
    const struct CMUnitTest with_store[] = {
        cmocka_unit_test_setup_teardown(ingest_retried_batch_creates_no_duplicates, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(ingest_duplicate_id_within_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(ingest_mixed_valid_and_invalid_events, setup, teardown),
        cmocka_unit_test_setup_teardown(ingest_detection_gets_machine_current_agency, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(ingest_refuses_malformed_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(ingest_keeps_dashboard_figures_exact, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("rules", plain, NULL, NULL);

    failed += cmocka_run_group_tests_name("sqlite", with_store, NULL, NULL);
    pg_url = tu_pg_private_url();
    if (pg_url != NULL)
        failed += cmocka_run_group_tests_name("postgresql", with_store, NULL, NULL);
    else
        printf("SKIP: the PostgreSQL run needs KHIEN_PG_URL (scripts/pg-throwaway start DIR)\n");
    return failed;
}
