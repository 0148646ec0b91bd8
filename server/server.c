/*
 * The running server: the database connection pool, and srv_run(), which
 * loads the CA and the bundle-signing key, applies migrations, starts the
 * HTTPS front end and waits for SIGINT/SIGTERM.
 *
 * Everything shared between server processes is in the database; a process
 * keeps only connections, the keys read from the data folder, and a cache of
 * bundle files. That is what lets several `khien server run` against one
 * PostgreSQL behave as one server.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bundle.h"
#include "http.h"
#include "pki.h"
#include "jobs.h"
#include "server_int.h"

struct srv_pool {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    char *url;
    unsigned size, open;
    struct store_db **idle;
    unsigned nidle;
};

int srv_pool_new(const char *url, unsigned size, struct srv_pool **out, char *err, size_t errlen)
{
    struct srv_pool *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->url = strdup(url)) == NULL ||
        (p->idle = calloc(size, sizeof(*p->idle))) == NULL) {
        if (p != NULL) {
            free(p->url);
            free(p);
        }
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->freed, NULL);
    p->size = size;
    *out = p;
    return 0;
}

void srv_pool_free(struct srv_pool *p)
{
    if (p == NULL)
        return;
    for (unsigned i = 0; i < p->nidle; i++)
        store_close(p->idle[i]);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->freed);
    free(p->idle);
    free(p->url);
    free(p);
}

struct store_db *srv_pool_get(struct srv_pool *p)
{
    struct store_db *db = NULL;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->nidle > 0) {
            db = p->idle[--p->nidle];
            break;
        }
        if (p->open < p->size) {
            p->open++;
            pthread_mutex_unlock(&p->lock);
            char err[256];
            if (store_open(p->url, &db, err, sizeof(err)) != 0) {
                srv_log("database: %s", err);
                pthread_mutex_lock(&p->lock);
                p->open--;
                pthread_cond_signal(&p->freed);
                pthread_mutex_unlock(&p->lock);
                return NULL;
            }
            return db;
        }
        if (pthread_cond_timedwait(&p->freed, &p->lock, &deadline) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&p->lock);
    return db;
}

void srv_pool_put(struct srv_pool *p, struct store_db *db)
{
    if (db == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->idle[p->nidle++] = db;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

int srv_run(const struct srv_config *cfg)
{
    int r = 1;
    char err[512];
    struct srv s;
    struct srv_http *http = NULL;
    struct jobs *jobs = NULL;
    struct store_db *db = NULL;
    sigset_t sigs;

    memset(&s, 0, sizeof(s));
    s.cfg = *cfg;
    if (srv_pki_open(cfg->data_dir, &s.pki, err, sizeof(err)) != 0 ||
        srv_signer_open(cfg->data_dir, &s.signer, err, sizeof(err)) != 0) {
        srv_log("%s", err);
        goto out;
    }
    if (store_open(cfg->database, &db, err, sizeof(err)) != 0) {
        srv_log("database: %s", err);
        goto out;
    }
    int mr = store_migrate(db);
    if (mr != 0) {
        srv_log("database migration failed: %s: %s", store_strerror(mr), store_errmsg(db));
        goto out;
    }
    int version = 0;
    store_schema_version(db, &version);
    store_close(db);
    db = NULL;
    if (srv_pool_new(cfg->database, cfg->threads, &s.pool, err, sizeof(err)) != 0) {
        srv_log("%s", err);
        goto out;
    }

    /* Block the stop signals before any thread starts so that only
     * sigwait() below receives them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (srv_http_start(&s, &http, err, sizeof(err)) != 0) {
        srv_log("%s", err);
        goto out;
    }
    if (jobs_start(&s, &jobs, err, sizeof(err)) != 0) {
        srv_log("%s", err);
        goto out;
    }
    srv_log("listening on %s (port %u), database %s schema %d, %u connections; dashboard %s/",
            cfg->listen, srv_http_port(http),
            strncmp(cfg->database, "postgres", 8) == 0 ? "postgresql" : "sqlite", version,
            cfg->threads, cfg->public_url);
    int sig = 0;
    sigwait(&sigs, &sig);
    srv_log("signal %d: stopping", sig);
    s.stopping = 1;
    r = 0;
out:
    jobs_stop(jobs);
    srv_http_stop(http);
    store_close(db);
    srv_pool_free(s.pool);
    srv_signer_free(s.signer);
    srv_pki_free(s.pki);
    return r;
}
