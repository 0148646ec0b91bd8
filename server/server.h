/*
 * The management server's shared declarations: its configuration, the
 * request and response that every handler sees, the route table, and the
 * helpers handlers use (JSON replies, errors, the caller's identity and
 * scope, the audit log). Names carry a `srv_` prefix; the store has its own
 * (`store_`, store/store.h) and knows nothing of HTTP.
 *
 * Flow of one request: http.c (libmicrohttpd, TLS, body collection with a
 * size cap, gzip decoding) -> router.c (match the route table in routes.c,
 * authenticate by the route's flags, lend a database connection) -> one
 * api_*.c handler -> a srv_resp that http.c queues.
 */
#ifndef KHIEN_SERVER_H
#define KHIEN_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store/store.h"

/* ------------------------------------------------------------------------ */
/* Configuration (config.c): a `key = value` file, see docs/SERVER.md.      */
/* ------------------------------------------------------------------------ */

/* Reports, the infection index, sharing with the national system and
 * federation with a parent server (issue 7; parsed by report/config.c, keys
 * in docs/SERVER.md). Whatever the regulations leave uncertain (the index's
 * weights, the deadline, the receiver's address) is a key here, not code. */
struct srv_report_config {
    int utc_offset;      /* seconds east of UTC of months, quarters and deadlines; default +07:00 */
    unsigned stale_days; /* a machine whose database is older is "not updated"; default 15 */
    char index_formula[512]; /* the index as an expression of the components (report/index.h) */
    unsigned deadline_day;   /* the quarterly report is due before this day of the quarter's last
                                month; default 20 */
    unsigned reminder_day;   /* the dashboard reminds from this day of that month; default 1 */
    /* The province's identity: report headers, the edXML From, federation. */
    char org_id[64]; /* e.g. 000.00.00.H34 */
    char org_name[256];
    char org_address[256];
    char org_email[128];
    char org_phone[64];
    char org_fax[64];
    char org_website[256];
    char org_place[128];   /* the place on the report's date line, e.g. "Kon Tum" */
    char product_name[64]; /* AVReport@name; default "Khien" */
    /* Sharing with the national malware monitoring system (report/sharing.c). */
    char share_url[512];     /* HTTPS endpoint; empty = sharing off */
    unsigned share_interval; /* one submission per interval; default 1 d */
    unsigned share_retry;    /* first retry after a failure, doubling to 6 h; default 10 min */
    char share_pkcs12[600];  /* signing key + certificate as a PKCS#12 file, or: */
    char share_pkcs12_pass_file[600];
    char share_pkcs11_module[600]; /* a PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so) */
    char share_pkcs11_key[600];    /* the key on the token, as a pkcs11: URI */
    char share_pkcs11_pin_file[600];
    char share_cert[600]; /* the signing certificate (PEM) when the key is on a token */
    char share_ca[600];   /* CA bundle for the receiver's certificate; default: the system's */
    char share_reject_text[128]; /* a 200 whose body contains this is a failure; empty = any 200 */
    /* Federation: push aggregated statistics to a parent server (report/federation.c). */
    char parent_url[512];        /* the parent's public URL; empty = no parent */
    char parent_token_file[600]; /* the token the parent issued to this province */
    char parent_ca[600];         /* CA bundle for the parent's certificate; default: the system's */
    unsigned parent_interval;    /* default 1 h */
};

/* Defaults, and one `key = value` of the server's configuration file:
 * 0 when set, -1 for a bad value, -2 when the key is not a report key. */
void srv_report_config_defaults(struct srv_report_config *c);
/* A duration with an s/m/h/d suffix (none = seconds), at most 10 years. */
int srv_parse_duration(const char *v, unsigned *out);
int srv_report_config_set(struct srv_report_config *c, const char *key, const char *value);

struct srv_config {
    char data_dir[512];    /* keys and certificates live here */
    char database[1024];   /* store URL; default sqlite://DATA/khien.db */
    char listen[128];      /* "ADDR:PORT", default 0.0.0.0:8443 */
    char public_url[320];  /* how agents and browsers reach us, e.g. https://khien.example:8443 */
    char tls_cert[600];    /* server certificate (PEM); default DATA/server.crt */
    char tls_key[600];     /* its key; default DATA/server.key */
    unsigned threads;      /* HTTP worker threads; default 2 x cores, at least 4 */
    uint64_t max_body;     /* request body cap in bytes (after gzip); default 8 MiB */
    uint64_t max_upload;   /* signature source upload cap; default 256 MiB */
    unsigned keep_bundles; /* published versions kept; default 5 */
    unsigned session_ttl;  /* seconds; default 8 h */
    unsigned checkin_interval; /* seconds agents are told to wait; default 60 */
    unsigned offline_after;    /* seconds without check-in before "offline"; default 3 x interval */
    unsigned cert_days;        /* client certificate lifetime; default 825 */
    struct srv_report_config report;
};

/* Fills defaults for data_dir, then reads `path` if not NULL, then applies
 * `listen` (a command-line override) if not NULL, then derives what was not
 * set (database, certificate paths, public_url from listen, offline_after).
 * Unknown keys and bad values are errors naming file:line. Returns 0 or -1
 * with err set. */
int srv_config_load(struct srv_config *cfg, const char *data_dir, const char *path,
                    const char *listen, char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* The running server (server.c).                                            */
/* ------------------------------------------------------------------------ */

struct srv_pki;    /* pki.h: the CA, the server certificate */
struct srv_signer; /* bundle.h: the Ed25519 bundle-signing key */
struct srv_pool;   /* database connection pool */

struct srv {
    struct srv_config cfg;
    struct srv_pki *pki;
    struct srv_signer *signer;
    struct srv_pool *pool;
    volatile int stopping;
};

/* ------------------------------------------------------------------------ */
/* Requests and responses (http.c).                                          */
/* ------------------------------------------------------------------------ */

enum srv_role {
    SRV_ROLE_NONE = 0,
    SRV_ROLE_AUDITOR = 1, /* reads everything in scope, changes nothing */
    SRV_ROLE_OFFICER = 2, /* an agency's IT officer: acts on its own subtree */
    SRV_ROLE_ADMIN = 3,   /* province administrator */
};

/* Who is calling, set by the router before the handler runs. */
struct srv_principal {
    enum srv_role role; /* SRV_ROLE_NONE for agents and anonymous calls */
    int64_t user_id;    /* 0 when not a user */
    char username[64];
    int64_t agency_id;    /* scope root; 0 = the whole province */
    char scope_path[256]; /* LIKE pattern for agencies.path in scope: "/1/4/%" or "%" */
    int via_api_token;    /* authenticated by a Bearer token rather than a cookie */
    char machine_id[64];  /* set for agent routes: from the verified client certificate */
};

struct srv_header {
    char *name;
    char *value;
};

struct srv_resp {
    unsigned status;
    const char *content_type;
    char *body; /* malloc'd; freed by http.c */
    size_t body_len;
    const void *static_body; /* alternatively, data that outlives the response */
    int has_fd;              /* alternatively, a file to send (closed by http.c) */
    int fd;
    uint64_t fd_size;
    struct srv_header headers[8];
    unsigned nheaders;
};

struct srv_req {
    struct srv *srv;
    const char *method;    /* "GET", "POST", ... */
    const char *path;      /* without the query string */
    const char *params[4]; /* the route's {…} segments, NUL-terminated copies */
    unsigned nparams;
    const uint8_t *body; /* the request body, gunzipped; NUL-terminated */
    size_t body_len;
    char remote[64]; /* client address, for the audit log and rate limits */
    void *conn;      /* struct MHD_Connection *, for http.c's accessors */
    /* Unit tests call handlers without a connection: when conn is NULL the
     * accessors read these instead. query_string is "a=1&b=x%20y";
     * fake_headers is a NULL-terminated list of name, value pairs, and a
     * "Cookie" entry there is what srv_cookie() parses. */
    const char *query_string;
    const char *const *fake_headers;
    /* Client certificate, when one was presented and chains to our CA. */
    int client_cert_ok;
    char client_cn[128]; /* the certificate's CN: the machine id */
    char client_cert_sha256[65];
    struct srv_principal who;
    struct store_db *db; /* lent by the router for the handler's duration */
    struct srv_resp resp;
};

/* Request accessors (http.c). Returned strings belong to the request. */
const char *srv_query(struct srv_req *r, const char *name);
const char *srv_header(struct srv_req *r, const char *name);
const char *srv_cookie(struct srv_req *r, const char *name);

/* Parses the body as a JSON object. On failure replies 400 with the parse
 * error's line and column and returns NULL. The caller decrefs. */
json_t *srv_body_json(struct srv_req *r);

/* Responses. Each sets r->resp and returns 0 so handlers can `return
 * srv_reply_json(...)`. srv_reply_json steals the reference to `body`. */
int srv_reply_json(struct srv_req *r, unsigned status, json_t *body);
/* {"error": code, "message": "..."}; code is a short machine-readable word
 * ("bad_request", "field", "not_found", "forbidden", ...). */
int srv_reply_error(struct srv_req *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 400 naming a missing or mistyped field: {"error":"field","field":NAME,...}. */
int srv_reply_field(struct srv_req *r, const char *field, const char *problem);
int srv_reply_bytes(struct srv_req *r, unsigned status, const char *content_type, char *body,
                    size_t len); /* takes ownership of body */
int srv_reply_static(struct srv_req *r, unsigned status, const char *content_type, const void *body,
                     size_t len);                         /* body must outlive the response */
int srv_reply_status(struct srv_req *r, unsigned status); /* empty body, e.g. 204 or 304 */
/* Sends `size` bytes of the open file `fd` (ownership passes to http.c). */
int srv_reply_fd(struct srv_req *r, unsigned status, const char *content_type, int fd,
                 uint64_t size);
/* Adds a response header (copied). At most 8 per response. */
void srv_add_header(struct srv_req *r, const char *name, const char *value);

/* ------------------------------------------------------------------------ */
/* Routing (routes.c, router.c).                                             */
/* ------------------------------------------------------------------------ */

enum srv_route_flags {
    SRV_PUBLIC = 0,      /* no authentication */
    SRV_AGENT = 1 << 0,  /* needs a verified client certificate of a live machine */
    SRV_USER = 1 << 1,   /* needs a session cookie (+CSRF header on writes) or a Bearer token */
    SRV_WRITE = 1 << 2,  /* changes state: auditors are refused with 403 */
    SRV_ADMIN = 1 << 3,  /* province administrators only */
    SRV_UPLOAD = 1 << 4, /* body may be up to cfg.max_upload instead of cfg.max_body */
};

typedef int (*srv_handler)(struct srv_req *r);

struct srv_route {
    const char *method;
    const char *pattern; /* "/api/v1/machines/{}" ; {} matches one path segment */
    unsigned flags;
    srv_handler handler;
};

extern const struct srv_route srv_routes[];
extern const size_t srv_nroutes;

/* The route for a method and path, or NULL (router.c). */
const struct srv_route *srv_route_lookup(const char *method, const char *path);

/* Dispatches a complete request: finds the route (404/405), authenticates
 * (401/403), lends a database connection, runs the handler. Always leaves a
 * response in r->resp. */
void srv_dispatch(struct srv_req *r);

/* ------------------------------------------------------------------------ */
/* Helpers for handlers.                                                     */
/* ------------------------------------------------------------------------ */

int64_t srv_now(void); /* Unix seconds */

/* Appends a row to the audit log: who (from r->who or the machine), from
 * where (r->remote), what and on which target; detail may be NULL (stolen). */
void srv_audit(struct srv_req *r, const char *action, const char *target, json_t *detail);

/* Rate limiting of secrets guessed over the network (api_auth.c), shared
 * by every server process through the login_attempts table: `key` is
 * "user:NAME", "ip:ADDR", ... Seconds until `key` may try again (0 when it
 * is not locked) or a negative store error; and one failure counted, which
 * locks the key for 15 minutes once `limit` fall within 15 minutes. */
int64_t srv_attempt_locked_for(struct store_db *db, const char *key, int64_t now);
int srv_attempt_failed(struct store_db *db, const char *key, int64_t limit, int64_t now);

/* True when agency `agency_id` is inside the caller's scope. */
int srv_agency_in_scope(struct srv_req *r, int64_t agency_id);

/* Field readers for a JSON body that reply 400 naming the field when it is
 * wrong. srv_json_str: a string of at most `max` bytes without embedded NULs
 * (non-empty when required). srv_json_int: an integer in [min, max], null
 * read as 0 when null_ok. Both return 1 when present (*out set), 0 when
 * absent, -1 after replying 400. */
int srv_json_str(struct srv_req *r, json_t *o, const char *name, int required, size_t max,
                 const char **out);
int srv_json_int(struct srv_req *r, json_t *o, const char *name, int null_ok, int64_t min,
                 int64_t max, int64_t *out);

/* Parses ?page=&per_page= (defaults 1 and 50, per_page at most 500). */
void srv_paging(struct srv_req *r, int64_t *limit, int64_t *offset);

/* Replies 500 with the store's message logged (not sent to the client). */
int srv_reply_store_error(struct srv_req *r, int err);

/* Writes a log line to standard error with a timestamp. */
void srv_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
