/*
 * khien-sim: the command line, the simulated administrator, and `seed`.
 *
 *   khien-sim seed --server URL --ca FILE --user admin --password PW
 *                  --agencies N --machines M --detections D [--state DIR]
 *   khien-sim run  --server URL --ca FILE --state DIR --agents N --duration S
 *                  [--interval 60] [--detection-rate R] [--tasks T ...]
 *
 * `seed` builds a province the way an administrator and its agents would,
 * through the documented API only: it logs in, creates the province and N
 * agencies below it with one enrollment token each, enrolls M agents (keys
 * and CSRs made here), checks each in once with its inventory, and posts D
 * detections in large gzip batches. `run` (sim_run.c) then lets the enrolled
 * agents check in on their schedule and measures the server's answers.
 * docs/internals/sim.md has the design and the numbers.
 */
#include "sim.h"

#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define PROGRESS_MS        5000 /* between progress lines on stderr */
#define MAX_PROBLEMS_SHOWN 20   /* problems printed before only counting them */

void sim_problem(struct sim_ctx *s, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->first_problem[0] == '\0')
        snprintf(s->first_problem, sizeof(s->first_problem), "%s", msg);
    if (s->problems < MAX_PROBLEMS_SHOWN)
        fprintf(stderr, "khien-sim: %s\n", msg);
    else if (s->problems == MAX_PROBLEMS_SHOWN)
        fprintf(stderr, "khien-sim: further problems are counted but not shown\n");
    s->problems++;
}

/* ------------------------------------------------------------------------ */
/* The administrator.                                                        */
/* ------------------------------------------------------------------------ */

static int admin_call(struct sim_ctx *s, enum sim_endpoint ep, const char *method, const char *path,
                      json_t *body, long quiet_status, long *status, json_t **reply)
{
    int r = -1;
    char *text = NULL, header[200];
    struct sim_call *c = sim_call_new(s->net, ep, method, path);
    *status = 0;
    if (reply != NULL)
        *reply = NULL;
    if (c == NULL)
        goto out;
    sim_call_cookies(c);
    snprintf(header, sizeof(header), "X-CSRF-Token: %s", s->csrf);
    if (s->csrf[0] != '\0' && sim_call_header(c, header) != 0)
        goto out;
    if (body != NULL) {
        if ((text = json_dumps(body, JSON_COMPACT)) == NULL ||
            sim_call_json(c, text, strlen(text), 0) != 0)
            goto out;
    }
    struct sim_call *run = c;
    c = NULL;
    if (sim_call_run(run) != 0)
        goto out;
    c = run;
    *status = c->status;
    if (reply != NULL && c->resp.len > 0)
        *reply = json_loadb((const char *)c->resp.data, c->resp.len, 0, NULL);
    if (c->status >= 200 && c->status < 300) {
        r = 0;
    } else if (c->status != quiet_status) {
        char shown[200];
        khx_printable(shown, sizeof(shown), (const char *)c->resp.data, c->resp.len);
        if (c->status == 0)
            sim_problem(s, "%s %s: %s", method, path, c->error);
        else
            sim_problem(s, "%s %s: HTTP %ld %s", method, path, c->status, shown);
    }
out:
    json_decref(body);
    free(text);
    sim_call_free(c);
    return r;
}

int sim_admin_call(struct sim_ctx *s, const char *method, const char *path, json_t *body,
                   long quiet_status, long *status, json_t **reply)
{
    return admin_call(s, SIM_EP_ADMIN, method, path, body, quiet_status, status, reply);
}

int sim_admin_login(struct sim_ctx *s)
{
    long status = 0;
    json_t *reply = NULL;
    if (s->o.user == NULL || s->o.password == NULL) {
        fprintf(stderr, "khien-sim: --user and --password are needed for this\n");
        return -1;
    }
    s->csrf[0] = '\0';
    json_t *body = json_pack("{s:s,s:s}", "username", s->o.user, "password", s->o.password);
    int r = admin_call(s, SIM_EP_LOGIN, "POST", "/login", body, 0, &status, &reply);
    const char *csrf = json_string_value(json_object_get(reply, "csrf"));
    if (r == 0 && (csrf == NULL || strlen(csrf) >= sizeof(s->csrf))) {
        sim_problem(s, "POST /login: the answer has no usable csrf token");
        r = -1;
    }
    if (r == 0)
        snprintf(s->csrf, sizeof(s->csrf), "%s", csrf);
    json_decref(reply);
    return r;
}

/* ------------------------------------------------------------------------ */
/* seed: agencies and tokens.                                                */
/* ------------------------------------------------------------------------ */

struct plan {
    unsigned n;         /* agencies, the province included */
    int64_t *ids;       /* server ids by agency index */
    unsigned *machines; /* agents per agency */
    unsigned *expected; /* expected_machines per agency */
    double *infection;  /* chance that one of its machines has detections */
};

static void plan_free(struct plan *p)
{
    free(p->ids);
    free(p->machines);
    free(p->expected);
    free(p->infection);
}

/* Spreads the machines over the agencies below the province, unevenly (a
 * department of health has more computers than a small commune), and sets
 * expected_machines above the enrolled count for about a third of them, so
 * that the coverage view has gaps to show. */
static int plan_make(struct sim_ctx *s, struct plan *p)
{
    unsigned n = s->o.agencies + 1;
    memset(p, 0, sizeof(*p));
    p->n = n;
    p->ids = calloc(n, sizeof(*p->ids));
    p->machines = calloc(n, sizeof(*p->machines));
    p->expected = calloc(n, sizeof(*p->expected));
    p->infection = calloc(n, sizeof(*p->infection));
    double *w = calloc(n, sizeof(*w));
    if (p->ids == NULL || p->machines == NULL || p->expected == NULL || p->infection == NULL ||
        w == NULL) {
        free(w);
        plan_free(p);
        return -1;
    }
    double total = 0;
    for (unsigned i = 1; i < n; i++) {
        w[i] = 1.0 + (double)sim_rng_below(&s->rng, 8);
        if (i <= 3)
            w[i] *= 2; /* the office of the province and the large departments */
        total += w[i];
    }
    unsigned given = 0;
    for (unsigned i = 1; i < n; i++) {
        p->machines[i] = (unsigned)floor((double)s->o.machines * w[i] / total);
        given += p->machines[i];
    }
    /* The rounding remainder, one each, from the largest weights down. */
    for (unsigned k = 0; given < s->o.machines; k++, given++)
        p->machines[1 + (k * 7) % (n - 1)]++;
    for (unsigned i = 1; i < n; i++) {
        unsigned m = p->machines[i];
        p->expected[i] = m;
        if (sim_rng_below(&s->rng, 3) == 0)
            p->expected[i] = m + 1 + (unsigned)ceil(m * (0.1 + 0.5 * sim_rng_unit(&s->rng)));
        /* A few agencies with poor hygiene carry most detections. */
        double u = sim_rng_unit(&s->rng);
        p->infection[i] = u < 0.15 ? 0.7 : u < 0.5 ? 0.35 : 0.12;
    }
    free(w);
    return 0;
}

/* Server ids of the agencies that already exist, by code: a second seed
 * against the same server reuses them instead of failing. */
static int known_agencies(struct sim_ctx *s, struct plan *p)
{
    long status;
    json_t *reply = NULL;
    if (sim_admin_call(s, "GET", "/agencies", NULL, 0, &status, &reply) != 0)
        return -1;
    json_t *items = json_object_get(reply, "items"), *it;
    size_t k;
    char name[160], code[32];
    const char *kind;
    unsigned parent;
    json_array_foreach(items, k, it)
    {
        const char *c = json_string_value(json_object_get(it, "code"));
        if (c == NULL)
            continue;
        for (unsigned i = 0; i < p->n; i++) {
            sim_agency_describe(i, name, sizeof(name), code, sizeof(code), &kind, &parent);
            if (strcmp(code, c) == 0)
                p->ids[i] = json_integer_value(json_object_get(it, "id"));
        }
    }
    json_decref(reply);
    return 0;
}

static int create_agencies(struct sim_ctx *s, struct plan *p)
{
    char name[160], code[32], contact[96];
    const char *kind;
    unsigned parent;
    if (known_agencies(s, p) != 0)
        return -1;
    for (unsigned i = 0; i < p->n; i++) {
        if (p->ids[i] != 0)
            continue;
        sim_agency_describe(i, name, sizeof(name), code, sizeof(code), &kind, &parent);
        snprintf(contact, sizeof(contact), "Bộ phận CNTT, ĐT 0%03u %03u %04u",
                 (unsigned)(200 + sim_rng_below(&s->rng, 100)),
                 (unsigned)sim_rng_below(&s->rng, 1000), (unsigned)sim_rng_below(&s->rng, 10000));
        json_t *body =
            json_pack("{s:s,s:s,s:s,s:s,s:I}", "code", code, "name", name, "kind", kind, "contact",
                      contact, "expected_machines", (json_int_t)p->expected[i]);
        if (body != NULL && i > 0)
            json_object_set_new(body, "parent_id", json_integer(p->ids[parent]));
        long status;
        json_t *reply = NULL;
        if (sim_admin_call(s, "POST", "/agencies", body, 0, &status, &reply) != 0) {
            json_decref(reply);
            return -1;
        }
        json_t *id = json_object_get(reply, "id");
        if (!json_is_integer(id))
            id = json_object_get(json_object_get(reply, "agency"), "id");
        p->ids[i] = json_integer_value(id);
        json_decref(reply);
        if (p->ids[i] <= 0) {
            sim_problem(s, "POST /agencies: the answer has no id");
            return -1;
        }
    }
    return 0;
}

static int create_tokens(struct sim_ctx *s, const struct plan *p)
{
    char path[96];
    free(s->st.tokens);
    s->st.tokens = calloc(p->n, sizeof(*s->st.tokens));
    s->st.ntokens = 0;
    if (s->st.tokens == NULL)
        return -1;
    for (unsigned i = 1; i < p->n; i++) {
        snprintf(path, sizeof(path), "/agencies/%lld/enroll-tokens", (long long)p->ids[i]);
        json_t *body = json_pack("{s:i,s:i,s:s}", "expires_in", 30 * 86400, "max_uses", 0, "note",
                                 "khien-sim");
        long status;
        json_t *reply = NULL;
        if (sim_admin_call(s, "POST", path, body, 0, &status, &reply) != 0) {
            json_decref(reply);
            return -1;
        }
        const char *token = json_string_value(json_object_get(reply, "token"));
        struct sim_token *t = &s->st.tokens[s->st.ntokens];
        if (token == NULL || strlen(token) >= sizeof(t->token)) {
            json_decref(reply);
            sim_problem(s, "POST %s: the answer has no usable token", path);
            return -1;
        }
        t->agency_id = p->ids[i];
        char name[160];
        const char *kind;
        unsigned parent;
        sim_agency_describe(i, name, sizeof(name), t->code, sizeof(t->code), &kind, &parent);
        snprintf(t->token, sizeof(t->token), "%s", token);
        t->ip_octet = 1 + (i - 1) % 250;
        s->st.ntokens++;
        json_decref(reply);
    }
    return sim_state_save_tokens(&s->st);
}

/* ------------------------------------------------------------------------ */
/* seed: detections.                                                         */
/* ------------------------------------------------------------------------ */

struct feeder {
    struct sim_ctx *s;
    uint64_t *counts; /* detections still to send, per agent */
    uint32_t *main;   /* each infected machine's own sample */
    size_t agent;     /* next agent to take events from */
    uint64_t sent;
};

/* A detection time within the last 30 days, more often recent, mostly in
 * office hours in Vietnam (UTC+7). */
static int64_t detection_time(struct sim_rng *r, int64_t now)
{
    const int64_t tz = 7 * 3600;
    unsigned day = (unsigned)floor(30.0 * pow(sim_rng_unit(r), 1.4));
    unsigned hour = sim_rng_below(r, 10) < 8 ? 7 + (unsigned)sim_rng_below(r, 11)
                                             : (unsigned)sim_rng_below(r, 24);
    int64_t midnight = (now + tz) / 86400 * 86400 - tz - (int64_t)day * 86400;
    int64_t at = midnight + hour * 3600 + (int64_t)sim_rng_below(r, 3600);
    if (at > now)
        at = now - (int64_t)sim_rng_below(r, 3600);
    return at;
}

/* Spreads the detections over the machines: in agencies with poor hygiene
 * more machines are infected, and a few machines (a USB worm that keeps
 * coming back) carry a long tail of repeats. */
static int spread_detections(struct sim_ctx *s, const struct plan *p, struct feeder *f)
{
    size_t n = s->st.nagents;
    double *w = calloc(n > 0 ? n : 1, sizeof(*w)), total = 0;
    f->counts = calloc(n > 0 ? n : 1, sizeof(*f->counts));
    f->main = calloc(n > 0 ? n : 1, sizeof(*f->main));
    if (w == NULL || f->counts == NULL || f->main == NULL) {
        free(w);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const struct sim_agent *a = &s->st.agents[i];
        double chance = p->infection[a->agency + 1 < p->n ? a->agency + 1 : 0];
        if (sim_rng_unit(&s->rng) < chance)
            w[i] = fmin(50.0, pow(1.0 - sim_rng_unit(&s->rng), -0.8));
        total += w[i];
        f->main[i] =
            (uint32_t)sim_samples_pick(s->samples, &s->rng, sim_profile_windows(a->profile));
    }
    if (total == 0 && n > 0) {
        w[0] = 1;
        total = 1;
    }
    uint64_t given = 0;
    for (size_t i = 0; i < n; i++) {
        f->counts[i] = (uint64_t)floor((double)s->o.detections * w[i] / total);
        given += f->counts[i];
    }
    for (size_t i = 0; given < s->o.detections && n > 0; i = (i + 1) % n)
        if (w[i] > 0) {
            f->counts[i]++;
            given++;
        }
    free(w);
    return 0;
}

static void on_batch(struct sim_call *c)
{
    struct sim_ctx *s = c->arg;
    json_t *reply =
        c->status == 200 ? json_loadb((const char *)c->resp.data, c->resp.len, 0, NULL) : NULL;
    json_t *acc = json_object_get(reply, "accepted"), *dup = json_object_get(reply, "duplicates");
    json_t *rej = json_object_get(reply, "rejected");
    if (!json_is_integer(acc)) {
        s->batches_failed++;
        char shown[160];
        khx_printable(shown, sizeof(shown), (const char *)c->resp.data, c->resp.len);
        sim_problem(s, "POST /agent/events: HTTP %ld %s", c->status,
                    c->status == 0 ? c->error : shown);
    } else {
        s->accepted += (uint64_t)json_integer_value(acc);
        s->duplicates += (uint64_t)json_integer_value(dup);
        s->rejected += json_array_size(rej);
        if (json_array_size(rej) > 0) {
            const char *why = json_string_value(json_object_get(json_array_get(rej, 0), "message"));
            sim_problem(s, "the server rejected %zu events of a batch, e.g.: %s",
                        json_array_size(rej), why != NULL ? why : "?");
        }
    }
    json_decref(reply);
}

/* Starts the next batch: up to `batch` events of the next agent that has
 * some left. Returns 1 when started, 0 when everything was sent, -1. */
static int start_batch(struct feeder *f, struct khx_buf *b, int64_t now)
{
    struct sim_ctx *s = f->s;
    while (f->agent < s->st.nagents && f->counts[f->agent] == 0)
        f->agent++;
    if (f->agent >= s->st.nagents)
        return 0;
    struct sim_agent *a = &s->st.agents[f->agent];
    int windows = sim_profile_windows(a->profile);
    uint64_t k = f->counts[f->agent] < s->o.batch ? f->counts[f->agent] : s->o.batch;
    b->len = 0;
    if (khx_buf_printf(b, "{\"events\":[") != 0)
        return -1;
    for (uint64_t i = 0; i < k; i++) {
        size_t sample = sim_rng_below(&s->ev, 10) < 7
                            ? f->main[f->agent]
                            : sim_samples_pick(s->samples, &s->ev, windows);
        if ((i > 0 && khx_buf_append_u8(b, ',') != 0) ||
            sim_detection_json(s->samples, sample, &s->ev, detection_time(&s->ev, now), windows,
                               b) != 0)
            return -1;
    }
    if (khx_buf_printf(b, "]}") != 0)
        return -1;
    f->counts[f->agent] -= k;
    f->sent += k;
    struct sim_call *c = sim_call_new(s->net, SIM_EP_EVENTS, "POST", "/agent/events");
    if (c == NULL)
        return -1;
    sim_call_client_cert(c, a->cert, a->key);
    if (sim_call_json(c, (const char *)b->data, b->len, 1) != 0) {
        sim_call_free(c);
        return -1;
    }
    return sim_call_start(c, on_batch, s) == 0 ? 1 : -1;
}

static int post_detections(struct sim_ctx *s, const struct plan *p, double *seconds)
{
    struct feeder f;
    struct khx_buf b;
    int r = -1, more = 1;
    memset(&f, 0, sizeof(f));
    f.s = s;
    khx_buf_init(&b, 64u << 20);
    uint64_t t0 = khx_now_ms(), last = t0;
    int64_t now = sim_time();
    if (spread_detections(s, p, &f) != 0)
        goto out;
    /* A few batches in flight: the server writes one transaction at a time
     * on SQLite anyway, and more would only queue there. */
    unsigned parallel = s->o.parallel < 4 ? s->o.parallel : 4;
    while (more || sim_net_inflight(s->net) > 0) {
        while (more && sim_net_inflight(s->net) < parallel) {
            int m = start_batch(&f, &b, now);
            if (m < 0)
                goto out;
            more = m;
        }
        if (sim_net_poll(s->net, 200) != 0)
            goto out;
        uint64_t t = khx_now_ms();
        if (t - last >= PROGRESS_MS && f.sent > 0) {
            fprintf(stderr, "khien-sim: detections %llu/%llu sent (%.0f/s)\n",
                    (unsigned long long)f.sent, (unsigned long long)s->o.detections,
                    (double)f.sent * 1000.0 / (double)(t - t0));
            last = t;
        }
    }
    r = 0;
out:
    *seconds = (double)(khx_now_ms() - t0) / 1000.0;
    khx_buf_free(&b);
    free(f.counts);
    free(f.main);
    return r;
}

/* ------------------------------------------------------------------------ */
/* seed                                                                      */
/* ------------------------------------------------------------------------ */

static int cmd_seed(struct sim_ctx *s)
{
    struct plan p;
    int r = -1;
    double t_enroll = 0, t_events = 0;
    memset(&p, 0, sizeof(p));
    if (s->o.agencies == 0 || s->o.agencies > SIM_MAX_AGENCIES) {
        fprintf(stderr, "khien-sim: --agencies must be from 1 to %u\n", SIM_MAX_AGENCIES);
        return 2;
    }
    if (sim_state_open(&s->st, s->o.state, 1) != 0)
        return 2;
    if (plan_make(s, &p) != 0 || sim_admin_login(s) != 0 || create_agencies(s, &p) != 0 ||
        create_tokens(s, &p) != 0)
        goto out;
    fprintf(stderr, "khien-sim: %u agencies and their enrollment tokens ready\n", p.n);

    /* The agents, agency by agency, numbered within each. */
    for (unsigned i = 1; i < p.n; i++)
        for (unsigned k = 0; k < p.machines[i]; k++) {
            struct sim_agent *a = sim_state_add_agent(&s->st);
            if (a == NULL)
                goto out;
            sim_agent_invent(s, a, i - 1, k);
        }
    /* Shuffled, so that `run --agents N` with N below the total leaves
     * machines offline all over the province rather than whole agencies. */
    for (size_t i = s->st.nagents; i > 1; i--) {
        size_t j = sim_rng_below(&s->rng, i);
        struct sim_agent t = s->st.agents[i - 1];
        s->st.agents[i - 1] = s->st.agents[j];
        s->st.agents[j] = t;
    }
    uint64_t t0 = khx_now_ms();
    size_t enrolled = sim_enroll(s, 0, s->st.nagents, 1);
    t_enroll = (double)(khx_now_ms() - t0) / 1000.0;
    sim_state_compact(&s->st);
    if (enrolled < s->o.machines)
        sim_problem(s, "only %zu of %u agents enrolled", enrolled, s->o.machines);
    if (s->o.detections > 0 && s->st.nagents > 0 && post_detections(s, &p, &t_events) != 0)
        goto out;
    r = 0;
out:
    printf("khien-sim seed: %s\n", s->o.server);
    printf("  agencies:    %u (the province and %u below it), one enrollment token each\n", p.n,
           p.n > 0 ? p.n - 1 : 0);
    printf("  machines:    %llu enrolled in %.1f s (%.0f/s), %llu checked in; %llu failed\n",
           (unsigned long long)s->enrolled, t_enroll,
           t_enroll > 0 ? (double)s->enrolled / t_enroll : 0.0, (unsigned long long)s->checkins,
           (unsigned long long)(s->enroll_failed + s->checkin_failed));
    printf("  detections:  %llu accepted, %llu duplicates, %llu rejected in %.1f s (%.0f/s); "
           "%llu batches failed\n",
           (unsigned long long)s->accepted, (unsigned long long)s->duplicates,
           (unsigned long long)s->rejected, t_events,
           t_events > 0 ? (double)s->accepted / t_events : 0.0,
           (unsigned long long)s->batches_failed);
    printf("  state:       %s (agent keys and certificates for `khien-sim run`)\n", s->o.state);
    sim_net_report(s->net, stdout, t_enroll + t_events, 0, NULL);
    plan_free(&p);
    if (r == 0 && (s->enroll_failed + s->checkin_failed + s->batches_failed + s->rejected > 0 ||
                   s->accepted + s->duplicates < s->o.detections))
        r = 1;
    if (s->first_problem[0] != '\0')
        printf("  first problem: %s\n", s->first_problem);
    return r == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* The command line.                                                         */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fputs("Usage: khien-sim seed --server URL --ca FILE --user NAME --password PW\n"
          "                      --agencies N --machines M --detections D [--state DIR]\n"
          "       khien-sim run  --server URL --ca FILE --state DIR --agents N --duration S\n"
          "                      [--interval 60] [--detection-rate R]\n"
          "                      [--tasks T --user NAME --password PW]\n"
          "\n"
          "Simulated Khiên agents against a management server, through its HTTP API.\n"
          "seed creates a province (agencies, tokens, enrolled machines, detections);\n"
          "run lets the enrolled agents check in and prints latency per endpoint,\n"
          "ending with a line 'RESULT requests=... rps=... p50_ms=... p99_ms=... errors=...'.\n"
          "\n"
          "Other options:\n"
          "  --parallel N        enrollments in flight (default 16)\n"
          "  --max-inflight N    run: requests in flight at most (default 512)\n"
          "  --batch N           seed: events per batch, at most 1000 (default 1000)\n"
          "  --seed N            the province and machines drawn (default 1)\n"
          "Exit status: 0 success, 1 some request failed, 2 usage or setup error.\n",
          f);
}

static int parse_number(const char *name, const char *v, double min, double max, double *out)
{
    char *end = NULL;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || !(d >= min && d <= max)) {
        fprintf(stderr, "khien-sim: --%s wants a number from %g to %g, not '%s'\n", name, min, max,
                v);
        return -1;
    }
    *out = d;
    return 0;
}

static int parse_options(int argc, char **argv, struct sim_opts *o)
{
    static const struct option opts[] = {{"server", required_argument, NULL, 's'},
                                         {"ca", required_argument, NULL, 'c'},
                                         {"user", required_argument, NULL, 'u'},
                                         {"password", required_argument, NULL, 'p'},
                                         {"state", required_argument, NULL, 'S'},
                                         {"agencies", required_argument, NULL, 'A'},
                                         {"machines", required_argument, NULL, 'M'},
                                         {"detections", required_argument, NULL, 'D'},
                                         {"agents", required_argument, NULL, 'n'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {"interval", required_argument, NULL, 'i'},
                                         {"detection-rate", required_argument, NULL, 'r'},
                                         {"tasks", required_argument, NULL, 't'},
                                         {"parallel", required_argument, NULL, 'P'},
                                         {"max-inflight", required_argument, NULL, 'm'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"seed", required_argument, NULL, 'e'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    double v = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        const char *name = NULL;
        for (size_t i = 0; opts[i].name != NULL; i++)
            if (opts[i].val == ch)
                name = opts[i].name;
        switch (ch) {
        case 's':
            o->server = optarg;
            continue;
        case 'c':
            o->ca = optarg;
            continue;
        case 'u':
            o->user = optarg;
            continue;
        case 'p':
            o->password = optarg;
            continue;
        case 'S':
            o->state = optarg;
            continue;
        case 'h':
            usage(stdout);
            exit(0);
        case 'A':
        case 'M':
        case 'n':
        case 't':
        case 'P':
        case 'm':
            if (parse_number(name, optarg, 0, SIM_MAX_AGENTS, &v) != 0)
                return -1;
            break;
        case 'D':
        case 'e':
            if (parse_number(name, optarg, 0, 1e15, &v) != 0)
                return -1;
            break;
        case 'd':
        case 'i':
            if (parse_number(name, optarg, 0.1, 1e7, &v) != 0)
                return -1;
            break;
        case 'r':
            if (parse_number(name, optarg, 0, 1, &v) != 0)
                return -1;
            break;
        case 'b':
            if (parse_number(name, optarg, 1, SIM_MAX_BATCH, &v) != 0)
                return -1;
            break;
        default:
            usage(stderr);
            return -1;
        }
        switch (ch) {
        case 'A':
            o->agencies = (unsigned)v;
            break;
        case 'M':
            o->machines = (unsigned)v;
            break;
        case 'n':
            o->agents = (unsigned)v;
            break;
        case 't':
            o->tasks = (unsigned)v;
            break;
        case 'P':
            o->parallel = v >= 1 ? (unsigned)v : 1;
            break;
        case 'm':
            o->max_inflight = v >= 1 ? (unsigned)v : 1;
            break;
        case 'D':
            o->detections = (uint64_t)v;
            break;
        case 'e':
            o->seed = (uint64_t)v;
            break;
        case 'd':
            o->duration = v;
            break;
        case 'i':
            o->interval = v;
            break;
        case 'r':
            o->detection_rate = v;
            break;
        case 'b':
            o->batch = (unsigned)v;
            break;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct sim_ctx s;
    memset(&s, 0, sizeof(s));
    if (argc < 2 || (strcmp(argv[1], "seed") != 0 && strcmp(argv[1], "run") != 0)) {
        if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
            usage(stdout);
            return 0;
        }
        usage(stderr);
        return 2;
    }
    int seed = strcmp(argv[1], "seed") == 0;
    struct sim_opts *o = &s.o;
    o->state = "khien-sim-state";
    o->interval = 60;
    o->detection_rate = 0.02;
    o->parallel = 16;
    o->max_inflight = 512;
    o->batch = SIM_MAX_BATCH;
    o->seed = 1;
    if (parse_options(argc - 1, argv + 1, o) != 0)
        return 2;
    if (optind != argc - 1 || o->server == NULL || o->ca == NULL) {
        fprintf(stderr, "khien-sim: --server and --ca are needed; see --help\n");
        return 2;
    }
    if (!seed && (o->agents == 0 || o->duration <= 0)) {
        fprintf(stderr, "khien-sim: run needs --agents N and --duration S\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 2;
    int rc = 2;
    sim_rng_seed(&s.rng, o->seed);
    sim_rng_seed_random(&s.ev);
    if ((s.samples = sim_samples_new(o->seed)) == NULL)
        goto out;
    /* Idle connections kept: one per request in flight is enough for an
     * agent's requests of one check-in to share their connection. */
    unsigned conns = seed ? o->parallel + 4 : o->max_inflight / 4 + 16;
    if (sim_net_new(o->server, o->ca, conns, &s.net) != 0)
        goto out;
    rc = seed ? cmd_seed(&s) : sim_cmd_run(&s);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        fprintf(stderr, "khien-sim: own CPU %.1f s user + %.1f s system, peak RSS %ld MiB\n",
                (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
                (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
                ru.ru_maxrss / 1024);
out:
    sim_net_free(s.net);
    sim_samples_free(s.samples);
    sim_state_close(&s.st);
    curl_global_cleanup();
    return rc;
}
