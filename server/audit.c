/*
 * The audit log and the scope check that every handler shares.
 *
 * srv_audit() appends one row per state change (and per login attempt): when,
 * who (a user, or "machine:ID" for an agent), from which address, what, on
 * which target, and a small JSON document of details. Writing the audit row
 * must never turn a successful change into a failed request, so errors are
 * logged and swallowed. The row is written on the request's connection: when
 * the handler has a transaction open, the row commits or rolls back with the
 * change it describes.
 *
 * api_audit_list() (GET /audit, declared with api_auth.c's handlers) reads
 * it back: paged, newest first, searchable. Administrators and auditors see
 * every row; officers see the rows they wrote themselves, because deciding
 * which other rows concern their subtree would need a target-to-agency
 * mapping the log does not keep.
 *
 * srv_agency_in_scope() answers "may this caller see agency N": the agency's
 * materialized path must match the caller's scope pattern ("/1/4/%" for an
 * officer of agency 4 under 1, "%" for the whole province).
 */
#include "api.h"
#include "query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Details are meant to be a few fields; a larger document is replaced by a
 * note so that a handler bug cannot fill the table with megabytes per row. */
#define AUDIT_DETAIL_MAX 8192

void srv_audit(struct srv_req *r, const char *action, const char *target, json_t *detail)
{
    static const char sql[] =
        "INSERT INTO audit (at, user_id, username, remote, action, target, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)";
    struct store_stmt *st = NULL;
    char who[80];
    char *text = NULL;
    int s;

    if (r->who.machine_id[0] != '\0')
        snprintf(who, sizeof(who), "machine:%s", r->who.machine_id);
    else
        snprintf(who, sizeof(who), "%s", r->who.username);
    if (target == NULL)
        target = "";
    if (detail != NULL)
        text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
    if (text != NULL && strlen(text) > AUDIT_DETAIL_MAX) {
        free(text);
        text = strdup("{\"truncated\":true}");
    }
    if (r->db == NULL) {
        srv_log("audit: no database for %s %s by %s", action, target, who);
        goto out;
    }
    if ((s = store_prepare(r->db, sql, &st)) != 0)
        goto fail;
    if ((s = store_bind_int(st, 1, srv_now())) != 0 ||
        (s = r->who.user_id > 0 ? store_bind_int(st, 2, r->who.user_id) : store_bind_null(st, 2)) !=
            0 ||
        (s = store_bind_text(st, 3, who)) != 0 || (s = store_bind_text(st, 4, r->remote)) != 0 ||
        (s = store_bind_text(st, 5, action)) != 0 || (s = store_bind_text(st, 6, target)) != 0 ||
        (s = store_bind_text(st, 7, text ? text : "{}")) != 0)
        goto fail;
    if ((s = store_step(st)) < 0)
        goto fail;
    goto out;
fail:
    srv_log("audit: cannot record %s %s by %s: %s", action, target, who, store_errmsg(r->db));
out:
    store_finalize(st);
    free(text);
    json_decref(detail);
}

int srv_agency_in_scope(struct srv_req *r, int64_t agency_id)
{
    int64_t one = 0;
    int s;

    if (agency_id <= 0 || r->db == NULL || r->who.scope_path[0] == '\0')
        return 0;
    s = store_query_int(r->db, &one, "SELECT 1 FROM agencies WHERE id = $1 AND path LIKE $2", "it",
                        agency_id, r->who.scope_path);
    if (s < 0)
        srv_log("scope: agency %lld: %s", (long long)agency_id, store_errmsg(r->db));
    return s == STORE_ROW;
}

/* ------------------------------------------------------------------------ */
/* GET /audit                                                                */
/* ------------------------------------------------------------------------ */

static json_t *audit_item(struct store_stmt *st)
{
    return json_pack("{s:I, s:I, s:o, s:o, s:o, s:o, s:o}", "id", (json_int_t)store_col_int(st, 0),
                     "at", (json_int_t)store_col_int(st, 1), "username", srv_col_string(st, 2),
                     "remote", srv_col_string(st, 3), "action", srv_col_string(st, 4), "target",
                     srv_col_string(st, 5), "detail", srv_col_json(st, 6, "{}"));
}

/* Appends the WHERE clause for the request's filters to `q`. Returns 0, or
 * replies 400 and returns -1. */
static int audit_where(struct srv_req *r, struct srv_sql *q)
{
    const char *text = srv_qparam(r, "q"), *action = srv_qparam(r, "action");
    char like[2 * SRV_SEARCH_MAX + 4];
    int64_t from = 0, to = 0;
    int has_from, has_to, n;

    if ((has_from = srv_qparam_int(r, "from", 0, INT64_MAX, &from)) < 0) {
        srv_reply_field(r, "from", "must be a Unix time");
        return -1;
    }
    if ((has_to = srv_qparam_int(r, "to", 0, INT64_MAX, &to)) < 0) {
        srv_reply_field(r, "to", "must be a Unix time");
        return -1;
    }
    if (action != NULL && strlen(action) > SRV_SEARCH_MAX) {
        srv_reply_field(r, "action", "at most 200 bytes");
        return -1;
    }
    if (text != NULL &&
        (strlen(text) > SRV_SEARCH_MAX || srv_like_pattern(text, 0, like, sizeof(like)) != 0)) {
        srv_reply_field(r, "q", "at most 200 bytes");
        return -1;
    }
    srv_sql_add(q, " WHERE 1 = 1");
    if (r->who.role == SRV_ROLE_OFFICER) {
        srv_sql_add(q, " AND user_id = ");
        srv_sql_int(q, r->who.user_id);
    }
    if (text != NULL) {
        srv_sql_add(q, " AND (lower(username) LIKE lower(");
        n = srv_sql_text(q, like);
        srv_sql_add(q, ") ESCAPE '\\' OR lower(action) LIKE lower(");
        srv_sql_ref(q, n);
        srv_sql_add(q, ") ESCAPE '\\' OR lower(target) LIKE lower(");
        srv_sql_ref(q, n);
        srv_sql_add(q, ") ESCAPE '\\')");
    }
    if (action != NULL) {
        srv_sql_add(q, " AND action = ");
        srv_sql_text(q, action);
    }
    if (has_from) {
        srv_sql_add(q, " AND at >= ");
        srv_sql_int(q, from);
    }
    if (has_to) {
        srv_sql_add(q, " AND at <= ");
        srv_sql_int(q, to);
    }
    return 0;
}

int api_audit_list(struct srv_req *r)
{
    struct srv_sql q;
    struct store_stmt *st = NULL;
    json_t *items = NULL;
    int64_t limit, offset, total = 0;
    int s = 0;

    srv_sql_init(&q);
    srv_paging(r, &limit, &offset);
    srv_sql_add(&q, "SELECT COUNT(*) FROM audit");
    if (audit_where(r, &q) != 0)
        goto out;
    if ((s = srv_sql_prepare(r->db, &q, &st)) < 0 || (s = store_step(st)) < 0)
        goto out;
    total = s == STORE_ROW ? store_col_int(st, 0) : 0;
    store_finalize(st);
    st = NULL;
    srv_sql_clear(&q);

    srv_sql_add(&q, "SELECT id, at, username, remote, action, target, detail FROM audit");
    if (audit_where(r, &q) != 0)
        goto out;
    srv_sql_add(&q, " ORDER BY at DESC, id DESC LIMIT ");
    srv_sql_int(&q, limit);
    srv_sql_add(&q, " OFFSET ");
    srv_sql_int(&q, offset);
    if ((s = srv_sql_prepare(r->db, &q, &st)) < 0)
        goto out;
    if ((items = json_array()) == NULL) {
        s = STORE_ENOMEM;
        goto out;
    }
    while ((s = store_step(st)) == STORE_ROW)
        json_array_append_new(items, audit_item(st));
    if (s >= 0) {
        srv_reply_json(r, 200, srv_page_json(items, total, limit, offset));
        items = NULL;
    }
out:
    if (s < 0)
        srv_reply_store_error(r, s);
    json_decref(items);
    store_finalize(st);
    srv_sql_clear(&q);
    return 0;
}
