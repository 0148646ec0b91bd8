/*
 * The sandboxed scan worker: the process the agent execs with SBX_WORKER_ARG.
 * It opens the database, prepares one scanner per thread and everything a
 * scan may need later (OpenSSL's digests, the character set converters that
 * archive readers use), then locks itself down (sbx_lockdown) and serves:
 * each thread receives a request with a file descriptor, scans the file and
 * sends the result back, until the agent closes the socket.
 *
 * Nothing here trusts the bytes of the files it scans; that is the point of
 * running it here. A file truncated while it is mapped would raise SIGBUS;
 * the handler maps zero pages over the vanished part so the scan finishes
 * (and reports KH_EIO) instead of taking the worker and every other request
 * down with it.
 */
#include "proto.h"
#include "sandbox_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <langinfo.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "khx.h"

/* Files up to this size are read into a per-thread buffer; larger ones are
 * mapped. For small files one pread costs less than mmap, the page faults
 * and munmap. */
#define SMALL_FILE (64u * 1024u)
/* A pipe's contents are read into memory up to the file size limit, or this
 * when there is none. */
#define STREAM_MAX (100ull << 20)
/* A stream buffer above this size is freed after its request. */
#define STREAM_KEEP (1u << 20)

struct worker;

struct wthread {
    struct worker *wk;
    pthread_t tid;
    kh_scanner *scanner;
    uint8_t small[SMALL_FILE];
    uint8_t *stream;
    size_t stream_cap;
    struct sbx_request rq;
    struct sbx_answer ans;
    uint8_t tx[SBX_MSG_MAX];
};

struct worker {
    int sock;
    struct sbx_worker_args args;
    kh_engine *engine;
    struct wthread *th;
    pthread_mutex_t gate_lock;
    pthread_cond_t gate_cond;
    int gate; /* 0 closed, 1 open, -1 abandon */
};

/* Ends the process at once with exit_group(2): no atexit handler, stdio
 * flush or sanitizer hook runs, since they may make calls the filter
 * forbids. Async-signal-safe. Deliberately not declared noreturn:
 * AddressSanitizer instruments calls to noreturn functions with a hook that
 * calls sigaltstack. */
static void leave(int code)
{
    for (;;)
        syscall(SYS_exit_group, code);
}

/* Writes one line to stderr with a single write(2): stdio is avoided
 * because after lockdown only write on descriptor 2 is allowed. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "khien-sandbox[%d]: ", (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : KHX_MIN((size_t)m, sizeof(line) - (size_t)n - 2));
    line[len++] = '\n';
    ssize_t w = write(2, line, len);
    (void)w;
}

/* sendmsg rather than send: send is sendto, which the filter does not allow. */
static int send_record(int sock, const uint8_t *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    for (;;) {
        ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n >= 0)
            return KH_OK;
        if (errno != EINTR)
            return KH_EIO;
    }
}

/* Tells the agent why the worker could not start. */
static void send_error(int sock, int code, const char *msg)
{
    struct sbx_answer *a = calloc(1, sizeof(*a));
    uint8_t buf[SBX_HDR_LEN + 8 + SBX_ERRMSG_MAX];
    if (a == NULL)
        return;
    a->type = SBX_MSG_ERROR;
    a->code = code < 0 && code >= KH_EABORTED ? code : KH_EIO;
    /* Copied as printable ASCII: the text may quote a path, and the agent
     * accepts no NUL and nothing longer than the field. */
    khx_printable(a->msg, sizeof(a->msg), msg, strlen(msg));
    size_t n = sbx_proto_encode_answer(a, buf, sizeof(buf));
    if (n > 0)
        (void)send_record(sock, buf, n);
    free(a);
}

/* ------------------------------------------------------------------------ */
/* SIGBUS on a file that shrank under its mapping                            */
/* ------------------------------------------------------------------------ */

static __thread const uint8_t *volatile bus_base;
static __thread volatile size_t bus_len;
static __thread volatile sig_atomic_t bus_hit;
static uintptr_t page_size; /* read once: sysconf is not on the async-signal-safe list */

static void on_sigbus(int sig, siginfo_t *si, void *uctx)
{
    (void)sig;
    (void)uctx;
    const uint8_t *a = si->si_addr;
    const uint8_t *base = bus_base;
    size_t len = bus_len;
    if (base != NULL && a >= base && a < base + len) {
        /* The file's tail is gone: read zeros from here to the end of the
         * mapping. The faulting access is retried on return. */
        uint8_t *from = (uint8_t *)((uintptr_t)a & ~(page_size - 1));
        if (mmap(from, (size_t)(base + len - from), PROT_READ,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
            bus_hit = 1;
            return;
        }
    }
    /* Not ours (the database itself?): nothing can be repaired. The signal
     * disposition cannot be reset under the filter, so exit with the code a
     * shell would show for SIGBUS. */
    leave(128 + SIGBUS);
}

/* ------------------------------------------------------------------------ */
/* Scanning one descriptor                                                   */
/* ------------------------------------------------------------------------ */

/* Copies a string into a fixed field, cutting at a UTF-8 character boundary. */
static void copy_field(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size);
    if (n >= size) {
        n = size - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int on_detection(void *ud, const struct kh_detection *d)
{
    struct sbx_result *res = ud;
    if (res->ndetections < SBX_MAX_DETECTIONS) {
        struct sbx_detection *o = &res->det[res->ndetections++];
        copy_field(o->name, sizeof(o->name), d->name ? d->name : "");
        copy_field(o->inner_path, sizeof(o->inner_path), d->inner_path ? d->inner_path : "");
        o->severity = d->severity;
        o->kind = d->kind;
    }
    return 0;
}

/* Reads a non-regular descriptor (a pipe, a character device) to its end
 * or to the limit. Returns the byte count, or -1. *over is set when the
 * limit cut the stream short. */
static ssize_t read_stream(struct wthread *t, int fd, uint64_t limit, int *over)
{
    size_t len = 0;
    *over = 0;
    for (;;) {
        if (len == t->stream_cap) {
            if (len > limit) {
                *over = 1;
                return (ssize_t)len;
            }
            size_t cap = t->stream_cap ? t->stream_cap * 2 : 65536;
            if (cap > limit + 1)
                cap = (size_t)limit + 1;
            uint8_t *p = realloc(t->stream, cap);
            if (p == NULL)
                return -1;
            t->stream = p;
            t->stream_cap = cap;
        }
        ssize_t n = read(fd, t->stream + len, t->stream_cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return (ssize_t)len;
        len += (size_t)n;
    }
}

static int read_small(int fd, uint8_t *buf, size_t size, size_t *got)
{
    size_t len = 0;
    while (len < size) {
        ssize_t n = pread(fd, buf + len, size - len, (off_t)len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return KH_EIO;
        if (n == 0)
            break; /* it shrank since fstat: scan what is there */
        len += (size_t)n;
    }
    *got = len;
    return KH_OK;
}

static void scan_fd(struct wthread *t, int fd, struct sbx_result *res)
{
    struct kh_scan_result kr;
    struct stat st;
    const uint8_t *data = NULL;
    size_t len = 0;
    void *map = NULL;
    int partial = 0, r;

    memset(res, 0, offsetof(struct sbx_result, det));
    /* fstat rather than glibc's fstat(), which is newfstatat with a path
     * and is not in the filter. */
    if (syscall(SYS_fstat, fd, &st) != 0) {
        res->status = KH_EIO;
        return;
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size <= SMALL_FILE) {
        if ((r = read_small(fd, t->small, (size_t)st.st_size, &len)) != 0) {
            res->status = r;
            return;
        }
        data = t->small;
    } else if (S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > SIZE_MAX) {
            res->status = KH_ELIMIT;
            return;
        }
        len = (size_t)st.st_size;
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            res->status = errno == ENOMEM ? KH_ENOMEM : KH_EIO;
            return;
        }
        data = map;
        bus_hit = 0;
        bus_len = len;
        bus_base = data;
    } else {
        /* Bounded so that limit + 1 cannot wrap; an admin's limit above
         * that is no limit in practice. */
        uint64_t limit = t->wk->args.scan.limits.max_filesize;
        if (limit == 0)
            limit = STREAM_MAX;
        if (limit > SIZE_MAX / 4)
            limit = SIZE_MAX / 4;
        ssize_t n = read_stream(t, fd, limit, &partial);
        if (n < 0) {
            res->status = KH_EIO;
            return;
        }
        data = t->stream;
        len = (size_t)n;
    }

    r = kh_scan_mem(t->scanner, data, len, t->rq.name, on_detection, res, &kr);
    res->status = r;
    res->size = kr.size;
    res->detections = kr.detections;
    res->notices = kr.notices;
    /* Digests describe the whole file or nothing. */
    if (!partial) {
        const uint8_t *p = data ? data : (const uint8_t *)"";
        if (!kr.sha256_valid && khx_sha256(p, len, kr.sha256) == 0)
            kr.sha256_valid = 1;
        if (kr.sha256_valid && khx_md5(p, len, res->md5) == 0) {
            memcpy(res->sha256, kr.sha256, 32);
            res->sha256_valid = 1;
        }
    }
    if (map != NULL && bus_hit) {
        /* The file shrank while it was scanned or hashed: zeros stood in for
         * its lost tail, so neither the verdict nor the digests are the
         * file's. */
        res->sha256_valid = 0;
        memset(res->sha256, 0, sizeof(res->sha256));
        memset(res->md5, 0, sizeof(res->md5));
        if (res->status == KH_OK)
            res->status = KH_EIO;
    }
    if (map != NULL) {
        bus_base = NULL;
        bus_len = 0;
        munmap(map, len);
    }
    if (t->stream_cap > STREAM_KEEP) {
        free(t->stream);
        t->stream = NULL;
        t->stream_cap = 0;
    }
    if (res->status > 0 || res->status < KH_EABORTED)
        res->status = KH_EIO;
}

/* ------------------------------------------------------------------------ */
/* Serving                                                                   */
/* ------------------------------------------------------------------------ */

/* Receives one request. Returns 1 with *fd set (-1 when no descriptor came),
 * 0 when the agent closed the socket, -1 on a malformed request (already
 * answered when its id could be read). */
static int receive(struct wthread *t, int *fd)
{
    uint8_t buf[SBX_HDR_LEN + 2 + SBX_NAME_MAX + 16];
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr msg = {0};
    char err[160];
    ssize_t n;

    *fd = -1;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.space;
    msg.msg_controllen = sizeof(ctl.space);
    do
        n = recvmsg(t->wk->sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*fd < 0)
                *fd = got;
            else
                close(got);
        }
    }
    if ((msg.msg_flags & MSG_TRUNC) ||
        sbx_proto_decode_request(buf, (size_t)n, &t->rq, err, sizeof(err)) != 0) {
        say("refusing a malformed request: %s", msg.msg_flags & MSG_TRUNC ? "too long" : err);
        if (*fd >= 0)
            close(*fd);
        return -1;
    }
    return 1;
}

static void answer(struct wthread *t)
{
    size_t n = sbx_proto_encode_answer(&t->ans, t->tx, sizeof(t->tx));
    if (n == 0) {
        /* Cannot happen with results built by scan_fd; answer anyway so the
         * caller is not left waiting. */
        memset(&t->ans.result, 0, offsetof(struct sbx_result, det));
        t->ans.result.status = KH_EIO;
        n = sbx_proto_encode_answer(&t->ans, t->tx, sizeof(t->tx));
    }
    if (send_record(t->wk->sock, t->tx, n) != 0)
        leave(0); /* the agent is gone */
}

static void serve(struct wthread *t)
{
    for (;;) {
        int fd = -1;
        int r = receive(t, &fd);
        if (r == 0)
            leave(0);
        if (r < 0)
            continue;
        t->ans.type = SBX_MSG_RESULT;
        t->ans.id = t->rq.id;
        if (fd < 0) {
            /* The descriptor did not arrive (RLIMIT_NOFILE reached). */
            memset(&t->ans.result, 0, offsetof(struct sbx_result, det));
            t->ans.result.status = KH_EIO;
        } else {
            scan_fd(t, fd, &t->ans.result);
            close(fd);
        }
        answer(t);
    }
}

/* A zip holding one file "a" that says "a". Scanning it before lockdown runs
 * the container walker's one-time set-up (lib/engine/container.c opens the
 * C.UTF-8 locale, which reads locale files) while files can still be read. */
static const uint8_t warm_zip[] = {
    0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x81, 0x82, 0x75, 0x5d, 0x43,
    0xbe, 0xb7, 0xe8, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x61, 0x61, 0x50, 0x4b, 0x01, 0x02, 0x14, 0x03, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x81,
    0x82, 0x75, 0x5d, 0x43, 0xbe, 0xb7, 0xe8, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x61, 0x50, 0x4b, 0x05, 0x06, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
    0x00, 0x2f, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static void warm_up(kh_scanner *s)
{
    uint8_t d[16];
    (void)kh_scan_mem(s, warm_zip, sizeof(warm_zip), "warm-up.zip", NULL, NULL, NULL);
    (void)khx_md5("", 0, d);
}

static void *thread_main(void *arg)
{
    struct wthread *t = arg;
    struct worker *wk = t->wk;
    /* One scan before lockdown, so that whatever a scanner or this thread's
     * malloc arena sets up lazily is done while it still may be. */
    warm_up(t->scanner);
    pthread_mutex_lock(&wk->gate_lock);
    while (wk->gate == 0)
        pthread_cond_wait(&wk->gate_cond, &wk->gate_lock);
    int go = wk->gate > 0;
    pthread_mutex_unlock(&wk->gate_lock);
    if (go)
        serve(t);
    return NULL;
}

static void open_gate(struct worker *wk, int v)
{
    pthread_mutex_lock(&wk->gate_lock);
    wk->gate = v;
    pthread_cond_broadcast(&wk->gate_cond);
    pthread_mutex_unlock(&wk->gate_lock);
}

/* ------------------------------------------------------------------------ */
/* Start-up                                                                  */
/* ------------------------------------------------------------------------ */

/* The descriptors the engine opened for itself (its lease on the database,
 * lib/engine/lease.c); the lockdown keeps them. Everything else above 2
 * except the socket was closed before the engine was opened. */
static size_t engine_fds(int sock, int *out, size_t max)
{
    size_t n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        uint64_t v;
        if (khx_parse_u64(e->d_name, strlen(e->d_name), &v) != 0 || v > 65535)
            continue;
        int fd = (int)v;
        if (fd > 2 && fd != sock && fd != dirfd(d))
            out[n++] = fd;
    }
    closedir(d);
    return n;
}

/* The engine's lease on its database (lib/engine/lease.c) lets a writer of
 * the file proceed once the engine has copied its image: its signal handler
 * releases the lease with F_SETLEASE/F_UNLCK. The kernel allows that only to
 * the file's owner, which the worker no longer is once it has dropped from
 * root to nobody, and the writer would then wait out the lease break time
 * (45 s by default). Closing the descriptor also ends the lease, with no
 * permission check, so the worker wraps the engine's handler and closes the
 * lease descriptor after it. The engine's slot keeps the old number, which
 * only khx_lease_release would use, when the engine is freed; the worker
 * never frees it (it leaves with exit_group). */
static int lease_fds[16];
static size_t nlease;
static struct sigaction engine_lease;

static void on_lease_break(int sig, siginfo_t *si, void *uctx)
{
    engine_lease.sa_sigaction(sig, si, uctx);
    for (size_t i = 0; i < nlease; i++)
        if (lease_fds[i] >= 0 && lease_fds[i] == si->si_fd) {
            close(lease_fds[i]);
            lease_fds[i] = -1;
        }
}

static void wrap_lease_handler(const int *fds, size_t n)
{
    int sig = 0;
    for (size_t i = 0; i < n && nlease < KHX_ARRAY_LEN(lease_fds); i++) {
        int s = fcntl(fds[i], F_GETSIG);
        if (s > 0 && fcntl(fds[i], F_GETLEASE) == F_RDLCK && (sig == 0 || s == sig)) {
            sig = s;
            lease_fds[nlease++] = fds[i];
        }
    }
    if (sig == 0 || sigaction(sig, NULL, &engine_lease) != 0 ||
        !(engine_lease.sa_flags & SA_SIGINFO) || engine_lease.sa_sigaction == NULL) {
        nlease = 0;
        return;
    }
    struct sigaction sa = engine_lease;
    sa.sa_sigaction = on_lease_break;
    sigaction(sig, &sa, NULL);
}

/* Loads what scanning might otherwise load on first use, when opening files
 * is no longer allowed: OpenSSL's configuration and digest implementations,
 * the time zone (libarchive converts DOS times with mktime), and glibc's
 * character set converters for the charsets libarchive converts member names
 * from (lib/engine/container.c asks for CP932 on LHA). The converters stay
 * open so that their modules stay loaded. */
static void preload(void)
{
    static const char *const from[] = {"CP932", "UTF-8", "UTF-16BE", "UTF-16LE", "CP437"};
    static iconv_t kept[2 * KHX_ARRAY_LEN(from)];
    const char *here = nl_langinfo(CODESET);
    uint8_t d[32];
    size_t k = 0;
    /* With TZ unset glibc checks /etc/localtime (a stat) on every
     * localtime/mktime; with TZ naming it, only the first call reads it. */
    if (getenv("TZ") == NULL)
        setenv("TZ", ":/etc/localtime", 1);
    tzset();
    (void)khx_md5("", 0, d);
    (void)khx_sha256("", 0, d);
    (void)khx_sha1("", 0, d);
    for (size_t i = 0; i < KHX_ARRAY_LEN(from); i++) {
        kept[k] = iconv_open(here, from[i]);
        if (kept[k] != (iconv_t)-1)
            k++;
        kept[k] = iconv_open("UTF-8", from[i]);
        if (kept[k] != (iconv_t)-1)
            k++;
    }
}

static int count_signatures(kh_engine *e, int64_t *created, uint64_t *sigs)
{
    struct kh_db_info info;
    int r = kh_engine_info(e, &info);
    if (r != 0)
        return r;
    *created = info.created;
    *sigs = 0;
    for (int k = 0; k < KH_SIG_KIND_COUNT; k++)
        *sigs += info.counts[k];
    return KH_OK;
}

int sbx_worker_main(int argc, char **argv)
{
    static struct worker wk;
    char err[512];
    int keep[16];
    int r;

    signal(SIGPIPE, SIG_IGN);
    /* glibc's malloc reads /proc/sys/vm/overcommit_memory the first time the
     * heap of a thread's own arena shrinks, which can happen at any time
     * after lockdown; with the one main arena (grown and trimmed with brk)
     * it never does. Small blocks still come from per-thread caches. */
    mallopt(M_ARENA_MAX, 1);
    if ((r = sbx_args_parse(argc, argv, &wk.args, err, sizeof(err))) != 0) {
        say("%s", err);
        /* Tell the agent if the socket number at least made sense. */
        if (argc > 2 && atoi(argv[2]) > 2)
            send_error(atoi(argv[2]), r, err);
        return 2;
    }
    wk.sock = wk.args.sock;
    /* Descriptors the agent leaked without FD_CLOEXEC are closed before the
     * database is opened, so what is open afterwards is the engine's. */
    if (wk.sock > 3)
        close_range(3, (unsigned)wk.sock - 1, 0);
    close_range((unsigned)wk.sock + 1, ~0u, 0);

    page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);

    err[0] = '\0';
    r = kh_engine_open(wk.args.kdb_path, &wk.engine, err, sizeof(err));
    if (r != 0) {
        char msg[600];
        snprintf(msg, sizeof(msg), "cannot open %s: %s", wk.args.kdb_path,
                 err[0] ? err : kh_strerror(r));
        send_error(wk.sock, r, msg);
        return 1;
    }
    size_t nkeep = engine_fds(wk.sock, keep, KHX_ARRAY_LEN(keep));
    wrap_lease_handler(keep, nkeep);
    preload();

    unsigned n = wk.args.threads;
    wk.th = calloc(n, sizeof(*wk.th));
    if (wk.th == NULL) {
        send_error(wk.sock, KH_ENOMEM, "out of memory");
        return 1;
    }
    pthread_mutex_init(&wk.gate_lock, NULL);
    pthread_cond_init(&wk.gate_cond, NULL);
    for (unsigned i = 0; i < n; i++) {
        wk.th[i].wk = &wk;
        if ((r = kh_scanner_new(wk.engine, &wk.args.scan, &wk.th[i].scanner)) != 0) {
            send_error(wk.sock, r, "cannot create a scanner");
            return 1;
        }
    }
    /* Thread 0 is this one; the others are created now, before the filter
     * (which TSYNC applies to them too), and wait at the gate. */
    for (unsigned i = 1; i < n; i++) {
        if (pthread_create(&wk.th[i].tid, NULL, thread_main, &wk.th[i]) != 0) {
            send_error(wk.sock, KH_ENOMEM, "cannot create a worker thread");
            leave(1);
        }
    }
    warm_up(wk.th[0].scanner);

    struct sbx_lockdown ld = {
        .sock = wk.sock,
        .keep = keep,
        .nkeep = nkeep,
        .user = wk.args.user,
        .nofile = 64 + n,
        .no_seccomp = wk.args.no_seccomp,
    };
    if ((r = sbx_lockdown(&ld, err, sizeof(err))) != 0) {
        send_error(wk.sock, r, err);
        leave(1);
    }

    struct sbx_answer *ready = &wk.th[0].ans;
    memset(ready, 0, sizeof(*ready));
    ready->type = SBX_MSG_READY;
    ready->threads = n;
    if (count_signatures(wk.engine, &ready->db_created, &ready->db_signatures) != 0)
        leave(1);
    size_t len = sbx_proto_encode_answer(ready, wk.th[0].tx, sizeof(wk.th[0].tx));
    if (len == 0 || send_record(wk.sock, wk.th[0].tx, len) != 0)
        leave(1);
    open_gate(&wk, 1);
    serve(&wk.th[0]);
    return 0; /* not reached: serve() exits the process */
}
