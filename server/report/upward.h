/*
 * One HTTPS POST from the server upward: the AVReport to the national
 * receiver (sharing.c) and a province's figures to its parent server
 * (federation_push.c). Both want the same client: HTTPS only, no redirects,
 * the peer verified against a given CA bundle or the system's, no signals
 * (the server has many threads), bounded time, and only the first bytes of
 * the answer kept.
 */
#ifndef KHIEN_REPORT_UPWARD_H
#define KHIEN_REPORT_UPWARD_H

#include <stddef.h>

struct up_request {
    const char *url;
    const char *ca;             /* CA bundle (PEM); NULL or "" = the system's */
    const char *const *headers; /* "Name: value" lines, NULL-terminated (may be NULL) */
    const char *user_agent;
    const void *body;
    size_t len;
    long connect_timeout; /* seconds */
    long timeout;         /* seconds for the whole exchange */
    size_t answer_max;    /* bytes of the answer kept; the rest is read and dropped */
};

/* Sends the request. Returns 0 when the peer answered (whatever the HTTP
 * status, in *status), with the answer's first answer_max bytes in *answer
 * (malloc'd, NUL-terminated, *answer_len bytes; the caller frees); -1 when
 * no answer came, with the reason in err. */
int up_post(const struct up_request *rq, long *status, char **answer, size_t *answer_len, char *err,
            size_t errlen);

#endif
