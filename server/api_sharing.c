/*
 * Sharing with the national malware monitoring system, as the dashboard
 * sees it (docs/api/sharing.md): the configuration without secrets, the
 * job's last run and the latest submissions with the receiver's answers;
 * "send now"; and each submission's signed document as it was sent.
 * report/sharing.c does the work. The submissions describe the whole
 * province, so administrators and province-wide auditors read them;
 * officers are refused.
 */
#include "api.h"
#include "jobs.h"
#include "query.h"
#include "sharing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SUBMISSIONS_DEFAULT = 20, SUBMISSIONS_MAX = 100, RESPONSE_SHOWN = 4096 };

static int may_read(struct srv_req *r)
{
    if (r->who.role == SRV_ROLE_ADMIN || (r->who.role == SRV_ROLE_AUDITOR && r->who.agency_id == 0))
        return 1;
    srv_reply_error(r, 403, "forbidden",
                    "sharing is the province's: administrators and province auditors only");
    return 0;
}

/* The receiver's answer as shown in the list: at most RESPONSE_SHOWN bytes,
 * cut at a character boundary (the stored text is valid UTF-8). */
static json_t *response_json(const char *s, int *cut)
{
    size_t n = s != NULL ? strlen(s) : 0;
    *cut = 0;
    if (n > RESPONSE_SHOWN) {
        n = RESPONSE_SHOWN;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
        *cut = 1;
    }
    return json_stringn(s != NULL ? s : "", n);
}

static const char *key_source(const struct srv_report_config *c)
{
    if (c->share_pkcs12[0] != '\0')
        return "pkcs12";
    if (c->share_pkcs11_module[0] != '\0' && c->share_pkcs11_key[0] != '\0')
        return "pkcs11";
    return "none";
}

static json_t *job_json(struct srv_req *r)
{
    struct store_stmt *st = NULL;
    json_t *j = json_null();
    if (store_queryf(r->db, &st,
                     "SELECT next_run, last_start, last_end, last_ok, failures, last_message"
                     " FROM jobs WHERE name = $1",
                     "t", SHARE_JOB_NAME) == STORE_ROW)
        j = json_pack(
            "{s:I, s:I, s:I, s:b, s:I, s:o}", "next_run", (json_int_t)store_col_int(st, 0),
            "last_start", (json_int_t)store_col_int(st, 1), "last_end",
            (json_int_t)store_col_int(st, 2), "last_ok", (int)store_col_int(st, 3), "failures",
            (json_int_t)store_col_int(st, 4), "last_message", srv_col_string(st, 5));
    store_finalize(st);
    return j;
}

int api_sharing_get(struct srv_req *r)
{
    const struct srv_report_config *c = &r->srv->cfg.report;
    struct store_stmt *st = NULL;
    json_t *items = json_array(), *item, *body;
    int64_t limit = SUBMISSIONS_DEFAULT;
    int s, cut;

    if (!may_read(r)) {
        json_decref(items);
        return 0;
    }
    if (srv_qparam_int(r, "limit", 1, SUBMISSIONS_MAX, &limit) < 0) {
        json_decref(items);
        return srv_reply_error(r, 400, "bad_request", "limit must be 1 to %d", SUBMISSIONS_MAX);
    }
    if (items == NULL)
        return srv_reply_error(r, 500, "internal", "out of memory");
    s = store_queryf(r->db, &st,
                     "SELECT id, slot, period_start, period_end, created_at, status, attempts,"
                     " next_attempt, last_attempt, accepted_at, http_status, response, error,"
                     " sha256, CASE WHEN document IS NULL THEN 0 ELSE 1 END"
                     " FROM share_submissions ORDER BY slot DESC LIMIT $1",
                     "i", limit);
    for (; s == STORE_ROW; s = store_step(st)) {
        json_t *resp = response_json(store_col_text(st, 11), &cut);
        item = json_pack(
            "{s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:o, s:b, s:o, s:o, s:b}",
            "id", (json_int_t)store_col_int(st, 0), "slot", (json_int_t)store_col_int(st, 1),
            "period_start", (json_int_t)store_col_int(st, 2), "period_end",
            (json_int_t)store_col_int(st, 3), "created_at", (json_int_t)store_col_int(st, 4),
            "status", srv_col_string(st, 5), "attempts", (json_int_t)store_col_int(st, 6),
            "next_attempt", (json_int_t)store_col_int(st, 7), "last_attempt",
            (json_int_t)store_col_int(st, 8), "accepted_at", (json_int_t)store_col_int(st, 9),
            "http_status", (json_int_t)store_col_int(st, 10), "response", resp,
            "response_truncated", cut, "error", srv_col_string(st, 12), "sha256",
            srv_col_string(st, 13), "has_document", (int)store_col_int(st, 14));
        if (item == NULL || json_array_append_new(items, item) != 0) {
            s = STORE_ENOMEM;
            break;
        }
    }
    store_finalize(st);
    if (s < 0) {
        json_decref(items);
        return srv_reply_store_error(r, s);
    }
    /* No password, PIN or key file: only which kind of key is set up. The
     * URL is shown without any user:password part it may carry. */
    const char *at = strchr(c->share_url, '@');
    body = json_pack("{s:b, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:b, s:o, s:o}", "enabled",
                     c->share_url[0] != '\0', "url",
                     at != NULL ? "(hidden: the URL holds credentials)" : c->share_url, "interval",
                     (json_int_t)c->share_interval, "retry", (json_int_t)c->share_retry,
                     "key_source", key_source(c), "org_id", c->org_id, "org_name", c->org_name,
                     "product_name", c->product_name, "reject_text", c->share_reject_text,
                     "custom_ca", c->share_ca[0] != '\0', "job", job_json(r), "submissions", items);
    return srv_reply_json(r, 200, body);
}

int api_sharing_send_now(struct srv_req *r)
{
    int64_t now = srv_now(), due = 0;

    if (r->srv->cfg.report.share_url[0] == '\0')
        return srv_reply_error(r, 409, "sharing_off",
                               "sharing is off: set share_url in the server's configuration");
    /* What failed is due at once, and the job runs at its next tick. */
    int s = store_execf(r->db, &due,
                        "UPDATE share_submissions SET next_attempt = $1"
                        " WHERE status IN ('pending', 'failed') AND next_attempt > $1",
                        "i", now);
    if (s < 0)
        return srv_reply_store_error(r, s);
    if (jobs_trigger(r->db, SHARE_JOB_NAME, now) != 0)
        return srv_reply_error(r, 500, "internal", "cannot schedule the sharing job");
    srv_audit(r, "sharing.send_now", "", json_pack("{s:I}", "made_due", (json_int_t)due));
    return srv_reply_json(r, 202,
                          json_pack("{s:b, s:I}", "triggered", 1, "made_due", (json_int_t)due));
}

int api_sharing_document(struct srv_req *r)
{
    struct store_stmt *st = NULL;
    int64_t id = srv_route_id(r);
    const void *p;
    size_t len = 0;
    char *copy = NULL, disp[96];
    int s;

    if (!may_read(r))
        return 0;
    if (id <= 0)
        return srv_reply_error(r, 404, "not_found", "no such submission");
    s = store_queryf(r->db, &st, "SELECT document FROM share_submissions WHERE id = $1", "i", id);
    if (s == STORE_ROW && (p = store_col_blob(st, 0, &len)) != NULL && len > 0 &&
        (copy = malloc(len)) != NULL)
        memcpy(copy, p, len);
    store_finalize(st);
    if (s < 0)
        return srv_reply_store_error(r, s);
    if (copy == NULL)
        return s == STORE_ROW && len > 0
                   ? srv_reply_error(r, 500, "internal", "out of memory")
                   : srv_reply_error(r, 404, "not_found", "no such submission, or not built yet");
    snprintf(disp, sizeof(disp), "attachment; filename=\"avreport-%lld.xml\"", (long long)id);
    srv_add_header(r, "Content-Disposition", disp);
    return srv_reply_bytes(r, 200, "application/xml", copy, len);
}
