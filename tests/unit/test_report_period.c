/*
 * Reporting periods in local time, the report keys of the configuration
 * file, and the background job runner's schedule and lease (server/report/
 * period.c, report/config.c, server/jobs.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jobs.h"
#include "period.h"
#include "server.h"
#include "testutil.h"

#define VN (7 * 3600)

static void quarter_bounds_are_local_midnights(void **state)
{
    (void)state;
    struct rpt_period q;
    assert_int_equal(rpt_period_parse("2026Q4", VN, &q), 0);
    assert_int_equal(q.kind, RPT_QUARTER);
    assert_string_equal(q.label, "2026Q4");
    /* 2026-10-01 00:00 +07:00 = 2026-09-30 17:00 UTC. */
    assert_int_equal(q.start, 1790787600);
    /* 2027-01-01 00:00 +07:00 = 2026-12-31 17:00 UTC. */
    assert_int_equal(q.end, 1798736400);
    struct rpt_period m;
    assert_int_equal(rpt_period_parse("2026-02", 0, &m), 0);
    assert_int_equal(m.end - m.start, 28 * 86400);
    assert_int_equal(rpt_period_parse("2028-02", 0, &m), 0);
    assert_int_equal(m.end - m.start, 29 * 86400);
}

static void bad_period_texts_are_refused(void **state)
{
    (void)state;
    struct rpt_period p;
    const char *bad[] = {"",       "2026",   "2026Q5",  "2026Q0", "2026-13",  "2026-00",
                         "1999Q1", "20x6Q1", "2026Q1x", "2026-1", "2026--11", NULL};
    for (int i = 0; bad[i] != NULL; i++)
        assert_int_equal(rpt_period_parse(bad[i], VN, &p), -1);
    assert_int_equal(rpt_period_parse("2026-q3", VN, &p), 0);
    assert_string_equal(p.label, "2026Q3");
}

static void an_instant_belongs_to_its_local_month(void **state)
{
    (void)state;
    struct rpt_period p;
    /* 2026-12-31 23:30 +07:00 is still Q4 locally, though UTC says 16:30. */
    rpt_period_at(1798736400 - 1800, RPT_QUARTER, VN, &p);
    assert_string_equal(p.label, "2026Q4");
    /* One hour later it is 2027-01-01 00:30 local: Q1 of 2027, though UTC is
     * still 31 December. */
    rpt_period_at(1798736400 + 1800, RPT_QUARTER, VN, &p);
    assert_string_equal(p.label, "2027Q1");
    rpt_period_at(1798736400 + 1800, RPT_MONTH, VN, &p);
    assert_string_equal(p.label, "2027-01");
}

static void neighbours_and_months_of_a_quarter(void **state)
{
    (void)state;
    struct rpt_period q, prev, next, months[3];
    rpt_period_quarter(2026, 1, VN, &q);
    rpt_period_prev(&q, VN, &prev);
    assert_string_equal(prev.label, "2025Q4");
    assert_int_equal(prev.end, q.start);
    rpt_period_next(&prev, VN, &next);
    assert_string_equal(next.label, "2026Q1");
    rpt_period_months(&q, VN, months);
    assert_string_equal(months[0].label, "2026-01");
    assert_string_equal(months[2].label, "2026-03");
    assert_int_equal(months[0].start, q.start);
    assert_int_equal(months[2].end, q.end);
}

static void the_deadline_is_before_the_20th_of_the_last_month(void **state)
{
    (void)state;
    struct rpt_period q;
    rpt_period_quarter(2026, 4, VN, &q);
    /* 2026-12-20 00:00 +07:00. */
    assert_int_equal(rpt_quarter_deadline(&q, 20, VN), 1797699600);
    /* Reminders from 2026-12-01 00:00 +07:00. */
    assert_int_equal(rpt_quarter_reminder(&q, 1, VN), 1796058000);
}

static void report_keys_parse_and_refuse(void **state)
{
    (void)state;
    struct srv_report_config c;
    srv_report_config_defaults(&c);
    assert_int_equal(c.utc_offset, VN);
    assert_int_equal(c.stale_days, 15);
    assert_int_equal(c.deadline_day, 20);
    assert_int_equal(srv_report_config_set(&c, "report_utc_offset", "-03:30"), 0);
    assert_int_equal(c.utc_offset, -(3 * 3600 + 1800));
    assert_int_equal(srv_report_config_set(&c, "report_utc_offset", "+7:5"), -1);
    assert_int_equal(srv_report_config_set(&c, "report_deadline_day", "29"), -1);
    assert_int_equal(srv_report_config_set(&c, "share_interval", "30s"), -1);
    assert_int_equal(srv_report_config_set(&c, "share_interval", "6h"), 0);
    assert_int_equal(c.share_interval, 6 * 3600);
    assert_int_equal(srv_report_config_set(&c, "org_id", "000.00.00.H34"), 0);
    assert_string_equal(c.org_id, "000.00.00.H34");
    assert_int_equal(srv_report_config_set(&c, "no_such_key", "1"), -2);
}

/* A job table of the test's own is not possible (srv_jobs is the server's),
 * so the runner is checked on its rows: a job that is not due is not taken,
 * a due one is leased to one owner only, and a trigger makes it due. */
static void a_job_lease_goes_to_one_owner(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    struct store_db *db = tu_store_open(dir, NULL, 0);
    if (db == NULL) {
        tu_rmtree(dir);
        skip();
    }
    int64_t now = 1790000000, changes = 0;
    assert_int_equal(
        store_execf(db, NULL, "INSERT INTO jobs (name, next_run) VALUES ('x', $1)", "i", now + 100),
        0);
    const char *take = "UPDATE jobs SET lease_owner = $1, lease_until = $2, last_start = $3"
                       " WHERE name = $4 AND next_run <= $3 AND lease_until < $3";
    assert_int_equal(store_execf(db, &changes, take, "tiit", "a", now + 900, now, "x"), 0);
    assert_int_equal(changes, 0);
    assert_int_equal(jobs_trigger(db, "x", now), -1); /* not a job of the table */
    assert_int_equal(store_execf(db, NULL, "UPDATE jobs SET next_run = $1", "i", now), 0);
    assert_int_equal(store_execf(db, &changes, take, "tiit", "a", now + 900, now, "x"), 0);
    assert_int_equal(changes, 1);
    assert_int_equal(store_execf(db, &changes, take, "tiit", "b", now + 900, now, "x"), 0);
    assert_int_equal(changes, 0);
    /* After the lease runs out, another server may take it over. */
    assert_int_equal(store_execf(db, &changes, take, "tiit", "b", now + 2000, now + 901, "x"), 0);
    assert_int_equal(changes, 1);

    struct srv s;
    memset(&s, 0, sizeof(s));
    srv_report_config_defaults(&s.cfg.report);
    assert_true(jobs_run_due(&s, db, "t", now) >= 1);
    /* A run that ended gives its lease back and is due one interval later
     * (index-month runs hourly). */
    struct store_stmt *st = NULL;
    assert_int_equal(store_queryf(db, &st,
                                  "SELECT lease_owner, lease_until, next_run, last_ok, last_start"
                                  " FROM jobs WHERE name = 'index-month'",
                                  ""),
                     STORE_ROW);
    assert_string_equal(store_col_text(st, 0), "");
    assert_int_equal(store_col_int(st, 1), 0);
    assert_int_equal(store_col_int(st, 2), now + 3600);
    assert_int_equal(store_col_int(st, 3), 1);
    assert_int_equal(store_col_int(st, 4), now);
    store_finalize(st);
    /* Not due again before then. */
    assert_int_equal(jobs_run_due(&s, db, "t", now + 60), 0);
    store_close(db);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quarter_bounds_are_local_midnights),
        cmocka_unit_test(bad_period_texts_are_refused),
        cmocka_unit_test(an_instant_belongs_to_its_local_month),
        cmocka_unit_test(neighbours_and_months_of_a_quarter),
        cmocka_unit_test(the_deadline_is_before_the_20th_of_the_last_month),
        cmocka_unit_test(report_keys_parse_and_refuse),
        cmocka_unit_test(a_job_lease_goes_to_one_owner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
