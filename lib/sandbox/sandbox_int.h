/*
 * Private interface of the sandbox module, shared by the agent's side
 * (sandbox.c), the worker (worker.c) and the unit test: the worker's
 * command line, and the lockdown the worker applies to itself.
 */
#ifndef KHIEN_SANDBOX_INT_H
#define KHIEN_SANDBOX_INT_H

#include <stddef.h>

#include "sandbox.h"

/* Worker threads: sbx_opts.threads = 0 means the CPU count up to
 * SBX_AUTO_THREADS; an explicit count may go up to SBX_MAX_THREADS. */
#define SBX_AUTO_THREADS 8
#define SBX_MAX_THREADS  32

/* The worker's command line after its first two words:
 *   <socket fd> <kdb path> <threads> [key=value ...]
 * with keys user, seccomp (0/1), allmatch, archives, maxfilesize, maxscansize,
 * maxrecursion, maxfiles, maxratio, scantime. */
#define SBX_ARGV_MAX 20

struct sbx_worker_args {
    int sock;
    const char *kdb_path; /* points into argv */
    unsigned threads;
    const char *user; /* points into argv, or the default */
    int no_seccomp;
    struct kh_scan_opts scan;
};

/* Builds the worker's argv (NULL-terminated) for exe/fd/threads and the
 * options in o. The strings live in storage[0..storage_len). Returns the
 * argument count, or KH_ELIMIT when something does not fit. */
int sbx_args_build(const struct sbx_opts *o, const char *exe, int fd, unsigned threads, char **argv,
                   size_t argv_max, char *storage, size_t storage_len);

/* Parses what sbx_args_build made. Unknown keys and malformed numbers are
 * errors (KH_EINVAL, err says which). */
int sbx_args_parse(int argc, char **argv, struct sbx_worker_args *out, char *err, size_t errlen);

/* The lockdown a worker applies once its database is loaded, in order:
 *   1. resolve `user` while the password database can still be read;
 *   2. close every descriptor except stdio, `sock` and keep[];
 *   3. when running as root: drop supplementary groups, then to the user's
 *      gid and uid (real, effective and saved), and check that root cannot
 *      be regained;
 *   4. PR_SET_NO_NEW_PRIVS;
 *   5. RLIMIT_FSIZE 0, RLIMIT_NOFILE `nofile`, RLIMIT_CORE 0;
 *   6. the seccomp filter (unless no_seccomp), synchronised to every thread
 *      of the process.
 * On failure the process is left part-way: the caller reports err and exits. */
struct sbx_lockdown {
    int sock;        /* the one descriptor recvmsg and sendmsg may use */
    const int *keep; /* further descriptors to leave open (the engine's), or NULL */
    size_t nkeep;
    const char *user; /* NULL = "nobody" */
    unsigned nofile;
    int no_seccomp;
};

int sbx_lockdown(const struct sbx_lockdown *ld, char *err, size_t errlen);

#endif
