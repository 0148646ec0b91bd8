/*
 * Hits out (output.c): matches from the detector are folded into hits, one
 * per (internal host, indicator, where) and de-duplication window, and each
 * hit is written once as a JSON line and as a "c2_hit" event into the spool
 * the uplink sends to the server (the format is in output.h).
 *
 * Open windows live in a hash table keyed with SipHash under a random key
 * (libsodium's crypto_shorthash), so traffic cannot be shaped to make the
 * table's chains long, and on a list in the order they opened, so closing
 * windows and evicting the oldest when the table is full are both cheap.
 * The table holds at most max_pending hits; beyond it the oldest is written
 * early. Everything a pending hit needs later is copied when it opens: the
 * JSON fields that do not change are rendered once into `tail`, because the
 * indicator's strings point into a store that may be swapped meanwhile.
 *
 * Hits are taken out of the table under the table's lock and written after
 * it is released (a spool write is an fsync), under a second lock that only
 * keeps the JSON lines whole.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "khx.h"
#include "output.h"
#include "spool.h"

#define DEFAULT_MAX_PENDING 100000
#define OBSERVED_MAX        1024 /* longest observed value kept */
#define EVIDENCE_MAX        512

struct pending {
    struct pending *hnext;       /* hash chain */
    struct pending *prev, *next; /* age list, oldest first */
    uint64_t hash;
    int64_t first_us, last_us;
    uint64_t count;
    size_t keylen;
    char *tail; /* the JSON object from "host" on, without its opening brace */
    uint8_t key[];
};

struct sen_output {
    struct sen_output_opts opts;
    char *sensor;
    size_t max_pending;

    pthread_mutex_t lock; /* the table and the age list */
    struct pending **buckets;
    size_t nbuckets; /* a power of two */
    size_t npending;
    struct pending *oldest, *newest;
    uint8_t hkey[crypto_shorthash_KEYBYTES];

    pthread_mutex_t write_lock; /* whole lines on the stream */
    atomic_uint_fast64_t matches, written, spool_errors, spool_dropped, evicted;
};

static const char *const kind_names[IOC_KIND_COUNT] = {
    [IOC_IP] = "ip",   [IOC_CIDR] = "cidr", [IOC_IP_PORT] = "ip_port", [IOC_DOMAIN] = "domain",
    [IOC_URL] = "url", [IOC_JA3] = "ja3",   [IOC_JA4] = "ja4",
};

static const char *kind_name(int k)
{
    return k >= 0 && k < IOC_KIND_COUNT ? kind_names[k] : "unknown";
}

static json_t *proto_json(uint8_t p)
{
    char buf[8];
    switch (p) {
    case 0:
        return json_null();
    case IPPROTO_TCP:
        return json_string("tcp");
    case IPPROTO_UDP:
        return json_string("udp");
    case IPPROTO_ICMP:
        return json_string("icmp");
    case IPPROTO_ICMPV6:
        return json_string("ipv6-icmp");
    default:
        snprintf(buf, sizeof(buf), "%u", p);
        return json_string(buf);
    }
}

static json_t *addr_json(int family, const uint8_t *addr)
{
    char buf[46];
    if (family != AF_INET && family != AF_INET6)
        return json_null();
    sen_addr_format(family, addr, buf);
    return json_string(buf);
}

/* Text from the wire goes into JSON: jansson needs valid UTF-8, so anything
 * else is shown as '?' (khx_printable). At most `max` bytes are kept. */
static json_t *text_json(const char *s, size_t n, size_t max)
{
    char buf[OBSERVED_MAX + 1];
    if (s == NULL)
        return json_null();
    n = KHX_MIN(n, KHX_MIN(max, sizeof(buf) - 1));
    /* Control characters would grow six-fold as \u escapes and could push
     * an event over the spool's 16 KiB limit: such text is shown with '?'. */
    int plain = 1;
    for (size_t i = 0; i < n && plain; i++)
        plain = (uint8_t)s[i] >= 0x20 && s[i] != 0x7f;
    json_t *j = plain ? json_stringn(s, n) : NULL;
    if (j != NULL)
        return j;
    khx_printable(buf, sizeof(buf), s, n);
    return json_string(buf);
}

/* The category of a hit: the most confident source's. */
static const char *top_category(const struct ioc_hit *h)
{
    const char *cat = NULL;
    int best = -1;
    for (size_t i = 0; i < h->nsources && i < IOC_HIT_MAX_SOURCES; i++)
        if ((int)h->sources[i].confidence > best && h->sources[i].category != NULL) {
            best = h->sources[i].confidence;
            cat = h->sources[i].category;
        }
    return cat ? cat : "malware";
}

/* Renders the fields that do not change while a window is open. */
static char *render_tail(const struct sen_output *o, const struct sen_hit *h)
{
    const struct sen_obs *ob = h->obs;
    const struct ioc_hit *ih = h->ioc;
    json_t *sources = json_array();
    for (size_t i = 0; sources != NULL && i < ih->nsources && i < IOC_HIT_MAX_SOURCES; i++) {
        const struct ioc_source_ref *s = &ih->sources[i];
        json_t *js = json_object();
        json_object_set_new(js, "source", json_string(s->source ? s->source : "-"));
        json_object_set_new(js, "category", json_string(s->category ? s->category : "malware"));
        json_object_set_new(js, "family",
                            s->family && s->family[0] ? json_string(s->family) : json_null());
        json_object_set_new(js, "confidence", json_integer(s->confidence));
        json_object_set_new(js, "expires",
                            s->expires ? json_integer((json_int_t)s->expires) : json_null());
        json_array_append_new(sources, js);
    }
    json_t *ind = json_object();
    json_object_set_new(ind, "kind", json_string(kind_name(ih->kind)));
    json_object_set_new(ind, "value",
                        text_json(ih->value, strnlen(ih->value, IOC_VALUE_MAX), IOC_VALUE_MAX));
    json_object_set_new(ind, "sources", sources);

    json_t *observed;
    if (ob->text != NULL) {
        observed = text_json(ob->text, ob->text_len, OBSERVED_MAX);
    } else if (ob->port != 0 && (ob->addr_family == AF_INET || ob->addr_family == AF_INET6)) {
        char a[46], buf[64];
        sen_addr_format(ob->addr_family, ob->addr, a);
        snprintf(buf, sizeof(buf), ob->addr_family == AF_INET6 ? "[%s]:%u" : "%s:%u", a, ob->port);
        observed = json_string(buf);
    } else {
        observed = addr_json(ob->addr_family, ob->addr);
    }
    int tuple = ob->t.family == AF_INET || ob->t.family == AF_INET6;
    json_t *j = json_object();
    json_object_set_new(j, "host", addr_json(h->host_family, h->host));
    json_object_set_new(j, "agency_id",
                        h->agency_id ? json_integer((json_int_t)h->agency_id) : json_null());
    json_object_set_new(j, "agency_code",
                        h->agency_code ? json_string(h->agency_code) : json_null());
    json_object_set_new(j, "where", json_string(sen_where_name(ob->where)));
    json_object_set_new(j, "observed", observed);
    json_object_set_new(j, "indicator", ind);
    json_object_set_new(j, "category", json_string(top_category(ih)));
    json_object_set_new(j, "proto", proto_json(ob->t.proto));
    json_object_set_new(j, "src_ip", tuple ? addr_json(ob->t.family, ob->t.src) : json_null());
    json_object_set_new(j, "src_port", tuple ? json_integer(ob->t.sport) : json_null());
    json_object_set_new(j, "dest_ip", tuple ? addr_json(ob->t.family, ob->t.dst) : json_null());
    json_object_set_new(j, "dest_port", tuple ? json_integer(ob->t.dport) : json_null());
    json_object_set_new(j, "evidence",
                        ob->evidence ? text_json(ob->evidence, strlen(ob->evidence), EVIDENCE_MAX)
                                     : json_null());
    json_object_set_new(j, "input", json_string(ob->input ? ob->input : "-"));
    json_object_set_new(j, "sensor", json_string(o->sensor));
    char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (text == NULL || text[0] != '{') {
        free(text);
        return NULL;
    }
    memmove(text, text + 1, strlen(text)); /* drop the opening brace */
    return text;
}

static void rfc3339_us(int64_t us, char out[40])
{
    time_t s = (time_t)(us >= 0 ? us / 1000000 : (us - 999999) / 1000000);
    long frac = (long)(us - (int64_t)s * 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%06ldZ", frac);
}

/* Writes one hit: the JSON line, then the spool event. */
static void emit(struct sen_output *o, int64_t first_us, int64_t last_us, uint64_t count,
                 const char *tail)
{
    char id[37], first[40], last[40];
    struct khx_buf b;
    khx_uuid4(id);
    rfc3339_us(first_us, first);
    rfc3339_us(last_us, last);
    khx_buf_init(&b, SPOOL_EVENT_MAX);
    if (khx_buf_printf(&b,
                       "{\"type\":\"c2_hit\",\"id\":\"%s\",\"at\":%lld,\"first_seen\":\"%s\","
                       "\"last_seen\":\"%s\",\"count\":%llu,%s",
                       id, (long long)time(NULL), first, last, (unsigned long long)count,
                       tail) != KH_OK) {
        atomic_fetch_add(&o->spool_errors, 1);
        khx_buf_free(&b);
        return;
    }
    atomic_fetch_add(&o->written, 1);
    if (o->opts.jsonl != NULL) {
        pthread_mutex_lock(&o->write_lock);
        fwrite(b.data, 1, b.len, o->opts.jsonl);
        fputc('\n', o->opts.jsonl);
        fflush(o->opts.jsonl);
        pthread_mutex_unlock(&o->write_lock);
    }
    if (o->opts.spool != NULL) {
        int r = spool_put(o->opts.spool, (const char *)b.data, b.len);
        if (r == KH_ELIMIT)
            atomic_fetch_add(&o->spool_dropped, 1);
        else if (r != KH_OK)
            atomic_fetch_add(&o->spool_errors, 1);
    }
    khx_buf_free(&b);
}

static void emit_pending(struct sen_output *o, struct pending *p)
{
    if (p->tail != NULL)
        emit(o, p->first_us, p->last_us, p->count, p->tail);
    free(p->tail);
    free(p);
}

/* ---- the table (called with o->lock held) ---- */

static void unlink_pending(struct sen_output *o, struct pending *p)
{
    struct pending **pp = &o->buckets[p->hash & (o->nbuckets - 1)];
    while (*pp != NULL && *pp != p)
        pp = &(*pp)->hnext;
    if (*pp == p)
        *pp = p->hnext;
    if (p->prev)
        p->prev->next = p->next;
    else
        o->oldest = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        o->newest = p->prev;
    p->prev = p->next = p->hnext = NULL;
    o->npending--;
}

/* The key: host family and address, where, indicator kind and value. */
static size_t make_key(const struct sen_hit *h, uint8_t *key)
{
    size_t vlen = strnlen(h->ioc->value, IOC_VALUE_MAX);
    key[0] = h->host_family;
    memcpy(key + 1, h->host, 16);
    key[17] = (uint8_t)h->obs->where;
    key[18] = (uint8_t)h->ioc->kind;
    memcpy(key + 19, h->ioc->value, vlen);
    return 19 + vlen;
}

int sen_output_new(const struct sen_output_opts *opts, struct sen_output **out)
{
    struct sen_output *o = calloc(1, sizeof(*o));
    char host[256] = "";
    if (o == NULL)
        return KH_ENOMEM;
    o->opts = *opts;
    o->max_pending = opts->max_pending ? opts->max_pending : DEFAULT_MAX_PENDING;
    if (opts->sensor == NULL || opts->sensor[0] == '\0')
        gethostname(host, sizeof(host) - 1);
    o->sensor = strdup(opts->sensor && opts->sensor[0] ? opts->sensor : host);
    o->nbuckets = 64;
    while (o->nbuckets < o->max_pending && o->nbuckets < (1u << 20))
        o->nbuckets <<= 1;
    o->buckets = calloc(o->nbuckets, sizeof(*o->buckets));
    if (o->sensor == NULL || o->buckets == NULL || sodium_init() < 0) {
        free(o->sensor);
        free(o->buckets);
        free(o);
        return KH_ENOMEM;
    }
    o->opts.sensor = o->sensor;
    randombytes_buf(o->hkey, sizeof(o->hkey));
    pthread_mutex_init(&o->lock, NULL);
    pthread_mutex_init(&o->write_lock, NULL);
    *out = o;
    return KH_OK;
}

void sen_output_hit(struct sen_output *o, const struct sen_hit *h)
{
    uint8_t key[19 + IOC_VALUE_MAX];
    uint64_t hash;
    if (o == NULL || h == NULL || h->obs == NULL || h->ioc == NULL)
        return;
    atomic_fetch_add(&o->matches, 1);
    int64_t ts = h->obs->ts_us;
    if (o->opts.window_s == 0) {
        char *tail = render_tail(o, h);
        if (tail != NULL)
            emit(o, ts, ts, 1, tail);
        else
            atomic_fetch_add(&o->spool_errors, 1);
        free(tail);
        return;
    }
    size_t klen = make_key(h, key);
    crypto_shorthash((unsigned char *)&hash, key, klen, o->hkey);
    int64_t window = (int64_t)o->opts.window_s * 1000000;
    struct pending *closed = NULL, *evicted = NULL;

    pthread_mutex_lock(&o->lock);
    struct pending *p = o->buckets[hash & (o->nbuckets - 1)];
    while (p != NULL && !(p->hash == hash && p->keylen == klen && memcmp(p->key, key, klen) == 0))
        p = p->hnext;
    if (p != NULL && ts >= p->first_us && ts < p->first_us + window) {
        p->count++;
        if (ts > p->last_us)
            p->last_us = ts;
        pthread_mutex_unlock(&o->lock);
        return;
    }
    if (p != NULL && ts >= p->first_us) {
        /* Its window passed before a tick closed it: write it, open anew. */
        unlink_pending(o, p);
        closed = p;
    } else if (p != NULL) {
        /* Out of order (a slower thread's older packet): count it here. */
        p->count++;
        if (ts < p->first_us)
            p->first_us = ts;
        pthread_mutex_unlock(&o->lock);
        return;
    }
    pthread_mutex_unlock(&o->lock);

    /* Rendered outside the lock: it is the slow part. */
    struct pending *n = malloc(sizeof(*n) + klen);
    char *tail = n ? render_tail(o, h) : NULL;
    if (n == NULL || tail == NULL) {
        free(n);
        free(tail);
        atomic_fetch_add(&o->spool_errors, 1);
        if (closed != NULL)
            emit_pending(o, closed);
        return;
    }
    memset(n, 0, sizeof(*n));
    n->hash = hash;
    n->first_us = n->last_us = ts;
    n->count = 1;
    n->keylen = klen;
    n->tail = tail;
    memcpy(n->key, key, klen);

    pthread_mutex_lock(&o->lock);
    /* Another thread may have opened the same window meanwhile. */
    p = o->buckets[hash & (o->nbuckets - 1)];
    while (p != NULL && !(p->hash == hash && p->keylen == klen && memcmp(p->key, key, klen) == 0))
        p = p->hnext;
    if (p != NULL) {
        p->count++;
        if (ts > p->last_us)
            p->last_us = ts;
        pthread_mutex_unlock(&o->lock);
        free(n->tail);
        free(n);
    } else {
        if (o->npending >= o->max_pending && o->oldest != NULL) {
            evicted = o->oldest;
            unlink_pending(o, evicted);
            atomic_fetch_add(&o->evicted, 1);
        }
        n->hnext = o->buckets[hash & (o->nbuckets - 1)];
        o->buckets[hash & (o->nbuckets - 1)] = n;
        n->prev = o->newest;
        if (o->newest)
            o->newest->next = n;
        else
            o->oldest = n;
        o->newest = n;
        o->npending++;
        pthread_mutex_unlock(&o->lock);
    }
    if (closed != NULL)
        emit_pending(o, closed);
    if (evicted != NULL)
        emit_pending(o, evicted);
}

/* Takes the hits to write out of the table: those whose window closed by
 * now_us, or all of them (all != 0). */
static void close_windows(struct sen_output *o, int64_t now_us, int all)
{
    struct pending *list = NULL, **tail = &list;
    int64_t window = (int64_t)o->opts.window_s * 1000000;
    pthread_mutex_lock(&o->lock);
    struct pending *p = o->oldest;
    while (p != NULL) {
        struct pending *next = p->next;
        /* The age list is in opening order, which follows the input's clock
         * closely enough: the first window still open ends the walk. */
        if (!all && p->first_us + window > now_us)
            break;
        unlink_pending(o, p);
        *tail = p;
        tail = &p->next;
        p = next;
    }
    pthread_mutex_unlock(&o->lock);
    while (list != NULL) {
        struct pending *next = list->next;
        emit_pending(o, list);
        list = next;
    }
}

void sen_output_tick(struct sen_output *o, int64_t now_us)
{
    if (o != NULL && o->opts.window_s > 0)
        close_windows(o, now_us, 0);
}

void sen_output_flush(struct sen_output *o)
{
    if (o != NULL)
        close_windows(o, 0, 1);
}

void sen_output_stats(const struct sen_output *o, struct sen_output_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (o == NULL)
        return;
    struct sen_output *m = (struct sen_output *)o; /* atomics only */
    st->matches = atomic_load(&m->matches);
    st->hits_written = atomic_load(&m->written);
    st->spool_errors = atomic_load(&m->spool_errors);
    st->spool_dropped = atomic_load(&m->spool_dropped);
    st->evicted_early = atomic_load(&m->evicted);
}

void sen_output_free(struct sen_output *o)
{
    if (o == NULL)
        return;
    sen_output_flush(o);
    pthread_mutex_destroy(&o->lock);
    pthread_mutex_destroy(&o->write_lock);
    free(o->buckets);
    free(o->sensor);
    free(o);
}
