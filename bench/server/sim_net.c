/*
 * khien-sim's HTTP layer: every request of every simulated agent goes
 * through one libcurl multi handle on one thread. A request is a struct
 * sim_call with its own easy handle. An agent's request presents the
 * agent's certificate on a connection of its own (see sim_call_client_cert),
 * so the server sees what thousands of real agents that connect once a
 * minute would cause, without thousands of open sockets; the
 * administrator's and the enrollment requests share a small pool of
 * keep-alive connections.
 *
 * Each finished request adds its total time (connection set-up included:
 * that is what an agent waits for) to its endpoint's latency list, and a
 * failed one to the error counts by status, which sim_net_report() prints.
 */
#include "sim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>
#include <zlib.h>

#define MAX_ERROR_KINDS 16        /* distinct statuses counted per endpoint */
#define MAX_SECONDS     3600      /* one-second buckets kept for the timeline */
#define SLOW_MS         100.0     /* what the timeline counts as slow */
#define MAX_LATENCIES   50000000u /* samples kept per endpoint */
#define MAX_URL         1024

static const char *const endpoint_names[SIM_EP_COUNT] = {
    "login", "admin", "enroll", "checkin", "tasks", "task-result", "events",
};

struct error_kind {
    long status; /* 0: the transfer itself failed */
    uint64_t count;
    char example[160]; /* the first message seen, for the report */
};

struct endpoint_stats {
    uint64_t requests;
    uint64_t errors;
    struct khx_vec ms; /* float milliseconds */
    struct error_kind kinds[MAX_ERROR_KINDS];
    unsigned nkinds;
};

/* One second of the run: to tell a steady tail from a few bad moments
 * (a checkpoint, autovacuum, another program taking the CPU). */
struct second {
    uint32_t requests;
    uint32_t slow;
    float max_ms;
};

struct sim_net {
    CURLM *multi;
    CURLSH *share; /* the administrator's cookies */
    char base[512];
    char ca[1024];
    unsigned inflight;
    struct endpoint_stats stats[SIM_EP_COUNT];
    uint64_t t0_ms; /* when the statistics were last reset */
    struct second seconds[MAX_SECONDS];
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sim_call *c = arg;
    size_t n = size * nmemb;
    /* Returning less than n makes libcurl fail the transfer: a response
     * larger than we are willing to hold is an error, not a truncation. */
    return khx_buf_append(&c->resp, data, n) == 0 ? n : 0;
}

int sim_net_new(const char *base, const char *ca_file, unsigned max_conns, struct sim_net **out)
{
    int r = -1;
    struct sim_net *n = calloc(1, sizeof(*n));
    *out = NULL;
    if (n == NULL)
        goto out;
    if (strlen(base) >= sizeof(n->base) || strlen(ca_file) >= sizeof(n->ca))
        goto out;
    snprintf(n->base, sizeof(n->base), "%s", base);
    /* "https://host:port/" and "https://host:port" name the same server. */
    size_t blen = strlen(n->base);
    while (blen > 0 && n->base[blen - 1] == '/')
        n->base[--blen] = '\0';
    snprintf(n->ca, sizeof(n->ca), "%s", ca_file);
    n->t0_ms = khx_now_ms();
    for (int i = 0; i < SIM_EP_COUNT; i++)
        khx_vec_init(&n->stats[i].ms, sizeof(float), MAX_LATENCIES);
    if ((n->multi = curl_multi_init()) == NULL || (n->share = curl_share_init()) == NULL)
        goto out;
    curl_multi_setopt(n->multi, CURLMOPT_MAXCONNECTS, (long)(max_conns > 0 ? max_conns : 1));
    curl_share_setopt(n->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE);
    *out = n;
    n = NULL;
    r = 0;
out:
    if (r != 0)
        fprintf(stderr, "khien-sim: cannot set up libcurl (or the URL or CA path is too long)\n");
    sim_net_free(n);
    return r;
}

void sim_net_free(struct sim_net *n)
{
    if (n == NULL)
        return;
    /* Calls still in flight are abandoned with the program; the multi
     * handle closes their connections. */
    if (n->multi != NULL)
        curl_multi_cleanup(n->multi);
    if (n->share != NULL)
        curl_share_cleanup(n->share);
    for (int i = 0; i < SIM_EP_COUNT; i++)
        khx_vec_free(&n->stats[i].ms);
    free(n);
}

struct sim_call *sim_call_new(struct sim_net *n, enum sim_endpoint ep, const char *method,
                              const char *path)
{
    char url[MAX_URL];
    if ((size_t)snprintf(url, sizeof(url), "%s/api/v1%s", n->base, path) >= sizeof(url))
        return NULL;
    struct sim_call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->net = n;
    c->ep = ep;
    khx_buf_init(&c->resp, SIM_MAX_RESPONSE + 1);
    if ((c->easy = curl_easy_init()) == NULL) {
        free(c);
        return NULL;
    }
    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CAINFO, n->ca);
    /* Without a CA folder, libcurl parses the CA file once and keeps the
     * store for later connections; with Debian's default folder set it
     * reloads the file for every connection (a third of a millisecond). */
    curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    /* The server speaks HTTP/1.1 only; offering h2 would only cost bytes. */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 300000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->error);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "khien-sim/0.1");
    if (strcmp(method, "POST") == 0) {
        /* An empty body until sim_call_json gives one. */
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    /* libcurl would wait for "100 Continue" before large bodies; the
     * server answers straight away, so the wait is only added latency. */
    if (sim_call_header(c, "Expect:") != 0) {
        sim_call_free(c);
        return NULL;
    }
    return c;
}

void sim_call_free(struct sim_call *c)
{
    if (c == NULL)
        return;
    if (c->easy != NULL)
        curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    free(c->body);
    khx_buf_free(&c->resp);
    free(c);
}

int sim_call_header(struct sim_call *c, const char *line)
{
    struct curl_slist *l = curl_slist_append(c->headers, line);
    if (l == NULL)
        return -1;
    c->headers = l;
    return 0;
}

/* Compresses `in` into a gzip member (malloc'd). Speed matters more than
 * size here: the seed sends hundreds of megabytes of JSON. */
static int gzip_compress(const char *in, size_t len, char **out, size_t *outlen)
{
    int r = -1;
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    uLong bound = deflateBound(&z, (uLong)len);
    char *buf = malloc(bound);
    if (buf == NULL)
        goto out;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)buf;
    z.avail_out = (uInt)bound;
    if (len > 0xffffffffu || deflate(&z, Z_FINISH) != Z_STREAM_END)
        goto out;
    *out = buf;
    *outlen = z.total_out;
    buf = NULL;
    r = 0;
out:
    deflateEnd(&z);
    free(buf);
    return r;
}

int sim_call_json(struct sim_call *c, const char *json, size_t len, int gzip)
{
    char *body = NULL;
    size_t blen = 0;
    if (gzip) {
        if (gzip_compress(json, len, &body, &blen) != 0 ||
            sim_call_header(c, "Content-Encoding: gzip") != 0) {
            free(body);
            return -1;
        }
    } else {
        if ((body = malloc(len + 1)) == NULL)
            return -1;
        memcpy(body, json, len);
        body[len] = '\0';
        blen = len;
    }
    if (sim_call_header(c, "Content-Type: application/json") != 0) {
        free(body);
        return -1;
    }
    free(c->body);
    c->body = body;
    c->body_len = blen;
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
    return 0;
}

static CURLcode on_ssl_ctx(CURL *e, void *ctx, void *arg)
{
    (void)e;
    struct sim_call *c = arg;
    if (SSL_CTX_use_certificate(ctx, c->client_cert) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, c->client_key) != 1)
        return CURLE_SSL_CERTPROBLEM;
    return CURLE_OK;
}

void sim_call_client_cert(struct sim_call *c, X509 *cert, EVP_PKEY *key)
{
    /* The key and certificate are already parsed: handing them to
     * OpenSSL's context costs microseconds, where letting libcurl decode PEM
     * for every connection costs about 1.5 ms of CPU with OpenSSL 3, which
     * for 10,000 agents would be a good part of a core.
     *
     * libcurl does not know about a certificate set this way, so it would
     * happily reuse this connection for another agent's request. Hence a
     * fresh connection for every agent request, closed afterwards, which is
     * also what an agent that checks in once a minute costs the server. */
    c->client_cert = cert;
    c->client_key = key;
    curl_easy_setopt(c->easy, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
    curl_easy_setopt(c->easy, CURLOPT_SSL_CTX_DATA, c);
    curl_easy_setopt(c->easy, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(c->easy, CURLOPT_FORBID_REUSE, 1L);
    /* A resumed TLS session carries the identity of the agent that made it:
     * never offer one agent's session on another's connection. */
    curl_easy_setopt(c->easy, CURLOPT_SSL_SESSIONID_CACHE, 0L);
}

void sim_call_cookies(struct sim_call *c)
{
    curl_easy_setopt(c->easy, CURLOPT_SHARE, c->net->share);
    curl_easy_setopt(c->easy, CURLOPT_COOKIEFILE, "");
}

int sim_call_start(struct sim_call *c, sim_call_done done, void *arg)
{
    c->done = done;
    c->arg = arg;
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
    if (curl_multi_add_handle(c->net->multi, c->easy) != CURLM_OK) {
        sim_call_free(c);
        return -1;
    }
    c->net->inflight++;
    return 0;
}

int sim_call_run(struct sim_call *c)
{
    c->keep = 1;
    struct sim_net *n = c->net;
    if (sim_call_start(c, NULL, NULL) != 0)
        return -1;
    while (!c->finished)
        if (sim_net_poll(n, 1000) != 0)
            return -1;
    return 0;
}

static void count_error(struct endpoint_stats *s, const struct sim_call *c)
{
    s->errors++;
    for (unsigned i = 0; i < s->nkinds; i++)
        if (s->kinds[i].status == c->status) {
            s->kinds[i].count++;
            return;
        }
    if (s->nkinds == MAX_ERROR_KINDS)
        return;
    struct error_kind *k = &s->kinds[s->nkinds++];
    k->status = c->status;
    k->count = 1;
    if (c->status == 0)
        khx_printable(k->example, sizeof(k->example), c->error, strlen(c->error));
    else
        khx_printable(k->example, sizeof(k->example), (const char *)c->resp.data, c->resp.len);
}

static void finish(struct sim_net *n, CURL *e, CURLcode result)
{
    struct sim_call *c = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&c);
    curl_multi_remove_handle(n->multi, e);
    n->inflight--;
    if (result == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &c->status);
    } else {
        c->status = 0;
        if (c->error[0] == '\0')
            snprintf(c->error, sizeof(c->error), "%s", curl_easy_strerror(result));
    }
    curl_off_t us = 0;
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &us);
    c->ms = (double)us / 1000.0;
    /* NUL-terminate for the JSON parser; the room was reserved by the +1
     * in the buffer's maximum. */
    if (khx_buf_append_u8(&c->resp, 0) == 0)
        c->resp.len--;
    else
        c->status = 0;
    struct endpoint_stats *s = &n->stats[c->ep];
    s->requests++;
    float *slot = khx_vec_push(&s->ms);
    if (slot != NULL)
        *slot = (float)c->ms;
    if (c->status == 0 || c->status >= 400)
        count_error(s, c);
    uint64_t sec = (khx_now_ms() - n->t0_ms) / 1000;
    if (sec < MAX_SECONDS) {
        struct second *b = &n->seconds[sec];
        b->requests++;
        b->slow += c->ms >= SLOW_MS;
        if (c->ms > b->max_ms)
            b->max_ms = (float)c->ms;
    }
    c->finished = 1;
    if (c->done != NULL)
        c->done(c);
    if (!c->keep)
        sim_call_free(c);
}

int sim_net_poll(struct sim_net *n, int timeout_ms)
{
    int running = 0, left = 0;
    if (curl_multi_poll(n->multi, NULL, 0, timeout_ms, NULL) != CURLM_OK ||
        curl_multi_perform(n->multi, &running) != CURLM_OK)
        return -1;
    CURLMsg *m;
    while ((m = curl_multi_info_read(n->multi, &left)) != NULL)
        if (m->msg == CURLMSG_DONE)
            finish(n, m->easy_handle, m->data.result);
    return 0;
}

int sim_net_drain(struct sim_net *n)
{
    while (n->inflight > 0)
        if (sim_net_poll(n, 1000) != 0)
            return -1;
    return 0;
}

unsigned sim_net_inflight(const struct sim_net *n)
{
    return n->inflight;
}

void sim_net_reset_stats(struct sim_net *n)
{
    n->t0_ms = khx_now_ms();
    memset(n->seconds, 0, sizeof(n->seconds));
    for (int i = 0; i < SIM_EP_COUNT; i++) {
        struct endpoint_stats *s = &n->stats[i];
        s->requests = s->errors = 0;
        s->nkinds = 0;
        s->ms.len = 0;
    }
}

uint64_t sim_net_requests(const struct sim_net *n)
{
    uint64_t t = 0;
    for (int i = 0; i < SIM_EP_COUNT; i++)
        t += n->stats[i].requests;
    return t;
}

uint64_t sim_net_errors(const struct sim_net *n)
{
    uint64_t t = 0;
    for (int i = 0; i < SIM_EP_COUNT; i++)
        t += n->stats[i].errors;
    return t;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The nearest-rank percentile of sorted samples. */
static double percentile(const float *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    return v[rank - 1];
}

struct summary {
    double p50, p90, p99, max, mean;
};

static void summarise(float *v, size_t n, struct summary *s)
{
    memset(s, 0, sizeof(*s));
    if (n == 0)
        return;
    qsort(v, n, sizeof(*v), cmp_float);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    s->p50 = percentile(v, n, 50);
    s->p90 = percentile(v, n, 90);
    s->p99 = percentile(v, n, 99);
    s->max = v[n - 1];
    s->mean = sum / (double)n;
}

/* The seconds with the most slow requests, worst first, if there were any. */
static void print_slow_seconds(const struct sim_net *n, FILE *f)
{
    unsigned worst[5] = {0}, nworst = 0;
    uint64_t slow = 0;
    for (unsigned i = 0; i < MAX_SECONDS; i++) {
        uint32_t si = n->seconds[i].slow;
        if (si == 0)
            continue;
        slow += si;
        /* worst[] stays sorted, most slow requests first. */
        unsigned k;
        if (nworst < 5)
            k = nworst++;
        else if (si > n->seconds[worst[4]].slow)
            k = 4;
        else
            continue;
        worst[k] = i;
        for (; k > 0 && n->seconds[worst[k - 1]].slow < si; k--) {
            worst[k] = worst[k - 1];
            worst[k - 1] = i;
        }
    }
    if (slow == 0)
        return;
    fprintf(f, "requests over %.0f ms: %llu; the worst seconds (from the start):", SLOW_MS,
            (unsigned long long)slow);
    for (unsigned i = 0; i < nworst; i++)
        fprintf(f, " +%us %u/%u max %.0f ms%s", worst[i], n->seconds[worst[i]].slow,
                n->seconds[worst[i]].requests, n->seconds[worst[i]].max_ms,
                i + 1 < nworst ? "," : "\n");
}

uint64_t sim_net_report(struct sim_net *n, FILE *f, double seconds, int result_line,
                        const char *extra)
{
    uint64_t total = 0, errors = 0;
    size_t nall = 0;
    for (int i = 0; i < SIM_EP_COUNT; i++)
        nall += n->stats[i].ms.len;
    float *all = calloc(nall > 0 ? nall : 1, sizeof(float));
    size_t at = 0;
    struct summary s;
    fprintf(f, "%-12s %10s %8s %9s %9s %9s %9s %9s\n", "endpoint", "requests", "errors", "mean ms",
            "p50 ms", "p90 ms", "p99 ms", "max ms");
    for (int i = 0; i < SIM_EP_COUNT; i++) {
        struct endpoint_stats *st = &n->stats[i];
        if (st->requests == 0)
            continue;
        float *v = st->ms.items;
        if (all != NULL) {
            memcpy(all + at, v, st->ms.len * sizeof(float));
            at += st->ms.len;
        }
        summarise(v, st->ms.len, &s);
        fprintf(f, "%-12s %10llu %8llu %9.1f %9.1f %9.1f %9.1f %9.1f\n", endpoint_names[i],
                (unsigned long long)st->requests, (unsigned long long)st->errors, s.mean, s.p50,
                s.p90, s.p99, s.max);
        total += st->requests;
        errors += st->errors;
    }
    summarise(all, all != NULL ? at : 0, &s);
    fprintf(f, "%-12s %10llu %8llu %9.1f %9.1f %9.1f %9.1f %9.1f\n", "all",
            (unsigned long long)total, (unsigned long long)errors, s.mean, s.p50, s.p90, s.p99,
            s.max);
    double rps = seconds > 0 ? (double)total / seconds : 0;
    fprintf(f, "%.1f requests/s over %.1f s\n", rps, seconds);
    if (errors == 0) {
        fprintf(f, "errors: none\n");
    } else {
        fprintf(f, "errors by endpoint and status:\n");
        for (int i = 0; i < SIM_EP_COUNT; i++)
            for (unsigned k = 0; k < n->stats[i].nkinds; k++) {
                const struct error_kind *ek = &n->stats[i].kinds[k];
                fprintf(f, "  %-12s %s %-4ld x%-8llu %s\n", endpoint_names[i],
                        ek->status == 0 ? "transport" : "status", ek->status,
                        (unsigned long long)ek->count, ek->example);
            }
    }
    print_slow_seconds(n, f);
    if (result_line)
        fprintf(f,
                "RESULT requests=%llu rps=%.1f p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f max_ms=%.1f "
                "errors=%llu%s%s\n",
                (unsigned long long)total, rps, s.p50, s.p90, s.p99, s.max,
                (unsigned long long)errors, extra != NULL ? " " : "", extra != NULL ? extra : "");
    fflush(f);
    free(all);
    return errors;
}
