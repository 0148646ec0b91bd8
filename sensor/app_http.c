/*
 * HTTP/1.x request-head parser for the sensor (decode.h: sen_http_request).
 * From the request line and headers of one request it takes what an
 * indicator can name: the host (the Host header, or the authority of an
 * absolute-form or CONNECT target, which RFC 9112 says wins), and the URL
 * as "host/path?query". Ports are stripped and hosts lowercased so that
 * they compare with the indicator store's normalised domains.
 *
 * Only the head is read (up to the blank line, at most HTTP_MAX_HEAD
 * bytes); the body is the caller's business. A request line that does not
 * start with a known method is rejected at once, so non-HTTP payloads cost
 * a few byte comparisons.
 */
#include "decode.h"

#include <string.h>

#define HTTP_MAX_HEAD 16384

static const struct {
    const char *name;
    size_t len;
} http_methods[] = {
    {"GET", 3},     {"POST", 4},    {"HEAD", 4},  {"PUT", 3},   {"DELETE", 6},
    {"OPTIONS", 7}, {"CONNECT", 7}, {"PATCH", 5}, {"TRACE", 5},
};

/* Returns the method length when data starts with "METHOD ", 0 when it
 * cannot be a request, and -1 when the bytes so far are a prefix of one. */
static int http_method(const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < sizeof(http_methods) / sizeof(http_methods[0]); i++) {
        size_t m = http_methods[i].len;
        size_t n = len < m + 1 ? len : m + 1;
        if (memcmp(data, http_methods[i].name, n < m ? n : m) != 0)
            continue;
        if (len < m + 1)
            return -1;
        if (data[m] == ' ')
            return (int)m;
    }
    return 0;
}

/* Copies an authority ("host", "host:port", "[v6]:port", "user@host") into
 * host[256] without userinfo or port, lowercased. Returns 0, or -1 when it
 * is empty, too long or holds bytes a host name cannot. */
static int http_set_host(const char *a, size_t n, char host[256])
{
    const char *at = memchr(a, '@', n);
    size_t k = 0;

    if (at != NULL) {
        n -= (size_t)(at + 1 - a);
        a = at + 1;
    }
    if (n > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (close == NULL)
            return -1;
        a++;
        n = (size_t)(close - a);
    } else {
        const char *colon = memchr(a, ':', n);
        if (colon != NULL)
            n = (size_t)(colon - a);
    }
    while (n > 0 && a[n - 1] == '.')
        n--;
    if (n == 0 || n > 255)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c <= ' ' || c == '/' || c == '\\' || c == 0x7F)
            return -1;
        host[k++] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
    host[k] = '\0';
    return 0;
}

static int ieq_prefix(const char *s, size_t n, const char *lower)
{
    size_t m = strlen(lower);
    if (n < m)
        return 0;
    for (size_t i = 0; i < m; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c != lower[i])
            return 0;
    }
    return 1;
}

int sen_http_request(const uint8_t *data, size_t len, char host[256], char url[1025],
                     char request_line[512])
{
    const char *p = (const char *)data, *end, *eol, *sp1, *sp2, *target, *path = NULL;
    size_t head, tlen, plen = 0, rl, hlen;
    int m;

    host[0] = url[0] = request_line[0] = '\0';
    if (data == NULL || len == 0)
        return 0;
    m = http_method(data, len);
    if (m == 0)
        return -1;
    if (m < 0)
        return 0;
    /* The head ends at the first blank line; a bare LF is tolerated. */
    end = NULL;
    for (size_t i = 0; i + 1 < len && i < HTTP_MAX_HEAD; i++) {
        if (p[i] != '\n')
            continue;
        if (p[i + 1] == '\n') {
            end = p + i + 1;
            break;
        }
        if (p[i + 1] == '\r' && i + 2 < len && p[i + 2] == '\n') {
            end = p + i + 2;
            break;
        }
    }
    if (end == NULL)
        return len >= HTTP_MAX_HEAD ? -1 : 0;
    head = (size_t)(end - p);
    eol = memchr(p, '\n', head);
    rl = (size_t)(eol - p);
    if (rl > 0 && p[rl - 1] == '\r')
        rl--;
    sp1 = p + m;
    target = sp1 + 1;
    sp2 = memchr(target, ' ', (size_t)(p + rl - target));
    if (sp2 == NULL || sp2 == target)
        return -1;
    tlen = (size_t)(sp2 - target);
    if ((size_t)(p + rl - (sp2 + 1)) < 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return -1;
    for (size_t i = 0; i < rl; i++)
        if ((unsigned char)p[i] < 0x20 && p[i] != '\t')
            return -1;
    hlen = rl < 511 ? rl : 511;
    memcpy(request_line, p, hlen);
    request_line[hlen] = '\0';

    if (tlen > 7 && (ieq_prefix(target, tlen, "http://") || ieq_prefix(target, tlen, "https://"))) {
        /* Absolute form: the authority in the target names the host. */
        const char *auth = (const char *)memchr(target, '/', tlen) + 2;
        const char *slash = memchr(auth, '/', (size_t)(target + tlen - auth));
        size_t alen = slash ? (size_t)(slash - auth) : (size_t)(target + tlen - auth);
        if (http_set_host(auth, alen, host) != 0)
            return -1;
        path = slash;
        plen = slash ? (size_t)(target + tlen - slash) : 0;
    } else if (m == 7 && memcmp(p, "CONNECT", 7) == 0) {
        if (http_set_host(target, tlen, host) != 0)
            return -1;
    } else {
        path = target;
        plen = tlen;
        /* Headers: the first Host wins. */
        for (const char *h = eol + 1; h < end;) {
            const char *hl = memchr(h, '\n', (size_t)(end - h));
            size_t n = hl ? (size_t)(hl - h) : (size_t)(end - h);
            if (n > 0 && h[n - 1] == '\r')
                n--;
            if (ieq_prefix(h, n, "host:")) {
                const char *v = h + 5;
                size_t vn = n - 5;
                while (vn > 0 && (*v == ' ' || *v == '\t')) {
                    v++;
                    vn--;
                }
                while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
                    vn--;
                if (http_set_host(v, vn, host) != 0)
                    return -1;
                break;
            }
            if (hl == NULL)
                break;
            h = hl + 1;
        }
    }
    if (path != NULL && plen == 1 && path[0] == '*')
        plen = 0; /* OPTIONS * names the server, not a resource */
    if (path != NULL && plen > 0 && path[0] != '/')
        return -1;
    {
        size_t hn = strlen(host), cap = 1024;
        memcpy(url, host, hn);
        if (plen > cap - hn)
            plen = cap - hn;
        if (plen > 0)
            memcpy(url + hn, path, plen);
        url[hn + plen] = '\0';
    }
    return 1;
}
