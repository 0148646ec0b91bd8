/*
 * What the source files (source.c, source_afpacket.c, source_lines.c) share
 * and nobody else sees: the source object, its counters, and the entry
 * points of each kind. source.c owns the object's life (open, start, wait,
 * stop, free) and the libpcap kinds; the other two files add their kinds
 * through the functions declared here.
 */
#ifndef KHIEN_SENSOR_SOURCE_INT_H
#define KHIEN_SENSOR_SOURCE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <pcap/pcap.h>

#include "source.h"

#define SRC_MAX_WORKERS 64
#define SRC_LINE_MAX    (64u * 1024u) /* longest line a line source delivers */
#define OCTET_DIGITS    6             /* an RFC 6587 length has at most 6 digits */
#define SRC_TCP_BUF     (SRC_LINE_MAX + OCTET_DIGITS + 2) /* a frame and its length prefix */

struct sen_source {
    struct sen_source_opts opts; /* path and bpf point into the copies below */
    struct sen_source_cb cb;
    char *path, *bpf;
    unsigned nworkers;
    pthread_t threads[SRC_MAX_WORKERS];
    unsigned nthreads;
    int joined;
    int wake[2]; /* self-pipe: sen_source_stop writes a byte so pollers wake */
    atomic_int stop;

    atomic_uint_fast64_t frames, bytes, lines, datagrams, kernel_drops, read_errors;
    pthread_mutex_t lock; /* last_error and result */
    char last_error[256];
    int result;

    int listen_port; /* the bound port of a listener (for "addr:0") */

    void *kind_state; /* the kind's private state (freed by its close) */
    void (*kind_close)(struct sen_source *src);
    void *(*kind_run)(void *arg); /* thread body; arg is a struct src_worker */
    struct src_worker *workers;
};

/* What each thread is given. */
struct src_worker {
    struct sen_source *src;
    unsigned id;
};

/* Records an error that ends or troubles the source (first one kept as the result). */
void sen_src_fail(struct sen_source *src, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records a problem that does not end the source (counted in read_errors). */
void sen_src_note(struct sen_source *src, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int64_t sen_src_wall_us(void);
/* Parses "addr:port" / "[v6]:port" and binds a socket of `type` to it. */
int sen_src_bind(const char *spec, int type, int *fd_out, char *err, size_t errlen);

/* Compiles a capture filter for frames of `linktype` as they are on the wire
 * (VLAN tags in place), to be run in user space with pcap_offline_filter:
 * the same filter then means the same thing for a file and an interface.
 * *has is 0 when bpf is NULL or empty. */
int sen_src_compile_filter(int linktype, unsigned snaplen, const char *name, const char *bpf,
                           struct bpf_program *prog, int *has, char *err, size_t errlen);

/* Syslog over TCP (RFC 6587): takes the complete frames out of buf[0..*len)
 * (at most SRC_TCP_BUF bytes) and passes them to the line callback, keeping
 * a partial frame at the front. Returns -1 when the stream is broken (a bad
 * octet count) and the connection must be dropped. Exposed for the fuzz target. */
int sen_src_tcp_frames(struct sen_source *src, const char *peer, uint8_t *buf, size_t *len,
                       int *skipping);

int sen_src_afpacket_open(struct sen_source *src, char *err, size_t errlen);
int sen_src_lines_open(struct sen_source *src, char *err, size_t errlen);

#endif
