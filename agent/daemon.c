/*
 * The agent daemon (`khien-agent run`): start-up, the uplink loop and the
 * commands that talk to the server. The uplink loop is the only thread that
 * uses the HTTPS client. Each turn it
 *
 *   1. sends spooled events (oldest first, the same batch again until the
 *      server answers 2xx, so a lost answer never loses or doubles one);
 *   2. checks in when it is time: inventory and status up, policy, pending
 *      tasks and the newest bundle down;
 *   3. installs a newer bundle: verify, unpack, start a worker on it, switch,
 *      and only then retire the old worker (no moment without protection);
 *   4. reports scan-job progress for tasks and starts scheduled scans;
 *   5. writes STATE/status.json for `khien-agent status`.
 *
 * Failures back off exponentially (2 s doubling to the check-in interval,
 * with jitter); events keep accumulating in the spool meanwhile.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "client.h"
#include "ioc.h"
#include "khx.h"
#include "platform.h"
#include "spool.h"
#include "update.h"
#include "uplink_common.h"
#include "vault.h"

#define PROGRESS_EVERY_MS 3000
#define STATUS_REFRESH_S  10

static volatile sig_atomic_t signalled;

static void on_signal(int sig)
{
    (void)sig;
    signalled = 1;
}

void agent_log(struct agent *a, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "khien-agent: %s\n", msg);
    (void)a;
}

static void set_error(struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct agent *a, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&a->lock);
    va_start(ap, fmt);
    vsnprintf(a->last_error, sizeof(a->last_error), fmt, ap);
    va_end(ap);
    a->last_error_at = (int64_t)time(NULL);
    pthread_mutex_unlock(&a->lock);
    agent_log(a, "%s", a->last_error);
}

int agent_emit(struct agent *a, json_t *ev)
{
    char id[37];
    if (json_object_get(ev, "id") == NULL) {
        khx_uuid4(id);
        json_object_set_new(ev, "id", json_string(id));
    }
    if (json_object_get(ev, "at") == NULL)
        json_object_set_new(ev, "at", json_integer((json_int_t)time(NULL)));
    char *text = json_dumps(ev, JSON_COMPACT);
    if (text == NULL)
        return KH_ENOMEM;
    int r = a->spool ? spool_put(a->spool, text, strlen(text)) : KH_EINVAL;
    if (r != KH_OK)
        agent_log(a, "event not spooled (%s): %.200s", kh_strerror(r), text);
    free(text);
    pthread_mutex_lock(&a->lock);
    pthread_cond_broadcast(&a->wake);
    pthread_mutex_unlock(&a->lock);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Database                                                                  */
/* ------------------------------------------------------------------------ */

/* Loads the indicator set of an installed version (NULL when it has none). */
static struct ioc_set *load_iocs(struct agent *a, const char *path)
{
    uint8_t *data = NULL;
    size_t len = 0, bad = 0;
    struct ioc_set *set = NULL;
    char err[256] = "";
    if (path == NULL || path[0] == '\0' || khx_read_file(path, 1u << 30, &data, &len) != KH_OK)
        return NULL;
    if (ioc_set_load((const char *)data, len, 0, &set, &bad, err, sizeof(err)) != KH_OK)
        agent_log(a, "%s: indicators not loaded: %s", path, err);
    free(data);
    return set;
}

/* Makes `kdb` (and `iocs`) current: a new worker first, then the swap, then
 * the old worker is released (it stops once its last scan has answered). */
static int use_database(struct agent *a, const char *kdb, const char *iocs, int64_t version,
                        int64_t created, char *err, size_t errlen)
{
    struct agent_worker *w = NULL;
    int r = agent_worker_start(a, kdb, 0, &w, err, errlen);
    if (r != KH_OK)
        return r;
    w->db_version = version;
    struct sbx_stats st;
    sbx_worker_stats(w->w, &st);
    struct ioc_set *set = load_iocs(a, iocs);
    pthread_mutex_lock(&a->lock);
    struct agent_worker *old = a->rt_worker;
    struct ioc_set *old_set = a->iocs;
    a->rt_worker = w;
    a->iocs = set;
    a->db_version = version;
    a->db_created = created ? created : st.db_created;
    a->db_signatures = (int64_t)st.db_signatures;
    pthread_mutex_unlock(&a->lock);
    agent_worker_release(old);
    ioc_set_free(old_set);
    if (a->rtp != NULL)
        plat_rtp_flush_cache(a->rtp);
    agent_log(a, "database version %lld in use (%llu signatures)", (long long)version,
              (unsigned long long)st.db_signatures);
    return KH_OK;
}

static void refuse_event(struct agent *a, const char *type, int64_t version, const char *why)
{
    json_t *ev =
        json_pack("{s:s,s:I,s:s}", "type", type, "version", (json_int_t)version, "reason", why);
    if (ev != NULL)
        agent_emit(a, ev);
    json_decref(ev);
}

/* Downloads, verifies and installs bundle `version`. Returns KH_OK, KH_EIO
 * when it could not be downloaded (try again later) or another error when
 * the bundle itself was refused (do not try that version again). */
static int update_to(struct agent *a, struct uplink *u, int64_t version)
{
    char err[512] = "";
    struct update_db db;
    pthread_mutex_lock(&a->lock);
    int64_t current = a->db_version;
    pthread_mutex_unlock(&a->lock);
    int r = uplink_fetch_bundle(u, version, current, &db);
    if (r != KH_OK)
        return r;
    if ((r = use_database(a, db.kdb_path, db.ioc_path, db.version, db.created_at, err,
                          sizeof(err))) != KH_OK) {
        set_error(a, "bundle %lld does not load: %s", (long long)version, err);
        refuse_event(a, "update_failed", version, err);
        return r;
    }
    if (update_switch(a->db_dir, db.version, err, sizeof(err)) != KH_OK)
        set_error(a, "bundle %lld: could not record it as current: %s", (long long)version, err);
    json_t *ev = json_pack("{s:s,s:I,s:I}", "type", "update_applied", "version",
                           (json_int_t)db.version, "signatures", (json_int_t)db.signatures);
    if (ev != NULL)
        agent_emit(a, ev);
    json_decref(ev);
    return KH_OK;
}

/* The database at start-up: --db, else the installed current version, else
 * the previous one when the current does not load. */
static int load_initial_database(struct agent *a)
{
    char err[512] = "";
    struct update_db db;
    if (a->opts->db_file != NULL) {
        if (use_database(a, a->opts->db_file, NULL, 0, 0, err, sizeof(err)) == KH_OK)
            return KH_OK;
        agent_log(a, "%s: %s", a->opts->db_file, err);
        return KH_EFORMAT;
    }
    if (update_current(a->db_dir, &db) != KH_OK || db.kdb_path[0] == '\0') {
        agent_log(a, "no signature database yet: waiting for the server's first bundle");
        return KH_OK;
    }
    if (use_database(a, db.kdb_path, db.ioc_path, db.version, db.created_at, err, sizeof(err)) ==
        KH_OK)
        return KH_OK;
    agent_log(a, "database version %lld does not load (%s): rolling back", (long long)db.version,
              err);
    refuse_event(a, "update_failed", db.version, err);
    if (update_rollback(a->db_dir, &db, err, sizeof(err)) == KH_OK &&
        use_database(a, db.kdb_path, db.ioc_path, db.version, db.created_at, err, sizeof(err)) ==
            KH_OK)
        return KH_OK;
    agent_log(a, "no usable signature database: %s", err);
    return KH_OK;
}

/* ------------------------------------------------------------------------ */
/* Uplink                                                                    */
/* ------------------------------------------------------------------------ */

/* How the shared uplink code (uplink_common.h) tells this daemon what
 * happened: failures become the last error in status.json, refused events
 * are log lines, and an events call the server answered with another error
 * is retried without a word. */
static void uplink_report(void *ctx, enum uplink_what what, const char *msg)
{
    struct agent *a = ctx;
    if (what == UPLINK_FAILED)
        set_error(a, "%s", msg);
    else if (what == UPLINK_BATCH_REFUSED || what == UPLINK_EVENT_REJECTED)
        agent_log(a, "%s", msg);
}

static void uplink_emit(void *ctx, json_t *ev)
{
    agent_emit(ctx, ev);
}

static json_t *inventory_json(struct agent *a)
{
    struct plat_inventory inv;
    memset(&inv, 0, sizeof(inv));
    plat_inventory(&inv);
    pthread_mutex_lock(&a->lock);
    json_t *fields =
        json_pack("{s:I,s:I,s:I,s:b,s:I,s:s}", "db_version", (json_int_t)a->db_version, "db_time",
                  (json_int_t)a->db_created, "last_full_scan", (json_int_t)a->last_full_scan, "rtp",
                  atomic_load(&a->rtp_on), "db_signatures", (json_int_t)a->db_signatures,
                  "policy_version", a->policy.version);
    pthread_mutex_unlock(&a->lock);
    json_t *j = uplink_inventory_json(&inv, fields);
    if (j != NULL && inv.firewall >= 0)
        json_object_set_new(j, "firewall", json_boolean(inv.firewall));
    return j;
}

static void apply_policy(struct agent *a, json_t *pol, const char *version)
{
    struct agent_policy p;
    char err[256];
    char path[4200];
    if (version == NULL || pol == NULL)
        return;
    pthread_mutex_lock(&a->lock);
    int same = strcmp(a->policy.version, version) == 0;
    pthread_mutex_unlock(&a->lock);
    if (same)
        return;
    if (agent_policy_parse(pol, version, &p, err, sizeof(err)) != KH_OK) {
        set_error(a, "policy %s not applied: %s", version, err);
        return;
    }
    snprintf(path, sizeof(path), "%s/policy.json", a->state_dir);
    json_t *saved = json_pack("{s:s,s:O}", "version", version, "policy", pol);
    if (saved != NULL)
        json_dump_file(saved, path, JSON_COMPACT);
    json_decref(saved);
    pthread_mutex_lock(&a->lock);
    int rtp_changed =
        p.rtp_enabled != a->policy.rtp_enabled || p.rtp_timeout_ms != a->policy.rtp_timeout_ms ||
        p.nrtp_paths != a->policy.nrtp_paths || p.nrtp_excludes != a->policy.nrtp_excludes;
    for (size_t i = 0; !rtp_changed && i < p.nrtp_paths; i++)
        rtp_changed = strcmp(p.rtp_paths[i], a->policy.rtp_paths[i]) != 0;
    for (size_t i = 0; !rtp_changed && i < p.nrtp_excludes; i++)
        rtp_changed = strcmp(p.rtp_excludes[i], a->policy.rtp_excludes[i]) != 0;
    agent_policy_free(&a->policy);
    a->policy = p;
    pthread_mutex_unlock(&a->lock);
    agent_log(a, "policy %s applied", version);
    if (rtp_changed)
        agent_rtp_apply(a);
}

static void load_saved_policy(struct agent *a)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/policy.json", a->state_dir);
    json_t *j = json_load_file(path, 0, NULL);
    if (j != NULL)
        apply_policy(a, json_object_get(j, "policy"),
                     json_string_value(json_object_get(j, "version")));
    json_decref(j);
}

static void post_task_result(struct agent *a, struct uplink *u, int64_t id, const char *state,
                             int progress, json_t *result)
{
    char path[64];
    snprintf(path, sizeof(path), "/agent/tasks/%lld/result", (long long)id);
    json_t *body = json_pack("{s:s,s:i}", "state", state, "progress", progress);
    if (body != NULL && result != NULL)
        json_object_set(body, "result", result);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct client_resp resp;
    memset(&resp, 0, sizeof(resp));
    if (text != NULL &&
        client_call(u->client, "POST", path, text, strlen(text), 0, &resp) == KH_OK &&
        resp.status != 200)
        agent_log(a, "task %lld: the server answered %ld to the result", (long long)id,
                  resp.status);
    client_resp_free(&resp);
    free(text);
}

static void run_task(struct agent *a, struct uplink *u, json_t *t)
{
    int64_t id = json_integer_value(json_object_get(t, "id"));
    const char *kind = json_string_value(json_object_get(t, "kind"));
    json_t *args = json_object_get(t, "args");
    char err[512] = "";
    struct vault_entry e;
    if (kind == NULL || id <= 0)
        return;
    agent_log(a, "task %lld: %s", (long long)id, kind);
    if (strcmp(kind, "scan") == 0) {
        const char *paths[AGENT_PATHS_MAX];
        size_t np = 0;
        json_t *jp = json_object_get(args, "paths");
        for (size_t i = 0; i < json_array_size(jp) && np < AGENT_PATHS_MAX; i++)
            if (json_string_value(json_array_get(jp, i)) != NULL)
                paths[np++] = json_string_value(json_array_get(jp, i));
        int full = json_is_true(json_object_get(args, "full"));
        pthread_mutex_lock(&a->lock);
        const char **ex = (const char **)a->policy.rtp_excludes;
        size_t nex = a->policy.nrtp_excludes;
        if (np == 0) {
            for (size_t i = 0; i < a->policy.nrtp_paths && np < AGENT_PATHS_MAX; i++)
                paths[np++] = a->policy.rtp_paths[i];
            if (a->opts->nwatch > 0) {
                np = 0;
                for (size_t i = 0; i < a->opts->nwatch && np < AGENT_PATHS_MAX; i++)
                    paths[np++] = a->opts->watch[i];
            }
        }
        struct scan_job *j =
            agent_scan_job_new(full ? "full scan" : "on-demand scan", paths, np, ex, nex, full);
        pthread_mutex_unlock(&a->lock);
        if (j == NULL) {
            post_task_result(a, u, id, "failed", 0, json_pack("{s:s}", "error", "out of memory"));
            return;
        }
        j->task_id = id;
        agent_scan_queue(a, j);
        post_task_result(a, u, id, "running", 0, NULL);
        return;
    }
    if (strcmp(kind, "update") == 0) {
        u->next_checkin = 0;
        post_task_result(a, u, id, "done", 100, NULL);
        return;
    }
    if (strcmp(kind, "quarantine_restore") == 0 || strcmp(kind, "quarantine_delete") == 0) {
        const char *qid = json_string_value(json_object_get(args, "quarantine_id"));
        int restore = strcmp(kind, "quarantine_restore") == 0;
        int r = KH_EINVAL;
        if (qid != NULL && restore) {
            /* Allowlist first: the restored file must not be caught again. */
            struct vault_entry *items = NULL;
            size_t n = 0;
            if (vault_list(a->vault, &items, &n) == KH_OK)
                for (size_t i = 0; i < n; i++)
                    if (strcmp(items[i].id, qid) == 0)
                        agent_allow_add(a->state_dir, items[i].sha256);
            free(items);
            r = vault_restore(a->vault, qid, NULL, &e, err, sizeof(err));
        } else if (qid != NULL) {
            r = vault_delete(a->vault, qid, err, sizeof(err));
        }
        json_t *res = r == KH_OK && restore
                          ? json_pack("{s:s,s:s}", "quarantine_id", qid, "restored_to", e.path)
                      : r == KH_OK ? json_pack("{s:s}", "quarantine_id", qid)
                                   : json_pack("{s:s}", "error", err[0] ? err : kh_strerror(r));
        post_task_result(a, u, id, r == KH_OK ? "done" : "failed", 100, res);
        json_decref(res);
        return;
    }
    json_t *res = json_pack("{s:s}", "error", "this agent does not know the task kind");
    post_task_result(a, u, id, "failed", 0, res);
    json_decref(res);
}

static void fetch_tasks(struct agent *a, struct uplink *u)
{
    struct client_resp resp;
    memset(&resp, 0, sizeof(resp));
    if (client_call(u->client, "GET", "/agent/tasks", NULL, 0, 0, &resp) == KH_OK &&
        resp.status == 200) {
        json_t *j = json_loads(resp.body ? resp.body : "", 0, NULL);
        json_t *items = json_object_get(j, "items");
        for (size_t i = 0; i < json_array_size(items); i++)
            run_task(a, u, json_array_get(items, i));
        json_decref(j);
    }
    client_resp_free(&resp);
}

static void checkin(struct agent *a, struct uplink *u)
{
    json_t *inv = inventory_json(a);
    char *text = inv ? json_dumps(inv, JSON_COMPACT) : NULL;
    json_decref(inv);
    struct client_resp resp;
    memset(&resp, 0, sizeof(resp));
    unsigned interval = a->opts->checkin_s ? a->opts->checkin_s : (unsigned)a->id.checkin_interval;
    int r = text ? client_call(u->client, "POST", "/agent/checkin", text, strlen(text), 1, &resp)
                 : KH_ENOMEM;
    free(text);
    if (r != KH_OK || resp.status != 200) {
        if (r == KH_OK)
            uplink_fatal_status(u, resp.status);
        else
            set_error(a, "check-in failed: %s", resp.error);
        uplink_backoff(u, &u->next_checkin);
        client_resp_free(&resp);
        return;
    }
    u->unauthorized = 0;
    json_t *j = json_loads(resp.body ? resp.body : "", 0, NULL);
    client_resp_free(&resp);
    pthread_mutex_lock(&a->lock);
    a->last_checkin = (int64_t)time(NULL);
    pthread_mutex_unlock(&a->lock);
    json_int_t srv_interval = json_integer_value(json_object_get(j, "checkin_interval"));
    if (srv_interval > 0 && a->opts->checkin_s == 0) {
        a->id.checkin_interval = (int)srv_interval;
        interval = (unsigned)srv_interval;
    }
    u->interval_s = interval;
    u->next_checkin = khx_now_ms() + interval * 1000ull;
    apply_policy(a, json_object_get(j, "policy"),
                 json_string_value(json_object_get(j, "policy_version")));
    if (json_integer_value(json_object_get(j, "tasks_pending")) > 0)
        fetch_tasks(a, u);
    json_int_t latest =
        json_integer_value(json_object_get(json_object_get(j, "bundle"), "version"));
    pthread_mutex_lock(&a->lock);
    int newer = latest > a->db_version && a->opts->db_file == NULL;
    pthread_mutex_unlock(&a->lock);
    if (newer && latest != u->refused_version) {
        int ur = update_to(a, u, latest);
        if (ur != KH_OK && ur != KH_EIO)
            u->refused_version = latest;
    }
    json_decref(j);
}

/* Reports progress of task scans and clears finished jobs. */
static void report_jobs(struct agent *a, struct uplink *u)
{
    pthread_mutex_lock(&a->lock);
    struct scan_job *j = a->running;
    if (j == NULL || j->state == 0) {
        pthread_mutex_unlock(&a->lock);
        return;
    }
    int state = j->state, progress = j->progress;
    int64_t now = (int64_t)khx_now_ms();
    int due = state >= 2 ||
              (progress != j->reported_progress && now - j->reported_at >= PROGRESS_EVERY_MS);
    json_t *res =
        json_pack("{s:I,s:I,s:I,s:I}", "files", (json_int_t)j->files, "found", (json_int_t)j->found,
                  "errors", (json_int_t)j->errors, "bytes", (json_int_t)j->bytes);
    if (res != NULL && j->error[0] != '\0')
        json_object_set_new(res, "error", json_string(j->error));
    int64_t task = j->task_id;
    if (due) {
        j->reported_progress = progress;
        j->reported_at = now;
    }
    pthread_mutex_unlock(&a->lock);
    if (due && task > 0)
        post_task_result(a, u, task,
                         state == 2   ? "done"
                         : state == 3 ? "failed"
                                      : "running",
                         progress, res);
    json_decref(res);
    if (state >= 2) {
        pthread_mutex_lock(&a->lock);
        a->running = NULL;
        pthread_cond_broadcast(&a->jobs_cond);
        pthread_mutex_unlock(&a->lock);
        agent_scan_job_free(j);
    }
}

/* Starts the policy's scheduled scans when their minute comes (once a day). */
static void run_schedule(struct agent *a)
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    int minute = tm.tm_hour * 60 + tm.tm_min;
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < a->policy.nscheds; i++) {
        struct agent_sched *s = &a->policy.scheds[i];
        if (!(s->days & (1u << tm.tm_wday)) || minute < s->minute || minute > s->minute + 5 ||
            now - a->sched_last[i] < 23 * 3600)
            continue;
        a->sched_last[i] = now;
        struct scan_job *j =
            agent_scan_job_new(s->name, (const char *const *)s->paths, s->npaths,
                               (const char *const *)s->excludes, s->nexcludes, s->full);
        if (j == NULL)
            continue;
        pthread_mutex_unlock(&a->lock);
        agent_scan_queue(a, j);
        pthread_mutex_lock(&a->lock);
    }
    pthread_mutex_unlock(&a->lock);
}

static void write_status(struct agent *a)
{
    char path[4200];
    struct spool_stats ss;
    struct plat_rtp_stats rs;
    memset(&rs, 0, sizeof(rs));
    spool_stats(a->spool, &ss);
    if (a->rtp != NULL)
        plat_rtp_stats(a->rtp, &rs);
    pthread_mutex_lock(&a->lock);
    json_t *j = json_pack(
        "{s:i,s:s,s:s,s:s,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:I,s:s,"
        "s:{s:I,s:I,s:I,s:I,s:I}}",
        "pid", (int)getpid(), "version", KHIEN_VERSION, "server", a->id.server, "machine_id",
        a->id.machine_id, "rtp", atomic_load(&a->rtp_on), "db_version", (json_int_t)a->db_version,
        "db_created", (json_int_t)a->db_created, "db_signatures", (json_int_t)a->db_signatures,
        "last_checkin", (json_int_t)a->last_checkin, "last_full_scan",
        (json_int_t)a->last_full_scan, "spooled", (json_int_t)ss.events, "dropped",
        (json_int_t)ss.dropped, "detections", (json_int_t)atomic_load(&a->detections),
        "quarantined", (json_int_t)atomic_load(&a->quarantined), "blocked",
        (json_int_t)atomic_load(&a->blocked), "timeouts", (json_int_t)atomic_load(&a->timeouts),
        "policy_version", a->policy.version, "last_error_at", (json_int_t)a->last_error_at,
        "last_error", a->last_error, "rtp_stats", "events", (json_int_t)rs.events, "decided",
        (json_int_t)rs.decided, "denied", (json_int_t)rs.denied, "timeouts",
        (json_int_t)rs.timeouts, "overflows", (json_int_t)rs.overflows);
    pthread_mutex_unlock(&a->lock);
    /* The file is rewritten when something in it changed, and otherwise
     * every STATUS_REFRESH_S so that `status` can tell a live daemon. */
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    int64_t now = (int64_t)time(NULL);
    uint64_t h = 1469598103934665603ull;
    for (const char *c = text; c != NULL && *c != '\0'; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ull;
    free(text);
    text = NULL;
    if (j != NULL && (h != a->status_hash || now - a->status_at >= STATUS_REFRESH_S)) {
        json_object_set_new(j, "updated", json_integer((json_int_t)now));
        text = json_dumps(j, JSON_INDENT(2));
    }
    json_decref(j);
    snprintf(path, sizeof(path), "%s/status.json", a->state_dir);
    if (text != NULL && khx_write_file_atomic(path, text, strlen(text)) == KH_OK) {
        a->status_hash = h;
        a->status_at = now;
    }
    free(text);
}

static int open_client(struct agent *a, struct client **c, char *err, size_t errlen)
{
    char ca[4200], crt[4200], key[4200];
    snprintf(ca, sizeof(ca), "%s/ca.crt", a->state_dir);
    snprintf(crt, sizeof(crt), "%s/agent.crt", a->state_dir);
    snprintf(key, sizeof(key), "%s/agent.key", a->state_dir);
    struct client_opts o = {a->id.server, ca, crt, key, 120};
    return client_new(&o, c, err, errlen);
}

int agent_run(const struct agent_opts *opts)
{
    struct agent a;
    struct uplink u;
    char err[512] = "", dir[4300];
    pthread_t scan_thr, net_thr;
    int rc = 1, threads = 0;
    memset(&a, 0, sizeof(a));
    memset(&u, 0, sizeof(u));
    a.opts = opts;
    pthread_mutex_init(&a.lock, NULL);
    pthread_cond_init(&a.wake, NULL);
    pthread_cond_init(&a.jobs_cond, NULL);
    agent_policy_default(&a.policy);
    if (realpath(opts->state_dir, a.state_dir) == NULL) {
        fprintf(stderr, "khien-agent: %s: %s\n", opts->state_dir, strerror(errno));
        goto out;
    }
    if (readlink("/proc/self/exe", a.exe, sizeof(a.exe) - 1) < 0)
        snprintf(a.exe, sizeof(a.exe), "/proc/self/exe");
    snprintf(a.db_dir, sizeof(a.db_dir), "%s/db", a.state_dir);
    mkdir(a.db_dir, 0700);
    if (opts->db_file == NULL) {
        if (agent_identity_load(a.state_dir, &a.id, err, sizeof(err)) != KH_OK) {
            fprintf(stderr, "khien-agent: %s\n", err);
            goto out;
        }
        a.enrolled = 1;
    } else if (agent_identity_load(a.state_dir, &a.id, err, sizeof(err)) == KH_OK) {
        a.enrolled = 1;
    }
    snprintf(dir, sizeof(dir), "%s/spool", a.state_dir);
    if (spool_open(dir, 0, 0, &a.spool, err, sizeof(err)) != KH_OK) {
        fprintf(stderr, "khien-agent: spool: %s\n", err);
        goto out;
    }
    u.spool = a.spool;
    u.bundle_key = a.id.bundle_key;
    u.db_dir = a.db_dir;
    u.who = "machine";
    u.stop = &a.stop;
    u.interval_s = opts->checkin_s ? opts->checkin_s : (unsigned)a.id.checkin_interval;
    u.ctx = &a;
    u.report = uplink_report;
    u.emit = uplink_emit;
    snprintf(dir, sizeof(dir), "%s/quarantine", a.state_dir);
    if (vault_open(dir, &a.vault, err, sizeof(err)) != KH_OK) {
        fprintf(stderr, "khien-agent: quarantine: %s\n", err);
        goto out;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    load_saved_policy(&a);
    if (load_initial_database(&a) != KH_OK)
        goto out;
    agent_rtp_apply(&a);
    if (pthread_create(&scan_thr, NULL, agent_scan_thread, &a) == 0)
        threads |= 1;
    if (pthread_create(&net_thr, NULL, agent_netwatch_thread, &a) == 0)
        threads |= 2;
    if (a.enrolled && open_client(&a, &u.client, err, sizeof(err)) != KH_OK) {
        fprintf(stderr, "khien-agent: %s\n", err);
        goto stop;
    }
    agent_log(&a, "running (state %s, server %s, machine %s)", a.state_dir,
              a.enrolled ? a.id.server : "none", a.enrolled ? a.id.machine_id : "-");
    while (!signalled) {
        if (u.client != NULL && !u.retired) {
            uplink_flush_events(&u);
            if (khx_now_ms() >= u.next_checkin)
                checkin(&a, &u);
            report_jobs(&a, &u);
            uplink_flush_events(&u);
        } else {
            report_jobs(&a, &u);
        }
        run_schedule(&a);
        write_status(&a);
        /* Sleep until an event is spooled, a job changes, or a second passes. */
        pthread_mutex_lock(&a.lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        struct spool_stats ss;
        spool_stats(a.spool, &ss);
        if (!(ss.events > 0 && khx_now_ms() >= u.next_flush && u.client != NULL))
            pthread_cond_timedwait(&a.wake, &a.lock, &ts);
        pthread_mutex_unlock(&a.lock);
    }
    rc = 0;
stop:
    atomic_store(&a.stop, 1);
    plat_rtp_stop(a.rtp);
    a.rtp = NULL;
    atomic_store(&a.rtp_on, 0);
    pthread_mutex_lock(&a.lock);
    pthread_cond_broadcast(&a.jobs_cond);
    pthread_mutex_unlock(&a.lock);
    if (threads & 1)
        pthread_join(scan_thr, NULL);
    if (threads & 2)
        pthread_join(net_thr, NULL);
    if (u.client != NULL)
        uplink_flush_events(&u);
    write_status(&a);
    agent_log(&a, "stopped");
out:
    client_free(u.client);
    agent_worker_release(a.rt_worker);
    ioc_set_free(a.iocs);
    agent_scan_job_free(a.running);
    while (a.jobs != NULL) {
        struct scan_job *n = a.jobs->next;
        agent_scan_job_free(a.jobs);
        a.jobs = n;
    }
    spool_close(a.spool);
    vault_close(a.vault);
    agent_policy_free(&a.policy);
    for (size_t i = 0; i < a.nallow; i++)
        free(a.allow[i]);
    free(a.allow);
    return rc;
}

int agent_enroll(const char *state_dir, const char *server, const char *token, const char *ca,
                 const char *machine_key, char *err, size_t errlen)
{
    struct plat_inventory inv;
    struct agent_identity old, id;
    struct enroll_result res;
    char e2[64];
    memset(&inv, 0, sizeof(inv));
    memset(&id, 0, sizeof(id));
    plat_inventory(&inv);
    int had = agent_identity_load(state_dir, &old, e2, sizeof(e2)) == KH_OK;
    if (machine_key != NULL) {
        /* Clones of one disk image share /etc/machine-id: the administrator
         * names each machine instead. Hashed, so any text will do. */
        uint8_t h[32];
        khx_sha256(machine_key, strlen(machine_key), h);
        khx_hex_encode(h, 32, inv.machine_key);
    }
    struct enroll_request req = {server,
                                 ca,
                                 token,
                                 inv.hostname,
                                 inv.machine_key[0] ? inv.machine_key : NULL,
                                 had ? old.machine_id : NULL,
                                 state_dir};
    int r = client_enroll(&req, &res, err, errlen);
    if (r != KH_OK)
        return r;
    snprintf(id.server, sizeof(id.server), "%s", server);
    snprintf(id.machine_id, sizeof(id.machine_id), "%s", res.machine_id);
    snprintf(id.bundle_key, sizeof(id.bundle_key), "%s", res.bundle_key);
    snprintf(id.key_id, sizeof(id.key_id), "%s", res.key_id);
    snprintf(id.agency_code, sizeof(id.agency_code), "%s", res.agency_code);
    snprintf(id.agency_name, sizeof(id.agency_name), "%s", res.agency_name);
    id.checkin_interval = res.checkin_interval;
    if ((r = agent_identity_save(state_dir, &id)) != KH_OK)
        khx_errf(err, errlen, "%s/agent.json: could not be written", state_dir);
    printf("enrolled: machine %s in %s (%s)%s\n", id.machine_id, id.agency_name, id.agency_code,
           res.reenrolled ? ", re-enrolled" : "");
    return r;
}

static void print_time(const char *label, int64_t t)
{
    char buf[64] = "never";
    if (t > 0) {
        struct tm tm;
        time_t tt = (time_t)t;
        localtime_r(&tt, &tm);
        strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
    }
    printf("%-24s %s\n", label, buf);
}

int agent_status(const char *state_dir, int as_json)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/status.json", state_dir);
    json_t *j = json_load_file(path, 0, NULL);
    if (j == NULL) {
        fprintf(stderr, "khien-agent: %s: no status yet (has `khien-agent run` started?)\n", path);
        return 3;
    }
    pid_t pid = (pid_t)json_integer_value(json_object_get(j, "pid"));
    int running = pid > 0 && kill(pid, 0) == 0;
    int64_t updated = json_integer_value(json_object_get(j, "updated"));
    running = running && time(NULL) - updated < 30;
    json_object_set_new(j, "running", json_boolean(running));
    if (as_json) {
        json_dumpf(j, stdout, JSON_INDENT(2));
        putchar('\n');
    } else {
        printf("%-24s %s\n", "agent / tác tử",
               running ? "running / đang chạy" : "stopped / đã dừng");
        printf("%-24s %s\n", "server / máy chủ", json_string_value(json_object_get(j, "server")));
        printf("%-24s %s\n", "machine id", json_string_value(json_object_get(j, "machine_id")));
        printf("%-24s %s\n", "real-time / thời gian thực",
               json_is_true(json_object_get(j, "rtp")) ? "on / bật" : "OFF / TẮT");
        printf("%-24s %lld (%lld signatures)\n", "database / CSDL mẫu",
               (long long)json_integer_value(json_object_get(j, "db_version")),
               (long long)json_integer_value(json_object_get(j, "db_signatures")));
        print_time("database built", json_integer_value(json_object_get(j, "db_created")));
        print_time("last check-in", json_integer_value(json_object_get(j, "last_checkin")));
        print_time("last full scan", json_integer_value(json_object_get(j, "last_full_scan")));
        printf("%-24s %lld waiting, %lld dropped\n", "events / sự kiện",
               (long long)json_integer_value(json_object_get(j, "spooled")),
               (long long)json_integer_value(json_object_get(j, "dropped")));
        printf("%-24s %lld found, %lld quarantined, %lld blocked, %lld slow scans\n",
               "detections / phát hiện",
               (long long)json_integer_value(json_object_get(j, "detections")),
               (long long)json_integer_value(json_object_get(j, "quarantined")),
               (long long)json_integer_value(json_object_get(j, "blocked")),
               (long long)json_integer_value(json_object_get(j, "timeouts")));
        const char *le = json_string_value(json_object_get(j, "last_error"));
        if (le != NULL && le[0] != '\0') {
            print_time("last error at", json_integer_value(json_object_get(j, "last_error_at")));
            printf("%-24s %s\n", "last error", le);
        }
    }
    json_decref(j);
    return running ? 0 : 3;
}
