/*
 * Event ingestion: the rules of ingest.h. Validation is a pure function of
 * one JSON value so that it can be fuzzed on its own; storing runs the whole
 * batch in one write transaction, inserting each event with
 * ON CONFLICT (machine_id, event_id) DO NOTHING so that a retried batch adds nothing, and
 * adding a detection row only for a detection event that was actually new.
 *
 * The same transaction keeps the dashboard's running figures (migration 3)
 * exact: the batch's new detections are tallied here in C by day and family,
 * and each distinct (day, family) costs one upsert at the end, so a batch of
 * 1,000 detections writes a few dozen rows of figures rather than 1,000.
 */
#include "ingest.h"

#include "c2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TYPE      32   /* characters of an event type */
#define MAX_SIGNATURE 512  /* bytes of a signature name */
#define MAX_PATH_TEXT 4096 /* bytes of a reported file path */
#define MAX_FAMILY    512

static const char *const detection_actions[] = {"reported", "quarantined", "blocked", "deleted"};

/* A JSON string's value when it holds no NUL character, else NULL: a C
 * string would silently end at the NUL and store something else than was
 * sent. */
static const char *plain_string(const json_t *v, size_t *len)
{
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (strlen(s) != n)
        return NULL;
    if (len != NULL)
        *len = n;
    return s;
}

static int is_id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

static int valid_id(const json_t *v)
{
    size_t n = 0;
    const char *s = plain_string(v, &n);
    if (s == NULL || n == 0 || n > SRV_INGEST_MAX_ID)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_id_char(s[i]))
            return 0;
    return 1;
}

static int valid_type(const json_t *v)
{
    size_t n = 0;
    const char *s = plain_string(v, &n);
    if (s == NULL || n == 0 || n > MAX_TYPE || s[0] < 'a' || s[0] > 'z')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

/* A string of at most `max` bytes without control characters; an absent
 * field is fine when `required` is 0. */
static int valid_text(const json_t *v, size_t max, int required)
{
    if (v == NULL)
        return !required;
    size_t n = 0;
    const char *s = plain_string(v, &n);
    if (s == NULL || n > max || (required && n == 0))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* Absent, empty, or exactly `digits` hexadecimal characters. */
static int valid_hex(const json_t *v, size_t digits)
{
    if (v == NULL)
        return 1;
    size_t n = 0;
    const char *s = plain_string(v, &n);
    if (s == NULL || (n != 0 && n != digits))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

static int valid_action(const json_t *v)
{
    if (v == NULL)
        return 1;
    const char *s = plain_string(v, NULL);
    if (s == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(detection_actions) / sizeof(detection_actions[0]); i++)
        if (strcmp(s, detection_actions[i]) == 0)
            return 1;
    return 0;
}

static int fail(char *msg, size_t msglen, const char *text)
{
    if (msglen > 0)
        snprintf(msg, msglen, "%s", text);
    return -1;
}

static int validate_detection(const json_t *ev, char *msg, size_t msglen)
{
    if (!valid_text(json_object_get(ev, "signature"), MAX_SIGNATURE, 1))
        return fail(msg, msglen, "signature: must be a string of 1 to 512 printable bytes");
    if (!valid_text(json_object_get(ev, "path"), MAX_PATH_TEXT, 0))
        return fail(msg, msglen, "path: must be a string of at most 4096 printable bytes");
    if (!valid_hex(json_object_get(ev, "sha256"), 64))
        return fail(msg, msglen, "sha256: must be 64 hexadecimal characters");
    if (!valid_hex(json_object_get(ev, "md5"), 32))
        return fail(msg, msglen, "md5: must be 32 hexadecimal characters");
    const json_t *size = json_object_get(ev, "size");
    if (size != NULL && (!json_is_integer(size) || json_integer_value(size) < 0))
        return fail(msg, msglen, "size: must be a non-negative integer");
    if (!valid_action(json_object_get(ev, "action")))
        return fail(msg, msglen, "action: must be reported, quarantined, blocked or deleted");
    return 0;
}

int srv_ingest_validate_event(const json_t *ev, char *msg, size_t msglen)
{
    if (!json_is_object(ev))
        return fail(msg, msglen, "an event must be a JSON object");
    if (!valid_id(json_object_get(ev, "id")))
        return fail(msg, msglen, "id: must be 1 to 64 characters of A-Z a-z 0-9 . _ : -");
    if (!valid_type(json_object_get(ev, "type")))
        return fail(msg, msglen,
                    "type: must be a lowercase word of at most 32 characters (a-z 0-9 _)");
    const json_t *at = json_object_get(ev, "at");
    if (!json_is_integer(at) || json_integer_value(at) < SRV_INGEST_AT_MIN ||
        json_integer_value(at) > SRV_INGEST_AT_MAX)
        return fail(msg, msglen, "at: must be Unix seconds between 2000 and 2100");
    /* json_dumpb with no buffer returns the size the text would need. */
    size_t bytes = json_dumpb(ev, NULL, 0, JSON_COMPACT);
    if (bytes == 0 || bytes > SRV_INGEST_MAX_EVENT_BYTES)
        return fail(msg, msglen, "event: larger than 16384 bytes of JSON");
    if (strcmp(json_string_value(json_object_get(ev, "type")), "detection") == 0)
        return validate_detection(ev, msg, msglen);
    if (strcmp(json_string_value(json_object_get(ev, "type")), "c2_hit") == 0)
        return c2_validate_hit(ev, msg, msglen);
    return 0;
}

/* True when s[0..*n) ends in "-DIGITS"; shortens *n past it. */
static int strip_variant(const char *s, size_t *n)
{
    size_t i = *n;
    while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
        i--;
    if (i == *n || i < 2 || s[i - 1] != '-')
        return 0;
    *n = i - 1;
    return 1;
}

void srv_ingest_family(const char *signature, char *out, size_t outlen)
{
    static const char unofficial[] = ".UNOFFICIAL";
    const size_t ulen = sizeof(unofficial) - 1;
    if (outlen == 0)
        return;
    if (signature == NULL) {
        out[0] = '\0';
        return;
    }
    size_t n = strlen(signature);
    while (n > 0 && (signature[n - 1] == ' ' || signature[n - 1] == '\t'))
        n--;
    size_t full = n;
    if (n > ulen && strncmp(signature + n - ulen, unofficial, ulen) == 0)
        n -= ulen;
    /* ClamAV names end in "-SIGID-REVISION" (or just "-REVISION" for some
     * hash signatures); anything before them is the family. */
    if (strip_variant(signature, &n))
        strip_variant(signature, &n);
    if (n == 0)
        n = full;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, signature, n);
    out[n] = '\0';
}

/* Adds {"index","id","message"} to the rejected list. The id is echoed only
 * when it is a short string, so a hostile batch cannot make us echo
 * megabytes back. */
static int reject(json_t *rejected, size_t index, const json_t *ev, const char *message)
{
    const json_t *id = json_object_get(ev, "id");
    json_t *echo = NULL;
    if (json_is_string(id) && json_string_length(id) <= SRV_INGEST_MAX_ID)
        echo = json_copy((json_t *)id);
    else
        echo = json_null();
    json_t *item =
        json_pack("{s:I,s:o,s:s}", "index", (json_int_t)index, "id", echo, "message", message);
    if (item == NULL || json_array_append_new(rejected, item) != 0)
        return STORE_ENOMEM;
    return 0;
}

static const char *field_or_empty(const json_t *ev, const char *name)
{
    const char *s = json_string_value(json_object_get(ev, name));
    return s != NULL ? s : "";
}

static void lowercase_into(char *dst, size_t dstlen, const char *src)
{
    size_t i = 0;
    for (; src[i] != '\0' && i + 1 < dstlen; i++)
        dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] - 'A' + 'a') : src[i];
    dst[i] = '\0';
}

/* ------------------------------------------------------------------------ */
/* The batch's tally of new detections.                                      */
/* ------------------------------------------------------------------------ */

/* One new detection as the figures see it. */
struct tally_item {
    int64_t day;  /* detected_at / 86400 */
    char *family; /* the family, or the signature when the family is empty */
    int64_t count;
};

/* Hours are counted for detections at most this old when they arrive, and
 * deleted once older than HOURS_KEPT: the overview's last 24 hours need
 * only hours newer than a day, and the margins cover servers whose clocks
 * differ by up to a day. */
enum { HOURS_COUNTED = 2 * 86400, HOURS_KEPT = 3 * 86400 };

/* The new detections of one batch, all of one machine and one agency. */
struct tally {
    struct tally_item *v;
    size_t n, cap;
    int64_t *hours; /* detected_at / 3600 of the recent ones */
    size_t nhours;
    int64_t total;  /* detections inserted */
    int64_t newest; /* the largest detected_at among them */
};

static void tally_free(struct tally *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].family);
    free(t->v);
    free(t->hours);
    memset(t, 0, sizeof(*t));
}

/* Records one detection inserted at time `now`. A batch holds at most
 * SRV_INGEST_MAX_EVENTS, which bounds both arrays. */
static int tally_add(struct tally *t, int64_t at, const char *family, int64_t now)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct tally_item *v;
        if (cap > SRV_INGEST_MAX_EVENTS)
            cap = SRV_INGEST_MAX_EVENTS;
        if (t->n >= cap || (v = realloc(t->v, cap * sizeof(*v))) == NULL)
            return STORE_ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    if (t->hours == NULL && (t->hours = malloc(SRV_INGEST_MAX_EVENTS * sizeof(*t->hours))) == NULL)
        return STORE_ENOMEM;
    if ((t->v[t->n].family = strdup(family)) == NULL)
        return STORE_ENOMEM;
    t->v[t->n].day = at / 86400;
    t->v[t->n].count = 1;
    t->n++;
    if (at >= now - HOURS_COUNTED && t->nhours < SRV_INGEST_MAX_EVENTS)
        t->hours[t->nhours++] = at / 3600;
    t->total++;
    if (at > t->newest)
        t->newest = at;
    return 0;
}

static int hour_cmp(const void *pa, const void *pb)
{
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    return a < b ? -1 : a > b;
}

static int tally_cmp(const void *pa, const void *pb)
{
    const struct tally_item *a = pa, *b = pb;
    if (a->day != b->day)
        return a->day < b->day ? -1 : 1;
    return strcmp(a->family, b->family);
}

/* Sorts the tally and folds equal (day, family) items into the first. The
 * order matters on PostgreSQL too: every batch locks the rows of figures it
 * updates in this same order, so two batches of one agency cannot deadlock. */
static void tally_fold(struct tally *t)
{
    size_t kept = 0;
    if (t->n == 0)
        return;
    qsort(t->v, t->n, sizeof(t->v[0]), tally_cmp);
    for (size_t i = 1; i < t->n; i++) {
        struct tally_item *last = &t->v[kept];
        if (t->v[i].day == last->day && strcmp(t->v[i].family, last->family) == 0) {
            last->count += t->v[i].count;
            free(t->v[i].family);
        } else {
            t->v[++kept] = t->v[i];
        }
    }
    t->n = kept + 1;
}

#define DAILY_FAMILY_UPSERT                                                                        \
    "INSERT INTO detection_daily_family (day, agency_id, family, detections)"                      \
    " VALUES ($1, $2, $3, $4) ON CONFLICT (agency_id, day, family)"                                \
    " DO UPDATE SET detections = detection_daily_family.detections + excluded.detections"
#define DAILY_FAMILY_ALL_UPSERT                                                                    \
    "INSERT INTO detection_daily_family_all (day, family, detections) VALUES ($1, $2, $3)"         \
    " ON CONFLICT (day, family)"                                                                   \
    " DO UPDATE SET detections = detection_daily_family_all.detections + excluded.detections"
#define HOURLY_UPSERT                                                                              \
    "INSERT INTO detection_hourly (hour, agency_id, detections) VALUES ($1, $2, $3)"               \
    " ON CONFLICT (hour, agency_id)"                                                               \
    " DO UPDATE SET detections = detection_hourly.detections + excluded.detections"
#define DAILY_UPSERT                                                                               \
    "INSERT INTO detection_daily (day, agency_id, detections) VALUES ($1, $2, $3)"                 \
    " ON CONFLICT (day, agency_id)"                                                                \
    " DO UPDATE SET detections = detection_daily.detections + excluded.detections"

/* One upsert per (day, family) of the tally: into detection_daily_family
 * for this agency, or into detection_daily_family_all when `all` is set. */
static int upsert_families(struct store_db *db, const struct tally *t, int64_t agency_id, int all)
{
    struct store_stmt *st = NULL;
    int r = store_prepare(db, all ? DAILY_FAMILY_ALL_UPSERT : DAILY_FAMILY_UPSERT, &st);

    for (size_t i = 0; r >= 0 && i < t->n; i++) {
        int k = 1;
        if ((r = store_reset(st)) < 0 || (r = store_bind_int(st, k++, t->v[i].day)) < 0 ||
            (!all && (r = store_bind_int(st, k++, agency_id)) < 0) ||
            (r = store_bind_text(st, k++, t->v[i].family)) < 0 ||
            (r = store_bind_int(st, k++, t->v[i].count)) < 0)
            break;
        r = store_step(st);
    }
    store_finalize(st);
    return r < 0 ? r : 0;
}

/* One upsert per day of the tally into detection_daily. */
static int upsert_days(struct store_db *db, const struct tally *t, int64_t agency_id)
{
    struct store_stmt *st = NULL;
    int r = store_prepare(db, DAILY_UPSERT, &st);

    for (size_t i = 0; r >= 0 && i < t->n;) {
        int64_t day = t->v[i].day, count = 0;
        for (; i < t->n && t->v[i].day == day; i++)
            count += t->v[i].count;
        if ((r = store_reset(st)) < 0 || (r = store_bind_int(st, 1, day)) < 0 ||
            (r = store_bind_int(st, 2, agency_id)) < 0 || (r = store_bind_int(st, 3, count)) < 0)
            break;
        r = store_step(st);
    }
    store_finalize(st);
    return r < 0 ? r : 0;
}

/* Deletes the hours no one will ask for again, then one upsert per recent
 * hour of the tally into detection_hourly. */
static int upsert_hours(struct store_db *db, struct tally *t, int64_t agency_id, int64_t now)
{
    struct store_stmt *st = NULL;
    int r;

    if (t->nhours == 0)
        return 0;
    r = store_execf(db, NULL, "DELETE FROM detection_hourly WHERE hour < $1", "i",
                    (now - HOURS_KEPT) / 3600);
    if (r >= 0)
        r = store_prepare(db, HOURLY_UPSERT, &st);
    qsort(t->hours, t->nhours, sizeof(t->hours[0]), hour_cmp);
    for (size_t i = 0; r >= 0 && i < t->nhours;) {
        int64_t hour = t->hours[i], count = 0;
        for (; i < t->nhours && t->hours[i] == hour; i++)
            count++;
        if ((r = store_reset(st)) < 0 || (r = store_bind_int(st, 1, hour)) < 0 ||
            (r = store_bind_int(st, 2, agency_id)) < 0 || (r = store_bind_int(st, 3, count)) < 0)
            break;
        r = store_step(st);
    }
    store_finalize(st);
    return r < 0 ? r : 0;
}

/* Adds the batch's new detections to the figures. New detections are all
 * open (status new).
 *
 * On PostgreSQL several batches run at once, so the order of the writes is
 * the order in which rows get locked, and every batch keeps the same one:
 * this agency's rows (families, days, hours: each sorted), the machine, its
 * open detections in this agency, and last the rows every agency shares
 * (the province's families), held only until the commit. The machine's row
 * comes before open_by_agency, as in api_detection.c, so that its lock
 * orders every change to that machine's open figures. */
static int tally_store(struct store_db *db, const char *machine_id, int64_t agency_id,
                       struct tally *t, int64_t now)
{
    int r;

    if (t->total == 0)
        return 0;
    tally_fold(t);
    if ((r = upsert_families(db, t, agency_id, 0)) < 0 || (r = upsert_days(db, t, agency_id)) < 0 ||
        (r = upsert_hours(db, t, agency_id, now)) < 0)
        return r;
    r = store_execf(db, NULL,
                    "UPDATE machines SET open_detections = open_detections + $1 WHERE id = $2",
                    "it", t->total, machine_id);
    if (r < 0)
        return r;
    r = store_execf(db, NULL,
                    "INSERT INTO open_by_agency (agency_id, machine_id, open_count, newest_open)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (agency_id, machine_id) DO UPDATE SET"
                    " open_count = open_by_agency.open_count + excluded.open_count,"
                    " newest_open = CASE WHEN excluded.newest_open > open_by_agency.newest_open"
                    " THEN excluded.newest_open ELSE open_by_agency.newest_open END",
                    "itii", agency_id, machine_id, t->total, t->newest);
    if (r < 0)
        return r;
    return upsert_families(db, t, agency_id, 1);
}

/* ------------------------------------------------------------------------ */
/* Storing a batch.                                                          */
/* ------------------------------------------------------------------------ */

/* Inserts one detection and, when it was new, tallies it. */
static int insert_detection(struct store_db *db, const char *machine_id, int64_t agency_id,
                            const json_t *ev, int64_t now, struct tally *t)
{
    char family[MAX_FAMILY + 1];
    char sha256[65];
    char md5[33];
    const char *signature = field_or_empty(ev, "signature");
    const char *action = json_string_value(json_object_get(ev, "action"));
    srv_ingest_family(signature, family, sizeof(family));
    lowercase_into(sha256, sizeof(sha256), field_or_empty(ev, "sha256"));
    lowercase_into(md5, sizeof(md5), field_or_empty(ev, "md5"));
    int64_t size = json_integer_value(json_object_get(ev, "size"));
    int64_t at = json_integer_value(json_object_get(ev, "at"));
    int64_t changes = 0;
    int r = store_execf(db, &changes,
                        "INSERT INTO detections (event_id, machine_id, agency_id, path, sha256, "
                        "md5, size, signature, family, action, detected_at, received_at, status, "
                        "status_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
                        "'new', $13) ON CONFLICT (machine_id, event_id) DO NOTHING",
                        "ttitttitttiii", field_or_empty(ev, "id"), machine_id, agency_id,
                        field_or_empty(ev, "path"), sha256, md5, size, signature, family,
                        action != NULL ? action : "reported", at, now, now);
    if (r < 0 || changes != 1)
        return r;
    /* The overview counts a detection without a family under its signature
     * name, so the figures are kept under that name too. */
    return tally_add(t, at, family[0] != '\0' ? family : signature, now);
}

/* Stores one valid event; *inserted says whether it was new. */
static int insert_event(struct store_db *db, struct store_stmt *st, const char *machine_id,
                        int64_t agency_id, const json_t *ev, int64_t now, struct tally *t,
                        int *inserted)
{
    int r = STORE_ENOMEM;
    char *data = json_dumps(ev, JSON_COMPACT);
    const char *type = json_string_value(json_object_get(ev, "type"));
    *inserted = 0;
    if (data == NULL)
        goto out;
    if ((r = store_reset(st)) < 0 || (r = store_bind_text(st, 1, field_or_empty(ev, "id"))) < 0 ||
        (r = store_bind_text(st, 2, machine_id)) < 0 || (r = store_bind_text(st, 3, type)) < 0 ||
        (r = store_bind_int(st, 4, json_integer_value(json_object_get(ev, "at")))) < 0 ||
        (r = store_bind_int(st, 5, now)) < 0 || (r = store_bind_text(st, 6, data)) < 0)
        goto out;
    if ((r = store_step(st)) < 0)
        goto out;
    if (store_changes(st) == 1) {
        *inserted = 1;
        if (strcmp(type, "detection") == 0 &&
            (r = insert_detection(db, machine_id, agency_id, ev, now, t)) < 0)
            goto out;
        /* A network sensor's (or an agent's) connection to a known C&C
         * address or name: c2.c files it under the agency that owns the
         * internal host's address. */
        if (strcmp(type, "c2_hit") == 0 &&
            (r = c2_store_hit(db, machine_id, agency_id, ev, now)) < 0)
            goto out;
    }
    r = 0;
out:
    free(data);
    return r;
}

/* One attempt at the whole batch inside one write transaction. On failure
 * the transaction is rolled back and `report` may be half filled. */
static int ingest_once(struct store_db *db, const char *machine_id, const json_t *events,
                       int64_t now, json_t *report)
{
    int r;
    struct store_stmt *st = NULL;
    int64_t agency_id = 0, accepted = 0, duplicates = 0;
    struct tally t = {0};
    json_t *rejected = json_array();
    if (rejected == NULL)
        return STORE_ENOMEM;
    if ((r = store_begin_write(db)) < 0)
        goto out;
    r = store_query_int(db, &agency_id, "SELECT agency_id FROM machines WHERE id = $1", "t",
                        machine_id);
    if (r == STORE_DONE)
        r = STORE_EINVAL;
    if (r < 0)
        goto out;
    if ((r = store_prepare(
             db,
             "INSERT INTO events (event_id, machine_id, type, at, received_at, "
             "data) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (machine_id, event_id) DO "
             "NOTHING",
             &st)) < 0)
        goto out;
    size_t index;
    const json_t *ev;
    json_array_foreach(events, index, ev)
    {
        char msg[160];
        int inserted = 0;
        if (srv_ingest_validate_event(ev, msg, sizeof(msg)) != 0) {
            if ((r = reject(rejected, index, ev, msg)) < 0)
                goto out;
            continue;
        }
        if ((r = insert_event(db, st, machine_id, agency_id, ev, now, &t, &inserted)) < 0)
            goto out;
        if (inserted)
            accepted++;
        else
            duplicates++;
    }
    store_finalize(st);
    st = NULL;
    /* Last, so that on PostgreSQL the rows of figures that other batches of
     * this agency also update stay locked for as short a time as possible. */
    if ((r = tally_store(db, machine_id, agency_id, &t, now)) < 0)
        goto out;
    if ((r = store_commit(db)) < 0)
        goto out;
    if (json_object_set_new(report, "accepted", json_integer(accepted)) != 0 ||
        json_object_set_new(report, "duplicates", json_integer(duplicates)) != 0 ||
        json_object_set(report, "rejected", rejected) != 0) {
        r = STORE_ENOMEM;
        goto out;
    }
    r = 0;
out:
    store_finalize(st);
    if (r < 0)
        store_rollback(db);
    tally_free(&t);
    json_decref(rejected);
    return r;
}

int srv_ingest_events(struct store_db *db, const char *machine_id, const json_t *events,
                      int64_t now, json_t *report_out)
{
    if (db == NULL || machine_id == NULL || !json_is_array(events) || !json_is_object(report_out) ||
        json_array_size(events) > SRV_INGEST_MAX_EVENTS)
        return STORE_EINVAL;
    int r = ingest_once(db, machine_id, events, now, report_out);
    /* Another writer held the lock for longer than the store waits: one more
     * try usually gets through, and the ids make a second attempt harmless. */
    if (r == STORE_EBUSY)
        r = ingest_once(db, machine_id, events, now, report_out);
    return r;
}
