/*
 * The background job runner (jobs.h). A job's row in `jobs` holds when it
 * runs next and who holds it: a process takes a due job with one UPDATE
 * that succeeds only if the job is due and its lease has run out, so two
 * servers never run the same job at once, and a lease outlives a crashed
 * server by at most LEASE seconds. Jobs run one after another on this
 * thread; each borrows a connection from the pool for the pass.
 */
#include "jobs.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "federation.h"
#include "khx.h"
#include "index.h"
#include "server_int.h"
#include "sharing.h"

#define LEASE 900 /* seconds a run may take before another server may take the job over */
#define TICK  5   /* seconds between looks at the table */

/* The month's snapshots are written within an hour of the month's end. */
static unsigned index_month_interval(const struct srv_config *cfg)
{
    (void)cfg;
    return 3600;
}

/* Each job is one row: its name in the `jobs` table, how often it runs
 * under the configuration (0 = off), and the run. */
const struct srv_job srv_jobs[] = {
    {"index-month", index_month_interval, idx_job_month}, /* report/index.c */
    {SHARE_JOB_NAME, share_job_interval, share_job_run},  /* report/sharing.c */
    {"federation-push", fed_push_interval, fed_job_push}, /* report/federation_push.c */
};
const size_t srv_njobs = sizeof(srv_jobs) / sizeof(srv_jobs[0]);

static unsigned retry_delay(int64_t failures, unsigned interval)
{
    uint64_t d = 60;
    for (int64_t i = 1; i < failures && d < interval; i++)
        d *= 2;
    return d < interval ? (unsigned)d : interval;
}

static int run_one(struct srv *s, struct store_db *db, const struct srv_job *j, unsigned interval,
                   const char *owner, int64_t now)
{
    int64_t changes = 0, failures = 0;
    struct store_stmt *st = NULL;
    /* A read first: most looks find nothing due, and they must not take
     * the write lock that ingestion needs. */
    int r = store_queryf(
        db, &st, "SELECT next_run, lease_until, failures FROM jobs WHERE name = $1", "t", j->name);
    if (r < 0)
        return r;
    if (r == STORE_DONE) {
        r = store_execf(
            db, NULL,
            "INSERT INTO jobs (name, next_run) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", "ti",
            j->name, now);
    } else if (store_col_int(st, 0) > now || store_col_int(st, 1) >= now) {
        r = 1; /* not due, or another server holds it */
    } else {
        failures = store_col_int(st, 2);
        r = 0;
    }
    store_finalize(st);
    if (r != 0)
        return r < 0 ? r : 0;
    r = store_execf(db, &changes,
                    "UPDATE jobs SET lease_owner = $1, lease_until = $2, last_start = $3"
                    " WHERE name = $4 AND next_run <= $3 AND lease_until < $3",
                    "tiit", owner, now + LEASE, now, j->name);
    if (r != 0 || changes != 1)
        return r;

    char msg[512] = "";
    int ok = j->run(s, db, now, msg, sizeof(msg)) == 0;
    store_rollback(db); /* a job that left a transaction open must not hold it */
    int64_t end = (int64_t)time(NULL);
    if (end < now)
        end = now;
    failures = ok ? 0 : failures + 1;
    int64_t next = ok ? now + interval : end + retry_delay(failures, interval);
    srv_log("job %s: %s%s", j->name, ok ? "" : "failed: ", msg);
    r = store_execf(
        db, NULL,
        "UPDATE jobs SET next_run = $1, lease_owner = '', lease_until = 0, last_end = $2,"
        " last_ok = $3, failures = $4, last_message = $5 WHERE name = $6 AND lease_owner = $7",
        "iiiittt", next, end, (int64_t)ok, failures, msg, j->name, owner);
    return r != 0 ? r : 1;
}

int jobs_run_due(struct srv *s, struct store_db *db, const char *owner, int64_t now)
{
    int n = 0;
    for (size_t i = 0; i < srv_njobs; i++) {
        unsigned interval = srv_jobs[i].interval(&s->cfg);
        if (interval == 0)
            continue;
        int r = run_one(s, db, &srv_jobs[i], interval, owner, now);
        if (r < 0)
            return r;
        n += r;
    }
    return n;
}

int jobs_trigger(struct store_db *db, const char *name, int64_t now)
{
    size_t i = 0;
    while (i < srv_njobs && strcmp(srv_jobs[i].name, name) != 0)
        i++;
    if (i == srv_njobs)
        return -1;
    int r = store_execf(
        db, NULL, "INSERT INTO jobs (name, next_run) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        "ti", name, now);
    if (r == 0)
        r = store_execf(db, NULL, "UPDATE jobs SET next_run = $1 WHERE name = $2", "it", now, name);
    return r == 0 ? 0 : -1;
}

struct jobs {
    struct srv *srv;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
    char owner[128];
};

static void *loop(void *arg)
{
    struct jobs *sc = arg;
    pthread_mutex_lock(&sc->lock);
    while (!sc->stop) {
        pthread_mutex_unlock(&sc->lock);
        struct store_db *db = srv_pool_get(sc->srv->pool);
        if (db != NULL) {
            int r = jobs_run_due(sc->srv, db, sc->owner, (int64_t)time(NULL));
            if (r < 0)
                srv_log("jobs: %s: %s", store_strerror(r), store_errmsg(db));
            srv_pool_put(sc->srv->pool, db);
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += TICK;
        pthread_mutex_lock(&sc->lock);
        while (!sc->stop && pthread_cond_timedwait(&sc->wake, &sc->lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&sc->lock);
    return NULL;
}

int jobs_start(struct srv *s, struct jobs **out, char *err, size_t errlen)
{
    struct jobs *sc = calloc(1, sizeof(*sc));
    if (sc == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    sc->srv = s;
    char host[64] = "?";
    gethostname(host, sizeof(host) - 1);
    snprintf(sc->owner, sizeof(sc->owner), "%s:%ld:%lx", host, (long)getpid(),
             (unsigned long)khx_now_ms());
    pthread_mutex_init(&sc->lock, NULL);
    pthread_cond_init(&sc->wake, NULL);
    if (pthread_create(&sc->thread, NULL, loop, sc) != 0) {
        pthread_mutex_destroy(&sc->lock);
        pthread_cond_destroy(&sc->wake);
        free(sc);
        snprintf(err, errlen, "cannot start the job thread");
        return -1;
    }
    *out = sc;
    return 0;
}

void jobs_stop(struct jobs *sc)
{
    if (sc == NULL)
        return;
    pthread_mutex_lock(&sc->lock);
    sc->stop = 1;
    pthread_cond_signal(&sc->wake);
    pthread_mutex_unlock(&sc->lock);
    pthread_join(sc->thread, NULL);
    pthread_mutex_destroy(&sc->lock);
    pthread_cond_destroy(&sc->wake);
    free(sc);
}
