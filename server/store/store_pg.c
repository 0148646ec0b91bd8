/*
 * The PostgreSQL backend of the store, over libpq. A connection is one
 * PGconn. Each distinct SQL text is prepared once per connection as a named
 * server-side statement (PQprepare) and then run with PQexecPrepared; idle
 * names are cached by text in store.c's cache and deallocated when evicted.
 *
 * Parameters go as text, except blobs, which go in binary so that bytes are
 * bytes (no escaping, NUL allowed); the server infers each parameter's type
 * from where it appears. Results come back as text: integers are parsed,
 * and a bytea column is unescaped (PQunescapeBytea) when the caller asks for
 * it as a blob, the copy living until the next step. A statement runs to
 * completion on its first step and its rows are then read from the result,
 * so a caller may run other statements on the same connection while it
 * iterates.
 */
#include "storeInt.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

/* The OID of bytea (pg_type_d.h is not part of libpq's client headers). */
#define PG_BYTEA_OID 17
/* Key of the advisory lock store_migrate holds: "khien" in ASCII. */
#define PG_MIGRATE_LOCK "461523510638"

struct pg_db {
    struct store_db base;
    PGconn *conn;
    struct store_cache cache;
    unsigned next_name;
};

/* A server-side prepared statement: what the cache holds. */
struct pg_prepared {
    char name[32];
    int nparams;
};

enum stmt_state { ST_FRESH, ST_ROWS, ST_DONE, ST_FAILED };

struct pg_stmt {
    struct store_stmt base;
    struct pg_prepared *prep;
    char *sql; /* the cache key */
    char **values;
    int *lengths;
    int *formats;
    PGresult *res;
    enum stmt_state state;
    int row, nrows;
    int64_t changes;
    unsigned char **blobs; /* unescaped bytea per column of the current row */
    size_t *blob_lens;
};

static const struct store_ops pg_ops;

static struct pg_db *as_db(struct store_db *db)
{
    return (struct pg_db *)db;
}

static struct pg_stmt *as_stmt(struct store_stmt *st)
{
    return (struct pg_stmt *)st;
}

/* Records the message of a failed result (or of the connection when res is
 * NULL) and maps its SQLSTATE to a store code. */
static int fail(struct pg_db *db, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;

    /* One line, "message: detail", rather than libpq's multi-line report. */
    if (primary != NULL)
        store__set_error(&db->base, "%s%s%s", primary, detail ? ": " : "", detail ? detail : "");
    else
        store__set_error(&db->base, "%s", PQerrorMessage(db->conn));
    if (state == NULL)
        return PQstatus(db->conn) == CONNECTION_BAD ? STORE_ECONNECT : STORE_ESQL;
    if (strncmp(state, "23", 2) == 0)
        return STORE_ECONFLICT;
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0)
        return STORE_EBUSY;
    if (strcmp(state, "53200") == 0)
        return STORE_ENOMEM;
    return STORE_ESQL;
}

static int pg_exec(struct store_db *base, const char *sql)
{
    struct pg_db *db = as_db(base);
    PGresult *res = PQexec(db->conn, sql);
    ExecStatusType s = PQresultStatus(res);
    int r = 0;

    if (res == NULL)
        r = fail(db, NULL);
    else if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY)
        r = fail(db, res);
    PQclear(res);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Opening and closing.                                                      */
/* ------------------------------------------------------------------------ */

static void append(char *out, size_t outlen, size_t *o, const char *s, size_t n)
{
    while (n-- > 0 && *o + 1 < outlen)
        out[(*o)++] = *s++;
    out[*o] = '\0';
}

/* Copies url into out with its password (user:PASSWORD@ or password=...)
 * replaced by ***, for messages. Sets *pw and *pw_len to the URL's userinfo
 * password, if any, so that it can be scrubbed from libpq's message too. */
static void redact_url(const char *url, char *out, size_t outlen, const char **pw, size_t *pw_len)
{
    const char *auth = strstr(url, "://"), *pw_end = NULL;
    size_t o = 0, len = strlen(url);

    *pw = NULL;
    *pw_len = 0;
    out[0] = '\0';
    if (auth != NULL) {
        auth += 3;
        size_t alen = strcspn(auth, "/?");
        const char *at = NULL, *colon = NULL;
        for (size_t i = 0; i < alen; i++)
            if (auth[i] == '@')
                at = auth + i;
        for (const char *p = auth; at != NULL && p < at && colon == NULL; p++)
            if (*p == ':')
                colon = p;
        if (colon != NULL) {
            *pw = colon + 1;
            pw_end = at;
            *pw_len = (size_t)(at - colon - 1);
        }
    }
    for (size_t i = 0; i < len;) {
        if (*pw != NULL && url + i == *pw) {
            append(out, outlen, &o, "***", 3);
            i = (size_t)(pw_end - url);
        } else if (strncmp(url + i, "password=", 9) == 0 && i > 0 &&
                   (url[i - 1] == '?' || url[i - 1] == '&')) {
            append(out, outlen, &o, "password=***", 12);
            i += 9 + strcspn(url + i + 9, "&");
        } else {
            append(out, outlen, &o, url + i, 1);
            i++;
        }
    }
}

/* Replaces each occurrence of the secret in msg by ***. libpq does not
 * print passwords, but a malformed URL may be echoed in part. */
static void scrub(char *msg, const char *secret, size_t n)
{
    char needle[256];
    char *p, *from = msg;

    if (secret == NULL || n < 3 || n >= sizeof(needle))
        return;
    memcpy(needle, secret, n);
    needle[n] = '\0';
    while ((p = strstr(from, needle)) != NULL) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + n, strlen(p + n) + 1);
        from = p + 3;
    }
    explicit_bzero(needle, sizeof(needle));
}

/* Turns libpq's multi-line, tab-indented message into one line. */
static void one_line(char *msg)
{
    size_t o = 0;
    for (size_t i = 0; msg[i] != '\0'; i++) {
        int space = msg[i] == '\n' || msg[i] == '\t' || msg[i] == ' ';
        if (space && (o == 0 || msg[o - 1] == ' '))
            continue;
        msg[o++] = space ? ' ' : msg[i];
    }
    while (o > 0 && msg[o - 1] == ' ')
        o--;
    msg[o] = '\0';
}

static int cache_evict(void *ctx, void *handle)
{
    struct pg_db *db = ctx;
    struct pg_prepared *prep = handle;
    char sql[64];

    /* Prepared statements are not transactional, so DEALLOCATE may run in
     * the caller's transaction, but not in a failed one (nor on a broken
     * connection): refuse then, and the cache tries again later. */
    PGTransactionStatusType ts = PQtransactionStatus(db->conn);
    if (ts != PQTRANS_IDLE && ts != PQTRANS_INTRANS)
        return 1;
    snprintf(sql, sizeof(sql), "DEALLOCATE %s", prep->name);
    PQclear(PQexec(db->conn, sql));
    free(prep);
    return 0;
}

static void cache_destroy(void *ctx, void *handle)
{
    (void)ctx;
    free(handle); /* the server forgets its statements when we disconnect */
}

int store__pg_open(const char *url, struct store_db **out, char *err, size_t errlen)
{
    /* connect_timeout first: a value in the URL (dbname, expanded) wins. */
    const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
    const char *values[] = {"10", "khien", url, NULL};
    struct pg_db *db = NULL;
    char shown[512], msg[512];
    const char *pw;
    size_t pw_len;
    int r = STORE_ENOMEM;

    if ((db = calloc(1, sizeof(*db))) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    db->base.ops = &pg_ops;
    db->base.kind = STORE_POSTGRES;
    store__cache_init(&db->cache, STORE_CACHE_CAP, cache_evict, cache_destroy, db);
    db->conn = PQconnectdbParams(keys, values, 1);
    if (db->conn == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (PQstatus(db->conn) != CONNECTION_OK) {
        redact_url(url, shown, sizeof(shown), &pw, &pw_len);
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(db->conn));
        scrub(msg, pw, pw_len);
        one_line(msg);
        snprintf(err, errlen, "cannot connect to PostgreSQL at %s: %s", shown, msg);
        r = STORE_ECONNECT;
        goto out;
    }
    /* NOTICEs ("relation already exists, skipping") are noise in logs. */
    if ((r = pg_exec(&db->base, "SET client_min_messages = warning")) != 0) {
        snprintf(err, errlen, "PostgreSQL connection setup failed: %s", db->base.errmsg);
        goto out;
    }
    *out = &db->base;
    db = NULL;
    r = 0;
out:
    if (db != NULL) {
        PQfinish(db->conn);
        free(db);
    }
    return r;
}

static void pg_close(struct store_db *base)
{
    struct pg_db *db = as_db(base);
    store__cache_clear(&db->cache);
    PQfinish(db->conn);
    free(db);
}

/* ------------------------------------------------------------------------ */
/* Statements.                                                               */
/* ------------------------------------------------------------------------ */

/* Prepares sql on the server under a new name. */
static int prepare_named(struct pg_db *db, const char *sql, struct pg_prepared **out)
{
    struct pg_prepared *prep = NULL;
    PGresult *res = NULL;
    int r = STORE_ENOMEM;

    if ((prep = calloc(1, sizeof(*prep))) == NULL)
        goto out;
    if ((r = store__scan_params(&db->base, sql, &prep->nparams, NULL, 0)) != 0)
        goto out;
    /* Names are never reused on a connection, so a statement whose
     * DEALLOCATE failed cannot collide with a new one. */
    snprintf(prep->name, sizeof(prep->name), "khien_%u", ++db->next_name);
    res = PQprepare(db->conn, prep->name, sql, 0, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        r = fail(db, res);
        goto out;
    }
    *out = prep;
    prep = NULL;
    r = 0;
out:
    PQclear(res);
    free(prep);
    return r;
}

static int pg_prepare(struct store_db *base, const char *sql, struct store_stmt **out)
{
    struct pg_db *db = as_db(base);
    struct pg_stmt *st = NULL;
    int r = STORE_ENOMEM;

    if ((st = calloc(1, sizeof(*st))) == NULL || (st->sql = strdup(sql)) == NULL)
        goto out;
    st->base.db = base;
    if ((st->prep = store__cache_take(&db->cache, sql)) == NULL &&
        (r = prepare_named(db, sql, &st->prep)) != 0)
        goto out;
    int n = st->prep->nparams;
    if (n > 0) {
        st->values = calloc((size_t)n, sizeof(*st->values));
        st->lengths = calloc((size_t)n, sizeof(*st->lengths));
        st->formats = calloc((size_t)n, sizeof(*st->formats));
        if (st->values == NULL || st->lengths == NULL || st->formats == NULL) {
            r = STORE_ENOMEM;
            goto out;
        }
    }
    *out = &st->base;
    st = NULL;
    r = 0;
out:
    if (st != NULL) {
        if (st->prep != NULL)
            store__cache_put(&db->cache, sql, st->prep);
        free(st->values);
        free(st->lengths);
        free(st->formats);
        free(st->sql);
        free(st);
    }
    return r;
}

/* Replaces parameter idx with a copy of n bytes of p (format 0 text, 1
 * binary); p == NULL binds NULL. */
static int bind_value(struct pg_stmt *st, int idx, const void *p, size_t n, int format)
{
    char *copy = NULL;

    if (st->state != ST_FRESH) {
        store__set_error(st->base.db, "bind after step: reset the statement first");
        return STORE_EINVAL;
    }
    if (idx < 1 || idx > st->prep->nparams) {
        store__set_error(st->base.db, "parameter $%d does not exist in this statement", idx);
        return STORE_EINVAL;
    }
    if (n > 0x7ffffffe) {
        store__set_error(st->base.db, "value of %zu bytes is too large to bind", n);
        return STORE_EINVAL;
    }
    if (p != NULL) {
        /* One spare byte keeps text NUL-terminated and an empty blob
         * non-NULL (libpq reads NULL as SQL NULL). */
        if ((copy = malloc(n + 1)) == NULL)
            return STORE_ENOMEM;
        memcpy(copy, p, n);
        copy[n] = '\0';
    }
    free(st->values[idx - 1]);
    st->values[idx - 1] = copy;
    st->lengths[idx - 1] = (int)n;
    st->formats[idx - 1] = format;
    return 0;
}

static int pg_bind_text(struct store_stmt *base, int idx, const char *s)
{
    return bind_value(as_stmt(base), idx, s, strlen(s), 0);
}

static int pg_bind_int(struct store_stmt *base, int idx, int64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%" PRId64, v);
    return bind_value(as_stmt(base), idx, buf, (size_t)n, 0);
}

static int pg_bind_null(struct store_stmt *base, int idx)
{
    return bind_value(as_stmt(base), idx, NULL, 0, 0);
}

static int pg_bind_blob(struct store_stmt *base, int idx, const void *p, size_t n)
{
    return bind_value(as_stmt(base), idx, p, n, 1);
}

static void free_blobs(struct pg_stmt *st)
{
    if (st->blobs == NULL)
        return;
    for (int i = 0; st->res != NULL && i < PQnfields(st->res); i++)
        PQfreemem(st->blobs[i]);
    free(st->blobs);
    free(st->blob_lens);
    st->blobs = NULL;
    st->blob_lens = NULL;
}

static int pg_step(struct store_stmt *base)
{
    struct pg_stmt *st = as_stmt(base);
    struct pg_db *db = as_db(base->db);

    if (st->state == ST_FAILED) {
        store__set_error(base->db, "the statement failed: reset it before stepping again");
        return STORE_EINVAL;
    }
    if (st->state == ST_DONE)
        return STORE_DONE;
    free_blobs(st);
    if (st->state == ST_FRESH) {
        st->res = PQexecPrepared(db->conn, st->prep->name, st->prep->nparams,
                                 (const char *const *)st->values, st->lengths, st->formats, 0);
        ExecStatusType s = PQresultStatus(st->res);
        if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
            int r = fail(db, st->res);
            PQclear(st->res);
            st->res = NULL;
            st->state = ST_FAILED;
            return r;
        }
        st->changes = strtoll(PQcmdTuples(st->res), NULL, 10);
        st->nrows = s == PGRES_TUPLES_OK ? PQntuples(st->res) : 0;
        st->row = -1;
        st->state = ST_ROWS;
    }
    if (++st->row < st->nrows)
        return STORE_ROW;
    st->state = ST_DONE;
    return STORE_DONE;
}

static int64_t pg_changes(struct store_stmt *base)
{
    return as_stmt(base)->changes;
}

static int pg_col_count(struct store_stmt *base)
{
    struct pg_stmt *st = as_stmt(base);
    return st->res ? PQnfields(st->res) : 0;
}

/* Whether col can be read: the last step returned a row and col exists. */
static int col_ok(struct pg_stmt *st, int col)
{
    return st->state == ST_ROWS && st->row >= 0 && st->row < st->nrows && col >= 0 &&
           col < PQnfields(st->res);
}

static int pg_col_is_null(struct store_stmt *base, int col)
{
    struct pg_stmt *st = as_stmt(base);
    return !col_ok(st, col) || PQgetisnull(st->res, st->row, col);
}

static const char *pg_col_text(struct store_stmt *base, int col)
{
    struct pg_stmt *st = as_stmt(base);
    if (pg_col_is_null(base, col))
        return NULL;
    return PQgetvalue(st->res, st->row, col);
}

static int64_t pg_col_int(struct store_stmt *base, int col)
{
    const char *v = pg_col_text(base, col);
    if (v == NULL)
        return 0;
    /* Booleans come back as t/f; callers store 0/1 but may compute one. */
    if (strcmp(v, "t") == 0)
        return 1;
    return strtoll(v, NULL, 10);
}

static const void *pg_col_blob(struct store_stmt *base, int col, size_t *len)
{
    struct pg_stmt *st = as_stmt(base);
    if (pg_col_is_null(base, col))
        return NULL;
    if (PQftype(st->res, col) != PG_BYTEA_OID) {
        *len = (size_t)PQgetlength(st->res, st->row, col);
        return PQgetvalue(st->res, st->row, col);
    }
    if (st->blobs == NULL) {
        int n = PQnfields(st->res);
        st->blobs = calloc((size_t)n, sizeof(*st->blobs));
        st->blob_lens = calloc((size_t)n, sizeof(*st->blob_lens));
        if (st->blobs == NULL || st->blob_lens == NULL) {
            free(st->blobs);
            free(st->blob_lens);
            st->blobs = NULL;
            st->blob_lens = NULL;
            return NULL;
        }
    }
    if (st->blobs[col] == NULL) {
        const unsigned char *text = (const unsigned char *)PQgetvalue(st->res, st->row, col);
        st->blobs[col] = PQunescapeBytea(text, &st->blob_lens[col]);
        if (st->blobs[col] == NULL)
            return NULL;
    }
    *len = st->blob_lens[col];
    return st->blobs[col];
}

static int pg_reset(struct store_stmt *base)
{
    struct pg_stmt *st = as_stmt(base);
    free_blobs(st);
    PQclear(st->res);
    st->res = NULL;
    st->state = ST_FRESH;
    st->row = st->nrows = 0;
    st->changes = 0;
    return 0;
}

static void pg_finalize(struct store_stmt *base)
{
    struct pg_stmt *st = as_stmt(base);
    struct pg_db *db = as_db(base->db);

    pg_reset(base);
    for (int i = 0; i < st->prep->nparams; i++)
        free(st->values[i]);
    free(st->values);
    free(st->lengths);
    free(st->formats);
    store__cache_put(&db->cache, st->sql, st->prep);
    free(st->sql);
    free(st);
}

/* ------------------------------------------------------------------------ */
/* Transactions and migrations.                                              */
/* ------------------------------------------------------------------------ */

static int pg_begin(struct store_db *db, int write)
{
    /* Rows are locked as they are written, so a write transaction needs no
     * lock up front as SQLite's does. */
    (void)write;
    return pg_exec(db, "BEGIN");
}

static int pg_commit(struct store_db *base)
{
    struct pg_db *db = as_db(base);
    PGresult *res = NULL;
    int r;

    /* COMMIT of a transaction that an error aborted "succeeds" by rolling
     * back: report that as the failure it is. */
    if (PQtransactionStatus(db->conn) == PQTRANS_INERROR) {
        (void)pg_exec(base, "ROLLBACK");
        store__set_error(base, "the transaction was aborted by an earlier error and was rolled "
                               "back");
        return STORE_ESQL;
    }
    res = PQexec(db->conn, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        r = fail(db, res);
    } else if (strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
        store__set_error(base, "the transaction was rolled back instead of committed");
        r = STORE_ESQL;
    } else {
        r = 0;
    }
    PQclear(res);
    return r;
}

static int pg_rollback(struct store_db *db)
{
    return pg_exec(db, "ROLLBACK");
}

static int pg_in_transaction(struct store_db *db)
{
    PGTransactionStatusType s = PQtransactionStatus(as_db(db)->conn);
    return s == PQTRANS_INTRANS || s == PQTRANS_INERROR || s == PQTRANS_ACTIVE;
}

static int pg_migrate_lock(struct store_db *db)
{
    /* A session lock: held across the per-migration transactions, released
     * by unlock or when the connection ends. */
    return pg_exec(db, "SELECT pg_advisory_lock(" PG_MIGRATE_LOCK ")");
}

static void pg_migrate_unlock(struct store_db *db)
{
    (void)pg_exec(db, "SELECT pg_advisory_unlock(" PG_MIGRATE_LOCK ")");
}

static const struct store_ops pg_ops = {
    .close = pg_close,
    .exec = pg_exec,
    .prepare = pg_prepare,
    .bind_text = pg_bind_text,
    .bind_int = pg_bind_int,
    .bind_null = pg_bind_null,
    .bind_blob = pg_bind_blob,
    .step = pg_step,
    .changes = pg_changes,
    .col_count = pg_col_count,
    .col_is_null = pg_col_is_null,
    .col_text = pg_col_text,
    .col_int = pg_col_int,
    .col_blob = pg_col_blob,
    .reset = pg_reset,
    .finalize = pg_finalize,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .in_transaction = pg_in_transaction,
    .migrate_lock = pg_migrate_lock,
    .migrate_unlock = pg_migrate_unlock,
    .migrate_begin = "BEGIN",
    .has_schema_version = "SELECT CASE WHEN to_regclass('schema_version') IS NULL"
                          " THEN 0 ELSE 1 END",
    .type_pk = "BIGSERIAL PRIMARY KEY",
    .type_blob = "BYTEA",
    .type_bigint = "BIGINT",
};
