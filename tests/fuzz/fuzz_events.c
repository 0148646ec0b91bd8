/*
 * libFuzzer target for event batches (server/ingest.c): the input is parsed
 * as the HTTP handler parses a request body, and the "events" array (or the
 * input itself when it is an array) goes through srv_ingest_events() into an
 * in-memory SQLite store, so validation, the family rule, the id echo of
 * rejections and the SQL all see hostile documents. When the store cannot
 * open "sqlite://:memory:" the target still runs every event through
 * srv_ingest_validate_event() and every signature through the family rule.
 * The tables are emptied after each input so that runs do not depend on one
 * another.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ingest.h"
#include "store/store.h"

#define MACHINE "00000000-0000-4000-8000-000000000001"

static struct store_db *db;
static int db_tried;

/* Opens the store once and creates one agency and one machine. */
static void open_store(void)
{
    char err[256];
    db_tried = 1;
    if (store_open("sqlite://:memory:", &db, err, sizeof(err)) != 0)
        goto fail;
    if (store_migrate(db) != 0 ||
        store_exec(db, "INSERT INTO agencies (id, path, code, name, created_at) "
                       "VALUES (1, '/1/', 'P', 'Province', 0)") != 0 ||
        store_execf(db, NULL, "INSERT INTO machines (id, agency_id, enrolled_at) VALUES ($1, 1, 0)",
                    "t", MACHINE) != 0)
        goto fail;
    return;
fail:
    store_close(db);
    db = NULL;
}

/* Checks what the report says against the batch: every index once, counts
 * adding up. A mismatch is a bug, so it aborts for libFuzzer to keep. */
static void check_report(const json_t *events, const json_t *report)
{
    const json_t *rejected = json_object_get(report, "rejected");
    json_int_t accepted = json_integer_value(json_object_get(report, "accepted"));
    json_int_t duplicates = json_integer_value(json_object_get(report, "duplicates"));
    if (!json_is_array(rejected) ||
        (size_t)(accepted + duplicates) + json_array_size(rejected) != json_array_size(events))
        abort();
    size_t i;
    const json_t *item;
    json_array_foreach(rejected, i, item)
    {
        const json_t *index = json_object_get(item, "index");
        if (!json_is_integer(index) || json_integer_value(index) < 0 ||
            (size_t)json_integer_value(index) >= json_array_size(events) ||
            !json_is_string(json_object_get(item, "message")))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db_tried)
        open_store();
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (doc == NULL)
        return 0;
    const json_t *events = json_is_array(doc) ? doc : json_object_get(doc, "events");
    if (!json_is_array(events))
        goto out;

    size_t i;
    const json_t *ev;
    json_array_foreach(events, i, ev)
    {
        char msg[160], family[64];
        srv_ingest_validate_event(ev, msg, sizeof(msg));
        srv_ingest_family(json_string_value(json_object_get(ev, "signature")), family,
                          sizeof(family));
    }
    if (db != NULL && json_array_size(events) <= SRV_INGEST_MAX_EVENTS) {
        json_t *report = json_object();
        if (report != NULL && srv_ingest_events(db, MACHINE, events, 1800000000, report) == 0)
            check_report(events, report);
        json_decref(report);
        store_exec(db, "DELETE FROM c2_hits; DELETE FROM detections; DELETE FROM events;");
    }
out:
    json_decref(doc);
    return 0;
}
