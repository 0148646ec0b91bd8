/*
 * The SQLite backend of the store. A connection is one sqlite3 handle in WAL
 * mode (readers never block the writer), with foreign keys enforced, a 10 s
 * busy timeout and synchronous=NORMAL (durable at every checkpoint, and a
 * crash loses at most the last transactions, never consistency).
 *
 * Callers write $N parameters; SQLite would read "$1" as a *named* parameter
 * numbered by first appearance, so the text is rewritten to ?N, which SQLite
 * numbers exactly. Prepared statements are cached per connection by their
 * original text (store.c's cache holds only idle ones), so the hot queries of
 * a request are compiled once per connection.
 */
#include "storeInt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

/* The longest SQL text accepted; the server's statements are a few KiB. */
#define SQLITE_MAX_SQL (1024 * 1024)
#define SQLITE_BUSY_MS 10000

struct sqlite_db {
    struct store_db base;
    sqlite3 *conn;
    struct store_cache cache;
};

enum stmt_state { ST_FRESH, ST_ROW, ST_DONE, ST_FAILED };

struct sqlite_stmt {
    struct store_stmt base;
    sqlite3_stmt *stmt;
    char *sql; /* the cache key: the caller's text, before rewriting */
    enum stmt_state state;
    int64_t changes;
};

static const struct store_ops sqlite_ops;

static struct sqlite_db *as_db(struct store_db *db)
{
    return (struct sqlite_db *)db;
}

static struct sqlite_stmt *as_stmt(struct store_stmt *st)
{
    return (struct sqlite_stmt *)st;
}

/* Maps an SQLite result code to a store code. */
static int map_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        return STORE_ECONFLICT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return STORE_EBUSY;
    case SQLITE_NOMEM:
        return STORE_ENOMEM;
    case SQLITE_CANTOPEN:
        return STORE_ECONNECT;
    case SQLITE_RANGE:
    case SQLITE_MISUSE:
        return STORE_EINVAL;
    default:
        return STORE_ESQL;
    }
}

/* Records the connection's message for rc and returns the store code. */
static int fail(struct sqlite_db *db, int rc)
{
    store__set_error(&db->base, "%s", sqlite3_errmsg(db->conn));
    return map_code(rc);
}

static int sqlite_exec(struct store_db *base, const char *sql)
{
    struct sqlite_db *db = as_db(base);
    char *msg = NULL;
    int rc = sqlite3_exec(db->conn, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return 0;
    store__set_error(base, "%s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return map_code(rc);
}

/* ------------------------------------------------------------------------ */
/* Opening and closing.                                                      */
/* ------------------------------------------------------------------------ */

static int cache_evict(void *ctx, void *handle)
{
    (void)ctx;
    sqlite3_finalize(handle);
    return 0;
}

static void cache_destroy(void *ctx, void *handle)
{
    (void)ctx;
    sqlite3_finalize(handle);
}

int store__sqlite_open(const char *path, struct store_db **out, char *err, size_t errlen)
{
    struct sqlite_db *db = NULL;
    int r = STORE_ENOMEM, rc;

    if ((db = calloc(1, sizeof(*db))) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    db->base.ops = &sqlite_ops;
    db->base.kind = STORE_SQLITE;
    store__cache_init(&db->cache, STORE_CACHE_CAP, cache_evict, cache_destroy, db);
    /* One connection is used by one thread at a time (the server's pool
     * lends it), so SQLite's per-connection mutex is not needed. */
    rc = sqlite3_open_v2(path, &db->conn,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open SQLite database %s: %s", path,
                 db->conn ? sqlite3_errmsg(db->conn) : sqlite3_errstr(rc));
        r = rc == SQLITE_NOMEM ? STORE_ENOMEM : STORE_ECONNECT;
        goto out;
    }
    sqlite3_extended_result_codes(db->conn, 1);
    /* Before the first statement: switching to WAL takes a lock too. */
    sqlite3_busy_timeout(db->conn, SQLITE_BUSY_MS);
    /* The file is opened lazily, so this is where a bad path shows. */
    rc = sqlite_exec(&db->base, "PRAGMA journal_mode = WAL;"
                                " PRAGMA foreign_keys = ON;"
                                " PRAGMA synchronous = NORMAL;");
    if (rc != 0) {
        snprintf(err, errlen, "cannot open SQLite database %s: %s", path, db->base.errmsg);
        r = rc == STORE_EBUSY ? STORE_EBUSY : STORE_ECONNECT;
        goto out;
    }
    *out = &db->base;
    db = NULL;
    r = 0;
out:
    if (db != NULL) {
        sqlite3_close_v2(db->conn);
        free(db);
    }
    return r;
}

static void sqlite_close(struct store_db *base)
{
    struct sqlite_db *db = as_db(base);
    store__cache_clear(&db->cache);
    /* _v2: a statement the caller forgot to finalize keeps the connection
     * alive as a zombie instead of making close fail. */
    sqlite3_close_v2(db->conn);
    free(db);
}

/* ------------------------------------------------------------------------ */
/* Statements.                                                               */
/* ------------------------------------------------------------------------ */

/* Compiles sql (with $N rewritten) and checks that it is one statement. */
static int compile(struct sqlite_db *db, const char *sql, sqlite3_stmt **out)
{
    sqlite3_stmt *stmt = NULL, *extra = NULL;
    const char *tail = NULL;
    char *text = NULL;
    size_t len = strlen(sql);
    int maxp, r, rc;

    if (len > SQLITE_MAX_SQL) {
        store__set_error(&db->base, "SQL text of %zu bytes is too long", len);
        r = STORE_EINVAL;
        goto out;
    }
    if ((text = malloc(len + 1)) == NULL) {
        r = STORE_ENOMEM;
        goto out;
    }
    if ((r = store__scan_params(&db->base, sql, &maxp, text, len + 1)) != 0)
        goto out;
    rc = sqlite3_prepare_v3(db->conn, text, (int)len + 1, SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) {
        r = fail(db, rc);
        goto out;
    }
    if (stmt == NULL) {
        store__set_error(&db->base, "the SQL text holds no statement");
        r = STORE_EINVAL;
        goto out;
    }
    /* Whatever follows must be comments or blanks: compile it to find out. */
    if (tail != NULL && *tail != '\0') {
        rc = sqlite3_prepare_v2(db->conn, tail, -1, &extra, NULL);
        if (rc != SQLITE_OK || extra != NULL) {
            store__set_error(&db->base, "store_prepare takes one statement; use store_exec for "
                                        "several");
            r = STORE_EINVAL;
            goto out;
        }
    }
    *out = stmt;
    stmt = NULL;
    r = 0;
out:
    sqlite3_finalize(extra);
    sqlite3_finalize(stmt);
    free(text);
    return r;
}

static int sqlite_prepare(struct store_db *base, const char *sql, struct store_stmt **out)
{
    struct sqlite_db *db = as_db(base);
    struct sqlite_stmt *st = NULL;
    int r = STORE_ENOMEM;

    if ((st = calloc(1, sizeof(*st))) == NULL || (st->sql = strdup(sql)) == NULL)
        goto out;
    st->base.db = base;
    st->state = ST_FRESH;
    /* An idle cached statement, or a new one: one that is in use (the same
     * text prepared twice at once) is not in the cache. */
    if ((st->stmt = store__cache_take(&db->cache, sql)) == NULL &&
        (r = compile(db, sql, &st->stmt)) != 0)
        goto out;
    *out = &st->base;
    st = NULL;
    r = 0;
out:
    if (st != NULL) {
        free(st->sql);
        free(st);
    }
    return r;
}

static int bind_result(struct sqlite_stmt *st, int idx, int rc)
{
    if (rc == SQLITE_OK)
        return 0;
    if (rc == SQLITE_RANGE) {
        store__set_error(st->base.db, "parameter $%d does not exist in this statement", idx);
        return STORE_EINVAL;
    }
    if (rc == SQLITE_MISUSE) {
        store__set_error(st->base.db, "bind after step: reset the statement first");
        return STORE_EINVAL;
    }
    return fail(as_db(st->base.db), rc);
}

static int sqlite_bind_text(struct store_stmt *base, int idx, const char *s)
{
    struct sqlite_stmt *st = as_stmt(base);
    size_t n = strlen(s);
    if (n > 0x7fffffff) {
        store__set_error(base->db, "text of %zu bytes is too large to bind", n);
        return STORE_EINVAL;
    }
    return bind_result(st, idx, sqlite3_bind_text(st->stmt, idx, s, (int)n, SQLITE_TRANSIENT));
}

static int sqlite_bind_int(struct store_stmt *base, int idx, int64_t v)
{
    struct sqlite_stmt *st = as_stmt(base);
    return bind_result(st, idx, sqlite3_bind_int64(st->stmt, idx, v));
}

static int sqlite_bind_null(struct store_stmt *base, int idx)
{
    struct sqlite_stmt *st = as_stmt(base);
    return bind_result(st, idx, sqlite3_bind_null(st->stmt, idx));
}

static int sqlite_bind_blob(struct store_stmt *base, int idx, const void *p, size_t n)
{
    struct sqlite_stmt *st = as_stmt(base);
    /* p is never NULL here (store.c), so an empty blob is not NULL. */
    return bind_result(st, idx, sqlite3_bind_blob(st->stmt, idx, p, (int)n, SQLITE_TRANSIENT));
}

static int sqlite_step(struct store_stmt *base)
{
    struct sqlite_stmt *st = as_stmt(base);
    struct sqlite_db *db = as_db(base->db);

    if (st->state == ST_DONE)
        return STORE_DONE;
    if (st->state == ST_FAILED) {
        store__set_error(base->db, "the statement failed: reset it before stepping again");
        return STORE_EINVAL;
    }
    /* Changes are counted around each step: sqlite3_changes() would report
     * another statement's count for a SELECT or DDL, and statements run by
     * the caller between our steps fall outside the window. SQLite adds a
     * statement's changes to the total when it finishes, so INSERT ...
     * RETURNING has its count once it is done. */
    int64_t before = sqlite3_total_changes64(db->conn);
    int rc = sqlite3_step(st->stmt);
    if (!sqlite3_stmt_readonly(st->stmt))
        st->changes += sqlite3_total_changes64(db->conn) - before;
    if (rc == SQLITE_ROW) {
        st->state = ST_ROW;
        return STORE_ROW;
    }
    if (rc == SQLITE_DONE) {
        st->state = ST_DONE;
        return STORE_DONE;
    }
    st->state = ST_FAILED;
    return fail(db, rc);
}

static int64_t sqlite_changes(struct store_stmt *base)
{
    return as_stmt(base)->changes;
}

static int sqlite_col_count(struct store_stmt *base)
{
    return sqlite3_column_count(as_stmt(base)->stmt);
}

/* Whether col can be read: the last step returned a row and col exists. */
static int col_ok(struct sqlite_stmt *st, int col)
{
    return st->state == ST_ROW && col >= 0 && col < sqlite3_column_count(st->stmt);
}

static int sqlite_col_is_null(struct store_stmt *base, int col)
{
    struct sqlite_stmt *st = as_stmt(base);
    return !col_ok(st, col) || sqlite3_column_type(st->stmt, col) == SQLITE_NULL;
}

static const char *sqlite_col_text(struct store_stmt *base, int col)
{
    struct sqlite_stmt *st = as_stmt(base);
    if (!col_ok(st, col))
        return NULL;
    return (const char *)sqlite3_column_text(st->stmt, col);
}

static int64_t sqlite_col_int(struct store_stmt *base, int col)
{
    struct sqlite_stmt *st = as_stmt(base);
    return col_ok(st, col) ? sqlite3_column_int64(st->stmt, col) : 0;
}

static const void *sqlite_col_blob(struct store_stmt *base, int col, size_t *len)
{
    struct sqlite_stmt *st = as_stmt(base);
    if (!col_ok(st, col) || sqlite3_column_type(st->stmt, col) == SQLITE_NULL)
        return NULL;
    const void *p = sqlite3_column_blob(st->stmt, col);
    *len = (size_t)sqlite3_column_bytes(st->stmt, col);
    /* SQLite gives NULL for an empty blob; callers tell empty from NULL by
     * the pointer, as with PostgreSQL. */
    return p ? p : "";
}

static int sqlite_reset(struct store_stmt *base)
{
    struct sqlite_stmt *st = as_stmt(base);
    /* sqlite3_reset repeats the last step's error, which was already
     * reported; the statement is usable again either way. */
    (void)sqlite3_reset(st->stmt);
    st->state = ST_FRESH;
    st->changes = 0;
    return 0;
}

static void sqlite_finalize(struct store_stmt *base)
{
    struct sqlite_stmt *st = as_stmt(base);
    struct sqlite_db *db = as_db(base->db);

    (void)sqlite3_reset(st->stmt);
    sqlite3_clear_bindings(st->stmt);
    store__cache_put(&db->cache, st->sql, st->stmt);
    free(st->sql);
    free(st);
}

/* ------------------------------------------------------------------------ */
/* Transactions and migrations.                                              */
/* ------------------------------------------------------------------------ */

static int sqlite_begin(struct store_db *db, int write)
{
    /* IMMEDIATE takes the write lock now, waiting up to the busy timeout,
     * so a transaction that reads and then writes cannot fail half way
     * because another connection wrote in between. */
    return sqlite_exec(db, write ? "BEGIN IMMEDIATE" : "BEGIN");
}

static int sqlite_commit(struct store_db *db)
{
    return sqlite_exec(db, "COMMIT");
}

static int sqlite_rollback(struct store_db *db)
{
    return sqlite_exec(db, "ROLLBACK");
}

static int sqlite_in_transaction(struct store_db *db)
{
    return !sqlite3_get_autocommit(as_db(db)->conn);
}

static int sqlite_migrate_lock(struct store_db *db)
{
    /* Each migration's BEGIN EXCLUSIVE is the lock. */
    (void)db;
    return 0;
}

static void sqlite_migrate_unlock(struct store_db *db)
{
    (void)db;
}

static const struct store_ops sqlite_ops = {
    .close = sqlite_close,
    .exec = sqlite_exec,
    .prepare = sqlite_prepare,
    .bind_text = sqlite_bind_text,
    .bind_int = sqlite_bind_int,
    .bind_null = sqlite_bind_null,
    .bind_blob = sqlite_bind_blob,
    .step = sqlite_step,
    .changes = sqlite_changes,
    .col_count = sqlite_col_count,
    .col_is_null = sqlite_col_is_null,
    .col_text = sqlite_col_text,
    .col_int = sqlite_col_int,
    .col_blob = sqlite_col_blob,
    .reset = sqlite_reset,
    .finalize = sqlite_finalize,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .in_transaction = sqlite_in_transaction,
    .migrate_lock = sqlite_migrate_lock,
    .migrate_unlock = sqlite_migrate_unlock,
    .migrate_begin = "BEGIN EXCLUSIVE",
    .has_schema_version = "SELECT count(*) FROM sqlite_master"
                          " WHERE type = 'table' AND name = 'schema_version'",
    .type_pk = "INTEGER PRIMARY KEY AUTOINCREMENT",
    .type_blob = "BLOB",
    .type_bigint = "INTEGER",
};
