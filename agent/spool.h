/*
 * The event spool (spool_): every event the agent produces is written here
 * first, durably, and removed only when the server has acknowledged it. One
 * file per event, written to a temporary name, fsync'd, renamed into place
 * and the folder fsync'd, so that kill -9 or a power cut at any point leaves
 * either the whole event or nothing, and a half-written temporary file is
 * cleaned up on the next open. Files are named by a 64-bit sequence number so
 * the oldest go first. The spool is bounded by a count and a byte total; an
 * event that does not fit is dropped and counted, and the count is persisted
 * (the daemon reports it as an `events_dropped` event once there is room).
 *
 * Events are JSON objects whose "id" the daemon chose once (a random UUID);
 * sending a batch again after a lost answer repeats the same ids, which the
 * server ignores as duplicates, so nothing is lost and nothing is doubled.
 */
#ifndef KHIEN_AGENT_SPOOL_H
#define KHIEN_AGENT_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define SPOOL_EVENT_MAX (16u * 1024u) /* the server's per-event limit */

struct spool;

/* Opens (creating) the spool folder `dir` (0700). max_events / max_bytes of
 * 0 mean 100,000 events / 256 MiB. Half-written files of a crash are
 * removed. One process at a time: a second open of the same folder, even in
 * the same process, fails while the first is open (flock). On success *out
 * belongs to the caller (spool_close); err gets a message on failure. */
int spool_open(const char *dir, size_t max_events, uint64_t max_bytes, struct spool **out,
               char *err, size_t errlen);
void spool_close(struct spool *sp); /* NULL-safe */

/* Stores one event durably; returns KH_OK once it is on disk, KH_ELIMIT when
 * the spool is full (the event is dropped and counted), KH_EINVAL for an
 * event over SPOOL_EVENT_MAX or that is not one JSON object (it is stored
 * re-printed compact), KH_EIO on a write error. Thread-safe. */
int spool_put(struct spool *sp, const char *json, size_t len);
/* Like spool_put, and on KH_OK sets *seq (may be NULL) to the event's
 * sequence number, which no other event of this spool ever gets, even after
 * every event was acknowledged and the spool reopened. (Added for logging and
 * for the crash test, which checks what survived kill -9.) */
int spool_put_seq(struct spool *sp, const char *json, size_t len, uint64_t *seq);

/* A batch of the oldest events, as one JSON array text "[ev,ev,...]" ready to
 * be wrapped as {"events": ...}, with the sequence numbers it covers. */
struct spool_batch {
    char *json; /* malloc'd, NUL-terminated */
    size_t len;
    size_t count;
    uint64_t *seqs; /* malloc'd, count entries */
};

/* Fills *b with up to max_events events and at most max_bytes of JSON (at
 * least one event when any is stored). A stored file that is not valid JSON
 * is removed and counted as dropped. Returns KH_OK (b->count may be 0, then
 * b->json is "[]"). max_events of 0 means 1000 (the server's batch limit),
 * max_bytes of 0 means 16 MiB. *b belongs to the caller (spool_batch_free)
 * only when KH_OK is returned. Thread-safe. */
int spool_peek(struct spool *sp, size_t max_events, size_t max_bytes, struct spool_batch *b);
/* Removes the batch's events durably (one folder fsync for the batch).
 * Sequence numbers no longer stored are ignored. Thread-safe. */
int spool_ack(struct spool *sp, const struct spool_batch *b);
void spool_batch_free(struct spool_batch *b);

struct spool_stats {
    size_t events;
    uint64_t bytes;
    uint64_t dropped; /* since the last spool_take_dropped */
};
void spool_stats(struct spool *sp, struct spool_stats *st);
/* Returns the persisted dropped count and resets it to 0. */
uint64_t spool_take_dropped(struct spool *sp);

#endif
