/*
 * The server's store, proved the same way against both backends: a fresh
 * SQLite file per test, and a fresh PostgreSQL database per test on the
 * server KHIEN_PG_URL names or, when it is unset, on a throwaway cluster
 * started with scripts/pg-throwaway (and stopped at the end). When no
 * PostgreSQL can be had the run prints "SKIP postgresql: reason" and proves
 * SQLite alone.
 *
 * The tests use the real schema (store_migrate) rather than tables of their
 * own, since one SQL text must work on both backends and the migrations are
 * where the per-backend types are filled in.
 */
#include "testutil.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"

struct backend {
    const char *name;
    enum store_kind kind;
    char base[1024];  /* SQLite: a temporary folder; PostgreSQL: the server's URL */
    char pg_dir[256]; /* the throwaway cluster's folder, when we started one */
    unsigned next_db; /* numbers each test's database */
};

struct fixture {
    char url[1400];
    char pg_name[64]; /* the test's PostgreSQL database */
    struct store_db *db;
};

static struct backend g_be;

/* ------------------------------------------------------------------------ */
/* Per-test databases.                                                       */
/* ------------------------------------------------------------------------ */

/* The URL of database `name` on the server that url points to. */
static void pg_url_with_db(const char *url, const char *name, char *out, size_t n)
{
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    const char *path = auth + strcspn(auth, "/?");
    const char *query = strchr(path, '?');
    snprintf(out, n, "%.*s/%s%s", (int)(path - url), url, name, query ? query : "");
}

/* Runs one statement on the server's own database (CREATE/DROP DATABASE
 * cannot run inside the database concerned). */
static int pg_admin(const char *sql)
{
    struct store_db *db = NULL;
    char err[512];
    int r = store_open(g_be.base, &db, err, sizeof(err));
    if (r != 0) {
        fprintf(stderr, "pg_admin: %s\n", err);
        return r;
    }
    if ((r = store_exec(db, sql)) != 0)
        fprintf(stderr, "pg_admin: %s: %s\n", sql, store_errmsg(db));
    store_close(db);
    return r;
}

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[512];

    assert_non_null(f);
    unsigned n = ++g_be.next_db;
    if (g_be.kind == STORE_SQLITE) {
        snprintf(f->url, sizeof(f->url), "sqlite://%s/test%u.db", g_be.base, n);
    } else {
        char sql[128];
        snprintf(f->pg_name, sizeof(f->pg_name), "khien_test_%ld_%u", (long)getpid(), n);
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->pg_name);
        assert_int_equal(pg_admin(sql), 0);
        pg_url_with_db(g_be.base, f->pg_name, f->url, sizeof(f->url));
    }
    int r = store_open(f->url, &f->db, err, sizeof(err));
    if (r != 0)
        fprintf(stderr, "store_open %s: %s\n", f->url, err);
    assert_int_equal(r, 0);
    assert_int_equal(store_kind(f->db), g_be.kind);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->db);
    if (f->pg_name[0] != '\0') {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->pg_name);
        pg_admin(sql);
    }
    free(f);
    return 0;
}

static struct store_db *migrated(void **state)
{
    struct fixture *f = *state;
    int r = store_migrate(f->db);
    if (r != 0)
        fprintf(stderr, "store_migrate: %s\n", store_errmsg(f->db));
    assert_int_equal(r, 0);
    return f->db;
}

static int64_t add_agency(struct store_db *db, const char *code, const char *name)
{
    int64_t id = -1;
    int r = store_query_int(db, &id,
                            "INSERT INTO agencies (code, name, created_at) VALUES ($1, $2, $3)"
                            " RETURNING id",
                            "tti", code, name, (int64_t)1700000000);
    if (r < 0)
        return r;
    assert_int_equal(r, STORE_ROW);
    return id;
}

static int64_t count_rows(struct store_db *db, const char *table)
{
    char sql[128];
    int64_t n = -1;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    assert_int_equal(store_query_int(db, &n, sql, ""), STORE_ROW);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Tests.                                                                    */
/* ------------------------------------------------------------------------ */

static void store_migrate_twice_is_idempotent(void **state)
{
    struct fixture *f = *state;
    int v = -1;

    assert_int_equal(store_schema_version(f->db, &v), 0);
    assert_int_equal(v, 0);
    migrated(state);
    assert_int_equal(store_schema_version(f->db, &v), 0);
    assert_int_equal(v, store_schema_latest());
    migrated(state);
    assert_int_equal(store_schema_version(f->db, &v), 0);
    assert_int_equal(v, store_schema_latest());
    assert_int_equal(count_rows(f->db, "schema_version"), store_schema_latest());
    assert_int_equal(count_rows(f->db, "agencies"), 0);
}

static void store_insert_returning_id(void **state)
{
    struct store_db *db = migrated(state);
    struct store_stmt *st = NULL;

    int64_t a = add_agency(db, "A", "Agency A");
    int64_t b = add_agency(db, "B", "Agency B");
    assert_true(a > 0);
    assert_true(b > a);
    /* A RETURNING insert's change count is final once it is done;
     * PostgreSQL knows it from the first row on, SQLite only at the end. */
    assert_int_equal(store_prepare(db,
                                   "INSERT INTO agencies (code, name, created_at)"
                                   " VALUES ($1, $2, 0) RETURNING id, code",
                                   &st),
                     0);
    assert_int_equal(store_bind_text(st, 1, "C"), 0);
    assert_int_equal(store_bind_text(st, 2, "Agency C"), 0);
    assert_int_equal(store_step(st), STORE_ROW);
    assert_int_equal(store_col_int(st, 0), b + 1);
    assert_string_equal(store_col_text(st, 1), "C");
    if (store_kind(db) == STORE_POSTGRES)
        assert_int_equal(store_changes(st), 1);
    assert_int_equal(store_step(st), STORE_DONE);
    assert_int_equal(store_changes(st), 1);
    store_finalize(st);
}

static void store_values_round_trip(void **state)
{
    struct store_db *db = migrated(state);
    struct store_stmt *st = NULL;
    unsigned char blob[300];
    const char *name = "Khi\xc3\xaan \xe2\x80\x94 ngu\xe1\xbb\x93n 'quoted' $1";
    const int64_t big = 9007199254740993LL; /* 2^53 + 1: no detour through double */
    size_t len = 0;

    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (unsigned char)(i * 7 + 3);
    blob[0] = 0x00;
    blob[1] = 0xff;
    blob[150] = 0x00;
    blob[299] = 0x80;

    assert_int_equal(store_prepare(db,
                                   "INSERT INTO sig_sources (kind, name, path, content, enabled,"
                                   " created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                                   " RETURNING id",
                                   &st),
                     0);
    assert_int_equal(store_bind_text(st, 1, "yara"), 0);
    assert_int_equal(store_bind_text(st, 2, name), 0);
    assert_int_equal(store_bind_text(st, 3, ""), 0);
    assert_int_equal(store_bind_blob(st, 4, blob, sizeof(blob)), 0);
    assert_int_equal(store_bind_int(st, 5, -1), 0);
    assert_int_equal(store_bind_text(st, 6, NULL), 0);
    assert_int_equal(store_bind_int(st, 7, big), 0);
    assert_int_equal(store_bind_int(st, 8, 1), STORE_EINVAL); /* no $8 */
    assert_int_equal(store_step(st), STORE_ROW);
    int64_t id = store_col_int(st, 0);
    store_finalize(st);

    assert_int_equal(store_prepare(db,
                                   "SELECT kind, name, path, content, enabled, created_by,"
                                   " created_at FROM sig_sources WHERE id = $1",
                                   &st),
                     0);
    assert_int_equal(store_bind_int(st, 1, id), 0);
    assert_int_equal(store_step(st), STORE_ROW);
    assert_int_equal(store_col_count(st), 7);
    assert_string_equal(store_col_text(st, 0), "yara");
    assert_string_equal(store_col_text(st, 1), name);
    assert_false(store_col_is_null(st, 2));
    assert_string_equal(store_col_text(st, 2), "");
    const unsigned char *got = store_col_blob(st, 3, &len);
    assert_int_equal(len, sizeof(blob));
    assert_memory_equal(got, blob, sizeof(blob));
    assert_int_equal(store_col_int(st, 4), -1);
    assert_string_equal(store_col_text(st, 4), "-1");
    assert_true(store_col_is_null(st, 5));
    assert_null(store_col_text(st, 5));
    assert_int_equal(store_col_int(st, 5), 0);
    assert_null(store_col_blob(st, 5, &len));
    assert_int_equal(len, 0);
    assert_int_equal(store_col_int(st, 6), big);
    /* Out of range columns read as NULL. */
    assert_null(store_col_text(st, 7));
    assert_true(store_col_is_null(st, -1));
    assert_int_equal(store_step(st), STORE_DONE);
    assert_int_equal(store_step(st), STORE_DONE);
    store_finalize(st);

    /* An empty blob is empty, not NULL; a NULL blob is NULL. */
    assert_int_equal(store_execf(db, NULL,
                                 "INSERT INTO bundles (version, sha256, size, signature, key_id,"
                                 " created_at) VALUES (7, 'x', 0, 's', 'k', 0)",
                                 ""),
                     0);
    assert_int_equal(store_prepare(db,
                                   "INSERT INTO bundle_chunks (version, seq, data)"
                                   " VALUES ($1, $2, $3)",
                                   &st),
                     0);
    assert_int_equal(store_bind_int(st, 1, 7), 0);
    assert_int_equal(store_bind_int(st, 2, 0), 0);
    assert_int_equal(store_bind_blob(st, 3, NULL, 0), 0);
    assert_int_equal(store_step(st), STORE_DONE);
    assert_int_equal(store_changes(st), 1);
    store_finalize(st);
    assert_int_equal(store_queryf(db, &st, "SELECT data, version FROM bundle_chunks", ""),
                     STORE_ROW);
    assert_false(store_col_is_null(st, 0));
    assert_non_null(store_col_blob(st, 0, &len));
    assert_int_equal(len, 0);
    store_finalize(st);
}

static void store_unique_violation_is_conflict(void **state)
{
    struct store_db *db = migrated(state);

    assert_true(add_agency(db, "dup", "first") > 0);
    assert_int_equal(add_agency(db, "dup", "second"), STORE_ECONFLICT);
    assert_true(strlen(store_errmsg(db)) > 0);
    /* A missing reference (foreign keys are enforced on SQLite too). */
    assert_int_equal(store_execf(db, NULL,
                                 "INSERT INTO users (username, password_hash, role, agency_id,"
                                 " created_at) VALUES ($1, 'h', 'admin', $2, 0)",
                                 "ti", "ghost", (int64_t)999),
                     STORE_ECONFLICT);
    assert_int_equal(count_rows(db, "agencies"), 1);
    assert_int_equal(count_rows(db, "users"), 0);
}

static void store_transaction_rollback(void **state)
{
    struct store_db *db = migrated(state);

    assert_int_equal(store_rollback(db), 0); /* no transaction: a no-op */
    assert_int_equal(store_begin(db), 0);
    assert_true(add_agency(db, "gone", "rolled back") > 0);
    assert_int_equal(count_rows(db, "agencies"), 1);
    assert_int_equal(store_rollback(db), 0);
    assert_int_equal(count_rows(db, "agencies"), 0);

    assert_int_equal(store_begin_write(db), 0);
    assert_true(add_agency(db, "kept", "committed") > 0);
    assert_int_equal(store_commit(db), 0);
    assert_int_equal(count_rows(db, "agencies"), 1);

    /* After a failed statement the transaction is rolled back, and the
     * connection works as before. PostgreSQL aborts the whole transaction,
     * so committing it is reported as a failure. */
    assert_int_equal(store_begin(db), 0);
    assert_int_equal(add_agency(db, "kept", "duplicate"), STORE_ECONFLICT);
    if (store_kind(db) == STORE_POSTGRES)
        assert_int_equal(store_commit(db), STORE_ESQL);
    assert_int_equal(store_rollback(db), 0);
    assert_int_equal(count_rows(db, "agencies"), 1);
}

static void store_format_helpers(void **state)
{
    struct store_db *db = migrated(state);
    struct store_stmt *st = NULL;
    int64_t changes = -1, n = 42;
    char *text = NULL;

    assert_int_equal(store_execf(db, &changes, "INSERT INTO settings (key, value) VALUES ($1, $2)",
                                 "tt", "alpha", "1"),
                     0);
    assert_int_equal(changes, 1);
    assert_int_equal(store_execf(db, NULL, "INSERT INTO settings (key, value) VALUES ($1, $2)",
                                 "tt", "beta", "2"),
                     0);
    assert_int_equal(store_execf(db, NULL, "INSERT INTO settings (key, value) VALUES ($1, $2)",
                                 "tt", "gamma", "3"),
                     0);
    assert_int_equal(store_execf(db, &changes, "UPDATE settings SET value = $1 WHERE key <> $2",
                                 "tt", "x", "alpha"),
                     0);
    assert_int_equal(changes, 2);
    assert_int_equal(store_execf(db, &changes, "DELETE FROM settings WHERE key = $1", "t", "none"),
                     0);
    assert_int_equal(changes, 0);

    assert_int_equal(
        store_query_int(db, &n, "SELECT count(*) FROM settings WHERE value = $1", "t", "x"),
        STORE_ROW);
    assert_int_equal(n, 2);
    n = 42;
    assert_int_equal(store_query_int(db, &n, "SELECT 1 FROM settings WHERE key = $1", "t", "zz"),
                     STORE_DONE);
    assert_int_equal(n, 42); /* untouched */

    assert_int_equal(
        store_query_text(db, &text, "SELECT value FROM settings WHERE key = $1", "t", "alpha"),
        STORE_ROW);
    assert_string_equal(text, "1");
    free(text);
    text = NULL;
    assert_int_equal(
        store_query_text(db, &text, "SELECT value FROM settings WHERE key = $1", "t", "missing"),
        STORE_DONE);
    assert_null(text);

    /* 'n' binds NULL; 'i' takes an int64_t. */
    int64_t agency = add_agency(db, "HN", "Ha Noi");
    assert_int_equal(store_execf(db, NULL,
                                 "INSERT INTO users (username, password_hash, role, agency_id,"
                                 " created_at) VALUES ($1, $2, $3, $4, $5)",
                                 "tttni", "root", "h", "admin", (int64_t)1),
                     0);
    assert_int_equal(store_execf(db, NULL,
                                 "INSERT INTO users (username, password_hash, role, agency_id,"
                                 " created_at) VALUES ($1, $2, $3, $4, $5)",
                                 "tttii", "officer", "h", "officer", agency, (int64_t)2),
                     0);
    assert_int_equal(store_query_text(db, &text, "SELECT last_login FROM users WHERE username = $1",
                                      "t", "root"),
                     STORE_ROW);
    assert_null(text); /* a NULL column */

    int rows = 0;
    int r = store_queryf(db, &st, "SELECT username, agency_id FROM users ORDER BY username", "");
    assert_int_equal(r, STORE_ROW);
    while (r == STORE_ROW) {
        rows++;
        r = store_step(st);
    }
    assert_int_equal(r, STORE_DONE);
    store_finalize(st);
    assert_int_equal(rows, 2);
    assert_int_equal(
        store_queryf(db, &st, "SELECT username FROM users WHERE id < $1", "i", (int64_t)0),
        STORE_DONE);
    assert_null(st);
    assert_int_equal(store_execf(db, NULL, "DELETE FROM users WHERE id = $1", "x", 1),
                     STORE_EINVAL);
    assert_int_equal(store_execf(db, NULL, "SELECT nonsense FROM nowhere", ""), STORE_ESQL);
}

static void store_parameter_reuse(void **state)
{
    struct store_db *db = migrated(state);
    struct store_stmt *st = NULL;
    int64_t n = -1;
    char *text = NULL;

    add_agency(db, "a1", "a1");
    add_agency(db, "b", "a1");
    add_agency(db, "c", "c");
    assert_int_equal(store_query_int(db, &n,
                                     "SELECT count(*) FROM agencies WHERE code = $1 OR name = $1",
                                     "t", "a1"),
                     STORE_ROW);
    assert_int_equal(n, 2);

    /* Numbers, not order of appearance, decide which value goes where. */
    assert_int_equal(
        store_execf(db, NULL, "INSERT INTO settings (value, key) VALUES ($2, $1)", "tt", "k", "v"),
        0);
    assert_int_equal(
        store_query_text(db, &text, "SELECT value FROM settings WHERE key = $1", "t", "k"),
        STORE_ROW);
    assert_string_equal(text, "v");
    free(text);

    /* $N inside literals, quoted names and comments is not a parameter. */
    assert_int_equal(store_prepare(db,
                                   "SELECT count(*) /* $2 */ FROM settings AS \"t$3\""
                                   " WHERE key = $1 AND value <> '$2 it''s $4' -- $5\n",
                                   &st),
                     0);
    assert_int_equal(store_bind_text(st, 2, "no"), STORE_EINVAL);
    assert_int_equal(store_bind_text(st, 1, "k"), 0);
    assert_int_equal(store_step(st), STORE_ROW);
    assert_int_equal(store_col_int(st, 0), 1);
    /* Rebinding needs a reset; the reset keeps the bindings. */
    assert_int_equal(store_bind_text(st, 1, "zz"), STORE_EINVAL);
    assert_int_equal(store_reset(st), 0);
    assert_int_equal(store_step(st), STORE_ROW);
    assert_int_equal(store_col_int(st, 0), 1);
    store_finalize(st);

    assert_int_equal(store_prepare(db, "SELECT $0", &st), STORE_EINVAL);
    assert_null(st);
    assert_int_equal(store_prepare(db, "SELECT 1; SELECT 2", &st) < 0, 1);
    assert_null(st);
}

static void store_statement_cache_reuse(void **state)
{
    struct store_db *db = migrated(state);
    struct store_stmt *st = NULL, *inner = NULL;
    char sql[128], key[32];
    int64_t n = -1;

    /* One text run many times, through the cache and through one handle. */
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        assert_int_equal(store_execf(db, NULL, "INSERT INTO settings (key, value) VALUES ($1, $2)",
                                     "tt", key, "v"),
                         0);
    }
    assert_int_equal(store_prepare(db, "SELECT count(*) FROM settings WHERE key <= $1", &st), 0);
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        assert_int_equal(store_bind_text(st, 1, key), 0);
        assert_int_equal(store_step(st), STORE_ROW);
        assert_int_equal(store_col_int(st, 0), i + 1);
        assert_int_equal(store_reset(st), 0);
    }
    store_finalize(st);

    /* The same text prepared twice at once: two independent statements. */
    const char *all = "SELECT key FROM settings ORDER BY key";
    int outer_rows = 0;
    assert_int_equal(store_prepare(db, all, &st), 0);
    assert_int_equal(store_step(st), STORE_ROW);
    assert_string_equal(store_col_text(st, 0), "k000");
    outer_rows++;
    assert_int_equal(store_prepare(db, all, &inner), 0);
    int inner_rows = 0;
    while (store_step(inner) == STORE_ROW)
        inner_rows++;
    store_finalize(inner);
    assert_string_equal(store_col_text(st, 0), "k000");
    while (store_step(st) == STORE_ROW)
        outer_rows++;
    store_finalize(st);
    assert_int_equal(inner_rows, 300);
    assert_int_equal(outer_rows, 300);

    /* More distinct texts than the cache holds: eviction must be clean. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 400; i++) {
            snprintf(sql, sizeof(sql), "SELECT %d + $1", i);
            assert_int_equal(store_query_int(db, &n, sql, "i", (int64_t)round), STORE_ROW);
            assert_int_equal(n, i + round);
        }
    }
    /* Eviction inside a transaction, and after one failed (PostgreSQL
     * cannot DEALLOCATE then; the cache must wait, not break). */
    assert_int_equal(store_begin(db), 0);
    for (int i = 400; i < 700; i++) {
        snprintf(sql, sizeof(sql), "SELECT %d + $1", i);
        assert_int_equal(store_query_int(db, &n, sql, "i", (int64_t)1), STORE_ROW);
        assert_int_equal(n, i + 1);
    }
    assert_int_equal(store_prepare(db, "SELECT 0 + $1", &st), 0);
    assert_int_equal(store_execf(db, NULL, "INSERT INTO settings (key, value) VALUES ($1, $2)",
                                 "tt", "k000", "again"),
                     STORE_ECONFLICT);
    store_finalize(st);
    assert_int_equal(store_rollback(db), 0);
    assert_int_equal(store_query_int(db, &n, "SELECT 0 + $1", "i", (int64_t)5), STORE_ROW);
    assert_int_equal(n, 5);
}

struct writer {
    const char *url;
    int id;
    int errors;
    char first_error[1024];
};

#define WRITES_PER_THREAD 100

static void *write_loop(void *arg)
{
    struct writer *w = arg;
    struct store_db *db = NULL;
    char err[512];

    if (store_open(w->url, &db, err, sizeof(err)) != 0) {
        snprintf(w->first_error, sizeof(w->first_error), "open: %s", err);
        w->errors++;
        return NULL;
    }
    for (int i = 0; i < WRITES_PER_THREAD; i++) {
        int64_t n = 0;
        int r;
        /* Read, then write, in one transaction: the case that would fail
         * with SQLITE_BUSY under a deferred BEGIN. */
        if ((r = store_begin_write(db)) != 0 ||
            (r = store_query_int(db, &n,
                                 "SELECT count(*) FROM audit WHERE user_id = $1"
                                 " AND action = 'write'",
                                 "i", (int64_t)w->id)) != STORE_ROW ||
            (r = store_execf(db, NULL,
                             "INSERT INTO audit (at, user_id, action, detail) VALUES ($1, $2,"
                             " 'write', $3)",
                             "iit", (int64_t)i, (int64_t)w->id, n == i ? "ok" : "lost")) != 0 ||
            (r = store_commit(db)) != 0) {
            if (w->errors++ == 0)
                snprintf(w->first_error, sizeof(w->first_error), "%s: %s", store_strerror(r),
                         store_errmsg(db));
            store_rollback(db);
        }
        /* And a write outside any transaction, which waits on the lock. */
        if ((r = store_execf(db, NULL,
                             "INSERT INTO audit (at, user_id, action) VALUES ($1, $2, 'auto')",
                             "ii", (int64_t)i, (int64_t)w->id)) != 0 &&
            w->errors++ == 0)
            snprintf(w->first_error, sizeof(w->first_error), "%s: %s", store_strerror(r),
                     store_errmsg(db));
    }
    store_close(db);
    return NULL;
}

static void store_concurrent_writers(void **state)
{
    struct fixture *f = *state;
    struct store_db *db = migrated(state);
    struct writer w[2];
    pthread_t t[2];
    int64_t n = -1;

    for (int i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].url = f->url;
        w[i].id = i + 1;
        assert_int_equal(pthread_create(&t[i], NULL, write_loop, &w[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        if (w[i].errors)
            fprintf(stderr, "writer %d: %d errors, first: %s\n", i + 1, w[i].errors,
                    w[i].first_error);
        assert_int_equal(w[i].errors, 0);
    }
    assert_int_equal(count_rows(db, "audit"), 4 * WRITES_PER_THREAD);
    assert_int_equal(
        store_query_int(db, &n, "SELECT count(*) FROM audit WHERE detail = $1", "t", "lost"),
        STORE_ROW);
    assert_int_equal(n, 0);
}

struct migrator {
    const char *url;
    pthread_barrier_t *start;
    int result;
    char error[512];
};

static void *migrate_one(void *arg)
{
    struct migrator *m = arg;
    struct store_db *db = NULL;

    m->result = store_open(m->url, &db, m->error, sizeof(m->error));
    pthread_barrier_wait(m->start);
    if (m->result == 0) {
        m->result = store_migrate(db);
        snprintf(m->error, sizeof(m->error), "%s", store_errmsg(db));
    }
    store_close(db);
    return NULL;
}

static void store_concurrent_migrate_applies_once(void **state)
{
    struct fixture *f = *state;
    struct migrator m[3];
    pthread_t t[3];
    pthread_barrier_t start;
    int v = -1;

    assert_int_equal(pthread_barrier_init(&start, NULL, 3), 0);
    for (int i = 0; i < 3; i++) {
        memset(&m[i], 0, sizeof(m[i]));
        m[i].url = f->url;
        m[i].start = &start;
        assert_int_equal(pthread_create(&t[i], NULL, migrate_one, &m[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < 3; i++) {
        if (m[i].result != 0)
            fprintf(stderr, "migrator %d: %s\n", i, m[i].error);
        assert_int_equal(m[i].result, 0);
    }
    assert_int_equal(store_schema_version(f->db, &v), 0);
    assert_int_equal(v, store_schema_latest());
    assert_int_equal(count_rows(f->db, "schema_version"), store_schema_latest());
}

static void store_newer_schema_is_refused(void **state)
{
    struct store_db *db = migrated(state);
    int v = -1;

    assert_int_equal(store_execf(db, NULL,
                                 "INSERT INTO schema_version (version, applied_at) VALUES ($1, 0)",
                                 "i", (int64_t)store_schema_latest() + 1),
                     0);
    assert_int_equal(store_schema_version(db, &v), 0);
    assert_int_equal(v, store_schema_latest() + 1);
    assert_int_equal(store_migrate(db), STORE_EINVAL);
    assert_non_null(strstr(store_errmsg(db), "newer than this build"));
    /* The refusal left no transaction open. */
    assert_int_equal(store_begin(db), 0);
    assert_int_equal(store_rollback(db), 0);
}

/* Backend-independent: run once, in the SQLite group. */
static void store_open_names_the_problem(void **state)
{
    struct store_db *db = NULL;
    char err[512];
    (void)state;

    assert_int_equal(store_open("mysql://u@h/db", &db, err, sizeof(err)), STORE_EINVAL);
    assert_null(db);
    assert_non_null(strstr(err, "scheme 'mysql'"));
    assert_int_equal(store_open("postgres:db", &db, err, sizeof(err)), STORE_EINVAL);
    assert_non_null(strstr(err, "postgresql://"));
    assert_int_equal(store_open("", &db, err, sizeof(err)), STORE_EINVAL);
    assert_int_equal(store_open("sqlite:", &db, err, sizeof(err)), STORE_EINVAL);
    assert_int_equal(store_open("sqlite:///nonexistent-khien-dir/sub/k.db", &db, err, sizeof(err)),
                     STORE_ECONNECT);
    assert_non_null(strstr(err, "/nonexistent-khien-dir/sub/k.db"));
    /* Nothing listens on port 1; the password must not be shown. */
    assert_int_equal(store_open("postgresql://khien:s3cretpw@127.0.0.1:1/khien?password=other1",
                                &db, err, sizeof(err)),
                     STORE_ECONNECT);
    assert_null(db);
    assert_non_null(strstr(err, "127.0.0.1"));
    assert_null(strstr(err, "s3cretpw"));
    assert_null(strstr(err, "other1"));
    /* A plain path and sqlite:relative both open SQLite files. */
    char path[1200];
    snprintf(path, sizeof(path), "%s/plain.db", g_be.base);
    assert_int_equal(store_open(path, &db, err, sizeof(err)), 0);
    assert_int_equal(store_kind(db), STORE_SQLITE);
    store_close(db);
    store_close(NULL);

    for (int e = STORE_ENOMEM; e <= STORE_OK; e++)
        assert_true(strlen(store_strerror(e)) > 0);
}

/* ------------------------------------------------------------------------ */
/* Finding a PostgreSQL server.                                              */
/* ------------------------------------------------------------------------ */

/* Fills g_be.base with a usable server's URL, starting a throwaway cluster
 * when KHIEN_PG_URL is unset. Returns 0, or -1 with reason filled. */
static int pg_find(char *reason, size_t n)
{
    const char *env = getenv("KHIEN_PG_URL");
    const char *src = getenv("KHIEN_SRC");
    struct store_db *db = NULL;
    char cmd[1024], err[512];

    if (env != NULL && env[0] != '\0') {
        snprintf(g_be.base, sizeof(g_be.base), "%s", env);
    } else {
        if (src == NULL || src[0] == '\0') {
            snprintf(reason, n, "KHIEN_PG_URL and KHIEN_SRC are unset");
            return -1;
        }
        snprintf(g_be.pg_dir, sizeof(g_be.pg_dir), "/tmp/khien-pg-XXXXXX");
        if (mkdtemp(g_be.pg_dir) == NULL) {
            snprintf(reason, n, "mkdtemp failed");
            g_be.pg_dir[0] = '\0';
            return -1;
        }
        snprintf(cmd, sizeof(cmd), "'%s/scripts/pg-throwaway' start '%s'", src, g_be.pg_dir);
        FILE *p = popen(cmd, "r");
        if (p == NULL || fgets(g_be.base, sizeof(g_be.base), p) == NULL)
            g_be.base[0] = '\0';
        int status = p ? pclose(p) : -1;
        g_be.base[strcspn(g_be.base, "\r\n")] = '\0';
        if (status != 0 || g_be.base[0] == '\0') {
            int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            snprintf(reason, n, "scripts/pg-throwaway could not start a server (exit %d%s)", code,
                     code == 77 ? ": PostgreSQL is not installed" : "");
            return -1;
        }
    }
    if (store_open(g_be.base, &db, err, sizeof(err)) != 0) {
        snprintf(reason, n, "%s", err);
        return -1;
    }
    store_close(db);
    return 0;
}

static void pg_stop(void)
{
    char cmd[1024];
    const char *src = getenv("KHIEN_SRC");
    if (g_be.pg_dir[0] == '\0' || src == NULL)
        return;
    snprintf(cmd, sizeof(cmd), "'%s/scripts/pg-throwaway' stop '%s'", src, g_be.pg_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not stop the throwaway PostgreSQL in %s\n", g_be.pg_dir);
}

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest sqlite_tests[] = {
        cmocka_unit_test(store_open_names_the_problem),
        STORE_TEST(store_migrate_twice_is_idempotent),
        STORE_TEST(store_insert_returning_id),
        STORE_TEST(store_values_round_trip),
        STORE_TEST(store_unique_violation_is_conflict),
        STORE_TEST(store_transaction_rollback),
        STORE_TEST(store_format_helpers),
        STORE_TEST(store_parameter_reuse),
        STORE_TEST(store_statement_cache_reuse),
        STORE_TEST(store_concurrent_writers),
        STORE_TEST(store_concurrent_migrate_applies_once),
        STORE_TEST(store_newer_schema_is_refused),
    };
    const struct CMUnitTest pg_tests[] = {
        STORE_TEST(store_migrate_twice_is_idempotent),
        STORE_TEST(store_insert_returning_id),
        STORE_TEST(store_values_round_trip),
        STORE_TEST(store_unique_violation_is_conflict),
        STORE_TEST(store_transaction_rollback),
        STORE_TEST(store_format_helpers),
        STORE_TEST(store_parameter_reuse),
        STORE_TEST(store_statement_cache_reuse),
        STORE_TEST(store_concurrent_writers),
        STORE_TEST(store_concurrent_migrate_applies_once),
        STORE_TEST(store_newer_schema_is_refused),
    };
    char reason[600];
    int failed = 0;

    g_be.name = "sqlite";
    g_be.kind = STORE_SQLITE;
    snprintf(g_be.base, sizeof(g_be.base), "%s", tu_mkdtemp());
    char sqlite_dir[sizeof(g_be.base)];
    memcpy(sqlite_dir, g_be.base, sizeof(sqlite_dir));
    failed += cmocka_run_group_tests_name("store_sqlite", sqlite_tests, NULL, NULL);
    tu_rmtree(sqlite_dir);

    memset(&g_be, 0, sizeof(g_be));
    g_be.name = "postgresql";
    g_be.kind = STORE_POSTGRES;
    if (pg_find(reason, sizeof(reason)) == 0)
        failed += cmocka_run_group_tests_name("store_postgresql", pg_tests, NULL, NULL);
    else
        printf("SKIP postgresql: %s\n", reason);
    pg_stop();
    return failed ? 1 : 0;
}
