/*
 * What the endpoint agent (agent/daemon.c) and the network sensor
 * (sensor/uplink.c) share of talking to the server (uplink_common.c):
 * sending spooled events (POST /agent/events, acknowledged on 2xx), backing
 * off after a failure, telling the answers that need a person (401, 403)
 * from those worth retrying, fetching a signed bundle (download, verify with
 * the enrollment's bundle key, unpack) and the inventory part of a check-in.
 * Both programs keep their own check-in and their own way of making a
 * bundle current; the state that those and the functions here share lives
 * in struct uplink, which the caller owns and fills.
 */
#ifndef KHIEN_UPLINK_COMMON_H
#define KHIEN_UPLINK_COMMON_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct spool;
struct update_db;
struct plat_inventory;

/* What a message is about, so that each program decides whether it is its
 * "last error", a log line or nothing. */
enum uplink_what {
    UPLINK_FAILED,         /* a call or a bundle failed, or the server wants a person */
    UPLINK_EVENTS_HTTP,    /* /agent/events answered an error that is neither 400 nor 401/403 */
    UPLINK_BATCH_REFUSED,  /* the server refused a batch (400): it was dropped */
    UPLINK_EVENT_REJECTED, /* the server took a batch but rejected one event of it */
};

struct uplink {
    /* Set by the caller. */
    struct client *client;  /* mutual TLS with the enrollment */
    struct spool *spool;    /* events to send; NULL sends nothing */
    const char *bundle_key; /* base64 Ed25519 public key from agent.json */
    const char *db_dir;     /* STATE/db, where bundles are unpacked */
    const char *who;        /* "machine" or "sensor", for messages */
    atomic_int *stop;       /* uplink_flush_events stops once it is set; may be NULL */
    unsigned interval_s;    /* the check-in interval, the longest backoff; kept current */
    void *ctx;
    /* A message (at most 1,023 bytes) about `what`; required. */
    void (*report)(void *ctx, enum uplink_what what, const char *msg);
    /* Spools an event of the uplink itself (adding "id" and "at"); ev is
     * borrowed. Required. */
    void (*emit)(void *ctx, json_t *ev);

    /* Kept by the functions here and by the caller's check-in. */
    uint64_t next_checkin, next_flush; /* khx_now_ms */
    unsigned backoff_s;                /* 0 = the last call worked */
    int unauthorized, retired;
    int64_t refused_version;      /* a bundle refused once is not fetched again */
    _Atomic uint64_t events_sent; /* acknowledged by the server */
};

/* Sets *next to 2 s from now after the first failure, twice the last wait
 * after each further one (at most interval_s, or 2 s when that is less),
 * plus up to 1 s of jitter. */
void uplink_backoff(struct uplink *u, uint64_t *next);

/* For an answer that is not 2xx: 401 and 403 mean a person must act
 * (enroll again; the machine was retired, and retired is set so that the
 * caller stops calling). Reported once each. Returns 1 for those. */
int uplink_fatal_status(struct uplink *u, long status);

/* Sends spooled events in batches until the spool is empty, a batch fails
 * (backing off next_flush) or *stop is set; only while next_flush has come.
 * A batch is acknowledged in the spool on 2xx and on 400 (the server will
 * never take it). */
void uplink_flush_events(struct uplink *u);

/* Downloads bundle `version`, verifies it with bundle_key and unpacks it
 * into db_dir (it must be newer than `current`); *db describes it. Returns
 * KH_OK, KH_EIO when it could not be downloaded (try again later) or another
 * error when the bundle was refused (a "bundle_refused" event is spooled;
 * do not fetch that version again). Making it current is the caller's. */
int uplink_fetch_bundle(struct uplink *u, int64_t version, int64_t current, struct update_db *db);

/* The check-in's inventory: the machine's facts from *inv (hostname, os,
 * kernel, arch, cpu, cpus, mem_bytes, ips, macs, agent_version), then the
 * caller's `fields` in their order (taken over; NULL fails), then
 * machine_key when there is one. NULL when out of memory. */
json_t *uplink_inventory_json(const struct plat_inventory *inv, json_t *fields);

#endif
