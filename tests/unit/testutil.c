/* Helpers for the unit tests; see testutil.h. */
#include "testutil.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "bundle.h"
#include "client.h"
#include "khx.h"
#include "server.h"
#include "store/store.h"

extern char **environ;

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

int64_t tu_add_agency(struct store_db *db, int64_t parent, const char *code, const char *name,
                      int64_t now)
{
    int64_t id = 0;
    char *parent_path = NULL, path[256];

    if (parent != 0)
        assert_int_equal(store_query_text(db, &parent_path,
                                          "SELECT path FROM agencies WHERE id = $1", "i", parent),
                         STORE_ROW);
    assert_int_equal(store_query_int(db, &id,
                                     "INSERT INTO agencies (parent_id, code, name, created_at)"
                                     " VALUES (CASE WHEN $1 = 0 THEN NULL ELSE $1 END, $2, $3, $4)"
                                     " RETURNING id",
                                     "itti", parent, code, name != NULL ? name : code, now),
                     STORE_ROW);
    snprintf(path, sizeof(path), "%s%" PRId64 "/", parent_path != NULL ? parent_path : "/", id);
    free(parent_path);
    assert_int_equal(
        store_execf(db, NULL, "UPDATE agencies SET path = $1 WHERE id = $2", "ti", path, id), 0);
    return id;
}

void tu_add_person(struct store_db *db, struct srv_principal *who, const char *name, int role,
                   int64_t agency, int64_t now)
{
    static const char *const roles[] = {"", "auditor", "officer", "admin"};
    char *path = NULL;
    int64_t id = 0;

    assert_true(role >= SRV_ROLE_AUDITOR && role <= SRV_ROLE_ADMIN);
    if (agency != 0)
        assert_int_equal(
            store_query_text(db, &path, "SELECT path FROM agencies WHERE id = $1", "i", agency),
            STORE_ROW);
    assert_int_equal(store_query_int(db, &id,
                                     "INSERT INTO users (username, password_hash, role, agency_id,"
                                     " created_at) VALUES ($1, 'x', $2,"
                                     " CASE WHEN $3 = 0 THEN NULL ELSE $3 END, $4) RETURNING id",
                                     "ttii", name, roles[role], agency, now),
                     STORE_ROW);
    memset(who, 0, sizeof(*who));
    who->role = (enum srv_role)role;
    who->user_id = id;
    who->agency_id = agency;
    snprintf(who->username, sizeof(who->username), "%s", name);
    snprintf(who->scope_path, sizeof(who->scope_path), "%s%%", path != NULL ? path : "");
    free(path);
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

/* ------------------------------------------------------------------------ */
/* A real `khien server` for the tests that talk HTTPS to it.                */
/* ------------------------------------------------------------------------ */

int tu_free_port(void)
{
    /* Bind to port 0 and ask which one we got. */
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* Runs argv with stdout and stderr to `out`; returns the child's pid. */
static pid_t spawn(char *const argv[], const char *out)
{
    posix_spawn_file_actions_t fa;
    pid_t pid = -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

static void print_file(const char *path)
{
    uint8_t *text = NULL;
    size_t len = 0;
    if (khx_read_file(path, 64 * 1024, &text, &len) == KH_OK)
        fprintf(stderr, "--- %s ---\n%s\n---\n", path, (char *)text);
    free(text);
}

void tu_server_print_log(const struct tu_server *s)
{
    char log[400];
    snprintf(log, sizeof(log), "%s/server.log", s->tmp);
    print_file(log);
}

static size_t collect(char *data, size_t size, size_t nmemb, void *ud)
{
    return khx_buf_append(ud, data, size * nmemb) == KH_OK ? size * nmemb : 0;
}

long tu_admin_call(struct tu_server *s, const char *method, const char *path, const char *ctype,
                   const char *body, json_t **out)
{
    struct khx_buf b;
    struct curl_slist *h = NULL;
    char url[512], hdr[200];
    long status = 0;

    khx_buf_init(&b, 1u << 20);
    snprintf(url, sizeof(url), "%s/api/v1%s", s->url, path);
    if (ctype != NULL) {
        snprintf(hdr, sizeof(hdr), "Content-Type: %s", ctype);
        h = curl_slist_append(h, hdr);
    }
    if (s->csrf[0] != '\0') {
        snprintf(hdr, sizeof(hdr), "X-CSRF-Token: %s", s->csrf);
        h = curl_slist_append(h, hdr);
    }
    CURL *c = s->admin;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (body != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    else
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    if (out != NULL)
        *out = b.len > 0 ? json_loadb((const char *)b.data, b.len, 0, NULL) : NULL;
    khx_buf_free(&b);
    return status;
}

int tu_json_field(json_t *obj, const char *key, char *dst, size_t cap)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        snprintf(dst, cap, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(dst, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        return -1;
    return 0;
}

int tu_admin_agency(struct tu_server *s, const char *code, const char *name, char *id, size_t cap)
{
    json_t *j = NULL;
    json_t *body = json_pack("{s:s,s:s,s:s}", "code", code, "name", name, "kind", "department");
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    int ok = text != NULL &&
             tu_admin_call(s, "POST", "/agencies", "application/json", text, &j) / 100 == 2 &&
             tu_json_field(j, "id", id, cap) == 0;
    if (!ok)
        snprintf(s->why, sizeof(s->why), "creating an agency failed");
    json_decref(j);
    json_decref(body);
    free(text);
    return ok ? 0 : -1;
}

int tu_admin_token(struct tu_server *s, const char *agency_id, const char *body, char *token,
                   size_t cap, char *token_id, size_t idcap)
{
    json_t *j = NULL;
    char path[128];
    snprintf(path, sizeof(path), "/agencies/%s/enroll-tokens", agency_id);
    int ok = tu_admin_call(s, "POST", path, "application/json", body, &j) / 100 == 2 &&
             tu_json_field(j, "token", token, cap) == 0 &&
             (token_id == NULL || tu_json_field(j, "id", token_id, idcap) == 0);
    if (!ok)
        snprintf(s->why, sizeof(s->why), "creating an enrollment token failed");
    json_decref(j);
    return ok ? 0 : -1;
}

long tu_admin_upload(struct tu_server *s, const char *kind, const char *name, const char *data)
{
    char path[256];
    snprintf(path, sizeof(path), "/signatures/sources/upload?kind=%s&name=%s", kind, name);
    return tu_admin_call(s, "PUT", path, "application/octet-stream", data, NULL);
}

int64_t tu_admin_publish(struct tu_server *s)
{
    json_t *j = NULL;
    char version[32] = "";
    int ok = tu_admin_call(s, "POST", "/signatures/publish", "application/json", "{}", &j) == 200 &&
             tu_json_field(j, "version", version, sizeof(version)) == 0;
    json_decref(j);
    return ok ? strtoll(version, NULL, 10) : -1;
}

/* Logs in as the administrator: the session cookie stays in s->admin. */
static int admin_login(struct tu_server *s)
{
    json_t *j = NULL, *body = NULL;
    char *text = NULL;
    int ok = -1;

    s->admin = curl_easy_init();
    curl_easy_setopt(s->admin, CURLOPT_CAINFO, s->ca);
    curl_easy_setopt(s->admin, CURLOPT_COOKIEFILE, ""); /* the cookie engine, in memory */
    curl_easy_setopt(s->admin, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->admin, CURLOPT_TIMEOUT, 30L);

    body = json_pack("{s:s,s:s}", "username", "admin", "password", s->password);
    text = json_dumps(body, JSON_COMPACT);
    if (tu_admin_call(s, "POST", "/login", "application/json", text, &j) != 200 ||
        tu_json_field(j, "csrf", s->csrf, sizeof(s->csrf)) != 0) {
        snprintf(s->why, sizeof(s->why), "administrator login failed");
        goto out;
    }
    ok = 0;
out:
    json_decref(j);
    json_decref(body);
    free(text);
    return ok;
}

/* Waits until /health answers 200 (or the server dies). */
static int wait_healthy(struct tu_server *s)
{
    struct client_opts o = {.server = s->url, .ca_file = s->ca, .timeout_s = 5};
    struct client *c = NULL;
    int ok = -1;
    if (client_new(&o, &c, NULL, 0) != KH_OK)
        return -1;
    for (int i = 0; i < 300; i++) {
        struct client_resp resp;
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = -1;
            break;
        }
        if (client_call(c, "GET", "/health", NULL, 0, 0, &resp) == KH_OK && resp.status == 200) {
            client_resp_free(&resp);
            ok = 0;
            break;
        }
        client_resp_free(&resp);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    client_free(c);
    return ok;
}

int tu_server_start(struct tu_server *s)
{
    char bin[PATH_MAX], out[400], log[400], listen[64], line[256];
    const char *dir = getenv("KHIEN_BIN");

    memset(s, 0, sizeof(*s));
    s->pid = -1;
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    snprintf(bin, sizeof(bin), "%s/khien", dir != NULL ? dir : "bin");
    if (access(bin, X_OK) != 0) {
        if (snprintf(s->why, sizeof(s->why), "%s is not built (target khien-cli)", bin) < 0)
            s->why[0] = '\0';
        return 0;
    }
    snprintf(s->tmp, sizeof(s->tmp), "%s", tu_mkdtemp());
    snprintf(s->data, sizeof(s->data), "%s/data", s->tmp);
    snprintf(s->ca, sizeof(s->ca), "%s/ca.crt", s->data);
    snprintf(out, sizeof(out), "%s/init.out", s->tmp);
    snprintf(log, sizeof(log), "%s/server.log", s->tmp);

    /* A free port may be taken between finding it and the server binding
     * it: a few tries. */
    for (int attempt = 0; attempt < 5 && !s->up; attempt++) {
        int port = tu_free_port(), status = 0;
        if (port <= 0)
            continue;
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        snprintf(s->url, sizeof(s->url), "https://127.0.0.1:%d", port);
        if (attempt == 0) {
            char *init[] = {bin, "server", "init", "--data", s->data, "--listen", listen, NULL};
            pid_t pid = spawn(init, out);
            if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
                WEXITSTATUS(status) != 0) {
                print_file(out);
                snprintf(s->why, sizeof(s->why), "khien server init failed");
                return -1;
            }
            FILE *f = fopen(out, "r");
            while (f != NULL && fgets(line, sizeof(line), f) != NULL)
                if (sscanf(line, "admin password: %127s", s->password) == 1)
                    break;
            if (f != NULL)
                fclose(f);
            if (s->password[0] == '\0') {
                print_file(out);
                return -1;
            }
        }
        char *run[] = {bin, "server", "run", "--data", s->data, "--listen", listen, NULL};
        if ((s->pid = spawn(run, log)) < 0)
            return -1;
        if (wait_healthy(s) == 0) {
            s->up = 1;
            break;
        }
        if (s->pid > 0) {
            kill(s->pid, SIGTERM);
            waitpid(s->pid, NULL, 0);
            s->pid = -1;
        }
    }
    if (!s->up) {
        print_file(log);
        return -1;
    }
    if (admin_login(s) != 0) {
        s->up = 0;
        fprintf(stderr, "%s\n", s->why);
        print_file(log);
        return -1;
    }
    return 0;
}

void tu_server_stop(struct tu_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = -1;
    }
    if (s->admin != NULL)
        curl_easy_cleanup(s->admin);
    s->admin = NULL;
    if (s->tmp[0] != '\0')
        tu_rmtree(s->tmp);
    s->tmp[0] = '\0';
    s->up = 0;
    curl_global_cleanup();
}
