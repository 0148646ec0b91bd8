/*
 * Protection: what happens to a file the agent scans, from real-time events
 * and from scan jobs alike. The bytes are scanned only in the sandboxed
 * worker (lib/sandbox); this file holds the workers (reference counted, so a
 * database update swaps them without a gap), turns the policy into the
 * platform's real-time settings, and acts on a detection: quarantine, block
 * or report, then an event for the server.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"
#include "khx.h"
#include "platform.h"
#include "vault.h"

/* A scan in the worker may take longer than an open may wait: the open is let
 * through at the policy's timeout, but the scan goes on so that a file found
 * late is still quarantined and reported. */
#define WORKER_SCAN_TIMEOUT_MS 120000u
#define RECENT_WINDOW_S        600

/* Gives every thread of a scan job's worker the policy's CPU niceness and
 * I/O class. Both are per thread on Linux, and the worker's threads exist
 * once it is ready, so each one in /proc/PID/task is set. */
static void lower_priority(pid_t pid, int nice, int idle)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    DIR *d = pid > 0 ? opendir(dir) : NULL;
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        int tid = atoi(de->d_name);
        if (tid <= 0)
            continue;
        setpriority(PRIO_PROCESS, (id_t)tid, nice);
        /* IOPRIO_WHO_PROCESS = 1; class IDLE = 3 or BEST_EFFORT = 2 at level 7. */
        int prio = idle ? (3 << 13) : ((2 << 13) | 7);
        syscall(SYS_ioprio_set, 1, tid, prio);
    }
    if (d != NULL)
        closedir(d);
}

int agent_worker_start(struct agent *a, const char *kdb, int batch, struct agent_worker **out,
                       char *err, size_t errlen)
{
    struct sbx_opts o;
    memset(&o, 0, sizeof(o));
    o.kdb_path = kdb;
    o.exe = a->exe;
    o.threads = batch ? 1 : 0;
    kh_scan_opts_default(&o.scan);
    o.scan.want_sha256 = 1;
    pthread_mutex_lock(&a->lock);
    o.scan.limits.max_filesize = a->policy.max_filesize;
    o.scan.scan_archives = a->policy.archives;
    int nice = a->policy.nice, idle = a->policy.ionice_idle;
    pthread_mutex_unlock(&a->lock);
    struct agent_worker *aw = calloc(1, sizeof(*aw));
    if (aw == NULL)
        return KH_ENOMEM;
    int r = sbx_worker_start(&o, &aw->w, err, errlen);
    if (r != KH_OK) {
        free(aw);
        return r;
    }
    atomic_init(&aw->refs, 1);
    if (batch)
        lower_priority(sbx_worker_pid(aw->w), nice, idle);
    *out = aw;
    return KH_OK;
}

struct agent_worker *agent_worker_acquire(struct agent *a)
{
    pthread_mutex_lock(&a->lock);
    struct agent_worker *w = a->rt_worker;
    if (w != NULL)
        atomic_fetch_add(&w->refs, 1);
    pthread_mutex_unlock(&a->lock);
    return w;
}

void agent_worker_release(struct agent_worker *w)
{
    if (w != NULL && atomic_fetch_sub(&w->refs, 1) == 1) {
        sbx_worker_stop(w->w);
        free(w);
    }
}

/* True once per window for a given file version, so a blocked file that a
 * program opens in a loop is reported once, not thousands of times. */
static int first_report(struct agent *a, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return 1;
    uint64_t key = (uint64_t)st.st_dev * 0x9e3779b97f4a7c15ull ^ (uint64_t)st.st_ino * 31 ^
                   (uint64_t)st.st_mtim.tv_sec ^ (uint64_t)st.st_mtim.tv_nsec << 20;
    int64_t now = (int64_t)(khx_now_ms() / 1000);
    size_t slot = key % KHX_ARRAY_LEN(a->recent);
    int first;
    pthread_mutex_lock(&a->lock);
    first = !(a->recent[slot].key == key && now - a->recent[slot].at < RECENT_WINDOW_S);
    if (first) {
        a->recent[slot].key = key;
        a->recent[slot].at = now;
    }
    pthread_mutex_unlock(&a->lock);
    return first;
}

int agent_handle_detection(struct agent *a, int fd, const char *path, const struct sbx_result *res,
                           int action, const char *origin, int *quarantined)
{
    char sha[65] = "", md5[33] = "", err[512] = "";
    const char *sig = res->ndetections > 0 ? res->det[0].name : "Unknown";
    const char *done = "reported";
    struct vault_entry e;
    *quarantined = 0;
    if (res->sha256_valid) {
        khx_hex_encode(res->sha256, 32, sha);
        khx_hex_encode(res->md5, 16, md5);
    }
    if (action == AGENT_ACT_QUARANTINE && a->vault != NULL) {
        if (vault_quarantine(a->vault, fd, path, sig, &e, err, sizeof(err)) == KH_OK) {
            *quarantined = 1;
            done = "quarantined";
            atomic_fetch_add(&a->quarantined, 1);
        } else {
            agent_log(a, "could not quarantine %s: %s", path, err);
            done = strcmp(origin, "realtime") == 0 ? "blocked" : "reported";
        }
    } else if (action == AGENT_ACT_BLOCK && strcmp(origin, "realtime") == 0) {
        done = "blocked";
    }
    if (strcmp(done, "blocked") == 0)
        atomic_fetch_add(&a->blocked, 1);
    if (!*quarantined && !first_report(a, fd))
        return KH_OK;
    atomic_fetch_add(&a->detections, 1);
    json_t *names = json_array();
    for (uint32_t i = 0; names != NULL && i < res->ndetections; i++)
        json_array_append_new(names, json_string(res->det[i].name));
    json_t *ev =
        json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:o}", "type", "detection", "signature", sig,
                  "path", path, "size", (json_int_t)res->size, "sha256", sha, "md5", md5, "action",
                  done, "origin", origin, "signatures", names ? names : json_array());
    if (ev != NULL && *quarantined)
        json_object_set_new(ev, "quarantine_id", json_string(e.id));
    if (ev != NULL && res->det[0].inner_path[0] != '\0')
        json_object_set_new(ev, "inner_path", json_string(res->det[0].inner_path));
    int r = ev ? agent_emit(a, ev) : KH_ENOMEM;
    json_decref(ev);
    agent_log(a, "%s: %s FOUND (%s, %s)", path, sig, origin, done);
    return r;
}

/* The real-time callback: scan in the worker, act on a detection. */
static int decide(void *ud, const struct plat_rtp_event *ev)
{
    struct agent *a = ud;
    struct sbx_result res;
    struct agent_worker *w = agent_worker_acquire(a);
    if (w == NULL)
        return PLAT_ALLOW;
    int r = sbx_scan_fd(w->w, ev->fd, ev->path, WORKER_SCAN_TIMEOUT_MS, &res);
    agent_worker_release(w);
    if (r != KH_OK) {
        atomic_fetch_add(&a->scan_errors, 1);
        return PLAT_ALLOW;
    }
    if (res.detections == 0 || (res.sha256_valid && agent_allowlisted(a, res.sha256)))
        return PLAT_ALLOW;
    pthread_mutex_lock(&a->lock);
    int action = a->policy.action;
    pthread_mutex_unlock(&a->lock);
    int quarantined;
    agent_handle_detection(a, ev->fd, ev->path, &res, action, "realtime", &quarantined);
    return action == AGENT_ACT_REPORT ? PLAT_ALLOW : PLAT_DENY;
}

static void on_timeout(void *ud, const char *path, pid_t pid, unsigned waited_ms)
{
    struct agent *a = ud;
    atomic_fetch_add(&a->timeouts, 1);
    json_t *ev = json_pack("{s:s,s:s,s:i,s:i}", "type", "scan_timeout", "path", path, "pid",
                           (int)pid, "waited_ms", (int)waited_ms);
    if (ev != NULL)
        agent_emit(a, ev);
    json_decref(ev);
}

/* (Re)starts real-time protection from the policy, or the folders given on
 * the command line. The agent's own state folder and program are always
 * excluded: the database would match its own signatures, and the worker's
 * start must not wait on a scan by the worker it replaces. */
int agent_rtp_apply(struct agent *a)
{
    const char *paths[AGENT_PATHS_MAX], *ex[AGENT_PATHS_MAX + 2];
    size_t np = 0, nx = 0;
    char err[512];
    struct plat_rtp_opts o;
    plat_rtp_stop(a->rtp);
    a->rtp = NULL;
    atomic_store(&a->rtp_on, 0);
    pthread_mutex_lock(&a->lock);
    int enabled = a->policy.rtp_enabled && !a->opts->no_rtp;
    if (a->opts->nwatch > 0)
        for (size_t i = 0; i < a->opts->nwatch && np < AGENT_PATHS_MAX; i++)
            paths[np++] = a->opts->watch[i];
    else
        for (size_t i = 0; i < a->policy.nrtp_paths && np < AGENT_PATHS_MAX; i++)
            paths[np++] = a->policy.rtp_paths[i];
    for (size_t i = 0; i < a->policy.nrtp_excludes && nx < AGENT_PATHS_MAX; i++)
        ex[nx++] = a->policy.rtp_excludes[i];
    ex[nx++] = a->state_dir;
    ex[nx++] = a->exe;
    memset(&o, 0, sizeof(o));
    o.paths = paths;
    o.npaths = np;
    o.excludes = ex;
    o.nexcludes = nx;
    o.timeout_ms = a->policy.rtp_timeout_ms;
    /* The sandboxed workers are our children: their start (exec, libraries,
     * the .kdb) must not wait on a scan by another worker. */
    o.allow_children = 1;
    o.decide = decide;
    o.on_timeout = on_timeout;
    o.ud = a;
    int r = KH_OK;
    if (enabled && np > 0)
        r = plat_rtp_start(&o, &a->rtp, err, sizeof(err));
    pthread_mutex_unlock(&a->lock);
    if (!enabled || np == 0) {
        agent_log(a, "real-time protection is off (%s)",
                  a->opts->no_rtp ? "--no-rtp" : "the policy turns it off");
        return KH_OK;
    }
    if (r != KH_OK) {
        agent_log(a, "real-time protection could not start: %s", err);
        json_t *ev = json_pack("{s:s,s:s}", "type", "rtp_off", "reason", err);
        if (ev != NULL)
            agent_emit(a, ev);
        json_decref(ev);
        return r;
    }
    atomic_store(&a->rtp_on, 1);
    agent_log(a, "real-time protection on for %zu folder(s), %u ms timeout", np,
              a->policy.rtp_timeout_ms);
    return KH_OK;
}
