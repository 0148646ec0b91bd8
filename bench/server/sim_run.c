/*
 * What the simulated agents do: enroll with a token (a key and CSR made
 * here, `parallel` enrollments in flight), then check in on a schedule. One
 * check-in is a short chain of requests, each on a fresh connection (see
 * sim_call_client_cert), in the order a real agent makes them:
 *
 *   POST /agent/checkin            the inventory; the answer says whether
 *                                  tasks are pending and which bundle is out
 *   GET  /agent/tasks              only when tasks are pending, then
 *   POST /agent/tasks/ID/result    "done" for each task handed out
 *   POST /agent/events             with probability --detection-rate, a
 *                                  gzip batch of one to three detections
 *
 * `run` spreads the agents' first check-ins uniformly over one interval and
 * then repeats each agent's check-in every interval (jittered by +-10 %, as
 * agents do so that a power cut does not synchronise a whole province). A
 * binary heap keyed by the next check-in time picks who is due; everything
 * else is callbacks from the one libcurl multi handle.
 */
#include "sim.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define PROGRESS_MS     5000
#define JITTER          0.10 /* of the interval, either way */
#define LATE_MS         1000 /* a check-in starting later than this is counted late */
#define MAX_TASKS_TAKEN 100  /* the server hands out at most 100 per fetch */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ------------------------------------------------------------------------ */
/* Enrollment.                                                               */
/* ------------------------------------------------------------------------ */

void sim_agent_invent(struct sim_ctx *s, struct sim_agent *a, uint32_t agency, unsigned counter)
{
    static const char hex[] = "0123456789abcdef";
    a->agency = agency;
    a->profile = (uint32_t)sim_rng_next(&s->rng);
    sim_hostname(a->profile, counter, a->hostname, sizeof(a->hostname));
    for (int i = 0; i < 64; i++)
        a->machine_key[i] = hex[sim_rng_next(&s->ev) & 15];
    a->machine_key[64] = '\0';
}

/* The signature database an agent starts with: most are a day old, some
 * have not updated for weeks (the outdated machines the dashboard lists). */
static void agent_database(struct sim_agent *a)
{
    unsigned u = (a->profile >> 12) % 100;
    int64_t days = u < 75 ? 0 : u < 90 ? 2 + u % 9 : 16 + u % 60;
    a->db_version = 0;
    a->db_time = sim_time() - days * 86400 - (int64_t)(a->profile % 43200);
}

struct enroll_job {
    struct sim_ctx *s;
    size_t idx;
    int checkin;
    EVP_PKEY *key;
    char *key_pem;
    size_t key_len;
};

static void job_free(struct enroll_job *j)
{
    if (j == NULL)
        return;
    if (j->key_pem != NULL)
        explicit_bzero(j->key_pem, j->key_len);
    free(j->key_pem);
    EVP_PKEY_free(j->key);
    free(j);
}

static int start_checkin(struct sim_ctx *s, size_t idx);

static void on_enrolled(struct sim_call *c)
{
    struct enroll_job *j = c->arg;
    struct sim_ctx *s = j->s;
    struct sim_agent *a = &s->st.agents[j->idx];
    json_t *reply =
        c->status == 200 ? json_loadb((const char *)c->resp.data, c->resp.len, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(reply, "machine_id"));
    const char *cert = json_string_value(json_object_get(reply, "certificate"));
    if (id == NULL || strlen(id) != 36 || cert == NULL || cert[0] == '\0') {
        char shown[160];
        khx_printable(shown, sizeof(shown), (const char *)c->resp.data, c->resp.len);
        s->enroll_failed++;
        sim_problem(s, "POST /enroll: HTTP %ld %s", c->status, c->status == 0 ? c->error : shown);
        goto out;
    }
    memcpy(a->id, id, 37);
    if (sim_pem_cert(cert, strlen(cert), &a->cert) != 0 ||
        sim_state_save_agent(&s->st, a, j->key_pem, j->key_len, cert) != 0) {
        sim_problem(s, "POST /enroll: cannot parse or save the certificate");
        s->enroll_failed++;
        a->id[0] = '\0';
        goto out;
    }
    a->key = j->key;
    j->key = NULL;
    agent_database(a);
    s->enrolled++;
    if (j->checkin)
        start_checkin(s, j->idx);
out:
    json_decref(reply);
    job_free(j);
}

static int start_enroll(struct sim_ctx *s, size_t idx, int checkin)
{
    struct sim_agent *a = &s->st.agents[idx];
    struct enroll_job *j = calloc(1, sizeof(*j));
    char *csr = NULL, *text = NULL;
    json_t *body = NULL;
    struct sim_call *c = NULL;
    int r = -1;
    if (j == NULL || a->agency >= s->st.ntokens)
        goto out;
    j->s = s;
    j->idx = idx;
    j->checkin = checkin;
    if (sim_make_key_csr(a->hostname, &j->key, &j->key_pem, &j->key_len, &csr) != 0) {
        sim_problem(s, "cannot make a key and CSR with OpenSSL");
        goto out;
    }
    body = json_pack("{s:s,s:s,s:s,s:s}", "token", s->st.tokens[a->agency].token, "csr", csr,
                     "hostname", a->hostname, "machine_key", a->machine_key);
    if (body == NULL || (text = json_dumps(body, JSON_COMPACT)) == NULL ||
        (c = sim_call_new(s->net, SIM_EP_ENROLL, "POST", "/enroll")) == NULL ||
        sim_call_json(c, text, strlen(text), 0) != 0)
        goto out;
    struct sim_call *started = c;
    c = NULL;
    if (sim_call_start(started, on_enrolled, j) != 0)
        goto out;
    j = NULL;
    r = 0;
out:
    if (r != 0)
        s->enroll_failed++;
    sim_call_free(c);
    job_free(j);
    json_decref(body);
    free(csr);
    if (text != NULL)
        explicit_bzero(text, strlen(text)); /* it holds the token */
    free(text);
    return r;
}

size_t sim_enroll(struct sim_ctx *s, size_t first, size_t count, int checkin)
{
    uint64_t before = s->enrolled, t0 = khx_now_ms(), last = t0;
    size_t next = first, end = first + count;
    while ((next < end || sim_net_inflight(s->net) > 0) && !interrupted) {
        while (next < end && sim_net_inflight(s->net) < s->o.parallel)
            start_enroll(s, next++, checkin);
        if (sim_net_poll(s->net, 200) != 0)
            break;
        uint64_t t = khx_now_ms();
        if (t - last >= PROGRESS_MS) {
            fprintf(stderr, "khien-sim: enrolled %llu/%zu (%.0f/s)\n",
                    (unsigned long long)(s->enrolled - before), count,
                    (double)(s->enrolled - before) * 1000.0 / (double)(t - t0));
            last = t;
        }
    }
    sim_net_drain(s->net);
    return (size_t)(s->enrolled - before);
}

/* ------------------------------------------------------------------------ */
/* The scheduler: a binary heap of agent indices by next check-in time.     */
/* ------------------------------------------------------------------------ */

struct heap {
    uint32_t *v;
    size_t n;
    struct sim_agent *agents;
};

static int heap_less(const struct heap *h, size_t i, size_t j)
{
    return h->agents[h->v[i]].due_ms < h->agents[h->v[j]].due_ms;
}

static void heap_swap(struct heap *h, size_t i, size_t j)
{
    uint32_t t = h->v[i];
    h->v[i] = h->v[j];
    h->v[j] = t;
}

static void heap_push(struct heap *h, uint32_t idx)
{
    size_t i = h->n++;
    h->v[i] = idx;
    while (i > 0 && heap_less(h, i, (i - 1) / 2)) {
        heap_swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static uint32_t heap_pop(struct heap *h)
{
    uint32_t top = h->v[0];
    h->v[0] = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && heap_less(h, l, m))
            m = l;
        if (r < h->n && heap_less(h, r, m))
            m = r;
        if (m == i)
            break;
        heap_swap(h, i, m);
        i = m;
    }
    return top;
}

/* The one scheduler of this process (sim_cmd_run); the callbacks reach it
 * through here because libcurl hands them only the call. */
static struct heap sched;

/* ------------------------------------------------------------------------ */
/* One check-in cycle.                                                       */
/* ------------------------------------------------------------------------ */

struct cycle {
    struct sim_ctx *s;
    size_t idx;
    int64_t tasks[MAX_TASKS_TAKEN];
    char kinds[MAX_TASKS_TAKEN];
    size_t ntasks, next;
};

static void cycle_end(struct cycle *cy)
{
    struct sim_ctx *s = cy->s;
    struct sim_agent *a = &s->st.agents[cy->idx];
    a->busy = 0;
    if (s->run_mode && !s->stopping) {
        /* The next check-in counts from when this one was due, not from when
         * it ended, so that slow answers do not drift the schedule. */
        double k = 1.0 + JITTER * (2.0 * sim_rng_unit(&s->ev) - 1.0);
        a->due_ms += (uint64_t)(s->o.interval * 1000.0 * k);
        heap_push(&sched, (uint32_t)cy->idx);
    }
    free(cy);
}

static struct sim_call *agent_call(struct sim_ctx *s, const struct sim_agent *a,
                                   enum sim_endpoint ep, const char *method, const char *path)
{
    struct sim_call *c = sim_call_new(s->net, ep, method, path);
    if (c != NULL)
        sim_call_client_cert(c, a->cert, a->key);
    return c;
}

static void next_step(struct cycle *cy);

static void on_step(struct sim_call *c)
{
    struct cycle *cy = c->arg;
    if (c->status < 200 || c->status >= 300) {
        /* Counted by the net; the agent gives up this cycle as a real one
         * would and tries again at its next check-in. */
        cycle_end(cy);
        return;
    }
    if (c->ep == SIM_EP_RESULT)
        cy->s->tasks_done++;
    if (c->ep == SIM_EP_EVENTS) {
        json_t *reply = json_loadb((const char *)c->resp.data, c->resp.len, 0, NULL);
        cy->s->accepted += (uint64_t)json_integer_value(json_object_get(reply, "accepted"));
        cy->s->rejected += json_array_size(json_object_get(reply, "rejected"));
        json_decref(reply);
        cycle_end(cy);
        return;
    }
    next_step(cy);
}

static int start_events(struct cycle *cy)
{
    struct sim_ctx *s = cy->s;
    struct sim_agent *a = &s->st.agents[cy->idx];
    struct khx_buf b;
    int r = -1;
    int windows = sim_profile_windows(a->profile);
    unsigned n = 1 + (unsigned)sim_rng_below(&s->ev, 3);
    int64_t now = sim_time();
    khx_buf_init(&b, 1u << 20);
    if (khx_buf_printf(&b, "{\"events\":[") != 0)
        goto out;
    for (unsigned i = 0; i < n; i++)
        if ((i > 0 && khx_buf_append_u8(&b, ',') != 0) ||
            sim_detection_json(s->samples, sim_samples_pick(s->samples, &s->ev, windows), &s->ev,
                               now - (int64_t)sim_rng_below(&s->ev, 600), windows, &b) != 0)
            goto out;
    if (khx_buf_printf(&b, "]}") != 0)
        goto out;
    struct sim_call *c = agent_call(s, a, SIM_EP_EVENTS, "POST", "/agent/events");
    if (c == NULL)
        goto out;
    if (sim_call_json(c, (const char *)b.data, b.len, 1) != 0) {
        sim_call_free(c);
        goto out;
    }
    r = sim_call_start(c, on_step, cy);
out:
    khx_buf_free(&b);
    return r;
}

static int start_result(struct cycle *cy)
{
    struct sim_ctx *s = cy->s;
    struct sim_agent *a = &s->st.agents[cy->idx];
    char path[96];
    size_t k = cy->next++;
    snprintf(path, sizeof(path), "/agent/tasks/%lld/result", (long long)cy->tasks[k]);
    json_t *result =
        cy->kinds[k] == 'u'
            ? json_pack("{s:I}", "db_version", (json_int_t)a->db_version)
            : json_pack("{s:I,s:i,s:i}", "files_scanned",
                        (json_int_t)(20000 + sim_rng_below(&s->ev, 180000)), "detections", 0,
                        "seconds", (int)(60 + sim_rng_below(&s->ev, 3000)));
    json_t *body = json_pack("{s:s,s:i,s:o}", "state", "done", "progress", 100, "result", result);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct sim_call *c = text != NULL ? agent_call(s, a, SIM_EP_RESULT, "POST", path) : NULL;
    int r = -1;
    if (c != NULL && sim_call_json(c, text, strlen(text), 0) == 0)
        r = sim_call_start(c, on_step, cy);
    else
        sim_call_free(c);
    free(text);
    return r;
}

static void on_tasks(struct sim_call *c)
{
    struct cycle *cy = c->arg;
    if (c->status != 200) {
        cycle_end(cy);
        return;
    }
    json_t *reply = json_loadb((const char *)c->resp.data, c->resp.len, 0, NULL);
    json_t *items = json_object_get(reply, "items"), *it;
    size_t i;
    json_array_foreach(items, i, it)
    {
        if (cy->ntasks == MAX_TASKS_TAKEN)
            break;
        const char *kind = json_string_value(json_object_get(it, "kind"));
        cy->kinds[cy->ntasks] = kind != NULL && strcmp(kind, "update") == 0 ? 'u' : 's';
        cy->tasks[cy->ntasks++] = json_integer_value(json_object_get(it, "id"));
    }
    json_decref(reply);
    next_step(cy);
}

/* After the check-in (and after each task result): the next request of the
 * cycle, or its end. */
static void next_step(struct cycle *cy)
{
    struct sim_ctx *s = cy->s;
    struct sim_agent *a = &s->st.agents[cy->idx];
    int r = 0;
    if (cy->next < cy->ntasks)
        r = start_result(cy);
    else if (a->post_events) {
        a->post_events = 0;
        r = start_events(cy);
    } else {
        cycle_end(cy);
        return;
    }
    if (r != 0)
        cycle_end(cy);
}

static void on_checkin(struct sim_call *c)
{
    struct cycle *cy = c->arg;
    struct sim_ctx *s = cy->s;
    struct sim_agent *a = &s->st.agents[cy->idx];
    json_t *reply =
        c->status == 200 ? json_loadb((const char *)c->resp.data, c->resp.len, 0, NULL) : NULL;
    json_t *pending = json_object_get(reply, "tasks_pending");
    if (!json_is_integer(pending)) {
        s->checkin_failed++;
        if (!s->run_mode) {
            char shown[160];
            khx_printable(shown, sizeof(shown), (const char *)c->resp.data, c->resp.len);
            sim_problem(s, "POST /agent/checkin: HTTP %ld %s", c->status,
                        c->status == 0 ? c->error : shown);
        }
        json_decref(reply);
        cycle_end(cy);
        return;
    }
    s->checkins++;
    /* Nine agents in ten install a newly announced bundle before their next
     * check-in; the rest stay behind, as machines that are off or broken
     * do. */
    json_t *bundle = json_object_get(reply, "bundle");
    json_int_t version = json_integer_value(json_object_get(bundle, "version"));
    if (version > a->db_version && (a->profile >> 24) % 10 != 0) {
        a->db_version = version;
        a->db_time = json_integer_value(json_object_get(bundle, "created_at"));
    }
    json_int_t n = json_integer_value(pending);
    json_decref(reply);
    if (!s->run_mode) {
        cycle_end(cy);
        return;
    }
    if (n > 0) {
        struct sim_call *t = agent_call(s, a, SIM_EP_TASKS, "GET", "/agent/tasks");
        if (t != NULL && sim_call_start(t, on_tasks, cy) == 0)
            return;
        cycle_end(cy);
        return;
    }
    next_step(cy);
}

static int start_checkin(struct sim_ctx *s, size_t idx)
{
    struct sim_agent *a = &s->st.agents[idx];
    struct cycle *cy = calloc(1, sizeof(*cy));
    size_t len = 0;
    char *inv = NULL;
    if (cy == NULL)
        return -1;
    cy->s = s;
    cy->idx = idx;
    a->busy = 1;
    const struct sim_token *tok = a->agency < s->st.ntokens ? &s->st.tokens[a->agency] : NULL;
    struct sim_call *c = NULL;
    if ((inv = sim_inventory_json(a, tok, &len)) == NULL ||
        (c = agent_call(s, a, SIM_EP_CHECKIN, "POST", "/agent/checkin")) == NULL ||
        sim_call_json(c, inv, len, 0) != 0) {
        sim_call_free(c);
        free(inv);
        cycle_end(cy);
        return -1;
    }
    free(inv);
    if (sim_call_start(c, on_checkin, cy) != 0) {
        cycle_end(cy);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* run                                                                       */
/* ------------------------------------------------------------------------ */

/* Enrolls the agents the state folder lacks, spread over its agencies. */
static int enroll_missing(struct sim_ctx *s)
{
    size_t have = s->st.nagents, want = s->o.agents;
    if (have >= want)
        return 0;
    if (s->st.ntokens == 0) {
        fprintf(stderr,
                "khien-sim: %s holds %zu agents and no enrollment tokens; run "
                "`khien-sim seed` first\n",
                s->st.dir, have);
        return -1;
    }
    unsigned *per = calloc(s->st.ntokens, sizeof(*per));
    if (per == NULL)
        return -1;
    for (size_t i = 0; i < have; i++)
        if (s->st.agents[i].agency < s->st.ntokens)
            per[s->st.agents[i].agency]++;
    for (size_t i = have; i < want; i++) {
        struct sim_agent *a = sim_state_add_agent(&s->st);
        if (a == NULL) {
            free(per);
            return -1;
        }
        uint32_t agency = (uint32_t)(i % s->st.ntokens);
        sim_agent_invent(s, a, agency, per[agency]++);
    }
    free(per);
    fprintf(stderr, "khien-sim: enrolling %zu more agents\n", want - have);
    uint64_t t0 = khx_now_ms();
    size_t n = sim_enroll(s, have, want - have, 0);
    sim_state_compact(&s->st);
    fprintf(stderr, "khien-sim: enrolled %zu agents in %.1f s\n", n,
            (double)(khx_now_ms() - t0) / 1000.0);
    return s->st.nagents >= want ? 0 : -1;
}

/* The administrator queues scan and update tasks on random machines, so
 * that the task path (fetch, result) carries load too. */
static int create_tasks(struct sim_ctx *s, size_t agents)
{
    char path[128];
    if (sim_admin_login(s) != 0)
        return -1;
    for (unsigned i = 0; i < s->o.tasks; i++) {
        const struct sim_agent *a = &s->st.agents[sim_rng_below(&s->ev, agents)];
        int update = sim_rng_below(&s->ev, 4) == 0;
        const char *home = sim_profile_windows(a->profile) ? "C:\\Users" : "/home";
        json_t *body = update ? json_pack("{s:s,s:{}}", "kind", "update", "args")
                       : sim_rng_below(&s->ev, 2) == 0
                           ? json_pack("{s:s,s:{s:b}}", "kind", "scan", "args", "full", 1)
                           : json_pack("{s:s,s:{s:[s]}}", "kind", "scan", "args", "paths", home);
        snprintf(path, sizeof(path), "/machines/%s/tasks", a->id);
        long status;
        if (sim_admin_call(s, "POST", path, body, 0, &status, NULL) != 0)
            return -1;
    }
    return 0;
}

int sim_cmd_run(struct sim_ctx *s)
{
    int rc = 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    uint64_t t_load = khx_now_ms();
    if (sim_state_open(&s->st, s->o.state, 0) != 0)
        return 2;
    fprintf(stderr, "khien-sim: loaded %zu agents from %s in %.1f s\n", s->st.nagents, s->st.dir,
            (double)(khx_now_ms() - t_load) / 1000.0);
    if (enroll_missing(s) != 0)
        return 2;
    size_t n = s->o.agents;
    if (s->o.tasks > 0 && create_tasks(s, n) != 0)
        return 2;
    sim_net_reset_stats(s->net);
    s->run_mode = 1;
    s->checkins = s->checkin_failed = s->accepted = s->rejected = 0;
    memset(&sched, 0, sizeof(sched));
    sched.agents = s->st.agents;
    if ((sched.v = calloc(n, sizeof(*sched.v))) == NULL)
        return 2;
    uint64_t t0 = khx_now_ms(), end = t0 + (uint64_t)(s->o.duration * 1000.0), last = t0;
    for (size_t i = 0; i < n; i++) {
        struct sim_agent *a = &s->st.agents[i];
        a->due_ms = t0 + (uint64_t)(sim_rng_unit(&s->ev) * s->o.interval * 1000.0);
        if (a->db_time == 0)
            agent_database(a);
        heap_push(&sched, (uint32_t)i);
    }
    printf("khien-sim run: %zu agents, check-in every %.0f s, %.0f s, detection rate %.3f\n", n,
           s->o.interval, s->o.duration, s->o.detection_rate);
    fflush(stdout);
    uint64_t now = t0;
    while (now < end && !interrupted) {
        while (sched.n > 0 && s->st.agents[sched.v[0]].due_ms <= now &&
               sim_net_inflight(s->net) < s->o.max_inflight) {
            uint32_t idx = heap_pop(&sched);
            struct sim_agent *a = &s->st.agents[idx];
            if (now - a->due_ms > LATE_MS)
                s->late++;
            a->post_events = sim_rng_unit(&s->ev) < s->o.detection_rate;
            s->cycles++;
            start_checkin(s, idx);
        }
        int64_t wait = 100;
        if (sched.n > 0) {
            uint64_t due = s->st.agents[sched.v[0]].due_ms;
            wait = due > now ? (int64_t)(due - now) : 0;
            if (wait > 100)
                wait = 100;
            if (sim_net_inflight(s->net) >= s->o.max_inflight)
                wait = 5;
        }
        if (sim_net_poll(s->net, (int)wait) != 0)
            break;
        now = khx_now_ms();
        if (now - last >= PROGRESS_MS) {
            fprintf(stderr, "khien-sim: %.0f s: %llu requests, %llu errors, %u in flight\n",
                    (double)(now - t0) / 1000.0, (unsigned long long)sim_net_requests(s->net),
                    (unsigned long long)sim_net_errors(s->net), sim_net_inflight(s->net));
            last = now;
        }
    }
    /* Check-ins already started finish; no new ones begin. */
    s->stopping = 1;
    sim_net_drain(s->net);
    double seconds = (double)(khx_now_ms() - t0) / 1000.0;
    printf("check-in cycles %llu (%llu started late by > %d ms), check-ins answered %llu, "
           "tasks done %llu, detections accepted %llu, rejected %llu\n",
           (unsigned long long)s->cycles, (unsigned long long)s->late, LATE_MS,
           (unsigned long long)s->checkins, (unsigned long long)s->tasks_done,
           (unsigned long long)s->accepted, (unsigned long long)s->rejected);
    char extra[128];
    snprintf(extra, sizeof(extra), "agents=%zu duration_s=%.0f late=%llu", n, seconds,
             (unsigned long long)s->late);
    uint64_t errors = sim_net_report(s->net, stdout, seconds, 1, extra);
    rc = errors == 0 && s->rejected == 0 ? 0 : 1;
    free(sched.v);
    memset(&sched, 0, sizeof(sched));
    return rc;
}
