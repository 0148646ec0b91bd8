/*
 * Scan jobs: on-demand scans (server tasks, the command line) and scheduled
 * scans (the policy), run one at a time on their own thread with their own
 * sandboxed worker, which runs at the policy's CPU and I/O priority so that a
 * full scan yields to the machine's users and never slows real-time checks.
 * A job counts the files first (cheap: directory entries only) so it can
 * report progress as a percentage, then scans them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "agent.h"
#include "khx.h"
#include "update.h"

#define JOB_SCAN_TIMEOUT_MS 300000u
#define WALK_DEPTH_MAX      64

/* Pseudo filesystems hold no files worth scanning, and reading some of them
 * blocks or has side effects. */
#define PROC_MAGIC   0x9fa0
#define SYSFS_MAGIC  0x62656572
#define DEVPTS_MAGIC 0x1cd1
#define CGROUP2      0x63677270
#define DEBUGFS      0x64626720
#define TRACEFS      0x74726163
#define SECURITYFS   0x73636673

static char **strv_copy(const char *const *v, size_t n)
{
    char **out = calloc(n ? n : 1, sizeof(*out));
    for (size_t i = 0; out != NULL && i < n; i++)
        out[i] = strdup(v[i]);
    return out;
}

struct scan_job *agent_scan_job_new(const char *name, const char *const *paths, size_t npaths,
                                    const char *const *excludes, size_t nexcludes, int full)
{
    struct scan_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    snprintf(j->name, sizeof(j->name), "%s", name);
    j->paths = strv_copy(paths, npaths);
    j->npaths = npaths;
    j->excludes = strv_copy(excludes, nexcludes);
    j->nexcludes = nexcludes;
    j->full = full;
    j->reported_state = -1;
    j->reported_progress = -1;
    return j;
}

void agent_scan_job_free(struct scan_job *j)
{
    if (j == NULL)
        return;
    for (size_t i = 0; i < j->npaths; i++)
        free(j->paths[i]);
    for (size_t i = 0; i < j->nexcludes; i++)
        free(j->excludes[i]);
    free(j->paths);
    free(j->excludes);
    free(j);
}

void agent_scan_queue(struct agent *a, struct scan_job *job)
{
    pthread_mutex_lock(&a->lock);
    struct scan_job **pp = &a->jobs;
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = job;
    pthread_cond_broadcast(&a->jobs_cond);
    pthread_mutex_unlock(&a->lock);
}

struct walk {
    struct agent *a;
    struct scan_job *job;
    struct agent_worker *w;
    uint64_t total, seen;
    int counting;
};

static int excluded(const struct scan_job *j, const char *path)
{
    for (size_t i = 0; i < j->nexcludes; i++) {
        size_t n = strlen(j->excludes[i]);
        if (strncmp(path, j->excludes[i], n) == 0 && (path[n] == '\0' || path[n] == '/'))
            return 1;
    }
    return 0;
}

static void scan_one(struct walk *w, int dirfd, const char *name, const char *path)
{
    struct agent *a = w->a;
    struct scan_job *j = w->job;
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd < 0) {
            pthread_mutex_lock(&a->lock);
            j->errors++;
            pthread_mutex_unlock(&a->lock);
        }
        if (fd >= 0)
            close(fd);
        return;
    }
    struct sbx_result res;
    int r = sbx_scan_fd(w->w->w, fd, path, JOB_SCAN_TIMEOUT_MS, &res);
    int found =
        r == KH_OK && res.detections > 0 && !(res.sha256_valid && agent_allowlisted(a, res.sha256));
    if (found) {
        int q;
        pthread_mutex_lock(&a->lock);
        int action =
            a->policy.action == AGENT_ACT_QUARANTINE ? AGENT_ACT_QUARANTINE : AGENT_ACT_REPORT;
        pthread_mutex_unlock(&a->lock);
        agent_handle_detection(a, fd, path, &res, action, "scan", &q);
    }
    close(fd);
    pthread_mutex_lock(&a->lock);
    j->files++;
    j->bytes += (uint64_t)st.st_size;
    j->found += found ? 1 : 0;
    j->errors += r != KH_OK ? 1 : 0;
    if (w->total > 0)
        j->progress = (int)KHX_MIN(99, (w->seen * 100) / w->total);
    pthread_mutex_unlock(&a->lock);
}

static int is_pseudo_fs(int fd)
{
    struct statfs sf;
    if (fstatfs(fd, &sf) != 0)
        return 0;
    switch ((unsigned long)sf.f_type) {
    case PROC_MAGIC:
    case SYSFS_MAGIC:
    case DEVPTS_MAGIC:
    case CGROUP2:
    case DEBUGFS:
    case TRACEFS:
    case SECURITYFS:
        return 1;
    default:
        return 0;
    }
}

/* Walks `path` (a directory held open as dirfd) depth first. */
static void walk_dir(struct walk *w, int dirfd, char *path, size_t plen, int depth)
{
    if (depth > WALK_DEPTH_MAX || is_pseudo_fs(dirfd) || atomic_load(&w->a->stop)) {
        close(dirfd);
        return;
    }
    DIR *d = fdopendir(dirfd);
    if (d == NULL) {
        close(dirfd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL && !atomic_load(&w->a->stop)) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        size_t nl = strlen(de->d_name);
        if (plen + 1 + nl >= 4096)
            continue;
        size_t sep = plen > 0 && path[plen - 1] == '/' ? 0 : 1;
        if (sep)
            path[plen] = '/';
        memcpy(path + plen + sep, de->d_name, nl + 1);
        if (excluded(w->job, path) || strncmp(path, w->a->state_dir, strlen(w->a->state_dir)) == 0)
            goto next;
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                goto next;
            type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_LNK;
        }
        if (type == DT_DIR) {
            int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                walk_dir(w, sub, path, plen + sep + nl, depth + 1);
        } else if (type == DT_REG) {
            w->seen++;
            if (w->counting)
                w->total++;
            else
                scan_one(w, dirfd, de->d_name, path);
        }
    next:
        path[plen] = '\0';
    }
    closedir(d);
}

static void walk_path(struct walk *w, const char *root)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s", root);
    if (lstat(path, &st) != 0) {
        pthread_mutex_lock(&w->a->lock);
        w->job->errors++;
        snprintf(w->job->error, sizeof(w->job->error), "%s: %s", root, strerror(errno));
        pthread_mutex_unlock(&w->a->lock);
        return;
    }
    if (S_ISREG(st.st_mode)) {
        w->seen++;
        if (w->counting)
            w->total++;
        else
            scan_one(w, AT_FDCWD, path, path);
        return;
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0)
        walk_dir(w, fd, path, strlen(path), 0);
}

static void run_job(struct agent *a, struct scan_job *j)
{
    struct update_db db;
    char err[512] = "";
    struct walk w = {.a = a, .job = j};
    json_t *ev;
    const char *kdb = a->opts->db_file;
    if (kdb == NULL && update_current(a->db_dir, &db) == KH_OK && db.kdb_path[0] != '\0')
        kdb = db.kdb_path;
    if (kdb == NULL || agent_worker_start(a, kdb, 1, &w.w, err, sizeof(err)) != KH_OK) {
        pthread_mutex_lock(&a->lock);
        j->state = 3;
        snprintf(j->error, sizeof(j->error), "%.200s", kdb ? err : "no signature database yet");
        pthread_mutex_unlock(&a->lock);
        return;
    }
    pthread_mutex_lock(&a->lock);
    j->state = 1;
    j->started = (int64_t)(khx_now_ms() / 1000);
    pthread_mutex_unlock(&a->lock);
    if ((ev = json_pack("{s:s,s:s,s:I,s:b}", "type", "scan_started", "name", j->name, "task",
                        (json_int_t)j->task_id, "full", j->full)) != NULL)
        agent_emit(a, ev);
    json_decref(ev);
    w.counting = 1;
    for (size_t i = 0; i < j->npaths; i++)
        walk_path(&w, j->paths[i]);
    w.counting = 0;
    w.seen = 0;
    for (size_t i = 0; i < j->npaths; i++)
        walk_path(&w, j->paths[i]);
    agent_worker_release(w.w);
    pthread_mutex_lock(&a->lock);
    j->state = atomic_load(&a->stop) ? 3 : 2;
    j->progress = 100;
    j->finished = (int64_t)(khx_now_ms() / 1000);
    if (j->full && j->state == 2)
        a->last_full_scan = j->finished;
    if ((ev = json_pack("{s:s,s:s,s:I,s:b,s:I,s:I,s:I,s:I,s:I}", "type", "scan_finished", "name",
                        j->name, "task", (json_int_t)j->task_id, "full", j->full, "files",
                        (json_int_t)j->files, "found", (json_int_t)j->found, "errors",
                        (json_int_t)j->errors, "bytes", (json_int_t)j->bytes, "seconds",
                        (json_int_t)(j->finished - j->started))) != NULL) {
        pthread_mutex_unlock(&a->lock);
        agent_emit(a, ev);
        json_decref(ev);
    } else {
        pthread_mutex_unlock(&a->lock);
    }
    agent_log(a, "scan \"%s\" finished: %llu files, %llu found, %llu errors", j->name,
              (unsigned long long)j->files, (unsigned long long)j->found,
              (unsigned long long)j->errors);
}

void *agent_scan_thread(void *arg)
{
    struct agent *a = arg;
    pthread_mutex_lock(&a->lock);
    while (!atomic_load(&a->stop)) {
        struct scan_job *j = a->jobs;
        if (j == NULL || a->running != NULL) {
            pthread_cond_wait(&a->jobs_cond, &a->lock);
            continue;
        }
        a->jobs = j->next;
        j->next = NULL;
        a->running = j;
        pthread_mutex_unlock(&a->lock);
        run_job(a, j);
        pthread_mutex_lock(&a->lock);
        pthread_cond_broadcast(&a->wake); /* the uplink reports the result */
        while (a->running == j && !atomic_load(&a->stop))
            pthread_cond_wait(&a->jobs_cond, &a->lock);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}
