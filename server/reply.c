/*
 * Building responses and reading requests, for handlers (server.h). The
 * accessors read from libmicrohttpd's connection when there is one and from
 * the request's query_string / fake_headers when a unit test calls a handler
 * directly. Replies only fill r->resp; http.c turns it into an MHD response.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "khx.h"
#include "server.h"

int64_t srv_now(void)
{
    return (int64_t)time(NULL);
}

void srv_log(const char *fmt, ...)
{
    char when[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    va_list ap;
    va_start(ap, fmt);
    flockfile(stderr);
    fprintf(stderr, "%s khien-server: ", when);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    funlockfile(stderr);
    va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* Accessors.                                                                */
/* ------------------------------------------------------------------------ */

/* Decodes %XX and '+' in place. */
static void url_decode(char *s)
{
    char *w = s;
    for (char *p = s; *p; p++) {
        if (*p == '+') {
            *w++ = ' ';
        } else if (*p == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
            char hex[3] = {p[1], p[2], 0};
            *w++ = (char)strtol(hex, NULL, 16);
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
}

/* Tests only: finds `name` in r->query_string. The result lives in one of
 * eight thread-local buffers used in turn, so a handler may hold several
 * parameters at once, as it can with a real connection. */
static const char *fake_query(const struct srv_req *r, const char *name)
{
    static __thread char values[8][1024];
    static __thread unsigned next;
    char *value = values[next++ % 8];
    const size_t value_size = sizeof(values[0]);
    const char *p = r->query_string;
    size_t nlen = strlen(name);
    while (p != NULL && *p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            size_t vlen = KHX_MIN(len - nlen - 1, value_size - 1);
            memcpy(value, p + nlen + 1, vlen);
            value[vlen] = '\0';
            url_decode(value);
            return value;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

static const char *fake_header(const struct srv_req *r, const char *name)
{
    for (const char *const *h = r->fake_headers; h != NULL && h[0] != NULL; h += 2)
        if (strcasecmp(h[0], name) == 0)
            return h[1];
    return NULL;
}

const char *srv_query(struct srv_req *r, const char *name)
{
    if (r->conn == NULL)
        return fake_query(r, name);
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *srv_header(struct srv_req *r, const char *name)
{
    if (r->conn == NULL)
        return fake_header(r, name);
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *srv_cookie(struct srv_req *r, const char *name)
{
    if (r->conn != NULL)
        return MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, name);
    /* Tests: parse "a=1; b=2" from a fake Cookie header. */
    static __thread char value[256];
    const char *c = fake_header(r, "Cookie");
    size_t nlen = strlen(name);
    while (c != NULL && *c) {
        while (*c == ' ' || *c == ';')
            c++;
        const char *end = strchr(c, ';');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        if (len > nlen && strncmp(c, name, nlen) == 0 && c[nlen] == '=') {
            size_t vlen = KHX_MIN(len - nlen - 1, sizeof(value) - 1);
            memcpy(value, c + nlen + 1, vlen);
            value[vlen] = '\0';
            return value;
        }
        c = end;
    }
    return NULL;
}

json_t *srv_body_json(struct srv_req *r)
{
    json_error_t e;
    if (r->body == NULL || r->body_len == 0) {
        srv_reply_error(r, 400, "bad_request", "the request needs a JSON body");
        return NULL;
    }
    json_t *j = json_loadb((const char *)r->body, r->body_len, JSON_REJECT_DUPLICATES, &e);
    if (j == NULL) {
        srv_reply_error(r, 400, "bad_request", "malformed JSON at line %d, column %d: %s", e.line,
                        e.column, e.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        srv_reply_error(r, 400, "bad_request", "the JSON body must be an object");
        return NULL;
    }
    return j;
}

/* Reads a string field of at most `max` bytes without embedded NULs.
 * Returns 1 when present, 0 when absent (or null), -1 after replying 400. */
int srv_json_str(struct srv_req *r, json_t *o, const char *name, int required, size_t max,
                 const char **out)
{
    json_t *v = json_object_get(o, name);

    if (v == NULL || json_is_null(v)) {
        if (required) {
            srv_reply_field(r, name, "is required");
            return -1;
        }
        return 0;
    }
    if (!json_is_string(v)) {
        srv_reply_field(r, name, "must be a string");
        return -1;
    }
    if (json_string_length(v) > max || strlen(json_string_value(v)) != json_string_length(v)) {
        srv_reply_field(r, name, "is too long or contains a NUL character");
        return -1;
    }
    if (required && json_string_length(v) == 0) {
        srv_reply_field(r, name, "must not be empty");
        return -1;
    }
    *out = json_string_value(v);
    return 1;
}

/* Reads an integer field in [min, max]; null counts as 0 when allowed.
 * Returns 1 when present, 0 when absent, -1 after replying 400. */
int srv_json_int(struct srv_req *r, json_t *o, const char *name, int null_ok, int64_t min,
                 int64_t max, int64_t *out)
{
    json_t *v = json_object_get(o, name);

    if (v == NULL)
        return 0;
    if (json_is_null(v) && null_ok) {
        *out = 0;
        return 1;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        srv_reply_field(r, name, "must be an integer in range");
        return -1;
    }
    *out = json_integer_value(v);
    return 1;
}

void srv_paging(struct srv_req *r, int64_t *limit, int64_t *offset)
{
    int64_t page = 1, per = 50;
    const char *p = srv_query(r, "page");
    const char *n = srv_query(r, "per_page");
    if (p != NULL && *p)
        page = strtoll(p, NULL, 10);
    if (n != NULL && *n)
        per = strtoll(n, NULL, 10);
    if (page < 1)
        page = 1;
    if (page > 1000000)
        page = 1000000;
    if (per < 1)
        per = 1;
    if (per > 500)
        per = 500;
    *limit = per;
    *offset = (page - 1) * per;
}

/* ------------------------------------------------------------------------ */
/* Replies.                                                                  */
/* ------------------------------------------------------------------------ */

static void resp_clear(struct srv_req *r)
{
    free(r->resp.body);
    if (r->resp.has_fd)
        close(r->resp.fd);
    r->resp.has_fd = 0;
    r->resp.body = NULL;
    r->resp.body_len = 0;
    r->resp.static_body = NULL;
    r->resp.fd = -1;
    r->resp.fd_size = 0;
}

void srv_add_header(struct srv_req *r, const char *name, const char *value)
{
    if (r->resp.nheaders >= KHX_ARRAY_LEN(r->resp.headers)) {
        srv_log("response header %s dropped: too many headers", name);
        return;
    }
    struct srv_header *h = &r->resp.headers[r->resp.nheaders];
    h->name = strdup(name);
    h->value = strdup(value);
    if (h->name == NULL || h->value == NULL) {
        free(h->name);
        free(h->value);
        return;
    }
    r->resp.nheaders++;
}

int srv_reply_bytes(struct srv_req *r, unsigned status, const char *content_type, char *body,
                    size_t len)
{
    resp_clear(r);
    r->resp.status = status;
    r->resp.content_type = content_type;
    r->resp.body = body;
    r->resp.body_len = len;
    return 0;
}

int srv_reply_static(struct srv_req *r, unsigned status, const char *content_type, const void *body,
                     size_t len)
{
    resp_clear(r);
    r->resp.status = status;
    r->resp.content_type = content_type;
    r->resp.static_body = body;
    r->resp.body_len = len;
    return 0;
}

int srv_reply_status(struct srv_req *r, unsigned status)
{
    resp_clear(r);
    r->resp.status = status;
    r->resp.content_type = NULL;
    return 0;
}

int srv_reply_fd(struct srv_req *r, unsigned status, const char *content_type, int fd,
                 uint64_t size)
{
    resp_clear(r);
    r->resp.status = status;
    r->resp.content_type = content_type;
    r->resp.has_fd = 1;
    r->resp.fd = fd;
    r->resp.fd_size = size;
    return 0;
}

int srv_reply_json(struct srv_req *r, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(body);
    if (text == NULL) {
        static const char oom[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";
        return srv_reply_static(r, 500, "application/json", oom, sizeof(oom) - 1);
    }
    return srv_reply_bytes(r, status, "application/json", text, strlen(text));
}

/* Messages may quote what a client sent (a path, a header), which need not be
 * UTF-8, and vsnprintf may have cut one mid-character: JSON needs valid
 * UTF-8, so every invalid byte becomes '?'. */
static void utf8_sanitize(char *msg)
{
    unsigned char *p = (unsigned char *)msg;
    while (*p) {
        size_t n = khx_utf8_len(p, 4, NULL);
        if (n == 0) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

int srv_reply_error(struct srv_req *r, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    utf8_sanitize(msg);
    return srv_reply_json(r, status, json_pack("{s:s, s:s}", "error", code, "message", msg));
}

int srv_reply_field(struct srv_req *r, const char *field, const char *problem)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "field '%s': %s", field, problem);
    return srv_reply_json(
        r, 400, json_pack("{s:s, s:s, s:s}", "error", "field", "field", field, "message", msg));
}

int srv_reply_store_error(struct srv_req *r, int err)
{
    srv_log("%s %s: store error: %s (%s)", r->method, r->path, store_strerror(err),
            r->db ? store_errmsg(r->db) : "no connection");
    if (err == STORE_ECONFLICT)
        return srv_reply_error(r, 409, "conflict", "the change conflicts with existing data");
    if (err == STORE_EBUSY) {
        srv_reply_error(r, 503, "busy", "the database is busy; retry shortly");
        srv_add_header(r, "Retry-After", "1");
        return 0;
    }
    return srv_reply_error(r, 500, "internal", "database error");
}
