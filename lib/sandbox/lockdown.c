/*
 * The worker's lockdown (sbx_lockdown, steps listed in sandbox_int.h) and
 * its seccomp filter. Once it returns, the process can read and map the
 * descriptors it already has or receives on its socket, allocate memory,
 * answer on its socket and exit; it cannot open a file, make a socket, run a
 * program, write anywhere but its socket and stderr, or signal another
 * process. docs/internals/sandbox.md explains each allowed system call.
 */
#include "sandbox_int.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <seccomp.h>

#include "khx.h"

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Closes every descriptor above 2 that is not in keep[] (sorted). */
static int close_others(const int *keep, size_t nkeep, char *err, size_t errlen)
{
    unsigned from = 3;
    for (size_t i = 0; i <= nkeep; i++) {
        unsigned to = i < nkeep ? (unsigned)keep[i] : ~0u;
        if (i < nkeep && keep[i] < 3)
            continue;
        if (to > from && close_range(from, to - 1, 0) != 0) {
            khx_errf(err, errlen, "cannot close inherited descriptors: %s", strerror(errno));
            return KH_EIO;
        }
        if (i < nkeep && (unsigned)keep[i] + 1 > from)
            from = (unsigned)keep[i] + 1;
    }
    return KH_OK;
}

static int drop_to(uid_t uid, gid_t gid, const char *user, char *err, size_t errlen)
{
    if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) {
        khx_errf(err, errlen, "cannot drop to user %s: %s", user, strerror(errno));
        return KH_EIO;
    }
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0 || ru != uid || eu != uid ||
        su != uid || rg != gid || eg != gid || sg != gid || setuid(0) == 0) {
        khx_errf(err, errlen, "dropping to user %s did not take", user);
        return KH_EIO;
    }
    return KH_OK;
}

static int set_limit(int resource, rlim_t v, const char *what, char *err, size_t errlen)
{
    struct rlimit rl = {v, v};
    if (setrlimit(resource, &rl) != 0) {
        khx_errf(err, errlen, "cannot set %s: %s", what, strerror(errno));
        return KH_EIO;
    }
    return KH_OK;
}

/* One argument check; for SCMP_CMP_MASKED_EQ `a` is the mask and `b` the
 * value. (libseccomp's SCMP_An macros leave a field to the compiler, which
 * clang warns about.) */
static struct scmp_arg_cmp cmp(unsigned arg, enum scmp_compare op, scmp_datum_t a, scmp_datum_t b)
{
    struct scmp_arg_cmp c = {arg, op, a, b};
    return c;
}

/* Adds one rule; a system call this architecture does not have is skipped
 * (the filter then kills on it anyway). */
static int allow(scmp_filter_ctx ctx, const char *name, unsigned n, const struct scmp_arg_cmp *c)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return 0;
    return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, n, c);
}

static int install_filter(int sock, char *err, size_t errlen)
{
    int r = KH_EIO, rc = 0;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (ctx == NULL) {
        khx_errf(err, errlen, "cannot create the seccomp filter");
        return KH_ENOMEM;
    }
    /* Calls without argument checks: reading descriptors the worker holds,
     * memory management, threads waiting on each other, time, and leaving.
     * sysinfo is there because glibc's qsort sizes its buffer by the
     * physical memory (sysconf(_SC_PHYS_PAGES)); it only reveals counters.
     * sched_getaffinity (the process's own CPU mask) is how glibc and the
     * sanitizers' runtime count CPUs, which they do lazily, and the
     * sanitizers' runtime sets and clears a thread's alternate signal stack
     * (sigaltstack) as threads come and go: under load the sanitizer build's
     * worker was killed for each of them in the middle of scans. Both
     * concern only the calling process. */
    static const char *const plain[] = {
        "read",           "pread64",
        "lseek",          "fstat",
        "close",          "futex",
        "sched_yield",    "clock_gettime",
        "clock_getres",   "gettimeofday",
        "getpid",         "gettid",
        "getrandom",      "brk",
        "munmap",         "madvise",
        "mremap",         "rt_sigreturn",
        "rt_sigprocmask", "restart_syscall",
        "sysinfo",        "sched_getaffinity",
        "sigaltstack",    "exit",
        "exit_group",
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(plain) && rc == 0; i++)
        rc = allow(ctx, plain[i], 0, NULL);
    /* The socket is the only descriptor messages go through; stderr is the
     * only one written. */
    struct scmp_arg_cmp on_sock = cmp(0, SCMP_CMP_EQ, (scmp_datum_t)sock, 0);
    struct scmp_arg_cmp on_stderr = cmp(0, SCMP_CMP_EQ, 2, 0);
    if (rc == 0)
        rc = allow(ctx, "recvmsg", 1, &on_sock);
    if (rc == 0)
        rc = allow(ctx, "sendmsg", 1, &on_sock);
    if (rc == 0)
        rc = allow(ctx, "write", 1, &on_stderr);
    /* Mappings are private (a shared writable mapping of a received
     * descriptor would write the file) and never executable. */
    struct scmp_arg_cmp map[2] = {cmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0),
                                  cmp(3, SCMP_CMP_MASKED_EQ, MAP_SHARED, 0)};
    if (rc == 0)
        rc = allow(ctx, "mmap", 2, map);
    if (rc == 0)
        rc = allow(ctx, "mprotect", 1, &map[0]);
    /* The engine's lease on its database (lib/engine/lease.c) is released
     * from a signal handler when another process opens the file to write. */
    struct scmp_arg_cmp unlease[2] = {cmp(1, SCMP_CMP_EQ, F_SETLEASE, 0),
                                      cmp(2, SCMP_CMP_EQ, F_UNLCK, 0)};
    if (rc == 0)
        rc = allow(ctx, "fcntl", 2, unlease);
    /* libyara brackets each scan with handlers for SIGBUS and SIGSEGV (its
     * YR_TRYCATCH), installed and restored with sigaction; no other signal's
     * disposition may change. */
    struct scmp_arg_cmp sigbus = cmp(0, SCMP_CMP_EQ, SIGBUS, 0);
    struct scmp_arg_cmp sigsegv = cmp(0, SCMP_CMP_EQ, SIGSEGV, 0);
    if (rc == 0)
        rc = allow(ctx, "rt_sigaction", 1, &sigbus);
    if (rc == 0)
        rc = allow(ctx, "rt_sigaction", 1, &sigsegv);
    /* abort() signals its own process, and only that. */
    struct scmp_arg_cmp self = cmp(0, SCMP_CMP_EQ, (scmp_datum_t)getpid(), 0);
    if (rc == 0)
        rc = allow(ctx, "tgkill", 1, &self);
    if (rc != 0) {
        khx_errf(err, errlen, "cannot build the seccomp filter: %s", strerror(-rc));
        goto out;
    }
    /* A call made through another architecture's entry point (int 0x80 on
     * x86-64) would dodge the rules above; it is killed too. Threads that
     * already exist get the filter as well. */
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) != 0 ||
        (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) != 0) {
        khx_errf(err, errlen, "cannot configure the seccomp filter: %s", strerror(-rc));
        goto out;
    }
    if ((rc = seccomp_load(ctx)) != 0) {
        khx_errf(err, errlen, "cannot install the seccomp filter: %s",
                 strerror(rc < 0 ? -rc : EINVAL));
        goto out;
    }
    r = KH_OK;
out:
    seccomp_release(ctx);
    return r;
}

int sbx_lockdown(const struct sbx_lockdown *ld, char *err, size_t errlen)
{
    int r = KH_EIO;
    const char *user = ld->user ? ld->user : "nobody";
    int keep[64];
    size_t nkeep = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    int root = geteuid() == 0;

    /* 1. The password database is a file: read it while files can still be opened. */
    if (root) {
        struct passwd pw, *found = NULL;
        char buf[4096];
        int e = getpwnam_r(user, &pw, buf, sizeof(buf), &found);
        if (found == NULL) {
            khx_errf(err, errlen, "unknown user '%s'%s%s", user, e ? ": " : "",
                     e ? strerror(e) : "");
            return KH_ENOTFOUND;
        }
        if (pw.pw_uid == 0 || pw.pw_gid == 0) {
            khx_errf(err, errlen, "user '%s' is root: refusing to run the worker as root", user);
            return KH_EINVAL;
        }
        uid = pw.pw_uid;
        gid = pw.pw_gid;
    }

    /* 2. Only what the worker was given on purpose stays open. */
    if (ld->nkeep + 1 > KHX_ARRAY_LEN(keep)) {
        khx_errf(err, errlen, "too many descriptors to keep");
        return KH_ELIMIT;
    }
    keep[nkeep++] = ld->sock;
    for (size_t i = 0; i < ld->nkeep; i++)
        keep[nkeep++] = ld->keep[i];
    qsort(keep, nkeep, sizeof(keep[0]), cmp_int);
    if ((r = close_others(keep, nkeep, err, errlen)) != 0)
        return r;

    /* 3. */
    if (root && (r = drop_to(uid, gid, user, err, errlen)) != 0)
        return r;

    /* 4. No set-uid program or file capability can give privileges back. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        khx_errf(err, errlen, "cannot set no_new_privs: %s", strerror(errno));
        return KH_EIO;
    }

    /* 5. No file can grow (a write past the limit fails with EFBIG rather
     * than killing us with SIGXFSZ, so a stderr redirected to a file only
     * loses the message), few descriptors, no core dump of hostile data. */
    signal(SIGXFSZ, SIG_IGN);
    if ((r = set_limit(RLIMIT_FSIZE, 0, "RLIMIT_FSIZE", err, errlen)) != 0 ||
        (r = set_limit(RLIMIT_NOFILE, ld->nofile, "RLIMIT_NOFILE", err, errlen)) != 0 ||
        (r = set_limit(RLIMIT_CORE, 0, "RLIMIT_CORE", err, errlen)) != 0)
        return r;

    /* 6. */
    if (!ld->no_seccomp && (r = install_filter(ld->sock, err, errlen)) != 0)
        return r;
    return KH_OK;
}
