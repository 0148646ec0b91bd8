/*
 * Helpers for the cmocka unit tests: temporary folders, writing fixture
 * files, finding ../shared/data (tests that need it skip when absent), and
 * a real `khien server` from this build with an administrator's session
 * for the tests that talk to it over HTTPS.
 */
#ifndef KHIEN_TESTUTIL_H
#define KHIEN_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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

/* An agency under `parent` (0: a root) named `name` (the code when NULL),
 * with its materialized path; returns its id. Fails the test on error. */
int64_t tu_add_agency(struct store_db *db, int64_t parent, const char *code, const char *name,
                      int64_t now);
/* A user of `role` (enum srv_role) scoped to `agency` (0: the whole
 * province), and *who as that user with the agency's scope. */
void tu_add_person(struct store_db *db, struct srv_principal *who, const char *name, int role,
                   int64_t agency, int64_t now);

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

/* A `khien server` from this build ($KHIEN_BIN/khien, else bin/khien) on a
 * free loopback port, with its data folder in a fresh temporary folder, for
 * a test group: */
struct tu_server {
    int up;        /* the server answers and the administrator is logged in */
    char why[512]; /* why the tests skip, when !up */
    pid_t pid;
    char tmp[256];  /* the group's temporary folder: data/, the logs, the tests' own */
    char data[320]; /* the server's data folder */
    char ca[400];   /* its CA certificate */
    char url[64];   /* https://127.0.0.1:PORT */
    char password[128];
    char csrf[128];
    void *admin; /* the administrator's CURL handle (session cookie) */
};

/* Initialises libsodium and libcurl, then runs `khien server init` and
 * `khien server run` and logs in as the administrator. Returns 0 with
 * s->up set, 0 with s->up clear and s->why saying so when the binary is not
 * built (tests then skip with TU_NEED_SERVER), or -1 when the server does
 * not start (its output printed). */
int tu_server_start(struct tu_server *s);
/* Stops the server, removes s->tmp and cleans up libcurl; safe on a server
 * that did not start. */
void tu_server_stop(struct tu_server *s);
/* Prints the server's log to stderr, for a failing test group. */
void tu_server_print_log(const struct tu_server *s);

/* One dashboard API call (/api/v1 + path) as the administrator, with the
 * session cookie and CSRF header; ctype and body may be NULL. The answer's
 * JSON in *out (may be NULL; NULL when the answer is not JSON). Returns the
 * HTTP status (0 when there was none). */
long tu_admin_call(struct tu_server *s, const char *method, const char *path, const char *ctype,
                   const char *body, json_t **out);
/* Creates an agency; its id in id. Returns 0, or -1 with s->why. */
int tu_admin_agency(struct tu_server *s, const char *code, const char *name, char *id, size_t cap);
/* Creates an enrollment token for agency `agency_id` with the JSON body
 * (e.g. {"max_uses":0}); the token in token and its id in token_id (may be
 * NULL). Returns 0, or -1 with s->why. */
int tu_admin_token(struct tu_server *s, const char *agency_id, const char *body, char *token,
                   size_t cap, char *token_id, size_t idcap);

/* Uploads `data` as the signature source `name` of `kind` ("clamav",
 * "indicators"); returns the HTTP status. */
long tu_admin_upload(struct tu_server *s, const char *kind, const char *name, const char *data);
/* Publishes a bundle of the sources uploaded so far; returns its version,
 * or -1 when the server did not answer 200 with one. */
int64_t tu_admin_publish(struct tu_server *s);

/* Copies the string or integer field `key` of obj into dst; 0 when it is one. */
int tu_json_field(json_t *obj, const char *key, char *dst, size_t cap);
/* A loopback TCP port nothing listens on now, or -1. */
int tu_free_port(void);

#define TU_NEED_SERVER(s)                                                                          \
    do {                                                                                           \
        if (!(s)->up) {                                                                            \
            print_message("SKIP: %s\n", (s)->why);                                                 \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

#endif
