/*
 * Real-time protection on Linux (plat_rtp_*, see agent/platform.h) with
 * fanotify permission events.
 *
 * Every open and exec on the marked mounts waits in the kernel until this
 * process answers, so the design is about never making the machine wait
 * longer than it must:
 *
 * - The mounts holding the protected folders (and the real file systems
 *   mounted below them) carry one mount mark each for FAN_OPEN_PERM,
 *   FAN_OPEN_EXEC_PERM and FAN_CLOSE_WRITE. The kernel cannot filter by
 *   folder, so one reader thread resolves each event's path and answers
 *   ALLOW at once for everything outside the protected folders, inside an
 *   excluded one, caused by this process, or not a regular file. The reader
 *   never opens a file on a marked mount (it would wait for itself).
 * - The rest goes to a bounded queue served by `threads` deciding threads.
 *   When the queue is full the reader answers ALLOW and counts an overflow:
 *   it never blocks.
 * - A watchdog thread answers ALLOW for any permission event pending longer
 *   than the timeout. Each pending event sits in a slot whose atomic state
 *   (a generation number and a phase) makes the answer happen exactly once:
 *   the decider and the watchdog both try to move PENDING to ANSWERED with a
 *   compare-and-swap and only the winner writes. A slot holds two references
 *   for a permission event (the decision and the answer) and its descriptor
 *   is closed when the last one goes, because fanotify matches an answer to
 *   its event by descriptor number: closing early would let a late answer
 *   land on a new event that reused the number.
 * - After a clean verdict the file's inode gets an ignore mark (evictable
 *   where the kernel has FAN_MARK_EVICTABLE, so the cache never pins inodes
 *   in memory) for the open and exec permission events. The kernel clears
 *   such a mark when the file is modified, so a clean file is not scanned
 *   again until it changes. plat_rtp_flush_cache drops all inode marks.
 *
 * docs/internals/agent-platform.md explains the choices and the limits.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "khx.h"
#include "platform.h"

#define RTP_SLOTS           1024 /* events being decided or waiting for a decider */
#define RTP_MAX_PREFIXES    256  /* protected folders plus exclusions */
#define RTP_READ_BYTES      4096 /* one read: at most ~170 events, each holding a descriptor */
#define RTP_DEFAULT_TIMEOUT 5000
#define RTP_DEFAULT_THREADS 4
#define RTP_MAX_THREADS     64
#define RTP_MOUNTINFO_MAX   (16u << 20)
#define RTP_READER_NICE     -10

/* Slot phases; the state word is (generation << 8) | phase. */
enum { SLOT_FREE = 0, SLOT_PENDING = 1, SLOT_ANSWERED = 2, SLOT_NOTIFY = 3 };
#define SLOT_PHASE(s) ((unsigned)((s)&0xffu))
#define SLOT_GEN(s)   ((s) >> 8)

struct rtp_slot {
    _Atomic uint64_t state;
    _Atomic uint64_t t0_ms; /* when the reader read the event */
    atomic_int refs;
    int fd;
    int kind;
    pid_t pid;
    char *path;
    struct stat st; /* the file as the reader saw it, to spot changes during the decision */
};

struct rtp_prefix {
    char *s;
    size_t len;
};

struct plat_rtp {
    int fan_fd, wake_fd, mnt_fd;
    uint64_t mark_mask;   /* the mount marks' events */
    uint64_t ignore_mask; /* what a clean verdict stops: open and exec permission events */
    atomic_int evictable; /* FAN_MARK_EVICTABLE works (cleared on the first EINVAL) */
    _Atomic uint64_t cache_epoch;

    struct rtp_prefix paths[RTP_MAX_PREFIXES], excl[RTP_MAX_PREFIXES];
    size_t npaths, nexcl;
    unsigned timeout_ms, nthreads, nslots;
    int allow_children;
    plat_rtp_decide_fn decide;
    plat_rtp_timeout_fn on_timeout;
    void *ud;
    pid_t self;

    pthread_mutex_t mark_mu; /* serialises mount marking (reader, flush) */
    pthread_mutex_t mu;      /* free list, queue, stopping */
    pthread_cond_t work_cv, wd_cv;
    int stopping;
    atomic_int reader_stop;
    atomic_int remount; /* the mount table changed: the watchdog marks new mounts */
    unsigned freelist[RTP_SLOTS];
    size_t nfree;
    unsigned queue[RTP_SLOTS];
    size_t qhead, qlen;
    struct rtp_slot slots[RTP_SLOTS];

    pthread_t reader, watchdog, deciders[RTP_MAX_THREADS];
    int reader_started, watchdog_started, sync_ready;
    unsigned ndeciders;

    _Atomic uint64_t n_events, n_decided, n_denied, n_timeouts, n_cached, n_overflows, n_errors;
};

static void count(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* Paths                                                                     */
/* ------------------------------------------------------------------------ */

/* True when `path` is `pre` or lies below it ("/" covers every absolute path). */
static int path_under(const char *path, size_t plen, const struct rtp_prefix *pre)
{
    if (pre->len == 1 && pre->s[0] == '/')
        return plen > 0 && path[0] == '/';
    return plen >= pre->len && memcmp(path, pre->s, pre->len) == 0 &&
           (plen == pre->len || path[pre->len] == '/');
}

static int path_in(const char *path, size_t plen, const struct rtp_prefix *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (path_under(path, plen, &set[i]))
            return 1;
    return 0;
}

/* Stores an absolute path without trailing slashes, canonical (symlinks
 * resolved) when it exists, because the kernel reports canonical paths. */
static int prefix_set(struct rtp_prefix *p, const char *path, int must_exist, char *err,
                      size_t errlen)
{
    char *canon = realpath(path, NULL);
    if (canon == NULL) {
        if (must_exist || path[0] != '/') {
            khx_errf(err, errlen, "real-time protection: folder %s: %s", path, strerror(errno));
            return KH_EINVAL;
        }
        if ((canon = strdup(path)) == NULL)
            return KH_ENOMEM;
    }
    size_t len = strlen(canon);
    while (len > 1 && canon[len - 1] == '/')
        canon[--len] = '\0';
    p->s = canon;
    p->len = len;
    return KH_OK;
}

/* Reads the path of an open descriptor. Returns its length, 0 when the
 * kernel cannot name it within PATH_MAX (the file is deeper than that), or
 * -1 on another error. */
static ssize_t fd_path(int fd, char *buf, size_t cap)
{
    char link[40];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, cap - 1);
    if (n < 0 && errno != ENAMETOOLONG)
        return -1;
    if (n < 0 || (size_t)n >= cap - 1) {
        buf[0] = '\0';
        return 0;
    }
    if (n == 0)
        return -1;
    buf[n] = '\0';
    return n;
}

/* ------------------------------------------------------------------------ */
/* Marks                                                                     */
/* ------------------------------------------------------------------------ */

/* File systems with nothing to scan, or on which waiting for a scan risks a
 * deadlock (a FUSE daemon may itself open files on a marked mount). */
static int fstype_skipped(const char *t)
{
    static const char *const skip[] = {
        "proc",      "sysfs",   "devtmpfs",    "devpts",      "cgroup",     "cgroup2", "securityfs",
        "debugfs",   "tracefs", "bpf",         "pstore",      "configfs",   "fusectl", "mqueue",
        "hugetlbfs", "autofs",  "binfmt_misc", "efivarfs",    "rpc_pipefs", "nsfs",    "selinuxfs",
        "nfsd",      "pipefs",  "sockfs",      "anon_inodefs"};
    /* Shares and FUSE file systems below a protected folder are left out: a
     * lookup or a read there can hang on a server or a daemon. Naming one as
     * a protected folder marks it anyway. */
    static const char *const remote[] = {"nfs",  "nfs4",      "cifs", "smb3",   "smbfs", "9p",
                                         "ceph", "glusterfs", "afs",  "lustre", "sshfs"};
    if (strncmp(t, "fuse", 4) == 0)
        return 1;
    for (size_t i = 0; i < KHX_ARRAY_LEN(remote); i++)
        if (strcmp(t, remote[i]) == 0)
            return 1;
    for (size_t i = 0; i < KHX_ARRAY_LEN(skip); i++)
        if (strcmp(t, skip[i]) == 0)
            return 1;
    return 0;
}

static int magic_pseudo(long t)
{
    static const long pseudo[] = {PROC_SUPER_MAGIC,   SYSFS_MAGIC,         DEVPTS_SUPER_MAGIC,
                                  CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, DEBUGFS_MAGIC,
                                  TRACEFS_MAGIC,      SECURITYFS_MAGIC,    BPF_FS_MAGIC};
    for (size_t i = 0; i < KHX_ARRAY_LEN(pseudo); i++)
        if (t == pseudo[i])
            return 1;
    return 0;
}

static int mark_mount(struct plat_rtp *r, const char *path)
{
    return fanotify_mark(r->fan_fd, FAN_MARK_ADD | FAN_MARK_MOUNT, r->mark_mask, AT_FDCWD, path);
}

/* Decodes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape_octal(char *s)
{
    char *w = s;
    for (const char *p = s; *p;) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *w++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 4;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
}

/* Marks the real file systems mounted below a protected folder, from the
 * already open /proc/self/mountinfo (the reader must not open files).
 * Re-marking a mount is harmless, so this runs again on every mount change. */
static void mark_nested_mounts(struct plat_rtp *r)
{
    struct khx_buf b;
    khx_buf_init(&b, RTP_MOUNTINFO_MAX);
    if (r->mnt_fd < 0 || lseek(r->mnt_fd, 0, SEEK_SET) != 0)
        goto out;
    for (;;) {
        if (khx_buf_reserve(&b, 65536) != 0)
            goto out;
        ssize_t n = read(r->mnt_fd, b.data + b.len, b.cap - b.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto out;
        if (n == 0)
            break;
        b.len += (size_t)n;
    }
    b.data[b.len] = '\0';
    for (char *line = (char *)b.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        /* "36 35 98:0 /root /mount/point opts [optional...] - fstype source superopts" */
        char *f[5], *save = NULL, *sep = strstr(line, " - ");
        if (sep == NULL)
            continue;
        *sep = '\0';
        size_t nf = 0;
        for (char *t = strtok_r(line, " ", &save); t && nf < 5; t = strtok_r(NULL, " ", &save))
            f[nf++] = t;
        char *fstype = strtok_r(sep + 3, " ", &save);
        if (nf < 5 || fstype == NULL || fstype_skipped(fstype))
            continue;
        unescape_octal(f[4]);
        size_t len = strlen(f[4]);
        if (!path_in(f[4], len, r->paths, r->npaths) || path_in(f[4], len, r->excl, r->nexcl))
            continue;
        if (mark_mount(r, f[4]) != 0 && errno != ENOENT && errno != EACCES)
            count(&r->n_errors);
    }
out:
    khx_buf_free(&b);
}

/* Marks the mount holding each protected folder, then those below them. */
static int mark_all(struct plat_rtp *r, char *err, size_t errlen)
{
    int rc = KH_OK;
    pthread_mutex_lock(&r->mark_mu);
    for (size_t i = 0; i < r->npaths; i++) {
        if (mark_mount(r, r->paths[i].s) != 0) {
            khx_errf(err, errlen, "real-time protection: cannot mark the mount of %s: %s",
                     r->paths[i].s, strerror(errno));
            rc = KH_EIO;
            goto out;
        }
    }
    mark_nested_mounts(r);
out:
    pthread_mutex_unlock(&r->mark_mu);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Answers and slots                                                         */
/* ------------------------------------------------------------------------ */

static void respond(struct plat_rtp *r, int fd, uint32_t verdict)
{
    struct fanotify_response resp = {.fd = fd, .response = verdict};
    ssize_t n;
    do
        n = write(r->fan_fd, &resp, sizeof(resp));
    while (n < 0 && errno == EINTR);
    /* ENOENT: the kernel no longer waits for it (the opener was killed). */
    if (n != (ssize_t)sizeof(resp) && !(n < 0 && errno == ENOENT))
        count(&r->n_errors);
}

/* Drops one reference; the last one closes the descriptor and frees the slot. */
static void slot_unref(struct plat_rtp *r, unsigned idx)
{
    struct rtp_slot *s = &r->slots[idx];
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    close(s->fd);
    s->fd = -1;
    free(s->path);
    s->path = NULL;
    uint64_t st = atomic_load(&s->state);
    atomic_store(&s->state, ((SLOT_GEN(st) + 1) << 8) | SLOT_FREE);
    pthread_mutex_lock(&r->mu);
    r->freelist[r->nfree++] = idx;
    pthread_mutex_unlock(&r->mu);
}

/* Answers a pending permission event if nobody has; `expect` is the state it
 * must still be in. Returns 1 when this call wrote the answer. */
static int slot_answer(struct plat_rtp *r, unsigned idx, uint64_t expect, uint32_t verdict)
{
    struct rtp_slot *s = &r->slots[idx];
    uint64_t answered = (expect & ~(uint64_t)0xff) | SLOT_ANSWERED;
    if (SLOT_PHASE(expect) != SLOT_PENDING ||
        !atomic_compare_exchange_strong(&s->state, &expect, answered))
        return 0;
    respond(r, s->fd, verdict);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Cache                                                                     */
/* ------------------------------------------------------------------------ */

static int same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void cache_forget(struct plat_rtp *r, int fd)
{
    /* ENOENT: there was no mark, which is the usual case. */
    (void)fanotify_mark(r->fan_fd, FAN_MARK_REMOVE | FAN_MARK_IGNORED_MASK, r->ignore_mask, fd,
                        NULL);
}

/* Remembers a clean verdict in the kernel. The mark goes on first and the
 * file is checked afterwards: a change after the mark clears it (the kernel
 * does that), a change before it shows in the file's times or size, and a
 * flush during the decision shows in the epoch; either way the mark is taken
 * off again so that no verdict outlives the content it was given for. */
static void cache_clean(struct plat_rtp *r, struct rtp_slot *s, uint64_t epoch)
{
    unsigned flags = FAN_MARK_ADD | FAN_MARK_IGNORED_MASK;
    int evict = atomic_load(&r->evictable);
    int rc = fanotify_mark(r->fan_fd, flags | (evict ? FAN_MARK_EVICTABLE : 0), r->ignore_mask,
                           s->fd, NULL);
    if (rc != 0 && errno == EINVAL && evict) {
        atomic_store(&r->evictable, 0);
        rc = fanotify_mark(r->fan_fd, flags, r->ignore_mask, s->fd, NULL);
    }
    if (rc != 0 && errno == ENOSPC) {
        /* Out of marks (the limit applies without FAN_UNLIMITED_MARKS): start over. */
        (void)fanotify_mark(r->fan_fd, FAN_MARK_FLUSH, 0, AT_FDCWD, NULL);
        evict = atomic_load(&r->evictable);
        rc = fanotify_mark(r->fan_fd, flags | (evict ? FAN_MARK_EVICTABLE : 0), r->ignore_mask,
                           s->fd, NULL);
    }
    if (rc != 0) {
        count(&r->n_errors);
        return;
    }
    struct stat now;
    if (fstat(s->fd, &now) != 0 || !same_file_state(&s->st, &now) ||
        atomic_load(&r->cache_epoch) != epoch) {
        cache_forget(r, s->fd);
        return;
    }
    count(&r->n_cached);
}

/* ------------------------------------------------------------------------ */
/* Deciding threads                                                          */
/* ------------------------------------------------------------------------ */

/* True when `pid`'s parent is this process (read from /proc/<pid>/stat,
 * whose second field, the command name, may hold spaces and parentheses). */
static int is_child(pid_t self, pid_t pid)
{
    char path[40], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    int ppid = 0;
    char state;
    if (p == NULL || sscanf(p + 1, " %c %d", &state, &ppid) != 2)
        return 0;
    return ppid == (int)self;
}

static void decide_one(struct plat_rtp *r, unsigned idx)
{
    struct rtp_slot *s = &r->slots[idx];
    uint64_t st = atomic_load(&s->state);
    uint64_t expect = (SLOT_GEN(st) << 8) | SLOT_PENDING;
    int perm = s->kind != PLAT_RTP_CLOSE_WRITE;
    int verdict = PLAT_ALLOW;

    if (!(r->allow_children && is_child(r->self, s->pid))) {
        uint64_t epoch = atomic_load(&r->cache_epoch);
        struct plat_rtp_event ev = {.kind = s->kind, .fd = s->fd, .pid = s->pid, .path = s->path};
        verdict = r->decide(r->ud, &ev) == PLAT_DENY ? PLAT_DENY : PLAT_ALLOW;
        count(&r->n_decided);
        if (verdict == PLAT_DENY)
            count(&r->n_denied);
        if (verdict == PLAT_ALLOW)
            cache_clean(r, s, epoch);
        else if (!perm)
            cache_forget(r, s->fd);
    }
    if (perm && slot_answer(r, idx, expect, verdict == PLAT_DENY ? FAN_DENY : FAN_ALLOW))
        slot_unref(r, idx); /* the answer's reference */
    slot_unref(r, idx);     /* the decision's reference */
}

static void *decider_main(void *arg)
{
    struct plat_rtp *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (r->qlen == 0 && !r->stopping)
            pthread_cond_wait(&r->work_cv, &r->mu);
        if (r->qlen == 0) {
            pthread_mutex_unlock(&r->mu);
            break;
        }
        unsigned idx = r->queue[r->qhead];
        r->qhead = (r->qhead + 1) % RTP_SLOTS;
        r->qlen--;
        int stopping = r->stopping;
        pthread_mutex_unlock(&r->mu);
        if (stopping)
            slot_unref(r, idx); /* plat_rtp_stop answers it */
        else
            decide_one(r, idx);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Watchdog                                                                  */
/* ------------------------------------------------------------------------ */

static void *watchdog_main(void *arg)
{
    struct plat_rtp *r = arg;
    unsigned period = KHX_MAX(5u, KHX_MIN(100u, r->timeout_ms / 10));
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long)period * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->wd_cv, &r->mu, &ts);
        if (r->stopping)
            continue;
        if (atomic_exchange(&r->remount, 0)) {
            pthread_mutex_unlock(&r->mu);
            pthread_mutex_lock(&r->mark_mu);
            mark_nested_mounts(r);
            pthread_mutex_unlock(&r->mark_mu);
            pthread_mutex_lock(&r->mu);
        }
        if (r->nfree == r->nslots)
            continue;
        pthread_mutex_unlock(&r->mu);
        uint64_t now = khx_now_ms();
        for (unsigned i = 0; i < r->nslots; i++) {
            struct rtp_slot *s = &r->slots[i];
            uint64_t st = atomic_load(&s->state);
            if (SLOT_PHASE(st) != SLOT_PENDING)
                continue;
            uint64_t t0 = atomic_load(&s->t0_ms);
            if (now < t0 || now - t0 < r->timeout_ms)
                continue;
            if (!slot_answer(r, i, st, FAN_ALLOW))
                continue;
            /* This thread now holds the answer's reference: the slot stays. */
            count(&r->n_timeouts);
            if (r->on_timeout)
                r->on_timeout(r->ud, s->path, s->pid, (unsigned)(now - t0));
            slot_unref(r, i);
        }
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Reader                                                                    */
/* ------------------------------------------------------------------------ */

static void allow_close(struct plat_rtp *r, const struct fanotify_event_metadata *m, int perm)
{
    if (perm)
        respond(r, m->fd, FAN_ALLOW);
    close(m->fd);
}

/* Takes one event: answers it at once or queues it for a decider. */
static void take_event(struct plat_rtp *r, const struct fanotify_event_metadata *m, int draining)
{
    char path[PATH_MAX + 32];
    int perm = (m->mask & (FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM)) != 0;
    count(&r->n_events);
    if (m->mask & FAN_Q_OVERFLOW) {
        count(&r->n_overflows);
        return;
    }
    if (m->fd < 0) {
        count(&r->n_errors);
        return;
    }
    if (draining || m->pid == r->self || (m->mask & FAN_ONDIR) ||
        !(m->mask & (FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM | FAN_CLOSE_WRITE))) {
        allow_close(r, m, perm);
        return;
    }
    ssize_t plen = fd_path(m->fd, path, sizeof(path));
    if (plen < 0) {
        count(&r->n_errors);
        allow_close(r, m, perm);
        return;
    }
    /* A file the kernel cannot name might be protected: it is decided, with
     * an empty path, rather than let through. */
    if (plen > 0 && (!path_in(path, (size_t)plen, r->paths, r->npaths) ||
                     path_in(path, (size_t)plen, r->excl, r->nexcl))) {
        allow_close(r, m, perm);
        return;
    }
    struct stat st;
    if (fstat(m->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        allow_close(r, m, perm);
        return;
    }
    char *copy = khx_strndup(path, (size_t)plen);
    pthread_mutex_lock(&r->mu);
    if (copy == NULL || r->nfree == 0) {
        pthread_mutex_unlock(&r->mu);
        free(copy);
        count(copy == NULL ? &r->n_errors : &r->n_overflows);
        allow_close(r, m, perm);
        return;
    }
    unsigned idx = r->freelist[--r->nfree];
    struct rtp_slot *s = &r->slots[idx];
    s->fd = m->fd;
    s->pid = m->pid;
    s->path = copy;
    s->st = st;
    s->kind = (m->mask & FAN_OPEN_EXEC_PERM) ? PLAT_RTP_EXEC
              : (m->mask & FAN_OPEN_PERM)    ? PLAT_RTP_OPEN
                                             : PLAT_RTP_CLOSE_WRITE;
    atomic_store(&s->t0_ms, khx_now_ms());
    atomic_store(&s->refs, perm ? 2 : 1);
    uint64_t gen = SLOT_GEN(atomic_load(&s->state));
    atomic_store(&s->state, (gen << 8) | (perm ? SLOT_PENDING : SLOT_NOTIFY));
    r->queue[(r->qhead + r->qlen) % RTP_SLOTS] = idx;
    r->qlen++;
    pthread_cond_signal(&r->work_cv);
    pthread_mutex_unlock(&r->mu);
}

/* Reads and takes events until the kernel has none. Returns -1 on a read error. */
static int read_events(struct plat_rtp *r, int draining)
{
    union {
        struct fanotify_event_metadata m;
        char bytes[RTP_READ_BYTES];
    } buf;
    for (;;) {
        ssize_t n = read(r->fan_fd, buf.bytes, sizeof(buf.bytes));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0) {
            /* EMFILE and the like: the kernel has already refused the event. */
            count(&r->n_errors);
            return -1;
        }
        const struct fanotify_event_metadata *m = &buf.m;
        size_t left = (size_t)n;
        for (; FAN_EVENT_OK(m, left); m = FAN_EVENT_NEXT(m, left)) {
            if (m->vers != FANOTIFY_METADATA_VERSION) {
                count(&r->n_errors);
                if (m->fd >= 0)
                    allow_close(r, m, (m->mask & (FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM)) != 0);
                continue;
            }
            take_event(r, m, draining);
        }
    }
}

static void *reader_main(void *arg)
{
    struct plat_rtp *r = arg;
    struct pollfd p[3] = {{.fd = r->fan_fd, .events = POLLIN},
                          {.fd = r->wake_fd, .events = POLLIN},
                          {.fd = r->mnt_fd, .events = POLLPRI}};
    nfds_t np = r->mnt_fd >= 0 ? 3 : 2;
    /* Every open on the marked mounts waits for this thread, most of them
     * only for a path check: run it ahead of ordinary work (best effort; the
     * scans themselves run in the deciding threads at normal priority). */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), RTP_READER_NICE);
    while (!atomic_load(&r->reader_stop)) {
        int n = poll(p, np, -1);
        if (n < 0) {
            if (errno != EINTR)
                count(&r->n_errors);
            continue;
        }
        if (p[1].revents)
            break;
        if (np == 3 && (p[2].revents & (POLLPRI | POLLERR))) {
            /* A path lookup can block (a slow disk, a stale share), which the
             * reader must never do: the watchdog marks the new mounts. */
            pthread_mutex_lock(&r->mu);
            atomic_store(&r->remount, 1);
            pthread_cond_signal(&r->wd_cv);
            pthread_mutex_unlock(&r->mu);
        }
        if (p[0].revents & POLLIN)
            (void)read_events(r, 0);
    }
    /* The marks are gone by now: allow whatever the kernel still holds. */
    (void)read_events(r, 1);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Start and stop                                                            */
/* ------------------------------------------------------------------------ */

/* Each event read costs a descriptor until it is answered and a failed
 * descriptor makes the kernel refuse the open, so the limit must cover the
 * slots and one read's worth of events. Returns how many slots fit. */
static unsigned raise_fd_limit(void)
{
    const rlim_t batch = RTP_READ_BYTES / FAN_EVENT_METADATA_LEN, reserve = 512;
    const rlim_t need = RTP_SLOTS + batch + reserve;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 16;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        struct rlimit want = {need, rl.rlim_max};
        if (want.rlim_max != RLIM_INFINITY && want.rlim_max < need)
            want.rlim_max = need; /* allowed with CAP_SYS_RESOURCE */
        if (setrlimit(RLIMIT_NOFILE, &want) != 0) {
            want.rlim_cur = want.rlim_max = rl.rlim_max;
            (void)setrlimit(RLIMIT_NOFILE, &want);
        }
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return RTP_SLOTS;
    return rl.rlim_cur > batch + reserve + 16 ? (unsigned)(rl.rlim_cur - batch - reserve) : 16;
}

static int rtp_init_fanotify(struct plat_rtp *r, char *err, size_t errlen)
{
    static const unsigned init_extra[] = {FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS,
                                          FAN_UNLIMITED_QUEUE, 0};
    const unsigned base = FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK;
    int e = 0;
    for (size_t i = 0; i < KHX_ARRAY_LEN(init_extra) && r->fan_fd < 0; i++) {
        r->fan_fd =
            fanotify_init(base | init_extra[i], O_RDONLY | O_LARGEFILE | O_CLOEXEC | O_NOATIME);
        if (r->fan_fd < 0 && errno == EINVAL)
            r->fan_fd = fanotify_init(base | init_extra[i], O_RDONLY | O_LARGEFILE | O_CLOEXEC);
        if (r->fan_fd < 0) {
            e = errno;
            if (e == ENOSYS)
                break;
        }
    }
    if (r->fan_fd < 0) {
        khx_errf(err, errlen, "real-time protection: fanotify is not available: %s%s", strerror(e),
                 e == EPERM ? " (it needs CAP_SYS_ADMIN)" : "");
        return KH_EUNSUPPORTED;
    }
    /* Probe the exec permission event (Linux 5.0) on the first folder's mount. */
    r->mark_mask = FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM | FAN_CLOSE_WRITE;
    r->ignore_mask = FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM;
    if (mark_mount(r, r->paths[0].s) != 0 && errno == EINVAL) {
        r->mark_mask = FAN_OPEN_PERM | FAN_CLOSE_WRITE;
        r->ignore_mask = FAN_OPEN_PERM;
    }
    return KH_OK;
}

static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    /* The agent's main thread takes the signals, not these. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int plat_rtp_start(const struct plat_rtp_opts *opts, struct plat_rtp **out, char *err,
                   size_t errlen)
{
    int rc = KH_EINVAL;
    struct plat_rtp *r = NULL;
    struct statfs sfs;
    pthread_condattr_t ca;

    if (opts == NULL || out == NULL || opts->decide == NULL || opts->npaths == 0 ||
        opts->paths == NULL || opts->npaths > RTP_MAX_PREFIXES ||
        opts->nexcludes > RTP_MAX_PREFIXES || (opts->nexcludes && opts->excludes == NULL) ||
        opts->threads > RTP_MAX_THREADS) {
        khx_errf(err, errlen, "real-time protection: invalid options");
        goto out;
    }
    if ((r = calloc(1, sizeof(*r))) == NULL) {
        rc = KH_ENOMEM;
        goto out;
    }
    r->fan_fd = r->wake_fd = r->mnt_fd = -1;
    r->self = getpid();
    r->timeout_ms = opts->timeout_ms ? opts->timeout_ms : RTP_DEFAULT_TIMEOUT;
    r->nthreads = opts->threads ? opts->threads : RTP_DEFAULT_THREADS;
    r->allow_children = opts->allow_children;
    r->decide = opts->decide;
    r->on_timeout = opts->on_timeout;
    r->ud = opts->ud;
    atomic_init(&r->evictable, 1);
    for (size_t i = 0; i < RTP_SLOTS; i++)
        r->slots[i].fd = -1;
    for (size_t i = 0; i < opts->npaths; i++) {
        if (opts->paths[i] == NULL) {
            khx_errf(err, errlen, "real-time protection: folder %zu is NULL", i);
            goto fail;
        }
        if ((rc = prefix_set(&r->paths[i], opts->paths[i], 1, err, errlen)) != 0)
            goto fail;
        r->npaths = i + 1;
        if (statfs(r->paths[i].s, &sfs) == 0 && magic_pseudo((long)sfs.f_type)) {
            khx_errf(err, errlen, "real-time protection: %s is on a pseudo file system",
                     r->paths[i].s);
            rc = KH_EINVAL;
            goto fail;
        }
    }
    for (size_t i = 0; i < opts->nexcludes; i++) {
        if (opts->excludes[i] == NULL) {
            khx_errf(err, errlen, "real-time protection: exclusion %zu is NULL", i);
            goto fail;
        }
        if ((rc = prefix_set(&r->excl[i], opts->excludes[i], 0, err, errlen)) != 0)
            goto fail;
        r->nexcl = i + 1;
    }
    /* Fewer slots when the descriptor limit cannot be raised enough. */
    r->nslots = KHX_MIN(raise_fd_limit(), (unsigned)RTP_SLOTS);
    for (unsigned i = 0; i < r->nslots; i++)
        r->freelist[r->nfree++] = r->nslots - 1 - i;

    if (pthread_mutex_init(&r->mu, NULL) != 0 || pthread_mutex_init(&r->mark_mu, NULL) != 0 ||
        pthread_cond_init(&r->work_cv, NULL) != 0 || pthread_condattr_init(&ca) != 0) {
        rc = KH_ENOMEM;
        goto fail;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc = pthread_cond_init(&r->wd_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        rc = KH_ENOMEM;
        goto fail;
    }
    r->sync_ready = 1;

    if ((rc = rtp_init_fanotify(r, err, errlen)) != 0)
        goto fail;
    r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->mnt_fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (r->wake_fd < 0) {
        khx_errf(err, errlen, "real-time protection: eventfd: %s", strerror(errno));
        rc = KH_EIO;
        goto fail;
    }
    if ((rc = mark_all(r, err, errlen)) != 0)
        goto fail;

    rc = KH_EIO;
    if (start_thread(&r->watchdog, watchdog_main, r) != 0)
        goto fail_thread;
    r->watchdog_started = 1;
    for (; r->ndeciders < r->nthreads; r->ndeciders++)
        if (start_thread(&r->deciders[r->ndeciders], decider_main, r) != 0)
            goto fail_thread;
    if (start_thread(&r->reader, reader_main, r) != 0)
        goto fail_thread;
    r->reader_started = 1;
    *out = r;
    r = NULL;
    rc = KH_OK;
out:
    return rc;
fail_thread:
    khx_errf(err, errlen, "real-time protection: cannot start a thread");
fail:
    plat_rtp_stop(r);
    goto out;
}

void plat_rtp_stop(struct plat_rtp *r)
{
    if (r == NULL)
        return;
    /* 1. No new events: drop the mount marks. */
    if (r->fan_fd >= 0) {
        pthread_mutex_lock(&r->mark_mu);
        (void)fanotify_mark(r->fan_fd, FAN_MARK_FLUSH | FAN_MARK_MOUNT, 0, AT_FDCWD, NULL);
        pthread_mutex_unlock(&r->mark_mu);
    }
    /* 2. The reader allows what the kernel still holds and ends. */
    if (r->reader_started) {
        uint64_t one = 1;
        atomic_store(&r->reader_stop, 1);
        if (write(r->wake_fd, &one, sizeof(one)) != sizeof(one))
            count(&r->n_errors);
        pthread_join(r->reader, NULL);
    }
    if (r->sync_ready) {
        /* 3. Every event still waiting for a decision is allowed now. */
        pthread_mutex_lock(&r->mu);
        r->stopping = 1;
        pthread_cond_broadcast(&r->work_cv);
        pthread_cond_broadcast(&r->wd_cv);
        pthread_mutex_unlock(&r->mu);
        for (unsigned i = 0; i < RTP_SLOTS; i++) {
            uint64_t st = atomic_load(&r->slots[i].state);
            if (slot_answer(r, i, st, FAN_ALLOW))
                slot_unref(r, i);
        }
        if (r->watchdog_started)
            pthread_join(r->watchdog, NULL);
        /* 4. Close the fanotify group under the deciders' feet: /dev/null
         * takes its descriptor number, so a decision finishing late writes
         * nowhere, and the kernel allows anything it still held. */
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (nul >= 0 && r->fan_fd >= 0) {
            dup3(nul, r->fan_fd, O_CLOEXEC);
        }
        if (nul >= 0)
            close(nul);
        /* 5. Wait for running decisions; a queued one is dropped unseen. */
        for (unsigned i = 0; i < r->ndeciders; i++)
            pthread_join(r->deciders[i], NULL);
        while (r->qlen > 0) {
            unsigned idx = r->queue[r->qhead];
            r->qhead = (r->qhead + 1) % RTP_SLOTS;
            r->qlen--;
            slot_unref(r, idx);
        }
        pthread_cond_destroy(&r->work_cv);
        pthread_cond_destroy(&r->wd_cv);
        pthread_mutex_destroy(&r->mu);
        pthread_mutex_destroy(&r->mark_mu);
    }
    for (unsigned i = 0; i < RTP_SLOTS; i++) {
        /* Only reachable if a thread could not start after events arrived. */
        if (r->slots[i].fd >= 0)
            close(r->slots[i].fd);
        free(r->slots[i].path);
    }
    if (r->fan_fd >= 0)
        close(r->fan_fd);
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    if (r->mnt_fd >= 0)
        close(r->mnt_fd);
    for (size_t i = 0; i < r->npaths; i++)
        free(r->paths[i].s);
    for (size_t i = 0; i < r->nexcl; i++)
        free(r->excl[i].s);
    free(r);
}

void plat_rtp_flush_cache(struct plat_rtp *r)
{
    if (r == NULL)
        return;
    atomic_fetch_add(&r->cache_epoch, 1);
    pthread_mutex_lock(&r->mark_mu);
    /* Without FAN_MARK_MOUNT only inode marks go, which are all ignore marks.
     * Re-adding the mount marks costs little and guards against a kernel
     * that would flush more. */
    (void)fanotify_mark(r->fan_fd, FAN_MARK_FLUSH, 0, AT_FDCWD, NULL);
    for (size_t i = 0; i < r->npaths; i++)
        if (mark_mount(r, r->paths[i].s) != 0)
            count(&r->n_errors);
    mark_nested_mounts(r);
    pthread_mutex_unlock(&r->mark_mu);
}

void plat_rtp_stats(struct plat_rtp *r, struct plat_rtp_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (r == NULL)
        return;
    st->events = atomic_load(&r->n_events);
    st->decided = atomic_load(&r->n_decided);
    st->denied = atomic_load(&r->n_denied);
    st->timeouts = atomic_load(&r->n_timeouts);
    st->cached = atomic_load(&r->n_cached);
    st->overflows = atomic_load(&r->n_overflows);
    st->errors = atomic_load(&r->n_errors);
}
