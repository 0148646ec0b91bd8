/*
 * The `share-avreport` job (sharing.h). Each run, on the job thread:
 *
 *   1. the row of the current slot is created if missing (INSERT ... ON
 *      CONFLICT (slot) DO NOTHING, so of two servers only one creates it);
 *      it covers the interval that just ended, [slot - interval, slot);
 *   2. rows without a document get one: built from the store, signed, kept
 *      with its SHA-256, so every retry sends the same bytes;
 *   3. every row not accepted whose next_attempt has come is POSTed, and
 *      the answer is recorded: HTTP status, body (at most 64 KiB), error,
 *      attempts; accepted on HTTP 200 (and no share_reject_text in the
 *      body), else failed with next_attempt after an exponential backoff
 *      from share_retry up to 6 h. A row is retried until it is accepted.
 *
 * Slots missed while no server ran are not made up: the row of the slot
 * at hand covers one interval, and the missing ones show as gaps in the
 * sharing uptime of the infection index.
 */
#include "sharing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/tree.h>

#include "edxml.h"
#include "khx.h"
#include "upward.h"
#include "xmldsig.h"

int64_t share_slot(int64_t now, unsigned interval, int utc_offset)
{
    int64_t t = now + utc_offset, i = interval > 0 ? (int64_t)interval : 86400;
    int64_t q = t / i;
    if (t % i < 0)
        q--; /* floor, for times before 1970 at a positive offset */
    return q * i - utc_offset;
}

int64_t share_backoff(unsigned retry, int64_t attempts)
{
    int64_t d = retry > 0 ? (int64_t)retry : 1;
    for (int64_t i = 1; i < attempts && d < SHARE_BACKOFF_MAX; i++)
        d *= 2;
    return d < SHARE_BACKOFF_MAX ? d : SHARE_BACKOFF_MAX;
}

unsigned share_job_interval(const struct srv_config *cfg)
{
    if (cfg->report.share_url[0] == '\0')
        return 0;
    return cfg->report.share_retry < 300 ? cfg->report.share_retry : 300;
}

/* ------------------------------------------------------------------------ */
/* The document.                                                             */
/* ------------------------------------------------------------------------ */

int share_build_document(struct store_db *db, const struct srv_report_config *cfg, int64_t start,
                         int64_t end, char **doc, size_t *len, char *err, size_t errlen)
{
    struct edxml_stats st;
    xmlDocPtr x = NULL;
    xmlChar *bytes = NULL;
    int n = 0, r = -1;

    if (xmldsig_init(err, errlen) != 0)
        return -1;
    if (edxml_build(db, cfg, start, end, &x, &st, err, errlen) != 0)
        goto out;
    if (st.omitted > 0)
        srv_log("sharing: the AVReport of %lld-%lld leaves out %u rows over its size bounds",
                (long long)start, (long long)end, st.omitted);
    if (xmldsig_sign(x, edxml_signature_parent(x), cfg, err, errlen) != 0)
        goto out;
    xmlDocDumpMemoryEnc(x, &bytes, &n, "UTF-8");
    if (bytes == NULL || n <= 0) {
        snprintf(err, errlen, "cannot serialise the document");
        goto out;
    }
    if ((size_t)n > SHARE_DOCUMENT_MAX) {
        snprintf(err, errlen, "the signed document is %d bytes, over the %d-byte bound", n,
                 SHARE_DOCUMENT_MAX);
        goto out;
    }
    if ((*doc = malloc((size_t)n + 1)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    memcpy(*doc, bytes, (size_t)n);
    (*doc)[n] = '\0';
    *len = (size_t)n;
    r = 0;
out:
    xmlFree(bytes);
    xmlFreeDoc(x);
    return r;
}

/* ------------------------------------------------------------------------ */
/* The POST.                                                                 */
/* ------------------------------------------------------------------------ */

/* Text fit for a TEXT column on both backends and for JSON: NUL, other
 * control characters (but tab and line ends) and invalid UTF-8 become '?'. */
static void clean_utf8(char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint32_t c = 0;
        size_t n = khx_utf8_len((const unsigned char *)s + i, len - i, &c);
        if (n == 0) {
            s[i++] = '?';
            continue;
        }
        if (n == 1 && ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F))
            s[i] = '?';
        i += n;
    }
}

int share_post(const struct srv_report_config *cfg, const char *doc, size_t len, long *http_status,
               char **response, char *err, size_t errlen)
{
    /* HTTPS only (MAL-2), through the server's client for sending upward. */
    static const char *const headers[] = {"Content-Type: text/xml", NULL};
    const struct up_request rq = {.url = cfg->share_url,
                                  .ca = cfg->share_ca,
                                  .headers = headers,
                                  .user_agent = "Khien-AVReport/1",
                                  .body = doc,
                                  .len = len,
                                  .connect_timeout = 30,
                                  .timeout = SHARE_POST_TIMEOUT,
                                  .answer_max = SHARE_RESPONSE_MAX};
    size_t alen = 0;
    if (up_post(&rq, http_status, response, &alen, err, errlen) != 0)
        return 0;
    clean_utf8(*response, alen);
    if (*http_status != 200) {
        snprintf(err, errlen, "the receiver answered HTTP %ld", *http_status);
        return 0;
    }
    if (cfg->share_reject_text[0] != '\0' && strstr(*response, cfg->share_reject_text)) {
        snprintf(err, errlen, "the receiver's answer contains \"%s\"", cfg->share_reject_text);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* The job.                                                                  */
/* ------------------------------------------------------------------------ */

enum { BUILDS_PER_RUN = 4 };

/* Builds and stores the documents of rows that have none. Returns the
 * number built, or a negative store error. */
static int build_missing(struct store_db *db, const struct srv_report_config *cfg, int *failed)
{
    struct store_stmt *st = NULL;
    int64_t ids[BUILDS_PER_RUN], starts[BUILDS_PER_RUN], ends[BUILDS_PER_RUN];
    int n = 0, built = 0, s;

    s = store_queryf(db, &st,
                     "SELECT id, period_start, period_end FROM share_submissions"
                     " WHERE document IS NULL AND status <> 'accepted' ORDER BY slot LIMIT $1",
                     "i", (int64_t)BUILDS_PER_RUN);
    for (; s == STORE_ROW && n < BUILDS_PER_RUN; s = store_step(st)) {
        ids[n] = store_col_int(st, 0);
        starts[n] = store_col_int(st, 1);
        ends[n++] = store_col_int(st, 2);
    }
    store_finalize(st);
    if (s < 0)
        return s;
    for (int i = 0; i < n; i++) {
        char err[512] = "", hex[65];
        char *doc = NULL;
        size_t len = 0;
        uint8_t sum[32];

        if (share_build_document(db, cfg, starts[i], ends[i], &doc, &len, err, sizeof(err)) != 0 ||
            khx_sha256(doc, len, sum) != 0) {
            if (err[0] == '\0')
                snprintf(err, sizeof(err), "out of memory");
            srv_log("sharing: submission %lld: %s", (long long)ids[i], err);
            (*failed)++;
            free(doc);
            s = store_execf(db, NULL, "UPDATE share_submissions SET error = $1 WHERE id = $2", "ti",
                            err, ids[i]);
            if (s < 0)
                return s;
            continue;
        }
        khx_hex_encode(sum, sizeof(sum), hex);
        s = store_prepare(db,
                          "UPDATE share_submissions SET document = $1, sha256 = $2, error = ''"
                          " WHERE id = $3 AND document IS NULL",
                          &st);
        if (s == 0 && (s = store_bind_blob(st, 1, doc, len)) == 0 &&
            (s = store_bind_text(st, 2, hex)) == 0 && (s = store_bind_int(st, 3, ids[i])) == 0)
            s = store_step(st);
        store_finalize(st);
        st = NULL;
        free(doc);
        if (s < 0)
            return s;
        built++;
    }
    return built;
}

/* Posts one stored submission and records the outcome. Returns 1 when
 * accepted, 0 when not, or a negative store error. */
static int send_one(struct store_db *db, const struct srv_report_config *cfg, int64_t id,
                    int64_t now)
{
    struct store_stmt *st = NULL;
    char *doc = NULL, *response = NULL, err[512] = "";
    const void *p;
    size_t len = 0;
    int64_t attempts = 0;
    long http = 0;
    int s, ok;

    s = store_queryf(db, &st, "SELECT document, attempts FROM share_submissions WHERE id = $1", "i",
                     id);
    if (s == STORE_ROW && (p = store_col_blob(st, 0, &len)) != NULL &&
        (doc = malloc(len + 1)) != NULL) {
        memcpy(doc, p, len);
        doc[len] = '\0';
        attempts = store_col_int(st, 1);
    }
    store_finalize(st);
    if (s < 0)
        return s;
    if (doc == NULL)
        return 0; /* gone or out of memory: the next run tries again */
    ok = share_post(cfg, doc, len, &http, &response, err, sizeof(err));
    free(doc);
    attempts++;
    if (ok)
        s = store_execf(db, NULL,
                        "UPDATE share_submissions SET status = 'accepted', attempts = $1,"
                        " last_attempt = $2, accepted_at = $2, http_status = $3, response = $4,"
                        " error = '' WHERE id = $5",
                        "iiiti", attempts, now, (int64_t)http, response != NULL ? response : "",
                        id);
    else
        s = store_execf(db, NULL,
                        "UPDATE share_submissions SET status = 'failed', attempts = $1,"
                        " last_attempt = $2, next_attempt = $3, http_status = $4, response = $5,"
                        " error = $6 WHERE id = $7",
                        "iiiitti", attempts, now, now + share_backoff(cfg->share_retry, attempts),
                        (int64_t)http, response != NULL ? response : "", err, id);
    if (!ok)
        srv_log("sharing: submission %lld, attempt %lld: %s", (long long)id, (long long)attempts,
                err);
    free(response);
    return s < 0 ? s : ok;
}

int share_job_run(struct srv *srv, struct store_db *db, int64_t now, char *msg, size_t msglen)
{
    const struct srv_report_config *cfg = &srv->cfg.report;
    struct store_stmt *st = NULL;
    int64_t slot, created = 0, ids[SHARE_POSTS_PER_RUN];
    int n = 0, accepted = 0, build_failed = 0, built, s;

    if (cfg->share_url[0] == '\0') {
        snprintf(msg, msglen, "sharing is off (no share_url)");
        return 0;
    }
    slot = share_slot(now, cfg->share_interval, cfg->utc_offset);
    s = store_execf(db, &created,
                    "INSERT INTO share_submissions (slot, period_start, period_end, created_at,"
                    " next_attempt) VALUES ($1, $2, $1, $3, $3) ON CONFLICT (slot) DO NOTHING",
                    "iii", slot, slot - (int64_t)cfg->share_interval, now);
    if (s < 0)
        goto store_error;
    if ((built = build_missing(db, cfg, &build_failed)) < 0) {
        s = built;
        goto store_error;
    }
    s = store_queryf(db, &st,
                     "SELECT id FROM share_submissions WHERE status IN ('pending', 'failed')"
                     " AND document IS NOT NULL AND next_attempt <= $1 ORDER BY slot LIMIT $2",
                     "ii", now, (int64_t)SHARE_POSTS_PER_RUN);
    for (; s == STORE_ROW && n < SHARE_POSTS_PER_RUN; s = store_step(st))
        ids[n++] = store_col_int(st, 0);
    store_finalize(st);
    if (s < 0)
        goto store_error;
    for (int i = 0; i < n; i++) {
        if ((s = send_one(db, cfg, ids[i], now)) < 0)
            goto store_error;
        accepted += s;
    }
    snprintf(msg, msglen, "%s%d built%s, %d sent, %d accepted", created ? "new slot; " : "", built,
             build_failed ? " (some could not be built, see the log)" : "", n, accepted);
    return 0;
store_error:
    snprintf(msg, msglen, "store: %s: %s", store_strerror(s), store_errmsg(db));
    return -1;
}
