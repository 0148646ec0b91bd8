/*
 * The network sensor's shared vocabulary (sensor/): every input — captured
 * packets (decode.h), log lines and NetFlow records (logs.h) — is turned
 * into observations (struct sen_obs): "this host asked DNS for this name",
 * "this ClientHello named this server", "this packet went to this address".
 * detect.c checks each observation against the indicator store
 * (lib/ioc/store.h) and output.c turns matches into hits. The pipeline, as
 * the file names say: source_* -> decode_* / log_* -> detect -> output.
 */
#ifndef KHIEN_SENSOR_H
#define KHIEN_SENSOR_H

#include <stddef.h>
#include <stdint.h>

/* Where an observation was seen (the "where" of a hit). */
enum sen_where {
    SEN_IP_DST = 0, /* "ip.dst": a packet or flow to an address */
    SEN_IP_SRC,     /* "ip.src": a packet or flow from an address */
    SEN_DNS_QUERY,  /* "dns.query": a question name */
    SEN_DNS_ANSWER, /* "dns.answer": an A/AAAA address or CNAME target in an answer */
    SEN_TLS_SNI,    /* "tls.sni" */
    SEN_TLS_JA3,    /* "tls.ja3": the JA3 MD5 of a ClientHello */
    SEN_TLS_JA4,    /* "tls.ja4" */
    SEN_HTTP_HOST,  /* "http.host" */
    SEN_HTTP_URL,   /* "http.url": host/path?query */
    SEN_QUIC_SNI,   /* "quic.sni": SNI from a decrypted QUIC Initial */
    SEN_WHERE_COUNT
};

/* "ip.dst", "dns.query", ... (static strings). */
const char *sen_where_name(int where);

/* A connection's addresses as seen on the wire (client side first when it
 * is known). family is 0 when the input had no addresses (some logs). IPv4
 * addresses use the first 4 bytes. */
struct sen_tuple {
    uint8_t family; /* AF_INET, AF_INET6 or 0 */
    uint8_t proto;  /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP... or 0 */
    uint16_t sport, dport;
    uint8_t src[16], dst[16];
};

/* One observation. Pointers are valid only during the callback. */
struct sen_obs {
    int where; /* enum sen_where */
    struct sen_tuple t;
    int64_t ts_us; /* capture or log time, microseconds since the epoch */
    /* The name, SNI, Host, URL ("host/path?query"), JA3 MD5 or JA4 text;
     * NULL for address observations. */
    const char *text;
    size_t text_len;
    /* The address observed (ip.dst: t.dst; ip.src: t.src; dns.answer: the
     * A/AAAA data); family 0 for text observations. */
    uint8_t addr_family;
    uint8_t addr[16];
    uint16_t port; /* the port that goes with addr (0 = none) */
    /* Evidence for a person: the JA3 full string, "A? name", the request
     * line, a log line... NULL when none. At most 512 bytes are kept. */
    const char *evidence;
    const char *input; /* "pcap", "live", "bind", "zeek.dns", "netflow", ... */
};

typedef void (*sen_obs_fn)(void *ctx, const struct sen_obs *o);

/* Formats an address of a family (AF_INET/AF_INET6) into out[46]. */
void sen_addr_format(int family, const uint8_t *addr, char out[46]);

#endif
