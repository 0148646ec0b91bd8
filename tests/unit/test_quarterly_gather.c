/*
 * The quarterly report's data (server/report/quarterly.c,
 * rpt_quarter_gather), from a small hand-made province whose every figure
 * is worked out below, for the fourth quarter of 2026 (+07:00), gathered on
 * 10 January 2027:
 *
 *     P ── D1 ── A1 (expects 3)  m1 10.1.0.1  Emotet 5 Oct new, Emotet 5 Nov acknowledged
 *       │     │                  m2 10.1.0.2  database 30 days old; C&C hits 1 and 3 Nov
 *       │     └─ A2 (expects 2)  m3 10.2.0.1  Qakbot 10 Nov, resolved 12 Nov
 *       └─ D2 ── A3 (expects 2)  m4 10.3.0.1  Emotet 20 Sep (Q3, still new), AgentTesla
 *             │                               1 Dec, false positive 2 Dec
 *             ├─ A4 (expects 1)  m5 10.4.0.1  Qakbot 20 Dec, resolved only on 5 Jan
 *             └─ A5              a C&C hit on 3 Dec from 10.9.9.9, which is no machine
 *
 * What is proved: the components of the scope and of every agency, the
 * index by the default formula, agencies most affected first, the families
 * with their machines and agencies, one C&C line per host and indicator
 * named after the managed machine with that address and carrying what was
 * done last, the detections by status at the quarter's end (a status set
 * after it counts as new), the months, the trend and the deadline; and the
 * same for one district's subtree. On SQLite and, when KHIEN_PG_URL names a
 * server, on PostgreSQL.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "khx.h"
#include "report/quarterly.h"
#include "server.h"
#include "store/store.h"

static const char *pg_url;

struct fixture {
    char dir[512];
    struct store_db *db;
    struct srv_report_config cfg;
    struct rpt_period q;
    int64_t now;
    int64_t p, d1, d2, a1, a2, a3, a4, a5;
};

/* Local noon of day `d` of `month` 2026 (or January 2027 for month 13). */
static int64_t day(struct fixture *f, int month, int d)
{
    struct rpt_period m;
    rpt_period_month(month > 12 ? 2027 : 2026, month > 12 ? month - 12 : month, f->cfg.utc_offset,
                     &m);
    return m.start + (int64_t)(d - 1) * 86400 + 12 * 3600;
}

static int64_t agency(struct fixture *f, int64_t parent, const char *code, const char *kind,
                      int64_t expected)
{
    int64_t id = 0;
    char *ppath = NULL, path[128];
    if (parent != 0) {
        assert_int_equal(
            store_query_text(f->db, &ppath, "SELECT path FROM agencies WHERE id = $1", "i", parent),
            STORE_ROW);
        assert_int_equal(store_query_int(f->db, &id,
                                         "INSERT INTO agencies (parent_id, code, name, kind,"
                                         " expected_machines, created_at)"
                                         " VALUES ($1, $2, $2, $3, $4, 0) RETURNING id",
                                         "itti", parent, code, kind, expected),
                         STORE_ROW);
    } else {
        assert_int_equal(store_query_int(f->db, &id,
                                         "INSERT INTO agencies (code, name, kind,"
                                         " expected_machines, created_at)"
                                         " VALUES ($1, $1, $2, $3, 0) RETURNING id",
                                         "tti", code, kind, expected),
                         STORE_ROW);
    }
    snprintf(path, sizeof(path), "%s%lld/", ppath != NULL ? ppath : "/", (long long)id);
    free(ppath);
    assert_int_equal(
        store_execf(f->db, NULL, "UPDATE agencies SET path = $1 WHERE id = $2", "ti", path, id), 0);
    return id;
}

static void machine(struct fixture *f, const char *id, int64_t ag, const char *ips, int64_t db_time,
                    const char *role)
{
    char host[64];
    snprintf(host, sizeof(host), "pc-%s", id);
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO machines (id, agency_id, hostname, ips, db_time,"
                                 " enrolled_at, role) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                                 "tittiit", id, ag, host, ips, db_time, f->q.start - 86400 * 200,
                                 role),
                     0);
}

static void detection(struct fixture *f, const char *mid, int64_t ag, const char *family,
                      int64_t at, const char *status, int64_t status_at)
{
    static int n;
    char ev[32];
    snprintf(ev, sizeof(ev), "ev-%d", ++n);
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO detections (event_id, machine_id, agency_id,"
                                 " signature, family, detected_at, received_at, status,"
                                 " status_at) VALUES ($1, $2, $3, $4, $4, $5, $5, $6, $7)",
                                 "ttititi", ev, mid, ag, family, at, status, status_at),
                     0);
}

static void c2hit(struct fixture *f, int64_t ag, const char *host, const char *indicator,
                  int64_t at, const char *status, const char *note)
{
    static int n;
    char ev[32];
    snprintf(ev, sizeof(ev), "c2-%d", ++n);
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO c2_hits (event_id, machine_id, agency_id, host,"
                                 " indicator, kind, category, seen_in, hit_count, first_seen,"
                                 " last_seen, received_at, status, status_at, status_note)"
                                 " VALUES ($1, 'sensor', $2, $3, $4, 'domain', 'c2', 'dns.query',"
                                 " 1, $5, $5, $5, $6, $5, $7)",
                                 "tittitt", ev, ag, host, indicator, at, status, note),
                     0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    *state = f;
    snprintf(f->dir, sizeof(f->dir), "%s", tu_mkdtemp());
    if ((f->db = tu_store_open(f->dir, pg_url, 0)) == NULL)
        return 0;
    srv_report_config_defaults(&f->cfg);
    snprintf(f->cfg.org_id, sizeof(f->cfg.org_id), "000.00.00.H34");
    snprintf(f->cfg.org_name, sizeof(f->cfg.org_name), "Sở Thông tin và Truyền thông");
    rpt_period_quarter(2026, 4, f->cfg.utc_offset, &f->q);
    f->now = day(f, 13, 10);
    int64_t fresh = f->q.end - 86400, old = f->q.end - 30 * 86400;

    f->p = agency(f, 0, "P", "province", 0);
    f->d1 = agency(f, f->p, "D1", "district", 0);
    f->d2 = agency(f, f->p, "D2", "district", 0);
    f->a1 = agency(f, f->d1, "A1", "agency", 3);
    f->a2 = agency(f, f->d1, "A2", "agency", 2);
    f->a3 = agency(f, f->d2, "A3", "agency", 2);
    f->a4 = agency(f, f->d2, "A4", "agency", 1);
    f->a5 = agency(f, f->d2, "A5", "agency", 0);
    machine(f, "m1", f->a1, "10.1.0.1", fresh, "agent");
    machine(f, "m2", f->a1, "10.1.0.2", old, "agent");
    machine(f, "m3", f->a2, "10.2.0.1", fresh, "agent");
    machine(f, "m4", f->a3, "10.3.0.1", fresh, "agent");
    machine(f, "m5", f->a4, "10.4.0.1", fresh, "agent");
    machine(f, "sensor", f->p, "10.0.0.2", 0, "sensor");

    detection(f, "m1", f->a1, "Emotet", day(f, 10, 5), "new", day(f, 10, 5));
    detection(f, "m1", f->a1, "Emotet", day(f, 11, 5), "acknowledged", day(f, 11, 6));
    detection(f, "m3", f->a2, "Qakbot", day(f, 11, 10), "resolved", day(f, 11, 12));
    detection(f, "m4", f->a3, "Emotet", day(f, 9, 20), "new", day(f, 9, 20));
    detection(f, "m4", f->a3, "AgentTesla", day(f, 12, 1), "false_positive", day(f, 12, 2));
    detection(f, "m5", f->a4, "Qakbot", day(f, 12, 20), "resolved", day(f, 13, 5));

    c2hit(f, f->a1, "10.1.0.2", "evil.example", day(f, 11, 1), "new", "");
    c2hit(f, f->a1, "10.1.0.2", "evil.example", day(f, 11, 3), "resolved", "reimaged");
    c2hit(f, f->a5, "10.9.9.9", "203.0.113.5", day(f, 12, 3), "new", "");
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

#define COUNTS(c, man, exp, inf, stl, hosts, hits, det, fam, opn, res)                             \
    do {                                                                                           \
        assert_int_equal((c).managed, man);                                                        \
        assert_int_equal((c).expected, exp);                                                       \
        assert_int_equal((c).infected, inf);                                                       \
        assert_int_equal((c).stale, stl);                                                          \
        assert_int_equal((c).c2_hosts, hosts);                                                     \
        assert_int_equal((c).c2_hits, hits);                                                       \
        assert_int_equal((c).detections, det);                                                     \
        assert_int_equal((c).families, fam);                                                       \
        assert_int_equal((c).open, opn);                                                           \
        assert_int_equal((c).resolved, res);                                                       \
    } while (0)

static const struct rpt_agency_line *line(const struct rpt_quarter *q, const char *code)
{
    for (size_t i = 0; i < q->nagencies; i++)
        if (strcmp(q->agencies[i].code, code) == 0)
            return &q->agencies[i];
    fail_msg("%s not in the report", code);
    return NULL;
}

static void the_province_quarter_has_every_figure(void **state)
{
    struct fixture *f = need_db(state);
    struct rpt_quarter *q = NULL;
    char err[256] = "";
    if (rpt_quarter_gather(f->db, &f->cfg, &f->q, 0, f->now, &q, err, sizeof(err)) != 0)
        fail_msg("%s", err);

    assert_string_equal(q->period.label, "2026Q4");
    assert_string_equal(q->org_id, "000.00.00.H34");
    assert_string_equal(q->org_name, "Sở Thông tin và Truyền thông");
    assert_string_equal(q->scope_code, "");
    assert_string_equal(q->formula, f->cfg.index_formula);
    assert_int_equal(q->generated_at, f->now);
    assert_int_equal(q->deadline, rpt_quarter_deadline(&f->q, 20, f->cfg.utc_offset));

    /* m1 (open Emotet), m2 (C&C hit on its address), m5 (Qakbot resolved
     * only after the quarter); 10.9.9.9 infects nobody. */
    COUNTS(q->total, 5, 8, 3, 1, 2, 3, 5, 3, 3, 2);
    /* 60*3/5 + 15*1/5 + 10*min(1, 2/5) + 10*(1 - 5/8) + 5*(1 - 1) */
    assert_true(fabs(q->index - 46.75) < 1e-9);

    COUNTS(line(q, "A1")->c, 2, 3, 2, 1, 1, 2, 2, 1, 2, 0);
    COUNTS(line(q, "A2")->c, 1, 2, 0, 0, 0, 0, 1, 1, 0, 1);
    COUNTS(line(q, "A3")->c, 1, 2, 0, 0, 0, 0, 1, 1, 0, 1);
    COUNTS(line(q, "A4")->c, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0);
    COUNTS(line(q, "A5")->c, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0);
    COUNTS(line(q, "D1")->c, 3, 5, 2, 1, 1, 2, 3, 2, 2, 1);
    COUNTS(line(q, "D2")->c, 2, 3, 1, 0, 1, 1, 2, 2, 1, 1);
    assert_int_equal(line(q, "A1")->depth, 2);
    assert_int_equal(line(q, "P")->depth, 0);

    /* Most affected first: A1 75.8, A4 60, D1 52.3, P 46.75, D2 38.3, A5 10
     * (its C&C host), then A2 and A3 at 5 each (coverage), by name. */
    const char *order[] = {"A1", "A4", "D1", "P", "D2", "A5", "A2", "A3"};
    assert_int_equal(q->nagencies, 8);
    for (size_t i = 0; i < 8; i++)
        assert_string_equal(q->agencies[i].code, order[i]);
    assert_true(fabs(line(q, "A1")->index - (60 + 7.5 + 5 + 10.0 / 3)) < 1e-9);
    /* In the third quarter A1 had only its missing machine against it. */
    assert_true(fabs(line(q, "A1")->index_prev - 10.0 / 3) < 1e-9);

    assert_int_equal(q->nfamilies, 3);
    assert_string_equal(q->families[0].name, "Emotet");
    assert_int_equal(q->families[0].detections, 2);
    assert_int_equal(q->families[0].machines, 1);
    assert_int_equal(q->families[0].agencies, 1);
    assert_string_equal(q->families[1].name, "Qakbot");
    assert_int_equal(q->families[1].detections, 2);
    assert_int_equal(q->families[1].machines, 2);
    assert_int_equal(q->families[1].agencies, 2);
    assert_string_equal(q->families[2].name, "AgentTesla");

    assert_int_equal(q->nc2, 2);
    assert_int_equal(q->c2_total, 2);
    assert_string_equal(q->c2[0].agency_code, "A5");
    assert_string_equal(q->c2[0].host, "10.9.9.9");
    assert_string_equal(q->c2[0].hostname, "");
    assert_string_equal(q->c2[0].status, "new");
    assert_string_equal(q->c2[1].agency_code, "A1");
    assert_string_equal(q->c2[1].host, "10.1.0.2");
    assert_string_equal(q->c2[1].hostname, "pc-m2");
    assert_string_equal(q->c2[1].indicator, "evil.example");
    assert_string_equal(q->c2[1].category, "c2");
    assert_string_equal(q->c2[1].seen_in, "dns.query");
    assert_int_equal(q->c2[1].hits, 2);
    assert_int_equal(q->c2[1].first_seen, day(f, 11, 1));
    assert_int_equal(q->c2[1].last_seen, day(f, 11, 3));
    assert_string_equal(q->c2[1].status, "resolved");
    assert_string_equal(q->c2[1].note, "reimaged");

    /* m5's Qakbot was resolved after the quarter: new at its end. */
    assert_int_equal(q->det_new, 2);
    assert_int_equal(q->det_acknowledged, 1);
    assert_int_equal(q->det_resolved, 1);
    assert_int_equal(q->det_false_positive, 1);
    /* m1's two, m5's, and m4's Emotet of September. */
    assert_int_equal(q->det_open_at_end, 4);

    assert_string_equal(q->months[0].period.label, "2026-10");
    assert_string_equal(q->months[2].period.label, "2026-12");
    assert_int_equal(q->months[0].c.detections, 1);
    assert_int_equal(q->months[1].c.detections, 2);
    assert_int_equal(q->months[2].c.detections, 2);
    assert_int_equal(q->months[1].c.c2_hits, 2);

    assert_int_equal(q->ntrend, 4);
    assert_string_equal(q->trend[0].period.label, "2026Q1");
    assert_string_equal(q->trend[3].period.label, "2026Q4");
    assert_true(fabs(q->trend[3].index - q->index) < 1e-9);
    assert_int_equal(q->trend[2].c.detections, 1);
    rpt_quarter_free(q);
}

static void a_district_scope_sees_only_its_subtree(void **state)
{
    struct fixture *f = need_db(state);
    struct rpt_quarter *q = NULL;
    char err[256] = "";
    if (rpt_quarter_gather(f->db, &f->cfg, &f->q, f->d2, f->now, &q, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_string_equal(q->scope_code, "D2");
    assert_string_equal(q->scope_name, "D2");
    COUNTS(q->total, 2, 3, 1, 0, 1, 1, 2, 2, 1, 1);
    assert_int_equal(q->nagencies, 4);
    assert_int_equal(line(q, "D2")->depth, 0);
    assert_int_equal(q->nc2, 1);
    assert_string_equal(q->c2[0].host, "10.9.9.9");
    assert_int_equal(q->nfamilies, 2);
    assert_int_equal(q->det_new, 1);
    assert_int_equal(q->det_false_positive, 1);
    assert_int_equal(q->det_acknowledged + q->det_resolved, 0);
    assert_int_equal(q->det_open_at_end, 2);
    rpt_quarter_free(q);

    struct rpt_period m;
    rpt_period_month(2026, 11, f->cfg.utc_offset, &m);
    assert_int_not_equal(rpt_quarter_gather(f->db, &f->cfg, &m, 0, f->now, &q, err, sizeof(err)),
                         0);
    assert_int_not_equal(
        rpt_quarter_gather(f->db, &f->cfg, &f->q, 999999, f->now, &q, err, sizeof(err)), 0);
    assert_string_equal(err, "agency 999999 not found");
}

/* ------------------------------------------------------------------------ */
/* The size of a real province (KHIEN_INDEX_BENCH=1 only; prints times).     */
/* ------------------------------------------------------------------------ */

/* 500 agencies (20 districts of 24 agencies under the province), 10,000
 * machines, 50,000 detections over the quarter and the one before, 5,000
 * C&C hits (half on managed machines' addresses). Not a pass/fail test:
 * it prints how long the gathering takes, for docs/PERFORMANCE.md. */
static void a_province_of_500_agencies_is_gathered(void **state)
{
    struct fixture *f = need_db(state);
    if (getenv("KHIEN_INDEX_BENCH") == NULL) {
        printf("SKIP: set KHIEN_INDEX_BENCH=1 to time a province of 500 agencies\n");
        skip();
    }
    int64_t ag[480];
    int64_t t0 = (int64_t)khx_now_ms();
    assert_int_equal(store_begin_write(f->db), 0);
    for (int d = 0; d < 20; d++) {
        char code[32];
        snprintf(code, sizeof(code), "BD%02d", d);
        int64_t dist = agency(f, f->p, code, "district", 0);
        for (int a = 0; a < 24; a++) {
            snprintf(code, sizeof(code), "BA%02d%02d", d, a);
            ag[d * 24 + a] = agency(f, dist, code, "agency", 22);
        }
    }
    char id[64], ips[64];
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof(id), "bench-%05d", i);
        snprintf(ips, sizeof(ips), "10.%d.%d.%d fe80::%x", 100 + i / 65536, (i / 256) % 256,
                 i % 256, i);
        machine(f, id, ag[i % 480], ips, f->q.end - (int64_t)(i % 40) * 86400, "agent");
    }
    static const char *const st[] = {"new", "acknowledged", "resolved", "false_positive"};
    int64_t span = f->q.end - f->q.start;
    for (int i = 0; i < 50000; i++) {
        int m = (i * 7919) % 10000;
        char fam[32];
        snprintf(id, sizeof(id), "bench-%05d", m);
        snprintf(fam, sizeof(fam), "Family%02d", (i * 31) % 60);
        int64_t at = f->q.start - span / 2 + (int64_t)i * (span + span / 2) / 50000;
        detection(f, id, ag[m % 480], fam, at, st[i % 4], at + 3600 * (i % 200));
    }
    for (int i = 0; i < 5000; i++) {
        int m = (i * 104729) % 10000;
        if (i % 2 == 0)
            snprintf(ips, sizeof(ips), "10.%d.%d.%d", 100 + m / 65536, (m / 256) % 256, m % 256);
        else
            snprintf(ips, sizeof(ips), "192.0.2.%d", i % 250);
        c2hit(f, ag[m % 480], ips, i % 3 ? "evil.example" : "bad.example",
              f->q.start + (int64_t)i * (span / 5000), i % 5 ? "new" : "resolved", "");
    }
    assert_int_equal(store_commit(f->db), 0);
    int64_t t1 = (int64_t)khx_now_ms();

    struct rpt_quarter *q = NULL;
    char err[256] = "";
    if (rpt_quarter_gather(f->db, &f->cfg, &f->q, 0, f->now, &q, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    int64_t t2 = (int64_t)khx_now_ms();
    struct idx_table t;
    if (idx_compute(f->db, &f->cfg, &f->q, 0, f->now, &t, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    int64_t t3 = (int64_t)khx_now_ms();
    printf("BENCH %s: seeded in %lld ms; gathered %zu agencies, %lld machines, %lld detections,"
           " %zu C&C lines in %lld ms; one idx_compute %lld ms\n",
           store_kind(f->db) == STORE_SQLITE ? "sqlite" : "postgresql", (long long)(t1 - t0),
           q->nagencies, (long long)q->total.managed, (long long)q->total.detections, q->nc2,
           (long long)(t2 - t1), (long long)(t3 - t2));
    assert_int_equal(q->nagencies, 508);
    assert_int_equal(q->total.managed, 10005);
    idx_table_free(&t);
    rpt_quarter_free(q);
}

int main(void)
{
    const struct CMUnitTest with_store[] = {
        cmocka_unit_test_setup_teardown(the_province_quarter_has_every_figure, setup, teardown),
        cmocka_unit_test_setup_teardown(a_district_scope_sees_only_its_subtree, setup, teardown),
        cmocka_unit_test_setup_teardown(a_province_of_500_agencies_is_gathered, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("sqlite", with_store, NULL, NULL);
    pg_url = tu_pg_private_url();
    if (pg_url != NULL)
        failed += cmocka_run_group_tests_name("postgresql", with_store, NULL, NULL);
    else
        printf("SKIP: the PostgreSQL run needs KHIEN_PG_URL (scripts/pg-throwaway start DIR)\n");
    return failed;
}
