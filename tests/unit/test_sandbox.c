/*
 * The sandboxed scan worker (lib/sandbox): verdicts and digests through the
 * worker, many callers at once, timeouts, a worker killed or lying, a bad
 * database, reload, the worker's privileges, and every ClamAV sample scanned
 * the same in the worker as in process. The lockdown's system-call filter on
 * its own is in test_sandbox_lockdown.c.
 *
 * This program is also the worker: started with SBX_WORKER_ARG it runs
 * sbx_worker_main, or, when KHIEN_TEST_ROGUE_WORKER is set, a fake worker
 * that breaks the protocol in the named way.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <khien/khien.h>

#include "khx.h"
#include "proto.h"
#include "sandbox.h"
#include "sandbox_int.h"
#include "walkutil.h"

static const char eicar[] = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
#define EICAR_MD5 "44d88612fea8a8f36de82e1278abb02f"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static char *make_db(const char *dir, const char *file, const char *ext, const char *sigs)
{
    kh_builder *b = NULL;
    char name[32];
    snprintf(name, sizeof(name), "t.%s", ext);
    assert_int_equal(kh_builder_new(NULL, &b), KH_OK);
    assert_int_equal(kh_builder_add_mem(b, name, sigs, strlen(sigs)), KH_OK);
    char *path = malloc(strlen(dir) + strlen(file) + 2);
    sprintf(path, "%s/%s", dir, file);
    assert_int_equal(kh_builder_write(b, path), KH_OK);
    kh_builder_free(b);
    return path;
}

/* The usual database: EICAR by body signature and by MD5. */
static char *eicar_db(const char *dir)
{
    kh_builder *b = NULL;
    static const char ndb[] = "Eicar.Body:0:*:5354414e444152442d414e544956495255532d54455354\n";
    static const char hdb[] = EICAR_MD5 ":68:Eicar-Test-Signature\n";
    assert_int_equal(kh_builder_new(NULL, &b), KH_OK);
    assert_int_equal(kh_builder_add_mem(b, "t.ndb", ndb, strlen(ndb)), KH_OK);
    assert_int_equal(kh_builder_add_mem(b, "t.hdb", hdb, strlen(hdb)), KH_OK);
    char *path = malloc(strlen(dir) + 16);
    sprintf(path, "%s/eicar.kdb", dir);
    assert_int_equal(kh_builder_write(b, path), KH_OK);
    kh_builder_free(b);
    return path;
}

static struct sbx_worker *start(const char *kdb, unsigned threads, int allmatch)
{
    struct sbx_opts o;
    struct sbx_worker *w = NULL;
    char err[512] = "";
    sbx_opts_default(&o);
    o.kdb_path = kdb;
    o.threads = threads;
    o.exe = "/proc/self/exe";
    o.scan.allmatch = allmatch;
    int r = sbx_worker_start(&o, &w, err, sizeof(err));
    if (r != KH_OK)
        fprintf(stderr, "sbx_worker_start: %s (%s)\n", kh_strerror(r), err);
    assert_int_equal(r, KH_OK);
    return w;
}

static int scan_path(struct sbx_worker *w, const char *path, unsigned timeout_ms,
                     struct sbx_result *res)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    int r = sbx_scan_fd(w, fd, khx_path_base(path), timeout_ms, res);
    close(fd);
    return r;
}

static void assert_digests(const struct sbx_result *res, const void *data, size_t len)
{
    uint8_t sha[32], md5[16];
    assert_int_equal(khx_sha256(data, len, sha), 0);
    assert_int_equal(khx_md5(data, len, md5), 0);
    assert_true(res->sha256_valid);
    assert_memory_equal(res->sha256, sha, 32);
    assert_memory_equal(res->md5, md5, 16);
    assert_int_equal(res->size, len);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Waits up to 10 s for cond(w) to hold. */
static int eventually(struct sbx_worker *w, int (*cond)(struct sbx_worker *, void *), void *arg)
{
    for (int i = 0; i < 1000; i++) {
        if (cond(w, arg))
            return 1;
        usleep(10000);
    }
    return 0;
}

static int requests_at_least(struct sbx_worker *w, void *arg)
{
    struct sbx_stats st;
    sbx_worker_stats(w, &st);
    return st.requests >= *(uint64_t *)arg;
}

static int worker_ended(struct sbx_worker *w, void *arg)
{
    (void)arg;
    struct sbx_stats st;
    sbx_worker_stats(w, &st);
    return st.last_wait_status != -1;
}

/* ------------------------------------------------------------------------ */
/* Verdicts                                                                  */
/* ------------------------------------------------------------------------ */

static void sandbox_detects_eicar_and_passes_clean_file(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    char *kdb = eicar_db(dir);
    struct sbx_worker *w = start(kdb, 2, 0);
    struct sbx_result res;

    char *bad = tu_write(dir, "eicar.com", eicar, 68);
    memset(&res, 0xa5, sizeof(res));
    assert_int_equal(scan_path(w, bad, 10000, &res), KH_OK);
    assert_int_equal(res.status, KH_OK);
    assert_int_equal(res.detections, 1);
    assert_int_equal(res.ndetections, 1);
    assert_true(strcmp(res.det[0].name, "Eicar.Body") == 0 ||
                strcmp(res.det[0].name, "Eicar-Test-Signature") == 0);
    assert_int_equal(res.det[0].severity, KH_SEV_MALWARE);
    assert_string_equal(res.det[0].inner_path, "");
    assert_digests(&res, eicar, 68);
    char md5[33];
    khx_hex_encode(res.md5, 16, md5);
    assert_string_equal(md5, EICAR_MD5);

    static const char clean_text[] = "nothing to see here\n";
    char *clean = tu_write(dir, "clean.txt", clean_text, strlen(clean_text));
    assert_int_equal(scan_path(w, clean, 10000, &res), KH_OK);
    assert_int_equal(res.status, KH_OK);
    assert_int_equal(res.detections, 0);
    assert_int_equal(res.ndetections, 0);
    assert_digests(&res, clean_text, strlen(clean_text));

    /* Empty files and files large enough to be mapped rather than read. */
    char *empty = tu_write(dir, "empty", "", 0);
    assert_int_equal(scan_path(w, empty, 10000, &res), KH_OK);
    assert_int_equal(res.status, KH_OK);
    assert_int_equal(res.detections, 0);
    assert_digests(&res, "", 0);

    size_t big_len = 3u << 20;
    uint8_t *big_data = calloc(1, big_len);
    memcpy(big_data + big_len - 100, eicar, 68);
    char *big = tu_write(dir, "big.bin", big_data, big_len);
    assert_int_equal(scan_path(w, big, 10000, &res), KH_OK);
    assert_int_equal(res.status, KH_OK);
    assert_int_equal(res.detections, 1);
    assert_string_equal(res.det[0].name, "Eicar.Body");
    assert_digests(&res, big_data, big_len);

    struct sbx_stats st;
    sbx_worker_stats(w, &st);
    assert_int_equal(st.requests, 4);
    assert_int_equal(st.restarts, 0);
    assert_int_equal(st.db_signatures, 2);
    assert_true(st.db_created > 0);

    sbx_worker_stop(w);
    free(big_data);
    free(big);
    free(empty);
    free(clean);
    free(bad);
    free(kdb);
    tu_rmtree(dir);
}

static void sandbox_allmatch_reports_every_signature(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    char *kdb = eicar_db(dir);
    struct sbx_worker *w = start(kdb, 1, 1);
    char *bad = tu_write(dir, "eicar.com", eicar, 68);
    struct sbx_result res;
    assert_int_equal(scan_path(w, bad, 10000, &res), KH_OK);
    assert_int_equal(res.detections, 2);
    assert_int_equal(res.ndetections, 2);
    int body = 0, md5 = 0;
    for (unsigned i = 0; i < res.ndetections; i++) {
        body += strcmp(res.det[i].name, "Eicar.Body") == 0;
        md5 += strcmp(res.det[i].name, "Eicar-Test-Signature") == 0;
    }
    assert_int_equal(body, 1);
    assert_int_equal(md5, 1);
    sbx_worker_stop(w);
    free(bad);
    free(kdb);
    tu_rmtree(dir);
}

static void sandbox_start_reports_bad_database(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    struct sbx_opts o;
    struct sbx_worker *w = NULL;
    char err[512] = "";
    sbx_opts_default(&o);
    o.exe = "/proc/self/exe";
    o.threads = 1;

    char missing[600];
    snprintf(missing, sizeof(missing), "%s/no-such.kdb", dir);
    o.kdb_path = missing;
    int r = sbx_worker_start(&o, &w, err, sizeof(err));
    printf("missing database: %s (%s)\n", kh_strerror(r), err);
    assert_true(r < 0);
    assert_null(w);
    assert_non_null(strstr(err, "no-such.kdb"));

    char *junk = tu_write(dir, "junk.kdb", "this is not a database at all, not even close", 46);
    o.kdb_path = junk;
    r = sbx_worker_start(&o, &w, err, sizeof(err));
    printf("junk database: %s (%s)\n", kh_strerror(r), err);
    assert_true(r < 0);
    assert_null(w);
    assert_non_null(strstr(err, "junk.kdb"));
    assert_non_null(strstr(err, "database"));

    /* A worker program that does not exist. */
    char *kdb = eicar_db(dir);
    o.kdb_path = kdb;
    o.exe = "/nonexistent/khien";
    r = sbx_worker_start(&o, &w, err, sizeof(err));
    printf("missing program: %s (%s)\n", kh_strerror(r), err);
    assert_true(r < 0);
    assert_non_null(strstr(err, "/nonexistent/khien"));

    /* A user to drop to that does not exist (only checked as root). */
    if (geteuid() == 0) {
        o.exe = "/proc/self/exe";
        o.user = "no-such-user-khien";
        r = sbx_worker_start(&o, &w, err, sizeof(err));
        printf("missing user: %s (%s)\n", kh_strerror(r), err);
        assert_true(r < 0);
        assert_non_null(strstr(err, "no-such-user-khien"));
    }
    free(kdb);
    free(junk);
    tu_rmtree(dir);
}

/* ------------------------------------------------------------------------ */
/* Concurrency and cost                                                      */
/* ------------------------------------------------------------------------ */

struct hammer {
    struct sbx_worker *w;
    const char *bad, *clean;
    unsigned rounds;
    unsigned wrong;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    struct sbx_result res;
    for (unsigned i = 0; i < h->rounds; i++) {
        int want = i % 3 == 0;
        int r = scan_path(h->w, want ? h->bad : h->clean, 20000, &res);
        if (r != KH_OK || res.status != KH_OK || res.detections != (unsigned)want ||
            !res.sha256_valid)
            h->wrong++;
    }
    return NULL;
}

static void sandbox_serves_many_threads_at_once(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    char *kdb = eicar_db(dir);
    struct sbx_worker *w = start(kdb, 4, 0);
    char *bad = tu_write(dir, "eicar.com", eicar, 68);
    uint8_t small[4096];
    for (size_t i = 0; i < sizeof(small); i++)
        small[i] = (uint8_t)("lorem ipsum dolor sit amet "[i % 27]);
    char *clean = tu_write(dir, "clean.txt", small, sizeof(small));

    enum { NT = 16, ROUNDS = 300 };
    pthread_t t[NT];
    struct hammer h[NT];
    double t0 = now_us();
    for (int i = 0; i < NT; i++) {
        h[i] = (struct hammer){w, bad, clean, ROUNDS, 0};
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &h[i]), 0);
    }
    unsigned wrong = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(t[i], NULL);
        wrong += h[i].wrong;
    }
    double t1 = now_us();
    assert_int_equal(wrong, 0);
    struct sbx_stats st;
    sbx_worker_stats(w, &st);
    assert_int_equal(st.requests, NT * ROUNDS);
    assert_int_equal(st.restarts, 0);
    printf("%d callers x %d files through 4 worker threads: %.0f files/s\n", NT, ROUNDS,
           NT * ROUNDS / ((t1 - t0) / 1e6));

    /* The cost of the sandbox for one small file: one caller, one file at a
     * time, against scanning and hashing the same bytes in this process. */
    enum { N = 2000 };
    static double through[N], local[N];
    struct sbx_result res;
    int fd = open(clean, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(sbx_scan_fd(w, fd, "clean.txt", 10000, &res), KH_OK);
    for (int i = 0; i < N; i++) {
        t0 = now_us();
        assert_int_equal(sbx_scan_fd(w, fd, "clean.txt", 10000, &res), KH_OK);
        through[i] = now_us() - t0;
    }
    close(fd);

    kh_engine *e = NULL;
    kh_scanner *s = NULL;
    struct kh_scan_opts so;
    kh_scan_opts_default(&so);
    so.want_sha256 = 1;
    assert_int_equal(kh_engine_open(kdb, &e, NULL, 0), KH_OK);
    assert_int_equal(kh_scanner_new(e, &so, &s), KH_OK);
    uint8_t md5[16];
    for (int i = 0; i < N; i++) {
        struct kh_scan_result kr;
        t0 = now_us();
        assert_int_equal(kh_scan_mem(s, small, sizeof(small), "clean.txt", NULL, NULL, &kr), 0);
        khx_md5(small, sizeof(small), md5);
        local[i] = now_us() - t0;
    }
    /* The floor: one message to another process and back, without the
     * sandbox. On a VM whose idle CPUs sleep this is most of the cost. */
    static double pong[N];
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    pid_t echo = fork();
    assert_true(echo >= 0);
    if (echo == 0) {
        char b[64];
        ssize_t got;
        close(sv[0]);
        while ((got = recv(sv[1], b, sizeof(b), 0)) > 0)
            if (send(sv[1], b, (size_t)got, MSG_NOSIGNAL) < 0)
                break;
        _exit(0);
    }
    close(sv[1]);
    for (int i = 0; i < N; i++) {
        char b[64] = "ping";
        t0 = now_us();
        assert_int_equal(send(sv[0], b, 4, MSG_NOSIGNAL), 4);
        assert_int_equal(recv(sv[0], b, sizeof(b), 0), 4);
        pong[i] = now_us() - t0;
    }
    close(sv[0]);
    waitpid(echo, NULL, 0);
    qsort(pong, N, sizeof(double), cmp_double);
    qsort(through, N, sizeof(double), cmp_double);
    qsort(local, N, sizeof(double), cmp_double);
    printf("bare socket ping-pong with another process: median %.1f us (p99 %.1f)\n", pong[N / 2],
           pong[N * 99 / 100]);
    printf("4 KiB file, one caller: median %.1f us (p99 %.1f) through the sandbox, %.1f us "
           "(p99 %.1f) scanned and hashed in process: %.1f us for the round trip, %.1f us more "
           "than the bare ping-pong\n",
           through[N / 2], through[N * 99 / 100], local[N / 2], local[N * 99 / 100],
           through[N / 2] - local[N / 2], through[N / 2] - local[N / 2] - pong[N / 2]);
    kh_scanner_free(s);
    kh_engine_free(e);

    sbx_worker_stop(w);
    free(clean);
    free(bad);
    free(kdb);
    tu_rmtree(dir);
}

/* ------------------------------------------------------------------------ */
/* Timeouts, crashes, lies                                                   */
/* ------------------------------------------------------------------------ */

static void sandbox_timeout_leaves_worker_usable(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    char *kdb = eicar_db(dir);
    struct sbx_worker *w = start(kdb, 2, 0);
    char *bad = tu_write(dir, "eicar.com", eicar, 68);
    int pid = sbx_worker_pid(w);
    struct sbx_result res;

    /* A pipe whose writer never closes: the worker's read blocks. */
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(write(p[1], "partial", 7), 7);
    double t0 = now_us();
    assert_int_equal(sbx_scan_fd(w, p[0], "stuck-pipe", 300, &res), KH_ETIMEOUT);
    double waited = (now_us() - t0) / 1000;
    printf("timed out after %.0f ms (limit 300 ms)\n", waited);

    /* The other thread still serves. */
    assert_int_equal(scan_path(w, bad, 10000, &res), KH_OK);
    assert_int_equal(res.detections, 1);
    assert_int_equal(sbx_worker_pid(w), pid);

    /* When the pipe ends, the late answer is dropped and everything goes on. */
    close(p[1]);
    close(p[0]);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(scan_path(w, bad, 10000, &res), KH_OK);
        assert_int_equal(res.detections, 1);
    }
    struct sbx_stats st;
    sbx_worker_stats(w, &st);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.restarts, 0);
    assert_int_equal(sbx_worker_pid(w), pid);

    /* A pipe that does end is scanned like a file. */
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(write(p[1], eicar, 68), 68);
    close(p[1]);
    assert_int_equal(sbx_scan_fd(w, p[0], "pipe", 10000, &res), KH_OK);
    close(p[0]);
    assert_int_equal(res.detections, 1);
    assert_digests(&res, eicar, 68);

    sbx_worker_stop(w);
    free(bad);
    free(kdb);
    tu_rmtree(dir);
}

static void sandbox_restarts_worker_whose_threads_are_all_stuck(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    char *kdb = eicar_db(dir);
    struct sbx_worker *w = start(kdb, 2, 0);
    char *bad = tu_write(dir, "eicar.com", eicar, 68);
    int pid = sbx_worker_pid(w);
    struct sbx_result res;
    int p[2][2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pipe2(p[i], O_CLOEXEC), 0);
        assert_int_equal(sbx_scan_fd(w, p[i][0], "stuck", 200, &res), KH_ETIMEOUT);
    }
    /* Both threads hold a request nobody waits for: the worker was killed,
     * and the next scan gets a new one. */
    assert_int_equal(scan_path(w, bad, 10000, &res), KH_OK);
    assert_int_equal(res.detections, 1);
    assert_int_not_equal(sbx_worker_pid(w), pid);
    struct sbx_stats st;
    sbx_worker_stats(w, &st);
    assert_int_equal(st.timeouts, 2);
    assert_int_equal(st.restarts, 1);
    for (int i = 0; i < 2; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
    sbx_worker_stop(w);
    free(bad);
    free(kdb);
    tu_rmtree(dir);
}

struct pending {
    struct sbx_worker *w;
    int fd;
    int r;
};

static void *pending_main(void *arg)
{
    struct pending *pd = arg;
    struct sbx_result res;
    pd->r = sbx_scan_fd(pd->w, pd->fd, "stuck", 30000, &res);
    return NULL;
}

static void sandbox_killed_worker_fails_pending_and_restarts(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    char *kdb = eicar_db(dir);
    struct sbx_worker *w = start(kdb, 4, 0);
    char *bad = tu_write(dir, "eicar.com", eicar, 68);
    int pid = sbx_worker_pid(w);
    enum { NP = 3 };
    int p[NP][2];
    pthread_t t[NP];
    struct pending pd[NP];
    for (int i = 0; i < NP; i++) {
        assert_int_equal(pipe2(p[i], O_CLOEXEC), 0);
        pd[i] = (struct pending){w, p[i][0], 1};
        assert_int_equal(pthread_create(&t[i], NULL, pending_main, &pd[i]), 0);
    }
    uint64_t want = NP;
    assert_true(eventually(w, requests_at_least, &want));
    usleep(50000); /* let the worker receive them */
    double t0 = now_us();
    assert_int_equal(kill(pid, SIGKILL), 0);
    for (int i = 0; i < NP; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(pd[i].r, KH_EIO);
    }
    printf("pending callers failed %.1f ms after SIGKILL\n", (now_us() - t0) / 1000);
    struct sbx_stats st;
    assert_true(eventually(w, worker_ended, NULL));
    sbx_worker_stats(w, &st);
    assert_true(WIFSIGNALED(st.last_wait_status));
    assert_int_equal(WTERMSIG(st.last_wait_status), SIGKILL);

    struct sbx_result res;
    assert_int_equal(scan_path(w, bad, 10000, &res), KH_OK);
    assert_int_equal(res.detections, 1);
    assert_int_not_equal(sbx_worker_pid(w), pid);
    sbx_worker_stats(w, &st);
    assert_int_equal(st.restarts, 1);
    for (int i = 0; i < NP; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
    sbx_worker_stop(w);
    free(bad);
    free(kdb);
    tu_rmtree(dir);
}

struct forever {
    struct sbx_worker *w;
    int fd;
    int r;
    struct sbx_result res;
};

static void *forever_main(void *arg)
{
    struct forever *f = arg;
    f->r = sbx_scan_fd(f->w, f->fd, "pipe", 0, &f->res);
    return NULL;
}

static void sandbox_bounds_requests_in_flight(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    char *kdb = eicar_db(dir);
    struct sbx_worker *w = start(kdb, 2, 0);
    int pid = sbx_worker_pid(w);
    enum { NF = 256 };
    static struct forever f[NF];
    static int p[NF][2];
    static pthread_t t[NF];
    pthread_attr_t small;
    pthread_attr_init(&small);
    pthread_attr_setstacksize(&small, 256 * 1024);
    for (int i = 0; i < NF; i++) {
        assert_int_equal(pipe2(p[i], O_CLOEXEC), 0);
        f[i] = (struct forever){.w = w, .fd = p[i][0], .r = 1};
        assert_int_equal(pthread_create(&t[i], &small, forever_main, &f[i]), 0);
    }
    pthread_attr_destroy(&small);
    uint64_t want = NF;
    assert_true(eventually(w, requests_at_least, &want));

    /* Every slot is taken by a caller that waits for ever: one more waits
     * for a slot, and gives up at its own time limit. */
    struct sbx_result res;
    char *bad = tu_write(dir, "eicar.com", eicar, 68);
    assert_int_equal(scan_path(w, bad, 300, &res), KH_ETIMEOUT);
    struct sbx_stats st;
    sbx_worker_stats(w, &st);
    assert_int_equal(st.requests, NF);

    /* The pipes end: every caller gets its answer, from the same worker. */
    for (int i = 0; i < NF; i++)
        close(p[i][1]);
    for (int i = 0; i < NF; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(f[i].r, KH_OK);
        assert_int_equal(f[i].res.size, 0);
        close(p[i][0]);
    }
    assert_int_equal(scan_path(w, bad, 10000, &res), KH_OK);
    assert_int_equal(res.detections, 1);
    assert_int_equal(sbx_worker_pid(w), pid);
    sbx_worker_stop(w);
    free(bad);
    free(kdb);
    tu_rmtree(dir);
}

/* The fake worker: ready, then one kind of bad answer to every request. */
static int rogue_worker(char **argv, const char *mode)
{
    int sock = atoi(argv[2]);
    uint8_t buf[SBX_MSG_MAX + 64];
    struct sbx_answer a;
    memset(&a, 0, sizeof(a));
    a.type = SBX_MSG_READY;
    a.threads = 1;
    size_t n = sbx_proto_encode_answer(&a, buf, sizeof(buf));
    if (send(sock, buf, n, MSG_NOSIGNAL) < 0)
        return 1;
    for (;;) {
        uint8_t rx[1024];
        struct sbx_request rq;
        union {
            struct cmsghdr h;
            char space[CMSG_SPACE(sizeof(int))];
        } ctl;
        struct iovec iov = {rx, sizeof(rx)};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.space;
        msg.msg_controllen = sizeof(ctl.space);
        ssize_t got = recvmsg(sock, &msg, 0);
        if (got <= 0 || sbx_proto_decode_request(rx, (size_t)got, &rq, NULL, 0) != 0)
            return 0;
        memset(&a, 0, sizeof(a));
        a.type = SBX_MSG_RESULT;
        a.id = rq.id;
        a.result.detections = 1;
        a.result.ndetections = 1;
        snprintf(a.result.det[0].name, sizeof(a.result.det[0].name), "AAAA");
        n = sbx_proto_encode_answer(&a, buf, sizeof(buf));
        struct msghdr out = {0};
        struct iovec oiov = {buf, n};
        out.msg_iov = &oiov;
        out.msg_iovlen = 1;
        if (strcmp(mode, "unknown-id") == 0) {
            a.id = rq.id + 7 * 256;
            n = sbx_proto_encode_answer(&a, buf, sizeof(buf));
        } else if (strcmp(mode, "nul-in-name") == 0) {
            uint8_t *at = memmem(buf, n, "AAAA", 4);
            at[2] = '\0';
        } else if (strcmp(mode, "uncounted") == 0) {
            /* detections (u32 after ndetections) rewritten to 0 */
            size_t off = SBX_HDR_LEN + 4 + 8 + 1 + 32 + 16 + 4;
            memset(buf + off, 0, 4);
        } else if (strcmp(mode, "oversized") == 0) {
            memset(buf + n, 'x', sizeof(buf) - n);
            oiov.iov_len = sizeof(buf);
        } else if (strcmp(mode, "with-fd") == 0) {
            out.msg_control = ctl.space;
            out.msg_controllen = sizeof(ctl.space);
            struct cmsghdr *c = CMSG_FIRSTHDR(&out);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            int zero = 0;
            memcpy(CMSG_DATA(c), &zero, sizeof(int));
        } else if (strcmp(mode, "twice") == 0) {
            if (sendmsg(sock, &out, MSG_NOSIGNAL) < 0)
                return 0;
        } /* "honest": as encoded */
        if (sendmsg(sock, &out, MSG_NOSIGNAL) < 0)
            return 0;
    }
}

static void sandbox_kills_worker_that_sends_garbage(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    char *kdb = eicar_db(dir);
    char *clean = tu_write(dir, "clean.txt", "clean", 5);
    static const char *const modes[] = {"honest",    "unknown-id", "nul-in-name", "uncounted",
                                        "oversized", "with-fd",    "twice"};
    for (size_t m = 0; m < KHX_ARRAY_LEN(modes); m++) {
        setenv("KHIEN_TEST_ROGUE_WORKER", modes[m], 1);
        struct sbx_worker *w = start(kdb, 1, 0);
        unsetenv("KHIEN_TEST_ROGUE_WORKER");
        struct sbx_result res;
        int r = scan_path(w, clean, 10000, &res);
        if (strcmp(modes[m], "honest") == 0) {
            /* The control: a well-formed answer is taken as it is. */
            assert_int_equal(r, KH_OK);
            assert_int_equal(res.ndetections, 1);
            assert_string_equal(res.det[0].name, "AAAA");
        } else if (strcmp(modes[m], "twice") == 0) {
            /* The first answer is the caller's; the second answers nothing. */
            assert_int_equal(r, KH_OK);
        } else {
            assert_int_equal(r, KH_EIO);
        }
        if (strcmp(modes[m], "honest") != 0) {
            struct sbx_stats st;
            assert_true(eventually(w, worker_ended, NULL));
            sbx_worker_stats(w, &st);
            printf("%s: worker ended by signal %d\n", modes[m],
                   WIFSIGNALED(st.last_wait_status) ? WTERMSIG(st.last_wait_status) : 0);
            assert_true(WIFSIGNALED(st.last_wait_status));
            assert_int_equal(WTERMSIG(st.last_wait_status), SIGKILL);
        }
        sbx_worker_stop(w);
    }
    free(clean);
    free(kdb);
    tu_rmtree(dir);
}

/* ------------------------------------------------------------------------ */
/* Reload                                                                    */
/* ------------------------------------------------------------------------ */

struct reloader {
    struct sbx_worker *w;
    const char *file;
    atomic_int *stop;
    unsigned one, two, bad;
};

static void *reload_scan_main(void *arg)
{
    struct reloader *rl = arg;
    while (!atomic_load(rl->stop)) {
        struct sbx_result res;
        int r = scan_path(rl->w, rl->file, 20000, &res);
        if (r != KH_OK || res.ndetections != 1)
            rl->bad++;
        else if (strcmp(res.det[0].name, "Db.One") == 0)
            rl->one++;
        else if (strcmp(res.det[0].name, "Db.Two") == 0)
            rl->two++;
        else
            rl->bad++;
    }
    return NULL;
}

static void sandbox_reload_switches_database_without_failing_scans(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    char *one = make_db(dir, "one.kdb", "ndb", "Db.One:0:*:4549434152\n");
    char *two = make_db(dir, "two.kdb", "ndb", "Db.Two:0:*:5354414e44415244\n");
    char *file = tu_write(dir, "eicar.com", eicar, 68);
    struct sbx_worker *w = start(one, 2, 0);
    int old_pid = sbx_worker_pid(w);
    atomic_int stop = 0;
    enum { NT = 4 };
    pthread_t t[NT];
    struct reloader rl[NT];
    for (int i = 0; i < NT; i++) {
        rl[i] = (struct reloader){w, file, &stop, 0, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, reload_scan_main, &rl[i]), 0);
    }
    usleep(100000);
    char err[256];
    assert_int_equal(sbx_worker_reload(w, two, err, sizeof(err)), KH_OK);
    usleep(100000);
    atomic_store(&stop, 1);
    unsigned n1 = 0, n2 = 0, bad = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(t[i], NULL);
        n1 += rl[i].one;
        n2 += rl[i].two;
        bad += rl[i].bad;
    }
    printf("scans during reload: %u with the old database, %u with the new, %u failed\n", n1, n2,
           bad);
    assert_int_equal(bad, 0);
    assert_true(n1 > 0);
    assert_true(n2 > 0);
    struct sbx_result res;
    assert_int_equal(scan_path(w, file, 10000, &res), KH_OK);
    assert_string_equal(res.det[0].name, "Db.Two");
    assert_int_not_equal(sbx_worker_pid(w), old_pid);
    struct sbx_stats st;
    sbx_worker_stats(w, &st);
    assert_int_equal(st.generation, 1);
    assert_int_equal(st.restarts, 0);
    /* The old worker was stopped once its requests were answered: it exits
     * when its socket closes (or, on a very busy machine, at SIGTERM). */
    assert_true(eventually(w, worker_ended, NULL));
    sbx_worker_stats(w, &st);
    printf("old worker: wait status 0x%x\n", (unsigned)st.last_wait_status);
    assert_true((WIFEXITED(st.last_wait_status) && WEXITSTATUS(st.last_wait_status) == 0) ||
                (WIFSIGNALED(st.last_wait_status) && WTERMSIG(st.last_wait_status) == SIGTERM));

    /* A failed reload keeps the current worker. */
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/missing.kdb", dir);
    int pid = sbx_worker_pid(w);
    assert_true(sbx_worker_reload(w, missing, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "missing.kdb"));
    assert_int_equal(sbx_worker_pid(w), pid);
    assert_int_equal(scan_path(w, file, 10000, &res), KH_OK);
    assert_string_equal(res.det[0].name, "Db.Two");

    sbx_worker_stop(w);
    free(file);
    free(one);
    free(two);
    tu_rmtree(dir);
}

/* `cp new.kdb live.kdb` over the worker's database: the engine's lease
 * (lib/engine/lease.c) must still work in the locked-down worker, so that
 * the worker copies its image and keeps serving instead of dying of SIGBUS. */
static void sandbox_worker_survives_database_overwritten_in_place(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    char *kdb = eicar_db(dir);
    char *other = make_db(dir, "other.kdb", "ndb", "Other.Sig:0:*:4549434152\n");
    char *bad = tu_write(dir, "eicar.com", eicar, 68);
    struct sbx_worker *w = start(kdb, 2, 0);
    int pid = sbx_worker_pid(w);
    size_t len = 0;
    uint8_t *image = NULL;
    assert_int_equal(khx_read_file(other, 64u << 20, &image, &len), 0);

    double t0 = now_us();
    int fd = open(kdb, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    double held = (now_us() - t0) / 1000;
    assert_int_equal(write(fd, image, len), (ssize_t)len);
    close(fd);
    printf("the writer was held %.1f ms by the worker's lease\n", held);
    /* Had the worker not let go, the kernel would have broken the lease
     * itself after lease-break-time (45 s by default). */
    long break_s = 45;
    FILE *f = fopen("/proc/sys/fs/lease-break-time", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld", &break_s) != 1)
            break_s = 45;
        fclose(f);
    }
    if (break_s >= 2)
        assert_true(held < break_s * 1000.0 / 2);

    struct sbx_result res;
    assert_int_equal(scan_path(w, bad, 10000, &res), KH_OK);
    assert_int_equal(res.detections, 1);
    assert_string_not_equal(res.det[0].name, "Other.Sig");
    assert_int_equal(sbx_worker_pid(w), pid);
    struct sbx_stats st;
    sbx_worker_stats(w, &st);
    assert_int_equal(st.restarts, 0);

    /* A reload of the same path picks the new contents up. */
    char err[256];
    assert_int_equal(sbx_worker_reload(w, NULL, err, sizeof(err)), KH_OK);
    assert_int_equal(scan_path(w, bad, 10000, &res), KH_OK);
    assert_string_equal(res.det[0].name, "Other.Sig");
    sbx_worker_stop(w);
    free(image);
    free(bad);
    free(other);
    free(kdb);
    tu_rmtree(dir);
}

/* Reads one "Key:\tvalue" line of /proc/<pid>/status. */
static int proc_status(int pid, const char *key, char *out, size_t len)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    int found = -1;
    while (fgets(line, sizeof(line), f)) {
        size_t k = strlen(key);
        if (strncmp(line, key, k) == 0 && line[k] == ':') {
            const char *v = line + k + 1;
            while (*v == '\t' || *v == ' ')
                v++;
            snprintf(out, len, "%s", v);
            out[strcspn(out, "\n")] = '\0';
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

static void sandbox_worker_is_unprivileged_and_filtered(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    char *kdb = eicar_db(dir);
    struct sbx_worker *w = start(kdb, 3, 0);
    int pid = sbx_worker_pid(w);
    char v[128];
    assert_int_equal(proc_status(pid, "Seccomp", v, sizeof(v)), 0);
    assert_string_equal(v, "2"); /* filter mode */
    assert_int_equal(proc_status(pid, "NoNewPrivs", v, sizeof(v)), 0);
    assert_string_equal(v, "1");
    /* Every thread has the filter, not only the one that installed it. */
    char task[64];
    snprintf(task, sizeof(task), "/proc/%d/task", pid);
    DIR *d = opendir(task);
    assert_non_null(d);
    int threads = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[400], line[256];
        snprintf(path, sizeof(path), "/proc/%d/task/%s/status", pid, e->d_name);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        int filtered = 0;
        while (fgets(line, sizeof(line), f))
            if (strcmp(line, "Seccomp:\t2\n") == 0)
                filtered = 1;
        fclose(f);
        assert_true(filtered);
        threads++;
    }
    closedir(d);
    assert_int_equal(threads, 3);
    /* Only stdio, the socket and the database's lease are open. */
    char fddir[64];
    snprintf(fddir, sizeof(fddir), "/proc/%d/fd", pid);
    d = opendir(fddir);
    assert_non_null(d);
    int fds = 0;
    while ((e = readdir(d)) != NULL)
        fds += e->d_name[0] != '.';
    closedir(d);
    printf("worker %d: %d threads, %d descriptors open\n", pid, threads, fds);
    assert_true(fds <= 5);

    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("nobody");
        assert_non_null(pw);
        char want[64];
        snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", (unsigned)pw->pw_uid, (unsigned)pw->pw_uid,
                 (unsigned)pw->pw_uid, (unsigned)pw->pw_uid);
        assert_int_equal(proc_status(pid, "Uid", v, sizeof(v)), 0);
        printf("worker Uid: %s\n", v);
        assert_string_equal(v, want);
        snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", (unsigned)pw->pw_gid, (unsigned)pw->pw_gid,
                 (unsigned)pw->pw_gid, (unsigned)pw->pw_gid);
        assert_int_equal(proc_status(pid, "Gid", v, sizeof(v)), 0);
        assert_string_equal(v, want);
        assert_int_equal(proc_status(pid, "Groups", v, sizeof(v)), 0);
        assert_string_equal(v, "");
        assert_int_equal(proc_status(pid, "CapEff", v, sizeof(v)), 0);
        assert_string_equal(v, "0000000000000000");
    } else {
        printf("SKIP: not root, the drop to nobody is not exercised\n");
    }
    sbx_worker_stop(w);
    free(kdb);
    tu_rmtree(dir);
}

/* ------------------------------------------------------------------------ */
/* The wire format                                                           */
/* ------------------------------------------------------------------------ */

static void sandbox_proto_round_trips_and_refuses_bad_records(void **state)
{
    (void)state;
    static struct sbx_answer a, b;
    uint8_t buf[SBX_MSG_MAX];
    char err[256];
    memset(&a, 0, sizeof(a));
    a.type = SBX_MSG_RESULT;
    a.id = 42 * 256 + 3;
    a.result.status = KH_ELIMIT;
    a.result.size = 12345;
    a.result.sha256_valid = 1;
    memset(a.result.sha256, 0xab, 32);
    memset(a.result.md5, 0xcd, 16);
    a.result.detections = 1;
    a.result.notices = 1;
    a.result.ndetections = 2;
    snprintf(a.result.det[0].name, SBX_NAME_MAX, "Eicar-Test-Signature");
    snprintf(a.result.det[0].inner_path, SBX_INNER_MAX, "a.zip/b.txt");
    a.result.det[0].kind = KH_SIG_HASH;
    snprintf(a.result.det[1].name, SBX_NAME_MAX, "Heuristics.Limits.Exceeded");
    a.result.det[1].severity = KH_SEV_NOTICE;
    a.result.det[1].kind = KH_SIG_HEURISTIC;
    size_t n = sbx_proto_encode_answer(&a, buf, sizeof(buf));
    assert_true(n > SBX_HDR_LEN);
    memset(&b, 0, sizeof(b));
    assert_int_equal(sbx_proto_decode_answer(buf, n, &b, err, sizeof(err)), KH_OK);
    assert_int_equal(b.id, a.id);
    assert_memory_equal(&b.result, &a.result, sizeof(a.result));

    /* Every strict prefix is refused, and so is one byte more. */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(sbx_proto_decode_answer(buf, k, &b, err, sizeof(err)), KH_EFORMAT);
    buf[n] = 0;
    assert_int_equal(sbx_proto_decode_answer(buf, n + 1, &b, err, sizeof(err)), KH_EFORMAT);
    printf("one byte too many: %s\n", err);

    /* Field by field. */
    uint8_t bad[SBX_MSG_MAX];
    memcpy(bad, buf, n);
    bad[0] ^= 1;
    assert_int_equal(sbx_proto_decode_answer(bad, n, &b, err, sizeof(err)), KH_EFORMAT);
    printf("magic: %s\n", err);
    memcpy(bad, buf, n);
    bad[4] = 2;
    assert_int_equal(sbx_proto_decode_answer(bad, n, &b, err, sizeof(err)), KH_EFORMAT);
    printf("version: %s\n", err);
    memcpy(bad, buf, n);
    bad[SBX_HDR_LEN + 4 + 8] = 2; /* sha256_valid */
    assert_int_equal(sbx_proto_decode_answer(bad, n, &b, err, sizeof(err)), KH_EFORMAT);
    printf("flag: %s\n", err);
    memcpy(bad, buf, n);
    bad[SBX_HDR_LEN + 4 + 8 + 1 + 48] = SBX_MAX_DETECTIONS + 1; /* ndetections */
    assert_int_equal(sbx_proto_decode_answer(bad, n, &b, err, sizeof(err)), KH_EFORMAT);
    printf("count: %s\n", err);
    memcpy(bad, buf, n);
    bad[SBX_HDR_LEN] = 5; /* a positive status */
    assert_int_equal(sbx_proto_decode_answer(bad, n, &b, err, sizeof(err)), KH_EFORMAT);
    printf("status: %s\n", err);
    memcpy(bad, buf, n);
    size_t det0 = SBX_HDR_LEN + SBX_RESULT_FIXED_LEN;
    bad[det0 + 4] = KH_SIG_KIND_COUNT; /* kind */
    assert_int_equal(sbx_proto_decode_answer(bad, n, &b, err, sizeof(err)), KH_EFORMAT);
    printf("kind: %s\n", err);
    memcpy(bad, buf, n);
    bad[det0 + 8] = 0xff; /* name length 0x..ff: past the end */
    bad[det0 + 9] = 0x00;
    assert_int_equal(sbx_proto_decode_answer(bad, n, &b, err, sizeof(err)), KH_EFORMAT);
    printf("name length: %s\n", err);
    memcpy(bad, buf, n);
    bad[det0 + 8] = 0x00; /* name length 256 = SBX_NAME_MAX: no room for the NUL */
    bad[det0 + 9] = 0x01;
    assert_int_equal(sbx_proto_decode_answer(bad, n, &b, err, sizeof(err)), KH_EFORMAT);
    printf("name length: %s\n", err);
    memcpy(bad, buf, n);
    bad[det0 + 10 + 3] = '\0';
    assert_int_equal(sbx_proto_decode_answer(bad, n, &b, err, sizeof(err)), KH_EFORMAT);
    printf("name: %s\n", err);

    /* The encoder refuses what the decoder would. */
    b = a;
    b.result.ndetections = SBX_MAX_DETECTIONS + 1;
    assert_int_equal(sbx_proto_encode_answer(&b, buf, sizeof(buf)), 0);
    b = a;
    b.result.notices = 0; /* a notice listed but not counted */
    assert_int_equal(sbx_proto_encode_answer(&b, buf, sizeof(buf)), 0);
    b = a;
    memset(b.result.det[0].name, 'x', SBX_NAME_MAX); /* no terminator */
    assert_int_equal(sbx_proto_encode_answer(&b, buf, sizeof(buf)), 0);
    assert_int_equal(sbx_proto_encode_answer(&a, buf, 100), 0); /* does not fit */

    /* Requests, READY and ERROR. */
    struct sbx_request rq = {7, "some/file.exe"}, rq2;
    n = sbx_proto_encode_request(&rq, buf, sizeof(buf));
    assert_int_equal(sbx_proto_decode_request(buf, n, &rq2, err, sizeof(err)), KH_OK);
    assert_int_equal(rq2.id, 7);
    assert_string_equal(rq2.name, "some/file.exe");
    buf[SBX_HDR_LEN + 2] = '\0';
    assert_int_equal(sbx_proto_decode_request(buf, n, &rq2, err, sizeof(err)), KH_EFORMAT);
    rq.id = 0;
    assert_int_equal(sbx_proto_encode_request(&rq, buf, sizeof(buf)), 0);

    memset(&a, 0, sizeof(a));
    a.type = SBX_MSG_ERROR;
    a.code = KH_ENOTFOUND;
    snprintf(a.msg, sizeof(a.msg), "cannot open x.kdb");
    n = sbx_proto_encode_answer(&a, buf, sizeof(buf));
    assert_int_equal(sbx_proto_decode_answer(buf, n, &b, err, sizeof(err)), KH_OK);
    assert_int_equal(b.code, KH_ENOTFOUND);
    assert_string_equal(b.msg, "cannot open x.kdb");
    a.type = SBX_MSG_READY;
    a.db_created = 1700000000;
    a.db_signatures = 99;
    a.threads = 4;
    n = sbx_proto_encode_answer(&a, buf, sizeof(buf));
    assert_int_equal(sbx_proto_decode_answer(buf, n, &b, err, sizeof(err)), KH_OK);
    assert_int_equal(b.db_created, 1700000000);
    assert_int_equal(b.db_signatures, 99);
    assert_int_equal(b.threads, 4);
}

/* ------------------------------------------------------------------------ */
/* The real engine on real samples, under the real filter                    */
/* ------------------------------------------------------------------------ */

struct collect {
    unsigned n;
    char names[SBX_MAX_DETECTIONS][SBX_NAME_MAX];
};

static int collect_hit(void *ud, const struct kh_detection *d)
{
    struct collect *c = ud;
    if (c->n < SBX_MAX_DETECTIONS)
        snprintf(c->names[c->n++], SBX_NAME_MAX, "%s", d->name);
    return 0;
}

struct sample_run {
    struct sbx_worker *w;
    kh_scanner *s;
    const char *tmp;
    unsigned files, detected, mismatched;
};

static void compare_one(struct sample_run *run, const char *label, const uint8_t *data, size_t len)
{
    char *path = tu_write(run->tmp, "sample", data, len);
    struct sbx_result res;
    int r = scan_path(run->w, path, 120000, &res);
    free(path);
    struct collect c = {0};
    struct kh_scan_result kr;
    int kr_status = kh_scan_mem(run->s, data, len, label, collect_hit, &c, &kr);
    int same = r == KH_OK && res.status == kr_status && res.detections == kr.detections &&
               res.notices == kr.notices && res.ndetections == c.n;
    for (unsigned i = 0; same && i < c.n; i++)
        same = strncmp(res.det[i].name, c.names[i], SBX_NAME_MAX - 1) == 0;
    if (same && kr.sha256_valid)
        same = memcmp(res.sha256, kr.sha256, 32) == 0;
    run->files++;
    run->detected += kr.detections > 0;
    if (!same) {
        run->mismatched++;
        printf("MISMATCH %s: sandbox r=%d status=%d det=%u not=%u; in process status=%d det=%u "
               "not=%u\n",
               label, r, res.status, res.detections, res.notices, kr_status, kr.detections,
               kr.notices);
    }
}

static void compare_dir(struct sample_run *run, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth < 3)
                compare_dir(run, path, depth + 1);
            continue;
        }
        uint8_t *data = NULL;
        size_t len = 0;
        const char *ext = khx_path_ext(e->d_name);
        if (strcmp(ext, "xor") == 0) {
            char name[512];
            snprintf(name, sizeof(name), "%.*s", (int)(strlen(e->d_name) - 4), e->d_name);
            data = tu_load_clamav_xor(name, &len);
        } else if (khx_read_file(path, 64u << 20, &data, &len) != 0) {
            continue;
        }
        if (data != NULL)
            compare_one(run, e->d_name, data, len);
        free(data);
    }
    closedir(d);
}

static void sandbox_scans_clamav_samples_as_in_process(void **state)
{
    (void)state;
    const char *shared = tu_shared_data();
    if (shared == NULL) {
        printf("SKIP: ../shared/data is absent\n");
        return;
    }
    char dir[512], src[1024];
    snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
    kh_builder *b = NULL;
    assert_int_equal(kh_builder_new(NULL, &b), KH_OK);
    snprintf(src, sizeof(src), "%s/clamav/sigs/test-6.cvd", shared);
    assert_int_equal(kh_builder_add_path(b, src), KH_OK);
    snprintf(src, sizeof(src), "%s/clamav/sigs/clamav.hdb", shared);
    assert_int_equal(kh_builder_add_path(b, src), KH_OK);
    /* YARA rules too, so that libyara runs under the filter. */
    static const char yar[] = "rule Test_Yara_ClamAV { strings: $a = \"CLAMAV\" nocase "
                              "condition: $a }\n"
                              "rule Test_Yara_MZ { condition: uint16(0) == 0x5a4d }\n";
    assert_int_equal(kh_builder_add_mem(b, "t.yar", yar, strlen(yar)), KH_OK);
    char kdb[600];
    snprintf(kdb, sizeof(kdb), "%s/samples.kdb", dir);
    assert_int_equal(kh_builder_write(b, kdb), KH_OK);
    kh_builder_free(b);

    struct sample_run run = {0};
    run.tmp = dir;
    run.w = start(kdb, 2, 1);
    kh_engine *e = NULL;
    struct kh_scan_opts so;
    kh_scan_opts_default(&so);
    so.allmatch = 1;
    so.want_sha256 = 1;
    assert_int_equal(kh_engine_open(kdb, &e, NULL, 0), KH_OK);
    assert_int_equal(kh_scanner_new(e, &so, &run.s), KH_OK);

    static const char *const dirs[] = {
        "clamav/files/clamav_hdb_scanfiles_xor", "clamav/files/other_scanfiles",
        "clamav/files/embedded_testfiles", "clamav/files/pe_allmatch"};
    for (size_t i = 0; i < KHX_ARRAY_LEN(dirs); i++) {
        snprintf(src, sizeof(src), "%s/%s", shared, dirs[i]);
        compare_dir(&run, src, 0);
    }
    struct sbx_stats st;
    sbx_worker_stats(run.w, &st);
    printf("%u samples, %u detected, %u differ; worker restarts %llu\n", run.files, run.detected,
           run.mismatched, (unsigned long long)st.restarts);
    if (st.last_wait_status != -1)
        printf("a worker ended: %s %d\n", WIFSIGNALED(st.last_wait_status) ? "signal" : "exit",
               WIFSIGNALED(st.last_wait_status) ? WTERMSIG(st.last_wait_status)
                                                : WEXITSTATUS(st.last_wait_status));
    assert_true(run.files > 100);
    assert_true(run.detected > 50);
    assert_int_equal(run.mismatched, 0);
    assert_int_equal(st.restarts, 0);
    assert_int_equal(st.last_wait_status, -1);
    kh_scanner_free(run.s);
    kh_engine_free(e);
    sbx_worker_stop(run.w);
    tu_rmtree(dir);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], SBX_WORKER_ARG) == 0) {
        const char *rogue = getenv("KHIEN_TEST_ROGUE_WORKER");
        if (rogue != NULL && argc > 2)
            return rogue_worker(argv, rogue);
        return sbx_worker_main(argc, argv);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sandbox_proto_round_trips_and_refuses_bad_records),
        cmocka_unit_test(sandbox_detects_eicar_and_passes_clean_file),
        cmocka_unit_test(sandbox_allmatch_reports_every_signature),
        cmocka_unit_test(sandbox_start_reports_bad_database),
        cmocka_unit_test(sandbox_serves_many_threads_at_once),
        cmocka_unit_test(sandbox_timeout_leaves_worker_usable),
        cmocka_unit_test(sandbox_restarts_worker_whose_threads_are_all_stuck),
        cmocka_unit_test(sandbox_killed_worker_fails_pending_and_restarts),
        cmocka_unit_test(sandbox_bounds_requests_in_flight),
        cmocka_unit_test(sandbox_kills_worker_that_sends_garbage),
        cmocka_unit_test(sandbox_reload_switches_database_without_failing_scans),
        cmocka_unit_test(sandbox_worker_survives_database_overwritten_in_place),
        cmocka_unit_test(sandbox_worker_is_unprivileged_and_filtered),
        cmocka_unit_test(sandbox_scans_clamav_samples_as_in_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
