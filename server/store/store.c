/*
 * The store's front end: what every caller of store.h reaches first. It picks
 * a backend from the URL, checks arguments and dispatches to the backend's
 * table of operations (storeInt.h), and holds what both backends share: the
 * scanner that finds $N parameters (and rewrites them for SQLite), the
 * per-connection statement cache, the migration runner and the
 * format-string helpers (store_execf and friends).
 *
 * See docs/internals/store.md for the SQL dialect both backends accept.
 */
#include "storeInt.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "migrations.h"

/* The longest URL or path store_open accepts. */
#define STORE_MAX_URL 4096

const char *store_strerror(int err)
{
    switch (err) {
    case STORE_OK:
        return "success";
    case STORE_EINVAL:
        return "invalid argument or misuse";
    case STORE_ECONNECT:
        return "cannot open or connect to the database";
    case STORE_ESQL:
        return "the database refused the statement";
    case STORE_ECONFLICT:
        return "constraint violated (duplicate or missing reference)";
    case STORE_EBUSY:
        return "the database is busy (lock timeout or serialization failure); retry";
    case STORE_ENOMEM:
        return "out of memory";
    default:
        return "unknown store error";
    }
}

void store__set_error(struct store_db *db, const char *fmt, ...)
{
    va_list ap;
    char tmp[sizeof(db->errmsg)];

    /* Format into a copy first: the arguments may point into errmsg. */
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    /* Backend messages end with newlines; the caller adds its own. */
    size_t n = strlen(tmp);
    while (n > 0 && (tmp[n - 1] == '\n' || tmp[n - 1] == ' '))
        tmp[--n] = '\0';
    memcpy(db->errmsg, tmp, n + 1);
}

/* ------------------------------------------------------------------------ */
/* Opening: the URL names the backend.                                       */
/* ------------------------------------------------------------------------ */

static int has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The length of a URL scheme at the start of s ("postgresql" in
 * "postgresql://..."), or 0 when s does not start with one. */
static size_t scheme_length(const char *s)
{
    size_t n = 0;
    if (!isalpha((unsigned char)s[0]))
        return 0;
    while (isalnum((unsigned char)s[n]) || s[n] == '+' || s[n] == '.' || s[n] == '-')
        n++;
    return s[n] == ':' ? n : 0;
}

int store_open(const char *url, struct store_db **out, char *err, size_t errlen)
{
    char dummy[1];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (out == NULL)
        return STORE_EINVAL;
    *out = NULL;
    if (url == NULL || url[0] == '\0') {
        snprintf(err, errlen, "the database URL is empty");
        return STORE_EINVAL;
    }
    if (strlen(url) > STORE_MAX_URL) {
        snprintf(err, errlen, "the database URL is longer than %d bytes", STORE_MAX_URL);
        return STORE_EINVAL;
    }

    if (has_prefix(url, "postgresql://") || has_prefix(url, "postgres://"))
        return store__pg_open(url, out, err, errlen);

    const char *path = url;
    if (has_prefix(url, "sqlite://")) {
        /* sqlite:///abs/path keeps its leading slash. A relative path after
         * sqlite:// (what a relative data folder produces) is accepted as
         * such rather than read as a host name. */
        path = url + strlen("sqlite://");
    } else if (has_prefix(url, "sqlite:")) {
        path = url + strlen("sqlite:");
    } else {
        size_t n = scheme_length(url);
        /* A path may contain a colon, but "word://" is a URL whose scheme we
         * do not speak, and "postgres:" without "//" is a typo. */
        if (n > 0 && strncmp(url, "postgres", 8) == 0 && strncmp(url + n, "://", 3) != 0) {
            snprintf(err, errlen, "a PostgreSQL URL starts with postgresql:// (got '%.*s')",
                     (int)(n + 1 > 40 ? 40 : n + 1), url);
            return STORE_EINVAL;
        }
        if (n > 0 && strncmp(url + n, "://", 3) == 0) {
            snprintf(err, errlen,
                     "unsupported database URL scheme '%.*s' (use sqlite:///path/to/khien.db or "
                     "postgresql://user@host:port/dbname)",
                     (int)(n > 32 ? 32 : n), url);
            return STORE_EINVAL;
        }
    }
    if (path[0] == '\0') {
        snprintf(err, errlen, "the SQLite URL '%s' names no file", url);
        return STORE_EINVAL;
    }
    return store__sqlite_open(path, out, err, errlen);
}

void store_close(struct store_db *db)
{
    if (db == NULL)
        return;
    db->ops->close(db);
}

enum store_kind store_kind(const struct store_db *db)
{
    return db ? db->kind : STORE_SQLITE;
}

const char *store_errmsg(const struct store_db *db)
{
    if (db == NULL)
        return "no database connection";
    return db->errmsg;
}

/* ------------------------------------------------------------------------ */
/* Parameters: $N outside literals, identifiers and comments.                */
/* ------------------------------------------------------------------------ */

static int is_ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '$' || (unsigned char)c >= 0x80;
}

int store__scan_params(struct store_db *db, const char *sql, int *max_param, char *rewrite,
                       size_t rewrite_len)
{
    size_t len = strlen(sql);
    int max = 0;

    if (rewrite != NULL) {
        if (rewrite_len < len + 1)
            return STORE_EINVAL;
        memcpy(rewrite, sql, len + 1);
    }
    for (size_t i = 0; i < len; i++) {
        char c = sql[i];
        if (c == '\'' || c == '"') {
            /* A doubled quote inside closes and reopens: the same scan. */
            const char *end = strchr(sql + i + 1, c);
            i = end ? (size_t)(end - sql) : len;
        } else if (c == '-' && sql[i + 1] == '-') {
            const char *end = strchr(sql + i, '\n');
            i = end ? (size_t)(end - sql) : len;
        } else if (c == '/' && sql[i + 1] == '*') {
            const char *end = strstr(sql + i + 2, "*/");
            i = end ? (size_t)(end - sql) + 1 : len;
        } else if (c == '$' && isdigit((unsigned char)sql[i + 1]) &&
                   (i == 0 || !is_ident_char(sql[i - 1]))) {
            /* PostgreSQL allows $ inside identifiers (a$1 is one name), so
             * only a $ that starts a token is a parameter. */
            long n = 0;
            size_t j = i + 1;
            while (isdigit((unsigned char)sql[j])) {
                if (n <= STORE_MAX_PARAMS)
                    n = n * 10 + (sql[j] - '0');
                j++;
            }
            if (n < 1 || n > STORE_MAX_PARAMS) {
                store__set_error(db, "parameter $%.*s is out of range (1..%d)",
                                 (int)(j - i - 1 > 12 ? 12 : j - i - 1), sql + i + 1,
                                 STORE_MAX_PARAMS);
                return STORE_EINVAL;
            }
            if (n > max)
                max = (int)n;
            if (rewrite != NULL)
                rewrite[i] = '?';
            i = j - 1;
        }
    }
    *max_param = max;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The statement cache.                                                      */
/* ------------------------------------------------------------------------ */

struct store_cache_entry {
    char *sql;
    uint32_t hash;
    void *handle;
    struct store_cache_entry *next;          /* in its bucket */
    struct store_cache_entry *older, *newer; /* in the recency list */
};

#define CACHE_BUCKETS (sizeof(((struct store_cache *)0)->buckets) / sizeof(void *))

static uint32_t hash_sql(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

void store__cache_init(struct store_cache *c, size_t cap, int (*evict)(void *, void *),
                       void (*destroy)(void *, void *), void *ctx)
{
    memset(c, 0, sizeof(*c));
    c->cap = cap;
    c->evict = evict;
    c->destroy = destroy;
    c->ctx = ctx;
}

/* Unlinks e from its bucket and the recency list and frees it; the handle
 * is the caller's. */
static void cache_remove(struct store_cache *c, struct store_cache_entry *e)
{
    struct store_cache_entry **pp = &c->buckets[e->hash % CACHE_BUCKETS];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    c->count--;
    free(e->sql);
    free(e);
}

void *store__cache_take(struct store_cache *c, const char *sql)
{
    uint32_t h = hash_sql(sql);
    for (struct store_cache_entry *e = c->buckets[h % CACHE_BUCKETS]; e; e = e->next) {
        if (e->hash == h && strcmp(e->sql, sql) == 0) {
            void *handle = e->handle;
            cache_remove(c, e);
            return handle;
        }
    }
    return NULL;
}

void store__cache_put(struct store_cache *c, const char *sql, void *handle)
{
    struct store_cache_entry *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->sql = strdup(sql)) == NULL) {
        free(e);
        c->destroy(c->ctx, handle);
        return;
    }
    e->hash = hash_sql(sql);
    e->handle = handle;
    e->next = c->buckets[e->hash % CACHE_BUCKETS];
    c->buckets[e->hash % CACHE_BUCKETS] = e;
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
    c->count++;
    /* A refusal leaves the cache over capacity until a later put. */
    while (c->count > c->cap && c->oldest != NULL) {
        if (c->evict(c->ctx, c->oldest->handle) != 0)
            break;
        cache_remove(c, c->oldest);
    }
}

void store__cache_clear(struct store_cache *c)
{
    while (c->oldest != NULL) {
        c->destroy(c->ctx, c->oldest->handle);
        cache_remove(c, c->oldest);
    }
}

/* ------------------------------------------------------------------------ */
/* Transactions, statements: argument checks and dispatch.                   */
/* ------------------------------------------------------------------------ */

int store_begin(struct store_db *db)
{
    return db ? db->ops->begin(db, 0) : STORE_EINVAL;
}

int store_begin_write(struct store_db *db)
{
    return db ? db->ops->begin(db, 1) : STORE_EINVAL;
}

int store_commit(struct store_db *db)
{
    return db ? db->ops->commit(db) : STORE_EINVAL;
}

int store_rollback(struct store_db *db)
{
    if (db == NULL)
        return STORE_EINVAL;
    if (!db->ops->in_transaction(db))
        return 0;
    return db->ops->rollback(db);
}

int store_exec(struct store_db *db, const char *sql)
{
    if (db == NULL || sql == NULL)
        return STORE_EINVAL;
    return db->ops->exec(db, sql);
}

int store_prepare(struct store_db *db, const char *sql, struct store_stmt **out)
{
    if (out != NULL)
        *out = NULL;
    if (db == NULL || sql == NULL || out == NULL)
        return STORE_EINVAL;
    return db->ops->prepare(db, sql, out);
}

int store_bind_text(struct store_stmt *st, int idx, const char *s)
{
    if (st == NULL)
        return STORE_EINVAL;
    if (s == NULL)
        return st->db->ops->bind_null(st, idx);
    return st->db->ops->bind_text(st, idx, s);
}

int store_bind_int(struct store_stmt *st, int idx, int64_t v)
{
    return st ? st->db->ops->bind_int(st, idx, v) : STORE_EINVAL;
}

int store_bind_null(struct store_stmt *st, int idx)
{
    return st ? st->db->ops->bind_null(st, idx) : STORE_EINVAL;
}

int store_bind_blob(struct store_stmt *st, int idx, const void *p, size_t n)
{
    if (st == NULL || (p == NULL && n > 0))
        return STORE_EINVAL;
    if (n > (size_t)0x7fffffff) {
        store__set_error(st->db, "blob of %zu bytes is too large to bind", n);
        return STORE_EINVAL;
    }
    return st->db->ops->bind_blob(st, idx, p ? p : "", n);
}

int store_step(struct store_stmt *st)
{
    return st ? st->db->ops->step(st) : STORE_EINVAL;
}

int64_t store_changes(struct store_stmt *st)
{
    return st ? st->db->ops->changes(st) : 0;
}

int store_col_count(struct store_stmt *st)
{
    return st ? st->db->ops->col_count(st) : 0;
}

int store_col_is_null(struct store_stmt *st, int col)
{
    return st ? st->db->ops->col_is_null(st, col) : 1;
}

const char *store_col_text(struct store_stmt *st, int col)
{
    return st ? st->db->ops->col_text(st, col) : NULL;
}

int64_t store_col_int(struct store_stmt *st, int col)
{
    return st ? st->db->ops->col_int(st, col) : 0;
}

const void *store_col_blob(struct store_stmt *st, int col, size_t *len)
{
    size_t dummy;
    if (len == NULL)
        len = &dummy;
    *len = 0;
    return st ? st->db->ops->col_blob(st, col, len) : NULL;
}

int store_reset(struct store_stmt *st)
{
    return st ? st->db->ops->reset(st) : STORE_EINVAL;
}

void store_finalize(struct store_stmt *st)
{
    if (st == NULL)
        return;
    st->db->ops->finalize(st);
}

/* ------------------------------------------------------------------------ */
/* The format-string helpers.                                                */
/* ------------------------------------------------------------------------ */

/* Prepares sql, binds the arguments fmt describes and steps once. Returns
 * the step's result; on STORE_ROW or STORE_DONE *out holds the statement,
 * on error it is finalized and *out is NULL. */
static int prepare_bind_step(struct store_db *db, struct store_stmt **out, const char *sql,
                             const char *fmt, va_list *ap)
{
    struct store_stmt *st = NULL;
    int r;

    *out = NULL;
    if ((r = store_prepare(db, sql, &st)) != 0)
        goto out;
    for (int i = 0; fmt != NULL && fmt[i] != '\0'; i++) {
        switch (fmt[i]) {
        case 't':
            r = store_bind_text(st, i + 1, va_arg(*ap, const char *));
            break;
        case 'i':
            r = store_bind_int(st, i + 1, va_arg(*ap, int64_t));
            break;
        case 'n':
            r = store_bind_null(st, i + 1);
            break;
        default:
            store__set_error(db, "unknown format character '%c' for parameter $%d", fmt[i], i + 1);
            r = STORE_EINVAL;
            break;
        }
        if (r != 0)
            goto out;
    }
    if ((r = store_step(st)) < 0)
        goto out;
    *out = st;
    st = NULL;
out:
    store_finalize(st);
    return r;
}

int store_execf(struct store_db *db, int64_t *changes, const char *sql, const char *fmt, ...)
{
    struct store_stmt *st = NULL;
    va_list ap;

    if (changes != NULL)
        *changes = 0;
    va_start(ap, fmt);
    int r = prepare_bind_step(db, &st, sql, fmt, &ap);
    va_end(ap);
    if (r < 0)
        return r;
    if (changes != NULL)
        *changes = store_changes(st);
    store_finalize(st);
    return 0;
}

int store_queryf(struct store_db *db, struct store_stmt **out, const char *sql, const char *fmt,
                 ...)
{
    struct store_stmt *st = NULL;
    va_list ap;

    if (out == NULL)
        return STORE_EINVAL;
    *out = NULL;
    va_start(ap, fmt);
    int r = prepare_bind_step(db, &st, sql, fmt, &ap);
    va_end(ap);
    if (r == STORE_ROW)
        *out = st;
    else
        store_finalize(st);
    return r;
}

int store_query_int(struct store_db *db, int64_t *out, const char *sql, const char *fmt, ...)
{
    struct store_stmt *st = NULL;
    va_list ap;

    va_start(ap, fmt);
    int r = prepare_bind_step(db, &st, sql, fmt, &ap);
    va_end(ap);
    if (r == STORE_ROW && out != NULL)
        *out = store_col_int(st, 0);
    store_finalize(st);
    return r;
}

int store_query_text(struct store_db *db, char **out, const char *sql, const char *fmt, ...)
{
    struct store_stmt *st = NULL;
    va_list ap;

    va_start(ap, fmt);
    int r = prepare_bind_step(db, &st, sql, fmt, &ap);
    va_end(ap);
    if (r == STORE_ROW && out != NULL) {
        /* A NULL column gives *out == NULL; an empty string gives "". */
        const char *s = store_col_text(st, 0);
        *out = NULL;
        if (s != NULL && (*out = strdup(s)) == NULL)
            r = STORE_ENOMEM;
    }
    store_finalize(st);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Migrations.                                                               */
/* ------------------------------------------------------------------------ */

int store_schema_latest(void)
{
    return store_migration_count();
}

int store_schema_version(struct store_db *db, int *out)
{
    int64_t exists = 0, v = 0;
    int r;

    if (db == NULL || out == NULL)
        return STORE_EINVAL;
    *out = 0;
    if ((r = store_query_int(db, &exists, db->ops->has_schema_version, "")) < 0)
        return r;
    if (exists == 0)
        return 0;
    r = store_query_int(db, &v, "SELECT coalesce(max(version), 0) FROM schema_version", "");
    if (r < 0)
        return r;
    *out = (int)v;
    return 0;
}

/* Returns a malloc'd copy of a migration's text with the placeholders
 * replaced by this backend's types, or NULL when out of memory. */
static char *substitute_types(const struct store_ops *ops, const char *sql)
{
    const struct {
        const char *name, *value;
    } subs[] = {{"@PK@", ops->type_pk}, {"@BLOB@", ops->type_blob}, {"@BIGINT@", ops->type_bigint}};
    size_t longest = 0, len = strlen(sql);

    for (size_t k = 0; k < sizeof(subs) / sizeof(subs[0]); k++)
        if (strlen(subs[k].value) > longest)
            longest = strlen(subs[k].value);
    /* Every placeholder is at least 4 bytes, so this bounds the result. */
    size_t cap = len + (len / 4 + 1) * longest + 1;
    char *out = malloc(cap), *o = out;
    if (out == NULL)
        return NULL;
    for (const char *p = sql; *p != '\0';) {
        size_t k = 0;
        for (; k < sizeof(subs) / sizeof(subs[0]); k++)
            if (has_prefix(p, subs[k].name))
                break;
        if (k < sizeof(subs) / sizeof(subs[0])) {
            size_t n = strlen(subs[k].value);
            memcpy(o, subs[k].value, n);
            o += n;
            p += strlen(subs[k].name);
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

/* Applies migration `version` inside the open transaction and records it. */
static int apply_migration(struct store_db *db, int version)
{
    char *sql = NULL;
    int r;

    if ((sql = substitute_types(db->ops, store_migration_sql(version))) == NULL) {
        r = STORE_ENOMEM;
        goto out;
    }
    if ((r = store_exec(db, sql)) != 0) {
        store__set_error(db, "migration %d failed: %s", version, db->errmsg);
        goto out;
    }
    /* The store knows nothing of the server's clock (srv_now); this is only a
     * record of when the migration ran. */
    r = store_execf(db, NULL, "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                    "ii", (int64_t)version, (int64_t)time(NULL));
    if (r != 0)
        store__set_error(db, "migration %d: cannot record it: %s", version, db->errmsg);
out:
    free(sql);
    return r;
}

int store_migrate(struct store_db *db)
{
    return store_migrate_to(db, store_schema_latest());
}

int store_migrate_to(struct store_db *db, int target)
{
    int latest = store_schema_latest(), locked = 0, in_tx = 0, version = 0;
    int r;

    if (db == NULL || target < 0 || target > latest)
        return STORE_EINVAL;
    if ((r = db->ops->migrate_lock(db)) != 0)
        goto out;
    locked = 1;
    /* One transaction per migration. The version is read again inside each,
     * under the lock, so a server that waited for another one's run sees
     * what that run applied and does nothing. */
    for (;;) {
        if ((r = store_exec(db, db->ops->migrate_begin)) != 0)
            goto out;
        in_tx = 1;
        r = store_exec(db, "CREATE TABLE IF NOT EXISTS schema_version ("
                           " version INTEGER PRIMARY KEY,"
                           " applied_at BIGINT NOT NULL)");
        if (r != 0 || (r = store_schema_version(db, &version)) != 0)
            goto out;
        if (version > latest) {
            store__set_error(db,
                             "the database schema is at version %d, newer than this build of "
                             "khien knows (%d): upgrade khien before using this database",
                             version, latest);
            r = STORE_EINVAL;
            goto out;
        }
        if (version >= target)
            break;
        if ((r = apply_migration(db, version + 1)) != 0)
            goto out;
        if ((r = store_commit(db)) != 0)
            goto out;
        in_tx = 0;
    }
    if ((r = store_commit(db)) != 0)
        goto out;
    in_tx = 0;
out:
    if (in_tx)
        (void)store_rollback(db);
    if (locked)
        db->ops->migrate_unlock(db);
    return r;
}
