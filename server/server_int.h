/* Private declarations shared by server.c, router.c and http.c. */
#ifndef KHIEN_SERVER_INT_H
#define KHIEN_SERVER_INT_H

#include "server.h"

/* The connection pool: at most `size` connections to cfg.database, opened on
 * demand. srv_pool_get waits for a free one (up to 10 s) and returns NULL
 * when none can be had. */
int srv_pool_new(const char *url, unsigned size, struct srv_pool **out, char *err, size_t errlen);
void srv_pool_free(struct srv_pool *pool);
struct store_db *srv_pool_get(struct srv_pool *pool);
void srv_pool_put(struct srv_pool *pool, struct store_db *db);

/* Runs the server in the foreground until SIGINT or SIGTERM. */
int srv_run(const struct srv_config *cfg);

#endif
