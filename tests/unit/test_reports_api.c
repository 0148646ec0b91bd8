/*
 * The reports API (server/api_report.c, report/reports.c): producing the
 * quarterly report records each file with its checksum and who made it,
 * scope decides who may make and see which report, bad requests are named,
 * and the deadline answer follows the configuration and the record.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api.h"
#include "khx.h"
#include "period.h"
#include "server.h"
#include "testutil.h"

struct fixture {
    char dir[512];
    struct store_db *db;
    struct srv srv;
    int64_t now;
    int64_t p, a, a1, b;
    char quarter[16];
    struct srv_principal admin, officer_a, auditor;
};

static void machine(struct fixture *f, const char *id, int64_t agency, const char *host,
                    const char *family)
{
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO machines (id, agency_id, hostname, ips, db_time,"
                                 " enrolled_at, last_seen) VALUES ($1, $2, $3, '10.0.0.1', $4, $4,"
                                 " $4)",
                                 "titi", id, agency, host, f->now),
                     0);
    if (family != NULL)
        assert_int_equal(store_execf(f->db, NULL,
                                     "INSERT INTO detections (event_id, machine_id, agency_id,"
                                     " path, signature, family, detected_at, received_at,"
                                     " status_at) VALUES ('e1', $1, $2, '/home/u/x', $3, $3, $4,"
                                     " $4, $4)",
                                     "titi", id, agency, family, f->now),
                         0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    *state = f;
    snprintf(f->dir, sizeof(f->dir), "%s", tu_mkdtemp());
    if ((f->db = tu_store_open(f->dir, NULL, 0)) == NULL)
        return 0;
    f->now = srv_now();
    srv_report_config_defaults(&f->srv.cfg.report);
    snprintf(f->srv.cfg.report.org_name, sizeof(f->srv.cfg.report.org_name), "Sở TT&TT");
    struct rpt_period q;
    rpt_period_at(f->now, RPT_QUARTER, f->srv.cfg.report.utc_offset, &q);
    snprintf(f->quarter, sizeof(f->quarter), "%s", q.label);
    f->p = tu_add_agency(f->db, 0, "tinh", "Tỉnh", f->now);
    f->a = tu_add_agency(f->db, f->p, "so-a", "Sở Giáo dục và Đào tạo", f->now);
    f->a1 = tu_add_agency(f->db, f->a, "truong-a1", "Trường THPT Lê Lợi", f->now);
    f->b = tu_add_agency(f->db, f->p, "huyen-b", "UBND huyện Đắk Hà", f->now);
    tu_add_person(f->db, &f->admin, "admin", SRV_ROLE_ADMIN, 0, f->now);
    tu_add_person(f->db, &f->officer_a, "officer_a", SRV_ROLE_OFFICER, f->a, f->now);
    tu_add_person(f->db, &f->auditor, "auditor", SRV_ROLE_AUDITOR, 0, f->now);
    machine(f, "m-a1", f->a1, "pc-le-loi-01", "Win.Trojan.Emotet");
    machine(f, "m-b", f->b, "pc-dak-ha-01", "Win.Worm.Conficker");
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

static json_t *call(struct fixture *f, int (*h)(struct srv_req *), const struct srv_principal *who,
                    const char *method, const char *param, const char *query, const char *body,
                    unsigned *status)
{
    return tu_call_handler(&f->srv, f->db, h, who, method, param, query, body, 0, status);
}

static void each_file_is_recorded_with_its_checksum(void **state)
{
    struct fixture *f = *state;
    if (f->db == NULL)
        skip();
    unsigned status = 0;
    char body[96];
    snprintf(body, sizeof(body), "{\"period\":\"%s\"}", f->quarter);
    json_t *j = call(f, api_reports_create, &f->admin, "POST", NULL, NULL, body, &status);
    assert_int_equal(status, 201);
    json_t *files = json_object_get(j, "reports");
    assert_int_equal(json_array_size(files), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *file = json_array_get(files, i);
        int64_t id = json_integer_value(json_object_get(file, "id"));
        struct store_stmt *st = NULL;
        assert_int_equal(store_queryf(f->db, &st,
                                      "SELECT content, sha256, size, created_by_name, agency_id"
                                      " FROM reports WHERE id = $1",
                                      "i", id),
                         STORE_ROW);
        size_t len = 0;
        const void *data = store_col_blob(st, 0, &len);
        uint8_t digest[32];
        char hex[65];
        khx_sha256(data, len, digest);
        khx_hex_encode(digest, 32, hex);
        assert_string_equal(hex, store_col_text(st, 1));
        assert_string_equal(hex, json_string_value(json_object_get(file, "sha256")));
        assert_int_equal(store_col_int(st, 2), (int64_t)len);
        assert_string_equal(store_col_text(st, 3), "admin");
        assert_true(store_col_is_null(st, 4)); /* the whole province */
        if (i == 0)
            assert_memory_equal(data, "%PDF", 4);
        store_finalize(st);
    }
    json_decref(j);
    int64_t audits = 0;
    store_query_int(f->db, &audits, "SELECT count(*) FROM audit WHERE action = 'report.create'",
                    "");
    assert_int_equal(audits, 1);

    j = call(f, api_reports_list, &f->admin, "GET", NULL, NULL, NULL, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 3);
    json_decref(j);
}

static void an_officer_reports_on_its_own_agency_only(void **state)
{
    struct fixture *f = *state;
    if (f->db == NULL)
        skip();
    unsigned status = 0;
    char body[128];
    /* The province's report first, which the officer must not see. */
    snprintf(body, sizeof(body), "{\"period\":\"%s\",\"formats\":[\"csv\"]}", f->quarter);
    json_decref(call(f, api_reports_create, &f->admin, "POST", NULL, NULL, body, &status));
    assert_int_equal(status, 201);
    int64_t province_id = 0;
    store_query_int(f->db, &province_id, "SELECT max(id) FROM reports", "");

    json_t *j = call(f, api_reports_create, &f->officer_a, "POST", NULL, NULL, body, &status);
    assert_int_equal(status, 201);
    json_decref(j);
    int64_t agency = 0;
    store_query_int(f->db, &agency,
                    "SELECT agency_id FROM reports WHERE id = (SELECT max(id) FROM reports)", "");
    assert_int_equal(agency, f->a);

    snprintf(body, sizeof(body), "{\"period\":\"%s\",\"agency\":%lld}", f->quarter,
             (long long)f->b);
    json_decref(call(f, api_reports_create, &f->officer_a, "POST", NULL, NULL, body, &status));
    assert_int_equal(status, 404);

    j = call(f, api_reports_list, &f->officer_a, "GET", NULL, NULL, NULL, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 1);
    json_decref(j);
    char id[32];
    snprintf(id, sizeof(id), "%lld", (long long)province_id);
    json_decref(call(f, api_reports_file, &f->officer_a, "GET", id, NULL, NULL, &status));
    assert_int_equal(status, 404);
    json_decref(call(f, api_reports_file, &f->auditor, "GET", id, NULL, NULL, &status));
    assert_int_equal(status, 200);
}

static void bad_requests_name_the_field(void **state)
{
    struct fixture *f = *state;
    if (f->db == NULL)
        skip();
    unsigned status = 0;
    const char *bad[] = {"{\"period\":\"2026-11\"}",
                         "{\"period\":\"Q4\"}",
                         "{}",
                         "{\"period\":\"2026Q4\",\"formats\":[\"doc\"]}",
                         "{\"period\":\"2026Q4\",\"formats\":\"pdf\"}",
                         NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        json_t *j = call(f, api_reports_create, &f->admin, "POST", NULL, NULL, bad[i], &status);
        assert_int_equal(status, 400);
        json_decref(j);
    }
    int64_t n = -1;
    store_query_int(f->db, &n, "SELECT count(*) FROM reports", "");
    assert_int_equal(n, 0);
}

static void the_deadline_reminds_until_the_report_exists(void **state)
{
    struct fixture *f = *state;
    if (f->db == NULL)
        skip();
    unsigned status = 0;
    /* Remind from the 1st and a deadline on the 28th: in the quarter's last
     * month the reminder is on, elsewhere off; either way "produced" flips. */
    f->srv.cfg.report.deadline_day = 28;
    json_t *j = call(f, api_reports_deadline, &f->admin, "GET", NULL, NULL, NULL, &status);
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(j, "quarter")), f->quarter);
    assert_false(json_is_true(json_object_get(j, "produced")));
    int64_t remind_from = json_integer_value(json_object_get(j, "remind_from"));
    int64_t deadline = json_integer_value(json_object_get(j, "deadline"));
    assert_int_equal(deadline - remind_from, 27 * 86400);
    assert_int_equal(json_is_true(json_object_get(j, "remind")), f->now >= remind_from);
    json_decref(j);

    char body[64];
    snprintf(body, sizeof(body), "{\"period\":\"%s\",\"formats\":[\"csv\"]}", f->quarter);
    json_decref(call(f, api_reports_create, &f->admin, "POST", NULL, NULL, body, &status));
    j = call(f, api_reports_deadline, &f->admin, "GET", NULL, NULL, NULL, &status);
    assert_true(json_is_true(json_object_get(j, "produced")));
    assert_false(json_is_true(json_object_get(j, "remind")));
    json_decref(j);
    /* The officer's agency has none yet. */
    j = call(f, api_reports_deadline, &f->officer_a, "GET", NULL, NULL, NULL, &status);
    assert_false(json_is_true(json_object_get(j, "produced")));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(each_file_is_recorded_with_its_checksum, setup, teardown),
        cmocka_unit_test_setup_teardown(an_officer_reports_on_its_own_agency_only, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_requests_name_the_field, setup, teardown),
        cmocka_unit_test_setup_teardown(the_deadline_reminds_until_the_report_exists, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
