/*
 * Upward federation (issue 7): a provincial server pushes its aggregated
 * infection statistics to a parent Khiên server, which shows every province
 * side by side. This header is the document both sides agree on (built by
 * the child in federation.c, checked by the parent in the same file) and
 * the child's background job (federation_push.c). The document carries
 * agency codes, names and kinds, the index's raw components and the index
 * only: never machine ids, host names, addresses, file paths or user names.
 * docs/internals/federation.md describes the format with an example.
 */
#ifndef KHIEN_REPORT_FEDERATION_H
#define KHIEN_REPORT_FEDERATION_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "index.h"
#include "server.h"

#define FED_SCHEMA       1
#define FED_DOC_MAX      (8u << 20)      /* bytes of one pushed document */
#define FED_PERIODS_MAX  12              /* periods in one document */
#define FED_AGENCIES_MAX 5000            /* agencies in one period */
#define FED_CODE_MAX     63              /* bytes of a province or agency code */
#define FED_NAME_MAX     255             /* bytes of a province or agency name */
#define FED_COUNT_MAX    1000000000000LL /* largest component accepted */
#define FED_TOKEN_PREFIX "khf_"

/* The names of struct idx_components' fields, in order, as the document
 * spells them (FED_NCOMPONENTS of them). */
#define FED_NCOMPONENTS 12
extern const char *const fed_component_names[FED_NCOMPONENTS];

/* The components as a JSON object, and back (0, or -1 when a field is
 * missing or not an integer). */
json_t *fed_components_json(const struct idx_components *c);
int fed_components_from_json(const json_t *o, struct idx_components *out);
/* acc += c, field by field. */
void fed_components_add(struct idx_components *acc, const struct idx_components *c);

/* A province or agency code: 1-FED_CODE_MAX of [A-Za-z0-9._-]. A name:
 * 1-FED_NAME_MAX bytes without '/', '\\', '@' or control characters. */
int fed_code_valid(const char *s);
int fed_name_valid(const char *s);

/* Builds the document from the index tables of `n` periods (counted with
 * root_agency 0). `province_code`/`province_name` are the province's identity
 * (cfg org_id/org_name), `interval` the seconds between pushes (the parent's
 * staleness marker uses it). Agency names lose the characters the parent
 * refuses ('/', '\\', '@', control characters: each becomes '-'), so that a
 * name cannot be used to carry a path or an account. Returns 0, or -1 with
 * err set (an invalid province code, no memory). */
int fed_doc_build(const char *province_code, const char *province_name,
                  const struct idx_table *tables, size_t n, unsigned interval, int64_t generated_at,
                  json_t **out, char *err, size_t errlen);

/* Parses and checks a pushed document (untrusted: at most FED_DOC_MAX
 * bytes). Every object must hold exactly the fields of the format (an
 * unknown field is refused, so nothing else can ride along); codes are
 * [A-Za-z0-9._-]; names are UTF-8 without '/', '\\', '@' or control
 * characters; counts are integers 0..FED_COUNT_MAX; period labels are the
 * canonical "2026-11"/"2026Q4" of their kind; an agency's parent is a code
 * listed before it. On success *out owns the parsed document and 0 is
 * returned; else -1 and err names the field ("periods[1].agencies[3].
 * total.managed: ..."). */
int fed_doc_validate(const char *text, size_t len, json_t **out, char *err, size_t errlen);

/* The child's job (jobs.c "federation-push"): on while parent_url is set,
 * every parent_interval. One run counts the current and previous month and
 * quarter, builds the document and POSTs it to parent_url +
 * /api/v1/federation/push with the token of parent_token_file, verifying the
 * parent against parent_ca. Returns 0, or -1 with msg saying why (jobs.c
 * retries). */
unsigned fed_push_interval(const struct srv_config *cfg);
int fed_job_push(struct srv *s, struct store_db *db, int64_t now, char *msg, size_t msglen);

#endif
