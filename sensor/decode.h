/*
 * Packet decoding (decode_*.c): link layer (Ethernet, 802.1Q VLAN and QinQ,
 * Linux cooked SLL/SLL2, raw IP, PPPoE session, null/loopback) -> IPv4 (with
 * options; fragments: the first fragment is decoded, later ones counted) and
 * IPv6 (hop-by-hop, routing, fragment, destination-options and AH extension
 * headers) -> TCP/UDP -> application parsers: DNS over UDP and TCP (every
 * question, every A/AAAA/CNAME answer), TLS ClientHello (SNI, JA3, JA4),
 * HTTP/1.x requests (Host, URL), QUIC v1/v2 Initial packets (decrypted; SNI
 * and JA4 of the ClientHello in their CRYPTO frames).
 *
 * Each packet gives ip.dst and ip.src observations, then one observation
 * per application transaction: two DNS queries on one 5-tuple are two
 * observations. TCP payloads are parsed per segment when a message fits in
 * one; a small, bounded per-flow buffer joins a ClientHello, an HTTP request
 * head or a DNS-over-TCP message split over several in-order segments.
 * Everything bad is counted (stats), never fatal.
 */
#ifndef KHIEN_SENSOR_DECODE_H
#define KHIEN_SENSOR_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "sensor.h"

struct sen_decoder_opts {
    size_t max_flows;        /* TCP flows with a reassembly buffer (0 = 65,536) */
    size_t flow_buffer;      /* bytes buffered per flow direction (0 = 16 KiB) */
    unsigned flow_timeout_s; /* idle flows dropped after this (0 = 60) */
    const char *input;       /* sen_obs.input for everything decoded ("pcap", "live") */
};

struct sen_decode_stats {
    uint64_t packets, bytes;
    uint64_t ipv4, ipv6, tcp, udp, other_ip, non_ip;
    uint64_t dns_messages, dns_questions, dns_answers;
    uint64_t tls_client_hellos, http_requests, quic_initials;
    uint64_t truncated; /* headers cut short by the snap length or the packet */
    uint64_t malformed; /* bad headers or messages (all layers) */
    uint64_t malformed_dns, malformed_tls, malformed_http, malformed_quic;
    uint64_t unsupported_link; /* link types we cannot decode */
    uint64_t fragments;        /* non-first IP fragments (not reassembled) */
    uint64_t flows, flow_evictions, reassembly_gaps;
    uint64_t quic_joined;       /* QUIC ClientHellos joined from several packets */
    uint64_t quic_join_dropped; /* ... given up (evicted, expired) before complete */
};

struct sen_decoder;

/* Creates a decoder that calls fn(ctx, obs) for every observation. opts may
 * be NULL. Returns KH_OK or KH_ENOMEM; the caller frees it with
 * sen_decoder_free. One decoder per thread. */
int sen_decoder_new(const struct sen_decoder_opts *opts, sen_obs_fn fn, void *ctx,
                    struct sen_decoder **out);
void sen_decoder_free(struct sen_decoder *d); /* NULL-safe */

/* Decodes one frame. linktype is a libpcap DLT_* value (DLT_EN10MB,
 * DLT_RAW, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_NULL, DLT_LOOP, DLT_IPV4,
 * DLT_IPV6, DLT_PPP_ETHER is not needed: PPPoE arrives inside Ethernet);
 * caplen bytes are present. Never fails: problems are counted. */
void sen_decode_packet(struct sen_decoder *d, int linktype, const uint8_t *pkt, size_t caplen,
                       int64_t ts_us);

/* Drops flows idle since before now_us - flow_timeout (call about once a second). */
void sen_decoder_expire(struct sen_decoder *d, int64_t now_us);

void sen_decoder_stats(const struct sen_decoder *d, struct sen_decode_stats *st);

/* ---- application parsers, callable on their own (tests, fuzz targets) ---- */

/* Parses one DNS message (without the TCP length prefix). Emits a
 * dns.query per question and a dns.answer per A/AAAA/CNAME answer record,
 * with tuple t and time ts_us. Returns 0, or -1 for a malformed message
 * (observations already emitted stay). Compression pointers are followed
 * with a loop limit. */
int sen_dns_parse(const uint8_t *msg, size_t len, const struct sen_tuple *t, int64_t ts_us,
                  const char *input, sen_obs_fn fn, void *ctx);

/* What a ClientHello yields. */
struct sen_client_hello {
    char sni[256];         /* "" when absent */
    char ja3[33];          /* MD5 hex of ja3_string */
    char ja3_string[2048]; /* "771,4865-4866,0-23-65281,29-23-24,0" (GREASE removed) */
    char ja4[40];          /* "t13d1516h2_8daaf6152771_e5627efa2ab1" */
    char alpn[64];         /* first ALPN value, "" when none */
};

/* Parses a TLS ClientHello handshake message. `record` says whether data
 * starts with the TLS record header (TCP) or with the handshake header
 * (QUIC CRYPTO data). quic selects JA4's "q" prefix. Returns 1 when a
 * ClientHello was parsed into *ch, 0 when more bytes are needed (the length
 * says the message continues), -1 when it is not a ClientHello or is
 * malformed. */
int sen_tls_client_hello(const uint8_t *data, size_t len, int record, int quic,
                         struct sen_client_hello *ch);

/* Parses an HTTP/1.x request head (up to the blank line). Writes the Host
 * (without port, lowercased) into host[256] and "host/path?query" into
 * url[1025]. Returns 1 parsed, 0 incomplete, -1 not a request/malformed. */
int sen_http_request(const uint8_t *data, size_t len, char host[256], char url[1025],
                     char request_line[512]);

/* Decrypts a QUIC v1/v2 Initial packet from a client (RFC 9001 keys from the
 * DCID) and parses the ClientHello in its CRYPTO frames (fragments in one
 * packet are joined by offset). Returns 1 with *ch, 0 when not an Initial or
 * the ClientHello continues in another packet, -1 malformed. The decoder
 * uses sen_quic_initial_join, which joins packets. */
int sen_quic_initial(const uint8_t *data, size_t len, struct sen_client_hello *ch);

/* A bounded table of connections whose ClientHello spans several Initial
 * packets (app_quic.c). Each holds at most 16 KiB of CRYPTO data; at most
 * max_conns (0 = 256) are held, the oldest evicted when a new one needs
 * room, and one waiting longer than timeout_s (0 = 10) is dropped by
 * sen_quic_joins_expire. One table per thread. */
struct sen_quic_joins;
struct sen_quic_joins *sen_quic_joins_new(size_t max_conns, unsigned timeout_s);
void sen_quic_joins_free(struct sen_quic_joins *t); /* NULL-safe */
size_t sen_quic_joins_count(const struct sen_quic_joins *t);
void sen_quic_joins_expire(struct sen_quic_joins *t, int64_t now_us);
/* ClientHellos completed from more than one packet, and connections
 * dropped (evicted or expired) before theirs was complete. */
void sen_quic_joins_stats(const struct sen_quic_joins *t, uint64_t *joined, uint64_t *dropped);

/* sen_quic_initial for a packet of the connection t (client -> server as on
 * the wire) seen at ts_us: CRYPTO data is joined, in any order, with the
 * earlier Initials of the same addresses, ports and DCID. Returns 1 with *ch
 * when this packet completed the ClientHello, 0 when it is not a client
 * Initial or the ClientHello is still incomplete, -1 malformed (including
 * two packets that disagree about the same CRYPTO bytes). With joins NULL
 * it is sen_quic_initial. */
int sen_quic_initial_join(struct sen_quic_joins *joins, const struct sen_tuple *t, int64_t ts_us,
                          const uint8_t *data, size_t len, struct sen_client_hello *ch);

#endif
