/*
 * Zeek logs (logs.h): conn, dns, ssl and http, written either as Zeek's
 * TSV (header lines "#separator", "#set_separator", "#path", "#fields"
 * and so on, then one row per record) or as JSON lines. Both forms are
 * read into one record of the fields we use and turned into observations:
 * conn -> ip.dst; dns query -> dns.query and each answer -> dns.answer
 * (addresses, and names such as CNAME targets); ssl server_name -> tls.sni
 * and ja3/ja4 when a package added them; http host and uri -> http.host
 * and http.url. Other logs (files, x509, weird...) are ignored.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "khx.h"
#include "log_int.h"

enum zf {
    ZF_TS = 0,
    ZF_ORIG_H,
    ZF_ORIG_P,
    ZF_RESP_H,
    ZF_RESP_P,
    ZF_PROTO,
    ZF_QUERY,
    ZF_ANSWERS,
    ZF_SERVER_NAME,
    ZF_JA3,
    ZF_JA4,
    ZF_HOST,
    ZF_URI,
    ZF_CONN_STATE,
    ZF_COUNT
};

static const char *const zf_names[ZF_COUNT] = {
    "ts",      "id.orig_h",   "id.orig_p", "id.resp_h", "id.resp_p", "proto", "query",
    "answers", "server_name", "ja3",       "ja4",       "host",      "uri",   "conn_state",
};

/* One record, whichever form it came in. Strings point into the line or
 * the parsed JSON and live while the line is being read. */
struct zrec {
    const char *v[ZF_COUNT];
    size_t l[ZF_COUNT];
    json_t *answers; /* JSON form: the answers array */
    char set_sep;
};

static int unset(const char *v, size_t l)
{
    return v == NULL || l == 0 || (l == 1 && v[0] == '-') ||
           (l == 7 && memcmp(v, "(empty)", 7) == 0);
}

static void set_input(struct sen_log_reader *r, const char *path)
{
    if (r->input[0] != '\0')
        snprintf(r->input_buf, sizeof(r->input_buf), "%s", r->input);
    else
        snprintf(r->input_buf, sizeof(r->input_buf), "zeek.%s", path);
}

/* Which log the record comes from when no #path / _path said so. */
static const char *guess_path(const struct zrec *z)
{
    if (z->v[ZF_QUERY] != NULL)
        return "dns";
    if (z->v[ZF_SERVER_NAME] != NULL)
        return "ssl";
    if (z->v[ZF_URI] != NULL)
        return "http";
    if (z->v[ZF_CONN_STATE] != NULL || z->v[ZF_PROTO] != NULL)
        return "conn";
    return "";
}

static void emit_answer(struct sen_log_reader *r, const struct sen_tuple *t, int64_t ts,
                        const char *a, size_t al)
{
    uint8_t addr[16];
    int fam;

    if (unset(a, al) || memchr(a, ' ', al) != NULL) /* "TXT 12 ..." and such */
        return;
    if ((fam = senlog_parse_ip(a, al, addr)) != 0)
        senlog_emit_addr(r, SEN_DNS_ANSWER, t, ts, fam, addr, 0);
    else
        senlog_emit_text(r, SEN_DNS_ANSWER, t, ts, a, al);
}

static int zeek_emit(struct sen_log_reader *r, const char *path, struct zrec *z, int64_t ts)
{
    struct sen_tuple t;
    uint64_t port;
    int fam;

    memset(&t, 0, sizeof(t));
    if (path[0] == '\0')
        path = guess_path(z);
    set_input(r, path);
    if (!unset(z->v[ZF_TS], z->l[ZF_TS]) &&
        senlog_parse_epoch(z->v[ZF_TS], z->l[ZF_TS], &ts) != 0 &&
        senlog_parse_iso8601(z->v[ZF_TS], z->l[ZF_TS], &ts) != 0)
        return senlog_bad(r, "zeek: bad ts \"%.*s\"", (int)KHX_MIN(z->l[ZF_TS], 40), z->v[ZF_TS]);
    if (!unset(z->v[ZF_ORIG_H], z->l[ZF_ORIG_H])) {
        if ((fam = senlog_parse_ip(z->v[ZF_ORIG_H], z->l[ZF_ORIG_H], t.src)) == 0)
            return senlog_bad(r, "zeek: bad id.orig_h");
        if (unset(z->v[ZF_RESP_H], z->l[ZF_RESP_H]) ||
            senlog_parse_ip(z->v[ZF_RESP_H], z->l[ZF_RESP_H], t.dst) != fam)
            return senlog_bad(r, "zeek: bad id.resp_h");
        t.family = (uint8_t)fam;
        if (!unset(z->v[ZF_ORIG_P], z->l[ZF_ORIG_P])) {
            if (senlog_parse_uint(z->v[ZF_ORIG_P], z->l[ZF_ORIG_P], 65535, &port) != 0)
                return senlog_bad(r, "zeek: bad id.orig_p");
            t.sport = (uint16_t)port;
        }
        if (!unset(z->v[ZF_RESP_P], z->l[ZF_RESP_P])) {
            if (senlog_parse_uint(z->v[ZF_RESP_P], z->l[ZF_RESP_P], 65535, &port) != 0)
                return senlog_bad(r, "zeek: bad id.resp_p");
            t.dport = (uint16_t)port;
        }
    }
    if (!unset(z->v[ZF_PROTO], z->l[ZF_PROTO])) {
        const char *p = z->v[ZF_PROTO];
        size_t l = z->l[ZF_PROTO];
        t.proto = (l == 3 && memcmp(p, "tcp", 3) == 0)   ? IPPROTO_TCP
                  : (l == 3 && memcmp(p, "udp", 3) == 0) ? IPPROTO_UDP
                  : (l == 4 && memcmp(p, "icmp", 4) == 0)
                      ? (t.family == AF_INET6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP)
                      : 0;
    }
    if (strcmp(path, "conn") == 0) {
        if (t.family == 0)
            return senlog_bad(r, "zeek conn: no id.orig_h/id.resp_h");
        senlog_emit_addr(r, SEN_IP_DST, &t, ts, t.family, t.dst, t.dport);
        return 1;
    }
    if (strcmp(path, "dns") == 0) {
        if (!unset(z->v[ZF_QUERY], z->l[ZF_QUERY]))
            senlog_emit_text(r, SEN_DNS_QUERY, &t, ts, z->v[ZF_QUERY], z->l[ZF_QUERY]);
        if (z->answers != NULL) {
            size_t i;
            json_t *a;
            json_array_foreach(z->answers, i, a)
            {
                if (json_is_string(a))
                    emit_answer(r, &t, ts, json_string_value(a), json_string_length(a));
            }
        } else if (!unset(z->v[ZF_ANSWERS], z->l[ZF_ANSWERS])) {
            const char *a = z->v[ZF_ANSWERS], *end = a + z->l[ZF_ANSWERS];
            while (a < end) {
                const char *c = memchr(a, z->set_sep, (size_t)(end - a));
                if (c == NULL)
                    c = end;
                emit_answer(r, &t, ts, a, (size_t)(c - a));
                a = c + 1;
            }
        }
        return 1;
    }
    if (strcmp(path, "ssl") == 0) {
        if (!unset(z->v[ZF_SERVER_NAME], z->l[ZF_SERVER_NAME]))
            senlog_emit_text(r, SEN_TLS_SNI, &t, ts, z->v[ZF_SERVER_NAME], z->l[ZF_SERVER_NAME]);
        if (!unset(z->v[ZF_JA3], z->l[ZF_JA3]))
            senlog_emit_text(r, SEN_TLS_JA3, &t, ts, z->v[ZF_JA3], z->l[ZF_JA3]);
        if (!unset(z->v[ZF_JA4], z->l[ZF_JA4]))
            senlog_emit_text(r, SEN_TLS_JA4, &t, ts, z->v[ZF_JA4], z->l[ZF_JA4]);
        return 1;
    }
    if (strcmp(path, "http") == 0) {
        const char *h = z->v[ZF_HOST];
        size_t hl = z->l[ZF_HOST];
        char url[2048];
        if (unset(h, hl))
            return 0; /* HTTP/1.0 without Host: the conn log has the address */
        /* The Host header may carry a port; names are listed without it. */
        if (hl > 0 && h[0] != '[') {
            const char *c = memchr(h, ':', hl);
            if (c != NULL)
                hl = (size_t)(c - h);
        }
        senlog_emit_text(r, SEN_HTTP_HOST, &t, ts, h, hl);
        if (!unset(z->v[ZF_URI], z->l[ZF_URI]) && hl + z->l[ZF_URI] + 1 < sizeof(url)) {
            const char *u = z->v[ZF_URI];
            size_t ul = z->l[ZF_URI], n = hl;
            /* A proxy request's absolute URI already names the host. */
            const char *sch = memmem(u, ul, "://", 3);
            if (sch != NULL) {
                u = sch + 3;
                ul -= (size_t)(u - z->v[ZF_URI]);
                const char *sl = memchr(u, '/', ul);
                ul = sl != NULL ? ul - (size_t)(sl - u) : 0;
                u = sl != NULL ? sl : u;
            }
            memcpy(url, h, hl);
            if (ul == 0 || u[0] != '/')
                url[n++] = '/';
            memcpy(url + n, u, ul);
            senlog_emit_text(r, SEN_HTTP_URL, &t, ts, url, n + ul);
        }
        return 1;
    }
    return 0;
}

/* ---- TSV ---- */

/* The header's values may be written as "\x09". */
static char unescape_char(const char *v, size_t l)
{
    if (l == 4 && v[0] == '\\' && v[1] == 'x' && khx_hexval(v[2]) >= 0 && khx_hexval(v[3]) >= 0)
        return (char)(khx_hexval(v[2]) * 16 + khx_hexval(v[3]));
    return l == 1 ? v[0] : 0;
}

static int zeek_header(struct sen_log_reader *r, const char *s, size_t n)
{
    struct zeek_hdr *h = &r->zeek;
    const char *v, *end = s + n;
    size_t kl = 0;

    if (senlog_starts(s, n, "#separator ")) {
        char c = unescape_char(s + 11, n - 11);
        if (c == 0 || c == '\n')
            return senlog_bad(r, "zeek: bad #separator");
        h->sep = c;
        return 0;
    }
    while (kl < n && s[kl] != h->sep)
        kl++;
    v = kl < n ? s + kl + 1 : end;
    if (senlog_starts(s, kl, "#set_separator")) {
        char c = unescape_char(v, (size_t)(end - v));
        if (c == 0)
            return senlog_bad(r, "zeek: bad #set_separator");
        h->set_sep = c;
    } else if (kl == 5 && memcmp(s, "#path", 5) == 0) {
        size_t l = (size_t)(end - v);
        if (l == 0 || l >= sizeof(h->path))
            return senlog_bad(r, "zeek: bad #path");
        memcpy(h->path, v, l);
        h->path[l] = '\0';
    } else if (kl == 7 && memcmp(s, "#fields", 7) == 0) {
        int ncols = 0;
        for (int i = 0; i < ZF_COUNT; i++)
            h->col[i] = -1;
        while (v < end) {
            const char *c = memchr(v, h->sep, (size_t)(end - v));
            size_t l;
            if (c == NULL)
                c = end;
            l = (size_t)(c - v);
            if (ncols >= ZEEK_MAX_COLS) {
                h->ncols = 0;
                return senlog_bad(r, "zeek: more than %d #fields", ZEEK_MAX_COLS);
            }
            for (int i = 0; i < ZF_COUNT; i++)
                if (strlen(zf_names[i]) == l && memcmp(zf_names[i], v, l) == 0 && h->col[i] < 0)
                    h->col[i] = ncols;
            ncols++;
            v = c + 1;
        }
        h->ncols = ncols;
    }
    return 0;
}

int senlog_zeek_line(struct sen_log_reader *r, const char *s, size_t n, int64_t ts)
{
    const char *cols[ZEEK_MAX_COLS];
    size_t lens[ZEEK_MAX_COLS];
    const char *p = s, *end = s + n;
    struct zrec z;
    int k = 0;

    if (n > 0 && s[0] == '{')
        return senlog_zeek_json(r, s, n);
    if (n > 0 && s[0] == '#')
        return zeek_header(r, s, n);
    if (r->zeek.ncols == 0)
        return senlog_bad(r, "zeek: data row before a #fields header");
    for (;;) {
        const char *c = memchr(p, r->zeek.sep, (size_t)(end - p));
        if (c == NULL)
            c = end;
        if (k >= r->zeek.ncols)
            return senlog_bad(r, "zeek: more columns than the %d #fields", r->zeek.ncols);
        cols[k] = p;
        lens[k] = (size_t)(c - p);
        k++;
        if (c == end)
            break;
        p = c + 1;
    }
    if (k != r->zeek.ncols)
        return senlog_bad(r, "zeek: %d columns, #fields has %d", k, r->zeek.ncols);
    memset(&z, 0, sizeof(z));
    z.set_sep = r->zeek.set_sep;
    for (int i = 0; i < ZF_COUNT; i++)
        if (r->zeek.col[i] >= 0) {
            z.v[i] = cols[r->zeek.col[i]];
            z.l[i] = lens[r->zeek.col[i]];
        }
    return zeek_emit(r, r->zeek.path, &z, ts);
}

/* ---- JSON lines ---- */

/* "id.orig_h" at the top level, or {"id": {"orig_h": ...}}. */
static json_t *jget(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    const char *dot;
    if (v == NULL && (dot = strchr(name, '.')) != NULL) {
        char head[16];
        size_t hl = (size_t)(dot - name);
        if (hl < sizeof(head)) {
            memcpy(head, name, hl);
            head[hl] = '\0';
            json_t *sub = json_object_get(o, head);
            if (json_is_object(sub))
                v = json_object_get(sub, dot + 1);
        }
    }
    return v;
}

int senlog_zeek_json(struct sen_log_reader *r, const char *s, size_t n)
{
    json_error_t err;
    json_t *o = json_loadb(s, n, JSON_REJECT_DUPLICATES, &err);
    struct zrec z;
    char num[ZF_COUNT][32];
    char path[32] = "";
    int rc;

    if (o == NULL)
        return senlog_bad(r, "zeek json: %s at column %d", err.text, err.column);
    if (!json_is_object(o)) {
        json_decref(o);
        return senlog_bad(r, "zeek json: not an object");
    }
    memset(&z, 0, sizeof(z));
    z.set_sep = ',';
    for (int i = 0; i < ZF_COUNT; i++) {
        json_t *v = jget(o, zf_names[i]);
        if (v == NULL)
            continue;
        if (json_is_number(v)) {
            int w = json_is_integer(v)
                        ? snprintf(num[i], sizeof(num[i]), "%lld", (long long)json_integer_value(v))
                        : snprintf(num[i], sizeof(num[i]), "%.6f", json_real_value(v));
            /* A number too long for the buffer is no port or time we use. */
            if (w > 0 && (size_t)w < sizeof(num[i])) {
                z.v[i] = num[i];
                z.l[i] = (size_t)w;
            } else {
                z.v[i] = "?";
                z.l[i] = 1;
            }
        } else if (json_is_string(v)) {
            z.v[i] = json_string_value(v);
            z.l[i] = json_string_length(v);
        } else if (i == ZF_ANSWERS && json_is_array(v)) {
            z.answers = v;
            z.v[i] = "";
        }
    }
    {
        json_t *pv = json_object_get(o, "_path");
        if (json_is_string(pv) && json_string_length(pv) < sizeof(path))
            snprintf(path, sizeof(path), "%s", json_string_value(pv));
    }
    rc = zeek_emit(r, path, &z, 0);
    json_decref(o);
    return rc;
}
