/*
 * Hits (output.c): the detector's matches, de-duplicated and written out.
 * A hit is (internal host, indicator, where) with the first and last time,
 * a count within the de-duplication window and the first occurrence's
 * 5-tuple and evidence. When a window closes (first_seen + window passed in
 * the input's clock) or at flush, the hit is written as one JSON line to a
 * file or stdout, and as a "c2_hit" event into the nothing-lost spool that
 * the uplink sends to the server (agent/spool.h). Window 0 writes every
 * match at once (count 1), as the golden tests need.
 *
 * JSON line (docs/api/sensor.md):
 *   {"type":"c2_hit","id":"<uuid>","at":<unix s>,"first_seen":"<RFC3339.us>",
 *    "last_seen":"...","count":N,"host":"10.1.2.3","agency_id":7,
 *    "agency_code":"SO-TTTT","where":"dns.query","observed":"a.evil.example",
 *    "indicator":{"kind":"domain","value":"evil.example",
 *                 "sources":[{"source":"maltrail","category":"c2","family":"sofacy",
 *                             "confidence":80,"expires":null}]},
 *    "category":"c2","proto":"udp","src_ip":"...","src_port":1030,
 *    "dest_ip":"...","dest_port":53,"evidence":"A? a.evil.example","input":"pcap",
 *    "sensor":"<sensor name>"}
 */
#ifndef KHIEN_SENSOR_OUTPUT_H
#define KHIEN_SENSOR_OUTPUT_H

#include <stdint.h>
#include <stdio.h>

#include "../lib/ioc/store.h"
#include "sensor.h"

struct spool;

/* One match, as the detector found it. Strings are copied by sen_output_hit. */
struct sen_hit {
    const struct sen_obs *obs; /* the observation (tuple, time, text, evidence, input) */
    const struct ioc_hit *ioc; /* the indicator and its sources */
    uint8_t host_family;       /* the internal host (AF_INET/AF_INET6, 0 unknown) */
    uint8_t host[16];
    int64_t agency_id;       /* 0 when no agency range covers the host */
    const char *agency_code; /* NULL when none */
};

struct sen_output_opts {
    unsigned window_s;   /* de-duplication window (0 = write each match) */
    FILE *jsonl;         /* JSON lines here (may be NULL) */
    struct spool *spool; /* c2_hit events here (may be NULL) */
    const char *sensor;  /* this sensor's name (hostname by default) */
    size_t max_pending;  /* open windows kept (0 = 100,000; beyond, the oldest is written early) */
};

struct sen_output_stats {
    uint64_t matches, hits_written, spool_errors, spool_dropped, evicted_early;
};

struct sen_output;

int sen_output_new(const struct sen_output_opts *opts, struct sen_output **out);
void sen_output_free(struct sen_output *o); /* flushes first; NULL-safe */
/* Records one match (thread-safe). */
void sen_output_hit(struct sen_output *o, const struct sen_hit *h);
/* Writes the hits whose window closed by now_us (input clock). Thread-safe. */
void sen_output_tick(struct sen_output *o, int64_t now_us);
/* Writes everything pending. */
void sen_output_flush(struct sen_output *o);
void sen_output_stats(const struct sen_output *o, struct sen_output_stats *st);

#endif
