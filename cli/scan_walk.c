/*
 * `khien scan`: the threads. One walker thread lists the paths named on the
 * command line, and the regular files below them, into a bounded queue of
 * SCAN_QUEUE_CAP paths; N worker threads each own one kh_scanner (scratch
 * space is per thread, the engine is shared) and take paths from the queue;
 * the main thread waits in scan_run_threads(), redraws the progress line and
 * notices Ctrl-C. The walker blocks when the queue is full, so memory stays
 * bounded however large the tree.
 *
 * One mutex (scan_run.lock) guards the queue, the totals and the output
 * streams. A worker collects a file's detections in its own array during the
 * scan, without the lock, and hands the finished report to scan_publish()
 * (scan_output.c), which takes the lock to count and print it.
 *
 * The walker handles each directory's entries in name order, with one
 * directory descriptor open at a time; recursion is bounded by
 * --max-dir-recursion and loops are found by comparing device and inode
 * numbers with the directories being listed. Paths are at most SCAN_PATH_MAX
 * bytes and a directory at most SCAN_DIR_ENTRIES_MAX entries.
 */
#include "scan_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCAN_PATH_MAX        4096
#define SCAN_NAME_MAX        4096
#define SCAN_DIR_ENTRIES_MAX (4u * 1024 * 1024)
#define SCAN_STDIN_MAX       (4ull << 30)
#define SCAN_PROGRESS_NS     200000000L

struct dir_entry {
    char *name;
    unsigned char type; /* DT_* from readdir, DT_UNKNOWN when the file system does not say */
};

/* ------------------------------------------------------------------------ */
/* Work queue                                                                */
/* ------------------------------------------------------------------------ */

/* Queues a path; the queue takes ownership of the malloc'd `path`. Blocks
 * while the queue is full. Returns -1 (and frees `path`) once interrupted. */
static int queue_push(struct scan_run *run, char *path)
{
    pthread_mutex_lock(&run->lock);
    while (run->qlen == SCAN_QUEUE_CAP && !scan_interrupted)
        pthread_cond_wait(&run->can_push, &run->lock);
    if (scan_interrupted) {
        pthread_mutex_unlock(&run->lock);
        free(path);
        return -1;
    }
    run->queue[(run->qhead + run->qlen) % SCAN_QUEUE_CAP] = path;
    run->qlen++;
    pthread_cond_signal(&run->can_pop);
    pthread_mutex_unlock(&run->lock);
    return 0;
}

/* Takes the next path (the caller frees it), or NULL when the walker has
 * finished and the queue is empty, or the scan was interrupted. */
static char *queue_pop(struct scan_run *run)
{
    char *path = NULL;
    pthread_mutex_lock(&run->lock);
    while (run->qlen == 0 && !run->walker_done && !scan_interrupted)
        pthread_cond_wait(&run->can_pop, &run->lock);
    if (run->qlen > 0 && !scan_interrupted) {
        path = run->queue[run->qhead];
        run->queue[run->qhead] = NULL;
        run->qhead = (run->qhead + 1) % SCAN_QUEUE_CAP;
        run->qlen--;
        /* Keeps the end of a long path: the file name is the useful part. */
        size_t n = strlen(path);
        const char *tail = n >= SCAN_CURRENT_MAX ? path + n - (SCAN_CURRENT_MAX - 1) : path;
        memcpy(run->current, tail, strlen(tail) + 1);
        pthread_cond_signal(&run->can_push);
    }
    pthread_mutex_unlock(&run->lock);
    return path;
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                   */
/* ------------------------------------------------------------------------ */

static void dets_clear(struct scan_worker *w)
{
    for (unsigned i = 0; i < w->ndets; i++) {
        free(w->dets[i].name);
        free(w->dets[i].source);
        free(w->dets[i].inner);
    }
    memset(w->dets, 0, sizeof(w->dets[0]) * w->ndets);
    w->ndets = 0;
    w->dropped = 0;
}

/* Whether a notice is promoted to FOUND by an --alert-* option. The names
 * follow ClamAV's heuristic families. */
static int notice_alerts(const struct scan_config *cfg, const char *name)
{
    static const char *const encrypted[] = {"Heuristics.Encrypted."};
    static const char *const limits[] = {"Heuristics.Limits."};
    static const char *const broken[] = {"Heuristics.Broken.", "Heuristics.Corrupt."};
    const struct {
        int on;
        const char *const *prefixes;
        size_t n;
    } families[] = {
        {cfg->alert_encrypted, encrypted, KHX_ARRAY_LEN(encrypted)},
        {cfg->alert_exceeds_max, limits, KHX_ARRAY_LEN(limits)},
        {cfg->alert_broken, broken, KHX_ARRAY_LEN(broken)},
    };
    for (size_t f = 0; f < KHX_ARRAY_LEN(families); f++) {
        if (!families[f].on)
            continue;
        for (size_t i = 0; i < families[f].n; i++)
            if (strncmp(name, families[f].prefixes[i], strlen(families[f].prefixes[i])) == 0)
                return 1;
    }
    return 0;
}

/* Appends a detection to the worker's list; returns 0 when it was kept. */
static int dets_add(struct scan_worker *w, const char *name, int kind, int severity,
                    const char *source, const char *inner)
{
    if (w->ndets >= SCAN_MAX_DETECTIONS) {
        w->dropped++;
        return -1;
    }
    struct scan_det *d = &w->dets[w->ndets];
    d->name = strndup(name ? name : "", SCAN_NAME_MAX);
    d->source = strndup(source ? source : "", SCAN_NAME_MAX);
    d->inner = inner ? strndup(inner, SCAN_NAME_MAX) : NULL;
    if (d->name == NULL || d->source == NULL || (inner != NULL && d->inner == NULL)) {
        free(d->name);
        free(d->source);
        free(d->inner);
        memset(d, 0, sizeof(*d));
        w->dropped++;
        return -1;
    }
    d->kind = kind;
    d->severity = severity;
    d->alert = severity != KH_SEV_NOTICE || notice_alerts(w->run->cfg, d->name);
    w->ndets++;
    return 0;
}

static int on_detection(void *ud, const struct kh_detection *d)
{
    struct scan_worker *w = ud;
    dets_add(w, d->name, d->kind, d->severity, d->source, d->inner_path);
    /* A non-zero return stops the scan of this file (KH_EABORTED). */
    return scan_interrupted ? 1 : 0;
}

/* Reads standard input, at most --max-filesize bytes, and scans it from
 * memory. A read failure or an input over the limit returns KH_EIO with the
 * reason in `why`, so that it is not mistaken for a limit inside the scan. */
static int scan_stdin(struct scan_worker *w, struct kh_scan_result *res, char *why, size_t whylen)
{
    struct khx_buf in;
    uint64_t limit = w->run->cfg->opts.limits.max_filesize;
    int r = KH_EIO;
    if (limit == 0 || limit > SCAN_STDIN_MAX)
        limit = SCAN_STDIN_MAX;
    khx_buf_init(&in, (size_t)limit);
    for (;;) {
        ssize_t k;
        char probe;
        int rr = khx_buf_reserve(&in, 65536);
        if (rr == KH_ELIMIT)
            rr = khx_buf_reserve(&in, 1);
        if (rr == KH_OK) {
            size_t room = KHX_MIN(in.cap - in.len, (size_t)65536);
            k = read(STDIN_FILENO, in.data + in.len, room);
        } else if (rr == KH_ELIMIT) {
            /* Full: one more byte tells "exactly the limit" from "over it". */
            k = read(STDIN_FILENO, &probe, 1);
            if (k > 0) {
                snprintf(why, whylen, "standard input is over --max-filesize, %llu bytes",
                         (unsigned long long)limit);
                goto out;
            }
        } else {
            snprintf(why, whylen, "%s", kh_strerror(rr));
            goto out;
        }
        if (k < 0 && errno == EINTR && !scan_interrupted)
            continue;
        if (k < 0) {
            char eb[128];
            snprintf(why, whylen, "%s", strerror_r(errno, eb, sizeof(eb)));
            goto out;
        }
        if (k == 0)
            break;
        in.len += (size_t)k;
    }
    r = kh_scan_mem(w->scanner, in.data, in.len, "stdin", on_detection, w, res);
out:
    khx_buf_free(&in);
    return r;
}

static void scan_one(struct scan_worker *w, const char *path)
{
    const struct scan_config *cfg = w->run->cfg;
    struct scan_report rep = {.path = path};
    char why[256] = "", errbuf[256];
    int is_stdin = strcmp(path, "-") == 0, r;

    dets_clear(w);
    if (is_stdin) {
        rep.path = "stdin";
        r = scan_stdin(w, &rep.res, why, sizeof(why));
    } else {
        r = kh_scan_file(w->scanner, path, on_detection, w, &rep.res);
    }

    switch (r) {
    case KH_OK:
        rep.scanned = 1;
        break;
    case KH_ETIMEOUT:
    case KH_ELIMIT: {
        /* A limit stopped the scan: the file counts as scanned but not fully,
         * and gets a notice of its own if the library did not report one. */
        int have_notice = 0;
        for (unsigned i = 0; i < w->ndets; i++)
            have_notice |= w->dets[i].severity == KH_SEV_NOTICE;
        if (!have_notice)
            dets_add(w,
                     r == KH_ETIMEOUT ? "Heuristics.Limits.Exceeded.MaxScanTime"
                                      : "Heuristics.Limits.Exceeded",
                     KH_SIG_HEURISTIC, KH_SEV_NOTICE, "", NULL);
        rep.scanned = 1;
        rep.partial = 1;
        break;
    }
    case KH_EABORTED:
        rep.scanned = 1;
        rep.partial = 1;
        break;
    case KH_EIO:
    case KH_ENOTFOUND:
        if (is_stdin) {
            rep.error = "Can't read file";
            rep.error_detail = why[0] ? why : kh_strerror(r);
            rep.detail_in_text = 1;
        } else {
            /* Opening the file again tells open failures (with their errno)
             * apart from read failures; the library reports both as I/O. */
            int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
            if (fd < 0) {
                rep.error = "Can't open file or directory";
                rep.error_detail = strerror_r(errno, errbuf, sizeof(errbuf));
            } else {
                close(fd);
                rep.error = "Can't read file";
                rep.error_detail = kh_strerror(r);
                rep.detail_in_text = 1;
            }
        }
        break;
    default:
        rep.error = "Scan failed";
        rep.error_detail = kh_strerror(r);
        rep.detail_in_text = 1;
        break;
    }

    for (unsigned i = 0; i < w->ndets; i++) {
        rep.infected |= w->dets[i].alert;
        rep.partial |= w->dets[i].severity == KH_SEV_NOTICE;
    }
    rep.dets = w->dets;
    rep.ndets = w->ndets;
    rep.dropped = w->dropped;
    scan_publish(w->run, &w->out, &rep);
    if (w->dropped > 0)
        scan_note(w->run, &w->out, 1, rep.path, "more detections than can be listed; some omitted");
    if (rep.error != NULL && cfg->verbose && !cfg->json && !rep.detail_in_text)
        scan_note(w->run, &w->out, 0, rep.path, rep.error_detail);
    dets_clear(w);
}

static void *worker_main(void *arg)
{
    struct scan_worker *w = arg;
    struct scan_run *run = w->run;
    char *path;
    while ((path = queue_pop(run)) != NULL) {
        scan_one(w, path);
        free(path);
    }
    pthread_mutex_lock(&run->lock);
    run->workers_left--;
    pthread_cond_signal(&run->changed);
    pthread_mutex_unlock(&run->lock);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Directory walker                                                          */
/* ------------------------------------------------------------------------ */

static int matches_any(const regex_t *list, size_t n, const char *path)
{
    for (size_t i = 0; i < n; i++)
        if (regexec(&list[i], path, 0, NULL, 0) == 0)
            return 1;
    return 0;
}

static int cmp_entries(const void *a, const void *b)
{
    const struct dir_entry *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static void free_entries(struct khx_vec *v)
{
    for (size_t i = 0; i < v->len; i++)
        free(KHX_VEC_AT(v, struct dir_entry, i)->name);
    khx_vec_free(v);
}

/* Joins a directory path and a name, or returns NULL when the result would
 * be longer than SCAN_PATH_MAX or memory ran out. */
static char *join_path(const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    int slash = dl > 0 && dir[dl - 1] != '/';
    if (dl + (size_t)slash + nl >= SCAN_PATH_MAX)
        return NULL;
    char *p = malloc(dl + (size_t)slash + nl + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, dir, dl);
    if (slash)
        p[dl] = '/';
    memcpy(p + dl + (size_t)slash, name, nl + 1);
    return p;
}

static void walk_dir(struct scan_walker *w, const char *path, unsigned depth, int nofollow);

static void queue_file(struct scan_walker *w, const char *path)
{
    const struct scan_config *cfg = w->run->cfg;
    if (matches_any(cfg->exclude, cfg->nexclude, path)) {
        scan_note(w->run, &w->out, 0, path, "excluded");
        return;
    }
    char *copy = strdup(path);
    if (copy == NULL) {
        scan_report_error(w->run, &w->out, path, "Out of memory", NULL);
        return;
    }
    queue_push(w->run, copy);
}

static void enter_dir(struct scan_walker *w, const char *path, unsigned depth, int nofollow)
{
    const struct scan_config *cfg = w->run->cfg;
    if (matches_any(cfg->exclude_dir, cfg->nexclude_dir, path)) {
        scan_note(w->run, &w->out, 0, path, "directory excluded");
        return;
    }
    if (depth > cfg->max_dir_depth) {
        scan_note(w->run, &w->out, 1, path,
                  "directory not entered: deeper than --max-dir-recursion allows");
        return;
    }
    walk_dir(w, path, depth, nofollow);
}

/* Handles one directory entry whose full path is `child`. */
static void walk_entry(struct scan_walker *w, const char *child, unsigned char type, unsigned depth)
{
    const struct scan_config *cfg = w->run->cfg;
    struct stat st;
    int followed = 0;

    if (type == DT_UNKNOWN) {
        if (lstat(child, &st) != 0) {
            scan_report_error(w->run, &w->out, child, "Can't open file or directory",
                              strerror(errno));
            return;
        }
        type = S_ISLNK(st.st_mode)   ? DT_LNK
               : S_ISDIR(st.st_mode) ? DT_DIR
               : S_ISREG(st.st_mode) ? DT_REG
                                     : DT_UNKNOWN;
    }
    if (type == DT_LNK) {
        if (!cfg->follow_symlinks) {
            scan_note(w->run, &w->out, 0, child, "symbolic link, not followed");
            return;
        }
        if (stat(child, &st) != 0) {
            scan_note(w->run, &w->out, 0, child, "symbolic link to nothing, skipped");
            return;
        }
        followed = 1;
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
    }
    if (type == DT_DIR)
        enter_dir(w, child, depth + 1, !followed);
    else if (type == DT_REG)
        queue_file(w, child);
    else
        scan_note(w->run, &w->out, 0, child, "not a regular file, skipped");
}

/* Lists `path` (at `depth` below its PATH argument) and handles its entries
 * in name order, so that a scan with one thread is reproducible. The entries
 * are read and the directory closed before descending, so one descriptor is
 * open at a time however deep the tree. */
static void walk_dir(struct scan_walker *w, const char *path, unsigned depth, int nofollow)
{
    struct khx_vec entries;
    struct stat st;
    DIR *d = NULL;
    khx_vec_init(&entries, sizeof(struct dir_entry), SCAN_DIR_ENTRIES_MAX);

    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
    if (fd < 0 || fstat(fd, &st) != 0) {
        scan_report_error(w->run, &w->out, path, "Can't open file or directory", strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    for (unsigned i = 0; i < depth; i++) {
        if (w->chain[i].dev == st.st_dev && w->chain[i].ino == st.st_ino) {
            scan_note(w->run, &w->out, 1, path, "directory loop, not entered again");
            close(fd);
            goto out;
        }
    }
    w->chain[depth].dev = st.st_dev;
    w->chain[depth].ino = st.st_ino;
    if ((d = fdopendir(fd)) == NULL) {
        scan_report_error(w->run, &w->out, path, "Can't open file or directory", strerror(errno));
        close(fd);
        goto out;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno != 0)
                scan_report_error(w->run, &w->out, path, "Can't read directory", strerror(errno));
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct dir_entry *e = khx_vec_push(&entries);
        if (e == NULL || (e->name = strdup(de->d_name)) == NULL) {
            scan_report_error(w->run, &w->out, path, "Can't read directory",
                              "too many entries, or out of memory");
            break;
        }
        e->type = de->d_type;
    }
    closedir(d);

    pthread_mutex_lock(&w->run->lock);
    w->run->totals.dirs++;
    pthread_mutex_unlock(&w->run->lock);

    if (entries.len > 1)
        qsort(entries.items, entries.len, sizeof(struct dir_entry), cmp_entries);
    for (size_t i = 0; i < entries.len && !scan_interrupted; i++) {
        const struct dir_entry *e = KHX_VEC_AT(&entries, struct dir_entry, i);
        char *child = join_path(path, e->name);
        if (child == NULL) {
            scan_report_error(w->run, &w->out, path, "Can't open file or directory",
                              "a name inside is too long");
            continue;
        }
        walk_entry(w, child, e->type, depth);
        free(child);
    }
out:
    free_entries(&entries);
}

static void walk_arg(struct scan_walker *w, const char *arg)
{
    const struct scan_config *cfg = w->run->cfg;
    struct stat st;

    if (strcmp(arg, "-") == 0) {
        char *dash = w->stdin_taken ? NULL : strdup("-");
        if (w->stdin_taken)
            scan_report_error(w->run, &w->out, "stdin", "Can't read file",
                              "standard input named more than once");
        else if (dash == NULL)
            scan_report_error(w->run, &w->out, "stdin", "Out of memory", NULL);
        else
            queue_push(w->run, dash);
        w->stdin_taken = 1;
        return;
    }
    if (strlen(arg) >= SCAN_PATH_MAX) {
        scan_report_error(w->run, &w->out, arg, "Can't open file or directory", "name too long");
        return;
    }
    /* Symbolic links named on the command line are followed, as clamscan does. */
    if (stat(arg, &st) != 0) {
        scan_report_error(w->run, &w->out, arg, "Can't open file or directory", strerror(errno));
        return;
    }
    if (S_ISDIR(st.st_mode))
        enter_dir(w, arg, 0, 0);
    else if (S_ISREG(st.st_mode))
        queue_file(w, arg);
    else
        scan_report_error(w->run, &w->out, arg, "Not supported file type", NULL);
    (void)cfg;
}

static void *walker_main(void *arg)
{
    struct scan_walker *w = arg;
    struct scan_run *run = w->run;
    for (size_t i = 0; i < run->cfg->npaths && !scan_interrupted; i++)
        walk_arg(w, run->cfg->paths[i]);
    pthread_mutex_lock(&run->lock);
    run->walker_done = 1;
    pthread_cond_broadcast(&run->can_pop);
    pthread_cond_signal(&run->changed);
    pthread_mutex_unlock(&run->lock);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Starting and waiting                                                      */
/* ------------------------------------------------------------------------ */

/* Starts the walker and the workers, waits for them while drawing progress,
 * and leaves the totals in `run`. Returns 0, or -1 if no thread could start. */
int scan_run_threads(struct scan_run *run, struct scan_worker *workers, unsigned nworkers,
                     struct scan_walker *walker)
{
    pthread_t walker_thread;
    sigset_t block, old;
    unsigned started = 0;
    int walker_started = 0;

    /* Only the main thread takes SIGINT and SIGTERM: the created threads
     * inherit this mask. */
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (unsigned i = 0; i < nworkers; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
            break;
        workers[i].started = 1;
        started++;
    }
    pthread_mutex_lock(&run->lock);
    run->workers_left = started;
    pthread_mutex_unlock(&run->lock);
    if (started > 0 && pthread_create(&walker_thread, NULL, walker_main, walker) == 0)
        walker_started = 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (!walker_started) {
        cli_errorf("cannot start threads: %s", strerror(errno));
        scan_interrupted = 1;
    }

    pthread_mutex_lock(&run->lock);
    while (!(run->walker_done && run->workers_left == 0)) {
        if (!walker_started && run->workers_left == 0)
            break;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += SCAN_PROGRESS_NS;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&run->changed, &run->lock, &until);
        if (scan_interrupted) {
            pthread_cond_broadcast(&run->can_pop);
            pthread_cond_broadcast(&run->can_push);
        }
        if (run->progress && !(run->walker_done && run->workers_left == 0))
            scan_draw_progress_locked(run);
    }
    scan_erase_progress_locked(run);
    pthread_mutex_unlock(&run->lock);

    if (walker_started)
        pthread_join(walker_thread, NULL);
    for (unsigned i = 0; i < nworkers; i++)
        if (workers[i].started)
            pthread_join(workers[i].thread, NULL);
    return walker_started ? 0 : -1;
}

void scan_worker_release(struct scan_worker *w)
{
    if (w == NULL)
        return;
    dets_clear(w);
    kh_scanner_free(w->scanner);
    w->scanner = NULL;
    khx_buf_free(&w->out);
}
