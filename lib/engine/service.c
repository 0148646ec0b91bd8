/*
 * The long-lived scanning service: a current engine, swapped atomically on
 * reload, and a pool of scanners for it.
 *
 * A scan takes a scanner from the pool under a mutex (creating one when the
 * pool is empty), scans without holding any lock, and returns the scanner
 * afterwards — to the pool if its engine is still current, otherwise it is
 * freed, and with it the scanner's reference to the old engine. The engine
 * itself is reference counted (engine.c), so the old database is unmapped
 * exactly when its last scan ends.
 */
#include "engine_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Scanners kept for reuse; more are freed when returned. */
#define POOL_MAX 64

struct kh_service {
    pthread_mutex_t lock;
    kh_engine *current;
    uint64_t generation;
    struct kh_scan_opts opts;
    kh_scanner *pool[POOL_MAX];
    unsigned npool;
};

int kh_service_new(const char *kdb_path, const struct kh_scan_opts *opts, kh_service **out,
                   char *err, size_t errlen)
{
    if (kdb_path == NULL || out == NULL)
        return KH_EINVAL;
    kh_service *svc = calloc(1, sizeof(*svc));
    if (svc == NULL)
        return KH_ENOMEM;
    if (opts)
        svc->opts = *opts;
    else
        kh_scan_opts_default(&svc->opts);
    int r = kh_engine_open(kdb_path, &svc->current, err, errlen);
    if (r != 0) {
        free(svc);
        return r;
    }
    pthread_mutex_init(&svc->lock, NULL);
    *out = svc;
    return KH_OK;
}

void kh_service_free(kh_service *svc)
{
    if (svc == NULL)
        return;
    for (unsigned i = 0; i < svc->npool; i++)
        kh_scanner_free(svc->pool[i]);
    kh_engine_free(svc->current);
    pthread_mutex_destroy(&svc->lock);
    free(svc);
}

int kh_service_reload(kh_service *svc, const char *kdb_path, char *err, size_t errlen)
{
    kh_engine *fresh = NULL;
    kh_scanner *old_pool[POOL_MAX];
    if (svc == NULL || kdb_path == NULL)
        return KH_EINVAL;
    /* Opening (checksum, deserialization) happens outside the lock: scans
     * go on with the old engine meanwhile. */
    int r = kh_engine_open(kdb_path, &fresh, err, errlen);
    if (r != 0)
        return r;
    pthread_mutex_lock(&svc->lock);
    kh_engine *old = svc->current;
    unsigned n = svc->npool;
    memcpy(old_pool, svc->pool, n * sizeof(old_pool[0]));
    svc->npool = 0;
    svc->current = fresh;
    svc->generation++;
    pthread_mutex_unlock(&svc->lock);
    for (unsigned i = 0; i < n; i++)
        kh_scanner_free(old_pool[i]);
    kh_engine_free(old); /* the last scan still using it frees it otherwise */
    return KH_OK;
}

/* Takes a scanner for the current engine. */
static int acquire(kh_service *svc, kh_scanner **out)
{
    pthread_mutex_lock(&svc->lock);
    if (svc->npool > 0) {
        *out = svc->pool[--svc->npool];
        pthread_mutex_unlock(&svc->lock);
        return KH_OK;
    }
    kh_engine *e = kh_engine_ref(svc->current);
    pthread_mutex_unlock(&svc->lock);
    int r = kh_scanner_new(e, &svc->opts, out); /* takes its own reference */
    kh_engine_free(e);
    return r;
}

static void release(kh_service *svc, kh_scanner *s)
{
    kh_scanner_reset_cancel(s);
    pthread_mutex_lock(&svc->lock);
    if (khx_scanner_engine(s) == svc->current && svc->npool < POOL_MAX) {
        svc->pool[svc->npool++] = s;
        s = NULL;
    }
    pthread_mutex_unlock(&svc->lock);
    kh_scanner_free(s); /* an old engine's scanner, or a full pool */
}

int kh_service_scan_file(kh_service *svc, const char *path, kh_detect_fn cb, void *ud,
                         struct kh_scan_result *result)
{
    kh_scanner *s = NULL;
    if (svc == NULL)
        return KH_EINVAL;
    int r = acquire(svc, &s);
    if (r != 0)
        return r;
    r = kh_scan_file(s, path, cb, ud, result);
    release(svc, s);
    return r;
}

int kh_service_scan_mem(kh_service *svc, const void *data, size_t len, const char *name,
                        kh_detect_fn cb, void *ud, struct kh_scan_result *result)
{
    kh_scanner *s = NULL;
    if (svc == NULL)
        return KH_EINVAL;
    int r = acquire(svc, &s);
    if (r != 0)
        return r;
    r = kh_scan_mem(s, data, len, name, cb, ud, result);
    release(svc, s);
    return r;
}

int kh_service_info(kh_service *svc, struct kh_db_info *info, uint64_t *generation)
{
    if (svc == NULL || info == NULL)
        return KH_EINVAL;
    pthread_mutex_lock(&svc->lock);
    int r = kh_engine_info(svc->current, info);
    if (generation)
        *generation = svc->generation;
    pthread_mutex_unlock(&svc->lock);
    return r;
}
