/*
 * The sensor's uplink to the Khiên server (uplink.c): a sensor joins the
 * server exactly like an endpoint agent — the same enrollment (agent.key,
 * agent.crt, ca.crt and agent.json in its state folder), the same mutual-TLS
 * client (agent/client.h), the same nothing-lost event spool
 * (agent/spool.h) and the same signed bundles (agent/update.h). What
 * differs is what it sends and takes: it checks in with role "sensor", gets
 * the agencies' address ranges ("networks") for telling which agency a host
 * belongs to, and uses only the indicator list of each bundle.
 *
 * One thread does all the talking: every few seconds it posts spooled events
 * (POST /agent/events; acknowledged on 2xx, so a lost answer repeats a batch,
 * whose event ids the server ignores the second time), and on the check-in
 * interval it posts POST /agent/checkin
 *   {"role":"sensor","inventory":{...as the agent's...},"db_version":N}
 * and reads "checkin_interval", "networks" and "bundle":{"version":N}. A newer
 * bundle is downloaded, verified with the enrollment's bundle key, unpacked
 * into STATE/db/v<N>/ and made current; on_indicators then gets its iocs.txt.
 * Failures back off from 2 s doubling up to the check-in interval.
 */
#ifndef KHIEN_SENSOR_UPLINK_H
#define KHIEN_SENSOR_UPLINK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct spool;

/* Joins the server with an enrollment token, like `khien-agent enroll`:
 * writes STATE/agent.key, agent.crt, ca.crt and agent.json. ca may be NULL
 * (the system's trust store). Returns KH_OK, KH_EINVAL when the server
 * refused (a person must act), KH_EIO for a network error, KH_EFORMAT for a
 * malformed answer; err says which. */
int sen_uplink_enroll(const char *state_dir, const char *server, const char *token, const char *ca,
                      char *err, size_t errlen);

struct sen_uplink_opts {
    const char *state_dir; /* enrolled with sen_uplink_enroll */
    struct spool *spool;   /* the events to send (the output's spool); owned by the caller */
    void *ctx;
    /* A newer indicator list is installed (also once at start for the one
     * already installed): ioc_path is its iocs.txt in the text form of
     * lib/ioc/ioc.h. Called from the uplink thread. May be NULL. */
    void (*on_indicators)(void *ctx, const char *ioc_path, int64_t version);
    /* The agencies' address ranges, a JSON array of
     * {"cidr":"10.1.0.0/16","agency_id":7,"agency_code":"SO-GD"}; borrowed for
     * the call. Also called at start with the list saved from the last
     * check-in (STATE/networks.json). Called from the uplink thread. May be NULL. */
    void (*on_networks)(void *ctx, json_t *networks);
    unsigned checkin_s; /* override the server's check-in interval (0 = the server's) */
    unsigned flush_s;   /* how often spooled events are sent (0 = 3 s) */
};

struct sen_uplink_status {
    int64_t last_checkin; /* Unix seconds, 0 = never */
    int64_t db_version;   /* the indicator bundle in use */
    uint64_t events_sent;
    char machine_id[64];
    char last_error[256];
};

struct sen_uplink;

/* Reads the identity and starts the thread. Returns KH_OK, KH_ENOTFOUND
 * when the state folder is not enrolled, KH_EIO/KH_ENOMEM with err. */
int sen_uplink_start(const struct sen_uplink_opts *opts, struct sen_uplink **out, char *err,
                     size_t errlen);
/* Asks for an early flush (after a hit was spooled) or check-in. */
void sen_uplink_wake(struct sen_uplink *u, int checkin);
void sen_uplink_status(struct sen_uplink *u, struct sen_uplink_status *st);
/* Stops the thread (it finishes the request in flight; the spool keeps what
 * was not sent). */
void sen_uplink_stop(struct sen_uplink *u);
void sen_uplink_free(struct sen_uplink *u); /* stops first; NULL-safe */

#endif
