/*
 * Agent protection policies (policy.h): the built-in defaults, the validator
 * of the documents people send, the completion of a document with the
 * defaults it leaves out, its version, and the lookup of the policy in
 * effect for an agency.
 *
 * Validation and completion are one walk over the document (policy_parse):
 * reading a setting checks it and, when an output object is given, writes
 * the setting or its default there. The defaults therefore live in exactly
 * one place, the reader calls below, and a setting cannot be accepted by
 * the validator yet forgotten by the completion or the other way round.
 *
 * Everything here is about the document alone except policy_effective(),
 * which reads the store; nothing here knows HTTP (api_agency.c and
 * api_agent.c turn the errors into answers).
 */
#include "policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <khien/khien.h>

#include "khx.h"

/* ------------------------------------------------------------------------ */
/* Refusals.                                                                 */
/* ------------------------------------------------------------------------ */

/* Fills *err with the field `prefix``name` (and "[index]" when index is not
 * (size_t)-1) and the problem; returns KH_EINVAL. */
__attribute__((format(printf, 5, 6))) static int refuse_at(struct policy_error *err,
                                                           const char *prefix, const char *name,
                                                           size_t index, const char *fmt, ...)
{
    va_list ap;

    if (index == (size_t)-1)
        snprintf(err->field, sizeof(err->field), "%s%s", prefix, name);
    else
        snprintf(err->field, sizeof(err->field), "%s%s[%zu]", prefix, name, index);
    va_start(ap, fmt);
    vsnprintf(err->problem, sizeof(err->problem), fmt, ap);
    va_end(ap);
    return KH_EINVAL;
}

#define refuse(err, prefix, name, ...) refuse_at(err, prefix, name, (size_t)-1, __VA_ARGS__)

static int in_list(const char *s, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* Refuses the first key of `obj` that is not in `known`, naming it, so that
 * a misspelt setting is an error rather than a default silently applied. */
static int check_keys(const json_t *obj, const char *prefix, const char *const *known,
                      struct policy_error *err)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v)
    {
        char shown[49];
        size_t len = 0;

        if (in_list(key, known))
            continue;
        /* The key is the client's text: shown as printable ASCII, cut short,
         * so that the message stays valid UTF-8 of a bounded size. */
        khx_printable(shown, sizeof(shown), key, strlen(key));
        snprintf(err->field, sizeof(err->field), "%s%s", prefix, shown);
        len = (size_t)snprintf(err->problem, sizeof(err->problem),
                               "is not a policy setting; known: ");
        for (const char *const *k = known; *k != NULL && len < sizeof(err->problem); k++)
            len += (size_t)snprintf(err->problem + len, sizeof(err->problem) - len, "%s%s",
                                    k == known ? "" : ", ", *k);
        return KH_EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Readers. Each checks one setting of `in` (which may be NULL: a section   */
/* that is absent) and, when `out` is not NULL, sets it there, or its       */
/* default when `in` does not have it. They return 0, KH_EINVAL with *err,  */
/* or KH_ENOMEM.                                                             */
/* ------------------------------------------------------------------------ */

static int put(json_t *out, const char *name, json_t *value)
{
    if (out == NULL) {
        json_decref(value);
        return 0;
    }
    return value != NULL && json_object_set_new(out, name, value) == 0 ? 0 : KH_ENOMEM;
}

static int read_bool(const json_t *in, json_t *out, const char *prefix, const char *name, int dflt,
                     struct policy_error *err)
{
    const json_t *v = json_object_get(in, name);

    if (v != NULL && !json_is_boolean(v))
        return refuse(err, prefix, name, "must be true or false");
    return out ? put(out, name, json_boolean(v ? json_is_true(v) : dflt)) : 0;
}

static int read_int(const json_t *in, json_t *out, const char *prefix, const char *name,
                    json_int_t min, json_int_t max, json_int_t dflt, struct policy_error *err)
{
    const json_t *v = json_object_get(in, name);

    if (v != NULL &&
        (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max))
        return refuse(err, prefix, name, "must be an integer from %lld to %lld", (long long)min,
                      (long long)max);
    return out ? put(out, name, json_integer(v ? json_integer_value(v) : dflt)) : 0;
}

/* One of `values` (NULL-terminated); the first is the default. */
static int read_enum(const json_t *in, json_t *out, const char *prefix, const char *name,
                     const char *const *values, struct policy_error *err)
{
    const json_t *v = json_object_get(in, name);
    const char *s = json_string_value(v);

    if (v != NULL && (s == NULL || strlen(s) != json_string_length(v) || !in_list(s, values))) {
        char list[96];
        size_t len = 0;

        list[0] = '\0';
        for (const char *const *k = values; *k != NULL && len < sizeof(list); k++)
            len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", k == values ? "" : ", ",
                                    *k);
        return refuse(err, prefix, name, "must be one of: %s", list);
    }
    return out ? put(out, name, json_string(v ? s : values[0])) : 0;
}

/* True when s[0..n) holds a control character: C0 (below 0x20), DEL, or C1
 * (U+0080..U+009F, encoded C2 80..C2 9F). NUL is one of them. */
static int has_control(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f)
            return 1;
        if (p[i] == 0xc2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
            return 1;
    }
    return 0;
}

/* A list of absolute paths, at most POLICY_PATHS_MAX of at most
 * POLICY_PATH_MAX bytes each, and at least `min_count`. The default is the
 * `ndflt` paths of `dflt`. */
static int read_paths(const json_t *in, json_t *out, const char *prefix, const char *name,
                      size_t min_count, const char *const *dflt, size_t ndflt,
                      struct policy_error *err)
{
    const json_t *v = json_object_get(in, name), *p;
    json_t *list = NULL;
    size_t i;
    int r = KH_ENOMEM;

    if (v != NULL && (!json_is_array(v) || json_array_size(v) > POLICY_PATHS_MAX))
        return refuse(err, prefix, name, "must be an array of at most %d absolute paths",
                      POLICY_PATHS_MAX);
    if (v != NULL && json_array_size(v) < min_count)
        return refuse(err, prefix, name, "must hold at least %zu path", min_count);
    json_array_foreach(v, i, p)
    {
        const char *s = json_string_value(p);
        size_t n = json_string_length(p);

        if (s == NULL)
            return refuse_at(err, prefix, name, i, "must be a string");
        if (n == 0 || s[0] != '/')
            return refuse_at(err, prefix, name, i, "must be an absolute path (starting with /)");
        if (n > POLICY_PATH_MAX)
            return refuse_at(err, prefix, name, i, "is longer than %d bytes", POLICY_PATH_MAX);
        if (has_control(s, n))
            return refuse_at(err, prefix, name, i, "must not contain control characters");
    }
    if (out == NULL)
        return 0;
    if (v != NULL) {
        list = json_deep_copy(v);
    } else if ((list = json_array()) != NULL) {
        for (i = 0; i < ndflt; i++)
            if (json_array_append_new(list, json_string(dflt[i])) != 0)
                goto out;
    }
    if (list == NULL)
        goto out;
    r = json_object_set_new(out, name, list) == 0 ? 0 : KH_ENOMEM;
    list = NULL;
out:
    json_decref(list);
    return r;
}

/* ------------------------------------------------------------------------ */
/* The sections. The defaults are the values written here.                  */
/* ------------------------------------------------------------------------ */

static const char *const slash[] = {"/"};
static const char *const rtp_default_excludes[] = {"/proc", "/sys", "/dev", "/run"};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char *const rtp_keys[] = {"enabled",    "paths",  "excludes",
                                       "timeout_ms", "action", NULL};
/* quarantine: move the file to the vault; block: deny opening it and leave
 * it where it is; report: only report it. */
static const char *const rtp_actions[] = {"quarantine", "block", "report", NULL};

static int read_rtp(const json_t *in, json_t *out, struct policy_error *err)
{
    int r;

    if ((r = read_bool(in, out, "rtp.", "enabled", 1, err)) != 0 ||
        (r = read_paths(in, out, "rtp.", "paths", 1, slash, NELEM(slash), err)) != 0 ||
        (r = read_paths(in, out, "rtp.", "excludes", 0, rtp_default_excludes,
                        NELEM(rtp_default_excludes), err)) != 0 ||
        (r = read_int(in, out, "rtp.", "timeout_ms", 100, 30000, 5000, err)) != 0 ||
        (r = read_enum(in, out, "rtp.", "action", rtp_actions, err)) != 0)
        return r;
    return 0;
}

static const char *const scan_keys[] = {"nice", "ionice_class", "max_filesize_mb", "archives",
                                        NULL};
static const char *const ionice_classes[] = {"idle", "best-effort", NULL};

static int read_scan(const json_t *in, json_t *out, struct policy_error *err)
{
    int r;

    if ((r = read_int(in, out, "scan.", "nice", 0, 19, 10, err)) != 0 ||
        (r = read_enum(in, out, "scan.", "ionice_class", ionice_classes, err)) != 0 ||
        (r = read_int(in, out, "scan.", "max_filesize_mb", 1, 4096, 100, err)) != 0 ||
        (r = read_bool(in, out, "scan.", "archives", 1, err)) != 0)
        return r;
    return 0;
}

static const char *const connections_keys[] = {"enabled", "interval_s", NULL};

static int read_connections(const json_t *in, json_t *out, struct policy_error *err)
{
    int r;

    if ((r = read_bool(in, out, "connections.", "enabled", 1, err)) != 0 ||
        (r = read_int(in, out, "connections.", "interval_s", 10, 3600, 60, err)) != 0)
        return r;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Scheduled scans.                                                          */
/* ------------------------------------------------------------------------ */

static const char *const scheduled_keys[] = {"name", "paths",    "full", "days",
                                             "time", "excludes", NULL};
static const char *const day_names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun", NULL};

/* "days": one to seven different day names, or ["daily"] alone. */
static int read_days(const json_t *in, json_t *out, const char *prefix, struct policy_error *err)
{
    const json_t *v = json_object_get(in, "days"), *d;
    unsigned seen = 0;
    size_t i;

    if (v == NULL)
        return refuse(err, prefix, "days", "is required: [\"daily\"] or day names mon..sun");
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 7)
        return refuse(err, prefix, "days", "must be [\"daily\"] or 1 to 7 of mon..sun");
    json_array_foreach(v, i, d)
    {
        const char *s = json_string_value(d);
        unsigned bit = 0;

        if (s != NULL && strcmp(s, "daily") == 0) {
            if (json_array_size(v) != 1)
                return refuse_at(err, prefix, "days", i, "\"daily\" cannot be combined with days");
            continue;
        }
        for (unsigned k = 0; s != NULL && day_names[k] != NULL; k++)
            if (strcmp(s, day_names[k]) == 0)
                bit = 1u << k;
        if (bit == 0 || strlen(s) != json_string_length(d))
            return refuse_at(err, prefix, "days", i,
                             "must be one of mon, tue, wed, thu, fri, sat, sun, daily");
        if (seen & bit)
            return refuse_at(err, prefix, "days", i, "names a day twice");
        seen |= bit;
    }
    return out ? put(out, "days", json_deep_copy(v)) : 0;
}

/* "time": "HH:MM", 00:00 to 23:59, in the agent's local time. */
static int read_time(const json_t *in, json_t *out, const char *prefix, struct policy_error *err)
{
    const json_t *v = json_object_get(in, "time");
    const char *s = json_string_value(v);

    if (v == NULL)
        return refuse(err, prefix, "time", "is required: \"HH:MM\" in the machine's local time");
    if (s == NULL || json_string_length(v) != 5 || strlen(s) != 5 || s[2] != ':' || s[0] < '0' ||
        s[0] > '2' || s[1] < '0' || s[1] > '9' || s[3] < '0' || s[3] > '5' || s[4] < '0' ||
        s[4] > '9' || (s[0] == '2' && s[1] > '3'))
        return refuse(err, prefix, "time", "must be \"HH:MM\" from 00:00 to 23:59");
    return out ? put(out, "time", json_string(s)) : 0;
}

static int read_scan_name(const json_t *in, json_t *out, const char *prefix,
                          struct policy_error *err)
{
    const json_t *v = json_object_get(in, "name");
    const char *s = json_string_value(v);

    if (v != NULL && (s == NULL || json_string_length(v) > POLICY_NAME_MAX ||
                      has_control(s, json_string_length(v))))
        return refuse(err, prefix, "name",
                      "must be a string of at most %d bytes without control characters",
                      POLICY_NAME_MAX);
    return out ? put(out, "name", json_string(s ? s : "")) : 0;
}

/* One entry of scheduled_scans. A scan needs its days and time; the rest
 * defaults to a scan of the whole file system that is not a full scan. */
static int read_scheduled_scan(const json_t *in, json_t *out, size_t index,
                               struct policy_error *err)
{
    char prefix[48];
    int r;

    snprintf(prefix, sizeof(prefix), "scheduled_scans[%zu].", index);
    if (!json_is_object(in))
        return refuse_at(err, "", "scheduled_scans", index, "must be an object");
    if ((r = check_keys(in, prefix, scheduled_keys, err)) != 0 ||
        (r = read_scan_name(in, out, prefix, err)) != 0 ||
        (r = read_paths(in, out, prefix, "paths", 1, slash, NELEM(slash), err)) != 0 ||
        (r = read_bool(in, out, prefix, "full", 0, err)) != 0 ||
        (r = read_days(in, out, prefix, err)) != 0 || (r = read_time(in, out, prefix, err)) != 0 ||
        (r = read_paths(in, out, prefix, "excludes", 0, NULL, 0, err)) != 0)
        return r;
    return 0;
}

/* The default schedule: a full scan of everything every Sunday at 02:30. */
static json_t *default_schedule(void)
{
    return json_pack("[{s:s, s:[s], s:b, s:[s], s:s, s:[]}]", "name", "Quét toàn bộ hằng tuần",
                     "paths", "/", "full", 1, "days", "sun", "time", "02:30", "excludes");
}

static int read_schedule(const json_t *doc, json_t *out, struct policy_error *err)
{
    const json_t *v = json_object_get(doc, "scheduled_scans"), *entry;
    json_t *list = NULL, *o = NULL;
    size_t i;
    int r = KH_ENOMEM;

    if (v == NULL)
        return out ? put(out, "scheduled_scans", default_schedule()) : 0;
    if (!json_is_array(v) || json_array_size(v) > POLICY_SCANS_MAX)
        return refuse(err, "", "scheduled_scans", "must be an array of at most %d scans",
                      POLICY_SCANS_MAX);
    if (out != NULL && (list = json_array()) == NULL)
        goto out;
    json_array_foreach(v, i, entry)
    {
        if (list != NULL && (o = json_object()) == NULL)
            goto out;
        if ((r = read_scheduled_scan(entry, o, i, err)) != 0)
            goto out;
        if (list != NULL && json_array_append_new(list, o) != 0) {
            o = NULL;
            r = KH_ENOMEM;
            goto out;
        }
        o = NULL;
    }
    r = list != NULL ? put(out, "scheduled_scans", list) : 0;
    list = NULL;
out:
    json_decref(o);
    json_decref(list);
    return r;
}

/* ------------------------------------------------------------------------ */
/* The document.                                                             */
/* ------------------------------------------------------------------------ */

static const char *const top_keys[] = {
    "rtp",         "scheduled_scans",   "scan",
    "connections", "update_interval_s", "quarantine_retention_days",
    NULL};

/* An object section of the document: checked for unknown keys, then read
 * by `read` into a new object under the same name in `out`. */
static int read_section(const json_t *doc, json_t *out, const char *name, const char *const *keys,
                        int (*read)(const json_t *, json_t *, struct policy_error *),
                        struct policy_error *err)
{
    const json_t *in = json_object_get(doc, name);
    json_t *o = NULL;
    char prefix[32];
    int r;

    snprintf(prefix, sizeof(prefix), "%s.", name);
    if (in != NULL && !json_is_object(in))
        return refuse(err, "", name, "must be an object");
    if (in != NULL && (r = check_keys(in, prefix, keys, err)) != 0)
        return r;
    if (out != NULL && (o = json_object()) == NULL)
        return KH_ENOMEM;
    if ((r = read(in, o, err)) != 0) {
        json_decref(o);
        return r;
    }
    return o != NULL ? put(out, name, o) : 0;
}

/* Validates `doc` and, when `out` is not NULL, fills it with the complete
 * policy, in the order the schema lists the settings. */
static int policy_parse(const json_t *doc, json_t *out, struct policy_error *err)
{
    int r;

    if (!json_is_object(doc))
        return refuse(err, "", "", "the policy must be a JSON object");
    if (json_dumpb(doc, NULL, 0, JSON_COMPACT) > POLICY_TEXT_MAX)
        return refuse(err, "", "", "the policy is over %d KiB as compact JSON",
                      POLICY_TEXT_MAX / 1024);
    if ((r = check_keys(doc, "", top_keys, err)) != 0 ||
        (r = read_section(doc, out, "rtp", rtp_keys, read_rtp, err)) != 0 ||
        (r = read_schedule(doc, out, err)) != 0 ||
        (r = read_section(doc, out, "scan", scan_keys, read_scan, err)) != 0 ||
        (r = read_section(doc, out, "connections", connections_keys, read_connections, err)) != 0 ||
        (r = read_int(doc, out, "", "update_interval_s", 60, 86400, 3600, err)) != 0 ||
        (r = read_int(doc, out, "", "quarantine_retention_days", 1, 3650, 90, err)) != 0)
        return r;
    return 0;
}

int policy_validate(const json_t *doc, struct policy_error *err)
{
    return policy_parse(doc, NULL, err);
}

int policy_complete(const json_t *doc, json_t **out, struct policy_error *err)
{
    json_t *o = json_object();
    int r = KH_ENOMEM;

    if (o == NULL)
        goto out;
    if ((r = policy_parse(doc, o, err)) != 0)
        goto out;
    *out = o;
    o = NULL;
    r = KH_OK;
out:
    json_decref(o);
    return r;
}

json_t *policy_default(void)
{
    struct policy_error err;
    json_t *empty = json_object(), *out = NULL;

    if (empty != NULL && policy_complete(empty, &out, &err) != KH_OK)
        out = NULL;
    json_decref(empty);
    return out;
}

int policy_version(const json_t *policy, char out[POLICY_VERSION_LEN + 1])
{
    char *text = json_dumps(policy, JSON_COMPACT | JSON_SORT_KEYS);
    uint8_t md[32];
    char hex[65];
    int r = KH_ENOMEM;

    if (text == NULL || khx_sha256(text, strlen(text), md) != 0)
        goto out;
    khx_hex_encode(md, sizeof(md), hex);
    memcpy(out, hex, POLICY_VERSION_LEN);
    out[POLICY_VERSION_LEN] = '\0';
    r = KH_OK;
out:
    free(text);
    return r;
}

/* ------------------------------------------------------------------------ */
/* The policy in effect.                                                     */
/* ------------------------------------------------------------------------ */

/* From the agency up through its parents (each step a primary-key lookup),
 * the nearest one with a policy. The level cap stops a damaged tree with a
 * cycle from looping; real trees are a few levels deep. */
static const char effective_sql[] =
    "WITH RECURSIVE up (id, parent_id, lvl) AS ("
    " SELECT id, parent_id, 0 FROM agencies WHERE id = $1"
    " UNION ALL"
    " SELECT a.id, a.parent_id, up.lvl + 1 FROM agencies a JOIN up ON a.id = up.parent_id"
    " WHERE up.lvl < 64)"
    " SELECT p.agency_id, p.policy FROM up JOIN agency_policies p ON p.agency_id = up.id"
    " ORDER BY up.lvl LIMIT 1";

int policy_effective(struct store_db *db, int64_t agency_id, json_t **policy, int64_t *from)
{
    struct store_stmt *st = NULL;
    struct policy_error err;
    json_t *doc = NULL, *complete = NULL;
    const char *text;
    int s;

    *from = 0;
    s = store_queryf(db, &st, effective_sql, "i", agency_id);
    if (s < 0)
        goto out;
    if (s == STORE_DONE) {
        complete = policy_default();
        s = complete != NULL ? STORE_OK : STORE_ENOMEM;
        goto done;
    }
    *from = store_col_int(st, 0);
    text = store_col_text(st, 1);
    doc = text != NULL ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (doc == NULL) {
        s = STORE_EINVAL;
        goto out;
    }
    /* The store's codes and libkhien's overlap (-1 is STORE_EINVAL and
     * KH_ENOMEM), so the completion's answer is translated, not passed on. */
    switch (policy_complete(doc, &complete, &err)) {
    case KH_OK:
        s = STORE_OK;
        break;
    case KH_ENOMEM:
        s = STORE_ENOMEM;
        break;
    default:
        s = STORE_EINVAL;
        break;
    }
done:
    if (s == STORE_OK) {
        *policy = complete;
        complete = NULL;
    }
out:
    store_finalize(st);
    json_decref(doc);
    json_decref(complete);
    return s;
}
