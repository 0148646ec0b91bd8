/*
 * Agency address ranges and the network sensor's C&C hits (c2.c), without
 * HTTP: api_c2.c serves them, ingest.c stores hits through them and
 * api_agent.c hands the ranges to sensors at check-in.
 *
 * An address range is a CIDR owned by one agency (agency_networks,
 * migration 5), kept normalised ("10.1.2.0/24", host bits cleared, IPv6 in
 * its RFC 5952 text) with its first and last address as big-endian bytes (4
 * or 16), which both backends compare byte by byte, so "which ranges hold
 * this address" is a range comparison on an index. Ranges of different
 * agencies may nest only along the agency tree (a department's /16 holding
 * one of its agencies' /24s); any other overlap is refused, so the most
 * specific range holding an address names one agency.
 *
 * A hit ("c2_hit" event, sensor/output.h, docs/api/sensor.md) is filed under
 * the agency whose most specific range holds its internal host, decided
 * here on the server; the agency the sensor sent counts only when no range
 * holds the host and it lies inside the sender's own agency subtree, and
 * the sender's agency is the last resort.
 */
#ifndef KHIEN_SERVER_C2_H
#define KHIEN_SERVER_C2_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store/store.h"

#define C2_CIDR_TEXT_MAX   64   /* normalised CIDR text with its NUL */
#define C2_NOTE_MAX        200  /* bytes of a range's note */
#define C2_RANGES_MAX      1024 /* ranges one agency may have */
#define C2_INDICATOR_MAX   2048 /* bytes of an indicator value (URLs) */
#define C2_OBSERVED_MAX    2048 /* bytes of what was seen */
#define C2_EVIDENCE_MAX    4096 /* bytes of evidence */
#define C2_SOURCES_MAX     32   /* sources of one indicator */
#define C2_WORD_MAX        64   /* source names, categories, families */
#define C2_SENSOR_NAME_MAX 255

/* One parsed range. */
struct c2_range {
    int family;                  /* 4 or 6 */
    unsigned prefix;             /* 0..32 or 0..128 */
    uint8_t first[16], last[16]; /* network and broadcast address, big-endian */
    size_t addr_len;             /* 4 or 16 */
    char text[C2_CIDR_TEXT_MAX]; /* normalised "a.b.c.d/n" or "x::/n" */
};

/* Parses "10.1.2.0/24", "2001:db8::/32" or a bare address (a /32 or /128).
 * Host bits are cleared ("10.1.2.3/24" becomes 10.1.2.0/24). Returns 0, or
 * -1 with the reason in err[errlen]. */
int c2_range_parse(const char *text, struct c2_range *out, char *err, size_t errlen);

/* Parses one address into 4 or 16 big-endian bytes; returns the family (4
 * or 6), or 0 when it is not an address. */
int c2_addr_parse(const char *text, uint8_t addr[16], size_t *len);

/* The agency whose most specific range holds the address. Returns
 * STORE_ROW with *agency_id set, STORE_DONE when none does, or < 0. */
int c2_agency_for_addr(struct store_db *db, const uint8_t *addr, size_t len, int64_t *agency_id);

/* Checks a "c2_hit" event (the fields besides id, type and at, which
 * ingest.c checks for every event). Returns 0, or -1 with a short English
 * reason naming the field in msg[msglen]. */
int c2_validate_hit(const json_t *ev, char *msg, size_t msglen);

/* Stores a valid c2_hit event sent by machine `machine_id` (whose agency is
 * `machine_agency`), received at `now`. The event row itself is ingest.c's;
 * this adds the c2_hits row, once per (machine, event id). Returns 0 or a
 * negative store code. */
int c2_store_hit(struct store_db *db, const char *machine_id, int64_t machine_agency,
                 const json_t *ev, int64_t now);

/* Every range of the province as [{"cidr","agency_id","agency_code"}], for
 * a sensor's check-in. Returns 0 with *out set (the caller decrefs), or < 0. */
int c2_networks_for_sensor(struct store_db *db, json_t **out);

#endif
