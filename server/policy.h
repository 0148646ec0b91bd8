/*
 * Agent protection policies: what an agency's machines do (real-time
 * protection, scheduled scans, scan priority, connection reporting, how
 * often to look for updates, how long to keep quarantined files), set per
 * agency from the dashboard and handed to every agent at check-in.
 *
 * A policy is a JSON document in which every setting is optional: what it
 * leaves out takes the built-in default (policy.c holds the defaults, in one
 * place). The policy a machine gets is that of the nearest agency on the way
 * from its own agency up to the root that has one, else the built-in
 * default; an agency's policy replaces its parent's whole, it is never
 * merged with it. docs/internals/policy.md has the rules and the limits;
 * docs/api/agent.md the schema with its defaults.
 *
 * The document comes from a person's browser or script and is validated
 * field by field: an unknown key is refused with its name, so that a typo is
 * never silently ignored, and every refusal names the field as a path
 * ("scheduled_scans[1].time").
 */
#ifndef KHIEN_SERVER_POLICY_H
#define KHIEN_SERVER_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store/store.h"

#define POLICY_TEXT_MAX    (64 * 1024) /* bytes of a policy as compact JSON */
#define POLICY_PATHS_MAX   64          /* entries in one list of paths */
#define POLICY_PATH_MAX    4096        /* bytes of one path */
#define POLICY_SCANS_MAX   16          /* entries in scheduled_scans */
#define POLICY_NAME_MAX    200         /* bytes of a scheduled scan's name */
#define POLICY_VERSION_LEN 16          /* hex characters of a policy_version */

/* Why a document was refused: the field as a path ("rtp.paths[3]", "" for
 * the document itself) and what is wrong with it. Both are printable text
 * short enough for srv_reply_field's message. */
struct policy_error {
    char field[96];
    char problem[144];
};

/* Checks a policy document. Returns 0 when it is valid, KH_EINVAL with *err
 * filled when it is not (the first problem found), KH_ENOMEM. */
int policy_validate(const json_t *doc, struct policy_error *err);

/* The complete policy that a valid document means: every setting present,
 * the ones the document leaves out at their defaults. On success *out is a
 * new object the caller decrefs; KH_EINVAL (with *err) when `doc` is not
 * valid, KH_ENOMEM. */
int policy_complete(const json_t *doc, json_t **out, struct policy_error *err);

/* The built-in default policy, complete (a new object, or NULL when out of
 * memory): what machines get when no agency above them has a policy. */
json_t *policy_default(void);

/* The version of a complete policy: the first 16 hex characters of the
 * SHA-256 of its compact JSON with sorted keys, so that equal policies have
 * equal versions on every server process. Returns 0 or KH_ENOMEM. */
int policy_version(const json_t *policy, char out[POLICY_VERSION_LEN + 1]);

/* The policy in effect for the machines of agency `agency_id`: the nearest
 * agency from it up to the root that has a policy, found in one query that
 * walks parent_id through the primary key. On success *policy is the
 * complete policy (caller decrefs) and *from the agency it comes from, 0 for
 * the built-in default. Returns 0, a negative STORE_E* code, or STORE_EINVAL
 * when the stored document of *from no longer validates (damaged database;
 * *policy is then NULL). An agency that does not exist gets the default. */
int policy_effective(struct store_db *db, int64_t agency_id, json_t **policy, int64_t *from);

#endif
