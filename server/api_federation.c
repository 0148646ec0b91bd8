/*
 * The parent side of federation (docs/api/federation.md): administrators
 * register the provinces allowed to push (each gets a secret token, shown
 * once, kept as SHA-256 like API and enrollment tokens), provinces push
 * their aggregated statistics with that token, and administrators and
 * auditors of the whole parent see every province side by side.
 *
 * The push route is public at the router and checks its own credential: a
 * Bearer "khf_" token. Failures count against the caller's address in the
 * shared login_attempts table, as sign-ins do, so tokens cannot be guessed
 * at speed. The document is checked by fed_doc_validate() before anything
 * is stored; a province can only push under its own code.
 */
#include "api.h"
#include "auth.h"
#include "federation.h"
#include "khx.h"
#include "query.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#define PUSH_IP_LIMIT 20 /* failed pushes from one address in 15 minutes before it is locked */
#define STALE_PUSHES  3  /* a province is stale after this many missed intervals */
#define TREND_POINTS  6  /* periods of the trend shown per province */
#define CHILDREN_MAX  1000

/* ------------------------------------------------------------------------ */
/* Helpers.                                                                  */
/* ------------------------------------------------------------------------ */

static int stale(int64_t now, int64_t last_push_at, int64_t interval)
{
    if (interval < 60)
        interval = 60;
    return last_push_at == 0 || now - last_push_at > STALE_PUSHES * interval;
}

/* Only administrators and auditors of the whole server read the provinces:
 * an agency's officer has nothing to do with other provinces. */
static int province_wide_reader(struct srv_req *r)
{
    return r->who.agency_id == 0 &&
           (r->who.role == SRV_ROLE_ADMIN || r->who.role == SRV_ROLE_AUDITOR);
}

/* ------------------------------------------------------------------------ */
/* POST, GET /federation/children; DELETE /federation/children/{id}          */
/* ------------------------------------------------------------------------ */

int api_federation_children_create(struct srv_req *r)
{
    json_t *body = NULL, *reply = NULL;
    const char *code = NULL, *name = NULL;
    char token[80], hash[65], prefix[13], target[48];
    int64_t id = 0, now = srv_now();
    int s;

    token[0] = '\0';
    body = srv_body_json(r);
    if (body == NULL)
        return 0;
    if (srv_json_str(r, body, "code", 1, FED_CODE_MAX, &code) < 0 ||
        srv_json_str(r, body, "name", 1, FED_NAME_MAX, &name) < 0)
        goto out;
    if (!fed_code_valid(code)) {
        srv_reply_field(r, "code", "must be letters, digits, '.', '_' or '-'");
        goto out;
    }
    if (!fed_name_valid(name)) {
        srv_reply_field(r, "name", "must not contain '/', '\\', '@' or control characters");
        goto out;
    }
    srv_random_token(FED_TOKEN_PREFIX, token, sizeof(token));
    srv_sha256_hex(token, hash);
    snprintf(prefix, sizeof(prefix), "%.12s", token);
    s = store_query_int(r->db, &id,
                        "INSERT INTO federation_children (code, name, token_hash, prefix,"
                        " created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        "ttttii", code, name, hash, prefix, r->who.user_id, now);
    if (s == STORE_ECONFLICT) {
        srv_reply_error(r, 409, "conflict", "a province with code %s already exists", code);
        goto out;
    }
    if (s < 0) {
        srv_reply_store_error(r, s);
        goto out;
    }
    reply = json_pack("{s:I, s:s, s:s, s:s, s:s, s:I}", "id", (json_int_t)id, "code", code, "name",
                      name, "token", token, "prefix", prefix, "created_at", (json_int_t)now);
    snprintf(target, sizeof(target), "federation_child:%" PRId64, id);
    srv_audit(r, "federation.child.create", target,
              json_pack("{s:s, s:s, s:s}", "code", code, "name", name, "prefix", prefix));
    srv_reply_json(r, 201, reply);
    reply = NULL;
out:
    /* The token left only in the reply; wipe our copy. */
    sodium_memzero(token, sizeof(token));
    json_decref(reply);
    json_decref(body);
    return 0;
}

int api_federation_children_list(struct srv_req *r)
{
    struct store_stmt *st = NULL;
    json_t *items = json_array();
    int64_t now = srv_now();
    int s;

    if (items == NULL)
        return srv_reply_error(r, 500, "internal", "out of memory");
    s = store_queryf(r->db, &st,
                     "SELECT id, code, name, prefix, created_at, revoked, push_interval,"
                     " last_push_at, last_push_from FROM federation_children"
                     " ORDER BY revoked, name, id LIMIT $1",
                     "i", (int64_t)CHILDREN_MAX);
    for (; s == STORE_ROW; s = store_step(st)) {
        int64_t last = store_col_int(st, 7);
        json_t *it = json_pack(
            "{s:I, s:o, s:o, s:o, s:I, s:b, s:I, s:I, s:o, s:b}", "id",
            (json_int_t)store_col_int(st, 0), "code", srv_col_string(st, 1), "name",
            srv_col_string(st, 2), "prefix", srv_col_string(st, 3), "created_at",
            (json_int_t)store_col_int(st, 4), "revoked", (int)store_col_int(st, 5), "push_interval",
            (json_int_t)store_col_int(st, 6), "last_push_at", (json_int_t)last, "last_push_from",
            srv_col_string(st, 8), "stale", stale(now, last, store_col_int(st, 6)));
        if (json_array_append_new(items, it) != 0) {
            s = STORE_ENOMEM;
            break;
        }
    }
    store_finalize(st);
    if (s < 0) {
        json_decref(items);
        return srv_reply_store_error(r, s);
    }
    return srv_reply_json(r, 200, json_pack("{s:o}", "items", items));
}

int api_federation_children_revoke(struct srv_req *r)
{
    int64_t id = srv_route_id(r), changes = 0;
    char target[48];
    int s;

    if (id <= 0)
        return srv_reply_error(r, 404, "not_found", "no such province");
    s = store_execf(r->db, &changes, "UPDATE federation_children SET revoked = 1 WHERE id = $1",
                    "i", id);
    if (s < 0)
        return srv_reply_store_error(r, s);
    if (changes == 0)
        return srv_reply_error(r, 404, "not_found", "no such province");
    snprintf(target, sizeof(target), "federation_child:%" PRId64, id);
    srv_audit(r, "federation.child.revoke", target, NULL);
    return srv_reply_status(r, 204);
}

/* ------------------------------------------------------------------------ */
/* POST /federation/push                                                     */
/* ------------------------------------------------------------------------ */

/* Replies 401 and counts the failure. */
static int push_refuse(struct srv_req *r, const char *key, int64_t now, const char *message)
{
    int s = srv_attempt_failed(r->db, key, PUSH_IP_LIMIT, now);

    if (s < 0)
        return srv_reply_store_error(r, s);
    return srv_reply_error(r, 401, "unauthorized", "%s", message);
}

static int token_shape_ok(const char *tok)
{
    size_t plen = strlen(FED_TOKEN_PREFIX);

    if (strncmp(tok, FED_TOKEN_PREFIX, plen) != 0 || strlen(tok) != plen + 64)
        return 0;
    for (const char *p = tok + plen; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

/* The summary kept beside each stored period, so lists and trends need not
 * parse whole documents. */
static json_t *period_summary(json_t *period)
{
    return json_pack("{s:O, s:O, s:I}", "totals", json_object_get(period, "totals"), "index",
                     json_object_get(period, "index"), "agencies",
                     (json_int_t)json_array_size(json_object_get(period, "agencies")));
}

static int store_push(struct srv_req *r, int64_t child_id, json_t *doc, int64_t now)
{
    static const char upsert[] =
        "INSERT INTO federation_stats (child_id, period, kind, period_start, received_at,"
        " summary, document) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (child_id, period) DO UPDATE SET kind = excluded.kind,"
        " period_start = excluded.period_start, received_at = excluded.received_at,"
        " summary = excluded.summary, document = excluded.document";
    json_t *periods = json_object_get(doc, "periods"), *p;
    size_t i;
    int s = store_begin_write(r->db);

    json_array_foreach(periods, i, p)
    {
        json_t *sum = period_summary(p);
        char *sum_text = sum ? json_dumps(sum, JSON_COMPACT) : NULL;
        char *doc_text = json_dumps(p, JSON_COMPACT);
        if (s >= 0 && (sum_text == NULL || doc_text == NULL))
            s = STORE_ENOMEM;
        if (s >= 0)
            s = store_execf(r->db, NULL, upsert, "ittiitt", child_id,
                            json_string_value(json_object_get(p, "period")),
                            json_string_value(json_object_get(p, "kind")),
                            (int64_t)json_integer_value(json_object_get(p, "start")), now, sum_text,
                            doc_text);
        free(sum_text);
        free(doc_text);
        json_decref(sum);
    }
    if (s >= 0)
        s = store_execf(r->db, NULL,
                        "UPDATE federation_children SET last_push_at = $1, last_push_from = $2,"
                        " push_interval = $3 WHERE id = $4",
                        "itii", now, r->remote,
                        (int64_t)json_integer_value(json_object_get(doc, "interval")), child_id);
    if (s >= 0)
        s = store_commit(r->db);
    if (s < 0)
        store_rollback(r->db);
    return s < 0 ? s : 0;
}

int api_federation_push(struct srv_req *r)
{
    struct store_stmt *st = NULL;
    json_t *doc = NULL;
    const char *authz;
    char key[96], hash[65], code[FED_CODE_MAX + 1], err[300];
    int64_t now = srv_now(), wait = 0, child_id = 0;
    int s;

    snprintf(key, sizeof(key), "fedpush:%s", r->remote);
    if ((wait = srv_attempt_locked_for(r->db, key, now)) < 0)
        return srv_reply_store_error(r, (int)wait);
    if (wait > 0) {
        char secs[24];
        snprintf(secs, sizeof(secs), "%" PRId64, wait);
        srv_reply_error(r, 429, "rate_limited",
                        "too many refused pushes; try again in %" PRId64 " minutes",
                        (wait + 59) / 60);
        srv_add_header(r, "Retry-After", secs);
        return 0;
    }
    authz = srv_header(r, "Authorization");
    if (authz == NULL || strncasecmp(authz, "Bearer ", 7) != 0)
        return push_refuse(r, key, now, "a push needs \"Authorization: Bearer khf_...\"");
    authz += 7;
    while (*authz == ' ')
        authz++;
    if (!token_shape_ok(authz))
        return push_refuse(r, key, now, "malformed federation token");
    /* Only the SHA-256 is looked up, so the comparison learns nothing of
     * the token from timing. */
    srv_sha256_hex(authz, hash);
    s = store_queryf(r->db, &st,
                     "SELECT id, code FROM federation_children WHERE token_hash = $1"
                     " AND revoked = 0",
                     "t", hash);
    if (s < 0)
        return srv_reply_store_error(r, s);
    if (s != STORE_ROW)
        return push_refuse(r, key, now, "unknown or revoked federation token");
    child_id = store_col_int(st, 0);
    snprintf(code, sizeof(code), "%s", store_col_text(st, 1) ? store_col_text(st, 1) : "");
    store_finalize(st);

    if (r->body_len > FED_DOC_MAX)
        return srv_reply_error(r, 413, "too_large", "a federation document is at most %u bytes",
                               FED_DOC_MAX);
    if (fed_doc_validate((const char *)r->body, r->body_len, &doc, err, sizeof(err)) != 0)
        return srv_reply_error(r, 400, "document", "%s", err);
    if (strcmp(json_string_value(json_object_get(json_object_get(doc, "province"), "code")),
               code) != 0) {
        json_decref(doc);
        return srv_reply_error(r, 403, "forbidden",
                               "province.code: this token belongs to province %s", code);
    }
    s = store_push(r, child_id, doc, now);
    if (s < 0) {
        json_decref(doc);
        return srv_reply_store_error(r, s);
    }
    s = (int)json_array_size(json_object_get(doc, "periods"));
    json_decref(doc);
    return srv_reply_json(r, 200,
                          json_pack("{s:i, s:I}", "accepted", s, "received_at", (json_int_t)now));
}

/* ------------------------------------------------------------------------ */
/* GET /federation/provinces?period=                                         */
/* ------------------------------------------------------------------------ */

/* Totals, rates and index of one stored summary. */
static json_t *figures_json(const char *summary_text, int64_t received_at)
{
    json_t *sum = json_loads(summary_text ? summary_text : "", 0, NULL), *out = NULL;
    struct idx_components c;
    struct idx_rates rt;

    if (sum == NULL || fed_components_from_json(json_object_get(sum, "totals"), &c) != 0)
        goto out;
    idx_rates_of(&c, &rt);
    out = json_pack("{s:O, s:{s:f, s:f, s:f, s:f}, s:O, s:O, s:I}", "totals",
                    json_object_get(sum, "totals"), "rates", "infected_rate", rt.infected_rate,
                    "stale_rate", rt.stale_rate, "coverage", rt.coverage, "sharing_uptime",
                    rt.sharing_uptime, "index", json_object_get(sum, "index"), "agencies",
                    json_object_get(sum, "agencies"), "received_at", (json_int_t)received_at);
out:
    json_decref(sum);
    return out;
}

static int province_trend(struct srv_req *r, int64_t child_id, const struct rpt_period *p,
                          json_t **out)
{
    struct store_stmt *st = NULL;
    json_t *trend = json_array();
    int s;

    if (trend == NULL)
        return STORE_ENOMEM;
    s = store_queryf(r->db, &st,
                     "SELECT period, summary, received_at FROM federation_stats"
                     " WHERE child_id = $1 AND kind = $2 AND period_start <= $3"
                     " ORDER BY period_start DESC LIMIT $4",
                     "itii", child_id, p->kind == RPT_QUARTER ? "quarter" : "month",
                     p->start + 86400, (int64_t)TREND_POINTS);
    for (; s == STORE_ROW; s = store_step(st)) {
        json_t *f = figures_json(store_col_text(st, 1), store_col_int(st, 2));
        if (f == NULL)
            continue;
        json_t *pt = json_pack("{s:o, s:O, s:O}", "period", srv_col_string(st, 0), "index",
                               json_object_get(f, "index"), "infected_rate",
                               json_object_get(json_object_get(f, "rates"), "infected_rate"));
        json_decref(f);
        /* Newest first from the query; the trend reads oldest first. */
        if (json_array_insert_new(trend, 0, pt) != 0) {
            s = STORE_ENOMEM;
            break;
        }
    }
    store_finalize(st);
    if (s < 0) {
        json_decref(trend);
        return s;
    }
    *out = trend;
    return 0;
}

static int province_json(struct srv_req *r, struct store_stmt *row, const struct rpt_period *p,
                         int64_t now, json_t **out)
{
    struct store_stmt *st = NULL;
    int64_t id = store_col_int(row, 0), last = store_col_int(row, 3),
            interval = store_col_int(row, 4);
    json_t *fig = json_null(), *trend = NULL, *o;
    int s;

    s = store_queryf(r->db, &st,
                     "SELECT summary, received_at FROM federation_stats"
                     " WHERE child_id = $1 AND period = $2",
                     "it", id, p->label);
    if (s == STORE_ROW) {
        json_t *f = figures_json(store_col_text(st, 0), store_col_int(st, 1));
        if (f != NULL) {
            json_decref(fig);
            fig = f;
        }
    }
    store_finalize(st);
    if (s < 0 || (s = province_trend(r, id, p, &trend)) < 0) {
        json_decref(fig);
        return s;
    }
    o = json_pack("{s:I, s:o, s:o, s:I, s:I, s:b, s:o, s:o}", "id", (json_int_t)id, "code",
                  srv_col_string(row, 1), "name", srv_col_string(row, 2), "last_push_at",
                  (json_int_t)last, "push_interval", (json_int_t)interval, "stale",
                  stale(now, last, interval), "figures", fig, "trend", trend);
    if (o == NULL)
        return STORE_ENOMEM;
    *out = o;
    return 0;
}

int api_federation_provinces(struct srv_req *r)
{
    struct store_stmt *st = NULL;
    struct rpt_period p;
    const char *label = srv_query(r, "period");
    int off = r->srv ? r->srv->cfg.report.utc_offset : 7 * 3600;
    int64_t now = srv_now();
    json_t *items = NULL, *sum = NULL;
    struct idx_components all;
    int s;

    if (!province_wide_reader(r))
        return srv_reply_error(
            r, 403, "forbidden",
            "only administrators and auditors of the whole server see provinces");
    if (label == NULL || label[0] == '\0')
        rpt_period_at(now, RPT_QUARTER, off, &p);
    else if (rpt_period_parse(label, off, &p) != 0)
        return srv_reply_field(r, "period",
                               "must be a month like 2026-11 or a quarter like 2026Q4");
    memset(&all, 0, sizeof(all));
    items = json_array();
    if (items == NULL)
        return srv_reply_error(r, 500, "internal", "out of memory");
    s = store_queryf(r->db, &st,
                     "SELECT id, code, name, last_push_at, push_interval FROM federation_children"
                     " WHERE revoked = 0 ORDER BY name, id LIMIT $1",
                     "i", (int64_t)CHILDREN_MAX);
    for (; s == STORE_ROW; s = store_step(st)) {
        json_t *one = NULL;
        struct idx_components c;
        if ((s = province_json(r, st, &p, now, &one)) < 0)
            break;
        /* The side-by-side table ends with all provinces added up. */
        if (fed_components_from_json(json_object_get(json_object_get(one, "figures"), "totals"),
                                     &c) == 0)
            fed_components_add(&all, &c);
        if (json_array_append_new(items, one) != 0) {
            s = STORE_ENOMEM;
            break;
        }
    }
    store_finalize(st);
    if (s < 0) {
        json_decref(items);
        return srv_reply_store_error(r, s);
    }
    {
        struct idx_rates rt;
        idx_rates_of(&all, &rt);
        sum = json_pack("{s:o, s:{s:f, s:f, s:f, s:f}}", "totals", fed_components_json(&all),
                        "rates", "infected_rate", rt.infected_rate, "stale_rate", rt.stale_rate,
                        "coverage", rt.coverage, "sharing_uptime", rt.sharing_uptime);
    }
    return srv_reply_json(r, 200,
                          json_pack("{s:s, s:s, s:o, s:o}", "period", p.label, "kind",
                                    p.kind == RPT_QUARTER ? "quarter" : "month", "provinces", items,
                                    "all", sum ? sum : json_null()));
}
