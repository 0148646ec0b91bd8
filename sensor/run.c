/*
 * The sensor's run loop and store compiler. Each input (a pcap file, an
 * interface, a followed log, a syslog or NetFlow listener) runs on its own
 * source threads; every thread of every input gets its own pipe — a packet
 * decoder, a log reader or a NetFlow parser, and a detector — so the hot
 * path shares nothing but the read-only store and the output's lock on a
 * match. The main thread only waits, relays a stop request and prints
 * statistics.
 */
#include "run.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include <khien/khien.h>

#include "decode.h"
#include "khx.h"

/* ---- compiling ---- */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The source name of a list: its file name without the extension. */
static void source_name(const char *path, char out[IOC_WORD_MAX + 1])
{
    const char *b = base_name(path);
    size_t n = 0;
    for (; b[n] != '\0' && b[n] != '.' && n < IOC_WORD_MAX; n++) {
        char c = b[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_';
        out[n] = ok ? c : '_';
    }
    out[n] = '\0';
    if (n == 0)
        strcpy(out, "list");
}

static int read_lists(struct ioc_builder *b, const struct sen_list *lists, size_t n, int allow,
                      FILE *report, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        char src[IOC_WORD_MAX + 1];
        source_name(lists[i].path, src);
        struct ioc_read_opts ro = {.source = src};
        struct ioc_read_stats st;
        memset(&st, 0, sizeof(st));
        int r = ioc_read_path(lists[i].path, (enum ioc_format)lists[i].format, &ro,
                              allow ? ioc_builder_allow_fn : ioc_builder_add_fn, b, &st);
        if (r != KH_OK) {
            khx_errf(err, errlen, "%s: %s%s%s", lists[i].path, kh_strerror(r),
                     st.first_error[0] ? ": " : "", st.first_error);
            return r;
        }
        if (report != NULL) {
            fprintf(report, "%s: %zu %s, %zu rejected, %zu skipped%s%s\n", lists[i].path,
                    st.records, allow ? "allowlist entries" : "indicators", st.rejected, st.skipped,
                    st.first_error[0] ? "; first: " : "", st.first_error);
        }
    }
    return KH_OK;
}

int sen_compile(const struct sen_compile_opts *o, const char *path, struct ioc_build_stats *stats,
                char *err, size_t errlen)
{
    struct ioc_builder *b = NULL;
    struct ioc_build_opts bo = {.allow_private = o->allow_private};
    int r = ioc_builder_new(&bo, &b);
    if (r != KH_OK) {
        khx_errf(err, errlen, "%s", kh_strerror(r));
        return r;
    }
    if ((r = read_lists(b, o->allow, o->nallow, 1, o->report, err, errlen)) != KH_OK ||
        (r = read_lists(b, o->lists, o->nlists, 0, o->report, err, errlen)) != KH_OK)
        goto out;
    if (o->extra_text != NULL && o->extra_len > 0) {
        struct ioc_read_opts ro = {.source = "server"};
        struct ioc_read_stats st;
        memset(&st, 0, sizeof(st));
        r = ioc_read_feed(IOC_FMT_PLAIN, o->extra_text, o->extra_len, &ro, ioc_builder_add_fn, b,
                          &st);
        if (r != KH_OK) {
            khx_errf(err, errlen, "the server's indicators: %s", kh_strerror(r));
            goto out;
        }
        if (o->report != NULL)
            fprintf(o->report, "server: %zu indicators, %zu rejected\n", st.records, st.rejected);
    }
    r = ioc_builder_write(b, path, stats, err, errlen);
out:
    ioc_builder_free(b);
    return r;
}

/* A compiled store is named *.kis (Khiên indicator store). */
static int is_store_file(const char *path)
{
    size_t n = strlen(path);
    return n > 4 && strcmp(path + n - 4, ".kis") == 0;
}

int sen_load_store(const struct sen_compile_opts *o, const char *tmpdir, struct ioc_store **out,
                   char *err, size_t errlen)
{
    if (o->nlists == 1 && o->nallow == 0 && o->extra_text == NULL &&
        is_store_file(o->lists[0].path))
        return ioc_store_open(o->lists[0].path, out, err, errlen);
    char path[4096];
    snprintf(path, sizeof(path), "%s/khien-store-%ld-XXXXXX", tmpdir ? tmpdir : "/tmp",
             (long)getpid());
    int fd = mkstemp(path);
    if (fd < 0) {
        khx_errf(err, errlen, "%s: %s", path, strerror(errno));
        return KH_EIO;
    }
    close(fd);
    int r = sen_compile(o, path, NULL, err, errlen);
    if (r == KH_OK)
        r = ioc_store_open(path, out, err, errlen);
    /* The mapping keeps the pages; the name is not needed any more. */
    unlink(path);
    return r;
}

/* ---- running ---- */

struct pipe {
    struct sen_decoder *dec;
    struct sen_log_reader *log;
    struct sen_netflow *nf;
    struct sen_detector *det;
};

struct input {
    struct sen_run *run;
    const struct sen_input *cfg;
    unsigned nworkers;
    struct pipe *pipes;
    struct sen_source *src;
    pthread_t waiter;
    int waiter_started;
    atomic_int done;
    int result;
};

struct sen_run {
    struct sen_run_opts o;
    struct sen_detect_shared *sh;
    struct input *in;
    size_t nin;
};

static void on_frame(void *ctx, unsigned worker, int linktype, const uint8_t *pkt, size_t caplen,
                     int64_t ts_us)
{
    struct input *in = ctx;
    if (worker < in->nworkers && in->pipes[worker].dec != NULL)
        sen_decode_packet(in->pipes[worker].dec, linktype, pkt, caplen, ts_us);
}

static void on_line(void *ctx, unsigned worker, const char *peer, const char *line, size_t len)
{
    (void)peer;
    struct input *in = ctx;
    if (worker < in->nworkers && in->pipes[worker].log != NULL)
        sen_log_line(in->pipes[worker].log, line, len, sen_detect_obs, in->pipes[worker].det);
}

static void on_datagram(void *ctx, unsigned worker, int family, const uint8_t *addr,
                        const uint8_t *buf, size_t len, int64_t ts_us)
{
    struct input *in = ctx;
    if (worker < in->nworkers && in->pipes[worker].nf != NULL)
        sen_netflow_datagram(in->pipes[worker].nf, family, addr, buf, len, ts_us, sen_detect_obs,
                             in->pipes[worker].det);
}

static void on_tick(void *ctx, unsigned worker, int64_t now_us)
{
    struct input *in = ctx;
    if (worker >= in->nworkers)
        return;
    struct pipe *p = &in->pipes[worker];
    if (p->dec != NULL)
        sen_decoder_expire(p->dec, now_us);
    sen_detector_tick(p->det);
    sen_output_tick(in->run->o.out, now_us);
}

static int pipe_open(struct input *in, struct pipe *p, char *err, size_t errlen)
{
    int r = sen_detector_new(in->run->sh, &p->det);
    if (r != KH_OK)
        goto out;
    switch (in->cfg->src.kind) {
    case SEN_SRC_PCAP_FILE:
    case SEN_SRC_PCAP_LIVE:
    case SEN_SRC_AFPACKET: {
        struct sen_decoder_opts dopt = {.input = in->cfg->src.kind == SEN_SRC_PCAP_FILE ? "pcap"
                                                                                        : "live"};
        r = sen_decoder_new(&dopt, sen_detect_obs, p->det, &p->dec);
        break;
    }
    case SEN_SRC_NETFLOW:
        r = sen_netflow_new(&p->nf);
        break;
    default:
        r = sen_log_reader_new((enum sen_log_format)in->cfg->log_format, NULL, &p->log);
        break;
    }
out:
    if (r != KH_OK)
        khx_errf(err, errlen, "%s: %s", in->cfg->src.path, kh_strerror(r));
    return r;
}

static void pipe_close(struct pipe *p)
{
    sen_decoder_free(p->dec);
    sen_log_reader_free(p->log);
    sen_netflow_free(p->nf);
    sen_detector_free(p->det);
}

static void *wait_input(void *arg)
{
    struct input *in = arg;
    in->result = sen_source_wait(in->src);
    atomic_store(&in->done, 1);
    return NULL;
}

int sen_run_start(const struct sen_run_opts *o, struct sen_run **out, char *err, size_t errlen)
{
    int r = KH_ENOMEM;
    struct sen_run *run = calloc(1, sizeof(*run));
    if (run == NULL)
        return KH_ENOMEM;
    run->o = *o;
    if ((r = sen_detect_shared_new(o->slot, o->out, &run->sh)) != KH_OK)
        goto out;
    sen_detect_set_agencies(run->sh, o->agencies);
    run->o.agencies = NULL;
    if ((run->in = calloc(o->ninputs ? o->ninputs : 1, sizeof(*run->in))) == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < o->ninputs; i++) {
        struct input *in = &run->in[i];
        in->run = run;
        in->cfg = &o->inputs[i];
        in->nworkers = in->cfg->src.kind == SEN_SRC_AFPACKET && in->cfg->src.fanout > 1
                           ? in->cfg->src.fanout
                           : 1;
        if ((in->pipes = calloc(in->nworkers, sizeof(*in->pipes))) == NULL) {
            r = KH_ENOMEM;
            goto out;
        }
        run->nin = i + 1;
        for (unsigned w = 0; w < in->nworkers; w++)
            if ((r = pipe_open(in, &in->pipes[w], err, errlen)) != KH_OK)
                goto out;
        struct sen_source_cb cb = {.ctx = in,
                                   .frame = on_frame,
                                   .line = on_line,
                                   .datagram = on_datagram,
                                   .tick = on_tick};
        if ((r = sen_source_open(&in->cfg->src, &cb, &in->src, err, errlen)) != KH_OK)
            goto out;
    }
    for (size_t i = 0; i < run->nin; i++) {
        struct input *in = &run->in[i];
        if ((r = sen_source_start(in->src, err, errlen)) != KH_OK)
            goto out;
        if (pthread_create(&in->waiter, NULL, wait_input, in) != 0) {
            khx_errf(err, errlen, "cannot start a thread");
            r = KH_EIO;
            goto out;
        }
        in->waiter_started = 1;
    }
    *out = run;
    run = NULL;
    r = KH_OK;
out:
    sen_run_free(run);
    return r;
}

struct sen_detect_shared *sen_run_shared(struct sen_run *run)
{
    return run->sh;
}

int sen_run_wait(struct sen_run *run)
{
    int stopping = 0;
    uint64_t last_report = khx_now_ms();
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < run->nin; i++)
            done += (size_t)atomic_load(&run->in[i].done);
        if (done == run->nin)
            break;
        if (!stopping && run->o.stop != NULL && *run->o.stop) {
            stopping = 1;
            for (size_t i = 0; i < run->nin; i++)
                sen_source_stop(run->in[i].src);
        }
        if (run->o.stats_report != NULL && khx_now_ms() - last_report >= 60000) {
            last_report = khx_now_ms();
            char *js = sen_run_stats_json(run);
            if (js != NULL)
                run->o.stats_report(run->o.stats_ctx, js);
            free(js);
        }
        usleep(100 * 1000);
    }
    int r = KH_OK;
    for (size_t i = 0; i < run->nin; i++) {
        if (run->in[i].waiter_started) {
            pthread_join(run->in[i].waiter, NULL);
            run->in[i].waiter_started = 0;
        }
        if (r == KH_OK && run->in[i].result != KH_OK)
            r = run->in[i].result;
    }
    sen_output_flush(run->o.out);
    if (run->o.stats_report != NULL) {
        char *js = sen_run_stats_json(run);
        if (js != NULL)
            run->o.stats_report(run->o.stats_ctx, js);
        free(js);
    }
    return r;
}

/* The decoder's counters are all uint64_t, so they add up as an array. */
_Static_assert(sizeof(struct sen_decode_stats) % sizeof(uint64_t) == 0,
               "sen_decode_stats holds only uint64_t counters");

static void add_decode(struct sen_decode_stats *a, const struct sen_decode_stats *b)
{
    const uint64_t *s = (const uint64_t *)b;
    uint64_t *d = (uint64_t *)a;
    for (size_t i = 0; i < sizeof(*a) / sizeof(uint64_t); i++)
        d[i] += s[i];
}

#define JSET(obj, key, v) json_object_set_new(obj, key, json_integer((json_int_t)(v)))

char *sen_run_stats_json(struct sen_run *run)
{
    json_t *root = json_object(), *inputs = json_array(), *det = json_object();
    struct sen_detect_stats ds;
    struct sen_decode_stats total;
    memset(&ds, 0, sizeof(ds));
    memset(&total, 0, sizeof(total));
    for (size_t i = 0; i < run->nin; i++) {
        struct input *in = &run->in[i];
        json_t *j = json_object();
        json_object_set_new(j, "input", json_string(in->cfg->src.path));
        if (in->src != NULL) {
            struct sen_source_stats ss;
            sen_source_stats(in->src, &ss);
            JSET(j, "frames", ss.frames);
            JSET(j, "bytes", ss.bytes);
            JSET(j, "lines", ss.lines);
            JSET(j, "datagrams", ss.datagrams);
            JSET(j, "kernel_drops", ss.kernel_drops);
            JSET(j, "read_errors", ss.read_errors);
            if (ss.last_error[0])
                json_object_set_new(j, "last_error", json_string(ss.last_error));
        }
        struct sen_log_stats ls = {0};
        struct sen_netflow_stats ns = {0};
        for (unsigned w = 0; w < in->nworkers; w++) {
            struct pipe *p = &in->pipes[w];
            if (p->dec != NULL) {
                struct sen_decode_stats st;
                sen_decoder_stats(p->dec, &st);
                add_decode(&total, &st);
            }
            if (p->log != NULL) {
                struct sen_log_stats st;
                sen_log_stats(p->log, &st);
                ls.lines += st.lines;
                ls.observations += st.observations;
                ls.ignored += st.ignored;
                ls.malformed += st.malformed;
                if (!ls.first_error[0])
                    memcpy(ls.first_error, st.first_error, sizeof(ls.first_error));
            }
            if (p->nf != NULL) {
                struct sen_netflow_stats st;
                sen_netflow_stats(p->nf, &st);
                ns.datagrams += st.datagrams;
                ns.records += st.records;
                ns.templates += st.templates;
                ns.malformed += st.malformed;
                ns.unknown_template += st.unknown_template;
                if (!ns.first_error[0])
                    memcpy(ns.first_error, st.first_error, sizeof(ns.first_error));
            }
            if (p->det != NULL)
                sen_detector_stats_add(p->det, &ds);
        }
        if (in->pipes != NULL && in->pipes[0].log != NULL) {
            JSET(j, "log_observations", ls.observations);
            JSET(j, "log_ignored", ls.ignored);
            JSET(j, "log_malformed", ls.malformed);
            if (ls.first_error[0])
                json_object_set_new(j, "log_first_error", json_string(ls.first_error));
        }
        if (in->pipes != NULL && in->pipes[0].nf != NULL) {
            JSET(j, "netflow_records", ns.records);
            JSET(j, "netflow_templates", ns.templates);
            JSET(j, "netflow_malformed", ns.malformed);
            JSET(j, "netflow_unknown_template", ns.unknown_template);
            if (ns.first_error[0])
                json_object_set_new(j, "netflow_first_error", json_string(ns.first_error));
        }
        json_array_append_new(inputs, j);
    }
    json_t *dec = json_object();
    JSET(dec, "packets", total.packets);
    JSET(dec, "bytes", total.bytes);
    JSET(dec, "ipv4", total.ipv4);
    JSET(dec, "ipv6", total.ipv6);
    JSET(dec, "tcp", total.tcp);
    JSET(dec, "udp", total.udp);
    JSET(dec, "dns_messages", total.dns_messages);
    JSET(dec, "tls_client_hellos", total.tls_client_hellos);
    JSET(dec, "http_requests", total.http_requests);
    JSET(dec, "quic_initials", total.quic_initials);
    JSET(dec, "truncated", total.truncated);
    JSET(dec, "malformed", total.malformed);
    JSET(dec, "malformed_dns", total.malformed_dns);
    JSET(dec, "malformed_tls", total.malformed_tls);
    JSET(dec, "malformed_http", total.malformed_http);
    JSET(dec, "malformed_quic", total.malformed_quic);
    JSET(dec, "unsupported_link", total.unsupported_link);
    JSET(dec, "fragments", total.fragments);
    JSET(dec, "flows", total.flows);
    JSET(dec, "reassembly_gaps", total.reassembly_gaps);
    JSET(dec, "quic_joined", total.quic_joined);
    JSET(dec, "quic_join_dropped", total.quic_join_dropped);
    json_t *obs = json_object(), *mat = json_object();
    for (int w = 0; w < SEN_WHERE_COUNT; w++) {
        JSET(obs, sen_where_name(w), ds.observations[w]);
        JSET(mat, sen_where_name(w), ds.matches[w]);
    }
    json_object_set_new(det, "observations", obs);
    json_object_set_new(det, "matches", mat);
    JSET(det, "allowlisted", ds.allowed);
    JSET(det, "without_store", ds.no_store);
    struct sen_output_stats os;
    sen_output_stats(run->o.out, &os);
    json_t *outj = json_object();
    JSET(outj, "hits_written", os.hits_written);
    JSET(outj, "spool_errors", os.spool_errors);
    JSET(outj, "spool_dropped", os.spool_dropped);
    json_object_set_new(root, "inputs", inputs);
    json_object_set_new(root, "decode", dec);
    json_object_set_new(root, "detect", det);
    json_object_set_new(root, "output", outj);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

void sen_run_free(struct sen_run *run)
{
    if (run == NULL)
        return;
    for (size_t i = 0; i < run->nin; i++) {
        struct input *in = &run->in[i];
        if (in->src != NULL)
            sen_source_stop(in->src);
        if (in->waiter_started)
            pthread_join(in->waiter, NULL);
        sen_source_free(in->src);
        for (unsigned w = 0; in->pipes != NULL && w < in->nworkers; w++)
            pipe_close(&in->pipes[w]);
        free(in->pipes);
    }
    free(run->in);
    sen_agencies_free(run->o.agencies);
    sen_detect_shared_free(run->sh);
    free(run);
}
