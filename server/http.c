/*
 * HTTPS front end: turns libmicrohttpd's callbacks into complete struct
 * srv_req values for the router and sends back what the handler left in
 * r->resp.
 *
 * Every request body is collected up to a cap chosen by its route (max_body,
 * or max_upload for upload routes) and refused with 413 beyond it, before or
 * during the upload; a gzip body is inflated with the same cap, so a small
 * compressed bomb is refused too. Client certificates are requested during
 * the TLS handshake (MHD_OPTION_HTTPS_MEM_TRUST) and verified here with
 * OpenSSL against our CA (pki.c); a connection without one still works for
 * public and user routes, and agent routes refuse it in the router.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <zlib.h>

#include "khx.h"
#include "pki.h"

struct srv_http {
    struct srv *srv;
    struct MHD_Daemon *daemon;
    char *cert_pem, *key_pem;
    unsigned port;
};

/* Per-request state kept by MHD between callbacks (*con_cls). */
struct req_ctx {
    struct srv_req req;
    struct khx_buf body;
    uint64_t cap;
    int too_large;
    int started;
    char *path_copy;
};

static size_t read_small_file(const char *path, char **out, char *err, size_t errlen)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (khx_read_file(path, 1 << 20, &data, &len) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return 0;
    }
    char *s = realloc(data, len + 1);
    if (s == NULL) {
        free(data);
        snprintf(err, errlen, "out of memory");
        return 0;
    }
    s[len] = '\0';
    *out = s;
    return len;
}

/* Fills r->client_* from the TLS session's peer certificate, if any. */
static void read_client_cert(struct srv_http *h, struct MHD_Connection *conn, struct srv_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (ci == NULL || ci->tls_session == NULL)
        return;
    unsigned n = 0;
    const gnutls_datum_t *certs =
        gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session, &n);
    if (certs == NULL || n == 0)
        return;
    if (srv_pki_verify_client(h->srv->pki, certs[0].data, certs[0].size, r->client_cn,
                              sizeof(r->client_cn), r->client_cert_sha256) == 0)
        r->client_cert_ok = 1;
}

static void read_remote(struct MHD_Connection *conn, struct srv_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(r->remote, sizeof(r->remote), "unknown");
    if (ci == NULL || ci->client_addr == NULL)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, r->remote,
                  sizeof(r->remote));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, r->remote,
                  sizeof(r->remote));
}

/* Inflates a gzip body in place of the raw one, refusing output over cap.
 * Returns 0, 413 or 400. */
static int gunzip_body(struct khx_buf *body, uint64_t cap)
{
    struct khx_buf out;
    khx_buf_init(&out, cap + 1);
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return 400;
    z.next_in = body->data;
    z.avail_in = (uInt)body->len;
    int status = 400, zr = Z_OK;
    uint8_t chunk[16384];
    while (zr != Z_STREAM_END) {
        z.next_out = chunk;
        z.avail_out = sizeof(chunk);
        zr = inflate(&z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END)
            goto out;
        size_t got = sizeof(chunk) - z.avail_out;
        if (out.len + got > cap) {
            status = 413;
            goto out;
        }
        if (khx_buf_append(&out, chunk, got) != 0) {
            status = 413;
            goto out;
        }
        if (zr == Z_OK && got == 0 && z.avail_in == 0)
            goto out; /* truncated stream */
    }
    khx_buf_free(body);
    *body = out;
    memset(&out, 0, sizeof(out));
    status = 0;
out:
    inflateEnd(&z);
    khx_buf_free(&out);
    return status;
}

static enum MHD_Result send_resp(struct MHD_Connection *conn, struct srv_req *r)
{
    struct srv_resp *p = &r->resp;
    struct MHD_Response *mr;
    if (p->status == 0) {
        static const char e[] = "{\"error\":\"internal\",\"message\":\"no response\"}";
        p->status = 500;
        p->static_body = e;
        p->body_len = sizeof(e) - 1;
        p->content_type = "application/json";
    }
    if (p->has_fd) {
        mr = MHD_create_response_from_fd64(p->fd_size, p->fd);
        p->has_fd = 0; /* MHD closes it */
    } else if (p->body != NULL) {
        mr = MHD_create_response_from_buffer(p->body_len, p->body, MHD_RESPMEM_MUST_FREE);
        if (mr != NULL)
            p->body = NULL;
    } else {
        mr = MHD_create_response_from_buffer(p->body_len, (void *)p->static_body,
                                             MHD_RESPMEM_PERSISTENT);
    }
    if (mr == NULL)
        return MHD_NO;
    if (p->content_type != NULL)
        MHD_add_response_header(mr, "Content-Type", p->content_type);
    if (strncmp(r->path, "/api/", 5) == 0)
        MHD_add_response_header(mr, "Cache-Control", "no-store");
    MHD_add_response_header(mr, "Strict-Transport-Security", "max-age=31536000");
    MHD_add_response_header(mr, "X-Content-Type-Options", "nosniff");
    for (unsigned i = 0; i < p->nheaders; i++)
        MHD_add_response_header(mr, p->headers[i].name, p->headers[i].value);
    enum MHD_Result ret = MHD_queue_response(conn, p->status, mr);
    MHD_destroy_response(mr);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct srv_http *h = cls;
    struct req_ctx *c = *con_cls;
    (void)version;

    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c == NULL)
            return MHD_NO;
        c->path_copy = strdup(url);
        if (c->path_copy == NULL) {
            free(c);
            return MHD_NO;
        }
        c->req.srv = h->srv;
        c->req.method = method;
        c->req.path = c->path_copy;
        c->req.conn = conn;
        c->req.resp.fd = -1;
        const struct srv_route *route = srv_route_lookup(method, url);
        c->cap = (route != NULL && (route->flags & SRV_UPLOAD)) ? h->srv->cfg.max_upload
                                                                : h->srv->cfg.max_body;
        khx_buf_init(&c->body, c->cap + 1);
        *con_cls = c;
        read_remote(conn, &c->req);
        read_client_cert(h, conn, &c->req);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > c->cap) {
            /* Refused before reading a byte of it. */
            srv_reply_error(&c->req, 413, "too_large",
                            "the request body is larger than the limit of %llu bytes",
                            (unsigned long long)c->cap);
            return send_resp(conn, &c->req);
        }
        return MHD_YES;
    }

    if (*upload_data_size != 0) {
        if (!c->too_large && khx_buf_append(&c->body, upload_data, *upload_data_size) != 0)
            c->too_large = 1;
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (c->started)
        return MHD_YES;
    c->started = 1;
    struct srv_req *r = &c->req;
    if (c->too_large || c->body.len > c->cap) {
        srv_reply_error(r, 413, "too_large",
                        "the request body is larger than the limit of %llu bytes",
                        (unsigned long long)c->cap);
        return send_resp(conn, r);
    }
    const char *enc = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Encoding");
    if (enc != NULL && *enc && strcasecmp(enc, "identity") != 0) {
        if (strcasecmp(enc, "gzip") != 0) {
            srv_reply_error(r, 415, "encoding", "Content-Encoding '%s' is not supported; use gzip",
                            enc);
            return send_resp(conn, r);
        }
        int st = gunzip_body(&c->body, c->cap);
        if (st == 413) {
            srv_reply_error(r, 413, "too_large",
                            "the decompressed body is larger than the limit of %llu bytes",
                            (unsigned long long)c->cap);
            return send_resp(conn, r);
        }
        if (st != 0) {
            srv_reply_error(r, 400, "bad_request", "the gzip body is corrupt or truncated");
            return send_resp(conn, r);
        }
    }
    /* NUL-terminate so handlers may treat the body as a string. */
    if (khx_buf_append_u8(&c->body, 0) != 0) {
        srv_reply_error(r, 413, "too_large", "the request body is too large");
        return send_resp(conn, r);
    }
    r->body = c->body.data;
    r->body_len = c->body.len - 1;
    srv_dispatch(r);
    return send_resp(conn, r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct req_ctx *c = *con_cls;
    if (c == NULL)
        return;
    free(c->req.resp.body);
    if (c->req.resp.has_fd)
        close(c->req.resp.fd);
    for (unsigned i = 0; i < c->req.resp.nheaders; i++) {
        free(c->req.resp.headers[i].name);
        free(c->req.resp.headers[i].value);
    }
    khx_buf_free(&c->body);
    free(c->path_copy);
    free(c);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    srv_log("http: %s", msg);
}

static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *sslen)
{
    char host[128];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof(host))
        return -1;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        return -1;
    memset(ss, 0, sizeof(*ss));
    char *h = host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)ss;
    if (*h == '\0' || inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        if (*h == '\0')
            a4->sin_addr.s_addr = htonl(INADDR_ANY);
        *sslen = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *sslen = sizeof(*a6);
        return 0;
    }
    return -1;
}

int srv_http_start(struct srv *s, struct srv_http **out, char *err, size_t errlen)
{
    int r = -1;
    struct srv_http *h = calloc(1, sizeof(*h));
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    h->srv = s;
    if (read_small_file(s->cfg.tls_cert, &h->cert_pem, err, errlen) == 0 ||
        read_small_file(s->cfg.tls_key, &h->key_pem, err, errlen) == 0)
        goto out;
    if (parse_listen(s->cfg.listen, &ss, &sslen) != 0) {
        snprintf(err, errlen, "listen address '%s' is not ADDR:PORT", s->cfg.listen);
        goto out;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS |
                     MHD_USE_ERROR_LOG | MHD_USE_POLL;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_HTTPS_MEM_CERT, h->cert_pem,
        MHD_OPTION_HTTPS_MEM_KEY, h->key_pem, MHD_OPTION_HTTPS_MEM_TRUST, srv_pki_ca_pem(s->pki),
        MHD_OPTION_HTTPS_PRIORITIES, "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2",
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)4000, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)0, MHD_OPTION_END);
    if (h->daemon == NULL) {
        snprintf(err, errlen, "cannot listen on %s (in use, or the certificate/key is invalid)",
                 s->cfg.listen);
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : 0;
    *out = h;
    h = NULL;
    r = 0;
out:
    srv_http_stop(h);
    return r;
}

unsigned srv_http_port(const struct srv_http *h)
{
    return h->port;
}

void srv_http_stop(struct srv_http *h)
{
    if (h == NULL)
        return;
    if (h->daemon != NULL)
        MHD_stop_daemon(h->daemon);
    free(h->cert_pem);
    if (h->key_pem != NULL) {
        explicit_bzero(h->key_pem, strlen(h->key_pem));
        free(h->key_pem);
    }
    free(h);
}
