/*
 * The sensor's uplink (uplink.c; the protocol is in uplink.h): the agent's
 * client, spool and bundle code, and the uplink logic it shares with the
 * agent (agent/uplink_common.h: sending events, backoff, 401/403, fetching
 * a bundle, the inventory), driven by a loop shaped like the agent's
 * (agent/daemon.c) minus everything about files and scans. Enrollment is
 * the agent's own (agent_enroll), so a sensor's state folder has the same
 * files as an agent's and the server treats both the same way up to the
 * "role" they check in with.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "client.h"
#include "khx.h"
#include "platform.h"
#include "spool.h"
#include "update.h"
#include "uplink.h"
#include "uplink_common.h"

struct sen_uplink {
    struct sen_uplink_opts opts;
    char state_dir[4096];
    char db_dir[4200];
    struct agent_identity id;
    struct uplink link; /* the client, the spool and the backoff state */

    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_int stop;
    int flush_now, checkin_now; /* guarded by lock */

    struct sen_uplink_status st; /* guarded by lock */
};

int sen_uplink_enroll(const char *state_dir, const char *server, const char *token, const char *ca,
                      char *err, size_t errlen)
{
    if (state_dir == NULL || server == NULL || token == NULL) {
        khx_errf(err, errlen, "enroll: the state folder, server and token are required");
        return KH_EINVAL;
    }
    if (mkdir(state_dir, 0700) != 0 && access(state_dir, W_OK) != 0) {
        khx_errf(err, errlen, "%s: cannot create the state folder", state_dir);
        return KH_EIO;
    }
    /* The agent's enrollment as it is: key, request, certificate, identity. */
    return agent_enroll(state_dir, server, token, ca, NULL, err, errlen);
}

static void set_error(struct sen_uplink *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_error(struct sen_uplink *u, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&u->lock);
    va_start(ap, fmt);
    vsnprintf(u->st.last_error, sizeof(u->st.last_error), fmt, ap);
    va_end(ap);
    fprintf(stderr, "khien sensor: uplink: %s\n", u->st.last_error);
    pthread_mutex_unlock(&u->lock);
}

static unsigned interval_s(struct sen_uplink *u)
{
    unsigned i = u->opts.checkin_s ? u->opts.checkin_s : (unsigned)u->id.checkin_interval;
    return i ? i : 60;
}

/* Puts one event of the uplink itself into the spool (id and time added);
 * ev is borrowed. */
static void put_event(void *ctx, json_t *ev)
{
    struct sen_uplink *u = ctx;
    char id[37];
    if (ev == NULL || u->opts.spool == NULL)
        return;
    khx_uuid4(id);
    json_object_set_new(ev, "id", json_string(id));
    json_object_set_new(ev, "at", json_integer((json_int_t)time(NULL)));
    char *text = json_dumps(ev, JSON_COMPACT);
    if (text != NULL)
        spool_put(u->opts.spool, text, strlen(text));
    free(text);
}

/* What the shared uplink code reports becomes the sensor's last error, but
 * for single events the server rejected out of a batch it took. */
static void report(void *ctx, enum uplink_what what, const char *msg)
{
    if (what != UPLINK_EVENT_REJECTED)
        set_error(ctx, "%s", msg);
}

static json_t *inventory_json(struct sen_uplink *u)
{
    struct plat_inventory inv;
    memset(&inv, 0, sizeof(inv));
    plat_inventory(&inv);
    pthread_mutex_lock(&u->lock);
    int64_t dbv = u->st.db_version;
    pthread_mutex_unlock(&u->lock);
    /* The agent's inventory fields, with the ones about files left out. */
    return uplink_inventory_json(&inv, json_pack("{s:s,s:I}", "sensor_version", KHIEN_VERSION,
                                                 "db_version", (json_int_t)dbv));
}

static void save_networks(struct sen_uplink *u, json_t *nets)
{
    char path[4200];
    char *text = json_dumps(nets, JSON_COMPACT);
    snprintf(path, sizeof(path), "%s/networks.json", u->state_dir);
    if (text != NULL && khx_write_file_atomic(path, text, strlen(text)) != KH_OK)
        set_error(u, "%s: could not be written", path);
    free(text);
}

static void load_saved(struct sen_uplink *u)
{
    char path[4200];
    struct update_db db;
    snprintf(path, sizeof(path), "%s/networks.json", u->state_dir);
    json_t *nets = json_load_file(path, 0, NULL);
    if (json_is_array(nets) && u->opts.on_networks != NULL)
        u->opts.on_networks(u->opts.ctx, nets);
    json_decref(nets);
    if (update_current(u->db_dir, &db) == KH_OK && db.version > 0) {
        pthread_mutex_lock(&u->lock);
        u->st.db_version = db.version;
        pthread_mutex_unlock(&u->lock);
        if (db.ioc_path[0] != '\0' && u->opts.on_indicators != NULL)
            u->opts.on_indicators(u->opts.ctx, db.ioc_path, db.version);
    }
}

/* Downloads, verifies, unpacks and switches to bundle `version`. Returns
 * KH_EIO when it could not be downloaded (try again), another error when the
 * bundle itself was refused (not fetched again). */
static int update_to(struct sen_uplink *u, int64_t version)
{
    char err[512] = "";
    struct update_db db;
    pthread_mutex_lock(&u->lock);
    int64_t current = u->st.db_version;
    pthread_mutex_unlock(&u->lock);
    int r = uplink_fetch_bundle(&u->link, version, current, &db);
    if (r != KH_OK)
        return r;
    if ((r = update_switch(u->db_dir, db.version, err, sizeof(err))) != KH_OK) {
        set_error(u, "bundle %lld: could not make it current: %s", (long long)version, err);
        return r;
    }
    pthread_mutex_lock(&u->lock);
    u->st.db_version = db.version;
    pthread_mutex_unlock(&u->lock);
    if (db.ioc_path[0] != '\0' && u->opts.on_indicators != NULL)
        u->opts.on_indicators(u->opts.ctx, db.ioc_path, db.version);
    json_t *ev = json_pack("{s:s,s:I,s:I}", "type", "update_applied", "version",
                           (json_int_t)db.version, "indicators", (json_int_t)db.indicators);
    put_event(u, ev);
    json_decref(ev);
    return KH_OK;
}

static void checkin(struct sen_uplink *u)
{
    json_t *inv = inventory_json(u);
    pthread_mutex_lock(&u->lock);
    int64_t dbv = u->st.db_version;
    pthread_mutex_unlock(&u->lock);
    json_t *body = inv ? json_pack("{s:s,s:o,s:I}", "role", "sensor", "inventory", inv,
                                   "db_version", (json_int_t)dbv)
                       : NULL;
    /* The inventory's fields also at the top, where servers that predate
     * the sensor role read an agent's inventory. */
    if (body != NULL)
        json_object_update_missing(body, json_object_get(body, "inventory"));
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct client_resp resp;
    memset(&resp, 0, sizeof(resp));
    int r =
        text ? client_call(u->link.client, "POST", "/agent/checkin", text, strlen(text), 1, &resp)
             : KH_ENOMEM;
    free(text);
    if (r != KH_OK || resp.status != 200) {
        if (r == KH_OK && !uplink_fatal_status(&u->link, resp.status))
            set_error(u, "check-in failed: HTTP %ld", resp.status);
        else if (r != KH_OK)
            set_error(u, "check-in failed: %s", resp.error[0] ? resp.error : kh_strerror(r));
        uplink_backoff(&u->link, &u->link.next_checkin);
        client_resp_free(&resp);
        return;
    }
    u->link.unauthorized = 0;
    u->link.backoff_s = 0;
    json_t *j = json_loads(resp.body ? resp.body : "", 0, NULL);
    client_resp_free(&resp);
    pthread_mutex_lock(&u->lock);
    u->st.last_checkin = (int64_t)time(NULL);
    pthread_mutex_unlock(&u->lock);
    json_int_t srv = json_integer_value(json_object_get(j, "checkin_interval"));
    if (srv > 0 && srv <= 86400)
        u->id.checkin_interval = (int)srv;
    u->link.interval_s = interval_s(u);
    u->link.next_checkin = khx_now_ms() + interval_s(u) * 1000ull;
    json_t *nets = json_object_get(j, "networks");
    if (json_is_array(nets)) {
        save_networks(u, nets);
        if (u->opts.on_networks != NULL)
            u->opts.on_networks(u->opts.ctx, nets);
    }
    json_int_t latest =
        json_integer_value(json_object_get(json_object_get(j, "bundle"), "version"));
    pthread_mutex_lock(&u->lock);
    int newer = latest > u->st.db_version;
    pthread_mutex_unlock(&u->lock);
    if (newer && latest != u->link.refused_version) {
        int ur = update_to(u, latest);
        if (ur != KH_OK && ur != KH_EIO)
            u->link.refused_version = latest;
    }
    json_decref(j);
}

static void *uplink_thread(void *arg)
{
    struct sen_uplink *u = arg;
    unsigned flush_s = u->opts.flush_s ? u->opts.flush_s : 3;
    load_saved(u);
    while (!atomic_load(&u->stop)) {
        if (!u->link.retired) {
            if (khx_now_ms() >= u->link.next_checkin)
                checkin(u);
            uplink_flush_events(&u->link);
            pthread_mutex_lock(&u->lock);
            u->st.events_sent = atomic_load(&u->link.events_sent);
            pthread_mutex_unlock(&u->lock);
            if (u->link.backoff_s == 0)
                u->link.next_flush = khx_now_ms() + flush_s * 1000ull;
        }
        pthread_mutex_lock(&u->lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        if (!atomic_load(&u->stop) && !u->flush_now && !u->checkin_now)
            pthread_cond_timedwait(&u->wake, &u->lock, &ts);
        if (u->flush_now && u->link.backoff_s == 0)
            u->link.next_flush = 0;
        if (u->checkin_now)
            u->link.next_checkin = 0;
        u->flush_now = u->checkin_now = 0;
        pthread_mutex_unlock(&u->lock);
    }
    return NULL;
}

int sen_uplink_start(const struct sen_uplink_opts *opts, struct sen_uplink **out, char *err,
                     size_t errlen)
{
    struct sen_uplink *u = NULL;
    char ca[4200], crt[4200], key[4200];
    int r = KH_ENOMEM;
    if (opts == NULL || opts->state_dir == NULL || out == NULL) {
        khx_errf(err, errlen, "uplink: no state folder");
        return KH_EINVAL;
    }
    if ((u = calloc(1, sizeof(*u))) == NULL)
        return KH_ENOMEM;
    pthread_mutex_init(&u->lock, NULL);
    pthread_cond_init(&u->wake, NULL);
    u->opts = *opts;
    if (realpath(opts->state_dir, u->state_dir) == NULL) {
        khx_errf(err, errlen, "%s: no such folder", opts->state_dir);
        r = KH_ENOTFOUND;
        goto out;
    }
    u->opts.state_dir = u->state_dir;
    snprintf(u->db_dir, sizeof(u->db_dir), "%s/db", u->state_dir);
    mkdir(u->db_dir, 0700);
    if ((r = agent_identity_load(u->state_dir, &u->id, err, errlen)) != KH_OK)
        goto out;
    snprintf(u->st.machine_id, sizeof(u->st.machine_id), "%s", u->id.machine_id);
    snprintf(ca, sizeof(ca), "%s/ca.crt", u->state_dir);
    snprintf(crt, sizeof(crt), "%s/agent.crt", u->state_dir);
    snprintf(key, sizeof(key), "%s/agent.key", u->state_dir);
    struct client_opts co = {u->id.server, ca, crt, key, 60};
    if ((r = client_new(&co, &u->link.client, err, errlen)) != KH_OK)
        goto out;
    u->link.spool = opts->spool;
    u->link.bundle_key = u->id.bundle_key;
    u->link.db_dir = u->db_dir;
    u->link.who = "sensor";
    u->link.stop = &u->stop;
    u->link.interval_s = interval_s(u);
    u->link.ctx = u;
    u->link.report = report;
    u->link.emit = put_event;
    int rc = pthread_create(&u->thread, NULL, uplink_thread, u);
    if (rc != 0) {
        khx_errf(err, errlen, "uplink: thread: %s", strerror(rc));
        r = KH_EIO;
        goto out;
    }
    u->started = 1;
    *out = u;
    u = NULL;
    r = KH_OK;
out:
    sen_uplink_free(u);
    return r;
}

void sen_uplink_wake(struct sen_uplink *u, int checkin_too)
{
    if (u == NULL)
        return;
    pthread_mutex_lock(&u->lock);
    u->flush_now = 1;
    if (checkin_too)
        u->checkin_now = 1;
    pthread_cond_broadcast(&u->wake);
    pthread_mutex_unlock(&u->lock);
}

void sen_uplink_status(struct sen_uplink *u, struct sen_uplink_status *st)
{
    memset(st, 0, sizeof(*st));
    if (u == NULL)
        return;
    pthread_mutex_lock(&u->lock);
    *st = u->st;
    pthread_mutex_unlock(&u->lock);
}

void sen_uplink_stop(struct sen_uplink *u)
{
    if (u == NULL || !u->started)
        return;
    pthread_mutex_lock(&u->lock);
    atomic_store(&u->stop, 1);
    pthread_cond_broadcast(&u->wake);
    pthread_mutex_unlock(&u->lock);
    pthread_join(u->thread, NULL);
    u->started = 0;
}

void sen_uplink_free(struct sen_uplink *u)
{
    if (u == NULL)
        return;
    sen_uplink_stop(u);
    client_free(u->link.client);
    pthread_mutex_destroy(&u->lock);
    pthread_cond_destroy(&u->wake);
    free(u);
}
