/*
 * The log reader object (logs.h): one per stream of lines (a followed file
 * or a syslog sender). It checks a line's bounds, removes the syslog header
 * (RFC 3164 with or without <PRI>, as files have it, and RFC 5424), picks
 * the format (configured, or in auto mode from the syslog program tag and
 * then the line's shape) and hands the message to that format's reader in
 * log_dns.c, log_net.c, log_zeek.c or log_eve.c. It also keeps the counts
 * and the first error, and holds the helpers those readers share: emitting
 * an observation with the line as evidence, addresses, numbers and dates.
 */
#include "log_int.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <khien/khien.h>

#include "khx.h"

static const char *const format_names[SEN_LOG_COUNT] = {
    [SEN_LOG_AUTO] = "auto",       [SEN_LOG_BIND] = "bind",     [SEN_LOG_DNSMASQ] = "dnsmasq",
    [SEN_LOG_UNBOUND] = "unbound", [SEN_LOG_WINDNS] = "windns", [SEN_LOG_NETFILTER] = "netfilter",
    [SEN_LOG_SQUID] = "squid",     [SEN_LOG_ZEEK] = "zeek",     [SEN_LOG_EVE] = "eve",
};

const char *sen_log_format_name(enum sen_log_format f)
{
    if ((int)f < 0 || f >= SEN_LOG_COUNT)
        return "unknown";
    return format_names[f];
}

enum sen_log_format sen_log_format_from_name(const char *name)
{
    if (name == NULL)
        return SEN_LOG_COUNT;
    for (int i = 0; i < SEN_LOG_COUNT; i++)
        if (strcmp(name, format_names[i]) == 0)
            return (enum sen_log_format)i;
    return SEN_LOG_COUNT;
}

static int year_of(int64_t now_s)
{
    time_t t = (time_t)now_s;
    struct tm tm;
    if (localtime_r(&t, &tm) == NULL)
        return 1970;
    return tm.tm_year + 1900;
}

int sen_log_reader_new(enum sen_log_format fmt, const char *input, struct sen_log_reader **out)
{
    struct sen_log_reader *r;

    if (out == NULL || (int)fmt < 0 || fmt >= SEN_LOG_COUNT)
        return KH_EINVAL;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return KH_ENOMEM;
    r->fmt = fmt;
    r->last = SEN_LOG_COUNT;
    snprintf(r->input, sizeof(r->input), "%s", input != NULL ? input : "");
    r->now_s = (int64_t)time(NULL);
    r->year = year_of(r->now_s);
    r->zeek.sep = '\t';
    r->zeek.set_sep = ',';
    *out = r;
    return KH_OK;
}

void sen_log_reader_free(struct sen_log_reader *r)
{
    free(r);
}

void sen_log_stats(const struct sen_log_reader *r, struct sen_log_stats *st)
{
    if (st == NULL)
        return;
    if (r == NULL) {
        memset(st, 0, sizeof(*st));
        return;
    }
    *st = r->st;
}

/* ---- shared helpers ---- */

void senlog_emit(struct sen_log_reader *r, const struct sen_obs *o)
{
    struct sen_obs copy = *o;

    /* The evidence is made once per line and only when something is
     * emitted, so ignored lines cost no copy. */
    if (r->emitted == 0) {
        size_t n = KHX_MIN(r->line_len, (size_t)LOG_EVIDENCE_MAX);
        memcpy(r->evidence, r->line, n);
        r->evidence[n] = '\0';
    }
    copy.evidence = r->evidence;
    copy.input = r->input_buf;
    r->emitted++;
    r->fn(r->ctx, &copy);
}

void senlog_emit_text(struct sen_log_reader *r, int where, const struct sen_tuple *t, int64_t ts_us,
                      const char *text, size_t len)
{
    struct sen_obs o;

    /* A trailing dot (DNS's root) is not part of the name people list. */
    while (len > 1 && text[len - 1] == '.' &&
           (where == SEN_DNS_QUERY || where == SEN_DNS_ANSWER || where == SEN_TLS_SNI ||
            where == SEN_HTTP_HOST || where == SEN_QUIC_SNI))
        len--;
    if (len == 0 || (len == 1 && text[0] == '.'))
        return;
    memset(&o, 0, sizeof(o));
    o.where = where;
    if (t != NULL)
        o.t = *t;
    o.ts_us = ts_us;
    o.text = text;
    o.text_len = len;
    senlog_emit(r, &o);
}

void senlog_emit_addr(struct sen_log_reader *r, int where, const struct sen_tuple *t, int64_t ts_us,
                      int family, const uint8_t *addr, uint16_t port)
{
    struct sen_obs o;

    memset(&o, 0, sizeof(o));
    o.where = where;
    if (t != NULL)
        o.t = *t;
    o.ts_us = ts_us;
    o.addr_family = (uint8_t)family;
    memcpy(o.addr, addr, family == AF_INET6 ? 16 : 4);
    o.port = port;
    senlog_emit(r, &o);
}

int senlog_bad(struct sen_log_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
    return -1;
}

int senlog_token(const char **p, const char *end, const char **tok, size_t *tlen)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    const char *b = s;
    while (s < end && *s != ' ' && *s != '\t')
        s++;
    *tok = b;
    *tlen = (size_t)(s - b);
    *p = s;
    return s > b;
}

const char *senlog_find(const char *s, size_t n, const char *needle)
{
    return memmem(s, n, needle, strlen(needle));
}

int senlog_starts(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(s, prefix, k) == 0;
}

int senlog_parse_ip(const char *s, size_t n, uint8_t addr[16])
{
    char buf[64];
    const char *pct;

    if (n == 0 || n >= sizeof(buf))
        return 0;
    /* A zone ("fe80::1%eth0") names an interface, not part of the address. */
    pct = memchr(s, '%', n);
    if (pct != NULL)
        n = (size_t)(pct - s);
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(addr, 0, 16);
    if (memchr(buf, ':', n) != NULL)
        return inet_pton(AF_INET6, buf, addr) == 1 ? AF_INET6 : 0;
    return inet_pton(AF_INET, buf, addr) == 1 ? AF_INET : 0;
}

int senlog_parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

int senlog_parse_epoch(const char *s, size_t n, int64_t *us)
{
    const char *dot = memchr(s, '.', n);
    size_t ilen = dot != NULL ? (size_t)(dot - s) : n;
    uint64_t sec, frac = 0;

    /* Up to year 33658 is plenty; the bound keeps the multiply in range. */
    if (senlog_parse_uint(s, ilen, 999999999999ULL, &sec) != 0)
        return -1;
    if (dot != NULL) {
        size_t flen = n - ilen - 1;
        if (flen == 0 || flen > 9 || senlog_parse_uint(dot + 1, flen, 999999999, &frac) != 0)
            return -1;
        for (size_t i = flen; i < 6; i++)
            frac *= 10;
        for (size_t i = 6; i < flen; i++)
            frac /= 10;
    }
    *us = (int64_t)sec * 1000000 + (int64_t)frac;
    return 0;
}

static int two(const char *s, int *v)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return -1;
    *v = (s[0] - '0') * 10 + (s[1] - '0');
    return 0;
}

int senlog_parse_iso8601(const char *s, size_t n, int64_t *us)
{
    struct tm tm;
    int y1, y2, mo, d, h, mi, sec;
    size_t i = 19;
    int64_t frac = 0, off = 0;

    if (n < 19 || two(s, &y1) || two(s + 2, &y2) || s[4] != '-' || two(s + 5, &mo) || s[7] != '-' ||
        two(s + 8, &d) || (s[10] != 'T' && s[10] != ' ') || two(s + 11, &h) || s[13] != ':' ||
        two(s + 14, &mi) || s[16] != ':' || two(s + 17, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    if (i < n && s[i] == '.') {
        int digits = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++)
            if (digits < 6)
                frac = frac * 10 + (s[i] - '0');
        if (digits == 0)
            return -1;
        for (; digits < 6; digits++)
            frac *= 10;
    }
    if (i < n && (s[i] == '+' || s[i] == '-')) {
        int oh, om = 0, sign = s[i] == '-' ? -1 : 1;
        if (i + 3 > n || two(s + i + 1, &oh))
            return -1;
        i += 3;
        if (i < n && s[i] == ':')
            i++;
        if (i + 2 <= n && two(s + i, &om) == 0)
            i += 2;
        off = sign * ((int64_t)oh * 3600 + (int64_t)om * 60);
    } else if (i < n && s[i] == 'Z') {
        i++;
    }
    if (i != n)
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y1 * 100 + y2 - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *us = ((int64_t)timegm(&tm) - off) * 1000000 + frac;
    return 0;
}

int senlog_month(const char *s, size_t n)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    if (n != 3)
        return -1;
    for (int i = 0; i < 12; i++)
        if (strncasecmp(s, names + i * 3, 3) == 0)
            return i;
    return -1;
}

int64_t senlog_local_us(int year, int mon, int mday, int hour, int min, int sec, long usec)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mon;
    tm.tm_mday = mday;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    tm.tm_isdst = -1;
    return (int64_t)mktime(&tm) * 1000000 + usec;
}

/* "Nov 21 10:00:00" (or "Nov  1 ..."). The year is not in the line: the
 * current one, or the previous one when that would put the line more than
 * a day in the future (a December line read in January). */
static size_t bsd_time(int year, int64_t now_s, const char *s, size_t n, int64_t *us)
{
    int mon, d, h, mi, sec;
    int64_t t;

    if (n < 15 || (mon = senlog_month(s, 3)) < 0 || s[3] != ' ')
        return 0;
    if (s[4] == ' ' && s[5] >= '1' && s[5] <= '9')
        d = s[5] - '0';
    else if (two(s + 4, &d) != 0)
        return 0;
    if (s[6] != ' ' || two(s + 7, &h) || s[9] != ':' || two(s + 10, &mi) || s[12] != ':' ||
        two(s + 13, &sec) || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return 0;
    if (n > 15 && s[15] != ' ')
        return 0;
    t = senlog_local_us(year, mon, d, h, mi, sec, 0);
    if (now_s > 0 && t / 1000000 > now_s + 86400)
        t = senlog_local_us(year - 1, mon, d, h, mi, sec, 0);
    *us = t;
    return 15;
}

size_t senlog_parse_bsd_time(struct sen_log_reader *r, const char *s, size_t n, int64_t *us)
{
    return bsd_time(r->year, r->now_s, s, n, us);
}

/* ---- syslog framing ---- */

/* A program tag: "prog:", "prog[pid]:" (pid may hold "123:0" as unbound
 * writes it). Copies the program into prog[64]; returns 1 when tok is one. */
static int syslog_tag(const char *tok, size_t n, char prog[64])
{
    size_t plen = 0;

    while (plen < n && tok[plen] != '[' && tok[plen] != ':') {
        char c = tok[plen];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '/'))
            return 0;
        plen++;
    }
    if (plen == 0 || plen >= 64 || plen == n)
        return 0;
    if (tok[plen] == '[') {
        const char *close = memchr(tok + plen, ']', n - plen);
        if (close == NULL || (size_t)(close - tok) + 1 > n)
            return 0;
        /* "prog[pid]:" or "prog[pid]" followed by the message. */
        if ((size_t)(close - tok) + 1 < n && close[1] != ':')
            return 0;
    } else if (plen + 1 != n) {
        return 0;
    }
    memcpy(prog, tok, plen);
    prog[plen] = '\0';
    return 1;
}

/* The RFC 5424 structured data: "-" or one or more [id k="v" ...] elements
 * (values may hold escaped ']' and '"'). Returns bytes used, 0 if bad. */
static size_t sd_len(const char *s, size_t n)
{
    size_t i = 0;
    if (n >= 1 && s[0] == '-')
        return 1;
    while (i < n && s[i] == '[') {
        int quoted = 0;
        for (i++; i < n; i++) {
            if (quoted && s[i] == '\\') {
                i++;
                continue;
            }
            if (s[i] == '"')
                quoted = !quoted;
            else if (!quoted && s[i] == ']')
                break;
        }
        if (i >= n)
            return 0;
        i++;
    }
    return i;
}

static int syslog_parse(int year, int64_t now_s, const char *line, size_t len, char prog[64],
                        const char **msg, size_t *msg_len, int64_t *ts)
{
    const char *p = line, *end = line + len, *tok;
    size_t tlen, used;
    int pri = 0;

    prog[0] = '\0';
    *msg = line;
    *msg_len = len;
    *ts = 0;
    if (p < end && *p == '<') {
        const char *q = p + 1;
        unsigned v = 0;
        while (q < end && q - p <= 4 && *q >= '0' && *q <= '9')
            v = v * 10 + (unsigned)(*q++ - '0');
        if (q == p + 1 || q >= end || *q != '>' || v > 191)
            return 0;
        pri = 1;
        p = q + 1;
    }
    if (pri && end - p >= 2 && p[0] == '1' && p[1] == ' ') {
        /* RFC 5424: VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG] */
        const char *f[5];
        size_t fl[5];
        p += 2;
        for (int i = 0; i < 5; i++)
            if (!senlog_token(&p, end, &f[i], &fl[i]))
                return 0;
        if (!(fl[0] == 1 && f[0][0] == '-') && senlog_parse_iso8601(f[0], fl[0], ts) != 0)
            return 0;
        if (!(fl[2] == 1 && f[2][0] == '-') && fl[2] < 64) {
            memcpy(prog, f[2], fl[2]);
            prog[fl[2]] = '\0';
        }
        if (p < end && *p == ' ')
            p++;
        if ((used = sd_len(p, (size_t)(end - p))) == 0)
            return 0;
        p += used;
        if (p < end && *p == ' ')
            p++;
        if (end - p >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
            p += 3;
        *msg = p;
        *msg_len = (size_t)(end - p);
        return 1;
    }
    /* RFC 3164 / file form: TIMESTAMP [HOST] TAG: MSG. The timestamp is the
     * BSD one, or ISO 8601 as rsyslog's file format writes it. */
    if ((used = bsd_time(year, now_s, p, (size_t)(end - p), ts)) != 0) {
        p += used;
    } else {
        const char *q = p;
        if (!senlog_token(&q, end, &tok, &tlen) || senlog_parse_iso8601(tok, tlen, ts) != 0) {
            if (!pri)
                return 0;
            *ts = 0;
        } else {
            p = q;
        }
    }
    {
        const char *save = p;
        if (senlog_token(&p, end, &tok, &tlen) && !syslog_tag(tok, tlen, prog)) {
            /* Not a tag: it is the host name; the tag follows. */
            const char *after_host = p;
            if (!senlog_token(&p, end, &tok, &tlen) || !syslog_tag(tok, tlen, prog)) {
                prog[0] = '\0';
                p = after_host;
            }
        } else if (tlen == 0) {
            p = save;
        }
    }
    while (p < end && *p == ' ')
        p++;
    *msg = p;
    *msg_len = (size_t)(end - p);
    return 1;
}

int sen_syslog_strip(const char *line, size_t len, char prog[64], const char **msg, size_t *msg_len)
{
    int64_t ts, now = (int64_t)time(NULL);
    return syslog_parse(year_of(now), now, line, len, prog, msg, msg_len, &ts);
}

/* ---- format choice ---- */

static enum sen_log_format format_of_prog(const char *prog)
{
    if (strcmp(prog, "named") == 0 || strncmp(prog, "named-", 6) == 0 || strcmp(prog, "bind") == 0)
        return SEN_LOG_BIND;
    if (strcmp(prog, "dnsmasq") == 0 || strncmp(prog, "dnsmasq-", 8) == 0)
        return SEN_LOG_DNSMASQ;
    if (strcmp(prog, "unbound") == 0)
        return SEN_LOG_UNBOUND;
    if (strcmp(prog, "kernel") == 0 || strcmp(prog, "ulogd") == 0)
        return SEN_LOG_NETFILTER;
    if (strcmp(prog, "squid") == 0 || strcmp(prog, "(squid-1)") == 0)
        return SEN_LOG_SQUID;
    if (strcmp(prog, "suricata") == 0)
        return SEN_LOG_EVE;
    if (strcmp(prog, "zeek") == 0 || strcmp(prog, "bro") == 0)
        return SEN_LOG_ZEEK;
    return SEN_LOG_COUNT;
}

static int looks_squid(const char *s, size_t n)
{
    const char *p = s, *end = s + n, *tok;
    size_t tlen;
    int64_t us;
    uint8_t a[16];

    if (!senlog_token(&p, end, &tok, &tlen) || memchr(tok, '.', tlen) == NULL ||
        senlog_parse_epoch(tok, tlen, &us) != 0)
        return 0;
    if (!senlog_token(&p, end, &tok, &tlen) || !senlog_token(&p, end, &tok, &tlen))
        return 0;
    if (senlog_parse_ip(tok, tlen, a) == 0)
        return 0;
    return senlog_token(&p, end, &tok, &tlen) && memchr(tok, '/', tlen) != NULL;
}

static enum sen_log_format detect(struct sen_log_reader *r, const char *s, size_t n, int prog_known)
{
    if (n == 0)
        return prog_known ? SEN_LOG_COUNT : r->last;
    if (s[0] == '#')
        return SEN_LOG_ZEEK;
    if (r->zeek.ncols > 0 && s[0] != '{' && memchr(s, r->zeek.sep, n) != NULL)
        return SEN_LOG_ZEEK;
    if (s[0] == '{')
        return senlog_find(s, n, "\"event_type\"") != NULL ? SEN_LOG_EVE : SEN_LOG_ZEEK;
    if (senlog_find(s, n, "query[") != NULL || senlog_starts(s, n, "reply ") ||
        senlog_starts(s, n, "cached ") || senlog_starts(s, n, "forwarded "))
        return SEN_LOG_DNSMASQ;
    if (senlog_find(s, n, "client ") != NULL &&
        (senlog_find(s, n, " query: ") != NULL || senlog_find(s, n, " rpz ") != NULL ||
         senlog_find(s, n, ": query (") != NULL))
        return SEN_LOG_BIND;
    if (senlog_find(s, n, "info: ") != NULL && (s[0] == '[' || senlog_starts(s, n, "unbound")))
        return SEN_LOG_UNBOUND;
    if (senlog_find(s, n, " PACKET ") != NULL)
        return SEN_LOG_WINDNS;
    if (senlog_find(s, n, "SRC=") != NULL && senlog_find(s, n, "DST=") != NULL)
        return SEN_LOG_NETFILTER;
    if (looks_squid(s, n))
        return SEN_LOG_SQUID;
    /* A line of unknown shape continues the stream's format, unless a
     * syslog header named another program. */
    return prog_known ? SEN_LOG_COUNT : r->last;
}

typedef int (*reader_fn)(struct sen_log_reader *r, const char *s, size_t n, int64_t ts);

static const reader_fn readers[SEN_LOG_COUNT] = {
    [SEN_LOG_BIND] = senlog_bind_line,           [SEN_LOG_DNSMASQ] = senlog_dnsmasq_line,
    [SEN_LOG_UNBOUND] = senlog_unbound_line,     [SEN_LOG_WINDNS] = senlog_windns_line,
    [SEN_LOG_NETFILTER] = senlog_netfilter_line, [SEN_LOG_SQUID] = senlog_squid_line,
    [SEN_LOG_ZEEK] = senlog_zeek_line,           [SEN_LOG_EVE] = senlog_eve_line,
};

int sen_log_line(struct sen_log_reader *r, const char *line, size_t len, sen_obs_fn fn, void *ctx)
{
    char prog[64];
    const char *msg;
    size_t msg_len;
    int64_t ts = 0;
    enum sen_log_format f;
    int rc;

    if (r == NULL || (line == NULL && len > 0) || fn == NULL)
        return -1;
    r->st.lines++;
    r->reason[0] = '\0';
    r->fn = fn;
    r->ctx = ctx;
    r->emitted = 0;
    r->line = line;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    r->line_len = len;
    if (len > LOG_LINE_MAX) {
        rc = senlog_bad(r, "line of %zu bytes is over the 64 KiB limit", len);
        goto done;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            rc = senlog_bad(r, "control byte 0x%02x at offset %zu", c, i);
            goto done;
        }
    }
    if (len == 0) {
        rc = 0;
        goto done;
    }
    msg = line;
    msg_len = len;
    prog[0] = '\0';
    /* Zeek rows are never syslog-framed, and one whose ts column is ISO
     * 8601 would otherwise look like a dated syslog line. */
    if (line[0] != '{' && line[0] != '#' && r->fmt != SEN_LOG_ZEEK &&
        !(r->fmt == SEN_LOG_AUTO && r->zeek.ncols > 0 && memchr(line, r->zeek.sep, len) != NULL))
        syslog_parse(r->year, r->now_s, line, len, prog, &msg, &msg_len, &ts);
    f = r->fmt;
    if (f == SEN_LOG_AUTO) {
        f = prog[0] != '\0' ? format_of_prog(prog) : SEN_LOG_COUNT;
        if (f == SEN_LOG_COUNT ||
            (f == SEN_LOG_NETFILTER && senlog_find(msg, msg_len, "SRC=") == NULL))
            f = detect(r, msg, msg_len, prog[0] != '\0');
        if (f == SEN_LOG_COUNT || f == SEN_LOG_AUTO) {
            rc = senlog_bad(r, "auto: no known log format (program \"%s\")", prog);
            goto done;
        }
        r->last = f;
    }
    snprintf(r->input_buf, sizeof(r->input_buf), "%s",
             r->input[0] != '\0' ? r->input : sen_log_format_name(f));
    rc = readers[f](r, msg, msg_len, ts);
done:
    if (rc > 0 && r->emitted == 0)
        rc = 0;
    if (rc < 0) {
        r->st.malformed++;
        if (r->st.first_error[0] == '\0')
            snprintf(r->st.first_error, sizeof(r->st.first_error), "line %llu: %s",
                     (unsigned long long)r->st.lines, r->reason);
    } else if (rc == 0) {
        r->st.ignored++;
    }
    r->st.observations += r->emitted;
    return rc < 0 ? -1 : rc > 0 ? 1 : 0;
}
