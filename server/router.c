/*
 * The router: matches a request against the route table (routes.c),
 * authenticates the caller as the route's flags demand, lends the handler a
 * database connection from the pool, and makes sure a response exists and no
 * transaction is left open afterwards. Paths that are not under /api/ are the
 * dashboard's files (static.c).
 */
#include <string.h>

#include "api.h"
#include "auth.h"
#include "server.h"
#include "server_int.h"

/* Matches `path` against `pattern`; on success copies the {} segments into
 * params (up to 4, each at most 127 bytes). */
static int route_match(const char *pattern, const char *path, char params[4][128],
                       unsigned *nparams)
{
    unsigned n = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (p[0] == '{' && p[1] == '}') {
            const char *end = strchr(s, '/');
            size_t len = end ? (size_t)(end - s) : strlen(s);
            if (len == 0 || len >= 128 || n >= 4)
                return 0;
            if (params != NULL) {
                memcpy(params[n], s, len);
                params[n][len] = '\0';
            }
            n++;
            s += len;
            p += 2;
            continue;
        }
        if (*p != *s)
            return 0;
        p++;
        s++;
    }
    if (*p || *s)
        return 0;
    if (nparams != NULL)
        *nparams = n;
    return 1;
}

const struct srv_route *srv_route_lookup(const char *method, const char *path)
{
    for (size_t i = 0; i < srv_nroutes; i++)
        if (strcmp(srv_routes[i].method, method) == 0 &&
            route_match(srv_routes[i].pattern, path, NULL, NULL))
            return &srv_routes[i];
    return NULL;
}

/* Parameters live in thread-local storage for the duration of the request:
 * one request runs on one thread from dispatch to response. */
static __thread char route_params[4][128];

static void run_handler(struct srv_req *r, const struct srv_route *route)
{
    struct srv *s = r->srv;
    r->db = srv_pool_get(s->pool);
    if (r->db == NULL) {
        srv_reply_error(r, 503, "unavailable", "the database is unavailable");
        srv_add_header(r, "Retry-After", "5");
        return;
    }
    if ((route->flags & SRV_AGENT) && srv_auth_agent(r) != 0)
        goto out;
    if (route->flags & SRV_USER) {
        if (srv_auth_user(r) != 0)
            goto out;
        if ((route->flags & SRV_ADMIN) && r->who.role != SRV_ROLE_ADMIN) {
            srv_reply_error(r, 403, "forbidden", "only a province administrator may do this");
            goto out;
        }
        if ((route->flags & SRV_WRITE) && r->who.role < SRV_ROLE_OFFICER) {
            srv_reply_error(r, 403, "forbidden", "your role may read but not change anything");
            goto out;
        }
    }
    route->handler(r);
    if (r->resp.status == 0)
        srv_reply_error(r, 500, "internal", "the handler gave no response");
out:
    /* A handler that failed half-way may leave a transaction open. */
    store_rollback(r->db);
    srv_pool_put(s->pool, r->db);
    r->db = NULL;
}

void srv_dispatch(struct srv_req *r)
{
    const struct srv_route *route = NULL;
    int method_seen = 0;
    for (size_t i = 0; i < srv_nroutes; i++) {
        if (!route_match(srv_routes[i].pattern, r->path, route_params, &r->nparams))
            continue;
        if (strcmp(srv_routes[i].method, r->method) == 0) {
            route = &srv_routes[i];
            break;
        }
        method_seen = 1;
    }
    if (route == NULL) {
        if (strncmp(r->path, "/api/", 5) != 0 &&
            (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0)) {
            api_static(r);
            return;
        }
        if (method_seen) {
            srv_reply_error(r, 405, "method", "%s is not allowed on %s", r->method, r->path);
            return;
        }
        srv_reply_error(r, 404, "not_found", "no such endpoint: %s", r->path);
        return;
    }
    /* route_match above also filled the params of the matching route last. */
    route_match(route->pattern, r->path, route_params, &r->nparams);
    for (unsigned i = 0; i < r->nparams; i++)
        r->params[i] = route_params[i];
    run_handler(r, route);
}
