/* Helpers for the unit tests; see testutil.h. */
#include "testutil.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

const char *tu_mkdtemp(void)
{
    static char path[PATH_MAX];
    const char *base = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/khien-test-XXXXXX", base ? base : "/tmp");
    if (mkdtemp(path) == NULL) {
        perror("mkdtemp");
        abort();
    }
    return path;
}

void tu_rmtree(const char *path)
{
    char cmd[PATH_MAX + 16];
    if (path == NULL || strlen(path) < 8)
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", path);
}

char *tu_write(const char *dir, const char *name, const void *data, size_t len)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    snprintf(path, n, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

const char *tu_shared_data(void)
{
    static char path[PATH_MAX];
    const char *env = getenv("KHIEN_SHARED");
    const char *src = getenv("KHIEN_SRC");
    if (env && *env)
        snprintf(path, sizeof(path), "%s/data", env);
    else if (src && *src)
        snprintf(path, sizeof(path), "%s/../shared/data", src);
    else
        snprintf(path, sizeof(path), "../shared/data");
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return NULL;
    return path;
}

/* ------------------------------------------------------------------------ */
/* A private PostgreSQL database per test process.                           */
/* ------------------------------------------------------------------------ */

static char pg_admin_url[512];
static char pg_private_name[64];
static char pg_private_url[600];

static void pg_private_drop(void)
{
    struct store_db *db = NULL;
    char err[256], sql[128];
    if (store_open(pg_admin_url, &db, err, sizeof(err)) != 0)
        return;
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", pg_private_name);
    (void)store_exec(db, sql);
    store_close(db);
}

const char *tu_pg_private_url(void)
{
    const char *env = getenv("KHIEN_PG_URL");
    struct store_db *db = NULL;
    char err[256], sql[128];
    if (pg_private_url[0] != '\0')
        return pg_private_url;
    if (env == NULL || *env == '\0' || strlen(env) >= sizeof(pg_admin_url))
        return NULL;
    /* The database name is the URL's last path segment, before any query. */
    const char *slash = strrchr(env, '/');
    if (slash == NULL || slash - env < 12 || strchr(env, '?') != NULL) {
        printf("SKIP postgresql: KHIEN_PG_URL must look like postgresql://USER@HOST:PORT/DB\n");
        return NULL;
    }
    snprintf(pg_admin_url, sizeof(pg_admin_url), "%s", env);
    snprintf(pg_private_name, sizeof(pg_private_name), "khien_t%ld_%ld", (long)getpid(),
             (long)time(NULL) % 100000);
    if (store_open(pg_admin_url, &db, err, sizeof(err)) != 0) {
        printf("SKIP postgresql: %s\n", err);
        return NULL;
    }
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", pg_private_name);
    int r = store_exec(db, sql);
    if (r != 0)
        printf("SKIP postgresql: cannot create a test database: %s\n", store_errmsg(db));
    store_close(db);
    if (r != 0)
        return NULL;
    atexit(pg_private_drop);
    snprintf(pg_private_url, sizeof(pg_private_url), "%.*s/%s", (int)(slash - env), env,
             pg_private_name);
    return pg_private_url;
}
