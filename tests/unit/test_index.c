/*
 * The infection index (server/report/formula.c and index.c): the formula's
 * parser and evaluator, the rates, and the components counted from a seeded
 * store for every agency at once. The store tests use this tree, with the
 * month of November 2026 (+07:00) as the period:
 *
 *     P ── D1 ── A1   m1 10.0.1.5 (Emotet, open)   m2 10.0.1.6 (stale, C&C hit)
 *       │     └─ A2   m3 10.0.2.7 (Qakbot resolved in the month; Emotet resolved after it)
 *       └─ D2 ── A3   m4 (a detection of October), m5 retired, the sensor s
 *
 * C&C hits: 10.0.1.6 filed under A1; 10.0.1.5 under A1 and under A2 (one
 * host, two agencies: D1 counts it once); 10.0.3.9 (no managed machine)
 * twice under A3. Sharing: 3 slots, 2 accepted. They run on SQLite and,
 * when KHIEN_PG_URL names a server, again on PostgreSQL.
 *
 * What is proved: the formula accepts the documented syntax and the default,
 * computes with division by zero giving 0, and refuses bad text naming what
 * and where; rates follow their definitions; the tree comes in tree order;
 * additive counts are summed up the tree and families and C&C hosts are
 * counted distinct per subtree; a machine is infected by an unresolved
 * detection or a C&C hit on its address, a C&C host that is no machine
 * infects nobody; a subtree scope sees only itself; a month's snapshot fixes
 * a past month's managed machines; the trend ends with the period's own
 * index.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "report/index.h"
#include "server.h"
#include "store/store.h"

/* ------------------------------------------------------------------------ */
/* The formula.                                                              */
/* ------------------------------------------------------------------------ */

static double eval(const char *text, const struct idx_components *c)
{
    struct idx_formula *f = NULL;
    char err[160] = "";
    if (idx_formula_compile(text, &f, err, sizeof(err)) != 0)
        fail_msg("refused '%s': %s", text, err);
    double v = idx_formula_eval(f, c);
    idx_formula_free(f);
    return v;
}

static void refused(const char *text, const char *want)
{
    struct idx_formula *f = NULL;
    char err[160] = "";
    if (idx_formula_compile(text, &f, err, sizeof(err)) == 0) {
        idx_formula_free(f);
        fail_msg("accepted '%s'", text);
    }
    if (strcmp(err, want) != 0)
        fail_msg("'%s': got \"%s\", want \"%s\"", text, err, want);
}

static void the_formula_computes_what_it_says(void **state)
{
    (void)state;
    struct idx_components c = {.managed = 40,
                               .infected = 10,
                               .stale = 4,
                               .expected = 50,
                               .c2_hosts = 2,
                               .detections = 7,
                               .families = 3,
                               .share_slots = 4,
                               .share_accepted = 3};
    assert_true(fabs(eval("1 + 2 * 3", &c) - 7) < 1e-9);
    assert_true(fabs(eval("(1 + 2) * 3", &c) - 9) < 1e-9);
    assert_true(fabs(eval("10 - 4 - 3", &c) - 3) < 1e-9);
    assert_true(fabs(eval("8 / 4 / 2", &c) - 1) < 1e-9);
    assert_true(fabs(eval("-3 + --2", &c) + 1) < 1e-9);
    assert_true(fabs(eval("2 * -managed", &c) + 80) < 1e-9);
    assert_true(fabs(eval("infected / managed", &c) - 0.25) < 1e-9);
    assert_true(fabs(eval("infected_rate", &c) - 0.25) < 1e-9);
    assert_true(fabs(eval("stale_rate", &c) - 0.1) < 1e-9);
    assert_true(fabs(eval("coverage", &c) - 0.8) < 1e-9);
    assert_true(fabs(eval("sharing_uptime", &c) - 0.75) < 1e-9);
    assert_true(fabs(eval("min(3, max(1.5, families))", &c) - 3) < 1e-9);
    assert_true(fabs(eval("detections / (c2_hits)", &c)) < 1e-9); /* division by zero gives 0 */
    assert_true(fabs(eval(" .5*open+resolved+share_slots ", &c) - 4) < 1e-9);

    struct srv_report_config cfg;
    srv_report_config_defaults(&cfg);
    /* 60*0.25 + 15*0.1 + 10*min(1, 2/40) + 10*(1-0.8) + 5*(1-0.75) */
    assert_true(fabs(eval(cfg.index_formula, &c) - (15 + 1.5 + 0.5 + 2 + 1.25)) < 1e-9);
    struct idx_components none = {0};
    assert_true(fabs(eval(cfg.index_formula, &none)) < 1e-9); /* nothing managed, nothing wrong */
}

static void a_bad_formula_is_refused_naming_what_and_where(void **state)
{
    (void)state;
    refused("60*infectd_rate", "index_formula: unknown name 'infectd_rate' at 4");
    refused("", "index_formula: empty");
    refused("   ", "index_formula: empty");
    refused("1 +", "index_formula: unexpected end at 4");
    refused("(1 + 2", "index_formula: unclosed '(' at 1");
    refused("2*(min(1, 2)", "index_formula: unclosed '(' at 3");
    refused("min(1)", "index_formula: ',' expected in min( at 6");
    refused("min(1, 2", "index_formula: ')' expected to close min( at 9");
    refused("max 1, 2)", "index_formula: '(' expected after max at 5");
    refused("1 2", "index_formula: unexpected '2' at 3");
    refused("1 % 2", "index_formula: unexpected '%' at 3");
    refused("managed ^ 2", "index_formula: unexpected '^' at 9");
    refused("1..2", "index_formula: unexpected '.' at 3");
    refused("1\x01", "index_formula: unexpected '?' at 2");
    refused("\x01", "index_formula: unexpected byte 0x01 at 1");

    char deep[200];
    memset(deep, '(', 40);
    snprintf(deep + 40, sizeof(deep) - 40, "1");
    struct idx_formula *f = NULL;
    char err[160] = "";
    assert_int_not_equal(idx_formula_compile(deep, &f, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "nested too deeply"));

    char lng[600];
    memset(lng, '1', sizeof(lng) - 1);
    lng[sizeof(lng) - 1] = '\0';
    assert_int_not_equal(idx_formula_compile(lng, &f, err, sizeof(err)), 0);
    assert_string_equal(err, "index_formula: longer than 511 characters");

    /* 300 additions fit in 511 characters but not in the program. */
    char many[512];
    size_t n = 0;
    many[n++] = '1';
    while (n + 2 < sizeof(many)) {
        many[n++] = '+';
        many[n++] = '1';
    }
    many[n] = '\0';
    assert_int_not_equal(idx_formula_compile(many, &f, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "too long"));
    assert_int_not_equal(idx_formula_compile(NULL, &f, err, sizeof(err)), 0);
    idx_formula_free(NULL);
}

static void rates_follow_their_definitions(void **state)
{
    (void)state;
    struct idx_rates r;
    struct idx_components c = {0};
    idx_rates_of(&c, &r);
    assert_true(r.infected_rate == 0 && r.stale_rate == 0 && r.coverage == 1 &&
                r.sharing_uptime == 1);
    c = (struct idx_components){.managed = 10,
                                .expected = 5,
                                .infected = 12,
                                .stale = 5,
                                .share_slots = 10,
                                .share_accepted = 0};
    idx_rates_of(&c, &r);
    assert_true(r.infected_rate == 1); /* never above 1 */
    assert_true(r.stale_rate == 0.5);
    assert_true(r.coverage == 1); /* more machines than expected is full coverage */
    assert_true(r.sharing_uptime == 0);
}

/* ------------------------------------------------------------------------ */
/* Counted from a store.                                                     */
/* ------------------------------------------------------------------------ */

static const char *pg_url;

struct fixture {
    char dir[512];
    struct store_db *db;
    struct srv_report_config cfg;
    struct rpt_period nov;
    int64_t p, d1, d2, a1, a2, a3;
};

static int64_t agency(struct fixture *f, int64_t parent, const char *code, int64_t expected)
{
    int64_t id = 0;
    char *ppath = NULL, path[128];
    if (parent != 0)
        assert_int_equal(
            store_query_text(f->db, &ppath, "SELECT path FROM agencies WHERE id = $1", "i", parent),
            STORE_ROW);
    if (parent != 0)
        assert_int_equal(store_query_int(f->db, &id,
                                         "INSERT INTO agencies (parent_id, code, name, kind,"
                                         " expected_machines, created_at)"
                                         " VALUES ($1, $2, $2, 'agency', $3, 0) RETURNING id",
                                         "iti", parent, code, expected),
                         STORE_ROW);
    else
        assert_int_equal(store_query_int(f->db, &id,
                                         "INSERT INTO agencies (code, name, kind,"
                                         " expected_machines, created_at)"
                                         " VALUES ($1, $1, 'province', $2, 0) RETURNING id",
                                         "ti", code, expected),
                         STORE_ROW);
    snprintf(path, sizeof(path), "%s%lld/", ppath != NULL ? ppath : "/", (long long)id);
    free(ppath);
    assert_int_equal(
        store_execf(f->db, NULL, "UPDATE agencies SET path = $1 WHERE id = $2", "ti", path, id), 0);
    return id;
}

static void machine(struct fixture *f, const char *id, int64_t ag, const char *ips, int64_t db_time,
                    int retired, const char *role)
{
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO machines (id, agency_id, hostname, ips, db_time,"
                                 " enrolled_at, retired, role) VALUES ($1, $2, $3, $4, $5, $6,"
                                 " $7, $8)",
                                 "tittiiit", id, ag, id, ips, db_time, f->nov.start - 86400 * 60,
                                 (int64_t)retired, role),
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

static void c2hit(struct fixture *f, int64_t ag, const char *host, int64_t first, int64_t last)
{
    static int n;
    char ev[32];
    snprintf(ev, sizeof(ev), "c2-%d", ++n);
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO c2_hits (event_id, machine_id, agency_id, host,"
                                 " indicator, kind, seen_in, hit_count, first_seen, last_seen,"
                                 " received_at) VALUES ($1, 'sensor', $2, $3, 'evil.example',"
                                 " 'domain', 'dns.query', 1, $4, $5, $5)",
                                 "titii", ev, ag, host, first, last),
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
    rpt_period_month(2026, 11, f->cfg.utc_offset, &f->nov);
    int64_t s = f->nov.start, e = f->nov.end, day = 86400;

    f->p = agency(f, 0, "P", 0);
    f->d1 = agency(f, f->p, "D1", 0);
    f->d2 = agency(f, f->p, "D2", 0);
    f->a2 = agency(f, f->d1, "A2", 1); /* made before A1: tree order is by name */
    f->a1 = agency(f, f->d1, "A1", 4);
    f->a3 = agency(f, f->d2, "A3", 2);
    machine(f, "m1", f->a1, "10.0.1.5", e - day, 0, "agent");
    machine(f, "m2", f->a1, "10.0.1.6", e - 20 * day, 0, "agent");
    machine(f, "m3", f->a2, "fe80::7 10.0.2.7", e - day, 0, "agent");
    machine(f, "m4", f->a3, "10.0.3.4", e - day, 0, "agent");
    machine(f, "m5", f->a3, "10.0.3.5", e - day, 1, "agent");
    machine(f, "sensor", f->a3, "10.0.3.1", 0, 0, "sensor");

    detection(f, "m1", f->a1, "Emotet", s + day, "new", s + day);
    detection(f, "m3", f->a2, "Qakbot", s + 2 * day, "resolved", s + 3 * day);
    detection(f, "m3", f->a2, "Emotet", s + 4 * day, "false_positive", e + day);
    detection(f, "m4", f->a3, "Emotet", s - day, "new", s - day);
    detection(f, "m4", f->a3, "Dridex", e + day, "new", e + day);

    c2hit(f, f->a1, "10.0.1.6", s + day, s + 2 * day);
    c2hit(f, f->a1, "10.0.1.5", s - 5 * day, s + day); /* began before the month */
    c2hit(f, f->a2, "10.0.1.5", s + day, s + day);
    c2hit(f, f->a3, "10.0.3.9", s + day, s + day);
    c2hit(f, f->a3, "10.0.3.9", s + 9 * day, s + 9 * day);
    c2hit(f, f->a3, "10.0.3.4", s - 9 * day, s - 8 * day); /* October only */

    const char *st[] = {"accepted", "failed", "accepted", "accepted"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(
            store_execf(f->db, NULL,
                        "INSERT INTO share_submissions (slot, period_start, period_end,"
                        " created_at, status, next_attempt) VALUES ($1, 0, 0, 0, $2,"
                        " 0)",
                        "it", i < 3 ? s + i * day : e + day, st[i]),
            0);
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

static const struct idx_row *find(const struct idx_table *t, int64_t id)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->rows[i].agency_id == id)
            return &t->rows[i];
    fail_msg("agency %lld not in the table", (long long)id);
    return NULL;
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

static void every_agency_is_counted_and_rolled_up_the_tree(void **state)
{
    struct fixture *f = need_db(state);
    struct idx_table t;
    char err[256] = "";
    if (idx_compute(f->db, &f->cfg, &f->nov, 0, f->nov.end + 5 * 86400, &t, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(t.n, 6);
    const int64_t order[] = {f->p, f->d1, f->a1, f->a2, f->d2, f->a3};
    const int depth[] = {0, 1, 2, 2, 1, 2};
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(t.rows[i].agency_id, order[i]);
        assert_int_equal(t.rows[i].depth, depth[i]);
    }
    assert_int_equal(t.rows[0].parent_id, 0);
    assert_int_equal(t.rows[2].parent_id, f->d1);

    /* m1 by its open detection, m2 by the hit on its address. */
    COUNTS(find(&t, f->a1)->own, 2, 4, 2, 1, 2, 2, 1, 1, 1, 0);
    /* m3's Emotet was marked a false positive only after the month. */
    COUNTS(find(&t, f->a2)->own, 1, 1, 1, 0, 1, 1, 2, 2, 1, 1);
    /* m5 is retired and the sensor no agent; 10.0.3.9 is nobody. */
    COUNTS(find(&t, f->a3)->own, 1, 2, 0, 0, 1, 2, 0, 0, 0, 0);
    COUNTS(find(&t, f->d1)->own, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    /* 10.0.1.5 was seen under A1 and A2 and Emotet in both: once each. */
    COUNTS(find(&t, f->d1)->total, 3, 5, 3, 1, 2, 3, 3, 2, 2, 1);
    COUNTS(find(&t, f->d2)->total, 1, 2, 0, 0, 1, 2, 0, 0, 0, 0);
    COUNTS(find(&t, f->p)->total, 4, 7, 3, 1, 3, 5, 3, 2, 2, 1);
    COUNTS(t.province, 4, 7, 3, 1, 3, 5, 3, 2, 2, 1);
    assert_int_equal(t.province.share_slots, 3);
    assert_int_equal(t.province.share_accepted, 2);
    assert_int_equal(find(&t, f->a3)->total.share_slots, 3);

    /* min(100, 60*3/4 + 15*1/4 + 10*min(1, 3/4) + 10*(1 - 4/7) + 5*(1 - 2/3)) */
    double want = 45 + 3.75 + 7.5 + 10.0 * 3 / 7 + 5.0 / 3;
    assert_true(fabs(t.province_index - want) < 1e-9);
    assert_true(fabs(find(&t, f->p)->index - want) < 1e-9);
    assert_true(find(&t, f->a3)->index < find(&t, f->a1)->index);
    idx_table_free(&t);
}

static void a_subtree_scope_sees_only_itself(void **state)
{
    struct fixture *f = need_db(state);
    struct idx_table t;
    char err[256] = "";
    if (idx_compute(f->db, &f->cfg, &f->nov, f->d1, f->nov.end + 5 * 86400, &t, err, sizeof(err)) !=
        0)
        fail_msg("%s", err);
    assert_int_equal(t.n, 3);
    assert_int_equal(t.rows[0].agency_id, f->d1);
    assert_int_equal(t.rows[0].parent_id, 0);
    assert_int_equal(t.rows[0].depth, 0);
    COUNTS(t.province, 3, 5, 3, 1, 2, 3, 3, 2, 2, 1);
    idx_table_free(&t);
    assert_int_not_equal(
        idx_compute(f->db, &f->cfg, &f->nov, 999999, f->nov.end, &t, err, sizeof(err)), 0);
    assert_string_equal(err, "agency 999999 not found");
}

static void the_current_month_is_counted_up_to_now(void **state)
{
    struct fixture *f = need_db(state);
    struct idx_table t;
    char err[256] = "";
    /* On the 3rd: m1's detection and the hits on 10.0.1.5 and 10.0.1.6 are
     * in, m3's Qakbot (day 2) is still open, later ones are not yet. m2's
     * database (built 20 days before the month's end) is not stale yet. */
    int64_t now = f->nov.start + 2 * 86400 + 3600;
    if (idx_compute(f->db, &f->cfg, &f->nov, 0, now, &t, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    COUNTS(t.province, 4, 7, 3, 0, 3, 4, 2, 2, 2, 0);
    assert_int_equal(t.province.share_slots, 3);
    idx_table_free(&t);
}

static void a_snapshot_keeps_a_past_months_machines(void **state)
{
    struct fixture *f = need_db(state);
    struct srv srv;
    memset(&srv, 0, sizeof(srv));
    srv.cfg.report = f->cfg;
    char msg[256] = "", err[256] = "";
    int64_t now = f->nov.end + 3600;
    assert_int_equal(idx_job_month(&srv, f->db, now, msg, sizeof(msg)), 0);
    assert_non_null(strstr(msg, "2026-11 kept for 6 agencies"));
    assert_int_equal(idx_job_month(&srv, f->db, now + 3600, msg, sizeof(msg)), 0);
    assert_string_equal(msg, "2026-11 already kept");

    /* Later, m4 is retired, A3 expects more and m1 is updated: November
     * keeps what the month's end saw. */
    assert_int_equal(
        store_execf(f->db, NULL, "UPDATE machines SET retired = 1 WHERE id = 'm4'", ""), 0);
    assert_int_equal(store_execf(f->db, NULL,
                                 "UPDATE agencies SET expected_machines = 9 WHERE id = $1", "i",
                                 f->a3),
                     0);
    struct idx_table t;
    if (idx_compute(f->db, &f->cfg, &f->nov, 0, now + 40 * 86400, &t, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(find(&t, f->a3)->own.managed, 1);
    assert_int_equal(find(&t, f->a3)->own.expected, 2);
    assert_int_equal(find(&t, f->a1)->own.stale, 1);
    assert_int_equal(t.province.managed, 4);
    idx_table_free(&t);

    /* The quarter's past value reads its last month's snapshot too. */
    struct rpt_period q;
    rpt_period_quarter(2026, 4, f->cfg.utc_offset, &q);
    struct rpt_period dec;
    rpt_period_month(2026, 12, f->cfg.utc_offset, &dec);
    assert_int_equal(idx_job_month(&srv, f->db, dec.end + 60, msg, sizeof(msg)), 0);
    if (idx_compute(f->db, &f->cfg, &q, 0, dec.end + 86400, &t, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(find(&t, f->a3)->own.managed, 0); /* December's end: m4 retired */
    assert_int_equal(find(&t, f->a3)->own.expected, 9);
    assert_int_equal(t.province.detections, 5); /* the quarter holds October's and December's */
    idx_table_free(&t);
}

static void the_trend_ends_with_the_periods_own_index(void **state)
{
    struct fixture *f = need_db(state);
    struct idx_point pts[3];
    struct idx_table t;
    char err[256] = "";
    int64_t now = f->nov.end + 5 * 86400;
    if (idx_trend(f->db, &f->cfg, &f->nov, f->d2, 3, now, pts, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_string_equal(pts[0].period.label, "2026-09");
    assert_string_equal(pts[1].period.label, "2026-10");
    assert_string_equal(pts[2].period.label, "2026-11");
    assert_int_equal(pts[1].c.detections, 1); /* m4's October detection */
    assert_int_equal(pts[1].c.infected, 1);   /* and the October hit on its address */
    assert_int_equal(pts[0].c.detections, 0);
    if (idx_compute(f->db, &f->cfg, &f->nov, f->d2, now, &t, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_true(fabs(pts[2].index - t.province_index) < 1e-9);
    idx_table_free(&t);
    assert_int_not_equal(idx_trend(f->db, &f->cfg, &f->nov, 0, 0, now, pts, err, sizeof(err)), 0);
}

/* ------------------------------------------------------------------------ */
/* The API.                                                                  */
/* ------------------------------------------------------------------------ */

static json_t *call(struct fixture *f, int (*h)(struct srv_req *), const struct srv_principal *who,
                    const char *query, unsigned want)
{
    struct srv srv;
    unsigned status = 0;
    memset(&srv, 0, sizeof(srv));
    srv.cfg.report = f->cfg;
    json_t *j = tu_call_handler(&srv, f->db, h, who, "GET", NULL, query, NULL, 1, &status);
    if (status != want) {
        char *text = json_dumps(j, JSON_COMPACT);
        fail_msg("?%s: status %u, wanted %u: %s", query ? query : "", status, want, text);
    }
    return j;
}

static void the_api_answers_within_the_callers_scope(void **state)
{
    struct fixture *f = need_db(state);
    struct srv_principal admin, officer;
    tu_principal_admin(&admin);
    officer = admin;
    officer.role = SRV_ROLE_OFFICER;
    officer.agency_id = f->d1;
    snprintf(officer.scope_path, sizeof(officer.scope_path), "/%lld/%lld/%%", (long long)f->p,
             (long long)f->d1);

    json_t *j = call(f, api_index_get, &admin, "period=2026-11", 200);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "period"), "label")),
                        "2026-11");
    assert_string_equal(json_string_value(json_object_get(j, "formula")), f->cfg.index_formula);
    assert_true(json_is_null(json_object_get(j, "agency_id")));
    json_t *items = json_object_get(j, "items");
    assert_int_equal(json_array_size(items), 6);
    json_t *p = json_array_get(items, 0);
    assert_int_equal(json_integer_value(json_object_get(p, "agency_id")), f->p);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(p, "components"), "infected")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(p, "own"), "infected")), 0);
    assert_true(
        fabs(json_real_value(json_object_get(json_object_get(p, "rates"), "infected_rate")) -
             0.75) < 1e-9);
    json_t *scope = json_object_get(j, "scope");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(scope, "components"), "c2_hosts")), 3);
    assert_true(fabs(json_real_value(json_object_get(scope, "index")) -
                     json_real_value(json_object_get(p, "index"))) < 1e-9);
    json_decref(j);

    /* The officer of D1 sees D1 and below, by default and when asking for
     * A1; D2 is not found. */
    j = call(f, api_index_get, &officer, "period=2026-11", 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "agency_id")), f->d1);
    json_decref(j);
    char q[96];
    snprintf(q, sizeof(q), "period=2026Q4&agency=%lld", (long long)f->a1);
    j = call(f, api_index_get, &officer, q, 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 1);
    json_decref(j);
    snprintf(q, sizeof(q), "period=2026-11&agency=%lld", (long long)f->d2);
    json_decref(call(f, api_index_get, &officer, q, 404));
    json_decref(call(f, api_index_get, &admin, "period=2026-13", 400));
    json_decref(call(f, api_index_get, &admin, "agency=x", 400));

    j = call(f, api_index_trend, &admin, "kind=quarter&count=2&period=2026Q4", 200);
    json_t *pts = json_object_get(j, "points");
    assert_int_equal(json_array_size(pts), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(pts, 1), "period"), "label")),
                        "2026Q4");
    json_decref(j);
    j = call(f, api_index_trend, &officer, "period=2026-11", 200);
    pts = json_object_get(j, "points");
    assert_int_equal(json_array_size(pts), 6);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_array_get(pts, 5), "components"), "managed")),
                     3);
    json_decref(j);
    json_decref(call(f, api_index_trend, &admin, "kind=year", 400));
    json_decref(call(f, api_index_trend, &admin, "count=25", 400));
    json_decref(call(f, api_index_trend, &admin, "kind=quarter&period=2026-11", 400));
}

int main(void)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(the_formula_computes_what_it_says),
        cmocka_unit_test(a_bad_formula_is_refused_naming_what_and_where),
        cmocka_unit_test(rates_follow_their_definitions),
    };
    const struct CMUnitTest with_store[] = {
        cmocka_unit_test_setup_teardown(every_agency_is_counted_and_rolled_up_the_tree, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_subtree_scope_sees_only_itself, setup, teardown),
        cmocka_unit_test_setup_teardown(the_current_month_is_counted_up_to_now, setup, teardown),
        cmocka_unit_test_setup_teardown(a_snapshot_keeps_a_past_months_machines, setup, teardown),
        cmocka_unit_test_setup_teardown(the_trend_ends_with_the_periods_own_index, setup, teardown),
        cmocka_unit_test_setup_teardown(the_api_answers_within_the_callers_scope, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("formula", plain, NULL, NULL);

    failed += cmocka_run_group_tests_name("sqlite", with_store, NULL, NULL);
    pg_url = tu_pg_private_url();
    if (pg_url != NULL)
        failed += cmocka_run_group_tests_name("postgresql", with_store, NULL, NULL);
    else
        printf("SKIP: the PostgreSQL run needs KHIEN_PG_URL (scripts/pg-throwaway start DIR)\n");
    return failed;
}
