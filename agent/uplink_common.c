/*
 * The uplink logic that the agent and the sensor share (see uplink_common.h
 * for what each function promises). Everything here runs on the caller's
 * uplink thread, the only one that uses struct uplink and its client; what
 * the caller wants to hear goes through u->report, and the events the
 * uplink makes itself go through u->emit into the caller's spool.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "client.h"
#include "khx.h"
#include "platform.h"
#include "spool.h"
#include "update.h"
#include "uplink_common.h"

#define EVENTS_PER_BATCH 500
#define BATCH_BYTES_MAX  (4u << 20)
#define BUNDLE_MAX_BYTES (2ull << 30)

static void say(struct uplink *u, enum uplink_what what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(struct uplink *u, enum uplink_what what, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    u->report(u->ctx, what, msg);
}

/* Spools an event of the uplink itself; a NULL ev (out of memory) is none. */
static void emit(struct uplink *u, json_t *ev)
{
    if (ev != NULL)
        u->emit(u->ctx, ev);
    json_decref(ev);
}

void uplink_backoff(struct uplink *u, uint64_t *next)
{
    unsigned limit = KHX_MAX(u->interval_s, 2u);
    u->backoff_s = u->backoff_s ? KHX_MIN(u->backoff_s * 2, limit) : 2;
    *next = khx_now_ms() + u->backoff_s * 1000ull + randombytes_uniform(1000);
}

int uplink_fatal_status(struct uplink *u, long status)
{
    if (status == 401 && !u->unauthorized) {
        u->unauthorized = 1;
        say(u, UPLINK_FAILED, "the server no longer accepts this %s's certificate: enroll again",
            u->who);
    } else if (status == 403 && !u->retired) {
        u->retired = 1;
        say(u, UPLINK_FAILED, "the server says this %s was retired: not calling it any more",
            u->who);
    }
    return status == 401 || status == 403;
}

/* The answer to a batch that was taken may still name events the server
 * rejected one by one (they are not sent again). */
static void report_rejected(struct uplink *u, const char *body)
{
    json_t *j = json_loads(body ? body : "", 0, NULL);
    json_t *rej = json_object_get(j, "rejected");
    for (size_t i = 0; i < json_array_size(rej); i++) {
        const char *m = json_string_value(json_object_get(json_array_get(rej, i), "message"));
        say(u, UPLINK_EVENT_REJECTED, "event rejected by the server: %s", m ? m : "(null)");
    }
    json_decref(j);
}

void uplink_flush_events(struct uplink *u)
{
    while ((u->stop == NULL || !atomic_load(u->stop)) && u->spool != NULL &&
           khx_now_ms() >= u->next_flush) {
        uint64_t dropped = 0;
        struct spool_stats ss;
        spool_stats(u->spool, &ss);
        if (ss.dropped > 0 && ss.events < 1000 && (dropped = spool_take_dropped(u->spool)) > 0)
            emit(u, json_pack("{s:s,s:I}", "type", "events_dropped", "count", (json_int_t)dropped));
        struct spool_batch b;
        memset(&b, 0, sizeof(b));
        if (spool_peek(u->spool, EVENTS_PER_BATCH, BATCH_BYTES_MAX, &b) != KH_OK || b.count == 0) {
            spool_batch_free(&b);
            return;
        }
        struct khx_buf body;
        khx_buf_init(&body, BATCH_BYTES_MAX + 64);
        struct client_resp resp;
        memset(&resp, 0, sizeof(resp));
        int r = khx_buf_printf(&body, "{\"events\":%s}", b.json);
        if (r == KH_OK)
            r = client_call(u->client, "POST", "/agent/events", (const char *)body.data, body.len,
                            1, &resp);
        khx_buf_free(&body);
        int sent = r == KH_OK && resp.status >= 200 && resp.status < 300;
        if (sent) {
            spool_ack(u->spool, &b);
            u->backoff_s = 0;
            atomic_fetch_add(&u->events_sent, b.count);
            report_rejected(u, resp.body);
        } else if (r == KH_OK && resp.status == 400) {
            /* The server will never take this batch: keeping it would block the rest. */
            say(u, UPLINK_BATCH_REFUSED,
                "the server refused an event batch (400): dropping it: %.300s",
                resp.body ? resp.body : "");
            spool_ack(u->spool, &b);
        } else {
            /* 413 lands here too: the next try, after the wait, is the same batch. */
            if (r == KH_OK && !uplink_fatal_status(u, resp.status))
                say(u, UPLINK_EVENTS_HTTP, "events not sent: HTTP %ld", resp.status);
            else if (r != KH_OK)
                say(u, UPLINK_FAILED, "events not sent: %s",
                    resp.error[0] ? resp.error : kh_strerror(r));
            uplink_backoff(u, &u->next_flush);
        }
        client_resp_free(&resp);
        spool_batch_free(&b);
        if (!sent)
            return;
    }
}

int uplink_fetch_bundle(struct uplink *u, int64_t version, int64_t current, struct update_db *db)
{
    char path[64], dest[4300], err[512] = "";
    long status = 0;
    uint8_t pk[32];
    size_t pklen = 0;
    snprintf(path, sizeof(path), "/agent/bundles/%lld", (long long)version);
    snprintf(dest, sizeof(dest), "%s/download.bundle", u->db_dir);
    if (client_download(u->client, path, dest, BUNDLE_MAX_BYTES, &status, err, sizeof(err)) !=
            KH_OK ||
        status != 200) {
        say(u, UPLINK_FAILED, "bundle %lld: download failed: %s (HTTP %ld)", (long long)version,
            err[0] ? err : "no answer", status);
        return KH_EIO;
    }
    if (u->bundle_key == NULL ||
        sodium_base642bin(pk, sizeof(pk), u->bundle_key, strlen(u->bundle_key), NULL, &pklen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        pklen != sizeof(pk)) {
        say(u, UPLINK_FAILED, "agent.json: bundle_key is not a base64 Ed25519 key");
        unlink(dest);
        return KH_EINVAL;
    }
    int r = update_unpack(dest, pk, u->db_dir, current, db, err, sizeof(err));
    unlink(dest);
    if (r != KH_OK) {
        say(u, UPLINK_FAILED, "bundle %lld refused: %s", (long long)version, err);
        emit(u, json_pack("{s:s,s:I,s:s}", "type", "bundle_refused", "version", (json_int_t)version,
                          "reason", err));
        return r;
    }
    return KH_OK;
}

json_t *uplink_inventory_json(const struct plat_inventory *inv, json_t *fields)
{
    json_t *ips = json_array(), *macs = json_array(), *j = NULL;
    for (size_t i = 0; i < inv->nips; i++)
        json_array_append_new(ips, json_string(inv->ips[i]));
    for (size_t i = 0; i < inv->nmacs; i++)
        json_array_append_new(macs, json_string(inv->macs[i]));
    if (fields == NULL) {
        json_decref(ips);
        json_decref(macs);
        return NULL;
    }
    j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:o,s:o,s:s}", "hostname", inv->hostname, "os",
                  inv->os, "kernel", inv->kernel, "arch", inv->arch, "cpu", inv->cpu, "cpus",
                  (int)inv->cpus, "mem_bytes", (json_int_t)inv->mem_bytes, "ips", ips, "macs", macs,
                  "agent_version", KHIEN_VERSION);
    /* Objects keep their keys in insertion order, which is the order on the
     * wire: the caller's fields come after these, in theirs. */
    if (j == NULL || json_object_update(j, fields) != 0) {
        json_decref(j);
        json_decref(fields);
        return NULL;
    }
    json_decref(fields);
    if (inv->machine_key[0] != '\0')
        json_object_set_new(j, "machine_key", json_string(inv->machine_key));
    return j;
}
