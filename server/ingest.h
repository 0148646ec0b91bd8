/*
 * Event ingestion (ingest.c): checks a batch of events that an agent (and
 * later the network sensor) posts, and stores each valid one exactly once.
 * It knows the store and JSON but nothing of HTTP, so every path that
 * receives events shares one set of rules:
 *
 *   - an event is a JSON object with "id" (1..64 characters of
 *     [A-Za-z0-9._:-], chosen by the sender), "type" (a lowercase word such
 *     as "detection" or "scan_finished") and "at" (Unix seconds between
 *     2000-01-01 and 2100-01-01); any further fields are kept as the event's
 *     data. A "detection" also needs "signature" and may carry "path",
 *     "sha256", "md5", "size" and "action" (reported|quarantined|blocked|
 *     deleted, default reported). A "c2_hit" (a connection to a known
 *     command-and-control address or name, sensor/output.h) is checked
 *     and stored by c2.c (docs/api/sensor.md);
 *   - an id already stored changes nothing and counts as a duplicate, so a
 *     sender that did not see the answer retries the same batch safely;
 *   - an invalid event is reported by index and does not stop the others;
 *   - the whole batch is one write transaction, retried once when the store
 *     reports a lock conflict.
 */
#ifndef KHIEN_SERVER_INGEST_H
#define KHIEN_SERVER_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store/store.h"

#define SRV_INGEST_MAX_EVENTS      1000         /* events per batch */
#define SRV_INGEST_MAX_EVENT_BYTES 16384        /* one event as compact JSON */
#define SRV_INGEST_MAX_ID          64           /* characters of an event id */
#define SRV_INGEST_AT_MIN          946684800LL  /* 2000-01-01T00:00:00Z */
#define SRV_INGEST_AT_MAX          4102444800LL /* 2100-01-01T00:00:00Z */

/* Checks one event. Returns 0 when it may be stored, or -1 with a short
 * English reason in msg[msglen] ("id: must be 1 to 64 characters of ..."). */
int srv_ingest_validate_event(const json_t *ev, char *msg, size_t msglen);

/* Derives a detection's family from its signature name: a trailing
 * ".UNOFFICIAL" is dropped, then up to two trailing "-DIGITS" groups (the
 * ClamAV signature id and revision), so "Win.Trojan.Agent-1234567-0" and
 * "Win.Trojan.Agent-998-1.UNOFFICIAL" both become "Win.Trojan.Agent". The
 * dotted "Platform.Category.Name" is kept whole. A name that would become
 * empty is kept as it is. Writes a NUL-terminated string, truncated to fit. */
void srv_ingest_family(const char *signature, char *out, size_t outlen);

/* Stores the events of one batch for machine `machine_id`, received at time
 * `now`. `events` must be a JSON array of at most SRV_INGEST_MAX_EVENTS
 * items. Detections are filed under the machine's current agency. On success
 * `report_out` (an object owned by the caller) gets "accepted", "duplicates"
 * and "rejected" ([{"index","id","message"}]) and 0 is returned. Returns
 * STORE_EINVAL for a malformed call (not an array, too many events, unknown
 * machine) or another negative store code (STORE_EBUSY after the retry),
 * in which case nothing of the batch was stored. */
int srv_ingest_events(struct store_db *db, const char *machine_id, const json_t *events,
                      int64_t now, json_t *report_out);

#endif
