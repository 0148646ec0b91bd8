/*
 * Who is calling (auth.c): user sessions and API tokens for people, client
 * certificates for agents, Argon2id password hashes, login rate limiting and
 * the random secrets the server hands out. The router calls srv_auth_user()
 * or srv_auth_agent() according to the route's flags before the handler runs.
 */
#ifndef KHIEN_SERVER_AUTH_H
#define KHIEN_SERVER_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

#define SRV_SESSION_COOKIE "khien_session"
#define SRV_CSRF_HEADER    "X-CSRF-Token"

/* Fills r->who from the session cookie or an "Authorization: Bearer" API
 * token. A cookie-authenticated request other than GET/HEAD must carry the
 * session's CSRF token in the X-CSRF-Token header. Returns 0, or replies
 * 401 (no or bad credentials) / 403 (CSRF) and returns -1. */
int srv_auth_user(struct srv_req *r);

/* For agent routes: the client certificate must have verified against our CA
 * (http.c), and its CN and SHA-256 must be those of a machine that is not
 * retired. Fills r->who.machine_id and updates nothing. Returns 0, or replies
 * 401/403 and returns -1. */
int srv_auth_agent(struct srv_req *r);

/* Argon2id via libsodium crypto_pwhash_str (interactive limits). out must
 * hold 128 bytes. Returns 0 or -1. */
int srv_password_hash(const char *password, char out[128]);
/* Returns 1 when the password matches, 0 otherwise. */
int srv_password_verify(const char *hash, const char *password);

/* Creates a user; agency_id 0 means no agency (province-wide). Returns 0,
 * STORE_ECONFLICT for a taken name, or another negative code. */
int srv_user_create(struct store_db *db, const char *username, const char *display_name,
                    const char *password, enum srv_role role, int64_t agency_id, int64_t *id);

/* Writes `prefix` followed by 32 random bytes in lowercase hex into out;
 * outlen must be at least strlen(prefix) + 65. */
void srv_random_token(const char *prefix, char *out, size_t outlen);
/* A printable random password of `len` characters (no look-alike letters). */
void srv_random_password(char *out, size_t len);
/* SHA-256 of a NUL-terminated string, as 64 hex characters and a NUL. */
void srv_sha256_hex(const char *s, char out[65]);

const char *srv_role_name(enum srv_role role);  /* "admin", "officer", "auditor" */
enum srv_role srv_role_parse(const char *name); /* SRV_ROLE_NONE if unknown */

#endif
