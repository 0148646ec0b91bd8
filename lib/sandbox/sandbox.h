/*
 * The sandboxed scan worker (sbx_): the only process that parses untrusted
 * file contents for the agent. The root daemon never reads a file's bytes
 * through the engine itself; it opens the file, passes the descriptor to the
 * worker over a socketpair (SCM_RIGHTS) and gets back a small fixed-size
 * verdict. The worker is a separate process started with exec (not a bare
 * fork of the multi-threaded daemon), opens the .kdb before it locks itself
 * down, then drops to an unprivileged user when started as root, sets
 * no_new_privs, closes every other descriptor, limits file size to 0 and
 * installs a seccomp filter that allows only what scanning a received
 * descriptor needs (no open, no socket, no exec, no write other than to its
 * socket and stderr). A parser bug can therefore crash the worker or make it
 * lie about one file, but not take over the machine (OpenSSH's privilege
 * separation). The agent checks every answer, and kills and replaces a
 * worker whose answer is malformed or answers a request it was not given.
 * docs/internals/sandbox.md describes the design.
 *
 * One worker serves any number of concurrent callers: each request carries
 * an id, the worker answers from its own thread pool, and a caller waits for
 * its answer at most `timeout_ms`. A worker that dies is restarted on the
 * next request; requests in flight then fail with KH_EIO. A new database is
 * installed by starting a new worker and stopping the old one once its
 * requests are answered, so there is never a moment without a worker.
 */
#ifndef KHIEN_SANDBOX_H
#define KHIEN_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include <khien/khien.h>

#define SBX_MAX_DETECTIONS 8
#define SBX_NAME_MAX       256
#define SBX_INNER_MAX      512

struct sbx_opts {
    const char *kdb_path;     /* the database the worker opens before locking down */
    unsigned threads;         /* scanning threads in the worker; 0 = number of CPUs, at most 8;
                                 an explicit count is capped at 32 */
    const char *exe;          /* the program to exec; NULL = /proc/self/exe */
    const char *user;         /* user to drop to when root; NULL = "nobody" */
    int no_seccomp;           /* for debugging only: skip the filter (never in production) */
    struct kh_scan_opts scan; /* all zero = kh_scan_opts_default(); want_sha256 is always on */
    /* Where a worker that misbehaved, was killed or could not be restarted
     * is reported; NULL = stderr. Called with the sandbox's lock held: it
     * must not call sbx_ functions. */
    void (*log)(void *ud, const char *msg);
    void *log_ud;
};

/* Zeroes *o and fills in the engine's default scan options. */
void sbx_opts_default(struct sbx_opts *o);

struct sbx_detection {
    char name[SBX_NAME_MAX];
    int severity;                   /* enum kh_severity */
    int kind;                       /* enum kh_sigkind */
    char inner_path[SBX_INNER_MAX]; /* "" at top level */
};

struct sbx_result {
    int status; /* KH_OK, or the engine's error (KH_ETIMEOUT, KH_EFORMAT, ...) */
    uint64_t size;
    int sha256_valid;
    uint8_t sha256[32];
    uint8_t md5[16];      /* valid when sha256_valid */
    uint32_t ndetections; /* reported in detections[], at most SBX_MAX_DETECTIONS */
    uint32_t detections;  /* KH_SEV_MALWARE findings in total */
    uint32_t notices;
    struct sbx_detection det[SBX_MAX_DETECTIONS];
};

struct sbx_stats {
    uint64_t requests, timeouts; /* requests sent; callers that gave up waiting */
    uint64_t restarts;           /* workers started to replace one that died or lied */
    uint64_t generation;         /* the db's reload count (sbx_worker_reload) */
    int64_t db_created;
    uint64_t db_signatures;
    int last_wait_status; /* waitpid status of the last worker process that ended; -1 if none */
};

struct sbx_worker;

/* Starts a worker on opts->kdb_path and waits (up to 120 s) until it has
 * loaded the database and locked itself down, or failed to: the worker's
 * message is then copied into err. opts is copied; *out is freed by
 * sbx_worker_stop. */
int sbx_worker_start(const struct sbx_opts *opts, struct sbx_worker **out, char *err,
                     size_t errlen);

/* Answers pending requests with KH_EIO, stops the worker processes (socket
 * shut down, SIGTERM after 0.5 s, SIGKILL 2 s later) and frees. No call on w
 * may start once this has begun. NULL-safe. */
void sbx_worker_stop(struct sbx_worker *w);

/* Scans the open file `fd` (the caller keeps it; the worker gets a duplicate,
 * so open it read-only). Thread-safe; at most 256 requests are in flight and
 * further callers wait for a slot. Returns KH_OK with *res filled (res->status
 * may still say the engine could not scan the whole file; det[] entries past
 * ndetections are left as they were), KH_ETIMEOUT when no answer came in
 * timeout_ms (0 = wait forever; the clock starts once a worker is running, so
 * a restart's database load is not counted), or KH_EIO when the worker died
 * or misbehaved (the next call starts a new one). `name` is used only in
 * messages. Regular files are mapped; pipes and devices are read to their end
 * (up to the file size limit), so a pipe whose writer never closes holds one
 * worker thread until the worker is replaced. */
int sbx_scan_fd(struct sbx_worker *w, int fd, const char *name, unsigned timeout_ms,
                struct sbx_result *res);

/* Copies the counters; a NULL w gives zeros. */
void sbx_worker_stats(struct sbx_worker *w, struct sbx_stats *st);

/* The current worker process's pid, or -1 while there is none (it died and
 * the next sbx_scan_fd starts another). For monitoring and tests. */
int sbx_worker_pid(struct sbx_worker *w);

/* Installs a new database: starts a worker on kdb_path (NULL = the current
 * path, re-opened), and once it is ready sends new requests to it; the old
 * worker finishes the requests it holds and is then stopped. On failure the
 * current worker stays and err says why. Counts stats.generation. Thread-safe;
 * restarts after a crash use the new path. */
int sbx_worker_reload(struct sbx_worker *w, const char *kdb_path, char *err, size_t errlen);

/* The worker's side: the program named by opts.exe must call this when its
 * argv[1] is SBX_WORKER_ARG, and exit with what it returns. */
#define SBX_WORKER_ARG "__khien-sandbox-worker"
int sbx_worker_main(int argc, char **argv);

#endif
