/*
 * Readers for the line-oriented indicator lists (feed.h): Khiên's own text
 * form and hosts files, CSV with a header (abuse.ch Feodo, URLhaus and
 * ThreatFox exports among others), maltrail static trail files and
 * trails.csv, ipsum, firehol netsets, Suricata iprep and Zeek intel TSV.
 * Each walks the text line by line without copying it, hands every value to
 * feed_emit (which normalises and counts) and counts what it cannot use as
 * "line N: reason". No line is trusted: lengths are checked before use and a
 * line longer than LINE_MAX is refused.
 */
#include <stdlib.h>
#include <string.h>

#include "feed_int.h"
#include "fields.h"
#include "khx.h"

/* The longest line a reader looks at. */
#define LINE_MAX_LEN 65536
/* The most fields a CSV or TSV line may have. */
#define FIELDS_MAX 32

/* Cuts a line at its first '#'. */
static void cut_comment(const char *s, size_t *n)
{
    const char *h = memchr(s, '#', *n);
    if (h != NULL)
        *n = (size_t)(h - s);
}

static int parse_conf(const struct ioc_field *f, int *out)
{
    uint64_t v;
    if (khx_parse_u64(f->p, f->n, &v) != 0 || v > 100)
        return -1;
    *out = (int)v;
    return 0;
}

/* Copies a field into a NUL-terminated word buffer (cut to IOC_WORD_MAX). */
static const char *fld_str(const struct ioc_field *f, char *buf)
{
    size_t n = KHX_MIN(f->n, (size_t)IOC_WORD_MAX);
    memcpy(buf, f->p, n);
    buf[n] = '\0';
    return buf;
}

static int lines_guard(struct feed_run *run, const struct khx_lines *it, size_t n)
{
    if (n > LINE_MAX_LEN) {
        feed_reject(run, "line %u: longer than %d bytes", it->lineno, LINE_MAX_LEN);
        return 1;
    }
    if (it->lineno > FEED_MAX_ENTRIES) {
        feed_reject(run, "line %u: more than %u lines", it->lineno, FEED_MAX_ENTRIES);
        return 2;
    }
    return 0;
}

/* "value [category [source [confidence [expires]]]]" from split fields. */
static int text_form(struct feed_run *run, const struct ioc_field *f, size_t nf, unsigned lineno)
{
    char cat[IOC_WORD_MAX + 1], src[IOC_WORD_MAX + 1];
    struct feed_meta m = {NULL, NULL, NULL, 0, -1, 0};
    if (nf > 5) {
        feed_reject(run, "line %u: more than 5 fields", lineno);
        return 0;
    }
    if (nf >= 2 && f[1].n > 0 && !feed_word_eq(f[1].p, f[1].n, "-"))
        m.category = fld_str(&f[1], cat);
    if (nf >= 3 && f[2].n > 0 && !feed_word_eq(f[2].p, f[2].n, "-"))
        m.source = fld_str(&f[2], src);
    if (nf >= 4 && f[3].n > 0 && parse_conf(&f[3], &m.confidence) != 0) {
        feed_reject(run, "line %u: the confidence is not a number from 0 to 100", lineno);
        return 0;
    }
    if (nf >= 5 && f[4].n > 0 && !feed_word_eq(f[4].p, f[4].n, "0") &&
        feed_parse_time(f[4].p, f[4].n, &m.expires) != 0) {
        feed_reject(run, "line %u: the expiry is not a time (Unix seconds or ISO 8601)", lineno);
        return 0;
    }
    return feed_emit(run, -1, f[0].p, f[0].n, &m, "line", lineno);
}

static int is_null_route(const struct ioc_field *f)
{
    return feed_word_eq(f->p, f->n, "0.0.0.0") || feed_word_eq(f->p, f->n, "127.0.0.1") ||
           feed_word_eq(f->p, f->n, "::") || feed_word_eq(f->p, f->n, "::1");
}

int feed_read_plain(struct feed_run *run, const char *text, size_t len)
{
    struct khx_lines it;
    const char *line;
    size_t n;
    struct ioc_field f[8];
    int r;
    khx_lines_init(&it, text, len);
    it.lineno = run->line_base; /* a streamed file arrives in pieces */
    while (khx_lines_next(&it, &line, &n)) {
        int g = lines_guard(run, &it, n);
        if (g == 1)
            continue;
        if (g == 2)
            break;
        /* Most lines of a large list are a bare canonical value. */
        if (n > 0 && feed_emit_plain(run, line, n, &r)) {
            if (r != 0)
                return r;
            continue;
        }
        cut_comment(line, &n);
        ioc__trim(&line, &n);
        if (n == 0)
            continue;
        size_t nf;
        if (memchr(line, ',', n) != NULL)
            nf = ioc__split_sep(line, n, ',', f, 7);
        else
            nf = ioc__split_blanks(line, n, f, 7);
        if (nf >= 2 && is_null_route(&f[0]) && memchr(line, ',', n) == NULL) {
            /* A hosts file: every name after the address is listed. */
            for (size_t i = 1; i < nf && i < 7; i++) {
                if (feed_word_eq(f[i].p, f[i].n, "localhost") ||
                    feed_word_eq(f[i].p, f[i].n, "localhost.localdomain") ||
                    feed_word_eq(f[i].p, f[i].n, "broadcasthost") ||
                    feed_word_eq(f[i].p, f[i].n, "local") ||
                    (f[i].n > 4 && strncmp(f[i].p, "ip6-", 4) == 0)) {
                    run->st->skipped++;
                    continue;
                }
                if ((r = feed_emit(run, IOC_DOMAIN, f[i].p, f[i].n, NULL, "line", it.lineno)) != 0)
                    return r;
            }
            continue;
        }
        if ((r = text_form(run, f, nf, it.lineno)) != 0)
            return r;
    }
    run->line_base = it.lineno;
    return KH_OK;
}

/* ---- CSV with a header ---- */

enum col_role {
    COL_NONE = 0,
    COL_VALUE,
    COL_PORT,
    COL_TYPE,
    COL_CATEGORY,
    COL_FAMILY,
    COL_CONFIDENCE,
    COL_EXPIRES,
    COL_STATUS,
    COL_SOURCE,
    COL_ROLES
};

static const struct {
    const char *name;
    enum col_role role;
    int rank; /* of several columns for one role, the highest rank wins */
} csv_columns[] = {
    {"value", COL_VALUE, 3},
    {"ioc", COL_VALUE, 3},
    {"ioc_value", COL_VALUE, 3},
    {"indicator", COL_VALUE, 3},
    {"dst_ip", COL_VALUE, 2},
    {"ip", COL_VALUE, 2},
    {"ip_address", COL_VALUE, 2},
    {"ipaddress", COL_VALUE, 2},
    {"url", COL_VALUE, 2},
    {"domain", COL_VALUE, 2},
    {"host", COL_VALUE, 1},
    {"hostname", COL_VALUE, 1},
    {"address", COL_VALUE, 1},
    {"trail", COL_VALUE, 1},
    {"dst_port", COL_PORT, 2},
    {"port", COL_PORT, 1},
    {"ioc_type", COL_TYPE, 2},
    {"indicator_type", COL_TYPE, 2},
    {"type", COL_TYPE, 1},
    {"threat_type", COL_CATEGORY, 3},
    {"category", COL_CATEGORY, 2},
    {"threat", COL_CATEGORY, 1},
    {"classification", COL_CATEGORY, 1},
    {"malware_printable", COL_FAMILY, 3},
    {"malware", COL_FAMILY, 2},
    {"family", COL_FAMILY, 2},
    {"malware_family", COL_FAMILY, 2},
    {"fk_malware", COL_FAMILY, 1},
    {"confidence", COL_CONFIDENCE, 2},
    {"confidence_level", COL_CONFIDENCE, 2},
    {"expires", COL_EXPIRES, 2},
    {"valid_until", COL_EXPIRES, 2},
    {"expiry", COL_EXPIRES, 2},
    {"expiration", COL_EXPIRES, 1},
    {"c2_status", COL_STATUS, 2},
    {"url_status", COL_STATUS, 2},
    {"status", COL_STATUS, 1},
    {"source", COL_SOURCE, 1},
    {"feed", COL_SOURCE, 1},
};

static enum col_role column_role(const struct ioc_field *f, int *rank)
{
    for (size_t i = 0; i < KHX_ARRAY_LEN(csv_columns); i++) {
        if (feed_word_eq(f->p, f->n, csv_columns[i].name)) {
            *rank = csv_columns[i].rank;
            return csv_columns[i].role;
        }
    }
    return COL_NONE;
}

static char pick_sep(const char *s, size_t n)
{
    size_t c = 0, sc = 0, t = 0;
    int quoted = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            quoted = !quoted;
        else if (!quoted)
            c += s[i] == ',', sc += s[i] == ';', t += s[i] == '\t';
    }
    if (t > c && t >= sc)
        return '\t';
    return sc > c ? ';' : ',';
}

struct csv_header {
    int have;
    char sep;
    int col[COL_ROLES]; /* field index + 1, 0 = absent */
};

/* Tries a line as a header: at least two known column names, one of them a
 * value column. */
static int try_header(const char *s, size_t n, struct csv_header *h)
{
    struct ioc_field f[FIELDS_MAX];
    int rank[COL_ROLES] = {0};
    struct csv_header t = {0, pick_sep(s, n), {0}};
    size_t nf = ioc__split_sep(s, n, t.sep, f, FIELDS_MAX), known = 0;
    if (nf > FIELDS_MAX)
        return 0;
    for (size_t i = 0; i < nf; i++) {
        int rk = 0;
        enum col_role role = column_role(&f[i], &rk);
        if (role == COL_NONE)
            continue;
        known++;
        if (rk > rank[role]) {
            rank[role] = rk;
            t.col[role] = (int)i + 1;
        }
    }
    if (known < 2 || t.col[COL_VALUE] == 0)
        return 0;
    t.have = 1;
    *h = t;
    return 1;
}

/* ThreatFox, MISP and friends name the kind of each row. */
static int kind_of_type(const struct ioc_field *f, int *skip)
{
    *skip = 0;
    if (f->n == 0)
        return -1;
    if (feed_word_eq(f->p, f->n, "ip:port") || feed_word_eq(f->p, f->n, "ip-dst|port"))
        return IOC_IP_PORT;
    if (feed_word_eq(f->p, f->n, "domain") || feed_word_eq(f->p, f->n, "hostname"))
        return IOC_DOMAIN;
    if (feed_word_eq(f->p, f->n, "url") || feed_word_eq(f->p, f->n, "uri"))
        return IOC_URL;
    if (feed_word_eq(f->p, f->n, "ip") || feed_word_eq(f->p, f->n, "ipv4") ||
        feed_word_eq(f->p, f->n, "ipv6") || feed_word_eq(f->p, f->n, "ip-dst") ||
        feed_word_eq(f->p, f->n, "ip-src"))
        return IOC_IP;
    if (feed_word_eq(f->p, f->n, "ja3") || feed_word_eq(f->p, f->n, "ja3-fingerprint-md5"))
        return IOC_JA3;
    if (feed_word_eq(f->p, f->n, "ja4"))
        return IOC_JA4;
    for (size_t i = 0; i + 4 <= f->n; i++)
        if (strncasecmp(f->p + i, "hash", 4) == 0 || strncasecmp(f->p + i, "md5", 3) == 0 ||
            strncasecmp(f->p + i, "sha", 3) == 0)
            *skip = 1;
    return -1;
}

static int csv_row(struct feed_run *run, const struct csv_header *h, const struct ioc_field *f,
                   size_t nf, unsigned lineno)
{
    char val[IOC_VALUE_MAX + 16], src[IOC_WORD_MAX + 1];
    struct feed_meta m = {NULL, NULL, NULL, 0, -1, 0};
    const struct ioc_field *c[COL_ROLES] = {NULL};
    for (int role = 1; role < COL_ROLES; role++)
        if (h->col[role] != 0 && (size_t)h->col[role] <= nf && f[h->col[role] - 1].n > 0)
            c[role] = &f[h->col[role] - 1];
    if (c[COL_VALUE] == NULL) {
        feed_reject(run, "line %u: no value in column %d", lineno, h->col[COL_VALUE]);
        return 0;
    }
    int skip = 0, kind = c[COL_TYPE] ? kind_of_type(c[COL_TYPE], &skip) : -1;
    if (skip) {
        run->st->skipped++;
        return 0;
    }
    if (c[COL_STATUS] != NULL && feed_word_eq(c[COL_STATUS]->p, c[COL_STATUS]->n, "offline")) {
        run->st->skipped++;
        return 0;
    }
    if (c[COL_CATEGORY] != NULL) {
        m.category = feed_category_lookup(c[COL_CATEGORY]->p, c[COL_CATEGORY]->n);
        if (m.category == NULL)
            m.category = "malware";
    }
    if (c[COL_FAMILY] != NULL && !feed_word_eq(c[COL_FAMILY]->p, c[COL_FAMILY]->n, "none")) {
        m.family = c[COL_FAMILY]->p;
        m.family_len = c[COL_FAMILY]->n;
    }
    if (c[COL_SOURCE] != NULL)
        m.source = fld_str(c[COL_SOURCE], src);
    if (c[COL_CONFIDENCE] != NULL && parse_conf(c[COL_CONFIDENCE], &m.confidence) != 0) {
        feed_reject(run, "line %u: the confidence is not a number from 0 to 100", lineno);
        return 0;
    }
    if (c[COL_EXPIRES] != NULL &&
        feed_parse_time(c[COL_EXPIRES]->p, c[COL_EXPIRES]->n, &m.expires) != 0) {
        feed_reject(run, "line %u: the expiry is not a time", lineno);
        return 0;
    }
    const char *v = c[COL_VALUE]->p;
    size_t vn = c[COL_VALUE]->n;
    if (c[COL_PORT] != NULL && vn <= IOC_VALUE_MAX && c[COL_PORT]->n <= 5 &&
        memchr(v, '/', vn) == NULL) {
        /* Feodo's dst_ip + dst_port: one address:port indicator. */
        int v6 = memchr(v, ':', vn) != NULL;
        snprintf(val, sizeof(val), v6 ? "[%.*s]:%.*s" : "%.*s:%.*s", (int)vn, v,
                 (int)c[COL_PORT]->n, c[COL_PORT]->p);
        v = val;
        vn = strlen(val);
        if (kind < 0)
            kind = IOC_IP_PORT;
    }
    return feed_emit(run, kind, v, vn, &m, "line", lineno);
}

int feed_read_csv(struct feed_run *run, const char *text, size_t len)
{
    struct khx_lines it;
    const char *line;
    size_t n;
    struct ioc_field f[FIELDS_MAX];
    struct csv_header h = {0, ',', {0}};
    int r, data_seen = 0;
    khx_lines_init(&it, text, len);
    while (khx_lines_next(&it, &line, &n)) {
        int g = lines_guard(run, &it, n);
        if (g == 1)
            continue;
        if (g == 2)
            break;
        ioc__trim(&line, &n);
        if (n == 0)
            continue;
        if (line[0] == '#') {
            /* URLhaus and ThreatFox put their header in a comment. */
            const char *p = line + 1;
            size_t k = n - 1;
            ioc__trim(&p, &k);
            if (!data_seen)
                try_header(p, k, &h);
            continue;
        }
        if (!data_seen) {
            data_seen = 1;
            if (try_header(line, n, &h))
                continue;
        }
        if (!h.have) {
            size_t nf = ioc__split_sep(line, n, ',', f, 7);
            if ((r = text_form(run, f, nf, it.lineno)) != 0)
                return r;
            continue;
        }
        size_t nf = ioc__split_sep(line, n, h.sep, f, FIELDS_MAX);
        if (nf > FIELDS_MAX) {
            feed_reject(run, "line %u: more than %d fields", it.lineno, FIELDS_MAX);
            continue;
        }
        if ((r = csv_row(run, &h, f, nf, it.lineno)) != 0)
            return r;
    }
    return KH_OK;
}

/* ---- maltrail ---- */

/* maltrail marks wildcard trails as regular expressions; we do not run
 * regular expressions over traffic, so they are refused (and counted). */
static int maltrail_regex(const char *s, size_t n)
{
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close != NULL && close > s + 1 && memchr(s, ':', (size_t)(close - s)) != NULL &&
            strspn(s + 1, "0123456789abcdefABCDEF:.") == (size_t)(close - s - 1))
            return 0;
        return 1;
    }
    const char *slash = memchr(s, '/', n);
    size_t hn = slash != NULL ? (size_t)(slash - s) : n;
    for (size_t i = 0; i < hn; i++)
        if (strchr("\\[](){}|*+?^$", s[i]) != NULL && s[i] != '\0')
            return 1;
    for (size_t i = hn; i < n; i++) {
        if (s[i] == '\\' || s[i] == '|' || s[i] == '[' || s[i] == '{')
            return 1;
        if (s[i] == '.' && i + 1 < n && (s[i + 1] == '*' || s[i + 1] == '+'))
            return 1;
    }
    return 0;
}

/* trails.csv info: "<name> (<type>)" such as "sofacy (malware)", or a plain
 * description such as "known attacker". */
static void maltrail_info(const struct ioc_field *info, struct feed_meta *m)
{
    const char *s = info->p;
    size_t n = info->n;
    const char *open = NULL;
    if (n >= 3 && s[n - 1] == ')')
        for (size_t i = n - 1; i > 0; i--)
            if (s[i] == '(' && s[i - 1] == ' ') {
                open = s + i;
                break;
            }
    if (open != NULL && feed_word_eq(open + 1, (size_t)(s + n - 1 - open - 1), "malware")) {
        size_t nl = (size_t)(open - 1 - s);
        m->family = s;
        m->family_len = nl;
        m->category = feed_category_lookup(s, nl);
        if (m->category == NULL)
            m->category = "malware";
        return;
    }
    m->category = feed_category_lookup(s, n);
}

int feed_read_maltrail(struct feed_run *run, const char *text, size_t len)
{
    struct khx_lines it;
    const char *line;
    size_t n;
    struct ioc_field f[4];
    int r, csv = -1;
    khx_lines_init(&it, text, len);
    while (khx_lines_next(&it, &line, &n)) {
        int g = lines_guard(run, &it, n);
        if (g == 1)
            continue;
        if (g == 2)
            break;
        ioc__trim(&line, &n);
        if (n == 0 || line[0] == '#')
            continue;
        if (csv < 0) {
            size_t commas = 0;
            for (size_t i = 0; i < n; i++)
                commas += line[i] == ',';
            csv = commas >= 2;
        }
        struct feed_meta m = {NULL, NULL, NULL, 0, -1, 0};
        const char *v = line;
        size_t vn = n;
        if (csv) {
            size_t nf = ioc__split_sep(line, n, ',', f, 3);
            if (nf < 2 || nf > 3) {
                feed_reject(run, "line %u: not 'trail,info,reference'", it.lineno);
                continue;
            }
            if (it.lineno == 1 && feed_word_eq(f[0].p, f[0].n, "trail"))
                continue;
            v = f[0].p;
            vn = f[0].n;
            maltrail_info(&f[1], &m);
        } else {
            cut_comment(line, &vn);
            ioc__trim(&v, &vn);
            size_t nf = ioc__split_blanks(v, vn, f, 1);
            if (nf != 1) {
                feed_reject(run, "line %u: more than one trail on the line", it.lineno);
                continue;
            }
        }
        if (maltrail_regex(v, vn)) {
            char show[64];
            feed_reject(run, "line %u: '%s' is a regular expression trail (not supported)",
                        it.lineno, khx_printable(show, sizeof(show), v, vn));
            continue;
        }
        if ((r = feed_emit(run, -1, v, vn, &m, "line", it.lineno)) != 0)
            return r;
    }
    return KH_OK;
}

/* ---- ipsum, firehol, iprep ---- */

int feed_read_ipsum(struct feed_run *run, const char *text, size_t len)
{
    struct khx_lines it;
    const char *line;
    size_t n;
    struct ioc_field f[3];
    int r;
    unsigned min = run->opts->ipsum_min_lists ? run->opts->ipsum_min_lists : 1;
    khx_lines_init(&it, text, len);
    while (khx_lines_next(&it, &line, &n)) {
        int g = lines_guard(run, &it, n);
        if (g == 1)
            continue;
        if (g == 2)
            break;
        cut_comment(line, &n);
        size_t nf = ioc__split_blanks(line, n, f, 2);
        if (nf == 0)
            continue;
        uint64_t count = 1;
        if (nf > 2 || (nf == 2 && (khx_parse_u64(f[1].p, f[1].n, &count) != 0 || count > 1000))) {
            feed_reject(run, "line %u: not 'address<TAB>count'", it.lineno);
            continue;
        }
        if (count < min) {
            run->st->skipped++;
            continue;
        }
        /* More lists naming an address make it likelier to be bad. */
        struct feed_meta m = {NULL, NULL, NULL, 0, -1, 0};
        if (run->opts->confidence == 0)
            m.confidence = (int)KHX_MIN(count * 10, (uint64_t)100);
        if ((r = feed_emit(run, IOC_IP, f[0].p, f[0].n, &m, "line", it.lineno)) != 0)
            return r;
    }
    return KH_OK;
}

int feed_read_firehol(struct feed_run *run, const char *text, size_t len)
{
    struct khx_lines it;
    const char *line;
    size_t n;
    struct ioc_field f[2];
    int r;
    khx_lines_init(&it, text, len);
    while (khx_lines_next(&it, &line, &n)) {
        int g = lines_guard(run, &it, n);
        if (g == 1)
            continue;
        if (g == 2)
            break;
        cut_comment(line, &n);
        size_t nf = ioc__split_blanks(line, n, f, 1);
        if (nf == 0)
            continue;
        if (nf > 1) {
            feed_reject(run, "line %u: more than one entry on the line", it.lineno);
            continue;
        }
        if ((r = feed_emit(run, IOC_CIDR, f[0].p, f[0].n, NULL, "line", it.lineno)) != 0)
            return r;
    }
    return KH_OK;
}

#define IPREP_CATEGORIES 256

int feed_read_iprep(struct feed_run *run, const char *text, size_t len)
{
    struct khx_lines it;
    const char *line;
    size_t n;
    struct ioc_field f[4];
    int r = KH_ENOMEM;
    char(*names)[IOC_WORD_MAX + 1] = NULL;
    const char *ct = run->opts->iprep_categories;
    if (ct != NULL) {
        /* Suricata's categories file: "id,shortname,description", id < 60
         * in Suricata; we accept up to 255. */
        if ((names = calloc(IPREP_CATEGORIES, sizeof(*names))) == NULL)
            return KH_ENOMEM;
        khx_lines_init(&it, ct, run->opts->iprep_categories_len);
        while (khx_lines_next(&it, &line, &n)) {
            ioc__trim(&line, &n);
            if (n == 0 || line[0] == '#')
                continue;
            uint64_t id;
            size_t nf = ioc__split_sep(line, n, ',', f, 3);
            if (nf < 2 || khx_parse_u64(f[0].p, f[0].n, &id) != 0 || id >= IPREP_CATEGORIES ||
                f[1].n == 0) {
                feed_reject(run, "categories line %u: not 'id,shortname,description'", it.lineno);
                continue;
            }
            fld_str(&f[1], names[id]);
        }
    }
    khx_lines_init(&it, text, len);
    while (khx_lines_next(&it, &line, &n)) {
        int g = lines_guard(run, &it, n);
        if (g == 1)
            continue;
        if (g == 2)
            break;
        ioc__trim(&line, &n);
        if (n == 0 || line[0] == '#')
            continue;
        size_t nf = ioc__split_sep(line, n, ',', f, 3);
        uint64_t cat, score;
        if (nf != 3 || khx_parse_u64(f[1].p, f[1].n, &cat) != 0 ||
            khx_parse_u64(f[2].p, f[2].n, &score) != 0 || cat >= IPREP_CATEGORIES || score > 127) {
            feed_reject(run, "line %u: not 'address,category (0-255),score (0-127)'", it.lineno);
            continue;
        }
        char word[IOC_WORD_MAX + 1];
        if (names != NULL && names[cat][0] == '\0') {
            feed_reject(run, "line %u: category %u is not in the categories file", it.lineno,
                        (unsigned)cat);
            continue;
        }
        if (names != NULL)
            snprintf(word, sizeof(word), "%s", names[cat]);
        else
            snprintf(word, sizeof(word), "iprep-%u", (unsigned)cat);
        struct feed_meta m = {NULL, word, NULL, 0, (int)KHX_MIN(score, (uint64_t)100), 0};
        if ((r = feed_emit(run, IOC_CIDR, f[0].p, f[0].n, &m, "line", it.lineno)) != 0)
            goto out;
    }
    r = KH_OK;
out:
    free(names);
    return r;
}

/* ---- Zeek intel ---- */

int feed_read_zeek(struct feed_run *run, const char *text, size_t len)
{
    struct khx_lines it;
    const char *line;
    size_t n;
    struct ioc_field f[FIELDS_MAX];
    int r, ci = -1, ct = -1, cs = -1, cd = -1;
    char src[IOC_WORD_MAX + 1];
    khx_lines_init(&it, text, len);
    while (khx_lines_next(&it, &line, &n)) {
        int g = lines_guard(run, &it, n);
        if (g == 1)
            continue;
        if (g == 2)
            break;
        if (n == 0)
            continue;
        if (line[0] == '#') {
            if (n > 8 && strncmp(line, "#fields", 7) == 0 && ioc__is_blank(line[7])) {
                size_t nf = ioc__split_sep(line + 8, n - 8, '\t', f, FIELDS_MAX);
                ci = ct = cs = cd = -1;
                for (size_t i = 0; i < nf && i < FIELDS_MAX; i++) {
                    if (feed_word_eq(f[i].p, f[i].n, "indicator"))
                        ci = (int)i;
                    else if (feed_word_eq(f[i].p, f[i].n, "indicator_type"))
                        ct = (int)i;
                    else if (feed_word_eq(f[i].p, f[i].n, "meta.source"))
                        cs = (int)i;
                    else if (feed_word_eq(f[i].p, f[i].n, "meta.desc"))
                        cd = (int)i;
                }
                if (ci < 0 || ct < 0) {
                    feed_reject(run, "line %u: #fields lacks indicator or indicator_type",
                                it.lineno);
                    return KH_EFORMAT;
                }
            }
            continue;
        }
        if (ci < 0)
            return KH_EFORMAT;
        size_t nf = ioc__split_sep(line, n, '\t', f, FIELDS_MAX);
        if (nf > FIELDS_MAX || (size_t)ci >= nf || (size_t)ct >= nf) {
            feed_reject(run, "line %u: fewer fields than #fields names", it.lineno);
            continue;
        }
        const struct ioc_field *t = &f[ct];
        int kind;
        if (feed_word_eq(t->p, t->n, "Intel::ADDR"))
            kind = IOC_IP;
        else if (feed_word_eq(t->p, t->n, "Intel::SUBNET"))
            kind = IOC_CIDR;
        else if (feed_word_eq(t->p, t->n, "Intel::DOMAIN"))
            kind = IOC_DOMAIN;
        else if (feed_word_eq(t->p, t->n, "Intel::URL"))
            kind = IOC_URL;
        else if (feed_word_eq(t->p, t->n, "Intel::JA3"))
            kind = IOC_JA3;
        else if (t->n > 7 && strncmp(t->p, "Intel::", 7) == 0) {
            /* File hashes, e-mail addresses, user names: not network. */
            run->st->skipped++;
            continue;
        } else {
            feed_reject(run, "line %u: unknown indicator_type", it.lineno);
            continue;
        }
        struct feed_meta m = {NULL, NULL, NULL, 0, -1, 0};
        if (cs >= 0 && (size_t)cs < nf && f[cs].n > 0 && !feed_word_eq(f[cs].p, f[cs].n, "-"))
            m.source = fld_str(&f[cs], src);
        if (cd >= 0 && (size_t)cd < nf && f[cd].n > 0 && !feed_word_eq(f[cd].p, f[cd].n, "-"))
            m.category = feed_category_lookup(f[cd].p, f[cd].n);
        if ((r = feed_emit(run, kind, f[ci].p, f[ci].n, &m, "line", it.lineno)) != 0)
            return r;
    }
    if (ci < 0 && it.lineno > 0) {
        /* Only comments: a Zeek intel file still needs its #fields line. */
        return KH_EFORMAT;
    }
    return KH_OK;
}
