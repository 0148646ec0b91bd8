/*
 * Private declarations of `khien scan`, shared by its three files and by
 * nothing else:
 *
 *   cmd_scan.c     the command: options, loading the database, setting up
 *                  the shared state, the exit status;
 *   scan_walk.c    the threads: the walker that lists paths into a bounded
 *                  queue, the workers that take paths from it and scan them,
 *                  and the main thread's wait loop;
 *   scan_output.c  everything written to standard output or standard error
 *                  while scanning: per-file reports (text or JSON), notes
 *                  about skipped paths, the progress line and the summary.
 *
 * The data flows one way: cmd_scan.c fills a scan_config and a scan_run and
 * calls scan_run_threads(); the walker and the workers describe each path in
 * a scan_report and hand it to scan_publish(), which counts it and prints it.
 *
 * Locking. scan_run.lock guards the queue, the totals, the progress fields
 * and both output streams. Functions whose names end in _locked must be
 * called with it held; every other function here takes it itself when it
 * needs it and must be called without it.
 *
 * Names shared between the files carry a `scan_` prefix; everything else in
 * them is static.
 */
#ifndef KHIEN_CLI_SCAN_INT_H
#define KHIEN_CLI_SCAN_INT_H

#include "cli.h"

#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <sys/types.h>
#include <time.h>

#define SCAN_QUEUE_CAP      1024
#define SCAN_MAX_DBS        64
#define SCAN_MAX_REGEX      128
#define SCAN_MAX_DETECTIONS 256
#define SCAN_CURRENT_MAX    512

/* Set by the SIGINT/SIGTERM handler (cmd_scan.c). The walker stops listing,
 * workers stop taking files and the callbacks ask the library to stop the
 * current scan. */
extern volatile sig_atomic_t scan_interrupted;

struct scan_config {
    const char *dbs[SCAN_MAX_DBS];
    size_t ndbs;
    regex_t exclude[SCAN_MAX_REGEX];
    size_t nexclude;
    regex_t exclude_dir[SCAN_MAX_REGEX];
    size_t nexclude_dir;
    unsigned threads;
    unsigned max_dir_depth;
    int follow_symlinks;
    int infected_only;
    int suppress_ok;
    int verbose;
    int archive_verbose;
    int quiet;
    int json;
    int summary;
    int alert_encrypted;
    int alert_exceeds_max;
    int alert_broken;
    int strict;
    int pua;
    struct kh_scan_opts opts;
    char **paths; /* points into argv */
    size_t npaths;
};

struct scan_totals {
    uint64_t files;    /* files whose scan ran to the end or to a limit */
    uint64_t dirs;     /* directories listed */
    uint64_t infected; /* files with a FOUND line */
    uint64_t partial;  /* files with a notice, or stopped by a limit */
    uint64_t errors;   /* paths that could not be listed or scanned */
    uint64_t bytes;    /* kh_scan_result.bytes_scanned, summed */
};

/* State shared by the walker, the workers and the main thread; `lock` guards
 * every field below it and the output streams. */
struct scan_run {
    const struct scan_config *cfg;
    pthread_mutex_t lock;
    pthread_cond_t can_pop;  /* the queue has an item, or the walker finished */
    pthread_cond_t can_push; /* the queue has room */
    pthread_cond_t changed;  /* a thread finished; wakes the main thread */
    char *queue[SCAN_QUEUE_CAP];
    size_t qhead, qlen;
    int walker_done;
    unsigned workers_left;
    struct scan_totals totals;
    char current[SCAN_CURRENT_MAX]; /* the path a worker started last, for the progress line */
    int progress;                   /* draw a progress line on stderr */
    int progress_shown;             /* a progress line is on the screen now */
    int flush_each;                 /* flush stdout after each report */
    struct timespec started;
};

/* One detection, copied out of the callback because the library's strings
 * need not outlive it. */
struct scan_det {
    char *name;
    char *source;
    char *inner; /* NULL at top level */
    int kind;
    int severity;
    int alert; /* counted as infected: malware, or a notice promoted by --alert-* */
};

/* What is known about one path once it has been handled; formatted as text
 * or JSON by the same code for workers and the walker. */
struct scan_report {
    const char *path; /* as printed; "stdin" for "-" */
    int scanned;      /* the scan ran: size and sha256 are valid */
    struct kh_scan_result res;
    const struct scan_det *dets;
    unsigned ndets;
    unsigned dropped; /* detections beyond SCAN_MAX_DETECTIONS, not kept */
    int infected;
    int partial;
    const char *error;        /* NULL, or the clamscan-style message */
    const char *error_detail; /* NULL, or the reason (strerror, kh_strerror) */
    int detail_in_text;       /* text output shows the reason too; "Can't open file or
                                 directory" keeps clamscan's exact wording */
};

/* One scanning thread. cmd_scan.c creates the scanner and the buffer; the
 * worker owns the strings in `dets` between two files. */
struct scan_worker {
    struct scan_run *run;
    kh_scanner *scanner;
    pthread_t thread;
    int started;
    struct scan_det dets[SCAN_MAX_DETECTIONS];
    unsigned ndets;
    unsigned dropped;
    struct khx_buf out; /* scratch for formatting this worker's reports */
};

struct scan_dir_id {
    dev_t dev;
    ino_t ino;
};

/* The walker thread. `chain` has max_dir_depth + 1 entries, allocated by
 * cmd_scan.c. */
struct scan_walker {
    struct scan_run *run;
    struct scan_dir_id *chain; /* the directories being listed, outermost first */
    int stdin_taken;
    struct khx_buf out; /* scratch for formatting the walker's reports */
};

/* ------------------------------------------------------------------------ */
/* scan_walk.c                                                               */
/* ------------------------------------------------------------------------ */

/* Starts the workers and the walker, waits for them while drawing progress,
 * and leaves the totals in `run`. Returns 0, or -1 if no thread could start.
 * Paths still queued when it returns (after an interruption) belong to `run`
 * and are freed by the caller. */
int scan_run_threads(struct scan_run *run, struct scan_worker *workers, unsigned nworkers,
                     struct scan_walker *walker);

/* Frees what a worker owns: its detections, its scanner and its buffer.
 * Safe on a zeroed worker. */
void scan_worker_release(struct scan_worker *w);

/* ------------------------------------------------------------------------ */
/* scan_output.c                                                             */
/* ------------------------------------------------------------------------ */

/* Seconds elapsed on CLOCK_MONOTONIC since `t0`. */
double scan_seconds_since(const struct timespec *t0);

/* Counts the report in the totals and prints it, as text or JSON, if the
 * output options make it visible. `b` is the caller's scratch buffer. */
void scan_publish(struct scan_run *run, struct khx_buf *b, const struct scan_report *rep);

/* Reports a path that could not be listed or scanned at all; `detail` may be
 * NULL. */
void scan_report_error(struct scan_run *run, struct khx_buf *b, const char *path, const char *error,
                       const char *detail);

/* Prints "khien scan: PATH: message" on stderr, for paths that are skipped
 * rather than scanned. `always` notes are printed without --verbose, because
 * they hide files from the scan; --quiet silences all of them. */
void scan_note(struct scan_run *run, struct khx_buf *b, int always, const char *path,
               const char *msg);

/* Redraws the progress line on stderr from the totals. */
void scan_draw_progress_locked(struct scan_run *run);

/* Erases the progress line if one is on the screen. */
void scan_erase_progress_locked(struct scan_run *run);

/* Prints the clamscan-style summary block to `f`. */
void scan_print_summary(FILE *f, const struct scan_totals *t, uint64_t known, double secs);

#endif
