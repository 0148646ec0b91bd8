/*
 * The HTTPS front end (http.c): libmicrohttpd with GnuTLS, one thread per
 * connection, the server certificate from the data folder and our CA as the
 * trust anchor for client certificates (requested, not required, so that
 * browsers and enrolling agents connect without one).
 */
#ifndef KHIEN_SERVER_HTTP_H
#define KHIEN_SERVER_HTTP_H

#include "server.h"

struct srv_http;

/* Starts listening on s->cfg.listen. Returns 0 or -1 with a message in err. */
int srv_http_start(struct srv *s, struct srv_http **out, char *err, size_t errlen);
/* Stops accepting, waits for running requests, frees. NULL-safe. */
void srv_http_stop(struct srv_http *h);
/* The port actually bound (useful with port 0). */
unsigned srv_http_port(const struct srv_http *h);

#endif
