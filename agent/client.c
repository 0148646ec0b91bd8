/*
 * The agent's HTTPS client (see client.h): one libcurl easy handle per
 * struct client, reused from call to call so that the TLS session and the
 * connection stay open between the check-ins of a busy agent, and the
 * enrollment exchange (a P-256 key and certificate request made with
 * OpenSSL's EVP and X509 interfaces, the answer checked before anything of
 * an earlier enrollment is replaced).
 *
 * Everything that comes back from the network is bounded: answers are
 * capped at 16 MiB in memory, downloads at the caller's maximum on disk,
 * header values and the fields of the enrollment answer at fixed sizes. The
 * server is only ever spoken to over TLS 1.2 or newer with the peer and host
 * name verified; no redirect is followed.
 */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <zlib.h>

#include "khx.h"

#ifndef KHIEN_VERSION
#define KHIEN_VERSION "0"
#endif

/* The most an answer held in memory may be, and the most a request body may
 * be before compression (the server's own cap is 8 MiB by default). */
#define CLIENT_MAX_RESPONSE (16u * 1024u * 1024u)
#define CLIENT_MAX_REQUEST  (16u * 1024u * 1024u)
#define CLIENT_MAX_BASE     1024
#define CLIENT_MAX_URL      4096
#define CONNECT_TIMEOUT_S   10L
#define DEFAULT_TIMEOUT_S   30u
/* A download may take longer than a call, but a peer that sends less than
 * LOW_SPEED_BYTES per second for LOW_SPEED_TIME_S is given up on. */
#define DOWNLOAD_TIMEOUT_FACTOR 10u
#define LOW_SPEED_BYTES         256L
#define LOW_SPEED_TIME_S        30L
/* Retry-After is capped: a server asking for more than a day is wrong. */
#define RETRY_AFTER_MAX 86400u
/* Fields of the enrollment answer. */
#define PEM_MAX         (64 * 1024)
#define ENROLL_TIMEOUT  30u
#define CN_MAX          64
#define PEM_CERT_PREFIX "-----BEGIN CERTIFICATE-----"

struct client {
    CURL *curl;
    char base[CLIENT_MAX_BASE]; /* "https://host:port/api/v1" */
    unsigned timeout_s;
    char errbuf[CURL_ERROR_SIZE];
};

/* Where a transfer's body goes: a bounded memory buffer (calls) or a file
 * descriptor (downloads). */
struct sink {
    struct khx_buf buf;
    int fd;
    uint64_t written;
    uint64_t max;
    int over;     /* the body exceeded max */
    int io_error; /* writing the file (or growing the buffer) failed */
    int io_errno;
    unsigned retry_after;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_init_rc = -1;

/* curl_global_init is not thread-safe in every libcurl version still in
 * use; doing it once here keeps client_new callable from any thread. */
static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

unsigned client_parse_retry_after(const char *value, size_t len, time_t now)
{
    char tmp[128];
    size_t i = 0;

    while (len > 0 && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t' || value[len - 1] == '\r' ||
                       value[len - 1] == '\n'))
        len--;
    if (len == 0 || len >= sizeof(tmp))
        return 0;
    if (value[0] >= '0' && value[0] <= '9') {
        uint64_t v = 0;
        /* delta-seconds: digits only; anything longer than a day is capped. */
        for (i = 0; i < len; i++) {
            if (value[i] < '0' || value[i] > '9')
                return 0;
            if (v <= RETRY_AFTER_MAX)
                v = v * 10 + (uint64_t)(value[i] - '0');
        }
        return v > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (unsigned)v;
    }
    /* An HTTP date: curl_getdate wants a NUL-terminated string. */
    memcpy(tmp, value, len);
    tmp[len] = '\0';
    time_t at = curl_getdate(tmp, NULL);
    if (at == (time_t)-1 || at <= now)
        return 0;
    if ((uint64_t)(at - now) > RETRY_AFTER_MAX)
        return RETRY_AFTER_MAX;
    return (unsigned)(at - now);
}

static size_t on_header(char *data, size_t size, size_t nitems, void *ud)
{
    struct sink *s = ud;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";

    /* A new status line (after a 100 Continue, say) starts a new answer. */
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0)
        s->retry_after = 0;
    else if (n > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0)
        s->retry_after =
            client_parse_retry_after(data + sizeof(name) - 1, n - (sizeof(name) - 1), time(NULL));
    return n;
}

static size_t on_body_mem(char *data, size_t size, size_t nmemb, void *ud)
{
    struct sink *s = ud;
    size_t n = size * nmemb;
    if (s->buf.len + n > s->max) {
        s->over = 1;
        return 0;
    }
    if (khx_buf_append(&s->buf, data, n) != KH_OK) {
        s->io_error = 1;
        return 0;
    }
    return n;
}

static size_t on_body_file(char *data, size_t size, size_t nmemb, void *ud)
{
    struct sink *s = ud;
    size_t n = size * nmemb, left = n;
    const char *p = data;

    if (s->written + n > s->max) {
        s->over = 1;
        return 0;
    }
    while (left > 0) {
        ssize_t k = write(s->fd, p, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            s->io_error = 1;
            s->io_errno = k < 0 ? errno : ENOSPC;
            return 0;
        }
        p += k;
        left -= (size_t)k;
    }
    s->written += n;
    return n;
}

int client_new(const struct client_opts *opts, struct client **out, char *err, size_t errlen)
{
    struct client *c = NULL;
    int r = KH_EINVAL;
    char ua[64];

    if (opts == NULL || opts->server == NULL || out == NULL) {
        khx_errf(err, errlen, "no server given");
        return KH_EINVAL;
    }
    /* The agent talks to its server over TLS only: a plain http:// address
     * would send the machine's inventory and events in the clear. */
    if (strncasecmp(opts->server, "https://", 8) != 0 || opts->server[8] == '\0') {
        khx_errf(err, errlen, "server address '%s' is not an https:// URL", opts->server);
        return KH_EINVAL;
    }
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != 0) {
        khx_errf(err, errlen, "libcurl could not be initialised");
        return KH_ENOMEM;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    size_t n = strlen(opts->server);
    while (n > 8 && opts->server[n - 1] == '/')
        n--;
    if (n + sizeof("/api/v1") > sizeof(c->base)) {
        khx_errf(err, errlen, "server address is longer than %zu bytes", sizeof(c->base) - 8);
        goto out;
    }
    memcpy(c->base, opts->server, n);
    memcpy(c->base + n, "/api/v1", sizeof("/api/v1"));
    c->timeout_s = opts->timeout_s != 0 ? opts->timeout_s : DEFAULT_TIMEOUT_S;
    if ((c->curl = curl_easy_init()) == NULL) {
        khx_errf(err, errlen, "libcurl could not create a handle");
        r = KH_ENOMEM;
        goto out;
    }
    snprintf(ua, sizeof(ua), "khien-agent/%s", KHIEN_VERSION);

    CURL *h = c->curl;
    CURLcode cc = CURLE_OK;
    /* Each setopt below can only fail for an unknown option or out of
     * memory; the first failure is kept. */
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(h, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_ERRORBUFFER, c->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_USERAGENT, ua);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "https");
#else
    SET(CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTPS);
#endif
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    SET(CURLOPT_TIMEOUT, (long)c->timeout_s);
    SET(CURLOPT_LOW_SPEED_LIMIT, LOW_SPEED_BYTES);
    SET(CURLOPT_LOW_SPEED_TIME, LOW_SPEED_TIME_S);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    if (opts->ca_file != NULL)
        SET(CURLOPT_CAINFO, opts->ca_file);
    if (opts->cert_file != NULL) {
        SET(CURLOPT_SSLCERT, opts->cert_file);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (opts->key_file != NULL) {
        SET(CURLOPT_SSLKEY, opts->key_file);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
    }
#undef SET
    if (cc != CURLE_OK) {
        khx_errf(err, errlen, "libcurl refused an option: %s", curl_easy_strerror(cc));
        r = cc == CURLE_OUT_OF_MEMORY ? KH_ENOMEM : KH_EINVAL;
        goto out;
    }
    *out = c;
    c = NULL;
    r = KH_OK;
out:
    client_free(c);
    return r;
}

void client_free(struct client *c)
{
    if (c == NULL)
        return;
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    free(c);
}

void client_resp_free(struct client_resp *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    resp->body = NULL;
    resp->len = 0;
}

/* Compresses `in` as one gzip member (zlib's deflate with a gzip wrapper).
 * *out is malloc'd; the caller frees it. */
static int gzip_body(const char *in, size_t len, uint8_t **out, size_t *outlen)
{
    z_stream zs;
    uint8_t *buf = NULL;
    int r = KH_ENOMEM;

    memset(&zs, 0, sizeof(zs));
    /* 15 window bits + 16 asks deflate for a gzip header and trailer. */
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return KH_ENOMEM;
    uLong bound = deflateBound(&zs, (uLong)len);
    if ((buf = malloc(bound)) == NULL)
        goto out;
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len; /* len <= CLIENT_MAX_REQUEST, checked by the caller */
    zs.next_out = buf;
    zs.avail_out = (uInt)bound;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
        r = KH_EIO;
        goto out;
    }
    *outlen = zs.total_out;
    *out = buf;
    buf = NULL;
    r = KH_OK;
out:
    deflateEnd(&zs);
    free(buf);
    return r;
}

static int make_url(const struct client *c, const char *path, char *url, size_t cap)
{
    if (path == NULL || path[0] != '/')
        return KH_EINVAL;
    int n = snprintf(url, cap, "%s%s", c->base, path);
    return n < 0 || (size_t)n >= cap ? KH_EINVAL : KH_OK;
}

/* The message for a failed transfer: libcurl's detailed one when it wrote
 * one, its generic one otherwise. */
static void transport_error(const struct client *c, CURLcode cc, char *dst, size_t cap)
{
    if (c->errbuf[0] != '\0')
        khx_errf(dst, cap, "%s", c->errbuf);
    else
        khx_errf(dst, cap, "%s", curl_easy_strerror(cc));
}

int client_call(struct client *c, const char *method, const char *path, const char *body,
                size_t len, int gzip, struct client_resp *resp)
{
    struct sink s;
    struct curl_slist *hdrs = NULL, *h2 = NULL;
    uint8_t *zbody = NULL;
    size_t zlen = 0;
    char url[CLIENT_MAX_URL];
    int r = KH_EINVAL;
    int post;

    if (resp == NULL)
        return KH_EINVAL;
    memset(resp, 0, sizeof(*resp));
    memset(&s, 0, sizeof(s));
    khx_buf_init(&s.buf, (size_t)CLIENT_MAX_RESPONSE + 1);
    s.max = CLIENT_MAX_RESPONSE;
    s.fd = -1;
    if (c == NULL || method == NULL || (body == NULL && len > 0)) {
        khx_errf(resp->error, sizeof(resp->error), "invalid argument");
        goto out;
    }
    if (strcmp(method, "GET") == 0)
        post = 0;
    else if (strcmp(method, "POST") == 0)
        post = 1;
    else {
        khx_errf(resp->error, sizeof(resp->error), "method '%s' is not supported", method);
        goto out;
    }
    if (make_url(c, path, url, sizeof(url)) != KH_OK) {
        khx_errf(resp->error, sizeof(resp->error), "path is not absolute or too long");
        goto out;
    }
    if (len > CLIENT_MAX_REQUEST) {
        khx_errf(resp->error, sizeof(resp->error), "request body of %zu bytes is over %u", len,
                 CLIENT_MAX_REQUEST);
        r = KH_ELIMIT;
        goto out;
    }
    const char *send = body != NULL ? body : "";
    size_t send_len = len;
    if (body != NULL && gzip) {
        if ((r = gzip_body(body, len, &zbody, &zlen)) != KH_OK) {
            khx_errf(resp->error, sizeof(resp->error), "compressing the request failed");
            goto out;
        }
        send = (const char *)zbody;
        send_len = zlen;
    }
    r = KH_ENOMEM;
    /* "Expect:" turns off libcurl's 100-continue wait for larger bodies:
     * the server answers at once anyway. */
    if ((hdrs = curl_slist_append(NULL, "Expect:")) == NULL)
        goto out;
    if (body != NULL) {
        if ((h2 = curl_slist_append(hdrs, "Content-Type: application/json")) == NULL)
            goto out;
        hdrs = h2;
        if (gzip) {
            if ((h2 = curl_slist_append(hdrs, "Content-Encoding: gzip")) == NULL)
                goto out;
            hdrs = h2;
        }
    }

    CURL *h = c->curl;
    c->errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (post) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, send);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)send_len);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)c->timeout_s);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CLIENT_MAX_RESPONSE);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body_mem);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &s);
    CURLcode cc = curl_easy_perform(h);
    /* The handle keeps pointers to our header list and body: drop them
     * before they are freed, so the next call cannot reuse them. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, NULL);
    if (s.over || cc == CURLE_FILESIZE_EXCEEDED) {
        khx_errf(resp->error, sizeof(resp->error), "the answer is over %u bytes",
                 CLIENT_MAX_RESPONSE);
        r = KH_ELIMIT;
        goto out;
    }
    if (s.io_error) {
        khx_errf(resp->error, sizeof(resp->error), "out of memory for the answer");
        r = KH_ENOMEM;
        goto out;
    }
    if (cc != CURLE_OK) {
        transport_error(c, cc, resp->error, sizeof(resp->error));
        r = KH_EIO;
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    resp->retry_after = s.retry_after;
    if (s.buf.len > 0) {
        if ((r = khx_buf_append_u8(&s.buf, 0)) != KH_OK)
            goto out;
        size_t blen = 0;
        resp->body = (char *)khx_buf_steal(&s.buf, &blen);
        resp->len = blen - 1;
    }
    r = KH_OK;
out:
    if (r != KH_OK)
        resp->status = 0;
    curl_slist_free_all(hdrs);
    free(zbody);
    khx_buf_free(&s.buf);
    return r;
}

/* fsyncs the folder holding `path`, so that a rename into it is on disk. */
static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else if ((size_t)(slash - path) < sizeof(dir))
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    else
        return KH_EINVAL;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return KH_EIO;
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? KH_OK : KH_EIO;
}

int client_download(struct client *c, const char *path, const char *dest, uint64_t max_bytes,
                    long *status, char *err, size_t errlen)
{
    struct sink s;
    char url[CLIENT_MAX_URL], tmp[PATH_MAX];
    int r = KH_EINVAL;
    int keep = 0;

    memset(&s, 0, sizeof(s));
    s.fd = -1;
    if (status != NULL)
        *status = 0;
    if (c == NULL || dest == NULL || status == NULL) {
        khx_errf(err, errlen, "invalid argument");
        return KH_EINVAL;
    }
    if (make_url(c, path, url, sizeof(url)) != KH_OK) {
        khx_errf(err, errlen, "path is not absolute or too long");
        return KH_EINVAL;
    }
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", dest);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        khx_errf(err, errlen, "destination path is too long");
        return KH_EINVAL;
    }
    /* O_NOFOLLOW: a symlink planted at the temporary name is not followed. */
    s.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s.fd < 0) {
        khx_errf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return KH_EIO;
    }
    /* The file may have existed with another mode. */
    if (fchmod(s.fd, 0600) != 0) {
        khx_errf(err, errlen, "cannot set the mode of %s: %s", tmp, strerror(errno));
        r = KH_EIO;
        goto out;
    }
    s.max = max_bytes;

    CURL *h = c->curl;
    c->errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)c->timeout_s * (long)DOWNLOAD_TIMEOUT_FACTOR);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE,
                     (curl_off_t)(max_bytes > (uint64_t)INT64_MAX ? 0 : max_bytes));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body_file);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &s);
    CURLcode cc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)c->timeout_s);
    if (s.over || cc == CURLE_FILESIZE_EXCEEDED) {
        khx_errf(err, errlen, "%s is over %" PRIu64 " bytes", path, max_bytes);
        r = KH_ELIMIT;
        goto out;
    }
    if (s.io_error) {
        khx_errf(err, errlen, "cannot write %s: %s", tmp, strerror(s.io_errno));
        r = KH_EIO;
        goto out;
    }
    if (cc != CURLE_OK) {
        transport_error(c, cc, err, errlen);
        r = KH_EIO;
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    if (*status != 200) {
        /* An error answer's body is not the file: it is dropped. */
        khx_errf(err, errlen, "the server answered %ld for %s", *status, path);
        r = KH_OK;
        goto out;
    }
    if (fsync(s.fd) != 0 || close(s.fd) != 0) {
        s.fd = -1;
        khx_errf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        r = KH_EIO;
        goto out;
    }
    s.fd = -1;
    if (rename(tmp, dest) != 0) {
        khx_errf(err, errlen, "cannot rename %s to %s: %s", tmp, dest, strerror(errno));
        r = KH_EIO;
        goto out;
    }
    keep = 1;
    if ((r = fsync_parent(dest)) != KH_OK) {
        khx_errf(err, errlen, "cannot sync the folder of %s", dest);
        goto out;
    }
    r = KH_OK;
out:
    if (s.fd >= 0)
        close(s.fd);
    if (!keep)
        unlink(tmp);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Enrollment                                                               */
/* ------------------------------------------------------------------------ */

/* Copies the string field `key` of `obj` into dst[cap]. A missing or null
 * field is "" when not required; a field of another type, with an embedded
 * NUL or too long for dst, is refused. */
static int answer_str(json_t *obj, const char *key, int required, char *dst, size_t cap, char *err,
                      size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    dst[0] = '\0';
    if (v == NULL || json_is_null(v)) {
        if (!required)
            return KH_OK;
        khx_errf(err, errlen, "the enrollment answer has no '%s'", key);
        return KH_EFORMAT;
    }
    if (!json_is_string(v)) {
        khx_errf(err, errlen, "the enrollment answer's '%s' is not a string", key);
        return KH_EFORMAT;
    }
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n >= cap || memchr(s, '\0', n) != NULL || (required && n == 0)) {
        khx_errf(err, errlen, "the enrollment answer's '%s' is empty, too long or has a NUL", key);
        return KH_EFORMAT;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return KH_OK;
}

/* A PEM certificate field: at most PEM_MAX bytes, starting as one. */
static int answer_pem(json_t *obj, const char *key, char **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) {
        khx_errf(err, errlen, "the enrollment answer has no '%s' certificate", key);
        return KH_EFORMAT;
    }
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n > PEM_MAX || n < sizeof(PEM_CERT_PREFIX) - 1 || memchr(s, '\0', n) != NULL ||
        memcmp(s, PEM_CERT_PREFIX, sizeof(PEM_CERT_PREFIX) - 1) != 0) {
        khx_errf(err, errlen, "the enrollment answer's '%s' is not a PEM certificate", key);
        return KH_EFORMAT;
    }
    if ((*out = khx_strndup(s, n)) == NULL)
        return KH_ENOMEM;
    return KH_OK;
}

int client_parse_enroll_answer(const char *body, size_t len, struct enroll_result *res,
                               char **cert_pem, char **ca_pem, char *err, size_t errlen)
{
    struct enroll_result tmp;
    json_error_t jerr;
    json_t *root = NULL, *v;
    char *cert = NULL, *ca = NULL;
    int r = KH_EFORMAT;

    memset(&tmp, 0, sizeof(tmp));
    if (body == NULL || res == NULL || cert_pem == NULL || ca_pem == NULL)
        return KH_EINVAL;
    if (len > CLIENT_MAX_RESPONSE) {
        khx_errf(err, errlen, "the enrollment answer is too long");
        return KH_EFORMAT;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        khx_errf(err, errlen, "the enrollment answer is not a JSON object");
        goto out;
    }
    if ((r = answer_str(root, "machine_id", 1, tmp.machine_id, sizeof(tmp.machine_id), err,
                        errlen)) != KH_OK ||
        (r = answer_str(root, "key_id", 0, tmp.key_id, sizeof(tmp.key_id), err, errlen)) != KH_OK ||
        (r = answer_str(root, "bundle_key", 0, tmp.bundle_key, sizeof(tmp.bundle_key), err,
                        errlen)) != KH_OK)
        goto out;
    /* The machine id becomes a file name component and a log field: it is
     * held to the characters of a UUID. */
    for (const char *p = tmp.machine_id; *p != '\0'; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              *p == '-')) {
            khx_errf(err, errlen, "the enrollment answer's machine_id is not an id");
            r = KH_EFORMAT;
            goto out;
        }
    }
    v = json_object_get(root, "agency");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_object(v)) {
            khx_errf(err, errlen, "the enrollment answer's 'agency' is not an object");
            r = KH_EFORMAT;
            goto out;
        }
        if ((r = answer_str(v, "code", 0, tmp.agency_code, sizeof(tmp.agency_code), err, errlen)) !=
                KH_OK ||
            (r = answer_str(v, "name", 0, tmp.agency_name, sizeof(tmp.agency_name), err, errlen)) !=
                KH_OK)
            goto out;
    }
    v = json_object_get(root, "checkin_interval");
    tmp.checkin_interval = 60;
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > (json_int_t)RETRY_AFTER_MAX) {
            khx_errf(err, errlen, "the enrollment answer's checkin_interval is not 1 to %u",
                     RETRY_AFTER_MAX);
            r = KH_EFORMAT;
            goto out;
        }
        tmp.checkin_interval = (int)json_integer_value(v);
    }
    v = json_object_get(root, "reenrolled");
    if (v != NULL && !json_is_null(v) && !json_is_boolean(v)) {
        khx_errf(err, errlen, "the enrollment answer's 'reenrolled' is not a boolean");
        r = KH_EFORMAT;
        goto out;
    }
    tmp.reenrolled = json_is_true(v);
    if ((r = answer_pem(root, "certificate", &cert, err, errlen)) != KH_OK ||
        (r = answer_pem(root, "ca", &ca, err, errlen)) != KH_OK)
        goto out;
    *res = tmp;
    *cert_pem = cert;
    *ca_pem = ca;
    cert = ca = NULL;
    r = KH_OK;
out:
    json_decref(root);
    free(cert);
    free(ca);
    return r;
}

/* The newest OpenSSL error as text, for a message. */
static const char *ossl_error(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, cap, "unknown OpenSSL error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

/* Writes a whole file with `mode` (also when it existed with another one)
 * and fsyncs it. */
static int write_file_synced(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return KH_EIO;
    if (fchmod(fd, mode) != 0 || khx_write_all(fd, data, len) != KH_OK || fsync(fd) != 0)
        goto fail;
    return close(fd) == 0 ? KH_OK : KH_EIO;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return KH_EIO;
}

/* A new P-256 key, written as PEM to `path` (0600). The PEM text in memory
 * is wiped before it is freed. */
static int make_key(const char *path, EVP_PKEY **out, char *err, size_t errlen)
{
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    BUF_MEM *mem = NULL;
    char msg[160];
    int r = KH_ENOMEM;

    if ((pkey = EVP_EC_gen("P-256")) == NULL) {
        khx_errf(err, errlen, "cannot create a P-256 key: %s", ossl_error(msg, sizeof(msg)));
        goto out;
    }
    if ((bio = BIO_new(BIO_s_mem())) == NULL ||
        PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
        khx_errf(err, errlen, "cannot encode the key: %s", ossl_error(msg, sizeof(msg)));
        goto out;
    }
    BIO_get_mem_ptr(bio, &mem);
    if ((r = write_file_synced(path, mem->data, mem->length, 0600)) != KH_OK) {
        khx_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        goto out;
    }
    *out = pkey;
    pkey = NULL;
    r = KH_OK;
out:
    if (mem != NULL)
        OPENSSL_cleanse(mem->data, mem->length);
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    return r;
}

/* A PEM certificate request for `pkey`, CN = hostname (the server replaces
 * the subject with the machine id, so a hostname that cannot be a common
 * name is simply left out). *out is malloc'd. */
static int make_csr(EVP_PKEY *pkey, const char *hostname, char **out, char *err, size_t errlen)
{
    X509_REQ *req = NULL;
    BIO *bio = NULL;
    BUF_MEM *mem = NULL;
    char msg[160];
    int r = KH_ENOMEM;

    if ((req = X509_REQ_new()) == NULL || X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1)
        goto fail;
    X509_NAME *name = X509_REQ_get_subject_name(req);
    size_t hlen = strlen(hostname);
    if (hlen == 0 || hlen > CN_MAX ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)hostname, -1,
                                   -1, 0) != 1) {
        ERR_clear_error();
        if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       (const unsigned char *)"khien-agent", -1, -1, 0) != 1)
            goto fail;
    }
    if (X509_REQ_set_pubkey(req, pkey) != 1 || X509_REQ_sign(req, pkey, EVP_sha256()) <= 0)
        goto fail;
    if ((bio = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_X509_REQ(bio, req) != 1)
        goto fail;
    BIO_get_mem_ptr(bio, &mem);
    if ((*out = khx_strndup(mem->data, mem->length)) == NULL)
        goto out;
    r = KH_OK;
    goto out;
fail:
    khx_errf(err, errlen, "cannot create the certificate request: %s",
             ossl_error(msg, sizeof(msg)));
    r = KH_ENOMEM;
out:
    BIO_free(bio);
    X509_REQ_free(req);
    return r;
}

static X509 *pem_to_x509(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    return x;
}

/* The answer's certificate must be for our key and signed by the answer's
 * CA: a server (or a proxy in between) that answers otherwise would leave
 * the agent with files it cannot use. */
static int check_answer_certs(const char *cert_pem, const char *ca_pem, EVP_PKEY *pkey, char *err,
                              size_t errlen)
{
    X509 *cert = pem_to_x509(cert_pem), *ca = pem_to_x509(ca_pem);
    int r = KH_EFORMAT;
    if (cert == NULL || ca == NULL) {
        khx_errf(err, errlen, "the enrollment answer's %s does not parse",
                 cert == NULL ? "certificate" : "CA");
        goto out;
    }
    if (X509_check_private_key(cert, pkey) != 1) {
        khx_errf(err, errlen, "the certificate from the server is not for this agent's key");
        goto out;
    }
    if (X509_verify(cert, X509_get0_pubkey(ca)) != 1) {
        khx_errf(err, errlen, "the certificate from the server is not signed by its CA");
        goto out;
    }
    r = KH_OK;
out:
    ERR_clear_error();
    X509_free(cert);
    X509_free(ca);
    return r;
}

/* Sets doc[key] = val when val is not NULL. jansson refuses strings that
 * are not UTF-8, which is the one way this fails but for memory. */
static int body_str(json_t *doc, const char *key, const char *val, char *err, size_t errlen)
{
    if (val == NULL)
        return KH_OK;
    json_t *s = json_string(val);
    if (s == NULL) {
        khx_errf(err, errlen, "the %s is not valid UTF-8", key);
        return KH_EINVAL;
    }
    return json_object_set_new(doc, key, s) == 0 ? KH_OK : KH_ENOMEM;
}

/* "enrollment refused (403): this enrollment token has expired": the
 * server's message when its answer carries one, else the start of the body. */
static void refusal_message(long status, const struct client_resp *resp, char *err, size_t errlen)
{
    char text[256] = "";
    json_t *root = NULL;
    if (resp->body != NULL)
        root = json_loadb(resp->body, resp->len, 0, NULL);
    json_t *m = json_object_get(root, "message");
    if (json_is_string(m))
        khx_printable(text, sizeof(text), json_string_value(m), json_string_length(m));
    else if (resp->body != NULL)
        khx_printable(text, sizeof(text), resp->body, KHX_MIN(resp->len, 120));
    else
        snprintf(text, sizeof(text), "no message");
    json_decref(root);
    khx_errf(err, errlen, "enrollment %s (%ld): %s",
             status >= 400 && status < 500 ? "refused" : "failed", status, text);
}

int client_enroll(const struct enroll_request *req, struct enroll_result *res, char *err,
                  size_t errlen)
{
    enum { KEY, CRT, CA, NFILES };
    static const char *const names[NFILES] = {"agent.key", "agent.crt", "ca.crt"};
    char final[NFILES][PATH_MAX], staged[NFILES][PATH_MAX];
    int written[NFILES] = {0, 0, 0};
    struct client_opts opts;
    struct client_resp resp;
    struct enroll_result got;
    struct client *c = NULL;
    EVP_PKEY *pkey = NULL;
    json_t *doc = NULL;
    char *csr = NULL, *body = NULL, *cert_pem = NULL, *ca_pem = NULL;
    int r = KH_EINVAL;

    memset(&resp, 0, sizeof(resp));
    if (req == NULL || res == NULL || req->server == NULL || req->token == NULL ||
        req->hostname == NULL || req->state_dir == NULL) {
        khx_errf(err, errlen, "enrollment needs a server, a token, a hostname and a folder");
        return KH_EINVAL;
    }
    for (int i = 0; i < NFILES; i++) {
        int n1 = snprintf(final[i], sizeof(final[i]), "%s/%s", req->state_dir, names[i]);
        int n2 = snprintf(staged[i], sizeof(staged[i]), "%s/%s.new", req->state_dir, names[i]);
        if (n1 < 0 || n2 < 0 || (size_t)n2 >= sizeof(staged[i])) {
            khx_errf(err, errlen, "state folder path is too long");
            return KH_EINVAL;
        }
    }
    if (mkdir(req->state_dir, 0700) != 0 && errno != EEXIST) {
        khx_errf(err, errlen, "cannot create %s: %s", req->state_dir, strerror(errno));
        return KH_EIO;
    }

    if ((r = make_key(staged[KEY], &pkey, err, errlen)) != KH_OK)
        goto out;
    written[KEY] = 1;
    if ((r = make_csr(pkey, req->hostname, &csr, err, errlen)) != KH_OK)
        goto out;
    if ((doc = json_object()) == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    if ((r = body_str(doc, "token", req->token, err, errlen)) != KH_OK ||
        (r = body_str(doc, "csr", csr, err, errlen)) != KH_OK ||
        (r = body_str(doc, "hostname", req->hostname, err, errlen)) != KH_OK ||
        (r = body_str(doc, "machine_key", req->machine_key, err, errlen)) != KH_OK ||
        (r = body_str(doc, "machine_id", req->machine_id, err, errlen)) != KH_OK)
        goto out;
    if ((body = json_dumps(doc, JSON_COMPACT)) == NULL) {
        r = KH_ENOMEM;
        goto out;
    }

    /* Enrollment has no client certificate yet: a client of its own. */
    memset(&opts, 0, sizeof(opts));
    opts.server = req->server;
    opts.ca_file = req->ca_file;
    opts.timeout_s = ENROLL_TIMEOUT;
    if ((r = client_new(&opts, &c, err, errlen)) != KH_OK)
        goto out;
    if ((r = client_call(c, "POST", "/enroll", body, strlen(body), 0, &resp)) != KH_OK) {
        khx_errf(err, errlen, "enrollment failed: %s", resp.error);
        goto out;
    }
    if (resp.status != 200) {
        refusal_message(resp.status, &resp, err, errlen);
        /* 4xx: the token or the request is wrong, repeating it will not
         * help; anything else may pass on a later try. */
        r = resp.status >= 400 && resp.status < 500 ? KH_EINVAL : KH_EIO;
        goto out;
    }
    if ((r = client_parse_enroll_answer(resp.body != NULL ? resp.body : "", resp.len, &got,
                                        &cert_pem, &ca_pem, err, errlen)) != KH_OK ||
        (r = check_answer_certs(cert_pem, ca_pem, pkey, err, errlen)) != KH_OK)
        goto out;

    written[CRT] = 1;
    if ((r = write_file_synced(staged[CRT], cert_pem, strlen(cert_pem), 0644)) != KH_OK) {
        khx_errf(err, errlen, "cannot write %s: %s", staged[CRT], strerror(errno));
        goto out;
    }
    written[CA] = 1;
    if ((r = write_file_synced(staged[CA], ca_pem, strlen(ca_pem), 0644)) != KH_OK) {
        khx_errf(err, errlen, "cannot write %s: %s", staged[CA], strerror(errno));
        goto out;
    }
    /* Everything is on disk: only now are the earlier files replaced. The
     * three renames are not one atomic step; a crash between them leaves a
     * key that does not match its certificate, which the server refuses
     * (401) and the agent answers by enrolling again. */
    for (int i = 0; i < NFILES; i++) {
        if (rename(staged[i], final[i]) != 0) {
            khx_errf(err, errlen, "cannot rename %s: %s", staged[i], strerror(errno));
            r = KH_EIO;
            goto out;
        }
        written[i] = 0;
    }
    if ((r = fsync_parent(final[KEY])) != KH_OK) {
        khx_errf(err, errlen, "cannot sync %s", req->state_dir);
        goto out;
    }
    *res = got;
    r = KH_OK;
out:
    for (int i = 0; i < NFILES; i++)
        if (written[i])
            unlink(staged[i]);
    client_resp_free(&resp);
    client_free(c);
    EVP_PKEY_free(pkey);
    json_decref(doc);
    free(csr);
    free(body);
    free(cert_pem);
    free(ca_pem);
    return r;
}
