/*
 * Sources (source_*.c): where the sensor's bytes come from. Each source
 * runs in its own thread and hands what it reads to callbacks: frames
 * (pcap/pcapng files, a live interface through libpcap or AF_PACKET
 * TPACKET_V3 with fanout), lines (followed log files, syslog over UDP and
 * TCP) and datagrams (NetFlow/IPFIX collector). A source stops when its
 * input ends (files without follow) or when sen_source_stop is called.
 */
#ifndef KHIEN_SENSOR_SOURCE_H
#define KHIEN_SENSOR_SOURCE_H

#include <stddef.h>
#include <stdint.h>

enum sen_source_kind {
    SEN_SRC_PCAP_FILE = 0, /* path: a pcap or pcapng file ("-" = stdin) */
    SEN_SRC_PCAP_LIVE,     /* path: interface name, through libpcap */
    SEN_SRC_AFPACKET,      /* path: interface name, TPACKET_V3 ring, `fanout` threads */
    SEN_SRC_LOG_FILE,      /* path: a log file, read from the start, then followed
                              (rotation by rename or truncation handled) unless no_follow */
    SEN_SRC_SYSLOG_UDP,    /* path: "addr:port" to listen on */
    SEN_SRC_SYSLOG_TCP,    /* path: "addr:port"; octet-counted or newline framing */
    SEN_SRC_NETFLOW,       /* path: "addr:port" (UDP) */
    SEN_SRC_KIND_COUNT
};

/* Callbacks; `worker` numbers the thread (0..fanout-1) so a consumer can keep
 * one decoder per thread. Called from the source's threads. */
struct sen_source_cb {
    void *ctx;
    void (*frame)(void *ctx, unsigned worker, int linktype, const uint8_t *pkt, size_t caplen,
                  int64_t ts_us);
    /* peer: the sender for syslog ("10.0.0.2"), the path for files */
    void (*line)(void *ctx, unsigned worker, const char *peer, const char *line, size_t len);
    void (*datagram)(void *ctx, unsigned worker, int family, const uint8_t *addr,
                     const uint8_t *buf, size_t len, int64_t ts_us);
    /* Called about once a second from each worker, also when idle (timers,
     * flow expiry, dedup flush); now_us is the source's clock (packet time
     * for files, wall time for live inputs). May be NULL. */
    void (*tick)(void *ctx, unsigned worker, int64_t now_us);
};

struct sen_source_opts {
    int kind;         /* enum sen_source_kind */
    const char *path; /* see the kinds */
    const char *bpf;  /* capture filter for live inputs and files (NULL = all) */
    unsigned fanout;  /* AF_PACKET threads (0 = 1) */
    unsigned snaplen; /* 0 = 65,535 */
    int promisc;      /* live inputs */
    int no_follow;    /* log files: stop at the end */
    size_t ring_mb;   /* AF_PACKET ring per thread (0 = 64) */
};

struct sen_source_stats {
    uint64_t frames, bytes, lines, datagrams;
    uint64_t kernel_drops; /* live capture drops reported by the kernel */
    uint64_t read_errors;  /* truncated pcap records, over-long lines, ... */
    char last_error[256];
};

struct sen_source;

/* Opens the input (the file, the interface, the socket) and checks it can be
 * read, without starting threads. Returns KH_OK, or KH_EIO/KH_EINVAL/
 * KH_EFORMAT with err ("eth9: no such device", "x.pcap: not a pcap or
 * pcapng file"). The caller frees it with sen_source_free. */
int sen_source_open(const struct sen_source_opts *opts, const struct sen_source_cb *cb,
                    struct sen_source **out, char *err, size_t errlen);
/* Starts the threads. Returns KH_OK or KH_EIO with err. */
int sen_source_start(struct sen_source *src, char *err, size_t errlen);
/* Waits until the input ends or sen_source_stop; returns KH_OK or the error
 * that ended it. */
int sen_source_wait(struct sen_source *src);
/* Asks the threads to stop (async-signal-safe) */
void sen_source_stop(struct sen_source *src);
void sen_source_stats(const struct sen_source *src, struct sen_source_stats *st);
void sen_source_free(struct sen_source *src); /* stops and joins; NULL-safe */
/* The port a listener (syslog, NetFlow) is bound to, useful with "addr:0";
 * 0 for the other kinds. */
int sen_source_local_port(const struct sen_source *src);

/* Runs a pcap file through cb on the calling thread (worker 0), for tests
 * and `khien sensor run --read` (no thread). Same returns as open. */
int sen_source_read_pcap(const char *path, const char *bpf, const struct sen_source_cb *cb,
                         struct sen_source_stats *st, char *err, size_t errlen);

#endif
