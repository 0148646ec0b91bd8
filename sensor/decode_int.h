/*
 * Private pieces of the packet decoder shared by decode.c (frames, IP,
 * TCP/UDP, dispatch to the application parsers) and decode_flow.c (the
 * bounded TCP reassembly table). Nothing outside sensor/decode*.c uses
 * this header.
 */
#ifndef KHIEN_SENSOR_DECODE_INT_H
#define KHIEN_SENSOR_DECODE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "decode.h"

/* What a buffered TCP direction carries; it decides the parser that runs
 * over the joined bytes. */
enum dec_app {
    DEC_APP_NONE = 0,
    DEC_APP_DNS,  /* DNS over TCP: 2-byte length prefix + message, repeated */
    DEC_APP_TLS,  /* a TLS record holding a ClientHello */
    DEC_APP_HTTP, /* HTTP/1.x request heads */
};

/* One direction of a TCP connection whose current message did not fit in
 * one segment. The buffer is allocated when the flow is created and freed
 * with it, so steady-state packets never allocate. */
struct dec_flow {
    struct sen_tuple key; /* the direction: src -> dst as on the wire */
    uint32_t next_seq;    /* sequence number of the byte after buf[len-1] */
    uint32_t chain;       /* next entry in the bucket (index + 1, 0 = none) */
    uint32_t used;        /* 1 while the entry holds a flow */
    int app;              /* enum dec_app */
    int64_t last_us;      /* time of the last segment, for expiry */
    uint8_t *buf;
    size_t len;
};

struct dec_flow_table;

/* Creates a table for at most max_flows directions of buffer_bytes each,
 * keyed with a random seed. Returns NULL when out of memory. */
struct dec_flow_table *dec_flow_table_new(size_t max_flows, size_t buffer_bytes);
void dec_flow_table_free(struct dec_flow_table *ft); /* NULL-safe */

/* Number of flows held: the decoder skips the lookup when it is 0, so
 * packets pay for the hash only while some message is being joined. */
size_t dec_flow_count(const struct dec_flow_table *ft);
size_t dec_flow_buffer_size(const struct dec_flow_table *ft);

/* Finds the direction `key`, or NULL. */
struct dec_flow *dec_flow_find(struct dec_flow_table *ft, const struct sen_tuple *key);

/* Adds the direction `key` (which must not be present); when the table is
 * full the oldest-placed entry is evicted first and *evicted is set to 1.
 * Returns NULL only when out of memory. */
struct dec_flow *dec_flow_add(struct dec_flow_table *ft, const struct sen_tuple *key, int *evicted);

/* Removes f from the table (its buffer is kept for reuse). */
void dec_flow_remove(struct dec_flow_table *ft, struct dec_flow *f);

/* Removes every flow whose last segment is older than cutoff_us; returns
 * how many went. */
size_t dec_flow_expire(struct dec_flow_table *ft, int64_t cutoff_us);

#endif
