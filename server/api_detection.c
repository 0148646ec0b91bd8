/*
 * The dashboard's detections: the filtered list (newest first), one
 * detection with its workflow notes, and the workflow itself, where an
 * officer moves a detection between new, acknowledged, resolved and
 * false_positive, leaving a note each time.
 *
 * A detection belongs to the agency its machine was in when it was detected
 * (detections.agency_id), so scope is checked against that agency, not the
 * machine's current one: moving a machine does not move its history.
 *
 * The list is written for a million rows: the page itself walks the
 * detected_at index and stops after one page, and the total is counted with
 * the same filters but capped at 100,000 rows, beyond which the answer says
 * "total_capped" instead of counting on.
 *
 * A status change that opens or closes a detection (open = new or
 * acknowledged) also moves the running figures of migration 3, in the same
 * transaction, so that they stay equal to a count of the detections.
 */
#include "api.h"
#include "query.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { COUNT_CAP = 100000, NOTE_MAX_CHARS = 2000, FAMILY_MAX = 200 };

/* The columns detection_item() reads, in order. */
#define DETECTION_COLS                                                                             \
    "d.id, d.detected_at, d.machine_id, m.hostname, d.agency_id, a.code, a.name, d.path,"          \
    " d.signature, d.family, d.action, d.status, d.sha256"
#define DETECTION_FROM                                                                             \
    " FROM detections d JOIN agencies a ON a.id = d.agency_id JOIN machines m ON m.id = "          \
    "d.machine_id"

static const char *const detection_statuses[] = {"new", "acknowledged", "resolved",
                                                 "false_positive"};

struct detection_filter {
    const char *status; /* NULL, one of detection_statuses, or "open" */
    char agency_path[256];
    char machine[65];
    char family[FAMILY_MAX + 1];
    char q_sub[2 * SRV_SEARCH_MAX + 4];
    int has_from, has_to;
    int64_t from, to;
};

static const char *status_word(const char *s)
{
    for (size_t i = 0; i < sizeof(detection_statuses) / sizeof(detection_statuses[0]); i++)
        if (s != NULL && strcmp(s, detection_statuses[i]) == 0)
            return detection_statuses[i];
    return NULL;
}

static json_t *detection_item(struct store_stmt *st)
{
    return json_pack("{s:I, s:I, s:{s:o, s:o}, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id",
                     (json_int_t)store_col_int(st, 0), "detected_at",
                     (json_int_t)store_col_int(st, 1), "machine", "id", srv_col_string(st, 2),
                     "hostname", srv_col_string(st, 3), "agency", srv_col_agency(st, 4), "path",
                     srv_col_string(st, 7), "signature", srv_col_string(st, 8), "family",
                     srv_col_string(st, 9), "action", srv_col_string(st, 10), "status",
                     srv_col_string(st, 11), "sha256", srv_col_string(st, 12));
}

/* Reads and checks the list's filters. Replies and returns -1 on a bad
 * value. */
static int detection_filter_parse(struct srv_req *r, struct detection_filter *f)
{
    const char *status, *q;
    int64_t agency = 0;
    int rc;

    memset(f, 0, sizeof(*f));
    /* Each parameter is used or copied before the next is read (see
     * srv_qparam). */
    if ((status = srv_qparam(r, "status")) != NULL) {
        f->status = strcmp(status, "open") == 0 ? "open" : status_word(status);
        if (f->status == NULL) {
            srv_reply_field(r, "status",
                            "one of new, acknowledged, resolved, false_positive, open");
            return -1;
        }
    }
    if ((q = srv_qparam(r, "q")) != NULL &&
        (strlen(q) > SRV_SEARCH_MAX || srv_like_pattern(q, 0, f->q_sub, sizeof(f->q_sub)) != 0)) {
        srv_reply_field(r, "q", "at most 200 bytes");
        return -1;
    }
    if (srv_qparam_copy(r, "machine", f->machine, sizeof(f->machine)) < 0) {
        srv_reply_field(r, "machine", "a machine id");
        return -1;
    }
    if (srv_qparam_copy(r, "family", f->family, sizeof(f->family)) < 0) {
        srv_reply_field(r, "family", "at most 200 bytes");
        return -1;
    }
    if ((f->has_from = srv_qparam_int(r, "from", 0, INT64_MAX, &f->from)) < 0) {
        srv_reply_field(r, "from", "Unix seconds");
        return -1;
    }
    if ((f->has_to = srv_qparam_int(r, "to", 0, INT64_MAX, &f->to)) < 0) {
        srv_reply_field(r, "to", "Unix seconds");
        return -1;
    }
    if ((rc = srv_qparam_int(r, "agency", 1, INT64_MAX, &agency)) < 0) {
        srv_reply_field(r, "agency", "an agency id");
        return -1;
    }
    if (rc > 0) {
        rc = srv_agency_path(r, agency, f->agency_path, sizeof(f->agency_path) - 1);
        if (rc <= 0) {
            if (rc < 0)
                srv_reply_store_error(r, rc);
            else
                srv_reply_error(r, 404, "not_found", "no agency %" PRId64, agency);
            return -1;
        }
        strcat(f->agency_path, "%");
    }
    return 0;
}

/* Appends the WHERE clause. The FROM clause names detections d and, unless
 * `agency_set` is set, agencies a; with it, the scope and the agency filter
 * become a set of agency ids (see detection_count()). */
static void detection_where(struct srv_sql *q, const struct srv_req *r,
                            const struct detection_filter *f, int agency_set)
{
    /* The whole province without an agency filter needs no agency at all. */
    agency_set = agency_set && (strcmp(r->who.scope_path, "%") != 0 || f->agency_path[0] != '\0');
    srv_sql_add(q, " WHERE 1=1");
    if (agency_set)
        srv_sql_add(q, " AND d.agency_id IN (SELECT a.id FROM agencies a WHERE 1=1");
    srv_sql_scope(q, r, "a.path");
    if (f->agency_path[0] != '\0') {
        srv_sql_add(q, " AND a.path LIKE ");
        srv_sql_text(q, f->agency_path);
    }
    if (agency_set)
        srv_sql_add(q, ")");
    if (f->status != NULL && strcmp(f->status, "open") == 0) {
        srv_sql_add(q, " AND d.status IN " SRV_OPEN_STATUSES);
    } else if (f->status != NULL) {
        srv_sql_add(q, " AND d.status = ");
        srv_sql_text(q, f->status);
    }
    if (f->machine[0] != '\0') {
        srv_sql_add(q, " AND d.machine_id = ");
        srv_sql_text(q, f->machine);
    }
    if (f->family[0] != '\0') {
        srv_sql_add(q, " AND d.family = ");
        srv_sql_text(q, f->family);
    }
    if (f->has_from) {
        srv_sql_add(q, " AND d.detected_at >= ");
        srv_sql_int(q, f->from);
    }
    if (f->has_to) {
        srv_sql_add(q, " AND d.detected_at < ");
        srv_sql_int(q, f->to);
    }
    if (f->q_sub[0] != '\0') {
        int n;
        srv_sql_add(q, " AND (lower(d.path) LIKE lower(");
        n = srv_sql_text(q, f->q_sub);
        srv_sql_add(q, ") ESCAPE '\\' OR lower(d.signature) LIKE lower(");
        srv_sql_ref(q, n);
        /* The few machines whose name matches are found once, rather than
         * joining a machine to each of a million detections. */
        srv_sql_add(q, ") ESCAPE '\\' OR d.machine_id IN (SELECT id FROM machines"
                       " WHERE lower(hostname) LIKE lower(");
        srv_sql_ref(q, n);
        srv_sql_add(q, ") ESCAPE '\\'))");
    }
}

/* Counts matching detections up to COUNT_CAP + 1. The scope is a set of
 * agency ids rather than a join, so that a count of one status in part of
 * the province reads the (status, agency_id) index for each agency in it
 * (10 ms for 100,000 rows on SQLite, against 2.3 s when it walked the status
 * index and looked up each row's agency), and a province-wide count of one
 * status reads the status index alone. */
static int detection_count(struct srv_req *r, const struct detection_filter *f, int64_t *total)
{
    struct srv_sql q;
    struct store_stmt *st = NULL;
    int rc;

    srv_sql_init(&q);
    srv_sql_add(&q, "SELECT count(*) FROM (SELECT 1 FROM detections d");
    detection_where(&q, r, f, 1);
    srv_sql_add(&q, " LIMIT ");
    srv_sql_int(&q, COUNT_CAP + 1);
    srv_sql_add(&q, ") c");
    if ((rc = srv_sql_prepare(r->db, &q, &st)) == 0 && (rc = store_step(st)) >= 0) {
        *total = store_col_int(st, 0);
        rc = 0;
    }
    store_finalize(st);
    srv_sql_clear(&q);
    return rc;
}

/* Appends one status's newest `want` detection ids matching the filters,
 * as a subquery "(SELECT d.id ... LIMIT want) alias". */
static void open_ids(struct srv_sql *q, const struct srv_req *r, const struct detection_filter *f,
                     const char *status, int64_t want, const char *alias)
{
    struct detection_filter one = *f;

    one.status = status;
    srv_sql_add(q, "(SELECT d.id FROM detections d");
    if (strcmp(r->who.scope_path, "%") != 0 || f->agency_path[0] != '\0')
        srv_sql_add(q, " JOIN agencies a ON a.id = d.agency_id");
    detection_where(q, r, &one, 0);
    srv_sql_add(q, " ORDER BY d.detected_at DESC, d.id DESC LIMIT ");
    srv_sql_int(q, want);
    srv_sql_add(q, ") ");
    srv_sql_add(q, alias);
}

/* Appends the page's WHERE clause. For status=open, SQLite would sort every
 * open detection to find the newest (new and acknowledged are two ranges of
 * the status index, neither in time order with the other): 6 s when most of
 * a million are open. So each status's newest offset + limit are taken from
 * its own range, newest first, and the page is cut from those. */
static void page_where(struct srv_sql *q, const struct srv_req *r, const struct detection_filter *f,
                       int64_t limit, int64_t offset)
{
    if (f->status == NULL || strcmp(f->status, "open") != 0) {
        detection_where(q, r, f, 0);
        return;
    }
    srv_sql_add(q, " WHERE d.id IN (SELECT n.id FROM ");
    open_ids(q, r, f, "new", offset + limit, "n");
    srv_sql_add(q, " UNION ALL SELECT k.id FROM ");
    open_ids(q, r, f, "acknowledged", offset + limit, "k");
    srv_sql_add(q, ")");
}

int api_detections_list(struct srv_req *r)
{
    struct detection_filter f;
    struct srv_sql q;
    struct store_stmt *st = NULL;
    json_t *items = NULL, *page = NULL;
    int64_t limit = 50, offset = 0, total = 0;
    int rc;

    srv_sql_init(&q);
    if (detection_filter_parse(r, &f) != 0)
        goto out;
    srv_paging(r, &limit, &offset);
    if ((rc = detection_count(r, &f, &total)) != 0)
        goto store_fail;

    srv_sql_add(&q, "SELECT " DETECTION_COLS DETECTION_FROM);
    page_where(&q, r, &f, limit, offset);
    srv_sql_add(&q, " ORDER BY d.detected_at DESC, d.id DESC LIMIT ");
    srv_sql_int(&q, limit);
    srv_sql_add(&q, " OFFSET ");
    srv_sql_int(&q, offset);
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0)
        goto store_fail;
    if ((items = json_array()) == NULL)
        goto oom;
    while ((rc = store_step(st)) == STORE_ROW)
        if (json_array_append_new(items, detection_item(st)) != 0)
            goto oom;
    if (rc < 0)
        goto store_fail;
    page = srv_page_json(items, total > COUNT_CAP ? COUNT_CAP : total, limit, offset);
    items = NULL;
    if (page == NULL)
        goto oom;
    json_object_set_new(page, "total_capped", json_boolean(total > COUNT_CAP));
    srv_reply_json(r, 200, page);
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

/* Builds the full detection `id` if it is in scope. Returns 1 with *out set
 * (the caller decrefs), 0 when absent or out of scope, or a negative
 * STORE_E* code. */
static int detection_load(struct srv_req *r, int64_t id, json_t **out)
{
    struct srv_sql q;
    struct store_stmt *st = NULL;
    json_t *d = NULL, *notes = NULL;
    int rc;

    *out = NULL;
    srv_sql_init(&q);
    srv_sql_add(&q, "SELECT " DETECTION_COLS ", d.md5, d.size, d.received_at, d.status_at,"
                    " d.event_id, u.username" DETECTION_FROM
                    " LEFT JOIN users u ON u.id = d.status_by WHERE d.id = ");
    srv_sql_int(&q, id);
    srv_sql_scope(&q, r, "a.path");
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0 || (rc = store_step(st)) != STORE_ROW)
        goto out;
    if ((d = detection_item(st)) == NULL) {
        rc = STORE_ENOMEM;
        goto out;
    }
    json_object_set_new(d, "md5", srv_col_string(st, 13));
    json_object_set_new(d, "size", json_integer(store_col_int(st, 14)));
    json_object_set_new(d, "received_at", json_integer(store_col_int(st, 15)));
    json_object_set_new(d, "status_at", json_integer(store_col_int(st, 16)));
    json_object_set_new(d, "event_id", srv_col_string(st, 17));
    json_object_set_new(d, "status_by", srv_col_string(st, 18));
    store_finalize(st);
    st = NULL;

    if ((notes = json_array()) == NULL) {
        rc = STORE_ENOMEM;
        goto out;
    }
    rc = store_queryf(r->db, &st,
                      "SELECT id, at, username, status_from, status_to, note FROM detection_notes"
                      " WHERE detection_id = $1 ORDER BY at, id",
                      "i", id);
    while (rc == STORE_ROW) {
        json_array_append_new(
            notes,
            json_pack("{s:I, s:I, s:o, s:o, s:o, s:o}", "id", (json_int_t)store_col_int(st, 0),
                      "at", (json_int_t)store_col_int(st, 1), "username", srv_col_string(st, 2),
                      "status_from", srv_col_string(st, 3), "status_to", srv_col_string(st, 4),
                      "note", srv_col_string(st, 5)));
        rc = store_step(st);
    }
    if (rc < 0)
        goto out;
    json_object_set_new(d, "notes", notes);
    notes = NULL;
    *out = d;
    d = NULL;
    rc = 1;
out:
    json_decref(notes);
    json_decref(d);
    store_finalize(st);
    srv_sql_clear(&q);
    return rc;
}

int api_detections_get(struct srv_req *r)
{
    json_t *d = NULL;
    int64_t id = 0;
    int rc;

    if (srv_param_id(r, 0, &id) != 0)
        return srv_reply_error(r, 404, "not_found", "no such detection");
    if ((rc = detection_load(r, id, &d)) < 0)
        return srv_reply_store_error(r, rc);
    if (rc == 0)
        return srv_reply_error(r, 404, "not_found", "no such detection");
    return srv_reply_json(r, 200, d);
}

/* Characters (UTF-8 code points) in a string jansson has already checked. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

#define NOTE_INSERT                                                                                \
    "INSERT INTO detection_notes (detection_id, user_id, username, at, status_from, status_to,"    \
    " note) VALUES ($1, $2, $3, $4, $5, $6, $7)"
/* Only from the status just read: see status_set(). */
#define STATUS_UPDATE                                                                              \
    "UPDATE detections SET status = $1, status_at = $2, status_by = $3 WHERE id = $4"              \
    " AND status = $5"

/* How often status_set() reads again after another transaction changed the
 * status between its read and its write. */
enum { STATUS_TRIES = 5 };

/* What status_set() read of the detection before changing it. */
struct detection_was {
    char status[32];
    char machine_id[80];
    int64_t agency_id;
    int64_t detected_at;
};

static int is_open_status(const char *s)
{
    return strcmp(s, "new") == 0 || strcmp(s, "acknowledged") == 0;
}

/* Reads the detection (in the caller's scope) into *was. Returns 1 when
 * found, 0 when absent or out of scope, or a negative STORE_E* code. */
static int status_read(struct srv_req *r, int64_t id, struct detection_was *was)
{
    struct srv_sql q;
    struct store_stmt *st = NULL;
    int rc;

    srv_sql_init(&q);
    srv_sql_add(&q, "SELECT d.status, d.machine_id, d.agency_id, d.detected_at FROM detections d"
                    " JOIN agencies a ON a.id = d.agency_id WHERE d.id = ");
    srv_sql_int(&q, id);
    srv_sql_scope(&q, r, "a.path");
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0 || (rc = store_step(st)) < 0)
        goto out;
    if (rc == STORE_ROW) {
        const char *status = store_col_text(st, 0), *machine = store_col_text(st, 1);
        snprintf(was->status, sizeof(was->status), "%s", status ? status : "");
        snprintf(was->machine_id, sizeof(was->machine_id), "%s", machine ? machine : "");
        was->agency_id = store_col_int(st, 2);
        was->detected_at = store_col_int(st, 3);
        rc = 1;
    }
out:
    store_finalize(st);
    srv_sql_clear(&q);
    return rc;
}

/* Sets the status inside the open write transaction and reads into *was
 * what it was. On SQLite the transaction's write lock already keeps others
 * out between the read and the write. PostgreSQL (READ COMMITTED) locks the
 * row only at the write, so the write names the status it read: if another
 * officer's change committed in between, nothing is written and the status
 * is read again. Either way the note's status_from, and the figures moved by
 * figures_move(), follow from the status actually replaced. Returns 1 when
 * changed, 0 when absent or out of scope, or a negative STORE_E* code. */
static int status_set(struct srv_req *r, int64_t id, const char *to, int64_t now,
                      struct detection_was *was)
{
    for (int i = 0; i < STATUS_TRIES; i++) {
        int64_t changes = 0;
        int rc = status_read(r, id, was);
        if (rc <= 0)
            return rc;
        /* An API caller without a user row (user_id 0) leaves status_by
         * NULL. */
        if (r->who.user_id > 0)
            rc = store_execf(r->db, &changes, STATUS_UPDATE, "tiiit", to, now, r->who.user_id, id,
                             was->status);
        else
            rc = store_execf(r->db, &changes, STATUS_UPDATE, "tinit", to, now, id, was->status);
        if (rc != 0)
            return rc;
        if (changes == 1)
            return 1;
    }
    return STORE_EBUSY;
}

/* Moves the running figures when a detection went from open to closed or
 * back: the machine's open count, and its open detections in the agency the
 * detection was made in, with the newest one's time. Closing the newest
 * open detection looks up the next newest; closing an older one leaves it.
 * The machine's row is updated first, as ingest.c does, so that on
 * PostgreSQL its lock orders every change to this machine's figures. */
static int figures_move(struct srv_req *r, const struct detection_was *was, const char *to)
{
    int opened = is_open_status(to), was_open = is_open_status(was->status);
    int rc;

    if (opened == was_open)
        return 0;
    rc = store_execf(r->db, NULL,
                     "UPDATE machines SET open_detections = open_detections + $1 WHERE id = $2",
                     "it", (int64_t)(opened ? 1 : -1), was->machine_id);
    if (rc != 0)
        return rc;
    if (opened)
        return store_execf(
            r->db, NULL,
            "INSERT INTO open_by_agency (agency_id, machine_id, open_count, newest_open)"
            " VALUES ($1, $2, 1, $3) ON CONFLICT (agency_id, machine_id) DO UPDATE SET"
            " open_count = open_by_agency.open_count + 1,"
            " newest_open = CASE WHEN excluded.newest_open > open_by_agency.newest_open"
            " THEN excluded.newest_open ELSE open_by_agency.newest_open END",
            "iti", was->agency_id, was->machine_id, was->detected_at);
    return store_execf(r->db, NULL,
                       "UPDATE open_by_agency SET open_count = open_count - 1,"
                       " newest_open = CASE WHEN newest_open > $3 THEN newest_open ELSE"
                       " (SELECT coalesce(max(x.detected_at), 0) FROM detections x"
                       " WHERE x.machine_id = $2 AND x.agency_id = $1"
                       " AND x.status IN " SRV_OPEN_STATUSES ") END"
                       " WHERE agency_id = $1 AND machine_id = $2",
                       "iti", was->agency_id, was->machine_id, was->detected_at);
}

int api_detections_status(struct srv_req *r)
{
    struct detection_was was;
    json_t *body = NULL, *jnote, *d = NULL;
    const char *to, *note = "";
    char target[48];
    int64_t id = 0, now = srv_now();
    int rc;

    if (srv_param_id(r, 0, &id) != 0) {
        srv_reply_error(r, 404, "not_found", "no such detection");
        goto out;
    }
    if ((body = srv_body_json(r)) == NULL)
        goto out;
    if ((to = status_word(json_string_value(json_object_get(body, "status")))) == NULL) {
        srv_reply_field(r, "status", "one of new, acknowledged, resolved, false_positive");
        goto out;
    }
    jnote = json_object_get(body, "note");
    if (jnote != NULL && !json_is_null(jnote)) {
        if (!json_is_string(jnote) ||
            strlen(json_string_value(jnote)) != json_string_length(jnote) ||
            utf8_chars(json_string_value(jnote)) > NOTE_MAX_CHARS) {
            srv_reply_field(r, "note", "text of at most 2000 characters");
            goto out;
        }
        note = json_string_value(jnote);
    }

    /* Reading the current status, changing it, writing the note and moving
     * the figures happen in one write transaction, so the note's status_from
     * is exact even when two officers act at once. */
    if ((rc = store_begin_write(r->db)) != 0)
        goto store_fail;
    if ((rc = status_set(r, id, to, now, &was)) < 0)
        goto store_fail;
    if (rc == 0) {
        store_rollback(r->db);
        srv_reply_error(r, 404, "not_found", "no such detection");
        goto out;
    }
    /* An API caller without a user row (user_id 0) leaves user_id NULL. */
    if (r->who.user_id > 0)
        rc = store_execf(r->db, NULL, NOTE_INSERT, "iitittt", id, r->who.user_id, r->who.username,
                         now, was.status, to, note);
    else
        rc = store_execf(r->db, NULL, NOTE_INSERT, "intittt", id, r->who.username, now, was.status,
                         to, note);
    if (rc != 0 || (rc = figures_move(r, &was, to)) != 0)
        goto store_fail;
    /* Written inside the transaction, the audit row commits with the change. */
    snprintf(target, sizeof(target), "detection:%" PRId64, id);
    srv_audit(r, "detection.status", target, json_pack("{s:s, s:s}", "from", was.status, "to", to));
    if ((rc = store_commit(r->db)) != 0)
        goto store_fail;
    if ((rc = detection_load(r, id, &d)) < 0) {
        srv_reply_store_error(r, rc);
        goto out;
    }
    srv_reply_json(r, 200, d != NULL ? d : json_object());
    goto out;
store_fail:
    store_rollback(r->db);
    srv_reply_store_error(r, rc);
out:
    json_decref(body);
    return 0;
}
