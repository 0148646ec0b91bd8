/*
 * The agent's copy of its protection policy: defaults, and reading the
 * "policy" object of a check-in answer (docs/api/agent.md). The server has
 * already validated it; the agent checks again because a policy decides what
 * the machine does, and an unreadable field keeps its default rather than
 * turning protection off.
 */
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "khx.h"

static char **strv_dup(const char *const *v, size_t n)
{
    char **out = calloc(n ? n : 1, sizeof(*out));
    for (size_t i = 0; out != NULL && i < n; i++)
        if ((out[i] = strdup(v[i])) == NULL) {
            while (i-- > 0)
                free(out[i]);
            free(out);
            return NULL;
        }
    return out;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}

void agent_policy_default(struct agent_policy *p)
{
    static const char *const paths[] = {"/"};
    static const char *const excludes[] = {"/proc", "/sys", "/dev", "/run"};
    memset(p, 0, sizeof(*p));
    strcpy(p->version, "default");
    p->rtp_enabled = 1;
    p->rtp_paths = strv_dup(paths, 1);
    p->nrtp_paths = p->rtp_paths ? 1 : 0;
    p->rtp_excludes = strv_dup(excludes, 4);
    p->nrtp_excludes = p->rtp_excludes ? 4 : 0;
    p->rtp_timeout_ms = 5000;
    p->action = AGENT_ACT_QUARANTINE;
    p->nice = 10;
    p->ionice_idle = 1;
    p->max_filesize = 100ull << 20;
    p->archives = 1;
    p->conn_enabled = 1;
    p->conn_interval_s = 60;
    p->update_interval_s = 3600;
    p->retention_days = 90;
}

void agent_policy_free(struct agent_policy *p)
{
    if (p == NULL)
        return;
    strv_free(p->rtp_paths, p->nrtp_paths);
    strv_free(p->rtp_excludes, p->nrtp_excludes);
    for (size_t i = 0; i < p->nscheds; i++) {
        strv_free(p->scheds[i].paths, p->scheds[i].npaths);
        strv_free(p->scheds[i].excludes, p->scheds[i].nexcludes);
    }
    free(p->scheds);
    memset(p, 0, sizeof(*p));
}

/* Reads an array of absolute paths into a fresh vector. */
static int read_paths(json_t *arr, const char *field, char ***out, size_t *n, char *err,
                      size_t errlen)
{
    if (!json_is_array(arr) || json_array_size(arr) > AGENT_PATHS_MAX) {
        khx_errf(err, errlen, "%s: must be an array of at most %d paths", field, AGENT_PATHS_MAX);
        return KH_EFORMAT;
    }
    size_t cnt = json_array_size(arr);
    char **v = calloc(cnt ? cnt : 1, sizeof(*v));
    if (v == NULL)
        return KH_ENOMEM;
    for (size_t i = 0; i < cnt; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (s == NULL || s[0] != '/' || strlen(s) >= 4096) {
            khx_errf(err, errlen, "%s[%zu]: must be an absolute path", field, i);
            strv_free(v, i);
            return KH_EFORMAT;
        }
        if ((v[i] = strdup(s)) == NULL) {
            strv_free(v, i);
            return KH_ENOMEM;
        }
    }
    *out = v;
    *n = cnt;
    return KH_OK;
}

static int read_int(json_t *obj, const char *key, long long lo, long long hi, long long *v,
                    const char *prefix, char *err, size_t errlen)
{
    json_t *j = json_object_get(obj, key);
    if (j == NULL || json_is_null(j))
        return KH_OK;
    if (!json_is_integer(j) || json_integer_value(j) < lo || json_integer_value(j) > hi) {
        khx_errf(err, errlen, "%s%s: must be an integer from %lld to %lld", prefix, key, lo, hi);
        return KH_EFORMAT;
    }
    *v = json_integer_value(j);
    return KH_OK;
}

static int read_bool(json_t *obj, const char *key, int *v)
{
    json_t *j = json_object_get(obj, key);
    if (json_is_boolean(j))
        *v = json_is_true(j);
    return KH_OK;
}

static int parse_days(json_t *arr, unsigned *days)
{
    static const char *const names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
    if (arr == NULL) {
        *days = 0x7f;
        return KH_OK;
    }
    if (!json_is_array(arr))
        return KH_EFORMAT;
    unsigned d = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (s == NULL)
            return KH_EFORMAT;
        if (strcmp(s, "daily") == 0) {
            d = 0x7f;
            continue;
        }
        size_t k = 0;
        while (k < 7 && strcmp(s, names[k]) != 0)
            k++;
        if (k == 7)
            return KH_EFORMAT;
        d |= 1u << k;
    }
    *days = d;
    return KH_OK;
}

static int parse_sched(json_t *o, size_t idx, struct agent_sched *s, char *err, size_t errlen)
{
    char field[64];
    int r;
    if (!json_is_object(o)) {
        khx_errf(err, errlen, "scheduled_scans[%zu]: must be an object", idx);
        return KH_EFORMAT;
    }
    const char *name = json_string_value(json_object_get(o, "name"));
    snprintf(s->name, sizeof(s->name), "%s", name ? name : "scheduled");
    snprintf(field, sizeof(field), "scheduled_scans[%zu].paths", idx);
    json_t *paths = json_object_get(o, "paths");
    if (paths == NULL) {
        static const char *const root[] = {"/"};
        s->paths = strv_dup(root, 1);
        s->npaths = 1;
    } else if ((r = read_paths(paths, field, &s->paths, &s->npaths, err, errlen)) != KH_OK)
        return r;
    json_t *ex = json_object_get(o, "excludes");
    snprintf(field, sizeof(field), "scheduled_scans[%zu].excludes", idx);
    if (ex != NULL && (r = read_paths(ex, field, &s->excludes, &s->nexcludes, err, errlen)) != 0)
        return r;
    read_bool(o, "full", &s->full);
    if (parse_days(json_object_get(o, "days"), &s->days) != KH_OK) {
        khx_errf(err, errlen, "scheduled_scans[%zu].days: must name days mon..sun or daily", idx);
        return KH_EFORMAT;
    }
    const char *t = json_string_value(json_object_get(o, "time"));
    int hh = 2, mm = 0;
    if (t != NULL &&
        (sscanf(t, "%2d:%2d", &hh, &mm) != 2 || hh < 0 || hh > 23 || mm < 0 || mm > 59)) {
        khx_errf(err, errlen, "scheduled_scans[%zu].time: must be HH:MM", idx);
        return KH_EFORMAT;
    }
    s->minute = hh * 60 + mm;
    return KH_OK;
}

int agent_policy_parse(json_t *obj, const char *version, struct agent_policy *out, char *err,
                       size_t errlen)
{
    struct agent_policy p;
    int r = KH_EFORMAT;
    long long v;
    agent_policy_default(&p);
    if (!json_is_object(obj)) {
        khx_errf(err, errlen, "policy: must be an object");
        goto out;
    }
    snprintf(p.version, sizeof(p.version), "%s", version ? version : "");
    json_t *rtp = json_object_get(obj, "rtp");
    if (json_is_object(rtp)) {
        read_bool(rtp, "enabled", &p.rtp_enabled);
        json_t *j;
        if ((j = json_object_get(rtp, "paths")) != NULL) {
            strv_free(p.rtp_paths, p.nrtp_paths);
            p.rtp_paths = NULL;
            p.nrtp_paths = 0;
            if ((r = read_paths(j, "rtp.paths", &p.rtp_paths, &p.nrtp_paths, err, errlen)) != 0)
                goto out;
        }
        if ((j = json_object_get(rtp, "excludes")) != NULL) {
            strv_free(p.rtp_excludes, p.nrtp_excludes);
            p.rtp_excludes = NULL;
            p.nrtp_excludes = 0;
            if ((r = read_paths(j, "rtp.excludes", &p.rtp_excludes, &p.nrtp_excludes, err,
                                errlen)) != 0)
                goto out;
        }
        v = p.rtp_timeout_ms;
        if ((r = read_int(rtp, "timeout_ms", 100, 600000, &v, "rtp.", err, errlen)) != 0)
            goto out;
        p.rtp_timeout_ms = (unsigned)v;
        const char *act = json_string_value(json_object_get(rtp, "action"));
        if (act != NULL) {
            if (strcmp(act, "quarantine") == 0)
                p.action = AGENT_ACT_QUARANTINE;
            else if (strcmp(act, "block") == 0)
                p.action = AGENT_ACT_BLOCK;
            else if (strcmp(act, "report") == 0)
                p.action = AGENT_ACT_REPORT;
            else {
                khx_errf(err, errlen, "rtp.action: must be quarantine, block or report");
                r = KH_EFORMAT;
                goto out;
            }
        }
    }
    json_t *scheds = json_object_get(obj, "scheduled_scans");
    if (json_is_array(scheds) && json_array_size(scheds) > 0) {
        size_t n = KHX_MIN(json_array_size(scheds), KHX_ARRAY_LEN(((struct agent *)0)->sched_last));
        if ((p.scheds = calloc(n, sizeof(*p.scheds))) == NULL) {
            r = KH_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            p.nscheds = i + 1;
            if ((r = parse_sched(json_array_get(scheds, i), i, &p.scheds[i], err, errlen)) != 0)
                goto out;
        }
    }
    json_t *scan = json_object_get(obj, "scan");
    if (json_is_object(scan)) {
        v = p.nice;
        if ((r = read_int(scan, "nice", 0, 19, &v, "scan.", err, errlen)) != 0)
            goto out;
        p.nice = (int)v;
        const char *io = json_string_value(json_object_get(scan, "ionice_class"));
        if (io != NULL)
            p.ionice_idle = strcmp(io, "idle") == 0;
        v = (long long)(p.max_filesize >> 20);
        if ((r = read_int(scan, "max_filesize_mb", 1, 1 << 20, &v, "scan.", err, errlen)) != 0)
            goto out;
        p.max_filesize = (uint64_t)v << 20;
        read_bool(scan, "archives", &p.archives);
    }
    json_t *conn = json_object_get(obj, "connections");
    if (json_is_object(conn)) {
        read_bool(conn, "enabled", &p.conn_enabled);
        v = p.conn_interval_s;
        if ((r = read_int(conn, "interval_s", 1, 3600, &v, "connections.", err, errlen)) != 0)
            goto out;
        p.conn_interval_s = (unsigned)v;
    }
    v = p.update_interval_s;
    if ((r = read_int(obj, "update_interval_s", 1, 86400, &v, "", err, errlen)) != 0)
        goto out;
    p.update_interval_s = (unsigned)v;
    v = p.retention_days;
    if ((r = read_int(obj, "quarantine_retention_days", 1, 3650, &v, "", err, errlen)) != 0)
        goto out;
    p.retention_days = (unsigned)v;
    *out = p;
    memset(&p, 0, sizeof(p));
    r = KH_OK;
out:
    agent_policy_free(&p);
    return r;
}
