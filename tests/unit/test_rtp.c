/*
 * Tests of real-time protection on Linux (agent/linux/rtp_fanotify.c).
 *
 * Each test protects a fresh temporary folder and opens files from a forked
 * child, because events caused by the agent's own process are always
 * allowed. The decider under test denies files whose content starts with
 * "BAD" or whose name starts with "deny-", and sleeps on files named
 * "slow*". While a test runs the whole root file system is marked (/tmp is
 * on it), so the tests are short and the teardown always stops protection,
 * even after a failed assertion. The tests skip, visibly, when fanotify is
 * not available (no CAP_SYS_ADMIN, or a kernel without it).
 *
 * The last test measures, and prints without asserting, what protection
 * costs for opening, reading and closing 10,000 small files.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "khx.h"
#include "platform.h"

#define MAX_RECORDS 256

struct record {
    int kind;
    char path[PATH_MAX];
};

static struct fixture {
    char dir[512];     /* the protected folder */
    char outside[512]; /* a folder beside it, not protected */
    struct plat_rtp *rtp;
    pthread_mutex_t mu;
    struct record rec[MAX_RECORDS];
    size_t nrec;
    unsigned slow_ms;
    int allow_children;
    atomic_int in_slow, timeouts;
    atomic_uint_fast64_t slow_done_ms;
} fx = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int fanotify_usable = -1;

static int decide(void *ud, const struct plat_rtp_event *ev)
{
    struct fixture *f = ud;
    char head[3];
    ssize_t n = pread(ev->fd, head, sizeof(head), 0);
    const char *base = strrchr(ev->path, '/');
    base = base ? base + 1 : ev->path;
    pthread_mutex_lock(&f->mu);
    if (f->nrec < MAX_RECORDS) {
        f->rec[f->nrec].kind = ev->kind;
        snprintf(f->rec[f->nrec].path, sizeof(f->rec[f->nrec].path), "%s", ev->path);
        f->nrec++;
    }
    pthread_mutex_unlock(&f->mu);
    if (strncmp(base, "slow", 4) == 0) {
        atomic_store(&f->in_slow, 1);
        usleep(f->slow_ms * 1000);
        atomic_store(&f->slow_done_ms, khx_now_ms());
    }
    if ((n == 3 && memcmp(head, "BAD", 3) == 0) || strncmp(base, "deny-", 5) == 0)
        return PLAT_DENY;
    return PLAT_ALLOW;
}

static void on_timeout(void *ud, const char *path, pid_t pid, unsigned waited_ms)
{
    struct fixture *f = ud;
    if (atomic_fetch_add(&f->timeouts, 1) < 2)
        printf("# timeout: %s (pid %d) allowed after %u ms\n", path, (int)pid, waited_ms);
}

/* How many decisions of `kind` (-1: any) were made for `path`. */
static int decisions(const char *path, int kind)
{
    int n = 0;
    pthread_mutex_lock(&fx.mu);
    for (size_t i = 0; i < fx.nrec; i++)
        if (strcmp(fx.rec[i].path, path) == 0 && (kind < 0 || fx.rec[i].kind == kind))
            n++;
    pthread_mutex_unlock(&fx.mu);
    return n;
}

static int wait_decisions(const char *path, int kind, int want, unsigned ms)
{
    uint64_t end = khx_now_ms() + ms;
    while (decisions(path, kind) < want && khx_now_ms() < end)
        usleep(5000);
    return decisions(path, kind);
}

/* Runs `fn(arg)` in a child process; returns its exit code (0 or an errno). */
static int in_child(int (*fn)(const char *, const char *), const char *a, const char *b)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn(a, b));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

static int child_open(const char *path, const char *unused)
{
    (void)unused;
    char buf[64];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return errno;
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    return n < 0 ? errno : 0;
}

static int child_write(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return errno;
    ssize_t n = write(fd, data, strlen(data));
    return close(fd) != 0 || n != (ssize_t)strlen(data) ? EIO : 0;
}

static int child_exec(const char *path, const char *unused)
{
    (void)unused;
    char *argv[] = {(char *)path, NULL};
    char *envp[] = {NULL};
    execve(path, argv, envp);
    return errno;
}

static char *path_in(const char *dir, const char *name)
{
    static char bufs[4][PATH_MAX];
    static int next;
    char *p = bufs[next++ % 4];
    snprintf(p, PATH_MAX, "%.3000s/%.900s", dir, name);
    return p;
}

static void put(const char *dir, const char *name, const char *content)
{
    free(tu_write(dir, name, content, strlen(content)));
}

static int setup(void **state)
{
    (void)state;
    if (fanotify_usable < 0) {
        int fd = fanotify_init(FAN_CLASS_CONTENT, O_RDONLY);
        fanotify_usable = fd >= 0 || !(errno == EPERM || errno == ENOSYS);
        if (fd >= 0)
            close(fd);
    }
    snprintf(fx.dir, sizeof(fx.dir), "%s", tu_mkdtemp());
    snprintf(fx.outside, sizeof(fx.outside), "%s", tu_mkdtemp());
    fx.nrec = 0;
    fx.slow_ms = 0;
    fx.allow_children = 0;
    atomic_store(&fx.in_slow, 0);
    atomic_store(&fx.timeouts, 0);
    atomic_store(&fx.slow_done_ms, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    plat_rtp_stop(fx.rtp);
    fx.rtp = NULL;
    tu_rmtree(fx.dir);
    tu_rmtree(fx.outside);
    return 0;
}

#define REQUIRE_FANOTIFY()                                                                         \
    do {                                                                                           \
        if (!fanotify_usable) {                                                                    \
            printf("SKIP: fanotify is not available here (needs CAP_SYS_ADMIN)\n");                \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void start(unsigned timeout_ms, unsigned threads, const char *exclude)
{
    const char *paths[] = {fx.dir};
    const char *excl[] = {exclude};
    struct plat_rtp_opts o = {.paths = paths,
                              .npaths = 1,
                              .excludes = excl,
                              .nexcludes = exclude ? 1 : 0,
                              .timeout_ms = timeout_ms,
                              .threads = threads,
                              .decide = decide,
                              .on_timeout = on_timeout,
                              .ud = &fx,
                              .allow_children = fx.allow_children};
    char err[256] = "";
    int rc = plat_rtp_start(&o, &fx.rtp, err, sizeof(err));
    if (rc != 0)
        fail_msg("plat_rtp_start: %d %s", rc, err);
}

static void rtp_denies_open_of_file_the_decider_rejects(void **state)
{
    (void)state;
    REQUIRE_FANOTIFY();
    put(fx.dir, "bad.txt", "BAD content");
    put(fx.dir, "good.txt", "good content");
    start(5000, 2, NULL);
    assert_int_equal(in_child(child_open, path_in(fx.dir, "bad.txt"), NULL), EPERM);
    assert_int_equal(in_child(child_open, path_in(fx.dir, "good.txt"), NULL), 0);
    assert_int_equal(decisions(path_in(fx.dir, "bad.txt"), PLAT_RTP_OPEN), 1);
    assert_int_equal(decisions(path_in(fx.dir, "good.txt"), PLAT_RTP_OPEN), 1);
    struct plat_rtp_stats st;
    plat_rtp_stats(fx.rtp, &st);
    assert_true(st.denied >= 1);
}

static void rtp_own_process_is_never_decided(void **state)
{
    (void)state;
    REQUIRE_FANOTIFY();
    put(fx.dir, "bad.txt", "BAD content");
    start(5000, 2, NULL);
    assert_int_equal(child_open(path_in(fx.dir, "bad.txt"), NULL), 0);
    assert_int_equal(decisions(path_in(fx.dir, "bad.txt"), -1), 0);
}

/* Runs in a child: opens `path` from a child of its own. No cmocka here. */
static int grandchild_open(const char *path, const char *unused)
{
    int status = 0;
    pid_t pid = fork();
    if (pid == 0)
        _exit(child_open(path, unused));
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return 255;
    return WEXITSTATUS(status);
}

static void rtp_allow_children_lets_direct_children_through(void **state)
{
    (void)state;
    REQUIRE_FANOTIFY();
    put(fx.dir, "bad.txt", "BAD content");
    fx.allow_children = 1;
    start(5000, 2, NULL);
    assert_int_equal(in_child(child_open, path_in(fx.dir, "bad.txt"), NULL), 0);
    assert_int_equal(decisions(path_in(fx.dir, "bad.txt"), -1), 0);
    /* A grandchild is not this process's child: decided and denied. */
    assert_int_equal(in_child(grandchild_open, path_in(fx.dir, "bad.txt"), NULL), EPERM);
    assert_int_equal(decisions(path_in(fx.dir, "bad.txt"), -1), 1);
}

static void rtp_excluded_folder_is_not_decided(void **state)
{
    (void)state;
    REQUIRE_FANOTIFY();
    char excl[PATH_MAX];
    snprintf(excl, sizeof(excl), "%s/excl", fx.dir);
    assert_int_equal(mkdir(excl, 0755), 0);
    put(excl, "bad.txt", "BAD but excluded");
    start(5000, 2, excl);
    assert_int_equal(in_child(child_open, path_in(excl, "bad.txt"), NULL), 0);
    assert_int_equal(decisions(path_in(excl, "bad.txt"), -1), 0);
    /* The exclusion is a folder, not a string prefix. */
    snprintf(excl, sizeof(excl), "%s/exclx", fx.dir);
    assert_int_equal(mkdir(excl, 0755), 0);
    put(excl, "bad.txt", "BAD and protected");
    assert_int_equal(in_child(child_open, path_in(excl, "bad.txt"), NULL), EPERM);
}

static void rtp_files_outside_protected_folder_never_reach_decide(void **state)
{
    (void)state;
    REQUIRE_FANOTIFY();
    put(fx.outside, "bad.txt", "BAD outside");
    put(fx.dir, "good.txt", "good");
    start(5000, 2, NULL);
    assert_int_equal(in_child(child_open, path_in(fx.outside, "bad.txt"), NULL), 0);
    assert_int_equal(in_child(child_open, path_in(fx.dir, "good.txt"), NULL), 0);
    assert_int_equal(decisions(path_in(fx.dir, "good.txt"), -1), 1);
    pthread_mutex_lock(&fx.mu);
    for (size_t i = 0; i < fx.nrec; i++)
        assert_int_equal(strncmp(fx.rec[i].path, fx.dir, strlen(fx.dir)), 0);
    pthread_mutex_unlock(&fx.mu);
}

static void rtp_close_write_reaches_decide_with_path(void **state)
{
    (void)state;
    REQUIRE_FANOTIFY();
    start(5000, 2, NULL);
    const char *p = path_in(fx.dir, "written.txt");
    assert_int_equal(in_child(child_write, p, "fresh content"), 0);
    assert_int_equal(wait_decisions(p, PLAT_RTP_CLOSE_WRITE, 1, 5000), 1);
}

static void rtp_clean_verdict_is_cached_until_modified(void **state)
{
    (void)state;
    REQUIRE_FANOTIFY();
    const char *p = path_in(fx.dir, "cached.txt");
    put(fx.dir, "cached.txt", "clean");
    start(5000, 2, NULL);
    assert_int_equal(in_child(child_open, p, NULL), 0);
    assert_int_equal(in_child(child_open, p, NULL), 0);
    assert_int_equal(decisions(p, PLAT_RTP_OPEN), 1);
    struct plat_rtp_stats st;
    plat_rtp_stats(fx.rtp, &st);
    assert_true(st.cached >= 1);

    /* This process's own write is not decided, but it clears the mark. */
    int fd = open(p, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, " still clean", 12), 12);
    close(fd);
    assert_int_equal(in_child(child_open, p, NULL), 0);
    assert_int_equal(decisions(p, PLAT_RTP_OPEN), 2);
    assert_int_equal(in_child(child_open, p, NULL), 0);
    assert_int_equal(decisions(p, PLAT_RTP_OPEN), 2);

    /* A child that makes the file bad: the close-after-write decision denies
     * the next open, whatever was remembered before. */
    assert_int_equal(in_child(child_write, p, "BAD now"), 0);
    assert_true(wait_decisions(p, PLAT_RTP_CLOSE_WRITE, 1, 5000) >= 1);
    assert_int_equal(in_child(child_open, p, NULL), EPERM);
}

static void rtp_flush_cache_decides_again(void **state)
{
    (void)state;
    REQUIRE_FANOTIFY();
    const char *p = path_in(fx.dir, "flushed.txt");
    put(fx.dir, "flushed.txt", "clean");
    start(5000, 2, NULL);
    assert_int_equal(in_child(child_open, p, NULL), 0);
    assert_int_equal(in_child(child_open, p, NULL), 0);
    assert_int_equal(decisions(p, PLAT_RTP_OPEN), 1);
    plat_rtp_flush_cache(fx.rtp);
    assert_int_equal(in_child(child_open, p, NULL), 0);
    assert_int_equal(decisions(p, PLAT_RTP_OPEN), 2);
    /* The mount marks survived the flush: a new file is still decided. */
    put(fx.dir, "new.txt", "BAD");
    assert_int_equal(in_child(child_open, path_in(fx.dir, "new.txt"), NULL), EPERM);
}

static void rtp_exec_is_decided_and_a_denied_exec_fails(void **state)
{
    (void)state;
    REQUIRE_FANOTIFY();
    uint8_t *data = NULL;
    size_t len = 0;
    if (khx_read_file("/bin/true", 16u << 20, &data, &len) != 0) {
        printf("SKIP: /bin/true is not readable\n");
        skip();
    }
    char *tool = tu_write(fx.dir, "tool", data, len);
    char *deny = tu_write(fx.dir, "deny-tool", data, len);
    free(data);
    assert_int_equal(chmod(tool, 0755), 0);
    assert_int_equal(chmod(deny, 0755), 0);
    start(5000, 2, NULL);
    int rc_tool = in_child(child_exec, tool, NULL);
    int rc_deny = in_child(child_exec, deny, NULL);
    int exec_decisions = decisions(tool, PLAT_RTP_EXEC);
    free(tool);
    free(deny);
    assert_int_equal(rc_tool, 0);
    assert_int_equal(rc_deny, EPERM);
    assert_int_equal(exec_decisions, 1);
}

static void rtp_slow_decision_times_out_and_open_succeeds(void **state)
{
    (void)state;
    REQUIRE_FANOTIFY();
    const char *p = path_in(fx.dir, "slow.txt");
    put(fx.dir, "slow.txt", "BAD but slow");
    fx.slow_ms = 1500;
    start(300, 2, NULL);
    uint64_t t0 = khx_now_ms();
    assert_int_equal(in_child(child_open, p, NULL), 0);
    printf("# open waited %llu ms for a 1500 ms decision (timeout 300 ms)\n",
           (unsigned long long)(khx_now_ms() - t0));
    assert_true(atomic_load(&fx.timeouts) >= 1);
    /* The late DENY is not written again, and stopping waits for it. */
    plat_rtp_stop(fx.rtp);
    fx.rtp = NULL;
    assert_true(atomic_load(&fx.slow_done_ms) != 0);
}

static void rtp_stop_with_pending_events_does_not_hang(void **state)
{
    (void)state;
    REQUIRE_FANOTIFY();
    const char *p = path_in(fx.dir, "slow.txt");
    put(fx.dir, "slow.txt", "BAD and slow");
    fx.slow_ms = 1500;
    start(60000, 1, NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_open(p, NULL));
    uint64_t end = khx_now_ms() + 5000;
    while (!atomic_load(&fx.in_slow) && khx_now_ms() < end)
        usleep(5000);
    assert_true(atomic_load(&fx.in_slow));
    int status = 0;
    uint64_t t0 = khx_now_ms();
    plat_rtp_stop(fx.rtp);
    fx.rtp = NULL;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    printf("# stop returned after %llu ms (a decision was running)\n",
           (unsigned long long)(khx_now_ms() - t0));
    /* Allowed by stop, although the running decision would have denied it. */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

enum { FLOOD = 1200 }; /* more than the layer's 1,024 slots */

static void *flood_open(void *arg)
{
    return (void *)(intptr_t)child_open(arg, NULL);
}

/* Runs in a child: opens FLOOD files at once, one thread each. */
static int flood_child(const char *dir, const char *unused)
{
    (void)unused;
    static pthread_t t[FLOOD];
    static char paths[FLOOD][600];
    pthread_attr_t attr;
    int failed = 0;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (int i = 0; i < FLOOD; i++) {
        snprintf(paths[i], sizeof(paths[i]), "%.500s/slow-%04d", dir, i);
        if (pthread_create(&t[i], &attr, flood_open, paths[i]) != 0)
            return 254;
    }
    for (int i = 0; i < FLOOD; i++) {
        void *rc = NULL;
        pthread_join(t[i], &rc);
        failed += rc != NULL;
    }
    return failed > 250 ? 250 : failed;
}

static void rtp_full_queue_allows_at_once_and_counts_overflows(void **state)
{
    (void)state;
    REQUIRE_FANOTIFY();
    char name[32];
    for (int i = 0; i < FLOOD; i++) {
        snprintf(name, sizeof(name), "slow-%04d", i);
        put(fx.dir, name, "clean");
    }
    fx.slow_ms = 100;
    start(1000, 1, NULL);
    assert_int_equal(in_child(flood_child, fx.dir, NULL), 0);
    struct plat_rtp_stats st;
    plat_rtp_stats(fx.rtp, &st);
    printf("# %d opens at once: %llu overflows, %llu timeouts, %llu decided\n", FLOOD,
           (unsigned long long)st.overflows, (unsigned long long)st.timeouts,
           (unsigned long long)st.decided);
    assert_true(st.overflows >= 1);
    assert_true(st.timeouts >= 1);
}

static void rtp_start_rejects_missing_folder(void **state)
{
    (void)state;
    const char *paths[] = {"/nonexistent/khien/folder"};
    struct plat_rtp_opts o = {.paths = paths, .npaths = 1, .decide = decide, .ud = &fx};
    char err[256] = "";
    struct plat_rtp *r = NULL;
    assert_int_equal(plat_rtp_start(&o, &r, err, sizeof(err)), KH_EINVAL);
    assert_null(r);
    assert_non_null(strstr(err, "/nonexistent/khien/folder"));
    o.npaths = 0;
    assert_int_equal(plat_rtp_start(&o, &r, err, sizeof(err)), KH_EINVAL);
}

/* Opens, reads and closes every file in a child; returns the milliseconds. */
static uint64_t timed_pass(const char *dir, unsigned nfiles)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char path[PATH_MAX], buf[256];
        uint64_t t0 = khx_now_ms(), ms;
        int bad = 0;
        for (unsigned i = 0; i < nfiles; i++) {
            snprintf(path, sizeof(path), "%.3000s/f%05u", dir, i);
            int fd = open(path, O_RDONLY);
            if (fd < 0 || read(fd, buf, sizeof(buf)) <= 0)
                bad = 1;
            if (fd >= 0)
                close(fd);
        }
        ms = bad ? UINT64_MAX : khx_now_ms() - t0;
        _exit(write(pfd[1], &ms, sizeof(ms)) == sizeof(ms) ? 0 : 1);
    }
    close(pfd[1]);
    uint64_t ms = UINT64_MAX;
    assert_int_equal(read(pfd[0], &ms, sizeof(ms)), (ssize_t)sizeof(ms));
    close(pfd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(ms != UINT64_MAX);
    return ms;
}

static void rtp_overhead_of_open_read_close(void **state)
{
    (void)state;
    REQUIRE_FANOTIFY();
    enum { NFILES = 10000 };
    char name[32], content[64];
    for (unsigned i = 0; i < NFILES; i++) {
        snprintf(name, sizeof(name), "f%05u", i);
        snprintf(content, sizeof(content), "clean file number %u\n", i);
        put(fx.dir, name, content);
        put(fx.outside, name, content);
    }
    uint64_t off = timed_pass(fx.dir, NFILES);
    uint64_t off_out = timed_pass(fx.outside, NFILES);
    start(5000, 4, NULL);
    struct plat_rtp_stats s0, s1, s2, s3;
    plat_rtp_stats(fx.rtp, &s0);
    uint64_t first = timed_pass(fx.dir, NFILES);
    plat_rtp_stats(fx.rtp, &s1);
    uint64_t second = timed_pass(fx.dir, NFILES);
    plat_rtp_stats(fx.rtp, &s2);
    uint64_t on_out = timed_pass(fx.outside, NFILES);
    plat_rtp_stats(fx.rtp, &s3);
    plat_rtp_stop(fx.rtp);
    fx.rtp = NULL;
    uint64_t off_again = timed_pass(fx.dir, NFILES);
    printf("# overhead, %d small files opened+read+closed by one process:\n", NFILES);
    printf("#   protection off:               %6llu ms\n", (unsigned long long)off);
    printf("#   on, first pass (all decided): %6llu ms (%llu decided, %llu cached, %llu "
           "overflows)\n",
           (unsigned long long)first, (unsigned long long)(s1.decided - s0.decided),
           (unsigned long long)(s1.cached - s0.cached),
           (unsigned long long)(s1.overflows - s0.overflows));
    printf("#   on, second pass (cached):     %6llu ms (%llu decided, %llu events)\n",
           (unsigned long long)second, (unsigned long long)(s2.decided - s1.decided),
           (unsigned long long)(s2.events - s1.events));
    printf("#   off again after stop:         %6llu ms\n", (unsigned long long)off_again);
    printf("#   outside the protected folder, same mount: off %llu ms, on %llu ms (%llu events "
           "answered by the reader)\n",
           (unsigned long long)off_out, (unsigned long long)on_out,
           (unsigned long long)(s3.events - s2.events));
    printf("#   errors %llu\n", (unsigned long long)s3.errors);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rtp_start_rejects_missing_folder),
        cmocka_unit_test_setup_teardown(rtp_denies_open_of_file_the_decider_rejects, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rtp_own_process_is_never_decided, setup, teardown),
        cmocka_unit_test_setup_teardown(rtp_allow_children_lets_direct_children_through, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rtp_excluded_folder_is_not_decided, setup, teardown),
        cmocka_unit_test_setup_teardown(rtp_files_outside_protected_folder_never_reach_decide,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(rtp_close_write_reaches_decide_with_path, setup, teardown),
        cmocka_unit_test_setup_teardown(rtp_clean_verdict_is_cached_until_modified, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rtp_flush_cache_decides_again, setup, teardown),
        cmocka_unit_test_setup_teardown(rtp_exec_is_decided_and_a_denied_exec_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rtp_slow_decision_times_out_and_open_succeeds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rtp_stop_with_pending_events_does_not_hang, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rtp_full_queue_allows_at_once_and_counts_overflows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rtp_overhead_of_open_read_close, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
