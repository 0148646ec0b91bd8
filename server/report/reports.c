/*
 * One quarterly report, gathered once and rendered in each requested format,
 * with a row per file in `reports` (reports.h). The rows are written in one
 * transaction after every rendering succeeded, so the record never lists a
 * report that was not produced.
 */
#include "reports.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "khx.h"
#include "quarterly.h"

static const char *const names[RPT_NFORMATS] = {"pdf", "csv", "xlsx"};
static const char *const types[RPT_NFORMATS] = {
    "application/pdf", "text/csv; charset=utf-8",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"};

const char *rpt_format_name(int format)
{
    return format >= 0 && format < RPT_NFORMATS ? names[format] : "?";
}

const char *rpt_format_type(int format)
{
    return format >= 0 && format < RPT_NFORMATS ? types[format] : "application/octet-stream";
}

int rpt_format_parse(const char *name)
{
    for (int i = 0; i < RPT_NFORMATS; i++)
        if (name != NULL && strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

void rpt_outputs_free(struct rpt_output *out, size_t n)
{
    for (size_t i = 0; out != NULL && i < n; i++) {
        free(out[i].data);
        out[i].data = NULL;
    }
}

typedef int (*render_fn)(const struct rpt_quarter *, uint8_t **, size_t *, char *, size_t);

int rpt_produce_quarterly(struct store_db *db, const struct srv_report_config *cfg,
                          const struct rpt_period *q, int64_t agency_id, unsigned formats,
                          int64_t user_id, const char *who, int64_t now,
                          struct rpt_output out[RPT_NFORMATS], size_t *nout, char *err,
                          size_t errlen)
{
    static const render_fn render[RPT_NFORMATS] = {rpt_render_pdf, rpt_render_csv, rpt_render_xlsx};
    struct rpt_quarter *data = NULL;
    size_t n = 0;
    int r = -1, in_tx = 0;

    *nout = 0;
    if (rpt_quarter_gather(db, cfg, q, agency_id, now, &data, err, errlen) != 0)
        goto out;
    snprintf(data->generated_by, sizeof(data->generated_by), "%s", who);
    for (int f = 0; f < RPT_NFORMATS; f++) {
        if (!(formats & (1u << f)))
            continue;
        memset(&out[n], 0, sizeof(out[n]));
        out[n].format = f;
        if (render[f](data, &out[n].data, &out[n].len, err, errlen) != 0)
            goto out;
        uint8_t digest[32];
        khx_sha256(out[n].data, out[n].len, digest);
        khx_hex_encode(digest, sizeof(digest), out[n].sha256);
        n++;
    }
    if (store_begin_write(db) != 0) {
        khx_errf(err, errlen, "database: %s", store_errmsg(db));
        goto out;
    }
    in_tx = 1;
    for (size_t i = 0; i < n; i++) {
        struct store_stmt *st = NULL;
        int s =
            store_prepare(db,
                          "INSERT INTO reports (kind, period, agency_id, format, size, sha256,"
                          " content, created_by, created_by_name, created_at)"
                          " VALUES ('quarterly', $1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                          &st);
        if (s == 0) {
            store_bind_text(st, 1, q->label);
            if (agency_id != 0)
                store_bind_int(st, 2, agency_id);
            else
                store_bind_null(st, 2);
            store_bind_text(st, 3, names[out[i].format]);
            store_bind_int(st, 4, (int64_t)out[i].len);
            store_bind_text(st, 5, out[i].sha256);
            store_bind_blob(st, 6, out[i].data, out[i].len);
            if (user_id != 0)
                store_bind_int(st, 7, user_id);
            else
                store_bind_null(st, 7);
            store_bind_text(st, 8, who);
            store_bind_int(st, 9, now);
            s = store_step(st);
            if (s == STORE_ROW)
                out[i].id = store_col_int(st, 0);
            while (s == STORE_ROW)
                s = store_step(st);
        }
        store_finalize(st);
        if (s < 0) {
            khx_errf(err, errlen, "recording the report: %s", store_errmsg(db));
            goto out;
        }
    }
    if (store_commit(db) != 0) {
        khx_errf(err, errlen, "recording the report: %s", store_errmsg(db));
        goto out;
    }
    in_tx = 0;
    *nout = n;
    n = 0;
    r = 0;
out:
    if (in_tx)
        store_rollback(db);
    rpt_outputs_free(out, n);
    rpt_quarter_free(data);
    return r;
}
