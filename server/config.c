/*
 * The server's configuration file: one `key = value` per line, `#` starts a
 * comment, blank lines are ignored. Sizes take K/M/G suffixes and durations
 * s/m/h/d. Unknown keys and bad values are errors that name file:line, so a
 * typo is never silently ignored. docs/SERVER.md lists every key.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "khx.h"
#include "server.h"

static int parse_scaled(const char *v, uint64_t *out, const char *suffixes, const uint64_t *mults)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || errno != 0 || *v == '-')
        return -1;
    uint64_t mult = 1;
    if (*end != '\0') {
        const char *s = strchr(suffixes, tolower((unsigned char)*end));
        if (s == NULL || end[1] != '\0')
            return -1;
        mult = mults[s - suffixes];
    }
    if (n > UINT64_MAX / mult)
        return -1;
    *out = n * mult;
    return 0;
}

static int parse_size(const char *v, uint64_t *out)
{
    static const uint64_t m[] = {1024, 1024 * 1024, 1024ULL * 1024 * 1024};
    return parse_scaled(v, out, "kmg", m);
}

int srv_parse_duration(const char *v, unsigned *out)
{
    static const uint64_t m[] = {1, 60, 3600, 86400};
    uint64_t n;
    if (parse_scaled(v, &n, "smhd", m) != 0 || n > 10ULL * 365 * 86400)
        return -1;
    *out = (unsigned)n;
    return 0;
}

static int copy_str(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap)
        return -1;
    memcpy(dst, v, n + 1);
    return 0;
}

static int set_key(struct srv_config *c, const char *k, const char *v)
{
    uint64_t n;
    if (strcmp(k, "database") == 0)
        return copy_str(c->database, sizeof(c->database), v);
    if (strcmp(k, "listen") == 0)
        return copy_str(c->listen, sizeof(c->listen), v);
    if (strcmp(k, "public_url") == 0)
        return copy_str(c->public_url, sizeof(c->public_url), v);
    if (strcmp(k, "tls_cert") == 0)
        return copy_str(c->tls_cert, sizeof(c->tls_cert), v);
    if (strcmp(k, "tls_key") == 0)
        return copy_str(c->tls_key, sizeof(c->tls_key), v);
    if (strcmp(k, "threads") == 0) {
        if (parse_scaled(v, &n, "", NULL) != 0 || n < 1 || n > 1024)
            return -1;
        c->threads = (unsigned)n;
        return 0;
    }
    if (strcmp(k, "max_body") == 0)
        return (parse_size(v, &c->max_body) != 0 || c->max_body < 1024) ? -1 : 0;
    if (strcmp(k, "max_upload") == 0)
        return (parse_size(v, &c->max_upload) != 0 || c->max_upload < 1024) ? -1 : 0;
    if (strcmp(k, "keep_bundles") == 0) {
        if (parse_scaled(v, &n, "", NULL) != 0 || n < 1 || n > 1000)
            return -1;
        c->keep_bundles = (unsigned)n;
        return 0;
    }
    if (strcmp(k, "session_ttl") == 0)
        return srv_parse_duration(v, &c->session_ttl);
    if (strcmp(k, "checkin_interval") == 0)
        return srv_parse_duration(v, &c->checkin_interval);
    if (strcmp(k, "offline_after") == 0)
        return srv_parse_duration(v, &c->offline_after);
    if (strcmp(k, "cert_days") == 0) {
        if (parse_scaled(v, &n, "", NULL) != 0 || n < 1 || n > 3650)
            return -1;
        c->cert_days = (unsigned)n;
        return 0;
    }
    return srv_report_config_set(&c->report, k, v);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int srv_config_load(struct srv_config *c, const char *data_dir, const char *path,
                    const char *listen, char *err, size_t errlen)
{
    int r = -1;
    uint8_t *text = NULL;
    size_t len = 0;
    memset(c, 0, sizeof(*c));
    if (copy_str(c->data_dir, sizeof(c->data_dir), data_dir) != 0) {
        snprintf(err, errlen, "data folder path too long");
        return -1;
    }
    snprintf(c->listen, sizeof(c->listen), "0.0.0.0:8443");
    c->threads = 16;
    c->max_body = 8ULL << 20;
    c->max_upload = 256ULL << 20;
    c->keep_bundles = 5;
    c->session_ttl = 8 * 3600;
    c->checkin_interval = 60;
    c->offline_after = 0; /* 3 x checkin_interval unless set */
    c->cert_days = 825;
    srv_report_config_defaults(&c->report);

    if (path != NULL) {
        if (khx_read_file(path, 1 << 20, &text, &len) != 0) {
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        struct khx_lines it;
        khx_lines_init(&it, text, len);
        const char *line;
        size_t llen;
        while (khx_lines_next(&it, &line, &llen)) {
            char buf[2048];
            if (llen >= sizeof(buf)) {
                snprintf(err, errlen, "%s:%u: line too long", path, it.lineno);
                goto out;
            }
            memcpy(buf, line, llen);
            buf[llen] = '\0';
            char *hash = strchr(buf, '#');
            if (hash != NULL)
                *hash = '\0';
            char *s = trim(buf);
            if (*s == '\0')
                continue;
            char *eq = strchr(s, '=');
            if (eq == NULL) {
                snprintf(err, errlen, "%s:%u: expected 'key = value'", path, it.lineno);
                goto out;
            }
            *eq = '\0';
            char *k = trim(s), *v = trim(eq + 1);
            int sr = set_key(c, k, v);
            if (sr == -2) {
                snprintf(err, errlen, "%s:%u: unknown key '%s'", path, it.lineno, k);
                goto out;
            }
            if (sr != 0) {
                snprintf(err, errlen, "%s:%u: bad value '%s' for '%s'", path, it.lineno, v, k);
                goto out;
            }
        }
    }
    if (listen != NULL && copy_str(c->listen, sizeof(c->listen), listen) != 0) {
        snprintf(err, errlen, "listen address too long");
        goto out;
    }
    if (c->database[0] == '\0')
        snprintf(c->database, sizeof(c->database), "sqlite://%s/khien.db", c->data_dir);
    if (c->tls_cert[0] == '\0')
        snprintf(c->tls_cert, sizeof(c->tls_cert), "%s/server.crt", c->data_dir);
    if (c->tls_key[0] == '\0')
        snprintf(c->tls_key, sizeof(c->tls_key), "%s/server.key", c->data_dir);
    if (c->offline_after == 0)
        c->offline_after = 3 * c->checkin_interval;
    if (c->public_url[0] == '\0') {
        char host[256] = "localhost";
        const char *colon = strrchr(c->listen, ':');
        const char *addr = c->listen;
        size_t alen = colon ? (size_t)(colon - addr) : 0;
        if (alen > 0 && alen < sizeof(host) && strncmp(addr, "0.0.0.0", alen) != 0 &&
            strncmp(addr, "[::]", alen) != 0) {
            memcpy(host, addr, alen);
            host[alen] = '\0';
        } else if (gethostname(host, sizeof(host)) != 0) {
            snprintf(host, sizeof(host), "localhost");
        }
        snprintf(c->public_url, sizeof(c->public_url), "https://%s:%s", host,
                 colon ? colon + 1 : "8443");
    }
    r = 0;
out:
    free(text);
    return r;
}
