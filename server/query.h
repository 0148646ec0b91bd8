/*
 * Small helpers shared by the dashboard's read/act handlers (api_machine.c,
 * api_detection.c, api_overview.c): a bounded SQL builder whose text only
 * ever grows by constant fragments and "$n" placeholders, the caller's scope
 * as a WHERE fragment, sort whitelists, LIKE patterns built in C, query
 * parameters, and the paged list envelope.
 *
 * The rule these helpers exist to keep: user text never reaches SQL text.
 * srv_sql_add() takes fragments that are string constants in our source;
 * everything that came from a request is bound with srv_sql_text() or
 * srv_sql_int(), and sort columns are picked from a constant table.
 */
#ifndef KHIEN_SERVER_QUERY_H
#define KHIEN_SERVER_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "server.h"

/* Statuses that still need someone's attention, as one SQL list. */
#define SRV_OPEN_STATUSES "('new','acknowledged')"
/* A machine whose bundle was built longer ago than this is "outdated". */
#define SRV_OUTDATED_DAYS 15
/* Longest search text (?q=) accepted, in bytes. */
#define SRV_SEARCH_MAX 200

/* ------------------------------------------------------------------------ */
/* SQL builder.                                                              */
/* ------------------------------------------------------------------------ */

#define SRV_SQL_MAX       4096
#define SRV_SQL_MAXPARAMS 24

struct srv_sql_param {
    int is_text;
    char *text; /* malloc'd copy; NULL binds NULL */
    int64_t num;
};

/* A statement being assembled. Overflowing the text or the parameter table
 * marks it failed; srv_sql_prepare() then refuses it, so callers need not
 * check every append. */
struct srv_sql {
    char text[SRV_SQL_MAX];
    size_t len;
    int failed;
    int nparams;
    struct srv_sql_param params[SRV_SQL_MAXPARAMS];
};

void srv_sql_init(struct srv_sql *q);
/* Frees the parameter copies and empties the builder (NULL-safe). */
void srv_sql_clear(struct srv_sql *q);
/* Appends constant SQL text. Never pass anything that came from a request. */
void srv_sql_add(struct srv_sql *q, const char *fragment);
/* Appends "$n" for a new parameter bound to a copy of `value` (or NULL) and
 * returns n, or -1 when the builder is full. */
int srv_sql_text(struct srv_sql *q, const char *value);
int srv_sql_int(struct srv_sql *q, int64_t value);
/* Appends "$n" again for a parameter already added. */
void srv_sql_ref(struct srv_sql *q, int n);
/* Prepares the text and binds every parameter. On success *out belongs to
 * the caller (store_finalize); returns 0 or a negative STORE_E* code. */
int srv_sql_prepare(struct store_db *db, const struct srv_sql *q, struct store_stmt **out);

/* Appends " AND <path_col> LIKE $n" restricting rows to the caller's scope.
 * The whole province ("%") adds nothing, which lets the planner skip a join
 * condition that every row would pass. `path_col` must be a constant such as
 * "a.path". */
void srv_sql_scope(struct srv_sql *q, const struct srv_req *r, const char *path_col);

/* ------------------------------------------------------------------------ */
/* Sorting.                                                                  */
/* ------------------------------------------------------------------------ */

/* One entry of a handler's sort whitelist: the public name and the complete
 * ORDER BY lists (with tie-breakers) for each direction. */
struct srv_sort {
    const char *name;
    const char *asc;
    const char *desc;
    int default_desc; /* direction when ?order= is absent */
};

/* Appends " ORDER BY ..." for `sort` (NULL: the table's first entry) and
 * `order` ("asc", "desc" or NULL). The table ends with a NULL name. Returns
 * 0, or -1 naming the bad parameter in *bad ("sort" or "order"). */
int srv_sql_order(struct srv_sql *q, const struct srv_sort *table, const char *sort,
                  const char *order, const char **bad);

/* ------------------------------------------------------------------------ */
/* LIKE patterns.                                                            */
/* ------------------------------------------------------------------------ */

/* Writes a LIKE pattern matching `in` as a substring (prefix_only = 0) or a
 * prefix (prefix_only = 1) into out[outlen], escaping %, _ and \ with a
 * backslash: use it with ESCAPE '\'. Returns 0, or -1 if it does not fit. */
int srv_like_pattern(const char *in, int prefix_only, char *out, size_t outlen);

/* ------------------------------------------------------------------------ */
/* Request parameters.                                                       */
/* ------------------------------------------------------------------------ */

/* A query-string parameter, or NULL when absent or empty. The text belongs
 * to the request (in unit tests, to one of a few rotating buffers), so use
 * it at once or copy it with srv_qparam_copy(). */
const char *srv_qparam(struct srv_req *r, const char *name);
/* Copies a parameter into buf[buflen]. Returns 1 when copied, 0 when absent
 * or empty (buf is ""), -1 when it does not fit (buf is ""). */
int srv_qparam_copy(struct srv_req *r, const char *name, char *buf, size_t buflen);
/* An integer parameter: returns 0 when absent (out untouched), 1 when it
 * parsed as a decimal int64 within [min, max], -1 otherwise. */
int srv_qparam_int(struct srv_req *r, const char *name, int64_t min, int64_t max, int64_t *out);
/* Parses a route segment as a positive decimal id; returns 0 or -1. */
int srv_param_id(const struct srv_req *r, unsigned index, int64_t *out);
/* The route's first segment as a positive id, or 0 when it is not one (the
 * caller answers 404: a malformed id names nothing). */
int64_t srv_route_id(const struct srv_req *r);
/* A route segment that names a machine (1..64 characters), or NULL. */
const char *srv_param_machine(const struct srv_req *r, unsigned index);

/* Looks up agency `id` within the caller's scope and copies its path
 * ("/1/4/") into path[pathlen]. Returns 1 when found, 0 when absent or out
 * of scope, or a negative STORE_E* code. */
int srv_agency_path(struct srv_req *r, int64_t id, char *path, size_t pathlen);

/* ------------------------------------------------------------------------ */
/* JSON.                                                                     */
/* ------------------------------------------------------------------------ */

/* {"items": items, "total": N, "page": P, "per_page": K}; steals `items`.
 * Returns NULL when out of memory (items is freed). */
json_t *srv_page_json(json_t *items, int64_t total, int64_t limit, int64_t offset);
/* The text of column `col` as a JSON string, or JSON null when NULL. */
json_t *srv_col_string(struct store_stmt *st, int col);
/* Column `col` parsed as a JSON document; `fallback` ("{}", "[]", "null")
 * when it is empty or does not parse. With fallback NULL, text that is not
 * JSON is kept as a JSON string and an empty column is null. Never NULL
 * unless out of memory. */
json_t *srv_col_json(struct store_stmt *st, int col, const char *fallback);
/* Column `col` as a JSON integer, or JSON null when NULL. */
json_t *srv_col_intn(struct store_stmt *st, int col);
/* {"id", "code", "name"} from three consecutive columns starting at `col`. */
json_t *srv_col_agency(struct store_stmt *st, int col);
/* A space-separated list (machines.ips, .macs) as a JSON array of strings. */
json_t *srv_words_json(const char *s);
/* Days since `t` (a bundle's build time), or JSON null for "never" (0). */
json_t *srv_age_days(int64_t now, int64_t t);

#endif
