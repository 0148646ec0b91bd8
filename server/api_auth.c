/*
 * The people side of the API: signing in and out, the caller's own account
 * and password, user administration and personal API tokens. Reading the
 * audit log (api_audit_list) is in audit.c, beside the writing. See
 * docs/api/README.md for the contract and docs/api/dashboard.md for
 * examples; auth.c has the checks that run before these handlers.
 *
 * Sign-in is rate limited in the shared login_attempts table so that every
 * server process sees the same counts: 5 failures for one user name or 20
 * from one address within 15 minutes lock that name or address for 15
 * minutes. Every change of state is written to the audit log.
 */
#include "api.h"
#include "auth.h"
#include "query.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define LOGIN_WINDOW     (15 * 60) /* seconds over which failures are counted */
#define LOGIN_LOCK       (15 * 60) /* how long a name or address stays locked */
#define LOGIN_USER_LIMIT 5
#define LOGIN_IP_LIMIT   20

#define USERNAME_MAX     63 /* fits srv_principal.username */
#define DISPLAY_NAME_MAX 128
#define PASSWORD_MIN     10
#define PASSWORD_MAX     1024
#define TOKEN_NAME_MAX   64
#define TOKENS_PER_USER  100 /* live API tokens one user may hold */

/* ------------------------------------------------------------------------ */
/* Small helpers for request fields and replies.                             */
/* ------------------------------------------------------------------------ */

static int valid_username(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-' || *s == '@'))
            return 0;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Users as JSON.                                                            */
/* ------------------------------------------------------------------------ */

#define USER_SELECT                                                                                \
    "SELECT u.id, u.username, u.display_name, u.role, u.agency_id, a.code, a.name,"                \
    " u.disabled, u.created_at, u.last_login"                                                      \
    " FROM users u LEFT JOIN agencies a ON a.id = u.agency_id"

static json_t *user_json(struct store_stmt *st)
{
    json_t *agency = json_null();
    const char *s;

    if (!store_col_is_null(st, 4) && store_col_int(st, 4) > 0) {
        s = store_col_text(st, 5);
        const char *n = store_col_text(st, 6);
        agency = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)store_col_int(st, 4), "code",
                           s ? s : "", "name", n ? n : "");
    }
    s = store_col_text(st, 2);
    json_t *o = json_pack(
        "{s:I, s:s, s:s, s:s, s:o, s:b, s:I}", "id", (json_int_t)store_col_int(st, 0), "username",
        store_col_text(st, 1) ? store_col_text(st, 1) : "", "display_name", s ? s : "", "role",
        store_col_text(st, 3) ? store_col_text(st, 3) : "", "agency", agency, "disabled",
        store_col_int(st, 7) != 0, "created_at", (json_int_t)store_col_int(st, 8));
    if (o != NULL)
        json_object_set_new(o, "last_login",
                            store_col_is_null(st, 9) ? json_null()
                                                     : json_integer(store_col_int(st, 9)));
    return o;
}

/* Loads one user as JSON. Returns STORE_ROW with *out set, STORE_DONE when
 * there is no such user, or a negative store code. */
static int load_user(struct store_db *db, int64_t id, json_t **out)
{
    struct store_stmt *st = NULL;
    int s = store_queryf(db, &st, USER_SELECT " WHERE u.id = $1", "i", id);

    if (s == STORE_ROW) {
        *out = user_json(st);
        if (*out == NULL)
            s = STORE_ENOMEM;
    }
    store_finalize(st);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Sign-in rate limiting.                                                    */
/* ------------------------------------------------------------------------ */

/* Seconds until `key` may try again (0 when it is not locked), or < 0. */
int64_t srv_attempt_locked_for(struct store_db *db, const char *key, int64_t now)
{
    int64_t until = 0;
    int s = store_query_int(db, &until, "SELECT locked_until FROM login_attempts WHERE key = $1",
                            "t", key);

    if (s < 0)
        return s;
    return until > now ? until - now : 0;
}

/* Counts one failure for `key` and locks it when `limit` failures fall in
 * one window. One upsert, so concurrent failures from several server
 * processes are all counted. */
int srv_attempt_failed(struct store_db *db, const char *key, int64_t limit, int64_t now)
{
    static const char sql[] =
        "INSERT INTO login_attempts (key, failures, window_start, locked_until)"
        " VALUES ($1, 1, $2, 0) ON CONFLICT (key) DO UPDATE SET"
        " failures = CASE WHEN login_attempts.window_start <= $3 THEN 1"
        " ELSE login_attempts.failures + 1 END,"
        " window_start = CASE WHEN login_attempts.window_start <= $3 THEN $2"
        " ELSE login_attempts.window_start END"
        " RETURNING failures";
    int64_t failures = 0;
    int s = store_query_int(db, &failures, sql, "tii", key, now, now - LOGIN_WINDOW);

    if (s < 0)
        return s;
    if (failures >= limit)
        s = store_execf(db, NULL, "UPDATE login_attempts SET locked_until = $1 WHERE key = $2",
                        "it", now + LOGIN_LOCK, key);
    return s < 0 ? s : 0;
}

static int reply_locked(struct srv_req *r, int64_t wait)
{
    char secs[24];

    snprintf(secs, sizeof(secs), "%" PRId64, wait);
    srv_reply_error(r, 429, "rate_limited",
                    "too many failed sign-ins; try again in %" PRId64 " minutes", (wait + 59) / 60);
    srv_add_header(r, "Retry-After", secs);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Sessions.                                                                 */
/* ------------------------------------------------------------------------ */

static unsigned session_ttl(struct srv_req *r)
{
    unsigned ttl = r->srv ? r->srv->cfg.session_ttl : 0;

    return ttl ? ttl : 8 * 3600;
}

/* Creates a session for `user_id`: its secret goes to token[80] (for the
 * cookie) and its CSRF token to csrf[65]. Returns 0 or a negative store code. */
static int session_start(struct srv_req *r, int64_t user_id, char token[80], char csrf[65])
{
    char hash[65];
    int64_t now = srv_now();
    int s;

    srv_random_token("khs_", token, 80);
    srv_random_token("", csrf, 65);
    srv_sha256_hex(token, hash);
    /* Expired sessions and stale failure counts of anyone are cleared here,
     * on the rare path, so neither table grows without a background job
     * (failed sign-ins with made-up names each leave a row). */
    s = store_execf(r->db, NULL, "DELETE FROM sessions WHERE expires_at <= $1", "i", now);
    if (s >= 0)
        s = store_execf(
            r->db, NULL,
            "DELETE FROM login_attempts WHERE window_start <= $1 AND locked_until <= $2", "ii",
            now - LOGIN_WINDOW, now);
    if (s < 0)
        return s;
    s = store_execf(r->db, NULL,
                    "INSERT INTO sessions (id, user_id, csrf, remote, created_at, expires_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6)",
                    "titiii", hash, user_id, csrf, r->remote, now, now + (int64_t)session_ttl(r));
    return s < 0 ? s : 0;
}

/* Sets the session cookie on the response (after the reply is built:
 * replies keep headers added before or after them). */
static void session_cookie(struct srv_req *r, const char *token)
{
    char cookie[200];

    snprintf(cookie, sizeof(cookie),
             SRV_SESSION_COOKIE "=%s; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=%u", token,
             session_ttl(r));
    srv_add_header(r, "Set-Cookie", cookie);
    sodium_memzero(cookie, sizeof(cookie));
}

/* The SHA-256 of the caller's session cookie, or "" when the caller used an
 * API token or has no cookie. */
static void current_session(struct srv_req *r, char hash[65])
{
    const char *cookie = r->who.via_api_token ? NULL : srv_cookie(r, SRV_SESSION_COOKIE);

    hash[0] = '\0';
    if (cookie != NULL && cookie[0] != '\0')
        srv_sha256_hex(cookie, hash);
}

/* ------------------------------------------------------------------------ */
/* POST /login, POST /logout, GET /me, POST /me/password                     */
/* ------------------------------------------------------------------------ */

int api_login(struct srv_req *r)
{
    json_t *body = srv_body_json(r), *user = NULL;
    struct store_stmt *st = NULL;
    const char *username = NULL, *password = NULL;
    char ukey[80], ikey[80], csrf[65] = "", token[80] = "";
    char *hash = NULL;
    int64_t now = srv_now(), wait_u, wait_i, user_id = 0, disabled = 0;
    int s, ok;

    if (body == NULL)
        return 0;
    if (srv_json_str(r, body, "username", 1, USERNAME_MAX, &username) < 0 ||
        srv_json_str(r, body, "password", 1, PASSWORD_MAX, &password) < 0)
        goto out;
    snprintf(ukey, sizeof(ukey), "user:%s", username);
    snprintf(ikey, sizeof(ikey), "ip:%s", r->remote);

    /* A locked name or address is refused before its password is checked, so
     * guessing cannot continue while locked and costs us no hashing. */
    wait_u = srv_attempt_locked_for(r->db, ukey, now);
    wait_i = srv_attempt_locked_for(r->db, ikey, now);
    if (wait_u < 0 || wait_i < 0) {
        srv_reply_store_error(r, (int)(wait_u < 0 ? wait_u : wait_i));
        goto out;
    }
    if (wait_u > 0 || wait_i > 0) {
        reply_locked(r, wait_u > wait_i ? wait_u : wait_i);
        goto out;
    }

    s = store_queryf(r->db, &st,
                     "SELECT id, password_hash, disabled FROM users WHERE username = $1", "t",
                     username);
    if (s < 0) {
        srv_reply_store_error(r, s);
        goto out;
    }
    if (s == STORE_ROW) {
        user_id = store_col_int(st, 0);
        hash = strdup(store_col_text(st, 1) ? store_col_text(st, 1) : "");
        disabled = store_col_int(st, 2);
        if (hash == NULL) {
            srv_reply_store_error(r, STORE_ENOMEM);
            goto out;
        }
    }
    store_finalize(st);
    st = NULL;
    /* An unknown user is checked against a dummy hash (hash NULL) so that the
     * answer takes as long as for a known one. */
    ok = srv_password_verify(hash, password);

    if (!ok || disabled) {
        if ((s = srv_attempt_failed(r->db, ukey, LOGIN_USER_LIMIT, now)) < 0 ||
            (s = srv_attempt_failed(r->db, ikey, LOGIN_IP_LIMIT, now)) < 0) {
            srv_reply_store_error(r, s);
            goto out;
        }
        srv_audit(r, "login.failed", ukey,
                  json_pack("{s:s}", "reason",
                            user_id == 0 ? "unknown user"
                                         : (!ok ? "wrong password" : "account disabled")));
        srv_reply_error(r, 401, "unauthorized", "wrong user name or password");
        goto out;
    }

    if ((s = store_execf(r->db, NULL, "DELETE FROM login_attempts WHERE key = $1", "t", ukey)) <
            0 ||
        (s = session_start(r, user_id, token, csrf)) < 0 ||
        (s = store_execf(r->db, NULL, "UPDATE users SET last_login = $1 WHERE id = $2", "ii", now,
                         user_id)) < 0 ||
        (s = load_user(r->db, user_id, &user)) < 0) {
        srv_reply_store_error(r, s);
        goto out;
    }
    if (s != STORE_ROW) {
        srv_reply_error(r, 401, "unauthorized", "wrong user name or password");
        goto out;
    }
    r->who.user_id = user_id;
    snprintf(r->who.username, sizeof(r->who.username), "%s", username);
    srv_audit(r, "login", ukey, NULL);
    srv_reply_json(r, 200, json_pack("{s:o, s:s}", "user", user, "csrf", csrf));
    user = NULL;
    session_cookie(r, token);
out:
    store_finalize(st);
    if (hash != NULL) {
        sodium_memzero(hash, strlen(hash));
        free(hash);
    }
    sodium_memzero(csrf, sizeof(csrf));
    sodium_memzero(token, sizeof(token));
    json_decref(user);
    json_decref(body);
    return 0;
}

int api_logout(struct srv_req *r)
{
    char hash[65];
    int s;

    current_session(r, hash);
    if (hash[0] != '\0') {
        s = store_execf(r->db, NULL, "DELETE FROM sessions WHERE id = $1", "t", hash);
        if (s < 0)
            return srv_reply_store_error(r, s);
    }
    srv_audit(r, "logout", "", NULL);
    srv_reply_status(r, 204);
    srv_add_header(r, "Set-Cookie",
                   SRV_SESSION_COOKIE "=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    return 0;
}

int api_me(struct srv_req *r)
{
    json_t *user = NULL;
    char hash[65], *csrf = NULL;
    int s = load_user(r->db, r->who.user_id, &user);

    if (s < 0)
        return srv_reply_store_error(r, s);
    if (s != STORE_ROW)
        return srv_reply_error(r, 401, "unauthorized", "no such user");
    /* A browser that reloads the dashboard has lost the CSRF token it was
     * given at sign-in; it gets it again here (a GET, so another site cannot
     * read it). */
    current_session(r, hash);
    if (hash[0] != '\0' &&
        store_query_text(r->db, &csrf, "SELECT csrf FROM sessions WHERE id = $1", "t", hash) ==
            STORE_ROW &&
        csrf != NULL)
        json_object_set_new(user, "csrf", json_string(csrf));
    free(csrf);
    return srv_reply_json(r, 200, user);
}

int api_me_password(struct srv_req *r)
{
    json_t *body = srv_body_json(r);
    const char *old = NULL, *new_pw = NULL;
    char *hash = NULL, newhash[128], ukey[80], session[65];
    int64_t now = srv_now(), wait;
    int s;

    newhash[0] = '\0';
    if (body == NULL)
        return 0;
    if (srv_json_str(r, body, "old", 1, PASSWORD_MAX, &old) < 0 ||
        srv_json_str(r, body, "new", 1, PASSWORD_MAX, &new_pw) < 0)
        goto out;
    if (strlen(new_pw) < PASSWORD_MIN) {
        srv_reply_field(r, "new", "must be at least 10 characters");
        goto out;
    }
    /* The old password is a second factor against a stolen session: it is
     * rate limited like a sign-in. */
    snprintf(ukey, sizeof(ukey), "user:%s", r->who.username);
    if ((wait = srv_attempt_locked_for(r->db, ukey, now)) < 0) {
        srv_reply_store_error(r, (int)wait);
        goto out;
    }
    if (wait > 0) {
        reply_locked(r, wait);
        goto out;
    }
    s = store_query_text(r->db, &hash, "SELECT password_hash FROM users WHERE id = $1", "i",
                         r->who.user_id);
    if (s < 0) {
        srv_reply_store_error(r, s);
        goto out;
    }
    if (!srv_password_verify(s == STORE_ROW ? hash : NULL, old)) {
        if ((s = srv_attempt_failed(r->db, ukey, LOGIN_USER_LIMIT, now)) < 0) {
            srv_reply_store_error(r, s);
            goto out;
        }
        srv_audit(r, "user.password.failed", ukey, NULL);
        srv_reply_field(r, "old", "is not the current password");
        goto out;
    }
    if (srv_password_hash(new_pw, newhash) != 0) {
        srv_reply_error(r, 500, "internal", "cannot hash the password");
        goto out;
    }
    /* Other sessions end: whoever else knew the old password is signed out. */
    current_session(r, session);
    if ((s = store_execf(r->db, NULL, "UPDATE users SET password_hash = $1 WHERE id = $2", "ti",
                         newhash, r->who.user_id)) < 0 ||
        (s = store_execf(r->db, NULL, "DELETE FROM sessions WHERE user_id = $1 AND id <> $2", "it",
                         r->who.user_id, session)) < 0 ||
        (s = store_execf(r->db, NULL, "DELETE FROM login_attempts WHERE key = $1", "t", ukey)) <
            0) {
        srv_reply_store_error(r, s);
        goto out;
    }
    srv_audit(r, "user.password", ukey, NULL);
    srv_reply_status(r, 204);
out:
    if (hash != NULL) {
        sodium_memzero(hash, strlen(hash));
        free(hash);
    }
    sodium_memzero(newhash, sizeof(newhash));
    json_decref(body);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Users (administrators only; the router checks the role).                  */
/* ------------------------------------------------------------------------ */

int api_users_list(struct srv_req *r)
{
    struct store_stmt *st = NULL;
    json_t *items = json_array();
    int64_t limit, offset, total = 0;
    int s;

    srv_paging(r, &limit, &offset);
    if (items == NULL)
        return srv_reply_store_error(r, STORE_ENOMEM);
    s = store_query_int(r->db, &total, "SELECT COUNT(*) FROM users", "");
    if (s >= 0)
        s = store_queryf(r->db, &st, USER_SELECT " ORDER BY u.username LIMIT $1 OFFSET $2", "ii",
                         limit, offset);
    while (s == STORE_ROW) {
        json_array_append_new(items, user_json(st));
        s = store_step(st);
    }
    store_finalize(st);
    if (s < 0) {
        json_decref(items);
        return srv_reply_store_error(r, s);
    }
    return srv_reply_json(r, 200, srv_page_json(items, total, limit, offset));
}

/* The rules tying a role to an agency: a province administrator has none,
 * an officer always has one, an auditor may. Replies 400 and returns -1 when
 * broken, else checks the agency exists. */
static int check_role_agency(struct srv_req *r, enum srv_role role, int64_t agency_id)
{
    if (role == SRV_ROLE_ADMIN && agency_id != 0) {
        srv_reply_field(r, "agency_id", "must be empty for an admin");
        return -1;
    }
    if (role == SRV_ROLE_OFFICER && agency_id == 0) {
        srv_reply_field(r, "agency_id", "is required for an officer");
        return -1;
    }
    if (agency_id != 0 && !srv_agency_in_scope(r, agency_id)) {
        srv_reply_field(r, "agency_id", "names no agency");
        return -1;
    }
    return 0;
}

int api_users_create(struct srv_req *r)
{
    json_t *body = srv_body_json(r), *user = NULL;
    const char *username = NULL, *display = "", *password = NULL, *role_name = NULL;
    int64_t agency_id = 0, id = 0;
    enum srv_role role;
    char target[80];
    int s;

    if (body == NULL)
        return 0;
    if (srv_json_str(r, body, "username", 1, USERNAME_MAX, &username) < 0 ||
        srv_json_str(r, body, "display_name", 0, DISPLAY_NAME_MAX, &display) < 0 ||
        srv_json_str(r, body, "password", 1, PASSWORD_MAX, &password) < 0 ||
        srv_json_str(r, body, "role", 1, 16, &role_name) < 0 ||
        srv_json_int(r, body, "agency_id", 1, 0, INT64_MAX, &agency_id) < 0)
        goto out;
    if (!valid_username(username)) {
        srv_reply_field(r, "username", "may hold only letters, digits and . _ - @");
        goto out;
    }
    if (strlen(password) < PASSWORD_MIN) {
        srv_reply_field(r, "password", "must be at least 10 characters");
        goto out;
    }
    role = srv_role_parse(role_name);
    if (role == SRV_ROLE_NONE) {
        srv_reply_field(r, "role", "must be admin, officer or auditor");
        goto out;
    }
    if (check_role_agency(r, role, agency_id) < 0)
        goto out;
    s = srv_user_create(r->db, username, display, password, role, agency_id, &id);
    if (s == STORE_ECONFLICT) {
        srv_reply_error(r, 409, "conflict", "the user name is taken");
        goto out;
    }
    if (s == 0)
        s = load_user(r->db, id, &user);
    if (s < 0 || user == NULL) {
        srv_reply_store_error(r, s < 0 ? s : STORE_ESQL);
        goto out;
    }
    snprintf(target, sizeof(target), "user:%s", username);
    srv_audit(r, "user.create", target,
              json_pack("{s:I, s:s, s:I}", "id", (json_int_t)id, "role", role_name, "agency_id",
                        (json_int_t)agency_id));
    srv_reply_json(r, 201, user);
    user = NULL;
out:
    json_decref(user);
    json_decref(body);
    return 0;
}

/* The target of an update, read inside its transaction. */
struct user_row {
    char username[USERNAME_MAX + 1];
    char display[DISPLAY_NAME_MAX + 1];
    enum srv_role role;
    int64_t agency_id;
    int disabled;
};

static int read_user_row(struct store_db *db, int64_t id, struct user_row *u)
{
    struct store_stmt *st = NULL;
    int s = store_queryf(db, &st,
                         "SELECT username, display_name, role, agency_id, disabled FROM users"
                         " WHERE id = $1",
                         "i", id);

    if (s == STORE_ROW) {
        snprintf(u->username, sizeof(u->username), "%s",
                 store_col_text(st, 0) ? store_col_text(st, 0) : "");
        snprintf(u->display, sizeof(u->display), "%s",
                 store_col_text(st, 1) ? store_col_text(st, 1) : "");
        u->role = srv_role_parse(store_col_text(st, 2));
        u->agency_id = store_col_int(st, 3);
        u->disabled = store_col_int(st, 4) != 0;
    }
    store_finalize(st);
    return s;
}

static int write_user_row(struct store_db *db, int64_t id, const struct user_row *u)
{
    static const char sql[] = "UPDATE users SET display_name = $1, role = $2, disabled = $3,"
                              " agency_id = $4 WHERE id = $5";
    struct store_stmt *st = NULL;
    int s;

    if ((s = store_prepare(db, sql, &st)) < 0)
        goto out;
    if ((s = store_bind_text(st, 1, u->display)) < 0 ||
        (s = store_bind_text(st, 2, srv_role_name(u->role))) < 0 ||
        (s = store_bind_int(st, 3, u->disabled)) < 0 ||
        (s = u->agency_id > 0 ? store_bind_int(st, 4, u->agency_id) : store_bind_null(st, 4)) < 0 ||
        (s = store_bind_int(st, 5, id)) < 0)
        goto out;
    s = store_step(st);
out:
    store_finalize(st);
    return s < 0 ? s : 0;
}

int api_users_update(struct srv_req *r)
{
    json_t *body = srv_body_json(r), *user = NULL, *changed = json_object();
    const char *display = NULL, *role_name = NULL, *password = NULL;
    struct user_row u = {0};
    int64_t id = srv_route_id(r), agency_id = 0, others = 0;
    int has_display, has_role, has_agency, has_pw, disabled = -1, in_tx = 0, s;
    char hash[128], target[80];
    json_t *jd;

    hash[0] = '\0';
    if (body == NULL)
        goto out;
    if (changed == NULL) {
        srv_reply_store_error(r, STORE_ENOMEM);
        goto out;
    }
    if ((has_display = srv_json_str(r, body, "display_name", 0, DISPLAY_NAME_MAX, &display)) < 0 ||
        (has_role = srv_json_str(r, body, "role", 0, 16, &role_name)) < 0 ||
        (has_agency = srv_json_int(r, body, "agency_id", 1, 0, INT64_MAX, &agency_id)) < 0 ||
        (has_pw = srv_json_str(r, body, "password", 0, PASSWORD_MAX, &password)) < 0)
        goto out;
    jd = json_object_get(body, "disabled");
    if (jd != NULL) {
        if (!json_is_boolean(jd)) {
            srv_reply_field(r, "disabled", "must be true or false");
            goto out;
        }
        disabled = json_is_true(jd);
    }
    if (has_pw && strlen(password) < PASSWORD_MIN) {
        srv_reply_field(r, "password", "must be at least 10 characters");
        goto out;
    }
    /* Hashing takes tens of milliseconds: do it before taking the lock. */
    if (has_pw && srv_password_hash(password, hash) != 0) {
        srv_reply_error(r, 500, "internal", "cannot hash the password");
        goto out;
    }
    if ((s = store_begin_write(r->db)) < 0) {
        srv_reply_store_error(r, s);
        goto out;
    }
    in_tx = 1;
    s = id > 0 ? read_user_row(r->db, id, &u) : STORE_DONE;
    if (s < 0) {
        srv_reply_store_error(r, s);
        goto out;
    }
    if (s != STORE_ROW) {
        srv_reply_error(r, 404, "not_found", "no such user");
        goto out;
    }
    int was_admin = u.role == SRV_ROLE_ADMIN && !u.disabled;
    if (has_display && strcmp(display, u.display) != 0) {
        snprintf(u.display, sizeof(u.display), "%s", display);
        json_object_set_new(changed, "display_name", json_string(display));
    }
    if (has_role) {
        enum srv_role role = srv_role_parse(role_name);
        if (role == SRV_ROLE_NONE) {
            srv_reply_field(r, "role", "must be admin, officer or auditor");
            goto out;
        }
        if (role != u.role)
            json_object_set_new(changed, "role", json_string(role_name));
        u.role = role;
    }
    if (has_agency) {
        if (agency_id != u.agency_id)
            json_object_set_new(changed, "agency_id", json_integer(agency_id));
        u.agency_id = agency_id;
    }
    if (disabled >= 0) {
        if (disabled != u.disabled)
            json_object_set_new(changed, "disabled", json_boolean(disabled));
        u.disabled = disabled;
    }
    if (u.role == SRV_ROLE_NONE) {
        srv_reply_field(r, "role", "must be admin, officer or auditor");
        goto out;
    }
    if (check_role_agency(r, u.role, u.agency_id) < 0)
        goto out;
    /* Nobody may lock the province out of its own server: the change must
     * leave at least one enabled administrator. */
    if (was_admin && !(u.role == SRV_ROLE_ADMIN && !u.disabled)) {
        s = store_query_int(r->db, &others,
                            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0"
                            " AND id <> $1",
                            "i", id);
        if (s < 0) {
            srv_reply_store_error(r, s);
            goto out;
        }
        if (others == 0) {
            srv_reply_error(r, 409, "conflict", "this is the last enabled administrator");
            goto out;
        }
    }
    s = write_user_row(r->db, id, &u);
    if (s >= 0 && has_pw) {
        s = store_execf(r->db, NULL, "UPDATE users SET password_hash = $1 WHERE id = $2", "ti",
                        hash, id);
        json_object_set_new(changed, "password", json_true());
    }
    /* A disabled account or a reset password ends the user's sessions now,
     * not when they expire. */
    if (s >= 0 && (u.disabled || has_pw))
        s = store_execf(r->db, NULL, "DELETE FROM sessions WHERE user_id = $1", "i", id);
    if (s >= 0)
        s = store_commit(r->db);
    if (s < 0) {
        srv_reply_store_error(r, s);
        goto out;
    }
    in_tx = 0;
    if ((s = load_user(r->db, id, &user)) != STORE_ROW) {
        srv_reply_store_error(r, s < 0 ? s : STORE_ESQL);
        goto out;
    }
    snprintf(target, sizeof(target), "user:%s", u.username);
    srv_audit(r, "user.update", target, changed);
    changed = NULL;
    srv_reply_json(r, 200, user);
    user = NULL;
out:
    if (in_tx)
        store_rollback(r->db);
    sodium_memzero(hash, sizeof(hash));
    json_decref(changed);
    json_decref(user);
    json_decref(body);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* API tokens: each user's own.                                              */
/* ------------------------------------------------------------------------ */

int api_tokens_list(struct srv_req *r)
{
    struct store_stmt *st = NULL;
    json_t *items = json_array();
    int64_t limit, offset, total = 0;
    int s;

    srv_paging(r, &limit, &offset);
    if (items == NULL)
        return srv_reply_store_error(r, STORE_ENOMEM);
    s = store_query_int(r->db, &total, "SELECT COUNT(*) FROM api_tokens WHERE user_id = $1", "i",
                        r->who.user_id);
    if (s >= 0)
        s = store_queryf(r->db, &st,
                         "SELECT id, name, prefix, created_at, last_used, revoked FROM api_tokens"
                         " WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
                         "iii", r->who.user_id, limit, offset);
    while (s == STORE_ROW) {
        json_t *t =
            json_pack("{s:I, s:s, s:s, s:I, s:o, s:b}", "id", (json_int_t)store_col_int(st, 0),
                      "name", store_col_text(st, 1) ? store_col_text(st, 1) : "", "prefix",
                      store_col_text(st, 2) ? store_col_text(st, 2) : "", "created_at",
                      (json_int_t)store_col_int(st, 3), "last_used",
                      store_col_is_null(st, 4) ? json_null() : json_integer(store_col_int(st, 4)),
                      "revoked", store_col_int(st, 5) != 0);
        json_array_append_new(items, t);
        s = store_step(st);
    }
    store_finalize(st);
    if (s < 0) {
        json_decref(items);
        return srv_reply_store_error(r, s);
    }
    return srv_reply_json(r, 200, srv_page_json(items, total, limit, offset));
}

int api_tokens_create(struct srv_req *r)
{
    json_t *body = srv_body_json(r);
    const char *name = NULL;
    char token[80], hash[65], prefix[13], target[40];
    int64_t live = 0, id = 0;
    int s;

    token[0] = '\0';
    if (body == NULL)
        return 0;
    if (srv_json_str(r, body, "name", 1, TOKEN_NAME_MAX, &name) < 0)
        goto out;
    s = store_query_int(r->db, &live,
                        "SELECT COUNT(*) FROM api_tokens WHERE user_id = $1 AND revoked = 0", "i",
                        r->who.user_id);
    if (s < 0) {
        srv_reply_store_error(r, s);
        goto out;
    }
    if (live >= TOKENS_PER_USER) {
        srv_reply_error(r, 409, "conflict", "too many API tokens; revoke some first");
        goto out;
    }
    srv_random_token("kht_", token, sizeof(token));
    srv_sha256_hex(token, hash);
    snprintf(prefix, sizeof(prefix), "%.12s", token);
    s = store_query_int(r->db, &id,
                        "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at)"
                        " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        "ittti", r->who.user_id, name, hash, prefix, srv_now());
    if (s != STORE_ROW) {
        srv_reply_store_error(r, s < 0 ? s : STORE_ESQL);
        goto out;
    }
    snprintf(target, sizeof(target), "token:%" PRId64, id);
    srv_audit(r, "token.create", target, json_pack("{s:s, s:s}", "name", name, "prefix", prefix));
    srv_reply_json(r, 201,
                   json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)id, "name", name, "prefix",
                             prefix, "token", token));
out:
    sodium_memzero(token, sizeof(token));
    json_decref(body);
    return 0;
}

int api_tokens_revoke(struct srv_req *r)
{
    int64_t id = srv_route_id(r), changes = 0;
    char target[40];
    int s;

    if (id <= 0)
        return srv_reply_error(r, 404, "not_found", "no such token");
    /* Only one's own tokens: someone else's token answers 404 like a
     * missing one. Revoking twice is harmless and answers 204 again. */
    s = store_execf(r->db, &changes,
                    "UPDATE api_tokens SET revoked = 1 WHERE id = $1 AND user_id = $2", "ii", id,
                    r->who.user_id);
    if (s < 0)
        return srv_reply_store_error(r, s);
    if (changes == 0)
        return srv_reply_error(r, 404, "not_found", "no such token");
    snprintf(target, sizeof(target), "token:%" PRId64, id);
    srv_audit(r, "token.revoke", target, NULL);
    return srv_reply_status(r, 204);
}
