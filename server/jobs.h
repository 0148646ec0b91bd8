/*
 * Background jobs of the server: work that runs on a schedule rather than
 * on a request (closing the month's index snapshots, sending the AVReport to
 * the national system, pushing statistics to a parent server). One thread
 * per server process looks every few seconds for jobs that are due. The
 * schedule and a lease are rows of the `jobs` table (migration 6), so of
 * several servers sharing one PostgreSQL exactly one runs a due job, and a
 * job whose server died is taken over when its lease runs out.
 */
#ifndef KHIEN_SERVER_JOBS_H
#define KHIEN_SERVER_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

struct srv_job {
    const char *name;
    /* Seconds between runs under this configuration; 0 = the job is off. */
    unsigned (*interval)(const struct srv_config *cfg);
    /* One run. Returns 0 when done (next run one interval later) or -1 to
     * be retried sooner (after 1, 2, 4 ... minutes, at most the interval).
     * msg gets one line for the dashboard and the log. */
    int (*run)(struct srv *s, struct store_db *db, int64_t now, char *msg, size_t msglen);
};

/* The job table (jobs.c). */
extern const struct srv_job srv_jobs[];
extern const size_t srv_njobs;

/* Runs every job that is due at `now` and whose lease this process gets,
 * with `owner` naming the process in the lease. Returns the number run, or
 * a negative store error. For the scheduler thread and for tests. */
int jobs_run_due(struct srv *s, struct store_db *db, const char *owner, int64_t now);
/* Makes a job due at `now` (a dashboard's "send now"). 0, or -1 if unknown. */
int jobs_trigger(struct store_db *db, const char *name, int64_t now);

struct jobs;
/* Starts the scheduler thread on the server's pool; jobs_stop() (NULL-safe)
 * wakes it, waits for the job in progress and joins it. */
int jobs_start(struct srv *s, struct jobs **out, char *err, size_t errlen);
void jobs_stop(struct jobs *sc);

#endif
