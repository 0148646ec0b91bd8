/*
 * The agent's side of the sandboxed scan worker (see sandbox.h): starting
 * worker processes, sending them descriptors, matching their answers to the
 * waiting callers, and replacing a worker that dies, lies or is reloaded.
 *
 * Each worker process is a `struct proc` with a reader thread that receives
 * its answers. A caller takes one of SBX_INFLIGHT request slots (the slot's
 * index is the low byte of the request id, so an answer finds its slot
 * without a search), sends the request, and sleeps on the slot's condition
 * variable until the reader fills in the result, the worker dies (KH_EIO) or
 * the timeout passes (KH_ETIMEOUT). A timed-out slot stays reserved until its
 * late answer arrives, so that an answer always matches a request the worker
 * was really given: any other answer, and any record that does not decode,
 * means the worker cannot be trusted and it is killed.
 *
 * One mutex guards everything here; it is never held across a system call
 * that can block (spawning, sending, waiting for a process).
 */
#include "proto.h"
#include "sandbox_int.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "khx.h"

extern char **environ;

#define SBX_INFLIGHT       256     /* requests in flight; more callers wait for a slot */
#define START_TIMEOUT_MS   120000u /* a huge database can take a while to map and check */
#define EXIT_GRACE_MS      500u    /* from closing the socket to SIGTERM */
#define STOP_GRACE_MS      2000u   /* from SIGTERM to SIGKILL */
#define RESTART_BACKOFF_MS 1000u   /* after a failed start, fail fast for this long */

enum slot_state { SLOT_FREE = 0, SLOT_WAITING, SLOT_DONE, SLOT_ABANDONED };

struct proc {
    struct sbx_worker *w;
    pid_t pid;
    int sock;
    unsigned threads;
    int refs;           /* the reader, plus each caller sending on sock */
    int dead;           /* takes no new requests */
    int retiring;       /* replaced by a reload: shut down when nobody waits on it */
    int shut;           /* shutdown() done */
    unsigned waiting;   /* slots in SLOT_WAITING on this process */
    unsigned abandoned; /* slots in SLOT_ABANDONED on this process */
    int64_t db_created;
    uint64_t db_signatures;
    struct proc *next;
    struct sbx_answer ans;       /* the reader's decoding space */
    uint8_t rx[SBX_MSG_MAX + 1]; /* one byte more, so an oversized record shows as MSG_TRUNC */
};

struct slot {
    uint64_t id;
    int state;
    int rc;
    int next_free;
    struct proc *proc;
    struct sbx_result *res; /* the caller's, while SLOT_WAITING */
    pthread_cond_t cond;
};

struct sbx_worker {
    pthread_mutex_t lock;
    pthread_cond_t slot_cond; /* a slot was freed */
    pthread_cond_t idle_cond; /* a start ended, a process ended, a caller left */
    struct sbx_opts opts;     /* its strings point to the copies below */
    char *kdb_path, *exe, *user;
    unsigned threads;
    struct proc *cur;   /* where new requests go; NULL: start one first */
    struct proc *procs; /* every process whose reader runs */
    unsigned nprocs;
    unsigned callers;
    int starting;
    int stopping;
    int started_once;
    uint64_t fail_ms; /* when the last start failed */
    int fail_rc;
    uint64_t seq;
    int free_head;
    struct sbx_stats stats;
    struct slot slots[SBX_INFLIGHT];
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static struct timespec abs_deadline(uint64_t deadline_ms)
{
    struct timespec ts = {(time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000L};
    return ts;
}

/* Waits on c until signalled or until deadline_ms (CLOCK_MONOTONIC; 0 =
 * forever). Returns ETIMEDOUT once the deadline has passed. */
static int wait_until(pthread_cond_t *c, pthread_mutex_t *m, uint64_t deadline_ms)
{
    if (deadline_ms == 0)
        return pthread_cond_wait(c, m);
    struct timespec ts = abs_deadline(deadline_ms);
    return pthread_cond_timedwait(c, m, &ts);
}

static void cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Polls for pid's end for up to ms milliseconds: 1 when it was reaped
 * (*status set; -1 if it could not be waited for), 0 while it still runs. */
static int reaped_within(pid_t pid, unsigned ms, int *status)
{
    uint64_t until = now_ms() + ms;
    unsigned nap = 1;
    for (;;) {
        pid_t got = waitpid(pid, status, WNOHANG);
        if (got == pid)
            return 1;
        if (got < 0 && errno != EINTR) {
            *status = -1;
            return 1;
        }
        if (now_ms() >= until)
            return 0;
        sleep_ms(nap);
        nap = KHX_MIN(nap * 2, 20u);
    }
}

/* Waits for pid to end once its socket is shut down: a moment to exit by
 * itself (it does as soon as it sees the socket close), then SIGTERM, up to
 * STOP_GRACE_MS more, then SIGKILL. `brutal` goes straight to SIGKILL.
 * Returns the wait status. */
static int reap(pid_t pid, int brutal)
{
    int status = -1;
    if (brutal)
        kill(pid, SIGKILL);
    else if (reaped_within(pid, EXIT_GRACE_MS, &status))
        return status;
    else
        kill(pid, SIGTERM);
    if (reaped_within(pid, STOP_GRACE_MS, &status))
        return status;
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return status;
}

/* Reports a worker that misbehaved or could not be restarted. */
static void note(struct sbx_worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct sbx_worker *w, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (w->opts.log != NULL)
        w->opts.log(w->opts.log_ud, msg);
    else
        fprintf(stderr, "khien: %s\n", msg);
}

static void describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "ended (status 0x%x)", (unsigned)status);
}

/* Under w->lock. */
static void proc_unref(struct proc *p)
{
    if (--p->refs > 0)
        return;
    close(p->sock);
    free(p);
}

/* Under w->lock: a retired process is shut down once no caller waits on it
 * (requests abandoned by their callers are not waited for). */
static void maybe_retire(struct proc *p)
{
    if (p->retiring && p->waiting == 0 && !p->shut) {
        p->shut = 1;
        shutdown(p->sock, SHUT_RDWR);
    }
}

/* Under w->lock: the process takes no more requests; the next caller
 * starts a new one. */
static void proc_mark_dead(struct proc *p)
{
    p->dead = 1;
    if (p->w->cur == p)
        p->w->cur = NULL;
}

static void slot_free(struct sbx_worker *w, struct slot *s)
{
    s->id = 0;
    s->state = SLOT_FREE;
    s->proc = NULL;
    s->res = NULL;
    s->next_free = w->free_head;
    w->free_head = (int)(s - w->slots);
    pthread_cond_signal(&w->slot_cond);
}

/* ------------------------------------------------------------------------ */
/* The reader thread                                                         */
/* ------------------------------------------------------------------------ */

/* Called by the reader when its process has ended or must be killed: every
 * caller still waiting on it gets KH_EIO, then the process is reaped. */
static void proc_end(struct proc *p, int brutal)
{
    struct sbx_worker *w = p->w;
    /* A lying worker dies before it can do anything else; the pid is ours
     * until it is reaped below. */
    if (brutal)
        kill(p->pid, SIGKILL);
    pthread_mutex_lock(&w->lock);
    proc_mark_dead(p);
    for (int i = 0; i < SBX_INFLIGHT; i++) {
        struct slot *s = &w->slots[i];
        if (s->proc != p)
            continue;
        if (s->state == SLOT_WAITING) {
            s->rc = KH_EIO;
            s->state = SLOT_DONE;
            s->proc = NULL;
            p->waiting--;
            pthread_cond_signal(&s->cond);
        } else if (s->state == SLOT_ABANDONED) {
            p->abandoned--;
            slot_free(w, s);
        }
    }
    for (struct proc **pp = &w->procs; *pp != NULL; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    if (!p->shut) {
        p->shut = 1;
        shutdown(p->sock, SHUT_RDWR);
    }
    pthread_mutex_unlock(&w->lock);

    int status = reap(p->pid, brutal);

    pthread_mutex_lock(&w->lock);
    w->stats.last_wait_status = status;
    w->nprocs--;
    pthread_cond_broadcast(&w->idle_cond);
    proc_unref(p);
    pthread_mutex_unlock(&w->lock);
}

/* Hands one decoded RESULT to its caller. Returns 0, or -1 when no request
 * of this process has that id (the worker is lying). */
static int deliver(struct proc *p)
{
    struct sbx_worker *w = p->w;
    const struct sbx_result *res = &p->ans.result;
    int r = 0;
    pthread_mutex_lock(&w->lock);
    struct slot *s = &w->slots[p->ans.id % SBX_INFLIGHT];
    if (s->id != p->ans.id || s->proc != p) {
        r = -1;
    } else if (s->state == SLOT_WAITING) {
        /* Only the entries in use are copied: det[] is most of the struct. */
        memcpy(s->res, res,
               offsetof(struct sbx_result, det) + res->ndetections * sizeof(res->det[0]));
        s->rc = KH_OK;
        s->state = SLOT_DONE;
        s->proc = NULL;
        p->waiting--;
        pthread_cond_signal(&s->cond);
        maybe_retire(p);
    } else if (s->state == SLOT_ABANDONED) {
        p->abandoned--; /* a late answer: its caller has gone */
        slot_free(w, s);
    } else {
        r = -1;
    }
    pthread_mutex_unlock(&w->lock);
    return r;
}

static void *reader_main(void *arg)
{
    struct proc *p = arg;
    char why[256];
    int brutal = 0;
    for (;;) {
        struct iovec iov = {p->rx, sizeof(p->rx)};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        /* No control buffer: descriptors a rogue worker attaches are
         * discarded by the kernel and show as MSG_CTRUNC. */
        ssize_t n = recvmsg(p->sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EOF or ECONNRESET: the worker is gone or we shut it down */
        if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
            snprintf(why, sizeof(why), "an oversized record or attached descriptors");
            brutal = 1;
        } else if (sbx_proto_decode_answer(p->rx, (size_t)n, &p->ans, why, sizeof(why)) != 0) {
            brutal = 1;
        } else if (p->ans.type != SBX_MSG_RESULT) {
            snprintf(why, sizeof(why), "a message of type %d after it was ready", p->ans.type);
            brutal = 1;
        } else if (deliver(p) != 0) {
            snprintf(why, sizeof(why), "an answer to request %llu, which it was not given",
                     (unsigned long long)p->ans.id);
            brutal = 1;
        }
        if (brutal) {
            note(p->w, "sandbox worker %d sent %s; killing it", (int)p->pid, why);
            break;
        }
    }
    proc_end(p, brutal);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Starting a worker process                                                 */
/* ------------------------------------------------------------------------ */

/* Waits for the worker's first message. */
static int await_ready(struct proc *p, int *died, char *err, size_t errlen)
{
    uint64_t until = now_ms() + START_TIMEOUT_MS;
    for (;;) {
        uint64_t now = now_ms();
        if (now >= until) {
            khx_errf(err, errlen, "the sandbox worker was not ready within %u s",
                     START_TIMEOUT_MS / 1000);
            return KH_ETIMEOUT;
        }
        struct pollfd pfd = {p->sock, POLLIN, 0};
        int pr = poll(&pfd, 1, (int)KHX_MIN(until - now, 1000u));
        if (pr < 0 && errno != EINTR) {
            khx_errf(err, errlen, "poll: %s", strerror(errno));
            return KH_EIO;
        }
        if (pr <= 0)
            continue;
        ssize_t n = recv(p->sock, p->rx, sizeof(p->rx), MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            *died = 1;
            return KH_EIO;
        }
        char why[256];
        if (sbx_proto_decode_answer(p->rx, (size_t)n, &p->ans, why, sizeof(why)) != 0) {
            khx_errf(err, errlen, "the sandbox worker sent garbage: %s", why);
            return KH_EFORMAT;
        }
        if (p->ans.type == SBX_MSG_ERROR) {
            khx_errf(err, errlen, "%s", p->ans.msg);
            return p->ans.code;
        }
        if (p->ans.type != SBX_MSG_READY) {
            khx_errf(err, errlen, "the sandbox worker answered before it was ready");
            return KH_EFORMAT;
        }
        p->threads = p->ans.threads;
        p->db_created = p->ans.db_created;
        p->db_signatures = p->ans.db_signatures;
        return KH_OK;
    }
}

static int spawn(struct sbx_worker *w, const char *kdb_path, int child_fd, pid_t *pid, char *err,
                 size_t errlen)
{
    char *argv[SBX_ARGV_MAX + 1];
    char storage[2 * PATH_MAX + 1024];
    struct sbx_opts o = w->opts;
    o.kdb_path = kdb_path;
    int r = sbx_args_build(&o, w->exe, child_fd, w->threads, argv, KHX_ARRAY_LEN(argv), storage,
                           sizeof(storage));
    if (r < 0) {
        khx_errf(err, errlen, "the worker's command line is too long");
        return r;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    /* dup2 onto itself clears FD_CLOEXEC in the child only. The worker
     * starts with no blocked signals and default handlers, whatever the
     * agent's threads had. */
    int rc = posix_spawn_file_actions_adddup2(&fa, child_fd, child_fd);
    if (rc == 0)
        rc = posix_spawnattr_setsigmask(&attr, &none);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (rc == 0)
        rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (rc == 0)
        rc = posix_spawn(pid, w->exe, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        khx_errf(err, errlen, "cannot start the sandbox worker %s: %s", w->exe, strerror(rc));
        return KH_EIO;
    }
    return KH_OK;
}

/* Starts a worker process on kdb_path, waits until it is ready, and adds it
 * to w->procs with its reader running. Called without the lock. */
static int proc_start(struct sbx_worker *w, const char *kdb_path, struct proc **out, char *err,
                      size_t errlen)
{
    int r = KH_EIO;
    int sv[2] = {-1, -1};
    pid_t pid = -1;
    int died = 0;
    pthread_t tid;
    pthread_attr_t ta;
    struct proc *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        khx_errf(err, errlen, "out of memory");
        return KH_ENOMEM;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        khx_errf(err, errlen, "socketpair: %s", strerror(errno));
        goto out;
    }
    if ((r = spawn(w, kdb_path, sv[1], &pid, err, errlen)) != 0)
        goto out;
    close(sv[1]);
    sv[1] = -1;
    p->w = w;
    p->sock = sv[0];
    p->pid = pid;
    if ((r = await_ready(p, &died, err, errlen)) != 0)
        goto out;

    pthread_mutex_lock(&w->lock);
    p->refs = 1;
    p->next = w->procs;
    w->procs = p;
    w->nprocs++;
    pthread_mutex_unlock(&w->lock);
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&tid, &ta, reader_main, p);
    pthread_attr_destroy(&ta);
    if (rc != 0) {
        /* The reader's cleanup, done here instead. */
        khx_errf(err, errlen, "cannot create the sandbox reader thread");
        proc_end(p, 1);
        return KH_ENOMEM;
    }
    *out = p;
    return KH_OK;
out:
    if (pid > 0) {
        int status = reap(pid, 1);
        if (died) {
            char how[96];
            describe_status(status, how, sizeof(how));
            khx_errf(err, errlen, "the sandbox worker %s before it was ready", how);
        }
    }
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    free(p);
    return r;
}

/* Under w->lock: makes sure w->cur is a live process, starting one if the
 * last one died. The lock is released while a process starts; other
 * callers wait for that start instead of making their own. */
static int ensure_current(struct sbx_worker *w)
{
    while (w->cur == NULL) {
        if (w->stopping)
            return KH_EIO;
        if (w->starting) {
            pthread_cond_wait(&w->idle_cond, &w->lock);
            continue;
        }
        if (w->started_once && w->fail_ms != 0 && now_ms() - w->fail_ms < RESTART_BACKOFF_MS)
            return w->fail_rc;
        char path[PATH_MAX], err[512];
        snprintf(path, sizeof(path), "%s", w->kdb_path);
        w->starting = 1;
        pthread_mutex_unlock(&w->lock);
        struct proc *p = NULL;
        int r = proc_start(w, path, &p, err, sizeof(err));
        pthread_mutex_lock(&w->lock);
        w->starting = 0;
        pthread_cond_broadcast(&w->idle_cond);
        if (r != 0) {
            note(w, "cannot restart the sandbox worker: %s", err);
            w->fail_ms = now_ms();
            w->fail_rc = r;
            return r;
        }
        w->fail_ms = 0;
        w->cur = p;
        w->stats.restarts++;
        w->stats.db_created = p->db_created;
        w->stats.db_signatures = p->db_signatures;
        if (w->stopping)
            proc_mark_dead(p); /* sbx_worker_stop shuts it down */
    }
    return KH_OK;
}

/* ------------------------------------------------------------------------ */
/* The interface                                                             */
/* ------------------------------------------------------------------------ */

void sbx_opts_default(struct sbx_opts *o)
{
    memset(o, 0, sizeof(*o));
    kh_scan_opts_default(&o->scan);
}

static void worker_free(struct sbx_worker *w)
{
    if (w == NULL)
        return;
    for (int i = 0; i < SBX_INFLIGHT; i++)
        pthread_cond_destroy(&w->slots[i].cond);
    pthread_cond_destroy(&w->slot_cond);
    pthread_cond_destroy(&w->idle_cond);
    pthread_mutex_destroy(&w->lock);
    free(w->kdb_path);
    free(w->exe);
    free(w->user);
    free(w);
}

int sbx_worker_start(const struct sbx_opts *opts, struct sbx_worker **out, char *err, size_t errlen)
{
    static const struct kh_scan_opts zero_scan;
    struct sbx_worker *w = NULL;
    struct proc *p = NULL;
    int r = KH_ENOMEM;
    if (opts == NULL || opts->kdb_path == NULL || out == NULL) {
        khx_errf(err, errlen, "no database path given");
        return KH_EINVAL;
    }
    if (strlen(opts->kdb_path) >= PATH_MAX) {
        khx_errf(err, errlen, "database path too long");
        return KH_EINVAL;
    }
    if ((w = calloc(1, sizeof(*w))) == NULL)
        goto nomem;
    w->opts = *opts;
    if (memcmp(&w->opts.scan, &zero_scan, sizeof(zero_scan)) == 0)
        kh_scan_opts_default(&w->opts.scan);
    w->kdb_path = strdup(opts->kdb_path);
    w->exe = strdup(opts->exe ? opts->exe : "/proc/self/exe");
    w->user = opts->user ? strdup(opts->user) : NULL;
    if (w->kdb_path == NULL || w->exe == NULL || (opts->user && w->user == NULL))
        goto nomem;
    w->opts.kdb_path = w->kdb_path;
    w->opts.exe = w->exe;
    w->opts.user = w->user;
    w->threads = opts->threads;
    if (w->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        w->threads = n < 1 ? 1 : n > SBX_AUTO_THREADS ? SBX_AUTO_THREADS : (unsigned)n;
    }
    if (w->threads > SBX_MAX_THREADS)
        w->threads = SBX_MAX_THREADS;
    pthread_mutex_init(&w->lock, NULL);
    cond_init_monotonic(&w->slot_cond);
    cond_init_monotonic(&w->idle_cond);
    for (int i = 0; i < SBX_INFLIGHT; i++) {
        cond_init_monotonic(&w->slots[i].cond);
        w->slots[i].next_free = i + 1 < SBX_INFLIGHT ? i + 1 : -1;
    }
    w->free_head = 0;
    w->stats.last_wait_status = -1;

    if ((r = proc_start(w, w->kdb_path, &p, err, errlen)) != 0) {
        worker_free(w);
        return r;
    }
    pthread_mutex_lock(&w->lock);
    w->cur = p;
    w->started_once = 1;
    w->stats.db_created = p->db_created;
    w->stats.db_signatures = p->db_signatures;
    pthread_mutex_unlock(&w->lock);
    *out = w;
    return KH_OK;
nomem:
    khx_errf(err, errlen, "out of memory");
    worker_free(w);
    return KH_ENOMEM;
}

void sbx_worker_stop(struct sbx_worker *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    while (w->starting)
        pthread_cond_wait(&w->idle_cond, &w->lock);
    /* Shutting the sockets down ends each worker (it exits when its socket
     * closes) and wakes each reader, which fails its pending callers with
     * KH_EIO and reaps the process (SIGTERM, then SIGKILL if need be). */
    for (struct proc *p = w->procs; p != NULL; p = p->next) {
        proc_mark_dead(p);
        if (!p->shut) {
            p->shut = 1;
            shutdown(p->sock, SHUT_RDWR);
        }
    }
    pthread_cond_broadcast(&w->slot_cond);
    while (w->nprocs > 0 || w->callers > 0)
        pthread_cond_wait(&w->idle_cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    worker_free(w);
}

/* Sends one request with the descriptor attached, waiting for room in the
 * socket no later than deadline_ms (0 = forever). */
static int send_request(int sock, const uint8_t *buf, size_t len, int fd, uint64_t deadline_ms)
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {(void *)buf, len};
    struct msghdr msg = {0};
    memset(&ctl, 0, sizeof(ctl));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.space;
    msg.msg_controllen = sizeof(ctl.space);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    for (;;) {
        if (sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
            return KH_OK;
        if (errno == EINTR)
            continue;
        if (errno == EBADF)
            return KH_EINVAL; /* the caller's descriptor */
        if (errno != EAGAIN)
            return KH_EIO; /* EPIPE, ECONNRESET: the worker is gone */
        int wait_ms = -1;
        if (deadline_ms != 0) {
            uint64_t now = now_ms();
            if (now >= deadline_ms)
                return KH_ETIMEOUT;
            wait_ms = (int)KHX_MIN(deadline_ms - now, (uint64_t)INT_MAX);
        }
        struct pollfd pfd = {sock, POLLOUT, 0};
        (void)poll(&pfd, 1, wait_ms);
    }
}

/* Under w->lock: the caller of slot s gives up waiting. */
static void abandon(struct sbx_worker *w, struct slot *s)
{
    struct proc *p = s->proc;
    s->state = SLOT_ABANDONED;
    s->res = NULL;
    p->waiting--;
    p->abandoned++;
    w->stats.timeouts++;
    /* As many requests nobody waits for as the worker has threads: every
     * thread may be stuck on one (a descriptor whose read never returns),
     * and the requests queued behind them would wait for ever. A fresh
     * worker serves the next callers. */
    if (!p->dead && p->abandoned >= p->threads) {
        note(w, "sandbox worker %d has %u abandoned requests; restarting it", (int)p->pid,
             p->abandoned);
        proc_mark_dead(p);
        kill(p->pid, SIGKILL);
    }
    maybe_retire(p);
}

int sbx_scan_fd(struct sbx_worker *w, int fd, const char *name, unsigned timeout_ms,
                struct sbx_result *res)
{
    struct sbx_request rq;
    uint8_t buf[SBX_HDR_LEN + 2 + SBX_NAME_MAX];
    uint64_t deadline = 0;
    int r = KH_EIO;
    if (w == NULL || fd < 0 || res == NULL)
        return KH_EINVAL;
    const char *src = name ? name : "";
    size_t n = strnlen(src, sizeof(rq.name) - 1);
    if (src[n] != '\0') /* cut short: not in the middle of a UTF-8 character */
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
            n--;
    memcpy(rq.name, src, n);
    rq.name[n] = '\0';
    pthread_mutex_lock(&w->lock);
    w->callers++;
    for (int attempt = 0;; attempt++) {
        if (w->stopping) {
            r = KH_EIO;
            goto out;
        }
        if ((r = ensure_current(w)) != 0)
            goto out;
        /* The time limit starts once a worker is there: a restart can take
         * as long as the database takes to load. */
        if (deadline == 0 && timeout_ms != 0)
            deadline = now_ms() + timeout_ms;
        while (w->free_head < 0 && !w->stopping) {
            if (wait_until(&w->slot_cond, &w->lock, deadline) == ETIMEDOUT && w->free_head < 0) {
                w->stats.timeouts++;
                r = KH_ETIMEOUT;
                goto out;
            }
        }
        if (w->stopping)
            continue;
        struct proc *p = w->cur;
        if (p == NULL)
            continue; /* it died while we waited for a slot */
        struct slot *s = &w->slots[w->free_head];
        w->free_head = s->next_free;
        s->id = ++w->seq * SBX_INFLIGHT + (uint64_t)(s - w->slots);
        s->state = SLOT_WAITING;
        s->proc = p;
        s->res = res;
        p->waiting++;
        p->refs++;
        w->stats.requests++;
        pthread_mutex_unlock(&w->lock);

        rq.id = s->id;
        size_t len = sbx_proto_encode_request(&rq, buf, sizeof(buf));
        r = len > 0 ? send_request(p->sock, buf, len, fd, deadline) : KH_EINVAL;

        pthread_mutex_lock(&w->lock);
        if (r != 0) {
            if (s->state == SLOT_WAITING)
                p->waiting--;
            slot_free(w, s);
            if (r == KH_EIO) {
                /* The worker cannot take requests: its reader reaps it. */
                proc_mark_dead(p);
                if (!p->shut) {
                    p->shut = 1;
                    shutdown(p->sock, SHUT_RDWR);
                }
            }
            proc_unref(p);
            if (r == KH_EIO && attempt == 0)
                continue; /* it never got the request: try once on a new worker */
            if (r == KH_ETIMEOUT)
                w->stats.timeouts++;
            goto out;
        }
        proc_unref(p); /* the slot keeps p valid while it is WAITING */
        while (s->state == SLOT_WAITING) {
            if (wait_until(&s->cond, &w->lock, deadline) == ETIMEDOUT && s->state == SLOT_WAITING) {
                abandon(w, s);
                r = KH_ETIMEOUT;
                goto out;
            }
        }
        r = s->rc;
        slot_free(w, s);
        goto out;
    }
out:
    w->callers--;
    if (w->stopping)
        pthread_cond_broadcast(&w->idle_cond);
    pthread_mutex_unlock(&w->lock);
    return r;
}

int sbx_worker_reload(struct sbx_worker *w, const char *kdb_path, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct proc *p = NULL;
    if (w == NULL)
        return KH_EINVAL;
    pthread_mutex_lock(&w->lock);
    while (w->starting && !w->stopping)
        pthread_cond_wait(&w->idle_cond, &w->lock);
    if (w->stopping) {
        pthread_mutex_unlock(&w->lock);
        return KH_EIO;
    }
    const char *src = kdb_path ? kdb_path : w->kdb_path;
    if (strlen(src) >= sizeof(path)) {
        pthread_mutex_unlock(&w->lock);
        khx_errf(err, errlen, "database path too long");
        return KH_EINVAL;
    }
    snprintf(path, sizeof(path), "%s", src);
    char *copy = strdup(path);
    if (copy == NULL) {
        pthread_mutex_unlock(&w->lock);
        return KH_ENOMEM;
    }
    w->starting = 1;
    pthread_mutex_unlock(&w->lock);

    int r = proc_start(w, path, &p, err, errlen);

    pthread_mutex_lock(&w->lock);
    w->starting = 0;
    pthread_cond_broadcast(&w->idle_cond);
    if (r == 0) {
        struct proc *old = w->cur;
        w->cur = p;
        free(w->kdb_path);
        w->kdb_path = copy;
        w->opts.kdb_path = copy;
        copy = NULL;
        w->fail_ms = 0;
        w->stats.generation++;
        w->stats.db_created = p->db_created;
        w->stats.db_signatures = p->db_signatures;
        if (old != NULL) {
            old->dead = 1;
            old->retiring = 1;
            maybe_retire(old);
        }
        if (w->stopping)
            proc_mark_dead(p);
    }
    pthread_mutex_unlock(&w->lock);
    free(copy);
    return r;
}

void sbx_worker_stats(struct sbx_worker *w, struct sbx_stats *st)
{
    if (st == NULL)
        return;
    memset(st, 0, sizeof(*st));
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    *st = w->stats;
    pthread_mutex_unlock(&w->lock);
}

int sbx_worker_pid(struct sbx_worker *w)
{
    if (w == NULL)
        return -1;
    pthread_mutex_lock(&w->lock);
    int pid = w->cur ? (int)w->cur->pid : -1;
    pthread_mutex_unlock(&w->lock);
    return pid;
}
