/*
 * The network sensor's side of the dashboard API (docs/api/sensor.md):
 * each agency's address ranges (read, replaced as a whole), every range of
 * the province for administrators, and the C&C hits that sensors and
 * agents report, as a list (newest last seen first, paged by a cursor) and
 * a per-agency summary. c2.c holds everything that is not HTTP.
 *
 * Scope works as for detections: a hit belongs to the agency it was filed
 * under (c2_hits.agency_id, decided by the address ranges when it arrived),
 * and an officer sees the hits of its own agency and those below it.
 *
 * The list pages by a cursor ("LAST_SEEN.ID" of the last row) rather than
 * an offset, so the next page starts where the last ended on the
 * (last_seen, id) index however many hits there are, and hits arriving in
 * between neither repeat nor vanish.
 */
#include "api.h"
#include "c2.h"
#include "khx.h"
#include "query.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HITS_LIMIT_DEFAULT = 50, HITS_LIMIT_MAX = 500, SUMMARY_DAYS_MAX = 366, TOP_INDICATORS = 10 };

/* ------------------------------------------------------------------------ */
/* Address ranges.                                                           */
/* ------------------------------------------------------------------------ */

/* One agency's ranges as [{"cidr","family","prefix","note","created_at"}]. */
static int ranges_json(struct srv_req *r, int64_t agency_id, json_t **out)
{
    struct store_stmt *st = NULL;
    json_t *list = json_array(), *item;
    int s;

    if (list == NULL)
        return STORE_ENOMEM;
    s = store_queryf(r->db, &st,
                     "SELECT cidr, family, prefix_len, note, created_at FROM agency_networks"
                     " WHERE agency_id = $1 ORDER BY family, first_addr, prefix_len",
                     "i", agency_id);
    for (; s == STORE_ROW; s = store_step(st)) {
        item = json_pack("{s:o, s:I, s:I, s:o, s:I}", "cidr", srv_col_string(st, 0), "family",
                         (json_int_t)store_col_int(st, 1), "prefix",
                         (json_int_t)store_col_int(st, 2), "note", srv_col_string(st, 3),
                         "created_at", (json_int_t)store_col_int(st, 4));
        if (item == NULL || json_array_append_new(list, item) != 0) {
            s = STORE_ENOMEM;
            break;
        }
    }
    store_finalize(st);
    if (s < 0) {
        json_decref(list);
        return s;
    }
    *out = list;
    return 0;
}

static int reply_ranges(struct srv_req *r, int64_t agency_id)
{
    json_t *list = NULL;
    int s = ranges_json(r, agency_id, &list);

    if (s < 0)
        return srv_reply_store_error(r, s);
    return srv_reply_json(
        r, 200, json_pack("{s:I, s:o}", "agency_id", (json_int_t)agency_id, "items", list));
}

int api_agency_networks_get(struct srv_req *r)
{
    int64_t id = srv_route_id(r);
    char path[256];
    int s = id > 0 ? srv_agency_path(r, id, path, sizeof(path)) : 0;

    if (s < 0)
        return srv_reply_store_error(r, s);
    if (s == 0)
        return srv_reply_error(r, 404, "not_found", "no such agency");
    return reply_ranges(r, id);
}

/* The ranges a PUT body names, parsed, normalised and checked against one
 * another. */
struct range_list {
    struct c2_range *v;
    const char **notes; /* belong to the body */
    size_t n;
};

static void range_list_free(struct range_list *l)
{
    free(l->v);
    free(l->notes);
    memset(l, 0, sizeof(*l));
}

/* Reads {"networks": [ "CIDR" | {"cidr": "CIDR", "note": "..."}, ... ]}.
 * Returns 0, or -1 after replying 400 naming the entry. */
static int range_list_read(struct srv_req *r, json_t *body, struct range_list *l)
{
    const json_t *arr = json_object_get(body, "networks"), *e;
    size_t i;

    memset(l, 0, sizeof(*l));
    if (!json_is_array(arr) || json_array_size(arr) > C2_RANGES_MAX)
        return srv_reply_field(r, "networks", "must be an array of at most 1024 address ranges"),
               -1;
    l->v = calloc(json_array_size(arr) + 1, sizeof(*l->v));
    l->notes = calloc(json_array_size(arr) + 1, sizeof(*l->notes));
    if (l->v == NULL || l->notes == NULL)
        return srv_reply_error(r, 500, "internal", "out of memory"), -1;
    json_array_foreach(arr, i, e)
    {
        const json_t *cidr = json_is_object(e) ? json_object_get(e, "cidr") : e;
        const json_t *note = json_is_object(e) ? json_object_get(e, "note") : NULL;
        const char *text = json_string_value(cidr);
        char field[48], problem[256], err[96];

        snprintf(field, sizeof(field), "networks[%zu]", i);
        if (text == NULL || strlen(text) != json_string_length(cidr))
            return srv_reply_field(r, field, "must be a CIDR string or {\"cidr\", \"note\"}"), -1;
        if (c2_range_parse(text, &l->v[l->n], err, sizeof(err)) != 0) {
            char shown[64];
            khx_printable(shown, sizeof(shown), text, strlen(text));
            snprintf(problem, sizeof(problem), "\"%s\" %s", shown, err);
            return srv_reply_field(r, field, problem), -1;
        }
        if (note != NULL && !json_is_null(note) &&
            (!json_is_string(note) || json_string_length(note) > C2_NOTE_MAX ||
             strlen(json_string_value(note)) != json_string_length(note)))
            return srv_reply_field(r, field, "note: must be a string of at most 200 bytes"), -1;
        for (size_t k = 0; k < l->n; k++)
            if (strcmp(l->v[k].text, l->v[l->n].text) == 0) {
                snprintf(problem, sizeof(problem), "%s is listed twice", l->v[k].text);
                return srv_reply_field(r, field, problem), -1;
            }
        l->notes[l->n] = note != NULL ? json_string_value(note) : NULL;
        l->n++;
    }
    return 0;
}

/* True when `path` lies under `above` (both "/1/4/" paths), strictly. */
static int path_below(const char *path, const char *above)
{
    size_t n = strlen(above);
    return strlen(path) > n && strncmp(path, above, n) == 0;
}

/* Looks for a range of another agency that `g` overlaps in a way that
 * would make the longest-range rule ambiguous: CIDRs either nest or are
 * apart, and nesting is allowed only along the tree (a parent's range
 * holding a descendant's). Returns STORE_DONE when none, STORE_ROW after
 * writing the refusal into msg, or < 0. */
static int range_conflict(struct srv_req *r, int64_t agency_id, const char *agency_path,
                          const struct c2_range *g, char *msg, size_t msglen)
{
    struct store_stmt *st = NULL;
    int s;

    if ((s = store_prepare(r->db,
                           "SELECT n.cidr, n.prefix_len, a.id, a.code, a.path FROM agency_networks"
                           " n JOIN agencies a ON a.id = n.agency_id WHERE n.family = $1"
                           " AND n.first_addr <= $2 AND n.last_addr >= $3 AND n.agency_id <> $4",
                           &st)) < 0)
        return s;
    if ((s = store_bind_int(st, 1, g->family)) < 0 ||
        (s = store_bind_blob(st, 2, g->last, g->addr_len)) < 0 ||
        (s = store_bind_blob(st, 3, g->first, g->addr_len)) < 0 ||
        (s = store_bind_int(st, 4, agency_id)) < 0)
        goto out;
    while ((s = store_step(st)) == STORE_ROW) {
        unsigned prefix = (unsigned)store_col_int(st, 1);
        const char *path = store_col_text(st, 4);
        path = path != NULL ? path : "";
        if (prefix < g->prefix && path_below(agency_path, path))
            continue; /* an ancestor's wider range */
        if (prefix > g->prefix && path_below(path, agency_path))
            continue; /* a descendant's narrower range */
        snprintf(msg, msglen,
                 "%s overlaps %s of agency %s (id %" PRId64 "); ranges of different agencies may"
                 " only nest, a wider range belonging to an agency above the other",
                 g->text, store_col_text(st, 0), store_col_text(st, 3), store_col_int(st, 2));
        s = STORE_ROW;
        goto out;
    }
out:
    store_finalize(st);
    return s;
}

static int range_insert(struct srv_req *r, int64_t agency_id, const struct c2_range *g,
                        const char *note, int64_t now)
{
    struct store_stmt *st = NULL;
    int s;

    if ((s = store_prepare(r->db,
                           "INSERT INTO agency_networks (agency_id, cidr, family, prefix_len,"
                           " first_addr, last_addr, note, created_at)"
                           " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                           &st)) < 0)
        return s;
    if ((s = store_bind_int(st, 1, agency_id)) >= 0 && (s = store_bind_text(st, 2, g->text)) >= 0 &&
        (s = store_bind_int(st, 3, g->family)) >= 0 &&
        (s = store_bind_int(st, 4, (int64_t)g->prefix)) >= 0 &&
        (s = store_bind_blob(st, 5, g->first, g->addr_len)) >= 0 &&
        (s = store_bind_blob(st, 6, g->last, g->addr_len)) >= 0 &&
        (s = store_bind_text(st, 7, note != NULL ? note : "")) >= 0 &&
        (s = store_bind_int(st, 8, now)) >= 0)
        s = store_step(st);
    store_finalize(st);
    return s < 0 ? s : 0;
}

int api_agency_networks_put(struct srv_req *r)
{
    int64_t id = srv_route_id(r), now = srv_now();
    struct range_list l = {0};
    json_t *body = NULL, *detail = NULL;
    char path[256], target[40], msg[400];
    int s = id > 0 ? srv_agency_path(r, id, path, sizeof(path)) : 0, in_tx = 0;

    if (s < 0)
        return srv_reply_store_error(r, s);
    if (s == 0)
        return srv_reply_error(r, 404, "not_found", "no such agency");
    if ((body = srv_body_json(r)) == NULL)
        return 0;
    if (range_list_read(r, body, &l) != 0)
        goto out;
    if ((s = store_begin_write(r->db)) < 0)
        goto store_fail;
    in_tx = 1;
    for (size_t i = 0; i < l.n; i++) {
        if ((s = range_conflict(r, id, path, &l.v[i], msg, sizeof(msg))) < 0)
            goto store_fail;
        if (s == STORE_ROW) {
            srv_reply_error(r, 409, "conflict", "%s", msg);
            goto out;
        }
    }
    if ((s = store_execf(r->db, NULL, "DELETE FROM agency_networks WHERE agency_id = $1", "i",
                         id)) < 0)
        goto store_fail;
    for (size_t i = 0; i < l.n; i++)
        if ((s = range_insert(r, id, &l.v[i], l.notes[i], now)) < 0)
            goto store_fail;
    if ((detail = json_array()) != NULL)
        for (size_t i = 0; i < l.n; i++)
            json_array_append_new(detail, json_string(l.v[i].text));
    snprintf(target, sizeof(target), "agency:%" PRId64, id);
    srv_audit(r, "agency.networks.set", target, json_pack("{s:o?}", "networks", detail));
    if ((s = store_commit(r->db)) < 0)
        goto store_fail;
    in_tx = 0;
    reply_ranges(r, id);
    goto out;
store_fail:
    /* Two agencies claiming one range at once: the unique CIDR stops the
     * second, which is the same refusal as the overlap check's. */
    if (s == STORE_ECONFLICT)
        srv_reply_error(r, 409, "conflict", "a range was just claimed by another agency; reload");
    else
        srv_reply_store_error(r, s);
out:
    if (in_tx)
        store_rollback(r->db);
    range_list_free(&l);
    json_decref(body);
    return 0;
}

int api_networks_list(struct srv_req *r)
{
    struct store_stmt *st = NULL;
    json_t *list = json_array(), *item;
    int s;

    if (list == NULL)
        return srv_reply_error(r, 500, "internal", "out of memory");
    s = store_queryf(r->db, &st,
                     "SELECT n.cidr, n.family, n.prefix_len, n.note, n.created_at, n.agency_id,"
                     " a.code, a.name FROM agency_networks n JOIN agencies a ON a.id = n.agency_id"
                     " ORDER BY n.family, n.first_addr, n.prefix_len",
                     "");
    for (; s == STORE_ROW; s = store_step(st)) {
        item =
            json_pack("{s:o, s:I, s:I, s:o, s:I, s:o}", "cidr", srv_col_string(st, 0), "family",
                      (json_int_t)store_col_int(st, 1), "prefix", (json_int_t)store_col_int(st, 2),
                      "note", srv_col_string(st, 3), "created_at", (json_int_t)store_col_int(st, 4),
                      "agency", srv_col_agency(st, 5));
        if (item == NULL || json_array_append_new(list, item) != 0) {
            s = STORE_ENOMEM;
            break;
        }
    }
    store_finalize(st);
    if (s < 0) {
        json_decref(list);
        return srv_reply_store_error(r, s);
    }
    return srv_reply_json(r, 200, json_pack("{s:o}", "items", list));
}

/* ------------------------------------------------------------------------ */
/* Hits.                                                                     */
/* ------------------------------------------------------------------------ */

/* ?agency= (with the agencies below it), ?since= and ?until= (Unix seconds,
 * on last_seen), read and checked once for the list and the summary. */
struct hit_filter {
    char agency_path[256];
    int has_since, has_until;
    int64_t since, until;
};

static int hit_filter_parse(struct srv_req *r, struct hit_filter *f)
{
    int64_t agency = 0;
    int rc;

    memset(f, 0, sizeof(*f));
    if ((f->has_since = srv_qparam_int(r, "since", 0, INT64_MAX / 2, &f->since)) < 0)
        return srv_reply_field(r, "since", "Unix seconds"), -1;
    if ((f->has_until = srv_qparam_int(r, "until", 0, INT64_MAX / 2, &f->until)) < 0)
        return srv_reply_field(r, "until", "Unix seconds"), -1;
    if ((rc = srv_qparam_int(r, "agency", 1, INT64_MAX, &agency)) < 0)
        return srv_reply_field(r, "agency", "an agency id"), -1;
    if (rc > 0) {
        rc = srv_agency_path(r, agency, f->agency_path, sizeof(f->agency_path) - 1);
        if (rc < 0)
            return srv_reply_store_error(r, rc), -1;
        if (rc == 0)
            return srv_reply_error(r, 404, "not_found", "no agency %" PRId64, agency), -1;
        strcat(f->agency_path, "%");
    }
    return 0;
}

/* The WHERE clause over c2_hits h joined to agencies a. */
static void hit_where(struct srv_sql *q, const struct srv_req *r, const struct hit_filter *f)
{
    srv_sql_add(q, " WHERE 1=1");
    srv_sql_scope(q, r, "a.path");
    if (f->agency_path[0] != '\0') {
        srv_sql_add(q, " AND a.path LIKE ");
        srv_sql_text(q, f->agency_path);
    }
    if (f->has_since) {
        srv_sql_add(q, " AND h.last_seen >= ");
        srv_sql_int(q, f->since);
    }
    if (f->has_until) {
        srv_sql_add(q, " AND h.last_seen < ");
        srv_sql_int(q, f->until);
    }
}

/* "LAST_SEEN.ID", both decimal. Returns 0, or -1 when malformed. */
static int cursor_parse(const char *s, int64_t *last_seen, int64_t *id)
{
    size_t a = strspn(s, "0123456789"), b;

    if (a == 0 || a > 18 || s[a] != '.')
        return -1;
    b = strspn(s + a + 1, "0123456789");
    if (b == 0 || b > 18 || s[a + 1 + b] != '\0')
        return -1;
    *last_seen = strtoll(s, NULL, 10);
    *id = strtoll(s + a + 1, NULL, 10);
    return 0;
}

#define HIT_COLS                                                                                   \
    "h.id, h.last_seen, h.first_seen, h.host, h.indicator, h.kind, h.category, h.sources,"         \
    " h.seen_in, h.observed, h.proto, h.src_ip, h.src_port, h.dest_ip, h.dest_port,"               \
    " h.hit_count, h.evidence, h.sensor, h.machine_id, m.hostname, m.role, h.agency_id, a.code,"   \
    " a.name, h.received_at, h.event_id, h.status, h.status_at, h.status_note"

static json_t *hit_item(struct store_stmt *st)
{
    json_t *tuple =
        json_pack("{s:o, s:o, s:I, s:o, s:I}", "proto", srv_col_string(st, 10), "src_ip",
                  srv_col_string(st, 11), "src_port", (json_int_t)store_col_int(st, 12), "dest_ip",
                  srv_col_string(st, 13), "dest_port", (json_int_t)store_col_int(st, 14));
    json_t *by = json_pack("{s:o, s:o, s:o, s:o}", "id", srv_col_string(st, 18), "hostname",
                           srv_col_string(st, 19), "role", srv_col_string(st, 20), "sensor",
                           srv_col_string(st, 17));
    return json_pack(
        "{s:I, s:I, s:I, s:o, s:{s:o, s:o, s:o}, s:o, s:o, s:o, s:o?, s:I, s:o, s:o?,"
        " s:o, s:I, s:o, s:o, s:I, s:o}",
        "id", (json_int_t)store_col_int(st, 0), "last_seen", (json_int_t)store_col_int(st, 1),
        "first_seen", (json_int_t)store_col_int(st, 2), "host", srv_col_string(st, 3), "indicator",
        "value", srv_col_string(st, 4), "kind", srv_col_string(st, 5), "sources",
        srv_col_json(st, 7, "[]"), "category", srv_col_string(st, 6), "where",
        srv_col_string(st, 8), "observed", srv_col_string(st, 9), "tuple", tuple, "count",
        (json_int_t)store_col_int(st, 15), "evidence", srv_col_string(st, 16), "reported_by", by,
        "agency", srv_col_agency(st, 21), "received_at", (json_int_t)store_col_int(st, 24),
        "event_id", srv_col_string(st, 25), "status", srv_col_string(st, 26), "status_at",
        (json_int_t)store_col_int(st, 27), "status_note", srv_col_string(st, 28));
}

int api_c2_hits_list(struct srv_req *r)
{
    struct hit_filter f;
    struct srv_sql q;
    struct store_stmt *st = NULL;
    json_t *items = NULL;
    int64_t limit = HITS_LIMIT_DEFAULT, c_seen = 0, c_id = 0, last_seen = 0, last_id = 0, n = 0;
    const char *cursor;
    char next[48];
    int rc, has_cursor = 0;

    srv_sql_init(&q);
    if (hit_filter_parse(r, &f) != 0)
        goto out;
    if (srv_qparam_int(r, "limit", 1, HITS_LIMIT_MAX, &limit) < 0) {
        srv_reply_field(r, "limit", "an integer from 1 to 500");
        goto out;
    }
    if ((cursor = srv_qparam(r, "cursor")) != NULL) {
        if (cursor_parse(cursor, &c_seen, &c_id) != 0) {
            srv_reply_field(r, "cursor", "the next_cursor of a previous page");
            goto out;
        }
        has_cursor = 1;
    }
    srv_sql_add(&q, "SELECT " HIT_COLS " FROM c2_hits h JOIN agencies a ON a.id = h.agency_id"
                    " JOIN machines m ON m.id = h.machine_id");
    hit_where(&q, r, &f);
    if (has_cursor) {
        int k;
        srv_sql_add(&q, " AND (h.last_seen < ");
        k = srv_sql_int(&q, c_seen);
        srv_sql_add(&q, " OR (h.last_seen = ");
        srv_sql_ref(&q, k);
        srv_sql_add(&q, " AND h.id < ");
        srv_sql_int(&q, c_id);
        srv_sql_add(&q, "))");
    }
    /* One more than asked tells whether there is a next page. */
    srv_sql_add(&q, " ORDER BY h.last_seen DESC, h.id DESC LIMIT ");
    srv_sql_int(&q, limit + 1);
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0)
        goto store_fail;
    if ((items = json_array()) == NULL)
        goto oom;
    while (n < limit && (rc = store_step(st)) == STORE_ROW) {
        last_id = store_col_int(st, 0);
        last_seen = store_col_int(st, 1);
        if (json_array_append_new(items, hit_item(st)) != 0)
            goto oom;
        n++;
    }
    if (rc >= 0 && n == limit)
        rc = store_step(st);
    if (rc < 0)
        goto store_fail;
    snprintf(next, sizeof(next), "%" PRId64 ".%" PRId64, last_seen, last_id);
    srv_reply_json(r, 200,
                   json_pack("{s:o, s:o}", "items", items, "next_cursor",
                             n == limit && rc == STORE_ROW ? json_string(next) : json_null()));
    items = NULL;
    goto out;
store_fail:
    srv_reply_store_error(r, rc);
    goto out;
oom:
    srv_reply_error(r, 500, "internal", "out of memory");
out:
    json_decref(items);
    store_finalize(st);
    srv_sql_clear(&q);
    return 0;
}

/* Runs the summary's per-agency query into `out`. */
static int summary_agencies(struct srv_req *r, const struct hit_filter *f, json_t *out)
{
    struct srv_sql q;
    struct store_stmt *st = NULL;
    json_t *item;
    int rc;

    srv_sql_init(&q);
    srv_sql_add(&q, "SELECT a.id, a.code, a.name, count(*), sum(h.hit_count),"
                    " count(DISTINCT h.host), count(DISTINCT h.indicator), max(h.last_seen)"
                    " FROM c2_hits h JOIN agencies a ON a.id = h.agency_id");
    hit_where(&q, r, f);
    srv_sql_add(&q, " GROUP BY a.id, a.code, a.name ORDER BY count(*) DESC, a.code");
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0)
        goto out;
    while ((rc = store_step(st)) == STORE_ROW) {
        item = json_pack(
            "{s:o, s:I, s:I, s:I, s:I, s:I}", "agency", srv_col_agency(st, 0), "hits",
            (json_int_t)store_col_int(st, 3), "matches", (json_int_t)store_col_int(st, 4), "hosts",
            (json_int_t)store_col_int(st, 5), "indicators", (json_int_t)store_col_int(st, 6),
            "last_seen", (json_int_t)store_col_int(st, 7));
        if (item == NULL || json_array_append_new(out, item) != 0) {
            rc = STORE_ENOMEM;
            break;
        }
    }
out:
    store_finalize(st);
    srv_sql_clear(&q);
    return rc < 0 ? rc : 0;
}

/* The indicators with the most hits, then the totals over everything in
 * view. */
static int summary_top(struct srv_req *r, const struct hit_filter *f, json_t *top, json_t *totals)
{
    struct srv_sql q;
    struct store_stmt *st = NULL;
    json_t *item;
    int rc;

    srv_sql_init(&q);
    srv_sql_add(&q, "SELECT h.indicator, h.kind, max(h.category), count(*), sum(h.hit_count),"
                    " count(DISTINCT h.host), count(DISTINCT h.agency_id), max(h.last_seen)"
                    " FROM c2_hits h JOIN agencies a ON a.id = h.agency_id");
    hit_where(&q, r, f);
    srv_sql_add(&q, " GROUP BY h.indicator, h.kind ORDER BY count(*) DESC, h.indicator LIMIT ");
    srv_sql_int(&q, TOP_INDICATORS);
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0)
        goto out;
    while ((rc = store_step(st)) == STORE_ROW) {
        item = json_pack(
            "{s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:I}", "value", srv_col_string(st, 0), "kind",
            srv_col_string(st, 1), "category", srv_col_string(st, 2), "hits",
            (json_int_t)store_col_int(st, 3), "matches", (json_int_t)store_col_int(st, 4), "hosts",
            (json_int_t)store_col_int(st, 5), "agencies", (json_int_t)store_col_int(st, 6),
            "last_seen", (json_int_t)store_col_int(st, 7));
        if (item == NULL || json_array_append_new(top, item) != 0) {
            rc = STORE_ENOMEM;
            goto out;
        }
    }
    if (rc < 0)
        goto out;
    store_finalize(st);
    st = NULL;
    srv_sql_clear(&q);
    srv_sql_init(&q);
    /* Hosts are counted per (agency, host): one address is a different
     * machine in two agencies that both use private ranges. */
    srv_sql_add(&q, "SELECT count(*), coalesce(sum(h.hit_count), 0),"
                    " count(DISTINCT h.indicator), max(h.last_seen),"
                    " count(DISTINCT CAST(h.agency_id AS TEXT) || ' ' || h.host) FROM c2_hits h"
                    " JOIN agencies a ON a.id = h.agency_id");
    hit_where(&q, r, f);
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0 || (rc = store_step(st)) != STORE_ROW)
        goto out;
    json_object_set_new(totals, "hits", json_integer(store_col_int(st, 0)));
    json_object_set_new(totals, "matches", json_integer(store_col_int(st, 1)));
    json_object_set_new(totals, "indicators", json_integer(store_col_int(st, 2)));
    json_object_set_new(totals, "last_seen", srv_col_intn(st, 3));
    json_object_set_new(totals, "hosts", json_integer(store_col_int(st, 4)));
    rc = 0;
out:
    store_finalize(st);
    srv_sql_clear(&q);
    return rc < 0 ? rc : 0;
}

int api_c2_hits_summary(struct srv_req *r)
{
    struct hit_filter f;
    json_t *agencies = NULL, *top = NULL, *totals = NULL;
    int64_t days = 30, now = srv_now();
    int rc;

    if (srv_qparam_int(r, "days", 1, SUMMARY_DAYS_MAX, &days) < 0)
        return srv_reply_field(r, "days", "an integer from 1 to 366");
    if (hit_filter_parse(r, &f) != 0)
        return 0;
    /* days sets since unless the caller gave one. */
    if (!f.has_since) {
        f.has_since = 1;
        f.since = now - days * 86400;
    }
    agencies = json_array();
    top = json_array();
    totals = json_object();
    if (agencies == NULL || top == NULL || totals == NULL) {
        rc = STORE_ENOMEM;
        goto fail;
    }
    if ((rc = summary_agencies(r, &f, agencies)) < 0 || (rc = summary_top(r, &f, top, totals)) < 0)
        goto fail;
    return srv_reply_json(r, 200,
                          json_pack("{s:I, s:I, s:o, s:o, s:o}", "days", (json_int_t)days, "since",
                                    (json_int_t)f.since, "agencies", agencies, "top_indicators",
                                    top, "totals", totals));
fail:
    json_decref(agencies);
    json_decref(top);
    json_decref(totals);
    return srv_reply_store_error(r, rc);
}

/* ------------------------------------------------------------------------ */
/* What was done about a contact.                                            */
/* ------------------------------------------------------------------------ */

enum { HIT_NOTE_MAX = 2000 };

/* POST /c2-hits/{id}/status {"status", "note", "same_contact"}: an officer
 * records what was done about a C&C contact (the quarterly report prints
 * it). By default every hit of the same internal host and indicator in the
 * same agency that is not yet in the new status changes with it, since the
 * sensor reports a long-lived contact again in every window. */
int api_c2_hits_status(struct srv_req *r)
{
    static const char *const words[] = {"new", "acknowledged", "resolved", "false_positive"};
    json_t *body = NULL, *jnote, *jsame;
    const char *to = NULL, *note = "", *want;
    int64_t id = 0, changed = 0, now = srv_now();
    char target[48];
    int rc, same = 1;

    if (srv_param_id(r, 0, &id) != 0) {
        srv_reply_error(r, 404, "not_found", "no such C&C hit");
        goto out;
    }
    if ((body = srv_body_json(r)) == NULL)
        goto out;
    want = json_string_value(json_object_get(body, "status"));
    for (size_t i = 0; want != NULL && i < sizeof(words) / sizeof(words[0]); i++)
        if (strcmp(want, words[i]) == 0)
            to = words[i];
    if (to == NULL) {
        srv_reply_field(r, "status", "one of new, acknowledged, resolved, false_positive");
        goto out;
    }
    jnote = json_object_get(body, "note");
    if (jnote != NULL && !json_is_null(jnote)) {
        if (!json_is_string(jnote) ||
            strlen(json_string_value(jnote)) != json_string_length(jnote) ||
            json_string_length(jnote) > HIT_NOTE_MAX * 4) {
            srv_reply_field(r, "note", "text of at most 2000 characters");
            goto out;
        }
        note = json_string_value(jnote);
    }
    jsame = json_object_get(body, "same_contact");
    if (jsame != NULL && !json_is_boolean(jsame)) {
        srv_reply_field(r, "same_contact", "true or false");
        goto out;
    }
    if (jsame != NULL)
        same = json_is_true(jsame);

    if ((rc = store_begin_write(r->db)) != 0)
        goto store_fail;
    struct store_stmt *st = NULL;
    rc = store_queryf(r->db, &st,
                      "SELECT h.agency_id, h.host, h.indicator FROM c2_hits h"
                      " JOIN agencies a ON a.id = h.agency_id WHERE h.id = $1 AND a.path LIKE $2",
                      "it", id, r->who.scope_path);
    if (rc < 0)
        goto store_fail;
    if (rc != STORE_ROW) {
        store_rollback(r->db);
        srv_reply_error(r, 404, "not_found", "no such C&C hit");
        goto out;
    }
    int64_t agency = store_col_int(st, 0);
    char host[64], indicator[C2_INDICATOR_MAX];
    snprintf(host, sizeof(host), "%s", store_col_text(st, 1));
    snprintf(indicator, sizeof(indicator), "%s", store_col_text(st, 2));
    store_finalize(st);
    int64_t by = r->who.user_id;
    if (same)
        rc = store_execf(r->db, &changed,
                         "UPDATE c2_hits SET status = $1, status_at = $2,"
                         " status_by = CASE WHEN $3 > 0 THEN $3 ELSE NULL END, status_note = $4"
                         " WHERE agency_id = $5 AND host = $6 AND indicator = $7"
                         " AND (status <> $1 OR id = $8)",
                         "tiititti", to, now, by, note, agency, host, indicator, id);
    else
        rc = store_execf(r->db, &changed,
                         "UPDATE c2_hits SET status = $1, status_at = $2,"
                         " status_by = CASE WHEN $3 > 0 THEN $3 ELSE NULL END, status_note = $4"
                         " WHERE id = $5",
                         "tiiti", to, now, by, note, id);
    if (rc != 0)
        goto store_fail;
    snprintf(target, sizeof(target), "c2_hit:%" PRId64, id);
    srv_audit(r, "c2_hit.status", target,
              json_pack("{s:s, s:s, s:s, s:I}", "to", to, "host", host, "indicator", indicator,
                        "hits", (json_int_t)changed));
    if ((rc = store_commit(r->db)) != 0)
        goto store_fail;
    srv_reply_json(r, 200,
                   json_pack("{s:I, s:s, s:I, s:s}", "id", (json_int_t)id, "status", to, "changed",
                             (json_int_t)changed, "note", note));
    goto out;
store_fail:
    store_rollback(r->db);
    srv_reply_store_error(r, rc);
out:
    json_decref(body);
    return 0;
}
