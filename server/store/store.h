/*
 * The server's storage interface. Everything the server keeps (agencies,
 * machines, detections, users, bundles, audit) lives in one SQL database
 * reached through this small interface, with two backends chosen by URL:
 *
 *   sqlite:///absolute/path/khien.db  or a plain path  -> SQLite (WAL)
 *   postgresql://user@host:port/db  (or postgres://)     -> PostgreSQL (libpq)
 *
 * Callers write one SQL text for both backends: parameters are $1, $2, ...
 * (rewritten to ?1, ?2 for SQLite), times are BIGINT Unix seconds computed by
 * the caller, booleans are INTEGER 0/1, ids come from RETURNING id, and
 * case-insensitive search uses lower(x) LIKE lower($n). Every statement is
 * prepared with bound parameters; nothing is ever spliced into SQL text.
 *
 * A store_db is one connection and is not thread-safe: the server keeps a pool
 * (server.c) and lends one connection to each request. Numbered migrations
 * (migrations.c) are applied by store_migrate() under a lock, so several
 * servers starting at once against one PostgreSQL apply each exactly once.
 *
 * Errors: functions return 0 (or STORE_ROW / STORE_DONE from store_step) on
 * success and a negative STORE_E* code on failure; store_errmsg() has the
 * backend's message for the last failure on that connection.
 */
#ifndef KHIEN_SERVER_STORE_H
#define KHIEN_SERVER_STORE_H

#include <stddef.h>
#include <stdint.h>

struct store_db;
struct store_stmt;

enum store_kind { STORE_SQLITE = 1, STORE_POSTGRES = 2 };

enum store_err {
    STORE_OK = 0,
    STORE_EINVAL = -1,    /* bad URL, bad parameter index, misuse */
    STORE_ECONNECT = -2,  /* cannot open or connect */
    STORE_ESQL = -3,      /* the database refused the statement */
    STORE_ECONFLICT = -4, /* unique or foreign-key constraint violated */
    STORE_EBUSY = -5,     /* lock timeout or serialization failure: retry */
    STORE_ENOMEM = -6,
};

/* store_step() results besides errors. */
enum { STORE_DONE = 0, STORE_ROW = 1 };

const char *store_strerror(int err);

/* Opens a connection. On failure returns a negative code and, if err is not
 * NULL, writes a message naming the URL's problem into err[errlen]. The
 * caller closes the connection with store_close() (NULL-safe). */
int store_open(const char *url, struct store_db **out, char *err, size_t errlen);
void store_close(struct store_db *db);
enum store_kind store_kind(const struct store_db *db);
const char *store_errmsg(const struct store_db *db);

/* Applies every migration newer than the database's schema version, each in
 * its own transaction, holding a lock (pg_advisory_lock / BEGIN EXCLUSIVE)
 * so concurrent servers do not race. Returns 0 or a negative code. */
int store_migrate(struct store_db *db);
/* Like store_migrate() but stops at schema version `target` (<= latest):
 * for tests that build an older schema and then check a later migration's
 * backfill. */
int store_migrate_to(struct store_db *db, int target);
/* The schema version the database is at, and the newest this build knows. */
int store_schema_version(struct store_db *db, int *out);
int store_schema_latest(void);

/* Transactions. store_begin_write() takes the write lock up front (SQLite
 * BEGIN IMMEDIATE) so a read-then-write transaction cannot deadlock. */
int store_begin(struct store_db *db);
int store_begin_write(struct store_db *db);
int store_commit(struct store_db *db);
int store_rollback(struct store_db *db); /* safe to call when no transaction is open */

/* Runs SQL text without parameters or results (DDL, several statements). */
int store_exec(struct store_db *db, const char *sql);

/* Prepares one statement. The connection caches prepared statements by SQL
 * text, so preparing the same text again is cheap. The statement belongs to
 * the caller until store_finalize() (NULL-safe). */
int store_prepare(struct store_db *db, const char *sql, struct store_stmt **out);
/* Parameters are 1-based. Text and blobs are copied. */
int store_bind_text(struct store_stmt *st, int idx, const char *s); /* NULL binds NULL */
int store_bind_int(struct store_stmt *st, int idx, int64_t v);
int store_bind_null(struct store_stmt *st, int idx);
int store_bind_blob(struct store_stmt *st, int idx, const void *p, size_t n);
/* Executes on the first call; returns STORE_ROW while rows remain, then
 * STORE_DONE, or a negative code. */
int store_step(struct store_stmt *st);
/* Rows changed by the last INSERT/UPDATE/DELETE run by this statement. For
 * INSERT ... RETURNING on SQLite it is final only once store_step returned
 * STORE_DONE. */
int64_t store_changes(struct store_stmt *st);
/* Columns are 0-based and valid until the next step or finalize. Text of a
 * NULL column is NULL; integers of NULL are 0. */
int store_col_count(struct store_stmt *st);
int store_col_is_null(struct store_stmt *st, int col);
const char *store_col_text(struct store_stmt *st, int col);
int64_t store_col_int(struct store_stmt *st, int col);
const void *store_col_blob(struct store_stmt *st, int col, size_t *len);
/* Resets the statement so it can be bound and stepped again. */
int store_reset(struct store_stmt *st);
void store_finalize(struct store_stmt *st);

/* Convenience: prepare, bind from a format string, step once, finalize.
 * Format characters: 't' const char * (NULL binds NULL), 'i' int64_t
 * (pass an int64_t: a plain int literal through varargs is undefined
 * behaviour, so write (int64_t)1), 'n' NULL (no argument). On PostgreSQL a
 * parameter whose type cannot be inferred ("$1 IS NULL") needs a CAST. Returns
 * STORE_DONE/STORE_ROW-free result: 0 on success, negative on error; *changes (may be NULL) gets
 * the row count. */
int store_execf(struct store_db *db, int64_t *changes, const char *sql, const char *fmt, ...);
/* Like store_execf but leaves the stepped statement to the caller, who reads
 * the first row (return STORE_ROW) and may step further, then finalizes.
 * On STORE_DONE or error the statement is already finalized and *out NULL. */
int store_queryf(struct store_db *db, struct store_stmt **out, const char *sql, const char *fmt,
                 ...);
/* Single-value helpers: the first column of the first row. Return STORE_ROW
 * when found, STORE_DONE when there was no row (out untouched), or < 0. */
int store_query_int(struct store_db *db, int64_t *out, const char *sql, const char *fmt, ...);
/* *out is malloc'd; the caller frees it. A NULL value gives STORE_ROW with
 * *out NULL. */
int store_query_text(struct store_db *db, char **out, const char *sql, const char *fmt, ...);

#endif
