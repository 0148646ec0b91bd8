/*
 * The store's private structures, shared by store.c (the front end every
 * caller sees) and the two backends, store_sqlite.c and store_pg.c. Each
 * backend fills a table of operations; store.c checks arguments, dispatches
 * through the table and implements everything that is the same for both:
 * URL dispatch, the $N placeholder scanner, the statement cache, the
 * migration runner and the format-string helpers. Names with a `store__`
 * prefix are internal to the store and not part of store.h.
 */
#ifndef KHIEN_SERVER_STORE_INT_H
#define KHIEN_SERVER_STORE_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The highest $N a statement may use. SQLite's default limit is 32766 and
 * PostgreSQL's is 65535; the lower one applies to both. */
#define STORE_MAX_PARAMS 32766
/* Prepared statements kept per connection before the least recently used
 * idle one is dropped. The server uses a few hundred distinct texts. */
#define STORE_CACHE_CAP 256

struct store_ops {
    void (*close)(struct store_db *db);
    int (*exec)(struct store_db *db, const char *sql);
    int (*prepare)(struct store_db *db, const char *sql, struct store_stmt **out);
    int (*bind_text)(struct store_stmt *st, int idx, const char *s);
    int (*bind_int)(struct store_stmt *st, int idx, int64_t v);
    int (*bind_null)(struct store_stmt *st, int idx);
    int (*bind_blob)(struct store_stmt *st, int idx, const void *p, size_t n);
    int (*step)(struct store_stmt *st);
    int64_t (*changes)(struct store_stmt *st);
    int (*col_count)(struct store_stmt *st);
    int (*col_is_null)(struct store_stmt *st, int col);
    const char *(*col_text)(struct store_stmt *st, int col);
    int64_t (*col_int)(struct store_stmt *st, int col);
    const void *(*col_blob)(struct store_stmt *st, int col, size_t *len);
    int (*reset)(struct store_stmt *st);
    void (*finalize)(struct store_stmt *st);
    /* Transactions: begin (write = take the write lock now), commit,
     * rollback (only called when a transaction is open). */
    int (*begin)(struct store_db *db, int write);
    int (*commit)(struct store_db *db);
    int (*rollback)(struct store_db *db);
    int (*in_transaction)(struct store_db *db);
    /* Migrations: a lock held for the whole run (may be a no-op), and the
     * statement that begins one migration's transaction. */
    int (*migrate_lock)(struct store_db *db);
    void (*migrate_unlock)(struct store_db *db);
    const char *migrate_begin;
    /* A query returning one row, one integer column: 1 when the table
     * schema_version exists, else 0. */
    const char *has_schema_version;
    /* Replacements for the migrations' @PK@, @BLOB@ and @BIGINT@. */
    const char *type_pk, *type_blob, *type_bigint;
};

/* The part of a connection that store.c reads; each backend's connection
 * struct starts with it. */
struct store_db {
    const struct store_ops *ops;
    enum store_kind kind;
    char errmsg[512];
};

/* Likewise the first member of each backend's statement struct. */
struct store_stmt {
    struct store_db *db;
};

/* Records the message for the last failure on db (printf-style). */
void store__set_error(struct store_db *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Scans SQL text for $N parameters outside string literals, quoted
 * identifiers and comments. Writes the highest N to *max_param (0 when there
 * are none). When rewrite is not NULL, it receives a copy of sql (same
 * length, rewrite_len >= strlen(sql) + 1) with each $N turned into ?N, the
 * form SQLite numbers by position. Returns 0, or STORE_EINVAL with a message
 * on db when a parameter number is 0 or above STORE_MAX_PARAMS. */
int store__scan_params(struct store_db *db, const char *sql, int *max_param, char *rewrite,
                       size_t rewrite_len);

/* Opens each backend; url is what follows the scheme for SQLite (a file
 * path) and the whole URL for PostgreSQL. */
int store__sqlite_open(const char *path, struct store_db **out, char *err, size_t errlen);
int store__pg_open(const char *url, struct store_db **out, char *err, size_t errlen);

/*
 * A statement cache keyed by SQL text. It holds only idle handles: prepare
 * takes a handle out (so a text prepared twice while the first is still in
 * use gets a second, independent handle) and finalize puts it back. Beyond
 * its capacity the least recently returned handle is evicted; the evict
 * callback may refuse (return non-zero), for example when PostgreSQL cannot
 * run DEALLOCATE inside a failed transaction, and is then asked again later.
 */
struct store_cache_entry;
struct store_cache {
    struct store_cache_entry *buckets[128];
    struct store_cache_entry *oldest, *newest;
    size_t count;
    size_t cap;
    int (*evict)(void *ctx, void *handle);
    void (*destroy)(void *ctx, void *handle);
    void *ctx;
};

void store__cache_init(struct store_cache *c, size_t cap, int (*evict)(void *, void *),
                       void (*destroy)(void *, void *), void *ctx);
/* Removes and returns an idle handle for sql, or NULL. */
void *store__cache_take(struct store_cache *c, const char *sql);
/* Returns a handle for sql to the cache. On failure (out of memory) the
 * handle is destroyed. */
void store__cache_put(struct store_cache *c, const char *sql, void *handle);
/* Destroys every cached handle (at close). */
void store__cache_clear(struct store_cache *c);

#endif
