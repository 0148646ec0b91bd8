/*
 * Reports in the dashboard API (docs/api/reports.md): produce the quarterly
 * report for the Ministry (the dashboard's button), list the reports
 * produced with who made them and their checksums, download one, and the
 * deadline of the current quarter for the dashboard's reminder.
 *
 * Scope: a province-wide report is made and seen by administrators and
 * auditors of the whole province; an officer makes and sees the reports of
 * its own agency and those below it. Producing runs in the request (a
 * province of 500 agencies takes a few seconds, docs/PERFORMANCE.md) and
 * every file produced is recorded by report/reports.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "khx.h"
#include "period.h"
#include "query.h"
#include "reports.h"

enum { REPORTS_LIMIT_MAX = 200 };

/* The scope of a new report: the body's agency, or the officer's own. */
static int report_scope(struct srv_req *r, json_t *body, int64_t *agency)
{
    int64_t id = 0;
    int has = srv_json_int(r, body, "agency", 1, 0, INT64_MAX, &id);
    if (has < 0)
        return -1;
    if (id == 0)
        id = r->who.agency_id;
    if (id == 0 && r->who.agency_id != 0) {
        srv_reply_error(r, 403, "forbidden", "a province-wide report needs province scope");
        return -1;
    }
    if (id != 0 && !srv_agency_in_scope(r, id)) {
        srv_reply_error(r, 404, "not_found", "no agency %" PRId64 " in your scope", id);
        return -1;
    }
    *agency = id;
    return 0;
}

static int formats_of(struct srv_req *r, json_t *body, unsigned *out)
{
    json_t *list = json_object_get(body, "formats"), *v;
    size_t i;
    if (list == NULL || json_is_null(list)) {
        *out = (1u << RPT_NFORMATS) - 1;
        return 0;
    }
    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > 8)
        return srv_reply_field(r, "formats", "must be a list of \"pdf\", \"csv\", \"xlsx\""), -1;
    *out = 0;
    json_array_foreach(list, i, v)
    {
        int f = rpt_format_parse(json_string_value(v));
        if (f < 0)
            return srv_reply_field(r, "formats", "must be a list of \"pdf\", \"csv\", \"xlsx\""),
                   -1;
        *out |= 1u << f;
    }
    return 0;
}

int api_reports_create(struct srv_req *r)
{
    struct rpt_output outs[RPT_NFORMATS];
    size_t nout = 0;
    json_t *body = srv_body_json(r), *items = NULL;
    const char *period = NULL;
    int64_t agency = 0;
    unsigned formats = 0;
    char err[512];
    struct rpt_period q;

    if (body == NULL)
        return 0;
    if (srv_json_str(r, body, "period", 1, 16, &period) < 0 ||
        report_scope(r, body, &agency) != 0 || formats_of(r, body, &formats) != 0)
        goto done;
    if (rpt_period_parse(period, r->srv->cfg.report.utc_offset, &q) != 0 || q.kind != RPT_QUARTER) {
        srv_reply_field(r, "period", "must be a quarter such as 2026Q4");
        goto done;
    }
    if (rpt_produce_quarterly(r->db, &r->srv->cfg.report, &q, agency, formats, r->who.user_id,
                              r->who.username, srv_now(), outs, &nout, err, sizeof(err)) != 0) {
        srv_log("report %s: %s", q.label, err);
        srv_reply_error(r, 500, "report", "the report could not be produced: %s", err);
        goto done;
    }
    items = json_array();
    for (size_t i = 0; items != NULL && i < nout; i++) {
        char url[96];
        snprintf(url, sizeof(url), "/api/v1/reports/%" PRId64 "/file", outs[i].id);
        json_array_append_new(
            items, json_pack("{s:I, s:s, s:I, s:s, s:s}", "id", (json_int_t)outs[i].id, "format",
                             rpt_format_name(outs[i].format), "size", (json_int_t)outs[i].len,
                             "sha256", outs[i].sha256, "url", url));
    }
    srv_audit(r, "report.create", q.label,
              json_pack("{s:s, s:I, s:O}", "kind", "quarterly", "agency", (json_int_t)agency,
                        "files", items ? items : json_null()));
    srv_reply_json(
        r, 201,
        json_pack("{s:s, s:o}", "period", q.label, "reports", items ? items : json_array()));
    items = NULL;
done:
    rpt_outputs_free(outs, nout);
    json_decref(items);
    json_decref(body);
    return 0;
}

int api_reports_list(struct srv_req *r)
{
    int64_t limit = 50, offset = 0, total = 0;
    const char *period = srv_query(r, "period");
    struct store_stmt *st = NULL;
    json_t *items = json_array();
    int s;

    srv_paging(r, &limit, &offset);
    if (limit > REPORTS_LIMIT_MAX)
        limit = REPORTS_LIMIT_MAX;
    if (period == NULL)
        period = "";
    /* Province-wide reports (agency_id NULL) only for province scope. */
    const char *where = " FROM reports p LEFT JOIN agencies a ON a.id = p.agency_id"
                        " WHERE ($1 = '%' OR a.path LIKE $1) AND ($2 = '' OR p.period = $2)";
    char sql[768];
    snprintf(sql, sizeof(sql), "SELECT count(*)%s", where);
    s = store_query_int(r->db, &total, sql, "tt", r->who.scope_path, period);
    if (s < 0)
        goto fail;
    snprintf(sql, sizeof(sql),
             "SELECT p.id, p.kind, p.period, p.agency_id, a.code, a.name, p.format, p.size,"
             " p.sha256, p.created_by_name, p.created_at%s ORDER BY p.id DESC LIMIT $3 OFFSET $4",
             where);
    s = store_queryf(r->db, &st, sql, "ttii", r->who.scope_path, period, limit, offset);
    for (; s == STORE_ROW; s = store_step(st)) {
        json_t *item =
            json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:I}", "id",
                      (json_int_t)store_col_int(st, 0), "kind", srv_col_string(st, 1), "period",
                      srv_col_string(st, 2), "agency_id", srv_col_intn(st, 3), "agency_code",
                      srv_col_string(st, 4), "agency_name", srv_col_string(st, 5), "format",
                      srv_col_string(st, 6), "size", (json_int_t)store_col_int(st, 7), "sha256",
                      srv_col_string(st, 8), "created_by", srv_col_string(st, 9), "created_at",
                      (json_int_t)store_col_int(st, 10));
        if (item == NULL || json_array_append_new(items, item) != 0) {
            s = STORE_ENOMEM;
            break;
        }
    }
    store_finalize(st);
    if (s < 0)
        goto fail;
    return srv_reply_json(r, 200, srv_page_json(items, total, limit, offset));
fail:
    json_decref(items);
    return srv_reply_store_error(r, s);
}

int api_reports_file(struct srv_req *r)
{
    char *end;
    int64_t id = strtoll(r->params[0], &end, 10);
    struct store_stmt *st = NULL;
    if (*end != '\0' || id <= 0)
        return srv_reply_error(r, 404, "not_found", "no report %s", r->params[0]);
    int s = store_queryf(r->db, &st,
                         "SELECT p.format, p.period, a.code, p.content FROM reports p"
                         " LEFT JOIN agencies a ON a.id = p.agency_id"
                         " WHERE p.id = $1 AND ($2 = '%' OR a.path LIKE $2)",
                         "it", id, r->who.scope_path);
    if (s < 0)
        return srv_reply_store_error(r, s);
    if (s != STORE_ROW)
        return srv_reply_error(r, 404, "not_found", "no report %" PRId64 " in your scope", id);
    int f = rpt_format_parse(store_col_text(st, 0));
    size_t len = 0;
    const void *data = store_col_blob(st, 3, &len);
    char *copy = malloc(len ? len : 1);
    char disp[200], name[120];
    const char *code = store_col_text(st, 2);
    snprintf(name, sizeof(name), "khien-report-%s%s%s.%s", store_col_text(st, 1), code ? "-" : "",
             code ? code : "", rpt_format_name(f));
    /* The name is rebuilt from the database: keep only characters that are
     * safe inside a quoted header value. */
    for (char *c = name; *c != '\0'; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '_';
    snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", name);
    if (copy != NULL && len > 0)
        memcpy(copy, data, len);
    store_finalize(st);
    if (copy == NULL)
        return srv_reply_error(r, 500, "oom", "out of memory");
    srv_reply_bytes(r, 200, rpt_format_type(f), copy, len);
    srv_add_header(r, "Content-Disposition", disp);
    return 0;
}

/* The quarter now, when its report is due and whether one for the caller's
 * scope was produced: the dashboard shows a reminder from reminder_day of
 * the quarter's last month until a report exists. */
int api_reports_deadline(struct srv_req *r)
{
    const struct srv_report_config *cfg = &r->srv->cfg.report;
    int64_t now = srv_now(), made = 0;
    struct rpt_period q;
    rpt_period_at(now, RPT_QUARTER, cfg->utc_offset, &q);
    int64_t deadline = rpt_quarter_deadline(&q, cfg->deadline_day, cfg->utc_offset);
    int64_t remind = rpt_quarter_reminder(&q, cfg->reminder_day, cfg->utc_offset);
    int s;
    if (r->who.agency_id == 0)
        s = store_query_int(r->db, &made,
                            "SELECT count(*) FROM reports WHERE kind = 'quarterly' AND period = $1"
                            " AND agency_id IS NULL",
                            "t", q.label);
    else
        s = store_query_int(r->db, &made,
                            "SELECT count(*) FROM reports WHERE kind = 'quarterly' AND period = $1"
                            " AND agency_id = $2",
                            "ti", q.label, r->who.agency_id);
    if (s < 0)
        return srv_reply_store_error(r, s);
    int64_t left = deadline - now;
    return srv_reply_json(
        r, 200,
        json_pack("{s:s, s:I, s:I, s:b, s:b, s:b, s:I}", "quarter", q.label, "deadline",
                  (json_int_t)deadline, "remind_from", (json_int_t)remind, "remind",
                  now >= remind && made == 0, "overdue", now >= deadline && made == 0, "produced",
                  made > 0, "days_left", (json_int_t)(left > 0 ? (left + 86399) / 86400 : 0)));
}
