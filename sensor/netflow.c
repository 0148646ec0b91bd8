/*
 * The NetFlow / IPFIX collector's parser (logs.h): NetFlow v5 (fixed
 * 48-byte records), NetFlow v9 (RFC 3954) and IPFIX (RFC 7011). v9 and
 * IPFIX describe their records with templates that the exporter sends from
 * time to time; they are kept per (version, exporter address, source id or
 * observation domain, template id) in a bounded cache that evicts the
 * oldest entry when full, so a hostile sender cannot grow it. A data set
 * whose template we have not seen yet is counted (unknown_template) and
 * skipped. Options data gives no flows; the one thing taken from it is an
 * IPFIX exporter's systemInitTimeMilliseconds, which turns the uptime-based
 * flow end times (softflowd sends those) into wall-clock times. Each flow record with source and
 * destination addresses becomes one ip.dst observation with the record's 5-tuple and, when the
 * record has one, its end time.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <khien/khien.h>

#include "khx.h"
#include "logs.h"

#define NF_MAX_TEMPLATES 1024
#define NF_BUCKETS       1024
#define NF_MAX_FIELDS    128
#define NF_VARLEN        65535
#define NTP_UNIX_OFFSET  2208988800ULL

struct nf_field {
    uint16_t id;
    uint16_t len; /* NF_VARLEN: variable (IPFIX) */
    uint8_t enterprise;
};

struct nf_tmpl {
    uint8_t version, family, options, used;
    uint8_t exporter[16];
    uint32_t domain;
    uint16_t id;
    uint16_t nfields;
    size_t min_len; /* bytes of a record with every variable field empty */
    int next;       /* bucket chain, -1 at the end */
    struct nf_field f[NF_MAX_FIELDS];
};

/* An exporter's systemInitTimeMilliseconds, which IPFIX exporters such
 * as softflowd send in options data rather than in each flow record. */
struct nf_init {
    uint8_t family, used;
    uint8_t exporter[16];
    uint32_t domain;
    uint64_t init_ms;
};

#define NF_MAX_INITS 64

struct sen_netflow {
    struct nf_tmpl *t; /* NF_MAX_TEMPLATES slots */
    struct nf_init inits[NF_MAX_INITS];
    int init_ring;
    int bucket[NF_BUCKETS];
    int count, ring;
    struct sen_netflow_stats st;
    char reason[160];
};

/* One flow record's fields of interest. */
struct nf_rec {
    struct sen_tuple t;
    int have_src4, have_dst4, have_src6, have_dst6;
    int64_t end_us;
    uint64_t end_uptime_ms, sys_init_ms;
    int have_end_uptime, have_sys_init;
};

int sen_netflow_new(struct sen_netflow **out)
{
    struct sen_netflow *nf;
    if (out == NULL)
        return KH_EINVAL;
    if ((nf = calloc(1, sizeof(*nf))) == NULL)
        return KH_ENOMEM;
    if ((nf->t = calloc(NF_MAX_TEMPLATES, sizeof(*nf->t))) == NULL) {
        free(nf);
        return KH_ENOMEM;
    }
    for (int i = 0; i < NF_BUCKETS; i++)
        nf->bucket[i] = -1;
    *out = nf;
    return KH_OK;
}

void sen_netflow_free(struct sen_netflow *nf)
{
    if (nf == NULL)
        return;
    free(nf->t);
    free(nf);
}

void sen_netflow_stats(const struct sen_netflow *nf, struct sen_netflow_stats *st)
{
    if (st == NULL)
        return;
    if (nf == NULL)
        memset(st, 0, sizeof(*st));
    else
        *st = nf->st;
}

static int nf_bad(struct sen_netflow *nf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int nf_bad(struct sen_netflow *nf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(nf->reason, sizeof(nf->reason), fmt, ap);
    va_end(ap);
    return -1;
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Unsigned big-endian integer of 1..8 bytes (IPFIX reduced-size encoding). */
static uint64_t beN(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* ---- template cache ---- */

static unsigned tmpl_hash(int version, int family, const uint8_t *exp, uint32_t domain, uint16_t id)
{
    /* FNV-1a over the key; the sender chooses only its own ids, and the
     * cache is bounded, so a keyed hash buys nothing here. */
    uint32_t h = 2166136261u;
    uint8_t key[16 + 4 + 2 + 2];
    memcpy(key, exp, 16);
    memcpy(key + 16, &domain, 4);
    memcpy(key + 20, &id, 2);
    key[22] = (uint8_t)version;
    key[23] = (uint8_t)family;
    for (size_t i = 0; i < sizeof(key); i++)
        h = (h ^ key[i]) * 16777619u;
    return h % NF_BUCKETS;
}

static struct nf_tmpl *tmpl_find(struct sen_netflow *nf, int version, int family,
                                 const uint8_t *exp, uint32_t domain, uint16_t id)
{
    for (int i = nf->bucket[tmpl_hash(version, family, exp, domain, id)]; i >= 0;
         i = nf->t[i].next) {
        struct nf_tmpl *t = &nf->t[i];
        if (t->version == version && t->family == family && t->domain == domain && t->id == id &&
            memcmp(t->exporter, exp, 16) == 0)
            return t;
    }
    return NULL;
}

static void tmpl_unlink(struct sen_netflow *nf, int slot)
{
    struct nf_tmpl *t = &nf->t[slot];
    int *pp = &nf->bucket[tmpl_hash(t->version, t->family, t->exporter, t->domain, t->id)];
    while (*pp >= 0) {
        if (*pp == slot) {
            *pp = t->next;
            break;
        }
        pp = &nf->t[*pp].next;
    }
    t->used = 0;
}

/* Returns the entry for the key, new (and linked) or the existing one. */
static struct nf_tmpl *tmpl_slot(struct sen_netflow *nf, int version, int family,
                                 const uint8_t *exp, uint32_t domain, uint16_t id)
{
    struct nf_tmpl *t = tmpl_find(nf, version, family, exp, domain, id);
    int slot;
    unsigned b;

    if (t != NULL)
        return t;
    if (nf->count < NF_MAX_TEMPLATES) {
        slot = nf->count++;
    } else {
        /* Full: the oldest entry goes (FIFO over the slots). */
        slot = nf->ring;
        nf->ring = (nf->ring + 1) % NF_MAX_TEMPLATES;
        tmpl_unlink(nf, slot);
    }
    t = &nf->t[slot];
    memset(t, 0, sizeof(*t) - sizeof(t->f));
    t->version = (uint8_t)version;
    t->family = (uint8_t)family;
    memcpy(t->exporter, exp, 16);
    t->domain = domain;
    t->id = id;
    t->used = 1;
    b = tmpl_hash(version, family, exp, domain, id);
    t->next = nf->bucket[b];
    nf->bucket[b] = slot;
    return t;
}

static void tmpl_withdraw(struct sen_netflow *nf, int version, int family, const uint8_t *exp,
                          uint32_t domain, uint16_t id)
{
    struct nf_tmpl *t = tmpl_find(nf, version, family, exp, domain, id);
    if (t != NULL) {
        tmpl_unlink(nf, (int)(t - nf->t));
        /* The slot stays out of the chains; the id can no longer match. */
        t->id = 0;
        t->version = 0;
    }
}

/* ---- records ---- */

struct nf_ctx {
    struct sen_netflow *nf;
    int version;
    int family;
    const uint8_t *exporter;
    sen_obs_fn fn;
    void *ctx;
    int64_t now_us, export_us;
    uint32_t sys_uptime_ms; /* v5/v9 header */
    uint32_t domain;        /* v9 source id / IPFIX observation domain */
    uint8_t exp[16];        /* the exporter's address, zero-padded */
    int records;
};

static struct nf_init *init_find(struct nf_ctx *c)
{
    for (int i = 0; i < NF_MAX_INITS; i++) {
        struct nf_init *in = &c->nf->inits[i];
        if (in->used && in->family == c->family && in->domain == c->domain &&
            memcmp(in->exporter, c->exp, 16) == 0)
            return in;
    }
    return NULL;
}

static void init_store(struct nf_ctx *c, uint64_t init_ms)
{
    struct nf_init *in = init_find(c);
    if (in == NULL) {
        in = &c->nf->inits[c->nf->init_ring];
        c->nf->init_ring = (c->nf->init_ring + 1) % NF_MAX_INITS;
        in->used = 1;
        in->family = (uint8_t)c->family;
        memcpy(in->exporter, c->exp, 16);
        in->domain = c->domain;
    }
    in->init_ms = init_ms;
}

static void emit_rec(struct nf_ctx *c, struct nf_rec *rec)
{
    struct sen_obs o;
    char ev[200], s[46], d[46], e[46];
    int64_t ts = c->now_us;

    if (rec->have_src4 && rec->have_dst4)
        rec->t.family = AF_INET;
    else if (rec->have_src6 && rec->have_dst6)
        rec->t.family = AF_INET6;
    else
        return; /* no addresses: nothing to check */
    if (rec->have_end_uptime && !rec->have_sys_init && c->version == 10) {
        const struct nf_init *in = init_find(c);
        if (in != NULL) {
            rec->sys_init_ms = in->init_ms;
            rec->have_sys_init = 1;
        }
    }
    if (rec->end_us > 0)
        ts = rec->end_us;
    else if (rec->have_end_uptime && rec->have_sys_init)
        ts = (int64_t)((rec->sys_init_ms + rec->end_uptime_ms) & 0xffffffffffffULL) * 1000;
    else if (rec->have_end_uptime && c->version == 9)
        ts = c->export_us -
             (int64_t)(uint32_t)(c->sys_uptime_ms - (uint32_t)rec->end_uptime_ms) * 1000;
    sen_addr_format(rec->t.family, rec->t.src, s);
    sen_addr_format(rec->t.family, rec->t.dst, d);
    sen_addr_format(c->family, c->exporter, e);
    snprintf(ev, sizeof(ev), "%s from %s: %s:%u -> %s:%u proto %u",
             c->version == 10  ? "IPFIX"
             : c->version == 9 ? "NetFlow v9"
                               : "NetFlow v5",
             e, s, rec->t.sport, d, rec->t.dport, rec->t.proto);
    memset(&o, 0, sizeof(o));
    o.where = SEN_IP_DST;
    o.t = rec->t;
    o.ts_us = ts;
    o.addr_family = rec->t.family;
    memcpy(o.addr, rec->t.dst, 16);
    o.port = rec->t.dport;
    o.evidence = ev;
    o.input = "netflow";
    c->fn(c->ctx, &o);
    c->records++;
}

/* One field of a record into rec. */
static void take_field(struct nf_rec *rec, uint16_t id, const uint8_t *v, size_t len)
{
    switch (id) {
    case 4: /* protocolIdentifier */
        if (len >= 1)
            rec->t.proto = v[len - 1];
        break;
    case 7: /* sourceTransportPort */
        if (len <= 2)
            rec->t.sport = (uint16_t)beN(v, len);
        break;
    case 11: /* destinationTransportPort */
        if (len <= 2)
            rec->t.dport = (uint16_t)beN(v, len);
        break;
    case 8: /* sourceIPv4Address */
        if (len == 4 && !rec->have_src6) {
            memcpy(rec->t.src, v, 4);
            rec->have_src4 = 1;
        }
        break;
    case 12:
        if (len == 4 && !rec->have_dst6) {
            memcpy(rec->t.dst, v, 4);
            rec->have_dst4 = 1;
        }
        break;
    case 27: /* sourceIPv6Address */
        if (len == 16 && !rec->have_src4) {
            memcpy(rec->t.src, v, 16);
            rec->have_src6 = 1;
        }
        break;
    case 28:
        if (len == 16 && !rec->have_dst4) {
            memcpy(rec->t.dst, v, 16);
            rec->have_dst6 = 1;
        }
        break;
    case 21: /* flowEndSysUpTime / LAST_SWITCHED (ms) */
        if (len >= 1 && len <= 8) {
            rec->end_uptime_ms = beN(v, len);
            rec->have_end_uptime = 1;
        }
        break;
    case 160: /* systemInitTimeMilliseconds */
        if (len >= 1 && len <= 8) {
            rec->sys_init_ms = beN(v, len);
            rec->have_sys_init = 1;
        }
        break;
    case 151: /* flowEndSeconds */
        if (len >= 1 && len <= 8)
            rec->end_us = (int64_t)(beN(v, len) & 0xffffffffffULL) * 1000000;
        break;
    case 153: /* flowEndMilliseconds */
        if (len >= 1 && len <= 8)
            rec->end_us = (int64_t)(beN(v, len) & 0xffffffffffffULL) * 1000;
        break;
    case 155: /* flowEndMicroseconds (NTP format) */
    case 157: /* flowEndNanoseconds (NTP format) */
        if (len == 8) {
            uint64_t secs = be32(v), frac = be32(v + 4);
            if (secs >= NTP_UNIX_OFFSET)
                rec->end_us =
                    (int64_t)(secs - NTP_UNIX_OFFSET) * 1000000 + (int64_t)((frac * 1000000) >> 32);
        }
        break;
    default:
        break;
    }
}

/* The records of one data set. Returns 0 or -1 (malformed). */
static int data_set(struct nf_ctx *c, const struct nf_tmpl *t, const uint8_t *p, size_t len)
{
    size_t off = 0;

    if (t->min_len == 0)
        return 0;
    /* What is left after the last record that fits is padding. */
    while (len - off >= t->min_len) {
        struct nf_rec rec;
        memset(&rec, 0, sizeof(rec));
        for (unsigned i = 0; i < t->nfields; i++) {
            size_t fl = t->f[i].len;
            if (fl == NF_VARLEN) {
                if (off + 1 > len)
                    return nf_bad(c->nf, "variable-length field past the set's end");
                fl = p[off++];
                if (fl == 255) {
                    if (off + 2 > len)
                        return nf_bad(c->nf, "variable-length field past the set's end");
                    fl = be16(p + off);
                    off += 2;
                }
            }
            if (fl > len - off)
                return nf_bad(c->nf, "field %u of template %u past the set's end", t->f[i].id,
                              t->id);
            if (!t->f[i].enterprise)
                take_field(&rec, t->f[i].id, p + off, fl);
            off += fl;
        }
        if (!t->options)
            emit_rec(c, &rec);
        else if (rec.have_sys_init)
            init_store(c, rec.sys_init_ms);
    }
    return 0;
}

/* Reads field specifiers into t. ipfix: enterprise bit and numbers.
 * Returns bytes used, or 0 when malformed. */
static size_t read_fields(struct nf_ctx *c, struct nf_tmpl *t, const uint8_t *p, size_t len,
                          unsigned count, int ipfix)
{
    size_t off = 0, min_len = 0;

    if (count > NF_MAX_FIELDS) {
        nf_bad(c->nf, "template with %u fields (limit %d)", count, NF_MAX_FIELDS);
        return 0;
    }
    for (unsigned i = 0; i < count; i++) {
        uint16_t id, fl;
        uint8_t ent = 0;
        if (off + 4 > len) {
            nf_bad(c->nf, "template field specifiers past the set's end");
            return 0;
        }
        id = be16(p + off);
        fl = be16(p + off + 2);
        off += 4;
        if (ipfix && (id & 0x8000)) {
            if (off + 4 > len) {
                nf_bad(c->nf, "enterprise number past the set's end");
                return 0;
            }
            ent = 1;
            id &= 0x7fff;
            off += 4;
        }
        if (fl == NF_VARLEN && !ipfix) {
            nf_bad(c->nf, "variable-length field in a NetFlow v9 template");
            return 0;
        }
        t->f[i].id = id;
        t->f[i].len = fl;
        t->f[i].enterprise = ent;
        min_len += fl == NF_VARLEN ? 1 : fl;
    }
    t->nfields = (uint16_t)count;
    t->min_len = min_len;
    return off;
}

static int template_set(struct nf_ctx *c, uint32_t domain, const uint8_t *p, size_t len,
                        int options)
{
    int ipfix = c->version == 10;
    size_t off = 0;
    uint8_t exp[16] = {0};

    if (c->exporter != NULL)
        memcpy(exp, c->exporter, c->family == AF_INET6 ? 16 : 4);
    /* Each template needs at least its 4-byte header; less is padding. */
    while (len - off >= 4) {
        uint16_t id = be16(p + off), count = be16(p + off + 2), scope = 0;
        struct nf_tmpl tmp, *t;
        size_t used;

        off += 4;
        if (id < 256) {
            /* IPFIX "withdraw all templates" (set id, no fields): the
             * cache forgets them by age instead. */
            if (ipfix && count == 0 && id == (options ? 3 : 2))
                continue;
            return nf_bad(c->nf, "template id %u below 256", id);
        }
        if (options) {
            if (len - off < 2)
                return nf_bad(c->nf, "options template header past the set's end");
            scope = be16(p + off);
            off += 2;
            if (!ipfix) {
                /* v9: scope and option lengths in bytes, 4 bytes per field. */
                uint32_t bytes = (uint32_t)count + scope;
                if (bytes % 4 != 0 || bytes > len - off)
                    return nf_bad(c->nf, "v9 options template lengths %u+%u", count, scope);
                count = (uint16_t)(bytes / 4);
                scope = 0;
            } else if (scope == 0 || scope > count) {
                return nf_bad(c->nf, "options template scope count %u of %u", scope, count);
            }
        }
        if (count == 0) {
            if (!ipfix)
                return nf_bad(c->nf, "template %u with no fields", id);
            tmpl_withdraw(c->nf, c->version, c->family, exp, domain, id);
            continue;
        }
        memset(&tmp, 0, sizeof(tmp));
        if ((used = read_fields(c, &tmp, p + off, len - off, count, ipfix)) == 0)
            return -1;
        off += used;
        t = tmpl_slot(c->nf, c->version, c->family, exp, domain, id);
        t->options = (uint8_t)options;
        t->nfields = tmp.nfields;
        t->min_len = tmp.min_len;
        memcpy(t->f, tmp.f, sizeof(tmp.f[0]) * tmp.nfields);
        c->nf->st.templates++;
        if (!ipfix && options)
            break; /* v9 options flowsets end with padding */
    }
    return 0;
}

static int sets(struct nf_ctx *c, uint32_t domain, const uint8_t *p, size_t len)
{
    size_t off = 0;
    int ipfix = c->version == 10;
    uint8_t exp[16] = {0};

    if (c->exporter != NULL)
        memcpy(exp, c->exporter, c->family == AF_INET6 ? 16 : 4);
    while (off < len) {
        uint16_t id, slen;
        if (len - off < 4) {
            if (!ipfix)
                break; /* v9 exporters may pad the datagram */
            return nf_bad(c->nf, "%zu bytes after the last set", len - off);
        }
        id = be16(p + off);
        slen = be16(p + off + 2);
        if (slen < 4 || slen > len - off)
            return nf_bad(c->nf, "set %u length %u (%zu bytes left)", id, slen, len - off);
        if ((ipfix && id == 2) || (!ipfix && id == 0)) {
            if (template_set(c, domain, p + off + 4, slen - 4u, 0) != 0)
                return -1;
        } else if ((ipfix && id == 3) || (!ipfix && id == 1)) {
            if (template_set(c, domain, p + off + 4, slen - 4u, 1) != 0)
                return -1;
        } else if (id >= 256) {
            const struct nf_tmpl *t = tmpl_find(c->nf, c->version, c->family, exp, domain, id);
            if (t == NULL)
                c->nf->st.unknown_template++;
            else if (data_set(c, t, p + off + 4, slen - 4u) != 0)
                return -1;
        } else {
            return nf_bad(c->nf, "reserved set id %u", id);
        }
        off += slen;
    }
    return 0;
}

static int v5(struct nf_ctx *c, const uint8_t *p, size_t len)
{
    unsigned count;
    uint32_t uptime, secs, nsecs;

    if (len < 24)
        return nf_bad(c->nf, "v5 header needs 24 bytes, got %zu", len);
    count = be16(p + 2);
    if (count == 0 || count > 30)
        return nf_bad(c->nf, "v5 record count %u (1..30)", count);
    if (len < 24 + (size_t)count * 48)
        return nf_bad(c->nf, "v5 datagram of %zu bytes for %u records", len, count);
    uptime = be32(p + 4);
    secs = be32(p + 8);
    nsecs = be32(p + 12);
    for (unsigned i = 0; i < count; i++) {
        const uint8_t *r = p + 24 + i * 48;
        struct nf_rec rec;
        uint32_t last = be32(r + 28);
        memset(&rec, 0, sizeof(rec));
        memcpy(rec.t.src, r, 4);
        memcpy(rec.t.dst, r + 4, 4);
        rec.have_src4 = rec.have_dst4 = 1;
        rec.t.sport = be16(r + 32);
        rec.t.dport = be16(r + 34);
        rec.t.proto = r[38];
        /* Last is the router's uptime at the flow's last packet. */
        rec.end_us =
            (int64_t)secs * 1000000 + nsecs / 1000 - (int64_t)(uint32_t)(uptime - last) * 1000;
        emit_rec(c, &rec);
    }
    return 0;
}

int sen_netflow_datagram(struct sen_netflow *nf, int exporter_family, const uint8_t *exporter,
                         const uint8_t *buf, size_t len, int64_t now_us, sen_obs_fn fn, void *ctx)
{
    struct nf_ctx c;
    int rc = -1;

    if (nf == NULL || fn == NULL || (buf == NULL && len > 0))
        return -1;
    nf->st.datagrams++;
    nf->reason[0] = '\0';
    memset(&c, 0, sizeof(c));
    c.nf = nf;
    c.family = (exporter_family == AF_INET || exporter_family == AF_INET6) && exporter != NULL
                   ? exporter_family
                   : 0;
    c.exporter = c.family != 0 ? exporter : NULL;
    if (c.exporter != NULL)
        memcpy(c.exp, exporter, c.family == AF_INET6 ? 16 : 4);
    c.fn = fn;
    c.ctx = ctx;
    c.now_us = now_us;
    if (len > 65535) {
        nf_bad(nf, "datagram of %zu bytes", len);
        goto out;
    }
    if (len < 2) {
        nf_bad(nf, "datagram of %zu bytes has no version", len);
        goto out;
    }
    c.version = be16(buf);
    switch (c.version) {
    case 5:
        rc = v5(&c, buf, len);
        break;
    case 9:
        if (len < 20) {
            nf_bad(nf, "v9 header needs 20 bytes, got %zu", len);
            break;
        }
        c.sys_uptime_ms = be32(buf + 4);
        c.export_us = (int64_t)be32(buf + 8) * 1000000;
        c.domain = be32(buf + 16);
        rc = sets(&c, c.domain, buf + 20, len - 20);
        break;
    case 10: {
        size_t mlen;
        if (len < 16) {
            nf_bad(nf, "IPFIX header needs 16 bytes, got %zu", len);
            break;
        }
        mlen = be16(buf + 2);
        if (mlen < 16 || mlen > len) {
            nf_bad(nf, "IPFIX message length %zu in a %zu-byte datagram", mlen, len);
            break;
        }
        c.export_us = (int64_t)be32(buf + 4) * 1000000;
        c.domain = be32(buf + 12);
        rc = sets(&c, c.domain, buf + 16, mlen - 16);
        break;
    }
    default:
        nf_bad(nf, "version %u is not NetFlow v5, v9 or IPFIX", c.version);
        break;
    }
out:
    nf->st.records += (uint64_t)c.records;
    if (rc != 0) {
        nf->st.malformed++;
        if (nf->st.first_error[0] == '\0')
            snprintf(nf->st.first_error, sizeof(nf->st.first_error), "datagram %llu: %s",
                     (unsigned long long)nf->st.datagrams, nf->reason);
        return -1;
    }
    return c.records;
}
