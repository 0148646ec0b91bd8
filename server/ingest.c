/*
 * Event ingestion: the rules of ingest.h. Validation is a pure function of
 * one JSON value so that it can be fuzzed on its own; storing runs the whole
 * batch in one write transaction, inserting each event with
 * ON CONFLICT (machine_id, event_id) DO NOTHING so that a retried batch adds nothing, and
 * adding a detection row only for a detection event that was actually new.
 */
#include "ingest.h"

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

static int insert_detection(struct store_db *db, const char *machine_id, int64_t agency_id,
                            const json_t *ev, int64_t now)
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
    return store_execf(db, NULL,
                       "INSERT INTO detections (event_id, machine_id, agency_id, path, sha256, "
                       "md5, size, signature, family, action, detected_at, received_at, status, "
                       "status_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
                       "'new', $13) ON CONFLICT (machine_id, event_id) DO NOTHING",
                       "ttitttitttiii", field_or_empty(ev, "id"), machine_id, agency_id,
                       field_or_empty(ev, "path"), sha256, md5, size, signature, family,
                       action != NULL ? action : "reported", at, now, now);
}

/* Stores one valid event; *inserted says whether it was new. */
static int insert_event(struct store_db *db, struct store_stmt *st, const char *machine_id,
                        int64_t agency_id, const json_t *ev, int64_t now, int *inserted)
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
            (r = insert_detection(db, machine_id, agency_id, ev, now)) < 0)
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
    if ((r = store_prepare(db,
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
        if ((r = insert_event(db, st, machine_id, agency_id, ev, now, &inserted)) < 0)
            goto out;
        if (inserted)
            accepted++;
        else
            duplicates++;
    }
    store_finalize(st);
    st = NULL;
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
