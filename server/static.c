/*
 * The dashboard's files, served from the table that server/embed_web.cmake
 * generates from web/ at build time (web_assets.h), so a running server needs
 * no install path and cannot be pointed at files outside that table.
 *
 * "/" is index.html. The dashboard routes on the client with the history API
 * (/machines/ID, /detections/12, ...), so any other path outside /api/ whose
 * last segment has no extension is answered with index.html too, and the
 * page's script decides what to show. A missing file with an extension
 * (/app.jss, /favicon.ico) is a real miss and gets the API's 404 JSON, so a
 * typo in a module name fails loudly instead of loading HTML as script.
 *
 * Every answer carries the same security headers: a Content-Security-Policy
 * that allows only our own scripts and styles (the dashboard has no inline
 * script or style, and builds its DOM with textContent), no framing and no
 * Referer; http.c adds nosniff and HSTS to every response. Files are small,
 * so each answer is revalidated (no-cache) against a weak ETag computed from
 * the bytes: after an upgrade a browser never mixes old and new modules.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "web_assets.h"

#define STATIC_MAX_PATH 512

static const char static_csp[] = "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                 "script-src 'self'; frame-ancestors 'none'";

/* Adds the headers every static answer carries, whatever its status.
 * X-Content-Type-Options: nosniff is not among them because http.c sends it
 * on every response, API or not. */
static void static_security_headers(struct srv_req *r)
{
    srv_add_header(r, "Content-Security-Policy", static_csp);
    srv_add_header(r, "Referrer-Policy", "no-referrer");
    srv_add_header(r, "X-Frame-Options", "DENY");
}

static const struct srv_web_asset *static_find(const char *path)
{
    for (const struct srv_web_asset *a = srv_web_assets; a->path != NULL; a++) {
        if (strcmp(a->path, path) == 0)
            return a;
    }
    return NULL;
}

/* True when the last path segment has a dot in it, i.e. names a file rather
 * than a client-side route. */
static int static_has_extension(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *last = slash != NULL ? slash + 1 : path;
    return strchr(last, '.') != NULL;
}

/* FNV-1a over the bytes; an ETag only has to change when the file does.
 * Computed on each request: the largest file is a few tens of KiB, which
 * takes microseconds, and nothing needs to be shared between threads. */
static void static_etag(const struct srv_web_asset *a, char *out, size_t outlen)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < a->size; i++) {
        h ^= a->data[i];
        h *= 0x100000001b3ULL;
    }
    snprintf(out, outlen, "W/\"%016llx-%zx\"", (unsigned long long)h, a->size);
}

/* If-None-Match may list several tags; a match of ours anywhere is enough. */
static int static_etag_matches(struct srv_req *r, const char *etag)
{
    const char *inm = srv_header(r, "If-None-Match");
    if (inm == NULL)
        return 0;
    if (strcmp(inm, "*") == 0)
        return 1;
    /* Compare without the weak prefix, as RFC 9110 asks for If-None-Match. */
    const char *bare = etag + 2;
    return strstr(inm, bare) != NULL;
}

int api_static(struct srv_req *r)
{
    const char *path = r->path != NULL ? r->path : "/";
    size_t len = strnlen(path, STATIC_MAX_PATH + 1);
    const struct srv_web_asset *a = NULL;
    char etag[64];

    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
        srv_reply_error(r, 405, "method", "only GET is allowed here");
        srv_add_header(r, "Allow", "GET, HEAD");
        static_security_headers(r);
        return 0;
    }
    /* An unknown API path is never the dashboard: answer it as the API would. */
    if (len > STATIC_MAX_PATH || path[0] != '/' || strncmp(path, "/api/", 5) == 0 ||
        strcmp(path, "/api") == 0) {
        srv_reply_error(r, 404, "not_found", "no such resource");
        static_security_headers(r);
        return 0;
    }
    if (strcmp(path, "/") == 0 || !static_has_extension(path))
        a = static_find("/index.html");
    else
        a = static_find(path);
    if (a == NULL) {
        srv_reply_error(r, 404, "not_found", "no such file");
        static_security_headers(r);
        return 0;
    }

    static_etag(a, etag, sizeof(etag));
    if (static_etag_matches(r, etag))
        srv_reply_status(r, 304);
    else
        srv_reply_static(r, 200, a->content_type, a->data, a->size);
    srv_add_header(r, "ETag", etag);
    srv_add_header(r, "Cache-Control", "no-cache");
    static_security_headers(r);
    return 0;
}
