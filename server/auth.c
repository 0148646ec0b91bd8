/*
 * Who is calling: the checks the router runs before a handler, and the small
 * secrets behind them.
 *
 * People authenticate with a session cookie set by POST /login or with an
 * API token in "Authorization: Bearer kht_...". Both secrets are random 32
 * bytes in hex and the database keeps only their SHA-256, so a copy of the
 * database does not let anyone in. A cookie-authenticated write must also
 * carry the session's CSRF token in a header that another site's page cannot
 * set. Agents authenticate with the client certificate issued at enrollment:
 * the TLS layer has checked that it chains to our CA, and here we check that
 * it is the certificate the machine currently holds and that the machine is
 * not retired.
 *
 * Passwords are Argon2id hashes (libsodium crypto_pwhash_str, interactive
 * limits: about 64 MiB and a few tens of milliseconds per check).
 */
#include "auth.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "khx.h"

/* API tokens' last_used is written at most this often, so a script calling
 * in a loop does not turn every read into a write. */
#define TOKEN_TOUCH_INTERVAL 60

/* Longest password we hash: Argon2 accepts more, but nobody types more and a
 * megabyte-long "password" would only be a way to waste our time. */
#define PASSWORD_MAX 1024

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok;

/* A hash of a random password that nobody knows, made with the same limits
 * as real ones: a login for an unknown user is checked against it, so that
 * it takes as long as a login for a known user with a wrong password. */
static char dummy_hash[crypto_pwhash_STRBYTES];

static void sodium_setup(void)
{
    if (sodium_init() < 0) {
        srv_log("auth: libsodium failed to initialise");
        return;
    }
    uint8_t pw[32];
    randombytes_buf(pw, sizeof(pw));
    if (crypto_pwhash_str(dummy_hash, (const char *)pw, sizeof(pw),
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        dummy_hash[0] = '\0';
    sodium_memzero(pw, sizeof(pw));
    sodium_ok = 1;
}

/* libsodium must be initialised once before randombytes and pwhash are used;
 * every entry point that needs it calls this first. */
static int sodium_ready(void)
{
    pthread_once(&sodium_once, sodium_setup);
    return sodium_ok;
}

/* ------------------------------------------------------------------------ */
/* Random secrets and digests.                                               */
/* ------------------------------------------------------------------------ */

void srv_random_token(const char *prefix, char *out, size_t outlen)
{
    size_t plen = strlen(prefix);
    uint8_t raw[32];

    if (outlen == 0)
        return;
    out[0] = '\0';
    if (outlen < plen + 2 * sizeof(raw) + 1)
        return;
    (void)sodium_ready();
    randombytes_buf(raw, sizeof(raw));
    memcpy(out, prefix, plen);
    sodium_bin2hex(out + plen, outlen - plen, raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
}

void srv_random_password(char *out, size_t len)
{
    /* No 0/O, 1/l/I: the password is read off a screen and typed by hand. */
    static const char alphabet[] = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

    if (len == 0)
        return;
    (void)sodium_ready();
    /* `len` is the size of the buffer: len - 1 characters and a NUL, so a
     * caller passing sizeof(buf) can never overflow it. */
    for (size_t i = 0; i + 1 < len; i++)
        out[i] = alphabet[randombytes_uniform((uint32_t)(sizeof(alphabet) - 1))];
    out[len - 1] = '\0';
}

void srv_sha256_hex(const char *s, char out[65])
{
    uint8_t d[32];

    if (khx_sha256(s, strlen(s), d) != 0) {
        /* Out of memory inside OpenSSL: an empty digest matches no stored
         * one, so the lookup that follows simply fails. */
        out[0] = '\0';
        return;
    }
    khx_hex_encode(d, sizeof(d), out);
}

/* ------------------------------------------------------------------------ */
/* Roles and passwords.                                                      */
/* ------------------------------------------------------------------------ */

const char *srv_role_name(enum srv_role role)
{
    switch (role) {
    case SRV_ROLE_ADMIN:
        return "admin";
    case SRV_ROLE_OFFICER:
        return "officer";
    case SRV_ROLE_AUDITOR:
        return "auditor";
    case SRV_ROLE_NONE:
        break;
    }
    return "";
}

enum srv_role srv_role_parse(const char *name)
{
    if (name == NULL)
        return SRV_ROLE_NONE;
    if (strcmp(name, "admin") == 0)
        return SRV_ROLE_ADMIN;
    if (strcmp(name, "officer") == 0)
        return SRV_ROLE_OFFICER;
    if (strcmp(name, "auditor") == 0)
        return SRV_ROLE_AUDITOR;
    return SRV_ROLE_NONE;
}

int srv_password_hash(const char *password, char out[128])
{
    size_t n = strlen(password);

    out[0] = '\0';
    if (!sodium_ready() || n > PASSWORD_MAX)
        return -1;
    if (crypto_pwhash_str(out, password, n, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return -1; /* out of memory: Argon2 wants 64 MiB */
    return 0;
}

/* A NULL or empty hash (no such user) is checked against the dummy hash and
 * never matches: the caller spends the same time either way, so response
 * times do not tell which user names exist. */
int srv_password_verify(const char *hash, const char *password)
{
    size_t n = strlen(password);
    int known = hash != NULL && hash[0] != '\0';

    if (!sodium_ready())
        return 0;
    if (n > PASSWORD_MAX)
        return 0;
    if (!known) {
        /* The result is meaningless (nobody knows the dummy password);
         * only the time spent matters. */
        if (dummy_hash[0] != '\0') {
            volatile int sink = crypto_pwhash_str_verify(dummy_hash, password, n);
            (void)sink;
        }
        return 0;
    }
    /* crypto_pwhash_str_verify reads a NUL-terminated string of at most
     * crypto_pwhash_STRBYTES; a longer column value is not one of ours. */
    if (strnlen(hash, crypto_pwhash_STRBYTES) >= crypto_pwhash_STRBYTES)
        return 0;
    return crypto_pwhash_str_verify(hash, password, n) == 0;
}

int srv_user_create(struct store_db *db, const char *username, const char *display_name,
                    const char *password, enum srv_role role, int64_t agency_id, int64_t *id)
{
    static const char sql[] =
        "INSERT INTO users (username, display_name, password_hash, role, agency_id, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
    struct store_stmt *st = NULL;
    char hash[crypto_pwhash_STRBYTES];
    int r = STORE_EINVAL;

    if (username == NULL || username[0] == '\0' || password == NULL || role == SRV_ROLE_NONE)
        goto out;
    if (srv_password_hash(password, hash) != 0) {
        r = STORE_ENOMEM;
        goto out;
    }
    if ((r = store_prepare(db, sql, &st)) != 0)
        goto out;
    if ((r = store_bind_text(st, 1, username)) != 0 ||
        (r = store_bind_text(st, 2, display_name ? display_name : "")) != 0 ||
        (r = store_bind_text(st, 3, hash)) != 0 ||
        (r = store_bind_text(st, 4, srv_role_name(role))) != 0 ||
        (r = agency_id > 0 ? store_bind_int(st, 5, agency_id) : store_bind_null(st, 5)) != 0 ||
        (r = store_bind_int(st, 6, srv_now())) != 0)
        goto out;
    r = store_step(st);
    if (r < 0)
        goto out;
    if (r != STORE_ROW) {
        r = STORE_ESQL; /* RETURNING gave no row: should not happen */
        goto out;
    }
    if (id != NULL)
        *id = store_col_int(st, 0);
    r = 0;
out:
    store_finalize(st);
    sodium_memzero(hash, sizeof(hash));
    return r;
}

/* ------------------------------------------------------------------------ */
/* People: session cookies and API tokens.                                   */
/* ------------------------------------------------------------------------ */

/* The columns both lookups select after their own, starting at `c`:
 * user id, username, role, agency_id, disabled, the agency's path. */
#define USER_COLS                                                                                  \
    "u.id, u.username, u.role, u.agency_id, u.disabled, a.path"                                    \
    " FROM users u LEFT JOIN agencies a ON a.id = u.agency_id"

/* Fills r->who from a row whose user columns start at `c`. Returns 0, or
 * replies and returns -1 (disabled user, unknown role, broken scope). */
static int principal_from_row(struct srv_req *r, struct store_stmt *st, int c)
{
    struct srv_principal *w = &r->who;
    const char *name = store_col_text(st, c + 1);
    const char *path = store_col_text(st, c + 5);
    int64_t agency = store_col_int(st, c + 3);

    if (store_col_int(st, c + 4) != 0) {
        srv_reply_error(r, 401, "unauthorized", "this account is disabled");
        return -1;
    }
    w->role = srv_role_parse(store_col_text(st, c + 2));
    if (w->role == SRV_ROLE_NONE) {
        srv_log("auth: user %" PRId64 " has an unknown role", store_col_int(st, c));
        srv_reply_error(r, 401, "unauthorized", "this account has no valid role");
        return -1;
    }
    w->user_id = store_col_int(st, c);
    snprintf(w->username, sizeof(w->username), "%s", name ? name : "");
    w->agency_id = agency;
    if (agency <= 0) {
        w->agency_id = 0;
        snprintf(w->scope_path, sizeof(w->scope_path), "%%");
        return 0;
    }
    /* An agency without a path would widen the scope to everything ("%"):
     * refuse rather than guess. Paths are set in the same transaction that
     * creates the agency, so this means a damaged database. */
    if (path == NULL || path[0] != '/' || strlen(path) + 2 > sizeof(w->scope_path)) {
        srv_log("auth: agency %" PRId64 " of user %" PRId64 " has no usable path", agency,
                w->user_id);
        srv_reply_error(r, 500, "internal", "internal error");
        return -1;
    }
    snprintf(w->scope_path, sizeof(w->scope_path), "%s%%", path);
    return 0;
}

/* A caller's secret must look like one of ours before we hash and look it up:
 * the prefix and exactly 64 lowercase hex characters. */
static int token_well_formed(const char *tok, const char *prefix)
{
    size_t plen = strlen(prefix);

    if (strncmp(tok, prefix, plen) != 0 || strlen(tok) != plen + 64)
        return 0;
    for (const char *p = tok + plen; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

static int auth_by_token(struct srv_req *r, const char *tok)
{
    static const char sql[] =
        "SELECT t.id, t.last_used, " USER_COLS " JOIN api_tokens t ON t.user_id = u.id"
        " WHERE t.token_hash = $1 AND t.revoked = 0";
    struct store_stmt *st = NULL;
    char hash[65];
    int64_t now = srv_now();
    int rc = -1, s;

    if (!token_well_formed(tok, "kht_")) {
        srv_reply_error(r, 401, "unauthorized", "malformed API token");
        goto out;
    }
    srv_sha256_hex(tok, hash);
    s = store_queryf(r->db, &st, sql, "t", hash);
    if (s < 0) {
        srv_reply_store_error(r, s);
        goto out;
    }
    if (s != STORE_ROW) {
        srv_reply_error(r, 401, "unauthorized", "unknown or revoked API token");
        goto out;
    }
    if (principal_from_row(r, st, 2) != 0)
        goto out;
    r->who.via_api_token = 1;
    int64_t token_id = store_col_int(st, 0);
    int64_t last_used = store_col_int(st, 1);
    store_finalize(st);
    st = NULL;
    if (last_used < now - TOKEN_TOUCH_INTERVAL) {
        /* Losing this write only makes "last used" a little stale. */
        s = store_execf(r->db, NULL, "UPDATE api_tokens SET last_used = $1 WHERE id = $2", "ii",
                        now, token_id);
        if (s < 0)
            srv_log("auth: cannot record token use: %s", store_errmsg(r->db));
    }
    rc = 0;
out:
    store_finalize(st);
    return rc;
}

static int method_is_safe(const char *m)
{
    return m != NULL && (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0);
}

static int auth_by_cookie(struct srv_req *r, const char *cookie)
{
    static const char sql[] = "SELECT s.csrf, s.expires_at, " USER_COLS
                              " JOIN sessions s ON s.user_id = u.id WHERE s.id = $1";
    struct store_stmt *st = NULL;
    char hash[65];
    int rc = -1, s;

    if (!token_well_formed(cookie, "khs_")) {
        srv_reply_error(r, 401, "unauthorized", "not signed in");
        goto out;
    }
    srv_sha256_hex(cookie, hash);
    s = store_queryf(r->db, &st, sql, "t", hash);
    if (s < 0) {
        srv_reply_store_error(r, s);
        goto out;
    }
    if (s != STORE_ROW || store_col_int(st, 1) <= srv_now()) {
        srv_reply_error(r, 401, "unauthorized", "the session has ended; sign in again");
        goto out;
    }
    if (!method_is_safe(r->method)) {
        const char *want = store_col_text(st, 0);
        const char *got = srv_header(r, SRV_CSRF_HEADER);
        size_t n = want ? strlen(want) : 0;
        /* Constant-time: the comparison must not leak how much of a guessed
         * token was right. Lengths are not secret (always 64). */
        if (got == NULL || n == 0 || strlen(got) != n || sodium_memcmp(got, want, n) != 0) {
            srv_reply_error(r, 403, "csrf", "missing or wrong " SRV_CSRF_HEADER " header");
            goto out;
        }
    }
    if (principal_from_row(r, st, 2) != 0)
        goto out;
    r->who.via_api_token = 0;
    rc = 0;
out:
    store_finalize(st);
    return rc;
}

int srv_auth_user(struct srv_req *r)
{
    const char *authz, *cookie;

    memset(&r->who, 0, sizeof(r->who));
    if (!sodium_ready() || r->db == NULL) {
        srv_log("auth: no database connection or libsodium");
        srv_reply_error(r, 500, "internal", "internal error");
        return -1;
    }
    /* A script's Bearer token wins over a cookie: a request carrying both is
     * judged by the credential it named explicitly. */
    authz = srv_header(r, "Authorization");
    if (authz != NULL) {
        if (strncasecmp(authz, "Bearer ", 7) != 0) {
            srv_reply_error(r, 401, "unauthorized", "only Bearer API tokens are accepted");
            return -1;
        }
        authz += 7;
        while (*authz == ' ')
            authz++;
        return auth_by_token(r, authz);
    }
    cookie = srv_cookie(r, SRV_SESSION_COOKIE);
    if (cookie == NULL || cookie[0] == '\0') {
        srv_reply_error(r, 401, "unauthorized", "not signed in");
        return -1;
    }
    return auth_by_cookie(r, cookie);
}

/* ------------------------------------------------------------------------ */
/* Agents: client certificates.                                              */
/* ------------------------------------------------------------------------ */

int srv_auth_agent(struct srv_req *r)
{
    struct store_stmt *st = NULL;
    int rc = -1, s;

    memset(&r->who, 0, sizeof(r->who));
    if (!r->client_cert_ok || r->client_cn[0] == '\0' || r->client_cert_sha256[0] == '\0') {
        srv_reply_error(r, 401, "unauthorized",
                        "a client certificate issued by this server is "
                        "required");
        goto out;
    }
    /* Machine ids are UUIDs; a longer CN cannot name one of our machines. */
    if (strlen(r->client_cn) >= sizeof(r->who.machine_id)) {
        srv_reply_error(r, 401, "unauthorized", "unknown machine; enroll again");
        goto out;
    }
    if (r->db == NULL) {
        srv_reply_error(r, 500, "internal", "internal error");
        goto out;
    }
    s = store_queryf(r->db, &st, "SELECT cert_sha256, retired FROM machines WHERE id = $1", "t",
                     r->client_cn);
    if (s < 0) {
        srv_reply_store_error(r, s);
        goto out;
    }
    if (s != STORE_ROW) {
        srv_reply_error(r, 401, "unauthorized", "unknown machine; enroll again");
        goto out;
    }
    /* Retirement is checked first: retiring also clears the fingerprint,
     * and the agent should hear "retired" (stop) rather than "superseded". */
    if (store_col_int(st, 1) != 0) {
        srv_reply_error(r, 403, "forbidden", "this machine has been retired");
        goto out;
    }
    /* Fingerprints are not secret, but both sides are our lowercase hex;
     * compare case-insensitively in case a row was stored in upper case. */
    const char *want = store_col_text(st, 0);
    if (want == NULL || want[0] == '\0' || strcasecmp(want, r->client_cert_sha256) != 0) {
        srv_reply_error(r, 401, "unauthorized",
                        "this certificate was superseded by a newer enrollment");
        goto out;
    }
    memcpy(r->who.machine_id, r->client_cn, strlen(r->client_cn) + 1);
    rc = 0;
out:
    store_finalize(st);
    return rc;
}
