/* Helpers for the unit tests; see testutil.h. */
#include "testutil.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "server.h"
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

/* ------------------------------------------------------------------------ */
/* Server tests: a migrated store, and the running figures against a recount. */
/* ------------------------------------------------------------------------ */

struct store_db *tu_store_open(const char *dir, const char *pg_url, int version)
{
    struct store_db *db = NULL;
    char url[700], err[256] = "";
    if (pg_url != NULL)
        snprintf(url, sizeof(url), "%s", pg_url);
    else
        snprintf(url, sizeof(url), "sqlite://%s/khien.db", dir);
    if (store_open(url, &db, err, sizeof(err)) != 0 ||
        (pg_url != NULL &&
         store_exec(db, "DROP SCHEMA public CASCADE; CREATE SCHEMA public") != 0) ||
        store_migrate_to(db, version > 0 ? version : store_schema_latest()) != 0) {
        if (err[0] != '\0')
            printf("store: %s\n", err);
        store_close(db);
        return NULL;
    }
    return db;
}

/* Every query counts the rows that differ from a recount. */
void tu_figures_match_recount(struct store_db *db, int64_t now)
{
    static const struct {
        const char *what, *sql;
    } checks[] = {
        {"machines.open_detections",
         "SELECT count(*) FROM machines m WHERE m.open_detections <> (SELECT count(*) FROM"
         " detections d WHERE d.machine_id = m.id AND d.status IN ('new','acknowledged'))"},
        {"open_by_agency",
         "SELECT count(*) FROM (SELECT agency_id, machine_id, count(*) AS n, max(detected_at) AS t"
         " FROM detections WHERE status IN ('new','acknowledged') GROUP BY agency_id, machine_id)"
         " e LEFT JOIN open_by_agency o ON o.agency_id = e.agency_id AND o.machine_id ="
         " e.machine_id WHERE o.open_count IS NULL OR o.open_count <> e.n OR o.newest_open <> e.t"},
        {"open_by_agency (rows without open detections)",
         "SELECT count(*) FROM open_by_agency o WHERE NOT (o.open_count = 0 AND o.newest_open = 0)"
         " AND NOT EXISTS (SELECT 1 FROM detections d WHERE d.agency_id = o.agency_id AND"
         " d.machine_id = o.machine_id AND d.status IN ('new','acknowledged'))"},
        {"detection_daily",
         "SELECT count(*) FROM (SELECT detected_at / 86400 AS day, agency_id, count(*) AS n FROM"
         " detections GROUP BY detected_at / 86400, agency_id) e LEFT JOIN detection_daily s ON"
         " s.day = e.day AND s.agency_id = e.agency_id WHERE s.detections IS NULL OR"
         " s.detections <> e.n"},
        {"detection_daily (extra rows)",
         "SELECT count(*) FROM detection_daily s WHERE NOT EXISTS (SELECT 1 FROM detections d"
         " WHERE d.detected_at / 86400 = s.day AND d.agency_id = s.agency_id)"},
        {"detection_daily_family",
         "SELECT count(*) FROM (SELECT detected_at / 86400 AS day, agency_id, CASE WHEN family ="
         " '' THEN signature ELSE family END AS k, count(*) AS n FROM detections GROUP BY"
         " detected_at / 86400, agency_id, CASE WHEN family = '' THEN signature ELSE family END)"
         " e LEFT JOIN detection_daily_family s ON s.day = e.day AND s.agency_id = e.agency_id"
         " AND s.family = e.k WHERE s.detections IS NULL OR s.detections <> e.n"},
        {"detection_daily_family_all",
         "SELECT count(*) FROM (SELECT detected_at / 86400 AS day, CASE WHEN family = '' THEN"
         " signature ELSE family END AS k, count(*) AS n FROM detections GROUP BY"
         " detected_at / 86400, CASE WHEN family = '' THEN signature ELSE family END) e"
         " LEFT JOIN detection_daily_family_all s ON s.day = e.day AND s.family = e.k"
         " WHERE s.detections IS NULL OR s.detections <> e.n"},
        {"detection_daily_family_all (extra rows)",
         "SELECT count(*) FROM detection_daily_family_all s WHERE NOT EXISTS (SELECT 1 FROM"
         " detections d WHERE d.detected_at / 86400 = s.day AND"
         " CASE WHEN d.family = '' THEN d.signature ELSE d.family END = s.family)"},
        {"detection_daily_family (extra rows)",
         "SELECT count(*) FROM detection_daily_family s WHERE NOT EXISTS (SELECT 1 FROM"
         " detections d WHERE d.detected_at / 86400 = s.day AND d.agency_id = s.agency_id AND"
         " CASE WHEN d.family = '' THEN d.signature ELSE d.family END = s.family)"},
    };
    int64_t wrong = -1;

    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        if (store_query_int(db, &wrong, checks[i].sql, "") != STORE_ROW)
            fail_msg("%s: %s", checks[i].what, store_errmsg(db));
        if (wrong != 0)
            fail_msg("%s: %lld rows differ from a recount", checks[i].what, (long long)wrong);
    }
    /* Hours are kept only for the recent past, which is all the overview
     * reads: from a day before `now` on, they must be exact. */
    if (store_query_int(db, &wrong,
                        "SELECT count(*) FROM (SELECT detected_at / 3600 AS hour, agency_id,"
                        " count(*) AS n FROM detections WHERE detected_at >= $1 GROUP BY"
                        " detected_at / 3600, agency_id) e LEFT JOIN detection_hourly s ON"
                        " s.hour = e.hour AND s.agency_id = e.agency_id WHERE"
                        " s.detections IS NULL OR s.detections <> e.n",
                        "i", (now - 86400) / 3600 * 3600) != STORE_ROW)
        fail_msg("detection_hourly: %s", store_errmsg(db));
    if (wrong != 0)
        fail_msg("detection_hourly: %lld rows differ from a recount", (long long)wrong);
    if (store_query_int(db, &wrong,
                        "SELECT count(*) FROM detection_hourly s WHERE s.hour >= $1 AND NOT EXISTS"
                        " (SELECT 1 FROM detections d WHERE d.detected_at / 3600 = s.hour AND"
                        " d.agency_id = s.agency_id)",
                        "i", (now - 86400) / 3600) != STORE_ROW ||
        wrong != 0)
        fail_msg("detection_hourly: %lld extra rows", (long long)wrong);
}

json_t *tu_call_handler(struct srv *srv, struct store_db *db, int (*h)(struct srv_req *),
                        const struct srv_principal *who, const char *method, const char *param,
                        const char *query, const char *body, int strict, unsigned *status)
{
    struct srv_req *r = calloc(1, sizeof(*r));
    json_error_t e;
    assert_non_null(r);
    r->srv = srv;
    r->db = db;
    r->method = method;
    r->path = "/api/v1/test";
    r->params[0] = param;
    r->nparams = param != NULL;
    r->query_string = query;
    r->body = (const uint8_t *)body;
    r->body_len = body ? strlen(body) : 0;
    r->who = *who;
    snprintf(r->remote, sizeof(r->remote), "127.0.0.1");
    r->resp.fd = -1;
    int hr = h(r);
    if (strict)
        assert_int_equal(hr, 0);
    *status = r->resp.status;
    if (strict)
        assert_non_null(r->resp.body);
    json_t *j = r->resp.body ? json_loadb(r->resp.body, r->resp.body_len, 0, &e) : NULL;
    if (strict && j == NULL)
        fail_msg("bad response JSON: %.*s", (int)r->resp.body_len, r->resp.body);
    free(r->resp.body);
    for (unsigned i = 0; i < r->resp.nheaders; i++) {
        free(r->resp.headers[i].name);
        free(r->resp.headers[i].value);
    }
    free(r);
    return j;
}

void tu_principal_admin(struct srv_principal *p)
{
    memset(p, 0, sizeof(*p));
    p->role = SRV_ROLE_ADMIN;
    p->user_id = 1;
    snprintf(p->username, sizeof(p->username), "admin");
    snprintf(p->scope_path, sizeof(p->scope_path), "%%");
}

int tu_publisher_open(struct srv *srv, char *dir, struct store_db **db, unsigned keep, int postgres)
{
    char err[256] = "";
    const char *pg_url = NULL;
    if (postgres && (pg_url = tu_pg_private_url()) == NULL) {
        printf("SKIP: no PostgreSQL (KHIEN_PG_URL)\n");
        return -1;
    }
    snprintf(dir, 256, "%s", tu_mkdtemp());
    if ((*db = tu_store_open(dir, pg_url, 0)) == NULL) {
        printf("SKIP: the store is not available\n");
        tu_rmtree(dir);
        return -1;
    }
    snprintf(srv->cfg.data_dir, sizeof(srv->cfg.data_dir), "%s", dir);
    srv->cfg.keep_bundles = keep;
    assert_int_equal(srv_signer_init_dir(dir, err, sizeof(err)), 0);
    assert_int_equal(srv_signer_open(dir, &srv->signer, err, sizeof(err)), 0);
    return 0;
}

void tu_publisher_close(struct srv *srv, char *dir, struct store_db *db)
{
    srv_signer_free(srv->signer);
    srv->signer = NULL;
    store_close(db);
    tu_rmtree(dir);
}
