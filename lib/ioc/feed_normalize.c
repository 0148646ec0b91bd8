/*
 * Value normalisation for the feed readers (ioc_normalize_value in feed.h):
 * one function turns whatever a feed wrote — "hxxps://evil[.]example/a",
 * "[2001:db8::1]:443", "203.0.113.9/24", "EVIL.example." — into the one
 * canonical text the store keys on, or says why it cannot. Every reader goes
 * through it, so that the same indicator from two feeds merges into one key.
 *
 * The canonical forms are described in feed.h. Choices made here:
 *  - A URL whose path is empty or "/" and that has no query is, when the
 *    caller did not ask for a URL, the host itself (an address, address:port
 *    or domain): "http://203.0.113.9" in a list means "this host".
 *  - A path without a host ("/gate.php", maltrail's host-less URL trails and
 *    MISP "uri" attributes) is kept as an IOC_URL whose value starts with '/':
 *    it stands for that path on any host.
 *  - "domain:port" keeps the domain only: there is no domain:port kind, and a
 *    name is listed for any port.
 *  - A value of 32 hex digits is a JA3 hash when any kind is allowed; readers
 *    of formats that also carry file hashes ask for a kind explicitly.
 */
#include <arpa/inet.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "feed_int.h"
#include "khx.h"

/* Inputs longer than this are refused before looking at them. */
#define RAW_MAX    (4 * IOC_VALUE_MAX)
#define DOMAIN_MAX 253
#define LABEL_MAX  63
#define SHOW_MAX   80

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int starts_ci(const char *s, size_t n, const char *word)
{
    size_t k = strlen(word);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++)
        if (lower((unsigned char)s[i]) != word[i])
            return 0;
    return 1;
}

/* Undoes the usual defanging into out (at most n bytes are written, the
 * result is never longer than the input) and returns the new length. */
static size_t undefang(const char *s, size_t n, char *out)
{
    static const struct {
        const char *from, *to;
    } subst[] = {{"[.]", "."},   {"(.)", "."},  {"{.}", "."},       {"[dot]", "."},
                 {"(dot)", "."}, {"[:]", ":"},  {"[://]", "://"},   {"[/]", "/"},
                 {"[@]", "@"},   {"[at]", "@"}, {"hxxps", "https"}, {"hxxp", "http"}};
    size_t o = 0, i = 0;
    while (i < n) {
        int done = 0;
        if (s[i] == '[' || s[i] == '(' || s[i] == '{' || s[i] == 'h' || s[i] == 'H') {
            for (size_t k = 0; k < KHX_ARRAY_LEN(subst); k++) {
                size_t fl = strlen(subst[k].from), tl = strlen(subst[k].to);
                /* hxxp only counts as a scheme at the very start, before
                 * ':' or a defanged "[:" ("hxxpfoo.example" is a name). */
                if (subst[k].from[0] == 'h') {
                    size_t e = strlen(subst[k].from);
                    if (i != 0 || e >= n || (s[e] != ':' && s[e] != '['))
                        continue;
                }
                if (starts_ci(s + i, n - i, subst[k].from)) {
                    memcpy(out + o, subst[k].to, tl);
                    o += tl;
                    i += fl;
                    done = 1;
                    break;
                }
            }
        }
        if (!done)
            out[o++] = s[i++];
    }
    return o;
}

static int parse_port(const char *s, size_t n, unsigned *port)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *port = v;
    return 0;
}

/* Parses an address (either family) and writes its canonical text to out
 * (INET6_ADDRSTRLEN bytes); IPv4-mapped IPv6 becomes IPv4. Optionally a
 * prefix length clears the host bits. Returns the family or -1. */
static int parse_addr(const char *s, size_t n, int prefix, char *out, int *prefix_out)
{
    char buf[INET6_ADDRSTRLEN + 1];
    uint8_t a[16] = {0};
    int fam;
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, a) == 1) {
        fam = AF_INET;
    } else if (inet_pton(AF_INET6, buf, a) == 1) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        fam = AF_INET6;
        if (memcmp(a, mapped, sizeof(mapped)) == 0) {
            memmove(a, a + 12, 4);
            memset(a + 4, 0, 12);
            fam = AF_INET;
            if (prefix >= 96)
                prefix -= 96;
            else if (prefix >= 0)
                return -1;
        }
    } else {
        return -1;
    }
    int bits = fam == AF_INET ? 32 : 128;
    if (prefix > bits)
        return -1;
    if (prefix >= 0) {
        for (int i = 0; i < bits / 8; i++) {
            int bit = i * 8;
            if (bit >= prefix)
                a[i] = 0;
            else if (prefix - bit < 8)
                a[i] &= (uint8_t)(0xff << (8 - (prefix - bit)));
        }
    }
    if (prefix_out)
        *prefix_out = prefix < 0 || prefix == bits ? -1 : prefix;
    if (inet_ntop(fam, a, out, INET6_ADDRSTRLEN) == NULL)
        return -1;
    return fam;
}

/* Validates a domain name and writes it lowercased, without a trailing dot
 * or a leading "*.", to out (DOMAIN_MAX + 1 bytes). */
static int parse_domain(const char *s, size_t n, char *out, const char *show, char *err,
                        size_t errlen)
{
    size_t label = 0, labels = 0;
    int numeric = 1;
    if (n >= 2 && s[0] == '*' && s[1] == '.') {
        s += 2;
        n -= 2;
    } else if (n >= 1 && s[0] == '.') {
        s++;
        n--;
    }
    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n == 0) {
        khx_errf(err, errlen, "empty value");
        return -1;
    }
    if (n > DOMAIN_MAX) {
        khx_errf(err, errlen, "the domain name '%s' is longer than %d characters", show,
                 DOMAIN_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char c = (char)lower((unsigned char)s[i]);
        if (c == '.') {
            if (label == 0) {
                khx_errf(err, errlen, "the domain name '%s' has an empty label", show);
                return -1;
            }
            labels++;
            label = 0;
            numeric = 1;
        } else if ((c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '_') {
            if (++label > LABEL_MAX) {
                khx_errf(err, errlen, "the domain name '%s' has a label longer than %d", show,
                         LABEL_MAX);
                return -1;
            }
            if (!is_digit(c))
                numeric = 0;
        } else {
            if ((unsigned char)c >= 0x80)
                khx_errf(err, errlen, "'%s' is not ASCII (write a domain in its xn-- form)", show);
            else
                khx_errf(err, errlen, "'%s' is not a valid indicator (character '%c')", show,
                         c > 0x20 && c < 0x7f ? c : '?');
            return -1;
        }
        out[i] = c;
    }
    if (label == 0) {
        khx_errf(err, errlen, "the domain name '%s' has an empty label", show);
        return -1;
    }
    /* One label alone ("com", "localhost") would match every name under it
     * or only a name local to one network. */
    if (++labels < 2) {
        khx_errf(err, errlen, "'%s' has a single label (a domain needs two or more)", show);
        return -1;
    }
    if (numeric) {
        khx_errf(err, errlen, "'%s' is neither an IP address nor a domain name", show);
        return -1;
    }
    out[n] = '\0';
    return 0;
}

/* Parses a host ("name", "a.b.c.d", "[v6]") with an optional ":port" into
 * out; writes the kind (IP, IP_PORT or DOMAIN) and the port (0 = none). The
 * port is kept in out only for addresses. */
static int parse_hostport(const char *s, size_t n, char *out, unsigned *port, const char *show,
                          char *err, size_t errlen)
{
    char addr[INET6_ADDRSTRLEN];
    const char *host = s;
    size_t hn = n;
    *port = 0;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL) {
            khx_errf(err, errlen, "'%s' has '[' without ']'", show);
            return -1;
        }
        host = s + 1;
        hn = (size_t)(close - s) - 1;
        size_t rest = n - (size_t)(close - s) - 1;
        if (rest > 0 && (close[1] != ':' || parse_port(close + 2, rest - 1, port) != 0)) {
            khx_errf(err, errlen, "'%s' has a bad port after ']'", show);
            return -1;
        }
        /* An IPv4-mapped address in brackets becomes IPv4. */
        if (parse_addr(host, hn, -1, addr, NULL) < 0 || memchr(host, ':', hn) == NULL) {
            khx_errf(err, errlen, "'%s' has no IPv6 address between brackets", show);
            return -1;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon != NULL && memchr(colon + 1, ':', n - (size_t)(colon - s) - 1) == NULL) {
            hn = (size_t)(colon - s);
            if (parse_port(colon + 1, n - hn - 1, port) != 0) {
                khx_errf(err, errlen, "'%s' has a bad port", show);
                return -1;
            }
        }
        int fam = parse_addr(host, hn, -1, addr, NULL);
        if (fam < 0) {
            if (colon != NULL && hn == n) {
                khx_errf(err, errlen, "'%s' is not a valid IPv6 address", show);
                return -1;
            }
            if (parse_domain(host, hn, out, show, err, errlen) != 0)
                return -1;
            return IOC_DOMAIN;
        }
        if (fam == AF_INET6 && *port != 0) {
            khx_errf(err, errlen, "'%s': write an IPv6 address with a port as [addr]:port", show);
            return -1;
        }
        if (fam == AF_INET6 && hn == n)
            *port = 0;
    }
    int v6 = strchr(addr, ':') != NULL;
    if (strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0) {
        khx_errf(err, errlen, "'%s' is the unspecified address", show);
        return -1;
    }
    if (*port == 0) {
        strcpy(out, addr);
        return IOC_IP;
    }
    snprintf(out, IOC_VALUE_MAX + 1, v6 ? "[%s]:%u" : "%s:%u", addr, *port);
    return IOC_IP_PORT;
}

/* Checks the path/query part of a URL: no blanks or control characters
 * (UTF-8 is kept as it is: maltrail lists raw Cyrillic paths). */
static int check_path(const char *p, size_t n, const char *show, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c == 0x7f) {
            khx_errf(err, errlen, "'%s': URL paths may not hold blanks or control characters",
                     show);
            return -1;
        }
    }
    return 0;
}

/* Parses a URL (with or without a scheme; rest starts after "://" when
 * `scheme` is set). Writes "host[:port]/path[?query]" or, when the caller
 * allows any kind and there is no path, the host alone. */
static int parse_url(const char *scheme, size_t sl, const char *s, size_t n, int want, char *out,
                     const char *show, char *err, size_t errlen)
{
    char host[IOC_VALUE_MAX + 1];
    size_t a = 0;
    while (a < n && s[a] != '/' && s[a] != '?' && s[a] != '#')
        a++;
    const char *auth = s;
    size_t an = a;
    const char *at = NULL;
    for (size_t i = 0; i < an; i++)
        if (auth[i] == '@')
            at = auth + i;
    if (at != NULL) {
        an -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    if (an == 0) {
        khx_errf(err, errlen, "'%s' has no host", show);
        return -1;
    }
    unsigned port = 0;
    int hk = parse_hostport(auth, an, host, &port, show, err, errlen);
    if (hk < 0)
        return -1;
    if (port != 0 && scheme != NULL &&
        ((sl == 4 && starts_ci(scheme, sl, "http") && port == 80) ||
         (sl == 5 && starts_ci(scheme, sl, "https") && port == 443))) {
        /* The default port is the same URL without it. */
        port = 0;
        if (hk == IOC_IP_PORT) {
            char *end = strrchr(host, ':');
            *end = '\0';
            if (host[0] == '[') {
                memmove(host, host + 1, strlen(host));
                host[strlen(host) - 1] = '\0';
            }
            hk = IOC_IP;
        }
    }
    /* The fragment never reaches the server. */
    size_t pn = n - a;
    const char *path = s + a;
    const char *hash = memchr(path, '#', pn);
    if (hash != NULL)
        pn = (size_t)(hash - path);
    if (check_path(path, pn, show, err, errlen) != 0)
        return -1;
    if (want < 0 && (pn == 0 || (pn == 1 && path[0] == '/'))) {
        strcpy(out, host);
        return hk;
    }
    char hostpart[IOC_VALUE_MAX + 16];
    if (hk == IOC_DOMAIN && port != 0)
        snprintf(hostpart, sizeof(hostpart), "%s:%u", host, port);
    else if (hk == IOC_IP && strchr(host, ':') != NULL)
        snprintf(hostpart, sizeof(hostpart), "[%s]", host);
    else
        snprintf(hostpart, sizeof(hostpart), "%s", host);
    size_t hl = strlen(hostpart);
    int slash = pn == 0 || path[0] != '/';
    if (hl + (size_t)slash + pn > IOC_VALUE_MAX) {
        khx_errf(err, errlen, "'%s' is longer than %d characters", show, IOC_VALUE_MAX);
        return -1;
    }
    memcpy(out, hostpart, hl);
    if (slash)
        out[hl++] = '/';
    memcpy(out + hl, path, pn);
    out[hl + pn] = '\0';
    return IOC_URL;
}

static int all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (khx_hexval((unsigned char)s[i]) < 0)
            return 0;
    return 1;
}

/* JA4: "t13d1516h2_8daaf6152771_e5627efa2ab1" (a_b_c, 10 + 12 + 12). */
static int looks_ja4(const char *s, size_t n)
{
    if (n != 36 || s[10] != '_' || s[23] != '_')
        return 0;
    if (s[0] != 't' && s[0] != 'q' && s[0] != 'd' && s[0] != 'T' && s[0] != 'Q' && s[0] != 'D')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 10 || i == 23)
            continue;
        char c = (char)lower((unsigned char)s[i]);
        if (!((c >= 'a' && c <= 'z') || is_digit(c)))
            return 0;
    }
    return 1;
}

static int kind_ok(int want, int got)
{
    if (want < 0 || want == got)
        return 1;
    /* An address list may hold prefixes and a prefix list single addresses. */
    if ((want == IOC_IP || want == IOC_CIDR) && (got == IOC_IP || got == IOC_CIDR))
        return 1;
    return 0;
}

static int classify(int kind, const char *s, size_t n, char *out, const char *show, char *err,
                    size_t errlen)
{
    if (kind == IOC_JA3 || (kind < 0 && n == 32 && all_hex(s, n))) {
        if (n != 32 || !all_hex(s, n)) {
            khx_errf(err, errlen, "'%s' is not a JA3 hash (32 hex digits)", show);
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            out[i] = (char)lower((unsigned char)s[i]);
        out[n] = '\0';
        return IOC_JA3;
    }
    if (kind == IOC_JA4 || (kind < 0 && looks_ja4(s, n))) {
        if (!looks_ja4(s, n)) {
            khx_errf(err, errlen, "'%s' is not a JA4 fingerprint", show);
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            out[i] = (char)lower((unsigned char)s[i]);
        out[n] = '\0';
        return IOC_JA4;
    }
    for (size_t i = 0; i + 2 < n && i < 16; i++) {
        if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/') {
            for (size_t k = 0; k < i; k++) {
                char c = (char)lower((unsigned char)s[k]);
                if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '+' || c == '-' || c == '.')) {
                    khx_errf(err, errlen, "'%s' has a bad URL scheme", show);
                    return -1;
                }
            }
            return parse_url(s, i, s + i + 3, n - i - 3, kind, out, show, err, errlen);
        }
        if (s[i] == '/' || s[i] == ':' || s[i] == '.')
            break;
    }
    if (s[0] == '/') {
        if (n > IOC_VALUE_MAX || check_path(s, n, show, err, errlen) != 0) {
            if (n > IOC_VALUE_MAX)
                khx_errf(err, errlen, "'%s' is longer than %d characters", show, IOC_VALUE_MAX);
            return -1;
        }
        const char *hash = memchr(s, '#', n);
        if (hash != NULL)
            n = (size_t)(hash - s);
        memcpy(out, s, n);
        out[n] = '\0';
        return IOC_URL;
    }
    const char *slash = memchr(s, '/', n);
    const char *qmark = memchr(s, '?', n);
    if (slash != NULL && (qmark == NULL || qmark > slash) && kind != IOC_URL) {
        size_t hn = (size_t)(slash - s), pl = n - hn - 1;
        char addr[INET6_ADDRSTRLEN];
        int pfx = 0;
        if (pl >= 1 && pl <= 3) {
            int num = 1;
            for (size_t i = 0; i < pl; i++)
                if (!is_digit(slash[1 + i]))
                    num = 0;
            if (num) {
                int bits = 0;
                for (size_t i = 0; i < pl; i++)
                    bits = bits * 10 + (slash[1 + i] - '0');
                int fam = parse_addr(s, hn, bits, addr, &pfx);
                if (fam > 0) {
                    if (bits == 0) {
                        khx_errf(err, errlen, "'%s' is a /0 prefix (everything)", show);
                        return -1;
                    }
                    if (pfx < 0) {
                        /* A full-length prefix is the address itself, and
                         * refused as the bare address would be. */
                        if (strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0) {
                            khx_errf(err, errlen, "'%s' is the unspecified address", show);
                            return -1;
                        }
                        strcpy(out, addr);
                        return IOC_IP;
                    }
                    snprintf(out, IOC_VALUE_MAX + 1, "%s/%d", addr, pfx);
                    return IOC_CIDR;
                }
                if (parse_addr(s, hn, -1, addr, NULL) > 0) {
                    khx_errf(err, errlen, "'%s' has a bad prefix length", show);
                    return -1;
                }
            }
        }
        return parse_url(NULL, 0, s, n, kind, out, show, err, errlen);
    }
    if (qmark != NULL || kind == IOC_URL)
        return parse_url(NULL, 0, s, n, kind, out, show, err, errlen);
    unsigned port;
    return parse_hostport(s, n, out, &port, show, err, errlen);
}

/* ---- fast paths ----
 *
 * Nearly every line of a large list is a plain domain or a dotted IPv4
 * address (with a port or a prefix length) that is already in its canonical
 * form. These take that case in one pass without the copies, the defanging
 * scan and inet_pton/inet_ntop of the general path. Each either produces
 * exactly what the general path would, or returns -1 to say "not mine", and
 * the general path then decides (and words any error). */

/* Writes v in decimal at out; returns the number of digits. */
static size_t put_uint(char *out, unsigned v)
{
    char tmp[10];
    size_t t = 0, n = 0;
    do {
        tmp[t++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (t > 0)
        out[n++] = tmp[--t];
    return n;
}

/* A decimal number without a leading zero (except "0" itself) of at most
 * `maxd` digits; returns the digits consumed or 0. */
static size_t fast_num(const char *s, size_t n, size_t maxd, unsigned *v)
{
    size_t i = 0;
    unsigned x = 0;
    while (i < n && i < maxd + 1 && is_digit(s[i]))
        x = x * 10 + (unsigned)(s[i++] - '0');
    if (i == 0 || i > maxd || (i > 1 && s[0] == '0'))
        return 0;
    *v = x;
    return i;
}

/* Whether a value that the fast path read up to e ends there: at the end of
 * the text, or, when the caller reads a token (used != NULL), at a blank. */
static int ends_at(const char *s, size_t n, size_t e, const size_t *used)
{
    return e == n || (used != NULL && e < n && (s[e] == ' ' || s[e] == '\t'));
}

/* "a.b.c.d", "a.b.c.d:port" or "a.b.c.d/len" as inet_pton and the general
 * path read them. */
static int fast_ipv4(int kind, const char *s, size_t n, char *out, size_t *used)
{
    uint32_t a = 0;
    size_t i = 0;
    unsigned v;
    for (int k = 0; k < 4; k++) {
        size_t d = fast_num(s + i, n - i, 3, &v);
        if (d == 0 || v > 255)
            return -1;
        a = a << 8 | v;
        i += d;
        if (k < 3) {
            if (i >= n || s[i] != '.')
                return -1;
            i++;
        }
    }
    if (a == 0)
        return -1; /* the unspecified address: the general path says so */
    int got = IOC_IP;
    unsigned port = 0, bits = 32;
    if (i < n && s[i] == ':') {
        size_t d = fast_num(s + i + 1, n - i - 1, 5, &port);
        if (d == 0 || port == 0 || port > 65535 || !ends_at(s, n, i + 1 + d, used))
            return -1;
        got = IOC_IP_PORT;
        i += 1 + d;
    } else if (i < n && s[i] == '/') {
        size_t d = fast_num(s + i + 1, n - i - 1, 2, &bits);
        if (d == 0 || bits == 0 || bits > 32 || !ends_at(s, n, i + 1 + d, used))
            return -1;
        i += 1 + d;
        if (bits < 32) {
            a &= ~0u << (32 - bits);
            got = IOC_CIDR;
        }
    } else if (!ends_at(s, n, i, used)) {
        return -1;
    }
    if (!kind_ok(kind, got))
        return -1;
    if (used != NULL)
        *used = i;
    size_t o = 0;
    for (int k = 3; k >= 0; k--) {
        o += put_uint(out + o, (a >> (8 * k)) & 0xff);
        if (k > 0)
            out[o++] = '.';
    }
    if (got == IOC_IP_PORT) {
        out[o++] = ':';
        o += put_uint(out + o, port);
    } else if (got == IOC_CIDR) {
        out[o++] = '/';
        o += put_uint(out + o, bits);
    }
    out[o] = '\0';
    return got;
}

/* Per character, for fast_domain: the lowercased character for a letter,
 * digit, '-', '_' or '.', and 0 for anything else. */
static const char dom_lower[256] = {
    ['-'] = '-', ['_'] = '_', ['.'] = '.', ['0'] = '0', ['1'] = '1', ['2'] = '2', ['3'] = '3',
    ['4'] = '4', ['5'] = '5', ['6'] = '6', ['7'] = '7', ['8'] = '8', ['9'] = '9', ['a'] = 'a',
    ['b'] = 'b', ['c'] = 'c', ['d'] = 'd', ['e'] = 'e', ['f'] = 'f', ['g'] = 'g', ['h'] = 'h',
    ['i'] = 'i', ['j'] = 'j', ['k'] = 'k', ['l'] = 'l', ['m'] = 'm', ['n'] = 'n', ['o'] = 'o',
    ['p'] = 'p', ['q'] = 'q', ['r'] = 'r', ['s'] = 's', ['t'] = 't', ['u'] = 'u', ['v'] = 'v',
    ['w'] = 'w', ['x'] = 'x', ['y'] = 'y', ['z'] = 'z', ['A'] = 'a', ['B'] = 'b', ['C'] = 'c',
    ['D'] = 'd', ['E'] = 'e', ['F'] = 'f', ['G'] = 'g', ['H'] = 'h', ['I'] = 'i', ['J'] = 'j',
    ['K'] = 'k', ['L'] = 'l', ['M'] = 'm', ['N'] = 'n', ['O'] = 'o', ['P'] = 'p', ['Q'] = 'q',
    ['R'] = 'r', ['S'] = 's', ['T'] = 't', ['U'] = 'u', ['V'] = 'v', ['W'] = 'w', ['X'] = 'x',
    ['Y'] = 'y', ['Z'] = 'z',
};

#if defined(__SSE2__)
/* The SSE2 part of fast_domain's copy: 16 characters at a time while 16
 * remain in s[0..n), stopping at the first one that is not a letter,
 * digit, '-', '_' or '.', or at lim. Copies them lowercased into out
 * (which may get up to 15 bytes past the stop: it holds IOC_VALUE_MAX + 1
 * and lim is at most DOMAIN_MAX + 1) and notes the dots as the scalar loop
 * does. Returns where it stopped, or SIZE_MAX for too many dots. */
static size_t domain_chunks(const char *s, size_t n, size_t lim, char *out, uint8_t *dot,
                            size_t *ndp)
{
    size_t i = 0, nd = *ndp;
    const __m128i a1 = _mm_set1_epi8('a' - 1), z1 = _mm_set1_epi8('z' + 1);
    const __m128i ua1 = _mm_set1_epi8('A' - 1), uz1 = _mm_set1_epi8('Z' + 1);
    const __m128i d1 = _mm_set1_epi8('0' - 1), d9 = _mm_set1_epi8('9' + 1);
    const __m128i dash = _mm_set1_epi8('-'), under = _mm_set1_epi8('_');
    const __m128i dotc = _mm_set1_epi8('.'), bit5 = _mm_set1_epi8(0x20);
    while (i < lim && i + 16 <= n) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        /* bytes of 0x80 and above are negative: no range takes them */
        __m128i lower = _mm_and_si128(_mm_cmpgt_epi8(v, a1), _mm_cmplt_epi8(v, z1));
        __m128i upper = _mm_and_si128(_mm_cmpgt_epi8(v, ua1), _mm_cmplt_epi8(v, uz1));
        __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, d1), _mm_cmplt_epi8(v, d9));
        __m128i dots = _mm_cmpeq_epi8(v, dotc);
        __m128i ok = _mm_or_si128(_mm_or_si128(lower, upper), _mm_or_si128(digit, dots));
        ok = _mm_or_si128(ok, _mm_or_si128(_mm_cmpeq_epi8(v, dash), _mm_cmpeq_epi8(v, under)));
        _mm_storeu_si128((__m128i *)(void *)(out + i), _mm_or_si128(v, _mm_and_si128(upper, bit5)));
        unsigned good = (unsigned)_mm_movemask_epi8(ok);
        size_t k = good == 0xffff ? 16 : (size_t)__builtin_ctz(~good);
        if (k > lim - i)
            k = lim - i;
        unsigned dm = (unsigned)_mm_movemask_epi8(dots) & ((1u << k) - 1);
        while (dm != 0) {
            if (nd >= DOMAIN_MAX / 2)
                return SIZE_MAX;
            dot[nd++] = (uint8_t)(i + (size_t)__builtin_ctz(dm));
            dm &= dm - 1;
        }
        i += k;
        if (k < 16)
            break;
    }
    *ndp = nd;
    return i;
}
#endif

/* A plain domain name: [A-Za-z0-9_-] labels of 1..63 joined by single dots,
 * two labels or more, the last not all digits, no leading or trailing dot.
 * Names in large lists mix letters and digits at random, so the character
 * loop has no branch on the kind of character. */
static int fast_domain(int kind, const char *s, size_t n, char *out, size_t *used)
{
    /* Where each dot is, noted without a branch: a name of DOMAIN_MAX
     * characters has fewer than DOMAIN_MAX / 2 + 1 of them when valid, and
     * the copy stops before that many. */
    uint8_t dot[DOMAIN_MAX / 2 + 2];
    size_t i = 0, nd = 0;
    if (kind >= 0 && kind != IOC_DOMAIN)
        return -1;
    size_t lim = KHX_MIN(n, (size_t)DOMAIN_MAX + 1);
#if defined(__SSE2__)
    /* the scalar loop below finishes the tail (or stops at once where the
     * chunks stopped at a character it stops at too) */
    if ((i = domain_chunks(s, n, lim, out, dot, &nd)) == SIZE_MAX)
        return -1;
#endif
    for (; i < lim; i++) {
        char c = dom_lower[(unsigned char)s[i]];
        if (c == 0)
            break;
        out[i] = c;
        dot[nd] = (uint8_t)i;
        nd += c == '.';
        if (nd > DOMAIN_MAX / 2)
            return -1;
    }
    if (i > DOMAIN_MAX || !ends_at(s, n, i, used) || nd == 0)
        return -1;
    n = i;
    size_t start = 0;
    for (size_t k = 0; k < nd; k++) {
        if (dot[k] == start || dot[k] - start > LABEL_MAX)
            return -1;
        start = (size_t)dot[k] + 1;
    }
    if (start == n || n - start > LABEL_MAX)
        return -1;
    /* The last label may not be all digits (the general path says why). */
    for (i = start; i < n && out[i] >= '0' && out[i] <= '9'; i++)
        ;
    if (i == n)
        return -1;
    out[n] = '\0';
    if (used != NULL)
        *used = n;
    return IOC_DOMAIN;
}

int feed_fast_value(int kind, const char *s, size_t n, char *out, size_t *used)
{
    if (n == 0)
        return -1;
    if (is_digit(s[0])) {
        int got = fast_ipv4(kind, s, n, out, used);
        if (got >= 0)
            return got;
    }
    return fast_domain(kind, s, n, out, used);
}

int ioc_normalize_value(int kind, const char *value, size_t len, char *out, char *err,
                        size_t errlen)
{
    if (kind < IOC_KIND_COUNT) {
        /* Values straight from a reader may still carry blanks around them. */
        const char *v = value;
        size_t n = len;
        while (n > 0 && (v[0] == ' ' || v[0] == '\t'))
            v++, n--;
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r'))
            n--;
        int got = feed_fast_value(kind, v, n, out, NULL);
        if (got >= 0)
            return got;
    }
    char buf[RAW_MAX + 1];
    char show[SHOW_MAX];
    while (len > 0 && (value[0] == ' ' || value[0] == '\t'))
        value++, len--;
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t' || value[len - 1] == '\r'))
        len--;
    khx_printable(show, sizeof(show), value, len);
    out[0] = '\0';
    if (len == 0) {
        khx_errf(err, errlen, "empty value");
        return -1;
    }
    if (len > RAW_MAX) {
        khx_errf(err, errlen, "'%s...' is longer than %d characters", show, RAW_MAX);
        return -1;
    }
    if (kind >= IOC_KIND_COUNT) {
        khx_errf(err, errlen, "unknown indicator kind %d", kind);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c <= 0x20 || c == 0x7f) {
            khx_errf(err, errlen, "'%s' contains a blank or control character", show);
            return -1;
        }
    }
    size_t n = undefang(value, len, buf);
    if (n > IOC_VALUE_MAX) {
        khx_errf(err, errlen, "'%s...' is longer than %d characters", show, IOC_VALUE_MAX);
        return -1;
    }
    buf[n] = '\0';
    int got = classify(kind, buf, n, out, show, err, errlen);
    if (got < 0) {
        out[0] = '\0';
        return -1;
    }
    if (!kind_ok(kind, got)) {
        static const char *const names[IOC_KIND_COUNT] = {
            "an IP address", "a CIDR prefix", "an address:port", "a domain name", "a URL",
            "a JA3 hash",    "a JA4"};
        khx_errf(err, errlen, "'%s' is %s, not %s", show, names[got], names[kind]);
        out[0] = '\0';
        return -1;
    }
    return got;
}
