/*
 * Sources, the common part (source.c): the life of a source object (open,
 * start, wait, stop, free, counters) for every kind, and the two kinds that
 * go through libpcap: pcap/pcapng files and a live interface. AF_PACKET is in
 * source_afpacket.c, the line and datagram kinds in source_lines.c.
 *
 * Every thread calls tick() about once a second, also when nothing arrives:
 * file kinds on the packet clock (each time a packet's time passes a second
 * boundary, and once at the end), live kinds on the wall clock. Stopping is
 * a flag plus one byte written to a self-pipe (both async-signal-safe), so a
 * thread blocked in poll() wakes at once rather than at its next timeout.
 * docs/internals/sensor-sources.md describes the threads and limits.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <pcap/pcap.h>

#include "khx.h"
#include "source_int.h"

#define LIVE_TIMEOUT_MS 200 /* libpcap's read timeout: how long a partial buffer waits */
#define LIVE_BUFFER     (32u << 20)

int64_t sen_src_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void sen_src_fail(struct sen_source *src, int r, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&src->lock);
    va_start(ap, fmt);
    vsnprintf(src->last_error, sizeof(src->last_error), fmt, ap);
    va_end(ap);
    if (src->result == KH_OK)
        src->result = r;
    pthread_mutex_unlock(&src->lock);
}

void sen_src_note(struct sen_source *src, const char *fmt, ...)
{
    va_list ap;
    atomic_fetch_add(&src->read_errors, 1);
    pthread_mutex_lock(&src->lock);
    va_start(ap, fmt);
    vsnprintf(src->last_error, sizeof(src->last_error), fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&src->lock);
}

int sen_src_bind(const char *spec, int type, int *fd_out, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    struct addrinfo hints, *ai = NULL;
    int fd = -1, r = KH_EINVAL, one = 1;
    if (colon == NULL || colon == spec || colon[1] == '\0' ||
        (size_t)(colon - spec) >= sizeof(host)) {
        khx_errf(err, errlen, "%s: expected addr:port", spec);
        return KH_EINVAL;
    }
    size_t hl = (size_t)(colon - spec);
    const char *h = spec;
    if (spec[0] == '[' && hl >= 2 && spec[hl - 1] == ']') {
        h = spec + 1;
        hl -= 2;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = type;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    int gr = getaddrinfo(host, colon + 1, &hints, &ai);
    if (gr != 0) {
        khx_errf(err, errlen, "%s: %s", spec, gai_strerror(gr));
        return KH_EINVAL;
    }
    fd = socket(ai->ai_family, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        khx_errf(err, errlen, "%s: socket: %s", spec, strerror(errno));
        r = KH_EIO;
        goto out;
    }
    /* A listener restarted while old connections linger must bind again;
     * for UDP the option would let two sensors share a port silently. */
    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (type == SOCK_DGRAM) {
        /* Bursts of syslog or flow export must not be lost to a small buffer. */
        int rcv = 8 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        (type == SOCK_STREAM && listen(fd, 64) != 0)) {
        khx_errf(err, errlen, "%s: %s", spec, strerror(errno));
        r = KH_EIO;
        goto out;
    }
    *fd_out = fd;
    fd = -1;
    r = KH_OK;
out:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return r;
}

/* ------------------------------------------------------------------------ */
/* libpcap: files and live interfaces                                        */
/* ------------------------------------------------------------------------ */

struct pcap_state {
    pcap_t *p;
    int linktype;
    int live;
    int64_t last_tick;
    unsigned snaplen;
    struct pcap_stat last;   /* what was already added to kernel_drops */
    struct bpf_program prog; /* live: the filter, run in user space */
    int has_prog;
};

static int pcap_apply_filter(pcap_t *p, const char *name, const char *bpf, char *err, size_t errlen)
{
    struct bpf_program prog;
    if (bpf == NULL || bpf[0] == '\0')
        return KH_OK;
    if (pcap_compile(p, &prog, bpf, 1, PCAP_NETMASK_UNKNOWN) != 0) {
        khx_errf(err, errlen, "%s: filter \"%s\": %s", name, bpf, pcap_geterr(p));
        return KH_EINVAL;
    }
    int rc = pcap_setfilter(p, &prog);
    pcap_freecode(&prog);
    if (rc != 0) {
        khx_errf(err, errlen, "%s: filter \"%s\": %s", name, bpf, pcap_geterr(p));
        return KH_EINVAL;
    }
    return KH_OK;
}

int sen_src_compile_filter(int linktype, unsigned snaplen, const char *name, const char *bpf,
                           struct bpf_program *prog, int *has, char *err, size_t errlen)
{
    *has = 0;
    if (bpf == NULL || bpf[0] == '\0')
        return KH_OK;
    pcap_t *dead = pcap_open_dead(linktype, snaplen ? (int)snaplen : 65535);
    if (dead == NULL)
        return KH_ENOMEM;
    if (pcap_compile(dead, prog, bpf, 1, PCAP_NETMASK_UNKNOWN) != 0) {
        khx_errf(err, errlen, "%s: filter \"%s\": %s", name, bpf, pcap_geterr(dead));
        pcap_close(dead);
        return KH_EINVAL;
    }
    pcap_close(dead);
    *has = 1;
    return KH_OK;
}

static int pcap_open_file(const char *path, const char *bpf, pcap_t **out, char *err, size_t errlen)
{
    char ebuf[PCAP_ERRBUF_SIZE] = "";
    pcap_t *p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_MICRO, ebuf);
    if (p == NULL) {
        int missing = access(path, R_OK) != 0 && strcmp(path, "-") != 0;
        khx_errf(err, errlen, "%s: %s", path,
                 missing ? strerror(errno) : (ebuf[0] ? ebuf : "not a pcap or pcapng file"));
        return missing ? KH_EIO : KH_EFORMAT;
    }
    int r = pcap_apply_filter(p, path, bpf, err, errlen);
    if (r != KH_OK) {
        pcap_close(p);
        return r;
    }
    *out = p;
    return KH_OK;
}

static int pcap_open_live_if(const struct sen_source_opts *o, pcap_t **out, char *err,
                             size_t errlen)
{
    char ebuf[PCAP_ERRBUF_SIZE] = "";
    int r = KH_EIO;
    pcap_t *p = pcap_create(o->path, ebuf);
    if (p == NULL) {
        khx_errf(err, errlen, "%s: %s", o->path, ebuf);
        return KH_EIO;
    }
    pcap_set_snaplen(p, o->snaplen ? (int)o->snaplen : 65535);
    pcap_set_promisc(p, o->promisc ? 1 : 0);
    pcap_set_timeout(p, LIVE_TIMEOUT_MS);
    pcap_set_buffer_size(p, (int)LIVE_BUFFER);
    pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_MICRO);
    int rc = pcap_activate(p);
    if (rc < 0) {
        /* PCAP_ERROR_NO_SUCH_DEVICE and PCAP_ERROR_PERM_DENIED say it best. */
        const char *why = rc == PCAP_ERROR_NO_SUCH_DEVICE ? "no such device"
                          : rc == PCAP_ERROR_PERM_DENIED
                              ? "permission denied (capture needs CAP_NET_RAW)"
                              : pcap_geterr(p);
        khx_errf(err, errlen, "%s: %s", o->path, why);
        r = rc == PCAP_ERROR_NO_SUCH_DEVICE ? KH_EINVAL : KH_EIO;
        goto out;
    }
    *out = p;
    p = NULL;
    r = KH_OK;
out:
    if (p != NULL)
        pcap_close(p);
    return r;
}

static void pcap_update_drops(struct sen_source *src, struct pcap_state *ps)
{
    struct pcap_stat st;
    if (!ps->live || pcap_stats(ps->p, &st) != 0)
        return;
    uint64_t now = (uint64_t)st.ps_drop + st.ps_ifdrop;
    uint64_t before = (uint64_t)ps->last.ps_drop + ps->last.ps_ifdrop;
    if (now > before)
        atomic_fetch_add(&src->kernel_drops, now - before);
    ps->last = st;
}

struct pcap_ctx {
    struct sen_source *src;
    struct pcap_state *ps;
    struct sen_source_stats *st; /* sen_source_read_pcap's counters, else NULL */
    const struct sen_source_cb *cb;
};

/* A file's clock is its packets' time: tick when a packet crosses a second. */
static void file_clock(const struct sen_source_cb *cb, int64_t *last_tick, int64_t ts)
{
    if (cb->tick == NULL)
        return;
    if (*last_tick == 0)
        *last_tick = ts;
    else if (ts - *last_tick >= 1000000 || ts < *last_tick) {
        *last_tick = ts;
        cb->tick(cb->ctx, 0, ts);
    }
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes)
{
    struct pcap_ctx *c = (struct pcap_ctx *)user;
    int64_t ts = (int64_t)h->ts.tv_sec * 1000000 + h->ts.tv_usec;
    if (c->ps->has_prog && pcap_offline_filter(&c->ps->prog, h, bytes) == 0)
        return;
    if (c->st != NULL) {
        c->st->frames++;
        c->st->bytes += h->len;
    } else {
        atomic_fetch_add(&c->src->frames, 1);
        atomic_fetch_add(&c->src->bytes, h->len);
    }
    if (!c->ps->live)
        file_clock(c->cb, &c->ps->last_tick, ts);
    if (c->cb->frame != NULL)
        c->cb->frame(c->cb->ctx, 0, c->ps->linktype, bytes, h->caplen, ts);
}

static void *pcap_thread(void *arg)
{
    struct src_worker *w = arg;
    struct sen_source *src = w->src;
    struct pcap_state *ps = src->kind_state;
    struct pcap_ctx c = {src, ps, NULL, &src->cb};
    int64_t next_tick = sen_src_wall_us() + 1000000;
    while (!atomic_load(&src->stop)) {
        int n = pcap_dispatch(ps->p, ps->live ? -1 : 256, on_packet, (u_char *)&c);
        if (n == PCAP_ERROR_BREAK)
            break;
        if (n == PCAP_ERROR) {
            if (ps->live) {
                sen_src_fail(src, KH_EIO, "%s: %s", src->path, pcap_geterr(ps->p));
            } else {
                /* A truncated last record: count it, keep what was read. */
                sen_src_note(src, "%s: %s", src->path, pcap_geterr(ps->p));
            }
            break;
        }
        if (!ps->live && n == 0)
            break; /* end of file */
        if (ps->live) {
            int64_t now = sen_src_wall_us();
            if (now >= next_tick) {
                next_tick = now + 1000000;
                pcap_update_drops(src, ps);
                if (src->cb.tick != NULL)
                    src->cb.tick(src->cb.ctx, 0, now);
            }
        }
    }
    if (!ps->live && ps->last_tick != 0 && src->cb.tick != NULL)
        src->cb.tick(src->cb.ctx, 0, ps->last_tick);
    pcap_update_drops(src, ps);
    return NULL;
}

static void pcap_close_state(struct sen_source *src)
{
    struct pcap_state *ps = src->kind_state;
    if (ps != NULL && ps->p != NULL)
        pcap_close(ps->p);
    if (ps != NULL && ps->has_prog)
        pcap_freecode(&ps->prog);
    free(ps);
    src->kind_state = NULL;
}

static int src_pcap_open(struct sen_source *src, char *err, size_t errlen)
{
    struct pcap_state *ps = calloc(1, sizeof(*ps));
    int r = KH_ENOMEM;
    if (ps == NULL)
        return KH_ENOMEM;
    ps->live = src->opts.kind == SEN_SRC_PCAP_LIVE;
    r = ps->live ? pcap_open_live_if(&src->opts, &ps->p, err, errlen)
                 : pcap_open_file(src->path, src->bpf, &ps->p, err, errlen);
    if (r != KH_OK) {
        free(ps);
        return r;
    }
    ps->linktype = pcap_datalink(ps->p);
    /* A live interface's filter runs in user space, on the frame with its
     * VLAN tag put back: in the kernel it would see the frame without the
     * tag, and "udp" would then match tagged frames that it does not match
     * in a file. */
    if (ps->live &&
        (r = sen_src_compile_filter(ps->linktype, src->opts.snaplen, src->path, src->bpf, &ps->prog,
                                    &ps->has_prog, err, errlen)) != KH_OK) {
        pcap_close(ps->p);
        free(ps);
        return r;
    }
    src->kind_state = ps;
    src->kind_close = pcap_close_state;
    src->kind_run = pcap_thread;
    src->nworkers = 1;
    return KH_OK;
}

/* ------------------------------------------------------------------------ */
/* The source object                                                         */
/* ------------------------------------------------------------------------ */

int sen_source_open(const struct sen_source_opts *opts, const struct sen_source_cb *cb,
                    struct sen_source **out, char *err, size_t errlen)
{
    struct sen_source *src = NULL;
    int r = KH_EINVAL;
    if (opts == NULL || cb == NULL || out == NULL || opts->path == NULL || opts->kind < 0 ||
        opts->kind >= SEN_SRC_KIND_COUNT) {
        khx_errf(err, errlen, "source: no path or an unknown kind");
        return KH_EINVAL;
    }
    if (opts->fanout > SRC_MAX_WORKERS) {
        khx_errf(err, errlen, "%s: fanout %u is over the limit of %u threads", opts->path,
                 opts->fanout, SRC_MAX_WORKERS);
        return KH_EINVAL;
    }
    if ((src = calloc(1, sizeof(*src))) == NULL)
        return KH_ENOMEM;
    src->wake[0] = src->wake[1] = -1;
    pthread_mutex_init(&src->lock, NULL);
    src->opts = *opts;
    src->cb = *cb;
    src->path = strdup(opts->path);
    src->bpf = opts->bpf ? strdup(opts->bpf) : NULL;
    if (src->path == NULL || (opts->bpf != NULL && src->bpf == NULL) ||
        pipe2(src->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        r = KH_ENOMEM;
        goto out;
    }
    src->opts.path = src->path;
    src->opts.bpf = src->bpf;
    switch (opts->kind) {
    case SEN_SRC_PCAP_FILE:
    case SEN_SRC_PCAP_LIVE:
        r = src_pcap_open(src, err, errlen);
        break;
    case SEN_SRC_AFPACKET:
        r = sen_src_afpacket_open(src, err, errlen);
        break;
    default:
        r = sen_src_lines_open(src, err, errlen);
        break;
    }
    if (r != KH_OK)
        goto out;
    *out = src;
    src = NULL;
    r = KH_OK;
out:
    sen_source_free(src);
    return r;
}

int sen_source_start(struct sen_source *src, char *err, size_t errlen)
{
    if (src == NULL || src->nthreads > 0 || src->kind_run == NULL) {
        khx_errf(err, errlen, "source: already started or not open");
        return KH_EINVAL;
    }
    src->workers = calloc(src->nworkers, sizeof(*src->workers));
    if (src->workers == NULL)
        return KH_ENOMEM;
    for (unsigned i = 0; i < src->nworkers; i++) {
        src->workers[i].src = src;
        src->workers[i].id = i;
        int rc = pthread_create(&src->threads[i], NULL, src->kind_run, &src->workers[i]);
        if (rc != 0) {
            khx_errf(err, errlen, "%s: thread: %s", src->path, strerror(rc));
            sen_source_stop(src);
            return KH_EIO;
        }
        src->nthreads++;
    }
    return KH_OK;
}

int sen_source_wait(struct sen_source *src)
{
    if (src == NULL)
        return KH_EINVAL;
    if (!src->joined) {
        for (unsigned i = 0; i < src->nthreads; i++)
            pthread_join(src->threads[i], NULL);
        src->joined = 1;
    }
    pthread_mutex_lock(&src->lock);
    int r = src->result;
    pthread_mutex_unlock(&src->lock);
    return r;
}

void sen_source_stop(struct sen_source *src)
{
    if (src == NULL)
        return;
    atomic_store(&src->stop, 1);
    if (src->wake[1] >= 0) {
        ssize_t n = write(src->wake[1], "x", 1);
        (void)n;
    }
    if ((src->opts.kind == SEN_SRC_PCAP_LIVE || src->opts.kind == SEN_SRC_PCAP_FILE) &&
        src->kind_state != NULL) {
        struct pcap_state *ps = src->kind_state;
        pcap_breakloop(ps->p);
    }
}

void sen_source_stats(const struct sen_source *src, struct sen_source_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (src == NULL)
        return;
    struct sen_source *s = (struct sen_source *)src; /* the lock only */
    st->frames = atomic_load(&s->frames);
    st->bytes = atomic_load(&s->bytes);
    st->lines = atomic_load(&s->lines);
    st->datagrams = atomic_load(&s->datagrams);
    st->kernel_drops = atomic_load(&s->kernel_drops);
    st->read_errors = atomic_load(&s->read_errors);
    pthread_mutex_lock(&s->lock);
    snprintf(st->last_error, sizeof(st->last_error), "%s", s->last_error);
    pthread_mutex_unlock(&s->lock);
}

int sen_source_local_port(const struct sen_source *src)
{
    return src ? src->listen_port : 0;
}

void sen_source_free(struct sen_source *src)
{
    if (src == NULL)
        return;
    sen_source_stop(src);
    sen_source_wait(src);
    if (src->kind_close != NULL)
        src->kind_close(src);
    if (src->wake[0] >= 0)
        close(src->wake[0]);
    if (src->wake[1] >= 0)
        close(src->wake[1]);
    pthread_mutex_destroy(&src->lock);
    free(src->workers);
    free(src->path);
    free(src->bpf);
    free(src);
}

int sen_source_read_pcap(const char *path, const char *bpf, const struct sen_source_cb *cb,
                         struct sen_source_stats *st, char *err, size_t errlen)
{
    struct pcap_state ps;
    struct sen_source_stats local;
    memset(&ps, 0, sizeof(ps));
    if (st == NULL)
        st = &local;
    memset(st, 0, sizeof(*st));
    int r = pcap_open_file(path, bpf, &ps.p, err, errlen);
    if (r != KH_OK)
        return r;
    ps.linktype = pcap_datalink(ps.p);
    struct pcap_ctx c = {NULL, &ps, st, cb};
    for (;;) {
        int n = pcap_dispatch(ps.p, 256, on_packet, (u_char *)&c);
        if (n == PCAP_ERROR) {
            st->read_errors++;
            snprintf(st->last_error, sizeof(st->last_error), "%s: %s", path, pcap_geterr(ps.p));
            break;
        }
        if (n <= 0)
            break;
    }
    if (ps.last_tick != 0 && cb->tick != NULL)
        cb->tick(cb->ctx, 0, ps.last_tick);
    pcap_close(ps.p);
    return KH_OK;
}
