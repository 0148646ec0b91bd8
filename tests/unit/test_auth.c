/*
 * Authentication and the organisation tree (server/auth.c, api_auth.c,
 * api_agency.c, audit.c): password hashes, the formats of the secrets the
 * server hands out, and, against a real SQLite store, sign-in with its
 * cookie and CSRF token, API tokens, expired sessions, disabled accounts,
 * the sign-in lockout, the last-administrator rule, agent certificates, the
 * agency tree with its path rewriting and scope, and enrollment tokens.
 * Handlers are called directly with hand-built requests (no HTTP). Tests
 * that need the store skip when it cannot be opened.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "auth.h"
#include "khx.h"
#include "store/store.h"

#define ADMIN_PW   "correct horse battery"
#define OFFICER_PW "officer password 1"

struct fixture {
    char dir[512];
    struct srv srv;
    struct store_db *db;
    int64_t admin_id;
};

/* The PostgreSQL server to run the database tests against a second time
 * (KHIEN_PG_URL, e.g. from scripts/pg-throwaway), or NULL for SQLite. Each
 * test starts from an empty public schema there. */
static const char *pg_url;

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s", tu_mkdtemp());
    f->srv.cfg.session_ttl = 3600;
    f->srv.cfg.offline_after = 180;
    f->srv.cfg.checkin_interval = 60;
    snprintf(f->srv.cfg.public_url, sizeof(f->srv.cfg.public_url), "https://khien.test:8443");
    if ((f->db = tu_store_open(f->dir, pg_url, 0)) == NULL) {
        *state = f;
        return 0;
    }
    assert_int_equal(
        srv_user_create(f->db, "admin", "Admin", ADMIN_PW, SRV_ROLE_ADMIN, 0, &f->admin_id), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->db);
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

static struct fixture *need_db(void **state)
{
    struct fixture *f = *state;
    if (f->db == NULL) {
        printf("SKIP: store_open(%s) does not work in this build\n",
               pg_url ? "postgresql://..." : "sqlite://...");
        skip();
    }
    return f;
}

/* ------------------------------------------------------------------------ */
/* Hand-built requests.                                                      */
/* ------------------------------------------------------------------------ */

static void req_init(struct srv_req *r, struct fixture *f, const char *method, const char *path,
                     const char *body)
{
    memset(r, 0, sizeof(*r));
    r->srv = &f->srv;
    r->db = f->db;
    r->method = method;
    r->path = path;
    r->body = (const uint8_t *)body;
    r->body_len = body ? strlen(body) : 0;
    r->resp.fd = -1;
    snprintf(r->remote, sizeof(r->remote), "192.0.2.7");
}

static void req_done(struct srv_req *r)
{
    free(r->resp.body);
    for (unsigned i = 0; i < r->resp.nheaders; i++) {
        free(r->resp.headers[i].name);
        free(r->resp.headers[i].value);
    }
    memset(&r->resp, 0, sizeof(r->resp));
}

static json_t *resp_json(struct srv_req *r)
{
    json_error_t e;
    json_t *j;

    assert_non_null(r->resp.body);
    j = json_loadb(r->resp.body, r->resp.body_len, 0, &e);
    if (j == NULL)
        fail_msg("bad response JSON: %.*s", (int)r->resp.body_len, r->resp.body);
    return j;
}

static const char *resp_header(struct srv_req *r, const char *name)
{
    for (unsigned i = 0; i < r->resp.nheaders; i++)
        if (strcmp(r->resp.headers[i].name, name) == 0)
            return r->resp.headers[i].value;
    return NULL;
}

/* Acts as `username` with `role` and scope `scope` ("%" or "/1/4/%"). */
static void act_as(struct srv_req *r, int64_t user_id, const char *username, enum srv_role role,
                   const char *scope)
{
    r->who.user_id = user_id;
    r->who.role = role;
    snprintf(r->who.username, sizeof(r->who.username), "%s", username);
    snprintf(r->who.scope_path, sizeof(r->who.scope_path), "%s", scope);
}

struct session {
    char cookie[200]; /* "khien_session=khs_..." */
    char csrf[65];
};

/* Signs in through api_login and returns the HTTP status. */
static unsigned login(struct fixture *f, const char *user, const char *pw, struct session *s)
{
    struct srv_req r;
    char body[256];
    unsigned status;

    snprintf(body, sizeof(body), "{\"username\":\"%s\",\"password\":\"%s\"}", user, pw);
    req_init(&r, f, "POST", "/api/v1/login", body);
    assert_int_equal(api_login(&r), 0);
    status = r.resp.status;
    if (status == 200 && s != NULL) {
        const char *set = resp_header(&r, "Set-Cookie");
        json_t *j = resp_json(&r);
        assert_non_null(set);
        assert_non_null(strstr(set, "HttpOnly"));
        assert_non_null(strstr(set, "Secure"));
        assert_non_null(strstr(set, "SameSite=Strict"));
        assert_non_null(strstr(set, "Max-Age=3600"));
        snprintf(s->cookie, sizeof(s->cookie), "%.*s", (int)strcspn(set, ";"), set);
        snprintf(s->csrf, sizeof(s->csrf), "%s", json_string_value(json_object_get(j, "csrf")));
        assert_int_equal(strlen(s->csrf), 64);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(j, "user"), "username")), user);
        json_decref(j);
    }
    req_done(&r);
    return status;
}

/* Runs srv_auth_user on a request carrying the given headers. Returns the
 * result and leaves the status (0 on success) in *status. */
static int auth_with(struct fixture *f, const char *method, const char *const *headers,
                     struct srv_principal *who, unsigned *status)
{
    struct srv_req r;
    int rc;

    req_init(&r, f, method, "/api/v1/me", NULL);
    r.fake_headers = headers;
    rc = srv_auth_user(&r);
    *status = r.resp.status;
    if (who != NULL)
        *who = r.who;
    req_done(&r);
    return rc;
}

static int64_t count(struct store_db *db, const char *sql)
{
    int64_t n = -1;
    assert_int_equal(store_query_int(db, &n, sql, ""), STORE_ROW);
    return n;
}

/* Creates an agency through the handler and returns its id. */
static int64_t make_agency(struct fixture *f, const char *code, int64_t parent)
{
    struct srv_req r;
    char body[256];
    int64_t id;
    json_t *j;

    if (parent > 0)
        snprintf(body, sizeof(body),
                 "{\"code\":\"%s\",\"name\":\"Agency %s\",\"kind\":\"agency\",\"parent_id\":%lld}",
                 code, code, (long long)parent);
    else
        snprintf(body, sizeof(body),
                 "{\"code\":\"%s\",\"name\":\"Province\",\"kind\":\"province\"}", code);
    req_init(&r, f, "POST", "/api/v1/agencies", body);
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_agencies_create(&r), 0);
    assert_int_equal(r.resp.status, 201);
    j = resp_json(&r);
    id = json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    req_done(&r);
    return id;
}

static char *agency_path(struct fixture *f, int64_t id)
{
    char *p = NULL;
    assert_int_equal(
        store_query_text(f->db, &p, "SELECT path FROM agencies WHERE id = $1", "i", id), STORE_ROW);
    return p;
}

/* ------------------------------------------------------------------------ */
/* Without a database.                                                       */
/* ------------------------------------------------------------------------ */

static void password_hash_verifies_only_the_right_password(void **state)
{
    char h[128];
    (void)state;
    assert_int_equal(srv_password_hash("hunter2 hunter2", h), 0);
    assert_true(strncmp(h, "$argon2id$", 10) == 0);
    assert_int_equal(srv_password_verify(h, "hunter2 hunter2"), 1);
    assert_int_equal(srv_password_verify(h, "hunter2 hunter3"), 0);
    assert_int_equal(srv_password_verify(h, ""), 0);
    /* No stored hash (unknown user): never matches. */
    assert_int_equal(srv_password_verify(NULL, "hunter2 hunter2"), 0);
    assert_int_equal(srv_password_verify("", "hunter2 hunter2"), 0);
    assert_int_equal(srv_password_verify("$argon2id$garbage", "x"), 0);
}

static int all_hex(const char *s)
{
    return strspn(s, "0123456789abcdef") == strlen(s);
}

static void secrets_have_their_formats(void **state)
{
    char a[80], b[80], small[20], pw[17], u[37], d[65];
    (void)state;

    srv_random_token("kht_", a, sizeof(a));
    srv_random_token("kht_", b, sizeof(b));
    assert_int_equal(strlen(a), 68);
    assert_true(strncmp(a, "kht_", 4) == 0 && all_hex(a + 4));
    assert_string_not_equal(a, b);
    /* Too small a buffer gets an empty string, never a partial secret. */
    srv_random_token("kht_", small, sizeof(small));
    assert_string_equal(small, "");

    srv_random_password(pw, sizeof(pw));
    assert_int_equal(strlen(pw), 16);
    assert_true(strpbrk(pw, "0O1lI") == NULL);

    khx_uuid4(u);
    assert_int_equal(strlen(u), 36);
    assert_true(u[8] == '-' && u[13] == '-' && u[18] == '-' && u[23] == '-');
    assert_int_equal(u[14], '4');
    assert_non_null(strchr("89ab", u[19]));

    srv_sha256_hex("abc", d);
    assert_string_equal(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    assert_string_equal(srv_role_name(SRV_ROLE_OFFICER), "officer");
    assert_int_equal(srv_role_parse("auditor"), SRV_ROLE_AUDITOR);
    assert_int_equal(srv_role_parse("root"), SRV_ROLE_NONE);
}

/* ------------------------------------------------------------------------ */
/* Users, sessions, tokens.                                                  */
/* ------------------------------------------------------------------------ */

static void user_create_refuses_a_taken_name(void **state)
{
    struct fixture *f = need_db(state);
    int64_t id = 0;
    assert_int_equal(srv_user_create(f->db, "bob", "", "bob password 1", SRV_ROLE_AUDITOR, 0, &id),
                     0);
    assert_true(id > 0);
    assert_int_equal(srv_user_create(f->db, "bob", "", "other password", SRV_ROLE_AUDITOR, 0, &id),
                     STORE_ECONFLICT);
}

static void session_cookie_authenticates_and_writes_need_csrf(void **state)
{
    struct fixture *f = need_db(state);
    struct session s;
    struct srv_principal who;
    unsigned status;

    assert_int_equal(login(f, "admin", ADMIN_PW, &s), 200);
    const char *get[] = {"Cookie", s.cookie, NULL};
    assert_int_equal(auth_with(f, "GET", get, &who, &status), 0);
    assert_int_equal(who.user_id, f->admin_id);
    assert_int_equal(who.role, SRV_ROLE_ADMIN);
    assert_string_equal(who.username, "admin");
    assert_string_equal(who.scope_path, "%");
    assert_int_equal(who.via_api_token, 0);

    /* A write with the cookie alone is what a forged cross-site form sends. */
    assert_int_equal(auth_with(f, "POST", get, NULL, &status), -1);
    assert_int_equal(status, 403);
    const char *wrong[] = {"Cookie", s.cookie, "X-CSRF-Token", "0123", NULL};
    assert_int_equal(auth_with(f, "POST", wrong, NULL, &status), -1);
    assert_int_equal(status, 403);
    const char *post[] = {"Cookie", s.cookie, "X-CSRF-Token", s.csrf, NULL};
    assert_int_equal(auth_with(f, "POST", post, NULL, &status), 0);

    /* An unknown cookie and no credentials at all are 401. */
    const char *bogus[] = {"Cookie",
                           "khien_session=khs_000000000000000000000000000000000000000000000000000"
                           "0000000000000",
                           NULL};
    assert_int_equal(auth_with(f, "GET", bogus, NULL, &status), -1);
    assert_int_equal(status, 401);
    assert_int_equal(auth_with(f, "GET", NULL, NULL, &status), -1);
    assert_int_equal(status, 401);

    /* The database holds the session's hash, never the secret itself. */
    char *id = NULL;
    assert_int_equal(store_query_text(f->db, &id, "SELECT id FROM sessions", ""), STORE_ROW);
    assert_null(strstr(s.cookie, id));
    free(id);
    assert_true(count(f->db, "SELECT COUNT(*) FROM audit WHERE action = 'login'") >= 1);
}

static void expired_session_is_refused(void **state)
{
    struct fixture *f = need_db(state);
    struct session s;
    unsigned status;

    assert_int_equal(login(f, "admin", ADMIN_PW, &s), 200);
    const char *get[] = {"Cookie", s.cookie, NULL};
    assert_int_equal(auth_with(f, "GET", get, NULL, &status), 0);
    assert_int_equal(store_execf(f->db, NULL, "UPDATE sessions SET expires_at = $1", "i",
                                 (int64_t)srv_now() - 1),
                     0);
    assert_int_equal(auth_with(f, "GET", get, NULL, &status), -1);
    assert_int_equal(status, 401);
}

static void logout_ends_the_session(void **state)
{
    struct fixture *f = need_db(state);
    struct session s;
    struct srv_req r;
    unsigned status;

    assert_int_equal(login(f, "admin", ADMIN_PW, &s), 200);
    const char *hdr[] = {"Cookie", s.cookie, "X-CSRF-Token", s.csrf, NULL};
    req_init(&r, f, "POST", "/api/v1/logout", NULL);
    r.fake_headers = hdr;
    assert_int_equal(srv_auth_user(&r), 0);
    assert_int_equal(api_logout(&r), 0);
    assert_int_equal(r.resp.status, 204);
    assert_non_null(strstr(resp_header(&r, "Set-Cookie"), "Max-Age=0"));
    req_done(&r);
    assert_int_equal(auth_with(f, "GET", hdr, NULL, &status), -1);
    assert_int_equal(status, 401);
}

static void bearer_token_authenticates_until_revoked(void **state)
{
    struct fixture *f = need_db(state);
    struct srv_principal who;
    struct srv_req r;
    char bearer[100], path[32];
    unsigned status;
    json_t *j;

    req_init(&r, f, "POST", "/api/v1/tokens", "{\"name\":\"backup script\"}");
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_tokens_create(&r), 0);
    assert_int_equal(r.resp.status, 201);
    j = resp_json(&r);
    const char *tok = json_string_value(json_object_get(j, "token"));
    int64_t id = json_integer_value(json_object_get(j, "id"));
    assert_true(strncmp(tok, "kht_", 4) == 0 && strlen(tok) == 68);
    snprintf(bearer, sizeof(bearer), "Bearer %s", tok);
    json_decref(j);
    req_done(&r);

    /* No CSRF header is needed: a browser never sends this header on its own. */
    const char *hdr[] = {"Authorization", bearer, NULL};
    assert_int_equal(auth_with(f, "POST", hdr, &who, &status), 0);
    assert_int_equal(who.user_id, f->admin_id);
    assert_int_equal(who.via_api_token, 1);
    assert_true(count(f->db, "SELECT COUNT(*) FROM api_tokens WHERE last_used IS NOT NULL") == 1);

    /* The list shows the prefix, never the token. */
    req_init(&r, f, "GET", "/api/v1/tokens", NULL);
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_tokens_list(&r), 0);
    assert_int_equal(r.resp.status, 200);
    assert_null(strstr(r.resp.body, bearer + 7));
    assert_non_null(strstr(r.resp.body, "backup script"));
    req_done(&r);

    snprintf(path, sizeof(path), "%lld", (long long)id);
    req_init(&r, f, "DELETE", "/api/v1/tokens/x", NULL);
    r.params[0] = path;
    r.nparams = 1;
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_tokens_revoke(&r), 0);
    assert_int_equal(r.resp.status, 204);
    req_done(&r);
    assert_int_equal(auth_with(f, "GET", hdr, NULL, &status), -1);
    assert_int_equal(status, 401);

    const char *basic[] = {"Authorization", "Basic YWRtaW46eA==", NULL};
    assert_int_equal(auth_with(f, "GET", basic, NULL, &status), -1);
    assert_int_equal(status, 401);
}

static void disabled_user_is_refused(void **state)
{
    struct fixture *f = need_db(state);
    struct session s;
    unsigned status;
    int64_t id = 0;

    assert_int_equal(
        srv_user_create(f->db, "carol", "", "carol password", SRV_ROLE_AUDITOR, 0, &id), 0);
    assert_int_equal(login(f, "carol", "carol password", &s), 200);
    const char *get[] = {"Cookie", s.cookie, NULL};
    assert_int_equal(auth_with(f, "GET", get, NULL, &status), 0);
    assert_int_equal(
        store_execf(f->db, NULL, "UPDATE users SET disabled = 1 WHERE id = $1", "i", id), 0);
    assert_int_equal(auth_with(f, "GET", get, NULL, &status), -1);
    assert_int_equal(status, 401);
    /* And a disabled account cannot sign in again, even with its password. */
    assert_int_equal(login(f, "carol", "carol password", NULL), 401);
}

static void five_failures_lock_the_user_name(void **state)
{
    struct fixture *f = need_db(state);
    struct srv_req r;

    for (int i = 0; i < 5; i++)
        assert_int_equal(login(f, "admin", "wrong password", NULL), 401);
    /* Locked: even the right password is refused, with a Retry-After. */
    req_init(&r, f, "POST", "/api/v1/login",
             "{\"username\":\"admin\",\"password\":\"" ADMIN_PW "\"}");
    assert_int_equal(api_login(&r), 0);
    assert_int_equal(r.resp.status, 429);
    const char *ra = resp_header(&r, "Retry-After");
    assert_non_null(ra);
    assert_true(atoi(ra) > 0 && atoi(ra) <= 900);
    req_done(&r);
    assert_int_equal(count(f->db, "SELECT COUNT(*) FROM audit WHERE action = 'login.failed'"), 5);

    /* Once the lock has passed, the right password works and clears the count. */
    assert_int_equal(store_execf(f->db, NULL,
                                 "UPDATE login_attempts SET locked_until = 0, window_start = 0",
                                 ""),
                     0);
    assert_int_equal(login(f, "admin", ADMIN_PW, NULL), 200);
    assert_int_equal(count(f->db, "SELECT COUNT(*) FROM login_attempts WHERE key = 'user:admin'"),
                     0);
}

static void unknown_user_counts_against_the_address(void **state)
{
    struct fixture *f = need_db(state);
    char name[32];

    /* Twenty different names from one address: the address is locked. */
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "nobody%d", i);
        assert_int_equal(login(f, name, "whatever pw", NULL), 401);
    }
    assert_int_equal(login(f, "admin", ADMIN_PW, NULL), 429);
}

static void last_admin_cannot_be_demoted_or_disabled(void **state)
{
    struct fixture *f = need_db(state);
    struct srv_req r;
    char id[24];

    snprintf(id, sizeof(id), "%lld", (long long)f->admin_id);
    req_init(&r, f, "PATCH", "/api/v1/users/x", "{\"disabled\":true}");
    r.params[0] = id;
    r.nparams = 1;
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_users_update(&r), 0);
    assert_int_equal(r.resp.status, 409);
    req_done(&r);

    req_init(&r, f, "PATCH", "/api/v1/users/x", "{\"role\":\"auditor\"}");
    r.params[0] = id;
    r.nparams = 1;
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_users_update(&r), 0);
    assert_int_equal(r.resp.status, 409);
    req_done(&r);

    /* With a second administrator the first may step down. */
    assert_int_equal(
        srv_user_create(f->db, "admin2", "", "second admin pw", SRV_ROLE_ADMIN, 0, NULL), 0);
    req_init(&r, f, "PATCH", "/api/v1/users/x", "{\"role\":\"auditor\",\"display_name\":\"A\"}");
    r.params[0] = id;
    r.nparams = 1;
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_users_update(&r), 0);
    assert_int_equal(r.resp.status, 200);
    json_t *j = resp_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "role")), "auditor");
    json_decref(j);
    req_done(&r);
}

static void user_roles_and_agencies_must_agree(void **state)
{
    struct fixture *f = need_db(state);
    struct srv_req r;
    char body[256];
    int64_t prov = make_agency(f, "P", 0);

    /* An officer needs an agency; an admin must not have one. */
    req_init(&r, f, "POST", "/api/v1/users",
             "{\"username\":\"dan\",\"password\":\"dan password\",\"role\":\"officer\"}");
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_users_create(&r), 0);
    assert_int_equal(r.resp.status, 400);
    req_done(&r);

    snprintf(body, sizeof(body),
             "{\"username\":\"dan\",\"password\":\"dan password\",\"role\":\"admin\","
             "\"agency_id\":%lld}",
             (long long)prov);
    req_init(&r, f, "POST", "/api/v1/users", body);
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_users_create(&r), 0);
    assert_int_equal(r.resp.status, 400);
    req_done(&r);

    req_init(&r, f, "POST", "/api/v1/users",
             "{\"username\":\"dan\",\"password\":\"short\",\"role\":\"auditor\"}");
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_users_create(&r), 0);
    assert_int_equal(r.resp.status, 400);
    req_done(&r);

    snprintf(body, sizeof(body),
             "{\"username\":\"dan\",\"password\":\"dan password\",\"role\":\"officer\","
             "\"agency_id\":%lld}",
             (long long)prov);
    req_init(&r, f, "POST", "/api/v1/users", body);
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_users_create(&r), 0);
    assert_int_equal(r.resp.status, 201);
    req_done(&r);

    req_init(&r, f, "POST", "/api/v1/users", body);
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_users_create(&r), 0);
    assert_int_equal(r.resp.status, 409);
    req_done(&r);
    assert_int_equal(count(f->db, "SELECT COUNT(*) FROM audit WHERE action = 'user.create'"), 1);
}

/* ------------------------------------------------------------------------ */
/* Agencies, scope and enrollment tokens.                                    */
/* ------------------------------------------------------------------------ */

static void officer_scope_comes_from_the_agency_path(void **state)
{
    struct fixture *f = need_db(state);
    struct srv_principal who;
    struct session s;
    unsigned status;
    int64_t prov = make_agency(f, "P", 0);
    int64_t dept = make_agency(f, "D", prov);
    int64_t other = make_agency(f, "O", prov);
    char want[64];

    assert_int_equal(srv_user_create(f->db, "erin", "", OFFICER_PW, SRV_ROLE_OFFICER, dept, NULL),
                     0);
    assert_int_equal(login(f, "erin", OFFICER_PW, &s), 200);
    const char *get[] = {"Cookie", s.cookie, NULL};
    assert_int_equal(auth_with(f, "GET", get, &who, &status), 0);
    snprintf(want, sizeof(want), "/%lld/%lld/%%", (long long)prov, (long long)dept);
    assert_string_equal(who.scope_path, want);
    assert_int_equal(who.agency_id, dept);

    /* srv_agency_in_scope with that scope. */
    struct srv_req r;
    req_init(&r, f, "GET", "/", NULL);
    r.who = who;
    assert_true(srv_agency_in_scope(&r, dept));
    assert_false(srv_agency_in_scope(&r, prov));
    assert_false(srv_agency_in_scope(&r, other));
    assert_false(srv_agency_in_scope(&r, 999));

    /* The agency list shows only the subtree. */
    assert_int_equal(api_agencies_list(&r), 0);
    assert_int_equal(r.resp.status, 200);
    json_t *j = resp_json(&r);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 1);
    json_decref(j);
    req_done(&r);
}

static void moving_an_agency_rewrites_its_subtree(void **state)
{
    struct fixture *f = need_db(state);
    int64_t prov = make_agency(f, "P", 0);
    int64_t a = make_agency(f, "A", prov);
    int64_t b = make_agency(f, "B", prov);
    int64_t a1 = make_agency(f, "A1", a);
    int64_t a11 = make_agency(f, "A11", a1);
    struct srv_req r;
    char id[24], body[64], want[128];
    char *p;

    /* Move A under B: A, A1 and A11 all get B's prefix. */
    snprintf(id, sizeof(id), "%lld", (long long)a);
    snprintf(body, sizeof(body), "{\"parent_id\":%lld}", (long long)b);
    req_init(&r, f, "PATCH", "/api/v1/agencies/x", body);
    r.params[0] = id;
    r.nparams = 1;
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_agencies_update(&r), 0);
    assert_int_equal(r.resp.status, 200);
    req_done(&r);
    p = agency_path(f, a11);
    snprintf(want, sizeof(want), "/%lld/%lld/%lld/%lld/%lld/", (long long)prov, (long long)b,
             (long long)a, (long long)a1, (long long)a11);
    assert_string_equal(p, want);
    free(p);
    p = agency_path(f, b);
    snprintf(want, sizeof(want), "/%lld/%lld/", (long long)prov, (long long)b);
    assert_string_equal(p, want);
    free(p);

    /* The list walks the tree depth first: B, then A and its subtree. */
    req_init(&r, f, "GET", "/api/v1/agencies", NULL);
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_agencies_list(&r), 0);
    json_t *j = resp_json(&r), *items = json_object_get(j, "items");
    int64_t order[] = {prov, b, a, a1, a11};
    assert_int_equal(json_array_size(items), 5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(items, i), "id")),
                         order[i]);
    json_decref(j);
    req_done(&r);

    /* Moving A under its own grandchild would make a cycle. */
    snprintf(body, sizeof(body), "{\"parent_id\":%lld}", (long long)a11);
    req_init(&r, f, "PATCH", "/api/v1/agencies/x", body);
    r.params[0] = id;
    r.nparams = 1;
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_agencies_update(&r), 0);
    assert_int_equal(r.resp.status, 400);
    req_done(&r);

    /* A taken code is a conflict. */
    req_init(&r, f, "POST", "/api/v1/agencies", "{\"code\":\"A\",\"name\":\"x\"}");
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_agencies_create(&r), 0);
    assert_int_equal(r.resp.status, 409);
    req_done(&r);
}

static void agency_list_counts_machines(void **state)
{
    struct fixture *f = need_db(state);
    int64_t prov = make_agency(f, "P", 0);
    int64_t a = make_agency(f, "A", prov);
    int64_t now = srv_now();
    struct srv_req r;

    /* Two live machines (one online, one infected), one retired. */
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO machines (id, agency_id, enrolled_at, last_seen, "
                                 "retired) VALUES ('m1', $1, $2, $2, 0), ('m2', $1, $2, 0, 0),"
                                 " ('m3', $1, $2, $2, 1)",
                                 "ii", a, now),
                     0);
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO detections (event_id, machine_id, agency_id, "
                                 "signature, detected_at, received_at, status, status_at) VALUES "
                                 "('e1', 'm2', $1, 'Eicar', $2, $2, 'new', $2),"
                                 " ('e2', 'm2', $1, 'Eicar', $2, $2, 'acknowledged', $2),"
                                 " ('e3', 'm1', $1, 'Eicar', $2, $2, 'resolved', $2)",
                                 "ii", a, now),
                     0);
    /* Rows inserted by hand: set the per-machine open count that ingest.c
     * and the status workflow keep (migration 3). */
    assert_int_equal(
        store_execf(f->db, NULL, "UPDATE machines SET open_detections = 2 WHERE id = 'm2'", ""), 0);
    req_init(&r, f, "GET", "/api/v1/agencies", NULL);
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_agencies_list(&r), 0);
    assert_int_equal(r.resp.status, 200);
    json_t *j = resp_json(&r), *items = json_object_get(j, "items");
    assert_int_equal(json_array_size(items), 2);
    json_t *p = json_array_get(items, 0), *x = json_array_get(items, 1);
    /* Parents first. */
    assert_int_equal(json_integer_value(json_object_get(p, "id")), prov);
    assert_int_equal(json_integer_value(json_object_get(p, "machines")), 0);
    assert_int_equal(json_integer_value(json_object_get(x, "machines")), 2);
    assert_int_equal(json_integer_value(json_object_get(x, "online")), 1);
    assert_int_equal(json_integer_value(json_object_get(x, "infected")), 1);
    json_decref(j);
    req_done(&r);
}

static void enroll_tokens_are_scoped_and_shown_once(void **state)
{
    struct fixture *f = need_db(state);
    int64_t prov = make_agency(f, "P", 0);
    int64_t a = make_agency(f, "A", prov);
    int64_t b = make_agency(f, "B", prov);
    struct srv_req r;
    char ida[24], idb[24], scope[64], tid[24];
    json_t *j;

    snprintf(ida, sizeof(ida), "%lld", (long long)a);
    snprintf(idb, sizeof(idb), "%lld", (long long)b);
    snprintf(scope, sizeof(scope), "/%lld/%lld/%%", (long long)prov, (long long)a);
    int64_t officer = 0, other = 0;
    assert_int_equal(
        srv_user_create(f->db, "officer", "", OFFICER_PW, SRV_ROLE_OFFICER, a, &officer), 0);
    assert_int_equal(srv_user_create(f->db, "other", "", OFFICER_PW, SRV_ROLE_OFFICER, b, &other),
                     0);

    req_init(&r, f, "POST", "/api/v1/agencies/x/enroll-tokens", "{\"max_uses\":10}");
    r.params[0] = ida;
    r.nparams = 1;
    act_as(&r, officer, "officer", SRV_ROLE_OFFICER, scope);
    assert_int_equal(api_enroll_tokens_create(&r), 0);
    assert_int_equal(r.resp.status, 201);
    j = resp_json(&r);
    const char *tok = json_string_value(json_object_get(j, "token"));
    const char *cmd = json_string_value(json_object_get(j, "command"));
    assert_true(strncmp(tok, "khe_", 4) == 0 && strlen(tok) == 68);
    assert_non_null(strstr(cmd, "khien-agent enroll --server https://khien.test:8443 --token "));
    assert_non_null(strstr(cmd, tok));
    snprintf(tid, sizeof(tid), "%lld", (long long)json_integer_value(json_object_get(j, "id")));
    char secret[80];
    snprintf(secret, sizeof(secret), "%s", tok);
    json_decref(j);
    req_done(&r);

    /* Another agency outside the officer's subtree does not exist for them. */
    req_init(&r, f, "POST", "/api/v1/agencies/x/enroll-tokens", "{}");
    r.params[0] = idb;
    r.nparams = 1;
    act_as(&r, officer, "officer", SRV_ROLE_OFFICER, scope);
    assert_int_equal(api_enroll_tokens_create(&r), 0);
    assert_int_equal(r.resp.status, 404);
    req_done(&r);

    /* The list never carries the secret. */
    req_init(&r, f, "GET", "/api/v1/agencies/x/enroll-tokens", NULL);
    r.params[0] = ida;
    r.nparams = 1;
    act_as(&r, officer, "officer", SRV_ROLE_OFFICER, scope);
    assert_int_equal(api_enroll_tokens_list(&r), 0);
    assert_int_equal(r.resp.status, 200);
    assert_null(strstr(r.resp.body, secret + 12));
    j = resp_json(&r);
    json_t *t = json_array_get(json_object_get(j, "items"), 0);
    assert_true(json_is_true(json_object_get(t, "active")));
    assert_int_equal(json_integer_value(json_object_get(t, "max_uses")), 10);
    json_decref(j);
    req_done(&r);

    /* Revoking from outside the scope is 404; from inside it works. */
    char other_scope[64];
    snprintf(other_scope, sizeof(other_scope), "/%lld/%lld/%%", (long long)prov, (long long)b);
    req_init(&r, f, "DELETE", "/api/v1/enroll-tokens/x", NULL);
    r.params[0] = tid;
    r.nparams = 1;
    act_as(&r, other, "other", SRV_ROLE_OFFICER, other_scope);
    assert_int_equal(api_enroll_tokens_revoke(&r), 0);
    assert_int_equal(r.resp.status, 404);
    req_done(&r);
    req_init(&r, f, "DELETE", "/api/v1/enroll-tokens/x", NULL);
    r.params[0] = tid;
    r.nparams = 1;
    act_as(&r, officer, "officer", SRV_ROLE_OFFICER, scope);
    assert_int_equal(api_enroll_tokens_revoke(&r), 0);
    assert_int_equal(r.resp.status, 204);
    req_done(&r);
    assert_int_equal(count(f->db, "SELECT revoked FROM enroll_tokens"), 1);
}

static void audit_list_filters_and_officers_see_their_own(void **state)
{
    struct fixture *f = need_db(state);
    struct srv_req r;
    json_t *j;

    req_init(&r, f, "POST", "/", NULL);
    act_as(&r, 5, "officer1", SRV_ROLE_OFFICER, "%");
    srv_audit(&r, "machine.retire", "machine:abc", json_pack("{s:i}", "n", 1));
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    srv_audit(&r, "user.create", "user:50%_off", NULL);
    req_done(&r);

    req_init(&r, f, "GET", "/api/v1/audit", NULL);
    r.query_string = "q=50%25_";
    act_as(&r, f->admin_id, "admin", SRV_ROLE_ADMIN, "%");
    assert_int_equal(api_audit_list(&r), 0);
    assert_int_equal(r.resp.status, 200);
    j = resp_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 1);
    json_decref(j);
    req_done(&r);

    req_init(&r, f, "GET", "/api/v1/audit", NULL);
    act_as(&r, 5, "officer1", SRV_ROLE_OFFICER, "%");
    assert_int_equal(api_audit_list(&r), 0);
    j = resp_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 1);
    json_t *e = json_array_get(json_object_get(j, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(e, "action")), "machine.retire");
    assert_string_equal(json_string_value(json_object_get(e, "remote")), "192.0.2.7");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(e, "detail"), "n")), 1);
    json_decref(j);
    req_done(&r);
}

static void agent_certificate_must_be_current_and_live(void **state)
{
    struct fixture *f = need_db(state);
    int64_t prov = make_agency(f, "P", 0);
    struct srv_req r;
    const char *sha = "aa00000000000000000000000000000000000000000000000000000000000000";

    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO machines (id, agency_id, enrolled_at, cert_sha256) "
                                 "VALUES ('m1', $1, 0, $2)",
                                 "it", prov, sha),
                     0);
    req_init(&r, f, "POST", "/api/v1/agent/checkin", NULL);
    assert_int_equal(srv_auth_agent(&r), -1); /* no certificate */
    assert_int_equal(r.resp.status, 401);
    req_done(&r);

    req_init(&r, f, "POST", "/api/v1/agent/checkin", NULL);
    r.client_cert_ok = 1;
    snprintf(r.client_cn, sizeof(r.client_cn), "m1");
    snprintf(r.client_cert_sha256, sizeof(r.client_cert_sha256), "%s", sha);
    assert_int_equal(srv_auth_agent(&r), 0);
    assert_string_equal(r.who.machine_id, "m1");
    req_done(&r);

    /* A superseded certificate (re-enrollment issued another). */
    req_init(&r, f, "POST", "/api/v1/agent/checkin", NULL);
    r.client_cert_ok = 1;
    snprintf(r.client_cn, sizeof(r.client_cn), "m1");
    snprintf(r.client_cert_sha256, sizeof(r.client_cert_sha256), "bb%s", sha + 2);
    assert_int_equal(srv_auth_agent(&r), -1);
    assert_int_equal(r.resp.status, 401);
    req_done(&r);

    assert_int_equal(store_execf(f->db, NULL, "UPDATE machines SET retired = 1", ""), 0);
    req_init(&r, f, "POST", "/api/v1/agent/checkin", NULL);
    r.client_cert_ok = 1;
    snprintf(r.client_cn, sizeof(r.client_cn), "m1");
    snprintf(r.client_cert_sha256, sizeof(r.client_cert_sha256), "%s", sha);
    assert_int_equal(srv_auth_agent(&r), -1);
    assert_int_equal(r.resp.status, 403);
    req_done(&r);
}

int main(void)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(password_hash_verifies_only_the_right_password),
        cmocka_unit_test(secrets_have_their_formats),
    };
    const struct CMUnitTest with_store[] = {
        cmocka_unit_test_setup_teardown(user_create_refuses_a_taken_name, setup, teardown),
        cmocka_unit_test_setup_teardown(session_cookie_authenticates_and_writes_need_csrf, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(expired_session_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(logout_ends_the_session, setup, teardown),
        cmocka_unit_test_setup_teardown(bearer_token_authenticates_until_revoked, setup, teardown),
        cmocka_unit_test_setup_teardown(disabled_user_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(five_failures_lock_the_user_name, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_user_counts_against_the_address, setup, teardown),
        cmocka_unit_test_setup_teardown(last_admin_cannot_be_demoted_or_disabled, setup, teardown),
        cmocka_unit_test_setup_teardown(user_roles_and_agencies_must_agree, setup, teardown),
        cmocka_unit_test_setup_teardown(officer_scope_comes_from_the_agency_path, setup, teardown),
        cmocka_unit_test_setup_teardown(moving_an_agency_rewrites_its_subtree, setup, teardown),
        cmocka_unit_test_setup_teardown(agency_list_counts_machines, setup, teardown),
        cmocka_unit_test_setup_teardown(enroll_tokens_are_scoped_and_shown_once, setup, teardown),
        cmocka_unit_test_setup_teardown(audit_list_filters_and_officers_see_their_own, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(agent_certificate_must_be_current_and_live, setup,
                                        teardown),
    };
    int failed = cmocka_run_group_tests(plain, NULL, NULL);

    failed += cmocka_run_group_tests_name("sqlite", with_store, NULL, NULL);
    pg_url = tu_pg_private_url();
    if (pg_url != NULL)
        failed += cmocka_run_group_tests_name("postgresql", with_store, NULL, NULL);
    else
        printf("SKIP: the PostgreSQL run needs KHIEN_PG_URL (scripts/pg-throwaway start DIR)\n");
    return failed;
}
