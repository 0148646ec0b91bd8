/*
 * The agent's event spool (agent/spool.c): events come back oldest first and
 * compact, the count and byte limits drop and count what does not fit (the
 * count surviving a restart), an ack removes exactly its batch, a reopened
 * spool continues the sequence even when it was emptied, a damaged file is
 * dropped, concurrent puts all land with distinct sequence numbers, and a
 * writer killed with SIGKILL at random moments never loses an event it was
 * told was stored nor leaves half-written files behind.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <khien/khien.h>

#include "spool.h"

static char *spool_dir(const char *tmp)
{
    char *p = malloc(strlen(tmp) + 8);
    sprintf(p, "%s/spool", tmp);
    return p;
}

static struct spool *open_ok(const char *dir, size_t max_events, uint64_t max_bytes)
{
    struct spool *sp = NULL;
    char err[256] = "";
    int r = spool_open(dir, max_events, max_bytes, &sp, err, sizeof(err));
    if (r != KH_OK)
        fprintf(stderr, "spool_open: %s\n", err);
    assert_int_equal(r, KH_OK);
    return sp;
}

static uint64_t put_ok(struct spool *sp, const char *json)
{
    uint64_t seq = 0;
    assert_int_equal(spool_put_seq(sp, json, strlen(json), &seq), KH_OK);
    assert_true(seq > 0);
    return seq;
}

/* Counts the folder's entries whose name ends with `suffix` ("" = all but
 * "." and ".."). */
static size_t count_files(const char *dir, const char *suffix)
{
    size_t n = 0, k = strlen(suffix);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (len >= k && strcmp(de->d_name + len - k, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static size_t count_named(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0 ? 1 : 0;
}

static void spool_events_come_back_oldest_first_and_compact(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char *dir = spool_dir(tmp);
    struct spool *sp = open_ok(dir, 0, 0);
    uint64_t a = put_ok(sp, " { \"id\" : \"a\", \"n\" : [1, 2] } ");
    uint64_t b = put_ok(sp, "{\"id\":\"b\"}");
    uint64_t c = put_ok(sp, "{\n  \"id\": \"c\"\n}\n");
    assert_true(a < b && b < c);

    struct spool_batch bt;
    assert_int_equal(spool_peek(sp, 0, 0, &bt), KH_OK);
    assert_string_equal(bt.json, "[{\"id\":\"a\",\"n\":[1,2]},{\"id\":\"b\"},{\"id\":\"c\"}]");
    assert_int_equal(bt.len, strlen(bt.json));
    assert_int_equal(bt.count, 3);
    assert_true(bt.seqs[0] == a && bt.seqs[1] == b && bt.seqs[2] == c);
    /* Peeking does not consume. */
    struct spool_batch again;
    assert_int_equal(spool_peek(sp, 2, 0, &again), KH_OK);
    assert_int_equal(again.count, 2);
    assert_string_equal(again.json, "[{\"id\":\"a\",\"n\":[1,2]},{\"id\":\"b\"}]");
    spool_batch_free(&again);
    spool_batch_free(&bt);

    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.events, 3);
    assert_int_equal(st.bytes, strlen("{\"id\":\"a\",\"n\":[1,2]}{\"id\":\"b\"}{\"id\":\"c\"}"));
    assert_int_equal(st.dropped, 0);
    assert_int_equal(count_files(dir, ".ev"), 3);
    spool_close(sp);
    free(dir);
    tu_rmtree(tmp);
}

static void spool_empty_peek_gives_empty_array(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char *dir = spool_dir(tmp);
    struct spool *sp = open_ok(dir, 0, 0);
    struct spool_batch bt;
    assert_int_equal(spool_peek(sp, 10, 1000, &bt), KH_OK);
    assert_int_equal(bt.count, 0);
    assert_string_equal(bt.json, "[]");
    assert_int_equal(bt.len, 2);
    assert_int_equal(spool_ack(sp, &bt), KH_OK);
    spool_batch_free(&bt);
    spool_close(sp);
    free(dir);
    tu_rmtree(tmp);
}

static void spool_put_refuses_what_is_not_one_json_object(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char *dir = spool_dir(tmp);
    struct spool *sp = open_ok(dir, 0, 0);
    const char *bad[] = {"[1,2]",
                         "\"x\"",
                         "{\"a\":1} {\"b\":2}",
                         "{\"a\":",
                         "{\"a\":1,\"a\":2}",
                         "{\"a\":\"\\u0000\"}",
                         "42"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(spool_put(sp, bad[i], strlen(bad[i])), KH_EINVAL);
    assert_int_equal(spool_put(sp, "{}", 0), KH_EINVAL);
    assert_int_equal(spool_put(sp, NULL, 3), KH_EINVAL);

    /* Exactly the limit is accepted, one byte more is not. */
    char *big = malloc(SPOOL_EVENT_MAX + 2);
    memset(big, 'x', SPOOL_EVENT_MAX + 1);
    memcpy(big, "{\"p\":\"", 6);
    memcpy(big + SPOOL_EVENT_MAX - 2, "\"}", 2);
    assert_int_equal(spool_put(sp, big, SPOOL_EVENT_MAX), KH_OK);
    memcpy(big + SPOOL_EVENT_MAX - 2, "x\"}", 3);
    assert_int_equal(spool_put(sp, big, SPOOL_EVENT_MAX + 1), KH_EINVAL);
    free(big);

    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.events, 1);
    assert_int_equal(st.dropped, 0); /* refused events are not "dropped" ones */
    spool_close(sp);
    free(dir);
    tu_rmtree(tmp);
}

static void spool_full_by_count_drops_and_counts(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char *dir = spool_dir(tmp);
    struct spool *sp = open_ok(dir, 3, 0);
    for (int i = 0; i < 3; i++)
        put_ok(sp, "{\"k\":1}");
    assert_int_equal(spool_put(sp, "{\"k\":2}", 7), KH_ELIMIT);
    assert_int_equal(spool_put(sp, "{\"k\":3}", 7), KH_ELIMIT);
    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.events, 3);
    assert_int_equal(st.dropped, 2);
    assert_int_equal(count_files(dir, ".ev"), 3);

    /* Acknowledging makes room again. */
    struct spool_batch bt;
    assert_int_equal(spool_peek(sp, 1, 0, &bt), KH_OK);
    assert_int_equal(spool_ack(sp, &bt), KH_OK);
    spool_batch_free(&bt);
    put_ok(sp, "{\"k\":4}");
    spool_close(sp);
    free(dir);
    tu_rmtree(tmp);
}

static void spool_full_by_bytes_drops_and_counts(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char *dir = spool_dir(tmp);
    struct spool *sp = open_ok(dir, 0, 20);
    put_ok(sp, "{\"a\":\"0123456789\"}"); /* 18 bytes */
    assert_int_equal(spool_put(sp, "{\"b\":1}", 7), KH_ELIMIT);
    put_ok(sp, "{}"); /* 2 more bytes fit exactly */
    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.events, 2);
    assert_int_equal(st.bytes, 20);
    assert_int_equal(st.dropped, 1);
    spool_close(sp);
    free(dir);
    tu_rmtree(tmp);
}

static void spool_dropped_count_survives_restart_until_taken(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char *dir = spool_dir(tmp);
    struct spool *sp = open_ok(dir, 1, 0);
    put_ok(sp, "{}");
    for (int i = 0; i < 5; i++)
        assert_int_equal(spool_put(sp, "{}", 2), KH_ELIMIT);
    spool_close(sp);

    sp = open_ok(dir, 1, 0);
    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.dropped, 5);
    assert_int_equal(st.events, 1);
    assert_int_equal(spool_take_dropped(sp), 5);
    assert_int_equal(spool_take_dropped(sp), 0);
    spool_close(sp);

    sp = open_ok(dir, 1, 0);
    spool_stats(sp, &st);
    assert_int_equal(st.dropped, 0); /* the reset was saved too */
    spool_close(sp);
    free(dir);
    tu_rmtree(tmp);
}

static void spool_ack_removes_only_the_batch(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char *dir = spool_dir(tmp);
    struct spool *sp = open_ok(dir, 0, 0);
    uint64_t s[5];
    char ev[64];
    for (int i = 0; i < 5; i++) {
        snprintf(ev, sizeof(ev), "{\"i\":%d}", i);
        s[i] = put_ok(sp, ev);
    }
    struct spool_batch bt;
    assert_int_equal(spool_peek(sp, 2, 0, &bt), KH_OK);
    assert_int_equal(bt.count, 2);
    /* An event stored between peek and ack stays. */
    uint64_t late = put_ok(sp, "{\"i\":5}");
    assert_int_equal(spool_ack(sp, &bt), KH_OK);
    assert_int_equal(spool_ack(sp, &bt), KH_OK); /* again: nothing left to remove */
    spool_batch_free(&bt);

    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.events, 4);
    assert_int_equal(count_files(dir, ".ev"), 4);
    assert_int_equal(spool_peek(sp, 0, 0, &bt), KH_OK);
    assert_int_equal(bt.count, 4);
    assert_true(bt.seqs[0] == s[2] && bt.seqs[1] == s[3] && bt.seqs[2] == s[4] &&
                bt.seqs[3] == late);
    assert_string_equal(bt.json, "[{\"i\":2},{\"i\":3},{\"i\":4},{\"i\":5}]");
    spool_batch_free(&bt);
    spool_close(sp);
    free(dir);
    tu_rmtree(tmp);
}

static void spool_peek_stops_at_max_bytes_but_gives_one_event(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char *dir = spool_dir(tmp);
    struct spool *sp = open_ok(dir, 0, 0);
    put_ok(sp, "{\"a\":1}"); /* 7 bytes */
    put_ok(sp, "{\"b\":2}");
    put_ok(sp, "{\"c\":3}");
    struct spool_batch bt;
    /* "[" + 7 + "," + 7 + "]" = 17 bytes: two events fit in 17, not in 16. */
    assert_int_equal(spool_peek(sp, 0, 17, &bt), KH_OK);
    assert_int_equal(bt.count, 2);
    assert_int_equal(bt.len, 17);
    spool_batch_free(&bt);
    assert_int_equal(spool_peek(sp, 0, 16, &bt), KH_OK);
    assert_int_equal(bt.count, 1);
    spool_batch_free(&bt);
    assert_int_equal(spool_peek(sp, 0, 1, &bt), KH_OK);
    assert_int_equal(bt.count, 1);
    assert_string_equal(bt.json, "[{\"a\":1}]");
    spool_batch_free(&bt);
    spool_close(sp);
    free(dir);
    tu_rmtree(tmp);
}

static void spool_reopen_continues_the_sequence_even_when_emptied(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char *dir = spool_dir(tmp);
    struct spool *sp = open_ok(dir, 0, 0);
    uint64_t last = 0;
    for (int i = 0; i < 3; i++)
        last = put_ok(sp, "{}");
    struct spool_batch bt;
    assert_int_equal(spool_peek(sp, 0, 0, &bt), KH_OK);
    assert_int_equal(spool_ack(sp, &bt), KH_OK);
    spool_batch_free(&bt);
    assert_int_equal(count_files(dir, ".ev"), 0);
    spool_close(sp);

    /* A crash's leftovers: a half-written event, a half-written state file. */
    char *t1 = tu_write(dir, "00000000000000ff.tmp", "{\"half", 6);
    char *t2 = tu_write(dir, "seq.tmp", "9", 1);
    char *other = tu_write(dir, "README", "not ours", 8);
    sp = open_ok(dir, 0, 0);
    struct stat st;
    assert_int_equal(stat(t1, &st), -1);
    assert_int_equal(stat(t2, &st), -1);
    assert_int_equal(stat(other, &st), 0); /* unknown files are left alone */
    uint64_t next = put_ok(sp, "{}");
    assert_true(next > last);
    spool_close(sp);

    /* Events still on disk count too, even if "seq" were lost. */
    char seqfile[512];
    snprintf(seqfile, sizeof(seqfile), "%s/seq", dir);
    unlink(seqfile);
    sp = open_ok(dir, 0, 0);
    assert_true(put_ok(sp, "{}") > next);
    spool_close(sp);
    free(t1);
    free(t2);
    free(other);
    free(dir);
    tu_rmtree(tmp);
}

static void spool_damaged_file_is_dropped_and_counted(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char *dir = spool_dir(tmp);
    struct spool *sp = open_ok(dir, 0, 0);
    put_ok(sp, "{\"i\":1}");
    uint64_t s2 = put_ok(sp, "{\"i\":2}");
    uint64_t s3 = put_ok(sp, "{\"i\":3}");
    put_ok(sp, "{\"i\":4}");
    char name[64];
    snprintf(name, sizeof(name), "%016" PRIx64 ".ev", s2);
    free(tu_write(dir, name, "{\"i\":2", 6)); /* truncated */
    snprintf(name, sizeof(name), "%016" PRIx64 ".ev", s3);
    free(tu_write(dir, name, "[3]", 3)); /* JSON, not an object */

    struct spool_batch bt;
    assert_int_equal(spool_peek(sp, 0, 0, &bt), KH_OK);
    assert_int_equal(bt.count, 2);
    assert_string_equal(bt.json, "[{\"i\":1},{\"i\":4}]");
    spool_batch_free(&bt);
    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.events, 2);
    assert_int_equal(st.dropped, 2);
    assert_int_equal(count_files(dir, ".ev"), 2);
    spool_close(sp);
    free(dir);
    tu_rmtree(tmp);
}

static void spool_second_open_is_refused(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char *dir = spool_dir(tmp);
    struct spool *sp = open_ok(dir, 0, 0), *sp2 = NULL;
    char err[256] = "";
    assert_int_equal(spool_open(dir, 0, 0, &sp2, err, sizeof(err)), KH_EIO);
    assert_null(sp2);
    assert_non_null(strstr(err, "in use"));
    spool_close(sp);
    spool_close(NULL);
    free(dir);
    tu_rmtree(tmp);
}

#define PUT_THREADS 8
#define PUT_EACH    100

struct putter {
    struct spool *sp;
    int t;
    uint64_t seqs[PUT_EACH];
    int failures;
};

static void *put_loop(void *arg)
{
    struct putter *p = arg;
    char ev[64];
    for (int i = 0; i < PUT_EACH; i++) {
        snprintf(ev, sizeof(ev), "{\"id\":\"t%d-%d\"}", p->t, i);
        if (spool_put_seq(p->sp, ev, strlen(ev), &p->seqs[i]) != KH_OK)
            p->failures++;
    }
    return NULL;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void spool_concurrent_puts_all_land_with_distinct_numbers(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char *dir = spool_dir(tmp);
    struct spool *sp = open_ok(dir, 0, 0);
    static struct putter p[PUT_THREADS];
    pthread_t th[PUT_THREADS];
    for (int t = 0; t < PUT_THREADS; t++) {
        memset(&p[t], 0, sizeof(p[t]));
        p[t].sp = sp;
        p[t].t = t;
        assert_int_equal(pthread_create(&th[t], NULL, put_loop, &p[t]), 0);
    }
    for (int t = 0; t < PUT_THREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);

    static uint64_t all[PUT_THREADS * PUT_EACH];
    size_t n = 0;
    for (int t = 0; t < PUT_THREADS; t++) {
        assert_int_equal(p[t].failures, 0);
        for (int i = 0; i < PUT_EACH; i++)
            all[n++] = p[t].seqs[i];
    }
    qsort(all, n, sizeof(all[0]), u64_cmp);
    for (size_t i = 1; i < n; i++)
        assert_true(all[i] > all[i - 1]);

    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.events, n);
    struct spool_batch bt;
    assert_int_equal(spool_peek(sp, n, 0, &bt), KH_OK);
    assert_int_equal(bt.count, n);
    for (size_t i = 0; i < n; i++)
        assert_true(bt.seqs[i] == all[i]); /* oldest first */
    json_t *arr = json_loads(bt.json, 0, NULL);
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), n);
    /* Every thread's every event, once. */
    static unsigned char seen[PUT_THREADS][PUT_EACH];
    memset(seen, 0, sizeof(seen));
    for (size_t i = 0; i < n; i++) {
        int t, k;
        const char *id = json_string_value(json_object_get(json_array_get(arr, i), "id"));
        assert_non_null(id);
        assert_int_equal(sscanf(id, "t%d-%d", &t, &k), 2);
        assert_true(t >= 0 && t < PUT_THREADS && k >= 0 && k < PUT_EACH);
        assert_int_equal(seen[t][k], 0);
        seen[t][k] = 1;
    }
    json_decref(arr);
    spool_batch_free(&bt);
    spool_close(sp);
    free(dir);
    tu_rmtree(tmp);
}

/* ------------------------------------------------------------------------ */
/* kill -9                                                                   */
/* ------------------------------------------------------------------------ */

enum { EV_UNKNOWN = 0, EV_STORED, EV_ACKING, EV_ACKED };

struct crash_log {
    uint64_t *seq;
    int *state;
    char (*id)[32];
    size_t n, cap;
};

static size_t crash_find(struct crash_log *lg, uint64_t seq)
{
    for (size_t i = lg->n; i-- > 0;)
        if (lg->seq[i] == seq)
            return i;
    return SIZE_MAX;
}

/* The child: stores events as fast as it can, and every 13 puts
 * acknowledges a batch of up to 16 (so the spool is often emptied, and the
 * next sequence number must come from the "seq" file), saying on the pipe
 * what it was told. */
static void crash_child(const char *dir, int round, int wfd)
{
    struct spool *sp = NULL;
    char err[256], ev[256], line[64];
    if (spool_open(dir, 0, 0, &sp, err, sizeof(err)) != KH_OK) {
        fprintf(stderr, "child: %s\n", err);
        _exit(2);
    }
    for (unsigned i = 0;; i++) {
        uint64_t seq;
        /* Sizes vary so a kill lands in writes of different lengths. */
        int n = snprintf(ev, sizeof(ev), "{\"id\":\"r%d-%u\",\"pad\":\"%.*s\"}", round, i,
                         (int)(i * 37 % 150),
                         "..................................................."
                         "..................................................."
                         "................................................");
        if (spool_put_seq(sp, ev, (size_t)n, &seq) == KH_OK) {
            n = snprintf(line, sizeof(line), "P %" PRIu64 " r%d-%u\n", seq, round, i);
            if (write(wfd, line, (size_t)n) != n)
                _exit(3);
        }
        if (i % 13 == 12) {
            struct spool_batch bt;
            if (spool_peek(sp, 16, 0, &bt) != KH_OK)
                _exit(4);
            for (size_t k = 0; k < bt.count; k++) {
                n = snprintf(line, sizeof(line), "T %" PRIu64 "\n", bt.seqs[k]);
                if (write(wfd, line, (size_t)n) != n)
                    _exit(3);
            }
            if (spool_ack(sp, &bt) != KH_OK)
                _exit(5);
            for (size_t k = 0; k < bt.count; k++) {
                n = snprintf(line, sizeof(line), "A %" PRIu64 "\n", bt.seqs[k]);
                if (write(wfd, line, (size_t)n) != n)
                    _exit(3);
            }
            spool_batch_free(&bt);
        }
    }
}

static void crash_line(struct crash_log *lg, const char *line)
{
    uint64_t seq;
    char id[32];
    if (line[0] == 'P') {
        assert_int_equal(sscanf(line, "P %" SCNu64 " %31s", &seq, id), 2);
        /* A number is never given twice, across every restart. */
        assert_true(crash_find(lg, seq) == SIZE_MAX);
        if (lg->n == lg->cap) {
            lg->cap = lg->cap ? lg->cap * 2 : 1024;
            lg->seq = realloc(lg->seq, lg->cap * sizeof(*lg->seq));
            lg->state = realloc(lg->state, lg->cap * sizeof(*lg->state));
            lg->id = realloc(lg->id, lg->cap * sizeof(*lg->id));
        }
        lg->seq[lg->n] = seq;
        lg->state[lg->n] = EV_STORED;
        memcpy(lg->id[lg->n], id, sizeof(id));
        lg->n++;
        return;
    }
    assert_int_equal(sscanf(line + 1, " %" SCNu64, &seq), 1);
    size_t i = crash_find(lg, seq);
    /* An event whose "P" line the kill cut off can still be peeked. */
    if (i == SIZE_MAX)
        return;
    lg->state[i] = line[0] == 'T' ? EV_ACKING : EV_ACKED;
}

static void crash_round(const char *dir, int round, unsigned *seed, struct crash_log *lg)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        crash_child(dir, round, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    /* Somewhere between 10 and 250 ms into the child's life, which covers
     * its open, its puts and its acks. */
    int delay_ms = 10 + (int)(rand_r(seed) % 240);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char buf[8192], line[128];
    size_t ll = 0;
    int killed = 0;
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (!killed && elapsed >= delay_ms) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        struct pollfd pfd = {fds[0], POLLIN, 0};
        int pr = poll(&pfd, 1, killed ? 1000 : (int)(delay_ms - elapsed));
        if (pr <= 0)
            continue;
        ssize_t k = read(fds[0], buf, sizeof(buf));
        if (k <= 0)
            break; /* EOF: the child is gone */
        for (ssize_t j = 0; j < k; j++) {
            if (buf[j] != '\n') {
                assert_true(ll + 1 < sizeof(line));
                line[ll++] = buf[j];
                continue;
            }
            line[ll] = '\0';
            crash_line(lg, line);
            ll = 0;
        }
    }
    assert_int_equal(ll, 0); /* lines are written whole (pipe writes under PIPE_BUF) */
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
        fail_msg("the child ended by itself (status %d)", status);
}

static void spool_survives_kill9_at_random_points(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char *dir = spool_dir(tmp);
    unsigned seed = (unsigned)time(NULL);
    struct crash_log lg = {0};
    printf("kill -9 test seed %u\n", seed);
    for (int round = 0; round < 10; round++)
        crash_round(dir, round, &seed, &lg);
    assert_true(lg.n > 0);

    struct spool *sp = open_ok(dir, 0, 0);
    /* Only whole events and the two state files remain. */
    assert_int_equal(count_files(dir, ".tmp"), 0);
    size_t nev = count_files(dir, ".ev");
    assert_int_equal(count_files(dir, ""),
                     nev + count_named(dir, "seq") + count_named(dir, "dropped"));
    struct spool_batch bt;
    assert_int_equal(spool_peek(sp, SIZE_MAX, SIZE_MAX, &bt), KH_OK);
    assert_int_equal(bt.count, nev); /* every file on disk is a valid event */
    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.dropped, 0);
    json_t *arr = json_loads(bt.json, 0, NULL);
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), bt.count);

    size_t stored = 0, acked = 0;
    for (size_t i = 0; i < lg.n; i++) {
        size_t found = 0;
        for (size_t k = 0; k < bt.count; k++) {
            const char *id = json_string_value(json_object_get(json_array_get(arr, k), "id"));
            assert_non_null(id);
            if (strcmp(id, lg.id[i]) == 0) {
                assert_true(bt.seqs[k] == lg.seq[i]);
                found++;
            }
        }
        if (lg.state[i] == EV_STORED) {
            assert_int_equal(found, 1); /* stored: present exactly once */
            stored++;
        } else if (lg.state[i] == EV_ACKED) {
            assert_int_equal(found, 0);
            acked++;
        } else {
            assert_true(found <= 1); /* killed during its ack: either is right */
        }
    }
    printf("kill -9 test: %zu events reported stored, %zu still stored, %zu acked, %zu files\n",
           lg.n, stored, acked, nev);
    /* After all that, the next number is still new. */
    uint64_t next = put_ok(sp, "{}");
    for (size_t i = 0; i < lg.n; i++)
        assert_true(next > lg.seq[i]);
    json_decref(arr);
    spool_batch_free(&bt);
    spool_close(sp);
    free(lg.seq);
    free(lg.state);
    free(lg.id);
    free(dir);
    tu_rmtree(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spool_events_come_back_oldest_first_and_compact),
        cmocka_unit_test(spool_empty_peek_gives_empty_array),
        cmocka_unit_test(spool_put_refuses_what_is_not_one_json_object),
        cmocka_unit_test(spool_full_by_count_drops_and_counts),
        cmocka_unit_test(spool_full_by_bytes_drops_and_counts),
        cmocka_unit_test(spool_dropped_count_survives_restart_until_taken),
        cmocka_unit_test(spool_ack_removes_only_the_batch),
        cmocka_unit_test(spool_peek_stops_at_max_bytes_but_gives_one_event),
        cmocka_unit_test(spool_reopen_continues_the_sequence_even_when_emptied),
        cmocka_unit_test(spool_damaged_file_is_dropped_and_counted),
        cmocka_unit_test(spool_second_open_is_refused),
        cmocka_unit_test(spool_concurrent_puts_all_land_with_distinct_numbers),
        cmocka_unit_test(spool_survives_kill9_at_random_points),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
