/*
 * Private to the log readers (log*.c): the reader's state and the helpers
 * every format shares — emitting observations with the line as evidence,
 * recording why a line was malformed, and the small parsers for addresses,
 * numbers and the timestamps the various logs write. Nothing outside
 * sensor/log*.c includes this file; the public interface is logs.h.
 */
#ifndef KHIEN_SENSOR_LOG_INT_H
#define KHIEN_SENSOR_LOG_INT_H

#include <stddef.h>
#include <stdint.h>

#include "logs.h"

#define LOG_LINE_MAX     (64 * 1024)
#define LOG_EVIDENCE_MAX 512
#define ZEEK_MAX_COLS    128

/* What a Zeek TSV stream's header lines said. */
struct zeek_hdr {
    char sep;      /* field separator (#separator), '\t' by default */
    char set_sep;  /* separator inside set/vector fields */
    char path[32]; /* conn, dns, ssl, http... ("" when unknown) */
    int ncols;     /* 0 until a #fields line was seen */
    int col[16];   /* column of each field log_zeek.c reads, -1 if absent */
};

struct sen_log_reader {
    enum sen_log_format fmt;  /* as configured (SEN_LOG_AUTO allowed) */
    enum sen_log_format last; /* last format auto mode used for a line */
    char input[32];
    int year;                /* for syslog dates without a year */
    int64_t now_s;           /* when the reader was made, for the year guess */
    int unbound_saw_queries; /* log-queries lines seen: skip log-replies */
    struct zeek_hdr zeek;
    struct sen_log_stats st;

    /* Per line, while it is being read. */
    const char *line;
    size_t line_len;
    char evidence[LOG_EVIDENCE_MAX + 1];
    char reason[160];
    sen_obs_fn fn;
    void *ctx;
    uint64_t emitted;
    char input_buf[48]; /* "zeek.dns" and such */
};

/* Emits one observation; the evidence is the whole line (first 512 bytes). */
void senlog_emit(struct sen_log_reader *r, const struct sen_obs *o);
/* Text observation (name, SNI, URL...) with a tuple (NULL = none). */
void senlog_emit_text(struct sen_log_reader *r, int where, const struct sen_tuple *t, int64_t ts_us,
                      const char *text, size_t len);
/* Address observation: addr is t->dst for ip.dst, t->src for ip.src, or
 * the answer data for dns.answer. */
void senlog_emit_addr(struct sen_log_reader *r, int where, const struct sen_tuple *t, int64_t ts_us,
                      int family, const uint8_t *addr, uint16_t port);
/* Records why the line is malformed; returns -1. */
int senlog_bad(struct sen_log_reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Tokens: skips spaces, returns the next run of non-space bytes. */
int senlog_token(const char **p, const char *end, const char **tok, size_t *tlen);
/* Finds needle in [s, s+n); NULL when absent. */
const char *senlog_find(const char *s, size_t n, const char *needle);
int senlog_starts(const char *s, size_t n, const char *prefix);

/* Parses an IPv4 or IPv6 address covering all of s[0..n). Returns the
 * family (AF_INET/AF_INET6) or 0. */
int senlog_parse_ip(const char *s, size_t n, uint8_t addr[16]);
/* Decimal unsigned integer covering s[0..n), at most max. -1 when not. */
int senlog_parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out);
/* "1700000000.123456" -> microseconds; -1 when malformed. */
int senlog_parse_epoch(const char *s, size_t n, int64_t *us);
/* ISO 8601 "2026-11-21T10:00:00.123456+0000" / "Z" / "+00:00". */
int senlog_parse_iso8601(const char *s, size_t n, int64_t *us);
/* Month abbreviation ("Nov") -> 0..11, or -1. */
int senlog_month(const char *s, size_t n);
/* Local time to microseconds since the epoch (fields as in struct tm). */
int64_t senlog_local_us(int year, int mon, int mday, int hour, int min, int sec, long usec);
/* "Nov 21 10:00:00" at s (15 bytes, day may be space-padded), local time
 * in the reader's year guess. Returns bytes used or 0. */
size_t senlog_parse_bsd_time(struct sen_log_reader *r, const char *s, size_t n, int64_t *us);

/* The readers: each gets the message without the syslog header, and the
 * header's time (0 when none). Return 1, 0 or -1 as sen_log_line. */
int senlog_bind_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts);
int senlog_dnsmasq_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts);
int senlog_unbound_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts);
int senlog_windns_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts);
int senlog_netfilter_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts);
int senlog_squid_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts);
int senlog_zeek_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts);
int senlog_eve_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts);

/* Zeek JSON lines (called by senlog_zeek_line for lines starting with '{'). */
int senlog_zeek_json(struct sen_log_reader *r, const char *s, size_t n);

#endif
