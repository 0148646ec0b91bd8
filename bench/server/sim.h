/*
 * khien-sim: simulated endpoint agents and a simulated administrator that
 * drive the management server through its documented HTTP API
 * (docs/api/README.md), for `make run` (demo data) and `make bench-server`
 * (10,000 agents on one small machine). docs/internals/sim.md explains the
 * design; this header is shared by the tool's five files:
 *
 *   sim.c        the command line, the administrator's calls and `seed`
 *   sim_run.c    enrollment, the agents' check-in cycle and `run`
 *   sim_net.c    HTTP over one libcurl multi handle: requests in flight,
 *                bodies (gzip), per-endpoint latency and error counts
 *   sim_agent.c  agent identities: EC P-256 keys, CSRs, the state folder
 *   sim_data.c   realistic data: agencies, hostnames, inventories and
 *                ClamAV-style detections, from a seeded generator
 *
 * Everything runs on one thread: the multi handle keeps hundreds of requests
 * in flight without a thread per agent, which is what lets 10,000 agents fit
 * beside the server on two cores. Names carry a `sim_` prefix.
 */
#ifndef KHIEN_SIM_H
#define KHIEN_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "khx.h"

#define SIM_MAX_RESPONSE (32u << 20) /* bytes of one response body we keep */
#define SIM_MAX_BATCH    1000        /* events per POST /agent/events (the server's cap) */
#define SIM_MAX_AGENTS   1000000     /* agents one state folder may hold */
#define SIM_MAX_AGENCIES 9999        /* agencies `seed` creates below the root */

/* ------------------------------------------------------------------------ */
/* Random numbers (sim_data.c): xoshiro256**, reproducible from a seed.      */
/* ------------------------------------------------------------------------ */

struct sim_rng {
    uint64_t s[4];
};

void sim_rng_seed(struct sim_rng *r, uint64_t seed);
/* Seeds from the operating system (event ids must differ between runs). */
void sim_rng_seed_random(struct sim_rng *r);
uint64_t sim_rng_next(struct sim_rng *r);
/* Uniform in [0, n); 0 when n is 0. */
uint64_t sim_rng_below(struct sim_rng *r, uint64_t n);
/* Uniform in [0, 1). */
double sim_rng_unit(struct sim_rng *r);
/* A random version-4 UUID: 36 characters and a NUL. */
void sim_uuid(struct sim_rng *r, char out[37]);

/* ------------------------------------------------------------------------ */
/* HTTP (sim_net.c).                                                         */
/* ------------------------------------------------------------------------ */

/* What latency and errors are counted under. */
enum sim_endpoint {
    SIM_EP_LOGIN,
    SIM_EP_ADMIN, /* agencies, enrollment tokens, tasks: the administrator's calls */
    SIM_EP_ENROLL,
    SIM_EP_CHECKIN,
    SIM_EP_TASKS,
    SIM_EP_RESULT,
    SIM_EP_EVENTS,
    SIM_EP_COUNT
};

struct sim_net;
struct sim_call;

typedef void (*sim_call_done)(struct sim_call *c);

/* One request. It belongs to the net from sim_call_start() until its
 * callback has returned; the net then frees it, unless the callback (or the
 * caller of sim_call_run) set `keep`, in which case the caller frees it with
 * sim_call_free(). */
struct sim_call {
    struct sim_net *net;
    CURL *easy;
    struct curl_slist *headers;
    enum sim_endpoint ep;
    char *body; /* malloc'd request body, sent as it is */
    size_t body_len;
    struct khx_buf resp; /* the response body, NUL-terminated once done */
    long status;         /* HTTP status, 0 when the transfer failed */
    double ms;           /* total time, connection set-up included */
    int finished;
    int keep;
    char error[CURL_ERROR_SIZE]; /* libcurl's message when status is 0 */
    X509 *client_cert;           /* borrowed from the agent */
    EVP_PKEY *client_key;
    sim_call_done done;
    void *arg; /* the caller's */
};

/* A net for `base` ("https://127.0.0.1:8443") trusting the CA in `ca_file`.
 * At most `max_conns` idle keep-alive connections (for the administrator and
 * enrollment) stay open. Returns 0 or -1 with a message on stderr. */
int sim_net_new(const char *base, const char *ca_file, unsigned max_conns, struct sim_net **out);
void sim_net_free(struct sim_net *n);

/* A new request for `path` (under /api/v1 of the base URL, e.g. "/login").
 * NULL when out of memory. The call is not started. */
struct sim_call *sim_call_new(struct sim_net *n, enum sim_endpoint ep, const char *method,
                              const char *path);
void sim_call_free(struct sim_call *c);
/* Sets a JSON body, gzip-compressed when `gzip` is non-zero. Returns 0 or -1. */
int sim_call_json(struct sim_call *c, const char *json, size_t len, int gzip);
/* Adds a request header line ("Name: value"). Returns 0 or -1. */
int sim_call_header(struct sim_call *c, const char *line);
/* Presents this client certificate and key (borrowed: they must outlive the
 * call) on a connection of its own, closed after the request. */
void sim_call_client_cert(struct sim_call *c, X509 *cert, EVP_PKEY *key);
/* Keeps the administrator's session cookie (shared by every call that
 * asks for it). */
void sim_call_cookies(struct sim_call *c);
/* Starts the request; `done` runs from sim_net_poll() when it finishes.
 * Returns 0, or -1 after freeing the call. */
int sim_call_start(struct sim_call *c, sim_call_done done, void *arg);
/* Starts the request and waits for it (other requests progress meanwhile;
 * their callbacks run). The call is kept: the caller reads status and resp
 * and frees it. Returns 0, or -1 after freeing the call. */
int sim_call_run(struct sim_call *c);

/* Runs transfers for up to `timeout_ms` and calls the callbacks of the ones
 * that finished. Returns 0 or -1 on a libcurl failure. */
int sim_net_poll(struct sim_net *n, int timeout_ms);
/* Polls until nothing is in flight. */
int sim_net_drain(struct sim_net *n);
unsigned sim_net_inflight(const struct sim_net *n);

/* Latency and error statistics, per endpoint, since the last reset. */
void sim_net_reset_stats(struct sim_net *n);
/* Prints the table of requests, errors by status and latency percentiles;
 * `seconds` is the measured period for requests per second. When
 * `result_line` is non-zero, ends with the machine-readable RESULT line.
 * Returns the number of failed requests. */
uint64_t sim_net_report(struct sim_net *n, FILE *f, double seconds, int result_line,
                        const char *extra);
uint64_t sim_net_requests(const struct sim_net *n);
uint64_t sim_net_errors(const struct sim_net *n);

/* ------------------------------------------------------------------------ */
/* Agents and the state folder (sim_agent.c).                                */
/* ------------------------------------------------------------------------ */

struct sim_agent {
    char id[37];          /* machine id issued by the server; "" before enrollment */
    char machine_key[65]; /* hardware id we report, so re-enrollment finds the machine */
    char hostname[64];
    uint32_t profile; /* seeds the inventory: OS, CPU, memory, addresses */
    uint32_t agency;  /* index into the state's tokens */
    X509 *cert;       /* the certificate the server issued */
    EVP_PKEY *key;    /* its private key */
    /* Run-time state of `run`. */
    uint64_t due_ms;   /* next check-in, on the monotonic clock */
    uint32_t heap_pos; /* position in the scheduler's heap */
    uint8_t busy;      /* a check-in is in flight */
    uint8_t post_events;
    int64_t db_version;
    int64_t db_time;
};

/* One agency's enrollment token, as `seed` created it. */
struct sim_token {
    int64_t agency_id;
    char code[32];
    char token[160];
    uint32_t ip_octet; /* second octet of the agency's 10.x addresses */
};

struct sim_state {
    char dir[512];
    struct sim_agent *agents;
    size_t nagents, cap;
    struct sim_token *tokens;
    size_t ntokens;
};

/* Opens (creating when needed) a state folder and loads what it holds.
 * With `fresh`, the files a previous seed wrote are removed first; a folder
 * that is not empty and was not made by khien-sim is refused. Returns 0 or -1
 * with a message on stderr. */
int sim_state_open(struct sim_state *st, const char *dir, int fresh);
void sim_state_close(struct sim_state *st);
/* Appends the tokens file. Returns 0 or -1. */
int sim_state_save_tokens(const struct sim_state *st);
/* A new agent slot (zeroed but for nothing), or NULL at the limit. */
struct sim_agent *sim_state_add_agent(struct sim_state *st);
/* Writes an enrolled agent's key and certificate (PEM) to its file and
 * appends its line to the index. Returns 0 or -1. */
int sim_state_save_agent(const struct sim_state *st, const struct sim_agent *a, const char *key_pem,
                         size_t key_len, const char *cert_pem);
/* Parses one PEM object of the expected kind ("CERTIFICATE", "EC PRIVATE
 * KEY") into *cert or *key. Returns 0 or -1. */
int sim_pem_cert(const char *pem, size_t len, X509 **cert);
int sim_pem_key(const char *pem, size_t len, EVP_PKEY **key);

/* Makes a fresh EC P-256 key and a CSR for `hostname`: *key gets the key,
 * *key_pem the same key as SEC 1 PEM and *csr_pem the request (malloc'd,
 * NUL-terminated). Returns 0 or -1. */
int sim_make_key_csr(const char *hostname, EVP_PKEY **key, char **key_pem, size_t *key_len,
                     char **csr_pem);

/* ------------------------------------------------------------------------ */
/* Realistic data (sim_data.c).                                              */
/* ------------------------------------------------------------------------ */

/* The name, code and kind of agency `i` (0 is the province root) and the
 * index of its parent (0 for the root itself and the first level). */
void sim_agency_describe(unsigned i, char *name, size_t namelen, char *code, size_t codelen,
                         const char **kind, unsigned *parent);
/* A hostname such as "pc-ketoan-03" for a machine of this profile; `n` is a
 * counter that keeps hostnames unique within one agency. */
void sim_hostname(uint32_t profile, unsigned n, char *out, size_t outlen);
/* The check-in document of an agent (compact JSON, malloc'd), or NULL. */
char *sim_inventory_json(const struct sim_agent *a, const struct sim_token *tok, size_t *len);

/* A detection generator: a fixed pool of malware samples (signature name,
 * digests, size, file name), so that the same sample shows up on several
 * machines with the same hash, as it would in a real outbreak. */
struct sim_samples;
struct sim_samples *sim_samples_new(uint64_t seed);
void sim_samples_free(struct sim_samples *s);
size_t sim_samples_count(const struct sim_samples *s);
/* A sample index for a Windows or a Linux machine, weighted towards the
 * common families. */
size_t sim_samples_pick(const struct sim_samples *s, struct sim_rng *r, int windows);
/* Appends one detection event as JSON ({"id",...}) to `b`: sample `k` found
 * at time `at`; `windows` picks the path style. The event id and the file's
 * path come from `r`, which should be seeded at random so that ids differ
 * between runs. Returns 0 or -1 when the buffer is full. */
int sim_detection_json(const struct sim_samples *s, size_t k, struct sim_rng *r, int64_t at,
                       int windows, struct khx_buf *b);
/* True when an agent's profile is a Windows machine. */
int sim_profile_windows(uint32_t profile);

/* Seconds on CLOCK_REALTIME. */
int64_t sim_time(void);

/* ------------------------------------------------------------------------ */
/* The commands (sim.c, sim_run.c).                                          */
/* ------------------------------------------------------------------------ */

struct sim_opts {
    const char *server; /* https://127.0.0.1:8443 */
    const char *ca;     /* the server's CA certificate (DATA/ca.crt) */
    const char *user;   /* administrator, for seed and run --tasks */
    const char *password;
    const char *state;     /* the state folder */
    unsigned agencies;     /* seed: agencies below the province */
    unsigned machines;     /* seed: agents to enroll */
    uint64_t detections;   /* seed: detection events in total */
    unsigned agents;       /* run: agents to drive */
    double duration;       /* run: seconds */
    double interval;       /* run: seconds between one agent's check-ins */
    double detection_rate; /* run: chance of a detection batch per check-in */
    unsigned tasks;        /* run: scan tasks the administrator creates first */
    unsigned parallel;     /* enrollments (and seed batches) in flight */
    unsigned max_inflight; /* run: requests in flight at most */
    unsigned batch;        /* seed: events per batch */
    uint64_t seed;         /* reproducible province and machines */
};

struct sim_ctx {
    struct sim_opts o;
    struct sim_net *net;
    struct sim_state st;
    struct sim_rng rng; /* structure: seeded by --seed */
    struct sim_rng ev;  /* event ids and details: seeded at random */
    struct sim_samples *samples;
    char csrf[160];
    int run_mode; /* agents chain tasks and events after their check-in */
    int stopping;
    /* Counters for the summaries. */
    uint64_t enrolled, enroll_failed, checkins, checkin_failed;
    uint64_t accepted, duplicates, rejected, batches_failed;
    uint64_t cycles, late, tasks_done;
    char first_problem[256];
    unsigned problems; /* printed so far; the rest are only counted */
};

/* Logs the administrator in (cookie and CSRF token). Returns 0 or -1. */
int sim_admin_login(struct sim_ctx *s);
/* One administrator call, waited for. `body` (may be NULL) is stolen; on
 * return *status holds the HTTP status (0 on a transfer failure) and, when
 * `reply` is not NULL, *reply the parsed JSON answer or NULL. Returns 0 when
 * the call completed with a 2xx status, -1 otherwise (after printing why,
 * unless the status is `quiet_status`). */
int sim_admin_call(struct sim_ctx *s, const char *method, const char *path, json_t *body,
                   long quiet_status, long *status, json_t **reply);
/* Records the first problem seen, for the summary, and prints it (the
 * first few only: a server that is down would otherwise print one line per
 * agent). */
void sim_problem(struct sim_ctx *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Enrolls agents st.agents[first..first+count) whose profile, hostname and
 * agency are already set, `parallel` at a time; with `checkin`, each checks
 * in once right after. Agents that fail keep an empty id. Returns the number
 * enrolled. */
size_t sim_enroll(struct sim_ctx *s, size_t first, size_t count, int checkin);
/* Fills a new agent's profile, machine key and hostname for agency index
 * `agency`; `counter` numbers hostnames within the agency. */
void sim_agent_invent(struct sim_ctx *s, struct sim_agent *a, uint32_t agency, unsigned counter);
/* Drops agents without an id (failed enrollments) from the state. */
void sim_state_compact(struct sim_state *st);

int sim_cmd_run(struct sim_ctx *s);

#endif
