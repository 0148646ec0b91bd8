/*
 * The organisation tree and the enrollment tokens that attach machines to it.
 *
 * Agencies form a tree (province -> department -> district -> agency). Each
 * row keeps its materialized path of ids, "/1/4/9/", so that "this agency and
 * everything below it" is one prefix match, which is how every caller's scope
 * is expressed (server.h, srv_agency_in_scope). Moving an agency rewrites the
 * paths of its whole subtree in one UPDATE inside the same transaction.
 *
 * Enrollment tokens are secrets ("khe_" + 64 hex) that an agency's officer
 * hands to the machines being enrolled: the database keeps their SHA-256 and
 * the first characters for recognition; the token itself is shown once.
 * POST /enroll (api_agent.c) consumes them.
 *
 * Each agency may also have a protection policy for its machines
 * (policy.c): read by anyone who may see the agency, set and removed by its
 * officers, except a top-level agency's, which only a province administrator
 * may change because every machine below inherits it.
 */
#include "api.h"
#include "auth.h"
#include "pki.h"
#include "policy.h"
#include "query.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>

#include <khien/khien.h>

#define CODE_MAX     32
#define NAME_MAX_LEN 200
#define CONTACT_MAX  500
#define NOTE_MAX     200
#define AGENCIES_MAX 20000 /* rows one list answer may carry */

#define ENROLL_DEFAULT_TTL (7 * 24 * 3600)
#define ENROLL_MIN_TTL     60
#define ENROLL_MAX_TTL     (365 * 24 * 3600)

/* ------------------------------------------------------------------------ */
/* Small helpers for request fields.                                         */
/* ------------------------------------------------------------------------ */

static int valid_kind(const char *k)
{
    return strcmp(k, "province") == 0 || strcmp(k, "department") == 0 ||
           strcmp(k, "district") == 0 || strcmp(k, "agency") == 0;
}

/* Agency codes appear in file names, URLs and reports: keep them plain. */
static int valid_code(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static const char *text_or_empty(struct store_stmt *st, int col)
{
    const char *s = store_col_text(st, col);
    return s ? s : "";
}

/* ------------------------------------------------------------------------ */
/* Agencies as JSON.                                                         */
/* ------------------------------------------------------------------------ */

#define AGENCY_SELECT                                                                              \
    "SELECT id, parent_id, code, name, kind, contact, expected_machines, path, created_at"         \
    " FROM agencies"

static json_t *agency_json(struct store_stmt *st)
{
    return json_pack("{s:I, s:o, s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:I}", "id",
                     (json_int_t)store_col_int(st, 0), "parent_id",
                     store_col_is_null(st, 1) ? json_null() : json_integer(store_col_int(st, 1)),
                     "code", text_or_empty(st, 2), "name", text_or_empty(st, 3), "kind",
                     text_or_empty(st, 4), "contact", text_or_empty(st, 5), "expected_machines",
                     (json_int_t)store_col_int(st, 6), "path", text_or_empty(st, 7), "created_at",
                     (json_int_t)store_col_int(st, 8), "machines", (json_int_t)0, "online",
                     (json_int_t)0, "infected", (json_int_t)0);
}

/* Loads one agency in the caller's scope. STORE_ROW with *out set, STORE_DONE
 * when absent or out of scope, or a negative store code. */
static int load_agency(struct srv_req *r, int64_t id, json_t **out)
{
    struct store_stmt *st = NULL;
    int s = store_queryf(r->db, &st, AGENCY_SELECT " WHERE id = $1 AND path LIKE $2", "it", id,
                         r->who.scope_path);

    if (s == STORE_ROW && (*out = agency_json(st)) == NULL)
        s = STORE_ENOMEM;
    store_finalize(st);
    return s;
}

/* ------------------------------------------------------------------------ */
/* GET /agencies                                                             */
/* ------------------------------------------------------------------------ */

/* One agency of the list, found by id while the counts are merged. */
struct agency_slot {
    int64_t id;
    const char *path; /* owned by obj */
    json_t *obj;
};

static int slot_cmp(const void *a, const void *b)
{
    const struct agency_slot *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* Byte order of paths: every agency right after its parent, its subtree
 * before the next sibling. The database's ORDER BY path would do on SQLite,
 * but PostgreSQL's locale collation ignores the slashes and can interleave
 * sibling subtrees, so the final order is made here. */
static int slot_path_cmp(const void *a, const void *b)
{
    const struct agency_slot *x = a, *y = b;
    return strcmp(x->path, y->path);
}

static json_t *slot_find(struct agency_slot *slots, size_t n, int64_t id)
{
    struct agency_slot key = {.id = id};
    struct agency_slot *hit = bsearch(&key, slots, n, sizeof(*slots), slot_cmp);
    return hit ? hit->obj : NULL;
}

/* Runs one GROUP BY query whose rows are (agency_id, count[, count]) and
 * stores the counts under `k1` (and `k2`) of the matching agencies. */
static int merge_counts(struct srv_req *r, struct agency_slot *slots, size_t n, const char *sql,
                        int64_t online_since, const char *k1, const char *k2)
{
    struct store_stmt *st = NULL;
    int s = k2 ? store_queryf(r->db, &st, sql, "ti", r->who.scope_path, online_since)
               : store_queryf(r->db, &st, sql, "t", r->who.scope_path);

    while (s == STORE_ROW) {
        json_t *o = slot_find(slots, n, store_col_int(st, 0));
        if (o != NULL) {
            json_object_set_new(o, k1, json_integer(store_col_int(st, 1)));
            if (k2 != NULL)
                json_object_set_new(o, k2, json_integer(store_col_int(st, 2)));
        }
        s = store_step(st);
    }
    store_finalize(st);
    return s;
}

int api_agencies_list(struct srv_req *r)
{
    /* Counts are per agency, not per subtree: the dashboard adds them up
     * along the tree it draws. Each is one GROUP BY over the scope, so the
     * cost does not grow with the number of agencies. */
    static const char machines_sql[] =
        "SELECT m.agency_id, COUNT(*), SUM(CASE WHEN m.last_seen >= $2 THEN 1 ELSE 0 END)"
        " FROM machines m JOIN agencies a ON a.id = m.agency_id"
        " WHERE m.retired = 0 AND a.path LIKE $1 GROUP BY m.agency_id";
    /* Infected: machines with an open detection, from the count that
     * ingest.c and api_detection.c keep on each machine (migration 3). */
    static const char infected_sql[] =
        "SELECT m.agency_id, COUNT(*) FROM machines m JOIN agencies a ON a.id = m.agency_id"
        " WHERE m.open_detections > 0 AND m.retired = 0 AND a.path LIKE $1"
        " GROUP BY m.agency_id";
    struct store_stmt *st = NULL;
    struct agency_slot *slots = NULL;
    size_t n = 0;
    json_t *items = json_array(), *sorted = NULL;
    unsigned offline_after = r->srv ? r->srv->cfg.offline_after : 0;
    int s;

    if (offline_after == 0)
        offline_after = 180;
    if (items == NULL) {
        s = STORE_ENOMEM;
        goto out;
    }
    s = store_queryf(r->db, &st, AGENCY_SELECT " WHERE path LIKE $1 ORDER BY id LIMIT $2", "ti",
                     r->who.scope_path, (int64_t)AGENCIES_MAX);
    while (s == STORE_ROW) {
        json_t *o = agency_json(st);
        if (o == NULL || json_array_append_new(items, o) != 0) {
            s = STORE_ENOMEM;
            goto out;
        }
        s = store_step(st);
    }
    store_finalize(st);
    st = NULL;
    if (s < 0)
        goto out;

    n = json_array_size(items);
    if (n > 0 && (slots = calloc(n, sizeof(*slots))) == NULL) {
        s = STORE_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        slots[i].obj = json_array_get(items, i);
        slots[i].id = json_integer_value(json_object_get(slots[i].obj, "id"));
        slots[i].path = json_string_value(json_object_get(slots[i].obj, "path"));
    }
    /* qsort's array may not be NULL, even when empty. */
    if (n > 1)
        qsort(slots, n, sizeof(*slots), slot_path_cmp);
    /* A new array in path order; each agency is shared with the old one
     * until that is released. */
    if ((sorted = json_array()) == NULL) {
        s = STORE_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (json_array_append(sorted, slots[i].obj) != 0) {
            s = STORE_ENOMEM;
            goto out;
        }
    json_decref(items);
    items = sorted;
    sorted = NULL;
    if (n > 1)
        qsort(slots, n, sizeof(*slots), slot_cmp);
    if ((s = merge_counts(r, slots, n, machines_sql, srv_now() - (int64_t)offline_after, "machines",
                          "online")) < 0 ||
        (s = merge_counts(r, slots, n, infected_sql, 0, "infected", NULL)) < 0)
        goto out;
    s = 0;
out:
    store_finalize(st);
    free(slots);
    json_decref(sorted);
    if (s < 0) {
        json_decref(items);
        return srv_reply_store_error(r, s);
    }
    return srv_reply_json(r, 200, json_pack("{s:o}", "items", items));
}

/* ------------------------------------------------------------------------ */
/* POST /agencies, PATCH /agencies/{id}                                      */
/* ------------------------------------------------------------------------ */

/* A materialized path as this file writes them: "/", then ids each
 * followed by "/". Anything else (an agency inserted by hand without its
 * path) must not be used as a prefix: "" would match every agency. */
static int path_ok(const char *p)
{
    size_t n = p ? strlen(p) : 0;
    return n >= 3 && p[0] == '/' && p[n - 1] == '/' && strspn(p, "/0123456789") == n;
}

/* The path of agency `id`, malloc'd into *path. STORE_ROW, STORE_DONE when
 * there is no such agency, or < 0 (STORE_ESQL for a malformed path). */
static int agency_path(struct store_db *db, int64_t id, char **path)
{
    int s = store_query_text(db, path, "SELECT path FROM agencies WHERE id = $1", "i", id);

    if (s == STORE_ROW && !path_ok(*path)) {
        srv_log("agency %" PRId64 " has a malformed path", id);
        free(*path);
        *path = NULL;
        return STORE_ESQL;
    }
    return s;
}

/* Inserts an agency without its path. STORE_ROW with *id set, or < 0
 * (STORE_ECONFLICT for a taken code). */
static int insert_agency(struct store_db *db, int64_t parent_id, const char *code, const char *name,
                         const char *kind, const char *contact, int64_t expected, int64_t *id)
{
    static const char sql[] = "INSERT INTO agencies (parent_id, code, name, kind, contact,"
                              " expected_machines, created_at)"
                              " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
    struct store_stmt *st = NULL;
    int s;

    if ((s = store_prepare(db, sql, &st)) < 0)
        goto out;
    if ((s = parent_id > 0 ? store_bind_int(st, 1, parent_id) : store_bind_null(st, 1)) < 0 ||
        (s = store_bind_text(st, 2, code)) < 0 || (s = store_bind_text(st, 3, name)) < 0 ||
        (s = store_bind_text(st, 4, kind)) < 0 || (s = store_bind_text(st, 5, contact)) < 0 ||
        (s = store_bind_int(st, 6, expected)) < 0 || (s = store_bind_int(st, 7, srv_now())) < 0)
        goto out;
    s = store_step(st);
    if (s == STORE_ROW)
        *id = store_col_int(st, 0);
out:
    store_finalize(st);
    return s;
}

int api_agencies_create(struct srv_req *r)
{
    json_t *body = srv_body_json(r), *agency = NULL;
    const char *code = NULL, *name = NULL, *kind = "agency", *contact = "";
    char *parent_path = NULL, path[256], target[40];
    int64_t parent_id = 0, expected = 0, id = 0;
    int s, in_tx = 0;

    if (body == NULL)
        return 0;
    if (srv_json_int(r, body, "parent_id", 1, 0, INT64_MAX, &parent_id) < 0 ||
        srv_json_str(r, body, "code", 1, CODE_MAX, &code) < 0 ||
        srv_json_str(r, body, "name", 1, NAME_MAX_LEN, &name) < 0 ||
        srv_json_str(r, body, "kind", 0, 16, &kind) < 0 ||
        srv_json_str(r, body, "contact", 0, CONTACT_MAX, &contact) < 0 ||
        srv_json_int(r, body, "expected_machines", 0, 0, 10000000, &expected) < 0)
        goto out;
    if (!valid_code(code)) {
        srv_reply_field(r, "code", "may hold only letters, digits and . _ -");
        goto out;
    }
    if (!valid_kind(kind)) {
        srv_reply_field(r, "kind", "must be province, department, district or agency");
        goto out;
    }
    if ((s = store_begin_write(r->db)) < 0)
        goto store_fail;
    in_tx = 1;
    if (parent_id > 0) {
        s = agency_path(r->db, parent_id, &parent_path);
        if (s < 0)
            goto store_fail;
        if (s != STORE_ROW || !srv_agency_in_scope(r, parent_id)) {
            srv_reply_field(r, "parent_id", "names no agency");
            goto out;
        }
    }
    s = insert_agency(r->db, parent_id, code, name, kind, contact, expected, &id);
    if (s == STORE_ECONFLICT) {
        srv_reply_error(r, 409, "conflict", "the agency code is taken");
        goto out;
    }
    if (s != STORE_ROW) {
        s = s < 0 ? s : STORE_ESQL;
        goto store_fail;
    }
    /* The path holds the new id, so it is written after the insert, in the
     * same transaction: no reader ever sees the agency without it. */
    if (snprintf(path, sizeof(path), "%s%" PRId64 "/", parent_path ? parent_path : "/", id) >=
        (int)sizeof(path)) {
        srv_reply_field(r, "parent_id", "the tree is too deep");
        goto out;
    }
    if ((s = store_execf(r->db, NULL, "UPDATE agencies SET path = $1 WHERE id = $2", "ti", path,
                         id)) < 0 ||
        (s = store_commit(r->db)) < 0)
        goto store_fail;
    in_tx = 0;
    if ((s = load_agency(r, id, &agency)) != STORE_ROW) {
        s = s < 0 ? s : STORE_ESQL;
        goto store_fail;
    }
    snprintf(target, sizeof(target), "agency:%" PRId64, id);
    srv_audit(r, "agency.create", target,
              json_pack("{s:s, s:s, s:s, s:I}", "code", code, "name", name, "kind", kind,
                        "parent_id", (json_int_t)parent_id));
    srv_reply_json(r, 201, agency);
    agency = NULL;
    goto out;
store_fail:
    srv_reply_store_error(r, s);
out:
    if (in_tx)
        store_rollback(r->db);
    free(parent_path);
    json_decref(agency);
    json_decref(body);
    return 0;
}

/* The fields of an agency that PATCH may change, read in its transaction. */
struct agency_row {
    int64_t parent_id;
    char path[256];
    char name[NAME_MAX_LEN + 1];
    char kind[17];
    char contact[CONTACT_MAX + 1];
    int64_t expected;
};

static int read_agency_row(struct srv_req *r, int64_t id, struct agency_row *a)
{
    struct store_stmt *st = NULL;
    int s = store_queryf(r->db, &st,
                         "SELECT parent_id, path, name, kind, contact, expected_machines"
                         " FROM agencies WHERE id = $1 AND path LIKE $2",
                         "it", id, r->who.scope_path);

    if (s == STORE_ROW) {
        a->parent_id = store_col_int(st, 0);
        snprintf(a->path, sizeof(a->path), "%s", text_or_empty(st, 1));
        snprintf(a->name, sizeof(a->name), "%s", text_or_empty(st, 2));
        snprintf(a->kind, sizeof(a->kind), "%s", text_or_empty(st, 3));
        snprintf(a->contact, sizeof(a->contact), "%s", text_or_empty(st, 4));
        a->expected = store_col_int(st, 5);
    }
    store_finalize(st);
    return s;
}

static int write_agency_row(struct store_db *db, int64_t id, const struct agency_row *a)
{
    static const char sql[] = "UPDATE agencies SET parent_id = $1, name = $2, kind = $3,"
                              " contact = $4, expected_machines = $5 WHERE id = $6";
    struct store_stmt *st = NULL;
    int s;

    if ((s = store_prepare(db, sql, &st)) < 0)
        goto out;
    if ((s = a->parent_id > 0 ? store_bind_int(st, 1, a->parent_id) : store_bind_null(st, 1)) < 0 ||
        (s = store_bind_text(st, 2, a->name)) < 0 || (s = store_bind_text(st, 3, a->kind)) < 0 ||
        (s = store_bind_text(st, 4, a->contact)) < 0 ||
        (s = store_bind_int(st, 5, a->expected)) < 0 || (s = store_bind_int(st, 6, id)) < 0)
        goto out;
    s = store_step(st);
out:
    store_finalize(st);
    return s < 0 ? s : 0;
}

/* Moves agency `id` (path a->path) under `parent_id` (0: to the top) by
 * rewriting the path prefix of its whole subtree. Replies 400 and returns 1
 * for a move under its own subtree; returns 0 or a negative store code. */
static int move_agency(struct srv_req *r, int64_t id, struct agency_row *a, int64_t parent_id)
{
    char *parent_path = NULL, new_path[256], like[260];
    size_t old_len = strlen(a->path);
    int s = STORE_ESQL;

    if (!path_ok(a->path)) {
        srv_log("agency %" PRId64 " has a malformed path", id);
        goto out;
    }

    if (parent_id > 0) {
        s = agency_path(r->db, parent_id, &parent_path);
        if (s < 0)
            goto out;
        if (s != STORE_ROW || !srv_agency_in_scope(r, parent_id)) {
            srv_reply_field(r, "parent_id", "names no agency");
            s = 1;
            goto out;
        }
        /* The new parent's path starting with ours means it is this agency
         * or one of its descendants: the tree would become a cycle. */
        if (strncmp(parent_path, a->path, old_len) == 0) {
            srv_reply_field(r, "parent_id", "cannot move an agency under itself");
            s = 1;
            goto out;
        }
    }
    if (snprintf(new_path, sizeof(new_path), "%s%" PRId64 "/", parent_path ? parent_path : "/",
                 id) >= (int)sizeof(new_path)) {
        srv_reply_field(r, "parent_id", "the tree would be too deep");
        s = 1;
        goto out;
    }
    snprintf(like, sizeof(like), "%s%%", a->path);
    s = store_execf(r->db, NULL,
                    "UPDATE agencies SET path = $1 || substr(path, CAST($2 AS INTEGER))"
                    " WHERE path LIKE $3",
                    "tit", new_path, (int64_t)old_len + 1, like);
    if (s < 0)
        goto out;
    a->parent_id = parent_id;
    snprintf(a->path, sizeof(a->path), "%s", new_path);
    s = 0;
out:
    free(parent_path);
    return s;
}

int api_agencies_update(struct srv_req *r)
{
    json_t *body = srv_body_json(r), *agency = NULL, *changed = json_object();
    const char *name = NULL, *kind = NULL, *contact = NULL;
    struct agency_row a;
    int64_t id = srv_route_id(r), parent_id = 0, expected = 0;
    int s, in_tx = 0, has_name, has_kind, has_contact, has_expected, has_parent;
    char target[40];

    if (body == NULL)
        goto out;
    if (changed == NULL) {
        s = STORE_ENOMEM;
        goto store_fail;
    }
    if ((has_name = srv_json_str(r, body, "name", 0, NAME_MAX_LEN, &name)) < 0 ||
        (has_kind = srv_json_str(r, body, "kind", 0, 16, &kind)) < 0 ||
        (has_contact = srv_json_str(r, body, "contact", 0, CONTACT_MAX, &contact)) < 0 ||
        (has_expected = srv_json_int(r, body, "expected_machines", 0, 0, 10000000, &expected)) <
            0 ||
        (has_parent = srv_json_int(r, body, "parent_id", 1, 0, INT64_MAX, &parent_id)) < 0)
        goto out;
    if (has_name && name[0] == '\0') {
        srv_reply_field(r, "name", "must not be empty");
        goto out;
    }
    if (has_kind && !valid_kind(kind)) {
        srv_reply_field(r, "kind", "must be province, department, district or agency");
        goto out;
    }
    if ((s = store_begin_write(r->db)) < 0)
        goto store_fail;
    in_tx = 1;
    s = id > 0 ? read_agency_row(r, id, &a) : STORE_DONE;
    if (s < 0)
        goto store_fail;
    if (s != STORE_ROW) {
        srv_reply_error(r, 404, "not_found", "no such agency");
        goto out;
    }
    if (has_name && strcmp(name, a.name) != 0) {
        snprintf(a.name, sizeof(a.name), "%s", name);
        json_object_set_new(changed, "name", json_string(name));
    }
    if (has_kind && strcmp(kind, a.kind) != 0) {
        snprintf(a.kind, sizeof(a.kind), "%s", kind);
        json_object_set_new(changed, "kind", json_string(kind));
    }
    if (has_contact && strcmp(contact, a.contact) != 0) {
        snprintf(a.contact, sizeof(a.contact), "%s", contact);
        json_object_set_new(changed, "contact", json_string(contact));
    }
    if (has_expected && expected != a.expected) {
        a.expected = expected;
        json_object_set_new(changed, "expected_machines", json_integer(expected));
    }
    if (has_parent && parent_id != a.parent_id) {
        json_object_set_new(changed, "parent_id", json_integer(parent_id));
        json_object_set_new(changed, "old_parent_id", json_integer(a.parent_id));
        if ((s = move_agency(r, id, &a, parent_id)) < 0)
            goto store_fail;
        if (s > 0)
            goto out;
    }
    if ((s = write_agency_row(r->db, id, &a)) < 0 || (s = store_commit(r->db)) < 0)
        goto store_fail;
    in_tx = 0;
    if ((s = load_agency(r, id, &agency)) != STORE_ROW) {
        s = s < 0 ? s : STORE_ESQL;
        goto store_fail;
    }
    snprintf(target, sizeof(target), "agency:%" PRId64, id);
    srv_audit(r, "agency.update", target, changed);
    changed = NULL;
    srv_reply_json(r, 200, agency);
    agency = NULL;
    goto out;
store_fail:
    srv_reply_store_error(r, s);
out:
    if (in_tx)
        store_rollback(r->db);
    json_decref(changed);
    json_decref(agency);
    json_decref(body);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Enrollment tokens.                                                        */
/* ------------------------------------------------------------------------ */

int api_enroll_tokens_list(struct srv_req *r)
{
    static const char sql[] =
        "SELECT t.id, t.prefix, t.note, t.expires_at, t.max_uses, t.uses, t.revoked,"
        " t.created_at, u.username"
        " FROM enroll_tokens t LEFT JOIN users u ON u.id = t.created_by"
        " WHERE t.agency_id = $1 ORDER BY t.id DESC LIMIT $2 OFFSET $3";
    struct store_stmt *st = NULL;
    json_t *items = NULL;
    int64_t id = srv_route_id(r), limit, offset, total = 0, now = srv_now();
    int s;

    srv_paging(r, &limit, &offset);
    if (id <= 0 || !srv_agency_in_scope(r, id))
        return srv_reply_error(r, 404, "not_found", "no such agency");
    if ((items = json_array()) == NULL)
        return srv_reply_store_error(r, STORE_ENOMEM);
    s = store_query_int(r->db, &total, "SELECT COUNT(*) FROM enroll_tokens WHERE agency_id = $1",
                        "i", id);
    if (s >= 0)
        s = store_queryf(r->db, &st, sql, "iii", id, limit, offset);
    while (s == STORE_ROW) {
        int64_t expires = store_col_int(st, 3), max_uses = store_col_int(st, 4);
        int64_t uses = store_col_int(st, 5);
        int revoked = store_col_int(st, 6) != 0;
        int active = !revoked && expires > now && (max_uses == 0 || uses < max_uses);
        json_t *t = json_pack("{s:I, s:s, s:s, s:I, s:I, s:I, s:b, s:b, s:I, s:s}", "id",
                              (json_int_t)store_col_int(st, 0), "prefix", text_or_empty(st, 1),
                              "note", text_or_empty(st, 2), "expires_at", (json_int_t)expires,
                              "max_uses", (json_int_t)max_uses, "uses", (json_int_t)uses, "revoked",
                              revoked, "active", active, "created_at",
                              (json_int_t)store_col_int(st, 7), "created_by", text_or_empty(st, 8));
        json_array_append_new(items, t);
        s = store_step(st);
    }
    store_finalize(st);
    if (s < 0) {
        json_decref(items);
        return srv_reply_store_error(r, s);
    }
    return srv_reply_json(r, 200, srv_page_json(items, total, limit, offset));
}

/* The SHA-256 fingerprint of our CA certificate in lowercase hex, so that the
 * officer can check it on the machine being enrolled. 0, or -1 when there is
 * no CA loaded (tests) or it cannot be parsed. */
static int ca_fingerprint(struct srv_req *r, char out[65])
{
    const char *pem = r->srv && r->srv->pki ? srv_pki_ca_pem(r->srv->pki) : NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    X509 *cert = NULL;
    BIO *bio = NULL;
    int rc = -1;

    if (pem == NULL)
        goto out;
    if ((bio = BIO_new_mem_buf(pem, -1)) == NULL ||
        (cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL ||
        X509_digest(cert, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
        goto out;
    sodium_bin2hex(out, 65, md, mdlen);
    rc = 0;
out:
    X509_free(cert);
    BIO_free(bio);
    return rc;
}

/* Writes the command an officer pastes on the machine to enroll it. The URL
 * comes from the server's configuration; it is quoted for the shell unless
 * it holds only characters that need no quoting. */
static void enroll_command(struct srv_req *r, const char *token, char *out, size_t outlen)
{
    const char *url =
        r->srv && r->srv->cfg.public_url[0] ? r->srv->cfg.public_url : "https://SERVER:8443";
    int plain = strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                            ":/._-[]%") == strlen(url);

    if (plain || strchr(url, '\'') != NULL)
        snprintf(out, outlen, "khien-agent enroll --server %s --token %s",
                 plain ? url : "https://SERVER:8443", token);
    else
        snprintf(out, outlen, "khien-agent enroll --server '%s' --token %s", url, token);
}

static int insert_enroll_token(struct srv_req *r, int64_t agency_id, const char *hash,
                               const char *prefix, const char *note, int64_t expires_at,
                               int64_t max_uses, int64_t *id)
{
    static const char sql[] =
        "INSERT INTO enroll_tokens (agency_id, token_hash, prefix, note, expires_at, max_uses,"
        " created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id";
    struct store_stmt *st = NULL;
    int s;

    if ((s = store_prepare(r->db, sql, &st)) < 0)
        goto out;
    if ((s = store_bind_int(st, 1, agency_id)) < 0 || (s = store_bind_text(st, 2, hash)) < 0 ||
        (s = store_bind_text(st, 3, prefix)) < 0 || (s = store_bind_text(st, 4, note)) < 0 ||
        (s = store_bind_int(st, 5, expires_at)) < 0 || (s = store_bind_int(st, 6, max_uses)) < 0 ||
        (s = r->who.user_id > 0 ? store_bind_int(st, 7, r->who.user_id) : store_bind_null(st, 7)) <
            0 ||
        (s = store_bind_int(st, 8, srv_now())) < 0)
        goto out;
    s = store_step(st);
    if (s == STORE_ROW)
        *id = store_col_int(st, 0);
    else if (s >= 0)
        s = STORE_ESQL;
out:
    store_finalize(st);
    return s;
}

int api_enroll_tokens_create(struct srv_req *r)
{
    json_t *body = NULL, *reply = NULL;
    const char *note = "";
    int64_t agency_id = srv_route_id(r), ttl = ENROLL_DEFAULT_TTL, max_uses = 0, id = 0;
    int64_t expires_at;
    char token[80], hash[65], prefix[13], command[512], fp[65], target[48];
    int s;

    token[0] = command[0] = '\0';
    if (agency_id <= 0 || !srv_agency_in_scope(r, agency_id))
        return srv_reply_error(r, 404, "not_found", "no such agency");
    /* Every field has a default, so an empty body is accepted as {}. */
    body = r->body_len == 0 ? json_object() : srv_body_json(r);
    if (body == NULL)
        return 0;
    if (srv_json_int(r, body, "expires_in", 0, ENROLL_MIN_TTL, ENROLL_MAX_TTL, &ttl) < 0 ||
        srv_json_int(r, body, "max_uses", 0, 0, 1000000, &max_uses) < 0 ||
        srv_json_str(r, body, "note", 0, NOTE_MAX, &note) < 0)
        goto out;
    srv_random_token("khe_", token, sizeof(token));
    srv_sha256_hex(token, hash);
    snprintf(prefix, sizeof(prefix), "%.12s", token);
    expires_at = srv_now() + ttl;
    s = insert_enroll_token(r, agency_id, hash, prefix, note, expires_at, max_uses, &id);
    if (s < 0) {
        srv_reply_store_error(r, s);
        goto out;
    }
    enroll_command(r, token, command, sizeof(command));
    reply = json_pack("{s:I, s:I, s:s, s:s, s:s, s:I, s:I, s:s}", "id", (json_int_t)id, "agency_id",
                      (json_int_t)agency_id, "token", token, "prefix", prefix, "note", note,
                      "expires_at", (json_int_t)expires_at, "max_uses", (json_int_t)max_uses,
                      "command", command);
    if (reply != NULL && ca_fingerprint(r, fp) == 0)
        json_object_set_new(reply, "ca_sha256", json_string(fp));
    snprintf(target, sizeof(target), "enroll_token:%" PRId64, id);
    srv_audit(r, "enroll_token.create", target,
              json_pack("{s:I, s:s, s:I, s:I}", "agency_id", (json_int_t)agency_id, "prefix",
                        prefix, "expires_at", (json_int_t)expires_at, "max_uses",
                        (json_int_t)max_uses));
    srv_reply_json(r, 201, reply);
    reply = NULL;
out:
    /* The token left only in the reply; wipe our copies. */
    sodium_memzero(token, sizeof(token));
    sodium_memzero(command, sizeof(command));
    json_decref(reply);
    json_decref(body);
    return 0;
}

int api_enroll_tokens_revoke(struct srv_req *r)
{
    int64_t id = srv_route_id(r), agency_id = 0;
    char target[48];
    int s;

    if (id <= 0)
        return srv_reply_error(r, 404, "not_found", "no such enrollment token");
    s = store_query_int(r->db, &agency_id, "SELECT agency_id FROM enroll_tokens WHERE id = $1", "i",
                        id);
    if (s < 0)
        return srv_reply_store_error(r, s);
    /* A token of an agency outside the caller's scope is answered like a
     * missing one, so its existence is not revealed. */
    if (s != STORE_ROW || !srv_agency_in_scope(r, agency_id))
        return srv_reply_error(r, 404, "not_found", "no such enrollment token");
    s = store_execf(r->db, NULL, "UPDATE enroll_tokens SET revoked = 1 WHERE id = $1", "i", id);
    if (s < 0)
        return srv_reply_store_error(r, s);
    snprintf(target, sizeof(target), "enroll_token:%" PRId64, id);
    srv_audit(r, "enroll_token.revoke", target,
              json_pack("{s:I}", "agency_id", (json_int_t)agency_id));
    return srv_reply_status(r, 204);
}

/* ------------------------------------------------------------------------ */
/* GET, PUT, DELETE /agencies/{id}/policy                                    */
/* ------------------------------------------------------------------------ */

/* Finds agency `id` in the caller's scope for a policy call. STORE_ROW with
 * *top set to 1 when it has no parent, STORE_DONE when it is absent or out
 * of scope, or a negative store code. */
static int policy_agency(struct srv_req *r, int64_t id, int *top)
{
    struct store_stmt *st = NULL;
    int s = STORE_DONE;

    if (id > 0)
        s = store_queryf(r->db, &st,
                         "SELECT parent_id FROM agencies WHERE id = $1 AND path LIKE $2", "it", id,
                         r->who.scope_path);
    if (s == STORE_ROW)
        *top = store_col_is_null(st, 0);
    store_finalize(st);
    return s;
}

/* What all three calls answer: the agency's own policy as it was sent (or
 * null), the complete policy its machines get, where that comes from (this
 * agency, an ancestor, or null for the built-in default) and its version.
 * Returns 0 with *out set, or a negative store code (STORE_EINVAL: a stored
 * policy no longer validates). */
static int policy_view(struct srv_req *r, int64_t id, json_t **out)
{
    static const char own_sql[] =
        "SELECT p.policy, p.updated_at, u.username FROM agency_policies p"
        " LEFT JOIN users u ON u.id = p.updated_by WHERE p.agency_id = $1";
    struct store_stmt *st = NULL;
    json_t *own = NULL, *updated_by = NULL, *effective = NULL, *view = NULL;
    int64_t updated_at = 0, from = 0;
    char version[POLICY_VERSION_LEN + 1];
    int s;

    s = store_queryf(r->db, &st, own_sql, "i", id);
    if (s < 0)
        goto out;
    if (s == STORE_ROW) {
        own = srv_col_json(st, 0, NULL);
        updated_at = store_col_int(st, 1);
        updated_by = srv_col_string(st, 2);
    }
    store_finalize(st);
    st = NULL;
    if ((s = policy_effective(r->db, id, &effective, &from)) < 0) {
        if (s == STORE_EINVAL)
            srv_log("the stored policy of agency %" PRId64 " does not validate", from);
        goto out;
    }
    if (policy_version(effective, version) != 0) {
        s = STORE_ENOMEM;
        goto out;
    }
    view = json_pack("{s:I, s:O?, s:O, s:o, s:s, s:o, s:O?}", "agency_id", (json_int_t)id, "policy",
                     own, "effective", effective, "inherited_from",
                     from > 0 ? json_integer(from) : json_null(), "policy_version", version,
                     "updated_at", own ? json_integer(updated_at) : json_null(), "updated_by",
                     updated_by);
    if (view == NULL) {
        s = STORE_ENOMEM;
        goto out;
    }
    *out = view;
    s = 0;
out:
    store_finalize(st);
    json_decref(own);
    json_decref(updated_by);
    json_decref(effective);
    return s;
}

int api_agency_policy_get(struct srv_req *r)
{
    int64_t id = srv_route_id(r);
    json_t *view = NULL;
    int top = 0, s = policy_agency(r, id, &top);

    if (s < 0)
        return srv_reply_store_error(r, s);
    if (s != STORE_ROW)
        return srv_reply_error(r, 404, "not_found", "no such agency");
    if ((s = policy_view(r, id, &view)) < 0)
        return srv_reply_store_error(r, s);
    return srv_reply_json(r, 200, view);
}

/* The checks PUT and DELETE share: the agency in scope (404 otherwise), and
 * a top-level agency's policy, which every machine below inherits, only for
 * province administrators. Returns 0, or -1 after replying. */
static int policy_may_write(struct srv_req *r, int64_t id)
{
    int top = 0, s = policy_agency(r, id, &top);

    if (s < 0) {
        srv_reply_store_error(r, s);
        return -1;
    }
    if (s != STORE_ROW) {
        srv_reply_error(r, 404, "not_found", "no such agency");
        return -1;
    }
    if (top && r->who.role != SRV_ROLE_ADMIN) {
        srv_reply_error(r, 403, "forbidden",
                        "only a province administrator may set the policy of a top-level agency");
        return -1;
    }
    return 0;
}

int api_agency_policy_put(struct srv_req *r)
{
    static const char upsert_sql[] =
        "INSERT INTO agency_policies (agency_id, policy, updated_at, updated_by)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (agency_id) DO UPDATE SET policy = excluded.policy,"
        " updated_at = excluded.updated_at, updated_by = excluded.updated_by";
    int64_t id = srv_route_id(r);
    json_t *body = NULL, *view = NULL;
    struct policy_error err;
    char *text = NULL, target[40];
    int s, in_tx = 0;

    if (policy_may_write(r, id) != 0)
        return 0;
    if ((body = srv_body_json(r)) == NULL)
        return 0;
    if (json_dumpb(body, NULL, 0, JSON_COMPACT) > POLICY_TEXT_MAX) {
        srv_reply_error(r, 413, "too_large", "a policy is at most %d KiB as compact JSON",
                        POLICY_TEXT_MAX / 1024);
        goto out;
    }
    if ((s = policy_validate(body, &err)) != 0) {
        if (s == KH_EINVAL)
            srv_reply_field(r, err.field, err.problem);
        else
            srv_reply_error(r, 500, "internal", "out of memory");
        goto out;
    }
    /* Kept as sent (compact): the settings it leaves out follow the
     * defaults of whichever version reads it. */
    if ((text = json_dumps(body, JSON_COMPACT)) == NULL) {
        srv_reply_error(r, 500, "internal", "out of memory");
        goto out;
    }
    if ((s = store_begin_write(r->db)) < 0)
        goto store_fail;
    in_tx = 1;
    /* A caller without a user id (none today) is recorded as NULL, which
     * the foreign key allows. */
    s = r->who.user_id > 0
            ? store_execf(r->db, NULL, upsert_sql, "itii", id, text, srv_now(), r->who.user_id)
            : store_execf(r->db, NULL, upsert_sql, "itin", id, text, srv_now());
    if (s < 0)
        goto store_fail;
    snprintf(target, sizeof(target), "agency:%" PRId64, id);
    srv_audit(r, "agency.policy.set", target, json_pack("{s:O}", "policy", body));
    if ((s = store_commit(r->db)) < 0)
        goto store_fail;
    in_tx = 0;
    if ((s = policy_view(r, id, &view)) < 0)
        goto store_fail;
    srv_reply_json(r, 200, view);
    goto out;
store_fail:
    srv_reply_store_error(r, s);
out:
    if (in_tx)
        store_rollback(r->db);
    free(text);
    json_decref(body);
    return 0;
}

int api_agency_policy_delete(struct srv_req *r)
{
    int64_t id = srv_route_id(r), removed = 0;
    json_t *view = NULL;
    char *old = NULL, target[40];
    int s, in_tx = 0;

    if (policy_may_write(r, id) != 0)
        return 0;
    if ((s = store_begin_write(r->db)) < 0)
        goto store_fail;
    in_tx = 1;
    s = store_query_text(r->db, &old, "SELECT policy FROM agency_policies WHERE agency_id = $1",
                         "i", id);
    if (s < 0 || (s = store_execf(r->db, &removed,
                                  "DELETE FROM agency_policies WHERE agency_id = $1", "i", id)) < 0)
        goto store_fail;
    /* Deleting a policy that is not there changes nothing: the answer is
     * the same, and there is nothing to audit. */
    if (removed > 0) {
        json_t *previous = old != NULL ? json_loads(old, 0, NULL) : NULL;
        snprintf(target, sizeof(target), "agency:%" PRId64, id);
        srv_audit(r, "agency.policy.delete", target,
                  json_pack("{s:o}", "previous", previous ? previous : json_null()));
    }
    if ((s = store_commit(r->db)) < 0)
        goto store_fail;
    in_tx = 0;
    if ((s = policy_view(r, id, &view)) < 0)
        goto store_fail;
    srv_reply_json(r, 200, view);
    goto out;
store_fail:
    srv_reply_store_error(r, s);
out:
    if (in_tx)
        store_rollback(r->db);
    free(old);
    return 0;
}
