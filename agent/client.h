/*
 * The agent's HTTPS client (client_): every call to the management server,
 * with libcurl over mutual TLS (the machine's certificate from enrollment,
 * the server checked against the enrollment CA). The server's API is in
 * docs/api/agent.md; this file knows the transport and the enrollment
 * exchange, the daemon (agent.c) knows what to send when.
 */
#ifndef KHIEN_AGENT_CLIENT_H
#define KHIEN_AGENT_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct client_opts {
    const char *server;    /* "https://host:8443" (the /api/v1 prefix is added) */
    const char *ca_file;   /* trusted CA (PEM); NULL = the system's trust store */
    const char *cert_file; /* client certificate (PEM); NULL before enrollment */
    const char *key_file;  /* its private key (PEM) */
    unsigned timeout_s;    /* whole-request timeout; 0 = 30 */
};

struct client;

int client_new(const struct client_opts *opts, struct client **out, char *err, size_t errlen);
void client_free(struct client *c);

struct client_resp {
    long status; /* HTTP status; 0 when the request did not complete */
    char *body;  /* malloc'd, NUL-terminated; NULL when empty */
    size_t len;
    unsigned retry_after; /* seconds from Retry-After, 0 when absent */
    char error[256];      /* transport error ("connection refused", ...) when status is 0 */
};

/* One request to `path` under /api/v1 ("/agent/checkin"). `body` (may be
 * NULL) is JSON, sent gzip'd when `gzip`. Returns KH_OK when an HTTP answer
 * came (whatever its status), KH_EIO with resp->error otherwise. Responses
 * over 16 MiB are refused. Not thread-safe: one client per thread.
 * Also: `method` is "GET" or "POST" (KH_EINVAL otherwise); *resp is
 * overwritten (free an earlier answer first) and freed by the caller with
 * client_resp_free; a request body over 16 MiB or an answer over 16 MiB
 * gives KH_ELIMIT with resp->error. */
int client_call(struct client *c, const char *method, const char *path, const char *body,
                size_t len, int gzip, struct client_resp *resp);
void client_resp_free(struct client_resp *resp);

/* Downloads `path` into the file `dest` (created 0600, replaced atomically
 * only on a 200 answer), at most max_bytes. *status gets the HTTP status.
 * KH_OK when an answer came; KH_ELIMIT over max_bytes; KH_EIO otherwise. */
int client_download(struct client *c, const char *path, const char *dest, uint64_t max_bytes,
                    long *status, char *err, size_t errlen);

struct enroll_request {
    const char *server;
    const char *ca_file; /* NULL = system trust store */
    const char *token;
    const char *hostname;
    const char *machine_key; /* may be NULL */
    const char *machine_id;  /* from a previous enrollment, may be NULL */
    const char *state_dir;   /* where agent.key, agent.crt and ca.crt are written */
};

struct enroll_result {
    char machine_id[64];
    char key_id[17];
    char bundle_key[64]; /* base64 Ed25519 public key */
    char agency_code[128];
    char agency_name[256];
    int checkin_interval;
    int reenrolled;
};

/* Creates an EC P-256 key (state_dir/agent.key, 0600) and a certificate
 * request, sends POST /enroll, and writes the answer's certificate
 * (agent.crt) and CA (ca.crt). On failure err says what the server or the
 * network answered, and no file of an earlier enrollment is replaced.
 * Returns KH_OK; KH_EINVAL when the server refused (4xx: the token or the
 * request is wrong, a person must act: "enrollment refused (403): this
 * enrollment token has expired"); KH_EIO for a network error or another
 * status (worth retrying); KH_EFORMAT for an answer that is malformed or
 * whose certificate is not for this key or not signed by its CA. */
int client_enroll(const struct enroll_request *req, struct enroll_result *res, char *err,
                  size_t errlen);

/* Parses the answer to POST /enroll (untrusted input) into *res and the
 * certificate and CA PEM texts (malloc'd, the caller frees them; set only
 * on success). Returns KH_OK or KH_EFORMAT with err naming the field.
 * client_enroll uses it; exposed for the fuzz target. */
int client_parse_enroll_answer(const char *body, size_t len, struct enroll_result *res,
                               char **cert_pem, char **ca_pem, char *err, size_t errlen);

/* Reads a Retry-After value (delta-seconds or an HTTP date, relative to
 * `now`); 0 when absent or malformed, at most one day. */
unsigned client_parse_retry_after(const char *value, size_t len, time_t now);

#endif
