/*
 * The child side of federation (federation.h): the "federation-push" job.
 * Each run counts the infection index for the current and previous month
 * and quarter, turns the tables into the federation document (aggregates
 * per agency, nothing about machines or people) and POSTs it to the parent
 * over HTTPS with the province's token. Failures return -1 so that jobs.c
 * retries with backoff; the message says what went wrong in one line.
 */
#include "federation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "khx.h"
#include "upward.h"

#define TOKEN_FILE_MAX    4096
#define RESPONSE_MAX      (64 * 1024) /* bytes of the parent's answer we keep */
#define CONNECT_TIMEOUT_S 10L
#define TOTAL_TIMEOUT_S   120L
#define PUSH_PATH         "/api/v1/federation/push"

unsigned fed_push_interval(const struct srv_config *cfg)
{
    if (cfg->report.parent_url[0] == '\0')
        return 0;
    return cfg->report.parent_interval ? cfg->report.parent_interval : 3600;
}

/* Reads the token the parent issued: FED_TOKEN_PREFIX and 64 hex digits,
 * surrounded by whitespace at most. */
static int read_token(const char *path, char token[80], char *msg, size_t msglen)
{
    uint8_t *data = NULL;
    size_t len = 0, a = 0, b;
    int r = -1;

    if (path[0] == '\0') {
        snprintf(msg, msglen, "parent_token_file is not set");
        goto out;
    }
    if (khx_read_file(path, TOKEN_FILE_MAX, &data, &len) != 0) {
        snprintf(msg, msglen, "cannot read parent_token_file %s", path);
        goto out;
    }
    b = len;
    while (a < b && (data[a] == ' ' || data[a] == '\t' || data[a] == '\r' || data[a] == '\n'))
        a++;
    while (b > a && (data[b - 1] == ' ' || data[b - 1] == '\t' || data[b - 1] == '\r' ||
                     data[b - 1] == '\n'))
        b--;
    if (b - a != strlen(FED_TOKEN_PREFIX) + 64 ||
        memcmp(data + a, FED_TOKEN_PREFIX, strlen(FED_TOKEN_PREFIX)) != 0) {
        snprintf(msg, msglen, "parent_token_file %s does not hold a " FED_TOKEN_PREFIX " token",
                 path);
        goto out;
    }
    memcpy(token, data + a, b - a);
    token[b - a] = '\0';
    r = 0;
out:
    if (data != NULL)
        sodium_memzero(data, len);
    free(data);
    return r;
}

/* The periods pushed: this month, last month, this quarter, last quarter. */
static size_t push_periods(int64_t now, int utc_offset, struct rpt_period out[4])
{
    rpt_period_at(now, RPT_MONTH, utc_offset, &out[0]);
    rpt_period_prev(&out[0], utc_offset, &out[1]);
    rpt_period_at(now, RPT_QUARTER, utc_offset, &out[2]);
    rpt_period_prev(&out[2], utc_offset, &out[3]);
    return 4;
}

/* The parent's error message from a JSON error reply, else the answer's
 * start, made printable for a one-line log. */
static void describe(const char *answer, size_t len, char *out, size_t outlen)
{
    json_t *j = json_loadb(answer, len, 0, NULL);
    const char *m = json_string_value(json_object_get(j, "message"));
    size_t i = 0;

    if (m == NULL)
        m = answer;
    for (; m[i] != '\0' && i + 1 < outlen && i < 300; i++)
        out[i] = ((unsigned char)m[i] < 0x20) ? ' ' : m[i];
    out[i] = '\0';
    json_decref(j);
}

/* POSTs the document to the parent with the province's token. */
static int post(const struct srv_report_config *rc, const char *token, const char *body, size_t len,
                long *status, char **answer, size_t *alen, char *msg, size_t msglen)
{
    char url[640], auth[128], err[256];
    size_t ulen = strlen(rc->parent_url);
    while (ulen > 0 && rc->parent_url[ulen - 1] == '/')
        ulen--;
    snprintf(url, sizeof(url), "%.*s" PUSH_PATH, (int)ulen, rc->parent_url);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    const char *const headers[] = {auth, "Content-Type: application/json", NULL};
    const struct up_request rq = {.url = url,
                                  .ca = rc->parent_ca,
                                  .headers = headers,
                                  .user_agent = "khien-server/" KHIEN_VERSION " federation",
                                  .body = body,
                                  .len = len,
                                  .connect_timeout = CONNECT_TIMEOUT_S,
                                  .timeout = TOTAL_TIMEOUT_S,
                                  .answer_max = RESPONSE_MAX};
    int r = up_post(&rq, status, answer, alen, err, sizeof(err));
    sodium_memzero(auth, sizeof(auth));
    if (r != 0)
        snprintf(msg, msglen, "cannot push to %s: %s", url, err);
    return r;
}

int fed_job_push(struct srv *s, struct store_db *db, int64_t now, char *msg, size_t msglen)
{
    const struct srv_report_config *rc = &s->cfg.report;
    struct rpt_period periods[4];
    struct idx_table tables[4];
    char *answer = NULL;
    size_t alen = 0;
    size_t np, nt = 0, len;
    char token[80] = "", err[256] = "", why[320];
    char *body = NULL;
    json_t *doc = NULL;
    long status = 0;
    int r = -1;

    memset(tables, 0, sizeof(tables));
    if (strncmp(rc->parent_url, "https://", 8) != 0) {
        snprintf(msg, msglen, "parent_url must start with https://");
        goto out;
    }
    if (read_token(rc->parent_token_file, token, msg, msglen) != 0)
        goto out;
    np = push_periods(now, rc->utc_offset, periods);
    for (; nt < np; nt++)
        if (idx_compute(db, rc, &periods[nt], 0, now, &tables[nt], err, sizeof(err)) != 0) {
            snprintf(msg, msglen, "cannot count the index for %s: %s", periods[nt].label, err);
            goto out;
        }
    if (fed_doc_build(rc->org_id, rc->org_name, tables, nt, fed_push_interval(&s->cfg), now, &doc,
                      err, sizeof(err)) != 0) {
        snprintf(msg, msglen, "cannot build the federation document: %s", err);
        goto out;
    }
    body = json_dumps(doc, JSON_COMPACT);
    if (body == NULL || (len = strlen(body)) > FED_DOC_MAX) {
        snprintf(msg, msglen, "the federation document is larger than %u bytes", FED_DOC_MAX);
        goto out;
    }
    if (post(rc, token, body, len, &status, &answer, &alen, msg, msglen) != 0)
        goto out;
    if (status != 200) {
        describe(answer, alen, why, sizeof(why));
        snprintf(msg, msglen, "the parent refused the push: HTTP %ld: %s", status, why);
        goto out;
    }
    snprintf(msg, msglen, "pushed %zu periods (%zu bytes) to %s", nt, len, rc->parent_url);
    r = 0;
out:
    if (r != 0)
        srv_log("federation: %s", msg);
    sodium_memzero(token, sizeof(token));
    for (size_t i = 0; i < nt; i++)
        idx_table_free(&tables[i]);
    free(body);
    free(answer);
    json_decref(doc);
    return r;
}
