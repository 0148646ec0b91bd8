/*
 * Sharing with the national malware monitoring system (docs/internals/
 * sharing.md): the background job `share-avreport` that, once per
 * share_interval, builds the AVReport of the interval just ended
 * (edxml.c), signs it (xmldsig.c), keeps it in share_submissions, and
 * POSTs every submission not yet accepted to share_url over HTTPS until
 * the receiver accepts it, recording each attempt's answer.
 */
#ifndef KHIEN_REPORT_SHARING_H
#define KHIEN_REPORT_SHARING_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

#define SHARE_JOB_NAME "share-avreport"

enum {
    SHARE_RESPONSE_MAX = 64 * 1024,        /* bytes of the receiver's answer kept */
    SHARE_DOCUMENT_MAX = 64 * 1024 * 1024, /* a signed document larger than this is refused */
    SHARE_BACKOFF_MAX = 6 * 3600,          /* longest wait between two attempts */
    SHARE_POSTS_PER_RUN = 4,               /* submissions sent by one run at most */
    SHARE_POST_TIMEOUT = 120,              /* seconds one POST may take in all; 4 of them stay
                                              well inside the job's 15-minute lease */
};

/* The job's interval: min(share_retry, 300) s when share_url is set, else
 * 0 (off). The job runs often and decides itself what is due. */
unsigned share_job_interval(const struct srv_config *cfg);
/* One run of the job (jobs.h): creates the current slot's row, builds the
 * documents not yet built, posts what is due. -1 only when the store fails. */
int share_job_run(struct srv *s, struct store_db *db, int64_t now, char *msg, size_t msglen);

/* The start of the slot holding `now`: slots are `interval` seconds long
 * and aligned to local midnight of 1970-01-01 at utc_offset. */
int64_t share_slot(int64_t now, unsigned interval, int utc_offset);
/* The wait after the n-th failed attempt (n >= 1): retry, 2 x retry, ...
 * at most SHARE_BACKOFF_MAX. */
int64_t share_backoff(unsigned retry, int64_t attempts);

/* The signed document of [start, end) as bytes (malloc'd, the caller
 * frees). 0, or -1 with err set. */
int share_build_document(struct store_db *db, const struct srv_report_config *cfg, int64_t start,
                         int64_t end, char **doc, size_t *len, char *err, size_t errlen);

/* One POST of a document to cfg->share_url. *http_status is 0 when no
 * answer came; *response (malloc'd, at most SHARE_RESPONSE_MAX bytes,
 * NUL-terminated) is the body. Returns 1 when the receiver accepted it
 * (HTTP 200 and, when share_reject_text is set, a body without it), 0 when
 * not, with err saying why. */
int share_post(const struct srv_report_config *cfg, const char *doc, size_t len, long *http_status,
               char **response, char *err, size_t errlen);

#endif
