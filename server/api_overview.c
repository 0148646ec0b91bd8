/*
 * The dashboard's first page: how many machines the caller's part of the
 * province has enrolled against how many it expects, how many are online and
 * up to date, the newest signature bundle, and what was detected recently
 * (open detections, the last 24 hours, a per-day series, the commonest
 * families and the most affected agencies).
 *
 * Each figure is one grouped query restricted to the caller's scope; the
 * coverage roll-up (machines of a whole subtree against the expectation set
 * on its top agency) is done here in C by path prefix, because "sum over
 * every descendant" is awkward in SQL that must run on both backends.
 *
 * The detection figures read the running totals of migration 3 (kept by
 * ingest.c and api_detection.c) instead of counting up to a million rows:
 * open detections per agency and machine, and detections per UTC day and
 * agency (and family) and per recent hour and agency. A window that starts
 * inside a period, such as "the last 30 days" counted from now, takes its
 * whole periods from those totals and counts the detections of its first,
 * partial period one by one, which keeps every figure exactly what counting
 * the detections would give.
 */
#include "api.h"
#include "query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { DAY = 86400, WINDOW_DAYS = 30, TOP_N = 10, MAX_DAYS = 365, MAX_COVERAGE = 100000 };

/* One agency that sets an expectation for its subtree. */
struct coverage {
    int64_t id;
    char *path;
    char *code;
    char *name;
    int64_t expected;
    int64_t enrolled;
};

struct coverage_list {
    struct coverage *v;
    size_t n, cap;
};

static void coverage_list_free(struct coverage_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].path);
        free(l->v[i].code);
        free(l->v[i].name);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int coverage_cmp(const void *a, const void *b)
{
    return strcmp(((const struct coverage *)a)->path, ((const struct coverage *)b)->path);
}

/* Runs `sql` (a statement built with srv_sql_*) and returns its first
 * column's integer, 0 when there is no row. */
static int query_count(struct srv_req *r, struct srv_sql *q, int64_t *out)
{
    struct store_stmt *st = NULL;
    int rc;

    *out = 0;
    if ((rc = srv_sql_prepare(r->db, q, &st)) == 0 && (rc = store_step(st)) >= 0) {
        if (rc == STORE_ROW)
            *out = store_col_int(st, 0);
        rc = 0;
    }
    store_finalize(st);
    srv_sql_clear(q);
    return rc;
}

/* Appends " AND <col> IN (the agencies in scope)". A set of agency ids
 * rather than a join leaves the planner free to start from the time index
 * or a table's primary key; the whole province needs no condition at all.
 * `col` is a constant. */
static void agency_scope(struct srv_sql *q, const struct srv_req *r, const char *col)
{
    if (strcmp(r->who.scope_path, "%") == 0)
        return;
    srv_sql_add(q, " AND ");
    srv_sql_add(q, col);
    srv_sql_add(q, " IN (SELECT a.id FROM agencies a WHERE 1=1");
    srv_sql_scope(q, r, "a.path");
    srv_sql_add(q, ")");
}

/* A table of figures that counts detections per period of `seconds` (a day
 * or an hour): its name and the column holding the period number,
 * detected_at / seconds. */
struct periods {
    const char *table;
    const char *column;
    int64_t seconds;
};

static const struct periods daily = {"detection_daily", "s.day", DAY};
static const struct periods daily_family = {"detection_daily_family", "s.day", DAY};
static const struct periods daily_family_all = {"detection_daily_family_all", "s.day", DAY};
static const struct periods hourly = {"detection_hourly", "s.hour", 3600};

/* The detections since `from`, wherever in a period it falls, as a subquery
 * "(...) t" of rows (k, n) over the caller's scope: whole periods from the
 * table of figures `p` (key column `key`), then the detections of the
 * first, partial period one by one (key expression `dkey`). The two parts
 * never overlap, so grouping t by k gives exact counts. `key` and `dkey`
 * are constants. p->table has an agency_id column unless the caller's scope
 * is the whole province. */
static void since_rows(struct srv_sql *q, const struct srv_req *r, int64_t from,
                       const struct periods *p, const char *key, const char *dkey)
{
    /* from / seconds rounded up: the first period wholly in the window. */
    int64_t first = (from + p->seconds - 1) / p->seconds;

    srv_sql_add(q, " (SELECT ");
    srv_sql_add(q, key);
    srv_sql_add(q, " AS k, s.detections AS n FROM ");
    srv_sql_add(q, p->table);
    srv_sql_add(q, " s WHERE ");
    srv_sql_add(q, p->column);
    srv_sql_add(q, " >= ");
    srv_sql_int(q, first);
    agency_scope(q, r, "s.agency_id");
    srv_sql_add(q, " UNION ALL SELECT ");
    srv_sql_add(q, dkey);
    srv_sql_add(q, ", 1 FROM detections d WHERE d.detected_at >= ");
    srv_sql_int(q, from);
    srv_sql_add(q, " AND d.detected_at < ");
    srv_sql_int(q, first * p->seconds);
    agency_scope(q, r, "d.agency_id");
    srv_sql_add(q, ") t");
}

/* "machines": enrolled, online, offline, outdated, retired (expected is
 * filled in by coverage()). */
static int machines_counts(struct srv_req *r, int64_t now, json_t *out, int64_t *outdated)
{
    struct srv_sql q;
    struct store_stmt *st = NULL;
    int64_t enrolled = 0, online = 0, retired = 0;
    int rc;

    srv_sql_init(&q);
    srv_sql_add(&q, "SELECT SUM(CASE WHEN m.retired = 0 THEN 1 ELSE 0 END),"
                    " SUM(CASE WHEN m.retired = 0 AND m.last_seen >= ");
    srv_sql_int(&q, now - (int64_t)r->srv->cfg.offline_after);
    srv_sql_add(&q, " THEN 1 ELSE 0 END), SUM(CASE WHEN m.retired = 0 AND m.db_time < ");
    srv_sql_int(&q, now - (int64_t)SRV_OUTDATED_DAYS * DAY);
    srv_sql_add(&q, " THEN 1 ELSE 0 END), SUM(CASE WHEN m.retired = 1 THEN 1 ELSE 0 END)"
                    " FROM machines m JOIN agencies a ON a.id = m.agency_id WHERE 1=1");
    srv_sql_scope(&q, r, "a.path");
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0 || (rc = store_step(st)) < 0)
        goto out;
    /* SUM over no rows is NULL, which store_col_int reads as 0. */
    if (rc == STORE_ROW) {
        enrolled = store_col_int(st, 0);
        online = store_col_int(st, 1);
        *outdated = store_col_int(st, 2);
        retired = store_col_int(st, 3);
    }
    json_object_set_new(out, "machines",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "enrolled",
                                  (json_int_t)enrolled, "expected", (json_int_t)0, "online",
                                  (json_int_t)online, "offline", (json_int_t)(enrolled - online),
                                  "outdated", (json_int_t)*outdated, "retired",
                                  (json_int_t)retired));
    rc = 0;
out:
    store_finalize(st);
    srv_sql_clear(&q);
    return rc;
}

/* Loads the agencies in scope that set an expectation, keeping only the
 * topmost of each nested chain: a department expecting 500 machines already
 * counts the machines of the offices below it. */
static int coverage_load(struct srv_req *r, struct coverage_list *l)
{
    struct srv_sql q;
    struct store_stmt *st = NULL;
    size_t kept = 0;
    int rc;

    srv_sql_init(&q);
    srv_sql_add(&q, "SELECT a.id, a.path, a.code, a.name, a.expected_machines FROM agencies a"
                    " WHERE a.expected_machines > 0");
    srv_sql_scope(&q, r, "a.path");
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0)
        goto out;
    while ((rc = store_step(st)) == STORE_ROW) {
        struct coverage *c;
        if (l->n == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 32;
            struct coverage *v;
            if (cap > MAX_COVERAGE || (v = realloc(l->v, cap * sizeof(*v))) == NULL) {
                rc = STORE_ENOMEM;
                goto out;
            }
            l->v = v;
            l->cap = cap;
        }
        c = &l->v[l->n];
        memset(c, 0, sizeof(*c));
        c->id = store_col_int(st, 0);
        c->path = strdup(store_col_text(st, 1) ? store_col_text(st, 1) : "");
        c->code = strdup(store_col_text(st, 2) ? store_col_text(st, 2) : "");
        c->name = strdup(store_col_text(st, 3) ? store_col_text(st, 3) : "");
        c->expected = store_col_int(st, 4);
        l->n++;
        if (c->path == NULL || c->code == NULL || c->name == NULL) {
            rc = STORE_ENOMEM;
            goto out;
        }
    }
    if (rc < 0)
        goto out;
    /* Sorted by byte order (not the database's collation, which may ignore
     * the slashes), every descendant of an agency follows it directly, so
     * comparing against the last kept agency is enough. */
    if (l->n > 0)
        qsort(l->v, l->n, sizeof(l->v[0]), coverage_cmp);
    for (size_t i = 0; i < l->n; i++) {
        struct coverage *top = kept > 0 ? &l->v[kept - 1] : NULL;
        if (top != NULL && strncmp(l->v[i].path, top->path, strlen(top->path)) == 0) {
            free(l->v[i].path);
            free(l->v[i].code);
            free(l->v[i].name);
            continue;
        }
        l->v[kept++] = l->v[i];
    }
    l->n = kept;
    rc = 0;
out:
    store_finalize(st);
    srv_sql_clear(&q);
    return rc;
}

/* "coverage": enrolled machines (not retired) of each top agency's subtree
 * against its expectation, from one count per agency rolled up by path. */
static int coverage(struct srv_req *r, json_t *out)
{
    struct coverage_list l = {0};
    struct srv_sql q;
    struct store_stmt *st = NULL;
    json_t *items = NULL;
    int64_t expected = 0;
    int rc;

    srv_sql_init(&q);
    if ((rc = coverage_load(r, &l)) != 0)
        goto out;
    srv_sql_add(&q, "SELECT a.path, count(*) FROM machines m JOIN agencies a ON a.id = m.agency_id"
                    " WHERE m.retired = 0");
    srv_sql_scope(&q, r, "a.path");
    srv_sql_add(&q, " GROUP BY a.path");
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0)
        goto out;
    while ((rc = store_step(st)) == STORE_ROW) {
        const char *path = store_col_text(st, 0);
        /* Kept agencies do not nest, so at most one contains this path. */
        for (size_t i = 0; path != NULL && i < l.n; i++)
            if (strncmp(path, l.v[i].path, strlen(l.v[i].path)) == 0) {
                l.v[i].enrolled += store_col_int(st, 1);
                break;
            }
    }
    if (rc < 0)
        goto out;
    if ((items = json_array()) == NULL) {
        rc = STORE_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        expected += l.v[i].expected;
        json_array_append_new(items, json_pack("{s:I, s:s, s:s, s:I, s:I}", "agency_id",
                                               (json_int_t)l.v[i].id, "code", l.v[i].code, "name",
                                               l.v[i].name, "enrolled", (json_int_t)l.v[i].enrolled,
                                               "expected", (json_int_t)l.v[i].expected));
    }
    json_object_set_new(out, "coverage", items);
    items = NULL;
    json_object_set_new(json_object_get(out, "machines"), "expected", json_integer(expected));
    rc = 0;
out:
    json_decref(items);
    store_finalize(st);
    srv_sql_clear(&q);
    coverage_list_free(&l);
    return rc;
}

/* "db": the newest published bundle and how many machines lag behind. */
static int db_status(struct srv_req *r, json_t *out, int64_t outdated)
{
    struct store_stmt *st = NULL;
    json_t *version = json_null(), *at = json_null();
    int rc;

    rc = store_queryf(r->db, &st,
                      "SELECT version, created_at FROM bundles ORDER BY version DESC LIMIT 1", "");
    if (rc == STORE_ROW) {
        version = json_integer(store_col_int(st, 0));
        at = json_integer(store_col_int(st, 1));
    }
    store_finalize(st);
    json_object_set_new(out, "db",
                        json_pack("{s:o, s:o, s:I, s:i}", "latest_version", version, "latest_at",
                                  at, "outdated_machines", (json_int_t)outdated, "outdated_days",
                                  SRV_OUTDATED_DAYS));
    return rc < 0 ? rc : 0;
}

/* "detections": open, last 24 hours, and one count per UTC day for the last
 * `days` days, oldest first, with the days that had none included. */
static int detection_counts(struct srv_req *r, int64_t now, int64_t days, json_t *out)
{
    struct srv_sql q;
    struct store_stmt *st = NULL;
    int64_t open = 0, last_24h = 0, today = now / DAY, first = today - days + 1;
    int64_t counts[MAX_DAYS] = {0};
    json_t *by_day = NULL;
    int rc;

    srv_sql_init(&q);
    srv_sql_add(&q, "SELECT CAST(sum(o.open_count) AS BIGINT) FROM open_by_agency o WHERE 1=1");
    agency_scope(&q, r, "o.agency_id");
    if ((rc = query_count(r, &q, &open)) != 0)
        goto out;
    /* Whole hours, and the detections of the first hour one by one. On
     * PostgreSQL, counting a whole day's rows from the time index also reads
     * each row from the table, because rows this recent are not yet marked
     * all-visible for an index-only scan: 130 ms for a day of 90,000
     * detections. */
    srv_sql_add(&q, "SELECT CAST(sum(t.n) AS BIGINT) FROM");
    since_rows(&q, r, now - DAY, &hourly, "0", "0");
    if ((rc = query_count(r, &q, &last_24h)) != 0)
        goto out;

    /* Whole UTC days, so the daily totals answer alone. The date text is
     * made here rather than with either database's date functions. */
    srv_sql_add(&q, "SELECT s.day, CAST(sum(s.detections) AS BIGINT) FROM detection_daily s"
                    " WHERE s.day >= ");
    srv_sql_int(&q, first);
    srv_sql_add(&q, " AND s.day <= ");
    srv_sql_int(&q, today);
    agency_scope(&q, r, "s.agency_id");
    srv_sql_add(&q, " GROUP BY s.day");
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0)
        goto out;
    while ((rc = store_step(st)) == STORE_ROW) {
        int64_t day = store_col_int(st, 0);
        if (day >= first && day <= today)
            counts[day - first] = store_col_int(st, 1);
    }
    if (rc < 0 || (by_day = json_array()) == NULL) {
        rc = rc < 0 ? rc : STORE_ENOMEM;
        goto out;
    }
    for (int64_t i = 0; i < days; i++) {
        time_t t = (time_t)((first + i) * DAY);
        struct tm tm;
        char date[16] = "";
        if (gmtime_r(&t, &tm) != NULL)
            strftime(date, sizeof(date), "%Y-%m-%d", &tm);
        json_array_append_new(by_day,
                              json_pack("{s:s, s:I}", "day", date, "count", (json_int_t)counts[i]));
    }
    json_object_set_new(out, "detections",
                        json_pack("{s:I, s:I, s:o}", "open", (json_int_t)open, "last_24h",
                                  (json_int_t)last_24h, "by_day", by_day));
    by_day = NULL;
    rc = 0;
out:
    json_decref(by_day);
    store_finalize(st);
    srv_sql_clear(&q);
    return rc;
}

/* "top_families" and "top_agencies" over the last 30 days. */
static int top_lists(struct srv_req *r, int64_t now, json_t *out)
{
    struct srv_sql q;
    struct store_stmt *st = NULL;
    json_t *families = json_array(), *agencies = json_array();
    int64_t from = now - (int64_t)WINDOW_DAYS * DAY;
    int rc;

    srv_sql_init(&q);
    if (families == NULL || agencies == NULL) {
        rc = STORE_ENOMEM;
        goto out;
    }
    /* A detection without a family (an older agent, a hash signature) is
     * counted under its signature name, as the daily table keeps it. */
    srv_sql_add(&q, "SELECT t.k, CAST(sum(t.n) AS BIGINT) FROM");
    since_rows(&q, r, from, strcmp(r->who.scope_path, "%") == 0 ? &daily_family_all : &daily_family,
               "s.family", "CASE WHEN d.family = '' THEN d.signature ELSE d.family END");
    srv_sql_add(&q, " GROUP BY t.k ORDER BY 2 DESC, 1 LIMIT 10");
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0)
        goto out;
    while ((rc = store_step(st)) == STORE_ROW)
        json_array_append_new(families, json_pack("{s:o, s:I}", "family", srv_col_string(st, 0),
                                                  "count", (json_int_t)store_col_int(st, 1)));
    if (rc < 0)
        goto out;
    store_finalize(st);
    st = NULL;
    srv_sql_clear(&q);

    /* Infected machines: those whose detections here in the window are
     * still open, the same meaning "infected" has in the machine list. A
     * machine has one row per agency it has open detections in, with the
     * newest one's time. */
    srv_sql_add(&q, "SELECT t.k, a.code, a.name, CAST(sum(t.n) AS BIGINT),"
                    " (SELECT count(*) FROM open_by_agency o WHERE o.agency_id = t.k"
                    " AND o.open_count > 0 AND o.newest_open >= ");
    srv_sql_int(&q, from);
    srv_sql_add(&q, ") FROM");
    since_rows(&q, r, from, &daily, "s.agency_id", "d.agency_id");
    srv_sql_add(&q, " JOIN agencies a ON a.id = t.k GROUP BY t.k, a.code, a.name"
                    " ORDER BY 4 DESC, 1 LIMIT 10");
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0)
        goto out;
    while ((rc = store_step(st)) == STORE_ROW)
        json_array_append_new(agencies,
                              json_pack("{s:I, s:o, s:o, s:I, s:I}", "agency_id",
                                        (json_int_t)store_col_int(st, 0), "code",
                                        srv_col_string(st, 1), "name", srv_col_string(st, 2),
                                        "detections", (json_int_t)store_col_int(st, 3),
                                        "infected_machines", (json_int_t)store_col_int(st, 4)));
    if (rc < 0)
        goto out;
    json_object_set_new(out, "top_families", families);
    json_object_set_new(out, "top_agencies", agencies);
    families = agencies = NULL;
    rc = 0;
out:
    json_decref(families);
    json_decref(agencies);
    store_finalize(st);
    srv_sql_clear(&q);
    return rc;
}

int api_overview(struct srv_req *r)
{
    json_t *out = json_object();
    int64_t now = srv_now(), days = WINDOW_DAYS, outdated = 0;
    int rc;

    if (out == NULL)
        return srv_reply_error(r, 500, "internal", "out of memory");
    if (srv_qparam_int(r, "days", 1, MAX_DAYS, &days) < 0) {
        json_decref(out);
        return srv_reply_field(r, "days", "a number of days from 1 to 365");
    }
    if ((rc = machines_counts(r, now, out, &outdated)) != 0 || (rc = coverage(r, out)) != 0 ||
        (rc = db_status(r, out, outdated)) != 0 ||
        (rc = detection_counts(r, now, days, out)) != 0 || (rc = top_lists(r, now, out)) != 0) {
        json_decref(out);
        return srv_reply_store_error(r, rc);
    }
    return srv_reply_json(r, 200, out);
}
