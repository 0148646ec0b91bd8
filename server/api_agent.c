/*
 * What an endpoint agent calls: enrollment with a token (the only agent call
 * without a client certificate), then, authenticated by that certificate,
 * check-in with its inventory (answered with, among the rest, the agent
 * policy in effect for the machine: policy.c), fetching tasks and reporting
 * their results, posting event batches (stored by ingest.c), and downloading
 * signed signature bundles. Also the two public calls an agent or a monitor makes
 * before it has anything else: the bundle-signing key and the health check.
 * docs/api/agent.md documents every call with examples.
 *
 * Every input here comes from a machine we do not control, so each field is
 * type-checked and length-capped before it reaches the store, and every
 * refusal says which field was wrong.
 */
#include "api.h"
#include "auth.h"
#include "bundle.h"
#include "c2.h"
#include "khx.h"
#include "ingest.h"
#include "query.h"
#include "pki.h"
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef KHIEN_VERSION
#define KHIEN_VERSION "0.0.0"
#endif

#define MAX_TOKEN           256   /* bytes of an enrollment token */
#define MAX_CSR             16384 /* bytes of a PEM certificate request */
#define MAX_HOSTNAME        255   /* a DNS name's longest form */
#define MAX_MACHINE_KEY     128   /* the agent's hardware id (a hash, in practice) */
#define MAX_INVENTORY       65536 /* bytes of a check-in document as stored */
#define MAX_ADDRESSES       64    /* entries in "ips" and in "macs" */
#define MAX_ADDRESS         64    /* bytes of one address */
#define MAX_TASK_RESULT     65536 /* bytes of a task result as stored */
#define MAX_TASKS_PER_FETCH 100   /* tasks handed out by one GET /agent/tasks */

/* ------------------------------------------------------------------------ */
/* Small helpers.                                                            */
/* ------------------------------------------------------------------------ */

/* A JSON string without control characters (and so without NUL) of at most
 * `max` bytes: the value, or NULL when `v` is anything else. */
static const char *clean_string(const json_t *v, size_t max)
{
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n > max || strlen(s) != n)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return NULL;
    return s;
}

/* A machine id as the server makes them: 36 characters of hex and dashes. */
static int looks_like_uuid(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (size_t i = 0; i < 36; i++) {
        char c = s[i];
        int dash = (i == 8 || i == 13 || i == 18 || i == 23);
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}

static json_t *bundle_json(const struct srv_bundle_info *b)
{
    return json_pack("{s:I,s:s,s:I,s:I}", "version", (json_int_t)b->version, "sha256", b->sha256,
                     "size", (json_int_t)b->size, "created_at", (json_int_t)b->created_at);
}

/* Reply helpers for validation code that returns -1 once it has replied. */
static int bad_field(struct srv_req *r, const char *field, const char *problem)
{
    srv_reply_field(r, field, problem);
    return -1;
}

static int bad_request(struct srv_req *r, unsigned status, const char *code, const char *message)
{
    srv_reply_error(r, status, code, "%s", message);
    return -1;
}

static int bad_store(struct srv_req *r, int err)
{
    srv_reply_store_error(r, err);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* POST /api/v1/enroll                                                       */
/* ------------------------------------------------------------------------ */

struct enroll {
    /* What the agent sent (pointers into the request's JSON). */
    const char *token;
    const char *csr;
    size_t csr_len;
    const char *hostname;
    const char *machine_key; /* "" when not sent */
    const char *machine_id;  /* "" when not sent */
    /* What the transaction decided. */
    int64_t token_id;
    int64_t token_agency_id;
    int64_t agency_id; /* where the machine ends up */
    char agency_code[128];
    char agency_name[256];
    char id[37];
    int reenrolled;
    int64_t old_agency_id;
    char *cert_pem; /* malloc'd */
    char serial[41];
    char sha256[65];
    /* A refusal: status, error code, field (or NULL) and message. */
    unsigned status;
    const char *code;
    const char *field;
    char message[256];
};

static int refuse(struct enroll *e, unsigned status, const char *code, const char *message)
{
    e->status = status;
    e->code = code;
    snprintf(e->message, sizeof(e->message), "%s", message);
    return 1;
}

/* Finds the token and says why it cannot be used, if it cannot. Returns 0
 * when usable, 1 when refused (e->status set), or a negative store code. */
static int enroll_check_token(struct store_db *db, struct enroll *e, int64_t now)
{
    char hash[65];
    struct store_stmt *st = NULL;
    srv_sha256_hex(e->token, hash);
    int r = store_queryf(db, &st,
                         "SELECT id, agency_id, expires_at, max_uses, uses, revoked FROM "
                         "enroll_tokens WHERE token_hash = $1",
                         "t", hash);
    if (r < 0)
        return r;
    if (r == STORE_DONE)
        return refuse(e, 401, "unauthorized", "unknown enrollment token");
    e->token_id = store_col_int(st, 0);
    e->token_agency_id = store_col_int(st, 1);
    int64_t expires_at = store_col_int(st, 2);
    int64_t max_uses = store_col_int(st, 3);
    int64_t uses = store_col_int(st, 4);
    int64_t revoked = store_col_int(st, 5);
    store_finalize(st);
    if (revoked)
        return refuse(e, 403, "forbidden", "this enrollment token has been revoked");
    if (expires_at <= now)
        return refuse(e, 403, "forbidden", "this enrollment token has expired");
    if (max_uses > 0 && uses >= max_uses)
        return refuse(e, 403, "forbidden",
                      "this enrollment token has been used as many times as it allows");
    return 0;
}

/* Picks the machine id: the one the agent names if that machine exists and
 * is not retired, else the live machine with the same hardware key, else a
 * new one. A retired machine is never revived: its history stays as it was
 * and the computer starts over under a new id. */
static int enroll_pick_machine(struct store_db *db, struct enroll *e)
{
    struct store_stmt *st = NULL;
    int r = STORE_DONE;
    if (e->machine_id[0] != '\0')
        r = store_queryf(db, &st,
                         "SELECT id, agency_id FROM machines WHERE id = $1 AND retired = 0", "t",
                         e->machine_id);
    if (r == STORE_DONE && e->machine_key[0] != '\0')
        r = store_queryf(db, &st,
                         "SELECT id, agency_id FROM machines WHERE machine_key = $1 AND "
                         "retired = 0 ORDER BY last_seen DESC, enrolled_at DESC LIMIT 1",
                         "t", e->machine_key);
    if (r < 0)
        return r;
    if (r == STORE_ROW) {
        snprintf(e->id, sizeof(e->id), "%s", store_col_text(st, 0) ? store_col_text(st, 0) : "");
        e->old_agency_id = store_col_int(st, 1);
        e->reenrolled = 1;
        store_finalize(st);
        return 0;
    }
    khx_uuid4(e->id);
    e->reenrolled = 0;
    return 0;
}

/* Decides the machine's agency and reads its code and name. A re-enrolled
 * machine stays where it is when that is the token's agency or one below it
 * (an officer may have moved it into a sub-agency); otherwise it goes to the
 * token's agency. Returns 0 or a negative store code. */
static int enroll_pick_agency(struct store_db *db, struct enroll *e)
{
    struct store_stmt *st = NULL;
    int64_t inside = 0;
    int r;
    e->agency_id = e->token_agency_id;
    if (e->reenrolled && e->old_agency_id != e->token_agency_id) {
        r = store_query_int(db, &inside,
                            "SELECT 1 FROM agencies m JOIN agencies t ON t.id = $2 WHERE m.id = "
                            "$1 AND t.path <> '' AND m.path LIKE t.path || '%'",
                            "ii", e->old_agency_id, e->token_agency_id);
        if (r < 0)
            return r;
        if (r == STORE_ROW)
            e->agency_id = e->old_agency_id;
    }
    r = store_queryf(db, &st, "SELECT code, name FROM agencies WHERE id = $1", "i", e->agency_id);
    if (r < 0)
        return r;
    if (r == STORE_ROW) {
        snprintf(e->agency_code, sizeof(e->agency_code), "%s",
                 store_col_text(st, 0) ? store_col_text(st, 0) : "");
        snprintf(e->agency_name, sizeof(e->agency_name), "%s",
                 store_col_text(st, 1) ? store_col_text(st, 1) : "");
    }
    store_finalize(st);
    return 0;
}

static int enroll_store_machine(struct store_db *db, struct enroll *e, int64_t now)
{
    if (e->reenrolled)
        /* The new certificate replaces the old one, which srv_auth_agent
         * then refuses because its fingerprint no longer matches. */
        return store_execf(db, NULL,
                           "UPDATE machines SET agency_id = $2, hostname = $3, machine_key = "
                           "COALESCE($4, machine_key), cert_serial = $5, cert_sha256 = $6, "
                           "last_seen = $7 WHERE id = $1",
                           "titttti", e->id, e->agency_id, e->hostname,
                           e->machine_key[0] != '\0' ? e->machine_key : NULL, e->serial, e->sha256,
                           now);
    return store_execf(db, NULL,
                       "INSERT INTO machines (id, agency_id, hostname, machine_key, cert_serial, "
                       "cert_sha256, enrolled_at, last_seen) VALUES ($1, $2, $3, $4, $5, $6, "
                       "$7, $8)",
                       "tittttii", e->id, e->agency_id, e->hostname, e->machine_key, e->serial,
                       e->sha256, now, now);
}

/* Records the enrollment inside its transaction, so that the audit row
 * exists exactly when the enrollment does. The machine is named as the
 * actor: it is the one that proved it held the token. */
static void enroll_audit(struct srv_req *r, const struct enroll *e)
{
    char target[64];
    snprintf(r->who.machine_id, sizeof(r->who.machine_id), "%s", e->id);
    snprintf(target, sizeof(target), "machine:%s", e->id);
    json_t *detail = json_pack("{s:s,s:I,s:I,s:b,s:s}", "hostname", e->hostname, "agency_id",
                               (json_int_t)e->agency_id, "token_id", (json_int_t)e->token_id,
                               "reenrolled", e->reenrolled, "cert_serial", e->serial);
    if (detail != NULL && e->reenrolled && e->old_agency_id != e->agency_id)
        json_object_set_new(detail, "moved_from", json_integer(e->old_agency_id));
    srv_audit(r, "machine.enroll", target, detail);
}

/* One attempt at enrollment inside one write transaction, so that two
 * agents racing for the last use of a token cannot both get in. Returns 0
 * on success, 1 for a refusal (e->status set), or a negative store code;
 * anything but 0 leaves the transaction rolled back. */
static int enroll_once(struct srv_req *r, struct enroll *e)
{
    int rc;
    int64_t now = srv_now();
    int64_t changes = 0;
    char err[256] = "";
    free(e->cert_pem);
    e->cert_pem = NULL;
    if ((rc = store_begin_write(r->db)) < 0)
        goto out;
    if ((rc = enroll_check_token(r->db, e, now)) != 0)
        goto out;
    if ((rc = enroll_pick_machine(r->db, e)) != 0 || (rc = enroll_pick_agency(r->db, e)) != 0)
        goto out;
    if (srv_pki_sign_csr(r->srv->pki, e->csr, e->csr_len, e->id, r->srv->cfg.cert_days,
                         &e->cert_pem, e->serial, e->sha256, err, sizeof(err)) != 0) {
        rc = refuse(e, 400, "field", err[0] != '\0' ? err : "the certificate request is invalid");
        e->field = "csr";
        goto out;
    }
    if ((rc = enroll_store_machine(r->db, e, now)) < 0)
        goto out;
    /* Counting the use only when it is still allowed, in the same
     * transaction, is what makes max_uses exact under concurrency. */
    if ((rc = store_execf(r->db, &changes,
                          "UPDATE enroll_tokens SET uses = uses + 1 WHERE id = $1 AND revoked = 0 "
                          "AND expires_at > $2 AND (max_uses = 0 OR uses < max_uses)",
                          "ii", e->token_id, now)) < 0)
        goto out;
    if (changes != 1) {
        rc = refuse(e, 403, "forbidden",
                    "this enrollment token has been used as many times as it allows");
        goto out;
    }
    enroll_audit(r, e);
    rc = store_commit(r->db);
out:
    if (rc != 0)
        store_rollback(r->db);
    return rc;
}

static int enroll_read_body(struct srv_req *r, json_t *body, struct enroll *e)
{
    const json_t *v;
    if ((e->token = clean_string(json_object_get(body, "token"), MAX_TOKEN)) == NULL ||
        e->token[0] == '\0')
        return bad_field(r, "token", "must be the enrollment token (a string)");
    v = json_object_get(body, "csr");
    if ((e->csr = json_string_value(v)) == NULL || json_string_length(v) == 0 ||
        json_string_length(v) > MAX_CSR || strlen(e->csr) != json_string_length(v))
        return bad_field(r, "csr", "must be a PEM certificate request of at most 16 KiB");
    e->csr_len = json_string_length(v);
    if ((e->hostname = clean_string(json_object_get(body, "hostname"), MAX_HOSTNAME)) == NULL)
        return bad_field(r, "hostname", "must be a string of at most 255 bytes");
    e->machine_key = "";
    if ((v = json_object_get(body, "machine_key")) != NULL && !json_is_null(v) &&
        (e->machine_key = clean_string(v, MAX_MACHINE_KEY)) == NULL)
        return bad_field(r, "machine_key", "must be a string of at most 128 bytes");
    e->machine_id = "";
    if ((v = json_object_get(body, "machine_id")) != NULL && !json_is_null(v) &&
        ((e->machine_id = clean_string(v, 36)) == NULL ||
         (e->machine_id[0] != '\0' && !looks_like_uuid(e->machine_id))))
        return bad_field(r, "machine_id", "must be the machine id the server issued");
    return 0;
}

int api_enroll(struct srv_req *r)
{
    struct enroll e;
    memset(&e, 0, sizeof(e));
    if (r->srv->pki == NULL)
        return srv_reply_error(r, 503, "unavailable", "the certificate authority is not loaded");
    json_t *body = srv_body_json(r);
    json_t *reply = NULL;
    if (body == NULL)
        return 0;
    if (enroll_read_body(r, body, &e) != 0)
        goto out;
    int rc = enroll_once(r, &e);
    if (rc == STORE_EBUSY)
        rc = enroll_once(r, &e);
    if (rc < 0) {
        srv_reply_store_error(r, rc);
        goto out;
    }
    if (rc == 1) {
        if (e.field != NULL)
            srv_reply_field(r, e.field, e.message);
        else
            srv_reply_error(r, e.status, e.code, "%s", e.message);
        goto out;
    }
    const char *ca = srv_pki_ca_pem(r->srv->pki);
    const char *key = r->srv->signer != NULL ? srv_signer_public_b64(r->srv->signer) : NULL;
    const char *key_id = r->srv->signer != NULL ? srv_signer_key_id(r->srv->signer) : NULL;
    reply = json_pack("{s:s,s:s,s:s?,s:s?,s:s?,s:{s:I,s:s,s:s},s:I,s:b}", "machine_id", e.id,
                      "certificate", e.cert_pem, "ca", ca, "bundle_key", key, "key_id", key_id,
                      "agency", "id", (json_int_t)e.agency_id, "code", e.agency_code, "name",
                      e.agency_name, "checkin_interval", (json_int_t)r->srv->cfg.checkin_interval,
                      "reenrolled", e.reenrolled);
    srv_reply_json(r, 200, reply); /* a NULL reply becomes a 500 */
out:
    free(e.cert_pem);
    json_decref(body);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* POST /api/v1/agent/checkin                                                */
/* ------------------------------------------------------------------------ */

struct text_field {
    const char *name;
    size_t max;
};

/* The check-in's text fields and their caps, in the order of the UPDATE's
 * parameters $2.. below. */
static const struct text_field checkin_texts[] = {
    {"hostname", MAX_HOSTNAME},
    {"os", 255},
    {"kernel", 255},
    {"arch", 64},
    {"agent_version", 64},
    {"machine_key", MAX_MACHINE_KEY},
};
#define N_CHECKIN_TEXTS (sizeof(checkin_texts) / sizeof(checkin_texts[0]))

/* Counts and sizes that are only kept in the inventory document. */
static const char *const checkin_counts[] = {"cpus", "mem_bytes"};

static int is_address_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ':' ||
           c == '.' || c == '%' || c == '_' || c == '-' || c == '/';
}

/* Joins an array of addresses with spaces into *out (malloc'd), or leaves
 * *out NULL when the field is absent. Returns 0, or -1 after replying. */
static int join_addresses(struct srv_req *r, json_t *body, const char *name, char **out)
{
    const json_t *arr = json_object_get(body, name);
    *out = NULL;
    if (arr == NULL || json_is_null(arr))
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) > MAX_ADDRESSES)
        return bad_field(r, name, "must be an array of at most 64 strings");
    char *text = calloc(1, MAX_ADDRESSES * (MAX_ADDRESS + 1) + 1);
    if (text == NULL)
        return bad_request(r, 500, "internal", "out of memory");
    size_t len = 0, i;
    const json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        int ok = s != NULL && n > 0 && n <= MAX_ADDRESS && strlen(s) == n;
        for (size_t k = 0; ok && k < n; k++)
            ok = is_address_char(s[k]);
        if (!ok) {
            free(text);
            return bad_field(r, name, "entries must be addresses of at most 64 characters");
        }
        if (len > 0)
            text[len++] = ' ';
        memcpy(text + len, s, n);
        len += n;
    }
    text[len] = '\0';
    *out = text;
    return 0;
}

/* Binds a non-negative integer field, or NULL when it is absent, so that
 * the UPDATE keeps the stored value. Returns 0, 1 for a bad value, or a
 * negative store code. */
static int bind_count(struct store_stmt *st, int idx, const json_t *v)
{
    if (v == NULL || json_is_null(v))
        return store_bind_null(st, idx);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return 1;
    return store_bind_int(st, idx, json_integer_value(v));
}

/* Booleans also accept 0 and 1, which some agents send. */
static int bind_flag(struct store_stmt *st, int idx, const json_t *v)
{
    if (v == NULL || json_is_null(v))
        return store_bind_null(st, idx);
    if (json_is_boolean(v))
        return store_bind_int(st, idx, json_is_true(v) ? 1 : 0);
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
        return store_bind_int(st, idx, json_integer_value(v));
    return 1;
}

/* Checks every field of the inventory; replies and returns -1 on the first
 * bad one. */
static int checkin_validate(struct srv_req *r, json_t *body)
{
    for (size_t i = 0; i < N_CHECKIN_TEXTS; i++) {
        const json_t *v = json_object_get(body, checkin_texts[i].name);
        if (v != NULL && !json_is_null(v) && clean_string(v, checkin_texts[i].max) == NULL) {
            char problem[64];
            snprintf(problem, sizeof(problem), "must be a string of at most %zu bytes",
                     checkin_texts[i].max);
            return bad_field(r, checkin_texts[i].name, problem);
        }
    }
    for (size_t i = 0; i < sizeof(checkin_counts) / sizeof(checkin_counts[0]); i++) {
        const json_t *v = json_object_get(body, checkin_counts[i]);
        if (v != NULL && !json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) < 0))
            return bad_field(r, checkin_counts[i], "must be a non-negative integer");
    }
    const json_t *role = json_object_get(body, "role");
    if (role != NULL && !json_is_null(role) &&
        (!json_is_string(role) || (strcmp(json_string_value(role), "agent") != 0 &&
                                   strcmp(json_string_value(role), "sensor") != 0)))
        return bad_field(r, "role", "must be \"agent\" or \"sensor\"");
    const json_t *cpu = json_object_get(body, "cpu");
    if (cpu != NULL && !json_is_null(cpu) && clean_string(cpu, 255) == NULL)
        return bad_field(r, "cpu", "must be a string of at most 255 bytes");
    size_t size = json_dumpb(body, NULL, 0, JSON_COMPACT);
    if (size == 0 || size > MAX_INVENTORY)
        return bad_request(r, 413, "too_large", "the check-in document is over 64 KiB");
    return 0;
}

/* Binds $2..$17 of the check-in UPDATE. Returns 0, or -1 after replying. */
static int checkin_bind(struct srv_req *r, struct store_stmt *st, json_t *body, const char *ips,
                        const char *macs, const char *inventory)
{
    static const char *const counts[] = {"db_version", "db_time", "last_full_scan"};
    static const char *const flags[] = {"rtp", "firewall"};
    int idx = 2, rc;
    for (size_t i = 0; i < N_CHECKIN_TEXTS; i++) {
        const char *s = json_string_value(json_object_get(body, checkin_texts[i].name));
        /* An empty machine key would erase the one enrollment recorded. */
        if (s != NULL && s[0] == '\0' && strcmp(checkin_texts[i].name, "machine_key") == 0)
            s = NULL;
        if ((rc = store_bind_text(st, idx++, s)) < 0)
            return bad_store(r, rc);
    }
    for (size_t i = 0; i < 3; i++) {
        if ((rc = bind_count(st, idx++, json_object_get(body, counts[i]))) < 0)
            return bad_store(r, rc);
        if (rc == 1)
            return bad_field(r, counts[i], "must be a non-negative integer");
    }
    for (size_t i = 0; i < 2; i++) {
        if ((rc = bind_flag(st, idx++, json_object_get(body, flags[i]))) < 0)
            return bad_store(r, rc);
        if (rc == 1)
            return bad_field(r, flags[i], "must be true or false");
    }
    if ((rc = store_bind_text(st, idx++, ips)) < 0 || (rc = store_bind_text(st, idx++, macs)) < 0 ||
        (rc = store_bind_text(st, idx++, inventory)) < 0 ||
        (rc = store_bind_int(st, idx++, srv_now())) < 0 ||
        (rc = store_bind_text(st, idx++, json_string_value(json_object_get(body, "role")))) < 0)
        return bad_store(r, rc);
    return 0;
}

/* Adds the machine's policy and its version to the check-in answer: the
 * policy of the nearest agency up the tree that has one (policy.c). A
 * stored policy that cannot be read is left out rather than replaced by the
 * default, so that the agent keeps the last one it was given; the check-in
 * itself has succeeded and must still answer. Returns 0, or -1 when out of
 * memory. */
static int checkin_policy(struct srv_req *r, int64_t agency_id, json_t *reply)
{
    json_t *policy = NULL;
    int64_t from = 0;
    char version[POLICY_VERSION_LEN + 1];
    int rc = policy_effective(r->db, agency_id, &policy, &from);

    if (rc == STORE_ENOMEM)
        return -1;
    if (rc < 0) {
        srv_log("checkin %s: the policy of agency %lld (from %lld) cannot be read: %s",
                r->who.machine_id, (long long)agency_id, (long long)from,
                rc == STORE_EINVAL ? "it does not validate" : store_errmsg(r->db));
        return 0;
    }
    if (policy_version(policy, version) != 0 ||
        json_object_set_new(reply, "policy_version", json_string(version)) != 0) {
        json_decref(policy);
        return -1;
    }
    /* set_new takes the policy whether or not it succeeds. */
    return json_object_set_new(reply, "policy", policy) == 0 ? 0 : -1;
}

int api_agent_checkin(struct srv_req *r)
{
    int rc;
    struct store_stmt *st = NULL;
    char *ips = NULL, *macs = NULL, *inventory = NULL;
    json_t *reply = NULL, *bundle = NULL;
    json_t *body = srv_body_json(r);
    if (body == NULL)
        return 0;
    if (checkin_validate(r, body) != 0 || join_addresses(r, body, "ips", &ips) != 0 ||
        join_addresses(r, body, "macs", &macs) != 0)
        goto out;
    /* The hardware key identifies the machine at re-enrollment, so it is
     * kept in its own column and left out of the document the dashboard
     * shows. */
    json_t *shown = json_copy(body);
    if (shown != NULL)
        json_object_del(shown, "machine_key");
    inventory = shown != NULL ? json_dumps(shown, JSON_COMPACT) : NULL;
    json_decref(shown);
    if (inventory == NULL) {
        srv_reply_error(r, 500, "internal", "out of memory");
        goto out;
    }
    if ((rc = store_prepare(r->db,
                            "UPDATE machines SET hostname = COALESCE($2, hostname), os = "
                            "COALESCE($3, os), kernel = COALESCE($4, kernel), arch = COALESCE($5, "
                            "arch), agent_version = COALESCE($6, agent_version), machine_key = "
                            "COALESCE($7, machine_key), db_version = COALESCE($8, db_version), "
                            "db_time = COALESCE($9, db_time), last_full_scan = COALESCE($10, "
                            "last_full_scan), rtp = COALESCE($11, rtp), firewall = COALESCE($12, "
                            "firewall), ips = COALESCE($13, ips), macs = COALESCE($14, macs), "
                            "inventory = $15, last_seen = $16, role = COALESCE($17, role) "
                            "WHERE id = $1 AND retired = 0 RETURNING agency_id, role",
                            &st)) < 0 ||
        (rc = store_bind_text(st, 1, r->who.machine_id)) < 0) {
        srv_reply_store_error(r, rc);
        goto out;
    }
    if (checkin_bind(r, st, body, ips, macs, inventory) != 0)
        goto out;
    /* The row comes back exactly when the machine was updated (on SQLite a
     * RETURNING statement's change count is only final once it is done, so
     * the row is what says so). */
    if ((rc = store_step(st)) < 0) {
        srv_reply_store_error(r, rc);
        goto out;
    }
    if (rc != STORE_ROW) {
        srv_reply_error(r, 401, "unauthorized", "this machine is not enrolled");
        goto out;
    }
    int64_t agency_id = store_col_int(st, 0);
    const char *role = store_col_text(st, 1);
    int sensor = role != NULL && strcmp(role, "sensor") == 0;
    store_finalize(st);
    st = NULL;
    int64_t pending = 0;
    struct srv_bundle_info info;
    memset(&info, 0, sizeof(info));
    if ((rc = store_query_int(r->db, &pending,
                              "SELECT COUNT(*) FROM tasks WHERE machine_id = $1 AND state = "
                              "'pending'",
                              "t", r->who.machine_id)) < 0 ||
        (rc = srv_bundle_latest(r->db, &info)) < 0) {
        srv_reply_store_error(r, rc);
        goto out;
    }
    bundle = rc == STORE_ROW ? bundle_json(&info) : json_null();
    reply = json_pack("{s:I,s:I,s:I,s:o}", "server_time", (json_int_t)srv_now(), "checkin_interval",
                      (json_int_t)r->srv->cfg.checkin_interval, "tasks_pending",
                      (json_int_t)pending, "bundle", bundle);
    bundle = NULL; /* json_pack's "o" took it, even on failure */
    if (reply != NULL && checkin_policy(r, agency_id, reply) != 0) {
        srv_reply_error(r, 500, "internal", "out of memory");
        goto out;
    }
    /* A network sensor files each hit under an agency by the address of the
     * internal host, so it is given every range of the province (c2.c). */
    if (reply != NULL && sensor) {
        json_t *networks = NULL;
        if ((rc = c2_networks_for_sensor(r->db, &networks)) < 0) {
            srv_reply_store_error(r, rc);
            goto out;
        }
        if (json_object_set_new(reply, "networks", networks) != 0) {
            srv_reply_error(r, 500, "internal", "out of memory");
            goto out;
        }
    }
    srv_reply_json(r, 200, reply); /* a NULL reply becomes a 500 */
    reply = NULL;
out:
    store_finalize(st);
    free(ips);
    free(macs);
    free(inventory);
    json_decref(bundle);
    json_decref(reply);
    json_decref(body);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* GET /api/v1/agent/tasks and POST /api/v1/agent/tasks/{id}/result          */
/* ------------------------------------------------------------------------ */

/* Reads the pending tasks into `items` and marks each one sent, in one
 * transaction so that two overlapping fetches cannot both hand out a task. */
static int tasks_take(struct store_db *db, const char *machine_id, json_t *items)
{
    struct store_stmt *st = NULL;
    int64_t now = srv_now();
    int rc;
    if ((rc = store_begin_write(db)) < 0)
        goto out;
    if ((rc = store_queryf(db, &st,
                           "SELECT id, kind, args, created_at FROM tasks WHERE machine_id = $1 "
                           "AND state = 'pending' ORDER BY id LIMIT 100",
                           "t", machine_id)) < 0)
        goto out;
    while (rc == STORE_ROW) {
        const char *args_text = store_col_text(st, 2);
        json_t *args = args_text != NULL ? json_loads(args_text, 0, NULL) : NULL;
        json_t *item = json_pack("{s:I,s:s,s:o,s:I}", "id", (json_int_t)store_col_int(st, 0),
                                 "kind", store_col_text(st, 1) ? store_col_text(st, 1) : "", "args",
                                 args != NULL ? args : json_object(), "created_at",
                                 (json_int_t)store_col_int(st, 3));
        if (item == NULL || json_array_append_new(items, item) != 0) {
            rc = STORE_ENOMEM;
            goto out;
        }
        if (json_array_size(items) >= MAX_TASKS_PER_FETCH)
            break;
        rc = store_step(st);
    }
    if (rc < 0)
        goto out;
    store_finalize(st);
    st = NULL;
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        int64_t id = json_integer_value(json_object_get(item, "id"));
        if ((rc = store_execf(db, NULL,
                              "UPDATE tasks SET state = 'sent', sent_at = $2 WHERE id = $1 AND "
                              "state = 'pending'",
                              "ii", id, now)) < 0)
            goto out;
    }
    rc = store_commit(db);
out:
    store_finalize(st);
    if (rc < 0) {
        store_rollback(db);
        json_array_clear(items);
    }
    return rc;
}

int api_agent_tasks(struct srv_req *r)
{
    json_t *items = json_array();
    if (items == NULL)
        return srv_reply_error(r, 500, "internal", "out of memory");
    int rc = tasks_take(r->db, r->who.machine_id, items);
    if (rc == STORE_EBUSY)
        rc = tasks_take(r->db, r->who.machine_id, items);
    if (rc < 0) {
        json_decref(items);
        return srv_reply_store_error(r, rc);
    }
    return srv_reply_json(r, 200, json_pack("{s:o}", "items", items));
}

struct task_result {
    int64_t id;
    const char *state; /* running, done or failed */
    int64_t progress;  /* -1 when not sent */
    char *result;      /* compact JSON, malloc'd; NULL when not sent */
};

static int task_result_read(struct srv_req *r, json_t *body, struct task_result *t)
{
    const char *state = json_string_value(json_object_get(body, "state"));
    if (state == NULL || (strcmp(state, "running") != 0 && strcmp(state, "done") != 0 &&
                          strcmp(state, "failed") != 0))
        return bad_field(r, "state", "must be running, done or failed");
    t->state = state;
    const json_t *progress = json_object_get(body, "progress");
    t->progress = -1;
    if (progress != NULL && !json_is_null(progress)) {
        if (!json_is_integer(progress) || json_integer_value(progress) < 0 ||
            json_integer_value(progress) > 100)
            return bad_field(r, "progress", "must be an integer from 0 to 100");
        t->progress = json_integer_value(progress);
    }
    const json_t *result = json_object_get(body, "result");
    if (result != NULL && !json_is_null(result)) {
        size_t size = json_dumpb(result, NULL, 0, JSON_COMPACT);
        if (size == 0 || size > MAX_TASK_RESULT)
            return bad_request(r, 413, "too_large", "the task result is over 64 KiB");
        if ((t->result = json_dumps(result, JSON_COMPACT)) == NULL)
            return bad_request(r, 500, "internal", "out of memory");
    }
    return 0;
}

/* Applies the result in one transaction. Returns 0, a status to reply with
 * (404 or 409, *why set), or a negative store code. */
static int task_result_apply(struct store_db *db, const char *machine_id,
                             const struct task_result *t, const char **why)
{
    char *current = NULL;
    int64_t now = srv_now(), changes = 0;
    int rc;
    int final = strcmp(t->state, "running") != 0;
    if ((rc = store_begin_write(db)) < 0)
        goto out;
    rc = store_query_text(db, &current, "SELECT state FROM tasks WHERE id = $1 AND machine_id = $2",
                          "it", t->id, machine_id);
    if (rc < 0)
        goto out;
    if (rc == STORE_DONE || current == NULL) {
        *why = "no such task for this machine";
        rc = 404;
        goto out;
    }
    if (strcmp(current, "pending") != 0 && strcmp(current, "sent") != 0) {
        /* The same final answer sent twice (the agent did not see our
         * reply) is fine; anything else contradicts what is recorded. */
        if (strcmp(current, t->state) == 0) {
            rc = store_commit(db);
            goto out;
        }
        *why = strcmp(current, "cancelled") == 0 ? "the task was cancelled"
                                                 : "the task has already finished";
        rc = 409;
        goto out;
    }
    int64_t progress = t->progress;
    if (progress < 0 && strcmp(t->state, "done") == 0)
        progress = 100;
    /* NULL parameters keep the stored values: a running report leaves the
     * task in state 'sent' without done_at, and an absent progress or result
     * keeps the last one. */
    static const char sql[] =
        "UPDATE tasks SET state = $3, sent_at = COALESCE(sent_at, $4), done_at = COALESCE($5, "
        "done_at), progress = COALESCE($6, progress), result = COALESCE($7, result) WHERE id = "
        "$1 AND machine_id = $2 AND state IN ('pending', 'sent')";
    const char *state = final ? t->state : "sent";
    if (final && progress >= 0)
        rc = store_execf(db, &changes, sql, "ittiiit", t->id, machine_id, state, now, now, progress,
                         t->result);
    else if (final)
        rc = store_execf(db, &changes, sql, "ittiint", t->id, machine_id, state, now, now,
                         t->result);
    else if (progress >= 0)
        rc = store_execf(db, &changes, sql, "ittinit", t->id, machine_id, state, now, progress,
                         t->result);
    else
        rc = store_execf(db, &changes, sql, "ittinnt", t->id, machine_id, state, now, t->result);
    if (rc < 0)
        goto out;
    if (changes != 1) {
        *why = "the task changed meanwhile";
        rc = 409;
        goto out;
    }
    rc = store_commit(db);
out:
    if (rc != 0)
        store_rollback(db);
    free(current);
    return rc;
}

int api_agent_task_result(struct srv_req *r)
{
    struct task_result t;
    memset(&t, 0, sizeof(t));
    const char *why = "";
    json_t *body = NULL;
    if ((t.id = srv_route_id(r)) == 0)
        return srv_reply_error(r, 404, "not_found", "no such task for this machine");
    if ((body = srv_body_json(r)) == NULL)
        return 0;
    if (task_result_read(r, body, &t) != 0)
        goto out;
    int rc = task_result_apply(r->db, r->who.machine_id, &t, &why);
    if (rc == STORE_EBUSY)
        rc = task_result_apply(r->db, r->who.machine_id, &t, &why);
    if (rc < 0)
        srv_reply_store_error(r, rc);
    else if (rc == 404)
        srv_reply_error(r, 404, "not_found", "%s", why);
    else if (rc == 409)
        srv_reply_error(r, 409, "conflict", "%s", why);
    else
        srv_reply_json(r, 200, json_pack("{s:b}", "ok", 1));
out:
    free(t.result);
    json_decref(body);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* POST /api/v1/agent/events                                                 */
/* ------------------------------------------------------------------------ */

int api_agent_events(struct srv_req *r)
{
    json_t *report = NULL;
    json_t *body = srv_body_json(r);
    if (body == NULL)
        return 0;
    const json_t *events = json_object_get(body, "events");
    if (!json_is_array(events)) {
        srv_reply_field(r, "events", "must be an array of events");
        goto out;
    }
    if (json_array_size(events) > SRV_INGEST_MAX_EVENTS) {
        srv_reply_error(r, 413, "too_large",
                        "a batch holds at most %d events; this one has %zu: split it",
                        SRV_INGEST_MAX_EVENTS, json_array_size(events));
        goto out;
    }
    if ((report = json_object()) == NULL) {
        srv_reply_error(r, 500, "internal", "out of memory");
        goto out;
    }
    int rc = srv_ingest_events(r->db, r->who.machine_id, events, srv_now(), report);
    if (rc == STORE_EINVAL) {
        /* The router authenticated the machine, so it vanished since. */
        srv_reply_error(r, 401, "unauthorized", "this machine is not enrolled");
        goto out;
    }
    if (rc < 0) {
        srv_reply_store_error(r, rc);
        goto out;
    }
    srv_reply_json(r, 200, report);
    report = NULL;
out:
    json_decref(report);
    json_decref(body);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Bundles                                                                   */
/* ------------------------------------------------------------------------ */

int api_agent_bundle_latest(struct srv_req *r)
{
    struct srv_bundle_info info;
    memset(&info, 0, sizeof(info));
    int rc = srv_bundle_latest(r->db, &info);
    if (rc < 0)
        return srv_reply_store_error(r, rc);
    if (rc != STORE_ROW)
        return srv_reply_error(r, 404, "not_found", "no bundle has been published yet");
    json_t *body = bundle_json(&info);
    if (body == NULL)
        return srv_reply_error(r, 500, "internal", "out of memory");
    return srv_reply_json(r, 200, body);
}

/* True when an If-None-Match header names the entity tag "sha256" (strong or
 * weak), or is "*". The header is a comma-separated list of quoted tags. */
static int etag_matches(const char *header, const char *sha256)
{
    size_t shalen = strlen(sha256);
    const char *p = header;
    while (p != NULL && *p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (*p == '"' && strncmp(p + 1, sha256, shalen) == 0 && p[1 + shalen] == '"')
            return 1;
        p = strchr(p, ',');
    }
    return 0;
}

int api_agent_bundle_get(struct srv_req *r)
{
    struct srv_bundle_info info;
    memset(&info, 0, sizeof(info));
    int64_t version = srv_route_id(r);
    char *sha256 = NULL;
    char etag[80];
    int fd = -1, rc;
    if (version == 0)
        return srv_reply_error(r, 404, "not_found", "no such bundle version");
    /* Answering 304 from the database row spares writing the cache file
     * for an agent that already has this version. */
    const char *inm = srv_header(r, "If-None-Match");
    if (inm != NULL) {
        rc = store_query_text(r->db, &sha256, "SELECT sha256 FROM bundles WHERE version = $1", "i",
                              version);
        if (rc < 0)
            return srv_reply_store_error(r, rc);
        if (rc == STORE_ROW && sha256 != NULL && etag_matches(inm, sha256)) {
            snprintf(etag, sizeof(etag), "\"%s\"", sha256);
            free(sha256);
            srv_add_header(r, "ETag", etag);
            return srv_reply_status(r, 304);
        }
        free(sha256);
    }
    rc = srv_bundle_open(r->srv, r->db, version, &info, &fd);
    if (rc < 0)
        return srv_reply_store_error(r, rc);
    if (rc == STORE_DONE || fd < 0)
        return srv_reply_error(r, 404, "not_found", "no such bundle version");
    snprintf(etag, sizeof(etag), "\"%s\"", info.sha256);
    srv_add_header(r, "ETag", etag);
    /* A version never changes once published, so caches may keep it. */
    srv_add_header(r, "Cache-Control", "private, max-age=31536000, immutable");
    return srv_reply_fd(r, 200, "application/octet-stream", fd, (uint64_t)info.size);
}

/* ------------------------------------------------------------------------ */
/* Public: the bundle-signing key and the health check.                     */
/* ------------------------------------------------------------------------ */

int api_bundle_key(struct srv_req *r)
{
    if (r->srv->signer == NULL)
        return srv_reply_error(r, 503, "unavailable", "the bundle-signing key is not loaded");
    json_t *body = json_pack("{s:s,s:s}", "key_id", srv_signer_key_id(r->srv->signer), "public_key",
                             srv_signer_public_b64(r->srv->signer));
    if (body == NULL)
        return srv_reply_error(r, 500, "internal", "out of memory");
    return srv_reply_json(r, 200, body);
}

int api_health(struct srv_req *r)
{
    int schema = 0;
    const char *backend = "sqlite";
    /* A server that cannot read its database is not healthy, whatever else
     * works: load balancers should take it out of rotation. */
    if (r->db == NULL || store_schema_version(r->db, &schema) != 0)
        return srv_reply_json(r, 503,
                              json_pack("{s:s,s:s}", "status", "error", "version", KHIEN_VERSION));
    if (store_kind(r->db) == STORE_POSTGRES)
        backend = "postgresql";
    return srv_reply_json(r, 200,
                          json_pack("{s:s,s:s,s:i,s:s}", "status", "ok", "version", KHIEN_VERSION,
                                    "schema", schema, "backend", backend));
}
