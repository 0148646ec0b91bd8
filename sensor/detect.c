/*
 * The detector: one lookup per observation in the indicator store, then,
 * for a match, the internal host and its agency, and a hit for the output.
 * The hot path (an address observation that misses) is one store lookup
 * with no allocation, no lock and no formatting; everything else happens
 * only on a match, which is rare.
 */
#include "detect.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <khien/khien.h>

#include "khx.h"

/* ---- agency ranges ---- */

struct agency_range {
    uint8_t family;
    uint8_t prefix;
    uint8_t addr[16];
    int64_t id;
    char *code;
};

struct sen_agencies {
    struct agency_range *r; /* most specific first */
    size_t n;
};

#define AGENCIES_MAX 100000

static int parse_cidr(const char *s, uint8_t *family, uint8_t addr[16], uint8_t *prefix)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(buf))
        return -1;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    memset(addr, 0, 16);
    int max;
    if (inet_pton(AF_INET, buf, addr) == 1) {
        *family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, addr) == 1) {
        *family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    long p = max;
    if (slash != NULL) {
        char *end;
        p = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end != '\0' || p < 0 || p > max)
            return -1;
    }
    *prefix = (uint8_t)p;
    /* Host bits are cleared so that lookups compare whole bytes. */
    for (int bit = (int)p; bit < max; bit++)
        addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    return 0;
}

static int prefix_covers(const struct agency_range *r, int family, const uint8_t *addr)
{
    if (r->family != family)
        return 0;
    unsigned full = r->prefix / 8u, rest = r->prefix % 8u;
    if (memcmp(r->addr, addr, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xffu << (8u - rest));
    return (addr[full] & mask) == r->addr[full];
}

static int range_order(const void *a, const void *b)
{
    const struct agency_range *x = a, *y = b;
    return (int)y->prefix - (int)x->prefix;
}

static int agencies_add(struct sen_agencies *a, const char *cidr, int64_t id, const char *code,
                        char *err, size_t errlen, const char *where)
{
    if (a->n >= AGENCIES_MAX) {
        khx_errf(err, errlen, "%s: more than %d address ranges", where, AGENCIES_MAX);
        return KH_ELIMIT;
    }
    struct agency_range r = {.id = id};
    if (parse_cidr(cidr, &r.family, r.addr, &r.prefix) != 0) {
        khx_errf(err, errlen, "%s: '%s' is not an address range (CIDR)", where, cidr);
        return KH_EFORMAT;
    }
    if (id <= 0) {
        khx_errf(err, errlen, "%s: the agency id must be a positive number", where);
        return KH_EFORMAT;
    }
    if (code != NULL && (r.code = strdup(code)) == NULL)
        return KH_ENOMEM;
    if ((a->n & (a->n + 1)) == 0 || a->n == 0) {
        size_t cap = a->n ? (a->n + 1) * 2 : 16;
        struct agency_range *g = realloc(a->r, cap * sizeof(*g));
        if (g == NULL) {
            free(r.code);
            return KH_ENOMEM;
        }
        a->r = g;
    }
    a->r[a->n++] = r;
    return KH_OK;
}

static void agencies_finish(struct sen_agencies *a)
{
    if (a->n > 1)
        qsort(a->r, a->n, sizeof(a->r[0]), range_order);
}

int sen_agencies_from_json(const json_t *list, struct sen_agencies **out, char *err, size_t errlen)
{
    int r = KH_EFORMAT;
    struct sen_agencies *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return KH_ENOMEM;
    if (!json_is_array(list)) {
        khx_errf(err, errlen, "networks: not a list");
        goto out;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e)
    {
        char where[48];
        snprintf(where, sizeof(where), "networks[%zu]", i);
        const char *cidr = json_string_value(json_object_get(e, "cidr"));
        const json_t *id = json_object_get(e, "agency_id");
        const char *code = json_string_value(json_object_get(e, "agency_code"));
        if (cidr == NULL || !json_is_integer(id)) {
            khx_errf(err, errlen, "%s: needs \"cidr\" and \"agency_id\"", where);
            r = KH_EFORMAT;
            goto out;
        }
        if ((r = agencies_add(a, cidr, (int64_t)json_integer_value(id), code, err, errlen,
                              where)) != KH_OK)
            goto out;
    }
    agencies_finish(a);
    *out = a;
    a = NULL;
    r = KH_OK;
out:
    sen_agencies_free(a);
    return r;
}

int sen_agencies_from_text(const char *text, size_t len, struct sen_agencies **out, char *err,
                           size_t errlen)
{
    int r = KH_EFORMAT;
    struct sen_agencies *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return KH_ENOMEM;
    size_t lineno = 0, pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (text + pos)) : len - pos;
        char line[512], cidr[128], code[128] = "";
        long long id = 0;
        lineno++;
        if (l >= sizeof(line)) {
            khx_errf(err, errlen, "line %zu: longer than %zu bytes", lineno, sizeof(line) - 1);
            goto out;
        }
        memcpy(line, text + pos, l);
        line[l] = '\0';
        pos += l + 1;
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        int n = sscanf(line, "%127s %lld %127s", cidr, &id, code);
        if (n <= 0)
            continue;
        char where[32];
        snprintf(where, sizeof(where), "line %zu", lineno);
        if (n < 2) {
            khx_errf(err, errlen, "%s: expected \"CIDR AGENCY_ID [CODE]\"", where);
            goto out;
        }
        if ((r = agencies_add(a, cidr, id, n == 3 ? code : NULL, err, errlen, where)) != KH_OK)
            goto out;
    }
    agencies_finish(a);
    *out = a;
    a = NULL;
    r = KH_OK;
out:
    sen_agencies_free(a);
    return r;
}

void sen_agencies_free(struct sen_agencies *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->r[i].code);
    free(a->r);
    free(a);
}

size_t sen_agencies_count(const struct sen_agencies *a)
{
    return a ? a->n : 0;
}

int sen_agencies_lookup(const struct sen_agencies *a, int family, const uint8_t *addr, int64_t *id,
                        const char **code)
{
    if (a == NULL)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        if (prefix_covers(&a->r[i], family, addr)) {
            *id = a->r[i].id;
            *code = a->r[i].code;
            return 1;
        }
    }
    return 0;
}

/* ---- shared state ---- */

struct sen_detect_shared {
    struct ioc_slot *slot;
    struct sen_output *out;
    pthread_mutex_t lock; /* guards agencies (read only on a match) */
    struct sen_agencies *agencies;
};

int sen_detect_shared_new(struct ioc_slot *slot, struct sen_output *out,
                          struct sen_detect_shared **outp)
{
    struct sen_detect_shared *sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return KH_ENOMEM;
    sh->slot = slot;
    sh->out = out;
    pthread_mutex_init(&sh->lock, NULL);
    *outp = sh;
    return KH_OK;
}

void sen_detect_shared_free(struct sen_detect_shared *sh)
{
    if (sh == NULL)
        return;
    sen_agencies_free(sh->agencies);
    pthread_mutex_destroy(&sh->lock);
    free(sh);
}

void sen_detect_set_agencies(struct sen_detect_shared *sh, struct sen_agencies *a)
{
    pthread_mutex_lock(&sh->lock);
    struct sen_agencies *old = sh->agencies;
    sh->agencies = a;
    pthread_mutex_unlock(&sh->lock);
    sen_agencies_free(old);
}

/* ---- per-worker detector ---- */

struct sen_detector {
    struct sen_detect_shared *sh;
    const struct ioc_store *store; /* held reference, renewed by tick */
    int64_t now_s;                 /* wall clock for expiry, renewed by tick */
    struct sen_detect_stats st;
    struct ioc_hit hit; /* scratch for a match (large; kept off the stack) */
};

int sen_detector_new(struct sen_detect_shared *sh, struct sen_detector **out)
{
    struct sen_detector *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return KH_ENOMEM;
    d->sh = sh;
    d->store = ioc_slot_acquire(sh->slot);
    d->now_s = (int64_t)time(NULL);
    *out = d;
    return KH_OK;
}

void sen_detector_free(struct sen_detector *d)
{
    if (d == NULL)
        return;
    if (d->store != NULL)
        ioc_slot_release(d->sh->slot, d->store);
    free(d);
}

void sen_detector_tick(struct sen_detector *d)
{
    const struct ioc_store *s = ioc_slot_acquire(d->sh->slot);
    if (d->store != NULL)
        ioc_slot_release(d->sh->slot, d->store);
    d->store = s;
    d->now_s = (int64_t)time(NULL);
}

void sen_detector_stats_add(const struct sen_detector *d, struct sen_detect_stats *st)
{
    for (int w = 0; w < SEN_WHERE_COUNT; w++) {
        st->observations[w] += d->st.observations[w];
        st->matches[w] += d->st.matches[w];
    }
    st->allowed += d->st.allowed;
    st->no_store += d->st.no_store;
}

static int is_private(int family, const uint8_t *a)
{
    if (family == AF_INET)
        return a[0] == 10 || a[0] == 127 || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
               (a[0] == 192 && a[1] == 168) || (a[0] == 100 && (a[1] & 0xc0) == 64) ||
               (a[0] == 169 && a[1] == 254);
    if (family == AF_INET6) {
        static const uint8_t loopback[16] = {[15] = 1};
        return (a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) ||
               memcmp(a, loopback, 16) == 0;
    }
    return 0;
}

static int is_dns_port(uint16_t p)
{
    return p == 53 || p == 853 || p == 5353 || p == 5355;
}

/* Which end of the tuple is the agency's machine: the one inside an agency
 * range, else the one with a private address, else the side the
 * observation implies (the sender of a request; the receiver of a DNS
 * answer or of a packet from a listed address). Returns 0 (src) or 1 (dst). */
static int pick_host(const struct sen_obs *o, int s_in, int d_in)
{
    if (s_in != d_in)
        return d_in;
    int fam = o->t.family;
    int s_priv = is_private(fam, o->t.src), d_priv = is_private(fam, o->t.dst);
    if (s_priv != d_priv)
        return d_priv;
    switch (o->where) {
    case SEN_IP_SRC:
        return 1;
    case SEN_DNS_ANSWER:
        return is_dns_port(o->t.sport) ? 1 : 0;
    default:
        return 0;
    }
}

static void report(struct sen_detector *d, const struct sen_obs *o)
{
    struct sen_hit h = {.obs = o, .ioc = &d->hit};
    pthread_mutex_lock(&d->sh->lock);
    if (o->t.family == AF_INET || o->t.family == AF_INET6) {
        /* One range lookup per end; the chosen end's answer names the agency. */
        int64_t id[2] = {0, 0};
        const char *code[2] = {NULL, NULL};
        int in[2];
        in[0] = sen_agencies_lookup(d->sh->agencies, o->t.family, o->t.src, &id[0], &code[0]);
        in[1] = sen_agencies_lookup(d->sh->agencies, o->t.family, o->t.dst, &id[1], &code[1]);
        int end = pick_host(o, in[0], in[1]);
        h.host_family = o->t.family;
        memcpy(h.host, end ? o->t.dst : o->t.src, 16);
        h.agency_id = id[end];
        h.agency_code = code[end];
    }
    /* The output copies the strings, so the lock can go after the call. */
    sen_output_hit(d->sh->out, &h);
    pthread_mutex_unlock(&d->sh->lock);
}

/* A Host header or SNI may be an address literal: check it as an address. */
static int match_host_text(struct sen_detector *d, const char *text, size_t len)
{
    char buf[64];
    if (len > 0 && len < sizeof(buf) &&
        (text[0] == '[' || (text[0] >= '0' && text[0] <= '9') || memchr(text, ':', len) != NULL)) {
        memcpy(buf, text, len);
        buf[len] = '\0';
        if (buf[0] == '[' && buf[len - 1] == ']') {
            memmove(buf, buf + 1, len - 2);
            buf[len - 2] = '\0';
        }
        uint8_t a[16];
        if (inet_pton(AF_INET, buf, a) == 1)
            return ioc_store_match_addr(d->store, AF_INET, a, 0, d->now_s, &d->hit);
        if (inet_pton(AF_INET6, buf, a) == 1)
            return ioc_store_match_addr(d->store, AF_INET6, a, 0, d->now_s, &d->hit);
    }
    return ioc_store_match_domain(d->store, text, len, d->now_s, &d->hit);
}

void sen_detect_obs(void *ctx, const struct sen_obs *o)
{
    struct sen_detector *d = ctx;
    if ((unsigned)o->where >= SEN_WHERE_COUNT)
        return;
    d->st.observations[o->where]++;
    if (d->store == NULL) {
        d->st.no_store++;
        return;
    }
    int m = IOC_MISS;
    if (o->addr_family == AF_INET || o->addr_family == AF_INET6) {
        m = ioc_store_match_addr(d->store, o->addr_family, o->addr, o->port, d->now_s, &d->hit);
    } else if (o->text != NULL && o->text_len > 0) {
        switch (o->where) {
        case SEN_HTTP_URL:
            m = ioc_store_match_url(d->store, o->text, o->text_len, d->now_s, &d->hit);
            break;
        case SEN_TLS_JA3:
            m = ioc_store_match_fingerprint(d->store, IOC_JA3, o->text, o->text_len, d->now_s,
                                            &d->hit);
            break;
        case SEN_TLS_JA4:
            m = ioc_store_match_fingerprint(d->store, IOC_JA4, o->text, o->text_len, d->now_s,
                                            &d->hit);
            break;
        default:
            m = match_host_text(d, o->text, o->text_len);
            break;
        }
    }
    if (m == IOC_ALLOWED) {
        d->st.allowed++;
        return;
    }
    if (m != IOC_MATCH)
        return;
    d->st.matches[o->where]++;
    report(d, o);
}
