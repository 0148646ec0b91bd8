/*
 * Running the sensor (run.c): ties the parts together for `khien sensor
 * run` — compiles the indicator lists into a store and installs it, opens
 * every input, gives each input thread its own decoder (or log reader) and
 * detector, and writes hits through one output. Also the store compiler
 * that `khien sensor compile` and the uplink's list updates use.
 */
#ifndef KHIEN_SENSOR_RUN_H
#define KHIEN_SENSOR_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/ioc/store.h"
#include "detect.h"
#include "logs.h"
#include "source.h"

/* A list file with its format (IOC_FMT_AUTO to guess). */
struct sen_list {
    const char *path;
    int format; /* enum ioc_format */
};

struct sen_compile_opts {
    const struct sen_list *lists;
    size_t nlists;
    const struct sen_list *allow; /* allowlists (warninglists, plain lists) */
    size_t nallow;
    const char *extra_text; /* indicators in Khiên's text form (from the server), may be NULL */
    size_t extra_len;
    int allow_private;
    FILE *report; /* per-file counts and the first error of each, may be NULL */
};

/* Compiles lists into a store file at `path`. Returns KH_OK with *stats, or
 * an error with err (a list that cannot be read at all is an error; bad
 * entries inside a list are counted and reported). */
int sen_compile(const struct sen_compile_opts *o, const char *path, struct ioc_build_stats *stats,
                char *err, size_t errlen);

/* Opens a store: a compiled file as is, or compiles the lists into a
 * temporary file in tmpdir (removed once mapped). */
int sen_load_store(const struct sen_compile_opts *o, const char *tmpdir, struct ioc_store **out,
                   char *err, size_t errlen);

/* One input of a run. */
struct sen_input {
    struct sen_source_opts src;
    int log_format; /* enum sen_log_format, for log files and syslog */
};

struct sen_run_opts {
    const struct sen_input *inputs;
    size_t ninputs;
    struct ioc_slot *slot;         /* the store in use (filled by the caller) */
    struct sen_output *out;        /* where hits go */
    struct sen_agencies *agencies; /* ranges (ownership passes; may be NULL) */
    volatile int *stop;            /* set to stop (a signal handler may set it) */
    void (*stats_report)(void *ctx, const char *json); /* about once a minute and at the end */
    void *stats_ctx;
};

struct sen_run;

/* Opens every input and starts their threads. Returns KH_OK or an error
 * naming the input that failed, in err. */
int sen_run_start(const struct sen_run_opts *o, struct sen_run **out, char *err, size_t errlen);
/* Access to the detector's shared state (to replace agency ranges). */
struct sen_detect_shared *sen_run_shared(struct sen_run *run);
/* Waits until every input has ended (files) or *stop is set; then stops,
 * flushes the output and returns KH_OK or the first input error. */
int sen_run_wait(struct sen_run *run);
/* Counters of everything so far, as one JSON object text (malloc'd). */
char *sen_run_stats_json(struct sen_run *run);
void sen_run_free(struct sen_run *run); /* NULL-safe */

#endif
