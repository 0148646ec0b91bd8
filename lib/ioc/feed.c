/*
 * Feed reading entry points (feed.h): the dispatch from a format to its
 * reader, reading from a path (one file, gzip-compressed or not, or a MISP
 * feed folder), guessing a format, the category vocabulary, and the single
 * place (feed_emit) where a raw value becomes a record. The readers
 * themselves live in feed_text.c (line formats) and feed_json.c (STIX, MISP).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <stdatomic.h>
#include <unistd.h>

#include <jansson.h>
#include <zlib.h>

#include "feed_int.h"
#include "khx.h"
#include "store.h"

/* A feed file larger than this is refused (the largest public lists are a
 * few hundred MB); a gzip file may not inflate beyond it either. */
#define FEED_FILE_MAX ((size_t)1 << 30)
/* A MISP feed folder may name at most this many events. */
#define MISP_FEED_EVENTS_MAX 100000
/* A text at least this large is read on two threads (feed_pipe.c): below
 * it the thread costs more than the overlap saves. */
#define FEED_PIPE_MIN ((size_t)4 << 20)

static const char *const format_names[IOC_FMT_COUNT] = {
    "auto",  "plain", "csv",  "maltrail", "ipsum",      "firehol",
    "iprep", "zeek",  "stix", "misp",     "warninglist"};

const char *ioc_format_name(enum ioc_format fmt)
{
    if ((int)fmt < 0 || fmt >= IOC_FMT_COUNT)
        return "unknown";
    return format_names[fmt];
}

enum ioc_format ioc_format_from_name(const char *name)
{
    if (name == NULL)
        return IOC_FMT_COUNT;
    for (int i = 0; i < IOC_FMT_COUNT; i++)
        if (strcasecmp(name, format_names[i]) == 0)
            return (enum ioc_format)i;
    if (strcasecmp(name, "zeek-intel") == 0 || strcasecmp(name, "zeek_intel") == 0)
        return IOC_FMT_ZEEK_INTEL;
    if (strcasecmp(name, "misp-event") == 0 || strcasecmp(name, "misp_event") == 0)
        return IOC_FMT_MISP_EVENT;
    if (strcasecmp(name, "netset") == 0 || strcasecmp(name, "ipset") == 0)
        return IOC_FMT_FIREHOL;
    return IOC_FMT_COUNT;
}

int feed_word_eq(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

static const char *find_ci(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; k <= n && i <= n - k; i++)
        if (strncasecmp(hay + i, needle, k) == 0)
            return hay + i;
    return NULL;
}

/* Whether `word` occurs in text with no letter right before or after it. */
static int has_word(const char *t, size_t n, const char *word)
{
    size_t k = strlen(word);
    for (size_t i = 0; k <= n && i <= n - k; i++) {
        if (strncasecmp(t + i, word, k) != 0)
            continue;
        char b = i > 0 ? t[i - 1] : ' ', a = i + k < n ? t[i + k] : ' ';
        int bl = (b | 0x20) >= 'a' && (b | 0x20) <= 'z';
        int al = (a | 0x20) >= 'a' && (a | 0x20) <= 'z';
        if (!bl && !al)
            return 1;
    }
    return 0;
}

const char *feed_category_lookup(const char *text, size_t len)
{
    /* Checked in order: the most specific meaning first, so "sinkhole
     * (malware)" is a sinkhole and "apt_sofacy (malware)" an APT. */
    static const struct {
        const char *word;
        int whole; /* 1: a whole word, 0: anywhere */
        const char *category;
    } map[] = {
        {"sinkhole", 0, "sinkhole"},
        {"parking", 0, "parking"},
        {"apt", 1, "apt"},
        {"threat-actor", 0, "apt"},
        {"threat actor", 0, "apt"},
        {"intrusion-set", 0, "apt"},
        {"attribution", 0, "apt"},
        {"phish", 0, "phishing"},
        {"botnet_cc", 0, "c2"},
        {"c2", 1, "c2"},
        {"c&c", 0, "c2"},
        {"cnc", 1, "c2"},
        {"command and control", 0, "c2"},
        {"command-and-control", 0, "c2"},
        {"botnet", 1, "c2"},
        {"payload_delivery", 0, "distribution"},
        {"payload delivery", 0, "distribution"},
        {"malware_download", 0, "distribution"},
        {"distribution", 0, "distribution"},
        {"exploit kit", 0, "distribution"},
        {"ek", 1, "distribution"},
        {"mass scanner", 0, "scanner"},
        {"scanner", 0, "scanner"},
        {"scanning", 0, "scanner"},
        {"known attacker", 0, "attacker"},
        {"attacker", 0, "attacker"},
        {"brute", 0, "attacker"},
        {"tor", 1, "tor"},
        {"proxy", 0, "proxy"},
        {"anonymization", 0, "proxy"},
        {"spam", 0, "spam"},
        {"miner", 0, "miner"},
        {"mining", 0, "miner"},
        {"compromised", 0, "compromised"},
        {"suspicious", 0, "suspicious"},
        {"anomalous", 0, "suspicious"},
        {"reputation", 0, "suspicious"},
        {"pua", 1, "suspicious"},
        {"benign", 0, "benign"},
        {"allowlist", 0, "allowlist"},
        {"malicious-activity", 0, "malware"},
        {"payload installation", 0, "malware"},
        {"malware", 0, "malware"},
        {"malicious", 0, "malware"},
        {"ransomware", 0, "malware"},
        {"trojan", 0, "malware"},
        {"stealer", 0, "malware"},
        {"rat", 1, "malware"},
        {"payload", 1, "malware"},
    };
    if (text == NULL || len == 0)
        return NULL;
    for (size_t i = 0; i < KHX_ARRAY_LEN(map); i++) {
        if (map[i].whole ? has_word(text, len, map[i].word)
                         : find_ci(text, len, map[i].word) != NULL)
            return map[i].category;
    }
    return NULL;
}

const char *ioc_category_word(const char *text, size_t len)
{
    const char *c = feed_category_lookup(text, len);
    return c != NULL ? c : "malware";
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int feed_parse_time(const char *s, size_t n, int64_t *out)
{
    struct tm tm = {0};
    int y, mo, d, h = 0, mi = 0, se = 0;
    uint64_t secs;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '"'))
        n--;
    while (n > 0 && (s[0] == ' ' || s[0] == '"'))
        s++, n--;
    if (n > 0 && n <= 12 && khx_parse_u64(s, n, &secs) == 0) {
        *out = (int64_t)secs;
        return 0;
    }
    if (n < 10 || s[4] != '-' || s[7] != '-' || digits(s, 4, &y) || digits(s + 5, 2, &mo) ||
        digits(s + 8, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > 31)
        return -1;
    size_t i = 10;
    long off = 0;
    if (i < n && (s[i] == 'T' || s[i] == ' ')) {
        if (n < i + 6 || digits(s + i + 1, 2, &h) || s[i + 3] != ':' || digits(s + i + 4, 2, &mi))
            return -1;
        i += 6;
        if (i + 3 <= n && s[i] == ':' && digits(s + i + 1, 2, &se) == 0)
            i += 3;
        if (i < n && s[i] == '.') {
            i++;
            while (i < n && s[i] >= '0' && s[i] <= '9')
                i++;
        }
        if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
            i++;
        } else if (i + 6 <= n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
            int oh, om;
            if (digits(s + i + 1, 2, &oh) || digits(s + i + 4, 2, &om))
                return -1;
            off = (oh * 3600L + om * 60L) * (s[i] == '+' ? 1 : -1);
            i += 6;
        }
        if (h > 23 || mi > 59 || se > 60)
            return -1;
    }
    if (i != n)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    *out = (int64_t)timegm(&tm) - off;
    return 0;
}

static int clean_word(const char *s, size_t n, char out[IOC_WORD_MAX + 1]);
static int clean_text(const char *s, size_t n, char out[IOC_WORD_MAX + 1]);

void feed_run_init(struct feed_run *run, enum ioc_format fmt, const struct ioc_read_opts *opts,
                   ioc_record_fn fn, void *ctx, struct ioc_read_stats *st)
{
    static const struct ioc_read_opts zero;
    if (opts == NULL)
        opts = &zero;
    memset(run, 0, sizeof(*run));
    run->opts = opts;
    run->source =
        opts->source != NULL && opts->source[0] != '\0' ? opts->source : ioc_format_name(fmt);
    if (opts->category != NULL && opts->category[0] != '\0')
        run->category = opts->category;
    else if (fmt == IOC_FMT_IPSUM)
        run->category = "attacker";
    else if (fmt == IOC_FMT_WARNINGLIST)
        run->category = "allowlist";
    else
        run->category = "malware";
    run->family = opts->family;
    run->confidence = opts->confidence == 0 ? 50 : KHX_MIN(opts->confidence, 100);
    run->now = opts->now != 0 ? opts->now : (int64_t)time(NULL);
    run->keep_expired = opts->keep_expired;
    run->fn = fn;
    run->ctx = ctx;
    run->st = st;
    if (clean_word(run->category, strlen(run->category), run->cat_clean) != 0)
        strcpy(run->cat_clean, "malware");
    if (clean_word(run->source, strlen(run->source), run->src_clean) != 0)
        strcpy(run->src_clean, "-");
    run->fam_ok =
        run->family != NULL && clean_text(run->family, strlen(run->family), run->fam_clean) == 0;
}

void feed_reject(struct feed_run *run, const char *fmt, ...)
{
    run->st->rejected++;
    if (run->st->first_error[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->st->first_error, sizeof(run->st->first_error), fmt, ap);
    va_end(ap);
}

/* Copies a category or source word, lowercased; anything but [a-z0-9._-]
 * becomes '-'. Returns 0, or -1 when nothing usable is left. */
static int clean_word(const char *s, size_t n, char out[IOC_WORD_MAX + 1])
{
    while (n > 0 && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0)
        return -1;
    n = KHX_MIN(n, IOC_WORD_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            c = '-';
        out[i] = c;
    }
    out[n] = '\0';
    return 0;
}

/* Copies free text (a family or actor name): printable, trimmed, at most
 * IOC_WORD_MAX bytes without splitting a UTF-8 sequence. */
static int clean_text(const char *s, size_t n, char out[IOC_WORD_MAX + 1])
{
    size_t o = 0;
    while (n > 0 && (*s == ' ' || *s == '\t' || *s == '"'))
        s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '"'))
        n--;
    for (size_t i = 0; i < n && o < IOC_WORD_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    if (o == IOC_WORD_MAX && n > IOC_WORD_MAX)
        while (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
            o--;
    if (o > 0 && (unsigned char)out[o - 1] >= 0xc0)
        o--;
    out[o] = '\0';
    return o > 0 ? 0 : -1;
}

int feed_emit(struct feed_run *run, int kind, const char *value, size_t len,
              const struct feed_meta *m, const char *unit, size_t n)
{
    char val[IOC_VALUE_MAX + 1];
    char why[200];
    char cat[IOC_WORD_MAX + 1], src[IOC_WORD_MAX + 1], fam[IOC_WORD_MAX + 1];
    struct ioc_record rec;
    static const struct feed_meta none = {NULL, NULL, NULL, 0, -1, 0};
    if (m == NULL)
        m = &none;
    int got = ioc_normalize_value(kind, value, len, val, why, sizeof(why));
    if (got < 0) {
        feed_reject(run, "%s %zu: %s", unit, n, why);
        return 0;
    }
    if (m->expires != 0 && m->expires <= run->now && !run->keep_expired) {
        run->st->skipped++;
        return 0;
    }
    rec.kind = got;
    rec.value = val;
    run->rec_hints = 0;
    rec.category = run->cat_clean;
    rec.source = run->src_clean;
    rec.family = run->fam_ok ? run->fam_clean : NULL;
    if (m->category != NULL) {
        if (clean_word(m->category, strlen(m->category), cat) != 0)
            strcpy(cat, "malware");
        rec.category = cat;
    }
    if (m->source != NULL) {
        if (clean_word(m->source, strlen(m->source), src) != 0)
            strcpy(src, "-");
        rec.source = src;
    }
    if (m->family != NULL) {
        size_t fl = m->family_len != 0 ? m->family_len : strlen(m->family);
        rec.family = clean_text(m->family, fl, fam) == 0 ? fam : NULL;
    }
    rec.confidence = m->confidence >= 0 ? (uint8_t)KHX_MIN(m->confidence, 100) : run->confidence;
    rec.expires = m->expires;
    int r = run->fn != NULL ? run->fn(run->ctx, &rec) : 0;
    if (r == 0)
        run->st->records++;
    return r;
}

/* A category or source field that clean_word would only lowercase: copies
 * it lowercased (cut to IOC_WORD_MAX as text_form and clean_word cut it).
 * Returns 0, or -1 to leave the line to the general path. */
static int plain_word(const char *p, size_t n, char out[IOC_WORD_MAX + 1])
{
    n = KHX_MIN(n, (size_t)IOC_WORD_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                   c == '-'))
            return -1;
        out[i] = c;
    }
    out[n] = '\0';
    return 0;
}

int feed_emit_plain(struct feed_run *run, const char *line, size_t n, int *r)
{
    char val[IOC_VALUE_MAX + 1];
    struct ioc_record rec;
    size_t v = 0;
    int got = feed_fast_value(-1, line, n, val, &v);
    if (got < 0)
        return 0;
    rec.category = run->cat_clean;
    rec.source = run->src_clean;
    if (v < n) {
        /* "value category [source]": anything more (a confidence, an
         * expiry, a comment, a comma, a hosts-file line) takes the general
         * path. */
        const char *f[3];
        size_t fl[3], nf = 0, i = v;
        if (feed_word_eq(line, v, "127.0.0.1"))
            return 0;
        while (i < n) {
            while (i < n && (line[i] == ' ' || line[i] == '\t'))
                i++;
            if (i == n)
                break;
            if (nf == 2)
                return 0;
            f[nf] = line + i;
            while (i < n && line[i] != ' ' && line[i] != '\t')
                i++;
            fl[nf] = (size_t)(line + i - f[nf]);
            nf++;
        }
        for (size_t k = 0; k < nf; k++) {
            if (fl[k] == 1 && f[k][0] == '-')
                continue;
            /* a word as the previous line wrote it is not cleaned again */
            if (!run->word_ok[k] || fl[k] != run->word_rawlen[k] ||
                memcmp(f[k], run->word_raw[k], fl[k]) != 0) {
                run->word_ok[k] = 0;
                run->word_gen[k]++;
                if (plain_word(f[k], fl[k], run->word[k]) != 0)
                    return 0;
                if (fl[k] <= IOC_WORD_MAX) {
                    memcpy(run->word_raw[k], f[k], fl[k]);
                    run->word_rawlen[k] = fl[k];
                    run->word_ok[k] = 1;
                }
            }
            if (k == 0)
                rec.category = run->word[0];
            else
                rec.source = run->word[1];
        }
    }
    rec.kind = got;
    rec.value = val;
    /* the fast path lowercased and checked the name as the builder would */
    run->rec_hints = got == IOC_DOMAIN ? IOC_HINT_CANONICAL : 0;
    rec.family = run->fam_ok ? run->fam_clean : NULL;
    rec.confidence = run->confidence;
    rec.expires = 0;
    *r = run->fn != NULL ? run->fn(run->ctx, &rec) : 0;
    if (*r == 0)
        run->st->records++;
    return 1;
}

static int read_text(struct feed_run *run, enum ioc_format fmt, const char *text, size_t len)
{
    switch (fmt) {
    case IOC_FMT_PLAIN:
        return feed_read_plain(run, text, len);
    case IOC_FMT_CSV:
        return feed_read_csv(run, text, len);
    case IOC_FMT_MALTRAIL:
        return feed_read_maltrail(run, text, len);
    case IOC_FMT_IPSUM:
        return feed_read_ipsum(run, text, len);
    case IOC_FMT_FIREHOL:
        return feed_read_firehol(run, text, len);
    case IOC_FMT_IPREP:
        return feed_read_iprep(run, text, len);
    case IOC_FMT_ZEEK_INTEL:
        return feed_read_zeek(run, text, len);
    case IOC_FMT_STIX:
        return feed_read_stix(run, text, len);
    case IOC_FMT_MISP_EVENT:
        return feed_read_misp(run, text, len);
    case IOC_FMT_WARNINGLIST:
        return feed_read_warninglist(run, text, len);
    default:
        return KH_EINVAL;
    }
}

/* Whether a large feed is parsed on a second thread (feed_pipe.c): when the
 * machine has a second core. KHIEN_FEED_THREADS=1 or 2 decides instead (a
 * busy host whose other cores are taken loses the CPU time the hand-over
 * costs). */
static int use_threads(void)
{
    static atomic_long cpus;
    const char *env = getenv("KHIEN_FEED_THREADS");
    if (env != NULL && (strcmp(env, "1") == 0 || strcmp(env, "2") == 0))
        return env[0] == '2';
    long n = atomic_load_explicit(&cpus, memory_order_relaxed);
    if (n == 0) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
        atomic_store_explicit(&cpus, n, memory_order_relaxed);
    }
    return n >= 2;
}

struct text_arg {
    enum ioc_format fmt;
    const char *text;
    size_t len;
};

static int read_text_arg(struct feed_run *run, void *arg)
{
    const struct text_arg *a = arg;
    return read_text(run, a->fmt, a->text, a->len);
}

/* Reads a text, on two threads when it is large and use_threads says so. */
static int read_any(struct feed_run *run, enum ioc_format fmt, const char *text, size_t len)
{
    struct text_arg a = {fmt, text, len};
    if (len >= FEED_PIPE_MIN && run->fn != NULL && use_threads())
        return feed_read_piped(run, read_text_arg, &a);
    return read_text(run, fmt, text, len);
}

/* A large plain list is read in pieces of STREAM_CHUNK bytes cut at line
 * ends, so the text is parsed while it is still in the cache and no copy of
 * the whole file is made. */
#define STREAM_CHUNK ((size_t)1 << 20)

struct stream_arg {
    int fd;
    const char *path;
};

static int read_plain_stream(struct feed_run *run, void *arg)
{
    const struct stream_arg *a = arg;
    char *buf = malloc(STREAM_CHUNK);
    size_t have = 0;
    int r = KH_OK, eof = 0;
    if (buf == NULL)
        return KH_ENOMEM;
    while (!eof || have > 0) {
        if (!eof && have < STREAM_CHUNK) {
            ssize_t k = read(a->fd, buf + have, STREAM_CHUNK - have);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0) {
                snprintf(run->st->first_error, sizeof(run->st->first_error), "%.200s: cannot read",
                         a->path);
                r = KH_EIO;
                break;
            }
            if (k == 0)
                eof = 1;
            have += (size_t)k;
            if (!eof && have < STREAM_CHUNK)
                continue;
        }
        /* Up to the last line end; all of it at the end of the file, or when
         * one line fills the buffer (the reader refuses it as too long). */
        size_t cut = have;
        if (!eof) {
            while (cut > 0 && buf[cut - 1] != '\n')
                cut--;
            if (cut == 0)
                cut = have;
        }
        if ((r = feed_read_plain(run, buf, cut)) != KH_OK)
            break;
        memmove(buf, buf + cut, have - cut);
        have -= cut;
    }
    free(buf);
    return r;
}

/* Reads path as a plain list in pieces when it is a large uncompressed one:
 * returns 1 with *rc set when it did, 0 to read the file whole. */
static int try_stream(struct feed_run *run, const char *path, const struct stat *sb,
                      enum ioc_format fmt, int *rc)
{
    char head[4096];
    if (sb->st_size < (off_t)FEED_PIPE_MIN || (size_t)sb->st_size > FEED_FILE_MAX ||
        (fmt != IOC_FMT_PLAIN && fmt != IOC_FMT_AUTO))
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t k = pread(fd, head, sizeof(head), 0);
    if (k < 2 || ((uint8_t)head[0] == 0x1f && (uint8_t)head[1] == 0x8b)) {
        close(fd);
        return 0;
    }
    if (fmt == IOC_FMT_AUTO) {
        char name[512];
        snprintf(name, sizeof(name), "%s", khx_path_base(path));
        if (ioc_format_guess(name, head, (size_t)k) != IOC_FMT_PLAIN) {
            close(fd);
            return 0;
        }
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    struct stream_arg a = {fd, path};
    run->line_base = 0;
    *rc = run->fn != NULL && use_threads() ? feed_read_piped(run, read_plain_stream, &a)
                                           : read_plain_stream(run, &a);
    close(fd);
    return 1;
}

int ioc_read_feed(enum ioc_format fmt, const char *text, size_t len,
                  const struct ioc_read_opts *opts, ioc_record_fn fn, void *ctx,
                  struct ioc_read_stats *stats)
{
    struct ioc_read_stats local;
    struct feed_run run;
    if (stats == NULL)
        stats = &local;
    memset(stats, 0, sizeof(*stats));
    if (text == NULL)
        len = 0;
    if (fmt == IOC_FMT_AUTO)
        fmt = ioc_format_guess(NULL, text, len);
    if ((int)fmt <= IOC_FMT_AUTO || fmt >= IOC_FMT_COUNT)
        return KH_EINVAL;
    feed_run_init(&run, fmt, opts, fn, ctx, stats);
    return read_any(&run, fmt, text != NULL ? text : "", len);
}

static int name_ends(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n >= k && strcasecmp(name + n - k, suffix) == 0;
}

enum ioc_format ioc_format_guess(const char *name, const char *text, size_t len)
{
    const char *base = name != NULL ? khx_path_base(name) : "";
    size_t head = KHX_MIN(len, (size_t)4096);
    size_t i = 0;
    if (text == NULL)
        head = len = 0;
    while (i < head && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
        i++;
    if (i < head && (text[i] == '{' || text[i] == '[')) {
        if (find_ci(text, head, "\"Event\"") || find_ci(text, head, "\"Attribute\""))
            return IOC_FMT_MISP_EVENT;
        if (find_ci(text, head, "\"matching_attributes\""))
            return IOC_FMT_WARNINGLIST;
        if (find_ci(text, head, "\"list\"") && !find_ci(text, head, "\"objects\""))
            return IOC_FMT_WARNINGLIST;
        return IOC_FMT_STIX;
    }
    if (find_ci(text, head, "#fields\t"))
        return IOC_FMT_ZEEK_INTEL;
    if (name_ends(base, ".netset") || name_ends(base, ".ipset") || name_ends(base, ".netset.gz") ||
        name_ends(base, ".ipset.gz") || find_ci(text, head, "FireHOL"))
        return IOC_FMT_FIREHOL;
    if (strncasecmp(base, "ipsum", 5) == 0 || find_ci(text, head, "# IPsum"))
        return IOC_FMT_IPSUM;
    if (strcasecmp(base, "trails.csv") == 0 || find_ci(text, head, "Maltrail developers"))
        return IOC_FMT_MALTRAIL;
    /* Suricata reputation lines: "addr,number,number". */
    if (name_ends(base, ".list") || find_ci(base, strlen(base), "iprep") ||
        find_ci(base, strlen(base), "reputation"))
        return IOC_FMT_IPREP;
    if (name_ends(base, ".csv") || name_ends(base, ".csv.gz"))
        return IOC_FMT_CSV;
    return IOC_FMT_PLAIN;
}

/* Inflates a gzip (or zlib) text into a new buffer of at most FEED_FILE_MAX. */
static int gunzip(const uint8_t *in, size_t inlen, uint8_t **out, size_t *outlen)
{
    int r = KH_ENOMEM;
    z_stream z;
    struct khx_buf b;
    uint8_t chunk[65536];
    memset(&z, 0, sizeof(z));
    khx_buf_init(&b, FEED_FILE_MAX);
    if (inflateInit2(&z, 15 + 32) != Z_OK)
        return KH_ENOMEM;
    z.next_in = (Bytef *)(uintptr_t)in;
    for (;;) {
        /* avail_in is 32-bit: feed large inputs in slices. */
        if (z.avail_in == 0 && (size_t)(z.next_in - in) < inlen)
            z.avail_in = (uInt)KHX_MIN(inlen - (size_t)(z.next_in - in), (size_t)1 << 30);
        z.next_out = chunk;
        z.avail_out = sizeof(chunk);
        int zr = inflate(&z, Z_NO_FLUSH);
        if ((r = khx_buf_append(&b, chunk, sizeof(chunk) - z.avail_out)) != 0)
            goto out;
        if (zr == Z_STREAM_END)
            break;
        if (zr != Z_OK ||
            (z.avail_in == 0 && (size_t)(z.next_in - in) >= inlen && z.avail_out != 0)) {
            r = KH_EFORMAT;
            goto out;
        }
    }
    if ((r = khx_buf_append_u8(&b, 0)) != 0)
        goto out;
    *outlen = b.len - 1;
    *out = khx_buf_steal(&b, NULL);
    r = KH_OK;
out:
    inflateEnd(&z);
    khx_buf_free(&b);
    return r;
}

/* Derives a maltrail static file's category and family from where it sits:
 * static/malware/<family>.txt, static/malicious/<what>.txt,
 * static/suspicious/<what>.txt, static/mass_scanner*.txt. */
static void maltrail_static_defaults(const char *path, struct ioc_read_opts *o, char *fam,
                                     size_t famlen)
{
    const char *base = khx_path_base(path);
    size_t bl = strlen(base);
    if (strcasecmp(base, "trails.csv") == 0)
        return;
    if (bl > 4 && strcasecmp(base + bl - 4, ".txt") == 0)
        bl -= 4;
    snprintf(fam, famlen, "%.*s", (int)bl, base);
    char dir[64] = "";
    if (base > path) {
        const char *end = base - 1, *start = end;
        while (start > path && start[-1] != '/')
            start--;
        snprintf(dir, sizeof(dir), "%.*s", (int)(end - start), start);
    }
    const char *cat = NULL, *f = fam;
    if (strncmp(fam, "mass_scanner", 12) == 0) {
        cat = "scanner";
        f = NULL;
    } else if (strcmp(dir, "malware") == 0) {
        cat = strncmp(fam, "apt_", 4) == 0 ? "apt" : "malware";
    } else if (strcmp(dir, "malicious") == 0) {
        cat = feed_category_lookup(fam, strlen(fam));
        if (cat == NULL)
            cat = "malware";
    } else if (strcmp(dir, "suspicious") == 0) {
        cat = "suspicious";
    }
    if (o->category == NULL && cat != NULL)
        o->category = cat;
    if (o->family == NULL)
        o->family = f;
}

/* Reads a whole file, inflated when it is gzip (recognised by its magic
 * bytes, whatever its name). On failure the path goes to first_error. */
static int load_file(const char *path, struct ioc_read_stats *st, uint8_t **out, size_t *outlen)
{
    int r = KH_EIO;
    uint8_t *data = NULL, *plain = NULL;
    size_t len = 0, plen = 0;
    if (khx_read_file(path, FEED_FILE_MAX, &data, &len) != 0) {
        snprintf(st->first_error, sizeof(st->first_error), "%.200s: cannot read", path);
        goto out;
    }
    if (len >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
        if ((r = gunzip(data, len, &plain, &plen)) != 0) {
            snprintf(st->first_error, sizeof(st->first_error),
                     "%.180s: not a valid gzip file (or over 1 GiB inflated)", path);
            goto out;
        }
        free(data);
        data = plain;
        len = plen;
        plain = NULL;
    }
    *out = data;
    *outlen = len;
    data = NULL;
    r = KH_OK;
out:
    free(data);
    free(plain);
    return r;
}

static int read_one_file(struct feed_run *run, const char *path, enum ioc_format fmt)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int r = load_file(path, run->st, &data, &len);
    if (r == KH_OK)
        r = read_text(run, fmt, (const char *)data, len);
    free(data);
    return r;
}

/* A MISP feed folder: manifest.json names the events ({uuid: summary}); each
 * is <uuid>.json next to it. Without a manifest every *.json is read. */
static int read_misp_folder(struct feed_run *run, const char *dir)
{
    int r = KH_EIO;
    char path[4096];
    json_t *manifest = NULL;
    DIR *d = NULL;
    size_t events = 0;
    snprintf(path, sizeof(path), "%s/manifest.json", dir);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        json_error_t jerr;
        manifest = json_load_file(path, 0, &jerr);
        if (!json_is_object(manifest)) {
            snprintf(run->st->first_error, sizeof(run->st->first_error),
                     "%.150s: not a MISP feed manifest (line %d: %.60s)", path, jerr.line,
                     jerr.text);
            r = KH_EFORMAT;
            goto out;
        }
        const char *uuid;
        json_t *v;
        json_object_foreach(manifest, uuid, v)
        {
            (void)v;
            size_t ul = strlen(uuid);
            if (++events > MISP_FEED_EVENTS_MAX) {
                feed_reject(run, "manifest: more than %d events", MISP_FEED_EVENTS_MAX);
                break;
            }
            if (ul == 0 || ul > 64 || strspn(uuid, "0123456789abcdefABCDEF-") != ul) {
                feed_reject(run, "manifest: '%.64s' is not an event uuid", uuid);
                continue;
            }
            snprintf(path, sizeof(path), "%s/%s.json", dir, uuid);
            char save[sizeof(run->st->first_error)];
            memcpy(save, run->st->first_error, sizeof(save));
            r = read_one_file(run, path, IOC_FMT_MISP_EVENT);
            if (r == KH_EIO || r == KH_EFORMAT) {
                memcpy(run->st->first_error, save, sizeof(save));
                feed_reject(run, "event %s: missing or not MISP JSON", uuid);
                continue;
            }
            if (r != 0)
                goto out;
        }
        r = KH_OK;
        goto out;
    }
    if ((d = opendir(dir)) == NULL) {
        snprintf(run->st->first_error, sizeof(run->st->first_error), "%.200s: cannot open", dir);
        r = KH_EIO;
        goto out;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!name_ends(e->d_name, ".json") || e->d_name[0] == '.')
            continue;
        if (++events > MISP_FEED_EVENTS_MAX)
            break;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        r = read_one_file(run, path, IOC_FMT_MISP_EVENT);
        if (r == KH_EIO || r == KH_EFORMAT) {
            feed_reject(run, "%s: not MISP event JSON", e->d_name);
            continue;
        }
        if (r != 0)
            goto out;
    }
    r = KH_OK;
out:
    if (d != NULL)
        closedir(d);
    json_decref(manifest);
    return r;
}

int ioc_read_path(const char *path, enum ioc_format fmt, const struct ioc_read_opts *opts,
                  ioc_record_fn fn, void *ctx, struct ioc_read_stats *stats)
{
    struct ioc_read_stats local;
    struct ioc_read_opts o;
    struct feed_run run;
    struct stat sb;
    char fam[IOC_WORD_MAX + 1];
    uint8_t *data = NULL;
    size_t len = 0;
    int r = KH_EIO;
    if (stats == NULL)
        stats = &local;
    memset(stats, 0, sizeof(*stats));
    memset(&o, 0, sizeof(o));
    if (opts != NULL)
        o = *opts;
    if (path == NULL || stat(path, &sb) != 0) {
        snprintf(stats->first_error, sizeof(stats->first_error), "%.200s: no such file",
                 path != NULL ? path : "(null)");
        goto out;
    }
    if (S_ISDIR(sb.st_mode)) {
        r = KH_EINVAL;
        if (fmt != IOC_FMT_AUTO && fmt != IOC_FMT_MISP_EVENT)
            goto out;
        feed_run_init(&run, IOC_FMT_MISP_EVENT, &o, fn, ctx, stats);
        r = read_misp_folder(&run, path);
        goto out;
    }
    if ((int)fmt < IOC_FMT_AUTO || fmt >= IOC_FMT_COUNT) {
        r = KH_EINVAL;
        goto out;
    }
    if (fmt == IOC_FMT_PLAIN || fmt == IOC_FMT_AUTO) {
        feed_run_init(&run, IOC_FMT_PLAIN, &o, fn, ctx, stats);
        if (try_stream(&run, path, &sb, fmt, &r))
            goto out;
    }
    if ((r = load_file(path, stats, &data, &len)) != 0)
        goto out;
    if (fmt == IOC_FMT_AUTO) {
        /* Guess from the name (without ".gz") and the first bytes. */
        char name[512];
        snprintf(name, sizeof(name), "%s", khx_path_base(path));
        if (name_ends(name, ".gz"))
            name[strlen(name) - 3] = '\0';
        fmt = ioc_format_guess(name, (const char *)data, len);
    }
    if (fmt == IOC_FMT_MALTRAIL)
        maltrail_static_defaults(path, &o, fam, sizeof(fam));
    feed_run_init(&run, fmt, &o, fn, ctx, stats);
    r = read_any(&run, fmt, (const char *)data, len);
out:
    free(data);
    return r;
}
