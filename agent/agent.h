/*
 * The agent daemon's core (agent_): the state it keeps between the modules
 * of agent/, and the calls the `khien-agent` command makes. The flow is
 *
 *   platform (fanotify) -> protect.c (scan in the sandbox, decide, quarantine)
 *        -> events -> spool -> daemon.c (uplink: events, check-in, tasks, updates)
 *   scanjob.c (scheduled and on-demand scans) and netwatch.c (connections to
 *   known-bad addresses) feed the same events.
 *
 * Threads: the main thread runs the uplink loop (the only user of the HTTPS
 * client); the platform layer's threads call protect_decide; one thread runs
 * scan jobs; one checks connections. Shared state is guarded by `lock`;
 * scan workers are reference counted (struct agent_worker) so a database
 * update can replace one while scans are still running on it.
 */
#ifndef KHIEN_AGENT_AGENT_H
#define KHIEN_AGENT_AGENT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sandbox.h"

#define AGENT_PATHS_MAX 64

/* The policy the server sends at check-in (docs/api/agent.md), with the
 * agent's defaults for anything absent. */
struct agent_sched {
    char name[128];
    char **paths;
    size_t npaths;
    char **excludes;
    size_t nexcludes;
    int full;
    unsigned days; /* bit 0 = Sunday ... bit 6 = Saturday */
    int minute;    /* minutes after local midnight */
};

struct agent_policy {
    char version[65];
    int rtp_enabled;
    char **rtp_paths;
    size_t nrtp_paths;
    char **rtp_excludes;
    size_t nrtp_excludes;
    unsigned rtp_timeout_ms;
    int action; /* enum agent_action */
    struct agent_sched *scheds;
    size_t nscheds;
    int nice;
    int ionice_idle;
    uint64_t max_filesize;
    int archives;
    int conn_enabled;
    unsigned conn_interval_s;
    unsigned update_interval_s;
    unsigned retention_days;
};

enum agent_action { AGENT_ACT_QUARANTINE = 0, AGENT_ACT_BLOCK, AGENT_ACT_REPORT };

void agent_policy_default(struct agent_policy *p);
/* Reads a policy object; absent fields keep their defaults. Returns KH_OK or
 * KH_EFORMAT with the field in err. */
int agent_policy_parse(json_t *obj, const char *version, struct agent_policy *p, char *err,
                       size_t errlen);
void agent_policy_free(struct agent_policy *p);

/* What `khien-agent enroll` writes to STATE/agent.json and run reads. */
struct agent_identity {
    char server[1024];
    char machine_id[64];
    char bundle_key[64]; /* base64 Ed25519 public key */
    char key_id[17];
    char agency_code[128];
    char agency_name[256];
    int checkin_interval;
};

int agent_identity_load(const char *state_dir, struct agent_identity *id, char *err, size_t errlen);
int agent_identity_save(const char *state_dir, const struct agent_identity *id);

/* A scan worker shared by reference: the last release of a retired one stops it. */
struct agent_worker {
    struct sbx_worker *w;
    atomic_int refs;
    int64_t db_version;
};

struct agent_opts {
    const char *state_dir;
    const char *const *watch; /* folders to protect instead of the policy's */
    size_t nwatch;
    int no_rtp;
    const char *db_file; /* a local .kdb instead of server bundles */
    unsigned checkin_s;  /* override the server's interval (tests, demos) */
};

struct scan_job;
struct plat_rtp;
struct spool;
struct vault;
struct ioc_set;

struct agent {
    const struct agent_opts *opts;
    struct agent_identity id;
    int enrolled;
    char exe[4096];
    char state_dir[4096];
    char db_dir[4200];

    pthread_mutex_t lock;
    pthread_cond_t wake; /* the uplink loop waits here */
    atomic_int stop;

    struct agent_policy policy;     /* guarded by lock */
    struct agent_worker *rt_worker; /* for real-time scans; guarded by lock */
    struct ioc_set *iocs;           /* guarded by lock */
    int64_t db_version, db_created, db_signatures;
    struct plat_rtp *rtp;
    atomic_int rtp_on;
    struct spool *spool;
    struct vault *vault;

    /* Allowlist of SHA-256 (hex) restored by an operator: never detected again. */
    char **allow;
    size_t nallow;
    int64_t allow_mtime;

    /* Recently reported files (dev, inode, mtime), so a blocked file opened in
     * a loop is reported once per window. Guarded by lock. */
    struct recent {
        uint64_t key;
        int64_t at;
    } recent[256];

    /* Scan jobs: one runs at a time, the rest wait. Guarded by lock. */
    struct scan_job *jobs;
    struct scan_job *running;
    pthread_cond_t jobs_cond;
    int64_t last_full_scan;
    int64_t sched_last[16];

    atomic_uint_fast64_t detections, quarantined, blocked, timeouts, scan_errors;
    int64_t last_checkin, last_error_at;
    uint64_t status_hash; /* of status.json's content without its time */
    int64_t status_at;    /* when status.json was last written */
    char last_error[512];
};

/* protect.c */
int agent_worker_start(struct agent *a, const char *kdb, int batch, struct agent_worker **out,
                       char *err, size_t errlen);
struct agent_worker *agent_worker_acquire(struct agent *a);
void agent_worker_release(struct agent_worker *w);
int agent_rtp_apply(struct agent *a);
int agent_handle_detection(struct agent *a, int fd, const char *path, const struct sbx_result *res,
                           int action, const char *origin, int *quarantined);
int agent_allowlisted(struct agent *a, const uint8_t sha256[32]);
int agent_allow_add(const char *state_dir, const char *sha256_hex);

/* events (daemon.c): adds "id" and "at" when absent, takes a reference to ev. */
int agent_emit(struct agent *a, json_t *ev);
void agent_log(struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* scanjob.c */
struct scan_job {
    struct scan_job *next;
    int64_t task_id; /* 0 for a scheduled or local scan */
    char name[128];
    char **paths;
    size_t npaths;
    char **excludes;
    size_t nexcludes;
    int full;
    /* progress, guarded by agent.lock */
    int state;    /* 0 queued, 1 running, 2 done, 3 failed */
    int progress; /* 0-100 */
    uint64_t files, found, errors, bytes;
    int64_t started, finished;
    int reported_state, reported_progress;
    int64_t reported_at;
    char error[256];
};
void agent_scan_queue(struct agent *a, struct scan_job *job);
struct scan_job *agent_scan_job_new(const char *name, const char *const *paths, size_t npaths,
                                    const char *const *excludes, size_t nexcludes, int full);
void agent_scan_job_free(struct scan_job *job);
void *agent_scan_thread(void *arg);

/* netwatch.c */
void *agent_netwatch_thread(void *arg);

/* daemon.c */
int agent_run(const struct agent_opts *opts);
/* machine_key (may be NULL): replaces the key derived from /etc/machine-id. */
int agent_enroll(const char *state_dir, const char *server, const char *token, const char *ca,
                 const char *machine_key, char *err, size_t errlen);
/* Prints the daemon's status file; json: as JSON. Returns an exit code. */
int agent_status(const char *state_dir, int json);

#endif
