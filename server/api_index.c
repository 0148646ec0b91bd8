/*
 * The infection index on the dashboard API (docs/api/index.md):
 *
 *   GET /api/v1/index?period=2026Q4|2026-11&agency=ID
 *       every agency of the caller's scope (or of agency ID's subtree) in
 *       tree order, with its own and its subtree's components, the rates
 *       and the index, the scope's figures and the formula's text;
 *   GET /api/v1/index/trend?agency=ID&kind=month|quarter&count=N&period=P
 *       the scope's index for the N months or quarters ending with P (the
 *       current one by default), oldest first.
 *
 * Scope works as for every list: an officer sees its own agency and those
 * below it, and an agency outside that is "not found". The counting is
 * report/index.c's; this file only reads parameters and writes JSON.
 */
#include "api.h"
#include "query.h"
#include "report/index.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

enum { TREND_DEFAULT_MONTHS = 6, TREND_DEFAULT_QUARTERS = 4, TREND_MAX = 24 };

static json_t *components_json(const struct idx_components *c)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "managed",
                     (json_int_t)c->managed, "expected", (json_int_t)c->expected, "infected",
                     (json_int_t)c->infected, "stale", (json_int_t)c->stale, "c2_hosts",
                     (json_int_t)c->c2_hosts, "c2_hits", (json_int_t)c->c2_hits, "detections",
                     (json_int_t)c->detections, "families", (json_int_t)c->families, "open",
                     (json_int_t)c->open, "resolved", (json_int_t)c->resolved, "share_slots",
                     (json_int_t)c->share_slots, "share_accepted", (json_int_t)c->share_accepted);
}

static json_t *rates_json(const struct idx_components *c)
{
    struct idx_rates r;
    idx_rates_of(c, &r);
    return json_pack("{s:f, s:f, s:f, s:f}", "infected_rate", r.infected_rate, "stale_rate",
                     r.stale_rate, "coverage", r.coverage, "sharing_uptime", r.sharing_uptime);
}

static json_t *period_json(const struct rpt_period *p)
{
    return json_pack("{s:s, s:s, s:I, s:I}", "label", p->label, "kind",
                     p->kind == RPT_MONTH ? "month" : "quarter", "start", (json_int_t)p->start,
                     "end", (json_int_t)p->end);
}

/* ?agency= within the caller's scope (0 when absent: the caller's own
 * scope root), or -1 after answering. */
static int scope_root(struct srv_req *r, int64_t *root)
{
    int64_t agency = 0;
    char path[256];
    int rc = srv_qparam_int(r, "agency", 1, INT64_MAX, &agency);
    if (rc < 0)
        return srv_reply_field(r, "agency", "an agency id"), -1;
    if (rc == 0) {
        *root = r->who.agency_id;
        return 0;
    }
    rc = srv_agency_path(r, agency, path, sizeof(path));
    if (rc < 0)
        return srv_reply_store_error(r, rc), -1;
    if (rc == 0)
        return srv_reply_error(r, 404, "not_found", "no agency %" PRId64, agency), -1;
    *root = agency;
    return 0;
}

/* ?period= ("2026Q4", "2026-11"), by default the current period of `kind`. */
static int period_param(struct srv_req *r, enum rpt_period_kind kind, struct rpt_period *p)
{
    const struct srv_report_config *cfg = &r->srv->cfg.report;
    const char *s = srv_qparam(r, "period");
    if (s == NULL) {
        rpt_period_at(srv_now(), kind, cfg->utc_offset, p);
        return 0;
    }
    if (rpt_period_parse(s, cfg->utc_offset, p) != 0)
        return srv_reply_field(r, "period", "a month (2026-11) or a quarter (2026Q4)"), -1;
    return 0;
}

int api_index_get(struct srv_req *r)
{
    const struct srv_report_config *cfg = &r->srv->cfg.report;
    struct rpt_period p;
    struct idx_table t = {0};
    int64_t root = 0;
    char err[512] = "";
    json_t *items = NULL;

    if (scope_root(r, &root) != 0 || period_param(r, RPT_MONTH, &p) != 0)
        return 0;
    if (idx_compute(r->db, cfg, &p, root, srv_now(), &t, err, sizeof(err)) != 0) {
        srv_log("index %s: %s", p.label, err);
        return srv_reply_error(r, 500, "index", "%s", err);
    }
    items = json_array();
    for (size_t i = 0; items != NULL && i < t.n; i++) {
        const struct idx_row *w = &t.rows[i];
        json_t *item =
            json_pack("{s:I, s:o, s:i, s:s, s:s, s:s, s:o, s:o, s:o, s:f}", "agency_id",
                      (json_int_t)w->agency_id, "parent_id",
                      w->parent_id != 0 ? json_integer(w->parent_id) : json_null(), "depth",
                      w->depth, "code", w->code, "name", w->name, "kind", w->kind, "own",
                      components_json(&w->own), "components", components_json(&w->total), "rates",
                      rates_json(&w->total), "index", w->index);
        if (item == NULL || json_array_append_new(items, item) != 0) {
            json_decref(items);
            items = NULL;
        }
    }
    json_t *body =
        items == NULL
            ? NULL
            : json_pack("{s:o, s:s, s:o, s:{s:o, s:o, s:f}, s:o}", "period", period_json(&p),
                        "formula", cfg->index_formula, "agency_id",
                        root != 0 ? json_integer(root) : json_null(), "scope", "components",
                        components_json(&t.province), "rates", rates_json(&t.province), "index",
                        t.province_index, "items", items);
    idx_table_free(&t);
    if (body == NULL)
        return srv_reply_store_error(r, STORE_ENOMEM);
    return srv_reply_json(r, 200, body);
}

int api_index_trend(struct srv_req *r)
{
    const struct srv_report_config *cfg = &r->srv->cfg.report;
    struct rpt_period p;
    struct idx_point pts[TREND_MAX];
    int64_t root = 0, count = 0;
    enum rpt_period_kind kind = RPT_MONTH;
    char err[512] = "";

    const char *k = srv_qparam(r, "kind");
    if (k != NULL && strcmp(k, "quarter") == 0)
        kind = RPT_QUARTER;
    else if (k != NULL && strcmp(k, "month") != 0)
        return srv_reply_field(r, "kind", "month or quarter");
    count = kind == RPT_MONTH ? TREND_DEFAULT_MONTHS : TREND_DEFAULT_QUARTERS;
    if (srv_qparam_int(r, "count", 1, TREND_MAX, &count) < 0)
        return srv_reply_field(r, "count", "1 to 24");
    if (scope_root(r, &root) != 0 || period_param(r, kind, &p) != 0)
        return 0;
    if (p.kind != kind)
        return srv_reply_field(r, "period",
                               kind == RPT_MONTH ? "a month (2026-11)" : "a quarter (2026Q4)");
    if (idx_trend(r->db, cfg, &p, root, (unsigned)count, srv_now(), pts, err, sizeof(err)) != 0) {
        srv_log("index trend %s: %s", p.label, err);
        return srv_reply_error(r, 500, "index", "%s", err);
    }
    json_t *points = json_array();
    for (int64_t i = 0; points != NULL && i < count; i++) {
        json_t *item = json_pack("{s:o, s:o, s:o, s:f}", "period", period_json(&pts[i].period),
                                 "components", components_json(&pts[i].c), "rates",
                                 rates_json(&pts[i].c), "index", pts[i].index);
        if (item == NULL || json_array_append_new(points, item) != 0) {
            json_decref(points);
            points = NULL;
        }
    }
    json_t *body = points == NULL ? NULL
                                  : json_pack("{s:s, s:o, s:s, s:o}", "kind",
                                              kind == RPT_MONTH ? "month" : "quarter", "agency_id",
                                              root != 0 ? json_integer(root) : json_null(),
                                              "formula", cfg->index_formula, "points", points);
    if (body == NULL)
        return srv_reply_store_error(r, STORE_ENOMEM);
    return srv_reply_json(r, 200, body);
}
