/*
 * Helpers for the cmocka unit tests: temporary folders, writing fixture
 * files, and finding ../shared/data (tests that need it skip when absent).
 */
#ifndef KHIEN_TESTUTIL_H
#define KHIEN_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

/* Creates a fresh temporary directory; the returned path is static storage
 * valid until the next call. Removed with tu_rmtree. */
const char *tu_mkdtemp(void);
void tu_rmtree(const char *path);
/* Writes dir/name with the given bytes; returns the full path (malloc'd). */
char *tu_write(const char *dir, const char *name, const void *data, size_t len);
/* The shared test data folder (../shared/data next to the source tree), or
 * NULL when it is absent. Tests print a visible "SKIP" line and return. */
const char *tu_shared_data(void);

/* For server tests that run on PostgreSQL too: when KHIEN_PG_URL names a
 * server, creates a database private to this process on it (dropped at
 * exit) and returns its URL (static storage); returns NULL when KHIEN_PG_URL
 * is unset or the database cannot be made (the reason is printed). Tests
 * running in parallel on one cluster therefore never share a schema. */
const char *tu_pg_private_url(void);

struct store_db;

/* Opens the store for a server test in `dir` (SQLite) or at `pg_url` when it
 * is not NULL (its public schema emptied first), and migrates it to schema
 * `version` (0 = the newest). Returns the connection, or NULL when the store
 * cannot be opened or migrated (tests then skip). */
struct store_db *tu_store_open(const char *dir, const char *pg_url, int version);

/* Fails the test unless every running figure that ingestion and the
 * detection workflow keep (migration 3: per-machine and per-agency open
 * counts, daily and hourly rollups) equals a count of the detections from
 * scratch at time `now`. */
void tu_figures_match_recount(struct store_db *db, int64_t now);

struct srv;
struct srv_req;
struct srv_principal;

/* Runs an API handler on a request built in memory (no HTTP): `param` is
 * the route's one parameter (may be NULL), `query` the query string and
 * `body` the JSON body (both may be NULL), as `who`. Returns the answer's
 * JSON (the caller decrefs; NULL when it has no body or the body is not
 * JSON) with the status in *status. With `strict`, the handler must return
 * 0 and the body must be JSON, or the test fails. */
json_t *tu_call_handler(struct srv *srv, struct store_db *db, int (*h)(struct srv_req *),
                        const struct srv_principal *who, const char *method, const char *param,
                        const char *query, const char *body, int strict, unsigned *status);

/* Fills *p as the built-in administrator (user 1, whole province). */
void tu_principal_admin(struct srv_principal *p);

/* For tests that publish bundles: a fresh folder `dir` (at least 256
 * bytes), a migrated store in it as tu_store_open makes it (PostgreSQL when
 * `postgres`), and a bundle signer, wired into `srv` (data folder,
 * keep_bundles, signer). Returns -1 after printing SKIP and why when the
 * backend is not available. */
int tu_publisher_open(struct srv *srv, char *dir, struct store_db **db, unsigned keep,
                      int postgres);
void tu_publisher_close(struct srv *srv, char *dir, struct store_db *db);

#endif
