/*
 * The dashboard's machine pages: the searchable, sortable list of enrolled
 * machines, one machine with its inventory and recent events, its task queue
 * (scan, update, quarantine actions the agent picks up at its next check-in),
 * and the two administrative acts, moving a machine to another agency and
 * retiring it.
 *
 * Every statement restricts machines to the caller's scope through their
 * current agency's path; a machine outside it is answered 404 exactly as if
 * it did not exist. The list must stay fast at 10,000 machines and 1,000,000
 * detections, so a machine's open detections are never counted here: they
 * are machines.open_detections, which ingest.c and api_detection.c keep
 * exact (migration 3).
 */
#include "api.h"
#include "query.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The columns machine_item() reads, in order. */
#define MACHINE_COLS                                                                               \
    "m.id, m.hostname, m.agency_id, a.code, a.name, m.os, m.ips, m.agent_version,"                 \
    " m.db_version, m.db_time, m.rtp, m.last_seen, m.retired, m.open_detections, m.role"

static const struct srv_sort machine_sorts[] = {
    {"hostname", "m.hostname ASC, m.id ASC", "m.hostname DESC, m.id DESC", 0},
    {"last_seen", "m.last_seen ASC, m.id ASC", "m.last_seen DESC, m.id ASC", 1},
    {"agency", "a.name ASC, m.hostname ASC, m.id ASC", "a.name DESC, m.hostname ASC, m.id ASC", 0},
    {"db_version", "m.db_version ASC, m.hostname ASC, m.id ASC",
     "m.db_version DESC, m.hostname ASC, m.id ASC", 0},
    {"detections", "m.open_detections ASC, m.hostname ASC, m.id ASC",
     "m.open_detections DESC, m.hostname ASC, m.id ASC", 1},
    {NULL, NULL, NULL, 0},
};

enum { TASK_PATHS_MAX = 64, TASK_PATH_LEN = 4096, QUARANTINE_ID_LEN = 128 };

/* The list's filters, parsed and checked once, then applied to both the
 * count and the page query. */
struct machine_filter {
    char agency_path[256]; /* "" = no agency filter */
    const char *status;    /* NULL or one of the documented words */
    char q_sub[2 * SRV_SEARCH_MAX + 4];
    char q_prefix[2 * SRV_SEARCH_MAX + 4];
    int64_t now;
    int64_t online_cut;
    int64_t outdated_cut;
};

/* Builds a machine's summary from a row of MACHINE_COLS. */
static json_t *machine_item(struct srv_req *r, struct store_stmt *st, int64_t now)
{
    int64_t last_seen = store_col_int(st, 11);
    int retired = store_col_int(st, 12) != 0;
    int online = !retired && last_seen > 0 && last_seen >= now - (int64_t)r->srv->cfg.offline_after;

    return json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:o, s:b, s:I, s:b, s:b, s:I, s:o}", "id",
        srv_col_string(st, 0), "hostname", srv_col_string(st, 1), "agency", srv_col_agency(st, 2),
        "os", srv_col_string(st, 5), "ips", srv_words_json(store_col_text(st, 6)), "agent_version",
        srv_col_string(st, 7), "db_version", (json_int_t)store_col_int(st, 8), "db_age_days",
        srv_age_days(now, store_col_int(st, 9)), "rtp", store_col_int(st, 10) != 0, "last_seen",
        (json_int_t)last_seen, "online", online, "retired", retired, "open_detections",
        (json_int_t)store_col_int(st, 13), "role", srv_col_string(st, 14));
}

/* Reads and checks ?q=, ?agency= and ?status=. Replies and returns -1 on a
 * bad value. */
static int machine_filter_parse(struct srv_req *r, struct machine_filter *f)
{
    static const char *const statuses[] = {"online", "offline", "infected", "outdated", "retired"};
    const char *q, *status;
    int64_t agency = 0;
    int rc;

    memset(f, 0, sizeof(*f));
    f->now = srv_now();
    f->online_cut = f->now - (int64_t)r->srv->cfg.offline_after;
    f->outdated_cut = f->now - (int64_t)SRV_OUTDATED_DAYS * 86400;
    /* Each parameter is used before the next is read (see srv_qparam). */
    if ((q = srv_qparam(r, "q")) != NULL) {
        if (strlen(q) > SRV_SEARCH_MAX || srv_like_pattern(q, 0, f->q_sub, sizeof(f->q_sub)) != 0 ||
            srv_like_pattern(q, 1, f->q_prefix, sizeof(f->q_prefix)) != 0) {
            srv_reply_field(r, "q", "at most 200 bytes");
            return -1;
        }
    }
    if ((status = srv_qparam(r, "status")) != NULL) {
        for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
            if (strcmp(status, statuses[i]) == 0)
                f->status = statuses[i];
        if (f->status == NULL) {
            srv_reply_field(r, "status", "one of online, offline, infected, outdated, retired");
            return -1;
        }
    }
    if ((rc = srv_qparam_int(r, "agency", 1, INT64_MAX, &agency)) < 0) {
        srv_reply_field(r, "agency", "an agency id");
        return -1;
    }
    if (rc > 0) {
        rc = srv_agency_path(r, agency, f->agency_path, sizeof(f->agency_path) - 1);
        if (rc < 0) {
            srv_reply_store_error(r, rc);
            return -1;
        }
        if (rc == 0) {
            srv_reply_error(r, 404, "not_found", "no agency %" PRId64, agency);
            return -1;
        }
        /* Agency paths end in '/', so appending '%' selects the subtree. */
        strcat(f->agency_path, "%");
    }
    return 0;
}

/* Appends the WHERE clause for the filters; the FROM clause must name
 * machines m and agencies a. */
static void machine_where(struct srv_sql *q, const struct srv_req *r,
                          const struct machine_filter *f)
{
    srv_sql_add(q, " WHERE 1=1");
    srv_sql_scope(q, r, "a.path");
    if (f->agency_path[0] != '\0') {
        srv_sql_add(q, " AND a.path LIKE ");
        srv_sql_text(q, f->agency_path);
    }
    if (f->status != NULL && strcmp(f->status, "retired") == 0) {
        srv_sql_add(q, " AND m.retired = 1");
    } else {
        srv_sql_add(q, " AND m.retired = 0");
        if (f->status == NULL) {
            /* Every machine in service. */
        } else if (strcmp(f->status, "online") == 0) {
            srv_sql_add(q, " AND m.last_seen >= ");
            srv_sql_int(q, f->online_cut);
        } else if (strcmp(f->status, "offline") == 0) {
            srv_sql_add(q, " AND m.last_seen < ");
            srv_sql_int(q, f->online_cut);
        } else if (strcmp(f->status, "infected") == 0) {
            srv_sql_add(q, " AND m.open_detections > 0");
        } else if (strcmp(f->status, "outdated") == 0) {
            srv_sql_add(q, " AND m.db_time < ");
            srv_sql_int(q, f->outdated_cut);
        }
    }
    if (f->q_sub[0] != '\0') {
        int n;
        srv_sql_add(q, " AND (lower(m.hostname) LIKE lower(");
        n = srv_sql_text(q, f->q_sub);
        srv_sql_add(q, ") ESCAPE '\\' OR lower(m.ips) LIKE lower(");
        srv_sql_ref(q, n);
        srv_sql_add(q, ") ESCAPE '\\' OR lower(m.id) LIKE lower(");
        srv_sql_text(q, f->q_prefix);
        srv_sql_add(q, ") ESCAPE '\\')");
    }
}

/* Appends FROM, WHERE, ORDER BY and LIMIT for one page of the list.
 * Returns -1 naming the bad sort parameter in *bad. */
static int machine_page_tail(struct srv_sql *q, const struct srv_req *r,
                             const struct machine_filter *f, const char *sort, const char *order,
                             int64_t limit, int64_t offset, const char **bad)
{
    srv_sql_add(q, " FROM machines m JOIN agencies a ON a.id = m.agency_id");
    machine_where(q, r, f);
    if (srv_sql_order(q, machine_sorts, sort, order, bad) != 0)
        return -1;
    srv_sql_add(q, " LIMIT ");
    srv_sql_int(q, limit);
    srv_sql_add(q, " OFFSET ");
    srv_sql_int(q, offset);
    return 0;
}

int api_machines_list(struct srv_req *r)
{
    struct machine_filter f;
    struct srv_sql page, count;
    struct store_stmt *st = NULL;
    json_t *items = NULL;
    const char *bad = NULL, *sortp, *orderp;
    char sort[16], order[8];
    int64_t limit = 50, offset = 0, total = 0;
    int rc;

    srv_sql_init(&page);
    srv_sql_init(&count);
    if (machine_filter_parse(r, &f) != 0)
        goto out;
    srv_paging(r, &limit, &offset);
    /* A value too long for the buffer is no whitelisted word either; "?"
     * makes srv_sql_order() reject it. */
    if (srv_qparam_copy(r, "sort", sort, sizeof(sort)) < 0)
        strcpy(sort, "?");
    if (srv_qparam_copy(r, "order", order, sizeof(order)) < 0)
        strcpy(order, "?");
    sortp = sort[0] != '\0' ? sort : NULL;
    orderp = order[0] != '\0' ? order : NULL;

    srv_sql_add(&page, "SELECT " MACHINE_COLS);
    if (machine_page_tail(&page, r, &f, sortp, orderp, limit, offset, &bad) != 0) {
        srv_reply_field(r, bad,
                        strcmp(bad, "sort") == 0
                            ? "one of hostname, last_seen, agency, db_version, detections"
                            : "asc or desc");
        goto out;
    }

    srv_sql_add(&count, "SELECT count(*) FROM machines m JOIN agencies a ON a.id = m.agency_id");
    machine_where(&count, r, &f);
    if ((rc = srv_sql_prepare(r->db, &count, &st)) != 0 || (rc = store_step(st)) < 0)
        goto store_fail;
    total = store_col_int(st, 0);
    store_finalize(st);
    st = NULL;

    if ((rc = srv_sql_prepare(r->db, &page, &st)) != 0)
        goto store_fail;
    if ((items = json_array()) == NULL)
        goto oom;
    while ((rc = store_step(st)) == STORE_ROW)
        if (json_array_append_new(items, machine_item(r, st, f.now)) != 0)
            goto oom;
    if (rc < 0)
        goto store_fail;
    store_finalize(st);
    st = NULL;
    srv_reply_json(r, 200, srv_page_json(items, total, limit, offset));
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
    srv_sql_clear(&page);
    srv_sql_clear(&count);
    return 0;
}

/* Looks up a machine in the caller's scope. Returns 1 (with *retired set),
 * 0 when absent or out of scope, or a negative STORE_E* code. */
static int machine_lookup(struct srv_req *r, const char *id, int *retired, int64_t *agency_id)
{
    struct srv_sql q;
    struct store_stmt *st = NULL;
    int rc;

    srv_sql_init(&q);
    srv_sql_add(&q, "SELECT m.retired, m.agency_id FROM machines m"
                    " JOIN agencies a ON a.id = m.agency_id WHERE m.id = ");
    srv_sql_text(&q, id);
    srv_sql_scope(&q, r, "a.path");
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0)
        goto out;
    if ((rc = store_step(st)) == STORE_ROW) {
        if (retired != NULL)
            *retired = store_col_int(st, 0) != 0;
        if (agency_id != NULL)
            *agency_id = store_col_int(st, 1);
        rc = 1;
    }
out:
    store_finalize(st);
    srv_sql_clear(&q);
    return rc;
}

/* Appends the machine's last events, newest first, to `m` as "recent_events". */
static int machine_events(struct srv_req *r, const char *id, json_t *m)
{
    struct store_stmt *st = NULL;
    json_t *events = json_array();
    int rc;

    if (events == NULL)
        return STORE_ENOMEM;
    rc = store_queryf(r->db, &st,
                      "SELECT event_id, type, at, received_at, data FROM events"
                      " WHERE machine_id = $1 ORDER BY at DESC, received_at DESC LIMIT 20",
                      "t", id);
    while (rc == STORE_ROW) {
        json_array_append_new(
            events,
            json_pack("{s:o, s:o, s:I, s:I, s:o}", "id", srv_col_string(st, 0), "type",
                      srv_col_string(st, 1), "at", (json_int_t)store_col_int(st, 2), "received_at",
                      (json_int_t)store_col_int(st, 3), "data", srv_col_json(st, 4, "{}")));
        rc = store_step(st);
    }
    store_finalize(st);
    json_object_set_new(m, "recent_events", events);
    return rc < 0 ? rc : 0;
}

int api_machines_get(struct srv_req *r)
{
    const char *id = srv_param_machine(r, 0);
    struct srv_sql q;
    struct store_stmt *st = NULL;
    json_t *m = NULL;
    int64_t now = srv_now();
    int rc;

    srv_sql_init(&q);
    if (id == NULL) {
        srv_reply_error(r, 404, "not_found", "no such machine");
        goto out;
    }
    srv_sql_add(&q, "SELECT " MACHINE_COLS ", m.kernel, m.arch, m.macs,"
                    " m.firewall, m.last_full_scan, m.enrolled_at, m.cert_serial, m.inventory"
                    " FROM machines m JOIN agencies a ON a.id = m.agency_id WHERE m.id = ");
    srv_sql_text(&q, id);
    srv_sql_scope(&q, r, "a.path");
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0 || (rc = store_step(st)) < 0) {
        srv_reply_store_error(r, rc);
        goto out;
    }
    if (rc != STORE_ROW) {
        srv_reply_error(r, 404, "not_found", "no such machine");
        goto out;
    }
    if ((m = machine_item(r, st, now)) == NULL) {
        srv_reply_error(r, 500, "internal", "out of memory");
        goto out;
    }
    json_object_set_new(m, "kernel", srv_col_string(st, 15));
    json_object_set_new(m, "arch", srv_col_string(st, 16));
    json_object_set_new(m, "macs", srv_words_json(store_col_text(st, 17)));
    json_object_set_new(m, "firewall", json_boolean(store_col_int(st, 18) != 0));
    json_object_set_new(m, "last_full_scan", json_integer(store_col_int(st, 19)));
    json_object_set_new(m, "enrolled_at", json_integer(store_col_int(st, 20)));
    json_object_set_new(m, "cert_serial", srv_col_string(st, 21));
    json_object_set_new(m, "db_time", json_integer(store_col_int(st, 9)));
    json_object_set_new(m, "inventory", srv_col_json(st, 22, "{}"));
    store_finalize(st);
    st = NULL;
    if ((rc = machine_events(r, id, m)) != 0) {
        srv_reply_store_error(r, rc);
        goto out;
    }
    srv_reply_json(r, 200, m);
    m = NULL;
out:
    json_decref(m);
    store_finalize(st);
    srv_sql_clear(&q);
    return 0;
}

int api_machines_tasks_list(struct srv_req *r)
{
    const char *id = srv_param_machine(r, 0);
    struct store_stmt *st = NULL;
    json_t *items = NULL;
    int64_t limit = 50, offset = 0, total = 0;
    int rc;

    if (id == NULL || (rc = machine_lookup(r, id, NULL, NULL)) == 0)
        return srv_reply_error(r, 404, "not_found", "no such machine");
    if (rc < 0)
        return srv_reply_store_error(r, rc);
    srv_paging(r, &limit, &offset);
    if ((rc = store_query_int(r->db, &total, "SELECT count(*) FROM tasks WHERE machine_id = $1",
                              "t", id)) < 0)
        return srv_reply_store_error(r, rc);
    if ((items = json_array()) == NULL)
        return srv_reply_error(r, 500, "internal", "out of memory");
    rc = store_queryf(r->db, &st,
                      "SELECT t.id, t.kind, t.args, t.state, u.username, t.created_at, t.sent_at,"
                      " t.done_at, t.progress, t.result FROM tasks t"
                      " LEFT JOIN users u ON u.id = t.created_by WHERE t.machine_id = $1"
                      " ORDER BY t.id DESC LIMIT $2 OFFSET $3",
                      "tii", id, limit, offset);
    while (rc == STORE_ROW) {
        json_array_append_new(
            items,
            json_pack("{s:I, s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:I, s:o}", "id",
                      (json_int_t)store_col_int(st, 0), "kind", srv_col_string(st, 1), "args",
                      srv_col_json(st, 2, "{}"), "state", srv_col_string(st, 3), "created_by",
                      srv_col_string(st, 4), "created_at", (json_int_t)store_col_int(st, 5),
                      "sent_at", srv_col_intn(st, 6), "done_at", srv_col_intn(st, 7), "progress",
                      (json_int_t)store_col_int(st, 8), "result", srv_col_json(st, 9, NULL)));
        rc = store_step(st);
    }
    store_finalize(st);
    if (rc < 0) {
        json_decref(items);
        return srv_reply_store_error(r, rc);
    }
    return srv_reply_json(r, 200, srv_page_json(items, total, limit, offset));
}

/* Checks a task's arguments for `kind` and returns a clean copy holding only
 * the known keys, or replies 400 and returns NULL. The agent acts on these,
 * so nothing unexpected is passed through. */
static json_t *task_args_check(struct srv_req *r, const char *kind, json_t *args)
{
    json_t *clean = json_object();
    const char *key;
    json_t *v;

    if (clean == NULL) {
        srv_reply_error(r, 500, "internal", "out of memory");
        return NULL;
    }
    if (args != NULL && !json_is_object(args)) {
        srv_reply_field(r, "args", "must be an object");
        goto bad;
    }
    json_object_foreach(args, key, v)
    {
        if (strcmp(kind, "scan") == 0 && strcmp(key, "paths") == 0) {
            size_t i;
            json_t *p;
            if (!json_is_array(v) || json_array_size(v) > TASK_PATHS_MAX) {
                srv_reply_field(r, "args.paths", "a list of at most 64 paths");
                goto bad;
            }
            json_array_foreach(v, i, p)
            {
                size_t n = json_is_string(p) ? json_string_length(p) : 0;
                if (n == 0 || n > TASK_PATH_LEN || strlen(json_string_value(p)) != n) {
                    srv_reply_field(r, "args.paths", "each path is a non-empty string");
                    goto bad;
                }
            }
        } else if (strcmp(kind, "scan") == 0 && strcmp(key, "full") == 0) {
            if (!json_is_boolean(v)) {
                srv_reply_field(r, "args.full", "must be true or false");
                goto bad;
            }
        } else if (strncmp(kind, "quarantine_", 11) == 0 && strcmp(key, "quarantine_id") == 0) {
            const char *s = json_string_value(v);
            size_t n = s != NULL ? strlen(s) : 0;
            if (n == 0 || n > QUARANTINE_ID_LEN || n != json_string_length(v) ||
                strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
                    n) {
                srv_reply_field(r, "args.quarantine_id", "letters, digits, '.', '_' and '-'");
                goto bad;
            }
        } else {
            char field[80];
            snprintf(field, sizeof(field), "args.%.64s", key);
            srv_reply_field(r, field, "not an argument of this kind of task");
            goto bad;
        }
        json_object_set(clean, key, v);
    }
    if (strncmp(kind, "quarantine_", 11) == 0 && json_object_get(clean, "quarantine_id") == NULL) {
        srv_reply_field(r, "args.quarantine_id", "required");
        goto bad;
    }
    return clean;
bad:
    json_decref(clean);
    return NULL;
}

#define TASK_INSERT                                                                                \
    "INSERT INTO tasks (machine_id, kind, args, state, created_by, created_at)"                    \
    " VALUES ($1, $2, $3, 'pending', $4, $5) RETURNING id"

int api_machines_tasks_create(struct srv_req *r)
{
    static const char *const kinds[] = {"scan", "update", "quarantine_restore",
                                        "quarantine_delete"};
    const char *id = srv_param_machine(r, 0);
    json_t *body = NULL, *args = NULL, *task = NULL;
    const char *kind = NULL, *word;
    char *args_text = NULL, target[80];
    int64_t task_id = 0, now = srv_now();
    int retired = 0, rc;

    if (id == NULL) {
        srv_reply_error(r, 404, "not_found", "no such machine");
        goto out;
    }
    if ((body = srv_body_json(r)) == NULL)
        goto out;
    word = json_string_value(json_object_get(body, "kind"));
    for (size_t i = 0; word != NULL && i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(word, kinds[i]) == 0)
            kind = kinds[i];
    if (kind == NULL) {
        srv_reply_field(r, "kind", "one of scan, update, quarantine_restore, quarantine_delete");
        goto out;
    }
    if ((args = task_args_check(r, kind, json_object_get(body, "args"))) == NULL)
        goto out;
    if ((args_text = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
        srv_reply_error(r, 500, "internal", "out of memory");
        goto out;
    }

    /* The retired check and the insert share one write transaction so a
     * machine retired meanwhile cannot receive a task. */
    if ((rc = store_begin_write(r->db)) != 0)
        goto store_fail;
    if ((rc = machine_lookup(r, id, &retired, NULL)) < 0)
        goto store_fail;
    if (rc == 0 || retired) {
        store_rollback(r->db);
        if (rc == 0)
            srv_reply_error(r, 404, "not_found", "no such machine");
        else
            srv_reply_error(r, 409, "conflict", "the machine is retired");
        goto out;
    }
    /* An API caller without a user row (user_id 0) leaves created_by NULL. */
    if (r->who.user_id > 0)
        rc = store_query_int(r->db, &task_id, TASK_INSERT, "tttii", id, kind, args_text,
                             r->who.user_id, now);
    else
        rc = store_query_int(r->db, &task_id, TASK_INSERT, "tttni", id, kind, args_text, now);
    if (rc < 0)
        goto store_fail;
    /* Written inside the transaction, the audit row commits with the task. */
    snprintf(target, sizeof(target), "machine:%s", id);
    srv_audit(
        r, "task.create", target,
        json_pack("{s:I, s:s, s:O}", "task_id", (json_int_t)task_id, "kind", kind, "args", args));
    if ((rc = store_commit(r->db)) != 0)
        goto store_fail;
    task = json_pack("{s:I, s:s, s:O, s:s, s:I}", "id", (json_int_t)task_id, "kind", kind, "args",
                     args, "state", "pending", "created_at", (json_int_t)now);
    srv_reply_json(r, 201, task);
    goto out;
store_fail:
    store_rollback(r->db);
    srv_reply_store_error(r, rc);
out:
    free(args_text);
    json_decref(args);
    json_decref(body);
    return 0;
}

int api_machines_move(struct srv_req *r)
{
    const char *id = srv_param_machine(r, 0);
    json_t *body = NULL, *jaid;
    struct store_stmt *st = NULL;
    char path[256], target[80];
    int64_t to = 0, from = 0;
    int rc;

    if (id == NULL) {
        srv_reply_error(r, 404, "not_found", "no such machine");
        goto out;
    }
    if ((body = srv_body_json(r)) == NULL)
        goto out;
    jaid = json_object_get(body, "agency_id");
    if (!json_is_integer(jaid) || (to = json_integer_value(jaid)) <= 0) {
        srv_reply_field(r, "agency_id", "an agency id");
        goto out;
    }
    if ((rc = store_begin_write(r->db)) != 0)
        goto store_fail;
    if ((rc = machine_lookup(r, id, NULL, &from)) < 0)
        goto store_fail;
    if (rc == 0) {
        store_rollback(r->db);
        srv_reply_error(r, 404, "not_found", "no such machine");
        goto out;
    }
    /* The target must be in the caller's scope too: an officer cannot hand
     * a machine to an agency it cannot see. */
    if ((rc = srv_agency_path(r, to, path, sizeof(path))) < 0)
        goto store_fail;
    if (rc == 0) {
        store_rollback(r->db);
        srv_reply_error(r, 404, "not_found", "no agency %" PRId64, to);
        goto out;
    }
    /* Detections keep the agency they were detected in; only the machine's
     * current home changes. */
    if ((rc = store_execf(r->db, NULL, "UPDATE machines SET agency_id = $1 WHERE id = $2", "it", to,
                          id)) != 0)
        goto store_fail;
    snprintf(target, sizeof(target), "machine:%s", id);
    srv_audit(r, "machine.move", target,
              json_pack("{s:I, s:I}", "from", (json_int_t)from, "to", (json_int_t)to));
    if ((rc = store_commit(r->db)) != 0)
        goto store_fail;
    rc = store_queryf(r->db, &st, "SELECT id, code, name FROM agencies WHERE id = $1", "i", to);
    if (rc < 0)
        goto store_fail;
    srv_reply_json(r, 200,
                   json_pack("{s:s, s:o}", "id", id, "agency",
                             rc == STORE_ROW ? srv_col_agency(st, 0) : json_null()));
    goto out;
store_fail:
    store_rollback(r->db);
    srv_reply_store_error(r, rc);
out:
    store_finalize(st);
    json_decref(body);
    return 0;
}

int api_machines_retire(struct srv_req *r)
{
    const char *id = srv_param_machine(r, 0);
    int64_t cancelled = 0, now = srv_now();
    char target[80];
    int rc;

    if (id == NULL)
        return srv_reply_error(r, 404, "not_found", "no such machine");
    if ((rc = store_begin_write(r->db)) != 0)
        goto store_fail;
    if ((rc = machine_lookup(r, id, NULL, NULL)) < 0)
        goto store_fail;
    if (rc == 0) {
        store_rollback(r->db);
        return srv_reply_error(r, 404, "not_found", "no such machine");
    }
    /* Clearing the certificate fingerprint is what makes the agent's
     * certificate stop working (srv_auth_agent compares it); pending tasks
     * would never be collected, so they are cancelled. */
    if ((rc = store_execf(r->db, NULL,
                          "UPDATE machines SET retired = 1, cert_sha256 = '' WHERE id = $1", "t",
                          id)) != 0)
        goto store_fail;
    if ((rc = store_execf(r->db, &cancelled,
                          "UPDATE tasks SET state = 'cancelled', done_at = $1"
                          " WHERE machine_id = $2 AND state IN ('pending','sent')",
                          "it", now, id)) != 0)
        goto store_fail;
    snprintf(target, sizeof(target), "machine:%s", id);
    srv_audit(r, "machine.retire", target,
              json_pack("{s:I}", "tasks_cancelled", (json_int_t)cancelled));
    if ((rc = store_commit(r->db)) != 0)
        goto store_fail;
    return srv_reply_json(r, 200,
                          json_pack("{s:s, s:b, s:I}", "id", id, "retired", 1, "tasks_cancelled",
                                    (json_int_t)cancelled));
store_fail:
    store_rollback(r->db);
    return srv_reply_store_error(r, rc);
}
