/*
 * The detector (detect.c): checks each observation against the indicator
 * store in use and hands matches to the output. It also knows the
 * province's address ranges per agency (from the server, or a local file),
 * so a hit names the internal host and its agency.
 *
 * One sen_detector per worker thread: it holds a reference to the store for
 * a batch of packets and renews it on each tick, so a reload (ioc_slot_swap)
 * takes effect within a second and the old store is unmapped once every
 * worker has moved on.
 */
#ifndef KHIEN_SENSOR_DETECT_H
#define KHIEN_SENSOR_DETECT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../lib/ioc/store.h"
#include "output.h"
#include "sensor.h"

/* ---- agency ranges ---- */

struct sen_agencies;

/* Parses ranges from JSON ([{"cidr":"10.1.0.0/16","agency_id":7,
 * "agency_code":"SO-GD"},...], as the server's check-in answer carries
 * them) or from text lines "CIDR AGENCY_ID [AGENCY_CODE]" ('#' comments).
 * Returns KH_OK, KH_EFORMAT with err naming the entry, or KH_ENOMEM. */
int sen_agencies_from_json(const json_t *list, struct sen_agencies **out, char *err, size_t errlen);
int sen_agencies_from_text(const char *text, size_t len, struct sen_agencies **out, char *err,
                           size_t errlen);
void sen_agencies_free(struct sen_agencies *a); /* NULL-safe */
size_t sen_agencies_count(const struct sen_agencies *a);
/* The most specific range holding the address: 1 with *id and *code (valid
 * while the set lives), or 0. */
int sen_agencies_lookup(const struct sen_agencies *a, int family, const uint8_t *addr, int64_t *id,
                        const char **code);

/* ---- detection ---- */

/* Shared by every worker: the store slot, the output, the agency ranges
 * (replaceable at run time). */
struct sen_detect_shared;

int sen_detect_shared_new(struct ioc_slot *slot, struct sen_output *out,
                          struct sen_detect_shared **outp);
void sen_detect_shared_free(struct sen_detect_shared *sh); /* NULL-safe; frees the ranges */
/* Installs new ranges (ownership passes; NULL removes them). Thread-safe. */
void sen_detect_set_agencies(struct sen_detect_shared *sh, struct sen_agencies *a);

struct sen_detect_stats {
    uint64_t observations[SEN_WHERE_COUNT];
    uint64_t matches[SEN_WHERE_COUNT];
    uint64_t allowed;  /* matches an allowlist suppressed */
    uint64_t no_store; /* observations while no store was loaded */
};

struct sen_detector;

int sen_detector_new(struct sen_detect_shared *sh, struct sen_detector **out);
void sen_detector_free(struct sen_detector *d); /* releases its store reference; NULL-safe */
/* The observation callback (sen_obs_fn): ctx is a struct sen_detector. */
void sen_detect_obs(void *ctx, const struct sen_obs *o);
/* Renews the store reference (call about once a second from the worker). */
void sen_detector_tick(struct sen_detector *d);
/* Adds this detector's counts into *st. */
void sen_detector_stats_add(const struct sen_detector *d, struct sen_detect_stats *st);

#endif
