/*
 * Log readers (log_*.c): the logs agencies already have, turned into the
 * same observations as packets (sensor.h), so one detector serves both.
 * Each reader takes one line (without its newline) and emits zero or more
 * observations; a line it cannot read is counted with a reason, never
 * fatal. Syslog framing (RFC 3164 and RFC 5424 headers) is removed first
 * when present, and its program tag picks the reader in auto mode.
 *
 *   bind       BIND query log ("client @0x.. 10.0.0.5#5353 (name): query:
 *              name IN A +E(0)K (10.0.0.1)") and RPZ rewrite lines
 *   dnsmasq    "dnsmasq[123]: query[A] name from 10.0.0.5", "reply name is 1.2.3.4"
 *   unbound    "info: 10.0.0.5 name. A IN" (log-queries) and log-replies lines
 *   windns     Windows DNS debug log packet lines ("... PACKET ... UDP Rcv
 *              10.0.0.5 ... Q [...] A (3)www(7)example(3)com(0)")
 *   netfilter  iptables/nftables LOG lines ("IN=eth0 OUT= SRC=.. DST=..
 *              PROTO=TCP SPT=.. DPT=..")
 *   squid      Squid native access.log ("time elapsed client code/status
 *              bytes method URL user hier/peer type")
 *   zeek       Zeek conn/dns/ssl/http logs, TSV (with #fields) or JSON lines
 *   eve        Suricata eve.json (dns, tls, http, flow, alert, quic events)
 */
#ifndef KHIEN_SENSOR_LOGS_H
#define KHIEN_SENSOR_LOGS_H

#include <stddef.h>
#include <stdint.h>

#include "sensor.h"

enum sen_log_format {
    SEN_LOG_AUTO = 0,
    SEN_LOG_BIND,
    SEN_LOG_DNSMASQ,
    SEN_LOG_UNBOUND,
    SEN_LOG_WINDNS,
    SEN_LOG_NETFILTER,
    SEN_LOG_SQUID,
    SEN_LOG_ZEEK, /* conn, dns, ssl, http: the #path line or the JSON fields say which */
    SEN_LOG_EVE,
    SEN_LOG_COUNT
};

const char *sen_log_format_name(enum sen_log_format f);         /* "bind", ... */
enum sen_log_format sen_log_format_from_name(const char *name); /* SEN_LOG_COUNT if unknown */

struct sen_log_stats {
    uint64_t lines, observations, ignored, malformed;
    char first_error[256]; /* "line 12: ..." */
};

struct sen_log_reader;

/* Creates a reader for one stream of lines (a file or a syslog sender):
 * it keeps the stream's state (Zeek's #fields, the year for syslog dates,
 * a format detected in auto mode). input names the observations' source
 * (NULL = the format's name). Returns KH_OK or KH_ENOMEM. */
int sen_log_reader_new(enum sen_log_format fmt, const char *input, struct sen_log_reader **out);
void sen_log_reader_free(struct sen_log_reader *r); /* NULL-safe */

/* Reads one line. Returns 1 when it gave observations, 0 when it was
 * ignored (comment, header, a query type or event we do not check), -1 when
 * malformed (counted; reason in the stats). Lines over 64 KiB are malformed. */
int sen_log_line(struct sen_log_reader *r, const char *line, size_t len, sen_obs_fn fn, void *ctx);

void sen_log_stats(const struct sen_log_reader *r, struct sen_log_stats *st);

/* Removes a syslog header: sets *msg and *msg_len to the message and copies the
 * program tag (without [pid]) into prog[64] ("" when none). Returns 1 when a
 * header was found, 0 when the line has none (msg = line). */
int sen_syslog_strip(const char *line, size_t len, char prog[64], const char **msg,
                     size_t *msg_len);

/* ---- NetFlow v5 / v9 / IPFIX ---- */

struct sen_netflow; /* template cache per exporter and observation domain */

struct sen_netflow_stats {
    uint64_t datagrams, records, templates, malformed, unknown_template;
    char first_error[256];
};

int sen_netflow_new(struct sen_netflow **out);
void sen_netflow_free(struct sen_netflow *nf); /* NULL-safe */
/* Parses one datagram from exporter (family AF_INET/AF_INET6, its address).
 * Emits ip.dst per flow record (tuple from the record, ts from the record's
 * end time when present, else now_us). Returns the number of flow records,
 * or -1 for a malformed datagram (counted). */
int sen_netflow_datagram(struct sen_netflow *nf, int exporter_family, const uint8_t *exporter,
                         const uint8_t *buf, size_t len, int64_t now_us, sen_obs_fn fn, void *ctx);
void sen_netflow_stats(const struct sen_netflow *nf, struct sen_netflow_stats *st);

#endif
